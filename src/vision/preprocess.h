// Llama 4 image preprocessing (llama4.md 9.2: best tile canvas, aspect-preserving resize, black padding,
// normalisation, row-major tiles and the global view) and the image-token layout (8.4), as Meta's preprocess.py
// (VariableSizeImageTransform, ResizeNormalizeImageTransform) and chat_format.py (_encode_content, _encode_image)
// compute them. The resize reproduces Pillow 9.4's Image.resize(size, BILINEAR) bit for bit, which is what Meta's
// torchvision Resize calls on PIL images; preprocess_test checks it against Pillow and against the fixture
// llama4-tiny-vision.
#pragma once

#include <cstdint>
#include <vector>

#include "core/status.h"
#include "vision/image.h"

namespace herd::vision {

// `src` resized to width x height as Pillow 9.4 resizes an RGB image with Image.BILINEAR (Resample.c): a separable
// convolution with the triangle filter whose support grows with the downscale factor (antialiasing), weights
// normalised per output pixel and rounded to 22-bit fixed point, the horizontal pass first into an 8-bit
// intermediate, then the vertical pass, each result rounded and clipped to 0..255; a pass whose size does not change
// is skipped, and equal sizes give a copy. Requires a non-empty src (rgb.size() == 3 x width x height) and
// width, height >= 1 (a failed HERD_CHECK otherwise: callers size images from validated values). Returns a new
// image; thread-safe. Work grows with src.height x width (Pillow's horizontal-first order, kept for exactness);
// memory is the output plus the output rows in progress, not Pillow's src.height x width intermediate.
Image ResizeBilinear(const Image& src, int64_t width, int64_t height);

// A canvas of rows x cols tiles (Meta's aspect_ratio (ratio_h, ratio_w)).
struct TileGrid {
  int64_t rows = 1, cols = 1;
  bool operator==(const TileGrid&) const = default;
};

// The canvas for a width x height image (llama4.md 9.2 steps 1-4): of the grids with rows x cols <= max_chunks, the
// one whose scale min(cols tile / width, rows tile / height) (float32, as the reference's tensors) is the smallest
// at least 1, else the largest; ties go to the smallest area, then to the first in Meta's enumeration order
// (find_supported_resolutions, whose first element get_best_fit reads as the width). Requires all arguments >= 1
// (HERD_CHECK).
TileGrid BestCanvas(int64_t width, int64_t height, int64_t tile_size, int64_t max_chunks);

struct ImageSize {
  int64_t width = 0, height = 0;
  bool operator==(const ImageSize&) const = default;
};

// The size a width x height image is resized to inside the canvas `grid` (llama4.md 9.2 step 5, Meta's
// resize_without_distortion with max_upscaling_size = tile_size): aspect kept, upscaled only until the limiting
// side reaches tile_size, downscaled only as far as the canvas needs; both sides at least 1. Computed in doubles
// as Python does. Requires all arguments >= 1 (HERD_CHECK).
ImageSize ResizeTarget(int64_t width, int64_t height, const TileGrid& grid, int64_t tile_size);

// The model input of one image.
struct Preprocessed {
  TileGrid grid;            // the local tiles: grid.rows x grid.cols
  int64_t n_tiles = 0;      // grid.rows x grid.cols, plus 1 for the global view
  bool has_global = false;  // true when grid.rows x grid.cols > 1
  int64_t tile_size = 0;
  std::vector<float> pixels;  // f32 [n_tiles, 3, tile_size, tile_size]: tiles row-major, then the global view
};

// Meta's preprocessing of an RGB image for tiles of tile_size x tile_size (336 for Llama 4; Meta's ChatFormat
// allows max_chunks = 16): BestCanvas, ResizeBilinear to ResizeTarget, padding with black to the canvas, values
// (v / 255 - 0.5) / 0.5 in f32 (so the padding is -1), split row-major; when the grid has more than one tile, the
// global view (the whole image resized to tile_size x tile_size, aspect not kept) follows. Thread-safe.
// InvalidArgument for an empty, inconsistent (rgb.size() != 3 x width x height) or absurd image (a side over 2^30),
// tile_size or max_chunks below 1, max_chunks above 1024, an output of more than 2^28 pixels
// ((max_chunks + 1) x tile_size^2), or an image so tall for its width that a resize would filter more than 2^28
// intermediate pixels (source height x target width: a 1 x 800000 column is refused, where Pillow would need
// gigabytes).
Result<Preprocessed> Preprocess(const Image& image, int64_t tile_size, int64_t max_chunks);

// The special-token ids of an image in the prompt; they differ between models, so callers take them from the
// tokenizer or fixture.
struct ImageTokenIds {
  int32_t image_start = 0;  // <|image_start|>
  int32_t image = 0;        // <|image|>
  int32_t patch = 0;        // <|patch|>
  int32_t tile_x_sep = 0;   // <|tile_x_separator|>
  int32_t tile_y_sep = 0;   // <|tile_y_separator|>
  int32_t image_end = 0;    // <|image_end|>
};

// The tokens that stand for one image in the prompt (llama4.md 8.4, Meta's ChatFormat._encode_image), with
// patches_per_tile <|patch|> tokens per tile (144 for Llama 4: (336 / 14)^2 / 4). One tile: image_start, image,
// patch x P, image_end. Several: image_start; per tile row, each tile's P patches with tile_x_sep between the tiles
// of the row and tile_y_sep after the row; then image, patch x P (the global view), image_end. Requires grid sides
// >= 1 and patches_per_tile >= 1 (HERD_CHECK).
std::vector<int32_t> ImageTokens(const TileGrid& grid, int64_t patches_per_tile, const ImageTokenIds& ids);

}  // namespace herd::vision
