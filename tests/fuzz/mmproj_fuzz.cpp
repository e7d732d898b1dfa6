// libFuzzer target for the vision tower's files: an mmproj GGUF (llama.cpp's projector file, formats/vision_files.h)
// parsed, its clip.* keys read into vision metadata, the config validated (model/vision.h) and the tensors bound
// (presence, dtype and shape checked against the config before anything is sized from it); a tower that binds
// encodes one tile, when its tile is small. Any crash, leak, hang or sanitizer report is a bug.
//
// Seed: LLVMFuzzerInitialize writes a valid micro tower (8 wide, one layer, 8-pixel tiles of 4-pixel patches; F16
// matrices, about 5 KB) made by tools::MakeSyntheticVisionWeights and formats::WriteMmproj into the first corpus
// directory (the writable scratch one), so that mutations start from a file every stage accepts.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "formats/gguf.h"
#include "formats/vision_files.h"
#include "model/vision.h"
#include "seed_dir.h"
#include "tools/synthetic.h"

namespace {

herd::model::VisionConfig MicroConfig() {
  herd::model::VisionConfig c;
  c.image_size = 8;
  c.patch_size = 4;
  c.hidden_size = 8;
  c.num_attention_heads = 2;
  c.head_dim = 4;
  c.intermediate_size = 32;
  c.num_hidden_layers = 1;
  c.pixel_shuffle_ratio = 0.5f;
  c.projector_input_dim = c.projector_output_dim = c.vision_output_dim = 16;
  c.text_hidden_size = 8;
  return c;
}

void WriteSeed(const std::string& dir) {
  const std::string path = dir + "/seed-micro-mmproj.gguf";
  if (std::filesystem::exists(path)) return;
  auto pool = herd::ThreadPool::Create(1);
  if (!pool.ok()) return;
  const herd::model::VisionConfig c = MicroConfig();
  auto w = herd::tools::MakeSyntheticVisionWeights(c, herd::DType::kF16, 1, **pool);
  if (!w.ok()) return;
  (void)herd::formats::WriteMmproj(herd::model::MetadataFromVisionConfig(c), w->weights, path);
}

herd::ThreadPool& Pool() {
  static herd::ThreadPool* pool = herd::ThreadPool::Create(1).value().release();
  return *pool;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  WriteSeedsToFirstCorpusDir(*argc, *argv, [](const std::string& dir) { WriteSeed(dir); });
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace herd;
  auto f = formats::GgufFile::Parse(data, size, "fuzz-mmproj.gguf");
  if (!f.ok()) return 0;
  auto md = formats::VisionMetadataFromGguf(**f);
  if (!md.ok()) return 0;
  auto w = (*f)->Weights();
  if (!w.ok()) return 0;
  auto tower = model::LoadVisionTower(*md, *w);
  if (!tower.ok()) return 0;
  const model::VisionConfig& c = (*tower)->config();
  const int64_t tile = c.num_channels * c.image_size * c.image_size;
  if (tile > (1 << 14) || (*tower)->TokensPerTile() * (*tower)->OutputDim() > (1 << 16)) return 0;
  std::vector<float> pixels(static_cast<size_t>(tile), 0.25f);
  std::vector<float> out(static_cast<size_t>((*tower)->TokensPerTile() * (*tower)->OutputDim()));
  (void)(*tower)->Encode(pixels.data(), 1, out.data(), Pool());
  return 0;
}
