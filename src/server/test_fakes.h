// Test doubles for the server's unit tests: a byte-level tokenizer with Llama 4's chat tokens, and a scripted
// runtime::ServingEngine whose own "engine thread" plays each request's events one per tick, honouring Cancel
// and a sink that returns false as the interface says (server/api.h, runtime/serving.h).
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "runtime/serving.h"
#include "tokenizer/tokenizer.h"

namespace herd::server::testing {

// Ids 0-255 are bytes; then BOS, EOS and Llama 4's header and end-of-turn tokens.
class FakeTokenizer : public tokenizer::Tokenizer {
 public:
  static constexpr int32_t kBos = 256, kEos = 257, kHeaderStart = 258, kHeaderEnd = 259, kEot = 260, kEom = 261;
  static constexpr int32_t kVocab = 262;

  std::vector<int32_t> Encode(std::string_view text, bool add_bos, bool parse_special) const override {
    std::vector<int32_t> ids;
    if (add_bos) ids.push_back(kBos);
    for (size_t i = 0; i < text.size();) {
      if (parse_special) {
        bool matched = false;
        for (int32_t id = kBos; id < kVocab; ++id) {
          const std::string s = Special(id);
          if (text.substr(i, s.size()) == s) {
            ids.push_back(id);
            i += s.size();
            matched = true;
            break;
          }
        }
        if (matched) continue;
      }
      ids.push_back(static_cast<unsigned char>(text[i++]));
    }
    return ids;
  }
  std::string TokenBytes(int32_t id) const override {
    return id < 256 ? std::string(1, static_cast<char>(id)) : Special(id);
  }
  std::string TokenPiece(int32_t id) const override { return TokenBytes(id); }
  std::string Decode(std::span<const int32_t> ids, bool skip_special) const override {
    std::string out;
    for (int32_t id : ids) {
      if (skip_special && id >= 256) continue;
      out += TokenBytes(id);
    }
    return out;
  }
  int32_t vocab_size() const override { return kVocab; }
  std::optional<int32_t> bos_id() const override { return kBos; }
  std::optional<int32_t> eos_id() const override { return kEos; }
  std::vector<int32_t> stop_ids() const override { return {kEos, kEom, kEot}; }
  std::optional<int32_t> TokenId(std::string_view piece) const override {
    for (int32_t id = kBos; id < kVocab; ++id) {
      if (Special(id) == piece) return id;
    }
    if (piece.size() == 1) return static_cast<unsigned char>(piece[0]);
    return std::nullopt;
  }
  bool IsSpecial(int32_t id) const override { return id >= 256; }
  std::string_view kind() const override { return "fake"; }

 private:
  static std::string Special(int32_t id) {
    switch (id) {
      case kBos:
        return "<|begin_of_text|>";
      case kEos:
        return "<|end_of_text|>";
      case kHeaderStart:
        return "<|header_start|>";
      case kHeaderEnd:
        return "<|header_end|>";
      case kEot:
        return "<|eot|>";
      case kEom:
        return "<|eom|>";
      default:
        return "";
    }
  }
};

// The events a request produces, in order (the default: DefaultScript).
using Script = std::function<std::vector<runtime::ServingEvent>(const runtime::ServingRequest&)>;

// Choice c generates max_tokens tokens 'a' + c (choices interleaved), each with logprob -0.25 and alternatives
// 'a' + c + k at -0.25 - k when logprobs are asked for; the last event finishes with "length", 2 cached tokens.
inline std::vector<runtime::ServingEvent> DefaultScript(const runtime::ServingRequest& r) {
  std::vector<runtime::ServingEvent> events;
  for (int64_t t = 0; t < r.max_tokens; ++t) {
    for (int c = 0; c < r.n; ++c) {
      runtime::ServingEvent e;
      e.choice = c;
      const int32_t id = 'a' + c;
      e.text = std::string(1, static_cast<char>(id));
      e.tokens = {id};
      if (r.top_logprobs >= 0) {
        runtime::TokenLogprob lp{id, -0.25f, {}};
        for (int k = 0; k < r.top_logprobs; ++k) lp.top.emplace_back(id + k, -0.25f - static_cast<float>(k));
        e.logprobs = {lp};
      }
      if (t + 1 == r.max_tokens) {
        e.finished = true;
        e.finish_reason = runtime::FinishReason::kLength;
        e.prompt_tokens = static_cast<int64_t>(r.prompt.size());
        e.cached_tokens = 2;
        e.completion_tokens = r.max_tokens;
      }
      events.push_back(std::move(e));
    }
  }
  return events;
}

class FakeEngine : public runtime::ServingEngine {
 public:
  explicit FakeEngine(std::chrono::milliseconds tick = std::chrono::milliseconds(1)) : tick_(tick) {
    thread_ = std::thread([this] { Run(); });
  }
  ~FakeEngine() override { Shutdown(0); }

