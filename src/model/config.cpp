// ModelConfig builders for GGUF (llama4.md section 4.4 key names for arch "llama"), HF config.json
// (section 10.1) and llama2.c headers (section 10.4).
#include "model/config.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "formats/gguf.h"
#include "formats/llama2c.h"

namespace herd::model {
namespace {

// A positive integer field of config.json; `fallback` < 0 means required.
Result<int64_t> JsonInt(const nlohmann::json& j, const char* key, const std::string& source, int64_t fallback = -1) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    if (fallback >= 0) return fallback;
    return Corruption(source + ": missing required field '" + key + "'");
  }
  if (!it->is_number_integer()) return Corruption(source + ": field '" + key + "' must be an integer, got " + it->dump());
  return it->get<int64_t>();
}

Result<double> JsonNumber(const nlohmann::json& j, const char* key, const std::string& source,
                          std::optional<double> fallback) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    if (fallback) return *fallback;
    return Corruption(source + ": missing required field '" + key + "'");
  }
  if (!it->is_number()) return Corruption(source + ": field '" + key + "' must be a number, got " + it->dump());
  return it->get<double>();
}

Status ParseRopeScaling(const nlohmann::json& j, const std::string& source, ModelConfig::RopeScaling* out) {
  auto it = j.find("rope_scaling");
  if (it == j.end() || it->is_null()) return Status::Ok();
  if (!it->is_object()) return Corruption(source + ": 'rope_scaling' must be an object or null");
  std::string type;
  for (const char* k : {"rope_type", "type"}) {
    auto t = it->find(k);
    if (t != it->end() && t->is_string()) type = t->get<std::string>();
  }
  if (type == "default") return Status::Ok();
  if (type != "llama3") {
    return NotSupported(source + ": rope_scaling type '" + type + "' is not supported (supported: llama3, default)");
  }
  HERD_ASSIGN_OR_RETURN(double factor, JsonNumber(*it, "factor", source + " rope_scaling", std::nullopt));
  HERD_ASSIGN_OR_RETURN(double low, JsonNumber(*it, "low_freq_factor", source + " rope_scaling", std::nullopt));
  HERD_ASSIGN_OR_RETURN(double high, JsonNumber(*it, "high_freq_factor", source + " rope_scaling", std::nullopt));
  HERD_ASSIGN_OR_RETURN(double orig, JsonNumber(*it, "original_max_position_embeddings",
                                                source + " rope_scaling", std::nullopt));
  if (!(factor > 0) || !(low > 0) || !(high > 0) || !(orig > 0) || high < low) {
    return Corruption(source + ": rope_scaling values are inconsistent: " + it->dump());
  }
  out->factor = static_cast<float>(factor);
  out->low_freq_factor = static_cast<float>(low);
  out->high_freq_factor = static_cast<float>(high);
  out->original_max_position_embeddings = static_cast<float>(orig);
  return Status::Ok();
}

void FillDenseLayers(ModelConfig* c) {
  c->layers.assign(static_cast<size_t>(std::max<int64_t>(c->num_hidden_layers, 0)), LayerConfig{});
  for (auto& l : c->layers) l.ffn_size = c->intermediate_size;
}

// A JSON boolean, or a number read as truthy (a Scout-derived config carries attn_temperature_tuning: 4,
// llama4.md section 2.8).
Result<bool> JsonTruthy(const nlohmann::json& j, const char* key, const std::string& source, bool fallback) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  if (it->is_boolean()) return it->get<bool>();
  if (it->is_number()) return it->get<double>() != 0;
  return Corruption(source + ": field '" + std::string(key) + "' must be a boolean, got " + it->dump());
}

Result<std::vector<int64_t>> JsonIntList(const nlohmann::json& j, const char* key, const std::string& source) {
  std::vector<int64_t> out;
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return out;
  if (!it->is_array()) return Corruption(source + ": field '" + std::string(key) + "' must be a list");
  for (const auto& v : *it) {
    if (!v.is_number_integer()) return Corruption(source + ": '" + std::string(key) + "' holds a non-integer " + v.dump());
    out.push_back(v.get<int64_t>());
  }
  return out;
}

