// ModelConfig from the neutral ModelMetadata (HF config.json field names, core/metadata.h) and back: dense Llama
// per llama4.md section 10 (HF LlamaConfig defaults), Llama 4 per sections 2-3 (HF Llama4TextConfig defaults).
// Which keys a file format states, and how, is formats/' business; this file knows only what the fields mean.
#include "model/config.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <sstream>

namespace herd::model {
namespace {

// Plausible ranges of every size: what a real model can have with room to spare (Maverick: hidden 5120, 48 layers,
// 128 experts, vocab 202048, 10M positions for Scout), and small enough that nothing sized from them overflows
// or allocates absurdly (style.md 5: never allocate from an untrusted count).
struct SizeLimit {
  const char* field;
  int64_t ModelConfig::*member;
  int64_t lo, hi;
};
constexpr int64_t kMaxDim = int64_t{1} << 20;
constexpr SizeLimit kSizeLimits[] = {
    {"vocab_size", &ModelConfig::vocab_size, 1, int64_t{1} << 24},
    {"hidden_size", &ModelConfig::hidden_size, 1, kMaxDim},
    {"num_hidden_layers", &ModelConfig::num_hidden_layers, 1, 512},
    {"num_attention_heads", &ModelConfig::num_attention_heads, 1, 4096},
    {"num_key_value_heads", &ModelConfig::num_key_value_heads, 1, 4096},
    {"head_dim", &ModelConfig::head_dim, 2, 4096},
    {"intermediate_size", &ModelConfig::intermediate_size, 1, kMaxDim},
    {"max_position_embeddings", &ModelConfig::max_position_embeddings, 1, int64_t{1} << 30},
};
constexpr SizeLimit kLlama4SizeLimits[] = {
    {"intermediate_size_mlp", &ModelConfig::intermediate_size_mlp, 1, kMaxDim},
    {"num_local_experts", &ModelConfig::num_local_experts, 0, 4096},  // 0: an all-dense model (Llama Guard 4)
    {"num_experts_per_tok", &ModelConfig::num_experts_per_tok, 1, 4096},
};
constexpr int64_t kMaxChunk = int64_t{1} << 30;

Status OutOfLimits(const std::string& where, int64_t v, int64_t lo, int64_t hi) {
  return Corruption(where + " = " + std::to_string(v) + " is outside the plausible range [" + std::to_string(lo) +
                    ", " + std::to_string(hi) + "]");
}

// Reads metadata into a ModelConfig, naming each field with its origin in every message.
class Reader {
 public:
  explicit Reader(const ModelMetadata& md) : md_(md) {}

  // A size field of `c` with its limit from `limits`, or `fallback` when absent (nullopt: required).
  template <size_t N>
  Status Size(ModelConfig* c, const SizeLimit (&limits)[N], std::string_view field, std::optional<int64_t> fallback) {
    for (const SizeLimit& l : limits) {
      if (field != l.field) continue;
      HERD_ASSIGN_OR_RETURN(std::optional<int64_t> v, md_.Int(field));
      if (!v && !fallback) return Missing(field);
      const int64_t value = v ? *v : *fallback;
      if (value < l.lo || value > l.hi) return OutOfLimits(md_.Where(field), value, l.lo, l.hi);
      c->*l.member = value;
      return Status::Ok();
    }
    return Internal("no size limit for " + std::string(field));
  }

  Result<int64_t> Int(std::string_view field, int64_t fallback, int64_t lo, int64_t hi) {
    HERD_ASSIGN_OR_RETURN(std::optional<int64_t> v, md_.Int(field));
    const int64_t value = v.value_or(fallback);
    if (value < lo || value > hi) return OutOfLimits(md_.Where(field), value, lo, hi);
    return value;
  }

  // A finite number; `fallback` nullopt: required.
  Result<float> Float(std::string_view field, std::optional<double> fallback) {
    HERD_ASSIGN_OR_RETURN(std::optional<double> v, md_.Number(field));
    if (!v && !fallback) return Missing(field);
    const double value = v ? *v : *fallback;
    if (!std::isfinite(value) || std::fabs(value) > 3.0e38) {
      return Corruption(md_.Where(field) + " must be a finite number, got " + std::to_string(value));
    }
    return static_cast<float>(value);
  }

  Result<bool> Bool(std::string_view field, bool fallback) {
    HERD_ASSIGN_OR_RETURN(std::optional<bool> v, md_.Bool(field));
    return v.value_or(fallback);
  }

