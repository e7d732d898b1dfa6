// JPEG through libjpeg(-turbo) with the decoder settings Pillow 9.4 uses (JpegDecode.c: libjpeg's defaults, output
// in the colour space of the layer count: grey, RGB, or CMYK read as Adobe-inverted "CMYK;I"), so the pixels equal
// Pillow's with the same libjpeg. libjpeg's errors longjmp back here through a custom error_exit; warnings are
// dropped as Pillow drops them, except the end of the data, which libjpeg would pad with grey.
// jpeglib.h needs size_t and FILE from <cstdio> first, and jerror.h comes after it.
// clang-format off
#include <cstdio>
#include <jpeglib.h>
#include <jerror.h>
// clang-format on

#include <csetjmp>
#include <cstring>
#include <new>
#include <vector>

#include "vision/decoders.h"

namespace herd::vision::internal {
namespace {

// A progressive JPEG may hold any number of scans, each a pass over the whole image: a few kilobytes of scans
// could keep a decoder busy for minutes (libjpeg-turbo's fuzzers and djpeg -maxscans stop at 500). Real encoders
// write about ten.
constexpr int kMaxJpegScans = 1000;

struct JpegErrorManager {
  jpeg_error_mgr pub;  // first: libjpeg sees only this part
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

// Everything the decode needs that outlives a longjmp (see PngReader in png_decoder.cpp).
struct JpegReader {
  jpeg_decompress_struct cinfo;
  JpegErrorManager err;
  jpeg_progress_mgr progress;
  bool created = false;
  std::vector<uint8_t> row;  // one output scanline, [width, output_components]

  ~JpegReader() {
    if (created) jpeg_destroy_decompress(&cinfo);
  }
};

[[noreturn]] void OnJpegError(j_common_ptr cinfo) {
  auto* err = reinterpret_cast<JpegErrorManager*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, err->message);
  std::longjmp(err->jump, 1);
}

void OnJpegMessage(j_common_ptr cinfo, int msg_level) {
  if (msg_level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) OnJpegError(cinfo);
}

void OnJpegOutput(j_common_ptr) {}

void OnJpegProgress(j_common_ptr cinfo) {
  const int n_scans = reinterpret_cast<j_decompress_ptr>(cinfo)->input_scan_number;
  if (n_scans <= kMaxJpegScans) return;
  auto* err = reinterpret_cast<JpegErrorManager*>(cinfo->err);
  err->pub.msg_code = 0;  // not one of libjpeg's codes that ReadJpeg tells apart
  std::snprintf(err->message, sizeof(err->message), "more than %d progressive scans", kMaxJpegScans);
  std::longjmp(err->jump, 1);
}

// Writes one scanline of libjpeg's output as RGB.
void ConvertRow(const uint8_t* in, int64_t width, int n_components, uint8_t* out) {
  for (int64_t x = 0; x < width; ++x, out += 3) {
    if (n_components == 1) {
      out[0] = out[1] = out[2] = in[x];
    } else if (n_components == 3) {
      std::memcpy(out, in + 3 * x, 3);
    } else {
      // Pillow inverts the samples ("CMYK;I"), then Convert.c cmyk2rgb: nk - MULDIV255(c, nk) with nk = 255 - k,
      // which for the inverted k is libjpeg's own k; never negative, so its clip does nothing.
      const uint32_t nk = in[4 * x + 3];
      for (int c = 0; c < 3; ++c) {
        const uint32_t t = (255u - in[4 * x + c]) * nk + 128u;
        out[c] = static_cast<uint8_t>(nk - (((t >> 8) + t) >> 8));
      }
    }
  }
}

Status ReadJpeg(JpegReader& r, std::span<const uint8_t> bytes, const DecodeLimits& limits, Image* image) {
  r.cinfo.err = jpeg_std_error(&r.err.pub);
  r.err.pub.error_exit = OnJpegError;
  r.err.pub.emit_message = OnJpegMessage;
  r.err.pub.output_message = OnJpegOutput;
  if (setjmp(r.err.jump)) {
    const int code = r.err.pub.msg_code;
    // Valid files libjpeg cannot decode (12-bit samples, lossless or hierarchical JPEG); Pillow refuses them too.
    if (code == JERR_BAD_PRECISION || code == JERR_SOF_UNSUPPORTED) {
      return NotSupported(std::string("JPEG: ") + r.err.message);
    }
    if (code == JERR_OUT_OF_MEMORY) return ResourceExhausted(std::string("JPEG: ") + r.err.message);
    return Corruption(std::string("corrupt JPEG: ") + r.err.message);
  }
  jpeg_create_decompress(&r.cinfo);
  r.created = true;
  r.progress.progress_monitor = OnJpegProgress;
  r.cinfo.progress = &r.progress;
  jpeg_mem_src(&r.cinfo, bytes.data(), bytes.size());
  jpeg_read_header(&r.cinfo, TRUE);
  const int n_components = r.cinfo.num_components;
  if (n_components != 1 && n_components != 3 && n_components != 4) {
    return NotSupported("JPEG with " + std::to_string(n_components) + " channels (1, 3 or 4 are read)");
  }
  const int64_t width = r.cinfo.image_width, height = r.cinfo.image_height;
  if (Status s = CheckPixelLimit("JPEG", width, height, limits); !s.ok()) return s;
  r.cinfo.out_color_space = n_components == 1 ? JCS_GRAYSCALE : n_components == 3 ? JCS_RGB : JCS_CMYK;
  try {
    r.row.resize(static_cast<size_t>(width) * n_components);
  } catch (const std::bad_alloc&) {
    return ResourceExhausted("no memory to decode a " + std::to_string(width) + "x" + std::to_string(height) + " JPEG");
  }
  HERD_RETURN_IF_ERROR(AllocatePixels(width, height, image));
  jpeg_start_decompress(&r.cinfo);
  while (r.cinfo.output_scanline < r.cinfo.output_height) {
    const int64_t y = r.cinfo.output_scanline;
    JSAMPROW row = r.row.data();
    jpeg_read_scanlines(&r.cinfo, &row, 1);
    ConvertRow(r.row.data(), width, n_components, image->rgb.data() + y * width * 3);
  }
  // No jpeg_finish_decompress: what follows the last scanline (the EOI marker) does not change the pixels.
  return Status::Ok();
}

}  // namespace

Result<Image> DecodeJpeg(std::span<const uint8_t> bytes, const DecodeLimits& limits) {
  JpegReader r;
  Image image;
  HERD_RETURN_IF_ERROR(ReadJpeg(r, bytes, limits, &image));
  return image;
}

}  // namespace herd::vision::internal
