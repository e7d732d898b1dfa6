#include "core/profile.h"

#include <algorithm>
#include <chrono>
#include <mutex>

namespace herd::profile {

namespace internal {
std::atomic<bool> g_enabled{false};
}  // namespace internal

namespace {

std::atomic<int64_t> g_busy_ns{0}, g_run_ns{0};

struct Entry {
  const char* key;  // the Scope's literal (compared by pointer, then by text: one name may come from two literals)
  OpStats stats;
};

std::mutex& TableMutex() {
  static std::mutex mu;
  return mu;
}
std::vector<Entry>& Table() {
  static std::vector<Entry> table;
  return table;
}

thread_local Scope* t_top = nullptr;

}  // namespace

void SetEnabled(bool on) { internal::g_enabled.store(on, std::memory_order_relaxed); }

void Reset() {
  std::lock_guard<std::mutex> lock(TableMutex());
  Table().clear();
  g_busy_ns.store(0);
  g_run_ns.store(0);
}

double OpStats::Utilization(int threads) const {
  if (wall_s <= 0 || threads <= 0) return 0;
  return std::clamp((busy_s + wall_s - run_s) / (threads * wall_s), 0.0, 1.0);
}

std::vector<OpStats> Snapshot() {
  std::lock_guard<std::mutex> lock(TableMutex());
  std::vector<OpStats> out;
  for (const Entry& e : Table()) out.push_back(e.stats);
  return out;
}

void AddJobBusy(int64_t ns) { g_busy_ns.fetch_add(ns, std::memory_order_relaxed); }
void AddRunWall(int64_t ns) { g_run_ns.fetch_add(ns, std::memory_order_relaxed); }

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

Scope::Scope(const char* name) : name_(name), on_(Enabled()) {
  if (!on_) return;
  outer_ = t_top;
  if (outer_ != nullptr) outer_->Close();
  t_top = this;
  Open();
}

Scope::~Scope() {
  if (!on_) return;
  Close();
  t_top = outer_;
  {
    std::lock_guard<std::mutex> lock(TableMutex());
    std::vector<Entry>& table = Table();
    auto it = std::find_if(table.begin(), table.end(), [&](const Entry& e) { return e.key == name_; });
    if (it == table.end()) {
      it = std::find_if(table.begin(), table.end(), [&](const Entry& e) { return e.stats.name == name_; });
    }
    if (it == table.end()) {
      table.push_back({name_, OpStats{name_}});
      it = table.end() - 1;
    }
    OpStats& s = it->stats;
    ++s.calls;
    s.wall_s += static_cast<double>(wall_) * 1e-9;
    s.busy_s += static_cast<double>(busy_) * 1e-9;
    s.run_s += static_cast<double>(run_) * 1e-9;
  }
  if (outer_ != nullptr) outer_->Open();
}

void Scope::Open() {
  t0_ = NowNs();
  busy0_ = g_busy_ns.load(std::memory_order_relaxed);
  run0_ = g_run_ns.load(std::memory_order_relaxed);
}

void Scope::Close() {
  wall_ += NowNs() - t0_;
  busy_ += g_busy_ns.load(std::memory_order_relaxed) - busy0_;
  run_ += g_run_ns.load(std::memory_order_relaxed) - run0_;
}

}  // namespace herd::profile
