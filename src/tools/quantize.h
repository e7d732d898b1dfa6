// herd quantize: rewrites a model's weight matrices in a quantized type (llama4.md 5.4), as GGUF. From a GGUF the
// metadata (tokenizer included) is kept; from an HF directory the converter writes it. Norms, the MoE router and
// rope_freqs stay in F32 and matrices whose rows are not a whole number of blocks keep their type, as llama.cpp
// does. Each tensor is produced row by row (dequantize, quantize) on all threads, one tensor in memory at a time.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "core/dtype.h"
#include "core/status.h"

namespace herd::tools {

// The K-quant mixes (herd quantize --type q4_k_s | q4_k_m | q5_k_s | q5_k_m | q6_k_m), named after llama.cpp's
// file types and close to its choices of which tensor gets more bits, so that files of the same name have about
// the same size (on a model with 8 routed experts, llama.cpp's own rules for that count, every tensor gets the
// type llama.cpp gives it). Plain q4_k / q5_k / q6_k store every matrix in that type.
enum class QuantMix {
  kNone,
  kSmall,   // _s
  kMedium,  // _m
};

// The type of each tensor in a mix (the rest: `type`). "More-bits layers" are llama.cpp's pattern: the first and
// last eighth of the layers and every third layer between. In a model with routed experts (attention a few percent
// of the weights) the rules marked MoE apply, otherwise those marked dense:
//   every mix        output.weight Q6_K (QuantizeModel: token_embd.weight when the file has no output.weight,
//                    i.e. tied embeddings); MoE: attn_k and attn_v Q8_0
//   q4_k_s           MoE: attn_output Q5_K; dense: attn_v of the first 4 layers Q5_K; every ffn_down (routed
//                    experts' too) of the first eighth of the layers Q5_K
//   q4_k_m, q5_k_m   every ffn_down (dense FFN, shared and routed experts) of the more-bits layers Q6_K; dense:
//                    attn_v of the more-bits layers Q6_K; q4_k_m MoE: attn_output Q5_K
//   q5_k_s, q6_k_m   nothing else (q6_k_m of a dense model is q6_k)
// n_layers: the model's block count. Tensors that stay as they are (norms, router) are not decided here.
DType MixTensorType(DType type, QuantMix mix, const std::string& name, bool moe, int n_layers);

// A --type name: a dtype name (mix kNone; QuantizeModel rejects the ones it cannot write) or a mix name; nullopt
// for anything else.
struct QuantizeType {
  DType type;
  QuantMix mix;
};
std::optional<QuantizeType> ParseQuantizeType(const std::string& name);

// general.file_type of a mix (llama.cpp's numbering: MOSTLY_Q4_K_S 14, Q4_K_M 15, Q5_K_S 16, Q5_K_M 17, Q6_K 18).
uint32_t MixFileType(DType type, QuantMix mix);

struct QuantizeOptions {
  std::string input;   // GGUF file or HF directory
  std::string output;  // GGUF file (written to output + ".tmp", then renamed)
  DType type = DType::kQ8_0;
  // A K-quant mix of `type` (Q4_K or Q5_K with kSmall / kMedium, Q6_K with kMedium; see MixTensorType).
  QuantMix mix = QuantMix::kNone;
  int threads = 0;
  bool show_progress = false;
  std::function<void(const std::string&)> on_note;  // nullptr: "herd: note: ..." on stderr
};

Status QuantizeModel(const QuantizeOptions& options);

}  // namespace herd::tools
