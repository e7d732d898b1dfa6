// Per-target (Highway) matrix products with weights in their stored dtype (block layouts: llama4.md 5.4). Included
// once per SIMD target by cpu/matmul.cpp and by cpu/matmul_fp8.cpp, which adds its own source type (SrcF8E4M3).
// Reference: kernels/ref/matmul.h. Source types, each decoding a row into f32 exactly:
//  * SrcF32, SrcF16, SrcBF16 (and F8_E4M3): every kernel below, row-major and input-major weights.
//  * SrcQ8_0, SrcQ4_0, SrcK<Q4_K|Q5_K|Q6_K>, SrcQ8_0R (kernels/repack.h): DequantizeRow and the packed GEMM only.
//    Their products below QuantDotMaxTokens() tokens are integer dots (cpu/qdot.h); Q8_0R on targets without its
//    dot kernel takes the packed GEMM at every n_tokens.
//
// Two kernels, chosen by n_tokens (results never depend on the thread count or the row split):
//  * Dot (n_tokens < kGemmMinTokens, i.e. decode; unblocked types): kDotRows weight rows x up to 3 tokens per
//    register tile. Each 32-element group of a row is widened to f32 in registers and multiplied into f32 lane
//    accumulators, so weights stream from memory once, in their stored dtype.
//  * Packed GEMM (n_tokens >= kGemmMinTokens, prefill): per thread, a panel of kMR output rows x kKC inputs is
//    dequantized once into a transposed f32 tile [kKC][kMR] (reused grow-once per thread), then a register
//    micro-kernel of kNT tokens x kMR rows (2 vectors) runs over it with broadcast activations, so every
//    dequantized weight is reused for all n_tokens and no horizontal reduction is needed. The same
//    micro-kernel serves input-major weights (HF experts), whose panels need no transposition.
// Measurements: bench/RESULTS.md, section "Kernels" (bench/matmul_bench.cpp: BM_MatVec for the dot kernel of F32,
// F16 and BF16, BM_Prefill for the GEMM). No variants of these two kernels were recorded; the quantized decode that
// this file's f32 dequantization used to do is variant 1 of cpu/qdot-inl.h's list.

#if defined(HERD_KERNELS_CPU_MATMUL_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef HERD_KERNELS_CPU_MATMUL_INL_H_
#undef HERD_KERNELS_CPU_MATMUL_INL_H_
#else
#define HERD_KERNELS_CPU_MATMUL_INL_H_
#endif

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "core/half.h"
#include "core/status.h"
#include "core/tensor.h"
#include "hwy/aligned_allocator.h"
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace herd::kernels::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// Weight vectors: at most 16 f32 lanes, so a lane count always divides the 16- and 32-element halves and
// blocks of Q4_0/Q8_0. (Arrays of vectors below rule out the sizeless SVE/RVV vectors; x86, NEON, EMU128 and
// SCALAR are fine.)
using DW = hn::CappedTag<float, 16>;
using VW = hn::Vec<DW>;
constexpr int64_t kL = static_cast<int64_t>(hn::MaxLanes(DW()));
constexpr int64_t kGroup = 32;            // elements per dequantization group (= Q8_0/Q4_0 block)
constexpr int64_t kGroupVecs = kGroup / kL;

// ---------------------------------------------------------------------------------------------------------
// Element decoding. Each source type decodes one 32-element group into kGroupVecs f32 vectors, exactly.