// Llama 4 per-layer table from HF text_config (llama4.md sections 2.2 and 3): no_rope_layers (1 = uses RoPE;
// empty -> derived from no_rope_layer_interval), moe_layers (absent -> every interleave_moe_layer_step-th),
// chunked attention and QK-norm on RoPE layers, temperature tuning on NoPE layers.
Status FillLlama4Layers(const nlohmann::json& t, const std::string& source, bool use_qk_norm, bool temp_tuning,
                        int64_t chunk, ModelConfig* c) {
  const int64_t n = c->num_hidden_layers;
  HERD_ASSIGN_OR_RETURN(int64_t interval, JsonInt(t, "no_rope_layer_interval", source, 4));
  HERD_ASSIGN_OR_RETURN(int64_t step, JsonInt(t, "interleave_moe_layer_step", source, 1));
  if (interval <= 0) return Corruption(source + ": no_rope_layer_interval must be positive");
  if (step <= 0) return Corruption(source + ": interleave_moe_layer_step must be positive");
  HERD_ASSIGN_OR_RETURN(std::vector<int64_t> no_rope, JsonIntList(t, "no_rope_layers", source));
  if (no_rope.empty()) {
    for (int64_t l = 0; l < n; ++l) no_rope.push_back((l + 1) % interval != 0 ? 1 : 0);
  }
  if (static_cast<int64_t>(no_rope.size()) != n) {
    return Corruption(source + ": no_rope_layers has " + std::to_string(no_rope.size()) + " entries but there are " +
                      std::to_string(n) + " layers");
  }
  std::vector<bool> moe(static_cast<size_t>(n), false);
  if (t.contains("moe_layers") && !t["moe_layers"].is_null()) {
    HERD_ASSIGN_OR_RETURN(std::vector<int64_t> list, JsonIntList(t, "moe_layers", source));
    for (int64_t l : list) {
      if (l < 0 || l >= n) return Corruption(source + ": moe_layers entry " + std::to_string(l) + " is not a layer index");
      moe[l] = true;
    }
  } else {
    for (int64_t l = step - 1; l < n; l += step) moe[l] = true;
  }
  c->layers.assign(static_cast<size_t>(n), LayerConfig{});
  for (int64_t l = 0; l < n; ++l) {
    LayerConfig& lc = c->layers[l];
    if (no_rope[l] != 0 && no_rope[l] != 1) {
      return Corruption(source + ": no_rope_layers[" + std::to_string(l) + "] must be 0 or 1");
    }
    lc.use_rope = no_rope[l] == 1;
    lc.attention_chunk_size = lc.use_rope ? chunk : 0;
    lc.use_qk_norm = use_qk_norm && lc.use_rope;
    lc.attn_temperature_tuning = temp_tuning && !lc.use_rope;
    lc.moe = moe[l];
    lc.ffn_size = lc.moe ? c->intermediate_size : c->intermediate_size_mlp;
  }
  return Status::Ok();
}

}  // namespace

