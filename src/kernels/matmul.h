// Matrix products of f32 activations with weights in their stored dtype (F32, F16, BF16, Q8_0, Q4_0, K-quants), and row
// dequantization for embedding lookups. Block layouts per llama4.md section 5.4. Weights are never expanded into
// an f32 copy: quantized weights multiply activations quantized to 8 bits in integer dot products (cpu/qdot.h), F32,
// F16 and BF16 weights are widened to f32 in registers (cpu/matmul-inl.h), and each weight byte is read from memory
// once per product (decode) or once per block of tokens (prefill). Reference: kernels/ref/matmul.h.
//
// Batch invariance. Every product here computes each output y[t, o] in an arithmetic fixed by the weights' dtype,
// W's row o (input-major: column o), x's row t, n_in and the Highway target alone: it does not depend on n_tokens,
// on t's index among the tokens, on the other tokens, on the rows or columns asked for (MatMulRows, a column range),
// on the thread count or on how the work is split. So a sequence's tokens give bit-identical results alone or
// batched with other sequences' tokens (continuous batching), in any order. (Different entry points for the same
// values, e.g. an input-major matrix and its output-major transpose, may differ in the last bits.)
// batch_invariance_test checks this for every dtype, entry point and compiled target.
#pragma once

#include <cstdint>

#include "core/dtype.h"
#include "core/tensor.h"
#include "core/thread_pool.h"