// IEEE binary16 -> f32 for kL lanes at p (unaligned). F16C where Highway uses it; otherwise integer code that,
// unlike Highway 1.0.3's emulation, maps exponent 31 to inf/NaN.
template <class D>
HWY_INLINE hn::Vec<D> LoadF16Vec(D d, const uint8_t* p) {
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX2 && !defined(HWY_DISABLE_F16C)
  const hn::Rebind<hwy::float16_t, D> dh;
  return hn::PromoteTo(d, hn::LoadU(dh, reinterpret_cast<const hwy::float16_t*>(p)));
#else
  const hn::RebindToUnsigned<D> du;
  const hn::RebindToSigned<D> di;
  const hn::Rebind<uint16_t, D> du16;
  const auto bits = hn::PromoteTo(du, hn::LoadU(du16, reinterpret_cast<const uint16_t*>(p)));
  const auto sign = hn::ShiftLeft<16>(hn::And(bits, hn::Set(du, 0x8000u)));
  const auto exp = hn::And(hn::ShiftRight<10>(bits), hn::Set(du, 0x1Fu));
  const auto mant = hn::And(bits, hn::Set(du, 0x3FFu));
  const auto normal = hn::Or(hn::ShiftLeft<23>(hn::Add(exp, hn::Set(du, 112u))), hn::ShiftLeft<13>(mant));
  const auto inf_nan = hn::Or(hn::Set(du, 0x7F800000u), hn::ShiftLeft<13>(mant));
  // Subnormal (and zero): mant * 2^-24, exact.
  const auto sub = hn::BitCast(du, hn::Mul(hn::ConvertTo(d, hn::BitCast(di, mant)), hn::Set(d, 1.0f / 16777216.0f)));
  const auto mag = hn::IfThenElse(hn::Eq(exp, hn::Zero(du)), sub,
                                  hn::IfThenElse(hn::Eq(exp, hn::Set(du, 0x1Fu)), inf_nan, normal));
  return hn::BitCast(d, hn::Or(mag, sign));
#endif
}

// One IEEE half at p (a block scale) as f32: a single F16C instruction where available.
HWY_INLINE float LoadF16Scalar(const uint8_t* p) { return hn::GetLane(LoadF16Vec(hn::CappedTag<float, 1>(), p)); }

template <class D>
HWY_INLINE hn::Vec<D> LoadBF16Vec(D d, const uint8_t* p) {
  const hn::RebindToUnsigned<D> du;
  const hn::Rebind<uint16_t, D> du16;
  return hn::BitCast(d, hn::ShiftLeft<16>(hn::PromoteTo(du, hn::LoadU(du16, reinterpret_cast<const uint16_t*>(p)))));
}

struct SrcF32 {
  static constexpr bool kBlocked = false;
  static constexpr int64_t kElemBytes = 4;
  static constexpr int64_t kGroupBytes = kGroup * 4;
  static HWY_INLINE void LoadGroup(const uint8_t* g, VW* w) {
    const DW d;
    for (int64_t j = 0; j < kGroupVecs; ++j) w[j] = hn::LoadU(d, reinterpret_cast<const float*>(g) + j * kL);
  }
  static HWY_INLINE VW LoadVec(const uint8_t* p) { return hn::LoadU(DW(), reinterpret_cast<const float*>(p)); }
  static HWY_INLINE float Scalar(const uint8_t* row, int64_t i) {
    float f;
    std::memcpy(&f, row + 4 * i, 4);
    return f;
  }
};

struct SrcF16 {
  static constexpr bool kBlocked = false;
  static constexpr int64_t kElemBytes = 2;
  static constexpr int64_t kGroupBytes = kGroup * 2;
  static HWY_INLINE void LoadGroup(const uint8_t* g, VW* w) {
    for (int64_t j = 0; j < kGroupVecs; ++j) w[j] = LoadF16Vec(DW(), g + 2 * j * kL);
  }
  static HWY_INLINE VW LoadVec(const uint8_t* p) { return LoadF16Vec(DW(), p); }
  static HWY_INLINE float Scalar(const uint8_t* row, int64_t i) { return LoadF16Scalar(row + 2 * i); }
};

struct SrcBF16 {
  static constexpr bool kBlocked = false;
  static constexpr int64_t kElemBytes = 2;
  static constexpr int64_t kGroupBytes = kGroup * 2;
  static HWY_INLINE void LoadGroup(const uint8_t* g, VW* w) {
    for (int64_t j = 0; j < kGroupVecs; ++j) w[j] = LoadBF16Vec(DW(), g + 2 * j * kL);
  }
  static HWY_INLINE VW LoadVec(const uint8_t* p) { return LoadBF16Vec(DW(), p); }
  static HWY_INLINE float Scalar(const uint8_t* row, int64_t i) {
    uint16_t h;
    std::memcpy(&h, row + 2 * i, 2);
    return Bf16ToF32(h);
  }
};

