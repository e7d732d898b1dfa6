// Tests of the Llama 4 image preprocessing: the fixture llama4-tiny-vision (Meta's pixel_values and token layouts,
// exactly), ResizeBilinear against Pillow 9.4 on random sizes (byte for byte), BestCanvas and ResizeTarget against
// the worked examples of llama4.md 9.2, and the layout of tiles, padding and global view.
#include "vision/preprocess.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "test_util.h"
#include "vision/image.h"
#include "vision/vision_test_util.h"

namespace herd::vision {
namespace {

using herd::vision::testing::CompareBytes;
using herd::vision::testing::RunPillow;

Image RandomImage(int64_t width, int64_t height, std::mt19937& rng) {
  Image image{.width = width, .height = height, .rgb = std::vector<uint8_t>(width * height * 3)};
  for (uint8_t& v : image.rgb) v = static_cast<uint8_t>(rng());
  return image;
}

float Normalized(uint8_t v) { return (static_cast<float>(v) / 255.0f - 0.5f) / 0.5f; }

// ---- Golden: Meta's preprocessing of the fixture images -------------------------------------------------------

std::string FixturePath(const std::string& name) {
  return herd::testing::SharedPath("fixtures/llama4-tiny-vision/" + name);
}

// Patches per tile from the fixture's vision_config, as Meta's _encode_image computes it.
int64_t FixturePatchesPerTile() {
  const auto config = herd::testing::ReadJson(FixturePath("config.json"))["vision_config"];
  const int64_t side = config["image_size"].get<int64_t>() / config["patch_size"].get<int64_t>();
  const double ratio = config["pixel_shuffle_ratio"].get<double>();
  return side * side / static_cast<int64_t>(std::lround(1.0 / (ratio * ratio)));
}

ImageTokenIds FixtureTokenIds() {
  const auto special = herd::testing::ReadJson(FixturePath("inputs.json"))["special_tokens"];
  return ImageTokenIds{.image_start = special["image_start"],
                       .image = special["image"],
                       .patch = special["patch"],
                       .tile_x_sep = special["tile_x_separator"],
                       .tile_y_sep = special["tile_y_separator"],
                       .image_end = special["image_end"]};
}

void ExpectFixtureImage(const std::string& key) {
  const auto expected = herd::testing::ReadJson(FixturePath("expected.json"))["preprocessing"][key];
  const int64_t max_chunks = herd::testing::ReadJson(FixturePath("inputs.json"))["max_num_chunks"];
  const int64_t tile_size = herd::testing::ReadJson(FixturePath("config.json"))["vision_config"]["image_size"];
  auto image = ReadImageFile(FixturePath(expected["png"]));
  ASSERT_TRUE(image.ok()) << image.status().ToString();
  EXPECT_EQ(image->width, expected["size_wh"][0]);
  EXPECT_EQ(image->height, expected["size_wh"][1]);
  auto p = Preprocess(*image, tile_size, max_chunks);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->grid.rows, expected["aspect_ratio_tiles_hw"][0]);
  EXPECT_EQ(p->grid.cols, expected["aspect_ratio_tiles_hw"][1]);
  EXPECT_EQ(p->has_global, expected["global_tile_appended"]);
  EXPECT_EQ(p->n_tiles, expected["num_local_tiles"].get<int64_t>() + (p->has_global ? 1 : 0));

  const herd::testing::NpyArray pixels = herd::testing::ReadNpy(FixturePath(expected["pixel_values_file"]));
  EXPECT_EQ(pixels.shape, (std::vector<int64_t>{p->n_tiles, 3, tile_size, tile_size}));
  ASSERT_EQ(p->pixels.size(), pixels.f32.size());
  int64_t n_diff = 0, first_idx = -1;
  float max_abs = 0.0f;
  for (size_t i = 0; i < pixels.f32.size(); ++i) {
    if (p->pixels[i] == pixels.f32[i]) continue;
    if (first_idx < 0) first_idx = static_cast<int64_t>(i);
    ++n_diff;
    max_abs = std::max(max_abs, std::abs(p->pixels[i] - pixels.f32[i]));
  }
  EXPECT_EQ(n_diff, 0) << n_diff << " of " << pixels.f32.size() << " values differ from Meta's, the first at index "
                       << first_idx << ", max |diff| " << max_abs << " (one 8-bit level is " << 2.0f / 255.0f << ")";

