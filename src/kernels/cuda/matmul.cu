// MatMul of kernels/cuda/cuda.h: weights in their stored layout (F32, F16, BF16, Q8_0, Q4_0) times f32 activations.
//
// Decode (n_tokens <= kMatVecMaxTokens) is bound by the bytes of the weights, so the matrix-vector kernels read each
// weight once, with 16-byte loads that a warp issues for consecutive addresses, and keep every token's dot products
// in registers: one warp per output row, kRowsPerBlock rows per block, a warp-shuffle reduction at the end.
//   - F32/F16/BF16: each lane loads int4 chunks of the row directly and widens them in registers.
//   - Q8_0/Q4_0: 8 blocks of 32 weights (272 / 144 bytes) are a whole number of 16-byte chunks, so the warp copies
//     kStagedSupers such groups of its row into a per-warp shared-memory stage with coalesced 16-byte loads and each
//     lane then decodes a quarter block (8 weights) from it; the activations it multiplies are two float4 loads
//     that the warp also issues for contiguous addresses.
//   Rows that are not 16-byte aligned (n_in not a multiple of 256 for Q8_0/Q4_0, of 4 or 8 for F32 or 16-bit
//   weights) take a plain element-at-a-time kernel: correct for every shape, slower.
// Prefill (more tokens) is bound by arithmetic: a classic shared-memory tiled kernel, 64 rows x 64 tokens per block
// of 256 threads, 4 x 4 outputs per thread, k tiles of 32 (one quantization block) dequantized into shared memory
// once and reused by 64 tokens. CUDA cores in f32, no tensor cores yet: the first version is exact f32 arithmetic on
// exactly dequantized weights (so it is tested against the same bound as the CPU kernels); an int8/FP8 MMA or
// cuBLASLt path is the next step (issue 15), to be chosen by measurement.
#include <algorithm>

#include "kernels/cuda/common.cuh"

