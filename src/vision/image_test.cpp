// Tests of DecodeImage: PNGs and JPEGs written here with libpng and libjpeg in every colour mode, each decoded
// pixel for pixel against Pillow 9.4's decode of the same file followed by Meta's RGB conversion (the oracle of
// vision_test_util.h), the key conversions also against values worked out by hand; then one named test per kind
// of damage, each a clean error with a message.
#include <gtest/gtest.h>
#include <png.h>
#include <zlib.h>

// jpeglib.h needs size_t and FILE from <cstdio> first.
// clang-format off
#include <cstdio>
#include <jpeglib.h>
// clang-format on

#include <csetjmp>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "test_util.h"
#include "vision/decoders.h"
#include "vision/image.h"
#include "vision/vision_test_util.h"

namespace herd::vision {
namespace {

using herd::vision::testing::CompareBytes;
using herd::vision::testing::RunPillow;

std::span<const uint8_t> Bytes(const std::string& s) { return {reinterpret_cast<const uint8_t*>(s.data()), s.size()}; }

// ---- Writers of test files -------------------------------------------------------------------------------------

struct PngSpec {
  int64_t width = 0, height = 0;
  int color_type = PNG_COLOR_TYPE_RGB;
  int bit_depth = 8;
  bool interlaced = false;
  // Samples row-major, one byte each up to 8 bits (values below 2^bit_depth), big-endian pairs for 16 bits.
  std::vector<uint8_t> samples;
  std::vector<png_color> palette;
  std::vector<uint8_t> palette_alpha;     // tRNS of a palette image
  std::optional<png_color_16> trans_key;  // tRNS of a grey or RGB image
};

int Channels(int color_type) {
  switch (color_type) {
    case PNG_COLOR_TYPE_GRAY_ALPHA:
      return 2;
    case PNG_COLOR_TYPE_RGB:
      return 3;
    case PNG_COLOR_TYPE_RGB_ALPHA:
      return 4;
    default:
      return 1;
  }
}

void AppendPng(png_structp png, png_bytep data, size_t size) {
  static_cast<std::string*>(png_get_io_ptr(png))->append(reinterpret_cast<const char*>(data), size);
}
void FlushPng(png_structp) {}

std::string EncodePng(const PngSpec& s) {
  std::string out;
  std::vector<uint8_t> samples = s.samples;
  const int64_t row_bytes = s.width * Channels(s.color_type) * (s.bit_depth == 16 ? 2 : 1);
  EXPECT_EQ(static_cast<int64_t>(samples.size()), row_bytes * s.height);
  std::vector<png_bytep> rows(s.height);
  for (int64_t y = 0; y < s.height; ++y) rows[y] = samples.data() + y * row_bytes;
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png_create_info_struct(png);
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    ADD_FAILURE() << "libpng could not write the test image";
    return "";
  }
  png_set_write_fn(png, &out, AppendPng, FlushPng);
  png_set_IHDR(png, info, s.width, s.height, s.bit_depth, s.color_type,
               s.interlaced ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  if (!s.palette.empty()) png_set_PLTE(png, info, s.palette.data(), static_cast<int>(s.palette.size()));
  if (!s.palette_alpha.empty()) {
    png_set_tRNS(png, info, s.palette_alpha.data(), static_cast<int>(s.palette_alpha.size()), nullptr);
  }
  if (s.trans_key) png_set_tRNS(png, info, nullptr, 0, &*s.trans_key);
  png_set_check_for_invalid_index(png, 1);  // some tests want indices past the palette
  png_write_info(png, info);
  if (s.bit_depth < 8) png_set_packing(png);
  png_write_image(png, rows.data());
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  return out;
}

struct JpegSpec {
  int64_t width = 0, height = 0;
  int components = 3;
  J_COLOR_SPACE in_space = JCS_RGB;
  J_COLOR_SPACE file_space = JCS_YCbCr;
  bool progressive = false;
  bool adobe_marker = true;      // false: a CMYK file without Adobe's APP14 marker
  std::vector<uint8_t> samples;  // [height, width, components]
};

struct JpegWriteError {
  jpeg_error_mgr pub;
  std::jmp_buf jump;
};
[[noreturn]] void OnJpegWriteError(j_common_ptr c) { std::longjmp(reinterpret_cast<JpegWriteError*>(c->err)->jump, 1); }

std::string EncodeJpeg(const JpegSpec& s) {
  jpeg_compress_struct c;
  JpegWriteError err;
  c.err = jpeg_std_error(&err.pub);
  err.pub.error_exit = OnJpegWriteError;
  unsigned char* buffer = nullptr;
  unsigned long size = 0;
  if (setjmp(err.jump)) {
    jpeg_destroy_compress(&c);
    std::free(buffer);
    ADD_FAILURE() << "libjpeg could not write the test image";
    return "";
  }
  jpeg_create_compress(&c);
  jpeg_mem_dest(&c, &buffer, &size);
  c.image_width = static_cast<JDIMENSION>(s.width);
  c.image_height = static_cast<JDIMENSION>(s.height);
  c.input_components = s.components;
  c.in_color_space = s.in_space;
  jpeg_set_defaults(&c);
  jpeg_set_colorspace(&c, s.file_space);
  if (!s.adobe_marker) c.write_Adobe_marker = FALSE;
  jpeg_set_quality(&c, 90, TRUE);
  if (s.progressive) jpeg_simple_progression(&c);
  jpeg_start_compress(&c, TRUE);
  while (c.next_scanline < c.image_height) {
    JSAMPROW row = const_cast<uint8_t*>(s.samples.data()) + c.next_scanline * s.width * s.components;
    jpeg_write_scanlines(&c, &row, 1);
  }
  jpeg_finish_compress(&c);
  std::string out(reinterpret_cast<const char*>(buffer), size);
  jpeg_destroy_compress(&c);
  std::free(buffer);
  return out;
}

// Smooth gradients plus noise, so that JPEG's subsampling and both PNG filters have something to do.
std::vector<uint8_t> TestSamples(int64_t n_pixels, int channels, int64_t width, uint32_t seed, int max_value = 255) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> v(n_pixels * channels);
  for (int64_t i = 0; i < n_pixels; ++i) {
    for (int c = 0; c < channels; ++c) {
      const int64_t x = i % width, y = i / width;
      const int64_t smooth = (x * 7 + y * 5 + c * 60) % 256;
      v[i * channels + c] = static_cast<uint8_t>(((smooth + rng() % 32) % 256) * max_value / 255);
    }
  }
  return v;
}

// ---- The Pillow oracle -----------------------------------------------------------------------------------------

// Pillow's open, then Meta's chat_format.py pil_RGBA2RGB: RGBA pasted on white with its alpha as the mask,
// every other mode convert("RGB"). Writes PATH.rgb and prints "width height" per file.
constexpr const char* kPillowDecode = R"(
import sys
from PIL import Image
for path in sys.argv[1:]:
    im = Image.open(path)
    if im.mode == "RGBA":
        im.load()
        bg = Image.new("RGB", im.size, (255, 255, 255))
        bg.paste(im, mask=im.split()[3])
        im = bg
    else:
        im = im.convert("RGB")
    with open(path + ".rgb", "wb") as f:
        f.write(im.tobytes())
    print(im.size[0], im.size[1])
)";

