// Tiled attention with an online softmax (kernels/attention.h), dispatched to the best Highway target. This file is
// compiled once per target through foreach_target.h.
//
// Per call, the query rows (tokens x heads of the group) are processed in blocks of at most kAttentionMaxRows. For
// each block the keys from the smallest key_begin to the largest key_end go by in tiles of kAttentionKeyTile:
//   1. S = scale * Q K^T for all rows x tile keys (register tile of 4 rows x 2 keys along head_dim), then keys
//      outside a row's range get -inf;
//   2. per row: m' = max(m, max S), c = exp(m - m'), P = exp(S - m'), l = c l + sum P, acc *= c;
//   3. acc += P V (register tile of 4 rows x 2 vectors of head_dim, V rows streamed once for all rows).
// At the end out = acc / l. Scratch holds acc [rows][head_dim], S/P [rows][tile], m [rows], l [rows].

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/cpu/attention.cpp"
#include "hwy/foreach_target.h"  // IWYU pragma: keep

// (foreach_target.h stays first, in its own include block: it re-includes this file once per target.)
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "hwy/contrib/math/math-inl.h"
#include "hwy/highway.h"
#include "kernels/attention.h"
#include "kernels/quantize.h"

HWY_BEFORE_NAMESPACE();
namespace herd::kernels::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

constexpr int64_t kTile = kAttentionKeyTile;

// One cached key or value row of `type` (F16, BF16, Q8_0) decoded exactly to f32: BF16 in vectors, F16 in vectors
// where the target converts with F16C (Highway 1.0.3's emulation elsewhere does not keep subnormals:
// attention_test), the rest by DequantizeRow. Every f16 and bf16 value is an f32 value, so exact conversions agree.
HWY_INLINE void DecodeKvRow(DType type, const uint8_t* src, int64_t n, float* dst) {
  const hn::ScalableTag<float> df;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(df));
  int64_t i = 0;
#if HWY_TARGET <= HWY_AVX2 && !defined(HWY_DISABLE_F16C)
  constexpr bool kF16C = true;
#else
  constexpr bool kF16C = false;
#endif
  if (kF16C && type == DType::kF16) {
    const hn::Rebind<hwy::float16_t, decltype(df)> dh;
    const hwy::float16_t* h = reinterpret_cast<const hwy::float16_t*>(src);
    for (; i + lanes <= n; i += lanes) hn::StoreU(hn::PromoteTo(df, hn::LoadU(dh, h + i)), df, dst + i);
  } else if (type == DType::kBF16) {
    const hn::RebindToUnsigned<decltype(df)> du;
    const hn::Rebind<uint16_t, decltype(df)> d16;
    const uint16_t* h = reinterpret_cast<const uint16_t*>(src);
    for (; i + lanes <= n; i += lanes) {
      hn::StoreU(hn::BitCast(df, hn::ShiftLeft<16>(hn::PromoteTo(du, hn::LoadU(d16, h + i)))), df, dst + i);
    }
  }
  if (i < n) herd::kernels::DequantizeRow(type, src + i * Traits(type).type_size, n - i, dst + i);
}

