// Every CUDA kernel of kernels/cuda/cuda.h against the CPU scalar references (kernels/ref) on random shapes with
// ragged edges: rows not a multiple of a block's rows, 1..7 and 64/65 tokens, odd widths, unaligned rows that take
// the element-at-a-time kernels. ctest label `gpu`: without a usable device every test skips with "no CUDA device:
// <reason>", and `make test` says how many were not run (gpu-check.sh counts a skip as a failure on the GPU machine).
//
// Tolerances follow the arithmetic: the GPU dequantizes weights exactly and accumulates f32 products, so a dot
// product of n terms is within about n * 2^-24 * sum |w x| of the exact value the references compute in double.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "kernels/cuda/cuda.h"
#include "kernels/moe.h"
#include "kernels/quantize.h"
#include "kernels/ref/attention.h"
#include "kernels/ref/matmul.h"
#include "kernels/ref/ops.h"
#include "kernels/ref/rope.h"

namespace herd {
// Test names and ctest listings show "F32", not the enum's bytes.
void PrintTo(DType t, std::ostream* os) { *os << DTypeName(t); }
}  // namespace herd

namespace herd::kernels::cuda {
namespace {

constexpr double kU = 1.0 / (1 << 24);  // unit roundoff of f32

class CudaKernels : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    if (!DeviceAvailable(&why)) GTEST_SKIP() << "no CUDA device: " << why;
  }
};

// Device copies of host vectors; a failure is a test failure (and an empty buffer, which the kernels reject).
template <typename T>
DeviceBuffer ToDevice(const std::vector<T>& v, size_t offset_bytes = 0) {
  auto b = DeviceBuffer::Allocate(v.size() * sizeof(T) + offset_bytes + 16);
  EXPECT_TRUE(b.ok()) << b.status().ToString();
  if (!b.ok()) return {};
  if (!v.empty()) {  // byte by byte: GCC 12 reports an impossible memcpy size here (-Wstringop-overflow)
    std::vector<uint8_t> bytes(offset_bytes, 0);
    const auto* p = reinterpret_cast<const uint8_t*>(v.data());
    bytes.insert(bytes.end(), p, p + v.size() * sizeof(T));
    const Status st = b->Upload(bytes.data(), bytes.size());
    EXPECT_TRUE(st.ok()) << st.ToString();
  }
  return std::move(b).value();
}

template <typename T>
std::vector<T> FromDevice(const DeviceBuffer& b, size_t n) {
  std::vector<T> v(n);
  const Status st = b.Download(v.data(), n * sizeof(T));
  EXPECT_TRUE(st.ok()) << st.ToString();
  return v;
}

std::vector<float> RandomVector(size_t n, std::mt19937* rng, float lo = -1.0f, float hi = 1.0f) {
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = u(*rng);
  return v;
}

#define EXPECT_OK(expr)                                       \
  do {                                                        \
    const ::herd::Status st_ = (expr);                        \
    EXPECT_TRUE(st_.ok()) << #expr << ": " << st_.ToString(); \
  } while (0)

// Weights quantized from random values, and their exact dequantization (what every kernel must multiply).
struct Weights {
  std::vector<uint8_t> bytes;
  std::vector<float> exact;
};

Weights MakeWeights(DType t, int64_t n_out, int64_t n_in, std::mt19937* rng) {
  Weights w;
  const int64_t rb = RowBytes(t, n_in);
  w.bytes.resize(static_cast<size_t>(rb * n_out));
  w.exact.resize(static_cast<size_t>(n_out * n_in));
  const std::vector<float> src = RandomVector(static_cast<size_t>(n_out * n_in), rng);
  for (int64_t o = 0; o < n_out; ++o) {
    QuantizeRow(t, src.data() + o * n_in, n_in, w.bytes.data() + o * rb);
    ref::DequantizeRow(t, w.bytes.data() + o * rb, n_in, w.exact.data() + o * n_in);
  }
  return w;
}