  const std::vector<int32_t> tokens = ImageTokens(p->grid, FixturePatchesPerTile(), FixtureTokenIds());
  EXPECT_EQ(tokens, expected["image_tokens"].get<std::vector<int32_t>>());
}

TEST(GoldenPreprocessTest, ImageAMatchesMetaExactly) { ExpectFixtureImage("image_a"); }
TEST(GoldenPreprocessTest, ImageBMatchesMetaExactly) { ExpectFixtureImage("image_b"); }

TEST(GoldenPreprocessTest, PromptsHoldTheImageTokens) {
  // Each prompt of inputs.json contains its images' token runs, in order.
  const auto inputs = herd::testing::ReadJson(FixturePath("inputs.json"));
  const auto expected = herd::testing::ReadJson(FixturePath("expected.json"))["preprocessing"];
  for (const auto& [name, prompt] : inputs["prompts"].items()) {
    SCOPED_TRACE(name);
    const auto tokens = prompt["tokens"].get<std::vector<int32_t>>();
    auto from = tokens.begin();
    for (const auto& image : prompt["images"]) {
      const auto run = expected[image.get<std::string>()]["image_tokens"].get<std::vector<int32_t>>();
      from = std::search(from, tokens.end(), run.begin(), run.end());
      ASSERT_NE(from, tokens.end()) << image;
      from += static_cast<std::ptrdiff_t>(run.size());
    }
  }
}

// ---- ResizeBilinear against Pillow ----------------------------------------------------------------------------

// For each line "SRC.ppm WIDTH HEIGHT OUT" of the job file: Image.open(SRC).resize((WIDTH, HEIGHT), BILINEAR)
// written as raw RGB to OUT.
constexpr const char* kPillowResize = R"(
import sys
from PIL import Image
bilinear = getattr(Image, "Resampling", Image).BILINEAR
for line in open(sys.argv[1]).read().splitlines():
    src, width, height, out = line.split(" ")
    with open(out, "wb") as f:
        f.write(Image.open(src).resize((int(width), int(height)), bilinear).tobytes())
)";

void WritePpm(const std::string& path, const Image& image) {
  std::string bytes = "P6\n" + std::to_string(image.width) + " " + std::to_string(image.height) + "\n255\n";
  bytes.append(image.rgb.begin(), image.rgb.end());
  herd::testing::WriteBytes(path, bytes);
}

TEST(ResizeTest, MatchesPillowBytewise) {
  struct Case {
    int64_t src_w, src_h, dst_w, dst_h;
  };
  std::vector<Case> cases = {
      {1, 1, 1, 1},        {1, 1, 5, 7},       {7, 5, 1, 1},       {1, 100, 1, 3},       {100, 1, 3, 1},
      {3, 1, 100, 1},      {1, 3, 1, 100},     {997, 13, 3, 640},  {2, 3, 400, 300},     {640, 480, 336, 252},
      {80, 40, 48, 24},    {80, 40, 96, 48},   {80, 40, 48, 48},   {48, 48, 48, 48},     {300, 200, 300, 77},
      {300, 200, 41, 200}, {1000, 1000, 1, 1}, {5, 900, 336, 336}, {333, 337, 336, 336}, {17, 1, 1, 17},
  };
  const uint32_t seed = 20240611;
  std::mt19937 rng(seed);
  auto size = [&](int64_t max) { return 1 + static_cast<int64_t>(rng() % max); };
  while (cases.size() < 32) cases.push_back({size(300), size(300), size(400), size(400)});

  const std::string dir = herd::testing::TempDir("resize-oracle");
  std::string jobs;
  std::vector<Image> sources;
  for (size_t i = 0; i < cases.size(); ++i) {
    sources.push_back(RandomImage(cases[i].src_w, cases[i].src_h, rng));
    const std::string src = dir + "/src" + std::to_string(i) + ".ppm";
    WritePpm(src, sources.back());
    jobs += src + " " + std::to_string(cases[i].dst_w) + " " + std::to_string(cases[i].dst_h) + " " + dir + "/out" +
            std::to_string(i) + ".rgb\n";
  }
  herd::testing::WriteBytes(dir + "/jobs.txt", jobs);
  RunPillow(kPillowResize, {dir + "/jobs.txt"});
  for (size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    SCOPED_TRACE(std::to_string(c.src_w) + "x" + std::to_string(c.src_h) + " -> " + std::to_string(c.dst_w) + "x" +
                 std::to_string(c.dst_h) + " (seed " + std::to_string(seed) + ", case " + std::to_string(i) + ")");
    const Image out = ResizeBilinear(sources[i], c.dst_w, c.dst_h);
    EXPECT_EQ(out.width, c.dst_w);
    EXPECT_EQ(out.height, c.dst_h);
    const std::string expected = herd::testing::ReadText(dir + "/out" + std::to_string(i) + ".rgb");
    ASSERT_EQ(out.rgb.size(), expected.size());
    const auto diff = CompareBytes(out.rgb, expected);
    EXPECT_EQ(diff.n_diff, 0) << diff.n_diff << " of " << expected.size()
                              << " bytes differ from Pillow's, the first at " << diff.first_idx << ", by up to "
                              << diff.max_abs;
  }
}

