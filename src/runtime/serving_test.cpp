// The serving engine on stories260K: many requests at once give each the tokens of its run alone (greedy and
// seeded), through chunked prefill, preemption and the prefix cache; stop strings, lengths, cancellation, n > 1,
// logprobs, the bounded queue and requests that can never fit; and no page outlives its request.
#include "runtime/serving.h"

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "test_util.h"

namespace herd::runtime {
namespace {

std::unique_ptr<LoadedModel> Stories() {
  LoadOptions o;
  o.model_path = testing::SharedPath("models/stories260K/stories260K.bin");
  o.show_progress = false;
  auto m = LoadModel(o);
  EXPECT_TRUE(m.ok()) << m.status().ToString();
  return m.ok() ? std::move(m).value() : nullptr;
}

// Collects the events of many requests; Wait blocks until every choice of every submitted request finished.
class Collector {
 public:
  struct Choice {
    std::vector<int32_t> tokens;
    std::string text;
    std::vector<TokenLogprob> logprobs;
    bool finished = false;
    FinishReason reason = FinishReason::kStop;
    int64_t prompt_tokens = 0, cached_tokens = 0, completion_tokens = 0;
    int events_after_finish = 0;
  };
  ServingSink Sink(int key, int n, int cancel_after = -1) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      choices_[key].resize(static_cast<size_t>(n));
      open_ += n;
    }
    return [this, key, cancel_after](const ServingEvent& e) {
      std::lock_guard<std::mutex> lock(mu_);
      Choice& c = choices_[key][e.choice];
      if (c.finished) ++c.events_after_finish;
      c.tokens.insert(c.tokens.end(), e.tokens.begin(), e.tokens.end());
      c.text += e.text;
      c.logprobs.insert(c.logprobs.end(), e.logprobs.begin(), e.logprobs.end());
      if (e.finished) {
        c.finished = true;
        c.reason = e.finish_reason;
        c.prompt_tokens = e.prompt_tokens;
        c.cached_tokens = e.cached_tokens;
        c.completion_tokens = e.completion_tokens;
        --open_;
        cv_.notify_all();
      }
      if (cancel_after >= 0 && static_cast<int>(c.tokens.size()) >= cancel_after && !c.finished) {
        c.finished = true;  // the client went away: no more events may arrive
        c.reason = FinishReason::kCancelled;
        --open_;
        cv_.notify_all();
        return false;
      }
      return true;
    };
  }
  bool Wait(double seconds = 120) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, std::chrono::duration<double>(seconds), [&] { return open_ == 0; });
  }
  void Forget(int key, int n) {  // a request Submit refused: its sink will never be called
    std::lock_guard<std::mutex> lock(mu_);
    open_ -= n;
    choices_.erase(key);
  }
  Choice Get(int key, int i = 0) {
    std::lock_guard<std::mutex> lock(mu_);
    return choices_[key][i];
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<int, std::vector<Choice>> choices_;
  int open_ = 0;
};

// Stats once the engine thread has published its last step (events reach sinks before the stats are updated).
ServingStats Settled(ServingEngine& e) {
  ServingStats s = e.stats();
  for (int i = 0; i < 500 && (s.running > 0 || s.waiting > 0 || s.kv_pages_used > 0); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    s = e.stats();
  }
  return s;
}

// The text `herd run` generates for `prompt` (one sequence, its own state).
std::string TextAlone(const LoadedModel& m, const std::vector<int32_t>& prompt, int64_t n) {
  auto state = m.model->NewState(256, 64);
  EXPECT_TRUE(state.ok());
  ThreadPool pool(2);
  GenerateOptions o;
  o.n_predict = n;
  o.sampling = SamplingParams::Greedy();
  auto r = Generate(m, **state, pool, prompt, o, {});
  EXPECT_TRUE(r.ok());
  return r->text;
}

