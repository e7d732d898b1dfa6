// The vision tower's elementwise and per-row ops (kernels/vision_ops.h) beside the scalar forms they replace, on
// one thread, one row of Scout's encoder MLP (5632 wide) or hidden state (1408) at a time:
//   BM_GeluErf:        the Highway kernel (erfc fit, vectors).
//   BM_GeluErfScalar:  0.5 x (1 + std::erf(x / sqrt 2)) in f32, the loop it replaced.
//   BM_LayerNorm:      one 1408-wide row.
// The tower runs GELU on 577 x 5632 values per layer and tile (34 layers): multiply items_per_second's inverse by
// 110 M for the seconds per tile. Run: build/release/vision_bench
#include <benchmark/benchmark.h>

#include <cmath>
#include <random>
#include <vector>

#include "kernels/vision_ops.h"

namespace herd::kernels {
namespace {

std::vector<float> Values(int64_t n, float lo, float hi) {
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = u(rng);
  return v;
}

void BM_GeluErf(benchmark::State& state) {
  const int64_t n = state.range(0);
  const std::vector<float> x = Values(n, -4.0f, 4.0f);
  std::vector<float> y(x.size());
  for (auto _ : state) {
    GeluErf(x.data(), y.data(), n);
    benchmark::DoNotOptimize(y.data());
  }
  state.SetItemsProcessed(state.iterations() * n);
}

void BM_GeluErfScalar(benchmark::State& state) {
  const int64_t n = state.range(0);
  const std::vector<float> x = Values(n, -4.0f, 4.0f);
  std::vector<float> y(x.size());
  for (auto _ : state) {
    for (int64_t i = 0; i < n; ++i) y[i] = 0.5f * x[i] * (1.0f + std::erf(x[i] * 0.70710678118654752f));
    benchmark::DoNotOptimize(y.data());
  }
  state.SetItemsProcessed(state.iterations() * n);
}

void BM_LayerNorm(benchmark::State& state) {
  const int64_t n = state.range(0);
  const std::vector<float> x = Values(n, -2.0f, 2.0f), w = Values(n, 0.5f, 1.5f), b = Values(n, -0.1f, 0.1f);
  std::vector<float> y(x.size());
  for (auto _ : state) {
    LayerNorm(x.data(), w.data(), b.data(), n, 1e-5f, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  state.SetItemsProcessed(state.iterations() * n);
}

BENCHMARK(BM_GeluErf)->Arg(5632);
BENCHMARK(BM_GeluErfScalar)->Arg(5632);
BENCHMARK(BM_LayerNorm)->Arg(1408);

}  // namespace
}  // namespace herd::kernels

BENCHMARK_MAIN();
