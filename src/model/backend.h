// The seam between the decoder's step and the hardware that runs it. The decoder (model/decoder.cpp) decides what
// runs in which order; a Backend runs each layer-level operation: embedding, position tables, RMSNorm, independent
// matrix products, the query/key preparation with its KV writes, attention, residual adds, SwiGLU, MoE routing, the
// routed experts and the copies back to the host. A model gets its backend once, at load (CreateModel), and every
// step runs on it; the activations of a step live in Buffers of the backend's memory space.
//
// The CPU backend (NewCpuBackend, model/cpu_backend.cpp) wraps the kernels of src/kernels and splits rows over the
// step's ThreadPool; it is the reference: a step through it computes what the decoder computed before the seam,
// bit for bit. A device backend implements the same operations on its own memory (weights uploaded by Bind) and
// enqueues them on ExecContext::queue; the decoder only moves host data in and out through Embed, ToHost and the
// host-side description of the step (StepRows).
#pragma once

#include <cstdint>
#include <memory>
#include <span>

#include "core/status.h"
#include "model/config.h"
#include "model/exec_context.h"
#include "model/kv_cache.h"
#include "model/model.h"
#include "model/weights.h"

namespace herd::model {

// Bytes in one memory space, owned; allocated by a Backend, released by the function it was given.
class Buffer {
 public:
  using Release = void (*)(void* data);
  Buffer() = default;
  Buffer(MemorySpace space, void* data, int64_t bytes, Release release)
      : space_(space), data_(data), bytes_(bytes), release_(release) {}
  Buffer(Buffer&& o) noexcept { *this = std::move(o); }
  Buffer& operator=(Buffer&& o) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer() { Reset(); }

  MemorySpace space() const { return space_; }
  int64_t bytes() const { return bytes_; }
  // The elements, in space(): host code may dereference them only when space() is kHost.
  template <class T>
  T* as() const {
    return static_cast<T*>(data_);
  }

 private:
  void Reset();
  MemorySpace space_ = MemorySpace::kHost;
  void* data_ = nullptr;
  int64_t bytes_ = 0;
  Release release_ = nullptr;
};

// The weights of one decoder layer. Every matrix carries its optional per-output scale (FP8 checkpoints, llama4.md
// 6.3; see LinearWeight).
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

// Every weight of a decoder, as bound from the files (host memory: the map, or RepackWeights' copies).
struct DecoderWeights {
  LinearWeight token_embd;  // [vocab_size, hidden_size]
  std::vector<DecoderLayerWeights> layers;
  std::vector<float> output_norm;  // [hidden_size]
  LinearWeight output;             // [vocab_size, hidden_size] (token_embd when tied)
  std::vector<float> inv_freq;     // [head_dim/2] RoPE inverse frequencies
};

// A step's tokens as the host sees them, filled by the decoder: the inputs of the step in order, token t of the
// step (t < n, counted over the inputs in order) at absolute position pos[t] of input seq_of[t].
struct StepRows {
  std::span<const StepInput> batch;
  const int64_t* pos = nullptr;
  const int32_t* seq_of = nullptr;
  int64_t n = 0;
};

// One of several independent products y = W x over the same tokens (Backend::Linear).
struct Product {
  const LinearWeight& w;
  const float* x;
  float* y;
};

// What a backend keeps per workspace besides the activations (attention work items and scratch, the MoE's rows
// grouped by expert), sized once by Backend::NewScratch.
class BackendScratch {
 public:
  virtual ~BackendScratch() = default;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;
  // Where Allocate's buffers live, and every pointer the operations below take unless it is named host.
  virtual MemorySpace space() const = 0;
  // Takes the weights in (a device backend uploads them in their stored layout); called once, at load, after the
  // weights are bound. The weights must outlive the backend's use of them.
  virtual Status Bind(const ModelConfig& config, const DecoderWeights& weights) = 0;
  // `bytes` in space(); ResourceExhausted naming the size when the memory cannot be had.
  virtual Result<Buffer> Allocate(int64_t bytes) const = 0;
  // The per-workspace scratch for steps of up to max_tokens tokens and FFNs of up to max_ffn rows.
  virtual Result<std::unique_ptr<BackendScratch>> NewScratch(const ModelConfig& config, int64_t max_tokens,
                                                             int64_t max_ffn) const = 0;

