// Tests of the vision tower (model/vision.h) on synthetic towers with random weights: the config from metadata (every
// rule of Validate, errors naming the key and its origin), binding errors naming the tensor, Encode against a plain
// double-precision forward written from llama4.md 9.3-9.6 (for pixel-shuffle factors 1, 2 and 3 and weights in F32,
// F16, BF16 and Q8_0), batch and thread-count invariance, and the patch embedding stored as a conv kernel. The real
// numbers are pinned by tests/golden/llama4_vision_tower_test.cpp (Meta's fixture).
#include "model/vision.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "kernels/quantize.h"

namespace herd::model {
namespace {

// Metadata of a tower as formats/vision_files.h spells it (the tiny fixture's sizes unless changed).
ModelMetadata FixtureMetadata() {
  ModelMetadata md("config.json");
  const auto set = [&](const char* key, ModelMetadata::Value v) {
    md.Set(key, std::move(v), std::string("vision_config.") + key);
  };
  set("model_type", std::string("llama4_vision_model"));
  set("image_size", int64_t{48});
  set("patch_size", int64_t{8});
  set("hidden_size", int64_t{32});
  set("intermediate_size", int64_t{128});
  set("num_hidden_layers", int64_t{2});
  set("num_attention_heads", int64_t{2});
  set("norm_eps", 1e-5);
  set("rope_theta", int64_t{10000});
  set("pixel_shuffle_ratio", 0.5);
  set("hidden_act", std::string("gelu"));
  set("projector_input_dim", int64_t{48});
  set("projector_output_dim", int64_t{48});
  set("vision_output_dim", int64_t{48});
  md.Set("text_hidden_size", int64_t{64}, "text_config.hidden_size");
  return md;
}

TEST(VisionConfigTest, FromMetadata) {
  auto c = VisionConfigFromMetadata(FixtureMetadata());
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->GridSize(), 6);
  EXPECT_EQ(c->head_dim, 16);
  EXPECT_EQ(c->PixelShuffleFactor(), 2);
  EXPECT_EQ(c->TokensPerTile(), 9);
  EXPECT_EQ(c->num_channels, 3);
  EXPECT_EQ(c->rope_theta, 10000.0f);
  EXPECT_EQ(c->text_hidden_size, 64);
  // Scout / Maverick (llama4.md section 3): 144 tokens per tile, head_dim 88.
  ModelMetadata scout = FixtureMetadata();
  for (auto [key, v] : {std::pair<const char*, int64_t>{"image_size", 336},
                        {"patch_size", 14},
                        {"hidden_size", 1408},
                        {"intermediate_size", 5632},
                        {"num_hidden_layers", 34},
                        {"num_attention_heads", 16},
                        {"projector_input_dim", 4096},
                        {"projector_output_dim", 4096},
                        {"vision_output_dim", 4096},
                        {"text_hidden_size", 5120}}) {
    scout.Set(key, v);
  }
  auto s = VisionConfigFromMetadata(scout);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->TokensPerTile(), 144);
  EXPECT_EQ(s->head_dim, 88);
  EXPECT_NE(s->Describe().find("0.5 (144 tokens per tile)"), std::string::npos) << s->Describe();
  // Back and forth through metadata.
  auto again = VisionConfigFromMetadata(MetadataFromVisionConfig(*s));
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(*again, *s);
}