  Status Missing(std::string_view field) const {
    return Corruption(md_.source() + ": missing required field '" + std::string(field) + "'");
  }
  const ModelMetadata& md() const { return md_; }

 private:
  const ModelMetadata& md_;
};

// HF rope_scaling (flattened as rope_scaling.<field>): absent, "default" or llama3 (llama4.md 2.5).
Status ReadRopeScaling(Reader& r, ModelConfig::RopeScaling* out) {
  const ModelMetadata& md = r.md();
  std::optional<std::string> type;
  for (const char* k : {"rope_scaling.rope_type", "rope_scaling.type"}) {
    HERD_ASSIGN_OR_RETURN(std::optional<std::string> t, md.String(k));
    if (t) type = t;
  }
  bool any = false;
  for (const auto& [key, e] : md.entries()) any |= key.starts_with("rope_scaling.");
  if (!any || (type && *type == "default")) return Status::Ok();
  if (!type || *type != "llama3") {
    return NotSupported(md.source() + ": rope_scaling type '" + type.value_or("") +
                        "' is not supported (supported: llama3, default)");
  }
  HERD_ASSIGN_OR_RETURN(float factor, r.Float("rope_scaling.factor", std::nullopt));
  HERD_ASSIGN_OR_RETURN(float low, r.Float("rope_scaling.low_freq_factor", std::nullopt));
  HERD_ASSIGN_OR_RETURN(float high, r.Float("rope_scaling.high_freq_factor", std::nullopt));
  HERD_ASSIGN_OR_RETURN(float orig, r.Float("rope_scaling.original_max_position_embeddings", std::nullopt));
  if (!(factor > 0) || !(low > 0) || !(high > 0) || !(orig > 0) || high < low) {
    return Corruption(md.source() + ": rope_scaling values are inconsistent: factor " + std::to_string(factor) +
                      ", low_freq_factor " + std::to_string(low) + ", high_freq_factor " + std::to_string(high) +
                      ", original_max_position_embeddings " + std::to_string(orig));
  }
  *out = {factor, low, high, orig};
  return Status::Ok();
}

// Fields both families share. head_dim defaults to hidden_size / num_attention_heads, which must then divide.
Status ReadCommon(Reader& r, ModelConfig* c) {
  const ModelMetadata& md = r.md();
  const bool llama4 = c->architecture == Architecture::kLlama4;
  HERD_RETURN_IF_ERROR(r.Size(c, kSizeLimits, "hidden_size", std::nullopt));
  HERD_RETURN_IF_ERROR(r.Size(c, kSizeLimits, "num_hidden_layers", std::nullopt));
  HERD_RETURN_IF_ERROR(r.Size(c, kSizeLimits, "num_attention_heads", std::nullopt));
  HERD_RETURN_IF_ERROR(r.Size(c, kSizeLimits, "num_key_value_heads", c->num_attention_heads));
  if (!md.Contains("head_dim") && c->hidden_size % c->num_attention_heads != 0) {
    return Corruption(md.Where("hidden_size") + " = " + std::to_string(c->hidden_size) + " is not divisible by " +
                      md.Where("num_attention_heads") + " = " + std::to_string(c->num_attention_heads) +
                      ", and no head_dim is given");
  }
  HERD_RETURN_IF_ERROR(r.Size(c, kSizeLimits, "head_dim", c->hidden_size / c->num_attention_heads));
  HERD_RETURN_IF_ERROR(r.Size(c, kSizeLimits, "intermediate_size", std::nullopt));
  HERD_RETURN_IF_ERROR(r.Size(c, kSizeLimits, "vocab_size", std::nullopt));
  // HF LlamaConfig's defaults: 2048 positions, theta 10000 (llama.cpp's too for GGUF llama without the key).
  HERD_RETURN_IF_ERROR(
      r.Size(c, kSizeLimits, "max_position_embeddings", llama4 ? std::nullopt : std::optional<int64_t>(2048)));
  HERD_ASSIGN_OR_RETURN(c->rms_norm_eps, r.Float("rms_norm_eps", std::nullopt));
  HERD_ASSIGN_OR_RETURN(c->rope_theta, r.Float("rope_theta", llama4 ? std::nullopt : std::optional<double>(10000)));
  HERD_RETURN_IF_ERROR(ReadRopeScaling(r, &c->rope_scaling));
  HERD_ASSIGN_OR_RETURN(c->tie_word_embeddings, r.Bool("tie_word_embeddings", false));
  HERD_ASSIGN_OR_RETURN(std::optional<std::string> layout, md.String("rope_layout"));
  if (!layout || *layout == "interleaved") {
    c->rope_style = kernels::RopeStyle::kInterleaved;
  } else if (*layout == "half_split") {
    c->rope_style = kernels::RopeStyle::kHalfSplit;
  } else {
    return Corruption(md.Where("rope_layout") + " must be \"interleaved\" or \"half_split\", got \"" + *layout + "\"");
  }
  HERD_ASSIGN_OR_RETURN(std::optional<std::string> name, md.String("name"));
  if (name) c->name = *name;
  return Status::Ok();
}

// Llama 4's per-layer table (llama4.md sections 2.2 and 3): no_rope_layers (1 = uses RoPE; absent -> every
// no_rope_layer_interval-th layer is NoPE), moe_layers (absent -> every interleave_moe_layer_step-th), chunked
// attention and QK-norm on RoPE layers, temperature tuning on NoPE layers.
Status ReadLlama4(Reader& r, ModelConfig* c) {
  const ModelMetadata& md = r.md();
  HERD_RETURN_IF_ERROR(r.Size(c, kLlama4SizeLimits, "intermediate_size_mlp", c->intermediate_size));
  HERD_RETURN_IF_ERROR(r.Size(c, kLlama4SizeLimits, "num_local_experts", std::nullopt));
  HERD_RETURN_IF_ERROR(r.Size(c, kLlama4SizeLimits, "num_experts_per_tok", 1));
  HERD_ASSIGN_OR_RETURN(c->attn_scale, r.Float("attn_scale", 0.1));
  HERD_ASSIGN_OR_RETURN(c->floor_scale, r.Float("floor_scale", 8192.0));
  HERD_ASSIGN_OR_RETURN(bool qk_norm, r.Bool("use_qk_norm", true));
  HERD_ASSIGN_OR_RETURN(bool temp_tuning, r.Bool("attn_temperature_tuning", true));
  int64_t chunk = 0;  // null: no chunking (e.g. Llama Guard 4 conversions)
  if (!md.IsNull("attention_chunk_size")) {
    HERD_ASSIGN_OR_RETURN(chunk, r.Int("attention_chunk_size", 8192, 1, kMaxChunk));
  }
  const int64_t n = c->num_hidden_layers;
  HERD_ASSIGN_OR_RETURN(int64_t interval, r.Int("no_rope_layer_interval", 4, 1, kMaxChunk));
  // 0: no MoE layer (Hugging Face's converter writes it for the all-dense Llama Guard 4; vLLM's reading).
  HERD_ASSIGN_OR_RETURN(int64_t step, r.Int("interleave_moe_layer_step", 1, 0, kMaxChunk));
  HERD_ASSIGN_OR_RETURN(std::optional<ModelMetadata::IntList> no_rope, md.Ints("no_rope_layers"));
  if (!no_rope || no_rope->empty()) {
    no_rope.emplace();
    for (int64_t l = 0; l < n; ++l) no_rope->push_back((l + 1) % interval != 0 ? 1 : 0);
  }
  if (static_cast<int64_t>(no_rope->size()) != n) {
    return Corruption(md.Where("no_rope_layers") + " has " + std::to_string(no_rope->size()) +
                      " entries but there are " + std::to_string(n) + " layers");
  }
  std::vector<bool> moe(static_cast<size_t>(n), false);
  HERD_ASSIGN_OR_RETURN(std::optional<ModelMetadata::IntList> moe_list, md.Ints("moe_layers"));
  if (moe_list) {
    for (int64_t l : *moe_list) {
      if (l < 0 || l >= n) {
        return Corruption(md.Where("moe_layers") + " entry " + std::to_string(l) + " is not a layer index");
      }
      moe[l] = true;
    }
  } else if (step > 0) {
    for (int64_t l = step - 1; l < n; l += step) moe[l] = true;
  }
  if (c->num_local_experts == 0 && std::find(moe.begin(), moe.end(), true) != moe.end()) {
    return Corruption(md.Where("num_local_experts") + " is 0 but the model has mixture-of-experts layers");
  }
  c->layers.assign(static_cast<size_t>(n), LayerConfig{});
  for (int64_t l = 0; l < n; ++l) {
    LayerConfig& lc = c->layers[l];
    if ((*no_rope)[l] != 0 && (*no_rope)[l] != 1) {
      return Corruption(md.Where("no_rope_layers") + "[" + std::to_string(l) + "] must be 0 or 1");
    }
    lc.use_rope = (*no_rope)[l] == 1;
    lc.attention_chunk_size = lc.use_rope ? chunk : 0;
    lc.use_qk_norm = qk_norm && lc.use_rope;
    lc.attn_temperature_tuning = temp_tuning && !lc.use_rope;
    lc.moe = moe[l];
    lc.ffn_size = lc.moe ? c->intermediate_size : c->intermediate_size_mlp;
  }
  return Status::Ok();
}

}  // namespace

Status ModelConfig::Validate() const {
  for (const SizeLimit& l : kSizeLimits) {
    if (this->*l.member < l.lo || this->*l.member > l.hi) return OutOfLimits(l.field, this->*l.member, l.lo, l.hi);
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
    if (lc.attention_chunk_size < 0 || lc.attention_chunk_size > kMaxChunk) {
      return Corruption(where + "attention_chunk_size " + std::to_string(lc.attention_chunk_size) + " is not valid");
    }
    any_moe |= lc.moe;
  }
  if (any_moe) {
    for (const SizeLimit& l : kLlama4SizeLimits) {
      if (this->*l.member < l.lo || this->*l.member > l.hi) return OutOfLimits(l.field, this->*l.member, l.lo, l.hi);
    }
    if (num_experts_per_tok > num_local_experts) {
      return Corruption("num_experts_per_tok " + std::to_string(num_experts_per_tok) + " must be at most " +
                        "num_local_experts " + std::to_string(num_local_experts));
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
    s << "layers                  (R = RoPE, N = NoPE; c = chunked; q = QK-norm; t = temperature tuning; M = MoE, D = "
         "dense)\n";
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

std::vector<float> RopeFreqDivisors(const ModelConfig& c, int64_t* n_inexact) {
  *n_inexact = 0;
  if (!(c.rope_scaling.factor > 0)) return {};
  ModelConfig unscaled = c;
  unscaled.rope_scaling = {};
  const std::vector<float> base = RopeInvFreq(unscaled);
  const std::vector<float> scaled = RopeInvFreq(c);
  std::vector<float> div(base.size());
  for (size_t i = 0; i < base.size(); ++i) {
    const float d0 = base[i] / scaled[i];
    div[i] = d0;
    bool found = base[i] / d0 == scaled[i];
    float up = d0, down = d0;
    for (int step = 0; step < 16 && !found; ++step) {
      up = std::nextafter(up, INFINITY);
      down = std::nextafter(down, 0.0f);
      if (base[i] / up == scaled[i]) {
        div[i] = up;
        found = true;
      } else if (base[i] / down == scaled[i]) {
        div[i] = down;
        found = true;
      }
    }
    *n_inexact += !found;
  }
  return div;
}

Result<ModelConfig> ConfigFromMetadata(const ModelMetadata& md) {
  Reader r(md);
  ModelConfig c;
  HERD_ASSIGN_OR_RETURN(std::optional<std::string> type, md.String("model_type"));
  if (!type) return Corruption(md.source() + ": no model_type (architecture) is stated");
  if (*type == "llama") {
    c.architecture = Architecture::kLlama;
  } else if (*type == "llama4") {
    c.architecture = Architecture::kLlama4;
  } else {
    return NotSupported("unknown architecture '" + *type + "' (" + md.Where("model_type") +
                        "); supported: llama, llama4");
  }
  c.architecture_name = *type;
  HERD_RETURN_IF_ERROR(ReadCommon(r, &c));
  if (c.architecture == Architecture::kLlama4) {
    HERD_RETURN_IF_ERROR(ReadLlama4(r, &c));
  } else {
    c.layers.assign(static_cast<size_t>(c.num_hidden_layers), LayerConfig{});
    for (auto& l : c.layers) l.ffn_size = c.intermediate_size;
  }
  HERD_RETURN_IF_ERROR(c.Validate().WithContext(md.source()));
  return c;
}

Result<ModelMetadata> MetadataFromConfig(const ModelConfig& c) {
  ModelMetadata md(c.name.empty() ? c.architecture_name : c.name);
  auto set = [&](const char* key, ModelMetadata::Value v) { md.Set(key, std::move(v)); };
  set("model_type", c.architecture == Architecture::kLlama4 ? "llama4" : "llama");
  if (!c.name.empty()) set("name", c.name);
  set("vocab_size", c.vocab_size);
  set("hidden_size", c.hidden_size);
  set("num_hidden_layers", c.num_hidden_layers);
  set("num_attention_heads", c.num_attention_heads);
  set("num_key_value_heads", c.num_key_value_heads);
  set("head_dim", c.head_dim);
  set("intermediate_size", c.intermediate_size);
  set("max_position_embeddings", c.max_position_embeddings);
  set("rms_norm_eps", static_cast<double>(c.rms_norm_eps));
  set("rope_theta", static_cast<double>(c.rope_theta));
  set("rope_layout", c.rope_style == kernels::RopeStyle::kInterleaved ? "interleaved" : "half_split");
  set("tie_word_embeddings", c.tie_word_embeddings);
  if (c.rope_scaling.factor > 0) {
    set("rope_scaling.rope_type", "llama3");
    set("rope_scaling.factor", static_cast<double>(c.rope_scaling.factor));
    set("rope_scaling.low_freq_factor", static_cast<double>(c.rope_scaling.low_freq_factor));
    set("rope_scaling.high_freq_factor", static_cast<double>(c.rope_scaling.high_freq_factor));
    set("rope_scaling.original_max_position_embeddings",
        static_cast<double>(c.rope_scaling.original_max_position_embeddings));
  }
  if (c.architecture != Architecture::kLlama4) {
    for (const LayerConfig& l : c.layers) {
      if (l.moe || !l.use_rope || l.attention_chunk_size != 0 || l.use_qk_norm || l.attn_temperature_tuning ||
          l.ffn_size != c.intermediate_size) {
        return NotSupported("a dense llama config with Llama 4 layer features cannot be stated as metadata");
      }
    }
    return md;
  }
  set("intermediate_size_mlp", c.intermediate_size_mlp);
  set("num_local_experts", c.num_local_experts);
  set("num_experts_per_tok", c.num_experts_per_tok);
  set("attn_scale", static_cast<double>(c.attn_scale));
  set("floor_scale", static_cast<double>(c.floor_scale));
  // The layer table as lists; the flags and the chunk size are per model, so every RoPE (NoPE) layer must agree.
  ModelMetadata::IntList no_rope, moe;
  std::optional<int64_t> chunk;
  std::optional<bool> qk_norm, temp_tuning;
  auto same = [](auto& slot, auto v) {
    if (!slot) slot = v;
    return *slot == v;
  };
  for (size_t l = 0; l < c.layers.size(); ++l) {
    const LayerConfig& lc = c.layers[l];
    no_rope.push_back(lc.use_rope ? 1 : 0);
    if (lc.moe) moe.push_back(static_cast<int64_t>(l));
    const bool ok =
        lc.use_rope
            ? same(chunk, lc.attention_chunk_size) && same(qk_norm, lc.use_qk_norm) && !lc.attn_temperature_tuning
            : same(temp_tuning, lc.attn_temperature_tuning) && lc.attention_chunk_size == 0 && !lc.use_qk_norm;
    if (!ok || lc.ffn_size != (lc.moe ? c.intermediate_size : c.intermediate_size_mlp)) {
      return NotSupported("layer " + std::to_string(l) + " differs from the model's other " +
                          (lc.use_rope ? "RoPE" : "NoPE") + " layers; metadata states one setting for all");
    }
  }
  if (chunk && *chunk > 0) {
    set("attention_chunk_size", *chunk);
  } else {
    set("attention_chunk_size", ModelMetadata::Null{});
  }
  // A flag no layer can use is stated as HF's default (true), as llama.cpp assumes it.
  set("use_qk_norm", qk_norm.value_or(true));
  set("attn_temperature_tuning", temp_tuning.value_or(true));
  set("no_rope_layers", no_rope);
  set("moe_layers", moe);
  // interleave_moe_layer_step when the MoE layers are every step-th (what llama.cpp can express).
  const int64_t step = moe.empty() ? 0 : moe[0] + 1;
  bool periodic = !moe.empty() && static_cast<int64_t>(moe.size()) == c.num_hidden_layers / step;
  for (size_t i = 0; periodic && i < moe.size(); ++i) periodic = moe[i] == static_cast<int64_t>(i + 1) * step - 1;
  if (periodic) set("interleave_moe_layer_step", step);
  return md;
}

}  // namespace herd::model
