// Batch invariance of the matrix products (issue 12): each token's output row must not depend on how many other
// tokens share the call, on the token's index in the call, nor on the row or column split over threads. The
// serving engine runs one sequence's tokens alone or inside a step with many other sequences' tokens and promises
// bit-identical logits, which rests on this.
//
// For every weight dtype and every entry point of kernels/matmul.h (MatMul, MatMulRows, MatMulBatch,
// MatMulInputMajor and the *Scaled variants, FP8 included), each token is first multiplied alone (n_tokens = 1,
// one thread, the whole matrix); then batches of n tokens (n in kBatchSizes, 1 and 2 threads) whose tokens are the
// same activations in rotated and reversed orders, so that a token sits at a different index in each batch, must
// reproduce every row bit for bit. Shapes: a small one with odd column counts where the dtype allows it (F32, F16,
// BF16 and F8 rows whose length is not a multiple of any vector), and a long one that crosses the kernels' row and
// token blocks (cpu/matmul-inl.h kDotBlockBytes, cpu/qdot-inl.h kTokenBlockBytes).
// cpu/qdot.cpp compiles Highway's AVX3_DL target (AVX-512 VNNI) on request; ask for it here too so that the
// target list the tests iterate over includes it.
#ifndef HWY_WANT_AVX3_DL
#define HWY_WANT_AVX3_DL
#endif

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "core/half.h"
#include "core/thread_pool.h"
#include "hwy/highway.h"
#include "hwy/targets.h"
#include "kernels/kernels_test_util.h"
#include "kernels/matmul.h"
#include "kernels/quantize.h"
#include "kernels/repack.h"
#include "test_util.h"