// s[r * kTile + j0 + i] = scale * dot(q_rows[r], k_i) for r < NR (NR = 1 or 4) and i in {0, 1}: NR x 2 vector
// accumulators along head_dim, every K load shared by NR rows and every Q load by both keys.
template <int NR>
HWY_INLINE void ScoresBlock(const float* const* q_rows, const float* k0, const float* k1, int64_t hd, float scale,
                            float* s, int64_t j0) {
  const hn::ScalableTag<float> d;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  const float* q0 = q_rows[0];
  const float* q1 = NR == 4 ? q_rows[1] : q0;
  const float* q2 = NR == 4 ? q_rows[2] : q0;
  const float* q3 = NR == 4 ? q_rows[3] : q0;
  auto a00 = hn::Zero(d), a01 = hn::Zero(d), a10 = hn::Zero(d), a11 = hn::Zero(d);
  auto a20 = hn::Zero(d), a21 = hn::Zero(d), a30 = hn::Zero(d), a31 = hn::Zero(d);
  int64_t i = 0;
  for (; i + lanes <= hd; i += lanes) {
    const auto vk0 = hn::LoadU(d, k0 + i), vk1 = hn::LoadU(d, k1 + i);
    const auto vq0 = hn::LoadU(d, q0 + i);
    a00 = hn::MulAdd(vq0, vk0, a00);
    a01 = hn::MulAdd(vq0, vk1, a01);
    if constexpr (NR == 4) {
      const auto vq1 = hn::LoadU(d, q1 + i), vq2 = hn::LoadU(d, q2 + i), vq3 = hn::LoadU(d, q3 + i);
      a10 = hn::MulAdd(vq1, vk0, a10);
      a11 = hn::MulAdd(vq1, vk1, a11);
      a20 = hn::MulAdd(vq2, vk0, a20);
      a21 = hn::MulAdd(vq2, vk1, a21);
      a30 = hn::MulAdd(vq3, vk0, a30);
      a31 = hn::MulAdd(vq3, vk1, a31);
    }
  }
  float t00 = hn::GetLane(hn::SumOfLanes(d, a00)), t01 = hn::GetLane(hn::SumOfLanes(d, a01));
  float t10 = 0, t11 = 0, t20 = 0, t21 = 0, t30 = 0, t31 = 0;
  if constexpr (NR == 4) {
    t10 = hn::GetLane(hn::SumOfLanes(d, a10));
    t11 = hn::GetLane(hn::SumOfLanes(d, a11));
    t20 = hn::GetLane(hn::SumOfLanes(d, a20));
    t21 = hn::GetLane(hn::SumOfLanes(d, a21));
    t30 = hn::GetLane(hn::SumOfLanes(d, a30));
    t31 = hn::GetLane(hn::SumOfLanes(d, a31));
  }
  for (; i < hd; ++i) {  // head_dim not a multiple of the lanes
    t00 += q0[i] * k0[i];
    t01 += q0[i] * k1[i];
    t10 += q1[i] * k0[i];
    t11 += q1[i] * k1[i];
    t20 += q2[i] * k0[i];
    t21 += q2[i] * k1[i];
    t30 += q3[i] * k0[i];
    t31 += q3[i] * k1[i];
  }
  s[j0] = t00 * scale;
  s[j0 + 1] = t01 * scale;
  if constexpr (NR == 4) {
    s[kTile + j0] = t10 * scale;
    s[kTile + j0 + 1] = t11 * scale;
    s[2 * kTile + j0] = t20 * scale;
    s[2 * kTile + j0 + 1] = t21 * scale;
    s[3 * kTile + j0] = t30 * scale;
    s[3 * kTile + j0 + 1] = t31 * scale;
  }
}

