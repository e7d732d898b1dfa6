// Row encoders for F32/F16/BF16/Q8_0/Q4_0/Q4_K/Q5_K/Q6_K and their scalar decoders (see quantize.h).
#include "kernels/quantize.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/half.h"
#include "core/status.h"
#include "kernels/kquant_layout.h"
#include "kernels/ops.h"
#include "kernels/ref/matmul.h"

namespace herd::kernels {
namespace {

constexpr int64_t kBlock = 32;  // QK8_0 = QK4_0 = 32 (llama4.md 5.3)

void StoreHalf(uint8_t* p, uint16_t h) { std::memcpy(p, &h, 2); }
uint16_t LoadHalf(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return h;
}

// The smallest f16 >= v (v >= 0 finite, below the f16 maximum): a super-block scale rounded up, so that no
// sub-block scale divided by it exceeds its integer range (6-bit 63, Q6_K's 127) and gets clamped, which for
// tiny (f16-subnormal) scales would cost several grid steps.
uint16_t F16AtLeast(float v) {
  uint16_t bits = F32ToF16(v);
  if (F16ToF32(bits) < v && bits < 0x7BFF) ++bits;
  return bits;
}

// float -> int conversion is undefined for NaN and out-of-range values; weights are finite, but a converter must
// not invoke UB on a damaged file.
int32_t TruncToInt(float v, int32_t lo, int32_t hi) {
  if (!(v >= static_cast<float>(lo))) return lo;  // also NaN
  if (v > static_cast<float>(hi)) return hi;
  return static_cast<int32_t>(v);
}

// Q8_0 block: d (f16), qs[32] (int8).
void QuantizeBlockQ8_0(const float* x, uint8_t* blk) {
  float amax = 0.0f;
  for (int64_t j = 0; j < kBlock; ++j) amax = std::max(amax, std::fabs(x[j]));
  const float d = amax / 127.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  StoreHalf(blk, F32ToF16(d));
  int8_t* qs = reinterpret_cast<int8_t*>(blk + 2);
  for (int64_t j = 0; j < kBlock; ++j) qs[j] = static_cast<int8_t>(TruncToInt(std::round(x[j] * id), -127, 127));
}

// Q4_0 block: d (f16), qs[16]; element j in the low nibble of qs[j], element j + 16 in the high nibble.
void QuantizeBlockQ4_0(const float* x, uint8_t* blk) {
  float amax = 0.0f, max = 0.0f;
  for (int64_t j = 0; j < kBlock; ++j) {
    if (amax < std::fabs(x[j])) {  // strict: the first element of largest magnitude wins, as in ggml
      amax = std::fabs(x[j]);
      max = x[j];
    }
  }
  const float d = max / -8.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  StoreHalf(blk, F32ToF16(d));
  uint8_t* qs = blk + 2;
  for (int64_t j = 0; j < kBlock / 2; ++j) {
    // ggml: min(15, (int8_t)(x * id + 8.5f)); the clamp to [0, 15] inside TruncToInt is the same for finite x.
    const int32_t lo = TruncToInt(x[j] * id + 8.5f, 0, 15);
    const int32_t hi = TruncToInt(x[j + kBlock / 2] * id + 8.5f, 0, 15);
    qs[j] = static_cast<uint8_t>(lo | (hi << 4));
  }
}

// Least-squares fit of x[0, n) ~ s q - m with codes q in [0, nmax], s >= 0, m >= 0 (the K-quant sub-block grid,
// whose offset only ever moves the grid down). Candidate grids spanning [min(0, min x), max x] with a slightly
// smaller or larger step each give codes; for those codes the best (s, m) is the closed-form linear regression
// (m clamped at 0); the pair with the smallest squared error wins. Returns the error; never worse than min/max.
float FitAffine(const float* x, int n, int nmax, float* s_out, float* m_out) {
  float lo = 0.0f, hi = -INFINITY;
  for (int i = 0; i < n; ++i) {
    lo = std::min(lo, x[i]);
    hi = std::max(hi, x[i]);
  }
  *s_out = 0.0f;
  *m_out = -lo;
  if (!(hi > lo)) {  // constant (or non-finite) block: only the offset matters
    float err = 0.0f;
    for (int i = 0; i < n; ++i) err += (x[i] - lo) * (x[i] - lo);
    return err;
  }
  float best = INFINITY;
  for (int k = -6; k <= 10; ++k) {
    const float iscale = (static_cast<float>(nmax) + 0.1f * static_cast<float>(k)) / (hi - lo);
    double sq = 0, sx = 0, sqq = 0, sqx = 0;
    int q[256];
    for (int i = 0; i < n; ++i) {
      q[i] = TruncToInt((x[i] - lo) * iscale + 0.5f, 0, nmax);  // x >= lo: rounds half up
      sq += q[i];
      sx += x[i];
      sqq += static_cast<double>(q[i]) * q[i];
      sqx += static_cast<double>(q[i]) * x[i];
    }
    const double det = n * sqq - sq * sq;
    if (det <= 0) continue;
    double sc = (n * sqx - sq * sx) / det, b = (sx - sc * sq) / n;
    if (b > 0) {  // the offset must not move the grid up
      b = 0;
      sc = sqx / sqq;
    }
    if (sc <= 0) continue;
    float err = 0.0f;
    for (int i = 0; i < n; ++i) {
      const float e = static_cast<float>(sc) * static_cast<float>(q[i]) + static_cast<float>(b) - x[i];
      err += e * e;
    }
    if (err < best) {
      best = err;
      *s_out = static_cast<float>(sc);
      *m_out = static_cast<float>(-b);
    }
  }
  return best;
}

// Codes of sub-block x[0, 32) on the grid d a q - dmin b (q in [0, nmax]; all 0 for a zero step) and their squared
// error, as the decoder will see them.
float SubBlockCodes(const float* x, int nmax, float d, float dmin, int a, int b, int* q) {
  const float scale = d * static_cast<float>(a), shift = dmin * static_cast<float>(b);
  const float inv = scale > 0.0f ? 1.0f / scale : 0.0f;
  float err = 0.0f;
  for (int l = 0; l < 32; ++l) {
    q[l] = TruncToInt((x[l] + shift) * inv + 0.5f, 0, nmax);  // round to nearest; negatives clamp to 0
    const float e = scale * static_cast<float>(q[l]) - shift - x[l];
    err += e * e;
  }
  return err;
}

// A Q4_K / Q5_K super-block's state: f16 super-scales, 6-bit sub-block scales and offsets, codes, squared error.
struct Q45KState {
  uint16_t d_bits = 0, dmin_bits = 0;
  int sc[8] = {}, mn[8] = {}, q[256] = {};
  float err = INFINITY;
};

// The error after the 6-bit rounding of the sub-block grids is what the decoder sees, and the per-sub-block fit
// does not minimize it. Alternating, kept only where the total error drops: (a) each sub-block's scale and offset
// moved by -1, 0 or +1 on the 6-bit grid, codes re-rounded; (b) the two super-block scales (d, dmin) refitted by
// least squares for the fixed integers (d sc_j q - dmin mn_j is linear in them), rounded to f16, codes re-rounded.
void RefineQ45K(const float* x, int nmax, Q45KState* best) {
  constexpr int kIterations = 3;  // on Gaussian rows: 2.2% (Q4_K) and 4.2% (Q5_K) lower RMS error; more gain < 0.1%
  Q45KState cur = *best;
  for (int it = 0; it < kIterations; ++it) {
    const float d = F16ToF32(cur.d_bits), dmin = F16ToF32(cur.dmin_bits);
    cur.err = 0.0f;
    for (int j = 0; j < 8; ++j) {
      float bj = INFINITY;
      int ba = cur.sc[j], bb = cur.mn[j], tq[32];
      for (int a = std::max(0, cur.sc[j] - 1); a <= std::min(63, cur.sc[j] + 1); ++a) {
        for (int b = std::max(0, cur.mn[j] - 1); b <= std::min(63, cur.mn[j] + 1); ++b) {
          const float e = SubBlockCodes(x + 32 * j, nmax, d, dmin, a, b, tq);
          if (e < bj) {
            bj = e;
            ba = a;
            bb = b;
            std::memcpy(cur.q + 32 * j, tq, sizeof tq);
          }
        }
      }
      cur.sc[j] = ba;
      cur.mn[j] = bb;
      cur.err += bj;
    }
    if (cur.err < best->err) *best = cur;
    // Normal equations of min sum (d A_i - m B_i - x_i)^2 with A_i = sc_j q_i, B_i = mn_j.
    double saa = 0, sab = 0, sbb = 0, sax = 0, sbx = 0;
    for (int j = 0; j < 8; ++j) {
      for (int l = 0; l < 32; ++l) {
        const double a = static_cast<double>(cur.sc[j]) * cur.q[32 * j + l], b = cur.mn[j], v = x[32 * j + l];
        saa += a * a;
        sab += a * b;
        sbb += b * b;
        sax += a * v;
        sbx += b * v;
      }
    }
    if (!(saa > 0)) break;
    const double det = saa * sbb - sab * sab;
    double nd = sax / saa, nm = 0;
    if (det > 1e-9 * saa * sbb) {
      const double d2 = (sax * sbb - sab * sbx) / det, m2 = (sax * sab - saa * sbx) / det;
      if (m2 >= 0) {
        nd = d2;
        nm = m2;
      }
    }
    if (!(nd > 0) || !(nd < 65504) || !(nm < 65504)) break;
    cur.d_bits = F32ToF16(static_cast<float>(nd));
    cur.dmin_bits = F32ToF16(static_cast<float>(nm));
    const float d2 = F16ToF32(cur.d_bits), m2 = F16ToF32(cur.dmin_bits);
    cur.err = 0.0f;
    for (int j = 0; j < 8; ++j) {
      cur.err += SubBlockCodes(x + 32 * j, nmax, d2, m2, cur.sc[j], cur.mn[j], cur.q + 32 * j);
    }
    if (cur.err < best->err) *best = cur;
  }
}

// Q4_K (q5 = false) and Q5_K super-block of 256 (llama4.md 5.4): each sub-block j of 32 gets its least-squares
// grid (s_j, m_j) from FitAffine; d = max s_j / 63 and dmin = max m_j / 63 (f16, rounded up), sc_j = round(s_j /
// d), mn_j = round(m_j / dmin), q = round((x + dmin mn_j) / (d sc_j)), clamped to their ranges; RefineQ45K then
// lowers the error of the rounded grids. (ggml fits each sub-block with importance weights rms + |x| and stops
// after the rounding. Measured on three seeds of bench/quant-quality.sh's model: the refinement lowers the RMS
// error and the KLD of Q4_K and Q5_K by 3-5%; those weights raise the RMS error and give no consistent KLD gain,
// Q5_K's KLD rising 2.6% on average, so they are not used.)
void QuantizeBlockQ45K(const float* x, bool q5, uint8_t* blk) {
  const int nmax = q5 ? 31 : 15;
  float step[8], off[8], max_step = 0.0f, max_off = 0.0f;
  for (int j = 0; j < 8; ++j) {
    FitAffine(x + 32 * j, 32, nmax, &step[j], &off[j]);
    max_step = std::max(max_step, step[j]);
    max_off = std::max(max_off, off[j]);
  }
  Q45KState st;
  st.d_bits = F16AtLeast(max_step / 63.0f);
  st.dmin_bits = F16AtLeast(max_off / 63.0f);
  const float d = F16ToF32(st.d_bits), dmin = F16ToF32(st.dmin_bits);
  st.err = 0.0f;
  for (int j = 0; j < 8; ++j) {
    st.sc[j] = d > 0.0f ? TruncToInt(std::round(step[j] / d), 0, 63) : 0;
    st.mn[j] = dmin > 0.0f ? TruncToInt(std::round(off[j] / dmin), 0, 63) : 0;
    st.err += SubBlockCodes(x + 32 * j, nmax, d, dmin, st.sc[j], st.mn[j], st.q + 32 * j);
  }
  if (d > 0.0f && std::isfinite(st.err)) RefineQ45K(x, nmax, &st);
  StoreHalf(blk, st.d_bits);
  StoreHalf(blk + 2, st.dmin_bits);
  PackScalesMins(st.sc, st.mn, blk + 4);
  PutKQuantCodes(q5 ? DType::kQ5_K : DType::kQ4_K, st.q, blk);
}

// Best symmetric scale for x[0, 16) ~ s q, q in [-32, 31]: candidates s = m / (-32 + 0.25 k) around the
// element of largest magnitude m (sign kept, so it can take code -32), each refitted by least squares for its
// codes (s = sum q x / sum q^2); the smallest squared error wins.
float FitSymmetric16(const float* x) {
  float amax = 0.0f, m = 0.0f;
  for (int l = 0; l < 16; ++l) {
    if (amax < std::fabs(x[l])) {
      amax = std::fabs(x[l]);
      m = x[l];
    }
  }
  if (amax == 0.0f || !std::isfinite(amax)) return m / -32.0f;
  float best = INFINITY, best_s = m / -32.0f;
  for (int k = -4; k <= 8; ++k) {
    const float s0 = m / (-32.0f + 0.25f * static_cast<float>(k));
    double sqx = 0, sqq = 0;
    int q[16];
    for (int l = 0; l < 16; ++l) {
      q[l] = TruncToInt(std::round(x[l] / s0), -32, 31);
      sqx += static_cast<double>(q[l]) * x[l];
      sqq += static_cast<double>(q[l]) * q[l];
    }
    if (sqq <= 0) continue;
    const float sc = static_cast<float>(sqx / sqq);
    float err = 0.0f;
    for (int l = 0; l < 16; ++l) {
      const float e = sc * static_cast<float>(q[l]) - x[l];
      err += e * e;
    }
    if (err < best) {
      best = err;
      best_s = sc;
    }
  }
  return best_s;
}

// Q6_K super-block of 256: per group g of 16, s_g from FitSymmetric16; d = max |s_g| / 127 (f16, rounded up),
// S_g = round(s_g / d) in [-127, 127], q = round(x / (d S_g)) in [-32, 31], stored as q + 32 in ql (low 4 bits)
// and qh (high 2 bits).
void QuantizeBlockQ6K(const float* x, uint8_t* blk) {
  float gscale[16], max_scale = 0.0f;
  for (int g = 0; g < 16; ++g) {
    gscale[g] = FitSymmetric16(x + 16 * g);
    max_scale = std::max(max_scale, std::fabs(gscale[g]));
  }
  const uint16_t d_bits = F16AtLeast(max_scale / 127.0f);
  const float d = F16ToF32(d_bits);
  int8_t* sc = reinterpret_cast<int8_t*>(blk + 192);
  int q[256];
  for (int g = 0; g < 16; ++g) {
    sc[g] = static_cast<int8_t>(d > 0.0f ? TruncToInt(std::round(gscale[g] / d), -127, 127) : 0);
    const float scale = d * static_cast<float>(sc[g]);
    for (int l = 0; l < 16; ++l) {
      q[16 * g + l] = 32 + (scale != 0.0f ? TruncToInt(std::round(x[16 * g + l] / scale), -32, 31) : 0);
    }
  }
  PutKQuantCodes(DType::kQ6_K, q, blk);
  StoreHalf(blk + 208, d_bits);
}

bool IsKQuant(DType t) { return t == DType::kQ4_K || t == DType::kQ5_K || t == DType::kQ6_K; }

}  // namespace

bool QuantizeSupports(DType t) {
  return t == DType::kF32 || t == DType::kF16 || t == DType::kBF16 || t == DType::kQ8_0 || t == DType::kQ4_0 ||
         IsKQuant(t);
}

void QuantizeRow(DType t, const float* x, int64_t n, uint8_t* dst) {
  HERD_CHECK(QuantizeSupports(t) && n >= 0 && n % Traits(t).block_size == 0);
  switch (t) {
    case DType::kF32:
      std::memcpy(dst, x, static_cast<size_t>(n) * 4);
      return;
    case DType::kF16:  // the KV cache's rows: SIMD, the same bits as F32ToF16
      F32ToF16Row(x, n, dst);
      return;
    case DType::kBF16:
      for (int64_t i = 0; i < n; ++i) StoreHalf(dst + 2 * i, F32ToBf16(x[i]));
      return;
    case DType::kQ8_0:
      for (int64_t b = 0; b < n / kBlock; ++b) QuantizeBlockQ8_0(x + b * kBlock, dst + b * 34);
      return;
    case DType::kQ4_0:
      for (int64_t b = 0; b < n / kBlock; ++b) QuantizeBlockQ4_0(x + b * kBlock, dst + b * 18);
      return;
    case DType::kQ4_K:
    case DType::kQ5_K:
      for (int64_t b = 0; b < n / 256; ++b) {
        QuantizeBlockQ45K(x + b * 256, t == DType::kQ5_K, dst + b * Traits(t).type_size);
      }
      return;
    case DType::kQ6_K:
      for (int64_t b = 0; b < n / 256; ++b) QuantizeBlockQ6K(x + b * 256, dst + b * 210);
      return;
    default:
      HERD_CHECK(false && "QuantizeRow: unsupported dtype");
  }
}

void DequantizeRow(DType t, const uint8_t* src, int64_t n, float* dst) {
  HERD_CHECK(QuantizeSupports(t) && n >= 0 && n % Traits(t).block_size == 0);
  if (IsKQuant(t)) return ref::DequantizeRow(t, src, n, dst);  // the formulas of llama4.md 5.4, in one place
  switch (t) {
    case DType::kF32:
      std::memcpy(dst, src, static_cast<size_t>(n) * 4);
      return;
    case DType::kF16:
      for (int64_t i = 0; i < n; ++i) dst[i] = F16ToF32(LoadHalf(src + 2 * i));
      return;
    case DType::kBF16:
      for (int64_t i = 0; i < n; ++i) dst[i] = Bf16ToF32(LoadHalf(src + 2 * i));
      return;
    case DType::kQ8_0:
      for (int64_t b = 0; b < n / kBlock; ++b) {
        const uint8_t* blk = src + b * 34;
        const float d = F16ToF32(LoadHalf(blk));
        const int8_t* qs = reinterpret_cast<const int8_t*>(blk + 2);
        for (int64_t j = 0; j < kBlock; ++j) dst[b * kBlock + j] = d * static_cast<float>(qs[j]);
      }
      return;
    case DType::kQ4_0:
      for (int64_t b = 0; b < n / kBlock; ++b) {
        const uint8_t* blk = src + b * 18;
        const float d = F16ToF32(LoadHalf(blk));
        for (int64_t j = 0; j < kBlock / 2; ++j) {
          dst[b * kBlock + j] = static_cast<float>((blk[2 + j] & 0x0F) - 8) * d;
          dst[b * kBlock + j + kBlock / 2] = static_cast<float>((blk[2 + j] >> 4) - 8) * d;
        }
      }
      return;
    default:
      HERD_CHECK(false && "DequantizeRow: unsupported dtype");
  }
}

}  // namespace herd::kernels