namespace herd::kernels {
namespace {

using testing::FillUniform;
using testing::MakeWeights;
using testing::SeedTrace;
using testing::Weights;

// Under AddressSanitizer the products run ~50x slower: fewer batch sizes and no long rows there (the Release run
// covers them); every dtype, entry point and target still runs.
#ifdef HERD_SANITIZED  // tests/test_util.h
constexpr int64_t kBatchSizes[] = {1, 2, 5, 17, 33};
constexpr int64_t kMaxTokens = 33;
constexpr bool kLongRows = false;
#else
constexpr int64_t kBatchSizes[] = {1, 2, 3, 4, 5, 8, 17, 31, 32, 33, 64, 70};
constexpr int64_t kMaxTokens = 70;
constexpr bool kLongRows = true;
#endif

bool IsFloat(DType t) { return t == DType::kF32 || t == DType::kF16 || t == DType::kBF16 || t == DType::kF8_E4M3; }

// Random weights [rows, cols] of dtype t: F8_E4M3 as random codes (never NaN), the repacked types as their source
// types repacked (the source type when cols is not a multiple of 512), the rest quantized from uniform values in [-1,
// 1].
Weights RandomWeights(DType t, int64_t rows, int64_t cols, std::mt19937_64& rng) {
  if (t == DType::kF8_E4M3) {
    std::vector<uint8_t> b(static_cast<size_t>(rows * cols));
    for (uint8_t& v : b) {
      do {
        v = static_cast<uint8_t>(rng());
      } while ((v & 0x7F) == 0x7F);
    }
    return MakeWeights(t, rows, cols, std::move(b));
  }
  std::vector<float> f(static_cast<size_t>(rows * cols));
  FillUniform(rng, -1.0f, 1.0f, f.data(), rows * cols);
  const bool repacked = IsRepacked(t);
  const DType stored = repacked ? PackedFrom(t) : t;
  const int64_t row_bytes = RowBytes(stored, cols);
  std::vector<uint8_t> bytes(static_cast<size_t>(row_bytes * rows));
  for (int64_t r = 0; r < rows; ++r) QuantizeRow(stored, f.data() + r * cols, cols, bytes.data() + r * row_bytes);
  Weights w = MakeWeights(stored, rows, cols, std::move(bytes));
  if (!repacked || cols % 512 != 0) return w;
  // The packing directly (RepackRows keeps the source type on targets without the repacked kernels, and these must be
  // tested too).
  const int64_t packed_bytes = RowBytes(t, cols);
  std::vector<uint8_t> packed(static_cast<size_t>(rows * packed_bytes));
  for (int64_t r = 0; r < rows; ++r) PackRow(t, w.view.Row(r), cols, packed.data() + r * packed_bytes);
  return MakeWeights(t, rows, cols, std::move(packed));
}

std::vector<float> RandomScales(int64_t n, std::mt19937_64& rng) {
  std::vector<float> s(static_cast<size_t>(n));
  FillUniform(rng, 1e-3f, 2.0f, s.data(), n);
  return s;
}

// The order in which batch `variant` of n tokens takes the kMaxTokens activations: rotated by an offset that
// changes with n (variant 0) or reversed (variant 1), so each token's index differs from batch to batch.
std::vector<int64_t> TokenOrder(int64_t n, int variant) {
  std::vector<int64_t> order(static_cast<size_t>(n));
  const int64_t offset = (n * 7 + 3) % kMaxTokens;
  for (int64_t i = 0; i < n; ++i) {
    order[static_cast<size_t>(i)] =
        variant == 0 ? (offset + i) % kMaxTokens : (kMaxTokens - 1 - i - offset + 2 * kMaxTokens) % kMaxTokens;
  }
  return order;
}

// A product under test: fills y [n, width] (row stride y_stride) for the n activation rows at x, with a pool.
// `alone` [kMaxTokens, width] holds each token's row computed alone; every batch must reproduce it.
struct Product {
  std::string name;
  int64_t n_in = 0, width = 0;
  std::function<void(const float* x, int64_t n, float* y, ThreadPool& pool)> run;
};

void ExpectInvariant(const Product& p, const std::vector<float>& x_all) {
  SCOPED_TRACE(p.name);
  const int64_t n_in = p.n_in, width = p.width;
  ThreadPool pool1(1), pool2(2);
  std::vector<float> alone(static_cast<size_t>(kMaxTokens * width));
  for (int64_t i = 0; i < kMaxTokens; ++i) p.run(x_all.data() + i * n_in, 1, alone.data() + i * width, pool1);
  std::vector<float> x(static_cast<size_t>(kMaxTokens * n_in)), y(static_cast<size_t>(kMaxTokens * width));
  for (int64_t n : kBatchSizes) {
    for (int variant = 0; variant < 2; ++variant) {
      const std::vector<int64_t> order = TokenOrder(n, variant);
      for (int64_t i = 0; i < n; ++i) {
        std::memcpy(x.data() + i * n_in, x_all.data() + order[static_cast<size_t>(i)] * n_in, n_in * sizeof(float));
      }
      for (ThreadPool* pool : {&pool1, &pool2}) {
        std::fill(y.begin(), y.end(), -7.0f);
        p.run(x.data(), n, y.data(), *pool);
        for (int64_t i = 0; i < n; ++i) {
          const int64_t tok = order[static_cast<size_t>(i)];
          ASSERT_EQ(0, std::memcmp(y.data() + i * width, alone.data() + tok * width, width * sizeof(float)))
              << "n=" << n << ", " << pool->size() << " threads: token " << tok << " at index " << i
              << " differs from its product alone";
        }
      }
    }
  }
}

struct Shape {
  int64_t rows, cols;
};

// The shapes a dtype is tested with: a small one (odd column counts for the float types) and a long one.
std::vector<Shape> ShapesFor(DType t) {
  std::vector<Shape> shapes;
  if (IsFloat(t)) {
    shapes = {{37, 333}, {101, 45}, {72, 8197}};
  } else if (t == DType::kQ8_0 || t == DType::kQ4_0) {
    shapes = {{101, 288}, {72, 8192}};
  } else if (IsRepacked(t)) {
    shapes = {{101, 1024}, {72, 8192}};  // multiples of 512 (two groups in the short one)
  } else {
    shapes = {{101, 512}, {72, 8192}};  // K-quants: multiples of 256
  }
  if (!kLongRows) shapes.pop_back();
  return shapes;
}

// Parameters: a compiled Highway target the CPU supports (kernels called through HWY_DYNAMIC_DISPATCH run its
// code for the test) and a weight dtype.
class BatchInvarianceTest : public ::testing::TestWithParam<std::tuple<int64_t, DType>> {
 protected:
  void SetUp() override { hwy::SetSupportedTargetsForTest(std::get<0>(GetParam())); }
  void TearDown() override { hwy::SetSupportedTargetsForTest(0); }
  static DType Type() { return std::get<1>(GetParam()); }
};
class InputMajorBatchInvarianceTest : public BatchInvarianceTest {};

TEST_P(BatchInvarianceTest, RowMajorProducts) {
  const DType t = Type();
  for (const Shape& s : ShapesFor(t)) {
    const uint64_t seed = testing::BaseSeed() + static_cast<uint64_t>(s.rows * 100000 + s.cols);
    SCOPED_TRACE(std::string(DTypeName(t)) + " [" + std::to_string(s.rows) + ", " + std::to_string(s.cols) + "], " +
                 SeedTrace(seed));
    std::mt19937_64 rng(seed);
    const Weights w = RandomWeights(t, s.rows, s.cols, rng);
    const Weights w2 = RandomWeights(t, 40, s.cols, rng);  // a second job of the same dtype in MatMulBatch
    const Weights q4 = RandomWeights(DType::kQ4_0, 24, s.cols / 32 * 32, rng);
    const std::vector<float> scale = RandomScales(s.rows, rng);
    std::vector<float> x_all(static_cast<size_t>(kMaxTokens * s.cols));
    FillUniform(rng, -2.0f, 2.0f, x_all.data(), kMaxTokens * s.cols);
    const int64_t rows = s.rows, cols = s.cols;
    std::vector<Product> products;
    if (t != DType::kF8_E4M3) {
      products.push_back({"MatMul", cols, rows, [&](const float* x, int64_t n, float* y, ThreadPool& pool) {
                            MatMul(w.view, x, n, y, pool);
                          }});
      // Rows in three ranges, each on the calling thread (MoE experts call it so); cut points off any tile.
      products.push_back({"MatMulRows", cols, rows, [&](const float* x, int64_t n, float* y, ThreadPool& pool) {
                            const int64_t cuts[] = {0, pool.size() == 1 ? 5 : 13, rows - 3, rows};
                            for (int c = 0; c < 3; ++c) MatMulRows(w.view, x, n, y, rows, cuts[c], cuts[c + 1]);
                          }});
      // A batch of three jobs on the same x (one shared quantization) plus a Q4_0 one when the columns allow it;
      // the product's rows are job 0's.
      products.push_back(
          {"MatMulBatch", cols, rows, [&](const float* x, int64_t n, float* y, ThreadPool& pool) {
             std::vector<float> y2(static_cast<size_t>(n * 40)), y3(static_cast<size_t>(n * 24));
             const MatMulJob jobs[3] = {{&w2.view, x, y2.data()}, {&w.view, x, y}, {&q4.view, x, y3.data()}};
             MatMulBatch(jobs, cols % 32 == 0 ? 3 : 2, n, pool);
           }});
    }
    products.push_back({"MatMulScaled", cols, rows, [&](const float* x, int64_t n, float* y, ThreadPool& pool) {
                          MatMulScaled(w.view, scale.data(), x, n, y, pool);
                        }});
    products.push_back({"MatMulRowsScaled", cols, rows, [&](const float* x, int64_t n, float* y, ThreadPool& pool) {
                          const int64_t cuts[] = {0, pool.size() == 1 ? 7 : 33, rows};
                          for (int c = 0; c < 2; ++c) {
                            MatMulRowsScaled(w.view, scale.data(), x, n, y, rows, cuts[c], cuts[c + 1]);
                          }
                        }});
    for (const Product& p : products) ExpectInvariant(p, x_all);
  }
}

TEST_P(InputMajorBatchInvarianceTest, Products) {
  const DType t = Type();
  ASSERT_TRUE(MatMulInputMajorScaledSupports(t));
  // [n_in, n_cols]: odd widths, and a long input dimension.
  std::vector<Shape> shapes = {{333, 83}, {96, 100}, {4100, 40}};
  if (!kLongRows) shapes.pop_back();
  for (const Shape& s : shapes) {
    const uint64_t seed = testing::BaseSeed() + 77 + static_cast<uint64_t>(s.rows * 1000 + s.cols);
    SCOPED_TRACE(std::string(DTypeName(t)) + " input-major [" + std::to_string(s.rows) + ", " + std::to_string(s.cols) +
                 "], " + SeedTrace(seed));
    std::mt19937_64 rng(seed);
    const Weights w = RandomWeights(t, s.rows, s.cols, rng);
    const std::vector<float> scale = RandomScales(s.cols, rng);
    std::vector<float> x_all(static_cast<size_t>(kMaxTokens * s.rows));
    FillUniform(rng, -2.0f, 2.0f, x_all.data(), kMaxTokens * s.rows);
    const int64_t n_in = s.rows, n_cols = s.cols;
    const int64_t c0 = 3, c1 = n_cols - 2;  // a column range off the vector grid
    std::vector<Product> products;
    if (t != DType::kF8_E4M3) {
      products.push_back({"MatMulInputMajor", n_in, n_cols, [&](const float* x, int64_t n, float* y, ThreadPool& pool) {
                            MatMulInputMajor(w.view, 0, n_cols, x, n, y, pool);
                          }});
    }
    products.push_back(
        {"MatMulInputMajorScaled", n_in, n_cols, [&](const float* x, int64_t n, float* y, ThreadPool& pool) {
           MatMulInputMajorScaled(w.view, scale.data(), 0, n_cols, x, n, y, pool);
         }});
    // Columns [c0, c1) in two calls, placed back at their columns: must equal the whole range's.
    products.push_back({"MatMulInputMajorScaled (column ranges)", n_in, n_cols,
                        [&](const float* x, int64_t n, float* y, ThreadPool& pool) {
                          const int64_t mid = (c0 + c1) / 2 + 1;
                          std::vector<float> part(static_cast<size_t>(n * n_cols));
                          for (auto [b, e] : {std::pair<int64_t, int64_t>{0, c0}, {c0, mid}, {mid, c1}, {c1, n_cols}}) {
                            MatMulInputMajorScaled(w.view, scale.data(), b, e, x, n, part.data(), pool);
                            for (int64_t i = 0; i < n; ++i) {
                              std::memcpy(y + i * n_cols + b, part.data() + i * (e - b), (e - b) * sizeof(float));
                            }
                          }
                        }});
    for (const Product& p : products) ExpectInvariant(p, x_all);
  }
}

std::string ParamName(const ::testing::TestParamInfo<std::tuple<int64_t, DType>>& p) {
  return std::string(hwy::TargetName(std::get<0>(p.param))) + "_" + std::string(DTypeName(std::get<1>(p.param)));
}

INSTANTIATE_TEST_SUITE_P(TargetsAndTypes, BatchInvarianceTest,
                         ::testing::Combine(::testing::ValuesIn(hwy::SupportedAndGeneratedTargets()),
                                            ::testing::Values(DType::kF32, DType::kF16, DType::kBF16, DType::kF8_E4M3,
                                                              DType::kQ8_0, DType::kQ8_0R, DType::kQ4_0, DType::kQ4_0R,
                                                              DType::kQ4_K, DType::kQ4_KR, DType::kQ5_K, DType::kQ5_KR,
                                                              DType::kQ6_K, DType::kQ6_KR)),
                         ParamName);
INSTANTIATE_TEST_SUITE_P(TargetsAndTypes, InputMajorBatchInvarianceTest,
                         ::testing::Combine(::testing::ValuesIn(hwy::SupportedAndGeneratedTargets()),
                                            ::testing::Values(DType::kF32, DType::kF16, DType::kBF16, DType::kF8_E4M3)),
                         ParamName);

}  // namespace
}  // namespace herd::kernels