#if HWY_TARGET <= HWY_AVX3
// ScoresBlock for 4 rows x 4 keys with 16-lane vectors (head_dim a multiple of 16): the same 16 per-lane FMA chains
// as ScoresBlock, then the 16 sums reduced together by a transposing tree instead of one SumOfLanes each. The tree
// pairs lanes exactly as SumOfLanes (_mm512_reduce_add_ps: lane i + lane i+8, then i + i+4, i + i+2, i + i+1) does
// for each accumulator, so every score has the same bits as ScoresBlock's; the reduction costs 15 shuffle pairs
// and adds for 16 scores instead of about 16 x 7 operations. Accumulator 4 key + row ends in lane 4 row + key.
HWY_INLINE void ScoresBlock4x4(const float* const* q_rows, const float* const* k, int64_t hd, float scale, float* s,
                               int64_t j0) {
  __m512 a[16];
  for (int x = 0; x < 16; ++x) a[x] = _mm512_setzero_ps();
  for (int64_t i = 0; i < hd; i += 16) {
    __m512 vq[4], vk[4];
    for (int r = 0; r < 4; ++r) vq[r] = _mm512_loadu_ps(q_rows[r] + i);
    for (int key = 0; key < 4; ++key) vk[key] = _mm512_loadu_ps(k[key] + i);
    for (int key = 0; key < 4; ++key) {
      for (int r = 0; r < 4; ++r) a[4 * key + r] = _mm512_fmadd_ps(vq[r], vk[key], a[4 * key + r]);
    }
  }
  // Halves of 256 bits (lane i + lane i+8) of two accumulators side by side: b[m] = a[2m] | a[2m+1].
  __m512 b[8];
  for (int m = 0; m < 8; ++m) {
    b[m] = _mm512_add_ps(_mm512_shuffle_f32x4(a[2 * m], a[2 * m + 1], 0x44),
                         _mm512_shuffle_f32x4(a[2 * m], a[2 * m + 1], 0xEE));
  }
  // Quarters (i + i+4): c[m] = a[4m] | a[4m+1] | a[4m+2] | a[4m+3], four lanes each.
  __m512 c[4];
  for (int m = 0; m < 4; ++m) {
    c[m] = _mm512_add_ps(_mm512_shuffle_f32x4(b[2 * m], b[2 * m + 1], 0x88),
                         _mm512_shuffle_f32x4(b[2 * m], b[2 * m + 1], 0xDD));
  }
  // Within each quarter, (i + i+2) and then (i + i+1).
  __m512 d[2];
  for (int m = 0; m < 2; ++m) {
    d[m] =
        _mm512_add_ps(_mm512_shuffle_ps(c[2 * m], c[2 * m + 1], 0x44), _mm512_shuffle_ps(c[2 * m], c[2 * m + 1], 0xEE));
  }
  const __m512 e = _mm512_mul_ps(
      _mm512_add_ps(_mm512_shuffle_ps(d[0], d[1], 0x88), _mm512_shuffle_ps(d[0], d[1], 0xDD)), _mm512_set1_ps(scale));
  _mm_storeu_ps(s + j0, _mm512_extractf32x4_ps(e, 0));
  _mm_storeu_ps(s + kTile + j0, _mm512_extractf32x4_ps(e, 1));
  _mm_storeu_ps(s + 2 * kTile + j0, _mm512_extractf32x4_ps(e, 2));
  _mm_storeu_ps(s + 3 * kTile + j0, _mm512_extractf32x4_ps(e, 3));
}
#endif

// acc_r[c, c + width) += sum_{j < nk} p[r * kTile + j] * v_j[c, c + width) for r < NR (1 or 4), width = W vectors
// (1 or 2). The accumulators stay in registers over the whole tile.
template <int NR, int W>
HWY_INLINE void PvBlock(const float* p, const float* const* v, int64_t nk, float* acc, int64_t hd, int64_t c) {
  const hn::ScalableTag<float> d;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  float* o0 = acc + c;
  float* o1 = acc + (NR == 4 ? hd : 0) + c;
  float* o2 = acc + (NR == 4 ? 2 * hd : 0) + c;
  float* o3 = acc + (NR == 4 ? 3 * hd : 0) + c;
  auto a00 = hn::LoadU(d, o0), a01 = hn::Zero(d), a10 = hn::Zero(d), a11 = hn::Zero(d);
  auto a20 = hn::Zero(d), a21 = hn::Zero(d), a30 = hn::Zero(d), a31 = hn::Zero(d);
  if constexpr (W == 2) a01 = hn::LoadU(d, o0 + lanes);
  if constexpr (NR == 4) {
    a10 = hn::LoadU(d, o1);
    a20 = hn::LoadU(d, o2);
    a30 = hn::LoadU(d, o3);
    if constexpr (W == 2) {
      a11 = hn::LoadU(d, o1 + lanes);
      a21 = hn::LoadU(d, o2 + lanes);
      a31 = hn::LoadU(d, o3 + lanes);
    }
  }
  for (int64_t j = 0; j < nk; ++j) {
    const float* vj = v[j] + c;
    const auto v0 = hn::LoadU(d, vj);
    const auto p0 = hn::Set(d, p[j]);
    a00 = hn::MulAdd(p0, v0, a00);
    if constexpr (W == 2) {
      const auto v1 = hn::LoadU(d, vj + lanes);
      a01 = hn::MulAdd(p0, v1, a01);
      if constexpr (NR == 4) {
        const auto p1 = hn::Set(d, p[kTile + j]), p2 = hn::Set(d, p[2 * kTile + j]), p3 = hn::Set(d, p[3 * kTile + j]);
        a10 = hn::MulAdd(p1, v0, a10);
        a11 = hn::MulAdd(p1, v1, a11);
        a20 = hn::MulAdd(p2, v0, a20);
        a21 = hn::MulAdd(p2, v1, a21);
        a30 = hn::MulAdd(p3, v0, a30);
        a31 = hn::MulAdd(p3, v1, a31);
      }
    } else if constexpr (NR == 4) {
      a10 = hn::MulAdd(hn::Set(d, p[kTile + j]), v0, a10);
      a20 = hn::MulAdd(hn::Set(d, p[2 * kTile + j]), v0, a20);
      a30 = hn::MulAdd(hn::Set(d, p[3 * kTile + j]), v0, a30);
    }
  }
  hn::StoreU(a00, d, o0);
  if constexpr (W == 2) hn::StoreU(a01, d, o0 + lanes);
  if constexpr (NR == 4) {
    hn::StoreU(a10, d, o1);
    hn::StoreU(a20, d, o2);
    hn::StoreU(a30, d, o3);
    if constexpr (W == 2) {
      hn::StoreU(a11, d, o1 + lanes);
      hn::StoreU(a21, d, o2 + lanes);
      hn::StoreU(a31, d, o3 + lanes);
    }
  }
}

