// Per-target (Highway) integer dot products of quantized weights with 8-bit activations: Q8_0 and Q4_0 weights
// with activations quantized per 32 (ggml's Q8_0), Q4_K, Q5_K and Q6_K with activations per 256 (ggml's Q8_K).
// Block layouts: llama4.md 5.4. Included once per target by cpu/qdot.cpp. Reference: ref::MatMulQuantized.
//
// Data path. Activations are quantized once per call (QuantizeTokenT) into records the kernels read with plain
// vector loads: codes pre-arranged in the order the weight bytes unpack to, f32 scales pre-broadcast to the
// lanes of their block, and the block sums that turn offset codes into signed ones. Each weight byte is then
// loaded once and multiplied as it is stored: bytes x bytes -> int32 lanes (VNNI vpdpbusd, or pmaddubsw +
// pmaddwd), with K-quant sub-block scales applied by the int16 multiply of pmaddwd / vpdpwssd. Integer sums are
// exact (bounds at each kernel); one f32 multiply-add per block (per super-block for the K-quants) scales them.
// Tiles (DotRows): decode takes one row x one token at a time (the weights one linear stream); several tokens
// (prefill, or a step of many sequences) take tiles of kRows weight rows x up to kTokens tokens in registers, rows
// outer and tokens inner, so a tile's decoded weight steps serve all its tokens, over blocks of tokens whose
// activation records stay in L2 (kTokenBlockBytes): each weight byte is read from memory once per token block.
// Batch invariance: each output's arithmetic is that of its own row and token (the same integer block sums and the
// same f32 operations in the same order, whatever the tile), so MatMul uses these kernels at every n_tokens.
//
// Variants tried (bench/matmul_bench.cpp, Zen 5 VM, see bench/RESULTS.md):
//   1. f32 dequantization in registers (the previous cpu/matmul-inl.h path): compute-bound, Q8_0 ~9 GB/s.
//   2. this file, one step = 2 Q8_0 / 4 Q4_0 blocks per 512-bit vector, scales widened by vcvtph2ps + vpermps.
// Q8_0 signs on VNNI: u8 x s8 only, so weights are offset by 128 (xor) and the offset's share, -128 * sum(q_x),
// rides in the accumulator's start value; without VNNI, pmaddubsw would saturate on |w| up to 255, so those
// targets use |w| x sign(x, w) instead (pairs <= 2 * 128 * 127 < 2^15).
// Targets: x86 SSSE3 and up; every other target (EMU128, SCALAR, non-x86) runs the portable scalar kernels at the
// end of this file (TODO(herd): NEON/SVE dot products need Highway >= 1.1's SumOfMulQuadAccumulate).

#if defined(HERD_KERNELS_CPU_QDOT_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef HERD_KERNELS_CPU_QDOT_INL_H_
#undef HERD_KERNELS_CPU_QDOT_INL_H_
#else
#define HERD_KERNELS_CPU_QDOT_INL_H_
#endif

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#include "core/half.h"
#include "core/status.h"
#include "core/tensor.h"
#include "hwy/cache_control.h"
#include "hwy/highway.h"
#include "kernels/cpu/bf16dot-inl.h"
#include "kernels/repack.h"

#undef HERD_QDOT_SIMD
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_SSSE3
#define HERD_QDOT_SIMD 1
#include <immintrin.h>
#else
#define HERD_QDOT_SIMD 0
#endif

HWY_BEFORE_NAMESPACE();
namespace herd::kernels::HWY_NAMESPACE {
namespace qdot {
namespace hn = hwy::HWY_NAMESPACE;

constexpr int64_t kQK = 256;  // elements per K-quant super-block

inline uint16_t LoadU16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

// ---------------------------------------------------------------------------------------------------------
// Activation quantization (the semantics of ref::QuantizeActivations; bit-identical on every target).

// Quantizes x[0, kN) to q[0, kN) (natural order) and returns the scale d: NaN (q = 0) if an element is not
// finite, 0 (q = 0) if all are zero, else amax / 127 with q = nearbyint(x * (127 / amax)).
template <int64_t kN>
HWY_INLINE float QuantizeBlock(const float* HWY_RESTRICT x, int8_t* HWY_RESTRICT q) {
#if HERD_QDOT_SIMD
  const hn::CappedTag<float, 16> d;
  const hn::Rebind<int8_t, decltype(d)> d8;
  constexpr int64_t kLanes = static_cast<int64_t>(hn::MaxLanes(d));
  auto vmax = hn::Zero(d), probe = hn::Zero(d);
  for (int64_t i = 0; i < kN; i += kLanes) {
    const auto v = hn::LoadU(d, x + i);
    vmax = hn::Max(vmax, hn::Abs(v));
    probe = hn::Add(probe, hn::Mul(v, hn::Zero(d)));  // NaN iff some element is inf or NaN
  }
  const float amax = hn::GetLane(hn::MaxOfLanes(d, vmax));
  if (hn::GetLane(hn::SumOfLanes(d, probe)) != 0.0f || amax == 0.0f) {
    std::memset(q, 0, kN);
    return amax == 0.0f ? 0.0f : std::numeric_limits<float>::quiet_NaN();
  }
  const auto id = hn::Set(d, 127.0f / amax);
  for (int64_t i = 0; i < kN; i += kLanes) {
    hn::StoreU(hn::DemoteTo(d8, hn::NearestInt(hn::Mul(hn::LoadU(d, x + i), id))), d8, q + i);
  }
  return amax / 127.0f;
#else
  float amax = 0.0f;
  bool finite = true;
  for (int64_t i = 0; i < kN; ++i) {
    finite = finite && std::isfinite(x[i]);
    amax = std::max(amax, std::fabs(x[i]));
  }
  if (!finite || amax == 0.0f) {
    std::memset(q, 0, kN);
    return finite ? 0.0f : std::numeric_limits<float>::quiet_NaN();
  }
  const float id = 127.0f / amax;
  for (int64_t i = 0; i < kN; ++i) q[i] = static_cast<int8_t>(std::nearbyint(x[i] * id));
  return amax / 127.0f;
#endif
}

inline int32_t SumCodes(const int8_t* q, int64_t n) {
  int32_t s = 0;
  for (int64_t i = 0; i < n; ++i) s += q[i];
  return s;
}

#if HERD_QDOT_SIMD
// ---------------------------------------------------------------------------------------------------------
// Vector types. One vector is kNB bytes: 16 (SSSE3, SSE4), 32 (AVX2) or 64 (AVX3, AVX3_DL). Code that differs
// by width uses the preprocessor (HERD_QDOT_NB): a discarded `if constexpr` outside a template is still checked.
#undef HERD_QDOT_NB
#if HWY_TARGET <= HWY_AVX3
#define HERD_QDOT_NB 64
#elif HWY_TARGET == HWY_AVX2
#define HERD_QDOT_NB 32
#else
#define HERD_QDOT_NB 16
#endif

using DB = hn::CappedTag<uint8_t, 64>;  // weight bytes
using DS = hn::RebindToSigned<DB>;      // activation codes
using DW = hn::Repartition<int16_t, DB>;
using DI = hn::Repartition<int32_t, DB>;
using DF = hn::Repartition<float, DB>;
using VB = hn::Vec<DB>;
using VS = hn::Vec<DS>;
using VW = hn::Vec<DW>;
using VI = hn::Vec<DI>;
using VF = hn::Vec<DF>;
using D128 = hn::Full128<uint8_t>;
using V128 = hn::Vec<D128>;
using V128W = hn::Vec<hn::Full128<int16_t>>;
using V128I = hn::Vec<hn::Full128<int32_t>>;
constexpr int64_t kNB = static_cast<int64_t>(hn::MaxLanes(DB()));
constexpr int64_t kNI = kNB / 4;  // int32 and f32 lanes

// lane j of the result = u[2j] s[2j] + u[2j+1] s[2j+1] (pmaddubsw), saturated to int16: callers keep |u| small
// enough that no pair reaches 2^15.
HWY_INLINE VW MulPairs(VB u, VS s) {
#if HWY_TARGET <= HWY_AVX3
  return VW{_mm512_maddubs_epi16(u.raw, s.raw)};
#elif HWY_TARGET == HWY_AVX2
  return VW{_mm256_maddubs_epi16(u.raw, s.raw)};
#else
  return VW{_mm_maddubs_epi16(u.raw, s.raw)};
#endif
}

// acc + (a[2j] b[2j] + a[2j+1] b[2j+1]) per int32 lane j (vpdpwssd on VNNI, else pmaddwd + add); exact.
HWY_INLINE VI DotPairs(VI acc, VW a, VW b) {
#if HWY_TARGET == HWY_AVX3_DL
  // Highway 1.0.3 has no VNNI op and its AVX3_DL target string lacks avx512vnni; the target's runtime check does
  // require AVX512-VNNI, so the instruction is safe here, written as inline assembly.
  auto r = acc.raw;
  __asm__("vpdpwssd %[b], %[a], %[r]" : [r] "+v"(r) : [a] "v"(a.raw), [b] "vm"(b.raw));
  return VI{r};
#elif HWY_TARGET <= HWY_AVX3
  return hn::Add(acc, VI{_mm512_madd_epi16(a.raw, b.raw)});
#elif HWY_TARGET == HWY_AVX2
  return hn::Add(acc, VI{_mm256_madd_epi16(a.raw, b.raw)});
#else
  return hn::Add(acc, VI{_mm_madd_epi16(a.raw, b.raw)});
#endif
}

// acc + sum of the 4 products u[4j + k] s[4j + k] per int32 lane j. Exact with VNNI (vpdpbusd); otherwise
// pmaddubsw + pmaddwd, exact while every pair of products stays below 2^15 in magnitude.
HWY_INLINE VI DotQuads(VI acc, VB u, VS s) {
#if HWY_TARGET == HWY_AVX3_DL
  auto r = acc.raw;
  __asm__("vpdpbusd %[s], %[u], %[r]" : [r] "+v"(r) : [u] "v"(u.raw), [s] "vm"(s.raw));
  return VI{r};
#else
  return DotPairs(acc, MulPairs(u, s), hn::Set(DW(), 1));
#endif
}

// |w| as bytes and x * sign(w) (0 where w = 0): the operands of a signed x signed byte product for pmaddubsw.
HWY_INLINE VB AbsBytes(VS w) { return hn::BitCast(DB(), hn::Abs(w)); }
HWY_INLINE VS ApplySign(VS x, VS w) {
#if HWY_TARGET <= HWY_AVX3
  return VS{_mm512_mask_sub_epi8(x.raw, _mm512_movepi8_mask(w.raw), _mm512_setzero_si512(), x.raw)};
#elif HWY_TARGET == HWY_AVX2
  return VS{_mm256_sign_epi8(x.raw, w.raw)};
#else
  return VS{_mm_sign_epi8(x.raw, w.raw)};
#endif
}

// A 128-bit vector zero-extended to a full vector.
template <class D, class V>
HWY_INLINE hn::Vec<D> Widen(D d, V v) {
#if HWY_TARGET <= HWY_AVX3
  const hn::Half<D> dh;
  return hn::ZeroExtendVector(d, hn::ZeroExtendVector(dh, v));
#elif HWY_TARGET == HWY_AVX2
  return hn::ZeroExtendVector(d, v);
#else
  (void)d;
  return v;
#endif
}

// The 128-bit v in every 128-bit block of a full vector: the table of a pshufb, which looks up within each block.
// (Highway 1.0.3's TableLookupBytes zero-extends a 128-bit table instead.)
HWY_INLINE VB DupBlocks(V128 v) {
#if HWY_TARGET <= HWY_AVX3
  return VB{_mm512_maskz_broadcast_i32x4(0xFFFF, v.raw)};  // maskz: see VbmiStep
#elif HWY_TARGET == HWY_AVX2
  return VB{_mm256_broadcastsi128_si256(v.raw)};
#else
  return v;
#endif
}

// One IEEE half as f32 (F16C where the target has it; core/half.h otherwise).
HWY_INLINE float F16(const uint8_t* p) {
#if HWY_TARGET <= HWY_AVX2 && !defined(HWY_DISABLE_F16C)
  return _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(LoadU16(p))));
#else
  return F16ToF32(LoadU16(p));
#endif
}

// The f16 scales of kBlk consecutive blocks (bytes p, p + stride, ...) as f32, block j's scale in lanes
// [j kNI / kBlk, (j + 1) kNI / kBlk): one vcvtph2ps and one permute.
template <int64_t kBlk>
HWY_INLINE VF BlockScales(const uint8_t* p, int64_t stride) {
  if constexpr (kBlk == 1) {
    return hn::Set(DF(), F16(p));
  } else {
#if HWY_TARGET <= HWY_AVX2 && !defined(HWY_DISABLE_F16C)
    uint64_t bits = 0;
    for (int64_t j = 0; j < kBlk; ++j) bits |= static_cast<uint64_t>(LoadU16(p + j * stride)) << (16 * j);
    const __m128 s = _mm_cvtph_ps(_mm_set_epi64x(0, static_cast<int64_t>(bits)));
#if HWY_TARGET <= HWY_AVX3
    constexpr int kPer = 16 / kBlk;
    const __m512i idx =
        _mm512_set_epi32(15 / kPer, 14 / kPer, 13 / kPer, 12 / kPer, 11 / kPer, 10 / kPer, 9 / kPer, 8 / kPer, 7 / kPer,
                         6 / kPer, 5 / kPer, 4 / kPer, 3 / kPer, 2 / kPer, 1 / kPer, 0);
    return VF{_mm512_maskz_permutexvar_ps(0xFFFF, idx, _mm512_zextps128_ps512(s))};  // maskz: see VbmiStep
#else
    constexpr int kPer = 8 / kBlk;
    const __m256i idx = _mm256_set_epi32(7 / kPer, 6 / kPer, 5 / kPer, 4 / kPer, 3 / kPer, 2 / kPer, 1 / kPer, 0);
    return VF{_mm256_permutevar8x32_ps(_mm256_zextps128_ps256(s), idx)};
#endif
#else
    static_assert(kBlk == 1, "several blocks per vector only on AVX2 and up");
#endif
  }
}

template <size_t N>
using Bytes = std::array<uint8_t, N>;

#if HWY_TARGET == HWY_AVX3_DL
// A step of kBlk blocks of kBlockBytes (d f16, then kCodeBytes of codes), 64 < kBlk * kBlockBytes <= 128, read
// with two loads and split by two VBMI byte permutes: the codes of the blocks side by side, and the scales as 16
// halves, block j's in lanes [16 j / kBlk, 16 (j + 1) / kBlk), widened by one vcvtph2ps. (Without VBMI: two to
// four loads and inserts, and the scales one by one.)
template <int64_t kBlk, int64_t kBlockBytes, int64_t kCodeBytes>
struct VbmiStep {
  static constexpr int64_t kStepBytes = kBlk * kBlockBytes;
  static_assert(kStepBytes > 64 && kStepBytes <= 128 && kBlk * kCodeBytes == 64);
  struct Tables {
    Bytes<64> codes, scales;
  };
  static constexpr Tables MakeTables() {
    Tables t{};
    for (int64_t i = 0; i < 64; ++i) {
      const int64_t p = i / kCodeBytes * kBlockBytes + 2 + i % kCodeBytes;         // source byte in the step
      t.codes[i] = static_cast<uint8_t>(p < 64 ? p : 64 + p - (kStepBytes - 64));  // A, or B = bytes from end - 64
      t.scales[i] = i < 32 ? static_cast<uint8_t>(i / 2 / (16 / kBlk) * kBlockBytes + i % 2) : 0;
    }
    return t;
  }
  alignas(64) static constexpr Tables kTables = MakeTables();

