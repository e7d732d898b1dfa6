// Weight and KV accounting of a model: what it stores, and what one decoded token reads (llama4.md section 1's
// "active" parameters). Used by `herd bench` for its bandwidth-bound fraction and by the synthetic Scout /
// Maverick shapes to check their published sizes without allocating them.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/tensor.h"
#include "model/config.h"

namespace herd::model {

// One tensor of a model's layout: canonical name, dtype and shape (outermost first).
struct TensorSpec {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  int64_t size_bytes = 0;
};

// Sizes of a model, from its tensors. "Active" is what one decoded token needs (llama4.md section 1's
// definition): everything except the routed experts, of which num_experts_per_tok of num_local_experts per MoE
// layer, and of token_embd only one row (the embedding lookup). So for a tied model the output head counts in
// full once. Bytes are the stored bytes, i.e. what a decode step streams from memory.
struct WeightFootprint {
  int64_t total_params = 0;
  int64_t total_bytes = 0;
  int64_t active_params = 0;        // per decoded token
  int64_t active_bytes = 0;         // per decoded token
  int64_t routed_expert_bytes = 0;  // all *_exps tensors (the part a decode step reads only k/E of)
};
WeightFootprint ComputeFootprint(const ModelConfig& config, const std::vector<TensorSpec>& tensors);
WeightFootprint ComputeFootprint(const ModelConfig& config, const WeightMap& weights);

// Mean bytes of K and V that decoding reads per token while generating tokens at positions [pos_begin, pos_end):
// per layer, the keys a query at pos attends to (pos + 1, or the position within its chunk + 1 on chunked
// layers) x num_key_value_heads x head_dim x 2 (K and V) x kv_elem_bytes.
double KvBytesPerToken(const ModelConfig& config, int64_t pos_begin, int64_t pos_end, int64_t kv_elem_bytes);

}  // namespace herd::model