// Each damaged field gives an error of `code` whose message names `want` (the field and its origin).
TEST(VisionConfigTest, ErrorsNameTheKey) {
  struct Damage {
    const char* key;
    ModelMetadata::Value value;  // Null: erase the key
    StatusCode code;
    const char* want;
  };
  const Damage cases[] = {
      {"image_size", ModelMetadata::Null{}, StatusCode::kCorruption, "'image_size'"},
      {"norm_eps", ModelMetadata::Null{}, StatusCode::kCorruption, "'norm_eps'"},
      {"text_hidden_size", ModelMetadata::Null{}, StatusCode::kCorruption, "'text_hidden_size'"},
      {"image_size", int64_t{50}, StatusCode::kCorruption, "image_size (vision_config.image_size in config.json)"},
      {"patch_size", int64_t{0}, StatusCode::kCorruption, "vision_config.patch_size"},
      {"num_attention_heads", int64_t{3}, StatusCode::kCorruption, "vision_config.num_attention_heads"},
      {"pixel_shuffle_ratio", 0.3, StatusCode::kCorruption, "vision_config.pixel_shuffle_ratio"},
      {"pixel_shuffle_ratio", 0.25, StatusCode::kCorruption, "divides the 6 patches"},
      {"intermediate_size", int64_t{96}, StatusCode::kCorruption, "vision_config.intermediate_size"},
      {"projector_output_dim", int64_t{40}, StatusCode::kCorruption, "vision_config.projector_output_dim"},
      {"vision_output_dim", int64_t{40}, StatusCode::kCorruption, "vision_config.vision_output_dim"},
      {"norm_eps", -1.0, StatusCode::kCorruption, "vision_config.norm_eps"},
      {"rope_theta", 0.0, StatusCode::kCorruption, "vision_config.rope_theta"},
      {"hidden_size", std::string("big"), StatusCode::kCorruption, "vision_config.hidden_size"},
      {"num_channels", int64_t{4}, StatusCode::kCorruption, "vision_config.num_channels"},
      {"hidden_act", std::string("gelu_pytorch_tanh"), StatusCode::kNotSupported, "vision_config.hidden_act"},
      {"model_type", std::string("siglip_vision_model"), StatusCode::kNotSupported, "siglip_vision_model"},
      {"num_hidden_layers", int64_t{100000}, StatusCode::kCorruption, "vision_config.num_hidden_layers"},
  };
  for (const Damage& dmg : cases) {
    SCOPED_TRACE(std::string(dmg.key) + " = " + ModelMetadata::ToString(dmg.value));
    ModelMetadata md = FixtureMetadata();
    if (std::holds_alternative<ModelMetadata::Null>(dmg.value)) {
      md.Erase(dmg.key);
    } else {
      md.Set(dmg.key, dmg.value, std::string("vision_config.") + dmg.key);
    }
    auto c = VisionConfigFromMetadata(md);
    ASSERT_FALSE(c.ok());
    EXPECT_EQ(c.status().code(), dmg.code) << c.status().ToString();
    EXPECT_NE(c.status().message().find(dmg.want), std::string::npos) << c.status().ToString();
  }
  // head_dim 24 / 4 = 6: the 2-D RoPE splits each head's pairs evenly between columns and rows.
  ModelMetadata md = FixtureMetadata();
  md.Set("hidden_size", int64_t{24}, "vision_config.hidden_size");
  md.Set("intermediate_size", int64_t{96}, "vision_config.intermediate_size");
  md.Set("num_attention_heads", int64_t{4}, "vision_config.num_attention_heads");
  auto c = VisionConfigFromMetadata(md);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("multiple of 4"), std::string::npos) << c.status().ToString();
  EXPECT_NE(c.status().message().find("vision_config.num_attention_heads"), std::string::npos);
}

// ---- synthetic towers ----------------------------------------------------------------------------------------

// A tower's weights in one dtype for its matrices (vectors stay F32), and the values they decode to.
struct Tower {
  VisionConfig config;
  WeightMap weights;
  std::map<std::string, std::vector<float>> values;
};

void AddTensor(Tower* t, const std::string& name, const std::vector<int64_t>& shape, DType type, float lo, float hi,
               std::mt19937_64& rng) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  const int64_t cols = shape.back(), rows = n / cols;
  // Rows that are not whole quantization blocks stay F32 (as herd quantize does).
  if (cols % Traits(type).block_size != 0) type = DType::kF32;
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = u(rng);
  const int64_t row_bytes = RowBytes(type, cols);
  auto bytes = std::make_shared<std::vector<uint8_t>>(static_cast<size_t>(rows * row_bytes));
  for (int64_t r = 0; r < rows; ++r) {
    kernels::QuantizeRow(type, v.data() + r * cols, cols, bytes->data() + r * row_bytes);
    kernels::DequantizeRow(type, bytes->data() + r * row_bytes, cols, v.data() + r * cols);
  }
  auto view = MakeTensorView(type, shape, bytes->data(), rows * row_bytes, "test");
  HERD_CHECK(view.ok());
  HERD_CHECK(t->weights.Add(name, *view).ok());
  t->weights.KeepAlive(bytes);
  t->values[name] = std::move(v);
}