  static HWY_INLINE void Load(const uint8_t* step, VB* codes, VF* scales) {
    const __m512i a = _mm512_loadu_si512(step);
    const __m512i b = _mm512_loadu_si512(step + kStepBytes - 64);
    *codes = VB{_mm512_permutex2var_epi8(a, _mm512_load_si512(kTables.codes.data()), b)};
    // maskz forms with full masks, and the lower half by a shuffle: GCC 12 warns about the undefined pass-through
    // values inside the plain intrinsics and _mm512_castsi512_si256.
    const __m512i halves = _mm512_maskz_permutexvar_epi8(~uint64_t{0}, _mm512_load_si512(kTables.scales.data()), a);
    const __m256i low = __builtin_shufflevector(halves, halves, 0, 1, 2, 3);
    *scales = VF{_mm512_maskz_cvtph_ps(0xFFFF, low)};
  }
};
#endif

#if HWY_TARGET == HWY_AVX3_DL
// Four Q8_0 blocks (136 bytes) as two code vectors, the first and the second 16 codes of each block side by side
// ([b0[0, 16), b1[0, 16), b2[0, 16), b3[0, 16)] and the same for [16, 32)), so that both dpbusd of a step add into
// 4 lanes per block and the f32 work (convert, scale, add) covers 4 blocks, not 2. Four loads, three VBMI
// permutes (the second vector spans bytes 18..135, hence its own pair of loads), one vcvtph2ps.
struct VbmiQ8_0Tables {
  Bytes<64> first, second, scales;
};
constexpr VbmiQ8_0Tables MakeVbmiQ8_0Tables() {
  VbmiQ8_0Tables t{};
  for (int64_t i = 0; i < 64; ++i) {
    const int64_t j = i / 16, p1 = 34 * j + 2 + i % 16, p2 = p1 + 16;
    t.first[i] = static_cast<uint8_t>(p1);                                  // A = bytes [0, 64), B = [64, 128)
    t.second[i] = static_cast<uint8_t>(p2 < 72 ? p2 - 8 : 64 + p2 - 72);    // A' = [8, 72), C = [72, 136)
    t.scales[i] = i < 32 ? static_cast<uint8_t>(34 * (i / 8) + i % 2) : 0;  // the halves, from A and B
  }
  return t;
}

struct VbmiStepQ8_0 {
  alignas(64) static constexpr VbmiQ8_0Tables kTables = MakeVbmiQ8_0Tables();

  static HWY_INLINE void Load(const uint8_t* step, VB* first, VB* second, VF* scales) {
    const __m512i a = _mm512_loadu_si512(step), b = _mm512_loadu_si512(step + 64);
    const __m512i a8 = _mm512_loadu_si512(step + 8), c = _mm512_loadu_si512(step + 72);
    *first = VB{_mm512_permutex2var_epi8(a, _mm512_load_si512(kTables.first.data()), b)};
    *second = VB{_mm512_permutex2var_epi8(a8, _mm512_load_si512(kTables.second.data()), c)};
    const __m512i halves = _mm512_permutex2var_epi8(a, _mm512_load_si512(kTables.scales.data()), b);
    const __m256i low = __builtin_shufflevector(halves, halves, 0, 1, 2, 3);
    *scales = VF{_mm512_maskz_cvtph_ps(0xFFFF, low)};
  }
};
#endif

// ---------------------------------------------------------------------------------------------------------
// Q8_0 weights x Q8 activations. Step: kBlk blocks of 34 bytes (d f16, qs[32] int8) in kVecs code vectors:
// AVX3_DL 4 blocks split in halves (VbmiStepQ8_0), AVX3 2 blocks per vector, AVX2 1, SSE 1 in two vectors.
// Activation record per step: codes [kBlk * 32] in the order of the code vectors, start values of the int32
// lanes [kNI] (VNNI: -128 * the codes each lane multiplies), d_x [kNI] (per lane). |int32 lane| <= 8 * 255 * 127.
struct DotQ8_0Q8 {
  static constexpr int64_t kBlockElems = 32, kBlockBytes = 34;
  static constexpr int64_t kBlk = HWY_TARGET == HWY_AVX3_DL ? 4 : kNB == 64 ? 2 : 1;
  static constexpr int64_t kVecs = kBlk * 32 / kNB;
  static constexpr int64_t kStepBytes = kBlk * kBlockBytes;
  static constexpr int64_t kRecordBytes = kBlk * 32 + 2 * kNB;
  static constexpr bool kOffset = HWY_TARGET == HWY_AVX3_DL;
  static constexpr int32_t kCodeOffset = kOffset ? 128 : 0;  // what the record's start value takes back

  struct W {
    VB u[kVecs];  // VNNI: w + 128; else |w|
    VS s[kVecs];  // the signs (non-VNNI)
    VF scale;
  };

  static HWY_INLINE void Load(const uint8_t* blk, W& w) {
#if HWY_TARGET == HWY_AVX3_DL
    VbmiStepQ8_0::Load(blk, &w.u[0], &w.u[1], &w.scale);
    w.u[0] = hn::Xor(w.u[0], hn::Set(DB(), uint8_t{0x80}));
    w.u[1] = hn::Xor(w.u[1], hn::Set(DB(), uint8_t{0x80}));
#else
    const DS ds;
    VS raw[kVecs];
#if HERD_QDOT_NB == 64
    const hn::Half<DS> dh;
    raw[0] = hn::Combine(ds, hn::LoadU(dh, reinterpret_cast<const int8_t*>(blk + 36)),
                         hn::LoadU(dh, reinterpret_cast<const int8_t*>(blk + 2)));
#else
    for (int64_t v = 0; v < kVecs; ++v) raw[v] = hn::LoadU(ds, reinterpret_cast<const int8_t*>(blk + 2 + v * kNB));
#endif
    for (int64_t v = 0; v < kVecs; ++v) {
      if constexpr (kOffset) {
        w.u[v] = hn::Xor(hn::BitCast(DB(), raw[v]), hn::Set(DB(), uint8_t{0x80}));
      } else {
        w.u[v] = AbsBytes(raw[v]);
        w.s[v] = raw[v];
      }
    }
    w.scale = BlockScales<kBlk>(blk, kBlockBytes);
#endif
  }

  static HWY_INLINE void Step(const W& w, const uint8_t* rec, VF& acc) {
    const DS ds;
    const int8_t* qx = reinterpret_cast<const int8_t*>(rec);
    VI isum = hn::LoadU(DI(), reinterpret_cast<const int32_t*>(rec + kBlk * 32));
    for (int64_t v = 0; v < kVecs; ++v) {
      const VS x = hn::LoadU(ds, qx + v * kNB);
      if constexpr (kOffset) {
        isum = DotQuads(isum, w.u[v], x);
      } else {
        isum = DotQuads(isum, w.u[v], ApplySign(x, w.s[v]));
      }
    }
    const VF dx = hn::LoadU(DF(), reinterpret_cast<const float*>(rec + kBlk * 32 + kNB));
    acc = hn::MulAdd(hn::ConvertTo(DF(), isum), hn::Mul(w.scale, dx), acc);
  }

  // Block j of the step: codes at 32 j, in natural order; on AVX3_DL halves as DotQ4_0Q8.
  static HWY_INLINE void PlaceCodes(const int8_t* q, int64_t j, uint8_t* rec) {
#if HWY_TARGET == HWY_AVX3_DL
    std::memcpy(rec + 16 * j, q, 16);
    std::memcpy(rec + kNB + 16 * j, q + 16, 16);
#else
    std::memcpy(rec + 32 * j, q, 32);
#endif
  }
};

// ---------------------------------------------------------------------------------------------------------
// Q4_0 weights x Q8 activations. Step: kBlk = kNB / 16 blocks of 18 bytes (d f16, qs[16]: low nibbles are
// elements 0-15, high nibbles 16-31); their qs side by side in one vector split into low and high nibbles.
// Record: codes of the low halves [kNB] (block j's elements 0-15 at 16 j), of the high halves [kNB], start values
// [kNI] (-8 * the codes each lane multiplies), d_x [kNI]. Nibbles are <= 15: pmaddubsw pairs < 2^15.
struct DotQ4_0Q8 {
  static constexpr int64_t kBlockElems = 32, kBlockBytes = 18;
  static constexpr int64_t kBlk = kNB / 16;
  static constexpr int64_t kStepBytes = kBlk * kBlockBytes;
  static constexpr int64_t kRecordBytes = kBlk * 32 + 2 * kNB;
  static constexpr int32_t kCodeOffset = 8;

  struct W {
    VB lo, hi;
    VF scale;
  };

  static HWY_INLINE void Load(const uint8_t* blk, W& w) {
#if HWY_TARGET == HWY_AVX3_DL
    VB v;
    VbmiStep<kBlk, kBlockBytes, 16>::Load(blk, &v, &w.scale);
    w.lo = hn::And(v, hn::Set(DB(), uint8_t{0x0F}));
    w.hi = hn::ShiftRight<4>(v);
    return;
#elif HERD_QDOT_NB == 64
    const D128 d16;
    const hn::Half<DB> d32;
    const auto a = hn::Combine(d32, hn::LoadU(d16, blk + 20), hn::LoadU(d16, blk + 2));
    const auto b = hn::Combine(d32, hn::LoadU(d16, blk + 56), hn::LoadU(d16, blk + 38));
    const VB v = hn::Combine(DB(), b, a);
#elif HERD_QDOT_NB == 32
    const D128 d16;
    const VB v = hn::Combine(DB(), hn::LoadU(d16, blk + 20), hn::LoadU(d16, blk + 2));
#else
    const VB v = hn::LoadU(DB(), blk + 2);
#endif
#if HWY_TARGET != HWY_AVX3_DL
    w.lo = hn::And(v, hn::Set(DB(), uint8_t{0x0F}));
    w.hi = hn::ShiftRight<4>(v);
    w.scale = BlockScales<kBlk>(blk, kBlockBytes);
#endif
  }

  static HWY_INLINE void Step(const W& w, const uint8_t* rec, VF& acc) {
    const DS ds;
    const int8_t* qx = reinterpret_cast<const int8_t*>(rec);
    VI isum = hn::LoadU(DI(), reinterpret_cast<const int32_t*>(rec + kBlk * 32));
    isum = DotQuads(isum, w.lo, hn::LoadU(ds, qx));
    isum = DotQuads(isum, w.hi, hn::LoadU(ds, qx + kNB));
    const VF dx = hn::LoadU(DF(), reinterpret_cast<const float*>(rec + kBlk * 32 + kNB));
    acc = hn::MulAdd(hn::ConvertTo(DF(), isum), hn::Mul(w.scale, dx), acc);
  }

  static HWY_INLINE void PlaceCodes(const int8_t* q, int64_t j, uint8_t* rec) {
    std::memcpy(rec + 16 * j, q, 16);
    std::memcpy(rec + kNB + 16 * j, q + 16, 16);
  }
};

// Record of the 32-blocks: fills the start values and per-lane scales of one step whose codes are in place and
// whose blocks have scales `d` (blocks past the row end: codes 0, scale 0). Int32 lane k sums the products of
// bytes 4k..4k+3 of each code vector of the step, so its start value takes back the offset of exactly those
// codes: every lane then holds an exact partial dot product of signed weights, never a large value that would
// cancel against another lane after the f32 conversion.
template <class K>
HWY_INLINE void FinishRecord32(const float* d, uint8_t* rec) {
  const int8_t* codes = reinterpret_cast<const int8_t*>(rec);
  int32_t start[kNI] = {};
  float dx[kNI];
  constexpr int64_t kPer = kNI / K::kBlk;
  for (int64_t k = 0; k < kNI; ++k) {
    for (int64_t v = 0; v < K::kBlk * 32 / kNB; ++v) start[k] -= K::kCodeOffset * SumCodes(codes + v * kNB + 4 * k, 4);
    dx[k] = d[k / kPer];
  }
  std::memcpy(rec + K::kBlk * 32, start, sizeof(start));
  std::memcpy(rec + K::kBlk * 32 + kNB, dx, sizeof(dx));
}

// ---------------------------------------------------------------------------------------------------------
// K-quants. Activation record per super-block: codes [256] in the kernel's order, then for Q4_K/Q5_K the 8 sums
// of 32 codes (int16, at 256) and d_x (f32, at 288); for Q6_K 32 (x[2j] + x[2j+1]) for the 128 code pairs (int16,
// at 256) and d_x (f32, at 512).

constexpr int64_t kRecordQ45K = 320;
constexpr int64_t kRecordQ6K = 576;
constexpr int64_t kKVecs = 128 / kNB;  // vectors of 128 bytes of 4-bit codes per super-block

// Q4_K/Q5_K code order: for qs vector v, its low nibbles (lane k is byte p = v kNB + k of qs, element
// 64 (p / 32) + p % 32) at 2 kNB v, then its high nibbles (those elements + 32) at 2 kNB v + kNB.
inline int64_t Q45KCodeSource(int64_t pos) {
  const int64_t v = pos / (2 * kNB), k = pos % kNB, high = (pos / kNB) % 2;
  const int64_t p = v * kNB + k;
  return 64 * (p / 32) + p % 32 + 32 * high;
}

// Unpacks the 12 bytes of 6-bit scales and mins at s (llama4.md 5.4; 16 bytes are read, all inside the block) to
// bytes [sc0..sc7, mn0..mn7], with two byte shuffles.
HWY_INLINE V128 UnpackScalesMins(const uint8_t* s) {
  const D128 d;
  alignas(16) static constexpr uint8_t kIdx1[16] = {0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 8, 9, 10, 11};
  alignas(16) static constexpr uint8_t kMaskLo[16] = {63, 63, 63, 63, 15, 15, 15, 15, 63, 63, 63, 63, 0, 0, 0, 0};
  alignas(16) static constexpr uint8_t kMaskHi[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255, 255, 255};
  alignas(16) static constexpr uint8_t kIdx2[16] = {128, 128, 128, 128, 0, 1, 2, 3, 128, 128, 128, 128, 4, 5, 6, 7};
  const V128 v = hn::LoadU(d, s);
  const V128 t1 = hn::TableLookupBytes(v, hn::Load(d, kIdx1));
  const V128 low = hn::Or(hn::And(t1, hn::Load(d, kMaskLo)), hn::And(hn::ShiftRight<4>(t1), hn::Load(d, kMaskHi)));
  const V128 t2 = hn::TableLookupBytesOr0(v, hn::Load(d, kIdx2));
  return hn::Or(low, hn::And(hn::ShiftRight<2>(t2), hn::Set(d, uint8_t{0x30})));
}