Status ModelConfig::Validate() const {
  auto positive = [](int64_t v, const char* field) -> Status {
    if (v <= 0) return Corruption(std::string(field) + " must be positive, got " + std::to_string(v));
    return Status::Ok();
  };
  HERD_RETURN_IF_ERROR(positive(hidden_size, "hidden_size"));
  HERD_RETURN_IF_ERROR(positive(num_hidden_layers, "num_hidden_layers"));
  HERD_RETURN_IF_ERROR(positive(num_attention_heads, "num_attention_heads"));
  HERD_RETURN_IF_ERROR(positive(num_key_value_heads, "num_key_value_heads"));
  HERD_RETURN_IF_ERROR(positive(head_dim, "head_dim"));
  HERD_RETURN_IF_ERROR(positive(intermediate_size, "intermediate_size"));
  HERD_RETURN_IF_ERROR(positive(max_position_embeddings, "max_position_embeddings"));
  constexpr int64_t kMaxDim = int64_t{1} << 20;
  if (hidden_size > kMaxDim || intermediate_size > kMaxDim || head_dim > 4096 || num_attention_heads > 4096 ||
      num_hidden_layers > 512 || vocab_size > (int64_t{1} << 24)) {
    return Corruption("hyperparameters are implausibly large: " + Describe());
  }
  if (num_attention_heads % num_key_value_heads != 0) {
    return Corruption("num_attention_heads " + std::to_string(num_attention_heads) +
                      " is not a multiple of num_key_value_heads " + std::to_string(num_key_value_heads));
  }
  if (head_dim % 2 != 0) return Corruption("head_dim " + std::to_string(head_dim) + " must be even for RoPE");
  if (!(rms_norm_eps > 0) || !std::isfinite(rms_norm_eps)) {
    return Corruption("rms_norm_eps must be positive, got " + std::to_string(rms_norm_eps));
  }
  if (!(rope_theta > 0) || !std::isfinite(rope_theta)) {
    return Corruption("rope_theta must be positive, got " + std::to_string(rope_theta));
  }
  if (static_cast<int64_t>(layers.size()) != num_hidden_layers) {
    return Corruption("per-layer table has " + std::to_string(layers.size()) + " entries for " +
                      std::to_string(num_hidden_layers) + " layers");
  }
  bool any_moe = false;
  for (size_t l = 0; l < layers.size(); ++l) {
    const LayerConfig& lc = layers[l];
    const std::string where = "layer " + std::to_string(l) + ": ";
    if (lc.ffn_size <= 0 || lc.ffn_size > kMaxDim) {
      return Corruption(where + "FFN width " + std::to_string(lc.ffn_size) + " is not valid");
    }
    if (lc.attention_chunk_size < 0) return Corruption(where + "attention_chunk_size must be >= 0");
    any_moe |= lc.moe;
  }
  if (any_moe) {
    if (num_local_experts <= 0 || num_local_experts > 4096) {
      return Corruption("num_local_experts must be in [1, 4096], got " + std::to_string(num_local_experts));
    }
    if (num_experts_per_tok <= 0 || num_experts_per_tok > num_local_experts) {
      return Corruption("num_experts_per_tok " + std::to_string(num_experts_per_tok) + " must be in [1, " +
                        std::to_string(num_local_experts) + "]");
    }
  }
  if (!(floor_scale > 0) || !std::isfinite(attn_scale)) {
    return Corruption("floor_scale must be positive and attn_scale finite");
  }
  return Status::Ok();
}

std::string ModelConfig::Describe() const {
  std::ostringstream s;
  s << "architecture            " << architecture_name << "\n"
    << "vocab_size              " << vocab_size << "\n"
    << "hidden_size             " << hidden_size << "\n"
    << "num_hidden_layers       " << num_hidden_layers << "\n"
    << "num_attention_heads     " << num_attention_heads << "\n"
    << "num_key_value_heads     " << num_key_value_heads << "\n"
    << "head_dim                " << head_dim << "\n"
    << "intermediate_size       " << intermediate_size << "\n"
    << "max_position_embeddings " << max_position_embeddings << "\n"
    << "rms_norm_eps            " << rms_norm_eps << "\n"
    << "rope_theta              " << rope_theta << "\n"
    << "rope_style              " << (rope_style == kernels::RopeStyle::kInterleaved ? "interleaved" : "half-split")
    << "\n";
  if (rope_scaling.factor > 0) {
    s << "rope_scaling            llama3 factor " << rope_scaling.factor << ", low " << rope_scaling.low_freq_factor
      << ", high " << rope_scaling.high_freq_factor << ", original " << rope_scaling.original_max_position_embeddings
      << "\n";
  }
  s << "tie_word_embeddings     " << (tie_word_embeddings ? "true" : "false") << "\n";
  if (architecture == Architecture::kLlama4) {
    s << "num_local_experts       " << num_local_experts << "\n"
      << "num_experts_per_tok     " << num_experts_per_tok << "\n"
      << "intermediate_size_mlp   " << intermediate_size_mlp << "\n"
      << "attn_scale              " << attn_scale << "\n"
      << "floor_scale             " << floor_scale << "\n";
    s << "layers                  (R = RoPE, N = NoPE; c = chunked; q = QK-norm; t = temperature tuning; M = MoE, D = dense)\n";
    for (size_t l = 0; l < layers.size(); ++l) {
      const LayerConfig& lc = layers[l];
      s << "  " << l << ": " << (lc.use_rope ? "R" : "N") << (lc.attention_chunk_size > 0 ? "c" : "-")
        << (lc.use_qk_norm ? "q" : "-") << (lc.attn_temperature_tuning ? "t" : "-") << " " << (lc.moe ? "M" : "D")
        << " ffn " << lc.ffn_size;
      if (lc.attention_chunk_size > 0) s << " chunk " << lc.attention_chunk_size;
      s << "\n";
    }
  }
  return s.str();
}