VisionConfig SmallConfig(int64_t factor) {
  VisionConfig c;
  // Grids of 6 (factor 1: 36 tokens per tile), 4 (factor 2: 4 tokens) and 6 (factor 3: 4 tokens) patches per side.
  c.image_size = 12 * factor;
  c.patch_size = factor == 2 ? 6 : 2 * factor;
  c.hidden_size = 32;
  c.num_attention_heads = 4;
  c.head_dim = 8;
  c.intermediate_size = 32 * factor * factor;
  c.num_hidden_layers = 2;
  c.norm_eps = 1e-5f;
  c.rope_theta = 100.0f;
  c.pixel_shuffle_ratio = 1.0f / static_cast<float>(factor);
  c.projector_input_dim = c.projector_output_dim = c.vision_output_dim = 64;
  c.text_hidden_size = 40;
  return c;
}

Tower MakeTower(const VisionConfig& c, DType matrix_type, uint64_t seed) {
  Tower t;
  t.config = c;
  std::mt19937_64 rng(seed);
  const int64_t d = c.hidden_size, f = c.intermediate_size, k = 3 * c.patch_size * c.patch_size;
  const int64_t n_pos = c.GridSize() * c.GridSize() + 1;
  // Matrices scaled by 1.7 / sqrt(n_in) keep activations of order one through the layers.
  const auto matrix = [&](const std::string& name, int64_t rows, int64_t cols) {
    const float a = 1.7f / std::sqrt(static_cast<float>(cols));
    AddTensor(&t, name, {rows, cols}, matrix_type, -a, a, rng);
  };
  const auto vector = [&](const std::string& name, int64_t n, float lo, float hi) {
    AddTensor(&t, name, {n}, DType::kF32, lo, hi, rng);
  };
  matrix("v.patch_embd.weight", d, k);
  vector("v.class_embd", d, -1.0f, 1.0f);
  AddTensor(&t, "v.position_embd.weight", {n_pos, d}, DType::kF32, -1.0f, 1.0f, rng);
  for (const char* ln : {"v.pre_ln", "v.post_ln"}) {
    vector(std::string(ln) + ".weight", d, 0.5f, 1.5f);
    vector(std::string(ln) + ".bias", d, -0.2f, 0.2f);
  }
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const std::string n = "v.blk." + std::to_string(l) + ".";
    for (const char* ln : {"ln1", "ln2"}) {
      vector(n + ln + ".weight", d, 0.5f, 1.5f);
      vector(n + ln + ".bias", d, -0.2f, 0.2f);
    }
    for (const char* m : {"attn_q", "attn_k", "attn_v", "attn_out"}) {
      matrix(n + m + ".weight", d, d);
      vector(n + m + ".bias", d, -0.2f, 0.2f);
    }
    matrix(n + "ffn_up.weight", f, d);
    vector(n + "ffn_up.bias", f, -0.2f, 0.2f);
    matrix(n + "ffn_down.weight", d, f);
    vector(n + "ffn_down.bias", d, -0.2f, 0.2f);
  }
  matrix("mm.model.mlp.1.weight", c.projector_input_dim, f);
  matrix("mm.model.mlp.2.weight", c.projector_output_dim, c.projector_output_dim);
  matrix("mm.model.fc.weight", c.text_hidden_size, c.vision_output_dim);
  return t;
}