// Byte tables of the Q4_K/Q5_K kernel, per qs vector v: the pshufb indices that spread sub-block scales over the
// int16 lanes of the low / high nibble products (lane j holds bytes 2j, 2j+1: sub-block 2 ((v kNB + 2j) / 32),
// plus 1 for the high nibbles; 0x80 zeroes the upper byte), and Q5_K's bit masks into qh (bit 2c for the low
// nibbles of chunk c = (v kNB + k) / 32, bit 2c + 1 for the high ones).
struct Q45KTables {
  Bytes<kNB * kKVecs> scale_lo, scale_hi, bit_lo, bit_hi;
};
constexpr Q45KTables MakeQ45KTables() {
  Q45KTables t{};
  for (int64_t v = 0; v < kKVecs; ++v) {
    for (int64_t k = 0; k < kNB; ++k) {
      const int64_t p = v * kNB + k, c = p / 32, at = v * kNB + k;
      t.scale_lo[at] = k % 2 == 0 ? static_cast<uint8_t>(2 * c) : 0x80;
      t.scale_hi[at] = k % 2 == 0 ? static_cast<uint8_t>(2 * c + 1) : 0x80;
      t.bit_lo[at] = static_cast<uint8_t>(1u << (2 * c));
      t.bit_hi[at] = static_cast<uint8_t>(2u << (2 * c));
    }
  }
  return t;
}
alignas(64) inline constexpr Q45KTables kQ45K = MakeQ45KTables();

// Q4_K (kQ5 = false: 144 bytes d, dmin, scales[12], qs[128]) and Q5_K (176 bytes: d, dmin, scales[12], qh[32],
// qs[128]). Per super-block: d_x (d sum_j sc_j sum q q_x - dmin sum_j mn_j bsum_j). Codes <= 31, so pmaddubsw
// pairs <= 2 * 31 * 127; |int32 sum| <= 63 * 31 * 127 * 256 < 2^26.
template <bool kQ5>
struct DotQ45KQ8K {
  static constexpr int64_t kBlockElems = kQK, kBlockBytes = kQ5 ? 176 : 144;
  static constexpr int64_t kBlk = 1;
  static constexpr int64_t kStepBytes = kBlockBytes;
  static constexpr int64_t kRecordBytes = kRecordQ45K;

  struct W {
    VB lo[kKVecs], hi[kKVecs];
    VW sc_lo[kKVecs], sc_hi[kKVecs];
    V128W mins;
    float d, dmin;
  };

  static HWY_INLINE void Load(const uint8_t* blk, W& w) {
    const DB db;
    w.d = F16(blk);
    w.dmin = F16(blk + 2);
    const V128 scmn = UnpackScalesMins(blk + 4);
    alignas(16) static constexpr uint8_t kMinIdx[16] = {8,  128, 9,  128, 10, 128, 11, 128,
                                                        12, 128, 13, 128, 14, 128, 15, 128};
    w.mins = hn::BitCast(hn::Full128<int16_t>(), hn::TableLookupBytesOr0(scmn, hn::Load(D128(), kMinIdx)));
    const VB table = DupBlocks(scmn);
    const uint8_t* qs = blk + (kQ5 ? 48 : 16);
    const uint8_t* qh = blk + 16;
#if HERD_QDOT_NB == 64
    const hn::Half<DB> dh;
    [[maybe_unused]] const VB h = kQ5 ? hn::Combine(db, hn::LoadU(dh, qh), hn::LoadU(dh, qh)) : hn::Zero(db);
#elif HERD_QDOT_NB == 32
    [[maybe_unused]] const VB h = hn::LoadU(db, qh);
#endif
    for (int64_t v = 0; v < kKVecs; ++v) {
      const VB q = hn::LoadU(db, qs + v * kNB);
      w.lo[v] = hn::And(q, hn::Set(db, uint8_t{0x0F}));
      w.hi[v] = hn::ShiftRight<4>(q);
      if constexpr (kQ5) {
#if HERD_QDOT_NB == 16
        const VB h = hn::LoadU(db, qh + 16 * (v % 2));
#endif
        const VB sixteen = hn::Set(db, uint8_t{16});
        w.lo[v] =
            hn::Or(w.lo[v], hn::IfThenElseZero(hn::TestBit(h, hn::Load(db, kQ45K.bit_lo.data() + v * kNB)), sixteen));
        w.hi[v] =
            hn::Or(w.hi[v], hn::IfThenElseZero(hn::TestBit(h, hn::Load(db, kQ45K.bit_hi.data() + v * kNB)), sixteen));
      }
      w.sc_lo[v] = hn::BitCast(DW(), hn::TableLookupBytesOr0(table, hn::Load(db, kQ45K.scale_lo.data() + v * kNB)));
      w.sc_hi[v] = hn::BitCast(DW(), hn::TableLookupBytesOr0(table, hn::Load(db, kQ45K.scale_hi.data() + v * kNB)));
    }
  }

  static HWY_INLINE void Step(const W& w, const uint8_t* rec, VF& acc) {
    const DS ds;
    const int8_t* qx = reinterpret_cast<const int8_t*>(rec);
    VI isum = hn::Zero(DI());
    for (int64_t v = 0; v < kKVecs; ++v) {
      isum = DotPairs(isum, MulPairs(w.lo[v], hn::LoadU(ds, qx + 2 * kNB * v)), w.sc_lo[v]);
      isum = DotPairs(isum, MulPairs(w.hi[v], hn::LoadU(ds, qx + 2 * kNB * v + kNB)), w.sc_hi[v]);
    }
    const V128W bsum = hn::LoadU(hn::Full128<int16_t>(), reinterpret_cast<const int16_t*>(rec + 256));
    const V128I msum{_mm_madd_epi16(w.mins.raw, bsum.raw)};
    float dx;
    std::memcpy(&dx, rec + 288, 4);
    acc = hn::MulAdd(hn::ConvertTo(DF(), isum), hn::Set(DF(), w.d * dx), acc);
    acc = hn::NegMulAdd(Widen(DF(), hn::ConvertTo(hn::Full128<float>(), msum)), hn::Set(DF(), w.dmin * dx), acc);
  }

  static HWY_INLINE void PlaceCodes(const int8_t* q, uint8_t* rec) {
    for (int64_t pos = 0; pos < kQK; pos += 16) std::memcpy(rec + pos, q + Q45KCodeSource(pos), 16);
    int16_t sums[8];
    for (int j = 0; j < 8; ++j) sums[j] = static_cast<int16_t>(SumCodes(q + 32 * j, 32));
    std::memcpy(rec + 256, sums, sizeof(sums));
  }
  static constexpr int64_t kScaleOffset = 288;
};

// Byte tables of the Q6_K kernel, per vector c of 64-byte half: the pshufb indices spreading the half's eight
// int16 scales over the lanes of the products of the low-nibble codes (group (c kNB + 2j) / 16) and the
// high-nibble codes (4 + that).
constexpr int64_t kQ6Vecs = 64 / kNB;  // vectors per half of ql
struct Q6KTables {
  Bytes<kNB * kQ6Vecs> scale_a, scale_b;
};
constexpr Q6KTables MakeQ6KTables() {
  Q6KTables t{};
  for (int64_t c = 0; c < kQ6Vecs; ++c) {
    for (int64_t k = 0; k < kNB; ++k) {
      const int64_t g = (c * kNB + (k & ~int64_t{1})) / 16;
      t.scale_a[c * kNB + k] = static_cast<uint8_t>(2 * g + k % 2);
      t.scale_b[c * kNB + k] = static_cast<uint8_t>(2 * (4 + g) + k % 2);
    }
  }
  return t;
}
alignas(64) inline constexpr Q6KTables kQ6K = MakeQ6KTables();

// Q6_K (210 bytes: ql[128], qh[64], scales[16] int8, d). Unsigned codes q in [0, 63]; each int16 pair product
// q x + q' x' (pmaddubsw, <= 2 * 63 * 127) has the record's 32 (x + x') taken off before the scale multiplies it,
// so the lanes hold exact signed partial sums: d_x d sum_g S_g sum (q - 32) q_x. |int32 sum| <= 128 * 32 * 127 *
// 256 < 2^28.
struct DotQ6KQ8K {
  static constexpr int64_t kBlockElems = kQK, kBlockBytes = 210;
  static constexpr int64_t kBlk = 1;
  static constexpr int64_t kStepBytes = kBlockBytes;
  static constexpr int64_t kRecordBytes = kRecordQ6K;

  struct W {
    VB qa[2 * kQ6Vecs], qb[2 * kQ6Vecs];  // elements 128h + c kNB + [0, kNB), and + 64
    VW sa[2 * kQ6Vecs], sb[2 * kQ6Vecs];
    float d;
  };

  static HWY_INLINE void Load(const uint8_t* blk, W& w) {
    const DB db;
    w.d = F16(blk + 208);
    const hn::Full64<int8_t> d8;
    for (int h = 0; h < 2; ++h) {
      const V128W scales =
          hn::PromoteTo(hn::Full128<int16_t>(), hn::LoadU(d8, reinterpret_cast<const int8_t*>(blk + 192 + 8 * h)));
      const VB sbytes = DupBlocks(hn::BitCast(D128(), scales));
      for (int64_t c = 0; c < kQ6Vecs; ++c) {
        const int64_t p0 = c * kNB;
        const VB l = hn::LoadU(db, blk + 64 * h + p0);
        // The qh bits of these lanes, shifted so that bits 0-1 / 4-5 are those of the low / high nibbles.
#if HERD_QDOT_NB == 64
        const hn::Half<DB> dh;
        const auto h32 = hn::LoadU(dh, blk + 128 + 32 * h);
        const VB hb = hn::Combine(db, hn::ShiftRight<2>(h32), h32);
#else
        VB hb = hn::LoadU(db, blk + 128 + 32 * h + p0 % 32);
        if (p0 >= 32) hb = hn::ShiftRight<2>(hb);
#endif
        const int64_t at = h * kQ6Vecs + c;
        w.qa[at] =
            hn::Or(hn::And(l, hn::Set(db, uint8_t{0x0F})), hn::And(hn::ShiftLeft<4>(hb), hn::Set(db, uint8_t{0x30})));
        w.qb[at] = hn::Or(hn::ShiftRight<4>(l), hn::And(hb, hn::Set(db, uint8_t{0x30})));
        w.sa[at] = hn::BitCast(DW(), hn::TableLookupBytes(sbytes, hn::Load(db, kQ6K.scale_a.data() + c * kNB)));
        w.sb[at] = hn::BitCast(DW(), hn::TableLookupBytes(sbytes, hn::Load(db, kQ6K.scale_b.data() + c * kNB)));
      }
    }
  }

  static HWY_INLINE void Step(const W& w, const uint8_t* rec, VF& acc) {
    const DS ds;
    const DW dw;
    const int8_t* qx = reinterpret_cast<const int8_t*>(rec);
    const int16_t* offs = reinterpret_cast<const int16_t*>(rec + 256);  // pair p (elements 2p, 2p + 1) at p
    VI isum = hn::Zero(DI());
    for (int h = 0; h < 2; ++h) {
      for (int64_t c = 0; c < kQ6Vecs; ++c) {
        const int64_t at = h * kQ6Vecs + c, ea = 128 * h + c * kNB, eb = ea + 64;
        const VW pa = hn::Sub(MulPairs(w.qa[at], hn::LoadU(ds, qx + ea)), hn::LoadU(dw, offs + ea / 2));
        const VW pb = hn::Sub(MulPairs(w.qb[at], hn::LoadU(ds, qx + eb)), hn::LoadU(dw, offs + eb / 2));
        isum = DotPairs(DotPairs(isum, pa, w.sa[at]), pb, w.sb[at]);
      }
    }
    float dx;
    std::memcpy(&dx, rec + 512, 4);
    acc = hn::MulAdd(hn::ConvertTo(DF(), isum), hn::Set(DF(), w.d * dx), acc);
  }

  static HWY_INLINE void PlaceCodes(const int8_t* q, uint8_t* rec) {
    std::memcpy(rec, q, kQK);
    int16_t offs[kQK / 2];
    for (int p = 0; p < kQK / 2; ++p) offs[p] = static_cast<int16_t>(32 * (q[2 * p] + q[2 * p + 1]));
    std::memcpy(rec + 256, offs, sizeof(offs));
  }
  static constexpr int64_t kScaleOffset = 512;
};

using DotQ4KQ8K = DotQ45KQ8K<false>;
using DotQ5KQ8K = DotQ45KQ8K<true>;

// ---------------------------------------------------------------------------------------------------------
// Activation records.

template <class K>
int64_t TokenBytes(int64_t n_in) {
  const int64_t n_blocks = n_in / K::kBlockElems;
  return (n_blocks + K::kBlk - 1) / K::kBlk * K::kRecordBytes;
}

