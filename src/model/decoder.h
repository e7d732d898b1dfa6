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
#include "model/backend.h"
#include "model/model.h"
#include "model/weights.h"

namespace herd::model {

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
  // `config`; Corruption / NotSupported name the tensor, expected and actual. Unused tensors are an error. Every
  // step runs on `backend` (null: the CPU backend), which takes the weights in here (Backend::Bind).
  static Result<std::unique_ptr<Model>> Create(ModelConfig config, const WeightMap& weights,
                                               std::unique_ptr<Backend> backend = nullptr);

  const ModelConfig& config() const override { return config_; }
  Result<std::unique_ptr<Workspace>> NewWorkspace(int64_t max_tokens, int64_t max_seqs) const override;
  Status Step(KvCache& cache, std::span<const StepInput> batch, Workspace& workspace, ExecContext ctx) const override;
  const char* BackendName() const override { return backend_->name(); }
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
  void StepTokens(KvCache& cache, const StepRows& rows, Work& s, ExecContext ctx) const;
  void DenseFfn(Work& s, const DecoderLayerWeights& w, int64_t n_tokens, float* out, ExecContext ctx) const;
  void MoeFfn(Work& s, int64_t layer, int64_t n_tokens, ExecContext ctx) const;

  ModelConfig config_;
  WeightMap weights_;  // keeps the mapped files alive
  DecoderWeights w_;
  std::unique_ptr<Backend> backend_;
  int64_t weight_bytes_ = 0;
  std::unique_ptr<AnonymousMemory> repacked_;  // RepackWeights' copies, viewed by the weights
  template <class Self, class Fn>
  static void ForEachRepackTarget(Self& self, Fn&& fn);
  int64_t max_ffn_ = 0;  // widest FFN of any layer
};

}  // namespace herd::model
