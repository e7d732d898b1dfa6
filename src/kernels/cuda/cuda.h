// The CUDA kernels (issue 15), behind a plain C++ header: no CUDA header is included here, so host code that g++
// compiles (tests, the benchmark, later the CUDA backend of the decoder) can call them. Every function that
// launches or touches the device returns a Status naming the kernel (or runtime call) and the CUDA error string;
// nothing aborts, and a machine without a GPU or driver gets an Unavailable status, never a crash.
//
// Contracts mirror the CPU kernels (kernels/matmul.h, ops.h, rope.h, attention.h, moe.h) and their scalar references
// in kernels/ref, which are the oracle of cuda_kernels_test.cpp. Pointers documented "device" are device memory
// (DeviceBuffer::data()); all others are host memory. Launches are asynchronous on the given stream (nullptr: the
// legacy default stream); errors of a kernel's execution surface at the next Synchronize or Download.
// Not thread-safe per stream; distinct streams may be used from distinct threads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

#include "core/dtype.h"
#include "core/status.h"

namespace herd::kernels::cuda {

// True when a CUDA device can be used (a driver new enough for the runtime herd links, and at least one device).
// Otherwise false, with the reason in *why_not (when not null), e.g. "CUDA driver version is insufficient for CUDA
// runtime version". Cheap after the first call (the answer is cached).
bool DeviceAvailable(std::string* why_not);

// "NVIDIA H100 80GB HBM3 (sm_90, 79.1 GiB, 132 SMs)" for device 0, or the reason none is usable.
std::string DeviceDescription();

// An opaque CUDA stream (cudaStream_t underneath). Stream{} is the legacy default stream.
struct Stream {
  void* handle = nullptr;
};
// A new non-blocking stream; destroy it with DestroyStream.
Result<Stream> CreateStream();
void DestroyStream(Stream s);
// Waits for everything queued on `s`; returns the first asynchronous error of its kernels, if any.
Status Synchronize(Stream s = {});

// Device memory owned by one object (cudaMalloc / cudaFree); movable, not copyable. Upload and Download are
// synchronous copies of the first `bytes` bytes (bytes <= this->bytes()).
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  ~DeviceBuffer();
  DeviceBuffer(DeviceBuffer&& other) noexcept;
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  // `bytes` of uninitialized device memory (0 bytes gives an empty buffer with data() == nullptr).
  static Result<DeviceBuffer> Allocate(size_t bytes);

  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(data_);
  }

  Status Upload(const void* host, size_t bytes);
  Status Download(void* host, size_t bytes) const;
  // Sets every byte to `value` (asynchronous on `s`).
  Status Fill(int value, Stream s = {});

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
};

// True for the weight dtypes MatMul takes in their stored layout: F32, F16, BF16, Q8_0, Q4_0.
bool MatMulSupports(DType t);

// y[t * n_out + o] = sum_i W[o, i] * x[t * n_in + i] for t < n_tokens, o < n_out.
//   w_device: n_out rows of RowBytes(t, n_in) bytes each, in the dtype's stored layout (F32, F16, BF16; Q8_0 34-byte
//             blocks: f16 scale + 32 int8; Q4_0 18-byte blocks: f16 scale + 16 bytes of nibbles, low nibbles are
//             elements 0..15, high nibbles 16..31, value = (nibble - 8) * scale), any 2-byte alignment;
//   x_device: f32 [n_tokens, n_in]; y_device: f32 [n_tokens, n_out], must not overlap x.
// n_in a multiple of the block size (32 for Q8_0/Q4_0). Weights are dequantized exactly to f32 in registers and
// multiplied with the f32 activations, accumulated in f32: |y - exact| <= about n_in * 2^-24 * sum_i |W x| per output.
// n_tokens <= kMatVecMaxTokens runs the matrix-vector kernel (weights streamed once, every token's dot products
// from the same loads); more tokens run the tiled kernel (shared-memory tiles of weights and activations, each
// weight tile reused for 64 tokens). Returns InvalidArgument for an unsupported dtype or bad shape.
inline constexpr int64_t kMatVecMaxTokens = 4;
Status MatMul(DType t, const void* w_device, int64_t n_out, int64_t n_in, const float* x_device, int64_t n_tokens,
              float* y_device, Stream s = {});

// Row-wise RMSNorm: y[r, i] = x[r, i] / sqrt(mean_i x[r, i]^2 + eps) * weight[i] (weight nullptr: 1), rows of d
// floats; sum of squares in f32 per thread and a tree over the block. y may equal x.
Status RmsNormRows(const float* x_device, const float* weight_device, int64_t n_rows, int64_t d, float eps,
                   float* y_device, Stream s = {});