// Runs MatMul and compares every output with the double product of the exact weights, within
// 2 (n_in + 2) 2^-24 sum_i |w x| (the f32 accumulation bound).
void CheckMatMul(DType t, int64_t n_out, int64_t n_in, int64_t n_tokens, std::mt19937* rng, size_t w_offset = 0,
                 size_t x_offset = 0) {
  SCOPED_TRACE(std::string(DTypeName(t)) + " n_out " + std::to_string(n_out) + " n_in " + std::to_string(n_in) +
               " n_tokens " + std::to_string(n_tokens) + " w_offset " + std::to_string(w_offset) + " x_offset " +
               std::to_string(x_offset));
  const Weights w = MakeWeights(t, n_out, n_in, rng);
  const std::vector<float> x = RandomVector(static_cast<size_t>(n_tokens * n_in), rng);
  DeviceBuffer wd = ToDevice(w.bytes, w_offset), xd = ToDevice(x, x_offset);
  auto yd = DeviceBuffer::Allocate(static_cast<size_t>(n_tokens * n_out) * sizeof(float));
  ASSERT_TRUE(yd.ok()) << yd.status().ToString();
  EXPECT_OK(yd->Fill(0xFF));  // NaN everywhere: an output the kernel forgets shows
  const auto* wp = static_cast<const uint8_t*>(wd.data()) + w_offset;
  const auto* xp = reinterpret_cast<const float*>(static_cast<const uint8_t*>(xd.data()) + x_offset);
  EXPECT_OK(MatMul(t, wp, n_out, n_in, xp, n_tokens, yd->as<float>()));
  EXPECT_OK(Synchronize());
  const std::vector<float> y = FromDevice<float>(*yd, static_cast<size_t>(n_tokens * n_out));
  int bad = 0;
  for (int64_t tk = 0; tk < n_tokens && bad < 5; ++tk) {
    for (int64_t o = 0; o < n_out && bad < 5; ++o) {
      double exact = 0.0, mag = 0.0;
      for (int64_t i = 0; i < n_in; ++i) {
        const double p = static_cast<double>(w.exact[o * n_in + i]) * x[tk * n_in + i];
        exact += p;
        mag += std::fabs(p);
      }
      const double got = y[tk * n_out + o];
      const double tol = 2.0 * static_cast<double>(n_in + 2) * kU * mag + 1e-30;
      if (!(std::fabs(got - exact) <= tol)) {
        ++bad;
        ADD_FAILURE() << "y[" << tk << ", " << o << "] = " << got << ", exact " << exact << ", |diff| "
                      << std::fabs(got - exact) << " > " << tol;
      }
    }
  }
}

class CudaMatMul : public CudaKernels, public ::testing::WithParamInterface<DType> {};

TEST_P(CudaMatMul, MatchesReferenceOnRaggedShapes) {
  const DType t = GetParam();
  std::mt19937 rng(1234 + static_cast<int>(t));
  const int64_t block = Traits(t).block_size;
  // 256-multiples take the 16-byte kernels (2304 = 9 groups of 8 blocks: a staged tail); 32-multiples and odd
  // widths that leave rows unaligned take the element-at-a-time kernel.
  const std::vector<int64_t> widths = {4, 33, 36, 40, 32, 96, 256, 288, 512, 1000, 2304};
  const std::vector<int64_t> outs = {1, 7, 67, 130};
  const std::vector<int64_t> tokens = {1, 2, 3, 4, 5, 7, 64, 65};
  int c = 0;
  for (int64_t n_in : widths) {
    if (n_in % block != 0) continue;
    for (int64_t nt : tokens) CheckMatMul(t, outs[c++ % outs.size()], n_in, nt, &rng);
  }
}

TEST_P(CudaMatMul, UnalignedPointersTakeTheGeneralKernel) {
  const DType t = GetParam();
  std::mt19937 rng(99 + static_cast<int>(t));
  for (int64_t nt : {1, 3, 9}) {
    CheckMatMul(t, 13, 512, nt, &rng, /*w_offset=*/2, /*x_offset=*/0);
    CheckMatMul(t, 13, 512, nt, &rng, /*w_offset=*/0, /*x_offset=*/4);
  }
}

TEST_P(CudaMatMul, ScoutShapedDecodeRow) {  // one realistic width, long rows: the accumulation bound at scale
  const DType t = GetParam();
  std::mt19937 rng(7 + static_cast<int>(t));
  CheckMatMul(t, 33, 5120, 1, &rng);
  CheckMatMul(t, 9, 16384, 2, &rng);
}

