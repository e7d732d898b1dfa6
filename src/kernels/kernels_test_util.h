// Helpers shared by the kernel tests: running a test once per compiled-and-supported Highway target (as
// gemma.cpp's tests do), reproducible seeds, misaligned f32 buffers and weight tensors that own their bytes.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "core/status.h"
#include "core/tensor.h"
#include "hwy/highway.h"
#include "hwy/targets.h"

namespace herd::kernels::testing {

// A test fixture parameterized by Highway target: kernels called through HWY_DYNAMIC_DISPATCH run the
// target's code for the duration of the test.
class TargetTest : public ::testing::TestWithParam<int64_t> {
 protected:
  void SetUp() override { hwy::SetSupportedTargetsForTest(GetParam()); }
  void TearDown() override { hwy::SetSupportedTargetsForTest(0); }
};

inline std::string TargetParamName(const ::testing::TestParamInfo<int64_t>& info) {
  return hwy::TargetName(info.param);
}

#define HERD_INSTANTIATE_FOR_TARGETS(suite)                                                        \
  INSTANTIATE_TEST_SUITE_P(Targets, suite, ::testing::ValuesIn(hwy::SupportedAndGeneratedTargets()), \
                           ::herd::kernels::testing::TargetParamName)

// Seed of a test: $HERD_TEST_SEED if set (to reproduce a failure), else a fixed default. Tests add the seed to
// every failure message with SCOPED_TRACE.
inline uint64_t BaseSeed() {
  const char* env = std::getenv("HERD_TEST_SEED");
  return env != nullptr ? std::strtoull(env, nullptr, 10) : 20250405u;
}

inline std::string SeedTrace(uint64_t seed) {
  return "seed " + std::to_string(seed) + " (rerun with HERD_TEST_SEED=" + std::to_string(BaseSeed()) + ")";
}

// Unit roundoff of f32 (2^-24): |fl(a op b) - a op b| <= u |a op b|.
constexpr double kU = 1.0 / 16777216.0;

// n floats starting `offset_floats` past a 64-byte boundary, so SIMD code sees misaligned pointers.
class F32Buffer {
 public:
  F32Buffer(int64_t n, int64_t offset_floats) : storage_(static_cast<size_t>(n + offset_floats + 16)) {
    const uintptr_t base = reinterpret_cast<uintptr_t>(storage_.data());
    const uintptr_t aligned = (base + 63) & ~uintptr_t{63};
    data_ = reinterpret_cast<float*>(aligned) + offset_floats;
    n_ = n;
  }
  float* data() { return data_; }
  const float* data() const { return data_; }
  float& operator[](int64_t i) { return data_[i]; }
  float operator[](int64_t i) const { return data_[i]; }
  int64_t size() const { return n_; }

 private:
  std::vector<float> storage_;
  float* data_;
  int64_t n_;
};

inline void FillUniform(std::mt19937_64& rng, float lo, float hi, float* x, int64_t n) {
  std::uniform_real_distribution<float> dist(lo, hi);
  for (int64_t i = 0; i < n; ++i) x[i] = dist(rng);
}

// Owns the bytes of a weight tensor [rows, cols] of type t and a view of them.
struct Weights {
  std::vector<uint8_t> bytes;
  TensorView view;
};
inline Weights MakeWeights(DType t, int64_t rows, int64_t cols, std::vector<uint8_t> bytes) {
  Weights w;
  w.bytes = std::move(bytes);
  if (w.bytes.empty()) w.bytes.resize(1);  // a valid pointer even for empty tensors
  Result<TensorView> v = MakeTensorView(t, {rows, cols}, w.bytes.data(), RowBytes(t, cols) * rows, "test");
  HERD_CHECK(v.ok());
  w.view = *v;
  return w;
}

}  // namespace herd::kernels::testing
