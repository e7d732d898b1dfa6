// Model: a bound, validated network that runs batched forward steps over sequences in a paged KV cache
// (model/kv_cache.h), and single-sequence Forward calls over a ModelState on the same Step. One implementation per
// family (llama/ ...), chosen by the registry CreateModel from the architecture. The model sees only a WeightMap and a
// ModelConfig, never a file format.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "core/tensor.h"
#include "core/thread_pool.h"
#include "model/config.h"
#include "model/exec_context.h"
#include "model/kv_cache.h"

namespace herd::model {

struct ForwardTrace;  // model/decoder.h

// Scratch of one step: activation buffers for up to max_tokens tokens of up to max_seqs sequences, sized once
// (nothing is allocated per step). One per thread of control that calls Step; the model must outlive it.
class Workspace {
 public:
  virtual ~Workspace() = default;
  int64_t max_tokens() const { return max_tokens_; }
  int64_t max_seqs() const { return max_seqs_; }
  // Optional capture of intermediate values (golden tests); must outlive the steps it is attached to.
  ForwardTrace* trace = nullptr;

 protected:
  Workspace(int64_t max_tokens, int64_t max_seqs) : max_tokens_(max_tokens), max_seqs_(max_seqs) {}
  int64_t max_tokens_, max_seqs_;
};

enum class LogitsMode {
  kLast,  // logits of the last token only: [1, vocab]
  kAll,   // logits of every token: [n_tokens, vocab]
  kNone,  // no logits (prefill of a prefix)
};

// One sequence's part of a step: `tokens` go to positions seq->n_past() ... (pages already reserved with
// KvCache::Reserve, and no more than KvCache::TokensToChunkEnd(n_past) of them). logits receives [1, vocab]
// (kLast) or [tokens.size(), vocab] (kAll; a kAll input must be the step's only input) f32 rows.
struct StepInput {
  KvSequence* seq = nullptr;
  std::span<const int32_t> tokens;
  LogitsMode mode = LogitsMode::kLast;
  float* logits = nullptr;
  // Early fusion (llama4.md 9.7): rows that replace the token table's embeddings of some of `tokens` (an image's
  // projected features at its <|patch|> positions). Row k, hidden_size floats at embed_rows + k * hidden_size,
  // replaces the embedding of tokens[embed_at[k]]; embed_at strictly ascending, inside tokens.
  std::span<const int32_t> embed_at;
  const float* embed_rows = nullptr;
  // What the KV cache records for each of `tokens`, the keys of its prefix cache; empty: the tokens themselves.
  // Positions whose embeddings were replaced need keys derived from what replaced them (kv_cache.h ImageCacheKeys), or
  // a later prompt with the same token ids but another image would reuse their pages.
  std::span<const int32_t> cache_keys;
};

// Embedding rows for Model::Forward: as StepInput's embed_at / embed_rows / cache_keys, with indices into the whole
// `tokens` of the call (Forward cuts them per batch).
struct EmbeddingOverride {
  std::span<const int32_t> at;
  const float* rows = nullptr;
  std::span<const int32_t> cache_keys;
};

// Sets in's embed_at, embed_rows and cache_keys to the share of `embeds` (indices into a whole prompt, rows of
// hidden_size floats) that falls in the chunk [from, from + n) of it, positions counted from the chunk's start; the
// positions are kept in *local, which must outlive every use of `in`. How Forward cuts its batches and the serving
// engine its prefill chunks.
void SetOverrideChunk(const EmbeddingOverride& embeds, int64_t hidden_size, int64_t from, int64_t n,
                      std::vector<int32_t>* local, StepInput* in);

class Model;

// One sequence with a KV cache of its own, for the single-sequence commands (run, chat, logits, bench, quality):
// Model::Forward feeds it through the same Step as the serving engine. Not thread-safe; the model must outlive it.
class ModelState {
 public:
  ModelState(std::unique_ptr<KvCache> cache, std::unique_ptr<Workspace> workspace, int64_t n_ctx);
  ~ModelState();
  // Number of positions already in the cache (the position of the next token).
  int64_t n_past() const { return seq_.n_past(); }
  int64_t n_ctx() const { return n_ctx_; }
  int64_t n_batch() const { return workspace_->max_tokens(); }
  // Forgets every position: the next token goes to position 0. (To keep a prefix, use Rewind, which checks that
  // the cache still holds it.)
  void Reset();
  // Forgets positions >= n (0 <= n <= n_past) when the cache still holds positions [0, n) (a chunked layer keeps
  // only its current chunk); OutOfRange otherwise.
  Status Rewind(int64_t n);
  // Bytes of the KV cache.
  int64_t KvBytes() const;
  // The cached positions [0, n_past) as bytes (a versioned binary blob), and back into a state of the same
  // model and KV type with a context of at least n_past. Corruption naming the problem when the blob does not fit.
  Status SaveTo(std::string* out) const;
  Status LoadFrom(std::string_view blob);

  KvCache& cache() { return *cache_; }
  KvSequence& seq() { return seq_; }
  Workspace& workspace() { return *workspace_; }

 private:
  std::unique_ptr<KvCache> cache_;
  std::unique_ptr<Workspace> workspace_;
  KvSequence seq_;
  int64_t n_ctx_;
};

class Model {
 public:
  virtual ~Model() = default;
  virtual const ModelConfig& config() const = 0;