INSTANTIATE_TEST_SUITE_P(DTypes, CudaMatMul,
                         ::testing::Values(DType::kF32, DType::kF16, DType::kBF16, DType::kQ8_0, DType::kQ4_0),
                         [](const ::testing::TestParamInfo<DType>& param) {
                           return std::string(DTypeName(param.param));
                         });

TEST_F(CudaKernels, MatMulRejectsWhatItCannotDo) {
  EXPECT_EQ(MatMul(DType::kQ4_K, reinterpret_cast<void*>(16), 1, 256, reinterpret_cast<float*>(16), 1,
                   reinterpret_cast<float*>(16))
                .code(),
            StatusCode::kNotSupported);
  EXPECT_EQ(MatMul(DType::kQ8_0, reinterpret_cast<void*>(16), 1, 33, reinterpret_cast<float*>(16), 1,
                   reinterpret_cast<float*>(16))
                .code(),
            StatusCode::kInvalidArgument);
}

TEST_F(CudaKernels, RmsNormRowsMatchesReference) {
  std::mt19937 rng(5);
  for (int64_t d : {1, 7, 64, 257, 5120}) {
    for (bool with_weight : {false, true}) {
      const int64_t rows = 5;
      const std::vector<float> x = RandomVector(static_cast<size_t>(rows * d), &rng, -3.0f, 3.0f);
      const std::vector<float> wt = RandomVector(static_cast<size_t>(d), &rng, 0.5f, 1.5f);
      DeviceBuffer xd = ToDevice(x), wd = ToDevice(wt), yd = ToDevice(std::vector<float>(x.size()));
      EXPECT_OK(RmsNormRows(xd.as<float>(), with_weight ? wd.as<float>() : nullptr, rows, d, 1e-5f, yd.as<float>()));
      const std::vector<float> y = FromDevice<float>(yd, x.size());
      std::vector<float> want(static_cast<size_t>(d));
      for (int64_t r = 0; r < rows; ++r) {
        ref::RmsNorm(x.data() + r * d, with_weight ? wt.data() : nullptr, d, 1e-5f, want.data());
        for (int64_t i = 0; i < d; ++i) {
          EXPECT_NEAR(y[r * d + i], want[i], (static_cast<double>(d) / 2 + 8) * kU * std::fabs(want[i]) + 1e-30)
              << "d " << d << " row " << r << " i " << i;
        }
      }
      // In place.
      EXPECT_OK(RmsNormRows(xd.as<float>(), nullptr, rows, d, 1e-5f, xd.as<float>()));
      EXPECT_OK(Synchronize());
    }
  }
}

TEST_F(CudaKernels, SwiGLUAndAddMatchReference) {
  std::mt19937 rng(6);
  for (int64_t n : {1, 31, 1000, 100003}) {
    std::vector<float> g = RandomVector(static_cast<size_t>(n), &rng, -20.0f, 20.0f);
    const std::vector<float> u = RandomVector(static_cast<size_t>(n), &rng, -2.0f, 2.0f);
    if (n > 4) g[0] = -100.0f, g[1] = 100.0f, g[2] = 0.0f;  // exp under- and overflow, zero
    DeviceBuffer gd = ToDevice(g), ud = ToDevice(u), od = ToDevice(std::vector<float>(g.size()));
    EXPECT_OK(SwiGLURows(gd.as<float>(), ud.as<float>(), n, od.as<float>()));
    std::vector<float> got = FromDevice<float>(od, g.size()), want(g.size());
    ref::SwiGLU(g.data(), u.data(), want.data(), n);
    for (int64_t i = 0; i < n; ++i) {
      EXPECT_NEAR(got[i], want[i], 8 * kU * std::fabs(want[i]) + 1e-37) << "swiglu n " << n << " i " << i;
    }
    EXPECT_OK(AddRows(gd.as<float>(), ud.as<float>(), n, od.as<float>()));
    got = FromDevice<float>(od, g.size());
    ref::Add(g.data(), u.data(), want.data(), n);
    for (int64_t i = 0; i < n; ++i) EXPECT_EQ(got[i], want[i]) << "add n " << n << " i " << i;
  }
}

