// A fixed pool of worker threads with static work splitting. The calling thread takes part as thread 0.
// Workers spin briefly after each job (decode issues many small jobs back to back), then sleep.
//
// Invariants: one job runs at a time; Run() returns only after every thread has finished the job; a job's
// closure lives on the caller's stack for the whole Run() call. Not reentrant: never call Run() from a job.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <memory>
#include <vector>

#include "core/status.h"

namespace herd {

class ThreadPool {
 public:
  // n_threads <= 0 means the number of hardware threads. ResourceExhausted, naming the count, when the OS refuses
  // a thread (a process limit, too little address space for the stacks). Use this wherever the count comes from
  // a user.
  static Result<std::unique_ptr<ThreadPool>> Create(int n_threads);
  // As Create, for counts that cannot fail (tests): throws std::system_error when a thread cannot be started.
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  // Calls fn(thread_idx) once on every thread, thread_idx in [0, size()), and waits for all.
  template <typename Fn>
  void Run(Fn&& fn) {
    if (n_threads_ == 1) {
      fn(0);
      return;
    }
    RunImpl([](void* ctx, int idx) { (*static_cast<Fn*>(ctx))(idx); }, &fn);
  }

  // Splits [0, n) into size() contiguous ranges whose boundaries are multiples of `grain` and calls
  // fn(begin, end) for each non-empty one.
  template <typename Fn>
  void ParallelFor(int64_t n, Fn&& fn, int64_t grain = 1) {
    if (n <= 0) return;
    const int64_t n_chunks = (n + grain - 1) / grain;
    const int t = static_cast<int>(n_chunks < n_threads_ ? n_chunks : n_threads_);
    if (t <= 1) {
      fn(int64_t{0}, n);
      return;
    }
    Run([&](int idx) {
      if (idx >= t) return;
      const int64_t c0 = n_chunks * idx / t, c1 = n_chunks * (idx + 1) / t;
      const int64_t b = c0 * grain, e = c1 * grain < n ? c1 * grain : n;
      if (b < e) fn(b, e);
    });
  }

 private:
  using JobFn = void (*)(void*, int);
  struct NoThreads {};
  explicit ThreadPool(NoThreads) {}
  // Starts workers 1 .. n_threads - 1; throws std::system_error after stopping those it started.
  void Start(int n_threads);
  void Stop();
  void RunImpl(JobFn fn, void* ctx);
  void WorkerLoop(int idx);

  int n_threads_ = 1;
  std::vector<std::thread> workers_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
  JobFn job_fn_ = nullptr;
  void* job_ctx_ = nullptr;
  std::mutex mu_;
  std::condition_variable cv_;
};

}  // namespace herd
