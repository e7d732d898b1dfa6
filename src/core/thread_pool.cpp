// ThreadPool implementation: generation counter + spin-then-sleep workers.
#include "core/thread_pool.h"

#include <system_error>

#include "core/profile.h"
#include "core/status.h"

namespace herd {
namespace {
constexpr int kSpinIterations = 1 << 16;

inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}
}  // namespace

ThreadPool::ThreadPool(int n_threads) { Start(n_threads); }

Result<std::unique_ptr<ThreadPool>> ThreadPool::Create(int n_threads) {
  std::unique_ptr<ThreadPool> pool(new ThreadPool(NoThreads{}));
  try {
    pool->Start(n_threads);
  } catch (const std::system_error& e) {
    return ResourceExhausted("cannot start " + std::to_string(pool->n_threads_) + " threads (" + e.what() +
                             "); use fewer with -t");
  }
  return pool;
}

void ThreadPool::Start(int n_threads) {
  if (n_threads <= 0) n_threads = static_cast<int>(std::thread::hardware_concurrency());
  if (n_threads <= 0) n_threads = 1;
  n_threads_ = n_threads;
  workers_.reserve(static_cast<size_t>(n_threads_ - 1));
  try {
    for (int i = 1; i < n_threads_; ++i) workers_.emplace_back([this, i] { WorkerLoop(i); });
  } catch (...) {
    Stop();
    throw;
  }
}

void ThreadPool::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_.store(true);
    generation_.fetch_add(1);
  }
  cv_.notify_all();
  for (auto& w : workers_) w.join();
  workers_.clear();
}

ThreadPool::~ThreadPool() { Stop(); }

void ThreadPool::RunImpl(JobFn fn, void* ctx) {
  job_fn_ = fn;
  job_ctx_ = ctx;
  pending_.store(n_threads_ - 1, std::memory_order_relaxed);
  {
    std::lock_guard<std::mutex> lock(mu_);
    generation_.fetch_add(1, std::memory_order_release);
  }
  cv_.notify_all();
  const bool timed = profile::Enabled();
  const int64_t t0 = timed ? profile::NowNs() : 0;
  fn(ctx, 0);
  if (timed) profile::AddJobBusy(profile::NowNs() - t0);
  // Spin briefly (the workers usually finish within microseconds of us), then yield so that a descheduled worker
  // can run when the machine is oversubscribed, instead of burning our whole time slice.
  for (int spin = 0; pending_.load(std::memory_order_acquire) != 0; ++spin) {
    if (spin < kSpinIterations / 16) {
      CpuRelax();
    } else {
      std::this_thread::yield();
    }
  }
  if (timed) profile::AddRunWall(profile::NowNs() - t0);
}

void ThreadPool::WorkerLoop(int idx) {
  uint64_t seen = 0;
  for (;;) {
    uint64_t g = generation_.load(std::memory_order_acquire);
    for (int spin = 0; g == seen && spin < kSpinIterations; ++spin) {
      if (spin % 1024 == 1023) {
        std::this_thread::yield();  // let other runnable threads in when cores are oversubscribed
      } else {
        CpuRelax();
      }
      g = generation_.load(std::memory_order_acquire);
    }
    if (g == seen) {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return generation_.load(std::memory_order_acquire) != seen; });
      g = generation_.load(std::memory_order_acquire);
    }
    seen = g;
    if (stop_.load()) return;
    if (profile::Enabled()) {
      const int64_t t0 = profile::NowNs();
      job_fn_(job_ctx_, idx);
      profile::AddJobBusy(profile::NowNs() - t0);
    } else {
      job_fn_(job_ctx_, idx);
    }
    pending_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

}  // namespace herd