std::vector<float> RopeInvFreq(const ModelConfig& c, const float* freq_divisors) {
  const int64_t n = c.head_dim / 2;
  std::vector<float> inv(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    // fp32 as Meta: 1 / theta^(arange(0, d, 2) / d)
    const float expo = static_cast<float>(2 * i) / static_cast<float>(c.head_dim);
    inv[i] = 1.0f / std::pow(c.rope_theta, expo);
  }
  const auto& s = c.rope_scaling;
  if (s.factor > 0) {
    const float low_wavelen = s.original_max_position_embeddings / s.low_freq_factor;
    const float high_wavelen = s.original_max_position_embeddings / s.high_freq_factor;
    for (int64_t i = 0; i < n; ++i) {
      const float wavelen = 2.0f * static_cast<float>(M_PI) / inv[i];
      if (wavelen < high_wavelen) continue;
      if (wavelen > low_wavelen) {
        inv[i] = inv[i] / s.factor;
      } else if (s.high_freq_factor != s.low_freq_factor) {  // medium band (guarded: degenerate when equal)
        const float smooth = (s.original_max_position_embeddings / wavelen - s.low_freq_factor) /
                             (s.high_freq_factor - s.low_freq_factor);
        inv[i] = (1 - smooth) * inv[i] / s.factor + smooth * inv[i];
      }
    }
  }
  if (freq_divisors != nullptr) {
    for (int64_t i = 0; i < n; ++i) inv[i] = inv[i] / freq_divisors[i];
  }
  return inv;
}

