// The Llama 4 vision tower's files (formats/vision_files.h): config.json's vision_config and llama.cpp's mmproj
// clip.* keys to one neutral ModelMetadata and back, and opening either source of the tensors.
#include "formats/vision_files.h"

#include <sys/stat.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>

#include "core/mapped_file.h"
#include "formats/gguf_writer.h"
#include "formats/hf_config.h"
#include "formats/hf_names.h"
#include "formats/safetensors.h"

namespace herd::formats {
namespace fs = std::filesystem;
namespace {

constexpr const char* kModelType = "llama4_vision_model";

// A vision_config value: its scalars keep their type; anything else is kept as text, so that reading it as a
// number is an error that shows it.
ModelMetadata::Value ScalarValue(const nlohmann::json& v) {
  if (v.is_null()) return ModelMetadata::Null{};
  if (v.is_boolean()) return v.get<bool>();
  if (v.is_number_integer() &&
      !(v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))) {
    return v.get<int64_t>();
  }
  if (v.is_number_float()) return v.get<double>();
  if (v.is_string()) return v.get<std::string>();
  std::string text = v.dump();
  if (text.size() > 200) text = text.substr(0, 197) + "...";
  return ModelMetadata::Other{std::move(text)};
}

// The integer clip.* keys and the fields they hold.
struct ClipKey {
  const char* field;
  const char* key;
};
constexpr ClipKey kClipInts[] = {
    {"image_size", "clip.vision.image_size"},           {"patch_size", "clip.vision.patch_size"},
    {"hidden_size", "clip.vision.embedding_length"},    {"intermediate_size", "clip.vision.feed_forward_length"},
    {"num_hidden_layers", "clip.vision.block_count"},   {"num_attention_heads", "clip.vision.attention.head_count"},
    {"text_hidden_size", "clip.vision.projection_dim"},
};
constexpr const char* kEpsKey = "clip.vision.attention.layer_norm_epsilon";
constexpr const char* kScaleFactorKey = "clip.vision.projector.scale_factor";
constexpr const char* kRopeThetaKey = "herd.vision.rope_theta";

// Widths the mmproj states only through tensor shapes (as llama.cpp reads them).
struct ShapeWidth {
  const char* field;
  const char* tensor;
  int dim;  // 0: rows (outputs), 1: columns (inputs)
};
constexpr ShapeWidth kShapeWidths[] = {
    {"projector_input_dim", "mm.model.mlp.1.weight", 0},
    {"projector_output_dim", "mm.model.mlp.2.weight", 0},
    {"vision_output_dim", "mm.model.fc.weight", 1},
};

// Llama 4's pixel normalisation (llama4.md 9.2 step 8): mean = std = 0.5 per channel.
constexpr float kLlama4PixelMeanStd = 0.5f;

Status CheckNormalisation(const GgufFile& g, const char* key) {
  if (g.Find(key) == nullptr) return Status::Ok();
  HERD_ASSIGN_OR_RETURN(std::vector<float> values, g.GetFloatArray(key));
  bool llama4 = values.size() == 3;
  for (float v : values) llama4 &= v == kLlama4PixelMeanStd;
  if (!llama4) {
    return NotSupported(g.path() + ": " + key +
                        " is not [0.5, 0.5, 0.5]; herd's vision tower takes pixels normalised " +
                        "as Llama 4's are (llama4.md 9.2)");
  }
  return Status::Ok();
}

Status AddUint32(GgufWriter& w, const std::string& key, int64_t v) {
  if (v < 0 || v > std::numeric_limits<uint32_t>::max()) {
    return InvalidArgument("GGUF key '" + key + "' cannot hold " + std::to_string(v));
  }
  w.AddUint32(key, static_cast<uint32_t>(v));
  return Status::Ok();
}

template <typename T, typename Getter>
Result<T> Need(const ModelMetadata& md, std::string_view field, Getter get) {
  HERD_ASSIGN_OR_RETURN(auto v, (md.*get)(field));
  if (!v) return InvalidArgument("vision metadata to write as an mmproj has no '" + std::string(field) + "'");
  return static_cast<T>(*v);
}

Status AddVisionMetadata(const ModelMetadata& md, GgufWriter& w) {
  HERD_ASSIGN_OR_RETURN(std::string type, Need<std::string>(md, "model_type", &ModelMetadata::String));
  if (type != kModelType) return InvalidArgument("cannot write model_type '" + type + "' as a Llama 4 mmproj");
  HERD_ASSIGN_OR_RETURN(std::optional<std::string> act, md.String("hidden_act"));
  if (act && *act != "gelu")
    return InvalidArgument("an mmproj of projector type llama4 has hidden_act gelu, not " + *act);
  HERD_ASSIGN_OR_RETURN(std::optional<int64_t> channels, md.Int("num_channels"));
  if (channels && *channels != 3) {
    return InvalidArgument("an mmproj cannot state num_channels " + std::to_string(*channels) + " (llama.cpp takes 3)");
  }
  HERD_ASSIGN_OR_RETURN(double ratio, Need<double>(md, "pixel_shuffle_ratio", &ModelMetadata::Number));
  const int64_t factor = ratio > 0 && std::isfinite(ratio) ? std::llround(1.0 / ratio) : 0;
  if (factor < 1 || std::fabs(static_cast<double>(factor) * ratio - 1.0) > 1e-6) {
    return InvalidArgument("pixel_shuffle_ratio " + ModelMetadata::ToString(ratio) +
                           " is not 1 / an integer, which clip.vision.projector.scale_factor must be");
  }
  HERD_ASSIGN_OR_RETURN(double eps, Need<double>(md, "norm_eps", &ModelMetadata::Number));
  HERD_ASSIGN_OR_RETURN(double theta, Need<double>(md, "rope_theta", &ModelMetadata::Number));

  w.AddString("general.architecture", "clip");
  HERD_ASSIGN_OR_RETURN(std::optional<std::string> name, md.String("name"));
  if (name) w.AddString("general.name", *name);
  w.AddString("clip.projector_type", "llama4");
  w.AddBool("clip.has_vision_encoder", true);
  w.AddBool("clip.use_gelu", true);
  for (const ClipKey& k : kClipInts) {
    HERD_ASSIGN_OR_RETURN(int64_t v, Need<int64_t>(md, k.field, &ModelMetadata::Int));
    HERD_RETURN_IF_ERROR(AddUint32(w, k.key, v));
  }
  w.AddFloat32(kEpsKey, static_cast<float>(eps));
  HERD_RETURN_IF_ERROR(AddUint32(w, kScaleFactorKey, factor));
  const std::vector<float> half(3, kLlama4PixelMeanStd);
  w.AddFloat32Array("clip.vision.image_mean", half);
  w.AddFloat32Array("clip.vision.image_std", half);
  w.AddFloat32(kRopeThetaKey, static_cast<float>(theta));
  return Status::Ok();
}

}  // namespace