// The forward pass of llama4.md 9.3-9.6 in double, plainly, from the decoded weight values.
struct Reference {
  std::vector<double> encoder, adapter, out;
};
Reference ReferenceForward(const Tower& t, const std::vector<float>& pixels, int64_t n_tiles) {
  const VisionConfig& c = t.config;
  const auto& w = t.values;
  const int64_t s = c.image_size, p = c.patch_size, g = c.GridSize(), n_patches = g * g, n_pos = n_patches + 1;
  const int64_t d = c.hidden_size, hd = c.head_dim, f = c.intermediate_size, fac = c.PixelShuffleFactor();
  const int64_t k = 3 * p * p, og = g / fac;
  // y[o] = sum_i W[o, i] x[i] (+ b[o])
  const auto linear = [&](const std::string& name, const std::vector<double>& x, int64_t n_in, const char* bias) {
    const std::vector<float>& m = w.at(name);
    const int64_t n_out = static_cast<int64_t>(m.size()) / n_in;
    std::vector<double> y(static_cast<size_t>(n_out));
    for (int64_t o = 0; o < n_out; ++o) {
      double acc = bias != nullptr ? w.at(std::string(bias))[o] : 0.0;
      for (int64_t i = 0; i < n_in; ++i) acc += static_cast<double>(m[o * n_in + i]) * x[i];
      y[o] = acc;
    }
    return y;
  };
  const auto layer_norm = [&](std::vector<double>& x, const std::string& name) {
    double mean = 0, var = 0;
    for (double v : x) mean += v;
    mean /= static_cast<double>(x.size());
    for (double v : x) var += (v - mean) * (v - mean);
    var /= static_cast<double>(x.size());
    const double inv = 1.0 / std::sqrt(var + static_cast<double>(c.norm_eps));
    for (size_t j = 0; j < x.size(); ++j)
      x[j] = (x[j] - mean) * inv * w.at(name + ".weight")[j] + w.at(name + ".bias")[j];
  };
  const auto gelu = [](std::vector<double>& x) {
    for (double& v : x) v = 0.5 * v * (1.0 + std::erf(v / std::sqrt(2.0)));
  };
  Reference r;
  for (int64_t t_idx = 0; t_idx < n_tiles; ++t_idx) {
    const float* px = pixels.data() + t_idx * 3 * s * s;
    std::vector<std::vector<double>> x(static_cast<size_t>(n_pos));
    for (int64_t pi = 0; pi < n_patches; ++pi) {
      std::vector<double> vec(static_cast<size_t>(k));
      for (int64_t ch = 0; ch < 3; ++ch) {
        for (int64_t ky = 0; ky < p; ++ky) {
          for (int64_t kx = 0; kx < p; ++kx) {
            vec[ch * p * p + ky * p + kx] = px[(ch * s + p * (pi / g) + ky) * s + p * (pi % g) + kx];
          }
        }
      }
      x[pi] = linear("v.patch_embd.weight", vec, k, nullptr);
    }
    x[n_patches].assign(w.at("v.class_embd").begin(), w.at("v.class_embd").end());
    for (int64_t j = 0; j < n_pos; ++j) {
      for (int64_t e = 0; e < d; ++e) x[j][e] += w.at("v.position_embd.weight")[j * d + e];
      layer_norm(x[j], "v.pre_ln");
    }
    for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
      const std::string n = "v.blk." + std::to_string(l) + ".";
      std::vector<std::vector<double>> q(x.size()), kk(x.size()), v(x.size());
      for (int64_t j = 0; j < n_pos; ++j) {
        std::vector<double> xn = x[j];
        layer_norm(xn, n + "ln1");
        q[j] = linear(n + "attn_q.weight", xn, d, (n + "attn_q.bias").c_str());
        kk[j] = linear(n + "attn_k.weight", xn, d, (n + "attn_k.bias").c_str());
        v[j] = linear(n + "attn_v.weight", xn, d, (n + "attn_v.bias").c_str());
        if (j == n_patches) continue;  // the class token: angle 0
        for (int64_t h = 0; h < d / hd; ++h) {
          for (int64_t m = 0; m < hd / 2; ++m) {
            const int64_t kq = m % (hd / 4);
            const double pos = m < hd / 4 ? j % g + 1 : j / g + 1;  // column first, then row
            const double angle = pos / std::pow(static_cast<double>(c.rope_theta), 4.0 * kq / hd);
            for (auto* vecs : {&q, &kk}) {
              double* z = (*vecs)[j].data() + h * hd + 2 * m;
              const double a = z[0], b = z[1];
              z[0] = a * std::cos(angle) - b * std::sin(angle);
              z[1] = a * std::sin(angle) + b * std::cos(angle);
            }
          }
        }
      }
      for (int64_t j = 0; j < n_pos; ++j) {
        std::vector<double> att(static_cast<size_t>(d), 0.0);
        for (int64_t h = 0; h < d / hd; ++h) {
          std::vector<double> score(static_cast<size_t>(n_pos));
          double mx = -HUGE_VAL, sum = 0;
          for (int64_t i = 0; i < n_pos; ++i) {
            double dot = 0;
            for (int64_t e = 0; e < hd; ++e) dot += q[j][h * hd + e] * kk[i][h * hd + e];
            score[i] = dot / std::sqrt(static_cast<double>(hd));
            mx = std::max(mx, score[i]);
          }
          for (double& sc : score) sum += (sc = std::exp(sc - mx));
          for (int64_t i = 0; i < n_pos; ++i) {
            for (int64_t e = 0; e < hd; ++e) att[h * hd + e] += score[i] / sum * v[i][h * hd + e];
          }
        }
        const std::vector<double> o = linear(n + "attn_out.weight", att, d, (n + "attn_out.bias").c_str());
        for (int64_t e = 0; e < d; ++e) x[j][e] += o[e];
      }
      for (int64_t j = 0; j < n_pos; ++j) {
        std::vector<double> xn = x[j];
        layer_norm(xn, n + "ln2");
        std::vector<double> hid = linear(n + "ffn_up.weight", xn, d, (n + "ffn_up.bias").c_str());
        gelu(hid);
        const std::vector<double> y = linear(n + "ffn_down.weight", hid, f, (n + "ffn_down.bias").c_str());
        for (int64_t e = 0; e < d; ++e) x[j][e] += y[e];
      }
    }
    for (int64_t j = 0; j < n_patches; ++j) {
      layer_norm(x[j], "v.post_ln");
      r.encoder.insert(r.encoder.end(), x[j].begin(), x[j].end());
    }
    for (int64_t i = 0; i < og; ++i) {
      for (int64_t jj = 0; jj < og; ++jj) {
        std::vector<double> z;
        for (int64_t a = 0; a < fac; ++a) {
          for (int64_t b = 0; b < fac; ++b) {
            const std::vector<double>& src = x[(fac * i + a) * g + fac * jj + b];
            z.insert(z.end(), src.begin(), src.end());
          }
        }
        std::vector<double> u = linear("mm.model.mlp.1.weight", z, f, nullptr);
        gelu(u);
        std::vector<double> a2 = linear("mm.model.mlp.2.weight", u, c.projector_input_dim, nullptr);
        gelu(a2);
        r.adapter.insert(r.adapter.end(), a2.begin(), a2.end());
        const std::vector<double> o = linear("mm.model.fc.weight", a2, c.vision_output_dim, nullptr);
        r.out.insert(r.out.end(), o.begin(), o.end());
      }
    }
  }
  return r;
}

