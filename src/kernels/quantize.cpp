// Row encoders for F32/F16/BF16/Q8_0/Q4_0 and their scalar decoders (see quantize.h).
#include "kernels/quantize.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/half.h"
#include "core/status.h"

namespace herd::kernels {
namespace {

constexpr int64_t kBlock = 32;  // QK8_0 = QK4_0 = 32 (llama4.md 5.3)

void StoreHalf(uint8_t* p, uint16_t h) { std::memcpy(p, &h, 2); }
uint16_t LoadHalf(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return h;
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

}  // namespace

bool QuantizeSupports(DType t) {
  return t == DType::kF32 || t == DType::kF16 || t == DType::kBF16 || t == DType::kQ8_0 || t == DType::kQ4_0;
}

void QuantizeRow(DType t, const float* x, int64_t n, uint8_t* dst) {
  HERD_CHECK(QuantizeSupports(t) && n >= 0 && n % Traits(t).block_size == 0);
  switch (t) {
    case DType::kF32:
      std::memcpy(dst, x, static_cast<size_t>(n) * 4);
      return;
    case DType::kF16:
      for (int64_t i = 0; i < n; ++i) StoreHalf(dst + 2 * i, F32ToF16(x[i]));
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
    default:
      HERD_CHECK(false && "QuantizeRow: unsupported dtype");
  }
}

void DequantizeRow(DType t, const uint8_t* src, int64_t n, float* dst) {
  HERD_CHECK(QuantizeSupports(t) && n >= 0 && n % Traits(t).block_size == 0);
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
