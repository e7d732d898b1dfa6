// Images into a prompt (llama4.md 8.4, 9.7): each image preprocessed into tiles (vision/preprocess.h), all tiles
// of all images of a prompt encoded together by the model's vision tower (model/vision.h), and the projected rows
// placed, in order, at the prompt's <|patch|> positions through the batched step's embedding override, with
// prefix-cache keys derived from each image's pixels.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/status.h"
#include "core/thread_pool.h"
#include "model/model.h"
#include "runtime/serving.h"
#include "vision/image.h"
#include "vision/preprocess.h"

namespace herd::runtime {

struct LoadedModel;

// Tiles per image at most (Meta's max_num_chunks; --max-tiles).
inline constexpr int64_t kDefaultMaxTiles = 16;

// The ids of the image tokens: <|patch|> from the model's config (image_token_index) when it states one, else the
// tokenizer's; the other five from the tokenizer's special tokens. nullopt fields: not known (a model without a
// tokenizer knows only the patch id, from its config).
struct ImageTokenIdsOf {
  std::optional<int32_t> patch;
  std::optional<vision::ImageTokenIds> all;  // every id, when the tokenizer has them all
};
ImageTokenIdsOf ImageTokenIdsFor(const LoadedModel& m);

// A prompt's images, encoded: per image its tile grid, its <|patch|> row count and (when the ids are known) its
// token layout; all projected rows in prompt order; a hash of each image's pixels and size.
struct EncodedImages {
  std::vector<vision::TileGrid> grids;
  std::vector<int64_t> patch_rows;            // tiles x TokensPerTile, per image
  std::vector<std::vector<int32_t>> layouts;  // per image (empty when the ids are not known)
  std::vector<uint64_t> hashes;               // per image
  std::vector<float> rows;                    // [sum(patch_rows), text hidden]
  double encode_ms = 0;
  int64_t n_tiles = 0;
};

// Preprocesses `images` with at most max_tiles tiles each and encodes them in one batch. NotSupported when the
// model has no vision tower (naming --mmproj), InvalidArgument for max_tiles outside [1, 64].
Result<EncodedImages> EncodeImages(const LoadedModel& m, std::span<const vision::Image> images, int64_t max_tiles,
                                   ThreadPool& pool);

// The embedding override that puts `enc`'s rows at the <|patch|> positions of `prompt` (their count must equal the
// rows': InvalidArgument saying how many each image needs and how many the prompt has), with prefix-cache keys:
// the prompt's ids, the patch positions keyed by their image's hash. Checks, when `enc` has token layouts, that
// each image's span in the prompt is its layout (InvalidArgument naming the first position that differs). The
// override refers to `enc` and to the returned object's vectors: keep both alive while it is used.
struct ImageFusion {
  std::vector<int32_t> at;
  std::vector<int32_t> cache_keys;
  const float* rows = nullptr;
  model::EmbeddingOverride Override() const { return {at, rows, cache_keys}; }
  bool empty() const { return at.empty(); }
};
Result<ImageFusion> FuseImages(std::span<const int32_t> prompt, int32_t patch_id, const EncodedImages& enc);
// FuseImages with the model's <|patch|> id (ImageTokenIdsFor); an empty fusion when `enc` holds no image.
// NotSupported when neither the config nor the tokenizer names the id.
Result<ImageFusion> FuseImagesFor(const LoadedModel& m, std::span<const int32_t> prompt, const EncodedImages& enc);

// The serving engine's form of a prompt's images (ServingRequest::embeds): FuseImagesFor's placement, checks and
// cache keys, with enc's rows moved in.
Result<PromptEmbeds> ImageEmbeds(const LoadedModel& m, std::span<const int32_t> prompt, EncodedImages enc);

// 64-bit FNV-1a of an image's size and pixels.
uint64_t ImageHash(const vision::Image& image);

}  // namespace herd::runtime
