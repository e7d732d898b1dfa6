// Per-target (Highway) f32 vector ops: RMSNorm (llama4.md 2.3), dot, axpy, scale, softmax, SwiGLU, add and
// RoPE (2.5, 10.2). Included once per SIMD target by cpu/ops.cpp through foreach_target.h, and usable inline
// from other per-target kernels. Scalar twins: kernels/ref/ops.h, kernels/ref/rope.h.
//
// Tails shorter than a vector go through a padded stack vector when the op is not exact (exp), so every element
// sees the same formula; exact ops (add, scale) finish with a scalar loop.

// Per-target include guard (toggled by foreach_target.h), as in Highway's own -inl.h headers.
#if defined(HERD_KERNELS_CPU_OPS_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef HERD_KERNELS_CPU_OPS_INL_H_
#undef HERD_KERNELS_CPU_OPS_INL_H_
#else
#define HERD_KERNELS_CPU_OPS_INL_H_
#endif

#include <cmath>
#include <cstdint>
#include <cstring>

#include "hwy/contrib/math/math-inl.h"
#include "hwy/highway.h"
#include "kernels/rope.h"

HWY_BEFORE_NAMESPACE();
namespace herd::kernels::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// Largest vector of f32 on any target, for padded tails.
constexpr size_t kMaxLanesF32 = HWY_MAX_BYTES / sizeof(float);

