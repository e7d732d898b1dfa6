// Memory-bandwidth probe for `herd bench` (style.md 7): the bound that single-stream decoding cannot beat, measured
// in the same process as the figure it is compared with.
#pragma once

#include <cstdint>
#include <memory>

#include "core/mapped_file.h"
#include "core/status.h"
#include "core/thread_pool.h"

namespace herd::tools {

struct Bandwidth {
  double read_gbs = 0;   // read-only sweep, all threads, 1 or 8 streams per thread: the faster (decode reads only)
  double triad_gbs = 0;  // STREAM triad a = b + s * c, counted as 3 arrays of bytes (2 read + 1 write)
};

// Three buffers of `bytes` each (default 512 MiB: far beyond any cache), 2 MiB-aligned anonymous memory with huge
// pages where the OS offers them (AnonymousMemory), allocated and first-touched once by the threads that later
// read each part; Measure() can then run as often as wanted, e.g. right after each timed repetition, so that the
// bound and the figure it divides come from the same moment (a shared host's memory speed changes within
// minutes: bench/RESULTS.md). Not for hot paths: creation touches 3 x `bytes`.
class BandwidthProbe {
 public:
  // ResourceExhausted ("needs 3 x N MiB of memory; M MiB are available") when the three buffers would not fit in
  // the available memory, instead of an out-of-memory kill while touching them.
  static Result<std::unique_ptr<BandwidthProbe>> Create(ThreadPool& pool, int64_t bytes = int64_t{512} << 20);
  ~BandwidthProbe();
  BandwidthProbe(const BandwidthProbe&) = delete;
  BandwidthProbe& operator=(const BandwidthProbe&) = delete;

  // Best of `passes` passes, each a read sweep with one stream per thread, one with eight, and a triad, split
  // statically over the pool's threads.
  Bandwidth Measure(int passes = 5);

 private:
  BandwidthProbe(ThreadPool& pool, int64_t n) : pool_(pool), n_(n) {}
  // Runs fn(thread, i0, i1) on every thread of the pool over its static share [i0, i1) of the n_ elements.
  template <class Fn>
  void ForEachShare(const Fn& fn);

  ThreadPool& pool_;
  int64_t n_;  // floats per buffer
  std::unique_ptr<AnonymousMemory> buf_[3];
};

}  // namespace herd::tools
