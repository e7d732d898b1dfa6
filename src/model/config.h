// ModelConfig: the hyperparameters of a model, built from GGUF metadata, HF config.json or a llama2.c
// header, and validated before any weight is bound. Field names follow HF config.json (style.md section 3).
// Dense Llama per llama4.md section 10; Llama 4 fields are added by its family.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/status.h"
#include "kernels/rope.h"

namespace herd::formats {
class GgufFile;
struct Llama2cHeader;
}  // namespace herd::formats

namespace herd::model {

enum class Architecture { kLlama, kLlama4 };

// What one decoder layer does (llama4.md section 2.2). Dense Llama: RoPE, global causal attention, dense FFN.
struct LayerConfig {
  bool use_rope = true;                 // false: NoPE layer
  int64_t attention_chunk_size = 0;     // > 0: chunked causal attention over fixed blocks (section 2.7)
  bool use_qk_norm = false;             // weightless RMS norm of q and k per head, after RoPE (section 2.4)
  bool attn_temperature_tuning = false; // q *= 1 + attn_scale*ln(1 + floor((pos+1)/floor_scale)) (section 2.8)
  bool moe = false;                     // routed experts + shared expert (section 2.9), else dense SwiGLU
  int64_t ffn_size = 0;                 // dense FFN width, or expert / shared-expert width for MoE layers
};

struct ModelConfig {
  Architecture architecture = Architecture::kLlama;
  std::string architecture_name;  // "llama"
  std::string name;               // general.name or the directory name

  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;
  int64_t head_dim = 0;
  int64_t intermediate_size = 0;
  int64_t max_position_embeddings = 0;
  float rms_norm_eps = 1e-5f;
  float rope_theta = 10000.0f;
  kernels::RopeStyle rope_style = kernels::RopeStyle::kInterleaved;
  // llama3-style frequency scaling (HF rope_scaling {"rope_type": "llama3", ...}); factor 0 means none.
  struct RopeScaling {
    float factor = 0;
    float low_freq_factor = 1;
    float high_freq_factor = 4;
    float original_max_position_embeddings = 8192;
  } rope_scaling;
  bool tie_word_embeddings = false;

  // Llama 4 (zero / empty for dense Llama).
  int64_t num_local_experts = 0;
  int64_t num_experts_per_tok = 0;
  int64_t intermediate_size_mlp = 0;  // dense-layer width (HF naming, llama4.md pitfall 12)
  float attn_scale = 0.1f;
  float floor_scale = 8192.0f;

  // One entry per layer; filled by the builders (dense Llama: all RoPE, global, dense intermediate_size).
  std::vector<LayerConfig> layers;

  // Checks internal consistency (positive sizes, heads divide, head_dim*heads sane). InvalidArgument/Corruption
  // naming the field.
  Status Validate() const;
  // One line per hyperparameter, for `herd info`.
  std::string Describe() const;
};

// Per-pair inverse frequencies [head_dim/2] in fp32 as Meta computes them (1/theta^(2i/d)), with llama3 scaling
// when configured (llama4.md section 2.5) and divided by GGUF rope_freqs factors when given (section 4.3).
std::vector<float> RopeInvFreq(const ModelConfig& c, const float* freq_divisors = nullptr);

Result<ModelConfig> ConfigFromGguf(const formats::GgufFile& gguf);
Result<ModelConfig> ConfigFromHf(const nlohmann::json& config_json, const std::string& source);
Result<ModelConfig> ConfigFromLlama2c(const formats::Llama2cHeader& header);

}  // namespace herd::model