  // x [rows.n, d] = the table's row of every input's tokens in order (scale applied), then each input's embedding
  // overrides (host rows, StepInput::embed_at / embed_rows) over their positions.
  virtual void Embed(const LinearWeight& table, const StepRows& rows, int64_t d, float* x, ExecContext ctx) const = 0;
  // cos, sin [rows.n, half]: the RoPE table of each token's position (kernels::RopeCosSin; inv_freq host [half]).
  virtual void PositionTables(const float* inv_freq, int64_t half, const StepRows& rows, float* cos, float* sin,
                              ExecContext ctx) const = 0;
  // y [n, d]: row r = RmsNorm(row at[r] of x) * weight (at: host [n], or null for row r itself); weight host [d].
  virtual void Norm(const float* x, const int64_t* at, const std::vector<float>& weight, int64_t n, int64_t d,
                    float eps, float* y, ExecContext ctx) const = 0;
  // y = W x for each product, over the same n_tokens rows of x; no product's y overlaps another's x or y.
  virtual void Linear(std::span<const Product> products, int64_t n_tokens, ExecContext ctx) const = 0;
  // Layer `layer`'s queries q [n, n_heads * head_dim] and keys k [n, n_kv_heads * head_dim] made ready in place
  // (kernels::PrepareQueryKey with the layer's flags and the temperature of each position), then every token's keys
  // and values v written to its sequence's KV rows at its position.
  virtual void PrepareAttention(const ModelConfig& c, int layer, const StepRows& rows, const float* cos,
                                const float* sin, float* q, float* k, const float* v, KvCache& cache,
                                ExecContext ctx) const = 0;
  // att [n, n_heads * head_dim]: every token's attention over its sequence's keys in `layer`, causal, or within
  // its chunk for chunked layers (KvCache::FirstKey).
  virtual void Attention(const ModelConfig& c, int layer, const StepRows& rows, const KvCache& cache, const float* q,
                         float* att, BackendScratch& scratch, ExecContext ctx) const = 0;
  // x[t] += y[t] for n rows of d.
  virtual void Add(float* x, const float* y, int64_t n, int64_t d, ExecContext ctx) const = 0;
  // gate[t] = SwiGLU(gate[t], up[t]) for n rows of f.
  virtual void SwiGLU(float* gate, const float* up, int64_t n, int64_t f, ExecContext ctx) const = 0;
  // choice, gate [n, k]: each token's top-k of its router logits [n, n_experts] and their sigmoids
  // (kernels::RouteTopK).
  virtual void Route(const float* logits, int64_t n, int64_t n_experts, int64_t k, int32_t* choice, float* gate,
                     ExecContext ctx) const = 0;
  // out [n, d] += the routed experts of MoE layer w: each token's k chosen experts on its normed input xn scaled by
  // their gates, grouped by expert, the outputs added back in expert order (kernels/moe.h).
  virtual void Experts(const DecoderLayerWeights& w, int64_t d, int64_t f, int64_t n_experts, int64_t k,
                       const float* xn, const int32_t* choice, const float* gate, int64_t n, float* out,
                       BackendScratch& scratch, ExecContext ctx) const = 0;
  // host dst = bytes of src, complete on return.
  virtual void ToHost(const void* src, int64_t bytes, void* dst, ExecContext ctx) const = 0;
};

// The CPU backend: src/kernels on the step's ThreadPool, host memory.
std::unique_ptr<Backend> NewCpuBackend();

}  // namespace herd::model