  Result<uint64_t> Submit(runtime::ServingRequest request, runtime::ServingSink sink) override {
    std::lock_guard lock(mu_);
    if (!submit_status_.ok()) return submit_status_;
    const uint64_t id = ++next_id_;
    Job job;
    job.id = id;
    job.events = script_(request);
    job.open.assign(static_cast<size_t>(request.n), true);
    job.sink = std::move(sink);
    submitted_.push_back(std::move(request));
    jobs_.push_back(std::move(job));
    cv_.notify_all();
    return id;
  }

  void Cancel(uint64_t id) override {
    std::lock_guard lock(mu_);
    cancelled_.insert(id);
    cv_.notify_all();
  }

  runtime::ServingStats stats() const override {
    std::lock_guard lock(mu_);
    runtime::ServingStats s;
    s.running = static_cast<int64_t>(jobs_.size());
    s.kv_pages_total = 100;
    s.kv_pages_used = 7;
    s.kv_page_tokens = 16;
    s.prefix_cache_queries = 40;
    s.prefix_cache_hits = 10;
    s.ttft = {{0.1, 1.0}, {3, 5, 5}, 1.5, 5};
    s.itl = {{0.01}, {9, 9}, 0.05, 9};
    return s;
  }

  void Shutdown(double) override {
    {
      std::lock_guard lock(mu_);
      if (stop_) return;
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  int64_t KvBytesPerToken() const override { return 64; }

  // Test controls.
  void SetScript(Script s) {
    std::lock_guard lock(mu_);
    script_ = std::move(s);
  }
  void SetSubmitStatus(Status s) {
    std::lock_guard lock(mu_);
    submit_status_ = std::move(s);
  }
  std::vector<runtime::ServingRequest> submitted() const {
    std::lock_guard lock(mu_);
    return submitted_;
  }
  std::set<uint64_t> cancelled() const {
    std::lock_guard lock(mu_);
    return cancelled_;
  }
  // Waits up to `timeout` until request `id` was cancelled.
  bool WaitCancelled(uint64_t id, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      if (cancelled().count(id)) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return false;
  }
  // Requests whose events are still being played.
  size_t active() const {
    std::lock_guard lock(mu_);
    return jobs_.size();
  }

 private:
  struct Job {
    uint64_t id = 0;
    std::vector<runtime::ServingEvent> events;
    size_t next = 0;
    std::vector<bool> open;  // choices not yet finished
    runtime::ServingSink sink;
  };

  // The "engine thread": one event of every job per tick; cancelled jobs get a kCancelled event per open choice.
  // A sink that returns false cancels its request: it gets nothing more.
  void Run() {
    std::unique_lock lock(mu_);
    for (;;) {
      cv_.wait_for(lock, tick_, [&] { return stop_; });
      if (stop_) return;
      struct Delivery {
        uint64_t id;
        runtime::ServingSink sink;
        std::vector<runtime::ServingEvent> events;
      };
      std::vector<Delivery> deliveries;
      std::set<uint64_t> done;
      for (Job& job : jobs_) {
        Delivery d{job.id, job.sink, {}};
        if (cancelled_.count(job.id)) {
          for (size_t c = 0; c < job.open.size(); ++c) {
            if (!job.open[c]) continue;
            runtime::ServingEvent e;
            e.choice = static_cast<int>(c);
            e.finished = true;
            e.finish_reason = runtime::FinishReason::kCancelled;
            d.events.push_back(e);
          }
          done.insert(job.id);
        } else if (job.next < job.events.size()) {
          d.events.push_back(job.events[job.next++]);
          if (d.events.back().finished) job.open[static_cast<size_t>(d.events.back().choice)] = false;
          if (job.next == job.events.size()) done.insert(job.id);
        } else {
          done.insert(job.id);
        }
        deliveries.push_back(std::move(d));
      }
      lock.unlock();
      for (Delivery& d : deliveries) {
        for (const runtime::ServingEvent& e : d.events) {
          if (!d.sink(e)) {
            done.insert(d.id);
            break;
          }
        }
      }
      lock.lock();
      jobs_.erase(std::remove_if(jobs_.begin(), jobs_.end(), [&](const Job& j) { return done.count(j.id) > 0; }),
                  jobs_.end());
    }
  }

  const std::chrono::milliseconds tick_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::thread thread_;
  bool stop_ = false;
  uint64_t next_id_ = 0;
  Script script_ = DefaultScript;
  Status submit_status_;
  std::vector<Job> jobs_;
  std::vector<runtime::ServingRequest> submitted_;
  std::set<uint64_t> cancelled_;
};

}  // namespace herd::server::testing