struct NamedFile {
  std::string name;
  std::string bytes;
};

// Decodes every file with herd and with Pillow and expects the same RGB bytes.
void ExpectSameAsPillow(const std::vector<NamedFile>& files, const std::string& dir_name) {
  const std::string dir = herd::testing::TempDir(dir_name);
  std::vector<std::string> paths;
  for (const NamedFile& f : files) {
    paths.push_back(dir + "/" + f.name);
    herd::testing::WriteBytes(paths.back(), f.bytes);
  }
  std::istringstream sizes(RunPillow(kPillowDecode, paths));
  for (size_t i = 0; i < files.size(); ++i) {
    SCOPED_TRACE(files[i].name);
    int64_t width = 0, height = 0;
    ASSERT_TRUE(sizes >> width >> height) << "no size from Pillow";
    auto image = DecodeImage(Bytes(files[i].bytes));
    ASSERT_TRUE(image.ok()) << image.status().ToString();
    EXPECT_EQ(image->width, width);
    EXPECT_EQ(image->height, height);
    const std::string expected = herd::testing::ReadText(paths[i] + ".rgb");
    ASSERT_EQ(image->rgb.size(), expected.size());
    const auto diff = CompareBytes(image->rgb, expected);
    EXPECT_EQ(diff.n_diff, 0) << diff.n_diff << " of " << expected.size()
                              << " bytes differ from Pillow's, the first at " << diff.first_idx << ", by up to "
                              << diff.max_abs;
  }
}