Result<ModelMetadata> VisionMetadataFromHfConfig(const nlohmann::json& j, const std::string& source) {
  if (!j.is_object()) return Corruption(source + ": expected a JSON object");
  auto mt = j.find("model_type");
  const std::string model_type = mt != j.end() && mt->is_string() ? mt->get<std::string>() : std::string();
  if (model_type != "llama4") {
    return InvalidArgument(source + ": model_type '" + model_type +
                           "' has no Llama 4 vision tower (Llama4ForConditionalGeneration has model_type llama4)");
  }
  auto vc = j.find("vision_config");
  if (vc == j.end() || vc->is_null()) {
    return InvalidArgument(source + ": this model has no vision encoder (config.json has no vision_config)");
  }
  if (!vc->is_object()) return Corruption(source + ": 'vision_config' must be an object");
  ModelMetadata md(source);
  for (const auto& [key, v] : vc->items()) md.Set(key, ScalarValue(v), "vision_config." + key);
  if (!md.Contains("model_type")) md.Set("model_type", std::string(kModelType), "model_type llama4");
  if (auto tc = j.find("text_config"); tc != j.end() && tc->is_object()) {
    if (auto h = tc->find("hidden_size"); h != tc->end()) {
      md.Set("text_hidden_size", ScalarValue(*h), "text_config.hidden_size");
    }
  }
  return md;
}

