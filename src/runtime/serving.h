// ServingEngine: many sequences at once over one model (continuous batching). Requests are admitted while KV
// pages are free, queued otherwise (bounded queue), and every step of the engine thread runs the next token of
// each running sequence plus prefill chunks of new ones under a per-step token budget (chunked prefill), through
// model::Model::Step (the same batched forward `herd run` uses with one sequence). Sequences share a paged KV
// cache (model/kv_cache.h) with a prefix cache: a prompt whose leading pages are cached is only computed from the
// first uncached page on. Results do not depend on what else runs in the step (batch invariance): a request's
// greedy tokens equal `herd run`'s.
//
// Threading: Submit, Cancel, stats() and Shutdown may be called from any thread. Events are delivered on the
// engine thread, in order per request; a sink must not block (queue the event and return). A sink that returns
// false cancels its request: no further event reaches it and its pages are freed at once.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/status.h"
#include "runtime/engine.h"
#include "runtime/sampler.h"

namespace herd::runtime {

// Embedding rows that replace prompt positions (early fusion: the projected image rows at the prompt's <|patch|>
// positions, runtime/images.h ImageEmbeds), and the keys the prefix cache records for the prompt (those positions
// keyed by their image's content; model/model.h StepInput).
struct PromptEmbeds {
  std::vector<int32_t> at;          // prompt positions, strictly ascending
  std::vector<float> rows;          // [at.size(), the model's hidden size]
  std::vector<int32_t> cache_keys;  // one per prompt token
};

// What a request asks for. The prompt is already tokenized (chat template applied by the caller).
struct ServingRequest {
  std::vector<int32_t> prompt;                 // at least one token, every id < the model's vocabulary
  std::shared_ptr<const PromptEmbeds> embeds;  // null: the prompt's own embeddings (text only)
  int64_t max_tokens = 256;        // generated tokens at most per choice (the context may end a choice earlier)
  SamplingParams sampling;         // seed: choice i samples with seed + i
  float frequency_penalty = 0.0f;  // OpenAI's: logit -= frequency * count + presence * (count > 0), over the
  float presence_penalty = 0.0f;   // tokens generated so far in this choice
  std::vector<std::pair<int32_t, float>> logit_bias;  // added to the logits before sampling
  std::vector<std::string> stop_strings;              // text ends before the first one found (not included)
  std::vector<int32_t> stop_ids;  // tokens that end a choice besides the model's own (chat: the end-of-turn ids)
  bool ignore_eos = false;        // keep going past end-of-turn tokens (bench-serve's fixed output lengths)
  int n = 1;                      // choices; they share the prompt's KV pages
  int top_logprobs = -1;          // -1: no logprobs; 0..20: the sampled token's logprob and this many alternatives
  // Constrains every choice to a grammar (runtime/structured.h), or null: only tokens that continue a valid prefix,
  // an end token only where the grammar can end, the choice finishes ("stop") when the grammar's sentence is
  // complete, and near max_tokens (or the context's end) only tokens that leave room to complete it.
  std::shared_ptr<const grammar::CompiledGrammar> grammar;
};

struct TokenLogprob {
  int32_t id = 0;
  float logprob = 0.0f;  // natural log of the probability under the raw model distribution (before sampling
                         // transforms other than logit_bias)
  std::vector<std::pair<int32_t, float>> top;  // (id, logprob), most likely first
};

// Why a choice ended, in OpenAI's words: "stop" (end-of-turn token or stop string) or "length" (max_tokens or
// the context), plus "cancelled" (client gone / shutdown) and "error" (see ServingEvent::error).
enum class FinishReason { kStop, kLength, kCancelled, kError };
std::string_view FinishReasonName(FinishReason r);

struct ServingEvent {
  int choice = 0;
  std::string text;                    // new text of this choice, complete UTF-8, stop strings held back/cut
  std::vector<int32_t> tokens;         // the tokens this text came from (may be empty: text held back earlier)
  std::vector<TokenLogprob> logprobs;  // one per token when requested
  bool finished = false;               // the last event of this choice
  FinishReason finish_reason = FinishReason::kStop;  // when finished
  Status error;                                      // finish_reason kError: what went wrong
  // Set when finished: usage of this choice.
  int64_t prompt_tokens = 0;      // prompt length
  int64_t cached_tokens = 0;      // prompt tokens taken from the prefix cache (not computed)
  int64_t completion_tokens = 0;  // tokens generated in this choice
};

// Returns whether to go on; false cancels the whole request (all its choices).
using ServingSink = std::function<bool(const ServingEvent& event)>;

struct ServingOptions {
  int parallel = 4;             // running sequences (choices) at most
  int64_t n_ctx = 4096;         // longest context one sequence may have (prompt + generated)
  int64_t kv_bytes = 0;         // KV page pool size; 0: a quarter of the available memory, at most what
                                // parallel sequences of n_ctx need
  std::string kv_type = "f16";  // f32 | f16 | bf16 | q8_0
  int64_t step_tokens = 512;    // tokens per step at most (decode tokens first, then prefill chunks)
  int64_t max_queue = 256;      // waiting requests at most; more -> Unavailable
  int threads = 0;              // 0: all cores
};

// A snapshot for /metrics and tests.
struct ServingStats {
  int64_t running = 0, waiting = 0;
  int64_t kv_pages_total = 0, kv_pages_used = 0, kv_page_tokens = 0;
  int64_t prefix_cache_queries = 0;  // prompt tokens looked up
  int64_t prefix_cache_hits = 0;     // of which found cached
  int64_t requests_finished = 0, requests_cancelled = 0, requests_failed = 0, preemptions = 0;
  int64_t prompt_tokens = 0, generated_tokens = 0, steps = 0;
  // Histograms (Prometheus style): cumulative counts per upper bound in seconds, plus sum and count.
  struct Histogram {
    std::vector<double> bounds;
    std::vector<int64_t> counts;  // counts[i]: observations <= bounds[i]; one more entry for +Inf
    double sum = 0;
    int64_t count = 0;
  };
  Histogram ttft, itl;  // time to first token per request; inter-token latency per generated token
};

class ServingEngine {
 public:
  // Starts the engine thread. InvalidArgument for bad options (unknown kv_type, n_ctx above the model's maximum);
  // ResourceExhausted when the page pool cannot be allocated. `model` must outlive the engine.
  static Result<std::unique_ptr<ServingEngine>> Create(const LoadedModel& model, const ServingOptions& options);
  virtual ~ServingEngine() = default;

  // Queues a request. Errors (nothing is queued and the sink is never called): InvalidArgument for a bad request
  // (empty prompt, token outside the vocabulary, sampling parameter out of range, n < 1, embeds that do not fit the
  // prompt or the model); OutOfRange when the
  // prompt plus one token can never fit (longer than n_ctx, or more pages than the whole pool);
  // Unavailable when the queue is full or the engine is shutting down.
  virtual Result<uint64_t> Submit(ServingRequest request, ServingSink sink) = 0;
  // Cancels a request (no-op when it already finished): its sink gets one finished event per open choice with
  // FinishReason::kCancelled, then nothing more, and its pages are freed.
  virtual void Cancel(uint64_t id) = 0;
  virtual ServingStats stats() const = 0;
  // Stops admitting (Submit -> Unavailable), lets running and queued requests finish for up to drain_ms, then
  // cancels what is left and stops the engine thread. Idempotent; the destructor calls Shutdown(0).
  virtual void Shutdown(double drain_ms) = 0;
  // Bytes of KV cache per token for this model and kv_type (all layers), and the model's KV layout, for `info`.
  virtual int64_t KvBytesPerToken() const = 0;
};

}  // namespace herd::runtime