// PvBlock for 4 rows x 4 vectors of head_dim: the same FMA per (row, element, key) in the same key order as
// PvBlock (so the same bits), with each P broadcast and V load shared by twice the accumulators.
HWY_INLINE void PvBlock4x4(const float* p, const float* const* v, int64_t nk, float* acc, int64_t hd, int64_t c) {
  const hn::ScalableTag<float> d;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  using V = hn::Vec<decltype(d)>;
  V a[4][4];
  for (int r = 0; r < 4; ++r) {
    for (int w = 0; w < 4; ++w) a[r][w] = hn::LoadU(d, acc + r * hd + c + w * lanes);
  }
  for (int64_t j = 0; j < nk; ++j) {
    const float* vj = v[j] + c;
    V vv[4];
    for (int w = 0; w < 4; ++w) vv[w] = hn::LoadU(d, vj + w * lanes);
    for (int r = 0; r < 4; ++r) {
      const V pr = hn::Set(d, p[r * kTile + j]);
      for (int w = 0; w < 4; ++w) a[r][w] = hn::MulAdd(pr, vv[w], a[r][w]);
    }
  }
  for (int r = 0; r < 4; ++r) {
    for (int w = 0; w < 4; ++w) hn::StoreU(a[r][w], d, acc + r * hd + c + w * lanes);
  }
}

template <int NR>
HWY_INLINE void PvRows(const float* p, const float* const* v, int64_t nk, float* acc, int64_t hd) {
  const hn::ScalableTag<float> d;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  int64_t c = 0;
  if constexpr (NR == 4 && HWY_TARGET <= HWY_AVX3) {
    for (; c + 4 * lanes <= hd; c += 4 * lanes) PvBlock4x4(p, v, nk, acc, hd, c);
  }
  for (; c + 2 * lanes <= hd; c += 2 * lanes) PvBlock<NR, 2>(p, v, nk, acc, hd, c);
  for (; c + lanes <= hd; c += lanes) PvBlock<NR, 1>(p, v, nk, acc, hd, c);
  for (; c < hd; ++c) {  // head_dim not a multiple of the lanes
    for (int r = 0; r < NR; ++r) {
      float a = acc[r * hd + c];
      for (int64_t j = 0; j < nk; ++j) a += p[r * kTile + j] * v[j][c];
      acc[r * hd + c] = a;
    }
  }
}