std::vector<float> RandomPixels(int64_t n_tiles, int64_t image_size, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> px(static_cast<size_t>(n_tiles * 3 * image_size * image_size));
  for (float& v : px) v = u(rng);
  return px;
}

// Max |got - want| / max(1, |want|) and the first index over `tol`.
void ExpectClose(const std::vector<float>& got, const std::vector<double>& want, double tol, const char* what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  double worst = 0;
  int64_t first_bad = -1;
  for (size_t i = 0; i < got.size(); ++i) {
    const double e = std::fabs(got[i] - want[i]) / std::max(1.0, std::fabs(want[i]));
    if (!(e <= worst)) worst = e;
    if (!(e <= tol) && first_bad < 0) first_bad = static_cast<int64_t>(i);
  }
  EXPECT_LT(first_bad, 0) << what << ": max relative |diff| " << worst << " > " << tol << ", first at " << first_bad;
}

// ||got - want|| / ||want|| (L2) at most `bound`.
void ExpectRelativeRms(const std::vector<float>& got, const std::vector<double>& want, double bound, const char* what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  double err = 0, norm = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    err += (got[i] - want[i]) * (got[i] - want[i]);
    norm += want[i] * want[i];
  }
  EXPECT_LE(std::sqrt(err / norm), bound) << what;
}

