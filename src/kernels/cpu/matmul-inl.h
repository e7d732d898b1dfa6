// Per-target (Highway) matrix products with weights in their stored dtype (block layouts: llama4.md 5.4). Included
// once per SIMD target by cpu/matmul.cpp and by cpu/matmul_fp8.cpp, which adds its own source type (SrcF8E4M3).
// Reference: kernels/ref/matmul.h. Source types, each decoding a row into f32 exactly:
//  * SrcF32, SrcF16, SrcBF16 (and F8_E4M3): every kernel below, row-major and input-major weights.
//  * SrcQ8_0, SrcQ4_0, SrcK<Q4_K|Q5_K|Q6_K>: DequantizeRow only. Their products
//  are
//    integer dots at every n_tokens (cpu/qdot.h).
//
// Batch invariance (kernels/matmul.h): each output's arithmetic depends only on its weight row (column), its
// token's activations, n_in and the target, never on n_tokens, the token's index, the other tokens, the rows asked
// for or the thread split. Hence one reduction order per layout, whatever the kernel:
//  * Row-major weights: the dot kernel at every n_tokens. Per output, one f32 lane accumulator over the row's
//    vectors in order (fused multiply-add), HalvingSum over its lanes, then the n_in % kL tail inputs one by one
//    (one-lane MulAdd). Register tiles of kDotRows rows x up to kDotTokens tokens share the loads (each weight
//    vector is widened once per tile, each activation vector loaded once per tile), and for several tokens the
//    rows run in blocks of kDotBlockBytes that stay in L2 while every token tile passes over them, so prefill reads
//    the weights from memory once. Decode: 4 rows x 1 token, the weights streamed once in their stored dtype.
//    (The packed GEMM this replaced summed each output as one chain over the inputs, a different order than the
//    decode kernel, so a token's logits changed with the batch; see bench/RESULTS.md, "Batch invariance", for the
//    speed of the two.)
//  * Input-major weights (HF experts): per output, one chain of multiply-adds over the inputs i = 0, 1, ... from 0:
//    AxpyColumns below kInputMajorGemmMinTokens tokens (lanes over columns, y kept in L1), else the packed GEMM (a
//    panel of kKC inputs x kMR columns packed once per thread, a register micro-kernel of kNT tokens x kMR columns
//    over it, y carried between panels), both in the same order.
// Measurements: bench/RESULTS.md, section "Kernels" (bench/matmul_bench.cpp: BM_MatVec and BM_Prefill).

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
constexpr int64_t kGroup = 32;  // elements per dequantization group (= Q8_0/Q4_0 block)
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
  const auto mag =
      hn::IfThenElse(hn::Eq(exp, hn::Zero(du)), sub, hn::IfThenElse(hn::Eq(exp, hn::Set(du, 0x1Fu)), inf_nan, normal));
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
using SrcQ4K = SrcK<DType::kQ4_K>;
using SrcQ5K = SrcK<DType::kQ5_K>;
using SrcQ6K = SrcK<DType::kQ6_K>;

