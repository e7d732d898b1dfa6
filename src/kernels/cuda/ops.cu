// Row operations of kernels/cuda/cuda.h: RMSNorm, SwiGLU, Add, the embedding gather, the RoPE / QK-norm /
// temperature step, grouped-query attention and the MoE router's top-k. Each mirrors a CPU kernel and its scalar
// reference (kernels/ref), with which cuda_kernels_test.cpp compares it; f32 arithmetic throughout.
#include <cmath>

#include "kernels/cuda/common.cuh"

namespace herd::kernels::cuda {

using detail::CheckShape;
using detail::LaunchStatus;
using detail::LoadElement;
using detail::Raw;
using detail::WarpMax;
using detail::WarpSum;

namespace {

constexpr int kRowThreads = 256;

// Sum of v over the block (blockDim.x a multiple of 32, <= 1024); every thread gets the total.
__device__ float BlockSum(float v) {
  __shared__ float partial[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x / 32, n_warps = blockDim.x / 32;
  v = WarpSum(v);
  __syncthreads();  // a previous call's readers of `partial` are done
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  v = lane < n_warps ? partial[lane] : 0.0f;
  return WarpSum(v);
}

__global__ void RmsNormKernel(const float* __restrict__ x, const float* __restrict__ weight, int64_t d, float eps,
                              float* y) {
  const float* xr = x + blockIdx.x * d;
  float* yr = y + blockIdx.x * d;
  float ss = 0.0f;
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) ss += xr[i] * xr[i];
  ss = BlockSum(ss);
  const float inv = rsqrtf(ss / static_cast<float>(d) + eps);
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
    yr[i] = weight == nullptr ? xr[i] * inv : xr[i] * inv * weight[i];
  }
}

__global__ void SwiGLUKernel(const float* gate, const float* up, int64_t n, float* out) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float g = gate[i];
    out[i] = g / (1.0f + expf(-g)) * up[i];
  }
}

__global__ void AddKernel(const float* a, const float* b, int64_t n, float* out) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    out[i] = a[i] + b[i];
  }
}

template <DType T>
__global__ void EmbedKernel(const uint8_t* __restrict__ table, int64_t row_bytes, const int32_t* __restrict__ tokens,
                            int64_t d, float* __restrict__ out) {
  const uint8_t* row = table + static_cast<int64_t>(tokens[blockIdx.x]) * row_bytes;
  float* o = out + blockIdx.x * d;
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) o[i] = LoadElement<T>(row, i);
}

// Grid-stride launch size for n elements: enough blocks to fill the device, no more than the elements need.
unsigned ElementBlocks(int64_t n) { return static_cast<unsigned>(std::min<int64_t>((n + 255) / 256, 65536)); }

// One block per (token, head): the head is rotated into shared memory, then normalized and scaled from there.
constexpr int kRopeThreads = 128;
constexpr int kRopeMaxHeadDim = 1024;

__global__ void RopeKernel(float* q, int64_t n_q_heads, float* k, int64_t n_kv_heads, int64_t head_dim,
                           const float* __restrict__ cos, const float* __restrict__ sin, int style, bool qk_norm,
                           float eps, const float* __restrict__ q_scale) {
  __shared__ float h[kRopeMaxHeadDim];
  const int64_t t = blockIdx.x, head = blockIdx.y;
  const bool is_q = head < n_q_heads;
  float* x = is_q ? q + (t * n_q_heads + head) * head_dim : k + (t * n_kv_heads + (head - n_q_heads)) * head_dim;
  const int64_t half = head_dim / 2;
  for (int64_t i = threadIdx.x; i < half; i += blockDim.x) {
    const int64_t ia = style == 0 ? 2 * i : i, ib = style == 0 ? 2 * i + 1 : i + half;
    float a = x[ia], b = x[ib];
    if (cos != nullptr) {
      const float c = cos[t * half + i], s = sin[t * half + i];
      const float ra = a * c - b * s, rb = a * s + b * c;
      a = ra, b = rb;
    }
    h[ia] = a, h[ib] = b;
  }
  __syncthreads();
  float scale = 1.0f;
  if (qk_norm) {
    float ss = 0.0f;
    for (int64_t i = threadIdx.x; i < head_dim; i += blockDim.x) ss += h[i] * h[i];
    ss = BlockSum(ss);
    scale = rsqrtf(ss / static_cast<float>(head_dim) + eps);
  }
  const float qs = (is_q && q_scale != nullptr) ? q_scale[t] : 1.0f;
  for (int64_t i = threadIdx.x; i < head_dim; i += blockDim.x) {
    float v = qk_norm ? h[i] * scale : h[i];
    if (is_q && q_scale != nullptr) v *= qs;  // after the norm, as the decoder scales q (llama4.md 2.8)
    x[i] = v;
  }
}

