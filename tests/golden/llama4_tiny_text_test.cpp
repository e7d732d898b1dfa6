// Golden tests of the Llama 4 text model against shared/fixtures/llama4-tiny-text/{interleaved,allmoe}:
// outputs of Meta's reference (fp32), cross-checked with HF. Tolerances from the fixture README: logits 1e-4
// (2e-4 for p3000), hidden states 5e-5, router logits 2e-5, RoPE tables 1e-6; router top-1 choices, greedy
// tokens (decoded with herd's KV cache, token by token) and argmax_p3000 exact.
// Each case runs from the F32 and the BF16 safetensors (identical values) of the HF directory, and from the GGUF
// file `herd convert` makes of each (tools/convert.h), at the same dtype.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>

#include "kernels/rope.h"
#include "model/decoder.h"
#include "tools/convert.h"
#include "runtime/engine.h"
#include "test_util.h"

namespace herd {
namespace {

namespace fs = std::filesystem;
using testing::NpyArray;
using testing::ReadJson;
using testing::ReadNpy;

struct Case {
  std::string variant;  // interleaved | allmoe
  std::string weights;  // model.safetensors | model.bf16.safetensors
  bool gguf = false;    // run from the converted GGUF instead of the HF directory
};

std::string CaseName(const ::testing::TestParamInfo<Case>& info) {
  return info.param.variant + (info.param.weights == "model.safetensors" ? "_F32" : "_BF16") +
         (info.param.gguf ? "_GGUF" : "");
}

void PrintTo(const Case& c, std::ostream* os) {
  *os << c.variant << " " << c.weights << (c.gguf ? " via herd convert" : "");
}


// The model path of a case: the fixture directory, a directory whose model.safetensors is the BF16 file, or the
// GGUF converted from one of those (made once per process).
std::string ModelPath(const std::string& fixture, const Case& c) {
  static std::map<std::string, std::string> cache;
  const std::string key = c.variant + "/" + c.weights + (c.gguf ? "/gguf" : "");
  if (auto it = cache.find(key); it != cache.end()) return it->second;
  std::string path = fixture;
  if (c.gguf) {
    const std::string hf = ModelPath(fixture, Case{c.variant, c.weights, false});
    const std::string dtype = c.weights == "model.safetensors" ? "f32" : "bf16";
    path = testing::ScratchDir("l4-" + c.variant + "-gguf-" + dtype) + "/" + dtype + ".gguf";
    tools::ConvertOptions o;
    o.input = hf;
    o.output = path;
    o.on_note = [](const std::string&) {};  // the fixtures have no tokenizer; llama.cpp-only caveats
    const Status s = tools::ConvertToGguf(o);
    EXPECT_TRUE(s.ok()) << s.ToString();
  } else if (c.weights != "model.safetensors") {
    path = testing::ScratchDir("l4-" + c.variant + "-bf16");
    fs::create_symlink(fixture + "/config.json", path + "/config.json");
    fs::create_symlink(fixture + "/" + c.weights, path + "/model.safetensors");
  }
  cache[key] = path;
  return path;
}

// Max |a - b| and the index of the first element over `tol`.
struct Diff {
  double max = 0;
  int64_t first_bad = -1;
};
Diff Compare(const float* got, const float* want, int64_t n, double tol) {
  Diff d;
  for (int64_t i = 0; i < n; ++i) {
    const double e = std::abs(static_cast<double>(got[i]) - want[i]);
    if (!(e <= d.max)) d.max = e;  // NaN-propagating
    if (!(e <= tol) && d.first_bad < 0) d.first_bad = i;
  }
  return d;
}

#define EXPECT_CLOSE(got, want, n, tol, what)                                                         \
  do {                                                                                                \
    Diff d_ = Compare(got, want, n, (tol));                                                             \
    EXPECT_LT(d_.first_bad, 0) << (what) << ": max |diff| " << d_.max << " > " << (tol) << ", first at " \
                               << d_.first_bad;                                                       \
  } while (0)

class Llama4TinyTextTest : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    fixture_ = testing::SharedPath("fixtures/llama4-tiny-text/" + GetParam().variant);
    runtime::LoadOptions o;
    o.model_path = ModelPath(fixture_, GetParam());
    o.require_tokenizer = false;  // the fixture models have no tokenizer
    auto m = runtime::LoadModel(o);
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    loaded_ = std::move(m).value();
    inputs_ = ReadJson(fixture_ + "/inputs.json");
    expected_ = ReadJson(fixture_ + "/expected.json");
  }
  const model::Model& model() const { return *loaded_->model; }
  // The frequencies the decoder uses: with llama3 scaling from config.json (HF), or divided by rope_freqs.weight
  // (GGUF, llama4.md 4.3).
  std::vector<float> InvFreq() const {
    const TensorView* f = loaded_->files.weights.Find("rope_freqs.weight");
    if (f == nullptr) return model::RopeInvFreq(model().config());
    EXPECT_EQ(f->dtype, DType::kF32);
    std::vector<float> divisors(static_cast<size_t>(f->NumElements()));
    std::memcpy(divisors.data(), f->data, divisors.size() * 4);
    return model::RopeInvFreq(model().config(), divisors.data());
  }
  std::vector<int32_t> Prompt(const std::string& name) {
    if (name == "p3000") return inputs_["long_prompt"]["tokens"].get<std::vector<int32_t>>();
    return inputs_["prompts"][name].get<std::vector<int32_t>>();
  }
  std::vector<float> AllLogits(const std::vector<int32_t>& ids, int64_t n_ctx, model::ForwardTrace* trace = nullptr) {
    auto state = model().NewState(n_ctx, 64);
    EXPECT_TRUE(state.ok()) << state.status().ToString();
    if (trace != nullptr) model::DecoderModel::SetTrace(**state, trace);
    std::vector<float> logits(ids.size() * model().config().vocab_size);
    Status s = model().Forward(**state, ids, model::LogitsMode::kAll, logits.data(), pool_);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return logits;
  }