template <class K>
void QuantizeToken(const float* x, int64_t n_in, uint8_t* dst) {
  const int64_t n_blocks = n_in / K::kBlockElems;
  alignas(64) int8_t q[kQK];
  if constexpr (K::kBlockElems == 32) {
    for (int64_t b0 = 0; b0 < n_blocks; b0 += K::kBlk) {
      uint8_t* rec = dst + b0 / K::kBlk * K::kRecordBytes;
      float d[K::kBlk] = {};
      for (int64_t j = 0; j < K::kBlk; ++j) {
        if (b0 + j < n_blocks) {
          d[j] = QuantizeBlock<32>(x + 32 * (b0 + j), q);
        } else {
          std::memset(q, 0, 32);
        }
        K::PlaceCodes(q, j, rec);
      }
      FinishRecord32<K>(d, rec);
    }
  } else {
    for (int64_t b = 0; b < n_blocks; ++b) {
      uint8_t* rec = dst + b * K::kRecordBytes;
      const float d = QuantizeBlock<kQK>(x + kQK * b, q);
      K::PlaceCodes(q, rec);
      std::memcpy(rec + K::kScaleOffset, &d, 4);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Tiles: R rows x T tokens.

// Weight prefetch distance. Rows are contiguous, so the rows [o_begin, o_end) are one linear stream; each row
// prefetches, one cache line per line it consumes, the bytes kPrefetchAhead further on (the union over a tile's
// rows continues the stream). Prefetching past the end of the weights is harmless: a prefetch never faults.
// Decode prefetches only for Q4_K and the native BF16 kernel (T::kDecodePrefetch). Prefetching was added when, on an
// earlier VM, the hardware prefetcher alone left decode at about half the read bandwidth (2 KB < 4 KB ~ 8 KB ahead); on
// the Zen 4 VM of the batch-invariance change, decode from DRAM ran 1.1-1.7x faster without it for Q8_0, Q4_0, Q5_K and
// Q6_K, as Q8_0R's kernel had found before, and ~10% slower for Q4_K with one thread (bench/RESULTS.md, "Batch
// invariance"). Prefill keeps it (the first token tile of each row tile).
constexpr int64_t kPrefetchAhead = 4096;

// The prefetches of group g (group_bytes each) of R rows for the repacked kernels: as Tile's per step, the lines
// that start within the group's bytes, kPrefetchAhead on.
template <int R>
HWY_INLINE void PrefetchGroup(const uint8_t* const* rows, int64_t g, int64_t group_bytes) {
  for (int r = 0; r < R; ++r) {
    for (int64_t line = (g * group_bytes + 63) >> 6; line < ((g + 1) * group_bytes + 63) >> 6; ++line) {
      hwy::Prefetch(rows[r] + kPrefetchAhead + 64 * line);
    }
  }
}

// y[t * y_stride + r] = dot(row r, token t) for r < R, t < T; acts[t] = the token's records; prefetches when
// `prefetch` (the first token tile of a row tile; the others find the rows in cache).
template <class K, int R, int T>
HWY_INLINE void Tile(const uint8_t* const* rows, const uint8_t* const* acts, int64_t n_blocks, float* y,
                     int64_t y_stride, bool prefetch) {
  const DF df;
  VF acc[R][T];
  for (int r = 0; r < R; ++r) {
    for (int t = 0; t < T; ++t) acc[r][t] = hn::Zero(df);
  }
  const int64_t n_steps = n_blocks / K::kBlk;
  for (int64_t s = 0; s < n_steps; ++s) {
    typename K::W w[R];
    for (int r = 0; r < R; ++r) {
      if (prefetch) {  // the lines that start within this step's bytes, kPrefetchAhead on
        for (int64_t line = (s * K::kStepBytes + 63) >> 6; line < ((s + 1) * K::kStepBytes + 63) >> 6; ++line) {
          hwy::Prefetch(rows[r] + kPrefetchAhead + 64 * line);
        }
      }
      K::Load(rows[r] + s * K::kStepBytes, w[r]);
    }
    for (int t = 0; t < T; ++t) {
      const uint8_t* rec = acts[t] + s * K::kRecordBytes;
      for (int r = 0; r < R; ++r) K::Step(w[r], rec, acc[r][t]);
    }
  }
  if constexpr (K::kBlk > 1) {
    // A last, partial step: its blocks copied into a zeroed step (scale 0 and codes 0 beyond the row, matching
    // the zero records past the end of the activations), so that no byte past the row is read.
    const int64_t tail = n_blocks - n_steps * K::kBlk;
    if (tail > 0) {
      typename K::W w[R];
      for (int r = 0; r < R; ++r) {
        alignas(64) uint8_t pad[K::kStepBytes] = {};
        std::memcpy(pad, rows[r] + n_steps * K::kStepBytes, static_cast<size_t>(tail * K::kBlockBytes));
        K::Load(pad, w[r]);
      }
      for (int t = 0; t < T; ++t) {
        const uint8_t* rec = acts[t] + n_steps * K::kRecordBytes;
        for (int r = 0; r < R; ++r) K::Step(w[r], rec, acc[r][t]);
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int t = 0; t < T; ++t) y[t * y_stride + r] = hn::GetLane(hn::SumOfLanes(df, acc[r][t]));
  }
}

// Prefill tile shapes (DotRows): rows x tokens per register tile. With 32 vector registers (AVX-512), 2 rows x 8
// tokens, and 4 x 4 for Q8_0, whose step loads cost more than its products (VbmiStepQ8_0): measured best of 2 x 4,
// 2 x 6, 2 x 8, 2 x 12, 3 x 4, 4 x 4, 4 x 5, 1 x 8, 1 x 12 and 1 x 16 (bench/matmul_bench.cpp BM_Prefill, 64 and 512
// tokens; bench/RESULTS.md, "Batch invariance"). With 16 registers, 2 x 4.
constexpr int kPrefillRows = 2;
#if HWY_TARGET <= HWY_AVX3
constexpr int kPrefillTokens = 8;
#else
constexpr int kPrefillTokens = 4;
#endif

// The tile functions DotRows drives: T::template Tile<R, NT>(rows, acts, n, y, y_stride, prefetch) with n =
// T::Length(w). QuantTiles<K> are the integer kernels above (n = blocks per row); bf16dot::Tiles (BF16 weights,
// n = inputs) has the same shape.
template <class K>
struct QuantTiles {
  static constexpr bool kQ8 = HWY_TARGET <= HWY_AVX3 && std::is_same_v<K, DotQ8_0Q8>;
  static constexpr int kRows = kQ8 ? 4 : kPrefillRows, kTokens = kQ8 ? 4 : kPrefillTokens;
  static constexpr bool kDecodePrefetch = std::is_same_v<K, DotQ4KQ8K>;  // see kPrefetchAhead
  // See DecodeInStreams; cpu/matmul.cpp ReadsStreams gives the types with more than one a static split. On AVX2, Q4_0
  // and Q6_K in their GGUF layout read 2 (BM_MatVec 4096 x 4096 on a Zen 3: Q4_0 673 -> 552 us on one thread and 360
  // -> 295 on two, Q6_K 910 -> 820 and 500 -> 430; 4 streams no better; Q4_K and Q5_K within 5%: one).
  static constexpr int kDecodeStreams =
      std::is_same_v<K, DotQ8_0Q8>
          ? 4
          : (HWY_TARGET == HWY_AVX2 && (std::is_same_v<K, DotQ4_0Q8> || std::is_same_v<K, DotQ6KQ8K>) ? 2 : 1);
  static int64_t Length(const TensorView& w) { return w.Cols() / K::kBlockElems; }
  template <int R, int NT>
  static HWY_INLINE void Tile(const uint8_t* const* rows, const uint8_t* const* acts, int64_t n_blocks, float* y,
                              int64_t y_stride, bool prefetch) {
    qdot::Tile<K, R, NT>(rows, acts, n_blocks, y, y_stride, prefetch);
  }
};

#if HWY_TARGET == HWY_AVX3_DL
// Q8_0R weights (kernels/repack.h: groups of 16 blocks, 512 elements in 544 bytes; code vector j holds codes
// 4j .. 4j + 3 of each of the 16 blocks in its 16 int32 lanes, offset by 128, then the 16 f16 scales) x records
// of the same shape (QuantizeTokenQ8_0R: 8 code vectors, 16 start values -128 * sum(codes of the block), 16 d_x).
// Eight vpdpbusd leave block b's whole integer sum in lane b, so the f32 work (convert, scale, add) is done once
// per 16 blocks instead of once per 4 (DotQ8_0Q8 on Q8_0 spreads a block over 4 lanes), and no byte permute or
// xor is needed: per group and (row, token) 8 vpdpbusd + 3 f32 operations. The integer sums are exact; the f32
// operations of an output are acc[lane] += f32(isum) * (d_w * d_x) per group, then one SumOfLanes, whatever the
// tile, so every output's bits are fixed by its row and token (batch invariance). They differ in rounding from the
// Q8_0 kernel's, which adds 4 partial lanes per block. No software prefetch: the hardware prefetchers follow
// these rows alone (Tile's prefetches made the previous layout 1.4-1.6x slower from DRAM; prefetching the next row
// tile for several tokens gained nothing measurable). Tile shape 4 rows x 3 tokens: the best of 2x4, 3x4, 2x6, 4x3,
// 1x8, 4x2, 6x2, 5x3, 4x4 and 8x1 (bench/matmul_bench.cpp BM_Prefill at 64 tokens: 1.4x 2x4, and BM_SmallBatch
// at 8 and 16 tokens); each (row, token) holds an int32 sum and an f32 accumulator in registers.
//
// Q4_0R (kQ4) is the same kernel on nibbles: a group is 4 vectors of 64 bytes whose low nibbles are the Q8_0R code
// vector 2v and high nibbles vector 2v + 1 (Q4_0's unsigned codes q, value (q - 8) d), then the 16 f16 scales (288
// bytes, Q4_0's size). Each loaded vector gives two code vectors (an and, a shift and an and), multiplied with the
// same activation records as Q8_0R; the offset's share, -8 * sum(codes), is the record's start value shifted
// right by 4 (exact: it is -128 * sum). 4 loads, 8 vpdpbusd per group and (row, token), as Q8_0R, on half the bytes.
// The integer sums of group g of 4-bit rows (Q4_0R, Q4_KR, Q5_KR: 4 vectors of 64 bytes whose low and high nibbles
// are Q8_0R code vectors 2v and 2v + 1) with Q8_0R records, added to isum (chain 0 the low nibbles' products, the last
// chain the high ones'). With kHighBits (Q5_KR), 16 is added to the bytes that the 8 64-bit masks at byte 256 of the
// group name (mask c: code vector c).
template <int R, int NT, int kChains, bool kHighBits>
HWY_INLINE void NibbleGroupSums(const uint8_t* const* rows, const uint8_t* const* acts, int64_t g, int64_t group_bytes,
                                int64_t record_bytes, VI (&isum)[kChains][R][NT]) {
  const DS ds;
  const VB low = hn::Set(DB(), uint8_t{0x0F});
  [[maybe_unused]] const VB sixteen = hn::Set(DB(), uint8_t{16});
  for (int v = 0; v < 4; ++v) {
    VS x0[NT], x1[NT];
    for (int t = 0; t < NT; ++t) {
      x0[t] = hn::LoadU(ds, reinterpret_cast<const int8_t*>(acts[t] + g * record_bytes + 128 * v));
      x1[t] = hn::LoadU(ds, reinterpret_cast<const int8_t*>(acts[t] + g * record_bytes + 128 * v + 64));
    }
    for (int r = 0; r < R; ++r) {
      const uint8_t* grp = rows[r] + g * group_bytes;
      const VB packed = hn::LoadU(DB(), grp + 64 * v);
      VB w0 = hn::And(packed, low);
      VB w1 = hn::And(hn::BitCast(DB(), hn::ShiftRight<4>(hn::BitCast(DW(), packed))), low);
      if constexpr (kHighBits) {
        uint64_t m0, m1;
        std::memcpy(&m0, grp + 256 + 16 * v, 8);
        std::memcpy(&m1, grp + 256 + 16 * v + 8, 8);
        w0 = VB{_mm512_mask_add_epi8(w0.raw, _cvtu64_mask64(m0), w0.raw, sixteen.raw)};
        w1 = VB{_mm512_mask_add_epi8(w1.raw, _cvtu64_mask64(m1), w1.raw, sixteen.raw)};
      }
      for (int t = 0; t < NT; ++t) {
        isum[0][r][t] = DotQuads(isum[0][r][t], w0, x0[t]);
        isum[kChains - 1][r][t] = DotQuads(isum[kChains - 1][r][t], w1, x1[t]);
      }
    }
  }
}

template <bool kQ4>
struct RepackedTiles {
  static constexpr int kRows = 4, kTokens = 3;
  static constexpr bool kDecodePrefetch = false;  // (ignored: Tile never prefetches)
  // DecodeInStreams (and cpu/matmul.cpp ReadsStreams): 4 for both, as for the K types below. On a Zen 4 (EPYC,
  // family 25 model 17) the d2048 Q4_0 model decodes at 79-81% of the bound in the fast memory state (~66 GB/s)
  // against 74-80% with one stream; 8 streams were slower (bench/RESULTS.md).
  static constexpr int kDecodeStreams = 4;
  static constexpr int64_t kGroupBytes = kQ4 ? 288 : 544, kRecordBytes = 640;
  static constexpr int64_t kScalesAt = kQ4 ? 256 : 512;  // the 16 f16 weight scales of a group
  static_assert(kNI == 16);

  static int64_t Length(const TensorView& w) { return w.Cols() / 512; }  // groups per row

  template <int R, int NT>
  static HWY_INLINE void Tile(const uint8_t* const* rows, const uint8_t* const* acts, int64_t n_groups, float* y,
                              int64_t y_stride, bool /*prefetch*/) {
    const DF df;
    const DS ds;
    // Small tiles (decode) split each integer sum over two chains (even and odd code vectors), added at the end:
    // the same exact integer, half the latency of 8 dependent vpdpbusd.
    constexpr int kChains = R * NT <= 2 ? 2 : 1;
    VF acc[R][NT];
    for (int r = 0; r < R; ++r) {
      for (int t = 0; t < NT; ++t) acc[r][t] = hn::Zero(df);
    }
    for (int64_t g = 0; g < n_groups; ++g) {
      VI isum[kChains][R][NT];
      for (int t = 0; t < NT; ++t) {
        VI start = hn::LoadU(DI(), reinterpret_cast<const int32_t*>(acts[t] + g * kRecordBytes + 512));
        if constexpr (kQ4) start = hn::ShiftRight<4>(start);  // -128 sum -> -8 sum (arithmetic: int32 lanes)
        for (int r = 0; r < R; ++r) {
          isum[0][r][t] = start;
          if constexpr (kChains == 2) isum[1][r][t] = hn::Zero(DI());
        }
      }
      if constexpr (kQ4) {
        NibbleGroupSums<R, NT, kChains, false>(rows, acts, g, kGroupBytes, kRecordBytes, isum);
      } else {
        for (int j = 0; j < 8; ++j) {
          VS x[NT];
          for (int t = 0; t < NT; ++t) {
            x[t] = hn::LoadU(ds, reinterpret_cast<const int8_t*>(acts[t] + g * kRecordBytes + 64 * j));
          }
          for (int r = 0; r < R; ++r) {
            const VB w = hn::LoadU(DB(), rows[r] + g * kGroupBytes + 64 * j);
            for (int t = 0; t < NT; ++t) isum[j % kChains][r][t] = DotQuads(isum[j % kChains][r][t], w, x[t]);
          }
        }
      }
      VF ws[R];
      for (int r = 0; r < R; ++r) {
        // maskz forms with full masks: GCC 12 warns about the undefined pass-through of the plain intrinsics.
        ws[r] = VF{_mm512_maskz_cvtph_ps(
            0xFFFF, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(rows[r] + g * kGroupBytes + kScalesAt)))};
      }
      for (int t = 0; t < NT; ++t) {
        const VF dx = hn::LoadU(df, reinterpret_cast<const float*>(acts[t] + g * kRecordBytes + 576));
        for (int r = 0; r < R; ++r) {
          VI s = isum[0][r][t];
          if constexpr (kChains == 2) s = hn::Add(s, isum[1][r][t]);
          acc[r][t] = hn::MulAdd(hn::ConvertTo(df, s), hn::Mul(ws[r], dx), acc[r][t]);
        }
      }
    }
    for (int r = 0; r < R; ++r) {
      for (int t = 0; t < NT; ++t) y[t * y_stride + r] = hn::GetLane(hn::SumOfLanes(df, acc[r][t]));
    }
  }
};
using RepackedQ8Tiles = RepackedTiles<false>;
using RepackedQ4Tiles = RepackedTiles<true>;

// Q4_KR / Q5_KR weights (kernels/repack.h: Q4_0R's code bytes, Q5_KR's fifth bits as 64-bit byte masks, then per
// block of 32 its 6-bit scale sc and min mn as bytes and per super-block f16 d and dmin) x Q8_0R's records. The codes
// q are unsigned (0 .. 31), so block b's integer sum is sum q x, with no start value: lane b of the vpdpbusd sums,
// as RepackedTiles. Per group and row, the weight scales ws_b = d sc_b and min terms mt_b = dmin mn_b / 128 are
// made once in f32 (the products are exact: 11 + 6 bits); per group and token, xs_b = f32(start_b) d_x, start_b
// = -128 sum x being the record's start value (exact in f32: |start| < 2^20). Per (row, token): acc += f32(isum)
// (ws d_x) + mt xs, that is d_x (d sc sum q x - dmin mn sum x), block by block, as Q4_K's definition. Q5_KR adds 16
// to the bytes its masks name (one masked add per code vector). 4 loads (Q5: and 8 mask loads), 8 vpdpbusd per
// group and (row, token), as Q4_0R, plus one FMA per (row, token) and ~10 operations per row for the scales.
template <bool kQ5>
struct RepackedKTiles {
  static constexpr int kRows = 4, kTokens = 3;
  // Decode prefetches kPrefetchAhead on, as Q4_K's kernel: on the d2048 Q4_K model, decode ran 103 tokens/s without
  // it and 116 with it in the same memory state (39 GB/s), against Q4_K's 120-123 (bench/RESULTS.md).
  static constexpr bool kDecodePrefetch = true;  // (for the rows left over by the streams)
  // 4 streams (DecodeInStreams): on the Zen 4, BM_MatVec 4096 x 4096 on one thread Q4_KR 388-426 -> 333-351 us, Q5_KR
  // 472-504 -> 387-400; the d2048 models in the fast state Q4_K 65-73% -> 77-81% of the bound, Q5_K 64-67% -> 76%.
  static constexpr int kDecodeStreams = 4;
  static constexpr int64_t kGroupBytes = kQ5 ? 360 : 296, kRecordBytes = 640;
  static constexpr int64_t kMetaAt = kQ5 ? 320 : 256;  // sc[16], mn[16], f16 d[2], f16 dmin[2]
  static_assert(kNI == 16);

  static int64_t Length(const TensorView& w) { return w.Cols() / 512; }  // groups per row

  // 16 bytes at p as f32 lanes.
  static HWY_INLINE VF Bytes16(const uint8_t* p) {
    return hn::ConvertTo(DF(), hn::PromoteTo(DI(), hn::LoadU(hn::Full128<uint8_t>(), p)));
  }
  // Lanes 0-7 = f32 of lane a of f, lanes 8-15 = of lane a + 1 (one value per super-block).
  static HWY_INLINE VF Halves(__m128 f, int a) {
    const __m512i idx =
        _mm512_add_epi32(_mm512_set1_epi32(a), _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1));
    // (maskz with a full mask: GCC 12 warns about the undefined pass-through of the plain intrinsic)
    return VF{_mm512_maskz_permutexvar_ps(0xFFFF, idx, _mm512_zextps128_ps512(f))};
  }
  // The n (2 or 4) f16 values at p as f32 lanes 0 .. n - 1.
  template <int n>
  static HWY_INLINE __m128 F16s(const uint8_t* p) {
    uint64_t bits = 0;
    std::memcpy(&bits, p, 2 * n);
    return _mm_cvtph_ps(_mm_cvtsi64_si128(static_cast<int64_t>(bits)));
  }

  template <int R, int NT>
  static HWY_INLINE void Tile(const uint8_t* const* rows, const uint8_t* const* acts, int64_t n_groups, float* y,
                              int64_t y_stride, bool prefetch) {
    const DF df;
    constexpr int kChains = R * NT <= 2 ? 2 : 1;
    VF acc[R][NT];
    for (int r = 0; r < R; ++r) {
      for (int t = 0; t < NT; ++t) acc[r][t] = hn::Zero(df);
    }
    for (int64_t g = 0; g < n_groups; ++g) {
      if (prefetch) PrefetchGroup<R>(rows, g, kGroupBytes);
      VI isum[kChains][R][NT];
      for (int c = 0; c < kChains; ++c) {
        for (int r = 0; r < R; ++r) {
          for (int t = 0; t < NT; ++t) isum[c][r][t] = hn::Zero(DI());
        }
      }
      NibbleGroupSums<R, NT, kChains, kQ5>(rows, acts, g, kGroupBytes, kRecordBytes, isum);
      VF ws[R], mt[R];
      for (int r = 0; r < R; ++r) {
        const uint8_t* meta = rows[r] + g * kGroupBytes + kMetaAt;
        // d0, d1, dmin0 / 128, dmin1 / 128 in one conversion and two permutes (four scalar conversions, broadcasts
        // and combines before: Q4_KR prefill 1.08x, decode from L2 ~1.1x, the same products).
        // (the division by 128 is exact: a power of 2)
        const __m128 d = _mm_mul_ps(F16s<4>(meta + 32), _mm_setr_ps(1.0f, 1.0f, 1.0f / 128, 1.0f / 128));
        ws[r] = hn::Mul(Bytes16(meta), Halves(d, 0));
        mt[r] = hn::Mul(Bytes16(meta + 16), Halves(d, 2));
      }
      for (int t = 0; t < NT; ++t) {
        const uint8_t* rec = acts[t] + g * kRecordBytes;
        const VF dx = hn::LoadU(df, reinterpret_cast<const float*>(rec + 576));
        const VF xs = hn::Mul(hn::ConvertTo(df, hn::LoadU(DI(), reinterpret_cast<const int32_t*>(rec + 512))), dx);
        for (int r = 0; r < R; ++r) {
          VI s = isum[0][r][t];
          if constexpr (kChains == 2) s = hn::Add(s, isum[1][r][t]);
          acc[r][t] = hn::MulAdd(hn::ConvertTo(df, s), hn::Mul(ws[r], dx), acc[r][t]);
          acc[r][t] = hn::MulAdd(mt[r], xs, acc[r][t]);
        }
      }
    }
    for (int r = 0; r < R; ++r) {
      for (int t = 0; t < NT; ++t) y[t * y_stride + r] = hn::GetLane(hn::SumOfLanes(df, acc[r][t]));
    }
  }
};
using RepackedQ4KTiles = RepackedKTiles<false>;
using RepackedQ5KTiles = RepackedKTiles<true>;

// Q6_KR weights (kernels/repack.h: Q4_0R's code bytes for the low 4 bits, two 64-byte planes of the high 2 bits, the
// int8 scales of each block's two halves of 16 codes, per super-block f16 d) x Q8_0R's records. The codes q (0 .. 63)
// of code vectors 0-3 are a block's first 16, of 4-7 its last 16, so two integer sums per (row, token), one per half,
// each lane b an exact sum (q - 32) x over half a block: each starts at -32 sum x of its half (the first half's sum
// by 4 vpdpbusd of ones per group and token, the second's from the record's start value, -128 sum x of the block)
// and takes 4 vpdpbusd. Then acc += f32(isum_a) (d S_a d_x) + f32(isum_b) (d S_b d_x): d S is exact in f32 (11 + 8
// bits). A code vector is its nibbles or'ed with its 2 high bits shifted into bits 4-5 (a shift and a ternary
// logic operation). Tile 4 rows x 3 tokens: the best of 2x3, 2x4, 3x3, 4x2, 4x3, 4x4 and 6x2 (matmul_bench BM_Prefill,
// 64 and 512 tokens: 4x3 176-184 GFLOP/s, the others 131-167).
struct RepackedQ6KTiles {
  static constexpr int kRows = 4, kTokens = 3;
  static constexpr bool kDecodePrefetch = true;  // as RepackedKTiles
  // 4 streams, as RepackedKTiles: on the Zen 4, BM_MatVec 537-618 -> 474-476 us on one thread, the d2048 Q6_K model
  // 69% -> 81% of the bound in the fast state.
  static constexpr int kDecodeStreams = 4;
  static constexpr int64_t kGroupBytes = 420, kRecordBytes = 640;
  static_assert(kNI == 16);

  static int64_t Length(const TensorView& w) { return w.Cols() / 512; }  // groups per row

  // 16 int8 at p as f32 lanes.
  static HWY_INLINE VF Int8x16(const uint8_t* p) {
    return hn::ConvertTo(DF(),
                         hn::PromoteTo(DI(), hn::LoadU(hn::Full128<int8_t>(), reinterpret_cast<const int8_t*>(p))));
  }

  // The products of code vectors 2V and 2V + 1 of group g (V a compile-time constant, so that isum stays in
  // registers): half V / 2 of each block.
  template <int V, int R, int NT>
  static HWY_INLINE void Pair(const uint8_t* const* rows, const uint8_t* const* acts, int64_t g, VI (&isum)[2][R][NT]) {
    const DS ds;
    const DW dw;
    const VB low = hn::Set(DB(), uint8_t{0x0F}), high = hn::Set(DB(), uint8_t{0x30});
    VS x0[NT], x1[NT];
    for (int t = 0; t < NT; ++t) {
      x0[t] = hn::LoadU(ds, reinterpret_cast<const int8_t*>(acts[t] + g * kRecordBytes + 128 * V));
      x1[t] = hn::LoadU(ds, reinterpret_cast<const int8_t*>(acts[t] + g * kRecordBytes + 128 * V + 64));
    }
    for (int r = 0; r < R; ++r) {
      const uint8_t* grp = rows[r] + g * kGroupBytes;
      const VB packed = hn::LoadU(DB(), grp + 64 * V);
      const VW h = hn::BitCast(dw, hn::LoadU(DB(), grp + 256 + 64 * (V / 2)));
      // Code vector 2V's high bits are bits 2 (2V % 4) of h, 2V + 1's the next two: moved to bits 4-5.
      VB h0, h1;
      if constexpr (V % 2 == 0) {
        h0 = hn::BitCast(DB(), hn::ShiftLeft<4>(h));
        h1 = hn::BitCast(DB(), hn::ShiftLeft<2>(h));
      } else {
        h0 = hn::BitCast(DB(), h);
        h1 = hn::BitCast(DB(), hn::ShiftRight<2>(h));
      }
      const VB w0 = hn::OrAnd(hn::And(packed, low), h0, high);
      const VB w1 = hn::OrAnd(hn::And(hn::BitCast(DB(), hn::ShiftRight<4>(hn::BitCast(dw, packed))), low), h1, high);
      for (int t = 0; t < NT; ++t) {
        isum[V / 2][r][t] = DotQuads(isum[V / 2][r][t], w0, x0[t]);
        isum[V / 2][r][t] = DotQuads(isum[V / 2][r][t], w1, x1[t]);
      }
    }
  }

  template <int R, int NT>
  static HWY_INLINE void Tile(const uint8_t* const* rows, const uint8_t* const* acts, int64_t n_groups, float* y,
                              int64_t y_stride, bool prefetch) {
    const DF df;
    const DS ds;
    VF acc[R][NT];
    for (int r = 0; r < R; ++r) {
      for (int t = 0; t < NT; ++t) acc[r][t] = hn::Zero(df);
    }
    const VB ones = hn::Set(DB(), uint8_t{1});
    for (int64_t g = 0; g < n_groups; ++g) {
      if (prefetch) PrefetchGroup<R>(rows, g, kGroupBytes);
      VI isum[2][R][NT];
      for (int t = 0; t < NT; ++t) {
        const uint8_t* rec = acts[t] + g * kRecordBytes;
        VI first = hn::Zero(DI());  // sum x over each block's first 16 codes
        for (int c = 0; c < 4; ++c) {
          first = DotQuads(first, ones, hn::LoadU(ds, reinterpret_cast<const int8_t*>(rec + 64 * c)));
        }
        const VI a0 = hn::Neg(hn::ShiftLeft<5>(first));  // -32 sum x, first half
        const VI whole = hn::ShiftRight<2>(hn::LoadU(DI(), reinterpret_cast<const int32_t*>(rec + 512)));  // -32 sum x
        for (int r = 0; r < R; ++r) {
          isum[0][r][t] = a0;
          isum[1][r][t] = hn::Sub(whole, a0);
        }
      }
      Pair<0>(rows, acts, g, isum);
      Pair<1>(rows, acts, g, isum);
      Pair<2>(rows, acts, g, isum);
      Pair<3>(rows, acts, g, isum);
      VF sa[R], sb[R];
      for (int r = 0; r < R; ++r) {
        const uint8_t* grp = rows[r] + g * kGroupBytes;
        const VF d = RepackedKTiles<false>::Halves(RepackedKTiles<false>::F16s<2>(grp + 416), 0);
        sa[r] = hn::Mul(Int8x16(grp + 384), d);
        sb[r] = hn::Mul(Int8x16(grp + 400), d);
      }
      for (int t = 0; t < NT; ++t) {
        const VF dx = hn::LoadU(df, reinterpret_cast<const float*>(acts[t] + g * kRecordBytes + 576));
        for (int r = 0; r < R; ++r) {
          acc[r][t] = hn::MulAdd(hn::ConvertTo(df, isum[0][r][t]), hn::Mul(sa[r], dx), acc[r][t]);
          acc[r][t] = hn::MulAdd(hn::ConvertTo(df, isum[1][r][t]), hn::Mul(sb[r], dx), acc[r][t]);
        }
      }
    }
    for (int r = 0; r < R; ++r) {
      for (int t = 0; t < NT; ++t) y[t * y_stride + r] = hn::GetLane(hn::SumOfLanes(df, acc[r][t]));
    }
  }
};

#endif  // HWY_TARGET == HWY_AVX3_DL

#if HWY_TARGET == HWY_AVX2
// y[t * y_stride + r] = the sum of the 8 lanes of acc[r][t] (the AVX2 repacked kernels' last step).
template <int R, int NT>
HWY_INLINE void StoreSums(const __m256 (&acc)[R][NT], float* y, int64_t y_stride) {
  for (int r = 0; r < R; ++r) {
    for (int t = 0; t < NT; ++t) y[t * y_stride + r] = hn::GetLane(hn::SumOfLanes(DF(), VF{acc[r][t]}));
  }
}

HWY_INLINE __m256i Load(const uint8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }

// 16 where bit k of the 32 bits at p is set, byte k; 0 elsewhere (Q5_KR's fifth bits of half a code vector).
HWY_INLINE __m256i FifthBits(const uint8_t* p) {
  uint32_t m;
  std::memcpy(&m, p, 4);
  const __m256i spread = _mm256_shuffle_epi8(
      _mm256_set1_epi32(static_cast<int32_t>(m)),
      _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3));
  const __m256i bit = _mm256_set1_epi64x(static_cast<int64_t>(0x8040201008040201ull));
  const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);
  return _mm256_and_si256(set, _mm256_set1_epi8(16));
}

