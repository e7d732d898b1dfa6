// Throughput of kernels/matmul.h against the memory bandwidth measured in the same run (style.md 7).
//   BM_ReadBandwidth: streaming SIMD read of a buffer far larger than the caches (the decode bound);
//   BM_CopyBandwidth: memcpy of such a buffer, counting read + write bytes;
//   BM_MatVec: n_tokens = 1 (decode) per weight dtype; GB/s = weight bytes / time, and xReadBW = that over the
//              read bandwidth measured in this process with the same thread count (best of 5 streaming passes,
//              measured once, beside BM_ReadBandwidth). Weights rotate over copies totalling >= kColdBytes so
//              every call streams them from DRAM, as decode does layer after layer;
//   BM_SmallBatch: n_tokens = 1..16 over cold weights (a serving step); GB/s and xReadBW as BM_MatVec;
//   BM_Prefill: n_tokens = 8, 64 and 512 on one copy of the weights (cache-resident at 8: the arithmetic ceiling
//               of a serving step); GFLOP/s = 2 n_out n_in n_tokens / time.
// Every benchmark takes the thread count as its last argument (1 and 2). Run:
//   build/release/matmul_bench --benchmark_counters_tabular=true [--benchmark_filter=MatVec]
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/half.h"
#include "core/tensor.h"
#include "core/thread_pool.h"
#include "hwy/aligned_allocator.h"
#include "kernels/cpu/qdot.h"
#include "kernels/matmul.h"
#include "kernels/ops.h"
#include "kernels/repack.h"

