// Image decoding for Llama 4 vision: PNG (libpng) and JPEG (libjpeg) bytes to 8-bit RGB, with the colour conversion
// of Meta's chat_format.py (llama4.md section 9.1): what Meta gets from PIL.Image.open followed by its RGBA-on-white
// composite or convert("RGB"), pixel for pixel, as Pillow 9.4 computes it (the fixture's version; image_test checks
// every case against it).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "core/status.h"

namespace herd::vision {

// An 8-bit RGB image. rgb: uint8 [height, width, 3], row-major.
struct Image {
  int64_t width = 0, height = 0;
  std::vector<uint8_t> rgb;
};

struct DecodeLimits {
  // Decompression-bomb guard: width x height above this is refused from the header, before any pixel buffer is
  // allocated (64 Mpixel; Pillow warns at 89 Mpixel and refuses at twice that).
  int64_t max_pixels = int64_t{1} << 26;
};

// Decodes a PNG or JPEG held in `bytes` (recognised by its signature, not by a file name) into a new Image that owns
// its pixels; `bytes` may be released afterwards. Thread-safe (no shared state).
//
// Colour conversion, following Pillow's modes for each file (llama4.md 9.1):
//   - RGBA (PNG colour type 6, and 16-bit grey+alpha, which Pillow opens as RGBA) is composited on white with
//     Pillow's paste arithmetic: out = (t + (t >> 8)) >> 8 with t = 255 (255 - a) + c a + 128;
//   - every other mode is converted directly, ignoring transparency: 8-bit grey+alpha drops the alpha, palette and
//     tRNS transparency is not applied, grey becomes R = G = B;
//   - 16-bit samples keep their high byte, except 16-bit grey without alpha, which Pillow opens as 32-bit integers
//     and clips to 255 when converting to RGB; 1, 2 and 4-bit grey are scaled to 0..255;
//   - a palette index past the PLTE entries becomes grey (i, i, i), Pillow's default palette;
//   - JPEG: libjpeg's own conversion (YCbCr or RGB to RGB, grey replicated); four-channel JPEGs (CMYK, YCCK) are
//     taken as Adobe's inverted CMYK whatever their markers say, as Pillow does, and converted with Pillow's
//     cmyk2rgb: each of R, G, B = (255 - k) - MULDIV255(c, 255 - k), where MULDIV255(x, y) = (t + (t >> 8)) >> 8
//     with t = x y + 128 rounds x y / 255.
// Not done, as in Meta's reference: EXIF orientation is NOT applied (the stored pixel order is used), gamma, ICC
// profiles and PNG sBIT are ignored.
//
// Errors: NotSupported for empty input or a signature that is neither PNG nor JPEG ("not a PNG or JPEG image");
// InvalidArgument for an image of more than limits.max_pixels (checked from the header); Corruption for truncated
// data (Meta's preprocess.py lets Pillow fill truncated images with grey; we refuse them), a zero dimension and
// whatever else libpng or libjpeg reject, with their message; NotSupported for JPEGs Pillow cannot open either (not
// 8-bit samples, lossless or hierarchical, two channels); ResourceExhausted when memory runs out.
Result<Image> DecodeImage(std::span<const uint8_t> bytes, const DecodeLimits& limits = {});

// Reads the regular file `path` (at most 1 GiB) and decodes it as DecodeImage does; errors name the path (the
// file errors of core/file.h, then DecodeImage's).
Result<Image> ReadImageFile(const std::string& path, const DecodeLimits& limits = {});

}  // namespace herd::vision
