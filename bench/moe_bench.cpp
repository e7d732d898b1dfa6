// MoE data path of the Llama 4 decoder on a synthetic model (tools/synthetic.h; llama4.md section 2.9):
//   BM_Decode: one token per iteration. bytes_read_per_token is what the kernels report reading
//              (kernels::WeightBytesRead); active_bytes is the analytic active-parameter bytes (attention,
//              router, shared expert, top-k experts per layer, output head, one embedding row); ratio = the two
//              divided, which is 1 (minus the norms) when only the selected experts are read. read_rate = bytes
//              read per second, to compare with matmul_bench's BM_ReadBandwidth.
//   BM_Prefill: n_tokens per iteration as one batch: tokens are grouped by expert and each active expert runs
//              one matrix-matrix product. read_vs_weights = bytes read / all weight bytes (<= 1 plus the
//              embedding rows); read_vs_token_by_token = bytes read / (n_tokens x active bytes).
//   BM_PrefillTokenByToken: the same tokens one at a time (no grouping), the baseline BM_Prefill beats.
// Model: hidden_size 1024, 8 heads / 2 KV heads, 4 layers, 8 experts top-1 + shared expert, ffn_size 2048,
// vocab_size 16384, Q8_0 (about 280 MB). The last argument of every benchmark is the thread count. Run:
//   build/release/moe_bench --benchmark_counters_tabular=true
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <vector>

#include "core/thread_pool.h"
#include "kernels/matmul.h"
#include "model/model.h"
#include "tools/synthetic.h"

namespace herd::tools {
namespace {

struct Fixture {
  model::ModelConfig config;
  SyntheticModel weights;
  std::unique_ptr<model::Model> model;
  model::WeightFootprint footprint;
};

const Fixture& GetFixture() {
  static const Fixture* f = [] {
    SyntheticSpec s;
    s.preset = "custom";
    s.dtype = DType::kQ8_0;
    s.num_hidden_layers = 4;
    s.hidden_size = 1024;
    s.num_attention_heads = 8;
    s.num_key_value_heads = 2;
    s.num_local_experts = 8;
    s.num_experts_per_tok = 1;
    s.intermediate_size = 2048;
    s.vocab_size = 16384;
    s.max_position_embeddings = 8192;
    auto* fx = new Fixture;
    ThreadPool pool(0);
    auto die = [](const Status& st) {
      std::fprintf(stderr, "moe_bench: %s\n", st.ToString().c_str());
      std::exit(1);
    };
    auto config = SyntheticConfig(s);
    if (!config.ok()) die(config.status());
    fx->config = *config;
    auto weights = MakeSyntheticWeights(fx->config, s.dtype, s.seed, pool);
    if (!weights.ok()) die(weights.status());
    fx->weights = std::move(weights).value();
    auto m = model::CreateModel(fx->config, fx->weights.weights);
    if (!m.ok()) die(m.status());
    fx->model = std::move(m).value();
    fx->footprint = ComputeFootprint(fx->config, fx->weights.weights);
    return fx;
  }();
  return *f;
}

std::vector<int32_t> Prompt(int64_t n, int64_t vocab) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) t[i] = static_cast<int32_t>((i * 7919 + 13) % vocab);
  return t;
}

void BM_Decode(benchmark::State& state) {
  const Fixture& f = GetFixture();
  ThreadPool pool(static_cast<int>(state.range(0)));
  constexpr int64_t kCtx = 1024;
  auto st = f.model->NewState(kCtx, 64);
  std::vector<float> logits(static_cast<size_t>(f.config.vocab_size));
  int32_t tok[1] = {1};
  int64_t steps = 0;
  kernels::EnableWeightByteCounting(true);
  kernels::ResetWeightBytesRead();
  for (auto _ : state) {
    if ((*st)->n_past() == kCtx) (*st)->Reset();  // keep attention cost bounded
    if (!f.model->Forward(**st, tok, model::LogitsMode::kLast, logits.data(), pool).ok()) {
      state.SkipWithError("forward failed");
      break;
    }
    tok[0] = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    ++steps;
  }
  kernels::EnableWeightByteCounting(false);
  const double read = static_cast<double>(kernels::WeightBytesRead());
  const double per_token = steps > 0 ? read / steps : 0;
  state.counters["bytes_read_per_token"] = per_token;
  state.counters["active_bytes"] = static_cast<double>(f.footprint.active_bytes);
  state.counters["ratio"] = per_token / static_cast<double>(f.footprint.active_bytes);
  state.counters["all_expert_bytes"] = static_cast<double>(f.footprint.routed_expert_bytes);
  state.counters["read_rate"] = benchmark::Counter(read, benchmark::Counter::kIsRate);  // bytes/s
  state.counters["tok/s"] = benchmark::Counter(static_cast<double>(steps), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_Decode)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);

void BM_Prefill(benchmark::State& state) {
  const Fixture& f = GetFixture();
  const int64_t n = state.range(0);
  ThreadPool pool(static_cast<int>(state.range(1)));
  auto st = f.model->NewState(n, n);
  std::vector<float> logits(static_cast<size_t>(f.config.vocab_size));
  const std::vector<int32_t> prompt = Prompt(n, f.config.vocab_size);
  int64_t runs = 0;
  kernels::EnableWeightByteCounting(true);
  kernels::ResetWeightBytesRead();
  for (auto _ : state) {
    (*st)->Reset();
    if (!f.model->Forward(**st, prompt, model::LogitsMode::kLast, logits.data(), pool).ok()) {
      state.SkipWithError("forward failed");
      break;
    }
    ++runs;
  }
  kernels::EnableWeightByteCounting(false);
  const double per_run = runs > 0 ? static_cast<double>(kernels::WeightBytesRead()) / runs : 0;
  state.counters["read_vs_weights"] = per_run / static_cast<double>(f.footprint.total_bytes);
  state.counters["read_vs_token_by_token"] = per_run / (n * static_cast<double>(f.footprint.active_bytes));
  state.counters["tok/s"] = benchmark::Counter(static_cast<double>(runs * n), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_Prefill)->Args({64, 1})->Args({64, 2})->Args({256, 2})->UseRealTime()->Unit(benchmark::kMillisecond);

void BM_PrefillTokenByToken(benchmark::State& state) {
  const Fixture& f = GetFixture();
  const int64_t n = state.range(0);
  ThreadPool pool(static_cast<int>(state.range(1)));
  auto st = f.model->NewState(n, n);
  std::vector<float> logits(static_cast<size_t>(f.config.vocab_size));
  const std::vector<int32_t> prompt = Prompt(n, f.config.vocab_size);
  int64_t runs = 0;
  for (auto _ : state) {
    (*st)->Reset();
    for (int64_t i = 0; i < n; ++i) {
      const int32_t tok[1] = {prompt[i]};
      if (!f.model->Forward(**st, tok, model::LogitsMode::kNone, logits.data(), pool).ok()) {
        state.SkipWithError("forward failed");
        return;
      }
    }
    ++runs;
  }
  state.counters["tok/s"] = benchmark::Counter(static_cast<double>(runs * n), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_PrefillTokenByToken)->Args({64, 2})->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace herd::tools

BENCHMARK_MAIN();
