#include "core/profile.h"

#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <string>

#include "core/thread_pool.h"

namespace herd::profile {
namespace {

// Busy-waits for `ms` milliseconds of the steady clock.
void Spin(double ms) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double, std::milli>(ms);
  while (std::chrono::steady_clock::now() < end) {
  }
}

std::map<std::string, OpStats> ByName() {
  std::map<std::string, OpStats> m;
  for (const OpStats& s : Snapshot()) m[s.name] = s;
  return m;
}

TEST(ProfileTest, OffRecordsNothing) {
  SetEnabled(false);
  Reset();
  ThreadPool pool(2);
  {
    Scope s("off");
    pool.Run([](int) { Spin(1); });
  }
  EXPECT_TRUE(Snapshot().empty());
}

// An inner scope pauses the outer one (no moment counted twice); a pool job counts every thread's time as busy and
// the driving thread's wait as run; work on the driving thread alone is half of two threads' time.
TEST(ProfileTest, ScopesAreExclusiveAndCountEveryThread) {
  ThreadPool pool(2);
  SetEnabled(true);
  Reset();
  const int64_t t0 = NowNs();
  {
    Scope outer("outer");
    Spin(20);
    {
      Scope inner("inner");
      pool.Run([](int) { Spin(20); });
    }
    Spin(10);
  }
  {
    Scope again("inner");  // the same op again: one entry, two calls
  }
  const double total_s = static_cast<double>(NowNs() - t0) * 1e-9;
  SetEnabled(false);
  auto m = ByName();
  ASSERT_EQ(m.size(), 2u);
  const OpStats& outer = m["outer"];
  const OpStats& inner = m["inner"];
  EXPECT_EQ(outer.calls, 1);
  EXPECT_EQ(inner.calls, 2);
  EXPECT_GE(outer.wall_s, 0.030);
  EXPECT_GE(inner.wall_s, 0.020);
  EXPECT_LE(outer.wall_s + inner.wall_s, total_s);
  EXPECT_EQ(outer.busy_s, 0);  // no pool job ran in it
  EXPECT_EQ(outer.run_s, 0);
  EXPECT_DOUBLE_EQ(outer.Utilization(2), 0.5);
  EXPECT_GE(inner.busy_s, 2 * 0.020);  // each thread's job, timed on that thread
  EXPECT_GE(inner.run_s, 0.020);
  EXPECT_LE(inner.run_s, inner.wall_s);
  EXPECT_GT(inner.Utilization(2), 0.0);
  EXPECT_LE(inner.Utilization(2), 1.0);
  Reset();
  EXPECT_TRUE(Snapshot().empty());
}

}  // namespace
}  // namespace herd::profile
