// The monotonic clock every timing in herd reads (benchmarks, probes, the serving engine's latencies).
#pragma once

#include <chrono>

namespace herd {

// Seconds since an arbitrary fixed point (std::chrono::steady_clock): only differences mean anything.
inline double MonotonicSeconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace herd