  // Scratch for steps of up to max_tokens tokens from up to max_seqs sequences. ResourceExhausted when memory
  // is short.
  virtual Result<std::unique_ptr<Workspace>> NewWorkspace(int64_t max_tokens, int64_t max_seqs) const = 0;

  // One step of the batched forward pass: every input's tokens are embedded, run through every layer (the
  // tokens of all sequences together through each matrix product, grouped by expert in MoE layers; attention per
  // sequence over its own pages) and appended to its KV pages (KvCache::Commit). Each token's results are
  // independent of the other inputs and of how a sequence's tokens are split over steps (batch invariance).
  // InvalidArgument for a token id outside the vocabulary or inputs beyond the workspace; the cache is
  // unchanged on error.
  virtual Status Step(KvCache& cache, std::span<const StepInput> batch, Workspace& workspace,
                      ExecContext ctx) const = 0;
  // The backend every step runs on, chosen at load (model/backend.h): "cpu", ...
  virtual const char* BackendName() const = 0;

  // A fresh single-sequence state for up to n_ctx positions with KV rows of kv_type, processed in batches of at
  // most n_batch tokens. OutOfRange when n_ctx exceeds the model's max_position_embeddings; InvalidArgument for
  // a KV type the model cannot use; ResourceExhausted when memory is short.
  Result<std::unique_ptr<ModelState>> NewState(int64_t n_ctx, int64_t n_batch, DType kv_type = DType::kF32) const;

  // Runs `tokens` at positions state.n_past() ... and appends them to the cache, through Step, in batches of at
  // most n_batch tokens that never cross a chunk boundary. logits receives [1 or n_tokens, vocab_size] f32 per
  // `mode`. InvalidArgument for a token id outside the vocabulary or a bad override, OutOfRange when the cache
  // would overflow; the state is unchanged on error. `embeds` (optional) replaces embedding rows (early fusion).
  Status Forward(ModelState& state, std::span<const int32_t> tokens, LogitsMode mode, float* logits, ExecContext ctx,
                 const EmbeddingOverride* embeds = nullptr) const;

  // Total bytes of bound weights.
  virtual int64_t WeightBytes() const = 0;

  // Optional repacking at load (by default when the copy fits, runtime::RepackMode): every matrix the kernels
  // multiply is copied into anonymous huge-page memory (core/mapped_file.h AnonymousMemory), in the layout
  // kernels::RepackedType names for this CPU (Q8_0 -> Q8_0R, Q4_0 -> Q4_0R, Q4_K -> Q4_KR, Q5_K -> Q5_KR, Q6_K -> Q6_KR
  // on AVX-512 VNNI and AVX2; the stored layout otherwise). Huge pages matter as much as the layout: decode streams
  // every weight once per token, and a file map's 4 KiB pages cost a TLB miss per 4 KiB (bench/RESULTS.md). Costs one
  // more copy of those weights in memory (the file stays mapped; its clean pages may be dropped by the OS) and the time
  // of the copy. Outputs equal the map's up to f32 rounding (Q8_0R and Q4_0R sum their blocks in another order; every
  // other type is bit-identical), except the K-quants' layouts, which quantize activations per 32 inputs where Q4_K,
  // Q5_K and Q6_K do per 256. Call once, before any NewState/Forward; later calls do nothing. ResourceExhausted (naming
  // the size) when the memory cannot be had; the model is then unchanged.
  struct RepackStats {
    int64_t tensors = 0;  // matrices copied
    int64_t bytes = 0;    // their bytes
    int64_t relaid = 0;   // of which into another layout (Q8_0R, Q4_0R, Q4_KR, Q5_KR, Q6_KR)
  };
  virtual Result<RepackStats> RepackWeights(ThreadPool& pool, bool show_progress) {
    (void)pool;
    (void)show_progress;
    return RepackStats{};
  }
  // The bytes RepackWeights would allocate (0 once done, or for a model that does not repack).
  virtual int64_t RepackBytes() const { return 0; }
};

// Picks the family of config.architecture and binds `weights` (canonical names) to it, checking every tensor's
// presence, dtype and shape against the config first (Corruption / NotSupported naming the tensor). The model
// keeps what `weights` keeps alive (the file maps or the buffers). Every step runs on `backend` (model/backend.h),
// chosen here once; the first form, and a null backend, choose the CPU backend.
class Backend;
Result<std::unique_ptr<Model>> CreateModel(ModelConfig config, const WeightMap& weights);
Result<std::unique_ptr<Model>> CreateModel(ModelConfig config, const WeightMap& weights,
                                           std::unique_ptr<Backend> backend);

// InvalidArgument unless `at` is strictly ascending inside [0, n_tokens), rows is given when at is not empty, and
// cache_keys is empty or holds n_tokens keys (StepInput's and EmbeddingOverride's rules).
Status CheckEmbeddingOverride(std::span<const int32_t> at, const float* rows, std::span<const int32_t> cache_keys,
                              int64_t n_tokens);

// InvalidArgument naming the first token id outside [0, vocab) and its index; Ok otherwise. Step checks its inputs
// with it; Forward checks a whole prompt before its first batch, so that a bad id leaves the state untouched.
Status CheckTokenIds(std::span<const int32_t> tokens, int64_t vocab);

}  // namespace herd::model
