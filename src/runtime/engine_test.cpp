// The generation loop (runtime/engine.h) on stories260K: why it stops (StopReason), cancellation through the
// text sink, and the cache it leaves behind for the next turn.
#include "runtime/engine.h"

#include <gtest/gtest.h>

#include "test_util.h"

namespace herd::runtime {
namespace {

std::unique_ptr<LoadedModel> Stories() {
  LoadOptions o;
  o.model_path = testing::SharedPath("models/stories260K/stories260K.gguf");
  o.show_progress = false;
  auto m = LoadModel(o);
  EXPECT_TRUE(m.ok()) << m.status().ToString();
  return std::move(m).value();
}

GenerateOptions Greedy(int64_t n) {
  GenerateOptions go;
  go.n_predict = n;
  go.sampling.temperature = 0;
  return go;
}

TEST(Generate, StopReasons) {
  auto m = Stories();
  ThreadPool pool(1);
  const std::vector<int32_t> prompt = m->tokenizer->Encode("Once upon a time", true, false);
  auto state = m->model->NewState(64, 64);
  ASSERT_TRUE(state.ok());
  auto r = Generate(*m, **state, pool, prompt, Greedy(8), nullptr);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->stop_reason, StopReason::kLength);
  EXPECT_EQ(r->tokens.size(), 8u);
  EXPECT_EQ(StopReasonName(r->stop_reason), "length");

  (*state)->Reset();
  EXPECT_EQ((*state)->n_past(), 0);
  GenerateOptions go = Greedy(40);
  go.stop_strings = {r->text.substr(3, 4)};
  auto s = Generate(*m, **state, pool, prompt, go, nullptr);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->stop_reason, StopReason::kStopString);
  EXPECT_EQ(s->text, r->text.substr(0, 3));

  // A context of prompt + 3 positions: the fourth generated token is sampled but cannot be cached.
  auto small = m->model->NewState(static_cast<int64_t>(prompt.size()) + 3, 64);
  ASSERT_TRUE(small.ok());
  auto full = Generate(*m, **small, pool, prompt, Greedy(40), nullptr);
  ASSERT_TRUE(full.ok());
  EXPECT_EQ(full->stop_reason, StopReason::kContextFull);
  EXPECT_EQ(StopReasonName(full->stop_reason), "context full");
}

// A sink that returns false ends generation at once: nothing more is emitted, the reason says so, and the cache
// holds exactly the prompt and the tokens generated but the last (as after any other stop), so the next turn
// continues from there.
TEST(Generate, SinkCancels) {
  auto m = Stories();
  ThreadPool pool(1);
  const std::vector<int32_t> prompt = m->tokenizer->Encode("Once upon a time", true, false);
  auto state = m->model->NewState(128, 64);
  ASSERT_TRUE(state.ok());
  int calls = 0;
  std::string seen;
  auto r = Generate(*m, **state, pool, prompt, Greedy(40), [&](std::string_view piece) {
    seen += piece;
    return ++calls < 3;
  });
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(calls, 3);
  EXPECT_EQ(r->stop_reason, StopReason::kCancelled);
  EXPECT_EQ(StopReasonName(r->stop_reason), "cancelled");
  EXPECT_LT(r->tokens.size(), 40u);
  EXPECT_EQ(r->n_uncached, 1);
  EXPECT_EQ((*state)->n_past(), static_cast<int64_t>(prompt.size() + r->tokens.size()) - 1);
  EXPECT_EQ(r->text.substr(0, seen.size()), seen);

  // The uncancelled run produces the same first tokens.
  auto fresh = m->model->NewState(128, 64);
  ASSERT_TRUE(fresh.ok());
  auto whole = Generate(*m, **fresh, pool, prompt, Greedy(40), [](std::string_view) { return true; });
  ASSERT_TRUE(whole.ok());
  EXPECT_EQ(whole->stop_reason, StopReason::kLength);
  ASSERT_GE(whole->tokens.size(), r->tokens.size());
  EXPECT_TRUE(std::equal(r->tokens.begin(), r->tokens.end(), whole->tokens.begin()));
}

}  // namespace
}  // namespace herd::runtime