template <class Src>
constexpr bool IsSuperBlocked() {
  return requires { Src::kSuperBlock; };
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
// Dot kernel (row-major F32, F16, BF16, F8_E4M3; every n_tokens). y[t * y_stride + r] = sum_i W_r[i] x_t[i] for
// r < R, t < T, each output in one fixed order that depends only on n_in and the target: vector v (kL inputs) of
// the row is multiplied into lane accumulator v % kDotChains by a fused multiply-add (MulAdd), the accumulators are
// added in index order, their lanes summed by HalvingSum, and the n_in % kL tail elements added one by one (MulAdd
// on one lane, in input order). The tile shape R x T only decides which outputs share the loads.

// Register tile: kDotRows weight rows x up to kDotTokens tokens, R T accumulators and T activation vectors (plus one
// weight vector) in registers. 4 x 4 measured as fast as 4 x 5 and 4 x 6 and faster than 2 x 8 and 3 x 6 (F32, F16,
// BF16 prefill on the Zen 4 VM; bench/RESULTS.md, "Batch invariance"). Decode runs 4 rows x 1 token: four FMA
// chains, plenty for a product bound by memory bandwidth.
constexpr int kDotChains = 1;  // lane accumulators per output (independent FMA chains; a tile has R T of them)
constexpr int64_t kDotRows = 4;
#if HWY_TARGET <= HWY_AVX3
constexpr int64_t kDotTokens = 4;  // 21 of 32 registers
#else
constexpr int64_t kDotTokens = 3;  // 16 of 16 registers
#endif
// Weight bytes per row block: the rows a block of tokens passes over, kept in L2 (1 MiB per core on Zen 4/5)
// while every token tile of the product runs over them, so prefill streams the weights from memory once.
constexpr int64_t kDotBlockBytes = int64_t{256} << 10;

// a * b + c in one lane: the same operation (fused or not) as MulAdd on full vectors of this target.
HWY_INLINE float MulAddLane(float a, float b, float c) {
  const hn::CappedTag<float, 1> d1;
  return hn::GetLane(hn::MulAdd(hn::Set(d1, a), hn::Set(d1, b), hn::Set(d1, c)));
}

// The sum of the lanes of v by halving: lanes l and l + n/2 added for l < n/2, until one lane is left. Written out
// rather than SumOfLanes so that the order is stated here, the same tree on every target.
template <class D>
HWY_INLINE float HalvingSum(D d, hn::Vec<D> v) {
#if HWY_TARGET == HWY_SCALAR  // one lane (and no UpperHalf)
  (void)d;
  return hn::GetLane(v);
#else
  if constexpr (hn::MaxLanes(d) == 1) {
    return hn::GetLane(v);
  } else {
    const hn::Half<D> dh;
    return HalvingSum(dh, hn::Add(hn::LowerHalf(dh, v), hn::UpperHalf(dh, v)));
  }
#endif
}

template <class Src, int R, int T>
HWY_INLINE void DotTile(const uint8_t* const* rows, const float* x, int64_t x_stride, int64_t n_in, float* y,
                        int64_t y_stride) {
  static_assert(!Src::kBlocked, "quantized weights use the integer dot kernels");
  const DW d;
  VW acc[kDotChains][R][T];
  for (int c = 0; c < kDotChains; ++c) {
    for (int r = 0; r < R; ++r) {
      for (int t = 0; t < T; ++t) acc[c][r][t] = hn::Zero(d);
    }
  }
  // Vector v into accumulator c = v % kDotChains.
  const auto step = [&](int c, int64_t v) HWY_ATTR {
    VW xv[T];
    for (int t = 0; t < T; ++t) xv[t] = hn::LoadU(d, x + t * x_stride + v * kL);
    for (int r = 0; r < R; ++r) {
      const VW wv = Src::LoadVec(rows[r] + v * kL * Src::kElemBytes);
      for (int t = 0; t < T; ++t) acc[c][r][t] = hn::MulAdd(wv, xv[t], acc[c][r][t]);
    }
  };
  const int64_t n_vec = n_in / kL;
  int64_t v = 0;
  for (; v + kDotChains <= n_vec; v += kDotChains) {
    for (int c = 0; c < kDotChains; ++c) step(c, v + c);
  }
  for (int c = 0; c < kDotChains; ++c) {
    if (v + c < n_vec) step(c, v + c);
  }
  for (int r = 0; r < R; ++r) {
    for (int t = 0; t < T; ++t) {
      VW s = acc[0][r][t];
      for (int c = 1; c < kDotChains; ++c) s = hn::Add(s, acc[c][r][t]);
      float sum = HalvingSum(d, s);
      for (int64_t i = n_vec * kL; i < n_in; ++i) sum = MulAddLane(Src::Scalar(rows[r], i), x[t * x_stride + i], sum);
      y[t * y_stride + r] = sum;
    }
  }
}

// Rows [o_begin, o_end) in tiles of R (then single rows) for T tokens.
template <class Src, int R, int T>
HWY_INLINE void DotRowTiles(const TensorView& w, const float* x, float* y, int64_t y_stride, int64_t o_begin,
                            int64_t o_end) {
  const int64_t n_in = w.Cols(), stride = w.RowStride();
  int64_t o = o_begin;
  for (; o + R <= o_end; o += R) {
    const uint8_t* rows[R];
    for (int64_t r = 0; r < R; ++r) rows[r] = w.data + (o + r) * stride;
    DotTile<Src, R, T>(rows, x, n_in, n_in, y + o, y_stride);
  }
  for (; o < o_end; ++o) {
    const uint8_t* row = w.data + o * stride;
    DotTile<Src, 1, T>(&row, x, n_in, n_in, y + o, y_stride);
  }
}

// DotRowTiles for 1 <= nt <= T tokens.
template <class Src, int R, int T>
HWY_INLINE void DotRowTilesUpTo(int64_t nt, const TensorView& w, const float* x, float* y, int64_t y_stride,
                                int64_t o_begin, int64_t o_end) {
  if constexpr (T > 1) {
    if (nt < T) return DotRowTilesUpTo<Src, R, T - 1>(nt, w, x, y, y_stride, o_begin, o_end);
  }
  DotRowTiles<Src, R, T>(w, x, y, y_stride, o_begin, o_end);
}

// y[t * y_stride + o] for t < n_tokens, o in [o_begin, o_end): row blocks of kDotBlockBytes, and over each block
// every token in tiles of up to kDotTokens (decode: one token, the rows streamed once).
template <class Src>
HWY_INLINE void DotRows(const TensorView& w, const float* x, int64_t n_tokens, float* y, int64_t y_stride,
                        int64_t o_begin, int64_t o_end) {
  const int64_t n_in = w.Cols();
  const int64_t block =
      std::max<int64_t>(kDotRows, kDotBlockBytes / std::max<int64_t>(1, w.RowStride()) / kDotRows * kDotRows);
  for (int64_t ob = o_begin; ob < o_end; ob += block) {
    const int64_t oe = std::min(o_end, ob + block);
    for (int64_t t0 = 0; t0 < n_tokens; t0 += kDotTokens) {
      DotRowTilesUpTo<Src, kDotRows, kDotTokens>(std::min(kDotTokens, n_tokens - t0), w, x + t0 * n_in,
                                                 y + t0 * y_stride, y_stride, ob, oe);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Packed GEMM (input-major weights, from kInputMajorGemmMinTokens tokens). Lanes run over output columns, so each
// output is one chain of multiply-adds over the inputs in order, carried in y from one kKC panel to the next.

constexpr int64_t kMR = 2 * kL;  // output rows per micro-tile (two vectors)
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX3
constexpr int kNT = 8;  // tokens per micro-tile: 2 * kNT accumulators of 32 zmm registers
#else
constexpr int kNT = 6;  // 16 registers
#endif
constexpr int64_t kKC = 256;  // inputs per panel (multiple of kGroup)
constexpr int64_t kOC = 256;  // output rows packed at once (multiple of kMR)
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

template <class Src>
HWY_INLINE void MatMulRowsSrc(const TensorView& w, const float* x, int64_t n_tokens, float* y, int64_t y_stride,
                              int64_t o_begin, int64_t o_end) {
  DotRows<Src>(w, x, n_tokens, y, y_stride, o_begin, o_end);
}

// Input-major weights: both kernels compute each output y[t, c] in the same order, a chain of MulAdd over the
// inputs i = 0, 1, ... from 0 (lane c of the GEMM's micro-tile, kept in y between its kKC panels; or AxpyColumns'
// lane, or its one-lane MulAdd for the columns past the last full vector), so results do not depend on n_tokens.
constexpr int64_t kInputMajorGemmMinTokens = 4;  // below this, AxpyColumns (the weights read once, in order)

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
      for (int64_t c = cw_vec; c < cw; ++c) {  // the vector loop's MulAdd, one lane at a time
        const float wc = Src::Scalar(src, c);
        for (int t = 0; t < T; ++t) yc[t * y_stride + c] = MulAddLane(wc, x[t * n_in + i], yc[t * y_stride + c]);
      }
    }
  }
}

template <class Src>
HWY_INLINE void MatMulInputMajorSrc(const TensorView& w, int64_t c_begin, int64_t c_end, const float* x,
                                    int64_t n_tokens, float* y, int64_t y_stride) {
  if (n_tokens >= kInputMajorGemmMinTokens) {
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
