// Scalar reference matrix products and dequantization (llama4.md 5.4), and the quantized-activation products.
#include "kernels/ref/matmul.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "core/half.h"
#include "core/status.h"
#include "kernels/kquant_layout.h"
#include "kernels/repack.h"

namespace herd::kernels::ref {
namespace {

uint16_t LoadU16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

float LoadF32(const uint8_t* p) {
  float v;
  std::memcpy(&v, p, 4);
  return v;
}

// Element i of a row of plain (block size 1) dtype.
float PlainElement(DType t, const uint8_t* row, int64_t i) {
  switch (t) {
    case DType::kF32:
      return LoadF32(row + 4 * i);
    case DType::kF16:
      return F16ToF32(LoadU16(row + 2 * i));
    case DType::kBF16:
      return Bf16ToF32(LoadU16(row + 2 * i));
    default:
      HERD_CHECK(false);
      return 0.0f;
  }
}

constexpr int64_t kQK = 256;  // elements per K-quant super-block (QK_K)

int64_t BlockBytes(DType t) { return Traits(t).type_size; }

bool IsKQuant(DType t) { return t == DType::kQ4_K || t == DType::kQ5_K || t == DType::kQ6_K; }

}  // namespace

bool MatMulSupports(DType t) {
  return t == DType::kF32 || t == DType::kF16 || t == DType::kBF16 || t == DType::kQ8_0 || t == DType::kQ4_0 ||
         IsRepacked(t) || IsKQuant(t);
}

void DequantizeRow(const TensorView& w, int64_t r, float* dst) {
  HERD_CHECK(MatMulSupports(w.dtype) && r >= 0 && r < w.Rows());
  DequantizeRow(w.dtype, w.Row(r), w.Cols(), dst);
}

void DequantizeRow(DType t, const uint8_t* row, int64_t n_in, float* dst) {
  HERD_CHECK(MatMulSupports(t) && n_in % Traits(t).block_size == 0);
  if (IsRepacked(t)) {  // defined as the row it was packed from
    std::vector<uint8_t> source(static_cast<size_t>(RowBytes(PackedFrom(t), n_in)));
    UnpackRow(t, row, n_in, source.data());
    return DequantizeRow(PackedFrom(t), source.data(), n_in, dst);
  }
  if (IsKQuant(t)) {
    int q[kQK];
    for (int64_t b = 0; b < n_in / kQK; ++b) {
      const uint8_t* blk = row + BlockBytes(t) * b;
      float* y = dst + kQK * b;
      KQuantCodes(t, blk, q);
      if (t == DType::kQ6_K) {
        const float d = F16ToF32(LoadU16(blk + 208));
        const int8_t* sc = reinterpret_cast<const int8_t*>(blk + 192);
        // d * S * (q - 32) needs at most 11 + 8 + 6 bits: exact in f32.
        for (int i = 0; i < kQK; ++i) y[i] = d * static_cast<float>(sc[i / 16]) * static_cast<float>(q[i] - 32);
      } else {
        const float d = F16ToF32(LoadU16(blk)), dmin = F16ToF32(LoadU16(blk + 2));
        for (int j = 0; j < 8; ++j) {
          int sc, mn;
          UnpackScaleMin(blk + 4, j, &sc, &mn);
          // d * sc * q and dmin * mn are exact in f32 (at most 11 + 6 + 5 bits); their difference is rounded once.
          const float d1 = d * static_cast<float>(sc), m1 = dmin * static_cast<float>(mn);
          for (int l = 0; l < 32; ++l) y[32 * j + l] = d1 * static_cast<float>(q[32 * j + l]) - m1;
        }
      }
    }
    return;
  }
  switch (t) {
    case DType::kQ8_0:  // 34 bytes: d (f16), qs[32] (int8)
      for (int64_t b = 0; b < n_in / 32; ++b) {
        const uint8_t* blk = row + 34 * b;
        const float d = F16ToF32(LoadU16(blk));
        for (int j = 0; j < 32; ++j) dst[32 * b + j] = d * static_cast<float>(static_cast<int8_t>(blk[2 + j]));
      }
      return;
    case DType::kQ4_0:  // 18 bytes: d (f16), qs[16]; low nibbles are weights 0..15, high nibbles 16..31
      for (int64_t b = 0; b < n_in / 32; ++b) {
        const uint8_t* blk = row + 18 * b;
        const float d = F16ToF32(LoadU16(blk));
        for (int j = 0; j < 16; ++j) {
          dst[32 * b + j] = static_cast<float>((blk[2 + j] & 0x0F) - 8) * d;
          dst[32 * b + j + 16] = static_cast<float>((blk[2 + j] >> 4) - 8) * d;
        }
      }
      return;
    default:
      for (int64_t i = 0; i < n_in; ++i) dst[i] = PlainElement(t, row, i);
      return;
  }
}

void MatMulRows(const TensorView& w, const float* x, int64_t n_tokens, float* y, int64_t y_stride, int64_t o_begin,
                int64_t o_end) {
  const int64_t n_in = w.Cols();
  std::vector<float> row(static_cast<size_t>(n_in));
  for (int64_t o = o_begin; o < o_end; ++o) {
    DequantizeRow(w, o, row.data());
    for (int64_t t = 0; t < n_tokens; ++t) {
      double acc = 0.0;
      for (int64_t i = 0; i < n_in; ++i) acc += static_cast<double>(row[i]) * static_cast<double>(x[t * n_in + i]);
      y[t * y_stride + o] = static_cast<float>(acc);
    }
  }
}

void MatMul(const TensorView& w, const float* x, int64_t n_tokens, float* y) {
  MatMulRows(w, x, n_tokens, y, w.Rows(), 0, w.Rows());
}

void MatMulInputMajor(const TensorView& w, int64_t col_begin, int64_t col_end, const float* x, int64_t n_tokens,
                      float* y) {
  HERD_CHECK(w.dtype == DType::kF32 || w.dtype == DType::kF16 || w.dtype == DType::kBF16);
  const int64_t n_in = w.Rows(), n_cols = col_end - col_begin;
  for (int64_t t = 0; t < n_tokens; ++t) {
    for (int64_t c = col_begin; c < col_end; ++c) {
      double acc = 0.0;
      for (int64_t i = 0; i < n_in; ++i) {
        acc += static_cast<double>(PlainElement(w.dtype, w.Row(i), c)) * static_cast<double>(x[t * n_in + i]);
      }
      y[t * n_cols + (c - col_begin)] = static_cast<float>(acc);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Quantized activations.

int64_t ActivationBlock(DType t) {
  if (t == DType::kQ8_0 || t == DType::kQ4_0 || IsRepacked(t)) return 32;  // Q4_KR, Q5_KR: Q8_0R's records
  return IsKQuant(t) ? kQK : 0;
}

void QuantizeActivations(const float* x, int64_t n, int64_t block, int8_t* q, float* d) {
  HERD_CHECK(block > 0 && n % block == 0);
  for (int64_t b = 0; b < n / block; ++b) {
    const float* xb = x + b * block;
    int8_t* qb = q + b * block;
    float amax = 0.0f;
    bool finite = true;
    for (int64_t i = 0; i < block; ++i) {
      finite = finite && std::isfinite(xb[i]);
      amax = std::max(amax, std::fabs(xb[i]));
    }
    if (!finite || amax == 0.0f) {
      d[b] = finite ? 0.0f : std::numeric_limits<float>::quiet_NaN();
      for (int64_t i = 0; i < block; ++i) qb[i] = 0;
      continue;
    }
    const float id = 127.0f / amax;
    d[b] = amax / 127.0f;
    for (int64_t i = 0; i < block; ++i) qb[i] = static_cast<int8_t>(std::nearbyint(xb[i] * id));
  }
}

double DotQ8_0Q8(const uint8_t* w_row, const int8_t* q, const float* d, int64_t n) {
  double sum = 0.0;
  for (int64_t b = 0; b < n / 32; ++b) {
    const uint8_t* blk = w_row + 34 * b;
    int64_t isum = 0;
    for (int j = 0; j < 32; ++j) isum += static_cast<int8_t>(blk[2 + j]) * q[32 * b + j];
    sum += static_cast<double>(F16ToF32(LoadU16(blk))) * d[b] * static_cast<double>(isum);
  }
  return sum;
}

double DotQ4_0Q8(const uint8_t* w_row, const int8_t* q, const float* d, int64_t n) {
  double sum = 0.0;
  for (int64_t b = 0; b < n / 32; ++b) {
    const uint8_t* blk = w_row + 18 * b;
    const int8_t* qx = q + 32 * b;
    int64_t isum = 0;
    for (int j = 0; j < 16; ++j) isum += ((blk[2 + j] & 0xF) - 8) * qx[j] + ((blk[2 + j] >> 4) - 8) * qx[j + 16];
    sum += static_cast<double>(F16ToF32(LoadU16(blk))) * d[b] * static_cast<double>(isum);
  }
  return sum;
}

namespace {

// Q4_K and Q5_K: d * sum_j sc_j sum q q_x - dmin * sum_j mn_j sum q_x per super-block, times d_x: one d_x per
// super-block (act_block 256, Q8_K's activations), or per sub-block of 32 (act_block 32: Q4_KR and Q5_KR rows,
// unpacked to t, take Q8_0R's).
double DotKQ(DType t, const uint8_t* w_row, const int8_t* q, const float* d, int64_t act_block, int64_t n) {
  HERD_CHECK(act_block == kQK || act_block == 32);
  double sum = 0.0;
  int codes[kQK];
  for (int64_t b = 0; b < n / kQK; ++b) {
    const uint8_t* blk = w_row + BlockBytes(t) * b;
    const int8_t* qx = q + kQK * b;
    KQuantCodes(t, blk, codes);
    const double dw = F16ToF32(LoadU16(blk)), dmin = F16ToF32(LoadU16(blk + 2));
    int64_t isum = 0, msum = 0;
    for (int j = 0; j < 8; ++j) {
      int sc, mn;
      UnpackScaleMin(blk + 4, j, &sc, &mn);
      int64_t dot = 0, xsum = 0;
      for (int l = 0; l < 32; ++l) {
        dot += codes[32 * j + l] * qx[32 * j + l];
        xsum += qx[32 * j + l];
      }
      if (act_block == 32) {
        sum += static_cast<double>(d[8 * b + j]) *
               (dw * static_cast<double>(sc * dot) - dmin * static_cast<double>(mn * xsum));
      } else {
        isum += sc * dot;
        msum += mn * xsum;
      }
    }
    if (act_block == kQK) {
      sum += static_cast<double>(d[b]) * (dw * static_cast<double>(isum) - dmin * static_cast<double>(msum));
    }
  }
  return sum;
}

}  // namespace

double DotQ4KQ8K(const uint8_t* w_row, const int8_t* q, const float* d, int64_t n) {
  return DotKQ(DType::kQ4_K, w_row, q, d, kQK, n);
}

double DotQ5KQ8K(const uint8_t* w_row, const int8_t* q, const float* d, int64_t n) {
  return DotKQ(DType::kQ5_K, w_row, q, d, kQK, n);
}

namespace {

// Q6_K: d_x d sum_g S_g sum (q - 32) q_x per super-block: one d_x per super-block (act_block 256, Q8_K's
// activations) or per 32 inputs (act_block 32: Q6_KR rows, unpacked, take Q8_0R's).
double DotQ6KQ(const uint8_t* w_row, const int8_t* q, const float* d, int64_t act_block, int64_t n) {
  HERD_CHECK(act_block == kQK || act_block == 32);
  double sum = 0.0;
  int codes[kQK];
  for (int64_t b = 0; b < n / kQK; ++b) {
    const uint8_t* blk = w_row + 210 * b;
    const int8_t* qx = q + kQK * b;
    const int8_t* sc = reinterpret_cast<const int8_t*>(blk + 192);
    const double dw = F16ToF32(LoadU16(blk + 208));
    KQuantCodes(DType::kQ6_K, blk, codes);
    int64_t isum = 0;
    for (int g = 0; g < 16; ++g) {
      int64_t dot = 0;
      for (int l = 0; l < 16; ++l) dot += (codes[16 * g + l] - 32) * qx[16 * g + l];
      if (act_block == 32) {
        sum += static_cast<double>(d[8 * b + g / 2]) * dw * static_cast<double>(sc[g] * dot);
      } else {
        isum += sc[g] * dot;
      }
    }
    if (act_block == kQK) sum += static_cast<double>(d[b]) * dw * static_cast<double>(isum);
  }
  return sum;
}

}  // namespace

double DotQ6KQ8K(const uint8_t* w_row, const int8_t* q, const float* d, int64_t n) {
  return DotQ6KQ(w_row, q, d, kQK, n);
}

namespace {

// The upper half of the bits of x.
uint16_t TruncateToBf16(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, 4);
  return static_cast<uint16_t>(bits >> 16);
}

}  // namespace

void SplitActivationsBf16(const float* x, int64_t n, uint16_t* t0, uint16_t* t1, uint16_t* t2) {
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(x[i])) {
      // Truncating a NaN whose payload is in the lower half alone would read as inf: set the quiet bit.
      t0[i] = static_cast<uint16_t>(TruncateToBf16(x[i]) | (std::isnan(x[i]) ? 0x40 : 0));
      t1[i] = t2[i] = 0;
      continue;
    }
    t0[i] = TruncateToBf16(x[i]);
    const float r1 = x[i] - Bf16ToF32(t0[i]);
    t1[i] = TruncateToBf16(r1);
    t2[i] = TruncateToBf16(r1 - Bf16ToF32(t1[i]));
  }
}

double DotBF16BF16(const uint8_t* w_row, const uint16_t* t0, const uint16_t* t1, const uint16_t* t2, int64_t n) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const double w = Bf16ToF32(LoadU16(w_row + 2 * i));
    sum += w * Bf16ToF32(t0[i]) + w * Bf16ToF32(t1[i]) + w * Bf16ToF32(t2[i]);
  }
  return sum;
}

