// DecodeImage's dispatch on the file signature, the shared pixel-limit check and ReadImageFile.
#include "vision/image.h"

#include <cstdio>
#include <cstring>
#include <new>

#include "core/file.h"
#include "vision/decoders.h"

namespace herd::vision {
namespace internal {

Status CheckPixelLimit(const char* format, int64_t width, int64_t height, const DecodeLimits& limits) {
  if (width <= 0 || height <= 0) {
    return Corruption(std::string(format) + " header gives a zero size: " + std::to_string(width) + "x" +
                      std::to_string(height));
  }
  // Both sides are below 2^32 (32-bit fields at most), so the product fits in 64 bits.
  const uint64_t n_pixels = static_cast<uint64_t>(width) * static_cast<uint64_t>(height);
  if (limits.max_pixels < 0 || n_pixels > static_cast<uint64_t>(limits.max_pixels)) {
    return InvalidArgument(std::string(format) + " image is " + std::to_string(width) + "x" + std::to_string(height) +
                           " = " + std::to_string(n_pixels) + " pixels, more than the limit of " +
                           std::to_string(limits.max_pixels));
  }
  return Status::Ok();
}

Status AllocatePixels(int64_t width, int64_t height, Image* image) {
  try {
    image->rgb.resize(static_cast<size_t>(width * height * 3));
  } catch (const std::bad_alloc&) {
    return ResourceExhausted("no memory for a " + std::to_string(width) + "x" + std::to_string(height) + " image");
  }
  image->width = width;
  image->height = height;
  return Status::Ok();
}

}  // namespace internal

Result<Image> DecodeImage(std::span<const uint8_t> bytes, const DecodeLimits& limits) {
  static constexpr uint8_t kPngSignature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  // SOI followed by the first marker's 0xFF, as Pillow's JPEG recogniser requires.
  static constexpr uint8_t kJpegSignature[3] = {0xff, 0xd8, 0xff};
  if (bytes.empty()) return NotSupported("empty image data: not a PNG or JPEG image");
  if (bytes.size() >= sizeof(kPngSignature) && std::memcmp(bytes.data(), kPngSignature, sizeof(kPngSignature)) == 0) {
    return internal::DecodePng(bytes, limits);
  }
  if (bytes.size() >= sizeof(kJpegSignature) &&
      std::memcmp(bytes.data(), kJpegSignature, sizeof(kJpegSignature)) == 0) {
    return internal::DecodeJpeg(bytes, limits);
  }
  std::string head;
  for (size_t i = 0; i < bytes.size() && i < 8; ++i) {
    char hex[4];
    std::snprintf(hex, sizeof(hex), "%02x", bytes[i]);
    head.append(head.empty() ? "" : " ").append(hex);
  }
  return NotSupported("not a PNG or JPEG image (it starts with bytes " + head + ")");
}

Result<Image> ReadImageFile(const std::string& path, const DecodeLimits& limits) {
  HERD_ASSIGN_OR_RETURN(const std::string bytes, ReadFileToString(path, uint64_t{1} << 30));
  auto image = DecodeImage({reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()}, limits);
  if (!image.ok()) return image.status().WithContext(path);
  return image;
}

}  // namespace herd::vision