// The exact integer sums q x of half h (lanes 8 h .. 8 h + 7) of group g of 4-bit rows (Q4_0R, Q4_KR; Q5_KR with
// kQ5: the fifth bits of its masks at byte 256 or'ed in as 16) with Q8_0R records: isum[r][t] lane b = block 8 h + b's
// sum. The codes are unsigned, so pmaddubsw's int16 pairs are added over 8 code vectors (at most 16 x 15 x 127 =
// 30480), or 4 with fifth bits (8 x 31 x 127 = 31496), before each pmaddwd.
template <int R, int NT, bool kQ5>
HWY_INLINE void NibbleHalfSums(const uint8_t* const* rows, const uint8_t* const* acts, int64_t g, int h,
                               int64_t group_bytes, int64_t record_bytes, __m256i (&isum)[R][NT]) {
  const __m256i ones = _mm256_set1_epi16(1), low = _mm256_set1_epi8(0x0F);
  constexpr int kPerMadd = kQ5 ? 2 : 4;  // packed vectors (2 code vectors each) per int16 sum
  const int64_t wat = g * group_bytes + 32 * h, xat = g * record_bytes + 32 * h;
  for (int r = 0; r < R; ++r) {
    for (int t = 0; t < NT; ++t) isum[r][t] = _mm256_setzero_si256();
  }
  for (int v0 = 0; v0 < 4; v0 += kPerMadd) {
    __m256i s16[R][NT];
    for (int r = 0; r < R; ++r) {
      for (int t = 0; t < NT; ++t) s16[r][t] = _mm256_setzero_si256();
    }
    for (int v = v0; v < v0 + kPerMadd; ++v) {
      for (int r = 0; r < R; ++r) {
        const __m256i packed = Load(rows[r] + wat + 64 * v);
        __m256i w0 = _mm256_and_si256(packed, low);
        __m256i w1 = _mm256_and_si256(_mm256_srli_epi16(packed, 4), low);
        if constexpr (kQ5) {
          const uint8_t* masks = rows[r] + g * group_bytes + 256 + 4 * h;
          w0 = _mm256_or_si256(w0, FifthBits(masks + 8 * (2 * v)));
          w1 = _mm256_or_si256(w1, FifthBits(masks + 8 * (2 * v + 1)));
        }
        for (int t = 0; t < NT; ++t) {
          const uint8_t* x = acts[t] + xat + 128 * v;
          s16[r][t] = _mm256_add_epi16(s16[r][t], _mm256_maddubs_epi16(w0, Load(x)));
          s16[r][t] = _mm256_add_epi16(s16[r][t], _mm256_maddubs_epi16(w1, Load(x + 64)));
        }
      }
    }
    for (int r = 0; r < R; ++r) {
      for (int t = 0; t < NT; ++t) isum[r][t] = _mm256_add_epi32(isum[r][t], _mm256_madd_epi16(s16[r][t], ones));
    }
  }
}

