// Tiling, resize target, normalisation and token layout of Llama 4 images (llama4.md 9.2, 8.4), following Meta's
// preprocess.py and chat_format.py; the resize itself is in resize.cpp.
#include "vision/preprocess.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <map>
#include <numeric>
#include <optional>
#include <string>
#include <utility>

namespace herd::vision {
namespace {

// Meta's find_supported_resolutions: for c = max_chunks .. 1, each divisor f of c ascending gives (f, c / f),
// grouped by the ratio f / (c / f) in the order the ratios first appear. get_best_fit reads the first element as
// the width, so the pair is (cols, rows).
std::vector<TileGrid> CandidateGrids(int64_t max_chunks) {
  std::vector<std::vector<TileGrid>> groups;
  std::map<std::pair<int64_t, int64_t>, size_t> group_idx;  // reduced ratio f : c / f -> index in groups
  for (int64_t c = max_chunks; c >= 1; --c) {
    for (int64_t f = 1; f <= c; ++f) {
      if (c % f != 0) continue;
      const int64_t g = std::gcd(f, c / f);
      const auto [it, added] = group_idx.try_emplace({f / g, c / f / g}, groups.size());
      if (added) groups.emplace_back();
      groups[it->second].push_back(TileGrid{.rows = c / f, .cols = f});
    }
  }
  std::vector<TileGrid> grids;
  for (const auto& group : groups) grids.insert(grids.end(), group.begin(), group.end());
  return grids;
}

}  // namespace

TileGrid BestCanvas(int64_t width, int64_t height, int64_t tile_size, int64_t max_chunks) {
  HERD_CHECK(width >= 1 && height >= 1 && tile_size >= 1 && max_chunks >= 1);
  const std::vector<TileGrid> grids = CandidateGrids(max_chunks);
  // The reference divides int64 tensors by Python ints: float32 quotients of float32-rounded operands.
  std::vector<float> scales;
  for (const TileGrid& g : grids) {
    const float scale_w = static_cast<float>(g.cols * tile_size) / static_cast<float>(width);
    const float scale_h = static_cast<float>(g.rows * tile_size) / static_cast<float>(height);
    scales.push_back(scale_w > scale_h ? scale_h : scale_w);
  }
  // The smallest scale of at least 1 (the least upscaling) if there is one, else the largest (the least
  // downscaling).
  bool any_up = false;
  float chosen = 0.0f;
  for (float s : scales) {
    if (s >= 1.0f && (!any_up || s < chosen)) {
      chosen = s;
      any_up = true;
    }
  }
  if (!any_up) chosen = *std::max_element(scales.begin(), scales.end());
  // Of the canvases with exactly that scale, the first of the smallest area.
  TileGrid best{.rows = 0, .cols = 0};
  for (size_t i = 0; i < grids.size(); ++i) {
    if (scales[i] != chosen) continue;
    if (best.rows == 0 || grids[i].rows * grids[i].cols < best.rows * best.cols) best = grids[i];
  }
  return best;
}

ImageSize ResizeTarget(int64_t width, int64_t height, const TileGrid& grid, int64_t tile_size) {
  HERD_CHECK(width >= 1 && height >= 1 && grid.rows >= 1 && grid.cols >= 1 && tile_size >= 1);
  const int64_t target_w = std::min(std::max(width, tile_size), grid.cols * tile_size);
  const int64_t target_h = std::min(std::max(height, tile_size), grid.rows * tile_size);
  const double scale_w = static_cast<double>(target_w) / static_cast<double>(width);
  const double scale_h = static_cast<double>(target_h) / static_cast<double>(height);
  ImageSize size;
  if (scale_w < scale_h) {
    size.width = target_w;
    size.height = std::min(static_cast<int64_t>(std::floor(static_cast<double>(height) * scale_w)), target_h);
  } else {
    size.height = target_h;
    size.width = std::min(static_cast<int64_t>(std::floor(static_cast<double>(width) * scale_h)), target_w);
  }
  size.width = std::max<int64_t>(size.width, 1);
  size.height = std::max<int64_t>(size.height, 1);
  return size;
}

namespace {

// torchvision's ToTensor then Normalize(0.5, 0.5) in f32: v / 255 (a true division, not a multiplication by the
// reciprocal), then (x - 0.5) / 0.5.
std::array<float, 256> NormalizeTable() {
  std::array<float, 256> t;
  for (int v = 0; v < 256; ++v) t[v] = (static_cast<float>(v) / 255.0f - 0.5f) / 0.5f;
  return t;
}

// Copies the tile_size x tile_size window at (x0, y0) of `image`, normalised, into out [3, tile_size, tile_size];
// what lies outside the image is the black padding.
void WriteTile(const Image& image, int64_t x0, int64_t y0, int64_t tile_size, const std::array<float, 256>& table,
               float* out) {
  const int64_t plane = tile_size * tile_size;
  std::fill(out, out + 3 * plane, table[0]);
  const int64_t rows = std::clamp<int64_t>(image.height - y0, 0, tile_size);
  const int64_t cols = std::clamp<int64_t>(image.width - x0, 0, tile_size);
  for (int64_t y = 0; y < rows; ++y) {
    const uint8_t* in = image.rgb.data() + ((y0 + y) * image.width + x0) * 3;
    for (int64_t x = 0; x < cols; ++x) {
      for (int64_t c = 0; c < 3; ++c) out[c * plane + y * tile_size + x] = table[in[x * 3 + c]];
    }
  }
}

}  // namespace

Result<Preprocessed> Preprocess(const Image& image, int64_t tile_size, int64_t max_chunks) {
  // Sides up to 2^30 keep 3 x width x height within int64.
  constexpr int64_t kMaxSide = int64_t{1} << 30;
  if (image.width < 1 || image.height < 1 || image.width > kMaxSide || image.height > kMaxSide ||
      static_cast<int64_t>(image.rgb.size()) != image.width * image.height * 3) {
    return InvalidArgument("image of " + std::to_string(image.width) + "x" + std::to_string(image.height) +
                           " pixels with " + std::to_string(image.rgb.size()) + " bytes of RGB: not a valid image");
  }
  // 2^28 output pixels (3 GiB of f32) is far beyond any model (16 chunks of 336 are 1.9 million), and 1024 chunks
  // keep the enumeration of canvases short.
  constexpr int64_t kMaxOutputPixels = int64_t{1} << 28, kMaxChunks = 1024;
  if (tile_size < 1 || max_chunks < 1 || max_chunks > kMaxChunks || tile_size > kMaxOutputPixels / tile_size ||
      max_chunks + 1 > kMaxOutputPixels / (tile_size * tile_size)) {
    return InvalidArgument("tile_size " + std::to_string(tile_size) + " and max_chunks " + std::to_string(max_chunks) +
                           ": each must be at least 1, max_chunks at most 1024 and (max_chunks + 1) x tile_size^2 at "
                           "most 2^28 pixels");
  }
  Preprocessed p;
  p.tile_size = tile_size;
  p.grid = BestCanvas(image.width, image.height, tile_size, max_chunks);
  p.has_global = p.grid.rows * p.grid.cols > 1;
  p.n_tiles = p.grid.rows * p.grid.cols + (p.has_global ? 1 : 0);
  const ImageSize size = ResizeTarget(image.width, image.height, p.grid, tile_size);
  // Pillow's resize runs its horizontal pass over every source row into a source height x target width intermediate:
  // for a very tall, thin image (a 1 x 4M column to the 336-wide global view) that is over a billion pixels, which
  // Pillow cannot allocate and which would take ResizeBilinear minutes. Such images are refused.
  constexpr int64_t kMaxIntermediatePixels = int64_t{1} << 28;
  for (const int64_t target_width : {size.width, p.has_global ? tile_size : image.width}) {
    if (target_width != image.width && image.height > kMaxIntermediatePixels / target_width) {
      return InvalidArgument("image of " + std::to_string(image.width) + "x" + std::to_string(image.height) +
                             " pixels is too tall for its width: resizing it to " + std::to_string(target_width) +
                             " columns would filter " + std::to_string(image.height * target_width) +
                             " intermediate pixels, more than 2^28");
    }
  }
  const std::array<float, 256> table = NormalizeTable();
  const int64_t tile_floats = 3 * tile_size * tile_size;
  p.pixels.resize(p.n_tiles * tile_floats);
  std::optional<Image> resized;
  if (size.width != image.width || size.height != image.height) {
    resized = ResizeBilinear(image, size.width, size.height);
  }
  for (int64_t ty = 0; ty < p.grid.rows; ++ty) {
    for (int64_t tx = 0; tx < p.grid.cols; ++tx) {
      WriteTile(resized ? *resized : image, tx * tile_size, ty * tile_size, tile_size, table,
                p.pixels.data() + (ty * p.grid.cols + tx) * tile_floats);
    }
  }
  if (p.has_global) {
    WriteTile(ResizeBilinear(image, tile_size, tile_size), 0, 0, tile_size, table,
              p.pixels.data() + (p.n_tiles - 1) * tile_floats);
  }
  return p;
}

std::vector<int32_t> ImageTokens(const TileGrid& grid, int64_t patches_per_tile, const ImageTokenIds& ids) {
  HERD_CHECK(grid.rows >= 1 && grid.cols >= 1 && patches_per_tile >= 1);
  std::vector<int32_t> tokens{ids.image_start};
  if (grid.rows * grid.cols > 1) {
    for (int64_t y = 0; y < grid.rows; ++y) {
      for (int64_t x = 0; x < grid.cols; ++x) {
        tokens.insert(tokens.end(), patches_per_tile, ids.patch);
        if (x < grid.cols - 1) tokens.push_back(ids.tile_x_sep);
      }
      tokens.push_back(ids.tile_y_sep);
    }
  }
  // The single tile, or the global view after the grid, is introduced by <|image|>.
  tokens.push_back(ids.image);
  tokens.insert(tokens.end(), patches_per_tile, ids.patch);
  tokens.push_back(ids.image_end);
  return tokens;
}

}  // namespace herd::vision
