// FP8 E4M3 weights with per-output f32 scales (llama4.md 6.3) for kernels/matmul.h: MatMulScaled and friends.
// Reference: kernels/ref/matmul_fp8.h. Compiled once per Highway target through foreach_target.h.
//
// The E4M3 bytes plug into the dot and packed-GEMM kernels of cpu/matmul-inl.h as one more source type
// (SrcF8E4M3: bytes widened to f32 lanes in registers, exactly), so decode streams one byte per weight and
// prefill reuses each dequantized panel for all tokens. The scale multiplies each finished dot product, over the
// block of outputs a thread has just written, instead of every weight: one product per output rather than per
// weight, and the kernels of matmul-inl.h stay untouched. Variants: only this one so far (no measurements yet).

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/cpu/matmul_fp8.cpp"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
#include "kernels/cpu/matmul-inl.h"

HWY_BEFORE_NAMESPACE();
namespace herd::kernels::HWY_NAMESPACE {

// E4M3 (fn) -> f32 for the lanes of d from the bytes at p (unaligned), exactly: sign S, exponent E (bias 7),
// mantissa M; E > 0: 2^(E-7) * (1 + M/8), placed into f32 by moving E.M to the top of the f32 exponent/mantissa
// and rebiasing (+120); E = 0: M * 2^-9 (a subnormal, converted as an integer so no f32 subnormal arises);
// S.1111.111 is NaN.
template <class D>
HWY_INLINE hn::Vec<D> LoadF8E4M3Vec(D d, const uint8_t* p) {
  const hn::RebindToUnsigned<D> du;
  const hn::RebindToSigned<D> di;
  const hn::Rebind<uint8_t, D> du8;
  const auto bits = hn::PromoteTo(du, hn::LoadU(du8, p));
  const auto sign = hn::ShiftLeft<24>(hn::And(bits, hn::Set(du, 0x80u)));
  const auto em = hn::BitCast(di, hn::And(bits, hn::Set(du, 0x7Fu)));  // E.M in [0, 127]
  const auto normal = hn::BitCast(du, hn::Add(hn::ShiftLeft<20>(em), hn::Set(di, 120 << 23)));
  const auto sub = hn::BitCast(du, hn::Mul(hn::ConvertTo(d, em), hn::Set(d, 1.0f / 512.0f)));
  auto mag = hn::IfThenElse(hn::RebindMask(du, hn::Lt(em, hn::Set(di, 8))), sub, normal);
  mag = hn::IfThenElse(hn::RebindMask(du, hn::Eq(em, hn::Set(di, 0x7F))), hn::Set(du, 0x7FC00000u), mag);
  return hn::BitCast(d, hn::Or(mag, sign));
}

struct SrcF8E4M3 {
  static constexpr bool kBlocked = false;
  static constexpr int64_t kElemBytes = 1;
  static constexpr int64_t kGroupBytes = kGroup;
  static HWY_INLINE void LoadGroup(const uint8_t* g, VW* w) {
    for (int64_t j = 0; j < kGroupVecs; ++j) w[j] = LoadF8E4M3Vec(DW(), g + j * kL);
  }
  static HWY_INLINE VW LoadVec(const uint8_t* p) { return LoadF8E4M3Vec(DW(), p); }
  // Tails decode with the same code, so a row's elements do not depend on where the vector loop ends.
  static HWY_INLINE float Scalar(const uint8_t* row, int64_t i) {
    return hn::GetLane(LoadF8E4M3Vec(hn::CappedTag<float, 1>(), row + i));
  }
};

void MatMulRowsF8T(const TensorView& w, const float* x, int64_t n_tokens, float* y, int64_t y_stride, int64_t o_begin,
                   int64_t o_end) {
  MatMulRowsSrc<SrcF8E4M3>(w, x, n_tokens, y, y_stride, o_begin, o_end);
}

void DequantizeRowF8T(const uint8_t* row, int64_t n, float* dst) { DequantRange<SrcF8E4M3>(row, 0, n, dst); }

void MatMulInputMajorF8T(const TensorView& w, int64_t c_begin, int64_t c_end, const float* x, int64_t n_tokens,
                         float* y, int64_t y_stride) {
  MatMulInputMajorSrc<SrcF8E4M3>(w, c_begin, c_end, x, n_tokens, y, y_stride);
}

}  // namespace herd::kernels::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include "kernels/cpu/parallel_grid.h"
#include "kernels/matmul.h"