// Q8_0R and Q4_0R (kernels/repack.h) x Q8_0R's records on AVX2, which has no vpdpbusd: a group's 16 int32 lanes
// (one per block) are two 256-bit halves of 8, each code vector's half multiplied by pmaddubsw (unsigned x signed
// bytes, pairs added to int16) and pmaddwd (pairs of int16 added to int32), so that int32 lane b still sums block b
// alone and the f32 work (convert, scale, add) is done once per 8 blocks, where the Q8_0 and Q4_0 kernels on their
// GGUF layout do it per block or two.
//   Q4_0R: the codes q (0 .. 15) are pmaddubsw's unsigned operand as they are; a pair of products is at most 2 x 15 x
//     127 = 3810, so the 8 code vectors of a half are added in int16 (at most 30480) before one pmaddwd: per half and
//     (row, token) 8 pmaddubsw, 8 int16 adds, one pmaddwd, one add of the start value -8 sum x (the record's -128
//     sum x shifted right by 4), and 3 f32 operations.
//   Q8_0R: the codes are stored plus 128; the signed code w (an xor) gives |w| (the unsigned operand) and its sign,
//     moved onto x (psignb, so that |w| (x sign w) = w x): pairs of products at most 2 x 128 x 127 = 32512 < 2^15,
//     but two such pairs can overflow int16, so each code vector takes its own pmaddwd: per half and (row, token) 8
//     x (psignb, pmaddubsw, pmaddwd, add); the record's start value (the offset's share on VNNI) is not used.
// Every integer sum is exact, and each output's f32 operations are acc += f32(isum) (d_w d_x) per half group in
// order, then one sum of the 8 lanes, whatever the tile (batch invariance). They differ in rounding from AVX3_DL's
// (16 lanes), as every target's do.
//
// Tile shapes (rows x tokens), from BM_Prefill (4096 x 4096, 64 and 512 tokens, one thread) over 2x3, 2x4, 3x3, 4x2,
// 3x2 and 1x6 on a Zen 3 (bench/RESULTS.md): Q8_0R 2x3 (all within 5% but 1x6), Q4_0R 4x2 (134 ms at 512 tokens
// against 143 for 2x3), Q4_KR and Q5_KR 2x4 (153 and 203 ms against 165 and 216).
template <bool kQ4>
struct RepackedTiles {
  static constexpr int kRows = kQ4 ? 4 : 2, kTokens = kQ4 ? 2 : 3;
  static constexpr bool kDecodePrefetch = false;  // (ignored: Tile never prefetches)
  // DecodeInStreams: 4 for both here, as on AVX3_DL. For Q4_0R one stream per core left decode well short of the
  // bound on a Zen 3 (BM_MatVec 4096 x 4096: 610-690 us on one thread against 360-410 with 4 streams; the d2048 Q4_0
  // model at 73-85% of the bound against 88-93%; bench/RESULTS.md).
  static constexpr int kDecodeStreams = 4;
  static constexpr int64_t kGroupBytes = kQ4 ? 288 : 544, kRecordBytes = 640;
  static constexpr int64_t kScalesAt = kQ4 ? 256 : 512;  // the 16 f16 weight scales of a group

  static int64_t Length(const TensorView& w) { return w.Cols() / 512; }  // groups per row

  template <int R, int NT>
  static HWY_INLINE void Tile(const uint8_t* const* rows, const uint8_t* const* acts, int64_t n_groups, float* y,
                              int64_t y_stride, bool /*prefetch*/) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc[R][NT];
    for (int r = 0; r < R; ++r) {
      for (int t = 0; t < NT; ++t) acc[r][t] = _mm256_setzero_ps();
    }
    for (int64_t g = 0; g < n_groups; ++g) {
      for (int h = 0; h < 2; ++h) {  // lanes (blocks) 8 h .. 8 h + 7: bytes 32 h .. 32 h + 31 of each vector
        const int64_t wat = g * kGroupBytes + 32 * h, xat = g * kRecordBytes + 32 * h;
        __m256i isum[R][NT];
        if constexpr (kQ4) {
          NibbleHalfSums<R, NT, false>(rows, acts, g, h, kGroupBytes, kRecordBytes, isum);
          for (int t = 0; t < NT; ++t) {
            const __m256i start = _mm256_srai_epi32(Load(acts[t] + xat + 512), 4);  // -128 sum x -> -8 sum x
            for (int r = 0; r < R; ++r) isum[r][t] = _mm256_add_epi32(isum[r][t], start);
          }
        } else {
          const __m256i bias = _mm256_set1_epi8(static_cast<char>(0x80));
          for (int r = 0; r < R; ++r) {
            for (int t = 0; t < NT; ++t) isum[r][t] = _mm256_setzero_si256();
          }
          for (int v = 0; v < 8; ++v) {
            for (int r = 0; r < R; ++r) {
              const __m256i w = _mm256_xor_si256(Load(rows[r] + wat + 64 * v), bias);
              const __m256i a = _mm256_abs_epi8(w);
              for (int t = 0; t < NT; ++t) {
                const __m256i p = _mm256_maddubs_epi16(a, _mm256_sign_epi8(Load(acts[t] + xat + 64 * v), w));
                isum[r][t] = _mm256_add_epi32(isum[r][t], _mm256_madd_epi16(p, ones));
              }
            }
          }
        }
        __m256 ws[R];
        for (int r = 0; r < R; ++r) {
          ws[r] = _mm256_cvtph_ps(
              _mm_loadu_si128(reinterpret_cast<const __m128i*>(rows[r] + g * kGroupBytes + kScalesAt + 16 * h)));
        }
        for (int t = 0; t < NT; ++t) {
          const __m256 dx = _mm256_loadu_ps(reinterpret_cast<const float*>(acts[t] + xat + 576));
          for (int r = 0; r < R; ++r) {
            acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[r][t]), _mm256_mul_ps(ws[r], dx), acc[r][t]);
          }
        }
      }
    }
    StoreSums<R, NT>(acc, y, y_stride);
  }
};
using RepackedQ8Tiles = RepackedTiles<false>;
using RepackedQ4Tiles = RepackedTiles<true>;

// Q4_KR / Q5_KR (kernels/repack.h) x Q8_0R's records on AVX2, as RepackedTiles<true> above: a half group is one
// super-block, its 8 int32 lanes its 8 blocks. The codes q are unsigned (Q4_KR 0 .. 15; Q5_KR 0 .. 31, the fifth
// bit of each byte expanded from its 32 mask bits by a broadcast, a pshufb, an and and a compare, then or'ed in as
// 16), so the int16 sums of pmaddubsw stay exact over 8 code vectors (Q4: at most 16 x 15 x 127 = 30480) or 4 (Q5:
// 8 x 31 x 127 = 31496) before each pmaddwd. Then, as AVX3_DL's RepackedKTiles, per (row, token) acc += f32(isum)
// (d sc d_x) + (dmin mn / 128) (f32(start) d_x), start = -128 sum x being the record's start value.
template <bool kQ5>
struct RepackedKTiles {
  static constexpr int kRows = 2, kTokens = 4;   // see RepackedTiles
  static constexpr bool kDecodePrefetch = true;  // as AVX3_DL's (for the rows DecodeInStreams leaves over)
  // DecodeInStreams: 4 for Q4_KR (BM_MatVec 4096 x 4096 on a Zen 3: 520-550 us on one thread against 460-470; the d2048
  // Q4_K model at 71-74% of the bound against 77-82% in the host's fast memory state); Q5_KR's kernel is the limit
  // (16 GB/s on one thread, its fifth bits), and 4 streams did not change it.
  static constexpr int kDecodeStreams = kQ5 ? 1 : 4;
  static constexpr int64_t kGroupBytes = kQ5 ? 360 : 296, kRecordBytes = 640;
  static constexpr int64_t kMetaAt = kQ5 ? 320 : 256;  // sc[16], mn[16], f16 d[2], f16 dmin[2]

  static int64_t Length(const TensorView& w) { return w.Cols() / 512; }  // groups per row

  // 8 bytes at p as f32 lanes.
  static HWY_INLINE __m256 Bytes8(const uint8_t* p) {
    return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
  }
  template <int R, int NT>
  static HWY_INLINE void Tile(const uint8_t* const* rows, const uint8_t* const* acts, int64_t n_groups, float* y,
                              int64_t y_stride, bool prefetch) {
    __m256 acc[R][NT];
    for (int r = 0; r < R; ++r) {
      for (int t = 0; t < NT; ++t) acc[r][t] = _mm256_setzero_ps();
    }
    for (int64_t g = 0; g < n_groups; ++g) {
      if (prefetch) PrefetchGroup<R>(rows, g, kGroupBytes);
      for (int h = 0; h < 2; ++h) {  // super-block h: lanes (blocks) 8 h .. 8 h + 7
        const int64_t xat = g * kRecordBytes + 32 * h;
        __m256i isum[R][NT];
        NibbleHalfSums<R, NT, kQ5>(rows, acts, g, h, kGroupBytes, kRecordBytes, isum);
        __m256 ws[R], mt[R];
        for (int r = 0; r < R; ++r) {
          const uint8_t* meta = rows[r] + g * kGroupBytes + kMetaAt;
          uint16_t dh, mh;
          std::memcpy(&dh, meta + 32 + 2 * h, 2);
          std::memcpy(&mh, meta + 36 + 2 * h, 2);
          const __m128 dm =
              _mm_cvtph_ps(_mm_setr_epi16(static_cast<int16_t>(dh), static_cast<int16_t>(mh), 0, 0, 0, 0, 0, 0));
          // (the division by 128 is exact: a power of 2)
          ws[r] = _mm256_mul_ps(Bytes8(meta + 8 * h), _mm256_broadcastss_ps(dm));
          mt[r] = _mm256_mul_ps(Bytes8(meta + 16 + 8 * h),
                                _mm256_set1_ps(_mm_cvtss_f32(_mm_shuffle_ps(dm, dm, 1)) * (1.0f / 128)));
        }
        for (int t = 0; t < NT; ++t) {
          const __m256 dx = _mm256_loadu_ps(reinterpret_cast<const float*>(acts[t] + xat + 576));
          const __m256 xs = _mm256_mul_ps(_mm256_cvtepi32_ps(Load(acts[t] + xat + 512)), dx);
          for (int r = 0; r < R; ++r) {
            acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[r][t]), _mm256_mul_ps(ws[r], dx), acc[r][t]);
            acc[r][t] = _mm256_fmadd_ps(mt[r], xs, acc[r][t]);
          }
        }
      }
    }
    StoreSums<R, NT>(acc, y, y_stride);
  }
};
using RepackedQ4KTiles = RepackedKTiles<false>;
using RepackedQ5KTiles = RepackedKTiles<true>;

// Q6_KR (kernels/repack.h) x Q8_0R's records on AVX2, as AVX3_DL's RepackedQ6KTiles on half groups (a super-block
// each): code vectors 0-3 hold each block's first 16 codes (scale S_a), 4-7 its last 16 (S_b); a code q (0 .. 63) is
// its nibble or'ed with its 2 high bits moved to bits 4-5 (a shift and an and). A pair of products is at most 2 x 63
// x 127 = 16002, so two code vectors' pmaddubsw are added in int16 before each pmaddwd. Per half block and (row,
// token) an exact int32 sum of (q - 32) x, started at -32 sum x of that half (the first half's sum x by pmaddubsw of
// ones, the whole block's from the record's start value), then acc += f32(isum) (d S d_x), first half then second.
struct RepackedQ6KTiles {
  static constexpr int kRows = 2, kTokens = 3;
  static constexpr bool kDecodePrefetch = true;  // as AVX3_DL's
  static constexpr int kDecodeStreams = 1;       // 2 and 4 measured no faster on one thread, slower on two
  static constexpr int64_t kGroupBytes = 420, kRecordBytes = 640;

  static int64_t Length(const TensorView& w) { return w.Cols() / 512; }  // groups per row