PngSpec RandomPng(int64_t width, int64_t height, int color_type, int bit_depth, uint32_t seed) {
  PngSpec s{.width = width, .height = height, .color_type = color_type, .bit_depth = bit_depth};
  const int bytes = bit_depth == 16 ? 2 : 1;
  const int max_value = bit_depth >= 8 ? 255 : (1 << bit_depth) - 1;
  s.samples =
      TestSamples(width * height, Channels(color_type) * bytes, width * Channels(color_type) * bytes, seed, max_value);
  return s;
}

// ---- PNG -------------------------------------------------------------------------------------------------------

TEST(DecodePngTest, EveryModeMatchesPillow) {
  std::vector<NamedFile> files;
  uint32_t seed = 1;
  for (bool interlaced : {false, true}) {
    const std::string suffix = interlaced ? "_interlaced.png" : ".png";
    for (int depth : {1, 2, 4, 8, 16}) {
      PngSpec s = RandomPng(13, 11, PNG_COLOR_TYPE_GRAY, depth, seed++);
      s.interlaced = interlaced;
      files.push_back({"grey" + std::to_string(depth) + suffix, EncodePng(s)});
    }
    for (int depth : {1, 2, 4, 8}) {
      PngSpec s = RandomPng(13, 11, PNG_COLOR_TYPE_PALETTE, depth, seed++);
      s.interlaced = interlaced;
      for (int i = 0; i < (1 << depth) - 1; ++i) {  // the last index has no entry: Pillow's grey default
        s.palette.push_back(
            png_color{static_cast<uint8_t>(i * 37), static_cast<uint8_t>(255 - i), static_cast<uint8_t>(i * 11)});
      }
      s.palette_alpha = {0, 128, 255};
      s.palette_alpha.resize(std::min(s.palette_alpha.size(), s.palette.size()));
      files.push_back({"palette" + std::to_string(depth) + suffix, EncodePng(s)});
    }
    for (int type : {PNG_COLOR_TYPE_GRAY_ALPHA, PNG_COLOR_TYPE_RGB, PNG_COLOR_TYPE_RGB_ALPHA}) {
      for (int depth : {8, 16}) {
        PngSpec s = RandomPng(17, 9, type, depth, seed++);
        s.interlaced = interlaced;
        files.push_back({"type" + std::to_string(type) + "_" + std::to_string(depth) + suffix, EncodePng(s)});
      }
    }
  }
  PngSpec grey_key = RandomPng(8, 8, PNG_COLOR_TYPE_GRAY, 8, seed++);
  grey_key.trans_key = png_color_16{.index = 0, .red = 0, .green = 0, .blue = 0, .gray = grey_key.samples[0]};
  files.push_back({"grey_trns.png", EncodePng(grey_key)});
  PngSpec grey16_key = RandomPng(8, 8, PNG_COLOR_TYPE_GRAY, 16, seed++);
  grey16_key.trans_key = png_color_16{.index = 0, .red = 0, .green = 0, .blue = 0, .gray = 300};
  files.push_back({"grey16_trns.png", EncodePng(grey16_key)});
  PngSpec rgb_key = RandomPng(8, 8, PNG_COLOR_TYPE_RGB, 8, seed++);
  rgb_key.trans_key = png_color_16{
      .index = 0, .red = rgb_key.samples[0], .green = rgb_key.samples[1], .blue = rgb_key.samples[2], .gray = 0};
  files.push_back({"rgb_trns.png", EncodePng(rgb_key)});
  ExpectSameAsPillow(files, "png-modes");
}

