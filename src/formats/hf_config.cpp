// config.json -> ModelMetadata (formats/hf_config.h).
#include "formats/hf_config.h"

#include <cstdint>
#include <filesystem>
#include <limits>

#include "core/file.h"
#include "core/json.h"

namespace herd::formats {
namespace {

// A JSON value as metadata: scalars and integer lists keep their type; anything else (objects, other lists,
// integers beyond int64) is kept as its text so that reading it as a number is an error that shows it.
ModelMetadata::Value ToValue(const nlohmann::json& v) {
  auto other = [&] {
    std::string text = v.dump();
    if (text.size() > 200) text = text.substr(0, 197) + "...";
    return ModelMetadata::Other{std::move(text)};
  };
  if (v.is_null()) return ModelMetadata::Null{};
  if (v.is_boolean()) return v.get<bool>();
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return other();
    return static_cast<int64_t>(u);
  }
  if (v.is_number_integer()) return v.get<int64_t>();
  if (v.is_number_float()) return v.get<double>();
  if (v.is_string()) return v.get<std::string>();
  if (v.is_array()) {
    ModelMetadata::IntList list;
    for (const auto& e : v) {
      if (!e.is_number_integer() ||
          (e.is_number_unsigned() && e.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))) {
        return other();
      }
      list.push_back(e.get<int64_t>());
    }
    return list;
  }
  return other();
}

// Every field of `object` (prefix "" or "text_config."), rope_scaling flattened to rope_scaling.<field>.
Status CopyFields(const nlohmann::json& object, const std::string& prefix, const std::string& source,
                  ModelMetadata* md) {
  for (const auto& [key, v] : object.items()) {
    if (key == "model_type" || key == "text_config" || key == "vision_config" || key == "quantization_config") {
      continue;
    }
    if (key == "rope_scaling") {
      if (v.is_null()) continue;
      if (!v.is_object()) return Corruption(source + ": '" + prefix + "rope_scaling' must be an object or null");
      for (const auto& [sub, sv] : v.items()) {
        md->Set("rope_scaling." + sub, ToValue(sv), prefix + "rope_scaling." + sub);
      }
      continue;
    }
    md->Set(key, ToValue(v), prefix + key);
  }
  return Status::Ok();
}

// HF `quantization_config` (llama4.md 6.3). Only fbgemm_fp8 is supported: its weights are F8_E4M3 with per-row
// scales, which the weight binder finds by name (model/weights.h), so nothing here changes the math.
// `modules_to_not_convert` only lists the modules left in BF16 (their dtypes say so too), and
// `activation_scale_ub` bounds fbgemm's dynamic FP8 activation scales, which herd does not apply (activations stay
// f32, as llama4.md 6.3 allows for an fp32 engine). Both are checked for type only.
Status CheckQuantizationConfig(const nlohmann::json& j, const std::string& source) {
  auto q = j.find("quantization_config");
  if (q == j.end() || q->is_null()) return Status::Ok();
  if (!q->is_object()) return Corruption(source + ": 'quantization_config' must be an object");
  auto method = q->find("quant_method");
  if (method == q->end() || !method->is_string()) {
    return Corruption(source + ": quantization_config has no string 'quant_method'");
  }
  const std::string name = method->get<std::string>();
  if (name != "fbgemm_fp8") {
    return NotSupported(source + ": quantization_config quant_method '" + name +
                        "' is not supported (supported: fbgemm_fp8, FP8 E4M3 weights with per-row scales)");
  }
  if (auto mods = q->find("modules_to_not_convert"); mods != q->end() && !mods->is_null()) {
    bool ok = mods->is_array();
    for (size_t i = 0; ok && i < mods->size(); ++i) ok = (*mods)[i].is_string();
    if (!ok) return Corruption(source + ": quantization_config 'modules_to_not_convert' must be a list of strings");
  }
  if (auto ub = q->find("activation_scale_ub"); ub != q->end() && !ub->is_null()) {
    if (!ub->is_number() || !(ub->get<double>() > 0)) {
      return Corruption(source + ": quantization_config 'activation_scale_ub' must be a positive number");
    }
  }
  return Status::Ok();
}

}  // namespace

Result<ModelMetadata> MetadataFromHfConfig(const nlohmann::json& j, const std::string& source) {
  if (!j.is_object()) return Corruption(source + ": expected a JSON object");
  auto mt = j.find("model_type");
  if (mt == j.end() || !mt->is_string()) return Corruption(source + ": missing string field 'model_type'");
  const std::string model_type = mt->get<std::string>();
  HERD_RETURN_IF_ERROR(CheckQuantizationConfig(j, source));
  ModelMetadata md(source);
  if (model_type == "llama4") {
    // Llama4ForConditionalGeneration: the text model's fields are under text_config; tie_word_embeddings and
    // eos_token_id may sit at either level.
    auto t = j.find("text_config");
    if (t == j.end() || !t->is_object()) return Corruption(source + ": model_type llama4 needs a 'text_config' object");
    HERD_RETURN_IF_ERROR(CheckQuantizationConfig(*t, source + " text_config"));
    HERD_RETURN_IF_ERROR(CopyFields(*t, "text_config.", source, &md));
    // Tied when either level says so (a top-level false does not untie a tied text model); a value of another
    // type is kept so that reading it reports it.
    if (auto top = j.find("tie_word_embeddings"); top != j.end() && !top->is_null()) {
      const bool is_false = (top->is_boolean() && !top->get<bool>()) || (top->is_number() && top->get<double>() == 0);
      if (!is_false || !md.Contains("tie_word_embeddings")) {
        md.Set("tie_word_embeddings", ToValue(*top), "tie_word_embeddings");
      }
    }
    // The text model's EOS first, else the top level's.
    if (auto top = j.find("eos_token_id"); top != j.end() && !top->is_null() && !md.Contains("eos_token_id")) {
      md.Set("eos_token_id", ToValue(*top), "eos_token_id");
    }
    // The <|patch|> id whose embedding rows an image's features replace (llama4.md 9.7).
    if (auto top = j.find("image_token_index"); top != j.end() && !top->is_null()) {
      md.Set("image_token_index", ToValue(*top), "image_token_index");
    }
  } else if (model_type == "llama4_text" || model_type == "llama") {
    HERD_RETURN_IF_ERROR(CopyFields(j, "", source, &md));
  } else {
    return NotSupported("unknown architecture '" + model_type + "' in " + source +
                        "; supported: llama, llama4, llama4_text");
  }
  md.Set("model_type", model_type == "llama" ? "llama" : "llama4", "model_type");
  md.Set("rope_layout", model_type == "llama" ? "half_split" : "interleaved", "model_type");
  return md;
}

Result<nlohmann::json> ReadHfConfigJson(const std::string& dir, std::string* path) {
  namespace fs = std::filesystem;
  *path = (fs::path(dir) / "config.json").string();
  std::error_code ec;
  if (!fs::exists(fs::symlink_status(*path, ec))) return IOError(dir + ": directory has no config.json");
  HERD_ASSIGN_OR_RETURN(std::string text, ReadFileToString(*path, uint64_t{16} << 20));
  bool too_deep = false;
  nlohmann::json config = ParseJsonBounded(text, kMaxJsonNesting, &too_deep);
  if (too_deep) return Corruption(*path + ": nests deeper than " + std::to_string(kMaxJsonNesting) + " levels");
  return config;
}

}  // namespace herd::formats
