// IEEE binary16 and bfloat16 conversions (llama4.md section 5.4: "BF16: fp32_bits = u16 << 16; F16: IEEE
// binary16 incl. subnormals, inf and NaN"). Scalar and exact; SIMD kernels convert with Highway instead.
#pragma once

#include <cstdint>
#include <cstring>

namespace herd {

inline float Bf16ToF32(uint16_t h) {
  uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// Round to nearest even; NaN stays NaN.
inline uint16_t F32ToBf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40);
  uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>((bits + rounding) >> 16);
}

inline float F16ToF32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalize
      int e = -1;
      uint32_t m = mant;
      do {
        e++;
        m <<= 1;
      } while ((m & 0x400u) == 0);
      bits = sign | (static_cast<uint32_t>(127 - 15 - e) << 23) | ((m & 0x3ffu) << 13);
    }
  } else if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// Round to nearest even, with overflow to inf and gradual underflow.
uint16_t F32ToF16(float f);

// FP8 E4M3 (fn): no infinities, NaN = S.1111.111, max 448 (llama4.md section 6.3).
float F8E4M3ToF32(uint8_t v);
// Round to nearest even; magnitudes at or beyond the largest finite value saturate to +-448 (a quantizer that
// scales by amax / 448 never reaches past it), NaN becomes 0x7F with the sign of the input.
uint8_t F32ToF8E4M3(float f);
float F8E5M2ToF32(uint8_t v);

}  // namespace herd
