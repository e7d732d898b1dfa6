// The Llama decoder: dense Llama 2/3 and llama2.c models, and the Llama 4 text model, as one pre-norm
// transformer driven by the per-layer table of ModelConfig (llama4.md sections 2 and 10):
//   embed -> per layer: RMSNorm, Q/K/V, RoPE (+ QK-norm) or NoPE (+ temperature tuning), causal or chunked
//   attention over the KV cache, residual, RMSNorm, dense SwiGLU or MoE (router, top-k sigmoid gates on the
//   expert input, expert-grouped GEMMs, shared expert), residual -> final norm -> logits.
// References: stories260K greedy output (dense), shared/fixtures/llama4-tiny-text (Llama 4).
#pragma once

#include <memory>
#include <vector>

#include "core/mapped_file.h"
#include "model/model.h"
#include "model/weights.h"

namespace herd::model {

// Every matrix carries its optional per-output scale (FP8 checkpoints, llama4.md 6.3; see LinearWeight).
struct DecoderLayerWeights {
  std::vector<float> attn_norm;  // [hidden_size] f32 (converted at bind time: tiny)
  LinearWeight attn_q;           // [n_heads*head_dim, hidden_size]
  LinearWeight attn_k;           // [n_kv_heads*head_dim, hidden_size]
  LinearWeight attn_v;           // [n_kv_heads*head_dim, hidden_size]
  LinearWeight attn_output;      // [hidden_size, n_heads*head_dim]
  std::vector<float> ffn_norm;   // [hidden_size]
  // Dense layers, or the shared expert of MoE layers.
  LinearWeight ffn_gate;  // [ffn_size, hidden_size]
  LinearWeight ffn_up;    // [ffn_size, hidden_size]
  LinearWeight ffn_down;  // [hidden_size, ffn_size]
  // MoE layers only.
  LinearWeight router;  // [n_experts, hidden_size]
  // Either one [out, in] matrix per expert, from GGUF's stacked tensors (ffn_gate_exps [n_experts, ffn_size,
  // hidden_size], sliced) or HF's per-expert layout (ffn_gate_exps.{i}, llama4.md 4.1) ...
  std::vector<LinearWeight> gate_exps;  // [n_experts] x [ffn_size, hidden_size]
  std::vector<LinearWeight> up_exps;    // [n_experts] x [ffn_size, hidden_size]
  std::vector<LinearWeight> down_exps;  // [n_experts] x [hidden_size, ffn_size]
  // ... or HF's fused input-major tensors, used in their stored orientation (llama4.md section 4.1).
  bool experts_input_major = false;
  LinearWeight gate_up_exps_im;  // [n_experts, hidden_size, 2*ffn_size]: columns [0, F) gate, [F, 2F) up;
                                 // scale [n_experts * 2*ffn_size] or none
  LinearWeight down_exps_im;     // [n_experts, ffn_size, hidden_size]; scale [n_experts * hidden_size] or none
};

// Optional capture of intermediate values for golden tests (set on a state before Forward).
struct ForwardTrace {
  // [n_layers + 2][n_tokens][hidden_size]: embeddings, the residual after each layer, the final-normed state.
  std::vector<std::vector<float>> hidden;
  // [n_moe_layers][n_tokens][n_experts]: raw router logits; and [n_moe_layers][n_tokens][k] chosen experts.
  std::vector<std::vector<float>> router_logits;
  std::vector<std::vector<int32_t>> router_choice;
};

class DecoderModel final : public Model {
 public:
  // Binds every tensor of `weights` (canonical names) after checking presence, dtype and shape against
  // `config`; Corruption / NotSupported name the tensor, expected and actual. Unused tensors are an error.
  static Result<std::unique_ptr<Model>> Create(ModelConfig config, const WeightMap& weights);

  const ModelConfig& config() const override { return config_; }
  Result<std::unique_ptr<Workspace>> NewWorkspace(int64_t max_tokens, int64_t max_seqs) const override;
  Status Step(KvCache& cache, std::span<const StepInput> batch, Workspace& workspace, ThreadPool& pool) const override;
  int64_t WeightBytes() const override { return weight_bytes_; }
  // Repacks the attention, FFN, router, expert and output matrices (not the embedding table, read one row per
  // token, nor an output head tied to it, nor HF's input-major experts).
  Result<RepackStats> RepackWeights(ThreadPool& pool, bool show_progress) override;
  int64_t RepackBytes() const override;

  // Attaches a trace to `state`'s workspace (nullptr detaches); the trace must outlive the Forward calls.
  static void SetTrace(ModelState& state, ForwardTrace* trace);

 private:
  DecoderModel() = default;
  class Work;
  void StepTokens(KvCache& cache, std::span<const StepInput> batch, Work& s, int64_t n_tokens, ThreadPool& pool) const;
  void Attention(const KvCache& cache, std::span<const StepInput> batch, Work& s, int64_t layer, int64_t n_tokens,
                 ThreadPool& pool) const;
  void DenseFfn(Work& s, const DecoderLayerWeights& w, int64_t n_tokens, float* out, ThreadPool& pool) const;
  void MoeFfn(Work& s, int64_t layer, int64_t n_tokens, ThreadPool& pool) const;

  ModelConfig config_;
  WeightMap weights_;        // keeps the mapped files alive
  LinearWeight token_embd_;  // [vocab_size, hidden_size]
  std::vector<DecoderLayerWeights> layers_;
  std::vector<float> output_norm_;  // [hidden_size]
  LinearWeight output_;             // [vocab_size, hidden_size] (token_embd when tied)
  std::vector<float> inv_freq_;     // [head_dim/2]
  int64_t weight_bytes_ = 0;
  std::unique_ptr<AnonymousMemory> repacked_;  // RepackWeights' copies, viewed by the weights
  template <class Self, class Fn>
  static void ForEachRepackTarget(Self& self, Fn&& fn);
  int64_t max_ffn_ = 0;  // widest FFN of any layer
};

}  // namespace herd::model