TEST(DecodePngTest, RgbaIsCompositedOnWhiteForEveryColourAndAlpha) {
  PngSpec s{.width = 256, .height = 256, .color_type = PNG_COLOR_TYPE_RGB_ALPHA};
  for (int a = 0; a < 256; ++a) {
    for (int c = 0; c < 256; ++c) s.samples.insert(s.samples.end(), {uint8_t(c), uint8_t(255 - c), 7, uint8_t(a)});
  }
  const std::string png = EncodePng(s);
  auto image = DecodeImage(Bytes(png));
  ASSERT_TRUE(image.ok()) << image.status().ToString();
  auto at = [&](int c, int a, int channel) { return image->rgb[(a * 256 + c) * 3 + channel]; };
  for (int c = 0; c < 256; ++c) {
    EXPECT_EQ(at(c, 0, 0), 255);  // transparent: the white background
    EXPECT_EQ(at(c, 255, 0), c);  // opaque: the colour
  }
  EXPECT_EQ(at(0, 128, 0), 127);  // 255 x 127 / 255 = 127 exactly
  ExpectSameAsPillow({{"rgba_all.png", png}}, "png-rgba");
}

TEST(DecodePngTest, Grey16ClipsAt255AsPillowsModeI) {
  const std::vector<int> values = {0, 1, 200, 255, 256, 1000, 65535};
  PngSpec s{.width = 7, .height = 1, .color_type = PNG_COLOR_TYPE_GRAY, .bit_depth = 16};
  for (int v : values) s.samples.insert(s.samples.end(), {uint8_t(v >> 8), uint8_t(v & 255)});
  auto image = DecodeImage(Bytes(EncodePng(s)));
  ASSERT_TRUE(image.ok()) << image.status().ToString();
  const std::vector<uint8_t> expected = {0,   0,   0,   1,   1,   1,   200, 200, 200, 255, 255,
                                         255, 255, 255, 255, 255, 255, 255, 255, 255, 255};
  EXPECT_EQ(image->rgb, expected);
}

TEST(DecodePngTest, SixteenBitKeepsTheHighByte) {
  PngSpec rgb{.width = 1,
              .height = 1,
              .color_type = PNG_COLOR_TYPE_RGB,
              .bit_depth = 16,
              .samples = {0x12, 0xff, 0x34, 0x80, 0x56, 0x01}};
  auto image = DecodeImage(Bytes(EncodePng(rgb)));
  ASSERT_TRUE(image.ok()) << image.status().ToString();
  EXPECT_EQ(image->rgb, (std::vector<uint8_t>{0x12, 0x34, 0x56}));
  // Grey+alpha at 16 bits is Pillow's RGBA: high bytes 0x12 and 0x80, composited on white.
  PngSpec grey_alpha{.width = 1,
                     .height = 1,
                     .color_type = PNG_COLOR_TYPE_GRAY_ALPHA,
                     .bit_depth = 16,
                     .samples = {0x12, 0x34, 0x80, 0x00}};
  image = DecodeImage(Bytes(EncodePng(grey_alpha)));
  ASSERT_TRUE(image.ok()) << image.status().ToString();
  const uint8_t v = internal::CompositeOnWhite(0x12, 0x80);
  EXPECT_EQ(v, 136);
  EXPECT_EQ(image->rgb, (std::vector<uint8_t>{v, v, v}));
}

TEST(DecodePngTest, GreyAlpha8DropsTheAlpha) {
  PngSpec s{.width = 2, .height = 1, .color_type = PNG_COLOR_TYPE_GRAY_ALPHA, .samples = {100, 0, 200, 128}};
  auto image = DecodeImage(Bytes(EncodePng(s)));
  ASSERT_TRUE(image.ok()) << image.status().ToString();
  EXPECT_EQ(image->rgb, (std::vector<uint8_t>{100, 100, 100, 200, 200, 200}));
}

