// ResizeBilinear: Pillow 9.4's 8-bit two-pass resampling with the bilinear filter (libImaging/Resample.c:
// precompute_coeffs, normalize_coeffs_8bpc, ImagingResampleHorizontal/Vertical_8bpc, ImagingResampleInner),
// reimplemented; every double operation is written in Pillow's order so the rounding is the same.
#include <algorithm>
#include <cmath>
#include <deque>
#include <vector>

#include "vision/preprocess.h"

namespace herd::vision {
namespace {

// Pillow keeps 8 bits for the result and 2 for overflow in an int32 accumulator.
constexpr int kPrecisionBits = 32 - 8 - 2;

double TriangleFilter(double x) {
  if (x < 0.0) x = -x;
  return x < 1.0 ? 1.0 - x : 0.0;
}

// The taps of one pass: output pixel i reads count[i] input pixels from first[i] with the weights at
// weights[offset[i]...], in kPrecisionBits fixed point. Pillow stores n_taps = 2 ceil(support) + 1 weights per
// output; only the used ones are kept here, so a large downscale costs about twice the input size, not
// input x output.
struct Taps {
  std::vector<int64_t> first, count, offset;  // [out_size]
  std::vector<int32_t> weights;
};

Taps ComputeTaps(int64_t in_size, int64_t out_size) {
  // Pillow's box is floats: the input extent is float(in_size), exact below 2^24.
  const double scale = static_cast<double>(static_cast<float>(in_size)) / static_cast<double>(out_size);
  const double filter_scale = std::max(scale, 1.0);  // antialiasing: widen the filter when downscaling
  const double support = 1.0 * filter_scale;         // the triangle filter's support is 1
  const double inv_filter_scale = 1.0 / filter_scale;
  Taps t;
  t.first.resize(out_size);
  t.count.resize(out_size);
  t.offset.resize(out_size);
  std::vector<double> w(static_cast<size_t>(std::ceil(support)) * 2 + 1);
  for (int64_t i = 0; i < out_size; ++i) {
    const double center = (static_cast<double>(i) + 0.5) * scale;
    // (int) truncation, then clamping, as Pillow rounds the bounds.
    const int64_t lo = std::max<int64_t>(static_cast<int64_t>(center - support + 0.5), 0);
    const int64_t hi = std::min<int64_t>(static_cast<int64_t>(center + support + 0.5), in_size);
    const int64_t n = hi - lo;
    double sum = 0.0;
    for (int64_t x = 0; x < n; ++x) {
      w[x] = TriangleFilter((static_cast<double>(x + lo) - center + 0.5) * inv_filter_scale);
      sum += w[x];
    }
    t.first[i] = lo;
    t.count[i] = n;
    t.offset[i] = static_cast<int64_t>(t.weights.size());
    for (int64_t x = 0; x < n; ++x) {
      if (sum != 0.0) w[x] /= sum;
      const double fixed = w[x] * (1 << kPrecisionBits);
      t.weights.push_back(static_cast<int32_t>(w[x] < 0 ? -0.5 + fixed : 0.5 + fixed));
    }
  }
  return t;
}

uint8_t Clip8(int32_t acc) { return static_cast<uint8_t>(std::clamp(acc >> kPrecisionBits, 0, 255)); }

// One row of n_in pixels resampled horizontally through `t` into out [t.count.size(), 3].
void ResampleRow(const uint8_t* in, const Taps& t, uint8_t* out) {
  for (size_t x = 0; x < t.count.size(); ++x) {
    const int32_t* k = t.weights.data() + t.offset[x];
    const uint8_t* p = in + t.first[x] * 3;
    int32_t acc[3] = {1 << (kPrecisionBits - 1), 1 << (kPrecisionBits - 1), 1 << (kPrecisionBits - 1)};
    for (int64_t j = 0; j < t.count[x]; ++j) {
      for (int c = 0; c < 3; ++c) acc[c] += p[j * 3 + c] * k[j];
    }
    for (int c = 0; c < 3; ++c) out[x * 3 + c] = Clip8(acc[c]);
  }
}

}  // namespace

// Pillow runs the horizontal pass over all the rows the vertical pass reads, into a full intermediate image, then
// the vertical pass. Here each intermediate row is made once and added at once into every output row whose window
// holds it (integer sums: the order does not matter), and an output row is written when its window is complete.
// Same bytes, but memory for the rows in flight only: a 1 x 2^26 image resized to 336 x 336 would otherwise need
// a 336 x 2^26 intermediate.
Image ResizeBilinear(const Image& src, int64_t width, int64_t height) {
  HERD_CHECK(src.width >= 1 && src.height >= 1 && static_cast<int64_t>(src.rgb.size()) == src.width * src.height * 3);
  HERD_CHECK(width >= 1 && height >= 1);
  const bool need_horizontal = width != src.width;
  const bool need_vertical = height != src.height;
  if (!need_horizontal && !need_vertical) return src;
  Image out{.width = width, .height = height, .rgb = std::vector<uint8_t>(width * height * 3)};
  const int64_t row_bytes = width * 3;
  const Taps horizontal = need_horizontal ? ComputeTaps(src.width, width) : Taps{};
  if (!need_vertical) {
    for (int64_t y = 0; y < height; ++y) {
      ResampleRow(src.rgb.data() + y * src.width * 3, horizontal, out.rgb.data() + y * row_bytes);
    }
    return out;
  }
  const Taps vertical = ComputeTaps(src.height, height);
  std::vector<uint8_t> line(need_horizontal ? row_bytes : 0);
  // Output rows [y_done, y_next) have started and not finished; windows only move forward.
  std::deque<std::vector<int32_t>> sums;
  int64_t y_done = 0, y_next = 0;
  const int64_t row_end = vertical.first[height - 1] + vertical.count[height - 1];
  for (int64_t r = vertical.first[0]; r < row_end; ++r) {
    const uint8_t* in = src.rgb.data() + r * src.width * 3;
    if (need_horizontal) {
      ResampleRow(in, horizontal, line.data());
      in = line.data();
    }
    for (; y_next < height && vertical.first[y_next] <= r; ++y_next)
      sums.emplace_back(row_bytes, 1 << (kPrecisionBits - 1));
    for (int64_t y = y_done; y < y_next; ++y) {
      const int64_t j = r - vertical.first[y];
      if (j >= vertical.count[y]) continue;
      const int32_t k = vertical.weights[vertical.offset[y] + j];
      int32_t* acc = sums[y - y_done].data();
      for (int64_t i = 0; i < row_bytes; ++i) acc[i] += in[i] * k;
    }
    for (; y_done < y_next && vertical.first[y_done] + vertical.count[y_done] <= r + 1; ++y_done) {
      uint8_t* o = out.rgb.data() + y_done * row_bytes;
      for (int64_t i = 0; i < row_bytes; ++i) o[i] = Clip8(sums.front()[i]);
      sums.pop_front();
    }
  }
  HERD_DCHECK(y_done == height);
  return out;
}

}  // namespace herd::vision
