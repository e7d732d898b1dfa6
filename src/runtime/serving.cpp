// The serving engine: admission, continuous batching with chunked prefill, preemption and the prefix cache
// (runtime/serving.h). One engine thread owns the KV cache and the model's workspace; other threads only queue
// requests and cancellations under the lock.
#include "runtime/serving.h"

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <list>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "core/mapped_file.h"
#include "model/kv_cache.h"
#include "runtime/text_stream.h"

namespace herd::runtime {

std::string_view FinishReasonName(FinishReason r) {
  switch (r) {
    case FinishReason::kStop:
      return "stop";
    case FinishReason::kLength:
      return "length";
    case FinishReason::kCancelled:
      return "cancelled";
    case FinishReason::kError:
      return "error";
  }
  return "unknown";
}

namespace {

ServingStats::Histogram MakeHistogram(std::vector<double> bounds) {
  ServingStats::Histogram h;
  h.bounds = std::move(bounds);
  h.counts.assign(h.bounds.size() + 1, 0);
  return h;
}

void Observe(ServingStats::Histogram& h, double seconds) {
  for (size_t i = 0; i < h.bounds.size(); ++i) {
    if (seconds <= h.bounds[i]) ++h.counts[i];
  }
  ++h.counts.back();
  h.sum += seconds;
  ++h.count;
}

struct Request;

// One choice of a request: a sequence with its own KV pages, sampler and text.
struct Choice {
  Request* request = nullptr;
  int index = 0;
  model::KvSequence seq;
  std::vector<int32_t> tokens;  // prompt + generated; positions [seq.n_past(), tokens.size()) are pending
  std::vector<int32_t> keys;    // prefix-cache keys of tokens when the prompt has embeds (empty: the tokens)
  int64_t n_prompt = 0;
  int64_t n_generated = 0;
  std::unique_ptr<Sampler> sampler;
  std::optional<grammar::TokenMatcher> matcher;  // with a grammar
  grammar::TokenMask mask;
  std::unique_ptr<TextStream> text;
  std::vector<float> logits;
  std::unordered_map<int32_t, int32_t> counts;  // generated token -> times (frequency/presence penalties)
  bool awaiting_fork = false;                   // choices 1.. of n > 1 wait for choice 0's prompt
  bool finished = false;
  bool logits_ready = false;  // the step just computed the logits of its last pending token
  double last_token_ms = 0;
  int64_t admitted_order = 0;
};

struct Request {
  uint64_t id = 0;
  ServingRequest req;
  ServingSink sink;
  double arrival_ms = 0;
  bool first_token_seen = false;
  bool dead = false;  // its sink said stop, or it was cancelled: no more events
  int64_t cached_tokens = 0;
  std::vector<std::unique_ptr<Choice>> choices;
  int open = 0;
};

class Engine final : public ServingEngine {
 public:
  Engine(const LoadedModel& m, const ServingOptions& o) : m_(m), o_(o) {}
  ~Engine() override { Shutdown(0); }

  Status Init() {
    const model::ModelConfig& c = m_.model->config();
    if (o_.parallel < 1 || o_.parallel > 4096) {
      return InvalidArgument("--parallel must be between 1 and 4096, got " + std::to_string(o_.parallel));
    }
    if (o_.n_ctx < 2 || o_.n_ctx > c.max_position_embeddings) {
      return InvalidArgument("context size " + std::to_string(o_.n_ctx) + " is outside [2, " +
                             std::to_string(c.max_position_embeddings) + "] (the model's maximum)");
    }
    if (o_.step_tokens < o_.parallel) o_.step_tokens = o_.parallel;
    if (o_.max_queue < 0) return InvalidArgument("the queue length cannot be negative");
    HERD_ASSIGN_OR_RETURN(DType type, model::ParseKvType(o_.kv_type));
    model::KvCache::Options ko;
    ko.type = type;
    HERD_ASSIGN_OR_RETURN(std::vector<model::KvCache::Group> groups, model::KvCache::Layout(c, ko));
    int64_t bytes = o_.kv_bytes;
    std::vector<int64_t> want = model::KvCache::PagesFor(groups, o_.n_ctx, o_.parallel);
    int64_t want_bytes = 0;
    for (size_t g = 0; g < groups.size(); ++g) want_bytes += want[g] * groups[g].page_bytes;
    if (bytes <= 0) bytes = std::min<int64_t>(want_bytes, AvailableMemoryBytes().value_or(int64_t{4} << 30) / 4);
    // Exactly `parallel` full contexts, or as many pages as the bytes hold: fewer (admission waits for pages), or
    // more (room for the prefix cache).
    const std::vector<int64_t> pages =
        bytes == want_bytes ? want : model::KvCache::PagesForBytes(groups, bytes, o_.n_ctx);
    HERD_ASSIGN_OR_RETURN(cache_, model::KvCache::Create(c, ko, pages));
    HERD_ASSIGN_OR_RETURN(ws_, m_.model->NewWorkspace(o_.step_tokens, o_.parallel));
    HERD_ASSIGN_OR_RETURN(pool_, ThreadPool::Create(o_.threads));
    kv_per_token_ = model::KvRowBytesPerToken(c, type);
    stats_.kv_page_tokens = cache_->page_tokens();
    stats_.kv_pages_total = cache_->total_pages();
    stats_local_.ttft = stats_.ttft = MakeHistogram({0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60});
    stats_local_.itl = stats_.itl = MakeHistogram({0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5});
    thread_ = std::thread([this] { Loop(); });
    return Status::Ok();
  }