// The tokens `herd run` generates for `prompt` (one sequence, its own state).
std::vector<int32_t> RunAlone(const LoadedModel& m, const std::vector<int32_t>& prompt, int64_t n,
                              const SamplingParams& sp) {
  auto state = m.model->NewState(256, 64);
  EXPECT_TRUE(state.ok());
  ThreadPool pool(2);
  GenerateOptions o;
  o.n_predict = n;
  o.sampling = sp;
  auto r = Generate(m, **state, pool, prompt, o, {});
  EXPECT_TRUE(r.ok());
  return r->tokens;
}

std::vector<int32_t> Prompt(const LoadedModel& m, const std::string& text) {
  return m.tokenizer->Encode(text, true, false);
}

ServingOptions Options(int parallel, int64_t kv_bytes = 0) {
  ServingOptions o;
  o.parallel = parallel;
  o.n_ctx = 256;
  o.kv_type = "f32";
  o.kv_bytes = kv_bytes;
  o.step_tokens = 64;
  o.threads = 2;
  return o;
}

const char* kStarts[] = {"Once upon a time",   "The little dog", "Lily and Ben", "One day, a cat",
                         "Tom had a red ball", "The sun was",    "A big fish",   "She was happy"};

TEST(ServingEngineTest, ConcurrentGreedyRequestsEqualTheirRunsAlone) {
  auto m = Stories();
  ASSERT_NE(m, nullptr);
  auto engine = ServingEngine::Create(*m, Options(16));
  ASSERT_TRUE(engine.ok()) << engine.status().ToString();
  Collector col;
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < 16; ++i) {
    prompts.push_back(Prompt(*m, std::string(kStarts[i % 8]) + (i >= 8 ? " there was" : "")));
    ServingRequest r;
    r.prompt = prompts.back();
    r.max_tokens = 24 + i;
    r.sampling = SamplingParams::Greedy();
    ASSERT_TRUE((*engine)->Submit(r, col.Sink(i, 1)).ok());
  }
  ASSERT_TRUE(col.Wait());
  for (int i = 0; i < 16; ++i) {
    const auto c = col.Get(i);
    const auto want = RunAlone(*m, prompts[i], 24 + i, SamplingParams::Greedy());
    EXPECT_EQ(c.tokens, want) << "request " << i;
    EXPECT_EQ(c.completion_tokens, static_cast<int64_t>(c.tokens.size()));
    EXPECT_EQ(c.prompt_tokens, static_cast<int64_t>(prompts[i].size()));
    EXPECT_EQ(c.events_after_finish, 0);
    EXPECT_EQ(c.text, TextAlone(*m, prompts[i], 24 + i));
  }
  const ServingStats s = Settled(**engine);
  EXPECT_EQ(s.kv_pages_used, 0) << "pages outlived their requests";
  EXPECT_EQ(s.requests_finished, 16);
  EXPECT_GT(s.ttft.count, 0);
  EXPECT_GT(s.itl.count, 0);
}

TEST(ServingEngineTest, SeededSamplingAndChoicesAreReproducible) {
  auto m = Stories();
  ASSERT_NE(m, nullptr);
  auto engine = ServingEngine::Create(*m, Options(4));
  ASSERT_TRUE(engine.ok());
  SamplingParams sp;
  sp.temperature = 1.0f;
  sp.top_k = 0;
  sp.top_p = 1.0f;
  sp.min_p = 0.0f;
  sp.seed = 42;
  const auto prompt = Prompt(*m, "Once upon a time");
  Collector col;
  for (int k = 0; k < 2; ++k) {
    ServingRequest r;
    r.prompt = prompt;
    r.max_tokens = 30;
    r.sampling = sp;
    r.n = 3;
    r.top_logprobs = 2;
    ASSERT_TRUE((*engine)->Submit(r, col.Sink(k, 3)).ok());
  }
  ASSERT_TRUE(col.Wait());
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(col.Get(0, i).reason, FinishReason::kLength) << FinishReasonName(col.Get(0, i).reason);
    EXPECT_EQ(col.Get(0, i).tokens, col.Get(1, i).tokens) << "choice " << i;
    SamplingParams own = sp;
    own.seed = sp.seed + static_cast<uint64_t>(i);
    EXPECT_EQ(col.Get(0, i).tokens, RunAlone(*m, prompt, 30, own)) << "choice " << i;
    const auto c = col.Get(0, i);
    ASSERT_EQ(c.logprobs.size(), c.tokens.size());
    for (size_t t = 0; t < c.tokens.size(); ++t) {
      EXPECT_EQ(c.logprobs[t].id, c.tokens[t]);
      EXPECT_LE(c.logprobs[t].logprob, 0.0f);
      ASSERT_EQ(c.logprobs[t].top.size(), 2u);
      EXPECT_GE(c.logprobs[t].top[0].second, c.logprobs[t].top[1].second);
      EXPECT_GE(c.logprobs[t].top[0].second, c.logprobs[t].logprob);
    }
  }
  EXPECT_NE(col.Get(0, 0).tokens, col.Get(0, 1).tokens);
  EXPECT_EQ(Settled(**engine).kv_pages_used, 0);
}