Result<ModelConfig> ConfigFromGguf(const formats::GgufFile& gguf) {
  ModelConfig c;
  HERD_ASSIGN_OR_RETURN(std::string_view arch, gguf.GetString("general.architecture"));
  if (arch == "llama") {
    c.architecture = Architecture::kLlama;
  } else if (arch == "llama4") {
    c.architecture = Architecture::kLlama4;
  } else {
    return NotSupported("unknown architecture '" + std::string(arch) + "' in " + gguf.path() +
                        " (general.architecture); supported: llama, llama4");
  }
  c.architecture_name = std::string(arch);
  const std::string p = std::string(arch) + ".";
  HERD_ASSIGN_OR_RETURN(auto name, gguf.GetStringOpt("general.name"));
  if (name) c.name = std::string(*name);
  HERD_ASSIGN_OR_RETURN(c.hidden_size, gguf.GetInt(p + "embedding_length"));
  HERD_ASSIGN_OR_RETURN(c.num_hidden_layers, gguf.GetInt(p + "block_count"));
  HERD_ASSIGN_OR_RETURN(c.intermediate_size, gguf.GetInt(p + "feed_forward_length"));
  HERD_ASSIGN_OR_RETURN(c.num_attention_heads, gguf.GetInt(p + "attention.head_count"));
  HERD_ASSIGN_OR_RETURN(auto kv, gguf.GetIntOpt(p + "attention.head_count_kv"));
  c.num_key_value_heads = kv ? *kv : c.num_attention_heads;
  HERD_ASSIGN_OR_RETURN(c.max_position_embeddings, gguf.GetInt(p + "context_length"));
  HERD_ASSIGN_OR_RETURN(double eps, gguf.GetFloat(p + "attention.layer_norm_rms_epsilon"));
  c.rms_norm_eps = static_cast<float>(eps);
  // llama.cpp's documented default for arch llama when the key is absent (its llama2.c converter omits it).
  HERD_ASSIGN_OR_RETURN(auto theta, gguf.GetFloatOpt(p + "rope.freq_base"));
  if (!theta && c.architecture == Architecture::kLlama4) {
    return Corruption(gguf.path() + ": missing key '" + p + "rope.freq_base'");
  }
  c.rope_theta = theta ? static_cast<float>(*theta) : 10000.0f;
  c.head_dim = c.num_attention_heads > 0 ? c.hidden_size / c.num_attention_heads : 0;
  HERD_ASSIGN_OR_RETURN(auto key_length, gguf.GetIntOpt(p + "attention.key_length"));
  if (key_length) c.head_dim = *key_length;
  HERD_ASSIGN_OR_RETURN(auto rope_dims, gguf.GetIntOpt(p + "rope.dimension_count"));
  if (rope_dims && *rope_dims != c.head_dim) {
    return NotSupported(gguf.path() + ": partial RoPE (" + p + "rope.dimension_count " + std::to_string(*rope_dims) +
                        " != head_dim " + std::to_string(c.head_dim) + ") is not supported");
  }
  HERD_ASSIGN_OR_RETURN(auto vocab, gguf.GetIntOpt(p + "vocab_size"));
  if (vocab) c.vocab_size = *vocab;
  // GGUF llama and llama4 store Q/K in Meta order (llama4.md 10.2); llama3 scaling is in rope_freqs.weight.
  c.rope_style = kernels::RopeStyle::kInterleaved;
  if (c.architecture == Architecture::kLlama) {
    FillDenseLayers(&c);
  } else {
    // llama.cpp naming: feed_forward_length is the dense width, expert_feed_forward_length the expert width
    // (llama4.md pitfall 12). Keys GGUF does not carry take llama.cpp's values (section 4.4); files written
    // by `herd convert` for non-default models add herd.* keys, which llama.cpp ignores.
    c.intermediate_size_mlp = c.intermediate_size;
    HERD_ASSIGN_OR_RETURN(c.intermediate_size, gguf.GetInt(p + "expert_feed_forward_length"));
    HERD_ASSIGN_OR_RETURN(c.num_local_experts, gguf.GetInt(p + "expert_count"));
    HERD_ASSIGN_OR_RETURN(c.num_experts_per_tok, gguf.GetInt(p + "expert_used_count"));
    HERD_ASSIGN_OR_RETURN(auto step, gguf.GetIntOpt(p + "interleave_moe_layer_step"));
    HERD_ASSIGN_OR_RETURN(auto swa, gguf.GetIntOpt(p + "attention.sliding_window"));
    HERD_ASSIGN_OR_RETURN(auto chunk, gguf.GetIntOpt("herd.attention_chunk_size"));
    HERD_ASSIGN_OR_RETURN(auto interval, gguf.GetIntOpt("herd.no_rope_layer_interval"));
    HERD_ASSIGN_OR_RETURN(auto qk_norm, gguf.GetBoolOpt("herd.use_qk_norm"));
    HERD_ASSIGN_OR_RETURN(auto temp_tuning, gguf.GetBoolOpt("herd.attn_temperature_tuning"));
    HERD_ASSIGN_OR_RETURN(auto floor_scale, gguf.GetFloatOpt("herd.floor_scale"));
    HERD_ASSIGN_OR_RETURN(auto attn_scale, gguf.GetFloatOpt("herd.attn_scale"));
    nlohmann::json t = nlohmann::json::object();
    t["no_rope_layer_interval"] = interval ? *interval : 4;
    t["interleave_moe_layer_step"] = step ? *step : 1;
    if (gguf.Find("herd.no_rope_layers") != nullptr) {
      HERD_ASSIGN_OR_RETURN(std::vector<int64_t> list, gguf.GetIntArray("herd.no_rope_layers"));
      t["no_rope_layers"] = list;
    }
    if (gguf.Find("herd.moe_layers") != nullptr) {
      HERD_ASSIGN_OR_RETURN(std::vector<int64_t> list, gguf.GetIntArray("herd.moe_layers"));
      t["moe_layers"] = list;
    }
    int64_t chunk_size = chunk ? *chunk : 8192;
    if (swa && *swa == 0) chunk_size = 0;  // llama.cpp: sliding_window 0 disables chunking
    c.floor_scale = floor_scale ? static_cast<float>(*floor_scale) : 8192.0f;
    c.attn_scale = attn_scale ? static_cast<float>(*attn_scale) : 0.1f;
    // llama.cpp infers QK-norm from the expert count (Maverick, 128 experts, has none: llama4.md pitfall 8).
    const bool use_qk_norm = qk_norm ? *qk_norm : c.num_local_experts != 128;
    HERD_RETURN_IF_ERROR(FillLlama4Layers(t, gguf.path(), use_qk_norm, temp_tuning ? *temp_tuning : true,
                                          chunk_size, &c));
  }
  HERD_RETURN_IF_ERROR(c.Validate().WithContext(gguf.path()));
  return c;
}

