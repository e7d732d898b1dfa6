// The generation loop (runtime/engine.h) on stories260K: why it stops (StopReason), cancellation through the
// text sink, and the cache it leaves behind for the next turn.
#include "runtime/engine.h"

#include <gtest/gtest.h>

#include "core/mapped_file.h"
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

// The default repacks when the copy leaves an eighth of the available memory, and at least 1 GiB, free; a model larger
// than that stays on the file map. --repack / --no-repack decide alone, and the choice says why.
TEST(Repack, FitsWithAMarginAndTheModesDecide) {
  constexpr int64_t kGiB = int64_t{1} << 30;
  EXPECT_TRUE(RepackFits(7 * kGiB, 8 * kGiB));
  EXPECT_FALSE(RepackFits(7 * kGiB + 1, 8 * kGiB));  // the 1 GiB floor
  EXPECT_TRUE(RepackFits(56 * kGiB, 64 * kGiB));
  EXPECT_FALSE(RepackFits(57 * kGiB, 64 * kGiB));  // an eighth of 64 GiB
  EXPECT_FALSE(RepackFits(60 * kGiB, 24 * kGiB));  // a model larger than RAM
  EXPECT_FALSE(RepackFits(1, std::nullopt));
  EXPECT_FALSE(RepackFits(kGiB / 2, kGiB));  // nothing fits under 1 GiB of margin

  LoadOptions o;
  o.model_path = testing::SharedPath("models/stories260K/stories260K.bin");
  o.show_progress = false;
  o.repack = RepackMode::kNever;
  auto m = LoadModel(o);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  const model::Model& model = *(*m)->model;
  EXPECT_FALSE((*m)->repack_choice.repack);
  EXPECT_EQ((*m)->repack.bytes, 0);
  EXPECT_GT(model.RepackBytes(), 0);
  EXPECT_EQ(DecideRepack(RepackMode::kNever, model).why, "--no-repack");
  EXPECT_TRUE(DecideRepack(RepackMode::kAlways, model).repack);
  const RepackChoice automatic = DecideRepack(RepackMode::kAuto, model);
  EXPECT_EQ(automatic.repack, RepackFits(model.RepackBytes(), AvailableMemoryBytes()));
  EXPECT_EQ(automatic.why.rfind("auto: ", 0), 0u) << automatic.why;

  o.repack = RepackMode::kAuto;
  auto packed = LoadModel(o);
  ASSERT_TRUE(packed.ok());
  EXPECT_EQ((*packed)->repack_choice.repack, automatic.repack);
  EXPECT_EQ((*packed)->model->RepackBytes(), automatic.repack ? 0 : model.RepackBytes());
}

}  // namespace
}  // namespace herd::runtime