void MatMulQuantized(const TensorView& w, const float* x, int64_t n_tokens, float* y) {
  if (w.dtype == DType::kBF16) {
    const int64_t n_in = w.Cols(), n_out = w.Rows();
    std::vector<uint16_t> t0(static_cast<size_t>(n_in)), t1(t0.size()), t2(t0.size());
    for (int64_t t = 0; t < n_tokens; ++t) {
      SplitActivationsBf16(x + t * n_in, n_in, t0.data(), t1.data(), t2.data());
      for (int64_t o = 0; o < n_out; ++o) {
        y[t * n_out + o] = static_cast<float>(DotBF16BF16(w.Row(o), t0.data(), t1.data(), t2.data(), n_in));
      }
    }
    return;
  }
  const int64_t block = ActivationBlock(w.dtype);
  HERD_CHECK(block > 0);
  const int64_t n_in = w.Cols(), n_out = w.Rows();
  std::vector<int8_t> q(static_cast<size_t>(n_in));
  std::vector<float> d(static_cast<size_t>(n_in / block));
  std::vector<uint8_t> unpacked(IsRepacked(w.dtype) ? static_cast<size_t>(RowBytes(PackedFrom(w.dtype), n_in)) : 0);
  for (int64_t t = 0; t < n_tokens; ++t) {
    QuantizeActivations(x + t * n_in, n_in, block, q.data(), d.data());
    for (int64_t o = 0; o < n_out; ++o) {
      const uint8_t* row = w.Row(o);
      double v = 0.0;
      switch (w.dtype) {
        case DType::kQ8_0R:  // the rows they were packed from
        case DType::kQ4_0R:
          UnpackRow(w.dtype, row, n_in, unpacked.data());
          v = w.dtype == DType::kQ8_0R ? DotQ8_0Q8(unpacked.data(), q.data(), d.data(), n_in)
                                       : DotQ4_0Q8(unpacked.data(), q.data(), d.data(), n_in);
          break;
        case DType::kQ4_KR:  // those rows, with 32-input activation blocks
        case DType::kQ5_KR:
          UnpackRow(w.dtype, row, n_in, unpacked.data());
          v = DotKQ(PackedFrom(w.dtype), unpacked.data(), q.data(), d.data(), 32, n_in);
          break;
        case DType::kQ6_KR:
          UnpackRow(w.dtype, row, n_in, unpacked.data());
          v = DotQ6KQ(unpacked.data(), q.data(), d.data(), 32, n_in);
          break;
        case DType::kQ8_0:
          v = DotQ8_0Q8(row, q.data(), d.data(), n_in);
          break;
        case DType::kQ4_0:
          v = DotQ4_0Q8(row, q.data(), d.data(), n_in);
          break;
        case DType::kQ4_K:
          v = DotQ4KQ8K(row, q.data(), d.data(), n_in);
          break;
        case DType::kQ5_K:
          v = DotQ5KQ8K(row, q.data(), d.data(), n_in);
          break;
        default:
          v = DotQ6KQ8K(row, q.data(), d.data(), n_in);
          break;
      }
      y[t * n_out + o] = static_cast<float>(v);
    }
  }
}

}  // namespace herd::kernels::ref