TEST(ServingEngineTest, StopsLengthsAndThePrefixCache) {
  auto m = Stories();
  ASSERT_NE(m, nullptr);
  auto engine = ServingEngine::Create(*m, Options(4));
  ASSERT_TRUE(engine.ok());
  const auto prompt = Prompt(*m, "Once upon a time, there was a little girl named Lily. She loved to play outside");
  const auto alone = RunAlone(*m, prompt, 40, SamplingParams::Greedy());
  const std::string text = TextAlone(*m, prompt, 40);
  Collector col;
  ServingRequest r;
  r.prompt = prompt;
  r.max_tokens = 40;
  r.sampling = SamplingParams::Greedy();
  ASSERT_TRUE((*engine)->Submit(r, col.Sink(0, 1)).ok());
  ASSERT_TRUE(col.Wait());
  EXPECT_EQ(col.Get(0).reason, FinishReason::kLength);
  EXPECT_EQ(col.Get(0).cached_tokens, 0);
  // The same prompt again: its full pages come from the prefix cache, and the tokens are the same.
  ASSERT_TRUE((*engine)->Submit(r, col.Sink(1, 1)).ok());
  ASSERT_TRUE(col.Wait());
  EXPECT_EQ(col.Get(1).tokens, alone);
  EXPECT_GT(col.Get(1).cached_tokens, 0);
  EXPECT_LT(col.Get(1).cached_tokens, static_cast<int64_t>(prompt.size()));
  // A stop string cuts the text before it.
  const std::string stop = text.substr(text.size() / 2, 5);
  r.stop_strings = {stop};
  ASSERT_TRUE((*engine)->Submit(r, col.Sink(2, 1)).ok());
  ASSERT_TRUE(col.Wait());
  EXPECT_EQ(col.Get(2).reason, FinishReason::kStop);
  EXPECT_EQ(col.Get(2).text, text.substr(0, text.find(stop)));
  EXPECT_GT((*engine)->stats().prefix_cache_hits, 0);
}