// Attention: one block per (token, KV head), one warp per query head of the group (looping when the group has more
// heads than warps). Keys and values are staged kKeyTile at a time in shared memory and shared by the group's
// heads; in each tile lane j scores key j, the warp updates its running max and sum (online softmax), and each lane
// accumulates head_dim / 32 output dimensions.
constexpr int kKeyTile = 32;
constexpr int kAttnMaxHeadDim = 256;
constexpr int kAttnWarps = 8;

__global__ void __launch_bounds__(kAttnWarps * 32)
    AttentionKernel(const float* __restrict__ q, int64_t q_stride, int64_t n_q_heads, int64_t group, int64_t head_dim,
                    const float* __restrict__ k, const float* __restrict__ v, int64_t kv_stride,
                    const int64_t* __restrict__ key_begin, const int64_t* __restrict__ key_end, float scale,
                    float* __restrict__ out, int64_t out_stride) {
  extern __shared__ float smem[];
  const int64_t hd1 = head_dim + 1;      // padded K rows: lane j reading row j hits distinct banks
  float* ks = smem;                      // [kKeyTile][head_dim + 1]
  float* vs = ks + kKeyTile * hd1;       // [kKeyTile][head_dim]
  float* qs = vs + kKeyTile * head_dim;  // [n_warps][head_dim]
  const int64_t t = blockIdx.x, kvh = blockIdx.y;
  const int lane = threadIdx.x & 31, warp = threadIdx.x / 32, n_warps = blockDim.x / 32;
  const int64_t kb = key_begin[t], ke = key_end[t];
  constexpr int kDims = kAttnMaxHeadDim / 32;
  for (int64_t g0 = 0; g0 < group; g0 += n_warps) {  // the group's heads, n_warps at a time
    const int64_t g = g0 + warp;
    const bool active = g < group;
    const int64_t head = kvh * group + g;
    float* qw = qs + warp * head_dim;
    if (active) {
      for (int64_t i = lane; i < head_dim; i += 32) qw[i] = q[t * q_stride + head * head_dim + i] * scale;
    }
    float m = -INFINITY, l = 0.0f, acc[kDims] = {};
    for (int64_t j0 = kb; j0 < ke; j0 += kKeyTile) {
      const int64_t n_keys = min(static_cast<int64_t>(kKeyTile), ke - j0);
      __syncthreads();  // the previous tile's readers are done
      for (int64_t e = threadIdx.x; e < n_keys * head_dim; e += blockDim.x) {
        const int64_t r = e / head_dim, c = e % head_dim;
        const int64_t off = (j0 + r) * kv_stride + kvh * head_dim + c;
        ks[r * hd1 + c] = k[off];
        vs[r * head_dim + c] = v[off];
      }
      __syncthreads();
      if (!active) continue;
      float sc = -INFINITY;
      if (lane < n_keys) {
        float dot = 0.0f;
        for (int64_t i = 0; i < head_dim; ++i) dot += qw[i] * ks[lane * hd1 + i];
        sc = dot;
      }
      const float m_new = fmaxf(m, WarpMax(sc));
      const float p = lane < n_keys ? expf(sc - m_new) : 0.0f;
      const float corr = expf(m - m_new);  // 0 on the first tile (m = -inf)
      l = l * corr + WarpSum(p);
      m = m_new;
#pragma unroll
      for (int di = 0; di < kDims; ++di) acc[di] *= corr;
      for (int j = 0; j < n_keys; ++j) {
        const float pj = __shfl_sync(0xffffffffu, p, j);
#pragma unroll
        for (int di = 0; di < kDims; ++di) {
          const int64_t i = lane + 32 * di;
          if (i < head_dim) acc[di] += pj * vs[j * head_dim + i];
        }
      }
    }
    if (active) {
      const float inv = 1.0f / l;
#pragma unroll
      for (int di = 0; di < kDims; ++di) {
        const int64_t i = lane + 32 * di;
        if (i < head_dim) out[t * out_stride + head * head_dim + i] = acc[di] * inv;
      }
    }
  }
}