  std::string fixture_;
  std::unique_ptr<runtime::LoadedModel> loaded_;
  nlohmann::json inputs_, expected_;
  ThreadPool pool_{2};
};

TEST_P(Llama4TinyTextTest, RopeTables) {
  const NpyArray inv = ReadNpy(fixture_ + "/rope_inv_freq.npy");
  const std::vector<float> got = InvFreq();
  ASSERT_EQ(static_cast<int64_t>(got.size()), inv.size());
  EXPECT_CLOSE(got.data(), inv.f32.data(), inv.size(), 1e-6, "rope_inv_freq");
  // The table the decoder rotates by: kernels::RopeCosSin of these frequencies at each position.
  const NpyArray cs = ReadNpy(fixture_ + "/rope_cos_sin.npy");  // [positions, pairs, 2]
  const auto positions = inputs_["rope_positions"].get<std::vector<int64_t>>();
  const int64_t n_pairs = static_cast<int64_t>(got.size());
  ASSERT_EQ(cs.shape, (std::vector<int64_t>{static_cast<int64_t>(positions.size()), n_pairs, 2}));
  std::vector<float> table, cos(got.size()), sin(got.size());
  for (int64_t p : positions) {
    kernels::RopeCosSin(got.data(), n_pairs, p, cos.data(), sin.data());
    for (int64_t i = 0; i < n_pairs; ++i) {
      table.push_back(cos[i]);
      table.push_back(sin[i]);
    }
  }
  EXPECT_CLOSE(table.data(), cs.f32.data(), cs.size(), 1e-6, "rope cos/sin");
}

TEST_P(Llama4TinyTextTest, LogitsAtEveryPosition) {
  for (std::string name : {"p24", "p21", "p13"}) {
    const auto ids = Prompt(name);
    const NpyArray want = ReadNpy(fixture_ + "/logits_" + name + ".npy");
    const auto got = AllLogits(ids, 256);
    ASSERT_EQ(static_cast<int64_t>(got.size()), want.size()) << name;
    EXPECT_CLOSE(got.data(), want.f32.data(), want.size(), 1e-4, "logits " + name);
  }
}

TEST_P(Llama4TinyTextTest, HiddenStatesAndRouter) {
  const auto ids = Prompt("p24");
  const int64_t n = static_cast<int64_t>(ids.size()), d = model().config().hidden_size;
  const int64_t n_layers = model().config().num_hidden_layers, n_exp = model().config().num_local_experts;
  model::ForwardTrace trace;
  AllLogits(ids, 256, &trace);
  // Batches are split at chunk boundaries: reassemble [n_layers + 2][n][d] from per-batch captures.
  const int64_t per_batch = n_layers + 2;
  ASSERT_EQ(trace.hidden.size() % per_batch, 0u);
  std::vector<float> hidden(static_cast<size_t>(per_batch * n * d));
  int64_t t0 = 0;
  for (size_t b = 0; b < trace.hidden.size() / per_batch; ++b) {
    const int64_t nb = static_cast<int64_t>(trace.hidden[b * per_batch].size()) / d;
    for (int64_t r = 0; r < per_batch; ++r) {
      std::copy(trace.hidden[b * per_batch + r].begin(), trace.hidden[b * per_batch + r].end(),
                hidden.begin() + (r * n + t0) * d);
    }
    t0 += nb;
  }
  ASSERT_EQ(t0, n);
  const NpyArray want = ReadNpy(fixture_ + "/hidden_states_p24.npy");
  ASSERT_EQ(want.size(), static_cast<int64_t>(hidden.size()));
  for (int64_t r = 0; r < per_batch; ++r) {
    EXPECT_CLOSE(hidden.data() + r * n * d, want.f32.data() + r * n * d, n * d, 5e-5,
                 "hidden state row " + std::to_string(r));
  }
  // Router logits and choices, per MoE layer in layer order.
  std::vector<int64_t> moe_layers;
  for (int64_t l = 0; l < n_layers; ++l) {
    if (model().config().layers[l].moe) moe_layers.push_back(l);
  }
  const int64_t n_moe = static_cast<int64_t>(moe_layers.size());
  const int64_t n_batches = static_cast<int64_t>(trace.hidden.size()) / per_batch;
  ASSERT_EQ(static_cast<int64_t>(trace.router_logits.size()), n_moe * n_batches);
  const NpyArray want_router = ReadNpy(fixture_ + "/router_logits_p24.npy");
  for (int64_t m = 0; m < n_moe; ++m) {
    std::vector<float> logits;
    std::vector<int32_t> choice;
    for (int64_t b = 0; b < n_batches; ++b) {
      const auto& lg = trace.router_logits[b * n_moe + m];
      const auto& ch = trace.router_choice[b * n_moe + m];
      logits.insert(logits.end(), lg.begin(), lg.end());
      choice.insert(choice.end(), ch.begin(), ch.end());
    }
    ASSERT_EQ(static_cast<int64_t>(logits.size()), n * n_exp);
    EXPECT_CLOSE(logits.data(), want_router.f32.data() + m * n * n_exp, n * n_exp, 2e-5,
                 "router logits of layer " + std::to_string(moe_layers[m]));
    const auto want_choice =
        expected_["router_top1_expert"]["p24"][std::to_string(moe_layers[m])].get<std::vector<int32_t>>();
    EXPECT_EQ(choice, want_choice) << "router top-1 of layer " << moe_layers[m];
  }
}