namespace herd::kernels::cuda {

using detail::Bf16Bits;
using detail::CheckShape;
using detail::HalfBits;
using detail::LaunchStatus;
using detail::LoadElement;
using detail::Raw;
using detail::WarpSum;

namespace {

constexpr int kRowsPerBlock = 4;  // warps per block of the matrix-vector kernels, one output row each
constexpr int kPlainUnroll = 4;   // int4 loads in flight per lane in the F32/F16/BF16 kernel
constexpr int kStagedSupers = 8;  // groups of 8 quantization blocks staged per warp and iteration

template <int NT>
__device__ __forceinline__ void StoreRow(float (&acc)[NT], int lane, int64_t row, int64_t n_out, float* y) {
#pragma unroll
  for (int t = 0; t < NT; ++t) {
    const float v = WarpSum(acc[t]);
    if (lane == 0) y[t * n_out + row] = v;
  }
}

// Widens one 16-byte chunk of a plain row into 4 (F32) or 8 (F16, BF16) floats.
template <DType T>
__device__ __forceinline__ void Widen(int4 v, float* w) {
  if constexpr (T == DType::kF32) {
    w[0] = __int_as_float(v.x), w[1] = __int_as_float(v.y), w[2] = __int_as_float(v.z), w[3] = __int_as_float(v.w);
  } else {
    const uint32_t u[4] = {static_cast<uint32_t>(v.x), static_cast<uint32_t>(v.y), static_cast<uint32_t>(v.z),
                           static_cast<uint32_t>(v.w)};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      if constexpr (T == DType::kF16) {
        w[2 * i] = HalfBits(static_cast<uint16_t>(u[i] & 0xFFFFu));
        w[2 * i + 1] = HalfBits(static_cast<uint16_t>(u[i] >> 16));
      } else {
        w[2 * i] = __uint_as_float(u[i] << 16);
        w[2 * i + 1] = __uint_as_float(u[i] & 0xFFFF0000u);
      }
    }
  }
}

// F32/F16/BF16 rows of row_bytes (a multiple of 16), 16-byte aligned; x rows 16-byte aligned.
template <DType T, int NT>
__global__ void __launch_bounds__(kRowsPerBlock * 32)
    MatVecPlain(const uint8_t* __restrict__ w, int64_t row_bytes, int64_t n_out, int64_t n_in,
                const float* __restrict__ x, float* __restrict__ y) {
  constexpr int kElems = T == DType::kF32 ? 4 : 8;  // weights per 16-byte chunk
  const int lane = threadIdx.x & 31;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / 32;
  if (row >= n_out) return;
  const int4* wr = reinterpret_cast<const int4*>(w + row * row_bytes);
  const int64_t n_vec = row_bytes / 16;
  float acc[NT] = {};
  for (int64_t base = 0; base < n_vec; base += 32 * kPlainUnroll) {
    int4 v[kPlainUnroll];
#pragma unroll
    for (int u = 0; u < kPlainUnroll; ++u) {  // all loads first: kPlainUnroll requests in flight per lane
      const int64_t j = base + u * 32 + lane;
      v[u] = j < n_vec ? __ldcs(wr + j) : make_int4(0, 0, 0, 0);
    }
#pragma unroll
    for (int u = 0; u < kPlainUnroll; ++u) {
      const int64_t j = base + u * 32 + lane;
      if (j >= n_vec) break;
      float wf[kElems];
      Widen<T>(v[u], wf);
#pragma unroll
      for (int t = 0; t < NT; ++t) {
        const float4* xv = reinterpret_cast<const float4*>(x + t * n_in + j * kElems);
#pragma unroll
        for (int h = 0; h < kElems / 4; ++h) {
          const float4 xx = xv[h];
          acc[t] += wf[4 * h] * xx.x + wf[4 * h + 1] * xx.y + wf[4 * h + 2] * xx.z + wf[4 * h + 3] * xx.w;
        }
      }
    }
  }
  StoreRow<NT>(acc, lane, row, n_out, y);
}

// Q8_0/Q4_0 rows with n_in a multiple of 256 (rows a whole number of 16-byte chunks), 16-byte aligned.
template <DType T, int NT>
__global__ void __launch_bounds__(kRowsPerBlock * 32)
    MatVecQuant(const uint8_t* __restrict__ w, int64_t row_bytes, int64_t n_out, int64_t n_in,
                const float* __restrict__ x, float* __restrict__ y) {
  constexpr int kBlockBytes = T == DType::kQ8_0 ? 34 : 18;
  constexpr int kSuperBytes = 8 * kBlockBytes;  // 8 blocks: 272 or 144 bytes, 17 or 9 chunks of 16
  constexpr int kStageVecs = kStagedSupers * kSuperBytes / 16;
  constexpr int kLoads = (kStageVecs + 31) / 32;
  __shared__ int4 stage[kRowsPerBlock][kStageVecs];
  const int lane = threadIdx.x & 31, warp = threadIdx.x / 32;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + warp;
  if (row >= n_out) return;  // whole warps only: the stage is per warp and synchronized with __syncwarp
  const int4* wr = reinterpret_cast<const int4*>(w + row * row_bytes);
  const uint8_t* sb = reinterpret_cast<const uint8_t*>(stage[warp]);
  const int64_t n_super = n_in / 256;
  const int blk = lane >> 2, part = lane & 3;  // this lane's block of the group and quarter of it
  float acc[NT] = {};
  for (int64_t s0 = 0; s0 < n_super; s0 += kStagedSupers) {
    const int n_here = static_cast<int>(min(static_cast<int64_t>(kStagedSupers), n_super - s0));
    const int vecs = n_here * kSuperBytes / 16;
    int4 v[kLoads];
#pragma unroll
    for (int k = 0; k < kLoads; ++k) {
      const int j = k * 32 + lane;
      if (j < vecs) v[k] = __ldcs(wr + s0 * (kSuperBytes / 16) + j);
    }
    __syncwarp();  // the previous iteration's reads of the stage are done
#pragma unroll
    for (int k = 0; k < kLoads; ++k) {
      const int j = k * 32 + lane;
      if (j < vecs) stage[warp][j] = v[k];
    }
    __syncwarp();
    for (int s = 0; s < n_here; ++s) {
      const uint8_t* b = sb + s * kSuperBytes + blk * kBlockBytes;
      const float d = HalfBits(*reinterpret_cast<const uint16_t*>(b));
      const int64_t e0 = (s0 + s) * 256 + blk * 32;  // first element of this lane's block
      float q[8];
      int xo[2];  // element offsets (in the block) of the two runs of 4 this lane multiplies
      if constexpr (T == DType::kQ8_0) {
        const uint16_t* p = reinterpret_cast<const uint16_t*>(b + 2 + 8 * part);
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const uint16_t u = p[i];
          q[2 * i] = static_cast<float>(static_cast<int8_t>(u & 0xFF));
          q[2 * i + 1] = static_cast<float>(static_cast<int8_t>(u >> 8));
        }
        xo[0] = 8 * part, xo[1] = 8 * part + 4;
      } else {  // bytes 4*part .. +3 hold elements 4*part.. (low nibbles) and 16 + 4*part.. (high nibbles)
        const uint16_t* p = reinterpret_cast<const uint16_t*>(b + 2 + 4 * part);
        const uint32_t u = static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 16);
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          q[i] = static_cast<float>(static_cast<int>((u >> (8 * i)) & 0xF) - 8);
          q[4 + i] = static_cast<float>(static_cast<int>((u >> (8 * i + 4)) & 0xF) - 8);
        }
        xo[0] = 4 * part, xo[1] = 16 + 4 * part;
      }
#pragma unroll
      for (int t = 0; t < NT; ++t) {
        const float4 x0 = *reinterpret_cast<const float4*>(x + t * n_in + e0 + xo[0]);
        const float4 x1 = *reinterpret_cast<const float4*>(x + t * n_in + e0 + xo[1]);
        const float dot = q[0] * x0.x + q[1] * x0.y + q[2] * x0.z + q[3] * x0.w + q[4] * x1.x + q[5] * x1.y +
                          q[6] * x1.z + q[7] * x1.w;
        acc[t] += d * dot;
      }
    }
  }
  StoreRow<NT>(acc, lane, row, n_out, y);
}

