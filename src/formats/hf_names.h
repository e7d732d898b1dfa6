// Hugging Face tensor names -> herd's canonical (llama.cpp GGUF) names, per llama4.md section 4.1 / 4.3, and for the
// Llama 4 vision tower and projector the names of llama.cpp's mmproj file (section 4.2). The model code only ever sees
// canonical names.
//
// HF Llama 4 experts are stored input-major ([E, in, out]); they keep that orientation under names of their own
// (ffn_gate_up_exps_im, ffn_down_exps_im) so the kernels read them in place instead of transposing at load. The
// per-expert layout (llama4.md 4.1: "experts.{i}.gate_proj.weight" [out, in]) maps to blk.N.ffn_gate_exps.{i}.weight,
// ffn_up_exps.{i}.weight and ffn_down_exps.{i}.weight. FP8 checkpoints (llama4.md 6.3) add a per-output scale beside
// a weight ("X.weight_scale", and "experts.gate_up_proj_scale" / "experts.down_proj_scale" for fused experts): it
// takes its weight's canonical name with ".scale" in place of ".weight" (blk.3.ffn_gate_exps.7.scale,
// blk.1.ffn_gate_up_exps_im.scale).
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "core/status.h"

namespace herd::formats {

// model_type "llama" (Llama 1-3, HF layout). nullopt for tensors that carry no weights (rotary inv_freq).
Result<std::optional<std::string>> HfLlamaToCanonical(std::string_view hf_name);
// model_type "llama4" / "llama4_text" text weights. Vision and projector tensors map to nullopt (a text-only
// load never maps them). Accepts both the on-disk (language_model.model.*) and in-memory (model.language_model.*)
// spellings.
Result<std::optional<std::string>> HfLlama4ToCanonical(std::string_view hf_name);
// model_type "llama4" vision tower and projector (llama4.md 4.2) -> mmproj names: vision_model.* -> v.* (v.patch_embd,
// v.class_embd, v.position_embd, v.pre_ln / v.post_ln, v.blk.N.{attn_q,attn_k,attn_v,attn_out,ln1,ln2,ffn_up,
// ffn_down}), the adapter vision_model.vision_adapter.mlp.fc{1,2} -> mm.model.mlp.{1,2}, multi_modal_projector.linear_1
// -> mm.model.fc. Text tensors map to nullopt (a vision load never maps them); an unknown name under vision_model. or
// multi_modal_projector. is NotSupported. Accepts both the on-disk and the model.-prefixed (transformers >= 4.52)
// spellings.
Result<std::optional<std::string>> HfLlama4VisionToCanonical(std::string_view hf_name);

}  // namespace herd::formats
