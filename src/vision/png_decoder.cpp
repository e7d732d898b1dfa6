// PNG through libpng 1.6, converted to RGB the way Pillow 9.4 opens and converts each PNG mode (PngImagePlugin
// _MODES, then Convert.c): see image.h for the rules. libpng's errors longjmp back here (its documented
// setjmp/longjmp protocol); warnings are dropped.
#include <png.h>

#include <algorithm>
#include <array>
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <new>
#include <vector>

#include "vision/decoders.h"

namespace herd::vision::internal {
namespace {

// Everything the decode needs that outlives a longjmp: no object with a destructor may live in a frame that
// libpng jumps over, so the buffers belong to this struct rather than to ReadPng's locals.
struct PngReader {
  std::span<const uint8_t> bytes;
  size_t pos = 0;
  png_structp png = nullptr;
  png_infop info = nullptr;
  char message[200] = {};
  std::vector<uint8_t> raw;     // the decoded rows, [height, rowbytes]
  std::vector<png_bytep> rows;  // [height] pointers into raw

  ~PngReader() { png_destroy_read_struct(&png, info != nullptr ? &info : nullptr, nullptr); }
};

void OnPngError(png_structp png, png_const_charp message) {
  auto* r = static_cast<PngReader*>(png_get_error_ptr(png));
  std::snprintf(r->message, sizeof(r->message), "%s", message);
  png_longjmp(png, 1);
}

void OnPngWarning(png_structp, png_const_charp) {}

void ReadPngBytes(png_structp png, png_bytep out, size_t size) {
  auto* r = static_cast<PngReader*>(png_get_io_ptr(png));
  if (size > r->bytes.size() - r->pos) png_error(png, "the data ends early (truncated file)");
  std::memcpy(out, r->bytes.data() + r->pos, size);
  r->pos += size;
}

// Writes one decoded row (after the transforms ReadPng set) as RGB.
void ConvertRow(const uint8_t* in, int64_t width, int color_type, int bit_depth,
                const std::array<uint8_t, 768>& palette, uint8_t* out) {
  for (int64_t x = 0; x < width; ++x, out += 3) {
    switch (color_type) {
      case PNG_COLOR_TYPE_GRAY:
        // 16-bit grey is Pillow mode "I"; its convert("RGB") clips the value to 255 instead of scaling it.
        out[0] = bit_depth == 16 ? static_cast<uint8_t>(std::min(in[2 * x] * 256 + in[2 * x + 1], 255)) : in[x];
        out[1] = out[2] = out[0];
        break;
      case PNG_COLOR_TYPE_GRAY_ALPHA:
        // 16-bit grey+alpha is Pillow mode "RGBA" (composited); 8-bit is "LA" (alpha dropped).
        out[0] = bit_depth == 16 ? CompositeOnWhite(in[2 * x], in[2 * x + 1]) : in[2 * x];
        out[1] = out[2] = out[0];
        break;
      case PNG_COLOR_TYPE_PALETTE:
        std::memcpy(out, &palette[3 * in[x]], 3);
        break;
      case PNG_COLOR_TYPE_RGB:
        std::memcpy(out, in + 3 * x, 3);
        break;
      case PNG_COLOR_TYPE_RGB_ALPHA:
        for (int c = 0; c < 3; ++c) out[c] = CompositeOnWhite(in[4 * x + c], in[4 * x + 3]);
        break;
    }
  }
}

Status ReadPng(PngReader& r, Image* image) {
  if (setjmp(png_jmpbuf(r.png))) return Corruption(std::string("corrupt PNG: ") + r.message);
  png_set_read_fn(r.png, &r, ReadPngBytes);
  // libpng's own default (1e6 per side) would refuse sizes that CheckHeader has judged by their pixel count.
  png_set_user_limits(r.png, PNG_UINT_31_MAX, PNG_UINT_31_MAX);
  png_read_info(r.png, r.info);
  const int64_t width = png_get_image_width(r.png, r.info);
  const int64_t height = png_get_image_height(r.png, r.info);
  const int color_type = png_get_color_type(r.png, r.info);
  const int bit_depth = png_get_bit_depth(r.png, r.info);

  // Pillow's default palette maps an index past the PLTE entries to grey (ImagingPaletteNew).
  std::array<uint8_t, 768> palette;
  for (int i = 0; i < 256; ++i) palette[3 * i] = palette[3 * i + 1] = palette[3 * i + 2] = static_cast<uint8_t>(i);
  if (color_type == PNG_COLOR_TYPE_PALETTE) {
    png_colorp entries = nullptr;
    int n_entries = 0;
    if (png_get_PLTE(r.png, r.info, &entries, &n_entries) != 0) {
      for (int i = 0; i < n_entries && i < 256; ++i) {
        palette[3 * i] = entries[i].red;
        palette[3 * i + 1] = entries[i].green;
        palette[3 * i + 2] = entries[i].blue;
      }
    }
    png_set_packing(r.png);  // one byte per index, unscaled
  } else if (color_type == PNG_COLOR_TYPE_GRAY && bit_depth < 8) {
    png_set_expand_gray_1_2_4_to_8(r.png);  // x255, x85, x17: Pillow's "1", "L;2", "L;4" unpackers
  }
  if (bit_depth == 16 && color_type != PNG_COLOR_TYPE_GRAY) png_set_strip_16(r.png);  // keeps the high byte
  png_set_interlace_handling(r.png);
  png_read_update_info(r.png, r.info);
  const size_t rowbytes = png_get_rowbytes(r.png, r.info);
  try {
    r.raw.resize(rowbytes * static_cast<size_t>(height));
    r.rows.resize(static_cast<size_t>(height));
  } catch (const std::bad_alloc&) {
    return ResourceExhausted("no memory to decode a " + std::to_string(width) + "x" + std::to_string(height) + " PNG");
  }
  for (int64_t y = 0; y < height; ++y) r.rows[y] = r.raw.data() + y * rowbytes;
  png_read_image(r.png, r.rows.data());

  HERD_RETURN_IF_ERROR(AllocatePixels(width, height, image));
  for (int64_t y = 0; y < height; ++y) {
    ConvertRow(r.rows[y], width, color_type, bit_depth, palette, image->rgb.data() + y * width * 3);
  }
  return Status::Ok();
}

// The size from IHDR, which must be the first chunk (libpng insists too), checked before libpng sees the file:
// libpng would refuse a zero size with only "Invalid IHDR data".
Status CheckHeader(std::span<const uint8_t> bytes, const DecodeLimits& limits) {
  constexpr size_t kIhdrEnd = 8 + 8 + 13;  // signature, chunk length and type, IHDR data
  if (bytes.size() < kIhdrEnd || std::memcmp(bytes.data() + 12, "IHDR", 4) != 0) {
    return Corruption("corrupt PNG: no IHDR chunk after the signature");
  }
  auto be32 = [&](size_t at) {
    return int64_t{bytes[at]} << 24 | int64_t{bytes[at + 1]} << 16 | int64_t{bytes[at + 2]} << 8 | bytes[at + 3];
  };
  return CheckPixelLimit("PNG", be32(16), be32(20), limits);
}

}  // namespace

Result<Image> DecodePng(std::span<const uint8_t> bytes, const DecodeLimits& limits) {
  HERD_RETURN_IF_ERROR(CheckHeader(bytes, limits));
  PngReader r;
  r.bytes = bytes;
  r.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &r, OnPngError, OnPngWarning);
  if (r.png != nullptr) r.info = png_create_info_struct(r.png);
  if (r.png == nullptr || r.info == nullptr) return ResourceExhausted("no memory for a PNG decoder");
  Image image;
  HERD_RETURN_IF_ERROR(ReadPng(r, &image));
  return image;
}

}  // namespace herd::vision::internal
