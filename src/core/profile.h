// Opt-in per-op timing of forward steps (herd bench --profile): where a step's time goes and how busy the thread
// pool is in each part of it. Off by default; while off, a Scope costs one relaxed atomic load and ThreadPool one
// more, so the hot path pays nothing measurable.
//
// A Scope names an op (a string literal) on the thread that drives the step. Scopes are exclusive: an inner scope
// pauses the one around it, so every moment of the driving thread counts for at most one op. For each op:
//   wall: the driving thread's time inside it;
//   busy: the time every pool thread spent running jobs started from it (ThreadPool::Run, measured per thread);
//   run:  the driving thread's time inside Run from it (so wall - run is the time only that thread worked).
// The pool's threads were busy for busy + (wall - run) of the threads x wall available: Utilization.
#pragma once

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace herd::profile {

namespace internal {
extern std::atomic<bool> g_enabled;
}  // namespace internal

inline bool Enabled() { return internal::g_enabled.load(std::memory_order_relaxed); }
// Turns timing on or off (call between steps, not during one).
void SetEnabled(bool on);
// Clears the accumulated figures.
void Reset();

struct OpStats {
  std::string name;
  int64_t calls = 0;
  double wall_s = 0, busy_s = 0, run_s = 0;
  // Share of the threads' time that did work: (busy + wall - run) / (threads x wall), in [0, 1].
  double Utilization(int threads) const;
};
// The ops timed since the last Reset, in the order they were first seen.
std::vector<OpStats> Snapshot();

// For ThreadPool: the nanoseconds one thread ran a job, and the driving thread spent in one Run.
void AddJobBusy(int64_t ns);
void AddRunWall(int64_t ns);
int64_t NowNs();

class Scope {
 public:
  explicit Scope(const char* name);
  ~Scope();
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;

 private:
  void Open();   // start (or resume) counting
  void Close();  // add what was counted since Open

  const char* name_;
  bool on_;
  Scope* outer_ = nullptr;
  int64_t t0_ = 0, busy0_ = 0, run0_ = 0;
  int64_t wall_ = 0, busy_ = 0, run_ = 0;
};

// Ops timed one after another: Next ends the current op (if any) and starts `name`; End ends it.
class OpSequence {
 public:
  explicit OpSequence(const char* first) { Next(first); }
  void Next(const char* name) {
    op_.reset();
    op_.emplace(name);
  }
  void End() { op_.reset(); }

 private:
  std::optional<Scope> op_;
};

}  // namespace herd::profile