TEST_F(CudaKernels, EmbedRowsDequantizesExactly) {
  std::mt19937 rng(8);
  for (DType t : {DType::kF32, DType::kF16, DType::kBF16, DType::kQ8_0, DType::kQ4_0}) {
    for (int64_t d : {32, 96, 5120, 7}) {
      if (d % Traits(t).block_size != 0) continue;
      const int64_t vocab = 37, n = 11;
      const Weights table = MakeWeights(t, vocab, d, &rng);
      std::vector<int32_t> tokens(static_cast<size_t>(n));
      for (int64_t j = 0; j < n; ++j) tokens[j] = static_cast<int32_t>((j * 13 + 5) % vocab);
      tokens[0] = 0, tokens[1] = static_cast<int32_t>(vocab - 1);
      DeviceBuffer td = ToDevice(table.bytes), kd = ToDevice(tokens);
      DeviceBuffer od = ToDevice(std::vector<float>(static_cast<size_t>(n * d)));
      EXPECT_OK(EmbedRows(t, td.data(), RowBytes(t, d), kd.as<int32_t>(), n, d, od.as<float>()));
      const std::vector<float> got = FromDevice<float>(od, static_cast<size_t>(n * d));
      for (int64_t j = 0; j < n; ++j) {
        EXPECT_EQ(0, std::memcmp(got.data() + j * d, table.exact.data() + tokens[j] * d, sizeof(float) * d))
            << DTypeName(t) << " d " << d << " token " << tokens[j];
      }
    }
  }
}

TEST_F(CudaKernels, RopeRowsMatchesDecoderStep) {
  std::mt19937 rng(9);
  struct Case {
    int64_t nq, nkv, hd, n;
    int style;
    bool rope, qk_norm, temp;
  };
  const Case cases[] = {{4, 2, 8, 1, 0, true, false, false},   {5, 1, 128, 3, 0, true, true, true},
                        {8, 2, 64, 7, 1, true, false, true},   {3, 3, 6, 2, 1, true, true, false},
                        {40, 8, 128, 2, 0, false, true, true}, {2, 0, 16, 4, 1, true, false, false}};
  for (const Case& c : cases) {
    SCOPED_TRACE("nq " + std::to_string(c.nq) + " nkv " + std::to_string(c.nkv) + " hd " + std::to_string(c.hd) +
                 " style " + std::to_string(c.style));
    const int64_t half = c.hd / 2;
    const std::vector<float> q = RandomVector(static_cast<size_t>(c.n * c.nq * c.hd), &rng, -2.0f, 2.0f);
    const std::vector<float> k = RandomVector(static_cast<size_t>(c.n * c.nkv * c.hd), &rng, -2.0f, 2.0f);
    std::vector<float> cs(static_cast<size_t>(c.n * half)), sn(cs.size()), qscale(static_cast<size_t>(c.n));
    for (size_t i = 0; i < cs.size(); ++i) {
      const float a = std::uniform_real_distribution<float>(-100.0f, 100.0f)(rng);
      cs[i] = std::cos(a), sn[i] = std::sin(a);
    }
    for (float& s : qscale) s = std::uniform_real_distribution<float>(1.0f, 1.5f)(rng);
    DeviceBuffer qd = ToDevice(q), kd = ToDevice(k), cd = ToDevice(cs), sd = ToDevice(sn), td = ToDevice(qscale);
    EXPECT_OK(RopeRows(qd.as<float>(), c.nq, kd.as<float>(), c.nkv, c.n, c.hd, c.rope ? cd.as<float>() : nullptr,
                       c.rope ? sd.as<float>() : nullptr, c.style, c.qk_norm, 1e-5f,
                       c.temp ? td.as<float>() : nullptr));
    const std::vector<float> gq = FromDevice<float>(qd, q.size()), gk = FromDevice<float>(kd, k.size());
    // The decoder's loop (model/decoder.cpp, "attn.rope_kv") on the references.
    std::vector<float> wq = q, wk = k;
    const RopeStyle style = c.style == 0 ? RopeStyle::kInterleaved : RopeStyle::kHalfSplit;
    for (int64_t t = 0; t < c.n; ++t) {
      for (int64_t h = 0; h < c.nq + c.nkv; ++h) {
        float* x = h < c.nq ? wq.data() + (t * c.nq + h) * c.hd : wk.data() + (t * c.nkv + h - c.nq) * c.hd;
        if (c.rope) ref::Rope(x, c.hd, cs.data() + t * half, sn.data() + t * half, style);
        if (c.qk_norm) ref::RmsNorm(x, nullptr, c.hd, 1e-5f, x);
        if (c.temp && h < c.nq) ref::Scale(x, qscale[t], c.hd);
      }
    }
    const double tol = (static_cast<double>(c.hd) / 2 + 16) * kU;
    for (size_t i = 0; i < q.size(); ++i) EXPECT_NEAR(gq[i], wq[i], tol * (std::fabs(wq[i]) + 2.0)) << "q " << i;
    for (size_t i = 0; i < k.size(); ++i) EXPECT_NEAR(gk[i], wk[i], tol * (std::fabs(wk[i]) + 2.0)) << "k " << i;
  }
}

