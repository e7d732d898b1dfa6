// The vision tower's ops (kernels/vision_ops.h, llama4.md 9.3-9.6). LayerNorm and GELU are compiled once per Highway
// target through foreach_target.h and dispatched to the best one; the RoPE table, the unfold and the pixel shuffle are
// plain loops (HWY_ONCE part), as the header explains.

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/cpu/vision_ops.cpp"
#include "hwy/foreach_target.h"  // IWYU pragma: keep

// (foreach_target.h stays first, in its own include block: it re-includes this file once per target.)
#include <cmath>
#include <cstdint>

#include "hwy/contrib/math/math-inl.h"
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace herd::kernels::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// sum_i f(x[i]) for f(v) = v (square = false) or (v - c)^2 (square = true), with four vector accumulators.
template <bool kSquare>
HWY_INLINE float SumF32(const float* x, int64_t n, float c) {
  const hn::ScalableTag<float> d;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  const auto vc = hn::Set(d, c);
  const auto term = [&](int64_t i, decltype(vc) acc) {
    const auto v = hn::LoadU(d, x + i);
    if constexpr (kSquare) {
      const auto centred = hn::Sub(v, vc);
      return hn::MulAdd(centred, centred, acc);
    } else {
      return hn::Add(v, acc);
    }
  };
  auto s0 = hn::Zero(d), s1 = hn::Zero(d), s2 = hn::Zero(d), s3 = hn::Zero(d);
  int64_t i = 0;
  for (; i + 4 * lanes <= n; i += 4 * lanes) {
    s0 = term(i, s0);
    s1 = term(i + lanes, s1);
    s2 = term(i + 2 * lanes, s2);
    s3 = term(i + 3 * lanes, s3);
  }
  for (; i + lanes <= n; i += lanes) s0 = term(i, s0);
  float sum = hn::GetLane(hn::SumOfLanes(d, hn::Add(hn::Add(s0, s1), hn::Add(s2, s3))));
  for (; i < n; ++i) sum += kSquare ? (x[i] - c) * (x[i] - c) : x[i];
  return sum;
}

void LayerNormT(const float* x, const float* weight, const float* bias, int64_t n, float eps, float* out) {
  const hn::ScalableTag<float> d;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  const float mean = SumF32<false>(x, n, 0.0f) / static_cast<float>(n);
  const float var = SumF32<true>(x, n, mean) / static_cast<float>(n);
  const float inv = 1.0f / std::sqrt(var + eps);
  const auto vmean = hn::Set(d, mean), vinv = hn::Set(d, inv);
  int64_t i = 0;
  for (; i + lanes <= n; i += lanes) {
    const auto normed = hn::Mul(hn::Sub(hn::LoadU(d, x + i), vmean), vinv);
    hn::StoreU(hn::MulAdd(normed, hn::LoadU(d, weight + i), hn::LoadU(d, bias + i)), d, out + i);
  }
  for (; i < n; ++i) out[i] = (x[i] - mean) * inv * weight[i] + bias[i];
}

// GELU through erfc: with y = x / sqrt 2 and c = erfc(|y|), 1 + erf(y) is 2 - c for y >= 0 and c for y < 0, so the
// negative tail keeps its relative accuracy (no 1 + erf cancellation). erfc(z) = t exp(-z^2 + P(t)), t = 1 / (1 +
// z / 2), with the degree-9 Chebyshev-fitted P of Numerical Recipes' erfcc (fractional error below 1.2e-7 for every
// z >= 0), in f32.
void GeluErfT(const float* x, float* out, int64_t n) {
  const hn::ScalableTag<float> d;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  const auto one = hn::Set(d, 1.0f), two = hn::Set(d, 2.0f), half = hn::Set(d, 0.5f);
  const auto inv_sqrt2 = hn::Set(d, 0.70710678118654752f);
  constexpr float kP[10] = {-1.26551223f, 1.00002368f,  0.37409196f, 0.09678418f,  -0.18628806f,
                            0.27886807f,  -1.13520398f, 1.48851587f, -0.82215223f, 0.17087277f};
  const auto gelu = [&](hn::Vec<decltype(d)> v) {
    const auto y = hn::Mul(v, inv_sqrt2);
    const auto z = hn::Abs(y);
    const auto t = hn::Div(one, hn::MulAdd(z, half, one));
    auto p = hn::Set(d, kP[9]);
    for (int k = 8; k >= 0; --k) p = hn::MulAdd(p, t, hn::Set(d, kP[k]));
    const auto c = hn::Mul(t, hn::Exp(d, hn::Sub(p, hn::Mul(z, z))));
    const auto one_plus_erf = hn::IfThenElse(hn::Lt(y, hn::Zero(d)), c, hn::Sub(two, c));
    return hn::Mul(hn::Mul(half, v), one_plus_erf);
  };
  int64_t i = 0;
  for (; i + lanes <= n; i += lanes) hn::StoreU(gelu(hn::LoadU(d, x + i)), d, out + i);
  if (i < n) {
    HWY_ALIGN float buf[hn::MaxLanes(d)] = {};
    for (int64_t k = i; k < n; ++k) buf[k - i] = x[k];
    hn::Store(gelu(hn::Load(d, buf)), d, buf);
    for (int64_t k = i; k < n; ++k) out[k] = buf[k - i];
  }
}

}  // namespace herd::kernels::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include <cstring>