namespace herd::kernels {

HWY_EXPORT(MatMulRowsF8T);
HWY_EXPORT(DequantizeRowF8T);
HWY_EXPORT(MatMulInputMajorF8T);

namespace {

// y[t * y_stride + o] *= scale[o] for t < n_tokens, o in [o_begin, o_end); nothing when scale is null.
void ScaleOutputs(const float* scale, int64_t n_tokens, float* y, int64_t y_stride, int64_t o_begin, int64_t o_end) {
  if (scale == nullptr) return;
  for (int64_t t = 0; t < n_tokens; ++t) {
    float* yt = y + t * y_stride;
    for (int64_t o = o_begin; o < o_end; ++o) yt[o] *= scale[o];
  }
}

}  // namespace

bool MatMulScaledSupports(DType t) { return MatMulSupports(t) || t == DType::kF8_E4M3; }

bool MatMulInputMajorScaledSupports(DType t) { return MatMulInputMajorSupports(t) || t == DType::kF8_E4M3; }

void MatMulRowsScaled(const TensorView& w, const float* row_scale, const float* x, int64_t n_tokens, float* y,
                      int64_t y_stride, int64_t o_begin, int64_t o_end) {
  HERD_DCHECK(MatMulScaledSupports(w.dtype) && 0 <= o_begin && o_begin <= o_end && o_end <= w.Rows());
  HERD_DCHECK(y_stride >= o_end);
  if (w.dtype != DType::kF8_E4M3) {
    MatMulRows(w, x, n_tokens, y, y_stride, o_begin, o_end);
  } else {
    if (n_tokens <= 0 || o_begin >= o_end) return;
    HWY_DYNAMIC_DISPATCH(MatMulRowsF8T)(w, x, n_tokens, y, y_stride, o_begin, o_end);
  }
  ScaleOutputs(row_scale, n_tokens, y, y_stride, o_begin, o_end);
}

void MatMulScaled(const TensorView& w, const float* row_scale, const float* x, int64_t n_tokens, float* y,
                  ThreadPool& pool) {
  HERD_DCHECK(MatMulScaledSupports(w.dtype));
  const int64_t n_out = w.Rows(), n_in = w.Cols();
  if (w.dtype != DType::kF8_E4M3) {
    MatMul(w, x, n_tokens, y, pool);
    ScaleOutputs(row_scale, n_tokens, y, n_out, 0, n_out);
    return;
  }
  if (n_tokens <= 0 || n_out <= 0) return;
  ParallelGrid(pool, n_out, n_tokens, [&](int64_t o0, int64_t o1, int64_t t0, int64_t t1) {
    HWY_DYNAMIC_DISPATCH(MatMulRowsF8T)(w, x + t0 * n_in, t1 - t0, y + t0 * n_out, n_out, o0, o1);
    ScaleOutputs(row_scale, t1 - t0, y + t0 * n_out, n_out, o0, o1);
  });
}

void DequantizeRowScaled(const TensorView& w, const float* row_scale, int64_t r, float* dst) {
  HERD_DCHECK(MatMulScaledSupports(w.dtype) && 0 <= r && r < w.Rows());
  const int64_t n = w.Cols();
  if (w.dtype != DType::kF8_E4M3) {
    DequantizeRow(w, r, dst);
  } else {
    HWY_DYNAMIC_DISPATCH(DequantizeRowF8T)(w.Row(r), n, dst);
  }
  if (row_scale == nullptr) return;
  const float s = row_scale[r];
  for (int64_t i = 0; i < n; ++i) dst[i] *= s;
}

void MatMulInputMajorScaled(const TensorView& w, const float* col_scale, int64_t col_begin, int64_t col_end,
                            const float* x, int64_t n_tokens, float* y, ThreadPool& pool) {
  HERD_DCHECK(MatMulInputMajorScaledSupports(w.dtype) && 0 <= col_begin && col_begin <= col_end && col_end <= w.Cols());
  const int64_t n_cols = col_end - col_begin, n_in = w.Rows();
  // The scale of output column c - col_begin is col_scale[c].
  const float* scale = col_scale == nullptr ? nullptr : col_scale + col_begin;
  if (w.dtype != DType::kF8_E4M3) {
    MatMulInputMajor(w, col_begin, col_end, x, n_tokens, y, pool);
    ScaleOutputs(scale, n_tokens, y, n_cols, 0, n_cols);
    return;
  }
  if (n_tokens <= 0 || n_cols <= 0) return;
  ParallelGrid(pool, n_cols, n_tokens, [&](int64_t c0, int64_t c1, int64_t t0, int64_t t1) {
    HWY_DYNAMIC_DISPATCH(MatMulInputMajorF8T)
    (w, col_begin + c0, col_begin + c1, x + t0 * n_in, t1 - t0, y + t0 * n_cols + c0, n_cols);
    ScaleOutputs(scale, t1 - t0, y + t0 * n_cols, n_cols, c0, c1);
  });
}

}  // namespace herd::kernels
#endif  // HWY_ONCE