// Q8_0 block (34 bytes): d (f16), qs[32] (int8); y[j] = d * qs[j].
struct SrcQ8_0 {
  static constexpr bool kBlocked = true;
  static constexpr int64_t kGroupBytes = 34;
  // The 32 quants as f32 (exact), without the scale.
  static HWY_INLINE void LoadQuants(const uint8_t* blk, VW* q) {
    const DW d;
    const hn::RebindToSigned<DW> di;
    const hn::Rebind<int8_t, DW> di8;
    const int8_t* qs = reinterpret_cast<const int8_t*>(blk + 2);
    for (int64_t j = 0; j < kGroupVecs; ++j) q[j] = hn::ConvertTo(d, hn::PromoteTo(di, hn::LoadU(di8, qs + j * kL)));
  }
  static HWY_INLINE void LoadGroup(const uint8_t* blk, VW* w) {
    const auto scale = hn::Set(DW(), LoadF16Scalar(blk));
    LoadQuants(blk, w);
    for (int64_t j = 0; j < kGroupVecs; ++j) w[j] = hn::Mul(w[j], scale);
  }
  static HWY_INLINE float Scalar(const uint8_t*, int64_t) { return 0.0f; }  // never called: no tails
};

// Q4_0 block (18 bytes): d (f16), qs[16]; y[j] = ((qs[j] & 15) - 8) * d, y[j + 16] = ((qs[j] >> 4) - 8) * d.
struct SrcQ4_0 {
  static constexpr bool kBlocked = true;
  static constexpr int64_t kGroupBytes = 18;
  static HWY_INLINE void LoadQuants(const uint8_t* blk, VW* q) {
    const DW d;
    const hn::RebindToSigned<DW> di;
    const hn::Rebind<int8_t, DW> di8;
    const hn::Rebind<uint8_t, DW> du8;
    const auto mask = hn::Set(du8, uint8_t{0x0F});
    const auto eight = hn::Set(di8, int8_t{8});
    const uint8_t* qs = blk + 2;
    for (int64_t j = 0; j < kGroupVecs / 2; ++j) {
      const auto v = hn::LoadU(du8, qs + j * kL);
      const auto lo = hn::Sub(hn::BitCast(di8, hn::And(v, mask)), eight);  // in [-8, 7]
      const auto hi = hn::Sub(hn::BitCast(di8, hn::ShiftRight<4>(v)), eight);
      q[j] = hn::ConvertTo(d, hn::PromoteTo(di, lo));
      q[kGroupVecs / 2 + j] = hn::ConvertTo(d, hn::PromoteTo(di, hi));
    }
  }
  static HWY_INLINE void LoadGroup(const uint8_t* blk, VW* w) {
    const auto scale = hn::Set(DW(), LoadF16Scalar(blk));
    LoadQuants(blk, w);
    for (int64_t j = 0; j < kGroupVecs; ++j) w[j] = hn::Mul(w[j], scale);
  }
  static HWY_INLINE float Scalar(const uint8_t*, int64_t) { return 0.0f; }
};

// K-quant super-blocks of 256 elements (llama4.md 5.4), decoded whole by DequantBlock into the values of
// ref::DequantizeRow: d * sc * q, dmin * mn and d * S * (q - 32) are exact in f32, and Q4_K/Q5_K's difference
// d * sc * q - dmin * mn is rounded once (the same with or without a fused multiply-add, the product being exact).
// Used by DequantizeRow and the packed GEMM; decode products go to the integer kernels (cpu/qdot.h).
template <DType kT>
struct SrcK {
  static constexpr bool kBlocked = true;
  static constexpr int64_t kSuperBlock = 256;
  static constexpr int64_t kGroupBytes = kT == DType::kQ4_K ? 144 : kT == DType::kQ5_K ? 176 : 210;