  // 8 int8 at p as f32 lanes.
  static HWY_INLINE __m256 Int8x8(const uint8_t* p) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
  }
  // Code vector c (a compile-time constant) of half h of the group at grp: 32 codes q.
  template <int c>
  static HWY_INLINE __m256i Codes(const uint8_t* grp, int h) {
    const __m256i packed = Load(grp + 64 * (c / 2) + 32 * h);
    const __m256i nib = c % 2 == 0 ? packed : _mm256_srli_epi16(packed, 4);
    const __m256i hb = Load(grp + 256 + 64 * (c / 4) + 32 * h);  // bits 2 (c % 4), 2 (c % 4) + 1 of each byte
    __m256i high;
    if constexpr (c % 4 == 0) {
      high = _mm256_slli_epi16(hb, 4);
    } else if constexpr (c % 4 == 1) {
      high = _mm256_slli_epi16(hb, 2);
    } else if constexpr (c % 4 == 2) {
      high = hb;
    } else {
      high = _mm256_srli_epi16(hb, 2);
    }
    return _mm256_or_si256(_mm256_and_si256(nib, _mm256_set1_epi8(0x0F)),
                           _mm256_and_si256(high, _mm256_set1_epi8(0x30)));
  }
  // isum[r][t] += the products of code vectors c and c + 1 (c even, a compile-time constant).
  template <int c, int R, int NT>
  static HWY_INLINE void Pair(const uint8_t* const* rows, const uint8_t* const* acts, int64_t g, int h,
                              __m256i (&isum)[R][NT]) {
    const __m256i ones = _mm256_set1_epi16(1);
    for (int r = 0; r < R; ++r) {
      const uint8_t* grp = rows[r] + g * kGroupBytes;
      const __m256i q0 = Codes<c>(grp, h), q1 = Codes<c + 1>(grp, h);
      for (int t = 0; t < NT; ++t) {
        const uint8_t* x = acts[t] + g * kRecordBytes + 32 * h + 64 * c;
        const __m256i s16 = _mm256_add_epi16(_mm256_maddubs_epi16(q0, Load(x)), _mm256_maddubs_epi16(q1, Load(x + 64)));
        isum[r][t] = _mm256_add_epi32(isum[r][t], _mm256_madd_epi16(s16, ones));
      }
    }
  }

  template <int R, int NT>
  static HWY_INLINE void Tile(const uint8_t* const* rows, const uint8_t* const* acts, int64_t n_groups, float* y,
                              int64_t y_stride, bool prefetch) {
    const __m256i ones8 = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1);
    __m256 acc[R][NT];
    for (int r = 0; r < R; ++r) {
      for (int t = 0; t < NT; ++t) acc[r][t] = _mm256_setzero_ps();
    }
    for (int64_t g = 0; g < n_groups; ++g) {
      if (prefetch) PrefetchGroup<R>(rows, g, kGroupBytes);
      for (int h = 0; h < 2; ++h) {  // super-block h: lanes (blocks) 8 h .. 8 h + 7
        const int64_t xat = g * kRecordBytes + 32 * h;
        __m256i a0[NT], b0[NT];  // -32 sum x over each block's first and last 16 codes
        for (int t = 0; t < NT; ++t) {
          const uint8_t* rec = acts[t] + xat;
          __m256i first16 = _mm256_setzero_si256();  // int16 pairs of sum x over code vectors 0-3 (|.| <= 4 x 254)
          for (int c = 0; c < 4; ++c)
            first16 = _mm256_add_epi16(first16, _mm256_maddubs_epi16(ones8, Load(rec + 64 * c)));
          a0[t] = _mm256_slli_epi32(_mm256_sub_epi32(_mm256_setzero_si256(), _mm256_madd_epi16(first16, ones16)), 5);
          b0[t] = _mm256_sub_epi32(_mm256_srai_epi32(Load(rec + 512), 2), a0[t]);  // -128 sum x -> -32 sum x
        }
        __m256 sa[R], sb[R];
        for (int r = 0; r < R; ++r) {
          const uint8_t* grp = rows[r] + g * kGroupBytes;
          const __m256 d = _mm256_set1_ps(F16(grp + 416 + 2 * h));
          sa[r] = _mm256_mul_ps(Int8x8(grp + 384 + 8 * h), d);
          sb[r] = _mm256_mul_ps(Int8x8(grp + 400 + 8 * h), d);
        }
        __m256i isum[R][NT];
        for (int r = 0; r < R; ++r) {
          for (int t = 0; t < NT; ++t) isum[r][t] = a0[t];
        }
        Pair<0>(rows, acts, g, h, isum);
        Pair<2>(rows, acts, g, h, isum);
        for (int t = 0; t < NT; ++t) {
          const __m256 dx = _mm256_loadu_ps(reinterpret_cast<const float*>(acts[t] + xat + 576));
          for (int r = 0; r < R; ++r) {
            acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[r][t]), _mm256_mul_ps(sa[r], dx), acc[r][t]);
            isum[r][t] = b0[t];
          }
        }
        Pair<4>(rows, acts, g, h, isum);
        Pair<6>(rows, acts, g, h, isum);
        for (int t = 0; t < NT; ++t) {
          const __m256 dx = _mm256_loadu_ps(reinterpret_cast<const float*>(acts[t] + xat + 576));
          for (int r = 0; r < R; ++r) {
            acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[r][t]), _mm256_mul_ps(sb[r], dx), acc[r][t]);
          }
        }
      }
    }
    StoreSums<R, NT>(acc, y, y_stride);
  }
};
#endif  // HWY_TARGET == HWY_AVX2

#if HWY_TARGET == HWY_AVX3_DL || HWY_TARGET == HWY_AVX2
// One token's Q8_0R records (RepackedQ8Tiles): per group of 16 blocks, code vector j's lane b = codes 4j .. 4j + 3
// of block b (QuantizeBlock's codes, the same as for Q8_0), then the 16 start values and the 16 scales d_x.
inline void QuantizeTokenQ8_0R(const float* x, int64_t n_in, uint8_t* dst) {
  alignas(64) int8_t q[32];
  for (int64_t b = 0; b < n_in / 32; ++b) {
    uint8_t* rec = dst + b / 16 * RepackedQ8Tiles::kRecordBytes;
    const int64_t lane = b % 16;
    const float d = QuantizeBlock<32>(x + 32 * b, q);
    for (int64_t j = 0; j < 8; ++j) std::memcpy(rec + 64 * j + 4 * lane, q + 4 * j, 4);
    const int32_t start = -128 * SumCodes(q, 32);
    std::memcpy(rec + 512 + 4 * lane, &start, 4);
    std::memcpy(rec + 576 + 4 * lane, &d, 4);
  }
}
#endif

// T::Tile<R, nt> for 1 <= nt <= NT.
template <class T, int R, int NT>
HWY_INLINE void TileUpTo(int64_t nt, const uint8_t* const* rows, const uint8_t* const* tok, int64_t n, float* y,
                         int64_t y_stride, bool prefetch) {
  if constexpr (NT > 1) {
    if (nt < NT) return TileUpTo<T, R, NT - 1>(nt, rows, tok, n, y, y_stride, prefetch);
  }
  T::template Tile<R, NT>(rows, tok, n, y, y_stride, prefetch);
}

// Tokens [0, n_tokens) in tiles of up to NT over the R rows at `rows`; y as Tile. The first token tile prefetches
// the rows (the others find them in cache) when kPrefetch.
template <class T, int R, int NT, bool kPrefetch = true>
HWY_INLINE void RowTile(const uint8_t* const* rows, const uint8_t* acts, int64_t token_bytes, int64_t n_tokens,
                        int64_t n, float* y, int64_t y_stride) {
  for (int64_t t0 = 0; t0 < n_tokens; t0 += NT) {
    const uint8_t* tok[NT];
    const int64_t nt = std::min<int64_t>(NT, n_tokens - t0);
    for (int64_t t = 0; t < nt; ++t) tok[t] = acts + (t0 + t) * token_bytes;
    TileUpTo<T, R, NT>(nt, rows, tok, n, y + t0 * y_stride, y_stride, kPrefetch && t0 == 0);
  }
}

// Activation bytes per token block (prefill): the records of a block of tokens stay in L2 (1 MiB per core on Zen
// 4/5) while every row tile of the thread's range passes over them, so they are read from memory once and the
// weights once per block (a block of Q8_0 activations for 4096 inputs holds 64 tokens).
constexpr int64_t kTokenBlockBytes = int64_t{512} << 10;

// Rows [o_begin, o_end) in tiles of R over tokens [0, n_tokens) in tiles of up to NT. A last partial row tile
// repeats its final row and keeps only the real outputs.
template <class T, int R, int NT, bool kPrefetch = true>
HWY_INLINE void RowTiles(const TensorView& w, int64_t n, int64_t stride, const uint8_t* acts, int64_t token_bytes,
                         int64_t n_tokens, float* y, int64_t y_stride, int64_t o_begin, int64_t o_end) {
  for (int64_t o = o_begin; o < o_end; o += R) {
    const int64_t nr = std::min<int64_t>(R, o_end - o);
    const uint8_t* rows[R];
    for (int64_t r = 0; r < R; ++r) rows[r] = w.data + (o + std::min(r, nr - 1)) * stride;
    if (nr == R) {
      RowTile<T, R, NT, kPrefetch>(rows, acts, token_bytes, n_tokens, n, y + o, y_stride);
    } else {
      float part[NT * R];
      for (int64_t t0 = 0; t0 < n_tokens; t0 += NT) {
        const int64_t nt = std::min<int64_t>(NT, n_tokens - t0);
        RowTile<T, R, NT, kPrefetch>(rows, acts + t0 * token_bytes, token_bytes, nt, n, part, R);
        for (int64_t t = 0; t < nt; ++t) {
          for (int64_t r = 0; r < nr; ++r) y[(t0 + t) * y_stride + o + r] = part[t * R + r];
        }
      }
    }
  }
}

// Decode (one token) over rows [o_begin, o_end) as S interleaved streams: the range is cut into S equal parts and
// each S-row tile takes the next row of every part, so a core reads S sequential streams at once instead of one.
// On this host's fast memory state (the read probe at ~55-65 GB/s with 2 threads) one stream per core stays near
// 18 GB/s, while several streams let the hardware prefetchers keep more lines in flight: the d2048 Q8_0 model
// decodes at 80-93 tokens/s with 4 streams against 60-66 with one (78-95% of the bound against 58-64%), and at
// 49-55 against 46-50 in the slow state (bench/RESULTS.md). Used where the kernel consumes bytes fast enough for
// memory to be the limit (Q8_0, Q8_0R: T::kDecodeStreams = 4; on AVX2 Q4_0R and Q4_KR too, on AVX3_DL every repacked
// type: there a Zen 5 once measured no gain for the 4-bit ones, a Zen 4 4-18% more tokens/s). Adjacent rows are no
// substitute: 2 or 4 of them per tile ran 1.3-2.4x slower than as many
// distant streams (Q4_0R and Q4_KR on the Zen 3). The rows left over (fewer than S) go one at a time. Each output is
// its own row's arithmetic, as in every tile.
template <class T, int S>
HWY_INLINE void DecodeInStreams(const TensorView& w, int64_t n, int64_t stride, const uint8_t* acts, float* y,
                                int64_t o_begin, int64_t o_end) {
  const int64_t len = (o_end - o_begin) / S;
  const uint8_t* tok[1] = {acts};
  for (int64_t i = 0; i < len; ++i) {
    const uint8_t* rows[S];
    for (int s = 0; s < S; ++s) rows[s] = w.data + (o_begin + s * len + i) * stride;
    float part[S];
    T::template Tile<S, 1>(rows, tok, n, part, 1, false);
    for (int s = 0; s < S; ++s) y[o_begin + s * len + i] = part[s];
  }
  if (o_begin + S * len < o_end) {
    RowTiles<T, 1, 4, T::kDecodePrefetch>(w, n, stride, acts, 0, 1, y, 1, o_begin + S * len, o_end);
  }
}

// For a single token (decode) rows are taken one at a time (the weights are then read as one linear stream, which
// the prefetch above keeps ahead of; 4 adjacent rows per tile measured slower), or, where T::kDecodeStreams > 1,
// from that many distant parts of the range at once (DecodeInStreams). Several tokens (prefill, or a batch of
// sequences) run in tiles of T::kRows rows x up to T::kTokens tokens, reusing each decoded weight step for the
// tile's tokens in registers, with the tokens in blocks of kTokenBlockBytes. Every output's arithmetic is that of
// its own row and token, whatever the tiling (batch invariance).
template <class T>
void DotRows(const TensorView& w, const uint8_t* acts, int64_t token_bytes, int64_t n_tokens, float* y,
             int64_t y_stride, int64_t o_begin, int64_t o_end) {
  const int64_t n = T::Length(w), stride = w.RowStride();  // once: RowStride looks up the dtype's traits
  if (n_tokens == 1) {  // decode: streams (DecodeInStreams) or software prefetch (kPrefetchAhead) per T
    if constexpr (T::kDecodeStreams > 1) {
      return DecodeInStreams<T, T::kDecodeStreams>(w, n, stride, acts, y, o_begin, o_end);
    }
    // Tiles of up to 4 tokens, though one is used: GCC then hoists each step's weight loads ahead of the products,
    // which streams the weights ~10% faster than the code it makes for 1-token tiles (measured on Q8_0R).
    return RowTiles<T, 1, 4, T::kDecodePrefetch>(w, n, stride, acts, token_bytes, 1, y, y_stride, o_begin, o_end);
  }
  constexpr int kR = T::kRows, kT = T::kTokens;
  const int64_t block = std::max<int64_t>(kT, kTokenBlockBytes / std::max<int64_t>(1, token_bytes) / kT * kT);
  for (int64_t t0 = 0; t0 < n_tokens; t0 += block) {
    RowTiles<T, kR, kT>(w, n, stride, acts + t0 * token_bytes, token_bytes, std::min(block, n_tokens - t0),
                        y + t0 * y_stride, y_stride, o_begin, o_end);
  }
}

#else  // !HERD_QDOT_SIMD
// ---------------------------------------------------------------------------------------------------------
// Portable kernels: natural-order codes, then per token the block scales (f32) and code sums (int32); the same
// integer block sums as ref::Dot*, scaled and summed in f32.

inline int64_t BlockOf(DType t) { return t == DType::kQ8_0 || t == DType::kQ4_0 ? 32 : kQK; }

inline int64_t PortableTokenBytes(DType t, int64_t n_in) {
  const int64_t n_blocks = n_in / BlockOf(t);
  return (n_in + 8 * n_blocks + 63) / 64 * 64;
}

inline void PortableQuantizeToken(DType t, const float* x, int64_t n_in, uint8_t* dst) {
  const int64_t block = BlockOf(t), n_blocks = n_in / block;
  int8_t* q = reinterpret_cast<int8_t*>(dst);
  for (int64_t b = 0; b < n_blocks; ++b) {
    const float d =
        block == 32 ? QuantizeBlock<32>(x + 32 * b, q + 32 * b) : QuantizeBlock<kQK>(x + kQK * b, q + kQK * b);
    const int32_t sum = SumCodes(q + block * b, block);
    std::memcpy(dst + n_in + 8 * b, &d, 4);
    std::memcpy(dst + n_in + 8 * b + 4, &sum, 4);
  }
}