TEST_F(CudaKernels, AttentionMatchesReference) {
  std::mt19937 rng(10);
  struct Case {
    int64_t n_tokens, nq, nkv, hd, n_keys, chunk;  // chunk > 0: chunked local attention ranges
  };
  const Case cases[] = {{1, 1, 1, 32, 1, 0},     {3, 4, 2, 64, 40, 0},   {7, 40, 8, 128, 100, 0},
                        {5, 12, 1, 128, 33, 16}, {2, 16, 1, 256, 70, 0}, {65, 5, 5, 8, 65, 8}};
  for (const Case& c : cases) {
    SCOPED_TRACE("tokens " + std::to_string(c.n_tokens) + " heads " + std::to_string(c.nq) + "/" +
                 std::to_string(c.nkv) + " hd " + std::to_string(c.hd) + " keys " + std::to_string(c.n_keys));
    const int64_t q_stride = c.nq * c.hd + 3, kv_stride = c.nkv * c.hd + 1, out_stride = c.nq * c.hd + 5;
    const std::vector<float> q = RandomVector(static_cast<size_t>(c.n_tokens * q_stride), &rng, -2.0f, 2.0f);
    const std::vector<float> k = RandomVector(static_cast<size_t>(c.n_keys * kv_stride), &rng, -2.0f, 2.0f);
    const std::vector<float> v = RandomVector(static_cast<size_t>(c.n_keys * kv_stride), &rng);
    std::vector<int64_t> kb(static_cast<size_t>(c.n_tokens)), ke(kb.size());
    for (int64_t t = 0; t < c.n_tokens; ++t) {  // the last n_tokens positions of the keys, causal
      const int64_t pos = c.n_keys - c.n_tokens + t;
      ke[t] = std::max<int64_t>(pos + 1, 1);
      kb[t] = c.chunk > 0 ? (ke[t] - 1) / c.chunk * c.chunk : 0;
    }
    const float scale = 1.0f / std::sqrt(static_cast<float>(c.hd));
    DeviceBuffer qd = ToDevice(q), kd = ToDevice(k), vd = ToDevice(v), bd = ToDevice(kb), ed = ToDevice(ke);
    DeviceBuffer od = ToDevice(std::vector<float>(static_cast<size_t>(c.n_tokens * out_stride)));
    EXPECT_OK(Attention(qd.as<float>(), q_stride, c.n_tokens, c.nq, c.nkv, c.hd, kd.as<float>(), vd.as<float>(),
                        kv_stride, bd.as<int64_t>(), ed.as<int64_t>(), scale, od.as<float>(), out_stride));
    const std::vector<float> got = FromDevice<float>(od, static_cast<size_t>(c.n_tokens * out_stride));
    std::vector<float> want(got.size());
    const int64_t group = c.nq / c.nkv;
    for (int64_t h = 0; h < c.nkv; ++h) {
      ref::Attention(q.data() + h * group * c.hd, q_stride, c.n_tokens, group, c.hd, k.data() + h * c.hd,
                     v.data() + h * c.hd, kv_stride, kb.data(), ke.data(), scale, want.data() + h * group * c.hd,
                     out_stride);
    }
    for (int64_t t = 0; t < c.n_tokens; ++t) {
      for (int64_t i = 0; i < c.nq * c.hd; ++i) {
        // A score is an f32 dot product: |error| <= hd 2^-24 scale sum |q k| ~ hd^1.5 2^-24 for these q, k in
        // [-2, 2]; an output, a convex combination of |v| <= 1, moves by at most that much.
        const double tol = 2e-5 + std::pow(static_cast<double>(c.hd), 1.5) * kU;
        EXPECT_NEAR(got[t * out_stride + i], want[t * out_stride + i], tol) << "token " << t << " element " << i;
      }
    }
  }
}

