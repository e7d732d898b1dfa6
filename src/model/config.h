// ModelConfig: the hyperparameters of a model, built from the neutral ModelMetadata that formats/ reads from GGUF
// metadata, HF config.json or a llama2.c header, and validated before any weight is bound. Field names follow HF
// config.json (style.md section 3). Dense Llama per llama4.md section 10; Llama 4 fields per sections 2-3.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/metadata.h"
#include "core/status.h"
#include "kernels/rope.h"

namespace herd::model {

enum class Architecture { kLlama, kLlama4 };

// What one decoder layer does (llama4.md section 2.2). Dense Llama: RoPE, global causal attention, dense FFN.
struct LayerConfig {
  bool use_rope = true;                  // false: NoPE layer
  int64_t attention_chunk_size = 0;      // > 0: chunked causal attention over fixed blocks (section 2.7)
  bool use_qk_norm = false;              // weightless RMS norm of q and k per head, after RoPE (section 2.4)
  bool attn_temperature_tuning = false;  // q *= 1 + attn_scale*ln(1 + floor((pos+1)/floor_scale)) (section 2.8)
  bool moe = false;                      // routed experts + shared expert (section 2.9), else dense SwiGLU
  int64_t ffn_size = 0;                  // dense FFN width, or expert / shared-expert width for MoE layers

  bool operator==(const LayerConfig&) const = default;
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
    bool operator==(const RopeScaling&) const = default;
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

  // Checks internal consistency: every size within its plausible range (kSizeLimits in config.cpp), heads divide,
  // head_dim even, finite positive epsilon and theta, one layer entry per layer. Corruption naming the field.
  Status Validate() const;
  // One line per hyperparameter, for `herd info`.
  std::string Describe() const;

  // Every field, the layer table included.
  bool operator==(const ModelConfig&) const = default;
};

// Per-pair inverse frequencies [head_dim/2] in fp32 as Meta computes them (1/theta^(2i/d)), with llama3 scaling
// when configured (llama4.md section 2.5) and divided by GGUF rope_freqs factors when given (section 4.3).
std::vector<float> RopeInvFreq(const ModelConfig& c, const float* freq_divisors = nullptr);

// llama3 scaling as GGUF stores it (llama4.md 4.3): one divisor per frequency for rope_freqs.weight, chosen so that
// RopeInvFreq(unscaled c, divisors) is bit-identical to RopeInvFreq(c): base / scaled, or the nearest float to it
// that gives the exact quotient (it agrees with llama.cpp's 1 / ((1 - smooth) / factor + smooth) to about one
// ulp). *n_inexact receives how many frequencies no float divisor reproduces exactly (they are one ulp off).
// Empty without scaling.
std::vector<float> RopeFreqDivisors(const ModelConfig& c, int64_t* n_inexact);

// The config a model's metadata describes (core/metadata.h keys; defaults for absent keys are HF's: LlamaConfig
// for model_type llama, Llama4TextConfig for llama4, llama4.md section 3). Every size is range-checked as it is
// read, before anything is sized from it; errors are Corruption (or NotSupported for an unknown model_type or rope
// scaling) naming the field, its origin in the file and the value.
Result<ModelConfig> ConfigFromMetadata(const ModelMetadata& metadata);

// The inverse: metadata that ConfigFromMetadata turns back into `config` (the per-layer table as explicit
// no_rope_layers / moe_layers lists), for writers of model files. NotSupported when the per-layer table is not one
// that metadata can state (layers that differ in chunk size, QK-norm on only some RoPE layers, ...).
Result<ModelMetadata> MetadataFromConfig(const ModelConfig& config);

}  // namespace herd::model