// Unsigned codes of a K-quant super-block in element order, and for Q4_K/Q5_K the sub-block scales and mins.
inline void PortableKCodes(DType t, const uint8_t* blk, int* q, int* sc, int* mn) {
  if (t == DType::kQ6_K) {
    for (int h = 0; h < 2; ++h) {
      const uint8_t* ql = blk + 64 * h;
      const uint8_t* qh = blk + 128 + 32 * h;
      for (int l = 0; l < 32; ++l) {
        q[128 * h + l] = (ql[l] & 0xF) | ((qh[l] & 3) << 4);
        q[128 * h + l + 32] = (ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4);
        q[128 * h + l + 64] = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4);
        q[128 * h + l + 96] = (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4);
      }
    }
    return;
  }
  const bool q5 = t == DType::kQ5_K;
  const uint8_t* s = blk + 4;
  const uint8_t* qh = blk + 16;
  const uint8_t* qs = blk + (q5 ? 48 : 16);
  for (int j = 0; j < 8; ++j) {
    sc[j] = j < 4 ? s[j] & 63 : (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
    mn[j] = j < 4 ? s[j + 4] & 63 : (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
  for (int c = 0; c < 4; ++c) {
    for (int l = 0; l < 32; ++l) {
      q[64 * c + l] = (qs[32 * c + l] & 0xF) + (q5 && ((qh[l] >> (2 * c)) & 1) ? 16 : 0);
      q[64 * c + 32 + l] = (qs[32 * c + l] >> 4) + (q5 && ((qh[l] >> (2 * c + 1)) & 1) ? 16 : 0);
    }
  }
}

inline float PortableDot(DType t, const uint8_t* row, const uint8_t* act, int64_t n_in) {
  const int8_t* qx = reinterpret_cast<const int8_t*>(act);
  const int64_t block = BlockOf(t), n_blocks = n_in / block;
  float acc = 0.0f;
  for (int64_t b = 0; b < n_blocks; ++b) {
    float dx;
    std::memcpy(&dx, act + n_in + 8 * b, 4);
    const int8_t* x = qx + block * b;
    if (t == DType::kQ8_0 || t == DType::kQ4_0) {
      const uint8_t* blk = row + Traits(t).type_size * b;
      int32_t isum = 0;
      for (int j = 0; j < 16; ++j) {
        if (t == DType::kQ8_0) {
          isum += static_cast<int8_t>(blk[2 + j]) * x[j] + static_cast<int8_t>(blk[18 + j]) * x[j + 16];
        } else {
          isum += ((blk[2 + j] & 0xF) - 8) * x[j] + ((blk[2 + j] >> 4) - 8) * x[j + 16];
        }
      }
      acc += F16ToF32(LoadU16(blk)) * dx * static_cast<float>(isum);
      continue;
    }
    const uint8_t* blk = row + Traits(t).type_size * b;
    int q[kQK], sc[8], mn[8];
    PortableKCodes(t, blk, q, sc, mn);
    if (t == DType::kQ6_K) {
      const int8_t* s = reinterpret_cast<const int8_t*>(blk + 192);
      int32_t isum = 0;
      for (int i = 0; i < kQK; ++i) isum += s[i / 16] * (q[i] - 32) * x[i];
      acc += F16ToF32(LoadU16(blk + 208)) * dx * static_cast<float>(isum);
    } else {
      int32_t isum = 0, msum = 0;
      for (int i = 0; i < kQK; ++i) {
        isum += sc[i / 32] * q[i] * x[i];
        msum += mn[i / 32] * x[i];
      }
      acc += F16ToF32(LoadU16(blk)) * dx * static_cast<float>(isum);
      acc -= F16ToF32(LoadU16(blk + 2)) * dx * static_cast<float>(msum);
    }
  }
  return acc;
}

#endif  // HERD_QDOT_SIMD

}  // namespace qdot

// ---------------------------------------------------------------------------------------------------------
// Entry points (exported by cpu/qdot.cpp).

// Whether this target multiplies BF16 weights natively (cpu/bf16dot-inl.h; the CPU must also have AVX512_BF16).
inline bool NativeBf16DotT() { return bf16dot::kNative; }

// Whether this target has the kernel of the repacked type t (kernels/repack.h): AVX3_DL (AVX-512 VNNI + VBMI) and
// AVX2 have all of them. (A macro for the #if's below: this file is compiled once per target.)
#undef HERD_REPACKED
#if HWY_TARGET == HWY_AVX3_DL || HWY_TARGET == HWY_AVX2
#define HERD_REPACKED 1
#else
#define HERD_REPACKED 0
#endif
inline bool RepackedDotT(DType t) { return IsRepacked(t) && HERD_REPACKED; }

inline const char* QuantDotTargetT() { return hwy::TargetName(HWY_TARGET); }

#if HERD_QDOT_SIMD
template <class T>
struct TilesOf {
  using type = T;
};

// Calls f(TilesOf<T>{}) with the tile struct T of t's products on this target (qdot::DotRows), or otherwise() for a
// type without one here: the one place that names which struct serves which type.
template <class F, class G>
decltype(auto) WithQuantTiles(DType t, F&& f, G&& otherwise) {
  switch (t) {
    case DType::kQ8_0:
      return f(TilesOf<qdot::QuantTiles<qdot::DotQ8_0Q8>>{});
#if HERD_REPACKED
    case DType::kQ8_0R:
      return f(TilesOf<qdot::RepackedQ8Tiles>{});
    case DType::kQ4_0R:
      return f(TilesOf<qdot::RepackedQ4Tiles>{});
    case DType::kQ4_KR:
      return f(TilesOf<qdot::RepackedQ4KTiles>{});
    case DType::kQ5_KR:
      return f(TilesOf<qdot::RepackedQ5KTiles>{});
    case DType::kQ6_KR:
      return f(TilesOf<qdot::RepackedQ6KTiles>{});
#endif
    case DType::kQ4_0:
      return f(TilesOf<qdot::QuantTiles<qdot::DotQ4_0Q8>>{});
    case DType::kQ4_K:
      return f(TilesOf<qdot::QuantTiles<qdot::DotQ4KQ8K>>{});
    case DType::kQ5_K:
      return f(TilesOf<qdot::QuantTiles<qdot::DotQ5KQ8K>>{});
    case DType::kQ6_K:
      return f(TilesOf<qdot::QuantTiles<qdot::DotQ6KQ8K>>{});
    default:
      return otherwise();
  }
}
#endif

// The streams per core of t's one-token kernel on this target (qdot::DotRows: T::kDecodeStreams); 1 for the types
// without a stream kernel here.
inline int QuantDecodeStreamsT(DType t) {
#if HERD_QDOT_SIMD
  return WithQuantTiles(
      t, [](auto tiles) -> int { return decltype(tiles)::type::kDecodeStreams; }, [] { return 1; });
#else
  (void)t;
  return 1;
#endif
}

inline int64_t QuantTokenBytesT(DType t, int64_t n_in) {
  if (t == DType::kBF16) return bf16dot::TokenBytes(n_in);
#if HERD_QDOT_SIMD
  switch (t) {
    case DType::kQ8_0R:  // Q8_0R's records where the target has the type's kernel (RepackedDotT)
    case DType::kQ4_0R:
    case DType::kQ4_KR:
    case DType::kQ5_KR:
    case DType::kQ6_KR:
#if HERD_REPACKED
      if (RepackedDotT(t)) return n_in / 512 * qdot::RepackedQ8Tiles::kRecordBytes;
#endif
      // never asked for (cpu/matmul.cpp ActivationType): the records of the layout it was packed from
      return QuantTokenBytesT(PackedFrom(t), n_in);
    case DType::kQ8_0:
      return qdot::TokenBytes<qdot::DotQ8_0Q8>(n_in);
    case DType::kQ4_0:
      return qdot::TokenBytes<qdot::DotQ4_0Q8>(n_in);
    case DType::kQ4_K:
      return qdot::TokenBytes<qdot::DotQ4KQ8K>(n_in);
    case DType::kQ5_K:
      return qdot::TokenBytes<qdot::DotQ5KQ8K>(n_in);
    case DType::kQ6_K:
      return qdot::TokenBytes<qdot::DotQ6KQ8K>(n_in);
    default:
      HERD_CHECK(false && "quantized activations: unsupported weight dtype");
      return 0;
  }
#else
  return qdot::PortableTokenBytes(t, n_in);
#endif
}

inline void QuantizeActivationsT(DType t, const float* x, int64_t n_tokens, int64_t n_in, uint8_t* dst,
                                 int64_t token_bytes) {
  for (int64_t tok = 0; tok < n_tokens; ++tok) {
    const float* xt = x + tok * n_in;
    uint8_t* out = dst + tok * token_bytes;
    if (t == DType::kBF16) {
      bf16dot::SplitToken(xt, n_in, out);
      continue;
    }
#if HERD_QDOT_SIMD
    switch (t) {
      case DType::kQ8_0R:
      case DType::kQ4_0R:
      case DType::kQ4_KR:
      case DType::kQ5_KR:
      case DType::kQ6_KR:
#if HERD_REPACKED
        if (RepackedDotT(t)) {
          qdot::QuantizeTokenQ8_0R(xt, n_in, out);
          break;
        }
#endif
        QuantizeActivationsT(PackedFrom(t), xt, 1, n_in, out, token_bytes);  // never asked for, as above
        break;
      case DType::kQ8_0:
        qdot::QuantizeToken<qdot::DotQ8_0Q8>(xt, n_in, out);
        break;
      case DType::kQ4_0:
        qdot::QuantizeToken<qdot::DotQ4_0Q8>(xt, n_in, out);
        break;
      case DType::kQ4_K:
        qdot::QuantizeToken<qdot::DotQ4KQ8K>(xt, n_in, out);
        break;
      case DType::kQ5_K:
        qdot::QuantizeToken<qdot::DotQ5KQ8K>(xt, n_in, out);
        break;
      case DType::kQ6_K:
        qdot::QuantizeToken<qdot::DotQ6KQ8K>(xt, n_in, out);
        break;
      default:
        HERD_CHECK(false && "quantized activations: unsupported weight dtype");
    }
#else
    qdot::PortableQuantizeToken(t, xt, n_in, out);
#endif
  }
}

inline void QuantDotRowsT(const TensorView& w, const uint8_t* acts, int64_t token_bytes, int64_t n_tokens, float* y,
                          int64_t y_stride, int64_t o_begin, int64_t o_end) {
  if (w.dtype == DType::kBF16) {
#if HERD_BF16DOT_NATIVE
    return qdot::DotRows<bf16dot::Tiles>(w, acts, token_bytes, n_tokens, y, y_stride, o_begin, o_end);
#else
    HERD_CHECK(false && "BF16 dot products: this target has no AVX512_BF16 kernel");
#endif
  }
#if HERD_QDOT_SIMD
  WithQuantTiles(
      w.dtype,
      [&](auto tiles) {
        qdot::DotRows<typename decltype(tiles)::type>(w, acts, token_bytes, n_tokens, y, y_stride, o_begin, o_end);
      },
      [] { HERD_CHECK(false && "QuantDotRows: unsupported weight dtype"); });
#else
  for (int64_t o = o_begin; o < o_end; ++o) {
    for (int64_t t = 0; t < n_tokens; ++t) {
      y[t * y_stride + o] = qdot::PortableDot(w.dtype, w.Row(o), acts + t * token_bytes, w.Cols());
    }
  }
#endif
}

// The compute ceiling probe (cpu/qdot.h PeakOps): `iters` steps of kPeakChains independent accumulator chains of
// the instruction the kernels use for `kind`, operands pinned in registers by an empty asm so that nothing is
// hoisted out of the loop. Returns the operations done (2 per multiply-add), 0 for a kind this target lacks.
constexpr int kPeakChains = 12;

#if HERD_QDOT_SIMD
#define HERD_PEAK_PIN(v) __asm__ volatile("" : "+v"(v))
#endif

inline int64_t PeakOpsT(int kind, int64_t iters) {
#if HERD_QDOT_SIMD
  namespace hn = hwy::HWY_NAMESPACE;
  using qdot::DB;
  using qdot::DF;
  using qdot::DI;
  using qdot::DS;
  if (kind == 0) {  // int8: vpdpbusd, else pmaddubsw + pmaddwd
    auto u = hn::Set(DB(), uint8_t{3}).raw;
    auto x = hn::Set(DS(), int8_t{-2}).raw;
    qdot::VI acc[kPeakChains];
    for (auto& v : acc) v = hn::Zero(DI());
    for (int64_t i = 0; i < iters; ++i) {
      HERD_PEAK_PIN(u);
      HERD_PEAK_PIN(x);
      for (auto& v : acc) v = qdot::DotQuads(v, qdot::VB{u}, qdot::VS{x});
    }
    int32_t sink = 0;
    for (auto& v : acc) sink += hn::GetLane(v);
    __asm__ volatile("" : : "r"(sink));
    return iters * kPeakChains * 2 * qdot::kNB;
  }
  if (kind == 1) {  // f32 fused multiply-add
    auto a = hn::Set(DF(), 1.0001f).raw;
    auto b = hn::Set(DF(), 0.9999f).raw;
    hn::Vec<DF> acc[kPeakChains];
    for (auto& v : acc) v = hn::Zero(DF());
    for (int64_t i = 0; i < iters; ++i) {
      HERD_PEAK_PIN(a);
      HERD_PEAK_PIN(b);
      for (auto& v : acc) v = hn::MulAdd(hn::Vec<DF>{a}, hn::Vec<DF>{b}, v);
    }
    float sink = 0;
    for (auto& v : acc) sink += hn::GetLane(v);
    __asm__ volatile("" : : "x"(sink));
    return iters * kPeakChains * 2 * static_cast<int64_t>(hn::Lanes(DF()));
  }
#if HERD_BF16DOT_NATIVE
  if (kind == 2) {  // bf16 pairs into f32: vdpbf16ps
    __m512i w = _mm512_set1_epi16(0x3f80), x = _mm512_set1_epi16(0x3f80);
    __m512 acc[kPeakChains];
    for (auto& v : acc) v = _mm512_setzero_ps();
    for (int64_t i = 0; i < iters; ++i) {
      HERD_PEAK_PIN(w);
      HERD_PEAK_PIN(x);
      for (auto& v : acc) v = bf16dot::DotPairs(v, w, x);
    }
    float sink = 0;
    for (auto& v : acc) sink += _mm512_cvtss_f32(v);
    __asm__ volatile("" : : "x"(sink));
    return iters * kPeakChains * 2 * 32;
  }
#endif
  return 0;
#else
  if (kind == 1) {  // portable targets: scalar multiply-adds
    float acc[kPeakChains] = {};
    volatile float va = 1.0001f, vb = 0.9999f;
    const float a = va, b = vb;
    for (int64_t i = 0; i < iters; ++i) {
      for (float& v : acc) v = v * a + b;
    }
    volatile float sink = 0;
    for (float v : acc) sink = sink + v;
    return iters * kPeakChains * 2;
  }
  return 0;
#endif
}

#undef HERD_PEAK_PIN

}  // namespace herd::kernels::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#endif  // HERD_KERNELS_CPU_QDOT_INL_H_