namespace {

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

// HF Llama 4 text config: `Llama4ForConditionalGeneration` (model_type llama4, fields under text_config) or
// `Llama4ForCausalLM` (model_type llama4_text). Defaults are HF configuration_llama4.py's (llama4.md section 3).
Result<ModelConfig> ConfigFromHfLlama4(const nlohmann::json& top, const nlohmann::json& t, const std::string& source) {
  ModelConfig c;
  c.architecture = Architecture::kLlama4;
  c.architecture_name = "llama4";
  HERD_ASSIGN_OR_RETURN(c.hidden_size, JsonInt(t, "hidden_size", source));
  HERD_ASSIGN_OR_RETURN(c.num_hidden_layers, JsonInt(t, "num_hidden_layers", source));
  HERD_ASSIGN_OR_RETURN(c.num_attention_heads, JsonInt(t, "num_attention_heads", source));
  if (c.num_attention_heads <= 0) return Corruption(source + ": num_attention_heads must be positive");
  HERD_ASSIGN_OR_RETURN(c.num_key_value_heads, JsonInt(t, "num_key_value_heads", source, c.num_attention_heads));
  HERD_ASSIGN_OR_RETURN(c.head_dim, JsonInt(t, "head_dim", source, c.hidden_size / c.num_attention_heads));
  HERD_ASSIGN_OR_RETURN(c.intermediate_size, JsonInt(t, "intermediate_size", source));
  HERD_ASSIGN_OR_RETURN(c.intermediate_size_mlp, JsonInt(t, "intermediate_size_mlp", source, c.intermediate_size));
  HERD_ASSIGN_OR_RETURN(c.vocab_size, JsonInt(t, "vocab_size", source));
  HERD_ASSIGN_OR_RETURN(c.max_position_embeddings, JsonInt(t, "max_position_embeddings", source));
  HERD_ASSIGN_OR_RETURN(double eps, JsonNumber(t, "rms_norm_eps", source, std::nullopt));
  c.rms_norm_eps = static_cast<float>(eps);
  HERD_ASSIGN_OR_RETURN(double theta, JsonNumber(t, "rope_theta", source, std::nullopt));
  c.rope_theta = static_cast<float>(theta);
  HERD_RETURN_IF_ERROR(ParseRopeScaling(t, source, &c.rope_scaling));
  HERD_ASSIGN_OR_RETURN(c.num_local_experts, JsonInt(t, "num_local_experts", source));
  HERD_ASSIGN_OR_RETURN(c.num_experts_per_tok, JsonInt(t, "num_experts_per_tok", source, 1));
  HERD_ASSIGN_OR_RETURN(double attn_scale, JsonNumber(t, "attn_scale", source, 0.1));
  HERD_ASSIGN_OR_RETURN(double floor_scale, JsonNumber(t, "floor_scale", source, 8192.0));
  c.attn_scale = static_cast<float>(attn_scale);
  c.floor_scale = static_cast<float>(floor_scale);
  HERD_ASSIGN_OR_RETURN(bool qk_norm, JsonTruthy(t, "use_qk_norm", source, true));
  HERD_ASSIGN_OR_RETURN(bool temp_tuning, JsonTruthy(t, "attn_temperature_tuning", source, true));
  int64_t chunk = 8192;
  if (t.contains("attention_chunk_size")) {
    if (t["attention_chunk_size"].is_null()) {
      chunk = 0;  // no chunking configured (e.g. Llama Guard 4 conversions)
    } else {
      HERD_ASSIGN_OR_RETURN(chunk, JsonInt(t, "attention_chunk_size", source));
      if (chunk <= 0) return Corruption(source + ": attention_chunk_size must be positive or null");
    }
  }
  HERD_ASSIGN_OR_RETURN(bool tie_top, JsonTruthy(top, "tie_word_embeddings", source, false));
  HERD_ASSIGN_OR_RETURN(bool tie_text, JsonTruthy(t, "tie_word_embeddings", source, false));
  c.tie_word_embeddings = tie_top || tie_text;
  HERD_ASSIGN_OR_RETURN(bool compressor, JsonTruthy(t, "for_llm_compressor", source, false));
  (void)compressor;  // the loader detects the expert layout from the tensor names
  c.rope_style = kernels::RopeStyle::kInterleaved;  // HF Llama 4 keeps Meta's Q/K order (llama4.md 2.5)
  HERD_RETURN_IF_ERROR(FillLlama4Layers(t, source, qk_norm, temp_tuning, chunk, &c));
  HERD_RETURN_IF_ERROR(c.Validate().WithContext(source));
  return c;
}

}  // namespace