TEST(DecodePngTest, PaletteTransparencyIsIgnoredAndMissingEntriesAreGrey) {
  PngSpec s{.width = 4, .height = 1, .color_type = PNG_COLOR_TYPE_PALETTE, .samples = {0, 1, 2, 200}};
  s.palette = {{10, 20, 30}, {40, 50, 60}};
  s.palette_alpha = {0, 128};
  auto image = DecodeImage(Bytes(EncodePng(s)));
  ASSERT_TRUE(image.ok()) << image.status().ToString();
  EXPECT_EQ(image->rgb, (std::vector<uint8_t>{10, 20, 30, 40, 50, 60, 2, 2, 2, 200, 200, 200}));
}

TEST(DecodePngTest, SubByteGreyIsScaled) {
  PngSpec s{.width = 4, .height = 1, .color_type = PNG_COLOR_TYPE_GRAY, .bit_depth = 2, .samples = {0, 1, 2, 3}};
  auto image = DecodeImage(Bytes(EncodePng(s)));
  ASSERT_TRUE(image.ok()) << image.status().ToString();
  EXPECT_EQ(image->rgb, (std::vector<uint8_t>{0, 0, 0, 85, 85, 85, 170, 170, 170, 255, 255, 255}));
}

TEST(DecodePngTest, InterlacedEqualsNonInterlaced) {
  PngSpec s = RandomPng(37, 29, PNG_COLOR_TYPE_RGB_ALPHA, 16, 77);
  auto plain = DecodeImage(Bytes(EncodePng(s)));
  s.interlaced = true;
  const std::string interlaced_png = EncodePng(s);
  auto interlaced = DecodeImage(Bytes(interlaced_png));
  ASSERT_TRUE(plain.ok() && interlaced.ok());
  EXPECT_EQ(plain->rgb, interlaced->rgb);
  EXPECT_EQ(interlaced_png[28], 1) << "the file is not interlaced";
}

// ---- JPEG ------------------------------------------------------------------------------------------------------

JpegSpec RandomJpeg(int64_t width, int64_t height, int components, J_COLOR_SPACE in_space, J_COLOR_SPACE file_space,
                    uint32_t seed) {
  JpegSpec s{
      .width = width, .height = height, .components = components, .in_space = in_space, .file_space = file_space};
  s.samples = TestSamples(width * height, components, width, seed);
  return s;
}

TEST(DecodeJpegTest, EveryKindMatchesPillow) {
  std::vector<NamedFile> files;
  JpegSpec grey = RandomJpeg(21, 19, 1, JCS_GRAYSCALE, JCS_GRAYSCALE, 1);
  files.push_back({"grey.jpg", EncodeJpeg(grey)});
  grey.progressive = true;
  files.push_back({"grey_progressive.jpg", EncodeJpeg(grey)});
  JpegSpec ycc = RandomJpeg(33, 17, 3, JCS_RGB, JCS_YCbCr, 2);  // 4:2:0 chroma: fancy upsampling
  files.push_back({"ycbcr.jpg", EncodeJpeg(ycc)});
  ycc.progressive = true;
  files.push_back({"ycbcr_progressive.jpg", EncodeJpeg(ycc)});
  files.push_back({"rgb.jpg", EncodeJpeg(RandomJpeg(15, 15, 3, JCS_RGB, JCS_RGB, 3))});  // Adobe transform 0
  files.push_back({"cmyk_adobe.jpg", EncodeJpeg(RandomJpeg(64, 48, 4, JCS_CMYK, JCS_CMYK, 4))});
  files.push_back({"ycck_adobe.jpg", EncodeJpeg(RandomJpeg(64, 48, 4, JCS_CMYK, JCS_YCCK, 5))});
  JpegSpec cmyk_plain = RandomJpeg(9, 10, 4, JCS_CMYK, JCS_CMYK, 6);
  cmyk_plain.adobe_marker = false;  // Pillow reads it as Adobe's inverted CMYK all the same
  files.push_back({"cmyk_no_adobe.jpg", EncodeJpeg(cmyk_plain)});
  JpegSpec cmyk_progressive = RandomJpeg(18, 14, 4, JCS_CMYK, JCS_YCCK, 7);
  cmyk_progressive.progressive = true;
  files.push_back({"ycck_progressive.jpg", EncodeJpeg(cmyk_progressive)});
  ExpectSameAsPillow(files, "jpeg-kinds");
}

