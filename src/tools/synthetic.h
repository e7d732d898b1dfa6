// Synthetic Llama 4 models for benchmarking without a download: the real Scout / Maverick hyperparameters
// (llama4.md sections 1-3) or custom sizes, with random weights of realistic magnitude generated in memory
// under herd's canonical GGUF tensor names (section 4.3), and a GGUF writer for them (section 4.4 keys plus the
// herd.* keys formats::MetadataFromGguf reads) so another GGUF engine (llama.cpp) can run the very same file.
// Quantized weights are random codes with small f16 scales written directly (section 5.4 layouts).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/status.h"
#include "core/tensor.h"
#include "core/thread_pool.h"
#include "model/config.h"
#include "model/footprint.h"
#include "model/model.h"
#include "model/vision.h"

namespace herd::tools {

// What to build. Every size field left at 0 takes the preset's value.
struct SyntheticSpec {
  // "scout" (Llama-4-Scout-17B-16E), "maverick" (Llama-4-Maverick-17B-128E), "small-moe" (hidden_size 2048,
  // 16/4 heads, 8 layers, 16 experts top-1 + shared expert, ffn_size 4096, vocab_size 32000: 3.64 G
  // parameters, 0.55 G active per token) or "custom" (small-moe's values, to be overridden field by field).
  std::string preset = "custom";
  DType dtype = DType::kQ8_0;  // every matrix; norms and the router stay F32 (as llama.cpp stores them)
  uint64_t seed = 1;

  int64_t num_hidden_layers = 0;
  int64_t hidden_size = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;
  int64_t head_dim = 0;  // 0: hidden_size / num_attention_heads
  int64_t num_local_experts = 0;
  int64_t num_experts_per_tok = 0;
  int64_t intermediate_size = 0;      // expert and shared-expert width
  int64_t intermediate_size_mlp = 0;  // dense-layer width
  int64_t interleave_moe_layer_step = 0;
  int64_t vocab_size = 0;
  int64_t max_position_embeddings = 0;
  bool all_dense = false;  // every layer a dense FFN, no experts (Llama Guard 4's shape)
};

// The preset names SyntheticConfig accepts, for help texts.
const std::vector<std::string>& SyntheticPresets();

// The ModelConfig of `spec`: the preset's hyperparameters with the spec's overrides, and the per-layer table
// derived as HF does from no_rope_layer_interval 4 and interleave_moe_layer_step (llama4.md section 2.2).
// QK-norm follows llama.cpp's rule (on unless 128 experts) so that llama.cpp runs the same network from a saved
// file. InvalidArgument for an unknown preset, a size that is not positive, a dtype the kernels cannot run, or
// sizes the dtype's block does not divide (hidden_size, heads x head_dim, FFN widths must be multiples of 32
// for Q8_0/Q4_0), or a vocab_size below 258 (the byte tokens and BOS/EOS of the saved vocabulary).
Result<model::ModelConfig> SyntheticConfig(const SyntheticSpec& spec);

// Every tensor DecoderModel::Create binds for `config` with matrices in `dtype`, in file order: token_embd,
// per layer attn_norm/q/k/v/output, ffn_norm, then ffn_gate_inp [n_experts, hidden_size] F32,
// ffn_{gate,up}_exps [n_experts, ffn_size, hidden_size], ffn_down_exps [n_experts, hidden_size, ffn_size] and
// ffn_{gate,up,down}_shexp (MoE layers) or ffn_{gate,up,down} (dense layers); output_norm, output. 1-D tensors
// are F32.
std::vector<model::TensorSpec> SyntheticLayout(const model::ModelConfig& config, DType dtype);

// Random weights for `config`. The returned WeightMap owns one 64-byte-aligned anonymous mapping holding every
// tensor of SyntheticLayout(config, dtype) (views stay valid as long as the map or a copy lives).
//   Q8_0 / Q4_0: uniform random codes, f16 scales so that weights have a standard deviation of about 0.02
//   (HF initializer_range); F32 / F16 / BF16: approximately N(0, 0.02); norms: 1 + U(-0.05, 0.05); the router
//   F32 like the matrices. The values depend only on `seed`, not on the thread count.
// Filled in parallel on `pool`; shows progress on stderr for models over 1 GiB.
// ResourceExhausted, naming the size, when the total exceeds MemAvailable (/proc/meminfo) or the allocation
// fails; InvalidArgument for a dtype the kernels cannot run.
struct SyntheticModel {
  WeightMap weights;
  int64_t size_bytes = 0;  // sum of the tensors' bytes
};
Result<SyntheticModel> MakeSyntheticWeights(const model::ModelConfig& config, DType dtype, uint64_t seed,
                                            ThreadPool& pool);

// The Llama 4 vision tower of Scout and Maverick ("scout", "maverick": llama4.md section 3, one tower for both:
// 336-pixel tiles of 14-pixel patches, 1408 wide, 34 layers of 16 heads, MLP 5632, pixel shuffle 0.5, adapter and
// projector 4096) or a "tiny" one (16-pixel tiles of 4-pixel patches, 32 wide, 2 layers: tests and fuzz seeds),
// projecting into text_hidden_size. InvalidArgument for another name or a text_hidden_size VisionConfig::Validate
// refuses.
Result<model::VisionConfig> SyntheticVisionConfig(const std::string& preset, int64_t text_hidden_size);
// Every tensor VisionTower::Create binds for `config`, under mmproj names: matrices in `dtype`, or F16 where their
// rows are not whole blocks of it (the 588-wide patch embedding); the positions and 1-D weights F32.
std::vector<model::TensorSpec> SyntheticVisionLayout(const model::VisionConfig& config, DType dtype);
// Random weights of SyntheticVisionLayout, filled as MakeSyntheticWeights fills a text model's (biases and the class
// embedding like matrices, norm weights around 1).
Result<SyntheticModel> MakeSyntheticVisionWeights(const model::VisionConfig& config, DType dtype, uint64_t seed,
                                                  ThreadPool& pool);

// SyntheticConfig + MakeSyntheticWeights + DecoderModel::Create: a runnable model. The model keeps the weights.
Result<std::unique_ptr<model::Model>> MakeSyntheticModel(const SyntheticSpec& spec, ThreadPool& pool);

// Writes `weights` (a model of `config`, e.g. from MakeSyntheticWeights) as a GGUF v3 file of architecture
// llama4 with llama.cpp's keys (llama4.md section 4.4), herd.* keys for what GGUF does not carry (chunk size,
// per-layer RoPE and MoE tables, QK-norm, temperature tuning), llama3 RoPE scaling as rope_freqs.weight
// divisors (section 4.3), and a minimal valid gpt2 vocabulary of vocab_size tokens (the 256 byte tokens in
// GPT-2's byte-to-unicode spelling, <|begin_of_text|> and <|end_of_text|> as BOS/EOS, "<tok_N>" fillers, no
// merges) so that llama.cpp's loader accepts it. Reading it back gives the same network.
// IOError from the file system; InvalidArgument when vocab_size < 258.
Status SaveSyntheticGguf(const model::ModelConfig& config, const WeightMap& weights, const std::string& path);

}  // namespace herd::tools