namespace herd::kernels {

// True for the weight dtypes MatMul, MatMulRows and DequantizeRow accept: F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q5_K,
// Q6_K, and Q8_0R (the repacked Q8_0 of kernels/repack.h: its own integer kernel on AVX3_DL, elsewhere Q8_0's kernel
// on rows unpacked on the fly; bit-identical to Q8_0 either way).
bool MatMulSupports(DType t);

// y[t, o] = sum_i W[o, i] * x[t, i] for t < n_tokens, o < n_out.
//   w: [n_out, n_in] (n_out = w.Rows(), n_in = w.Cols(); rows contiguous, RowStride() bytes apart) in a dtype
//      with MatMulSupports(); n_in is a multiple of 32 for Q8_0/Q4_0 (MakeTensorView guarantees it).
//   x: f32 [n_tokens, n_in], row stride n_in; y: f32 [n_tokens, n_out], row stride n_out. Any alignment.
//   x and y must not overlap. n_tokens or n_out may be 0 (so may n_in, but then w.Rows() is 0 too).
// Runs on every thread of `pool` (split over output rows, and over tokens when there are few rows) and returns
// when y is complete. Allocates nothing once the per-thread scratch (quantized activations, Q8_0R rows unpacked on
// targets without the Q8_0R kernel) has grown to the largest shape. Results are batch invariant (above).
// Accuracy: F32/F16/BF16 weights accumulate in f32, each y within (n_in + 2) * eps_f32 * sum_i |W[o, i] * x[t, i]|
// of the exact value. Q8_0/Q4_0/K-quant weights, at every n_tokens (prefill included, as llama.cpp does), multiply
// activations quantized to 8 bits per block (ref::MatMulQuantized defines the values: exact integer block sums,
// scaled and summed in f32).
void MatMul(const TensorView& w, const float* x, int64_t n_tokens, float* y, ThreadPool& pool);

// One product of a MatMulBatch: y = W x as MatMul(*w, x, n_tokens, y, pool).
struct MatMulJob {
  const TensorView* w = nullptr;
  const float* x = nullptr;
  float* y = nullptr;
};

// Several independent products over the same n_tokens in one parallel region: the results are bit-identical to
// calling MatMul for each job in turn, but for quantized weights the threads split the concatenated rows of all
// jobs by bytes and meet once, instead of once per job (e.g. Q, K, V; an FFN's gate and up). Jobs sharing x and
// dtype share one activation quantization. Other jobs run as MatMul. No job's y may overlap another job's x or y.
void MatMulBatch(const MatMulJob* jobs, int n_jobs, int64_t n_tokens, ThreadPool& pool);

// As MatMul, for output rows [o_begin, o_end) only, computed on the calling thread (for callers that
// parallelize themselves, e.g. over MoE experts). y is the full output: y[t * y_stride + o] is written for
// t < n_tokens and o in [o_begin, o_end); nothing else is touched. Requires 0 <= o_begin <= o_end <= n_out
// and y_stride >= o_end. Thread-safe for disjoint outputs.
void MatMulRows(const TensorView& w, const float* x, int64_t n_tokens, float* y, int64_t y_stride, int64_t o_begin,
                int64_t o_end);

// dst[i] = W[r, i] for i < n_in, exactly (llama4.md 5.4): the embedding lookup. w as for MatMul, r < w.Rows(),
// dst: f32 [n_in]. Thread-safe.
void DequantizeRow(const TensorView& w, int64_t r, float* dst);

// The same product for weights stored input-major, as HF Llama 4 stores its experts (gate_up_proj
// [n_experts, hidden_size, 2 * ffn_size], down_proj [n_experts, ffn_size, hidden_size]):
//   y[t, c - col_begin] = sum_i W[i, c] * x[t, i] for t < n_tokens, c in [col_begin, col_end),
//   w: [n_in, n_cols] in F32, F16 or BF16 (n_in = w.Rows(), n_cols = w.Cols()), 0 <= col_begin <= col_end <=
//   n_cols; x: f32 [n_tokens, n_in]; y: f32 [n_tokens, col_end - col_begin], row stride col_end - col_begin.
// Threading, batch invariance and accuracy as MatMul (each output: one f32 multiply-add chain over i = 0, 1, ...).
// Allocates nothing after each thread's first call with 4 or more tokens (one reused packing tile per thread).
bool MatMulInputMajorSupports(DType t);
void MatMulInputMajor(const TensorView& w, int64_t col_begin, int64_t col_end, const float* x, int64_t n_tokens,
                      float* y, ThreadPool& pool);

// Weights with one f32 scale per output: FP8 checkpoints (llama4.md 6.3) store W[o, :] = e4m3(weight[o, :]) *
// scale[o] with F8_E4M3 weights. These run in cpu/matmul_fp8.cpp (reference: kernels/ref/matmul_fp8.h) and take
// the dtypes of MatMulScaledSupports; a null scale means 1, and then a non-F8 weight goes through MatMul /
// MatMulRows / DequantizeRow / MatMulInputMajor unchanged (bit-identical results). The scale multiplies each
// finished dot product (y = scale[o] * sum_i q[o, i] * x[t, i]), so accuracy is MatMul's bound plus one rounding:
// within (n_in + 4) * eps_f32 * sum_i |W[o, i] * x[t, i]| of the exact product with W = fl(q * scale).
// Threading, allocation and argument rules as their unscaled twins. F8_E4M3 calls are not yet counted by
// EnableWeightByteCounting. FP8 activations (fbgemm's dynamic per-token quantization) are not modelled:
// activations stay f32, as llama4.md 6.3 allows for an fp32 reference.
bool MatMulScaledSupports(DType t);  // MatMulSupports(t) or F8_E4M3
//   row_scale: f32 [w.Rows()] or nullptr.
void MatMulScaled(const TensorView& w, const float* row_scale, const float* x, int64_t n_tokens, float* y,
                  ThreadPool& pool);
void MatMulRowsScaled(const TensorView& w, const float* row_scale, const float* x, int64_t n_tokens, float* y,
                      int64_t y_stride, int64_t o_begin, int64_t o_end);
// dst[i] = fl(W[r, i] * row_scale[r]) exactly (one f32 product, as ref::DequantizeRowScaled).
void DequantizeRowScaled(const TensorView& w, const float* row_scale, int64_t r, float* dst);
// Input-major w [n_in, n_cols] in F32, F16, BF16 or F8_E4M3 with one scale per column (HF's fused FP8 experts:
// gate_up_proj_scale [n_experts, 1, 2 * ffn_size], down_proj_scale [n_experts, hidden_size, 1]).
//   col_scale: f32 [n_cols] (indexed by the absolute column c, not c - col_begin) or nullptr.
bool MatMulInputMajorScaledSupports(DType t);
void MatMulInputMajorScaled(const TensorView& w, const float* col_scale, int64_t col_begin, int64_t col_end,
                            const float* x, int64_t n_tokens, float* y, ThreadPool& pool);

// Instrumentation for benchmarks and tests (the MoE decode property "only the selected experts are read"):
// while enabled, every MatMul, MatMulRows, DequantizeRow and MatMulInputMajor call adds the weight bytes it
// touches (the rows or columns it reads, once per call however many threads share it) to a process-wide
// counter. Off by default; disabled, it costs one predictable branch per call. Thread-safe (relaxed atomics):
// the total is exact once the counted calls have returned.
void EnableWeightByteCounting(bool enabled);
int64_t WeightBytesRead();
void ResetWeightBytesRead();

}  // namespace herd::kernels