TEST_F(CudaKernels, RouteTopKMatchesCpuKernelWithTiesAndNaN) {
  std::mt19937 rng(11);
  for (int64_t n_experts : {1, 16, 128}) {
    for (int64_t k : {1, 2, 8}) {
      if (k > n_experts) continue;
      const int64_t n = 33;
      std::vector<float> logits(static_cast<size_t>(n * n_experts));
      std::uniform_int_distribution<int> coarse(-8, 8);  // few distinct values: many ties
      for (float& x : logits) x = static_cast<float>(coarse(rng)) * 0.25f;
      logits[3] = std::numeric_limits<float>::quiet_NaN();
      logits[n_experts] = std::numeric_limits<float>::quiet_NaN();  // token 1, expert 0: a NaN first
      DeviceBuffer ld = ToDevice(logits), cd = ToDevice(std::vector<int32_t>(static_cast<size_t>(n * k)));
      DeviceBuffer gd = ToDevice(std::vector<float>(static_cast<size_t>(n * k)));
      EXPECT_OK(RouteTopK(ld.as<float>(), n, n_experts, k, cd.as<int32_t>(), gd.as<float>()));
      const std::vector<int32_t> choice = FromDevice<int32_t>(cd, static_cast<size_t>(n * k));
      const std::vector<float> gate = FromDevice<float>(gd, static_cast<size_t>(n * k));
      std::vector<int32_t> want_choice(choice.size());
      std::vector<float> want_gate(gate.size());
      kernels::RouteTopK(logits.data(), n_experts, k, 0, n, want_choice.data(), want_gate.data());
      EXPECT_EQ(choice, want_choice) << "experts " << n_experts << " k " << k;
      for (size_t i = 0; i < gate.size(); ++i) {
        if (std::isnan(want_gate[i])) {
          EXPECT_TRUE(std::isnan(gate[i])) << i;
        } else {
          EXPECT_NEAR(gate[i], want_gate[i], 4 * kU * want_gate[i]) << i;
        }
      }
    }
  }
}

TEST_F(CudaKernels, CopyBandwidthIsMeasured) {
  std::string error;
  const double gbs = CopyBandwidthGBs(int64_t{64} << 20, 5, &error);
  EXPECT_GT(gbs, 10.0) << error;
  EXPECT_TRUE(error.empty()) << error;
  std::printf("copy bandwidth on %s: %.0f GB/s\n", DeviceDescription().c_str(), gbs);
}

TEST_F(CudaKernels, BuffersMoveAndReportErrors) {
  auto a = DeviceBuffer::Allocate(1024);
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  DeviceBuffer b = std::move(a).value();
  EXPECT_EQ(b.bytes(), 1024u);
  std::vector<uint8_t> host(2048, 7);
  EXPECT_EQ(b.Upload(host.data(), 2048).code(), StatusCode::kInvalidArgument);
  EXPECT_OK(b.Upload(host.data(), 1024));
  std::vector<uint8_t> back(1024);
  EXPECT_OK(b.Download(back.data(), 1024));
  EXPECT_EQ(back[1023], 7);
  // More memory than any device has: a status naming the call, not an abort.
  auto huge = DeviceBuffer::Allocate(size_t{1} << 50);
  ASSERT_FALSE(huge.ok());
  EXPECT_NE(huge.status().message().find("cudaMalloc"), std::string::npos) << huge.status().ToString();
  auto s = CreateStream();
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_OK(b.Fill(0, *s));
  EXPECT_OK(Synchronize(*s));
  DestroyStream(*s);
}

}  // namespace
}  // namespace herd::kernels::cuda
