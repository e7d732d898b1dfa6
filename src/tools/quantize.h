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
  int threads = 0;
  bool show_progress = false;
  std::function<void(const std::string&)> on_note;  // nullptr: "herd: note: ..." on stderr
};

Status QuantizeModel(const QuantizeOptions& options);

}  // namespace herd::tools