// sum_i a[i] * b[i], f32 with four vector accumulators (summation depth about n / (4 * lanes) + log2(lanes)).
HWY_INLINE float DotF32(const float* HWY_RESTRICT a, const float* HWY_RESTRICT b, int64_t n) {
  const hn::ScalableTag<float> d;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  auto s0 = hn::Zero(d), s1 = hn::Zero(d), s2 = hn::Zero(d), s3 = hn::Zero(d);
  int64_t i = 0;
  for (; i + 4 * lanes <= n; i += 4 * lanes) {
    s0 = hn::MulAdd(hn::LoadU(d, a + i), hn::LoadU(d, b + i), s0);
    s1 = hn::MulAdd(hn::LoadU(d, a + i + lanes), hn::LoadU(d, b + i + lanes), s1);
    s2 = hn::MulAdd(hn::LoadU(d, a + i + 2 * lanes), hn::LoadU(d, b + i + 2 * lanes), s2);
    s3 = hn::MulAdd(hn::LoadU(d, a + i + 3 * lanes), hn::LoadU(d, b + i + 3 * lanes), s3);
  }
  for (; i + lanes <= n; i += lanes) s0 = hn::MulAdd(hn::LoadU(d, a + i), hn::LoadU(d, b + i), s0);
  s0 = hn::Add(hn::Add(s0, s1), hn::Add(s2, s3));
  float sum = hn::GetLane(hn::SumOfLanes(d, s0));
  for (; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

HWY_INLINE void RmsNormF32(const float* x, const float* weight, int64_t n, float eps, float* out) {
  if (n <= 0) return;
  const hn::ScalableTag<float> d;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  const float ss = DotF32(x, x, n);
  const float inv = 1.0f / std::sqrt(ss / static_cast<float>(n) + eps);
  const auto vinv = hn::Set(d, inv);
  int64_t i = 0;
  if (weight == nullptr) {
    for (; i + lanes <= n; i += lanes) hn::StoreU(hn::Mul(hn::LoadU(d, x + i), vinv), d, out + i);
    for (; i < n; ++i) out[i] = x[i] * inv;
  } else {
    for (; i + lanes <= n; i += lanes) {
      hn::StoreU(hn::Mul(hn::Mul(hn::LoadU(d, x + i), vinv), hn::LoadU(d, weight + i)), d, out + i);
    }
    for (; i < n; ++i) out[i] = (x[i] * inv) * weight[i];
  }
}

HWY_INLINE void AxpyF32(float alpha, const float* HWY_RESTRICT x, float* HWY_RESTRICT y, int64_t n) {
  const hn::ScalableTag<float> d;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  const auto va = hn::Set(d, alpha);
  int64_t i = 0;
  for (; i + lanes <= n; i += lanes) hn::StoreU(hn::MulAdd(va, hn::LoadU(d, x + i), hn::LoadU(d, y + i)), d, y + i);
  for (; i < n; ++i) y[i] += alpha * x[i];
}

HWY_INLINE void ScaleF32(float* x, float s, int64_t n) {
  const hn::ScalableTag<float> d;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  const auto vs = hn::Set(d, s);
  int64_t i = 0;
  for (; i + lanes <= n; i += lanes) hn::StoreU(hn::Mul(hn::LoadU(d, x + i), vs), d, x + i);
  for (; i < n; ++i) x[i] *= s;
}

HWY_INLINE void AddF32(const float* a, const float* b, float* out, int64_t n) {
  const hn::ScalableTag<float> d;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  int64_t i = 0;
  for (; i + lanes <= n; i += lanes) hn::StoreU(hn::Add(hn::LoadU(d, a + i), hn::LoadU(d, b + i)), d, out + i);
  for (; i < n; ++i) out[i] = a[i] + b[i];
}

// IEEE binary16 bits of each f32 lane, as herd::F32ToF16 (core/half.cpp) computes them, in integer steps that no
// rounding mode or F16C conversion affects: round to nearest even, magnitudes from 65520 on to infinity, results
// below 2^-14 subnormal (the value times 2^24 rounded to an integer), NaN to the quiet NaN 0x7e00 with its sign.
template <class D>
HWY_INLINE hn::Vec<hn::RebindToSigned<D>> F16BitsOf(D d, hn::Vec<D> v) {
  const hn::RebindToSigned<D> di;
  const auto bits = hn::BitCast(di, v);
  const auto abs = hn::And(bits, hn::Set(di, 0x7fffffff));
  const auto sign = hn::And(hn::ShiftRight<16>(bits), hn::Set(di, 0x8000));
  // Normal: the exponent rebiased (127 -> 15) and the 23-bit mantissa rounded to 10 bits, half to even (a carry
  // into the exponent is the correct result).
  const auto lsb = hn::And(hn::ShiftRight<13>(abs), hn::Set(di, 1));
  const auto normal =
      hn::ShiftRight<13>(hn::Add(hn::Sub(abs, hn::Set(di, 112 << 23)), hn::Add(hn::Set(di, 0xfff), lsb)));
  // Subnormal or zero: units of 2^-24, rounded to nearest even (exact products, so NearestInt's one rounding).
  // (Only such lanes are converted: the others are 0 here, so no conversion is ever out of the integer range.)
  const auto is_sub = hn::Lt(abs, hn::Set(di, 0x38800000));
  const auto sub = hn::NearestInt(hn::Mul(hn::BitCast(d, hn::IfThenElseZero(is_sub, abs)), hn::Set(d, 16777216.0f)));
  auto h = hn::IfThenElse(is_sub, sub, normal);
  h = hn::IfThenElse(hn::Lt(abs, hn::Set(di, 0x477ff000)), h, hn::Set(di, 0x7c00));
  h = hn::IfThenElse(hn::Gt(abs, hn::Set(di, 0x7f800000)), hn::Set(di, 0x7e00), h);
  return hn::Or(h, sign);
}

// out (2n bytes, any alignment) = the binary16 bits of x[0, n) (F16BitsOf); the tail through a zero-padded stack
// vector, so every element takes the vector code.
HWY_INLINE void F32ToF16RowF32(const float* x, int64_t n, uint8_t* out) {
  const hn::ScalableTag<float> d;
  const hn::RebindToSigned<decltype(d)> di;
  const hn::Rebind<uint16_t, decltype(di)> d16;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  HWY_ALIGN uint16_t h[kMaxLanesF32];
  int64_t i = 0;
  for (; i + lanes <= n; i += lanes) {
    hn::Store(hn::DemoteTo(d16, F16BitsOf(d, hn::LoadU(d, x + i))), d16, h);  // 0..0xffff: exact
    std::memcpy(out + 2 * i, h, static_cast<size_t>(lanes) * 2);
  }
  if (i < n) {
    HWY_ALIGN float buf[kMaxLanesF32];
    for (int64_t j = 0; j < lanes; ++j) buf[j] = i + j < n ? x[i + j] : 0.0f;
    hn::Store(hn::DemoteTo(d16, F16BitsOf(d, hn::Load(d, buf))), d16, h);
    std::memcpy(out + 2 * i, h, static_cast<size_t>(n - i) * 2);
  }
}

// Applies `fn(vector) -> vector` to x[0, n) into out[0, n) (out may equal x); the tail goes through a stack
// vector padded with `pad`, so every element is computed by the same vector code.
template <class D, class Fn>
HWY_INLINE void MapF32(D d, const float* x, float* out, int64_t n, float pad, const Fn& fn) {
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  int64_t i = 0;
  for (; i + lanes <= n; i += lanes) hn::StoreU(fn(hn::LoadU(d, x + i)), d, out + i);
  if (i < n) {
    HWY_ALIGN float buf[kMaxLanesF32];
    for (int64_t j = 0; j < lanes; ++j) buf[j] = i + j < n ? x[i + j] : pad;
    hn::Store(fn(hn::Load(d, buf)), d, buf);
    std::memcpy(out + i, buf, static_cast<size_t>(n - i) * sizeof(float));
  }
}

HWY_INLINE void SoftmaxInPlaceF32(float* x, int64_t n) {
  if (n <= 0) return;
  const hn::ScalableTag<float> d;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  auto vmax = hn::Set(d, -HUGE_VALF);
  int64_t i = 0;
  for (; i + lanes <= n; i += lanes) vmax = hn::Max(vmax, hn::LoadU(d, x + i));
  float m = hn::GetLane(hn::MaxOfLanes(d, vmax));
  for (; i < n; ++i) m = x[i] > m ? x[i] : m;
  const auto vm = hn::Set(d, m);
  auto vsum = hn::Zero(d);
  // exp(x - m) with x - m <= 0; -inf becomes 0 (Exp's lower bound), and the padding (-inf) adds nothing.
  MapF32(d, x, x, n, -HUGE_VALF, [&](decltype(vm) v) {
    const auto e = hn::Exp(d, hn::Sub(v, vm));
    vsum = hn::Add(vsum, e);
    return e;
  });
  const float inv = 1.0f / hn::GetLane(hn::SumOfLanes(d, vsum));
  ScaleF32(x, inv, n);
}

HWY_INLINE void SwiGLUF32(const float* gate, const float* up, float* out, int64_t n) {
  const hn::ScalableTag<float> d;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  const auto one = hn::Set(d, 1.0f);
  // Exp is valid up to +104 (hwy/contrib/math); beyond 88.7 it already overflows to +inf, so silu -> -0.
  const auto limit = hn::Set(d, 104.0f);
  const auto silu = [&](decltype(one) g) {
    return hn::Div(g, hn::Add(one, hn::Exp(d, hn::Min(hn::Neg(g), limit))));
  };
  int64_t i = 0;
  for (; i + lanes <= n; i += lanes) {
    hn::StoreU(hn::Mul(silu(hn::LoadU(d, gate + i)), hn::LoadU(d, up + i)), d, out + i);
  }
  if (i < n) {
    HWY_ALIGN float g[kMaxLanesF32];
    HWY_ALIGN float u[kMaxLanesF32];
    for (int64_t j = 0; j < lanes; ++j) {
      g[j] = i + j < n ? gate[i + j] : 0.0f;
      u[j] = i + j < n ? up[i + j] : 0.0f;
    }
    hn::Store(hn::Mul(silu(hn::Load(d, g)), hn::Load(d, u)), d, g);
    std::memcpy(out + i, g, static_cast<size_t>(n - i) * sizeof(float));
  }
}

// Pair (2i, 2i+1) rotated by (cos[i], sin[i]). Works in the interleaved layout: with c2 = (c0, c0, c1, c1, ...)
// and s2 likewise, x' = x * c2 + swap_pairs(x) * (-s2, s2, -s2, ...).
HWY_INLINE void RopeInterleavedF32(float* x, int64_t head_dim, const float* cos, const float* sin) {
  int64_t i = 0;  // element index (even)
#if HWY_TARGET != HWY_SCALAR
  const hn::ScalableTag<float> d;
  const hn::RebindToUnsigned<decltype(d)> du;
  const hn::Repartition<uint64_t, decltype(d)> du64;
  const hn::Rebind<float, decltype(du64)> dh;  // half as many f32 lanes
  const hn::RebindToUnsigned<decltype(dh)> duh;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  // Duplicates each of lanes/2 floats into both halves of a 64-bit lane: (v0, v0, v1, v1, ...).
  const auto dup = [&](const float* p) {
    const auto w = hn::PromoteTo(du64, hn::BitCast(duh, hn::LoadU(dh, p)));
    return hn::BitCast(d, hn::Or(w, hn::ShiftLeft<32>(w)));
  };
  const auto sign_even = hn::BitCast(d, hn::Set(du64, 0x80000000ull));  // flips lanes 0, 2, 4, ...
  for (; i + lanes <= head_dim; i += lanes) {
    const auto v = hn::LoadU(d, x + i);
    const auto c2 = dup(cos + i / 2);
    const auto s2 = hn::Xor(dup(sin + i / 2), sign_even);
    hn::StoreU(hn::MulAdd(v, c2, hn::Mul(hn::Shuffle2301(v), s2)), d, x + i);
  }
  (void)du;
#endif
  for (; i + 1 < head_dim; i += 2) {
    const float a = x[i], b = x[i + 1], c = cos[i / 2], s = sin[i / 2];
    x[i] = a * c - b * s;
    x[i + 1] = a * s + b * c;
  }
}

HWY_INLINE void RopeHalfSplitF32(float* x, int64_t head_dim, const float* cos, const float* sin) {
  const hn::ScalableTag<float> d;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  const int64_t half = head_dim / 2;
  float* xa = x;
  float* xb = x + half;
  int64_t i = 0;
  for (; i + lanes <= half; i += lanes) {
    const auto a = hn::LoadU(d, xa + i), b = hn::LoadU(d, xb + i);
    const auto c = hn::LoadU(d, cos + i), s = hn::LoadU(d, sin + i);
    hn::StoreU(hn::MulSub(a, c, hn::Mul(b, s)), d, xa + i);
    hn::StoreU(hn::MulAdd(a, s, hn::Mul(b, c)), d, xb + i);
  }
  for (; i < half; ++i) {
    const float a = xa[i], b = xb[i];
    xa[i] = a * cos[i] - b * sin[i];
    xb[i] = a * sin[i] + b * cos[i];
  }
}

}  // namespace herd::kernels::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#endif  // HERD_KERNELS_CPU_OPS_INL_H_