TEST(ResizeTest, EqualSizeIsACopyAndFlatStaysFlat) {
  std::mt19937 rng(5);
  const Image src = RandomImage(9, 4, rng);
  EXPECT_EQ(ResizeBilinear(src, 9, 4).rgb, src.rgb);
  const Image flat{.width = 7, .height = 3, .rgb = std::vector<uint8_t>(7 * 3 * 3, 201)};
  for (const auto& [w, h] : std::vector<std::pair<int64_t, int64_t>>{{1, 1}, {50, 2}, {3, 90}, {7, 100}}) {
    const Image out = ResizeBilinear(flat, w, h);
    EXPECT_EQ(out.rgb, std::vector<uint8_t>(w * h * 3, 201)) << w << "x" << h;
  }
}

TEST(ResizeTest, TallThinImageToATile) {
  // A 1-pixel-wide column of 2^16 rows to 48 x 48: a downscale by 1365 in the streamed vertical pass.
  Image src{.width = 1, .height = 1 << 16, .rgb = std::vector<uint8_t>(3 << 16)};
  for (int64_t y = 0; y < src.height; ++y) src.rgb[y * 3] = static_cast<uint8_t>(y * 255 / (src.height - 1));
  const Image out = ResizeBilinear(src, 48, 48);
  for (int64_t y = 0; y < 48; ++y) {
    const int expected = static_cast<int>(std::lround((y + 0.5) / 48 * 255));
    EXPECT_NEAR(out.rgb[(y * 48 + 17) * 3], expected, 1) << "row " << y;
    EXPECT_EQ(out.rgb[(y * 48 + 17) * 3 + 1], 0);
  }
}

// ---- BestCanvas and ResizeTarget against llama4.md 9.2 ---------------------------------------------------------

TEST(BestCanvasTest, WorkedExamplesOfTheSpec) {
  struct Row {
    int64_t width, height;         // the image
    int64_t rows, cols;            // the grid
    int64_t resized_h, resized_w;  // the resize target
    int64_t n_tiles, n_tokens;
  };
  // llama4.md 9.2's table (tile 336, max_num_chunks 16); canvas = grid x 336.
  const std::vector<Row> table = {
      {336, 336, 1, 1, 336, 336, 1, 147},      {100, 100, 1, 1, 336, 336, 1, 147},
      {672, 336, 1, 2, 336, 672, 3, 437},      {337, 336, 1, 2, 336, 337, 3, 437},
      {800, 600, 2, 3, 600, 800, 7, 1017},     {600, 800, 3, 2, 800, 600, 7, 1017},
      {300, 800, 3, 1, 800, 300, 4, 582},      {1024, 768, 3, 4, 768, 1024, 13, 1887},
      {1920, 1080, 3, 5, 945, 1680, 16, 2322}, {2000, 2000, 4, 4, 1344, 1344, 17, 2467},
      {4000, 100, 1, 12, 100, 4000, 13, 1887},
  };
  const ImageTokenIds ids{.image_start = 1, .image = 2, .patch = 3, .tile_x_sep = 4, .tile_y_sep = 5, .image_end = 6};
  for (const Row& r : table) {
    SCOPED_TRACE(std::to_string(r.width) + "x" + std::to_string(r.height));
    const TileGrid grid = BestCanvas(r.width, r.height, 336, 16);
    EXPECT_EQ(grid, (TileGrid{.rows = r.rows, .cols = r.cols}));
    EXPECT_EQ(ResizeTarget(r.width, r.height, grid, 336), (ImageSize{.width = r.resized_w, .height = r.resized_h}));
    const int64_t n_local = grid.rows * grid.cols;
    EXPECT_EQ(n_local + (n_local > 1 ? 1 : 0), r.n_tiles);
    EXPECT_EQ(static_cast<int64_t>(ImageTokens(grid, 144, ids).size()), r.n_tokens);
  }
}

