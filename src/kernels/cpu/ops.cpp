// Dispatch of the f32 vector ops (kernels/ops.h) and RoPE (kernels/rope.h) to the best Highway target.
// The per-target code is cpu/ops-inl.h; this file is compiled once per target through foreach_target.h.

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/cpu/ops.cpp"
#include "hwy/foreach_target.h"  // IWYU pragma: keep

#include "hwy/highway.h"
#include "kernels/cpu/ops-inl.h"

HWY_BEFORE_NAMESPACE();
namespace herd::kernels::HWY_NAMESPACE {

void RmsNormT(const float* x, const float* weight, int64_t n, float eps, float* out) {
  RmsNormF32(x, weight, n, eps, out);
}
float DotT(const float* a, const float* b, int64_t n) { return DotF32(a, b, n); }
void AxpyT(float alpha, const float* x, float* y, int64_t n) { AxpyF32(alpha, x, y, n); }
void ScaleT(float* x, float s, int64_t n) { ScaleF32(x, s, n); }
void SoftmaxInPlaceT(float* x, int64_t n) { SoftmaxInPlaceF32(x, n); }
void SwiGLUT(const float* gate, const float* up, float* out, int64_t n) { SwiGLUF32(gate, up, out, n); }
void AddT(const float* a, const float* b, float* out, int64_t n) { AddF32(a, b, out, n); }
void F32ToF16RowT(const float* x, int64_t n, uint8_t* out) { F32ToF16RowF32(x, n, out); }
void RopeT(float* x, int64_t head_dim, const float* cos, const float* sin, RopeStyle style) {
  if (style == RopeStyle::kInterleaved) {
    RopeInterleavedF32(x, head_dim, cos, sin);
  } else {
    RopeHalfSplitF32(x, head_dim, cos, sin);
  }
}

}  // namespace herd::kernels::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include "kernels/ops.h"
#include "kernels/rope.h"

namespace herd::kernels {

HWY_EXPORT(RmsNormT);
HWY_EXPORT(DotT);
HWY_EXPORT(AxpyT);
HWY_EXPORT(ScaleT);
HWY_EXPORT(SoftmaxInPlaceT);
HWY_EXPORT(SwiGLUT);
HWY_EXPORT(AddT);
HWY_EXPORT(F32ToF16RowT);
HWY_EXPORT(RopeT);

void RmsNorm(const float* x, const float* weight, int64_t n, float eps, float* out) {
  HWY_DYNAMIC_DISPATCH(RmsNormT)(x, weight, n, eps, out);
}
float Dot(const float* a, const float* b, int64_t n) { return HWY_DYNAMIC_DISPATCH(DotT)(a, b, n); }
void Axpy(float alpha, const float* x, float* y, int64_t n) { HWY_DYNAMIC_DISPATCH(AxpyT)(alpha, x, y, n); }
void Scale(float* x, float s, int64_t n) { HWY_DYNAMIC_DISPATCH(ScaleT)(x, s, n); }
void SoftmaxInPlace(float* x, int64_t n) { HWY_DYNAMIC_DISPATCH(SoftmaxInPlaceT)(x, n); }
void SwiGLU(const float* gate, const float* up, float* out, int64_t n) {
  HWY_DYNAMIC_DISPATCH(SwiGLUT)(gate, up, out, n);
}
void Add(const float* a, const float* b, float* out, int64_t n) { HWY_DYNAMIC_DISPATCH(AddT)(a, b, out, n); }
void F32ToF16Row(const float* x, int64_t n, uint8_t* out) { HWY_DYNAMIC_DISPATCH(F32ToF16RowT)(x, n, out); }
void Rope(float* x, int64_t head_dim, const float* cos, const float* sin, RopeStyle style) {
  HWY_DYNAMIC_DISPATCH(RopeT)(x, head_dim, cos, sin, style);
}

}  // namespace herd::kernels
#endif  // HWY_ONCE
