// Scalar reference vision ops in double (llama4.md 9.3-9.6).
#include "kernels/ref/vision_ops.h"

#include <cmath>
#include <vector>

namespace herd::kernels::ref {

void LayerNorm(const float* x, const float* weight, const float* bias, int64_t n, float eps, float* out) {
  double mean = 0.0;
  for (int64_t i = 0; i < n; ++i) mean += x[i];
  mean /= static_cast<double>(n);
  double var = 0.0;
  for (int64_t i = 0; i < n; ++i) var += (x[i] - mean) * (x[i] - mean);
  var /= static_cast<double>(n);
  const double inv = 1.0 / std::sqrt(var + static_cast<double>(eps));
  for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>((x[i] - mean) * inv * weight[i] + bias[i]);
}

void GeluErf(const float* x, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const double v = x[i];
    out[i] = static_cast<float>(0.5 * v * (1.0 + std::erf(v / std::sqrt(2.0))));
  }
}

void VisionRope(float* x, int64_t head_dim, int64_t grid, double theta, int64_t token) {
  if (token == grid * grid) return;  // CLS: every angle 0
  const int64_t quarter = head_dim / 4;
  const double pos[2] = {static_cast<double>(token % grid + 1), static_cast<double>(token / grid + 1)};
  for (int64_t m = 0; m < head_dim / 2; ++m) {
    const int64_t k = m % quarter;
    const double angle = pos[m / quarter] / std::pow(theta, static_cast<double>(4 * k) / static_cast<double>(head_dim));
    const double a = x[2 * m], b = x[2 * m + 1], c = std::cos(angle), s = std::sin(angle);
    x[2 * m] = static_cast<float>(a * c - b * s);
    x[2 * m + 1] = static_cast<float>(a * s + b * c);
  }
}

void UnfoldPatches(const float* pixels, int64_t channels, int64_t image_size, int64_t patch_size, float* patches) {
  const int64_t grid = image_size / patch_size, pp = patch_size * patch_size;
  for (int64_t p = 0; p < grid * grid; ++p) {
    const int64_t a = p / grid, b = p % grid;
    for (int64_t e = 0; e < channels * pp; ++e) {
      const int64_t c = e / pp, ky = e % pp / patch_size, kx = e % patch_size;
      patches[p * channels * pp + e] =
          pixels[(c * image_size + patch_size * a + ky) * image_size + patch_size * b + kx];
    }
  }
}

void PixelShuffle(const float* x, int64_t grid, int64_t channels, int64_t factor, float* out) {
  // x as [H, W, C] (H = W = grid), viewed as [H, W/s, C*s]; permuted to t2 [W/s, H, C*s]; viewed as
  // [W/s, H/s, C*s*s]; permuted to out [H/s, W/s, C*s*s] (Meta vision/embedding.py pixel_shuffle_op, s = factor).
  const int64_t h = grid, ws = grid / factor, cs = channels * factor, hs = grid / factor, css = cs * factor;
  std::vector<float> t2(static_cast<size_t>(grid * grid * channels));
  for (int64_t w = 0; w < ws; ++w) {
    for (int64_t r = 0; r < h; ++r) {
      for (int64_t k = 0; k < cs; ++k) t2[(w * h + r) * cs + k] = x[(r * ws + w) * cs + k];
    }
  }
  for (int64_t i = 0; i < hs; ++i) {
    for (int64_t w = 0; w < ws; ++w) {
      for (int64_t m = 0; m < css; ++m) out[(i * ws + w) * css + m] = t2[(w * hs + i) * css + m];
    }
  }
}

}  // namespace herd::kernels::ref
