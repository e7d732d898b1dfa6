// The two codecs behind DecodeImage (image.h), each given bytes that start with its signature. Same contract,
// errors and colour conversion as DecodeImage; only image.cpp calls them.
#pragma once

#include <cstdint>
#include <span>

#include "core/status.h"
#include "vision/image.h"

namespace herd::vision::internal {

Result<Image> DecodePng(std::span<const uint8_t> bytes, const DecodeLimits& limits);
Result<Image> DecodeJpeg(std::span<const uint8_t> bytes, const DecodeLimits& limits);

// Checks the size a header gives (each side below 2^32) before anything is allocated: Corruption for a zero side,
// InvalidArgument naming both sides when width x height is over limits.max_pixels.
Status CheckPixelLimit(const char* format, int64_t width, int64_t height, const DecodeLimits& limits);

// Resizes `image` to width x height (already checked against the limits); ResourceExhausted when the allocation
// fails.
Status AllocatePixels(int64_t width, int64_t height, Image* image);

// Pillow's paste of colour c with alpha a over white (Paste.c BLEND with DIV255, the rounding of a x / 255).
inline uint8_t CompositeOnWhite(uint8_t c, uint8_t a) {
  const uint32_t t = 255u * (255u - a) + uint32_t{c} * a + 128u;
  return static_cast<uint8_t>((t + (t >> 8)) >> 8);
}

}  // namespace herd::vision::internal