TEST(DecodeJpegTest, GreyIsReplicated) {
  auto image = DecodeImage(Bytes(EncodeJpeg(RandomJpeg(16, 8, 1, JCS_GRAYSCALE, JCS_GRAYSCALE, 9))));
  ASSERT_TRUE(image.ok()) << image.status().ToString();
  for (int64_t i = 0; i < 16 * 8; ++i) {
    EXPECT_EQ(image->rgb[i * 3], image->rgb[i * 3 + 1]);
    EXPECT_EQ(image->rgb[i * 3], image->rgb[i * 3 + 2]);
  }
}

TEST(DecodeJpegTest, CmykIsInvertedThenConvertedAsPillow) {
  // Stored (c, m, y, k) = (255, 0, 255, 255) is Adobe's inverted (0, 255, 0, 0): magenta. A flat patch keeps its
  // values through the DCT up to the codec's rounding.
  JpegSpec s{.width = 8, .height = 8, .components = 4, .in_space = JCS_CMYK, .file_space = JCS_CMYK};
  for (int i = 0; i < 64; ++i) s.samples.insert(s.samples.end(), {255, 0, 255, 255});
  auto image = DecodeImage(Bytes(EncodeJpeg(s)));
  ASSERT_TRUE(image.ok()) << image.status().ToString();
  EXPECT_NEAR(image->rgb[0], 255, 2);
  EXPECT_NEAR(image->rgb[1], 0, 2);
  EXPECT_NEAR(image->rgb[2], 255, 2);
}

TEST(DecodeTest, FuzzSeedsMatchPillow) {
  // The seed corpus of image_fuzz: PNGs written by a plain Python encoder (interlaced, sub-byte, 16-bit, tRNS) and
  // JPEGs written by Pillow, so not by the libpng and libjpeg writers above.
  const std::string dir = std::string(HERD_SOURCE_DIR) + "/tests/fuzz/corpus/image_fuzz";
  std::vector<NamedFile> files;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    files.push_back({entry.path().filename().string(), herd::testing::ReadText(entry.path().string())});
  }
  ASSERT_GE(files.size(), 10u) << dir;
  ExpectSameAsPillow(files, "fuzz-seeds");
}

// ---- Damage ----------------------------------------------------------------------------------------------------

std::string TinyPng() { return EncodePng(RandomPng(6, 5, PNG_COLOR_TYPE_RGB, 8, 11)); }
std::string TinyJpeg() { return EncodeJpeg(RandomJpeg(12, 10, 3, JCS_RGB, JCS_YCbCr, 12)); }

// The PNG with its IHDR width and height replaced (CRC recomputed, so only the sizes are wrong).
std::string WithPngSize(std::string png, uint32_t width, uint32_t height) {
  for (int i = 0; i < 4; ++i) {
    png[16 + i] = static_cast<char>(width >> (24 - 8 * i));
    png[20 + i] = static_cast<char>(height >> (24 - 8 * i));
  }
  const uint32_t crc = static_cast<uint32_t>(crc32(0, reinterpret_cast<const Bytef*>(png.data() + 12), 17));
  for (int i = 0; i < 4; ++i) png[29 + i] = static_cast<char>(crc >> (24 - 8 * i));
  return png;
}

// The JPEG with its SOF width and height replaced.
std::string WithJpegSize(std::string jpeg, uint16_t width, uint16_t height) {
  for (size_t i = 2; i + 9 < jpeg.size(); ++i) {
    const uint8_t b = static_cast<uint8_t>(jpeg[i + 1]);
    if (static_cast<uint8_t>(jpeg[i]) == 0xff && (b == 0xc0 || b == 0xc2)) {
      jpeg[i + 5] = static_cast<char>(height >> 8);
      jpeg[i + 6] = static_cast<char>(height & 255);
      jpeg[i + 7] = static_cast<char>(width >> 8);
      jpeg[i + 8] = static_cast<char>(width & 255);
      return jpeg;
    }
  }
  ADD_FAILURE() << "no SOF marker";
  return jpeg;
}