// Softmax step of one row over a tile of nk scores (masked entries already -inf, at least one finite): updates the
// running max m and sum l, rescales the row's accumulator and turns s into probabilities.
HWY_INLINE void OnlineSoftmaxRow(float* s, int64_t nk, float* m, float* l, float* acc, int64_t hd) {
  const hn::ScalableTag<float> d;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  // The largest score, in vectors (max is exact, so any order gives the same value; a +0/-0 difference cannot
  // change an exp below).
  auto vmax = hn::Set(d, -HUGE_VALF);
  int64_t jm = 0;
  for (; jm + lanes <= nk; jm += lanes) vmax = hn::Max(vmax, hn::LoadU(d, s + jm));
  float tile_max = hn::GetLane(hn::MaxOfLanes(d, vmax));
  for (; jm < nk; ++jm) tile_max = std::max(tile_max, s[jm]);
  const float m_new = std::max(*m, tile_max);
  // exp(-inf) would be 0 as well; the branch keeps a fresh row's first tile free of the rescale pass.
  const float corr = *m == -HUGE_VALF ? 0.0f : std::exp(*m - m_new);
  const auto vm = hn::Set(d, m_new);
  auto vsum = hn::Zero(d);
  int64_t j = 0;
  for (; j + lanes <= nk; j += lanes) {
    const auto e = hn::Exp(d, hn::Sub(hn::LoadU(d, s + j), vm));  // argument <= 0; -inf gives 0
    vsum = hn::Add(vsum, e);
    hn::StoreU(e, d, s + j);
  }
  if (j < nk) {  // tail through a padded vector, so every probability comes from the same formula
    HWY_ALIGN float buf[HWY_MAX_BYTES / sizeof(float)];
    for (int64_t i = 0; i < lanes; ++i) buf[i] = j + i < nk ? s[j + i] : -HUGE_VALF;
    const auto e = hn::Exp(d, hn::Sub(hn::Load(d, buf), vm));
    vsum = hn::Add(vsum, e);
    hn::Store(e, d, buf);
    std::memcpy(s + j, buf, static_cast<size_t>(nk - j) * sizeof(float));
  }
  const float tile_sum = hn::GetLane(hn::SumOfLanes(d, vsum));
  if (*m == -HUGE_VALF) {
    std::fill(acc, acc + hd, 0.0f);
    *l = tile_sum;
  } else {
    *l = *l * corr + tile_sum;
    if (corr != 1.0f) {
      const auto vc = hn::Set(d, corr);
      int64_t i = 0;
      for (; i + lanes <= hd; i += lanes) hn::StoreU(hn::Mul(hn::LoadU(d, acc + i), vc), d, acc + i);
      for (; i < hd; ++i) acc[i] *= corr;
    }
  }
  *m = m_new;
}