// Any shape and alignment: one warp per row, one element per lane at a time.
template <DType T, int NT>
__global__ void __launch_bounds__(kRowsPerBlock * 32)
    MatVecAny(const uint8_t* __restrict__ w, int64_t row_bytes, int64_t n_out, int64_t n_in,
              const float* __restrict__ x, float* __restrict__ y) {
  const int lane = threadIdx.x & 31;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / 32;
  if (row >= n_out) return;
  const uint8_t* wr = w + row * row_bytes;
  float acc[NT] = {};
  for (int64_t i = lane; i < n_in; i += 32) {
    const float wi = LoadElement<T>(wr, i);
#pragma unroll
    for (int t = 0; t < NT; ++t) acc[t] += wi * x[t * n_in + i];
  }
  StoreRow<NT>(acc, lane, row, n_out, y);
}

constexpr int kTileO = 64, kTileT = 64, kTileK = 32;

template <DType T>
__global__ void __launch_bounds__(256)
    MatMulTiled(const uint8_t* __restrict__ w, int64_t row_bytes, int64_t n_out, int64_t n_in,
                const float* __restrict__ x, int64_t n_tokens, float* __restrict__ y) {
  // [k][row] with one float of padding: the loads below write a column per warp without bank conflicts.
  __shared__ float ws[kTileK][kTileO + 1];
  __shared__ float xs[kTileK][kTileT + 1];
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  const int64_t o0 = static_cast<int64_t>(blockIdx.x) * kTileO, t0 = static_cast<int64_t>(blockIdx.y) * kTileT;
  const int lk = tid % kTileK, lr = tid / kTileK;  // loader: k within the tile, first row (8 rows apart)
  float acc[4][4] = {};
  for (int64_t k0 = 0; k0 < n_in; k0 += kTileK) {
    const int64_t k = k0 + lk;
#pragma unroll
    for (int i = 0; i < kTileO / 8; ++i) {
      const int r = lr + 8 * i;
      const int64_t o = o0 + r, t = t0 + r;
      ws[lk][r] = (o < n_out && k < n_in) ? LoadElement<T>(w + o * row_bytes, k) : 0.0f;
      xs[lk][r] = (t < n_tokens && k < n_in) ? x[t * n_in + k] : 0.0f;
    }
    __syncthreads();
#pragma unroll 8
    for (int kk = 0; kk < kTileK; ++kk) {
      float a[4], b[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) a[i] = ws[kk][tx + 16 * i], b[i] = xs[kk][ty + 16 * i];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] += a[i] * b[j];
      }
    }
    __syncthreads();
  }
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const int64_t t = t0 + ty + 16 * j;
    if (t >= n_tokens) continue;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int64_t o = o0 + tx + 16 * i;
      if (o < n_out) y[t * n_out + o] = acc[i][j];
    }
  }
}

