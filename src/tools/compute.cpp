#include "tools/compute.h"

#include <algorithm>
#include <atomic>

#include "core/clock.h"
#include "kernels/cpu/qdot.h"

namespace herd::tools {
namespace {

// G operations per second of `kind` on all threads at once, `iters` steps per thread.
double Rate(ThreadPool& pool, kernels::PeakKind kind, int64_t iters) {
  std::atomic<int64_t> ops{0};
  const double t0 = MonotonicSeconds();
  pool.Run([&](int) { ops += kernels::PeakOps(kind, iters); });
  const double s = MonotonicSeconds() - t0;
  return s > 0 ? static_cast<double>(ops.load()) / s / 1e9 : 0;
}

double Measure(ThreadPool& pool, kernels::PeakKind kind, double ms, int passes) {
  if (kernels::PeakOps(kind, 1) == 0) return 0;  // not on this CPU
  // Calibrate the steps so that one pass takes about `ms`.
  int64_t iters = 1 << 12;
  for (;;) {
    const double t0 = MonotonicSeconds();
    pool.Run([&](int) { kernels::PeakOps(kind, iters); });
    const double s = MonotonicSeconds() - t0;
    if (s * 1000 >= ms / 4 || iters >= (int64_t{1} << 40)) {
      iters = std::max<int64_t>(1, static_cast<int64_t>(static_cast<double>(iters) * ms / std::max(1e-6, s * 1000)));
      break;
    }
    iters *= 4;
  }
  double best = 0;
  for (int p = 0; p < std::max(1, passes); ++p) best = std::max(best, Rate(pool, kind, iters));
  return best;
}

}  // namespace

ComputePeak MeasureComputePeak(ThreadPool& pool, double ms, int passes) {
  ComputePeak c;
  c.int8_gops = Measure(pool, kernels::PeakKind::kInt8, ms, passes);
  c.f32_gflops = Measure(pool, kernels::PeakKind::kF32, ms, passes);
  c.bf16_gflops = Measure(pool, kernels::PeakKind::kBf16, ms, passes);
  return c;
}

}  // namespace herd::tools