// One thread per token: the same sequential scan as kernels::RouteTopK, so ties (lowest index) and NaNs (never
// greater, kept only when first) resolve identically. A router is a few hundred logits per token; a parallel
// reduction would not pay for the care its NaN semantics need.
constexpr int kMaxTopK = 8;

__global__ void RouteTopKKernel(const float* __restrict__ logits, int64_t n_tokens, int64_t n_experts, int64_t k,
                                int32_t* __restrict__ choice, float* __restrict__ gate) {
  const int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (t >= n_tokens) return;
  const float* r = logits + t * n_experts;
  int32_t chosen[kMaxTopK];
  for (int64_t j = 0; j < k; ++j) {
    int32_t best = -1;
    for (int64_t e = 0; e < n_experts; ++e) {
      bool taken = false;
      for (int64_t i = 0; i < j; ++i) taken |= chosen[i] == e;
      if (!taken && (best < 0 || r[e] > r[best])) best = static_cast<int32_t>(e);
    }
    chosen[j] = best;
    choice[t * k + j] = best;
    gate[t * k + j] = 1.0f / (1.0f + expf(-r[best]));
  }
}

}  // namespace

Status RmsNormRows(const float* x_device, const float* weight_device, int64_t n_rows, int64_t d, float eps,
                   float* y_device, Stream s) {
  HERD_RETURN_IF_ERROR(CheckShape(n_rows >= 0 && d > 0 && n_rows < (int64_t{1} << 31), "herd_cuda RmsNormRows",
                                  "needs 0 <= n_rows < 2^31 and d > 0"));
  if (n_rows == 0) return Status::Ok();
  RmsNormKernel<<<static_cast<unsigned>(n_rows), kRowThreads, 0, Raw(s)>>>(x_device, weight_device, d, eps, y_device);
  return LaunchStatus("herd_cuda RmsNormRows");
}

Status SwiGLURows(const float* gate_device, const float* up_device, int64_t n, float* out_device, Stream s) {
  HERD_RETURN_IF_ERROR(CheckShape(n >= 0, "herd_cuda SwiGLURows", "negative n"));
  if (n == 0) return Status::Ok();
  SwiGLUKernel<<<ElementBlocks(n), 256, 0, Raw(s)>>>(gate_device, up_device, n, out_device);
  return LaunchStatus("herd_cuda SwiGLURows");
}

Status AddRows(const float* a_device, const float* b_device, int64_t n, float* out_device, Stream s) {
  HERD_RETURN_IF_ERROR(CheckShape(n >= 0, "herd_cuda AddRows", "negative n"));
  if (n == 0) return Status::Ok();
  AddKernel<<<ElementBlocks(n), 256, 0, Raw(s)>>>(a_device, b_device, n, out_device);
  return LaunchStatus("herd_cuda AddRows");
}

Status EmbedRows(DType t, const void* table_device, int64_t row_bytes, const int32_t* tokens_device, int64_t n,
                 int64_t d, float* out_device, Stream s) {
  constexpr const char* kName = "herd_cuda EmbedRows";
  HERD_RETURN_IF_ERROR(CheckShape(n >= 0 && n < (int64_t{1} << 31) && d > 0, kName, "needs 0 <= n < 2^31, d > 0"));
  if (MatMulSupports(t)) {
    HERD_RETURN_IF_ERROR(CheckShape(d % Traits(t).block_size == 0 && row_bytes >= RowBytes(t, d), kName,
                                    "d is not a multiple of the block size, or rows are shorter than d elements"));
  }
  if (n == 0 && MatMulSupports(t)) return Status::Ok();
  return detail::DispatchDType(t, kName, [&]<DType T>() -> Status {
    EmbedKernel<T><<<static_cast<unsigned>(n), kRowThreads, 0, Raw(s)>>>(static_cast<const uint8_t*>(table_device),
                                                                         row_bytes, tokens_device, d, out_device);
    return LaunchStatus(kName);
  });
}