// out[i] = silu(gate[i]) * up[i] = gate[i] / (1 + exp(-gate[i])) * up[i], i < n (ref::SwiGLU). out may alias either.
Status SwiGLURows(const float* gate_device, const float* up_device, int64_t n, float* out_device, Stream s = {});

// out[i] = a[i] + b[i], i < n (correctly rounded). out may alias either.
Status AddRows(const float* a_device, const float* b_device, int64_t n, float* out_device, Stream s = {});

// out[j * d + i] = table[tokens[j], i], exactly dequantized, for j < n, i < d: table rows of row_bytes bytes
// (RowBytes(t, d)) in F32, F16, BF16, Q8_0 or Q4_0. Token ids are not checked on the device: the caller validates
// them against the vocabulary on the host (an out-of-range id reads outside the table).
Status EmbedRows(DType t, const void* table_device, int64_t row_bytes, const int32_t* tokens_device, int64_t n,
                 int64_t d, float* out_device, Stream s = {});

// Bandwidth of a device-to-device copy kernel over a buffer of `bytes` (read and written: 2 * bytes per copy), the
// median of `reps` timed copies after warm-ups, in GB/s (1e9 bytes/s). On failure returns 0 with *error set.
double CopyBandwidthGBs(int64_t bytes, int reps, std::string* error);

// Median milliseconds of `reps` runs of `launch` (which queues work on `s`), each timed with CUDA events after
// `warmups` untimed runs; the first failing Status of a launch or of the device is returned instead.
Result<double> MedianMs(const std::function<Status()>& launch, int warmups, int reps, Stream s = {});

// ---------------------------------------------------------------------------------------------------------
// Attention-side kernels.

// The RoPE / QK-norm / temperature step of the decoder (model/decoder.cpp "attn.rope_kv"), in place on the rows of
// n_tokens tokens: q f32 [n_tokens, n_q_heads * head_dim], k f32 [n_tokens, n_kv_heads * head_dim] (k may be null
// with n_kv_heads 0). For each token t and each head of q and k, in this order:
//   rotate by cos/sin[t * head_dim/2 ...] when cos_device is not null (style as kernels/rope.h: kInterleaved pairs
//   (2i, 2i+1), kHalfSplit pairs (i, i + head_dim/2)); then, when qk_norm, a weightless RMSNorm over the head
//   (eps); then, for q only and when q_scale_device is not null, q *= q_scale[t] (attention temperature).
// style: 0 = interleaved, 1 = half-split (the values of kernels::RopeStyle). head_dim even, <= 1024.
Status RopeRows(float* q_device, int64_t n_q_heads, float* k_device, int64_t n_kv_heads, int64_t n_tokens,
                int64_t head_dim, const float* cos_device, const float* sin_device, int style, bool qk_norm, float eps,
                const float* q_scale_device, Stream s = {});

// Grouped-query attention over dense f32 keys and values (kernels/attention.h, same arguments): for token t, query
// head h (KV head h / group, group = n_q_heads / n_kv_heads) and i < head_dim,
//   out[t * out_stride + h * head_dim + i] = sum_j softmax_j(scale * dot(q_th, k_j)) * v_j[i]
// over keys j in [key_begin[t], key_end[t]), k_j = k + j * kv_stride + (h / group) * head_dim (likewise v).
// q rows q_stride floats apart per token, heads contiguous. key ranges: int64 device arrays, each non-empty.
// One block per (token, KV head), the group's query heads together, an online softmax over key tiles in f32.
// head_dim <= 256.
Status Attention(const float* q_device, int64_t q_stride, int64_t n_tokens, int64_t n_q_heads, int64_t n_kv_heads,
                 int64_t head_dim, const float* k_device, const float* v_device, int64_t kv_stride,
                 const int64_t* key_begin_device, const int64_t* key_end_device, float scale, float* out_device,
                 int64_t out_stride, Stream s = {});

// MoE routing (kernels::RouteTopK): for each token t < n_tokens of logits [n_tokens, n_experts], the k experts with
// the largest logits in decreasing order (lowest index first among equals; a NaN compares as nothing) into
// choice[t * k + j] and their sigmoid gates 1 / (1 + exp(-logit)) into gate. 1 <= k <= min(n_experts, 8),
// n_experts <= 1024.
Status RouteTopK(const float* logits_device, int64_t n_tokens, int64_t n_experts, int64_t k, int32_t* choice_device,
                 float* gate_device, Stream s = {});

}  // namespace herd::kernels::cuda