Result<ModelMetadata> VisionMetadataFromGguf(const GgufFile& g) {
  const std::string& path = g.path();
  HERD_ASSIGN_OR_RETURN(std::string_view arch, g.GetString("general.architecture"));
  if (arch != "clip") {
    return InvalidArgument(path + ": general.architecture is '" + std::string(arch) +
                           "', not 'clip': not a vision projector (mmproj) file");
  }
  HERD_ASSIGN_OR_RETURN(std::optional<bool> has_vision, g.GetBoolOpt("clip.has_vision_encoder"));
  if (has_vision && !*has_vision) {
    return InvalidArgument(path + ": clip.has_vision_encoder is false: the file has no vision encoder");
  }
  // Mixed-modality files state the vision projector under clip.vision.* (llama.cpp reads that one first).
  std::string type_key;
  std::optional<std::string_view> type;
  for (const char* key : {"clip.vision.projector_type", "clip.projector_type"}) {
    HERD_ASSIGN_OR_RETURN(type, g.GetStringOpt(key));
    if (type) {
      type_key = key;
      break;
    }
  }
  if (!type) return Corruption(path + ": missing metadata key 'clip.projector_type'");
  if (*type != "llama4") {
    return NotSupported(path + ": " + type_key + " '" + std::string(*type) + "' is not supported (supported: llama4)");
  }
  ModelMetadata md(path);
  md.Set("model_type", std::string(kModelType), type_key);
  HERD_ASSIGN_OR_RETURN(auto name, g.GetStringOpt("general.name"));
  if (name) md.Set("name", std::string(*name), "general.name");
  for (const ClipKey& k : kClipInts) {
    HERD_ASSIGN_OR_RETURN(int64_t v, g.GetInt(k.key));
    md.Set(k.field, v, k.key);
  }
  HERD_ASSIGN_OR_RETURN(double eps, g.GetFloat(kEpsKey));
  md.Set("norm_eps", eps, kEpsKey);
  HERD_ASSIGN_OR_RETURN(int64_t factor, g.GetInt(kScaleFactorKey));
  if (factor < 1) return Corruption(path + ": " + kScaleFactorKey + " = " + std::to_string(factor) + " must be >= 1");
  md.Set("pixel_shuffle_ratio", 1.0 / static_cast<double>(factor), std::string("1 / ") + kScaleFactorKey);
  HERD_ASSIGN_OR_RETURN(std::optional<double> theta, g.GetFloatOpt(kRopeThetaKey));
  if (theta) {
    md.Set("rope_theta", *theta, kRopeThetaKey);
  } else {
    md.Set("rope_theta", 10000.0, "llama.cpp's fixed value for " + type_key + " llama4");
  }
  HERD_ASSIGN_OR_RETURN(std::optional<bool> gelu, g.GetBoolOpt("clip.use_gelu"));
  if (gelu && !*gelu) return NotSupported(path + ": clip.use_gelu is false; Llama 4's vision MLP uses GELU");
  md.Set("hidden_act", std::string("gelu"), gelu ? "clip.use_gelu" : type_key + " llama4");
  HERD_RETURN_IF_ERROR(CheckNormalisation(g, "clip.vision.image_mean"));
  HERD_RETURN_IF_ERROR(CheckNormalisation(g, "clip.vision.image_std"));
  for (const ShapeWidth& s : kShapeWidths) {
    const GgufTensorInfo* info = nullptr;
    for (const GgufTensorInfo& t : g.tensor_infos()) {
      if (t.name == s.tensor) info = &t;
    }
    if (info == nullptr) {
      return Corruption(path + ": missing tensor '" + s.tensor + "' (its shape gives " + s.field + ")");
    }
    if (info->shape.size() != 2) {
      return Corruption(path + ": tensor '" + s.tensor + "' has shape " +
                        ShapeString(info->shape.data(), static_cast<int>(info->shape.size())) + ", expected a matrix");
    }
    md.Set(s.field, info->shape[s.dim], std::string(s.dim == 0 ? "the rows of " : "the columns of ") + s.tensor);
  }
  return md;
}

Result<VisionFiles> OpenVisionFiles(const std::string& path, bool show_progress) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return IOError("cannot open '" + path + "': " + std::strerror(errno));
  VisionFiles f;
  f.path = path;
  if (S_ISDIR(st.st_mode)) {
    std::string cfg_path;
    HERD_ASSIGN_OR_RETURN(const nlohmann::json config, ReadHfConfigJson(path, &cfg_path));
    if (config.is_discarded()) return Corruption(cfg_path + ": not valid JSON");
    HERD_ASSIGN_OR_RETURN(f.metadata, VisionMetadataFromHfConfig(config, cfg_path));
    HERD_ASSIGN_OR_RETURN(f.weights, LoadSafetensorsDir(path, HfLlama4VisionToCanonical, show_progress));
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(path, ec)) {
      if (e.path().extension() != ".gguf") f.sources.push_back(e.path().string());
    }
    return f;
  }
  HERD_ASSIGN_OR_RETURN(std::shared_ptr<MappedFile> map, MappedFile::Open(path));
  if (map->size() < 4 || std::memcmp(map->data(), "GGUF", 4) != 0) {
    return InvalidArgument(path + ": not a vision projector GGUF (mmproj) or an HF Llama 4 directory");
  }
  HERD_ASSIGN_OR_RETURN(f.gguf, GgufFile::Open(path));
  HERD_ASSIGN_OR_RETURN(f.metadata, VisionMetadataFromGguf(*f.gguf));
  HERD_ASSIGN_OR_RETURN(f.weights, f.gguf->Weights());
  f.sources.push_back(path);
  return f;
}

Status WriteMmproj(const ModelMetadata& metadata, const WeightMap& weights, const std::string& path,
                   const std::vector<std::string>& inputs) {
  GgufWriter w;
  HERD_RETURN_IF_ERROR(AddVisionMetadata(metadata, w));
  for (const auto& [name, view] : weights.tensors()) {
    if (!name.starts_with("v.") && !name.starts_with("mm.")) {
      return InvalidArgument("tensor '" + name +
                             "' is not part of a vision projector (mmproj names start with v. or mm.)");
    }
    HERD_RETURN_IF_ERROR(w.AddTensor(name, view));
  }
  return w.Write(path, {}, inputs);
}

}  // namespace herd::formats