TEST(BestCanvasTest, FixtureSizesAndExtremes) {
  EXPECT_EQ(BestCanvas(80, 40, 48, 4), (TileGrid{.rows = 1, .cols = 2}));
  EXPECT_EQ(ResizeTarget(80, 40, TileGrid{.rows = 1, .cols = 2}, 48), (ImageSize{.width = 80, .height = 40}));
  EXPECT_EQ(BestCanvas(48, 48, 48, 4), (TileGrid{.rows = 1, .cols = 1}));
  EXPECT_EQ(BestCanvas(1, 1, 336, 16), (TileGrid{.rows = 1, .cols = 1}));
  // Far beyond 16:1 the widest canvas wins and the short side shrinks to one pixel at least.
  EXPECT_EQ(BestCanvas(100000, 1, 336, 16), (TileGrid{.rows = 1, .cols = 16}));
  EXPECT_EQ(ResizeTarget(100000, 1, TileGrid{.rows = 1, .cols = 16}, 336), (ImageSize{.width = 16 * 336, .height = 1}));
  EXPECT_EQ(BestCanvas(1, 100000, 336, 16), (TileGrid{.rows = 16, .cols = 1}));
}

// ---- Preprocess layout -----------------------------------------------------------------------------------------

// Checks every value of Preprocess(image, 48, 4) against the resized image, cut row-major into tiles, padded with
// black (-1), followed by the global view when there are several tiles.
void ExpectLayout(const Image& image, const TileGrid& grid, const ImageSize& resized_size) {
  constexpr int64_t kTile = 48;
  auto p = Preprocess(image, kTile, 4);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  ASSERT_EQ(p->grid, grid);
  ASSERT_EQ(ResizeTarget(image.width, image.height, grid, kTile), resized_size);
  const int64_t n_local = grid.rows * grid.cols;
  ASSERT_EQ(p->has_global, n_local > 1);
  ASSERT_EQ(p->n_tiles, n_local + (n_local > 1 ? 1 : 0));
  ASSERT_EQ(p->pixels.size(), static_cast<size_t>(p->n_tiles * 3 * kTile * kTile));
  const Image resized = ResizeBilinear(image, resized_size.width, resized_size.height);
  auto at = [&](int64_t tile, int64_t c, int64_t y, int64_t x) {
    return p->pixels[((tile * 3 + c) * kTile + y) * kTile + x];
  };
  for (int64_t tile = 0; tile < n_local; ++tile) {
    for (int64_t c = 0; c < 3; ++c) {
      for (int64_t y = 0; y < kTile; ++y) {
        for (int64_t x = 0; x < kTile; ++x) {
          const int64_t cy = tile / grid.cols * kTile + y, cx = tile % grid.cols * kTile + x;
          const bool inside = cy < resized.height && cx < resized.width;
          const float expected = inside ? Normalized(resized.rgb[(cy * resized.width + cx) * 3 + c]) : -1.0f;
          ASSERT_EQ(at(tile, c, y, x), expected) << "tile " << tile << " channel " << c << " y " << y << " x " << x;
        }
      }
    }
  }
  if (!p->has_global) return;
  const Image global = ResizeBilinear(image, kTile, kTile);
  for (int64_t c = 0; c < 3; ++c) {
    for (int64_t i = 0; i < kTile * kTile; ++i) {
      ASSERT_EQ(at(n_local, c, i / kTile, i % kTile), Normalized(global.rgb[i * 3 + c])) << "global view";
    }
  }
}

