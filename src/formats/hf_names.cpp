// Hugging Face -> canonical tensor names (llama4.md 4.1, 4.3; FP8 scales 6.3; vision tower and projector 4.2).
#include "formats/hf_names.h"

#include <charconv>

namespace herd::formats {
namespace {

bool Consume(std::string_view& s, std::string_view prefix) {
  if (s.substr(0, prefix.size()) != prefix) return false;
  s.remove_prefix(prefix.size());
  return true;
}

// "layers.12.rest" -> 12 and "rest".
bool ConsumeLayer(std::string_view& s, int* layer) {
  if (!Consume(s, "layers.")) return false;
  size_t dot = s.find('.');
  if (dot == std::string_view::npos || dot == 0) return false;
  int n = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + dot, n);
  if (ec != std::errc() || p != s.data() + dot || n < 0) return false;
  s.remove_prefix(dot + 1);
  *layer = n;
  return true;
}

struct Pair {
  std::string_view hf;
  std::string_view canon;
};

// Per-layer names shared by Llama 1-3 and Llama 4.
constexpr Pair kLayerCommon[] = {
    {"input_layernorm.weight", "attn_norm.weight"},
    {"self_attn.q_proj.weight", "attn_q.weight"},
    {"self_attn.k_proj.weight", "attn_k.weight"},
    {"self_attn.v_proj.weight", "attn_v.weight"},
    {"self_attn.o_proj.weight", "attn_output.weight"},
    {"post_attention_layernorm.weight", "ffn_norm.weight"},
};

constexpr Pair kLayerLlama[] = {
    {"mlp.gate_proj.weight", "ffn_gate.weight"},
    {"mlp.up_proj.weight", "ffn_up.weight"},
    {"mlp.down_proj.weight", "ffn_down.weight"},
};

constexpr Pair kLayerLlama4[] = {
    {"feed_forward.gate_proj.weight", "ffn_gate.weight"},
    {"feed_forward.up_proj.weight", "ffn_up.weight"},
    {"feed_forward.down_proj.weight", "ffn_down.weight"},
    {"feed_forward.router.weight", "ffn_gate_inp.weight"},
    {"feed_forward.shared_expert.gate_proj.weight", "ffn_gate_shexp.weight"},
    {"feed_forward.shared_expert.up_proj.weight", "ffn_up_shexp.weight"},
    {"feed_forward.shared_expert.down_proj.weight", "ffn_down_shexp.weight"},
    {"feed_forward.experts.gate_up_proj", "ffn_gate_up_exps_im.weight"},
    {"feed_forward.experts.down_proj", "ffn_down_exps_im.weight"},
};

template <size_t N>
std::optional<std::string> Lookup(const Pair (&table)[N], std::string_view rest, int layer) {
  for (const Pair& p : table) {
    if (rest == p.hf) return "blk." + std::to_string(layer) + "." + std::string(p.canon);
  }
  return std::nullopt;
}

Status Unknown(std::string_view name, const char* family) {
  return NotSupported("unknown tensor '" + std::string(name) + "' for an HF " + family + " checkpoint");
}

// "experts.7.gate_proj.weight" -> "ffn_gate_exps.7.weight": one expert of the per-expert layout (llama4.md 4.1).
std::optional<std::string> PerExpert(std::string_view rest, int layer) {
  if (!Consume(rest, "feed_forward.experts.")) return std::nullopt;
  const size_t dot = rest.find('.');
  if (dot == std::string_view::npos || dot == 0) return std::nullopt;
  int expert = 0;
  auto [p, ec] = std::from_chars(rest.data(), rest.data() + dot, expert);
  if (ec != std::errc() || p != rest.data() + dot || expert < 0) return std::nullopt;
  rest.remove_prefix(dot + 1);
  std::string_view canon;
  if (rest == "gate_proj.weight") {
    canon = "ffn_gate_exps";
  } else if (rest == "up_proj.weight") {
    canon = "ffn_up_exps";
  } else if (rest == "down_proj.weight") {
    canon = "ffn_down_exps";
  } else {
    return std::nullopt;
  }
  return "blk." + std::to_string(layer) + "." + std::string(canon) + "." + std::to_string(expert) + ".weight";
}

using NameMap = Result<std::optional<std::string>> (*)(std::string_view);

// FP8 (fbgemm_fp8, llama4.md 6.3) tensors beside a weight: "X.weight_scale" (and the fused experts'
// "experts.gate_up_proj_scale") is the per-output scale of the weight "X.weight" ("experts.gate_up_proj"), named
// like its weight with ".scale" for ".weight". Returns nullopt when `name` is no scale.
std::optional<Result<std::optional<std::string>>> ScaleName(std::string_view name, NameMap weight_name) {
  if (!name.ends_with("_scale")) return std::nullopt;
  Result<std::optional<std::string>> w = weight_name(name.substr(0, name.size() - 6));
  if (!w.ok() || !w->has_value() || !(*w)->ends_with(".weight")) return std::nullopt;
  std::string canon = **w;
  canon.replace(canon.size() - 7, 7, ".scale");
  return Result<std::optional<std::string>>(std::optional<std::string>(std::move(canon)));
}

Result<std::optional<std::string>> HfLlamaWeight(std::string_view name) {
  std::string_view s = name;
  if (s == "lm_head.weight") return std::optional<std::string>("output.weight");
  if (!Consume(s, "model.")) return Unknown(name, "Llama");
  if (s == "embed_tokens.weight") return std::optional<std::string>("token_embd.weight");
  if (s == "norm.weight") return std::optional<std::string>("output_norm.weight");
  int layer = 0;
  if (!ConsumeLayer(s, &layer)) return Unknown(name, "Llama");
  if (s == "self_attn.rotary_emb.inv_freq") return std::optional<std::string>();  // recomputed from the config
  if (auto c = Lookup(kLayerCommon, s, layer)) return c;
  if (auto c = Lookup(kLayerLlama, s, layer)) return c;
  return Unknown(name, "Llama");
}

Result<std::optional<std::string>> HfLlama4Weight(std::string_view name) {
  std::string_view s = name;
  if (s.starts_with("vision_model.") || s.starts_with("multi_modal_projector.") ||
      s.starts_with("model.vision_model.") || s.starts_with("model.multi_modal_projector.")) {
    return std::optional<std::string>();
  }
  if (s == "language_model.lm_head.weight" || s == "lm_head.weight") {
    return std::optional<std::string>("output.weight");
  }
  if (!Consume(s, "language_model.model.") && !Consume(s, "model.language_model.") && !Consume(s, "model.")) {
    return Unknown(name, "Llama 4");
  }
  if (s == "embed_tokens.weight") return std::optional<std::string>("token_embd.weight");
  if (s == "norm.weight") return std::optional<std::string>("output_norm.weight");
  int layer = 0;
  if (!ConsumeLayer(s, &layer)) return Unknown(name, "Llama 4");
  if (auto c = Lookup(kLayerCommon, s, layer)) return c;
  if (auto c = Lookup(kLayerLlama4, s, layer)) return c;
  if (auto c = PerExpert(s, layer)) return c;
  return Unknown(name, "Llama 4");
}

// Vision tower (after "vision_model."), llama4.md 4.2. Layer suffixes keep their ".weight" / ".bias".
constexpr Pair kVisionTop[] = {
    {"patch_embedding.linear.weight", "v.patch_embd.weight"},
    {"class_embedding", "v.class_embd"},
    {"positional_embedding_vlm", "v.position_embd.weight"},
    {"layernorm_pre.weight", "v.pre_ln.weight"},
    {"layernorm_pre.bias", "v.pre_ln.bias"},
    {"layernorm_post.weight", "v.post_ln.weight"},
    {"layernorm_post.bias", "v.post_ln.bias"},
    {"vision_adapter.mlp.fc1.weight", "mm.model.mlp.1.weight"},
    {"vision_adapter.mlp.fc2.weight", "mm.model.mlp.2.weight"},
};
constexpr Pair kVisionLayer[] = {
    {"self_attn.q_proj.", "attn_q."}, {"self_attn.k_proj.", "attn_k."},
    {"self_attn.v_proj.", "attn_v."}, {"self_attn.o_proj.", "attn_out."},
    {"input_layernorm.", "ln1."},     {"post_attention_layernorm.", "ln2."},
    {"mlp.fc1.", "ffn_up."},          {"mlp.fc2.", "ffn_down."},
};

std::optional<std::string> VisionLayer(std::string_view rest, int layer) {
  for (const Pair& p : kVisionLayer) {
    std::string_view s = rest;
    if (Consume(s, p.hf) && (s == "weight" || s == "bias")) {
      return "v.blk." + std::to_string(layer) + "." + std::string(p.canon) + std::string(s);
    }
  }
  return std::nullopt;
}

Result<std::optional<std::string>> WithScales(std::string_view name, NameMap weight_name) {
  if (auto scale = ScaleName(name, weight_name)) return *scale;
  return weight_name(name);
}

}  // namespace

Result<std::optional<std::string>> HfLlamaToCanonical(std::string_view name) { return WithScales(name, HfLlamaWeight); }

Result<std::optional<std::string>> HfLlama4ToCanonical(std::string_view name) {
  return WithScales(name, HfLlama4Weight);
}

Result<std::optional<std::string>> HfLlama4VisionToCanonical(std::string_view name) {
  std::string_view s = name;
  Consume(s, "model.");
  if (Consume(s, "multi_modal_projector.")) {
    if (s == "linear_1.weight") return std::optional<std::string>("mm.model.fc.weight");
    return Unknown(name, "Llama 4 vision");
  }
  if (!Consume(s, "vision_model.")) return std::optional<std::string>();  // the text model's
  for (const Pair& p : kVisionTop) {
    if (s == p.hf) return std::optional<std::string>(std::string(p.canon));
  }
  int layer = 0;
  if (Consume(s, "model.") && ConsumeLayer(s, &layer)) {
    if (auto c = VisionLayer(s, layer)) return c;
  }
  return Unknown(name, "Llama 4 vision");
}

}  // namespace herd::formats