void ExpectError(const Result<Image>& r, StatusCode code, const std::string& fragment) {
  ASSERT_FALSE(r.ok()) << "expected an error containing '" << fragment << "'";
  EXPECT_EQ(r.status().code(), code) << r.status().ToString();
  EXPECT_NE(r.status().message().find(fragment), std::string::npos) << r.status().ToString();
}

TEST(DecodeErrorTest, EmptyInput) {
  ExpectError(DecodeImage({}), StatusCode::kNotSupported, "not a PNG or JPEG image");
}

TEST(DecodeErrorTest, UnknownSignature) {
  ExpectError(DecodeImage(Bytes(std::string("GIF89a\x01\x00\x01\x00", 10))), StatusCode::kNotSupported,
              "not a PNG or JPEG image (it starts with bytes 47 49 46 38 39 61 01 00)");
  ExpectError(DecodeImage(Bytes("\x89PNG")), StatusCode::kNotSupported, "not a PNG or JPEG image");
  ExpectError(DecodeImage(Bytes("\xff\xd8")), StatusCode::kNotSupported, "not a PNG or JPEG image");
}

TEST(DecodeErrorTest, PngTruncatedAtEveryByte) {
  const std::string png = TinyPng();
  ASSERT_TRUE(DecodeImage(Bytes(png)).ok());
  // Everything before IEND (the last 12 bytes) holds pixels or their checksums.
  for (size_t cut = 8; cut + 12 < png.size(); ++cut) {
    SCOPED_TRACE("cut at " + std::to_string(cut) + " of " + std::to_string(png.size()));
    ExpectError(DecodeImage(Bytes(png.substr(0, cut))), StatusCode::kCorruption, "corrupt PNG");
  }
}

TEST(DecodeErrorTest, JpegTruncatedAtEveryByte) {
  const std::string jpeg = TinyJpeg();
  ASSERT_TRUE(DecodeImage(Bytes(jpeg)).ok());
  // Everything before EOI (the last 2 bytes) holds pixels.
  for (size_t cut = 3; cut + 2 < jpeg.size(); ++cut) {
    SCOPED_TRACE("cut at " + std::to_string(cut) + " of " + std::to_string(jpeg.size()));
    ExpectError(DecodeImage(Bytes(jpeg.substr(0, cut))), StatusCode::kCorruption, "corrupt JPEG");
  }
}

TEST(DecodeErrorTest, ProgressiveJpegTruncated) {
  JpegSpec s = RandomJpeg(20, 20, 3, JCS_RGB, JCS_YCbCr, 13);
  s.progressive = true;
  const std::string jpeg = EncodeJpeg(s);
  for (size_t cut : {jpeg.size() / 4, jpeg.size() / 2, jpeg.size() - 3}) {
    ExpectError(DecodeImage(Bytes(jpeg.substr(0, cut))), StatusCode::kCorruption, "Premature end of JPEG file");
  }
}

TEST(DecodeErrorTest, PngZeroWidth) {
  ExpectError(DecodeImage(Bytes(WithPngSize(TinyPng(), 0, 5))), StatusCode::kCorruption,
              "PNG header gives a zero size: 0x5");
}

TEST(DecodeErrorTest, JpegZeroHeight) {
  ExpectError(DecodeImage(Bytes(WithJpegSize(TinyJpeg(), 12, 0))), StatusCode::kCorruption, "corrupt JPEG");
}

