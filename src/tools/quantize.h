// herd quantize: rewrites a model's weight matrices in a quantized type (llama4.md 5.4), as GGUF. From a GGUF the
// metadata (tokenizer included) is kept; from an HF directory the converter writes it. Norms, the MoE router and
// rope_freqs stay in F32 and matrices whose rows are not a whole number of blocks keep their type, as llama.cpp
// does. Each tensor is produced row by row (dequantize, quantize) on all threads, one tensor in memory at a time.
#pragma once

#include <functional>
#include <string>

#include "core/dtype.h"
#include "core/status.h"

namespace herd::tools {

struct QuantizeOptions {
  std::string input;   // GGUF file or HF directory
  std::string output;  // GGUF file (written to output + ".tmp", then renamed)
  DType type = DType::kQ8_0;
  // A K-quant mix (herd quantize --type q4_k_m | q5_k_m, with type Q4_K / Q5_K): more bits where rounding costs most
  // for the bytes. The output head (it makes the logits) in Q6_K; in a model with routed experts, whose attention is
  // a few percent of the weights, attn_k and attn_v in Q8_0 and attn_output in Q6_K; in a dense model attn_v (small
  // under grouped-query attention) in Q6_K. The rest in `type`.
  bool mixed = false;
  int threads = 0;
  bool show_progress = false;
  std::function<void(const std::string&)> on_note;  // nullptr: "herd: note: ..." on stderr
};

Status QuantizeModel(const QuantizeOptions& options);

}  // namespace herd::tools