TEST(PreprocessTest, TilesAreRowMajorWithBlackPaddingThenTheGlobalView) {
  std::mt19937 rng(3);
  // Canvas 1 x 3 (scale 1.44); not resized (no upscaling past the tile), padded right and below.
  ExpectLayout(RandomImage(100, 30, rng), TileGrid{.rows = 1, .cols = 3}, ImageSize{.width = 100, .height = 30});
  // No canvas fits: the least downscaling (0.8, canvas 1 x 4) gives 160 x 48, padded right.
  ExpectLayout(RandomImage(200, 60, rng), TileGrid{.rows = 1, .cols = 4}, ImageSize{.width = 160, .height = 48});
  // Canvas 2 x 1 for a tall image.
  ExpectLayout(RandomImage(20, 70, rng), TileGrid{.rows = 2, .cols = 1}, ImageSize{.width = 20, .height = 70});
  // One tile, upscaled until the long side fills it; no global view.
  ExpectLayout(RandomImage(10, 30, rng), TileGrid{.rows = 1, .cols = 1}, ImageSize{.width = 16, .height = 48});
}

TEST(PreprocessTest, RejectsBadArguments) {
  std::mt19937 rng(6);
  const Image image = RandomImage(4, 4, rng);
  for (const auto& [tile, chunks] :
       std::vector<std::pair<int64_t, int64_t>>{{0, 4}, {48, 0}, {-1, 4}, {1 << 20, 1}, {336, 1 << 20}, {1, 1025}}) {
    auto p = Preprocess(image, tile, chunks);
    ASSERT_FALSE(p.ok()) << tile << " " << chunks;
    EXPECT_EQ(p.status().code(), StatusCode::kInvalidArgument);
  }
  // A 1 x 2^20 column: the 336-wide global view would filter 336 x 2^20 intermediate pixels.
  const Image column{.width = 1, .height = 1 << 20, .rgb = std::vector<uint8_t>(3 << 20)};
  auto tall = Preprocess(column, 336, 16);
  ASSERT_FALSE(tall.ok());
  EXPECT_EQ(tall.status().message(),
            "image of 1x1048576 pixels is too tall for its width: resizing it to 336 columns would filter 352321536 "
            "intermediate pixels, more than 2^28");
  const Image short_column{.width = 1, .height = 1 << 12, .rgb = std::vector<uint8_t>(3 << 12)};
  EXPECT_TRUE(Preprocess(short_column, 336, 16).ok());
  Image broken = image;
  broken.rgb.pop_back();
  auto p = Preprocess(broken, 48, 4);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().ToString(), "Invalid argument: image of 4x4 pixels with 47 bytes of RGB: not a valid image");
  EXPECT_FALSE(Preprocess(Image{}, 48, 4).ok());
}

// ---- Token layout ----------------------------------------------------------------------------------------------

TEST(ImageTokensTest, SingleTileAndGrid) {
  const ImageTokenIds ids{
      .image_start = 10, .image = 11, .patch = 12, .tile_x_sep = 13, .tile_y_sep = 14, .image_end = 15};
  EXPECT_EQ(ImageTokens(TileGrid{}, 2, ids), (std::vector<int32_t>{10, 11, 12, 12, 15}));
  // 2 x 3 (llama4.md 8.4's example, with 1 patch per tile): [T T-sep T T-sep T] y-sep, twice, then the global view.
  EXPECT_EQ(ImageTokens(TileGrid{.rows = 2, .cols = 3}, 1, ids),
            (std::vector<int32_t>{10, 12, 13, 12, 13, 12, 14, 12, 13, 12, 13, 12, 14, 11, 12, 15}));
  EXPECT_EQ(ImageTokens(TileGrid{.rows = 2, .cols = 3}, 144, ids).size(), 145u * 6 + 147);
}

}  // namespace
}  // namespace herd::vision