#include "kernels/rope.h"
#include "kernels/vision_ops.h"

namespace herd::kernels {

HWY_EXPORT(LayerNormT);
HWY_EXPORT(GeluErfT);

void LayerNorm(const float* x, const float* weight, const float* bias, int64_t n, float eps, float* out) {
  HWY_DYNAMIC_DISPATCH(LayerNormT)(x, weight, bias, n, eps, out);
}

void GeluErf(const float* x, float* out, int64_t n) { HWY_DYNAMIC_DISPATCH(GeluErfT)(x, out, n); }

void VisionRopeTable(int64_t grid, int64_t head_dim, float theta, float* cos, float* sin) {
  const int64_t half = head_dim / 2, quarter = head_dim / 4, n_patches = grid * grid;
  // The frequencies live in the CLS row's sines until that row is filled last (nothing is allocated).
  float* inv = sin + n_patches * half;
  for (int64_t k = 0; k < quarter; ++k) {
    const float expo = static_cast<float>(2 * k) / static_cast<float>(half);  // fp32, as HF and Meta
    inv[k] = 1.0f / std::pow(theta, expo);
  }
  for (int64_t p = 0; p < n_patches; ++p) {
    RopeCosSin(inv, quarter, p % grid + 1, cos + p * half, sin + p * half);                      // column x
    RopeCosSin(inv, quarter, p / grid + 1, cos + p * half + quarter, sin + p * half + quarter);  // row y
  }
  for (int64_t i = 0; i < half; ++i) {
    cos[n_patches * half + i] = 1.0f;
    sin[n_patches * half + i] = 0.0f;
  }
}

void UnfoldPatches(const float* pixels, int64_t channels, int64_t image_size, int64_t patch_size, float* patches) {
  const int64_t grid = image_size / patch_size, patch_floats = channels * patch_size * patch_size;
  for (int64_t a = 0; a < grid; ++a) {
    for (int64_t b = 0; b < grid; ++b) {
      float* dst = patches + (grid * a + b) * patch_floats;
      for (int64_t c = 0; c < channels; ++c) {
        for (int64_t ky = 0; ky < patch_size; ++ky) {
          const float* src = pixels + (c * image_size + patch_size * a + ky) * image_size + patch_size * b;
          std::memcpy(dst + (c * patch_size + ky) * patch_size, src, static_cast<size_t>(patch_size) * sizeof(float));
        }
      }
    }
  }
}

void PixelShuffle(const float* x, int64_t grid, int64_t channels, int64_t factor, float* out) {
  const int64_t out_grid = grid / factor;
  for (int64_t i = 0; i < out_grid; ++i) {
    for (int64_t j = 0; j < out_grid; ++j) {
      float* dst = out + (out_grid * i + j) * factor * factor * channels;
      for (int64_t a = 0; a < factor; ++a) {
        for (int64_t b = 0; b < factor; ++b) {
          const float* src = x + (grid * (factor * i + a) + factor * j + b) * channels;
          std::memcpy(dst + (factor * a + b) * channels, src, static_cast<size_t>(channels) * sizeof(float));
        }
      }
    }
  }
}

}  // namespace herd::kernels
#endif  // HWY_ONCE
