// Per-target (Highway) products of BF16 weights with the native BF16 dot product of AVX512_BF16 (vdpbf16ps: per
// f32 lane, acc + w[2j] x[2j] + w[2j+1] x[2j+1], each bf16 product exact in f32): the decode path of
// kernels/matmul.h for BF16 weights on CPUs that have it (Cooper Lake, Sapphire Rapids and later, Zen 4 and
// later). Included by cpu/qdot-inl.h, whose entry points dispatch here for DType::kBF16. Reference:
// ref::MatMulQuantized (BF16).
//
// Accuracy. Rounding activations to one bf16 (as llama.cpp does) keeps 8 of f32's 24 significant bits and moved
// the Llama 4 fixtures' logits by up to 0.1; a split into two bf16 terms still by 3e-4; both are outside the
// fixtures' fp32 tolerance (1e-4). So each activation is split exactly into three bf16 terms, x = t0 + t1 + t2:
// t0 = x truncated to bf16, t1 = (x - t0) truncated, t2 = x - t0 - t1 (each difference is exact in f32, and t2
// has at most 8 significant bits, so it is a bf16). Every product w t_k is exact in f32, so the only roundings
// are those of the f32 accumulation, as on the f32 path. The kernel runs three vdpbf16ps per 32 weights (one
// accumulator per term) on the weight vector it loaded once: still one pass over the weights, and no widening.
//
// Only the AVX3_DL target compiles the kernel (Highway 1.0.3 has no target for AVX512_BF16, so the instruction
// is emitted by inline assembly and cpu/qdot.cpp checks the CPUID bit at run time); every other target reports
// kNative = false and MatMul keeps its f32 path for BF16 there.
//
// Activation record of a token, per step of 32 inputs: the 32 t0 terms (64 bytes), the 32 t1, the 32 t2; inputs
// past n_in are zero. A row is read in steps of 32 weights (64 bytes, one vector); a last partial step loads
// only the row's own bytes (masked load), so nothing past a row is read. vdpbf16ps reads denormal inputs as zero
// and flushes denormal results (whatever MXCSR says), so terms and products below 2^-126 in magnitude are lost;
// its f32 sums round to nearest even.

#if defined(HERD_KERNELS_CPU_BF16DOT_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef HERD_KERNELS_CPU_BF16DOT_INL_H_
#undef HERD_KERNELS_CPU_BF16DOT_INL_H_
#else
#define HERD_KERNELS_CPU_BF16DOT_INL_H_
#endif

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "core/half.h"
#include "core/status.h"
#include "core/tensor.h"
#include "hwy/cache_control.h"
#include "hwy/highway.h"

#undef HERD_BF16DOT_NATIVE
#if HWY_ARCH_X86 && HWY_TARGET == HWY_AVX3_DL
#define HERD_BF16DOT_NATIVE 1
#include <immintrin.h>
#else
#define HERD_BF16DOT_NATIVE 0
#endif

