// Hugging Face tensor names -> herd's canonical (llama.cpp GGUF) names, per llama4.md section 4.1 / 4.3. The model
// code only ever sees canonical names.
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

}  // namespace herd::formats
