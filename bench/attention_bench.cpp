// Throughput of kernels/attention.h (style.md 7): the causal prefill of one layer, as the decoder calls it.
//   BM_AttentionPrefill: n_tokens queries of one sequence over their own keys (causal), n_heads query heads in
//   groups of `group` per KV head, head_dim 128, the cache in f16 or f32 rows of one dense page; work items are
//   (block of AttentionTokenBlock(group) tokens, KV head) pairs dealt to the threads round-robin, each with its own
//   scratch, as model/decoder.cpp does. GFLOP/s counts 4 head_dim FLOP per (query head, key) pair attended (QK^T
//   and PV), the figure bench/RESULTS.md compares with the f32 FMA peak.
// Run: build/release/attention_bench --benchmark_counters_tabular=true
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "core/dtype.h"
#include "core/half.h"
#include "core/thread_pool.h"
#include "kernels/attention.h"

namespace herd::kernels {
namespace {

void BM_AttentionPrefill(benchmark::State& state) {
  const int64_t n = state.range(0), kv_f16 = state.range(1), group = state.range(2);
  const int threads = static_cast<int>(state.range(3));
  const int64_t hd = 128, n_kv = 4, n_heads = n_kv * group;
  const DType type = kv_f16 ? DType::kF16 : DType::kF32;
  const int64_t elem = kv_f16 ? 2 : 4, row_bytes = hd * elem;
  std::mt19937_64 rng(7);
  std::normal_distribution<float> normal;
  std::vector<float> q(static_cast<size_t>(n * n_heads * hd)), out(q.size());
  for (float& v : q) v = normal(rng);
  // One dense page per KV head: keys [n][hd], values [n][hd].
  std::vector<std::vector<uint8_t>> k(n_kv), v(n_kv);
  for (int64_t h = 0; h < n_kv; ++h) {
    k[h].resize(static_cast<size_t>(n * row_bytes));
    v[h].resize(k[h].size());
    for (auto* buf : {&k[h], &v[h]}) {
      for (int64_t i = 0; i < n * hd; ++i) {
        const float x = normal(rng);
        if (kv_f16) {
          const uint16_t hbits = F32ToF16(x);
          std::memcpy(buf->data() + i * 2, &hbits, 2);
        } else {
          std::memcpy(buf->data() + i * 4, &x, 4);
        }
      }
    }
  }
  std::vector<int64_t> begin(static_cast<size_t>(n), 0), end(static_cast<size_t>(n));
  for (int64_t t = 0; t < n; ++t) end[t] = t + 1;
  const int64_t block = AttentionTokenBlock(group);
  struct Item {
    int64_t t0, nt, head;
  };
  std::vector<Item> items;
  for (int64_t t0 = 0; t0 < n; t0 += block) {
    for (int64_t h = 0; h < n_kv; ++h) items.push_back({t0, std::min(block, n - t0), h});
  }
  auto pool = ThreadPool::Create(threads).value();
  std::vector<std::vector<float>> scratch(static_cast<size_t>(threads),
                                          std::vector<float>(static_cast<size_t>(AttentionScratchFloats(hd))));
  const int32_t page0 = 0;
  for (auto _ : state) {
    pool->Run([&](int th) {
      for (size_t i = static_cast<size_t>(th); i < items.size(); i += static_cast<size_t>(threads)) {
        const Item& it = items[i];
        KvView kv;
        kv.k_base = k[it.head].data();
        kv.v_base = v[it.head].data();
        kv.pages = &page0;
        kv.row_bytes = row_bytes;
        kv.page_bytes = n * row_bytes;
        kv.type = type;
        const int64_t q_stride = n_heads * hd;
        AttentionPaged(q.data() + it.t0 * q_stride + it.head * group * hd, q_stride, it.nt, group, hd, kv,
                       begin.data() + it.t0, end.data() + it.t0, 0.088f,
                       out.data() + it.t0 * q_stride + it.head * group * hd, q_stride,
                       scratch[static_cast<size_t>(th)].data());
      }
    });
    benchmark::DoNotOptimize(out.data());
  }
  const double pairs = static_cast<double>(n) * static_cast<double>(n + 1) / 2 * static_cast<double>(n_heads);
  state.counters["GFLOP/s"] =
      benchmark::Counter(4.0 * static_cast<double>(hd) * pairs * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

BENCHMARK(BM_AttentionPrefill)
    ->ArgsProduct({{512, 2048}, {1, 0}, {4}, {1, 2}})
    ->ArgNames({"n_tokens", "kv_f16", "group", "threads"})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace herd::kernels

BENCHMARK_MAIN();
