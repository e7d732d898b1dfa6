// Images into a prompt: preprocessing, one batched encode, and the placement of the rows.
#include "runtime/images.h"

#include <algorithm>

#include "model/kv_cache.h"
#include "model/vision.h"
#include "runtime/engine.h"

namespace herd::runtime {
namespace {

std::string Describe(const EncodedImages& enc, size_t k) {
  const vision::TileGrid& g = enc.grids[k];
  const bool global = g.rows * g.cols > 1;
  return "image " + std::to_string(k + 1) + ": " + std::to_string(g.rows) + "x" + std::to_string(g.cols) + " tiles" +
         (global ? " + the global view" : "") + " = " + std::to_string(enc.patch_rows[k]) + " patches";
}

}  // namespace

ImageTokenIdsOf ImageTokenIdsFor(const LoadedModel& m) {
  ImageTokenIdsOf ids;
  auto from_config = m.files.metadata.Int("image_token_index");
  if (from_config.ok() && from_config->has_value()) ids.patch = static_cast<int32_t>(**from_config);
  if (m.tokenizer == nullptr) return ids;
  auto id = [&](const char* text) { return m.tokenizer->TokenId(text); };
  if (!ids.patch) ids.patch = id("<|patch|>");
  const auto start = id("<|image_start|>"), image = id("<|image|>"), x = id("<|tile_x_separator|>"),
             y = id("<|tile_y_separator|>"), end = id("<|image_end|>");
  if (ids.patch && start && image && x && y && end)
    ids.all = vision::ImageTokenIds{*start, *image, *ids.patch, *x, *y, *end};
  return ids;
}

uint64_t ImageHash(const vision::Image& image) {
  const uint64_t size =
      Fnv1aInt(static_cast<uint64_t>(image.height), Fnv1aInt(static_cast<uint64_t>(image.width), kFnv1aBasis));
  return Fnv1a(image.rgb, size);
}

Result<EncodedImages> EncodeImages(const LoadedModel& m, std::span<const vision::Image> images, int64_t max_tiles,
                                   ThreadPool& pool) {
  if (m.vision == nullptr && !m.vision_error.ok()) return m.vision_error;
  if (m.vision == nullptr) {
    return NotSupported(
        "this model has no vision tower: give its projector file with --mmproj (or load an "
        "HF directory whose config.json has a vision_config)");
  }
  if (max_tiles < 1 || max_tiles > 64) {
    return InvalidArgument("--max-tiles must be between 1 and 64, got " + std::to_string(max_tiles));
  }
  const model::VisionTower& tower = *m.vision;
  const ImageTokenIdsOf ids = ImageTokenIdsFor(m);
  EncodedImages enc;
  std::vector<float> pixels;
  for (size_t k = 0; k < images.size(); ++k) {
    auto pre = vision::Preprocess(images[k], tower.TileSize(), max_tiles);
    if (!pre.ok()) return pre.status().WithContext("image " + std::to_string(k + 1));
    enc.grids.push_back(pre->grid);
    enc.patch_rows.push_back(pre->n_tiles * tower.TokensPerTile());
    enc.layouts.push_back(ids.all ? vision::ImageTokens(pre->grid, tower.TokensPerTile(), *ids.all)
                                  : std::vector<int32_t>{});
    enc.hashes.push_back(ImageHash(images[k]));
    enc.n_tiles += pre->n_tiles;
    pixels.insert(pixels.end(), pre->pixels.begin(), pre->pixels.end());
  }
  if (enc.n_tiles == 0) return enc;
  enc.rows.resize(static_cast<size_t>(enc.n_tiles * tower.TokensPerTile() * tower.OutputDim()));
  const double t0 = NowMs();
  HERD_RETURN_IF_ERROR(tower.Encode(pixels.data(), enc.n_tiles, enc.rows.data(), pool));
  enc.encode_ms = NowMs() - t0;
  return enc;
}

Result<ImageFusion> FuseImages(std::span<const int32_t> prompt, int32_t patch_id, const EncodedImages& enc) {
  ImageFusion f;
  for (size_t i = 0; i < prompt.size(); ++i) {
    if (prompt[i] == patch_id) f.at.push_back(static_cast<int32_t>(i));
  }
  int64_t need = 0;
  for (int64_t n : enc.patch_rows) need += n;
  if (static_cast<int64_t>(f.at.size()) != need) {
    std::string what;
    for (size_t k = 0; k < enc.patch_rows.size(); ++k) what += "; " + Describe(enc, k);
    return InvalidArgument("the prompt has " + std::to_string(f.at.size()) + " <|patch|> tokens (id " +
                           std::to_string(patch_id) + ") but its " + std::to_string(enc.patch_rows.size()) +
                           " image(s) need " + std::to_string(need) + what);
  }
  f.cache_keys.assign(prompt.begin(), prompt.end());
  std::vector<int32_t> keys;
  for (size_t k = 0, first = 0; k < enc.patch_rows.size(); first += static_cast<size_t>(enc.patch_rows[k]), ++k) {
    const int64_t n = enc.patch_rows[k];
    if (n == 0) continue;
    keys.resize(static_cast<size_t>(n));
    model::ImageCacheKeys(enc.hashes[k], n, keys.data());
    for (int64_t j = 0; j < n; ++j) f.cache_keys[f.at[first + j]] = keys[j];
    const std::vector<int32_t>& layout = enc.layouts[k];
    if (layout.empty()) continue;
    // The layout's first <|patch|> sits at this image's first patch position.
    const auto lead = std::find(layout.begin(), layout.end(), patch_id) - layout.begin();
    const int64_t s = f.at[first] - lead;
    for (size_t j = 0; j < layout.size(); ++j) {
      const int64_t pos = s + static_cast<int64_t>(j);
      if (pos < 0 || pos >= static_cast<int64_t>(prompt.size()) || prompt[pos] != layout[j]) {
        return InvalidArgument("the prompt's tokens of image " + std::to_string(k + 1) + " differ from its layout (" +
                               Describe(enc, k) + ") at position " + std::to_string(pos) + ": expected id " +
                               std::to_string(layout[j]) + ", found " +
                               (pos >= 0 && pos < static_cast<int64_t>(prompt.size()) ? std::to_string(prompt[pos])
                                                                                      : std::string("nothing")));
      }
    }
  }
  f.rows = enc.rows.data();
  return f;
}

Result<ImageFusion> FuseImagesFor(const LoadedModel& m, std::span<const int32_t> prompt, const EncodedImages& enc) {
  if (enc.patch_rows.empty()) return ImageFusion{};
  const ImageTokenIdsOf ids = ImageTokenIdsFor(m);
  if (!ids.patch) return NotSupported("neither the model's config nor its tokenizer names the <|patch|> token");
  return FuseImages(prompt, *ids.patch, enc);
}

Result<PromptEmbeds> ImageEmbeds(const LoadedModel& m, std::span<const int32_t> prompt, EncodedImages enc) {
  HERD_ASSIGN_OR_RETURN(ImageFusion f, FuseImagesFor(m, prompt, enc));
  PromptEmbeds e;
  e.at = std::move(f.at);
  e.cache_keys = std::move(f.cache_keys);
  e.rows = std::move(enc.rows);
  if (e.cache_keys.empty()) e.cache_keys.assign(prompt.begin(), prompt.end());
  return e;
}

}  // namespace herd::runtime