namespace herd::kernels {
namespace {

constexpr int64_t kColdBytes = int64_t{512} << 20;  // well beyond any L3 we run on

// 64-byte aligned bytes, filled with realistic values for `t` (no NaN/inf/subnormal weights, which would
// measure the FPU's slow paths rather than the kernel): a 1 MiB random pattern repeated.
hwy::AlignedFreeUniquePtr<uint8_t[]> MakeBytes(DType t, int64_t n_bytes) {
  auto buf = hwy::AllocateAligned<uint8_t>(static_cast<size_t>(n_bytes));
  const int64_t pattern_bytes = std::min<int64_t>(n_bytes, int64_t{1} << 20);
  std::mt19937_64 rng(42);
  std::uniform_real_distribution<float> unit(-1.0f, 1.0f);
  uint8_t* p = buf.get();
  switch (t) {
    case DType::kF32:
      for (int64_t i = 0; i + 4 <= pattern_bytes; i += 4) {
        const float v = unit(rng);
        std::memcpy(p + i, &v, 4);
      }
      break;
    case DType::kF16:
    case DType::kBF16:
      for (int64_t i = 0; i + 2 <= pattern_bytes; i += 2) {
        const uint16_t v = t == DType::kF16 ? F32ToF16(unit(rng)) : F32ToBf16(unit(rng));
        std::memcpy(p + i, &v, 2);
      }
      break;
    default: {  // quantized: the pattern is a whole number of blocks of random bytes with f16 scales ~ 0.01
      const int64_t block = Traits(t).type_size;
      for (int64_t b = 0; b + block <= pattern_bytes; b += block) {
        for (int64_t j = 0; j < block; ++j) p[b + j] = static_cast<uint8_t>(rng());
        const uint16_t d = F32ToF16(0.01f * (1.0f + unit(rng))), dmin = F32ToF16(0.01f * (1.0f + unit(rng)));
        if (t == DType::kQ6_K) {
          std::memcpy(p + b + 208, &d, 2);
        } else {
          std::memcpy(p + b, &d, 2);
          if (t != DType::kQ8_0 && t != DType::kQ4_0) std::memcpy(p + b + 2, &dmin, 2);  // Q4_K, Q5_K
        }
      }
      break;
    }
  }
  const int64_t period = pattern_bytes - pattern_bytes % (Traits(t).type_size * 4);
  for (int64_t at = period; at < n_bytes; at += period) {
    std::memcpy(p + at, p, static_cast<size_t>(std::min(period, n_bytes - at)));
  }
  return buf;
}

// MakeBytes for rows of n_in weights; the repacked types (kernels/repack.h) as their source type's bytes packed row
// by row.
hwy::AlignedFreeUniquePtr<uint8_t[]> MakeWeightBytes(DType t, int64_t n_in, int64_t n_bytes) {
  if (!IsRepacked(t)) return MakeBytes(t, n_bytes);
  const int64_t row_bytes = RowBytes(t, n_in), src_row_bytes = RowBytes(PackedFrom(t), n_in);
  const int64_t rows = n_bytes / row_bytes;
  auto src = MakeBytes(PackedFrom(t), std::max<int64_t>(1, rows) * src_row_bytes);
  auto buf = hwy::AllocateAligned<uint8_t>(static_cast<size_t>(n_bytes));
  std::memset(buf.get(), 0, static_cast<size_t>(n_bytes));
  for (int64_t r = 0; r < rows; ++r) PackRow(t, src.get() + r * src_row_bytes, n_in, buf.get() + r * row_bytes);
  return buf;
}

std::vector<float> RandomF32(int64_t n) {
  std::vector<float> v(static_cast<size_t>(n));
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<float> unit(-1.0f, 1.0f);
  for (float& f : v) f = unit(rng);
  return v;
}

TensorView View(DType t, int64_t n_out, int64_t n_in, const uint8_t* data) {
  return *MakeTensorView(t, {n_out, n_in}, data, RowBytes(t, n_in) * n_out, "bench");
}

// ---- Baselines ----

// One streaming read of the kColdBytes at f, split over the pool (the decode bound).
void ReadOnce(ThreadPool& pool, const float* f, float* sink) {
  pool.ParallelFor(
      kColdBytes / 4, [&](int64_t b, int64_t e) { benchmark::DoNotOptimize(*sink += Dot(f + b, f + b, e - b)); }, 4096);
}

void BM_ReadBandwidth(benchmark::State& state) {
  ThreadPool pool(static_cast<int>(state.range(0)));
  auto buf = MakeBytes(DType::kF32, kColdBytes);
  const float* f = reinterpret_cast<const float*>(buf.get());
  float sink = 0.0f;
  for (auto _ : state) ReadOnce(pool, f, &sink);
  state.counters["GB/s"] =
      benchmark::Counter(static_cast<double>(kColdBytes) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

// Read bandwidth (GB/s) with `threads` threads, measured once per process: the best of 5 passes of ReadOnce.
double MeasuredReadBandwidth(int threads) {
  static std::map<int, double> cache;
  if (auto it = cache.find(threads); it != cache.end()) return it->second;
  ThreadPool pool(threads);
  auto buf = MakeBytes(DType::kF32, kColdBytes);
  const float* f = reinterpret_cast<const float*>(buf.get());
  float sink = 0.0f;
  ReadOnce(pool, f, &sink);  // page in
  double best = 0.0;
  for (int pass = 0; pass < 5; ++pass) {
    const auto t0 = std::chrono::steady_clock::now();
    ReadOnce(pool, f, &sink);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, static_cast<double>(kColdBytes) * 1e-9 / s);
  }
  return cache[threads] = best;
}

void BM_CopyBandwidth(benchmark::State& state) {
  ThreadPool pool(static_cast<int>(state.range(0)));
  const int64_t n = kColdBytes / 2;
  auto src = MakeBytes(DType::kF32, n);
  auto dst = hwy::AllocateAligned<uint8_t>(static_cast<size_t>(n));
  for (auto _ : state) {
    pool.ParallelFor(
        n, [&](int64_t b, int64_t e) { std::memcpy(dst.get() + b, src.get() + b, static_cast<size_t>(e - b)); }, 4096);
    benchmark::ClobberMemory();
  }
  state.counters["GB/s"] =  // read + write
      benchmark::Counter(2.0 * static_cast<double>(n) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

// ---- Decode ----

// The native BF16 kernel of cpu/qdot.h (vdpbf16ps), which MatMul no longer uses (cpu/matmul.cpp): y = W x over
// all rows, split over the pool in 32-row multiples as MatMul splits them.
void NativeBf16MatMul(const TensorView& w, const float* x, int64_t n_tokens, float* y, ThreadPool& pool) {
  QuantizedActivations& a = ThreadQuantizedActivations();
  a.Quantize(DType::kBF16, x, n_tokens, w.Cols());
  pool.ParallelFor(
      w.Rows(), [&](int64_t o0, int64_t o1) { QuantDotRows(w, a, 0, n_tokens, y, w.Rows(), o0, o1); }, 32);
}

void MatVec(benchmark::State& state, DType t, int64_t n_out, int64_t n_in, int threads, bool cold = true,
            bool native_bf16 = false, int64_t n_tokens = 1) {
  const double read_bw = MeasuredReadBandwidth(threads);
  ThreadPool pool(threads);
  const int64_t w_bytes = RowBytes(t, n_in) * n_out;
  const int64_t copies = cold ? std::max<int64_t>(2, (kColdBytes + w_bytes - 1) / w_bytes) : 1;
  auto buf = MakeWeightBytes(t, n_in, w_bytes * copies);
  std::vector<TensorView> views;
  for (int64_t c = 0; c < copies; ++c) views.push_back(View(t, n_out, n_in, buf.get() + c * w_bytes));
  const std::vector<float> x = RandomF32(n_tokens * n_in);
  std::vector<float> y(static_cast<size_t>(n_tokens * n_out));
  int64_t c = 0;
  for (auto _ : state) {
    if (native_bf16) {
      NativeBf16MatMul(views[c], x.data(), n_tokens, y.data(), pool);
    } else {
      MatMul(views[c], x.data(), n_tokens, y.data(), pool);
    }
    benchmark::DoNotOptimize(y.data());
    c = c + 1 == copies ? 0 : c + 1;
  }
  state.counters["GB/s"] =
      benchmark::Counter(static_cast<double>(w_bytes) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["xReadBW"] =
      benchmark::Counter(static_cast<double>(w_bytes) * 1e-9 / read_bw, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_MatVec(benchmark::State& state) {
  const DType t = static_cast<DType>(state.range(0));
  MatVec(state, t, state.range(1), state.range(2), static_cast<int>(state.range(3)));
  state.SetLabel(std::string(DTypeName(t)));
}

// The kernel's compute ceiling: the same product on weights that stay in L2 (one copy of n_out x n_in, sized to
// fit), so GB/s here is what the instructions allow when memory is not the limit. A decode kernel whose hot
// figure is not well above the read bandwidth is compute-bound in decode.
void BM_MatVecHot(benchmark::State& state) {
  const DType t = static_cast<DType>(state.range(0));
  MatVec(state, t, state.range(1), state.range(2), static_cast<int>(state.range(3)), /*cold=*/false);
  state.SetLabel(std::string(DTypeName(t)) + " (L2-resident)");
}

// BF16 decode both ways in one process: path 1 = the native bf16 dot (vdpbf16ps, where the CPU has AVX512_BF16;
// NativeBf16MatMul), path 0 = MatMul, i.e. the f32 dot kernel (weights widened to f32 in registers).
void BM_MatVecBF16(benchmark::State& state) {
  const bool native = state.range(0) != 0;
  if (native && !QuantDotSupports(DType::kBF16)) {
    state.SkipWithError("no native BF16 dot product on this CPU");
    return;
  }
  MatVec(state, DType::kBF16, state.range(1), state.range(2), static_cast<int>(state.range(3)), true, native);
  state.SetLabel(native ? "BF16 native (vdpbf16ps)" : "BF16 via f32");
}

// A step of a few sequences (serving decode, or an expert's few tokens): n_tokens = 1..16 over cold weights, as
// BM_MatVec. xReadBW near 1 at n_tokens means the product still runs at the speed of its weight bytes; below it, the
// arithmetic of the extra tokens is what the step waits for.
void BM_SmallBatch(benchmark::State& state) {
  const DType t = static_cast<DType>(state.range(0));
  MatVec(state, t, state.range(1), state.range(2), static_cast<int>(state.range(4)), true, false, state.range(3));
  state.SetLabel(std::string(DTypeName(t)));
}

// ---- Prefill ----

void BM_Prefill(benchmark::State& state) {
  const DType t = static_cast<DType>(state.range(0));
  const int64_t n_out = state.range(1), n_in = state.range(2), n_tokens = state.range(3);
  ThreadPool pool(static_cast<int>(state.range(4)));
  auto buf = MakeWeightBytes(t, n_in, RowBytes(t, n_in) * n_out);
  const TensorView w = View(t, n_out, n_in, buf.get());
  const std::vector<float> x = RandomF32(n_tokens * n_in);
  std::vector<float> y(static_cast<size_t>(n_tokens * n_out));
  for (auto _ : state) {
    MatMul(w, x.data(), n_tokens, y.data(), pool);
    benchmark::DoNotOptimize(y.data());
  }
  state.SetLabel(std::string(DTypeName(t)));
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * static_cast<double>(n_out * n_in * n_tokens) * 1e-9,
                                                 benchmark::Counter::kIsIterationInvariantRate);
}

// BF16 prefill both ways, as BM_MatVecBF16: path 1 = the native bf16 dot kernel, path 0 = MatMul (f32 dot kernel).
void BM_PrefillBF16(benchmark::State& state) {
  const bool native = state.range(0) != 0;
  if (native && !QuantDotSupports(DType::kBF16)) {
    state.SkipWithError("no native BF16 dot product on this CPU");
    return;
  }
  const int64_t n_out = state.range(1), n_in = state.range(2), n_tokens = state.range(3);
  ThreadPool pool(static_cast<int>(state.range(4)));
  auto buf = MakeWeightBytes(DType::kBF16, n_in, RowBytes(DType::kBF16, n_in) * n_out);
  const TensorView w = View(DType::kBF16, n_out, n_in, buf.get());
  const std::vector<float> x = RandomF32(n_tokens * n_in);
  std::vector<float> y(static_cast<size_t>(n_tokens * n_out));
  for (auto _ : state) {
    if (native) {
      NativeBf16MatMul(w, x.data(), n_tokens, y.data(), pool);
    } else {
      MatMul(w, x.data(), n_tokens, y.data(), pool);
    }
    benchmark::DoNotOptimize(y.data());
  }
  state.SetLabel(native ? "BF16 native (vdpbf16ps)" : "BF16 via f32");
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * static_cast<double>(n_out * n_in * n_tokens) * 1e-9,
                                                 benchmark::Counter::kIsIterationInvariantRate);
}

constexpr DType kTypes[] = {DType::kF32,   DType::kF16,   DType::kBF16, DType::kQ8_0,  DType::kQ8_0R,
                            DType::kQ4_0,  DType::kQ4_0R, DType::kQ4_K, DType::kQ4_KR, DType::kQ5_K,
                            DType::kQ5_KR, DType::kQ6_K,  DType::kQ6_KR};

void MatVecArgs(benchmark::internal::Benchmark* b) {
  for (int threads : {1, 2}) {
    for (DType t : kTypes) {
      for (auto [n_out, n_in] : {std::pair<int64_t, int64_t>{4096, 4096}, {2048, 8192}}) {
        b->Args({static_cast<int64_t>(t), n_out, n_in, threads});
      }
    }
  }
}

void MatVecHotArgs(benchmark::internal::Benchmark* b) {
  for (int threads : {1, 2}) {
    for (DType t : kTypes) {  // ~512 KiB of weights per thread (Zen 4/5 L2: 1 MiB per core)
      for (int64_t kib : {128, 512})
        b->Args({static_cast<int64_t>(t), threads * (kib << 10) / RowBytes(t, 2048), 2048, threads});
    }
  }
}

void SmallBatchArgs(benchmark::internal::Benchmark* b) {
  for (int threads : {1, 2}) {
    for (DType t :
         {DType::kQ8_0, DType::kQ8_0R, DType::kQ4_0, DType::kQ4_0R, DType::kQ4_K, DType::kQ4_KR, DType::kBF16}) {
      for (int64_t n_tokens : {1, 2, 4, 8, 16}) {
        for (auto [n_out, n_in] : {std::pair<int64_t, int64_t>{4096, 4096}, {2048, 2048}, {512, 2048}}) {
          b->Args({static_cast<int64_t>(t), n_out, n_in, n_tokens, threads});
        }
      }
    }
  }
}

void PrefillArgs(benchmark::internal::Benchmark* b) {
  for (int threads : {1, 2}) {
    for (DType t : kTypes) {
      for (int64_t n_tokens : {8, 64, 512}) b->Args({static_cast<int64_t>(t), 4096, 4096, n_tokens, threads});
    }
  }
}

BENCHMARK(BM_ReadBandwidth)->Arg(1)->Arg(2)->ArgNames({"threads"})->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_CopyBandwidth)->Arg(1)->Arg(2)->ArgNames({"threads"})->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_MatVec)
    ->Apply(MatVecArgs)
    ->ArgNames({"dtype", "n_out", "n_in", "threads"})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_MatVecHot)
    ->Apply(MatVecHotArgs)
    ->ArgNames({"dtype", "n_out", "n_in", "threads"})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_SmallBatch)
    ->Apply(SmallBatchArgs)
    ->ArgNames({"dtype", "n_out", "n_in", "n_tokens", "threads"})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_MatVecBF16)
    ->ArgsProduct({{0, 1}, {4096}, {4096}, {1, 2}})
    ->ArgNames({"native", "n_out", "n_in", "threads"})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_PrefillBF16)
    ->ArgsProduct({{0, 1}, {4096}, {4096}, {64, 512}, {1, 2}})
    ->ArgNames({"native", "n_out", "n_in", "n_tokens", "threads"})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Prefill)
    ->Apply(PrefillArgs)
    ->ArgNames({"dtype", "n_out", "n_in", "n_tokens", "threads"})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace herd::kernels

BENCHMARK_MAIN();