// One block of rows: tokens [t0, t0 + nt), heads [g0, g0 + ng), nt * ng <= kAttentionMaxRows. load(tb, nk, krow,
// vrow, kbuf, vbuf) points krow[j] / vrow[j] at the f32 key / value of index tb + j for j < nk (decoding into
// kbuf / vbuf, kTile rows of hd floats each, where the cache is not f32).
template <class Load>
HWY_INLINE void AttentionBlock(const float* q, int64_t q_stride, int64_t t0, int64_t nt, int64_t g0, int64_t ng,
                               int64_t hd, const Load& load, const int64_t* key_begin, const int64_t* key_end,
                               float scale, float* out, int64_t out_stride, float* scratch) {
  const int64_t rows = nt * ng;
  float* acc = scratch;                      // [rows][hd]
  float* s = acc + kAttentionMaxRows * hd;   // [rows][kTile]
  float* m = s + kAttentionMaxRows * kTile;  // [rows]
  float* l = m + kAttentionMaxRows;          // [rows]
  float* kbuf = l + kAttentionMaxRows;       // [kTile][hd]
  float* vbuf = kbuf + kTile * hd;           // [kTile][hd]
  const float* q_rows[kAttentionMaxRows];
  const float* krow[kTile];
  const float* vrow[kTile];
  int64_t lo = key_begin[t0], hi = key_end[t0];
  for (int64_t t = 0; t < nt; ++t) {
    lo = std::min(lo, key_begin[t0 + t]);
    hi = std::max(hi, key_end[t0 + t]);
    for (int64_t g = 0; g < ng; ++g) q_rows[t * ng + g] = q + (t0 + t) * q_stride + (g0 + g) * hd;
  }
  std::fill(m, m + rows, -HUGE_VALF);
  std::fill(l, l + rows, 0.0f);

  // Tiles lie on a fixed grid of key indices (multiples of kTile), clipped to [lo, hi): only named keys are read.
  for (int64_t j0 = lo / kTile * kTile; j0 < hi; j0 += kTile) {
    const int64_t tb = std::max(j0, lo), nk = std::min(j0 + kTile, hi) - tb;  // keys [tb, tb + nk)
    load(tb, nk, krow, vrow, kbuf, vbuf);
    // 1. Scores of every row for every key of the tile (an odd last key is computed twice, into the unused
    //    column nk < kTile).
#if HWY_TARGET <= HWY_AVX3
    if (hd % 16 == 0) {  // keys in fours (the last ones repeated into unused columns < kTile)
      for (int64_t j = 0; j < nk; j += 4) {
        const float* k4[4];
        for (int x = 0; x < 4; ++x) k4[x] = krow[std::min(j + x, nk - 1)];
        int64_t r = 0;
        for (; r + 4 <= rows; r += 4) ScoresBlock4x4(q_rows + r, k4, hd, scale, s + r * kTile, j);
        for (; r < rows; ++r) {
          ScoresBlock<1>(q_rows + r, k4[0], k4[1], hd, scale, s + r * kTile, j);
          ScoresBlock<1>(q_rows + r, k4[2], k4[3], hd, scale, s + r * kTile, j + 2);
        }
      }
    } else  // NOLINT(readability/braces): the loop below is the else branch
#endif
    {
      for (int64_t j = 0; j < nk; j += 2) {
        const float* k0 = krow[j];
        const float* k1 = j + 1 < nk ? krow[j + 1] : k0;
        int64_t r = 0;
        for (; r + 4 <= rows; r += 4) ScoresBlock<4>(q_rows + r, k0, k1, hd, scale, s + r * kTile, j);
        for (; r < rows; ++r) ScoresBlock<1>(q_rows + r, k0, k1, hd, scale, s + r * kTile, j);
      }
    }
    // 2. Mask and online softmax per row.
    for (int64_t t = 0; t < nt; ++t) {
      const int64_t a = std::max(key_begin[t0 + t], tb) - tb, b = std::min(key_end[t0 + t], tb + nk) - tb;
      for (int64_t g = 0; g < ng; ++g) {
        const int64_t r = t * ng + g;
        float* sr = s + r * kTile;
        if (a >= b) {  // no key of this row in the tile: contributes nothing
          std::fill(sr, sr + nk, 0.0f);
          continue;
        }
        std::fill(sr, sr + a, -HUGE_VALF);
        std::fill(sr + b, sr + nk, -HUGE_VALF);
        OnlineSoftmaxRow(sr, nk, m + r, l + r, acc + r * hd, hd);
      }
    }
    // 3. acc += P V for every row. Rows without keys so far have zero P but an uninitialized acc: zero it once.
    for (int64_t r = 0; r < rows; ++r) {
      if (m[r] == -HUGE_VALF) std::fill(acc + r * hd, acc + (r + 1) * hd, 0.0f);
    }
    int64_t r = 0;
    for (; r + 4 <= rows; r += 4) PvRows<4>(s + r * kTile, vrow, nk, acc + r * hd, hd);
    for (; r < rows; ++r) PvRows<1>(s + r * kTile, vrow, nk, acc + r * hd, hd);
  }

  for (int64_t t = 0; t < nt; ++t) {
    for (int64_t g = 0; g < ng; ++g) {
      const int64_t r = t * ng + g;
      const float inv = 1.0f / l[r];
      const float* a = acc + r * hd;
      float* o = out + (t0 + t) * out_stride + (g0 + g) * hd;
      for (int64_t i = 0; i < hd; ++i) o[i] = a[i] * inv;
    }
  }
}