TEST(ServingEngineTest, RefusalsAndCancellation) {
  auto m = Stories();
  ASSERT_NE(m, nullptr);
  ServingOptions o = Options(2);
  o.max_queue = 3;
  auto engine = ServingEngine::Create(*m, o);
  ASSERT_TRUE(engine.ok());
  Collector col;
  ServingRequest r;
  r.prompt = std::vector<int32_t>(300, 5);  // longer than n_ctx 256
  auto too_long = (*engine)->Submit(r, col.Sink(0, 1));
  col.Forget(0, 1);
  ASSERT_FALSE(too_long.ok());
  EXPECT_EQ(too_long.status().code(), StatusCode::kOutOfRange);
  r.prompt = {1, 999999};
  EXPECT_EQ((*engine)->Submit(r, col.Sink(1, 1)).status().code(), StatusCode::kInvalidArgument);
  col.Forget(1, 1);
  r.prompt = Prompt(*m, "Once upon a time");
  r.sampling.temperature = -1;
  EXPECT_EQ((*engine)->Submit(r, col.Sink(2, 1)).status().code(), StatusCode::kInvalidArgument);
  col.Forget(2, 1);
  r.sampling = SamplingParams::Greedy();
  r.max_tokens = 200;
  // A client that goes away after 5 tokens, and one cancelled by id; then the queue bound.
  ASSERT_TRUE((*engine)->Submit(r, col.Sink(3, 1, 5)).ok());
  auto id = (*engine)->Submit(r, col.Sink(4, 1));
  ASSERT_TRUE(id.ok());
  (*engine)->Cancel(*id);
  int refused = 0;
  for (int k = 10; k < 30; ++k) {
    auto s = (*engine)->Submit(r, col.Sink(k, 1));
    if (!s.ok()) {
      EXPECT_EQ(s.status().code(), StatusCode::kUnavailable);
      col.Forget(k, 1);
      ++refused;
    }
  }
  EXPECT_GT(refused, 0) << "the queue of 3 never filled";
  ASSERT_TRUE(col.Wait());
  EXPECT_EQ(col.Get(3).tokens.size(), 5u);
  EXPECT_EQ(col.Get(3).events_after_finish, 0);
  EXPECT_EQ(col.Get(4).reason, FinishReason::kCancelled);
  const ServingStats st = Settled(**engine);
  EXPECT_EQ(st.kv_pages_used, 0);
  EXPECT_EQ(st.requests_cancelled, 2);  // the client that went away and the one cancelled by id, each once
  EXPECT_EQ(st.requests_finished, 20 - refused);
  (*engine)->Shutdown(0);
  EXPECT_EQ((*engine)->Submit(r, col.Sink(99, 1)).status().code(), StatusCode::kUnavailable);
}

// A pool too small for every request at once: sequences are preempted and recomputed, and still produce exactly
// their tokens alone; random lengths, the first 8 requests at once (so that they overlap however fast the machine:
// stories260K decodes a whole request in milliseconds) and the others at random moments; nothing leaks.
TEST(ServingEngineTest, PreemptionUnderAShortPoolKeepsEveryOutput) {
  auto m = Stories();
  ASSERT_NE(m, nullptr);
  const int64_t per_token = model::KvRowBytesPerToken(m->model->config(), DType::kF32);
  auto engine = ServingEngine::Create(*m, Options(8, per_token * 300));  // ~2.3 sequences of 128 positions
  ASSERT_TRUE(engine.ok());
  Collector col;
  std::mt19937_64 rng(5);
  std::vector<std::vector<int32_t>> prompts;
  std::vector<int64_t> lens;
  for (int i = 0; i < 12; ++i) {
    prompts.push_back(Prompt(*m, kStarts[rng() % 8]));
    lens.push_back(40 + static_cast<int64_t>(rng() % 80));
    ServingRequest r;
    r.prompt = prompts.back();
    r.max_tokens = lens.back();
    r.sampling = SamplingParams::Greedy();
    r.ignore_eos = true;
    ASSERT_TRUE((*engine)->Submit(r, col.Sink(i, 1)).ok());
    if (i >= 8) std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 20));
  }
  ASSERT_TRUE(col.Wait(300));
  for (int i = 0; i < 12; ++i) {
    const auto c = col.Get(i);
    EXPECT_EQ(c.reason, FinishReason::kLength) << i;
    EXPECT_EQ(static_cast<int64_t>(c.tokens.size()), lens[i]) << i;
  }
  const ServingStats s = Settled(**engine);
  EXPECT_GT(s.preemptions, 0) << "the pool never ran short";
  EXPECT_EQ(s.kv_pages_used, 0);
  // Greedy with ignore_eos: the same as a lone run that ignores stop tokens, which Generate cannot; compare the
  // first tokens up to the first stop token instead.
  for (int i = 0; i < 12; ++i) {
    const auto want = RunAlone(*m, prompts[i], lens[i], SamplingParams::Greedy());
    const auto got = col.Get(i).tokens;
    ASSERT_GE(got.size(), want.size());
    EXPECT_TRUE(std::equal(want.begin(), want.end(), got.begin())) << "request " << i;
  }
}

}  // namespace
}  // namespace herd::runtime
