// libFuzzer target for config.json, the file that sizes a Hugging Face model directory: the text read as
// formats/model_files.cpp reads it (ParseJsonBounded), then the text model's metadata (formats/hf_config.h) and its
// config (model/config.h), and the vision tower's metadata (formats/vision_files.h) and config (model/vision.h).
// Properties: no crash, leak, hang or UB (a metadata value of any shape is printed, as `herd info` and the error
// messages print it); every refusal has a message; a text config that passes is small enough to build its per-layer
// table, and a vision config that passes also passes Validate.
//
// Seeds: LLVMFuzzerInitialize writes the configs of herd's synthetic presets (tools/synthetic.h) as config.json
// states them (MetadataFromConfig and MetadataFromVisionConfig, the inverses of what is fuzzed here) into the
// first corpus directory (the writable scratch one): Scout with its vision tower, Maverick's text model and a
// dense Llama.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <variant>

#include "core/json.h"
#include "formats/hf_config.h"
#include "formats/vision_files.h"
#include "model/config.h"
#include "model/vision.h"
#include "seed_dir.h"
#include "tools/synthetic.h"

namespace {

using nlohmann::json;

json ValueJson(const herd::ModelMetadata::Value& v) {
  using M = herd::ModelMetadata;
  if (const auto* b = std::get_if<bool>(&v)) return *b;
  if (const auto* i = std::get_if<int64_t>(&v)) return *i;
  if (const auto* d = std::get_if<double>(&v)) return *d;
  if (const auto* s = std::get_if<std::string>(&v)) return *s;
  if (const auto* l = std::get_if<M::IntList>(&v)) return *l;
  return nullptr;
}

// Metadata as config.json's fields: rope_scaling.<field> back into its object; herd's own keys left out.
json FieldsJson(const herd::ModelMetadata& md) {
  json j = json::object();
  for (const auto& [key, entry] : md.entries()) {
    if (key == "model_type" || key == "rope_layout") continue;
    if (key.starts_with("rope_scaling.")) {
      j["rope_scaling"][key.substr(13)] = ValueJson(entry.value);
    } else {
      j[key] = ValueJson(entry.value);
    }
  }
  return j;
}

// Writes a seed that every stage must accept (a seed that stops early would leave the later stages unfuzzed).
void WriteSeed(const std::string& path, const json& config, bool vision) {
  auto md = herd::formats::MetadataFromHfConfig(config, path);
  herd::Status s = md.ok() ? herd::model::ConfigFromMetadata(*md).status() : md.status();
  if (s.ok() && vision) {
    auto vmd = herd::formats::VisionMetadataFromHfConfig(config, path);
    s = vmd.ok() ? herd::model::VisionConfigFromMetadata(*vmd).status() : vmd.status();
  }
  if (!s.ok()) {
    std::fprintf(stderr, "hf_config_fuzz: FATAL: seed %s is refused: %s\n", path.c_str(), s.ToString().c_str());
    std::abort();
  }
  if (std::filesystem::exists(path)) return;
  std::ofstream(path) << config.dump(2) << "\n";
}

// config.json's fields of a synthetic preset's text model (tools/synthetic.h); null when it is refused.
json TextFields(const std::string& preset, bool all_dense) {
  herd::tools::SyntheticSpec spec;
  spec.preset = preset;
  spec.all_dense = all_dense;
  auto config = herd::tools::SyntheticConfig(spec);
  if (!config.ok()) return json();
  auto md = herd::model::MetadataFromConfig(*config);
  return md.ok() ? FieldsJson(*md) : json();
}

void WriteSeeds(const std::string& dir) {
  json scout = TextFields("scout", false);
  scout["model_type"] = "llama4_text";
  json j = {{"model_type", "llama4"}, {"image_token_index", 200092}, {"tie_word_embeddings", false}};
  j["text_config"] = scout;
  if (auto vision = herd::tools::SyntheticVisionConfig("scout", 5120); vision.ok()) {
    j["vision_config"] = FieldsJson(herd::model::MetadataFromVisionConfig(*vision));
    j["vision_config"]["model_type"] = "llama4_vision_model";
  }
  j["quantization_config"] = {{"quant_method", "fbgemm_fp8"}, {"modules_to_not_convert", {"vision_model"}}};
  WriteSeed(dir + "/seed-scout.json", j, true);
  json maverick = TextFields("maverick", false);
  maverick["model_type"] = "llama4_text";
  WriteSeed(dir + "/seed-maverick-text.json", maverick, false);
  json dense = TextFields("small-moe", true);
  dense["model_type"] = "llama";
  dense["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0}};
  dense["rope_scaling"]["high_freq_factor"] = 4.0;
  dense["rope_scaling"]["original_max_position_embeddings"] = 8192;
  WriteSeed(dir + "/seed-llama.json", dense, false);
}

void CheckRefusal(const herd::Status& s) {
  if (s.ok() || s.message().empty()) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  WriteSeedsToFirstCorpusDir(*argc, *argv, [](const std::string& dir) { WriteSeeds(dir); });
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace herd;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const json config = ParseJsonBounded(text);
  if (config.is_discarded()) return 0;
  auto md = formats::MetadataFromHfConfig(config, "config.json");
  if (md.ok()) {
    for (const auto& [key, entry] : md->entries()) {
      (void)ModelMetadata::ToString(entry.value);
      (void)md->Where(key);
    }
    auto c = model::ConfigFromMetadata(*md);
    if (c.ok()) {
      if (c->layers.size() > 512 || c->vocab_size > (int64_t{1} << 24)) std::abort();
    } else {
      CheckRefusal(c.status());
    }
  } else {
    CheckRefusal(md.status());
  }
  auto vmd = formats::VisionMetadataFromHfConfig(config, "config.json");
  if (vmd.ok()) {
    auto vc = model::VisionConfigFromMetadata(*vmd);
    if (vc.ok()) {
      if (!vc->Validate().ok()) std::abort();
      (void)vc->Describe();
      (void)vc->FlopsPerTile();
    } else {
      CheckRefusal(vc.status());
    }
  } else {
    CheckRefusal(vmd.status());
  }
  return 0;
}