Status RopeRows(float* q_device, int64_t n_q_heads, float* k_device, int64_t n_kv_heads, int64_t n_tokens,
                int64_t head_dim, const float* cos_device, const float* sin_device, int style, bool qk_norm, float eps,
                const float* q_scale_device, Stream s) {
  constexpr const char* kName = "herd_cuda RopeRows";
  HERD_RETURN_IF_ERROR(CheckShape(head_dim > 0 && head_dim % 2 == 0 && head_dim <= kRopeMaxHeadDim, kName,
                                  "head_dim must be even and at most 1024"));
  HERD_RETURN_IF_ERROR(CheckShape(style == 0 || style == 1, kName, "style must be 0 (interleaved) or 1 (half-split)"));
  HERD_RETURN_IF_ERROR(CheckShape(n_q_heads >= 0 && n_kv_heads >= 0 && n_q_heads + n_kv_heads < 65536 &&
                                      n_tokens >= 0 && n_tokens < (int64_t{1} << 31),
                                  kName, "bad head or token count"));
  HERD_RETURN_IF_ERROR(
      CheckShape((cos_device == nullptr) == (sin_device == nullptr), kName, "cos and sin go together"));
  if (n_tokens == 0 || n_q_heads + n_kv_heads == 0) return Status::Ok();
  const dim3 grid(static_cast<unsigned>(n_tokens), static_cast<unsigned>(n_q_heads + n_kv_heads));
  RopeKernel<<<grid, kRopeThreads, 0, Raw(s)>>>(q_device, n_q_heads, k_device, n_kv_heads, head_dim, cos_device,
                                                sin_device, style, qk_norm, eps, q_scale_device);
  return LaunchStatus(kName);
}

Status Attention(const float* q_device, int64_t q_stride, int64_t n_tokens, int64_t n_q_heads, int64_t n_kv_heads,
                 int64_t head_dim, const float* k_device, const float* v_device, int64_t kv_stride,
                 const int64_t* key_begin_device, const int64_t* key_end_device, float scale, float* out_device,
                 int64_t out_stride, Stream s) {
  constexpr const char* kName = "herd_cuda Attention";
  HERD_RETURN_IF_ERROR(CheckShape(head_dim > 0 && head_dim <= kAttnMaxHeadDim, kName, "head_dim must be in 1..256"));
  HERD_RETURN_IF_ERROR(CheckShape(n_kv_heads > 0 && n_q_heads % n_kv_heads == 0 && n_kv_heads < 65536, kName,
                                  "n_q_heads must be a multiple of n_kv_heads"));
  HERD_RETURN_IF_ERROR(CheckShape(n_tokens >= 0 && n_tokens < (int64_t{1} << 31), kName, "bad token count"));
  HERD_RETURN_IF_ERROR(CheckShape(
      kv_stride >= n_kv_heads * head_dim && q_stride >= n_q_heads * head_dim && out_stride >= n_q_heads * head_dim,
      kName, "a row stride is shorter than its heads"));
  if (n_tokens == 0 || n_q_heads == 0) return Status::Ok();
  const int64_t group = n_q_heads / n_kv_heads;
  const int warps = static_cast<int>(std::min<int64_t>(group, kAttnWarps));
  const size_t smem =
      sizeof(float) * static_cast<size_t>(kKeyTile * (head_dim + 1) + kKeyTile * head_dim + warps * head_dim);
  // Up to 65 KiB at head_dim 256: above the 48 KiB a kernel gets without asking.
  HERD_RETURN_IF_ERROR(detail::CudaStatus(
      cudaFuncSetAttribute(AttentionKernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)),
      "herd_cuda Attention (cudaFuncSetAttribute)"));
  const dim3 grid(static_cast<unsigned>(n_tokens), static_cast<unsigned>(n_kv_heads));
  AttentionKernel<<<grid, warps * 32, smem, Raw(s)>>>(q_device, q_stride, n_q_heads, group, head_dim, k_device,
                                                      v_device, kv_stride, key_begin_device, key_end_device, scale,
                                                      out_device, out_stride);
  return LaunchStatus(kName);
}

Status RouteTopK(const float* logits_device, int64_t n_tokens, int64_t n_experts, int64_t k, int32_t* choice_device,
                 float* gate_device, Stream s) {
  constexpr const char* kName = "herd_cuda RouteTopK";
  HERD_RETURN_IF_ERROR(CheckShape(k >= 1 && k <= kMaxTopK && k <= n_experts && n_experts <= 1024, kName,
                                  "needs 1 <= k <= min(n_experts, 8) and n_experts <= 1024"));
  HERD_RETURN_IF_ERROR(CheckShape(n_tokens >= 0 && n_tokens < (int64_t{1} << 40), kName, "bad token count"));
  if (n_tokens == 0) return Status::Ok();
  RouteTopKKernel<<<static_cast<unsigned>((n_tokens + 127) / 128), 128, 0, Raw(s)>>>(logits_device, n_tokens, n_experts,
                                                                                     k, choice_device, gate_device);
  return LaunchStatus(kName);
}

}  // namespace herd::kernels::cuda