  Result<uint64_t> Submit(ServingRequest r, ServingSink sink) override {
    const model::ModelConfig& c = m_.model->config();
    if (r.prompt.empty()) return InvalidArgument("the prompt has no tokens");
    if (!sink) return InvalidArgument("a request needs an event sink");
    for (size_t i = 0; i < r.prompt.size(); ++i) {
      if (r.prompt[i] < 0 || r.prompt[i] >= c.vocab_size) {
        return InvalidArgument("token id " + std::to_string(r.prompt[i]) + " at index " + std::to_string(i) +
                               " is outside the vocabulary [0, " + std::to_string(c.vocab_size) + ")");
      }
    }
    HERD_RETURN_IF_ERROR(r.sampling.Validate());
    if (r.n < 1 || r.n > 128) return InvalidArgument("n must be between 1 and 128, got " + std::to_string(r.n));
    if (r.max_tokens < 1) return InvalidArgument("max_tokens must be at least 1");
    if (r.top_logprobs > 20) return InvalidArgument("top_logprobs must be at most 20");
    for (const auto& [id, bias] : r.logit_bias) {
      if (id < 0 || id >= c.vocab_size) {
        return InvalidArgument("logit_bias names token id " + std::to_string(id) + " outside the vocabulary");
      }
      if (!std::isfinite(bias)) return InvalidArgument("logit_bias values must be finite");
    }
    for (int32_t id : r.stop_ids) {
      if (id < 0 || id >= c.vocab_size) return InvalidArgument("a stop token id is outside the vocabulary");
    }
    if (r.embeds) {
      const PromptEmbeds& e = *r.embeds;
      HERD_RETURN_IF_ERROR(
          model::CheckEmbeddingOverride(e.at, e.rows.data(), e.cache_keys, static_cast<int64_t>(r.prompt.size()))
              .WithContext("the prompt's embeddings"));
      if (e.rows.size() != e.at.size() * static_cast<size_t>(c.hidden_size) || e.cache_keys.empty()) {
        return InvalidArgument("the prompt's embeddings hold " + std::to_string(e.rows.size()) + " values for " +
                               std::to_string(e.at.size()) + " positions of " + std::to_string(c.hidden_size) +
                               " (and need one cache key per prompt token)");
      }
    }
    const int64_t len = static_cast<int64_t>(r.prompt.size());
    if (r.grammar) {
      if (r.grammar->vocab().size() != c.vocab_size) {
        return InvalidArgument("the grammar was prepared for a vocabulary of " +
                               std::to_string(r.grammar->vocab().size()) + " tokens, the model has " +
                               std::to_string(c.vocab_size));
      }
      if (r.ignore_eos) return InvalidArgument("ignore_eos cannot be combined with a grammar");
      grammar::TokenMatcher start(r.grammar);
      const int64_t need = start.TokensToFinish();
      HERD_RETURN_IF_ERROR(start.status());
      const int64_t room = std::min(r.max_tokens, o_.n_ctx - len);
      if (need > room) {
        return InvalidArgument("the shortest output the response format allows takes " + std::to_string(need) +
                               " tokens, and only " + std::to_string(room) +
                               " may be generated (max_tokens or the context)");
      }
    }
    if (len + 1 > o_.n_ctx) {
      return OutOfRange("the prompt has " + std::to_string(len) +
                        " tokens; with one generated token it does not fit "
                        "the context of " +
                        std::to_string(o_.n_ctx) + " positions");
    }
    if (!cache_->Fits(len + 1)) {
      return OutOfRange("the prompt has " + std::to_string(len) + " tokens, more than the whole KV cache can hold");
    }
    auto req = std::make_unique<Request>();
    req->req = std::move(r);
    req->sink = std::move(sink);
    req->arrival_ms = NowMs();
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return Unavailable("the server is shutting down");
    if (static_cast<int64_t>(incoming_.size()) + waiting_count_ >= o_.max_queue) {
      return Unavailable("the request queue is full (" + std::to_string(o_.max_queue) + " waiting)");
    }
    req->id = next_id_++;
    const uint64_t id = req->id;
    incoming_.push_back(std::move(req));
    cv_.notify_all();
    return id;
  }

