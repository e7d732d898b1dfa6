// Weight and KV accounting (model/footprint.h).
#include "model/footprint.h"

#include <algorithm>
#include <cmath>
#include <string_view>

namespace herd::model {
namespace {

// The expert tensors of which a decode step reads only num_experts_per_tok of num_local_experts slices.
bool IsRoutedExperts(std::string_view name) { return name.find("_exps") != std::string_view::npos; }

}  // namespace

WeightFootprint ComputeFootprint(const ModelConfig& c, const std::vector<TensorSpec>& tensors) {
  WeightFootprint fp;
  const bool tied =
      std::none_of(tensors.begin(), tensors.end(), [](const TensorSpec& t) { return t.name == "output.weight"; });
  const double expert_fraction =
      c.num_local_experts > 0 ? static_cast<double>(c.num_experts_per_tok) / c.num_local_experts : 0.0;
  for (const TensorSpec& t : tensors) {
    int64_t n = 1;
    for (int64_t dim : t.shape) n *= dim;
    fp.total_params += n;
    fp.total_bytes += t.size_bytes;
    if (IsRoutedExperts(t.name)) {
      fp.routed_expert_bytes += t.size_bytes;
      fp.active_params += std::llround(static_cast<double>(n) * expert_fraction);
      fp.active_bytes += std::llround(static_cast<double>(t.size_bytes) * expert_fraction);
    } else if (t.name == "token_embd.weight" && !tied) {  // one row per token: the lookup
      fp.active_params += t.shape.back();
      fp.active_bytes += RowBytes(t.dtype, t.shape.back());
    } else {
      fp.active_params += n;
      fp.active_bytes += t.size_bytes;
    }
  }
  return fp;
}

WeightFootprint ComputeFootprint(const ModelConfig& c, const WeightMap& weights) {
  std::vector<TensorSpec> specs;
  specs.reserve(weights.size());
  for (const auto& [name, v] : weights.tensors()) {
    specs.push_back({name, v.dtype, std::vector<int64_t>(v.shape.begin(), v.shape.begin() + v.n_dims), v.size_bytes});
  }
  return ComputeFootprint(c, specs);
}

double KvBytesPerToken(const ModelConfig& c, int64_t pos_begin, int64_t pos_end, int64_t kv_elem_bytes) {
  if (pos_end <= pos_begin) return 0;
  double keys = 0;
  for (int64_t pos = pos_begin; pos < pos_end; ++pos) {
    for (const LayerConfig& l : c.layers) {
      const int64_t chunk = l.attention_chunk_size;
      keys += static_cast<double>(chunk > 0 ? pos % chunk + 1 : pos + 1);
    }
  }
  return keys / static_cast<double>(pos_end - pos_begin) * static_cast<double>(c.num_key_value_heads) *
         static_cast<double>(c.head_dim) * 2.0 * static_cast<double>(kv_elem_bytes);
}

}  // namespace herd::model
