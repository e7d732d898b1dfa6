// The compute-ceiling probe: each kind's kernel counts its operations linearly in the steps it runs, the measured
// rates are positive where the CPU has the instructions (int8 and f32 everywhere herd runs), on one thread and two.
#include "tools/compute.h"

#include <gtest/gtest.h>

#include "kernels/cpu/qdot.h"

namespace herd::tools {
namespace {

TEST(ComputePeakTest, CountsAndRates) {
  for (auto kind : {kernels::PeakKind::kInt8, kernels::PeakKind::kF32, kernels::PeakKind::kBf16}) {
    const int64_t one = kernels::PeakOps(kind, 1000);
    EXPECT_EQ(kernels::PeakOps(kind, 3000), 3 * one);
    if (kind != kernels::PeakKind::kBf16) {
      EXPECT_GT(one, 0);
    }
  }
  auto pool1 = ThreadPool::Create(1);
  auto pool2 = ThreadPool::Create(2);
  ASSERT_TRUE(pool1.ok() && pool2.ok());
  const ComputePeak one = MeasureComputePeak(**pool1, 10, 2);
  const ComputePeak two = MeasureComputePeak(**pool2, 10, 2);
  EXPECT_GT(one.int8_gops, 1.0);
  EXPECT_GT(one.f32_gflops, 1.0);
  EXPECT_GT(two.f32_gflops, 1.0);  // (no ratio: other tests may share the cores)
}

}  // namespace
}  // namespace herd::tools
