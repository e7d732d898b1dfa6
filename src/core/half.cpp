// F32 -> F16 rounding, FP8 decoding and F32 -> FP8 E4M3 rounding.
#include "core/half.h"

#include <cmath>

namespace herd {

uint16_t F32ToF16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t abs = x & 0x7fffffffu;
  if (abs > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u);  // NaN
  if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // overflow (>= 65520) -> inf
  if (abs < 0x38800000u) {  // below the smallest normal half (2^-14): subnormal or zero
    // value = abs_float; half subnormal unit is 2^-24.
    float af;
    std::memcpy(&af, &abs, 4);
    float scaled = af * 16777216.0f;  // / 2^-24
    // round half to even
    float r = std::nearbyint(scaled);
    return static_cast<uint16_t>(sign | static_cast<uint32_t>(r));
  }
  // normal: rebias exponent, round mantissa to 10 bits (nearest even)
  uint32_t mant = abs & 0x7fffffu;
  uint32_t exp = (abs >> 23) - 127 + 15;
  uint32_t h = (exp << 10) | (mant >> 13);
  uint32_t rem = mant & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++;  // may carry into exponent, which is correct
  return static_cast<uint16_t>(sign | h);
}

float F8E4M3ToF32(uint8_t v) {
  const float sign = (v & 0x80) ? -1.0f : 1.0f;
  const int exp = (v >> 3) & 0xf;
  const int mant = v & 0x7;
  if (exp == 0xf && mant == 0x7) return std::nanf("");
  if (exp == 0) return sign * std::ldexp(static_cast<float>(mant) / 8.0f, -6);
  return sign * std::ldexp(1.0f + static_cast<float>(mant) / 8.0f, exp - 7);
}

uint8_t F32ToF8E4M3(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint8_t sign = static_cast<uint8_t>((x >> 24) & 0x80u);
  const uint32_t abs = x & 0x7fffffffu;
  if (abs > 0x7f800000u) return sign | 0x7f;  // NaN
  float a;
  std::memcpy(&a, &abs, 4);
  if (a >= 448.0f) return sign | 0x7e;  // saturate (inf included)
  if (a < 0.015625f) {  // below the smallest normal 2^-6: subnormal steps of 2^-9; 8 steps is the smallest normal
    return static_cast<uint8_t>(sign | static_cast<uint32_t>(std::nearbyint(a * 512.0f)));
  }
  // Normal: rebias the exponent (127 -> 7) and round the mantissa to 3 bits; a carry moves into the exponent.
  const uint32_t mant = abs & 0x7fffffu;
  uint32_t code = (((abs >> 23) - 120u) << 3) | (mant >> 20);
  const uint32_t rem = mant & 0xfffffu;
  if (rem > 0x80000u || (rem == 0x80000u && (code & 1u))) code++;
  return static_cast<uint8_t>(sign | code);  // a < 448 rounds to at most 448 = 0x7e
}

float F8E5M2ToF32(uint8_t v) {
  const float sign = (v & 0x80) ? -1.0f : 1.0f;
  const int exp = (v >> 2) & 0x1f;
  const int mant = v & 0x3;
  if (exp == 0x1f) return mant == 0 ? sign * INFINITY : std::nanf("");
  if (exp == 0) return sign * std::ldexp(static_cast<float>(mant) / 4.0f, -14);
  return sign * std::ldexp(1.0f + static_cast<float>(mant) / 4.0f, exp - 15);
}

}  // namespace herd