struct EncodeResult {
  std::vector<float> out;
  VisionTrace trace;
};
EncodeResult Encode(const VisionTower& tower, const std::vector<float>& pixels, int64_t n_tiles, ThreadPool& pool) {
  EncodeResult r;
  r.out.resize(static_cast<size_t>(n_tiles * tower.TokensPerTile() * tower.OutputDim()));
  const Status s = tower.Encode(pixels.data(), n_tiles, r.out.data(), pool, &r.trace);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return r;
}

struct ForwardCase {
  int64_t factor;
  DType type;
};

class VisionForwardTest : public ::testing::TestWithParam<ForwardCase> {};

std::string ForwardCaseName(const ::testing::TestParamInfo<ForwardCase>& info) {
  return "factor" + std::to_string(info.param.factor) + "_" + std::string(DTypeName(info.param.type));
}

INSTANTIATE_TEST_SUITE_P(Shapes, VisionForwardTest,
                         ::testing::Values(ForwardCase{1, DType::kF32}, ForwardCase{2, DType::kF32},
                                           ForwardCase{3, DType::kF32}, ForwardCase{2, DType::kF16},
                                           ForwardCase{2, DType::kBF16}, ForwardCase{2, DType::kQ8_0}),
                         ForwardCaseName);

TEST_P(VisionForwardTest, MatchesDoubleReference) {
  const ForwardCase& fc = GetParam();
  const VisionConfig c = SmallConfig(fc.factor);
  ASSERT_TRUE(c.Validate().ok()) << c.Validate().ToString();
  const Tower t = MakeTower(c, fc.type, 7 + static_cast<uint64_t>(fc.factor));
  auto tower = VisionTower::Create(c, t.weights);
  ASSERT_TRUE(tower.ok()) << tower.status().ToString();
  const int64_t n_tiles = 3;
  const std::vector<float> pixels = RandomPixels(n_tiles, c.image_size, 11);
  ThreadPool pool(3);
  const EncodeResult got = Encode(**tower, pixels, n_tiles, pool);
  const Reference want = ReferenceForward(t, pixels, n_tiles);
  if (fc.type == DType::kQ8_0) {
    // Q8_0 matrices multiply activations rounded to 8 bits per block of 32 (kernels/matmul.h): each rounding is
    // uniform within half a step of 1/127 of the block's largest |x|, an error of RMS step / sqrt(12) = max / 440,
    // about 1/150 of a typical element for blocks whose largest element is ~3 times their RMS. Up to twelve products
    // lie between pixels and output (patch embedding; q/k/v, o, fc1, fc2 per layer; adapter fc1, fc2; projector),
    // whose independent errors add in quadrature under LayerNorm's rescaling: sqrt(12) / 150 = 2.3% RMS. Judged as
    // error statistics (style.md 6), not per element.
    ExpectRelativeRms(got.trace.encoder, want.encoder, 0.023, "encoder");
    ExpectRelativeRms(got.out, want.out, 0.023, "projected");
    return;
  }
  // F32 arithmetic against exact arithmetic on the same weight values: every product and norm of the chain is within
  // a few (n_in + 2) u of its exact value relative to its terms (kernels' contracts, n_in <= 288 here, u = 2^-24:
  // < 2e-5), and LayerNorm keeps each stage's scale near one, so a dozen stages stay within 1e-4 of order-one
  // outputs.
  ExpectClose(got.trace.encoder, want.encoder, 1e-4, "encoder");
  ExpectClose(got.trace.adapter, want.adapter, 1e-4, "adapter");
  ExpectClose(got.out, want.out, 1e-4, "projected");
}

TEST(VisionTowerTest, BatchAndThreadInvariant) {
  const VisionConfig c = SmallConfig(2);
  const Tower t = MakeTower(c, DType::kF32, 3);
  auto tower = VisionTower::Create(c, t.weights);
  ASSERT_TRUE(tower.ok()) << tower.status().ToString();
  const int64_t n_tiles = 4, tile = 3 * c.image_size * c.image_size, rows = c.TokensPerTile() * c.text_hidden_size;
  const std::vector<float> pixels = RandomPixels(n_tiles, c.image_size, 5);
  ThreadPool one(1), three(3);
  const EncodeResult all = Encode(**tower, pixels, n_tiles, three);
  for (int64_t i = 0; i < n_tiles; ++i) {
    const std::vector<float> alone_px(pixels.begin() + i * tile, pixels.begin() + (i + 1) * tile);
    const EncodeResult alone = Encode(**tower, alone_px, 1, one);
    EXPECT_EQ(std::memcmp(alone.out.data(), all.out.data() + i * rows, static_cast<size_t>(rows) * sizeof(float)), 0)
        << "tile " << i;
  }
}