TEST_P(Llama4TinyTextTest, GreedyWithKvCache) {
  for (std::string name : {"p24", "p21", "p13", "p3000"}) {
    const auto ids = Prompt(name);
    const auto want_tokens = expected_["greedy"][name]["tokens"].get<std::vector<int32_t>>();
    const NpyArray want_logits = ReadNpy(fixture_ + "/greedy_step_logits_" + name + ".npy");
    const int64_t vocab = model().config().vocab_size;
    auto state = model().NewState(static_cast<int64_t>(ids.size() + want_tokens.size()), 64);
    ASSERT_TRUE(state.ok());
    std::vector<float> logits(vocab);
    ASSERT_TRUE(model().Forward(**state, ids, model::LogitsMode::kLast, logits.data(), pool_).ok());
    std::vector<int32_t> got;
    for (size_t step = 0; step < want_tokens.size(); ++step) {
      EXPECT_CLOSE(logits.data(), want_logits.f32.data() + step * vocab, vocab, name == "p3000" ? 2e-4 : 1e-4,
                   name + " greedy step " + std::to_string(step));
      const int32_t next = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
      got.push_back(next);
      if (step + 1 == want_tokens.size()) break;
      const int32_t tok[1] = {next};
      ASSERT_TRUE(model().Forward(**state, tok, model::LogitsMode::kLast, logits.data(), pool_).ok());
    }
    EXPECT_EQ(got, want_tokens) << name;
  }
}

TEST_P(Llama4TinyTextTest, LongPromptCrossesManyChunks) {
  const auto ids = Prompt("p3000");
  const auto got = AllLogits(ids, 3008);
  const int64_t vocab = model().config().vocab_size, n = static_cast<int64_t>(ids.size());
  const NpyArray last32 = ReadNpy(fixture_ + "/logits_p3000_last32.npy");
  EXPECT_CLOSE(got.data() + (n - 32) * vocab, last32.f32.data(), 32 * vocab, 2e-4, "p3000 last 32 positions");
  const NpyArray argmax = ReadNpy(fixture_ + "/argmax_p3000.npy");
  ASSERT_EQ(argmax.size(), n);
  int64_t mismatches = 0, first = -1;
  for (int64_t t = 0; t < n; ++t) {
    const float* row = got.data() + t * vocab;
    const int32_t a = static_cast<int32_t>(std::max_element(row, row + vocab) - row);
    if (a != argmax.i32[t]) {
      ++mismatches;
      if (first < 0) first = t;
    }
  }
  EXPECT_EQ(mismatches, 0) << "first argmax mismatch at position " << first;
}

INSTANTIATE_TEST_SUITE_P(Fixtures, Llama4TinyTextTest,
                         ::testing::Values(Case{"interleaved", "model.safetensors"},
                                           Case{"interleaved", "model.bf16.safetensors"},
                                           Case{"allmoe", "model.safetensors"},
                                           Case{"allmoe", "model.bf16.safetensors"},
                                           Case{"interleaved", "model.safetensors", true},
                                           Case{"interleaved", "model.bf16.safetensors", true},
                                           Case{"allmoe", "model.safetensors", true},
                                           Case{"allmoe", "model.bf16.safetensors", true}),
                         CaseName);

}  // namespace
}  // namespace herd