using MatVecFn = void (*)(const uint8_t*, int64_t, int64_t, int64_t, const float*, float*);

// The matrix-vector kernel for dtype T and NT tokens: the staged or direct 16-byte kernel when `fast`, else MatVecAny.
template <DType T, int NT>
MatVecFn PickMatVec(bool fast) {
  if (!fast) return MatVecAny<T, NT>;
  if constexpr (T == DType::kQ8_0 || T == DType::kQ4_0) {
    return MatVecQuant<T, NT>;
  } else {
    return MatVecPlain<T, NT>;
  }
}

template <DType T>
MatVecFn PickMatVec(int64_t n_tokens, bool fast) {
  switch (n_tokens) {
    case 1:
      return PickMatVec<T, 1>(fast);
    case 2:
      return PickMatVec<T, 2>(fast);
    case 3:
      return PickMatVec<T, 3>(fast);
    default:
      return PickMatVec<T, 4>(fast);
  }
}

bool Aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

}  // namespace

bool MatMulSupports(DType t) {
  return t == DType::kF32 || t == DType::kF16 || t == DType::kBF16 || t == DType::kQ8_0 || t == DType::kQ4_0;
}

Status MatMul(DType t, const void* w_device, int64_t n_out, int64_t n_in, const float* x_device, int64_t n_tokens,
              float* y_device, Stream s) {
  static_assert(kMatVecMaxTokens == 4, "LaunchMatVec instantiates 1..4 tokens");
  constexpr const char* kName = "herd_cuda MatMul";
  HERD_RETURN_IF_ERROR(
      CheckShape(n_out > 0 && n_in > 0 && n_tokens >= 0, kName, "needs n_out, n_in > 0, n_tokens >= 0"));
  if (!MatMulSupports(t)) {
    return NotSupported(std::string(kName) + ": weight dtype " + std::string(DTypeName(t)) +
                        " is not supported on CUDA yet (F32, F16, BF16, Q8_0, Q4_0)");
  }
  HERD_RETURN_IF_ERROR(CheckShape(n_in % Traits(t).block_size == 0, kName, "n_in is not a multiple of the block size"));
  HERD_RETURN_IF_ERROR(
      CheckShape(w_device != nullptr && x_device != nullptr && y_device != nullptr, kName, "null pointer"));
  if (n_tokens == 0) return Status::Ok();
  const int64_t row_bytes = RowBytes(t, n_in);
  const auto* w = static_cast<const uint8_t*>(w_device);
  const cudaStream_t st = Raw(s);
  return detail::DispatchDType(t, kName, [&]<DType T>() -> Status {
    if (n_tokens <= kMatVecMaxTokens) {
      const int64_t n_blocks = (n_out + kRowsPerBlock - 1) / kRowsPerBlock;
      HERD_RETURN_IF_ERROR(CheckShape(n_blocks < (int64_t{1} << 31), kName, "too many rows"));
      const auto blocks = static_cast<unsigned>(n_blocks);
      const bool fast = row_bytes % 16 == 0 && Aligned16(w) && Aligned16(x_device) && n_in % 4 == 0;
      const MatVecFn kernel = PickMatVec<T>(n_tokens, fast);
      kernel<<<blocks, kRowsPerBlock * 32, 0, st>>>(w, row_bytes, n_out, n_in, x_device, y_device);
      return LaunchStatus(!fast                                      ? "herd_cuda MatVecAny"
                          : (T == DType::kQ8_0 || T == DType::kQ4_0) ? "herd_cuda MatVecQuant"
                                                                     : "herd_cuda MatVecPlain");
    }
    const int64_t gx = (n_out + kTileO - 1) / kTileO, gy = (n_tokens + kTileT - 1) / kTileT;
    HERD_RETURN_IF_ERROR(CheckShape(gx < (int64_t{1} << 31) && gy < 65536, kName, "too many rows or tokens"));
    MatMulTiled<T><<<dim3(static_cast<unsigned>(gx), static_cast<unsigned>(gy)), 256, 0, st>>>(
        w, row_bytes, n_out, n_in, x_device, n_tokens, y_device);
    return LaunchStatus("herd_cuda MatMulTiled");
  });
}

}  // namespace herd::kernels::cuda
