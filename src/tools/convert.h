// `herd convert`: a Hugging Face directory (config.json + safetensors [+ tiktoken tokenizer.model]) to a GGUF file
// that llama.cpp loads as it loads its own conversions (llama4.md sections 4.3 and 4.4 for Llama 4, 10.2 for
// Llama 1-3), and that herd reads back to the same model: same config, same weights, same RoPE frequencies.
//
// Reference: llama.cpp convert_hf_to_gguf.py (LlamaModel, Llama4Model): tensor names, the expert transposition
// ([E, D, 2F] input-major gate_up_proj -> [E, F, D] gate and up; [E, F, D] down_proj -> [E, D, F]), the Q/K row
// un-permutation of HF Llama 1-3, F32 for 1-D weights and the router, rope_freqs.weight for llama3 scaling, and a
// gpt2-type vocabulary. What GGUF cannot say for Llama 4 (chunk size, NoPE/MoE layer lists, QK-norm, temperature
// tuning parameters) goes into herd.* keys, which llama.cpp ignores and model/config.cpp reads.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "core/dtype.h"
#include "core/status.h"

namespace herd::formats {
class GgufWriter;
}
namespace herd::tokenizer {
class Tokenizer;
}

namespace herd::tools {

struct ConvertOptions {
  std::string input;   // HF directory: config.json, *.safetensors (or an index), optionally tokenizer.model
  std::string output;  // GGUF file; written to output + ".tmp" and renamed, so a failure leaves no half file
  // Type of the matrices (token_embd, output, attention, FFN and experts): F32, F16, BF16, Q8_0 or Q4_0.
  // nullopt keeps each tensor's source dtype (F32 stays F32, BF16 stays BF16). 1-D weights, the router and
  // rope_freqs are F32 whatever the type (as llama.cpp writes them); a quantized type falls back to F16 for a
  // matrix whose rows are not a multiple of 32 long (with a note).
  std::optional<DType> type;
  std::string name;  // general.name; empty: the input directory's name
  bool show_progress = false;
  // Receives one line per note (fallbacks, a missing tokenizer, settings llama.cpp cannot express);
  // nullptr prints "herd: note: ..." to stderr.
  std::function<void(const std::string&)> on_note;
};

// Converts options.input to options.output. Holds at most one output tensor in memory (the writer's buffer) plus a
// small tile; source tensors are memory-mapped. Errors: IOError (missing input, unwritable output),
// InvalidArgument (not a directory, bad options, a tokenizer larger than the model's vocabulary), NotSupported
// (unknown architecture, a source dtype other than F32/F16/BF16), Corruption (bad config or tensors; the model is
// bound and checked exactly as `herd run` would before anything is written).
Status ConvertToGguf(const ConvertOptions& options);

struct VocabOptions {
  int64_t n_vocab = 0;            // pad to this many tokens with "[PAD<i>]" entries of type UNUSED; 0: no padding
  std::optional<int32_t> eos_id;  // tokenizer.ggml.eos_token_id; default: the tokenizer's EOS
  std::string chat_template;      // tokenizer.chat_template when non-empty
};

// Writes a tiktoken tokenizer (Llama 3 or Llama 4 layout, tokenizer::LoadTiktoken) as llama.cpp's gpt2-type
// vocabulary (llama4.md 7.5): tokenizer.ggml.model "gpt2", pre "llama4" or "llama-bpe", tokens in GPT-2
// byte-to-unicode spelling (specials as their text), token_type (1 normal, 3 control, 5 padding), merges derived
// from the ranks (for every token of two or more bytes, the two parts that BPE over the lower ranks leaves, if it
// leaves exactly two), bos/eos/eot/eom/padding ids and add_bos_token. InvalidArgument when `tok` is not a
// tiktoken tokenizer or n_vocab is smaller than its vocabulary; NotSupported for an unknown special-token layout.
Status WriteTiktokenVocab(const tokenizer::Tokenizer& tok, formats::GgufWriter& writer,
                          const VocabOptions& options = {});

// The type a matrix with rows of `cols` elements is written as when `want` is asked for: Q8_0 instead of a
// K-quant when the rows are not whole 256-element super-blocks but are whole 32-blocks (as llama.cpp does);
// `want` otherwise (the caller still checks that the rows are whole blocks of the result).
DType RowCompatibleType(DType want, int64_t cols);

// "f32", "F16", "bf16", "q8_0", "Q4_0" -> DType; InvalidArgument naming the choices otherwise.
Result<DType> ParseConvertType(std::string_view s);

// The block of a GGUF tensor name: "blk.12.attn_q.weight" -> 12, *suffix = "attn_q.weight"; -1 (and *suffix = name)
// for names outside the blocks.
int64_t LayerOf(std::string_view name, std::string_view* suffix);

}  // namespace herd::tools