  static HWY_INLINE void DequantBlock(const uint8_t* blk, float* HWY_RESTRICT dst) {
    const DW d;
    const hn::RebindToUnsigned<DW> du;
    const hn::RebindToSigned<DW> di;
    const hn::Rebind<uint8_t, DW> du8;
    const auto bytes = [&](const uint8_t* p) { return hn::PromoteTo(du, hn::LoadU(du8, p)); };
    if constexpr (kT == DType::kQ6_K) {  // ql[128], qh[64], scales[16] (int8), d
      const float dd = LoadF16Scalar(blk + 208);
      const int8_t* sc = reinterpret_cast<const int8_t*>(blk + 192);
      for (int h = 0; h < 2; ++h) {
        for (int part = 0; part < 4; ++part) {  // q1..q4: elements 128h + 32 part + l
          const uint8_t* ql = blk + 64 * h + 32 * (part % 2);
          const uint8_t* qh = blk + 128 + 32 * h;
          for (int64_t l = 0; l < 32; l += kL) {
            const auto lo = hn::And(hn::ShiftRightSame(bytes(ql + l), 4 * (part / 2)), hn::Set(du, 0xFu));
            const auto hi = hn::ShiftLeft<4>(hn::And(hn::ShiftRightSame(bytes(qh + l), 2 * part), hn::Set(du, 3u)));
            const auto q = hn::Sub(hn::BitCast(di, hn::Or(lo, hi)), hn::Set(di, 32));
            const int64_t e = 128 * h + 32 * part + l;
            const auto scale = hn::Set(d, dd * static_cast<float>(sc[e / 16]));  // kL <= 16: one group per vector
            hn::StoreU(hn::Mul(scale, hn::ConvertTo(d, q)), d, dst + e);
          }
        }
      }
    } else {  // d, dmin, scales[12], (Q5_K: qh[32],) qs[128]
      constexpr bool kQ5 = kT == DType::kQ5_K;
      const float dd = LoadF16Scalar(blk), dmin = LoadF16Scalar(blk + 2);
      const uint8_t* s = blk + 4;
      const uint8_t* qh = blk + 16;
      const uint8_t* qs = blk + (kQ5 ? 48 : 16);
      for (int j = 0; j < 8; ++j) {
        const int sc = j < 4 ? s[j] & 63 : (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
        const int mn = j < 4 ? s[j + 4] & 63 : (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
        const auto d1 = hn::Set(d, dd * static_cast<float>(sc));
        const auto m1 = hn::Set(d, dmin * static_cast<float>(mn));
        const int c = j / 2, high = j % 2;  // sub-block j: chunk c, low (even j) or high (odd j) nibbles
        for (int64_t l = 0; l < 32; l += kL) {
          auto q = hn::And(hn::ShiftRightSame(bytes(qs + 32 * c + l), 4 * high), hn::Set(du, 0xFu));
          if constexpr (kQ5) {
            q = hn::Or(q, hn::ShiftLeft<4>(hn::And(hn::ShiftRightSame(bytes(qh + l), 2 * c + high), hn::Set(du, 1u))));
          }
          hn::StoreU(hn::Sub(hn::Mul(d1, hn::ConvertTo(d, hn::BitCast(di, q))), m1), d, dst + 32 * j + l);
        }
      }
    }
  }
};
// Q8_0R (kernels/repack.h): groups of 8 Q8_0 blocks, 256 elements in 272 bytes, decoded whole as a super-block
// into the values of SrcQ8_0: d * (byte - 128), exact in f32.
struct SrcQ8_0R {
  static constexpr bool kBlocked = true;
  static constexpr int64_t kSuperBlock = 256;
  static constexpr int64_t kGroupBytes = 272;

  static HWY_INLINE void DequantBlock(const uint8_t* grp, float* HWY_RESTRICT dst) {
    const DW d;
    const hn::RebindToSigned<DW> di;
    const hn::Rebind<int8_t, DW> di8;
    const hn::Rebind<uint8_t, DW> du8;
    for (int64_t j = 0; j < 8; ++j) {
      const auto scale = hn::Set(d, LoadF16Scalar(grp + 256 + 2 * j));
      for (int64_t half = 0; half < 2; ++half) {
        const uint8_t* codes = grp + 128 * (j / 4) + 64 * half + 16 * (j % 4);
        for (int64_t l = 0; l < 16; l += kL) {
          const auto u = hn::Xor(hn::LoadU(du8, codes + l), hn::Set(du8, uint8_t{0x80}));
          const auto q = hn::ConvertTo(d, hn::PromoteTo(di, hn::BitCast(di8, u)));
          hn::StoreU(hn::Mul(q, scale), d, dst + 32 * j + 16 * half + l);
        }
      }
    }
  }
};

using SrcQ4K = SrcK<DType::kQ4_K>;
using SrcQ5K = SrcK<DType::kQ5_K>;
using SrcQ6K = SrcK<DType::kQ6_K>;

template <class Src>
constexpr bool IsSuperBlocked() {
  return requires { Src::kSuperBlock; };
}

// acc[t][*] += sum_j W_group[j] * xv[t][j] for plain (unblocked) types, in kA chains. Block types never come here:
// their decode products are integer dots (cpu/qdot.h).
template <class Src, int T, int kA>
HWY_INLINE void DotGroup(const uint8_t* g, const VW (&xv)[T][kGroupVecs], VW (&acc)[T][kA]) {
  static_assert(!Src::kBlocked, "quantized weights use the integer dot kernels");
  VW w[kGroupVecs];
  Src::LoadGroup(g, w);
  for (int t = 0; t < T; ++t) {
    for (int64_t j = 0; j < kGroupVecs; ++j) acc[t][j % kA] = hn::MulAdd(w[j], xv[t][j], acc[t][j % kA]);
  }
}

// dst[0, n) = W_row[k0, k0 + n); k0 is a multiple of kGroup (of 256 for K-quants, and then so is n). Exact.
template <class Src>
HWY_INLINE void DequantRange(const uint8_t* row, int64_t k0, int64_t n, float* HWY_RESTRICT dst) {
  if constexpr (IsSuperBlocked<Src>()) {
    for (int64_t b = 0; b < n / Src::kSuperBlock; ++b) {
      Src::DequantBlock(row + (k0 / Src::kSuperBlock + b) * Src::kGroupBytes, dst + b * Src::kSuperBlock);
    }
  } else {
    const DW d;
    const int64_t g0 = k0 / kGroup, n_groups = n / kGroup;
    VW w[kGroupVecs];
    for (int64_t g = 0; g < n_groups; ++g) {
      Src::LoadGroup(row + (g0 + g) * Src::kGroupBytes, w);
      for (int64_t j = 0; j < kGroupVecs; ++j) hn::StoreU(w[j], d, dst + g * kGroup + j * kL);
    }
    for (int64_t i = n_groups * kGroup; i < n; ++i) dst[i] = Src::Scalar(row, k0 + i);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Dot kernel (decode). y[t * y_stride + r] = sum_i W_r[i] * x[t * x_stride + i] for r < R, t < T.

constexpr int64_t kDotRows = 4;
constexpr int64_t kGemmMinTokens = 4;  // below this, the dot kernel (up to 3 tokens per tile); no crossover on record

template <class Src, int R, int T>
HWY_INLINE void DotTile(const uint8_t* const* rows, const float* x, int64_t x_stride, int64_t n_in, float* y,
                        int64_t y_stride) {
  const DW d;
  constexpr int kA = T == 1 ? 2 : 1;  // independent chains per output (FMA latency, decode)
  VW acc[R][T][kA];
  for (int r = 0; r < R; ++r) {
    for (int t = 0; t < T; ++t) {
      for (int a = 0; a < kA; ++a) acc[r][t][a] = hn::Zero(d);
    }
  }
  const int64_t n_groups = n_in / kGroup;
  for (int64_t g = 0; g < n_groups; ++g) {
    VW xv[T][kGroupVecs];
    for (int t = 0; t < T; ++t) {
      for (int64_t j = 0; j < kGroupVecs; ++j) xv[t][j] = hn::LoadU(d, x + t * x_stride + g * kGroup + j * kL);
    }
    for (int r = 0; r < R; ++r) DotGroup<Src, T, kA>(rows[r] + g * Src::kGroupBytes, xv, acc[r]);
  }
  for (int r = 0; r < R; ++r) {
    for (int t = 0; t < T; ++t) {
      VW s = acc[r][t][0];
      for (int a = 1; a < kA; ++a) s = hn::Add(s, acc[r][t][a]);
      float sum = hn::GetLane(hn::SumOfLanes(d, s));
      for (int64_t i = n_groups * kGroup; i < n_in; ++i) sum += Src::Scalar(rows[r], i) * x[t * x_stride + i];
      y[t * y_stride + r] = sum;
    }
  }
}

template <class Src, int T>
HWY_INLINE void DotRows(const TensorView& w, const float* x, float* y, int64_t y_stride, int64_t o_begin,
                        int64_t o_end) {
  const int64_t n_in = w.Cols();
  int64_t o = o_begin;
  for (; o + kDotRows <= o_end; o += kDotRows) {
    const uint8_t* rows[kDotRows];
    for (int64_t r = 0; r < kDotRows; ++r) rows[r] = w.Row(o + r);
    DotTile<Src, kDotRows, T>(rows, x, n_in, n_in, y + o, y_stride);
  }
  for (; o < o_end; ++o) {
    const uint8_t* row = w.Row(o);
    DotTile<Src, 1, T>(&row, x, n_in, n_in, y + o, y_stride);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Packed GEMM (prefill).

constexpr int64_t kMR = 2 * kL;  // output rows per micro-tile (two vectors)
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX3
constexpr int kNT = 8;  // tokens per micro-tile: 2 * kNT accumulators of 32 zmm registers
#else
constexpr int kNT = 6;  // 16 registers
#endif
constexpr int64_t kKC = 256;                 // inputs per panel (multiple of kGroup)
constexpr int64_t kOC = 256;                 // output rows packed at once (multiple of kMR)
constexpr int64_t kPanels = kOC / kMR;
constexpr int64_t kTileFloats = kOC * kKC + kKC;  // panels + one dequantized row segment

// Per-thread packing buffer, allocated on first use and reused (style.md 7: nothing allocated per token).
HWY_INLINE float* ThreadTile() {
  thread_local hwy::AlignedFreeUniquePtr<float[]> tile;
  if (!tile) tile = hwy::AllocateAligned<float>(kTileFloats);
  return tile.get();
}

// y[t * y_stride + m] (+)= sum_k panel[k * kMR + m] * x[t * x_stride + k] for t < NT, m < kMR.
template <int NT>
HWY_INLINE void MicroKernel(const float* HWY_RESTRICT panel, int64_t kc, const float* x, int64_t x_stride, float* y,
                            int64_t y_stride, bool accumulate) {
  const DW d;
  VW c0[NT], c1[NT];
  const float* xt[NT];
  for (int t = 0; t < NT; ++t) {
    xt[t] = x + t * x_stride;
    c0[t] = accumulate ? hn::LoadU(d, y + t * y_stride) : hn::Zero(d);
    c1[t] = accumulate ? hn::LoadU(d, y + t * y_stride + kL) : hn::Zero(d);
  }
  for (int64_t k = 0; k < kc; ++k) {
    const VW w0 = hn::Load(d, panel + k * kMR);
    const VW w1 = hn::Load(d, panel + k * kMR + kL);
    for (int t = 0; t < NT; ++t) {
      const VW xb = hn::Set(d, xt[t][k]);
      c0[t] = hn::MulAdd(w0, xb, c0[t]);
      c1[t] = hn::MulAdd(w1, xb, c1[t]);
    }
  }
  for (int t = 0; t < NT; ++t) {
    hn::StoreU(c0[t], d, y + t * y_stride);
    hn::StoreU(c1[t], d, y + t * y_stride + kL);
  }
}

// MicroKernel for `nt` <= kNT tokens and `n_rows` <= kMR valid rows (partial tiles go through a local tile).
template <int NT>
HWY_INLINE void MicroKernelTile(const float* panel, int64_t kc, const float* x, int64_t x_stride, float* y,
                                int64_t y_stride, bool accumulate, int64_t n_rows) {
  if (n_rows == kMR) {
    MicroKernel<NT>(panel, kc, x, x_stride, y, y_stride, accumulate);
    return;
  }
  HWY_ALIGN float buf[NT * kMR];
  for (int t = 0; t < NT; ++t) {
    for (int64_t m = 0; m < kMR; ++m) buf[t * kMR + m] = (accumulate && m < n_rows) ? y[t * y_stride + m] : 0.0f;
  }
  MicroKernel<NT>(panel, kc, x, x_stride, buf, kMR, accumulate);
  for (int t = 0; t < NT; ++t) {
    for (int64_t m = 0; m < n_rows; ++m) y[t * y_stride + m] = buf[t * kMR + m];
  }
}

template <int NT = kNT>
HWY_INLINE void MicroKernelN(int64_t nt, const float* panel, int64_t kc, const float* x, int64_t x_stride, float* y,
                             int64_t y_stride, bool accumulate, int64_t n_rows) {
  if constexpr (NT > 1) {
    if (nt < NT) return MicroKernelN<NT - 1>(nt, panel, kc, x, x_stride, y, y_stride, accumulate, n_rows);
  }
  MicroKernelTile<NT>(panel, kc, x, x_stride, y, y_stride, accumulate, n_rows);
}

// Packs W[o0 + m, k0 + k] (m < n_rows, k < kc; zero for m >= n_rows) into panel[k * kMR + m].
template <class Src>
HWY_INLINE void PackRowMajor(const TensorView& w, int64_t o0, int64_t n_rows, int64_t k0, int64_t kc,
                             float* HWY_RESTRICT panel, float* HWY_RESTRICT scratch) {
  for (int64_t m = 0; m < kMR; ++m) {
    if (m < n_rows) {
      DequantRange<Src>(w.Row(o0 + m), k0, kc, scratch);
      for (int64_t k = 0; k < kc; ++k) panel[k * kMR + m] = scratch[k];
    } else {
      for (int64_t k = 0; k < kc; ++k) panel[k * kMR + m] = 0.0f;
    }
  }
}

// Packs input-major W[k0 + k, c0 + m] (m < n_cols, zero beyond) into panel[k * kMR + m]: no transposition.
template <class Src>
HWY_INLINE void PackInputMajor(const TensorView& w, int64_t c0, int64_t n_cols, int64_t k0, int64_t kc,
                               float* HWY_RESTRICT panel, float* HWY_RESTRICT) {
  const DW d;
  for (int64_t k = 0; k < kc; ++k) {
    const uint8_t* src = w.Row(k0 + k) + c0 * Src::kElemBytes;
    float* dst = panel + k * kMR;
    if (n_cols == kMR) {
      hn::Store(Src::LoadVec(src), d, dst);
      hn::Store(Src::LoadVec(src + kL * Src::kElemBytes), d, dst + kL);
    } else {
      for (int64_t m = 0; m < kMR; ++m) dst[m] = m < n_cols ? Src::Scalar(src, m) : 0.0f;
    }
  }
}

// y[t * y_stride + (o - o_begin)] = sum_k W(o, k) * x[t * n_in + k] for t < n_tokens, o in [o_begin, o_end),
// where Pack fills panels of W(o, k) for o in [o0, o0 + kMR). Blocking: kOC outputs x kKC inputs per packed
// tile (L2), kNT tokens per micro-tile, the kNT x kKC activations staying in L1 across the tile's panels.
template <class Pack>
HWY_INLINE void Gemm(const Pack& pack, int64_t n_in, const float* x, int64_t n_tokens, float* y, int64_t y_stride,
                     int64_t o_begin, int64_t o_end) {
  if (n_in == 0) {
    for (int64_t t = 0; t < n_tokens; ++t) std::fill(y + t * y_stride, y + t * y_stride + (o_end - o_begin), 0.0f);
    return;
  }
  float* tile = ThreadTile();
  float* scratch = tile + kOC * kKC;
  for (int64_t o0 = o_begin; o0 < o_end; o0 += kOC) {
    const int64_t oc = std::min(kOC, o_end - o0);
    const int64_t n_panels = (oc + kMR - 1) / kMR;
    for (int64_t k0 = 0; k0 < n_in; k0 += kKC) {
      const int64_t kc = std::min(kKC, n_in - k0);
      for (int64_t p = 0; p < n_panels; ++p) {
        pack(o0 + p * kMR, std::min(kMR, oc - p * kMR), k0, kc, tile + p * kKC * kMR, scratch);
      }
      for (int64_t t0 = 0; t0 < n_tokens; t0 += kNT) {
        const int64_t nt = std::min<int64_t>(kNT, n_tokens - t0);
        for (int64_t p = 0; p < n_panels; ++p) {
          MicroKernelN(nt, tile + p * kKC * kMR, kc, x + t0 * n_in + k0, n_in,
                       y + t0 * y_stride + (o0 - o_begin) + p * kMR, y_stride, k0 > 0, std::min(kMR, oc - p * kMR));
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Entry points per dtype.

// The packed GEMM over rows [o_begin, o_end) whatever n_tokens (quantized weights: MatMul sends only products at or
// above QuantDotMaxTokens() tokens here).
template <class Src>
HWY_INLINE void GemmRowsSrc(const TensorView& w, const float* x, int64_t n_tokens, float* y, int64_t y_stride,
                            int64_t o_begin, int64_t o_end) {
  const auto pack = [&w](int64_t o0, int64_t n_rows, int64_t k0, int64_t kc, float* panel, float* scratch) {
    PackRowMajor<Src>(w, o0, n_rows, k0, kc, panel, scratch);
  };
  Gemm(pack, w.Cols(), x, n_tokens, y + o_begin, y_stride, o_begin, o_end);
}

template <class Src>
HWY_INLINE void MatMulRowsSrc(const TensorView& w, const float* x, int64_t n_tokens, float* y, int64_t y_stride,
                              int64_t o_begin, int64_t o_end) {
  if (n_tokens >= kGemmMinTokens) return GemmRowsSrc<Src>(w, x, n_tokens, y, y_stride, o_begin, o_end);
  switch (n_tokens) {
    case 1:
      return DotRows<Src, 1>(w, x, y, y_stride, o_begin, o_end);
    case 2:
      return DotRows<Src, 2>(w, x, y, y_stride, o_begin, o_end);
    case 3:
      return DotRows<Src, 3>(w, x, y, y_stride, o_begin, o_end);
    default:
      return;
  }
}

// Input-major decode: y[t, c] accumulates x[t, i] * W[i, c] row by row over a column chunk that stays in L1,
// so each weight row segment is read once, contiguously.
template <class Src, int T>
HWY_INLINE void AxpyColumns(const TensorView& w, int64_t c_begin, int64_t c_end, const float* x, float* y,
                            int64_t y_stride) {
  const DW d;
  constexpr int64_t kChunk = 512;
  const int64_t n_in = w.Rows();
  for (int64_t c0 = c_begin; c0 < c_end; c0 += kChunk) {
    const int64_t cw = std::min(kChunk, c_end - c0);
    const int64_t cw_vec = cw / kL * kL;
    float* yc = y + (c0 - c_begin);
    for (int t = 0; t < T; ++t) std::fill(yc + t * y_stride, yc + t * y_stride + cw, 0.0f);
    for (int64_t i = 0; i < n_in; ++i) {
      const uint8_t* src = w.Row(i) + c0 * Src::kElemBytes;
      VW xb[T];
      for (int t = 0; t < T; ++t) xb[t] = hn::Set(d, x[t * n_in + i]);
      for (int64_t c = 0; c < cw_vec; c += kL) {
        const VW wv = Src::LoadVec(src + c * Src::kElemBytes);
        for (int t = 0; t < T; ++t) {
          float* yt = yc + t * y_stride + c;
          hn::StoreU(hn::MulAdd(wv, xb[t], hn::LoadU(d, yt)), d, yt);
        }
      }
      for (int64_t c = cw_vec; c < cw; ++c) {
        const float wc = Src::Scalar(src, c);
        for (int t = 0; t < T; ++t) yc[t * y_stride + c] += wc * x[t * n_in + i];
      }
    }
  }
}

template <class Src>
HWY_INLINE void MatMulInputMajorSrc(const TensorView& w, int64_t c_begin, int64_t c_end, const float* x,
                                    int64_t n_tokens, float* y, int64_t y_stride) {
  if (n_tokens >= kGemmMinTokens) {
    const auto pack = [&w](int64_t c0, int64_t n_cols, int64_t k0, int64_t kc, float* panel, float* scratch) {
      PackInputMajor<Src>(w, c0, n_cols, k0, kc, panel, scratch);
    };
    Gemm(pack, w.Rows(), x, n_tokens, y, y_stride, c_begin, c_end);
    return;
  }
  switch (n_tokens) {
    case 1:
      return AxpyColumns<Src, 1>(w, c_begin, c_end, x, y, y_stride);
    case 2:
      return AxpyColumns<Src, 2>(w, c_begin, c_end, x, y, y_stride);
    case 3:
      return AxpyColumns<Src, 3>(w, c_begin, c_end, x, y, y_stride);
    default:
      return;
  }
}

}  // namespace herd::kernels::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#endif  // HERD_KERNELS_CPU_MATMUL_INL_H_
