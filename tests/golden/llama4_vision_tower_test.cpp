// Golden tests of the Llama 4 vision tower (model/vision.h, llama4.md 9.3-9.6) against
// shared/fixtures/llama4-tiny-vision: outputs of Meta's reference in fp32, identical in HF. Image A's three tiles
// (two local, the global view) and image B's one tile go through the tower as one batch of four; the encoder output
// (after layernorm_post, class token dropped) [4, 36, 32], the adapter output [4, 9, 48] and the projected rows
// [36, 64] must match within the fixture's 1e-5 (absolute).
// Each case loads the tower from the F32 or the BF16 safetensors of the HF directory, or from the mmproj GGUF that
// formats::WriteMmproj writes of it, which must give bit-identical outputs. The BF16 file holds exactly the F32
// file's values (every fixture weight is a bf16 number, checked below) and activations stay f32, so BF16 weights
// change only the order of f32 roundings inside the kernels, not the values multiplied: the F32 tolerance applies.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>

#include "formats/vision_files.h"
#include "kernels/matmul.h"
#include "model/vision.h"
#include "test_util.h"

namespace herd {
namespace {

namespace fs = std::filesystem;
using testing::NpyArray;
using testing::ReadNpy;

struct Case {
  std::string weights;  // model.safetensors | model.bf16.safetensors
  bool mmproj = false;  // through the mmproj GGUF written of the HF tower
};

std::string CaseName(const ::testing::TestParamInfo<Case>& info) {
  return std::string(info.param.weights == "model.safetensors" ? "F32" : "BF16") + (info.param.mmproj ? "_mmproj" : "");
}

void PrintTo(const Case& c, std::ostream* os) { *os << c.weights << (c.mmproj ? " via WriteMmproj" : ""); }

std::string Fixture() { return testing::SharedPath("fixtures/llama4-tiny-vision"); }

// The HF directory of a case: the fixture itself, or a directory whose model.safetensors is the BF16 file.
std::string HfDir(const std::string& weights) {
  if (weights == "model.safetensors") return Fixture();
  static const std::string dir = [&] {
    const std::string d = testing::ScratchDir("vision-bf16");
    fs::create_symlink(Fixture() + "/config.json", d + "/config.json");
    fs::create_symlink(Fixture() + "/" + weights, d + "/model.safetensors");
    return d;
  }();
  return dir;
}

struct Loaded {
  formats::VisionFiles files;
  std::unique_ptr<model::VisionTower> tower;
};

Loaded Load(const std::string& path) {
  Loaded l;
  auto files = formats::OpenVisionFiles(path);
  EXPECT_TRUE(files.ok()) << files.status().ToString();
  if (!files.ok()) return l;
  l.files = std::move(files).value();
  auto tower = model::LoadVisionTower(l.files.metadata, l.files.weights);
  EXPECT_TRUE(tower.ok()) << tower.status().ToString();
  if (tower.ok()) l.tower = std::move(tower).value();
  return l;
}

// The tower of a case; for an mmproj case, the HF tower is written with WriteMmproj (once per process) and read back.
Loaded LoadCase(const Case& c) {
  Loaded hf = Load(HfDir(c.weights));
  if (!c.mmproj || hf.tower == nullptr) return hf;
  static std::map<std::string, std::string> written;
  auto it = written.find(c.weights);
  if (it == written.end()) {
    const std::string path = testing::ScratchDir("vision-mmproj-" + c.weights) + "/mmproj.gguf";
    const Status s = formats::WriteMmproj(model::MetadataFromVisionConfig(hf.tower->config()), hf.tower->weights(),
                                          path, hf.files.sources);
    EXPECT_TRUE(s.ok()) << s.ToString();
    it = written.emplace(c.weights, path).first;
  }
  return Load(it->second);
}

// Image A's tiles, then image B's: [4, 3, 48, 48].
std::vector<float> Pixels() {
  const NpyArray a = ReadNpy(Fixture() + "/pixel_values_image_a.npy");
  const NpyArray b = ReadNpy(Fixture() + "/pixel_values_image_b.npy");
  EXPECT_EQ(a.shape, (std::vector<int64_t>{3, 3, 48, 48}));
  EXPECT_EQ(b.shape, (std::vector<int64_t>{1, 3, 48, 48}));
  std::vector<float> px = a.f32;
  px.insert(px.end(), b.f32.begin(), b.f32.end());
  return px;
}

struct Outputs {
  std::vector<float> projected;
  model::VisionTrace trace;
};

Outputs Encode(const model::VisionTower& tower, const std::vector<float>& pixels, int64_t n_tiles, ThreadPool& pool) {
  Outputs o;
  o.projected.resize(static_cast<size_t>(n_tiles * tower.TokensPerTile() * tower.OutputDim()));
  const Status s = tower.Encode(pixels.data(), n_tiles, o.projected.data(), pool, &o.trace);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return o;
}

// Max |got - want| and the first index over `tol`, printed on failure.
void ExpectClose(const std::vector<float>& got, const NpyArray& want, double tol, const char* what) {
  ASSERT_EQ(static_cast<int64_t>(got.size()), want.size()) << what;
  double worst = 0;
  int64_t first_bad = -1;
  for (size_t i = 0; i < got.size(); ++i) {
    const double e = std::fabs(static_cast<double>(got[i]) - want.f32[i]);
    if (!(e <= worst)) worst = e;  // NaN-propagating
    if (!(e <= tol) && first_bad < 0) first_bad = static_cast<int64_t>(i);
  }
  EXPECT_LT(first_bad, 0) << what << ": max |diff| " << worst << " > " << tol << ", first at " << first_bad;
}

bool SameBits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

class Llama4VisionTowerTest : public ::testing::TestWithParam<Case> {};

INSTANTIATE_TEST_SUITE_P(Weights, Llama4VisionTowerTest,
                         ::testing::Values(Case{"model.safetensors"}, Case{"model.bf16.safetensors"},
                                           Case{"model.safetensors", true}, Case{"model.bf16.safetensors", true}),
                         CaseName);

TEST_P(Llama4VisionTowerTest, MatchesMetaReference) {
  const Loaded l = LoadCase(GetParam());
  ASSERT_NE(l.tower, nullptr);
  const model::VisionTower& tower = *l.tower;
  EXPECT_EQ(tower.TileSize(), 48);
  EXPECT_EQ(tower.TokensPerTile(), 9);
  EXPECT_EQ(tower.OutputDim(), 64);
  const DType want_type = GetParam().weights == "model.safetensors" ? DType::kF32 : DType::kBF16;
  EXPECT_EQ(tower.weights().Find("v.blk.0.attn_q.weight")->dtype, want_type);

  ThreadPool pool(2);
  const Outputs got = Encode(tower, Pixels(), 4, pool);
  const NpyArray encoder = ReadNpy(Fixture() + "/vision_encoder_out_img_ab.npy");
  const NpyArray adapter = ReadNpy(Fixture() + "/vision_adapter_out_img_ab.npy");
  const NpyArray projected = ReadNpy(Fixture() + "/vision_projected_img_ab.npy");
  EXPECT_EQ(encoder.shape, (std::vector<int64_t>{4, 36, 32}));
  EXPECT_EQ(adapter.shape, (std::vector<int64_t>{4, 9, 48}));
  EXPECT_EQ(projected.shape, (std::vector<int64_t>{36, 64}));
  ExpectClose(got.trace.encoder, encoder, 1e-5, "encoder output");
  ExpectClose(got.trace.adapter, adapter, 1e-5, "adapter output");
  ExpectClose(got.projected, projected, 1e-5, "projected rows");

  if (GetParam().mmproj) {  // the file round trip changes nothing: same config, same weights, same bits
    const Loaded hf = LoadCase(Case{GetParam().weights, false});
    ASSERT_NE(hf.tower, nullptr);
    EXPECT_EQ(tower.config(), hf.tower->config());
    const Outputs direct = Encode(*hf.tower, Pixels(), 4, pool);
    EXPECT_TRUE(SameBits(got.projected, direct.projected));
    EXPECT_TRUE(SameBits(got.trace.encoder, direct.trace.encoder));
    EXPECT_TRUE(SameBits(got.trace.adapter, direct.trace.adapter));
  }
}

// Each image's tiles give the same bits alone as in the batch of both (the kernels are batch invariant).
TEST_P(Llama4VisionTowerTest, ImagesAloneEqualTheBatch) {
  const Loaded l = LoadCase(GetParam());
  ASSERT_NE(l.tower, nullptr);
  ThreadPool pool(2);
  const std::vector<float> px = Pixels();
  const Outputs both = Encode(*l.tower, px, 4, pool);
  const size_t tile = 3 * 48 * 48, rows = 9 * 64;
  const Outputs a = Encode(*l.tower, std::vector<float>(px.begin(), px.begin() + 3 * tile), 3, pool);
  const Outputs b = Encode(*l.tower, std::vector<float>(px.begin() + 3 * tile, px.end()), 1, pool);
  EXPECT_TRUE(SameBits(a.projected, std::vector<float>(both.projected.begin(), both.projected.begin() + 3 * rows)));
  EXPECT_TRUE(SameBits(b.projected, std::vector<float>(both.projected.begin() + 3 * rows, both.projected.end())));
}

// The premise of the BF16 tolerance: the BF16 file's vision weights are the F32 file's values exactly.
TEST(Llama4VisionTowerFixture, Bf16FileHoldsTheF32Values) {
  const Loaded f32 = Load(HfDir("model.safetensors"));
  const Loaded bf16 = Load(HfDir("model.bf16.safetensors"));
  ASSERT_EQ(f32.files.weights.size(), bf16.files.weights.size());
  for (const auto& [name, view] : f32.files.weights.tensors()) {
    const TensorView* other = bf16.files.weights.Find(name);
    ASSERT_NE(other, nullptr) << name;
    ASSERT_EQ(other->dtype, DType::kBF16) << name;
    ASSERT_EQ(other->n_dims, view.n_dims) << name;
    ASSERT_EQ(other->shape, view.shape) << name;
    std::vector<float> a(static_cast<size_t>(view.Cols())), b(a.size());
    for (int64_t r = 0; r < view.Rows(); ++r) {
      kernels::DequantizeRow(view, r, a.data());
      kernels::DequantizeRow(*other, r, b.data());
      ASSERT_TRUE(SameBits(a, b)) << name << " row " << r;
    }
  }
}

}  // namespace
}  // namespace herd