TEST(VisionTowerTest, PatchEmbeddingAsConvKernel) {
  const VisionConfig c = SmallConfig(2);
  const Tower t = MakeTower(c, DType::kBF16, 9);
  WeightMap conv;
  for (const auto& [name, view] : t.weights.tensors()) {
    TensorView v = view;
    if (name == "v.patch_embd.weight") {
      auto reshaped =
          MakeTensorView(v.dtype, {c.hidden_size, 3, c.patch_size, c.patch_size}, v.data, v.size_bytes, "test");
      ASSERT_TRUE(reshaped.ok());
      v = *reshaped;
    }
    ASSERT_TRUE(conv.Add(name, v).ok());
  }
  auto flat = VisionTower::Create(c, t.weights);
  auto kernel = VisionTower::Create(c, conv);
  ASSERT_TRUE(flat.ok()) << flat.status().ToString();
  ASSERT_TRUE(kernel.ok()) << kernel.status().ToString();
  const std::vector<float> pixels = RandomPixels(2, c.image_size, 4);
  ThreadPool pool(2);
  const EncodeResult a = Encode(**flat, pixels, 2, pool), b = Encode(**kernel, pixels, 2, pool);
  EXPECT_EQ(std::memcmp(a.out.data(), b.out.data(), a.out.size() * sizeof(float)), 0);
}

// Binding errors name the tensor; Encode's name the tile and pixel.
TEST(VisionTowerTest, Errors) {
  const VisionConfig c = SmallConfig(2);
  const Tower t = MakeTower(c, DType::kF32, 1);
  const auto without = [&](const std::string& drop) {
    WeightMap m;
    for (const auto& [name, view] : t.weights.tensors()) {
      if (name != drop) {
        EXPECT_TRUE(m.Add(name, view).ok());
      }
    }
    return m;
  };
  auto missing = VisionTower::Create(c, without("v.blk.1.attn_k.bias"));
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("v.blk.1.attn_k.bias"), std::string::npos) << missing.status().ToString();

  WeightMap extra = without("");
  const TensorView bias = *t.weights.Find("v.pre_ln.bias");
  ASSERT_TRUE(extra.Add("mm.model.fc.bias", bias).ok());
  auto unused = VisionTower::Create(c, extra);
  ASSERT_FALSE(unused.ok());
  EXPECT_EQ(unused.status().code(), StatusCode::kNotSupported);
  EXPECT_NE(unused.status().message().find("mm.model.fc.bias"), std::string::npos) << unused.status().ToString();

  VisionConfig wider = c;
  wider.text_hidden_size = 41;
  auto shape = VisionTower::Create(wider, t.weights);
  ASSERT_FALSE(shape.ok());
  EXPECT_NE(shape.status().message().find("mm.model.fc.weight"), std::string::npos) << shape.status().ToString();

  VisionConfig bad = c;
  bad.head_dim = 6;
  EXPECT_FALSE(VisionTower::Create(bad, t.weights).ok());

  auto tower = VisionTower::Create(c, t.weights);
  ASSERT_TRUE(tower.ok()) << tower.status().ToString();
  ThreadPool pool(1);
  std::vector<float> pixels = RandomPixels(2, c.image_size, 2), out(static_cast<size_t>(2 * 4 * 40));
  EXPECT_EQ((*tower)->Encode(pixels.data(), 0, out.data(), pool).code(), StatusCode::kInvalidArgument);
  const int64_t s = c.image_size;
  pixels[3 * s * s + 2 * s * s + 5 * s + 7] = NAN;  // tile 1, channel 2, row 5, column 7
  const Status nan = (*tower)->Encode(pixels.data(), 2, out.data(), pool);
  EXPECT_EQ(nan.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(nan.message().find("tile 1 (channel 2, row 5, column 7)"), std::string::npos) << nan.ToString();
}

}  // namespace
}  // namespace herd::model