HWY_BEFORE_NAMESPACE();
namespace herd::kernels::HWY_NAMESPACE {
namespace bf16dot {
namespace hn = hwy::HWY_NAMESPACE;

// Whether this target has the kernel (the CPU must also report AVX512_BF16: cpu/qdot.cpp).
constexpr bool kNative = HERD_BF16DOT_NATIVE;

constexpr int64_t kStep = 32;  // bf16 elements per vector
constexpr int kTerms = 3;
constexpr int64_t kRecordBytes = kTerms * 64;  // per step of kStep inputs

inline int64_t TokenBytes(int64_t n_in) { return (n_in + kStep - 1) / kStep * kRecordBytes; }

// The three terms of one activation (scalar; SplitToken's vector code computes the same bits): t0 = the upper
// half of x's bits (a NaN gets its quiet bit first, so that truncation cannot turn it into inf), t1 and t2 the
// upper halves of the exact remainders (0 when x is not finite).
inline void SplitScalar(float x, uint16_t* t) {
  uint32_t bits;
  std::memcpy(&bits, &x, 4);
  if (std::isnan(x)) bits |= 0x400000u;
  t[0] = static_cast<uint16_t>(bits >> 16);
  float r = std::isfinite(x) ? x - Bf16ToF32(t[0]) : 0.0f;
  for (int k = 1; k < kTerms; ++k) {
    std::memcpy(&bits, &r, 4);
    t[k] = static_cast<uint16_t>(bits >> 16);
    r -= Bf16ToF32(t[k]);
  }
}

#if HERD_BF16DOT_NATIVE

// x[0, n) split into dst as the records above (zero-padded to TokenBytes(n)), bit-identical to SplitScalar.
inline void SplitToken(const float* HWY_RESTRICT x, int64_t n, uint8_t* HWY_RESTRICT dst) {
  std::memset(dst, 0, static_cast<size_t>(TokenBytes(n)));
  const hn::Full512<float> df;
  const hn::Full512<uint32_t> du;
  const hn::Simd<uint16_t, 16, 0> d16;
  const auto quiet = hn::Set(du, 0x400000u), top = hn::Set(du, 0xffff0000u);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    uint8_t* rec = dst + i / kStep * kRecordBytes + 2 * (i % kStep);
    const auto store = [&](auto bits, int k) {
      hn::StoreU(hn::TruncateTo(d16, hn::ShiftRight<16>(bits)), d16, reinterpret_cast<uint16_t*>(rec + 64 * k));
    };
    const auto v = hn::LoadU(df, x + i);
    const auto bits = hn::BitCast(du, v);
    store(hn::IfThenElse(hn::RebindMask(du, hn::IsNaN(v)), hn::Or(bits, quiet), bits), 0);
    const auto r1 = hn::IfThenElseZero(hn::IsFinite(v), hn::Sub(v, hn::BitCast(df, hn::And(bits, top))));
    const auto b1 = hn::BitCast(du, r1);
    store(b1, 1);
    store(hn::BitCast(du, hn::Sub(r1, hn::BitCast(df, hn::And(b1, top)))), 2);
  }
  for (; i < n; ++i) {
    uint16_t t[kTerms];
    SplitScalar(x[i], t);
    for (int k = 0; k < kTerms; ++k) std::memcpy(dst + i / kStep * kRecordBytes + 64 * k + 2 * (i % kStep), &t[k], 2);
  }
}

// acc + sum of the pairwise products of the 32 bf16 in w and x, per f32 lane (vdpbf16ps).
HWY_INLINE __m512 DotPairs(__m512 acc, __m512i w, __m512i x) {
  __asm__("vdpbf16ps %[x], %[w], %[acc]" : [acc] "+v"(acc) : [w] "v"(w), [x] "v"(x));
  return acc;
}

// Weight prefetch distance, as cpu/qdot-inl.h (rows [o_begin, o_end) are one linear stream).
constexpr int64_t kPrefetchAhead = 4096;

// Accumulators per term and output: step s goes to accumulator s % kPar. The same for every tile shape, so that
// an output's arithmetic does not depend on how many rows and tokens share its tile (batch invariance).
constexpr int kPar = 1;

// y[t * y_stride + r] = dot(row r, token t) for r < R, t < T: the products with term k go to accumulator k (and
// step parity p, when kPar = 2). The accumulators are added once at the end in a fixed order (smallest terms
// first), so each output's arithmetic depends only on n_in.
template <int R, int T>
HWY_INLINE void Tile(const uint8_t* const* rows, const uint8_t* const* acts, int64_t n_in, float* y, int64_t y_stride,
                     bool prefetch) {
  __m512 acc[kPar][kTerms][R][T];
  for (int p = 0; p < kPar; ++p) {
    for (int k = 0; k < kTerms; ++k) {
      for (int r = 0; r < R; ++r) {
        for (int t = 0; t < T; ++t) acc[p][k][r][t] = _mm512_setzero_ps();
      }
    }
  }
  const auto step = [&](int p, int64_t s, const __m512i* w) {
    for (int t = 0; t < T; ++t) {
      for (int k = 0; k < kTerms; ++k) {
        const __m512i x = _mm512_loadu_si512(acts[t] + kRecordBytes * s + 64 * k);
        for (int r = 0; r < R; ++r) acc[p][k][r][t] = DotPairs(acc[p][k][r][t], w[r], x);
      }
    }
  };
  const auto load = [&](int64_t s, __m512i* w) {
    for (int r = 0; r < R; ++r) {
      if (prefetch) hwy::Prefetch(rows[r] + kPrefetchAhead + 64 * s);
      w[r] = _mm512_loadu_si512(rows[r] + 64 * s);
    }
  };
  const int64_t full = n_in / kStep;
  int64_t s = 0;
  for (; s + kPar <= full; s += kPar) {
    for (int p = 0; p < kPar; ++p) {
      __m512i w[R];
      load(s + p, w);
      step(p, s + p, w);
    }
  }
  for (; s < full; ++s) {
    __m512i w[R];
    load(s, w);
    step(0, s, w);
  }
  if (const int64_t tail = n_in - full * kStep; tail > 0) {
    const __mmask32 m = static_cast<__mmask32>((uint64_t{1} << tail) - 1);
    __m512i w[R];
    for (int r = 0; r < R; ++r) w[r] = _mm512_maskz_loadu_epi16(m, rows[r] + 64 * full);
    step(kPar - 1, full, w);
  }
  for (int r = 0; r < R; ++r) {
    for (int t = 0; t < T; ++t) {
      __m512 sum = acc[0][kTerms - 1][r][t];
      for (int k = kTerms - 1; k >= 0; --k) {
        for (int p = k == kTerms - 1 ? 1 : 0; p < kPar; ++p) sum = _mm512_add_ps(sum, acc[p][k][r][t]);
      }
      y[t * y_stride + r] = hn::GetLane(hn::SumOfLanes(hn::Full512<float>(), hn::Vec512<float>{sum}));
    }
  }
}

// The tiles qdot::DotRows (cpu/qdot-inl.h) drives over the rows and tokens: n = the row's inputs.
struct Tiles {
  static constexpr int kRows = 2, kTokens = 4;
  static constexpr bool kDecodePrefetch = true;
  static constexpr int kDecodeStreams = 1;  // (qdot::DecodeInStreams; not measured for BF16)
  static int64_t Length(const TensorView& w) { return w.Cols(); }
  template <int R, int NT>
  static HWY_INLINE void Tile(const uint8_t* const* rows, const uint8_t* const* acts, int64_t n_in, float* y,
                              int64_t y_stride, bool prefetch) {
    bf16dot::Tile<R, NT>(rows, acts, n_in, y, y_stride, prefetch);
  }
};

#else  // !HERD_BF16DOT_NATIVE: never called (cpu/qdot.cpp reports BF16 unsupported on this target).

inline void SplitToken(const float*, int64_t, uint8_t*) {
  HERD_CHECK(false && "BF16 dot products: this target has no AVX512_BF16 kernel");
}

#endif  // HERD_BF16DOT_NATIVE

}  // namespace bf16dot
}  // namespace herd::kernels::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#endif  // HERD_KERNELS_CPU_BF16DOT_INL_H_
