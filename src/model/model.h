// Model: a bound, validated network that runs forward steps over a per-sequence ModelState (KV cache and
// activation buffers sized up front). One implementation per family (llama/ ...), chosen by the registry
// CreateModel from the architecture. The model sees only a WeightMap and a ModelConfig, never a file format.
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

namespace herd::model {

// Per-sequence state: KV cache for n_ctx positions and scratch for batches of up to n_batch tokens.
// Owned by one caller at a time (not thread-safe); the model must outlive it.
class ModelState {
 public:
  virtual ~ModelState() = default;
  // Number of positions already in the cache (the position of the next token).
  int64_t n_past() const { return n_past_; }
  int64_t n_ctx() const { return n_ctx_; }
  int64_t n_batch() const { return n_batch_; }
  // Forgets every position: the next token goes to position 0. (To keep a prefix, use Rewind, which checks that
  // the cache still holds it.)
  void Reset() { n_past_ = 0; }
  // Forgets positions >= n (0 <= n <= n_past) when the cache still holds positions [0, n) (a chunked layer's
  // ring may already have overwritten them); OutOfRange otherwise.
  virtual Status Rewind(int64_t n) = 0;
  // Bytes of the KV cache.
  virtual int64_t KvBytes() const = 0;
  // The cached positions [0, n_past) as bytes (a versioned binary blob), and back into a state of the same
  // model with a context of at least n_past. Corruption naming the problem when the blob does not fit.
  virtual Status SaveTo(std::string* out) const = 0;
  virtual Status LoadFrom(std::string_view blob) = 0;

 protected:
  ModelState(int64_t n_ctx, int64_t n_batch) : n_ctx_(n_ctx), n_batch_(n_batch) {}
  int64_t n_past_ = 0;
  int64_t n_ctx_;
  int64_t n_batch_;
};

enum class LogitsMode {
  kLast,  // logits of the last token only: [1, vocab]
  kAll,   // logits of every token: [n_tokens, vocab]
  kNone,  // no logits (prefill of a prefix)
};

class Model {
 public:
  virtual ~Model() = default;
  virtual const ModelConfig& config() const = 0;

  // A fresh state for up to n_ctx positions, processed in batches of at most n_batch tokens.
  // OutOfRange when n_ctx exceeds the model's max_position_embeddings; ResourceExhausted when memory is short.
  virtual Result<std::unique_ptr<ModelState>> NewState(int64_t n_ctx, int64_t n_batch) const = 0;

  // Runs `tokens` at positions state.n_past() ... and appends them to the cache. Batches longer than
  // n_batch are split internally. logits receives [1 or n_tokens, vocab_size] f32 per `mode`.
  // InvalidArgument for a token id outside the vocabulary, OutOfRange when the cache would overflow; the
  // state is unchanged on error.
  virtual Status Forward(ModelState& state, std::span<const int32_t> tokens, LogitsMode mode, float* logits,
                         ThreadPool& pool) const = 0;

  // Total bytes of bound weights.
  virtual int64_t WeightBytes() const = 0;

  // Optional repacking at load (--repack): every matrix the kernels multiply is copied into anonymous huge-page
  // memory (core/mapped_file.h AnonymousMemory), in the layout kernels::RepackedType names for this CPU (Q8_0 ->
  // Q8_0R on AVX-512 VNNI; the stored layout otherwise). Huge pages matter as much as the layout: decode streams
  // every weight once per token, and a file map's 4 KiB pages cost a TLB miss per 4 KiB (bench/RESULTS.md).
  // Costs one more copy of those weights in memory (the file stays mapped; its clean pages may be dropped by the
  // OS) and the time of the copy. Outputs are bit-identical. Call once, before any NewState/Forward; later calls
  // do nothing. ResourceExhausted (naming the size) when the memory cannot be had; the model is then unchanged.
  struct RepackStats {
    int64_t tensors = 0;   // matrices copied
    int64_t bytes = 0;     // their bytes
    int64_t relaid = 0;    // of which into another layout (Q8_0R)
  };
  virtual Result<RepackStats> RepackWeights(ThreadPool& pool, bool show_progress) {
    (void)pool;
    (void)show_progress;
    return RepackStats{};
  }
};

// Picks the family of config.architecture and binds `weights` (canonical names) to it, checking every tensor's
// presence, dtype and shape against the config first (Corruption / NotSupported naming the tensor). The model
// keeps what `weights` keeps alive (the file maps or the buffers).
Result<std::unique_ptr<Model>> CreateModel(ModelConfig config, const WeightMap& weights);

}  // namespace herd::model