  void Cancel(uint64_t id) override {
    std::lock_guard<std::mutex> lock(mu_);
    cancels_.push_back(id);
    cv_.notify_all();
  }

  ServingStats stats() const override {
    std::lock_guard<std::mutex> lock(mu_);
    ServingStats s = stats_;
    s.waiting = waiting_count_ + static_cast<int64_t>(incoming_.size());
    return s;
  }

  void Shutdown(double drain_ms) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!stopping_) {
        stopping_ = true;
        deadline_ms_ = NowMs() + std::max(0.0, drain_ms);
      } else {
        deadline_ms_ = std::min(deadline_ms_, NowMs() + std::max(0.0, drain_ms));
      }
      cv_.notify_all();
    }
    std::lock_guard<std::mutex> join_lock(join_mu_);
    if (thread_.joinable()) thread_.join();
  }

  int64_t KvBytesPerToken() const override { return kv_per_token_; }

 private:
  // ---- engine thread ----
  void Loop() {
    for (;;) {
      std::vector<std::unique_ptr<Request>> arrived;
      std::vector<uint64_t> cancels;
      bool stop_now = false;
      {
        std::unique_lock<std::mutex> lock(mu_);
        for (;;) {
          const bool work = !incoming_.empty() || !cancels_.empty() || !running_.empty() || !waiting_.empty();
          if (work) break;
          if (stopping_) return;
          cv_.wait(lock);
        }
        while (!incoming_.empty()) {
          arrived.push_back(std::move(incoming_.front()));
          incoming_.pop_front();
        }
        cancels.swap(cancels_);
        stop_now = stopping_ && NowMs() >= deadline_ms_;
      }
      for (auto& r : arrived) Admit(std::move(r));
      for (uint64_t id : cancels) CancelRequest(id, /*notify=*/true);
      if (stop_now) {
        std::vector<uint64_t> all;
        for (const auto& [id, r] : requests_) all.push_back(id);
        for (uint64_t id : all) CancelRequest(id, true);
      }
      if (!running_.empty() || !waiting_.empty()) RunStep();
      PublishStats();
    }
  }

  void Admit(std::unique_ptr<Request> r) {
    Request* req = r.get();
    const model::ModelConfig& c = m_.model->config();
    for (int i = 0; i < req->req.n; ++i) {
      auto ch = std::make_unique<Choice>();
      ch->request = req;
      ch->index = i;
      ch->tokens = req->req.prompt;
      if (req->req.embeds) ch->keys = req->req.embeds->cache_keys;
      ch->n_prompt = static_cast<int64_t>(req->req.prompt.size());
      SamplingParams sp = req->req.sampling;
      sp.seed += static_cast<uint64_t>(i);
      ch->sampler = std::make_unique<Sampler>(sp, c.vocab_size);
      if (req->req.grammar) ch->matcher.emplace(req->req.grammar);
      ch->text = std::make_unique<TextStream>(m_.tokenizer.get(), req->req.prompt, req->req.stop_strings);
      ch->logits.resize(static_cast<size_t>(c.vocab_size));
      ch->awaiting_fork = i > 0;
      if (i == 0) waiting_.push_back(ch.get());
      req->choices.push_back(std::move(ch));
    }
    req->open = req->req.n;
    requests_.emplace(req->id, std::move(r));
  }

  // Ends every open choice of a request: frees its pages; notify sends each a finished kCancelled event.
  void CancelRequest(uint64_t id, bool notify) {
    auto it = requests_.find(id);
    if (it == requests_.end()) return;
    Request* r = it->second.get();
    for (auto& ch : r->choices) {
      if (ch->finished) continue;
      if (notify) {
        ServingEvent e;
        e.finished = true;
        e.finish_reason = FinishReason::kCancelled;
        Emit(*ch, std::move(e));
      }
      EndChoice(*ch);
    }
    r->dead = true;
    ++stats_local_.requests_cancelled;
    requests_.erase(it);
  }

  void EndChoice(Choice& ch) {
    if (ch.finished) return;
    ch.finished = true;
    cache_->Release(ch.seq);
    running_.erase(std::remove(running_.begin(), running_.end(), &ch), running_.end());
    waiting_.erase(std::remove(waiting_.begin(), waiting_.end(), &ch), waiting_.end());
    --ch.request->open;
  }

  void FillUsage(const Choice& ch, ServingEvent* e) const {
    e->prompt_tokens = ch.n_prompt;
    e->cached_tokens = ch.request->cached_tokens;
    e->completion_tokens = ch.n_generated;
  }

  // Sends e, for choice ch (finishing events with the usage), unless the request's sink has stopped listening. When
  // the sink says stop, the request is dead: every choice of it ends at once, its pages freed, and it is counted
  // as cancelled when it is reaped.
  void Emit(Choice& ch, ServingEvent e) {
    Request& r = *ch.request;
    if (r.dead) return;
    e.choice = ch.index;
    if (e.finished) FillUsage(ch, &e);
    if (r.sink(e)) return;
    r.dead = true;
    for (auto& other : r.choices) EndChoice(*other);
  }

  // Frees a running choice's pages and puts it back at the head of the queue; it recomputes its tokens later.
  void Preempt(Choice& ch) {
    cache_->Release(ch.seq);
    running_.erase(std::remove(running_.begin(), running_.end(), &ch), running_.end());
    waiting_.push_front(&ch);
    ++stats_local_.preemptions;
  }

  // Tokens of `ch` to run in this step (at most `budget`), pages reserved; 0 when none could be had.
  int64_t Plan(Choice& ch, int64_t budget) {
    const int64_t pending = static_cast<int64_t>(ch.tokens.size()) - ch.seq.n_past();
    int64_t k = std::min({pending, budget, cache_->TokensToChunkEnd(ch.seq.n_past())});
    if (k <= 0) return 0;
    if (!cache_->Reserve(ch.seq, ch.seq.n_past() + k).ok()) return 0;
    return k;
  }

  struct Planned {
    Choice* ch;
    int64_t k;
  };

  void RunStep() {
    int64_t budget = o_.step_tokens;
    planned_.clear();
    // 1. Running choices, oldest first (decode tokens, and prefill chunks of those admitted earlier). When pages
    //    run out, the newest running choices (not yet planned) are preempted; a choice that is itself the newest
    //    waits at the head of the queue.
    for (size_t i = 0; i < running_.size() && budget > 0;) {
      Choice* ch = running_[i];
      int64_t k = Plan(*ch, budget);
      while (k == 0 && running_.back() != ch) {
        Preempt(*running_.back());
        k = Plan(*ch, budget);
      }
      if (k == 0) {
        Preempt(*ch);
        continue;
      }
      planned_.push_back({ch, k});
      budget -= k;
      ++i;
    }
    // 2. Waiting choices in arrival order while sequences, budget and pages allow (no overtaking).
    while (!waiting_.empty() && budget > 0 && static_cast<int64_t>(running_.size()) < o_.parallel) {
      Choice* ch = waiting_.front();
      if (ch->seq.n_past() == 0) {
        const int64_t hit = cache_->AttachPrefix(ch->seq, ch->keys.empty() ? ch->tokens : ch->keys);
        stats_local_.prefix_cache_queries += static_cast<int64_t>(ch->tokens.size());
        stats_local_.prefix_cache_hits += hit;
        if (ch->index == 0 && ch->n_generated == 0) ch->request->cached_tokens = hit;
      }
      const int64_t k = Plan(*ch, budget);
      if (k == 0) {  // pages short: wait for running sequences to finish (holding nothing meanwhile)
        cache_->Release(ch->seq);
        break;
      }
      waiting_.pop_front();
      ch->admitted_order = admissions_++;
      running_.push_back(ch);
      planned_.push_back({ch, k});
      budget -= k;
    }
    if (planned_.empty()) {
      // Nothing could run although nothing else holds pages: the sequence at the head of the queue has outgrown
      // the whole pool. It ends with "length" (Submit refused prompts that could never fit).
      if (running_.empty() && !waiting_.empty()) FinishChoice(*waiting_.front(), FinishReason::kLength);
      return;
    }
    inputs_.clear();
    if (embed_at_.size() < planned_.size()) embed_at_.resize(planned_.size());
    for (size_t i = 0; i < planned_.size(); ++i) {
      const Planned& p = planned_[i];
      model::StepInput in;
      in.seq = &p.ch->seq;
      const int64_t from = p.ch->seq.n_past();
      in.tokens = std::span<const int32_t>(p.ch->tokens.data() + from, static_cast<size_t>(p.k));
      if (const PromptEmbeds* e = p.ch->request->req.embeds.get()) {  // this chunk's share of the replaced rows
        const model::EmbeddingOverride whole{e->at, e->rows.data(), p.ch->keys};
        model::SetOverrideChunk(whole, m_.model->config().hidden_size, from, p.k, &embed_at_[i], &in);
      }
      const bool last = from + p.k == static_cast<int64_t>(p.ch->tokens.size());
      in.mode = last ? model::LogitsMode::kLast : model::LogitsMode::kNone;
      in.logits = p.ch->logits.data();
      inputs_.push_back(in);
    }
    const Status s = m_.model->Step(*cache_, inputs_, *ws_, *pool_);
    ++stats_local_.steps;
    if (!s.ok()) {
      for (const Planned& p : planned_) FailChoice(*p.ch, s);
      return;
    }
    for (const Planned& p : planned_) {
      if (p.ch->n_generated == 0) stats_local_.prompt_tokens += p.k;
      p.ch->logits_ready = p.ch->seq.n_past() == static_cast<int64_t>(p.ch->tokens.size());
    }
    for (const Planned& p : planned_) {
      Choice& ch = *p.ch;
      if (ch.finished || !ch.logits_ready) continue;
      if (ch.n_generated == 0 && ch.index == 0 && ch.request->req.n > 1) ForkChoices(ch);
      SampleNext(ch);
    }
    // Forked choices sample their first token from the logits they copied.
    for (auto& [id, r] : requests_) {
      (void)id;
      for (auto& ch : r->choices) {
        if (!ch->finished && ch->logits_ready && ch->index > 0 && ch->n_generated == 0) SampleNext(*ch);
      }
    }
    // Requests whose choices are all finished are done.
    for (auto it = requests_.begin(); it != requests_.end();) {
      if (it->second->open == 0) {
        ++(it->second->dead ? stats_local_.requests_cancelled : stats_local_.requests_finished);
        it = requests_.erase(it);
      } else {
        ++it;
      }
    }
  }

  // n > 1: choices 1.. share choice 0's prompt pages (full pages shared, the partial last one copied) and its
  // logits; when no page is free for the copy they queue and recompute the prompt (the prefix cache helps).
  void ForkChoices(Choice& first) {
    Request& r = *first.request;
    for (auto& ch : r.choices) {
      if (!ch->awaiting_fork) continue;
      ch->awaiting_fork = false;
      if (cache_->Fork(first.seq, ch->seq).ok()) {
        // It samples its first token after this step either way; beyond --parallel it then waits at the head
        // of the queue, holding its pages.
        ch->logits = first.logits;
        ch->logits_ready = true;
        if (static_cast<int64_t>(running_.size()) < o_.parallel) {
          running_.push_back(ch.get());
        } else {
          waiting_.push_front(ch.get());
        }
      } else {
        waiting_.push_back(ch.get());
      }
    }
  }

  void FailChoice(Choice& ch, const Status& s) {
    Request& r = *ch.request;
    for (auto& other : r.choices) {  // choices waiting for this one's prompt fail with it
      if (other->awaiting_fork && other.get() != &ch) {
        other->awaiting_fork = false;
        FailChoice(*other, s);
      }
    }
    if (ch.finished) return;
    ServingEvent e;
    e.finished = true;
    e.finish_reason = FinishReason::kError;
    e.error = s;
    Emit(ch, std::move(e));
    ++stats_local_.requests_failed;
    EndChoice(ch);
  }

  // Ends a choice with `reason`; its last event carries e's text, tokens and logprobs, and what the text stream
  // still holds (except after a stop string: the text held back then is the stop string's start, dropped).
  void FinishChoice(Choice& ch, FinishReason reason, ServingEvent e = {}) {
    if (reason != FinishReason::kStop || e.text.empty()) e.text += ch.text->Finish();
    e.finished = true;
    e.finish_reason = reason;
    Emit(ch, std::move(e));
    EndChoice(ch);
  }

  void SampleNext(Choice& ch) {
    ch.logits_ready = false;
    Request& r = *ch.request;
    const ServingRequest& q = r.req;
    float* logits = ch.logits.data();
    for (const auto& [id, bias] : q.logit_bias) logits[id] += bias;
    TokenLogprob lp;
    if (q.top_logprobs >= 0) lp = Logprobs(logits, q.top_logprobs);
    const float lse = lp.logprob;
    if (q.frequency_penalty != 0.0f || q.presence_penalty != 0.0f) {
      for (const auto& [tok, n] : ch.counts) {
        logits[tok] -= q.frequency_penalty * static_cast<float>(n) + q.presence_penalty;
      }
    }
    if (ch.matcher) {
      // Tokens that may still come: max_tokens' and the context's (the finishing checks below).
      const int64_t remaining =
          std::min(q.max_tokens - ch.n_generated, o_.n_ctx - static_cast<int64_t>(ch.tokens.size()));
      ch.matcher->FillMask(remaining, &ch.mask);
    }
    const int32_t id = ch.sampler->Sample(logits, ch.tokens, ch.matcher ? &ch.mask : nullptr);
    if (id < 0 || (ch.matcher && !ch.matcher->Accept(id))) {
      Status why = ch.matcher ? ch.matcher->status() : Status::Ok();
      if (why.ok()) {
        why = Internal("the grammar allows no token after " + std::to_string(ch.n_generated) + " generated tokens");
      }
      FailChoice(ch, std::move(why));
      return;
    }
    if (q.top_logprobs >= 0) {  // the model's log-probability of what was sampled (penalties undone)
      auto seen = ch.counts.find(id);
      const float penalty =
          seen == ch.counts.end() ? 0.0f : q.frequency_penalty * static_cast<float>(seen->second) + q.presence_penalty;
      lp.id = id;
      lp.logprob = logits[id] + penalty - lse;
    }
    const double now = NowMs();
    if (!r.first_token_seen) {
      r.first_token_seen = true;
      Observe(stats_local_.ttft, (now - r.arrival_ms) / 1000.0);
    } else if (ch.n_generated > 0) {
      Observe(stats_local_.itl, (now - ch.last_token_ms) / 1000.0);
    }
    ch.last_token_ms = now;
    const bool eos = !q.ignore_eos &&
                     (m_.IsStopToken(id) || std::find(q.stop_ids.begin(), q.stop_ids.end(), id) != q.stop_ids.end());
    if (eos) {
      FinishChoice(ch, FinishReason::kStop);
      return;
    }
    ++ch.n_generated;
    ++stats_local_.generated_tokens;
    ++ch.counts[id];
    ch.tokens.push_back(id);
    if (!ch.keys.empty()) ch.keys.push_back(id);
    bool stopped = false;
    ServingEvent e;
    e.text = ch.text->Push(id, &stopped);
    if (stopped) {
      FinishChoice(ch, FinishReason::kStop, std::move(e));
      return;
    }
    e.tokens = {id};
    if (q.top_logprobs >= 0) e.logprobs.push_back(std::move(lp));
    if (ch.matcher && ch.matcher->IsComplete()) {
      e.text += ch.text->Finish();  // nothing was cut: what the stream holds back for stop strings is output
      FinishChoice(ch, FinishReason::kStop, std::move(e));
      return;
    }
    if (ch.n_generated >= q.max_tokens || static_cast<int64_t>(ch.tokens.size()) >= o_.n_ctx) {
      FinishChoice(ch, FinishReason::kLength, std::move(e));  // the last token's text rides on the finishing event
      return;
    }
    Emit(ch, std::move(e));
  }

  TokenLogprob Logprobs(const float* logits, int top) {
    const int64_t vocab = m_.model->config().vocab_size;
    float mx = -HUGE_VALF;
    for (int64_t i = 0; i < vocab; ++i) mx = std::max(mx, logits[i]);
    double sum = 0;
    for (int64_t i = 0; i < vocab; ++i) sum += std::exp(static_cast<double>(logits[i] - mx));
    const float lse = mx + static_cast<float>(std::log(sum));
    TokenLogprob lp;
    lp.logprob = lse;  // the normalizer until the caller knows the sampled token
    if (top > 0) {
      // The `top` best (highest logit, lowest id on ties) in a heap whose front is the worst of them.
      const auto better = [](const std::pair<float, int32_t>& a, const std::pair<float, int32_t>& b) {
        return a.first > b.first || (a.first == b.first && a.second < b.second);
      };
      std::vector<std::pair<float, int32_t>>& best = top_scratch_;
      best.clear();
      for (int64_t i = 0; i < vocab; ++i) {
        const std::pair<float, int32_t> c(logits[i], static_cast<int32_t>(i));
        if (static_cast<int>(best.size()) < top) {
          best.push_back(c);
          std::push_heap(best.begin(), best.end(), better);
        } else if (better(c, best.front())) {
          std::pop_heap(best.begin(), best.end(), better);
          best.back() = c;
          std::push_heap(best.begin(), best.end(), better);
        }
      }
      std::sort_heap(best.begin(), best.end(), better);
      for (const auto& [v, id] : best) lp.top.emplace_back(id, v - lse);
    }
    return lp;
  }

  void PublishStats() {
    std::lock_guard<std::mutex> lock(mu_);
    ServingStats& s = stats_;
    s.running = static_cast<int64_t>(running_.size());
    waiting_count_ = static_cast<int64_t>(waiting_.size());
    s.kv_pages_used = cache_->used_pages();
    s.prefix_cache_queries = stats_local_.prefix_cache_queries;
    s.prefix_cache_hits = stats_local_.prefix_cache_hits;
    s.requests_finished = stats_local_.requests_finished;
    s.requests_cancelled = stats_local_.requests_cancelled;
    s.requests_failed = stats_local_.requests_failed;
    s.preemptions = stats_local_.preemptions;
    s.prompt_tokens = stats_local_.prompt_tokens;
    s.generated_tokens = stats_local_.generated_tokens;
    s.steps = stats_local_.steps;
    s.ttft = stats_local_.ttft;
    s.itl = stats_local_.itl;
  }

  const LoadedModel& m_;
  ServingOptions o_;
  int64_t kv_per_token_ = 0;
  std::unique_ptr<model::KvCache> cache_;
  std::unique_ptr<model::Workspace> ws_;
  std::unique_ptr<ThreadPool> pool_;
  std::thread thread_;
  std::mutex join_mu_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<Request>> incoming_;  // guarded by mu_
  std::vector<uint64_t> cancels_;                  // guarded by mu_
  bool stopping_ = false;                          // guarded by mu_
  double deadline_ms_ = 0;                         // guarded by mu_
  uint64_t next_id_ = 1;                           // guarded by mu_
  int64_t waiting_count_ = 0;                      // guarded by mu_
  ServingStats stats_;                             // guarded by mu_

  // Engine thread only.
  std::unordered_map<uint64_t, std::unique_ptr<Request>> requests_;
  std::vector<Choice*> running_;
  std::deque<Choice*> waiting_;
  std::vector<Planned> planned_;
  std::vector<std::pair<float, int32_t>> top_scratch_;  // Logprobs' heap
  std::vector<model::StepInput> inputs_;
  std::vector<std::vector<int32_t>> embed_at_;  // per planned input: its embed positions within the chunk
  int64_t admissions_ = 0;
  ServingStats stats_local_;
};

}  // namespace

Result<std::unique_ptr<ServingEngine>> ServingEngine::Create(const LoadedModel& model, const ServingOptions& options) {
  auto e = std::make_unique<Engine>(model, options);
  HERD_RETURN_IF_ERROR(e->Init());
  return std::unique_ptr<ServingEngine>(std::move(e));
}

}  // namespace herd::runtime