Result<ModelConfig> ConfigFromHf(const nlohmann::json& j, const std::string& source) {
  if (!j.is_object()) return Corruption(source + ": expected a JSON object");
  ModelConfig c;
  auto mt = j.find("model_type");
  if (mt == j.end() || !mt->is_string()) return Corruption(source + ": missing string field 'model_type'");
  std::string model_type = mt->get<std::string>();
  HERD_RETURN_IF_ERROR(CheckQuantizationConfig(j, source));
  if (model_type == "llama4") {
    auto t = j.find("text_config");
    if (t == j.end() || !t->is_object()) return Corruption(source + ": model_type llama4 needs a 'text_config' object");
    HERD_RETURN_IF_ERROR(CheckQuantizationConfig(*t, source + " text_config"));
    return ConfigFromHfLlama4(j, *t, source + " text_config");
  }
  if (model_type == "llama4_text") return ConfigFromHfLlama4(j, j, source);
  if (model_type != "llama") {
    return NotSupported("unknown architecture '" + model_type + "' in " + source +
                        "; supported: llama, llama4, llama4_text");
  }
  c.architecture = Architecture::kLlama;
  c.architecture_name = model_type;
  HERD_ASSIGN_OR_RETURN(c.hidden_size, JsonInt(j, "hidden_size", source));
  HERD_ASSIGN_OR_RETURN(c.num_hidden_layers, JsonInt(j, "num_hidden_layers", source));
  HERD_ASSIGN_OR_RETURN(c.num_attention_heads, JsonInt(j, "num_attention_heads", source));
  HERD_ASSIGN_OR_RETURN(c.num_key_value_heads, JsonInt(j, "num_key_value_heads", source, c.num_attention_heads));
  if (c.num_attention_heads <= 0) return Corruption(source + ": num_attention_heads must be positive");
  HERD_ASSIGN_OR_RETURN(c.head_dim, JsonInt(j, "head_dim", source, c.hidden_size / c.num_attention_heads));
  HERD_ASSIGN_OR_RETURN(c.intermediate_size, JsonInt(j, "intermediate_size", source));
  HERD_ASSIGN_OR_RETURN(c.vocab_size, JsonInt(j, "vocab_size", source));
  HERD_ASSIGN_OR_RETURN(c.max_position_embeddings, JsonInt(j, "max_position_embeddings", source, 2048));
  HERD_ASSIGN_OR_RETURN(double eps, JsonNumber(j, "rms_norm_eps", source, std::nullopt));
  c.rms_norm_eps = static_cast<float>(eps);
  HERD_ASSIGN_OR_RETURN(double theta, JsonNumber(j, "rope_theta", source, 10000.0));  // HF LlamaConfig default
  c.rope_theta = static_cast<float>(theta);
  HERD_RETURN_IF_ERROR(ParseRopeScaling(j, source, &c.rope_scaling));
  auto tie = j.find("tie_word_embeddings");
  if (tie != j.end() && !tie->is_null()) {
    if (!tie->is_boolean()) return Corruption(source + ": 'tie_word_embeddings' must be a boolean");
    c.tie_word_embeddings = tie->get<bool>();
  }
  // HF Llama checkpoints store Q/K rows permuted for rotate_half (llama4.md 10.2).
  c.rope_style = kernels::RopeStyle::kHalfSplit;
  FillDenseLayers(&c);
  HERD_RETURN_IF_ERROR(c.Validate().WithContext(source));
  return c;
}

Result<ModelConfig> ConfigFromLlama2c(const formats::Llama2cHeader& h) {
  ModelConfig c;
  c.architecture = Architecture::kLlama;
  c.architecture_name = "llama";
  c.name = "llama2.c";
  c.vocab_size = h.vocab_size;
  c.hidden_size = h.dim;
  c.num_hidden_layers = h.n_layers;
  c.num_attention_heads = h.n_heads;
  c.num_key_value_heads = h.n_kv_heads;
  c.head_dim = h.dim / h.n_heads;
  c.intermediate_size = h.hidden_dim;
  c.max_position_embeddings = h.seq_len;
  c.rms_norm_eps = 1e-5f;    // llama2.c run.c hard-codes both (llama4.md 10.4)
  c.rope_theta = 10000.0f;
  c.rope_style = kernels::RopeStyle::kInterleaved;
  c.tie_word_embeddings = h.shared_classifier;
  FillDenseLayers(&c);
  HERD_RETURN_IF_ERROR(c.Validate().WithContext("llama2.c header"));
  return c;
}

}  // namespace herd::model