TEST(DecodeErrorTest, PngOverThePixelLimitIsRefusedFromTheHeader) {
  // 100000 x 100000 RGB would be 30 GB: refused before any pixel buffer exists.
  ExpectError(DecodeImage(Bytes(WithPngSize(TinyPng(), 100000, 100000))), StatusCode::kInvalidArgument,
              "PNG image is 100000x100000 = 10000000000 pixels, more than the limit of 67108864");
  ExpectError(DecodeImage(Bytes(WithPngSize(TinyPng(), 0x7fffffff, 0x7fffffff))), StatusCode::kInvalidArgument,
              "more than the limit");
  ExpectError(DecodeImage(Bytes(TinyPng()), DecodeLimits{.max_pixels = 29}), StatusCode::kInvalidArgument,
              "6x5 = 30 pixels, more than the limit of 29");
  EXPECT_TRUE(DecodeImage(Bytes(TinyPng()), DecodeLimits{.max_pixels = 30}).ok());
}

TEST(DecodeErrorTest, JpegOverThePixelLimitIsRefusedFromTheHeader) {
  ExpectError(DecodeImage(Bytes(WithJpegSize(TinyJpeg(), 65000, 65000))), StatusCode::kInvalidArgument,
              "JPEG image is 65000x65000 = 4225000000 pixels, more than the limit of 67108864");
  ExpectError(DecodeImage(Bytes(TinyJpeg()), DecodeLimits{.max_pixels = 119}), StatusCode::kInvalidArgument,
              "12x10 = 120 pixels");
}

TEST(DecodeErrorTest, PngHeaderChecksumMismatch) {
  std::string png = TinyPng();
  png[30] = static_cast<char>(png[30] ^ 1);
  ExpectError(DecodeImage(Bytes(png)), StatusCode::kCorruption, "IHDR: CRC error");
}

TEST(DecodeErrorTest, PngWithDamagedImageData) {
  std::string png = TinyPng();
  const size_t idat = png.find("IDAT");
  ASSERT_NE(idat, std::string::npos);
  png[idat + 4] = static_cast<char>(png[idat + 4] ^ 0x55);  // the zlib header
  ExpectError(DecodeImage(Bytes(png)), StatusCode::kCorruption, "corrupt PNG");
}

TEST(DecodeErrorTest, JpegWithTwoChannelsIsNotSupported) {
  JpegSpec s = RandomJpeg(8, 8, 2, JCS_UNKNOWN, JCS_UNKNOWN, 14);
  ExpectError(DecodeImage(Bytes(EncodeJpeg(s))), StatusCode::kNotSupported, "JPEG with 2 channels");
}

TEST(DecodeErrorTest, JpegWithTooManyScansIsRefused) {
  JpegSpec s = RandomJpeg(8, 8, 1, JCS_GRAYSCALE, JCS_GRAYSCALE, 15);
  s.progressive = true;
  const std::string jpeg = EncodeJpeg(s);
  // Repeat the last scan (SOS to EOI) until the file has over 1000 scans.
  const size_t last_sos = jpeg.rfind("\xff\xda");
  ASSERT_NE(last_sos, std::string::npos);
  const std::string scan = jpeg.substr(last_sos, jpeg.size() - 2 - last_sos);
  std::string many = jpeg.substr(0, jpeg.size() - 2);
  for (int i = 0; i < 1000; ++i) many += scan;
  many += "\xff\xd9";
  ExpectError(DecodeImage(Bytes(many)), StatusCode::kCorruption, "more than 1000 progressive scans");
}

TEST(ReadImageFileTest, ReadsTheFixtureAndNamesMissingFiles) {
  auto image = ReadImageFile(herd::testing::SharedPath("fixtures/llama4-tiny-vision/image_a_80x40.png"));
  ASSERT_TRUE(image.ok()) << image.status().ToString();
  EXPECT_EQ(image->width, 80);
  EXPECT_EQ(image->height, 40);
  const std::string dir = herd::testing::TempDir("read-image");
  auto missing = ReadImageFile(dir + "/missing.png");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find(dir + "/missing.png"), std::string::npos) << missing.status().ToString();
  herd::testing::WriteBytes(dir + "/text.png", "hello");
  auto text = ReadImageFile(dir + "/text.png");
  ASSERT_FALSE(text.ok());
  EXPECT_EQ(text.status().message(), dir + "/text.png: not a PNG or JPEG image (it starts with bytes 68 65 6c 6c 6f)");
}

}  // namespace
}  // namespace herd::vision
