#include "tools/bandwidth.h"

#include <algorithm>
#include <memory>
#include <vector>

#include "core/clock.h"
#include "kernels/ops.h"

namespace herd::tools {
namespace {

// Sum of the 64-bit words of [p, p + n) read as `streams` concurrent sequential streams (one per equal part), so
// the hardware prefetchers of a core track several streams at once, as they do for the rows of a matrix-vector
// product. Integer adds vectorize without reassociation concerns.
template <int kStreams>
uint64_t ReadStreams(const uint64_t* p, int64_t n) {
  const int64_t part = n / kStreams;
  uint64_t acc[kStreams] = {};
  for (int64_t i = 0; i < part; ++i) {
    for (int s = 0; s < kStreams; ++s) acc[s] += p[s * part + i];
  }
  uint64_t sum = 0;
  for (int s = 0; s < kStreams; ++s) sum += acc[s];
  for (int64_t i = kStreams * part; i < n; ++i) sum += p[i];
  return sum;
}

}  // namespace

template <class Fn>
void BandwidthProbe::ForEachShare(const Fn& fn) {
  const int64_t n = n_;
  const int threads = pool_.size();
  pool_.Run([&](int t) { fn(t, n * t / threads, n * (t + 1) / threads); });
}

Result<std::unique_ptr<BandwidthProbe>> BandwidthProbe::Create(ThreadPool& pool, int64_t bytes) {
  const int64_t n = std::max<int64_t>(bytes / 8, 2048) * 2;
  const int64_t buffer_bytes = n * static_cast<int64_t>(sizeof(float));
  // AnonymousMemory checks each buffer alone, and the available memory only falls as pages are touched.
  if (auto avail = AvailableMemoryBytes(); avail && 3 * buffer_bytes > *avail) {
    return ResourceExhausted("needs 3 x " + std::to_string(buffer_bytes >> 20) + " MiB of memory; " +
                             std::to_string(*avail >> 20) + " MiB are available");
  }
  std::unique_ptr<BandwidthProbe> probe(new BandwidthProbe(pool, n));
  // Huge pages where the OS offers them, as --repack's weights get: the bound must not be lowered by TLB misses
  // that the weights themselves can avoid.
  for (auto& buf : probe->buf_) {
    auto m = AnonymousMemory::Allocate(static_cast<uint64_t>(buffer_bytes));
    if (!m.ok()) return m.status();
    buf = std::move(m).value();
  }
  float* a = reinterpret_cast<float*>(probe->buf_[0]->data());
  float* b = reinterpret_cast<float*>(probe->buf_[1]->data());
  float* c = reinterpret_cast<float*>(probe->buf_[2]->data());
  // First touch by the threads that later read each range.
  probe->ForEachShare([&](int, int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      a[i] = 0.0f;
      b[i] = 1.0f;
      c[i] = 0.5f;
    }
  });
  return probe;
}

BandwidthProbe::~BandwidthProbe() = default;

Bandwidth BandwidthProbe::Measure(int passes) {
  float* a = reinterpret_cast<float*>(buf_[0]->data());
  const float* b = reinterpret_cast<const float*>(buf_[1]->data());
  const float* c = reinterpret_cast<const float*>(buf_[2]->data());
  const int64_t n = n_;
  const int threads = pool_.size();
  Bandwidth best;
  std::vector<float> sink(static_cast<size_t>(threads), 0.0f);
  const uint64_t* words = reinterpret_cast<const uint64_t*>(c);  // n / 2 of them: n is even
  for (int p = 0; p < passes; ++p) {
    // Read: one stream per thread (kernels::Dot), then eight per thread; the faster is the bound.
    double t0 = MonotonicSeconds();
    ForEachShare(
        [&](int t, int64_t i0, int64_t i1) { sink[static_cast<size_t>(t)] += kernels::Dot(b + i0, b + i0, i1 - i0); });
    best.read_gbs = std::max(best.read_gbs, static_cast<double>(n) * 4 / (MonotonicSeconds() - t0) / 1e9);
    t0 = MonotonicSeconds();
    ForEachShare([&](int t, int64_t i0, int64_t i1) {
      sink[static_cast<size_t>(t)] += static_cast<float>(ReadStreams<8>(words + i0 / 2, i1 / 2 - i0 / 2) & 1);
    });
    best.read_gbs = std::max(best.read_gbs, static_cast<double>(n) * 4 / (MonotonicSeconds() - t0) / 1e9);
    // Triad as a += s * c (kernels::Axpy): reads a and c, writes a, i.e. STREAM's 3 arrays per element.
    t0 = MonotonicSeconds();
    ForEachShare([&](int, int64_t i0, int64_t i1) { kernels::Axpy(3.0f, c + i0, a + i0, i1 - i0); });
    best.triad_gbs = std::max(best.triad_gbs, static_cast<double>(n) * 12 / (MonotonicSeconds() - t0) / 1e9);
  }
  volatile float keep = 0.0f;
  for (float s : sink) keep = keep + s;
  (void)keep;
  return best;
}

}  // namespace herd::tools
