// GGUF keys <-> ModelMetadata (formats/gguf_metadata.h). The key names are llama.cpp's (src/llama-arch.cpp,
// llama4.md 4.4); HF field names on the other side.
#include "formats/gguf_metadata.h"

#include <cstdint>
#include <limits>
#include <sstream>

namespace herd::formats {
namespace {

// One llama.cpp key of the architecture and the HF field it holds.
struct KeyRule {
  const char* field;
  const char* key;  // after "{arch}."
  bool required;
};
// Integers common to llama and llama4 (feed_forward_length differs: see below).
constexpr KeyRule kIntKeys[] = {
    {"hidden_size", "embedding_length", true},
    {"num_hidden_layers", "block_count", true},
    {"num_attention_heads", "attention.head_count", true},
    {"num_key_value_heads", "attention.head_count_kv", false},
    {"head_dim", "attention.key_length", false},
    {"max_position_embeddings", "context_length", true},
};
// llama4: llama.cpp's feed_forward_length is the dense width, expert_feed_forward_length the expert width
// (llama4.md pitfall 12).
constexpr KeyRule kLlama4IntKeys[] = {
    {"intermediate_size_mlp", "feed_forward_length", true},
    {"intermediate_size", "expert_feed_forward_length", true},
    {"num_local_experts", "expert_count", true},
    {"num_experts_per_tok", "expert_used_count", true},
    {"interleave_moe_layer_step", "interleave_moe_layer_step", false},
};
// herd.* keys of llama4 files, by the HF field they hold (read with the field's type).
constexpr const char* kHerdKeys[][2] = {
    {"no_rope_layer_interval", "herd.no_rope_layer_interval"},
    {"use_qk_norm", "herd.use_qk_norm"},
    {"attn_temperature_tuning", "herd.attn_temperature_tuning"},
    {"floor_scale", "herd.floor_scale"},
    {"attn_scale", "herd.attn_scale"},
    {"no_rope_layers", "herd.no_rope_layers"},
    {"moe_layers", "herd.moe_layers"},
    {"image_token_index", "herd.image_token_index"},
};

// Copies a GGUF value to a metadata field of the type the field has (integer, number, bool, integer list).
Status CopyValue(const GgufFile& g, const std::string& key, const std::string& field, ModelMetadata* md) {
  const GgufValue* v = g.Find(key);
  if (v == nullptr) return Status::Ok();
  if (v->type == GgufType::kArray) {
    HERD_ASSIGN_OR_RETURN(std::vector<int64_t> list, g.GetIntArray(key));
    md->Set(field, ModelMetadata::IntList(list.begin(), list.end()), key);
  } else if (v->type == GgufType::kBool) {
    md->Set(field, v->b, key);
  } else if (v->IsFloat()) {
    md->Set(field, v->f, key);
  } else {
    HERD_ASSIGN_OR_RETURN(int64_t i, g.GetInt(key));
    md->Set(field, i, key);
  }
  return Status::Ok();
}

Status CopyInts(const GgufFile& g, const std::string& p, const KeyRule* rules, size_t n, ModelMetadata* md) {
  for (size_t i = 0; i < n; ++i) {
    const std::string key = p + rules[i].key;
    if (rules[i].required) {
      HERD_RETURN_IF_ERROR(g.GetInt(key).status());  // "missing metadata key" / wrong type, naming it
    }
    HERD_RETURN_IF_ERROR(CopyValue(g, key, rules[i].field, md));
  }
  return Status::Ok();
}

// {arch}.vocab_size, else the tokenizer's token count, else token_embd.weight's rows (llama.cpp's order).
Status CopyVocabSize(const GgufFile& g, const std::string& p, ModelMetadata* md) {
  HERD_ASSIGN_OR_RETURN(std::optional<int64_t> vocab, g.GetIntOpt(p + "vocab_size"));
  if (vocab) {
    md->Set("vocab_size", *vocab, p + "vocab_size");
    return Status::Ok();
  }
  if (const GgufValue* tokens = g.Find("tokenizer.ggml.tokens");
      tokens != nullptr && tokens->type == GgufType::kArray) {
    md->Set("vocab_size", static_cast<int64_t>(tokens->array.size()), "the length of tokenizer.ggml.tokens");
    return Status::Ok();
  }
  for (const GgufTensorInfo& t : g.tensor_infos()) {
    if (t.name == "token_embd.weight" && !t.shape.empty()) {
      md->Set("vocab_size", t.shape[0], "the rows of token_embd.weight");
    }
  }
  return Status::Ok();
}

}  // namespace

Result<ModelMetadata> MetadataFromGguf(const GgufFile& g) {
  ModelMetadata md(g.path());
  HERD_ASSIGN_OR_RETURN(std::string_view arch_view, g.GetString("general.architecture"));
  const std::string arch(arch_view);
  md.Set("model_type", arch, "general.architecture");
  HERD_ASSIGN_OR_RETURN(auto name, g.GetStringOpt("general.name"));
  if (name) md.Set("name", std::string(*name), "general.name");
  if (arch != "llama" && arch != "llama4") return md;
  const bool llama4 = arch == "llama4";
  const std::string p = arch + ".";

  HERD_RETURN_IF_ERROR(CopyInts(g, p, kIntKeys, std::size(kIntKeys), &md));
  if (llama4) {
    HERD_RETURN_IF_ERROR(CopyInts(g, p, kLlama4IntKeys, std::size(kLlama4IntKeys), &md));
  } else {
    const KeyRule ffn{"intermediate_size", "feed_forward_length", true};
    HERD_RETURN_IF_ERROR(CopyInts(g, p, &ffn, 1, &md));
  }
  HERD_ASSIGN_OR_RETURN(double eps, g.GetFloat(p + "attention.layer_norm_rms_epsilon"));
  md.Set("rms_norm_eps", eps, p + "attention.layer_norm_rms_epsilon");
  // Absent for llama: llama.cpp's default 10000 (its llama2.c converter omits the key), which is HF's too.
  if (llama4) HERD_RETURN_IF_ERROR(g.GetFloat(p + "rope.freq_base").status());
  HERD_RETURN_IF_ERROR(CopyValue(g, p + "rope.freq_base", "rope_theta", &md));
  HERD_RETURN_IF_ERROR(CopyVocabSize(g, p, &md));
  // GGUF llama and llama4 store Q/K in Meta order (llama4.md 10.2); llama3 scaling is in rope_freqs.weight.
  md.Set("rope_layout", "interleaved", "GGUF");

  // Partial RoPE: compared with head_dim as the model will derive it (when hidden_size / heads is not whole and no
  // key_length is given, the model reports that instead).
  // hidden_size and num_attention_heads are required integers, copied above.
  HERD_ASSIGN_OR_RETURN(auto rope_dims, g.GetIntOpt(p + "rope.dimension_count"));
  HERD_ASSIGN_OR_RETURN(std::optional<int64_t> head_dim, md.Int("head_dim"));
  const int64_t hidden = *md.Int("hidden_size").value(), heads = *md.Int("num_attention_heads").value();
  if (!head_dim && heads > 0 && hidden % heads == 0) head_dim = hidden / heads;
  if (rope_dims && head_dim && *rope_dims != *head_dim) {
    return NotSupported(g.path() + ": partial RoPE (" + p + "rope.dimension_count " + std::to_string(*rope_dims) +
                        " != head_dim " + std::to_string(*head_dim) + ") is not supported");
  }
  if (!llama4) return md;

  // Keys GGUF does not carry take llama.cpp's values (llama4.md 4.4); files written by herd add herd.* keys.
  for (const auto& [field, key] : kHerdKeys) HERD_RETURN_IF_ERROR(CopyValue(g, key, field, &md));
  HERD_ASSIGN_OR_RETURN(auto chunk, g.GetIntOpt("herd.attention_chunk_size"));
  HERD_ASSIGN_OR_RETURN(auto swa, g.GetIntOpt(p + "attention.sliding_window"));
  if (swa && *swa == 0) {
    md.Set("attention_chunk_size", ModelMetadata::Null{}, p + "attention.sliding_window = 0");
  } else if (chunk) {
    md.Set("attention_chunk_size",
           *chunk == 0 ? ModelMetadata::Value(ModelMetadata::Null{}) : ModelMetadata::Value(*chunk),
           "herd.attention_chunk_size");
  }
  if (!md.Contains("use_qk_norm")) {  // llama.cpp infers it: Maverick (128 experts) has none (llama4.md pitfall 8)
    const int64_t experts = *md.Int("num_local_experts").value();  // a required integer, copied above
    md.Set("use_qk_norm", experts != 128, p + "expert_count != 128, as llama.cpp infers it");
  }
  return md;
}

namespace {

// Reads a field the writer needs; InvalidArgument when absent.
template <typename T, typename Getter>
Result<T> Need(const ModelMetadata& md, std::string_view field, Getter get) {
  HERD_ASSIGN_OR_RETURN(auto v, (md.*get)(field));
  if (!v) return InvalidArgument("metadata to write as GGUF has no '" + std::string(field) + "'");
  return static_cast<T>(*v);
}

Status AddUint32(GgufWriter& w, std::string key, int64_t v) {
  if (v < 0 || v > std::numeric_limits<uint32_t>::max()) {
    return InvalidArgument("GGUF key '" + key + "' cannot hold " + std::to_string(v));
  }
  w.AddUint32(std::move(key), static_cast<uint32_t>(v));
  return Status::Ok();
}

std::vector<int32_t> ToInt32(const ModelMetadata::IntList& l) { return std::vector<int32_t>(l.begin(), l.end()); }

std::string FloatText(double v) {
  std::ostringstream s;
  s << static_cast<float>(v);
  return s.str();
}

}  // namespace

Status AddModelMetadata(const ModelMetadata& md, GgufWriter& w, std::vector<std::string>* notes) {
  HERD_ASSIGN_OR_RETURN(std::string arch, Need<std::string>(md, "model_type", &ModelMetadata::String));
  if (arch != "llama" && arch != "llama4") return InvalidArgument("cannot write architecture '" + arch + "' as GGUF");
  HERD_ASSIGN_OR_RETURN(std::optional<std::string> layout, md.String("rope_layout"));
  if (layout && *layout != "interleaved") {
    return InvalidArgument("GGUF stores Q/K rows in Meta's interleaved order; permute the " + *layout +
                           " rows first and state rope_layout interleaved");
  }
  const bool llama4 = arch == "llama4";
  const std::string p = arch + ".";
  w.AddString("general.architecture", arch);
  HERD_ASSIGN_OR_RETURN(std::optional<std::string> name, md.String("name"));
  if (name) w.AddString("general.name", *name);

  auto need_int = [&](std::string_view field) { return Need<int64_t>(md, field, &ModelMetadata::Int); };
  auto need_num = [&](std::string_view field) { return Need<double>(md, field, &ModelMetadata::Number); };
  auto need_bool = [&](std::string_view field) { return Need<bool>(md, field, &ModelMetadata::Bool); };
  auto put = [&](const char* field, const std::string& key) -> Status {
    HERD_ASSIGN_OR_RETURN(int64_t v, need_int(field));
    return AddUint32(w, key, v);
  };
  for (const KeyRule& r : kIntKeys) HERD_RETURN_IF_ERROR(put(r.field, p + r.key));
  HERD_RETURN_IF_ERROR(put("head_dim", p + "attention.value_length"));
  HERD_RETURN_IF_ERROR(put("head_dim", p + "rope.dimension_count"));
  HERD_RETURN_IF_ERROR(put("vocab_size", p + "vocab_size"));
  HERD_ASSIGN_OR_RETURN(double eps, need_num("rms_norm_eps"));
  HERD_ASSIGN_OR_RETURN(double theta, need_num("rope_theta"));
  w.AddFloat32(p + "attention.layer_norm_rms_epsilon", static_cast<float>(eps));
  w.AddFloat32(p + "rope.freq_base", static_cast<float>(theta));
  if (!llama4) return put("intermediate_size", p + "feed_forward_length");

  for (const KeyRule& r : kLlama4IntKeys) {
    if (r.required) HERD_RETURN_IF_ERROR(put(r.field, p + r.key));
  }
  HERD_ASSIGN_OR_RETURN(int64_t n_layers, need_int("num_hidden_layers"));
  HERD_ASSIGN_OR_RETURN(int64_t experts, need_int("num_local_experts"));
  HERD_ASSIGN_OR_RETURN(std::optional<int64_t> step, md.Int("interleave_moe_layer_step"));
  HERD_ASSIGN_OR_RETURN(std::optional<int64_t> chunk, md.Int("attention_chunk_size"));
  HERD_ASSIGN_OR_RETURN(auto no_rope, Need<ModelMetadata::IntList>(md, "no_rope_layers", &ModelMetadata::Ints));
  HERD_ASSIGN_OR_RETURN(auto moe, Need<ModelMetadata::IntList>(md, "moe_layers", &ModelMetadata::Ints));
  HERD_ASSIGN_OR_RETURN(bool qk_norm, need_bool("use_qk_norm"));
  HERD_ASSIGN_OR_RETURN(bool temp_tuning, need_bool("attn_temperature_tuning"));
  HERD_ASSIGN_OR_RETURN(double floor_scale, need_num("floor_scale"));
  HERD_ASSIGN_OR_RETURN(double attn_scale, need_num("attn_scale"));
  // llama.cpp knows only "MoE every step-th layer": a table it cannot say is written as step 1 (and noted).
  HERD_RETURN_IF_ERROR(AddUint32(w, p + "interleave_moe_layer_step", step.value_or(1)));
  if (!chunk) w.AddUint32(p + "attention.sliding_window", 0);  // llama.cpp: no chunked attention
  HERD_RETURN_IF_ERROR(AddUint32(w, "herd.attention_chunk_size", chunk.value_or(0)));
  w.AddInt32Array("herd.no_rope_layers", ToInt32(no_rope));
  w.AddInt32Array("herd.moe_layers", ToInt32(moe));
  w.AddBool("herd.use_qk_norm", qk_norm);
  w.AddBool("herd.attn_temperature_tuning", temp_tuning);
  w.AddFloat32("herd.floor_scale", static_cast<float>(floor_scale));
  w.AddFloat32("herd.attn_scale", static_cast<float>(attn_scale));

  // llama.cpp (LLM_ARCH_LLAMA4) hardcodes chunk 8192, NoPE every 4th layer, temperature tuning with scale 0.1 and
  // floor 8192, MoE from the step, and QK-norm iff expert_count != 128.
  bool rope_pattern = static_cast<int64_t>(no_rope.size()) == n_layers, any_nope = false;
  for (size_t l = 0; l < no_rope.size(); ++l) {
    rope_pattern &= (no_rope[l] == 1) == ((l + 1) % 4 != 0);
    any_nope |= no_rope[l] == 0;
  }
  bool moe_pattern = step.has_value();
  if (step) {
    ModelMetadata::IntList want;
    for (int64_t l = *step - 1; l < n_layers; l += *step) want.push_back(l);
    moe_pattern = want == moe;
  }
  std::vector<std::string> differs;
  if (chunk && *chunk != 8192) differs.push_back("attention_chunk_size " + std::to_string(*chunk));
  if (!rope_pattern) differs.push_back("NoPE layers other than every 4th");
  if (!moe_pattern) differs.push_back("moe_layers other than every interleave_moe_layer_step-th");
  if (qk_norm != (experts != 128)) differs.push_back(std::string("use_qk_norm ") + (qk_norm ? "on" : "off"));
  if (any_nope && !temp_tuning) differs.push_back("attn_temperature_tuning off");
  if (static_cast<float>(floor_scale) != 8192.0f) differs.push_back("floor_scale " + FloatText(floor_scale));
  if (static_cast<float>(attn_scale) != 0.1f) differs.push_back("attn_scale " + FloatText(attn_scale));
  if (!differs.empty() && notes != nullptr) {
    std::string list;
    for (const std::string& d : differs) list += (list.empty() ? "" : ", ") + d;
    notes->push_back("llama.cpp cannot express this model's " + list +
                     " (it hardcodes the Llama 4 values); herd reads the exact settings from the herd.* keys");
  }
  return Status::Ok();
}

}  // namespace herd::formats
