// Products of quantized weights (Q8_0, Q4_0, Q4_K, Q5_K, Q6_K, Q8_0R; llama4.md 5.4) with activations quantized to 8
// bits once per call, in integer dot products: kernels/matmul.h's path for these dtypes at every n_tokens, decode
// and prefill alike, so that each output's arithmetic does not depend on the batch. Also a kernel for BF16 weights
// with activations split exactly into three bf16 terms (native BF16 dot products, cpu/bf16dot-inl.h), which MatMul
// does not use (cpu/matmul.cpp says why); tests and bench/matmul_bench.cpp call it here. Per-target kernels:
// cpu/qdot-inl.h (dispatch: cpu/qdot.cpp). Internal to the kernels module. Reference: ref::MatMulQuantized
// (kernels/ref/matmul.h), which defines the values computed.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/dtype.h"
#include "core/tensor.h"
#include "hwy/aligned_allocator.h"

namespace herd::kernels {

// True for Q8_0, Q4_0, Q4_K, Q5_K, Q6_K; for Q8_0R (kernels/repack.h) on the AVX3_DL target; for BF16 when the
// dispatched target and the CPU have AVX512_BF16 (activations split into bf16 terms, products by vdpbf16ps:
// cpu/bf16dot-inl.h; not MatMul's path). Depends on the Highway targets in force.
bool QuantDotSupports(DType t);

// Activations x: f32 [n_tokens, n_in] quantized for weights of one dtype (ref::QuantizeActivations' codes and
// scales with the block ref::ActivationBlock(dtype), plus the block sums the kernels need), laid out the way
// the Highway target dispatched at Quantize time reads them. Owns a 64-byte aligned buffer that grows and never
// shrinks, so once the largest shape has been seen Quantize allocates nothing (style.md 7). Quantize is not
// thread-safe; afterwards the object is read-only and may be shared by the threads of one product.
class QuantizedActivations {
 public:
  // Requires QuantDotSupports(t) and n_in a multiple of t's block size. x is read, not kept.
  void Quantize(DType t, const float* x, int64_t n_tokens, int64_t n_in) {
    Reserve(t, n_tokens, n_in);
    QuantizeTokens(x, 0, n_tokens);
  }
  // Quantize in two parts, for callers that split the tokens over threads: Reserve sets the dtype and shape and
  // grows the buffer (not thread-safe); QuantizeTokens then quantizes tokens [t_begin, t_end) of x ([n_tokens,
  // n_in] as reserved), and may run on several threads at once for disjoint token ranges.
  void Reserve(DType t, int64_t n_tokens, int64_t n_in);
  void QuantizeTokens(const float* x, int64_t t_begin, int64_t t_end);

  DType dtype() const { return dtype_; }
  int64_t n_tokens() const { return n_tokens_; }
  int64_t n_in() const { return n_in_; }
  // Bytes of token t's quantized row (target-specific layout), token_bytes() apart.
  const uint8_t* Token(int64_t t) const { return buf_.get() + t * token_bytes_; }
  int64_t token_bytes() const { return token_bytes_; }

 private:
  hwy::AlignedFreeUniquePtr<uint8_t[]> buf_;
  int64_t capacity_ = 0;
  DType dtype_ = DType::kF32;
  int64_t n_tokens_ = 0, n_in_ = 0, token_bytes_ = 0;
};

// y[(t - t_begin) * y_stride + o] = sum_i W[o, i] * d_x q_x[t, i] for t in [t_begin, t_end), o in [o_begin,
// o_end), on the calling thread. `a` must hold activations quantized for w.dtype and w.Cols() on the same target.
// Each output's arithmetic is fixed by (o, t) alone: any split over rows, tokens or threads gives identical bits.
// Thread-safe for disjoint outputs. Accuracy: the exact integer block sums of ref::Dot*, scaled and summed in f32.
void QuantDotRows(const TensorView& w, const QuantizedActivations& a, int64_t t_begin, int64_t t_end, float* y,
                  int64_t y_stride, int64_t o_begin, int64_t o_end);

// The arithmetic a core can issue, for the compute ceiling beside prefill figures (tools/compute.h): kInt8 is the
// byte dot product the quantized kernels use (vpdpbusd on AVX-512 VNNI, else pmaddubsw + pmaddwd), kF32 the f32
// fused multiply-add, kBf16 vdpbf16ps (AVX512_BF16 only).
enum class PeakKind { kInt8 = 0, kF32 = 1, kBf16 = 2 };
// Runs `iters` steps of 12 independent accumulator chains of `kind` on the calling thread (registers only) and
// returns the operations done, counting a multiply-add as 2; 0 when the dispatched target or the CPU lacks `kind`.
int64_t PeakOps(PeakKind kind, int64_t iters);

// The Highway target the quantized kernels dispatch to on this CPU ("AVX3_DL", "AVX2", ...), for benchmark records.
const char* QuantDotTarget();

// How many sequential streams per thread the one-token kernel of t reads on this CPU's target: more than 1 where it
// takes its rows from that many distant parts of its range at once (cpu/qdot-inl.h DecodeInStreams), which is then
// best given one long range per thread (cpu/matmul.cpp).
int QuantDecodeStreams(DType t);

// The calling thread's scratch (thread_local, grown once), for callers that quantize per call.
QuantizedActivations& ThreadQuantizedActivations();

}  // namespace herd::kernels