template <class Load>
HWY_INLINE void AttentionRows(const float* q, int64_t q_stride, int64_t n_tokens, int64_t n_heads, int64_t head_dim,
                              const Load& load, const int64_t* key_begin, const int64_t* key_end, float scale,
                              float* out, int64_t out_stride, float* scratch) {
  const int64_t ng = std::min(n_heads, kAttentionMaxRows);
  const int64_t nt = AttentionTokenBlock(n_heads);
  for (int64_t g0 = 0; g0 < n_heads; g0 += ng) {
    for (int64_t t0 = 0; t0 < n_tokens; t0 += nt) {
      AttentionBlock(q, q_stride, t0, std::min(nt, n_tokens - t0), g0, std::min(ng, n_heads - g0), head_dim, load,
                     key_begin, key_end, scale, out, out_stride, scratch);
    }
  }
}

void AttentionT(const float* q, int64_t q_stride, int64_t n_tokens, int64_t n_heads, int64_t head_dim, const float* k,
                const float* v, int64_t kv_stride, const int64_t* key_begin, const int64_t* key_end, float scale,
                float* out, int64_t out_stride, float* scratch) {
  const auto load = [&](int64_t tb, int64_t nk, const float** krow, const float** vrow, float*, float*) {
    for (int64_t j = 0; j < nk; ++j) {
      krow[j] = k + (tb + j) * kv_stride;
      vrow[j] = v + (tb + j) * kv_stride;
    }
  };
  AttentionRows(q, q_stride, n_tokens, n_heads, head_dim, load, key_begin, key_end, scale, out, out_stride, scratch);
}

void AttentionPagedT(const float* q, int64_t q_stride, int64_t n_tokens, int64_t n_heads, int64_t head_dim,
                     const KvView& kv, const int64_t* key_begin, const int64_t* key_end, float scale, float* out,
                     int64_t out_stride, float* scratch) {
  if (kv.type == DType::kF32) {
    const auto load = [&](int64_t tb, int64_t nk, const float** krow, const float** vrow, float*, float*) {
      for (int64_t j = 0; j < nk; ++j) {
        krow[j] = reinterpret_cast<const float*>(kv.KeyRow(tb + j));
        vrow[j] = reinterpret_cast<const float*>(kv.ValueRow(tb + j));
      }
    };
    return AttentionRows(q, q_stride, n_tokens, n_heads, head_dim, load, key_begin, key_end, scale, out, out_stride,
                         scratch);
  }
  const auto load = [&](int64_t tb, int64_t nk, const float** krow, const float** vrow, float* kbuf, float* vbuf) {
    for (int64_t j = 0; j < nk; ++j) {
      DecodeKvRow(kv.type, kv.KeyRow(tb + j), head_dim, kbuf + j * head_dim);
      DecodeKvRow(kv.type, kv.ValueRow(tb + j), head_dim, vbuf + j * head_dim);
      krow[j] = kbuf + j * head_dim;
      vrow[j] = vbuf + j * head_dim;
    }
  };
  AttentionRows(q, q_stride, n_tokens, n_heads, head_dim, load, key_begin, key_end, scale, out, out_stride, scratch);
}

}  // namespace herd::kernels::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace herd::kernels {

HWY_EXPORT(AttentionT);
HWY_EXPORT(AttentionPagedT);

void AttentionPaged(const float* q, int64_t q_stride, int64_t n_tokens, int64_t n_heads, int64_t head_dim,
                    const KvView& kv, const int64_t* key_begin, const int64_t* key_end, float scale, float* out,
                    int64_t out_stride, float* scratch) {
  HWY_DYNAMIC_DISPATCH(AttentionPagedT)
  (q, q_stride, n_tokens, n_heads, head_dim, kv, key_begin, key_end, scale, out, out_stride, scratch);
}

void Attention(const float* q, int64_t q_stride, int64_t n_tokens, int64_t n_heads, int64_t head_dim, const float* k,
               const float* v, int64_t kv_stride, const int64_t* key_begin, const int64_t* key_end, float scale,
               float* out, int64_t out_stride, float* scratch) {
  HWY_DYNAMIC_DISPATCH(AttentionT)
  (q, q_stride, n_tokens, n_heads, head_dim, k, v, kv_stride, key_begin, key_end, scale, out, out_stride, scratch);
}

}  // namespace herd::kernels
#endif  // HWY_ONCE
