// Tests of tools/convert.h. The shared Llama 4 fixtures (F32 and BF16) are converted at their own dtype and
// must give the same model back: llama.cpp's tensor names and keys, the same config, bit-identical weights
// (the experts transposed), bit-identical RoPE frequencies, and the same logits. Quantized conversions run and
// stay close; a synthetic HF Llama (Q/K un-permutation, llama3 rope_freqs, the F16 fallback of Q8_0) and a dense
// Llama 4 (fully bit-identical logits) are built here; the tiktoken -> gpt2 vocabulary is checked against
// llama.cpp's tokenizer vectors; bad inputs give errors.
#include "tools/convert.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <regex>
#include <set>
#include <sstream>
#include <tuple>

#include "core/half.h"
#include "formats/gguf.h"
#include "formats/gguf_writer.h"
#include "kernels/cpu/qdot.h"
#include "kernels/matmul.h"
#include "kernels/quantize.h"
#include "model/decoder.h"
#include "runtime/engine.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"

namespace herd::tools {
namespace {

namespace fs = std::filesystem;
using ::herd::testing::ReadJson;
using ::herd::testing::ReadText;
using ::herd::testing::SharedPath;
using runtime::LoadedModel;
using runtime::LoadModel;
using runtime::LoadOptions;

// A fresh directory under the build tree (TempDir keeps parallel test processes apart); all of them are removed
// when the process exits.
std::string Scratch(const std::string& name) {
  struct Registry {
    std::vector<std::string> dirs;
    ~Registry() {
      std::error_code ec;
      for (const std::string& d : dirs) fs::remove_all(d, ec);
    }
  };
  static Registry registry;
  registry.dirs.push_back(::herd::testing::TempDir("convert-" + name));
  return registry.dirs.back();
}

std::string Fixture(const std::string& variant) { return SharedPath("fixtures/llama4-tiny-text/" + variant); }

// An HF directory for a fixture variant whose model.safetensors is `weights` (F32 or BF16 file).
std::string FixtureDir(const std::string& variant, const std::string& weights) {
  if (weights == "model.safetensors") return Fixture(variant);
  const std::string dir = Scratch(variant + "-hf-bf16");
  fs::create_symlink(Fixture(variant) + "/config.json", dir + "/config.json");
  fs::create_symlink(Fixture(variant) + "/" + weights, dir + "/model.safetensors");
  return dir;
}

std::unique_ptr<LoadedModel> MustLoad(const std::string& path) {
  LoadOptions o;
  o.model_path = path;
  o.require_tokenizer = false;
  o.show_progress = false;
  auto m = LoadModel(o);
  EXPECT_TRUE(m.ok()) << path << ": " << m.status().ToString();
  return m.ok() ? std::move(m).value() : nullptr;
}

// Converts `dir` and returns the output path; notes are collected into *notes when given.
std::string MustConvert(const std::string& dir, const std::string& out_name, std::optional<DType> type,
                        std::vector<std::string>* notes = nullptr) {
  const std::string out = Scratch(out_name) + "/model.gguf";
  ConvertOptions o;
  o.input = dir;
  o.output = out;
  o.type = type;
  o.on_note = [notes](const std::string& s) {
    if (notes != nullptr) notes->push_back(s);
  };
  Status s = ConvertToGguf(o);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return out;
}

std::vector<int64_t> ShapeOf(const TensorView& v) { return {v.shape.begin(), v.shape.begin() + v.n_dims}; }

std::vector<float> Decode(const TensorView& v) {
  std::vector<float> out(static_cast<size_t>(v.NumElements()));
  kernels::DequantizeRow(v.dtype, v.data, v.NumElements(), out.data());
  return out;
}

// The inverse frequencies the decoder uses: model::RopeInvFreq with the file's rope_freqs divisors, if any.
std::vector<float> EffectiveInvFreq(const LoadedModel& m) {
  const TensorView* f = m.files.weights.Find("rope_freqs.weight");
  if (f == nullptr) return model::RopeInvFreq(m.model->config());
  const std::vector<float> div = Decode(*f);
  return model::RopeInvFreq(m.model->config(), div.data());
}

// Every field of the config that both formats carry. `name` is informational (GGUF general.name); rope_scaling
// is carried by rope_freqs.weight in GGUF (compared through EffectiveInvFreq); rope_style only differs for HF
// Llama 1-3, whose Q/K rows the converter un-permutes.
void ExpectSameConfig(model::ModelConfig a, model::ModelConfig b, bool same_rope_style = true) {
  for (model::ModelConfig* c : {&a, &b}) {
    c->name.clear();
    c->rope_scaling = {};
    if (!same_rope_style) c->rope_style = kernels::RopeStyle::kInterleaved;
  }
  EXPECT_TRUE(a == b) << a.Describe() << "\n-- differs from --\n" << b.Describe();
}

struct Diff {
  double max = 0;
  int64_t n_different = 0;  // elements whose bits differ
};
Diff Compare(const std::vector<float>& a, const std::vector<float>& b) {
  Diff d;
  EXPECT_EQ(a.size(), b.size());
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    d.n_different += std::memcmp(&a[i], &b[i], 4) != 0;
    const double e = std::fabs(static_cast<double>(a[i]) - b[i]);
    if (!(e <= d.max)) d.max = e;
  }
  return d;
}

std::vector<float> AllLogits(const model::Model& m, const std::vector<int32_t>& ids, ThreadPool& pool,
                             model::ForwardTrace* trace = nullptr) {
  auto state = m.NewState(256, 64);
  EXPECT_TRUE(state.ok()) << state.status().ToString();
  if (trace != nullptr) model::DecoderModel::SetTrace(**state, trace);
  std::vector<float> logits(ids.size() * m.config().vocab_size);
  Status s = m.Forward(**state, ids, model::LogitsMode::kAll, logits.data(), pool);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return logits;
}

// Prefill, then `steps` greedy tokens one at a time with the KV cache; returns every step's logits.
std::vector<float> GreedyLogits(const model::Model& m, const std::vector<int32_t>& ids, int steps, ThreadPool& pool) {
  auto state = m.NewState(256, 64);
  EXPECT_TRUE(state.ok());
  const int64_t vocab = m.config().vocab_size;
  std::vector<float> logits(vocab), all;
  EXPECT_TRUE(m.Forward(**state, ids, model::LogitsMode::kLast, logits.data(), pool).ok());
  for (int step = 0; step < steps; ++step) {
    all.insert(all.end(), logits.begin(), logits.end());
    const int32_t tok[1] = {static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin())};
    EXPECT_TRUE(m.Forward(**state, tok, model::LogitsMode::kLast, logits.data(), pool).ok());
  }
  return all;
}

std::vector<int32_t> Argmax(const std::vector<float>& logits, int64_t vocab) {
  std::vector<int32_t> out;
  for (size_t r = 0; r + vocab <= logits.size(); r += vocab) {
    out.push_back(
        static_cast<int32_t>(std::max_element(logits.begin() + r, logits.begin() + r + vocab) - (logits.begin() + r)));
  }
  return out;
}

// llama.cpp's tensor list for each architecture (gguf-py constants.py MODEL_TENSORS; llama4.md 4.3).
bool IsLlamaCppTensorName(const std::string& arch, const std::string& name) {
  static const std::regex llama4(
      "token_embd\\.weight|output_norm\\.weight|output\\.weight|rope_freqs\\.weight|"
      "blk\\.(0|[1-9][0-9]*)\\.(attn_norm|attn_q|attn_k|attn_v|attn_output|ffn_norm|ffn_gate_inp|ffn_gate|ffn_up|"
      "ffn_down|ffn_gate_exps|ffn_up_exps|ffn_down_exps|ffn_gate_shexp|ffn_up_shexp|ffn_down_shexp)\\.weight");
  static const std::regex llama(
      "token_embd\\.weight|output_norm\\.weight|output\\.weight|rope_freqs\\.weight|"
      "blk\\.(0|[1-9][0-9]*)\\.(attn_norm|attn_q|attn_k|attn_v|attn_output|ffn_norm|ffn_gate_inp|ffn_gate|ffn_up|"
      "ffn_down|ffn_gate_exps|ffn_up_exps|ffn_down_exps)\\.weight");
  return std::regex_match(name, arch == "llama4" ? llama4 : llama);
}

// Keys llama.cpp requires (or reads) for the architecture, with the GGUF types its converter writes.
void ExpectLlamaCppKeys(const formats::GgufFile& g, const std::string& arch) {
  using T = formats::GgufType;
  std::vector<std::pair<std::string, T>> keys = {{"general.architecture", T::kString},
                                                 {"general.name", T::kString},
                                                 {"general.file_type", T::kUint32},
                                                 {"general.quantization_version", T::kUint32}};
  for (const char* k : {"context_length", "embedding_length", "block_count", "feed_forward_length",
                        "attention.head_count", "attention.head_count_kv", "attention.key_length",
                        "attention.value_length", "rope.dimension_count", "vocab_size"}) {
    keys.emplace_back(arch + "." + k, T::kUint32);
  }
  keys.emplace_back(arch + ".attention.layer_norm_rms_epsilon", T::kFloat32);
  keys.emplace_back(arch + ".rope.freq_base", T::kFloat32);
  if (arch == "llama4") {
    for (const char* k :
         {"expert_count", "expert_used_count", "expert_feed_forward_length", "interleave_moe_layer_step"}) {
      keys.emplace_back(arch + "." + k, T::kUint32);
    }
  }
  for (const auto& [key, type] : keys) {
    const formats::GgufValue* v = g.Find(key);
    ASSERT_NE(v, nullptr) << "missing key " << key;
    EXPECT_EQ(v->type, type) << key;
  }
  EXPECT_EQ(*g.GetString("general.architecture"), arch);
}

// ---------------------------------------------------------------------------------------------------------
// The fixtures, at their own dtype.

struct Case {
  std::string variant;
  std::string weights;
};

std::string CaseName(const ::testing::TestParamInfo<Case>& info) {
  return info.param.variant + (info.param.weights == "model.safetensors" ? "_F32" : "_BF16");
}

class ConvertFixtureTest : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    hf_dir_ = FixtureDir(GetParam().variant, GetParam().weights);
    gguf_path_ = MustConvert(hf_dir_, GetParam().variant + "-" + CaseName({GetParam(), 0}), std::nullopt, &notes_);
    hf_ = MustLoad(hf_dir_);
    gguf_ = MustLoad(gguf_path_);
    ASSERT_NE(hf_, nullptr);
    ASSERT_NE(gguf_, nullptr);
    inputs_ = ReadJson(Fixture(GetParam().variant) + "/inputs.json");
  }
  DType SourceType() const { return GetParam().weights == "model.safetensors" ? DType::kF32 : DType::kBF16; }
  std::vector<int32_t> Prompt(const std::string& name) { return inputs_["prompts"][name].get<std::vector<int32_t>>(); }

  std::string hf_dir_, gguf_path_;
  std::vector<std::string> notes_;
  std::unique_ptr<LoadedModel> hf_, gguf_;
  nlohmann::json inputs_;
  ThreadPool pool_{2};
};

TEST_P(ConvertFixtureTest, LlamaCppNamesKeysAndTypes) {
  const formats::GgufFile& g = *gguf_->files.gguf;
  ExpectLlamaCppKeys(g, "llama4");
  const model::ModelConfig& c = hf_->model->config();
  std::set<std::string> want = {"token_embd.weight", "output_norm.weight", "output.weight", "rope_freqs.weight"};
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    for (const char* s : {"attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm"}) {
      want.insert(p + s + ".weight");
    }
    if (c.layers[l].moe) {
      for (const char* s : {"ffn_gate_inp", "ffn_gate_exps", "ffn_up_exps", "ffn_down_exps", "ffn_gate_shexp",
                            "ffn_up_shexp", "ffn_down_shexp"}) {
        want.insert(p + s + ".weight");
      }
    } else {
      for (const char* s : {"ffn_gate", "ffn_up", "ffn_down"}) want.insert(p + s + ".weight");
    }
  }
  std::set<std::string> got;
  const int64_t d = c.hidden_size, e = c.num_local_experts, f = c.intermediate_size;
  for (const formats::GgufTensorInfo& t : g.tensor_infos()) {
    got.insert(t.name);
    EXPECT_TRUE(IsLlamaCppTensorName("llama4", t.name)) << t.name;
    const bool f32 = t.shape.size() == 1 || t.name.ends_with("ffn_gate_inp.weight");
    EXPECT_EQ(t.dtype, f32 ? DType::kF32 : SourceType()) << t.name;
    // llama4.md 4.3 (outermost first): experts output-major, the router [E, D].
    if (t.name.ends_with("ffn_gate_exps.weight") || t.name.ends_with("ffn_up_exps.weight")) {
      EXPECT_EQ(t.shape, (std::vector<int64_t>{e, f, d})) << t.name;
    }
    if (t.name.ends_with("ffn_down_exps.weight")) {
      EXPECT_EQ(t.shape, (std::vector<int64_t>{e, d, f})) << t.name;
    }
    if (t.name.ends_with("ffn_gate_inp.weight")) {
      EXPECT_EQ(t.shape, (std::vector<int64_t>{e, d})) << t.name;
    }
  }
  EXPECT_EQ(got, want);
  EXPECT_EQ(*g.GetInt("general.file_type"), SourceType() == DType::kF32 ? 0 : 32);
  EXPECT_EQ(*g.GetString("general.name"), fs::path(hf_dir_).filename().string());
  EXPECT_EQ(*g.GetInt("llama4.feed_forward_length"), c.intermediate_size_mlp);
  EXPECT_EQ(*g.GetInt("llama4.expert_feed_forward_length"), c.intermediate_size);
  EXPECT_EQ(g.Find("tokenizer.ggml.model"), nullptr);  // the fixtures have no tokenizer
  bool noted = false;
  for (const std::string& n : notes_) noted |= n.find("no tokenizer.model") != std::string::npos;
  EXPECT_TRUE(noted) << "expected a note about the missing tokenizer";
}

TEST_P(ConvertFixtureTest, ConfigRoundTrip) {
  ExpectSameConfig(hf_->model->config(), gguf_->model->config());
  // What llama.cpp cannot express is in herd.* keys; the RoPE scaling is in rope_freqs.weight and must give the
  // very same frequencies.
  const std::vector<float> a = EffectiveInvFreq(*hf_), b = EffectiveInvFreq(*gguf_);
  EXPECT_EQ(Compare(a, b).n_different, 0);
  EXPECT_EQ(hf_->model->config().rope_scaling.factor > 0, gguf_->files.weights.Contains("rope_freqs.weight"));
}

// Every GGUF tensor holds exactly the HF values (norms and router widened to F32, experts transposed).
TEST_P(ConvertFixtureTest, WeightsAreTheSameValues) {
  const WeightMap& hf = hf_->files.weights;
  const int64_t n_exp = hf_->model->config().num_local_experts;
  for (const auto& [name, v] : gguf_->files.weights.tensors()) {
    if (name == "rope_freqs.weight") continue;
    const std::vector<float> got = Decode(v);
    std::vector<float> want;
    const auto blk = name.substr(0, name.find('.', 4) + 1);
    if (name.ends_with("ffn_gate_exps.weight") || name.ends_with("ffn_up_exps.weight")) {
      const TensorView* src = hf.Find(blk + "ffn_gate_up_exps_im.weight");  // [E, D, 2F]
      ASSERT_NE(src, nullptr) << name;
      const std::vector<float> s = Decode(*src);
      const int64_t dd = src->shape[1], f2 = src->shape[2], f = f2 / 2,
                    c0 = name.ends_with("ffn_up_exps.weight") ? f : 0;
      for (int64_t e = 0; e < n_exp; ++e) {
        for (int64_t r = 0; r < f; ++r) {
          for (int64_t k = 0; k < dd; ++k) want.push_back(s[(e * dd + k) * f2 + c0 + r]);
        }
      }
    } else if (name.ends_with("ffn_down_exps.weight")) {
      const TensorView* src = hf.Find(blk + "ffn_down_exps_im.weight");  // [E, F, D]
      ASSERT_NE(src, nullptr) << name;
      const std::vector<float> s = Decode(*src);
      const int64_t f = src->shape[1], dd = src->shape[2];
      for (int64_t e = 0; e < n_exp; ++e) {
        for (int64_t r = 0; r < dd; ++r) {
          for (int64_t k = 0; k < f; ++k) want.push_back(s[(e * f + k) * dd + r]);
        }
      }
    } else {
      const TensorView* src = hf.Find(name);
      ASSERT_NE(src, nullptr) << name;
      EXPECT_EQ(ShapeOf(*src), ShapeOf(v)) << name;
      want = Decode(*src);
    }
    EXPECT_EQ(Compare(got, want).n_different, 0) << name;
  }
}

// Same dtype, same values, same frequencies: the logits must agree. Everything up to the first MoE layer is
// bit-identical; the MoE layers run the HF input-major experts through MatMulInputMajor and the GGUF experts
// through MatMul, whose small-batch paths (fewer than 4 tokens routed to an expert: every decode step) sum in a
// different order, so there the results may differ in the last bits (see the test log for the measured maximum).
TEST_P(ConvertFixtureTest, SameLogitsAsTheHfDirectory) {
  const int64_t vocab = hf_->model->config().vocab_size;
  double worst = 0;
  int64_t n_bits_different = 0;
  for (std::string name : {"p24", "p21", "p13"}) {
    const auto ids = Prompt(name);
    model::ForwardTrace ta, tb;
    const auto a = AllLogits(*hf_->model, ids, pool_, &ta);
    const auto b = AllLogits(*gguf_->model, ids, pool_, &tb);
    const Diff d = Compare(a, b);
    worst = std::max(worst, d.max);
    n_bits_different += d.n_different;
    EXPECT_LE(d.max, 1e-5) << name;
    EXPECT_EQ(Argmax(a, vocab), Argmax(b, vocab)) << name;
    // The embeddings, and the residual stream of every layer before the first MoE layer, bit for bit.
    const auto& layers = hf_->model->config().layers;
    const size_t first_moe = static_cast<size_t>(
        std::find_if(layers.begin(), layers.end(), [](const auto& l) { return l.moe; }) - layers.begin());
    ASSERT_EQ(ta.hidden.size(), tb.hidden.size());
    const size_t per_batch = layers.size() + 2;
    for (size_t i = 0; i < ta.hidden.size(); ++i) {
      if (i % per_batch <= first_moe) {
        EXPECT_EQ(Compare(ta.hidden[i], tb.hidden[i]).n_different, 0) << name << " hidden " << i;
      }
    }
    // Router logits of the first MoE layer (same input and values; the converted router is F32) and every router
    // choice. Bit for bit when both routers take the f32 path; a BF16 router on the native BF16 dot product
    // (kernels/cpu/bf16dot-inl.h, decode steps) sums in another order, so there within MatMul's bound.
    ASSERT_EQ(ta.router_choice.size(), tb.router_choice.size());
    for (size_t i = 0; i < ta.router_choice.size(); ++i) EXPECT_EQ(ta.router_choice[i], tb.router_choice[i]) << name;
    const size_t n_moe = std::count_if(layers.begin(), layers.end(), [](const auto& l) { return l.moe; });
    const bool bf16_dots = GetParam().weights == "model.bf16.safetensors" && kernels::QuantDotSupports(DType::kBF16);
    for (size_t i = 0; i < ta.router_logits.size(); i += n_moe) {
      const Diff r = Compare(ta.router_logits[i], tb.router_logits[i]);
      if (bf16_dots) {
        EXPECT_LE(r.max, 1e-5) << name;
      } else {
        EXPECT_EQ(r.n_different, 0) << name;
      }
    }
    const auto ga = GreedyLogits(*hf_->model, ids, 16, pool_);
    const auto gb = GreedyLogits(*gguf_->model, ids, 16, pool_);
    const Diff g = Compare(ga, gb);
    worst = std::max(worst, g.max);
    n_bits_different += g.n_different;
    EXPECT_LE(g.max, 1e-5) << name << " greedy";
    EXPECT_EQ(Argmax(ga, vocab), Argmax(gb, vocab)) << name << " greedy";
  }
  std::printf("%s: HF vs converted GGUF logits: max |diff| %.3g, %lld values not bit-identical\n",
              CaseName({GetParam(), 0}).c_str(), worst, static_cast<long long>(n_bits_different));
}

// Why the MoE layers above are not bit-identical: the same expert weights, HF input-major through
// MatMulInputMajor (one multiply-add chain per output over the inputs) and GGUF output-major through MatMul (lane
// accumulators and a horizontal sum, or BF16 dot products) sum in different orders. Each is batch invariant
// (kernels/matmul.h), so the difference does not depend on the token count; asserted small and printed.
TEST_P(ConvertFixtureTest, ExpertKernelsAgreeWithinRounding) {
  // The first MoE layer: 0 in allmoe, 1 in interleaved.
  const std::string p = hf_->model->config().layers[0].moe ? "blk.0." : "blk.1.";
  const TensorView* gu = hf_->files.weights.Find(p + "ffn_gate_up_exps_im.weight");
  const TensorView* gate = gguf_->files.weights.Find(p + "ffn_gate_exps.weight");
  ASSERT_TRUE(gu != nullptr && gate != nullptr);
  const int64_t d = gu->shape[1], f = gate->shape[1];
  std::mt19937 rng(7);
  std::normal_distribution<float> gauss;
  for (int64_t n : {int64_t{1}, int64_t{2}, int64_t{3}, int64_t{4}, int64_t{5}, int64_t{33}}) {
    std::vector<float> x(static_cast<size_t>(n * d)), a(static_cast<size_t>(n * f)), b(a.size());
    for (float& v : x) v = gauss(rng);
    kernels::MatMulInputMajor(gu->Slice(2), 0, f, x.data(), n, a.data(), pool_);
    kernels::MatMul(gate->Slice(2), x.data(), n, b.data(), pool_);
    const Diff diff = Compare(a, b);
    EXPECT_LT(diff.max, 1e-3) << n << " tokens";
    std::printf("%s: expert kernels with %lld token(s): %lld of %zu outputs differ, max |diff| %.3g\n",
                CaseName({GetParam(), 0}).c_str(), static_cast<long long>(n), static_cast<long long>(diff.n_different),
                a.size(), diff.max);
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, ConvertFixtureTest,
                         ::testing::Values(Case{"interleaved", "model.safetensors"},
                                           Case{"interleaved", "model.bf16.safetensors"},
                                           Case{"allmoe", "model.safetensors"},
                                           Case{"allmoe", "model.bf16.safetensors"}),
                         CaseName);

// ---------------------------------------------------------------------------------------------------------
// Other output types.

// The F32 fixture converted to BF16 holds the BF16 file's values (every weight is BF16-representable).
TEST(ConvertTypes, F32ToBf16MatchesTheBf16File) {
  const std::string from_f32 = MustConvert(Fixture("allmoe"), "allmoe-to-bf16", DType::kBF16);
  const std::string from_bf16 =
      MustConvert(FixtureDir("allmoe", "model.bf16.safetensors"), "allmoe-bf16", std::nullopt);
  const auto a = MustLoad(from_f32), b = MustLoad(from_bf16);
  ASSERT_TRUE(a && b);
  EXPECT_EQ(*a->files.gguf->GetInt("general.file_type"), 32);
  for (const auto& [name, v] : b->files.weights.tensors()) {
    const TensorView* w = a->files.weights.Find(name);
    ASSERT_NE(w, nullptr) << name;
    EXPECT_EQ(w->dtype, v.dtype) << name;
    ASSERT_EQ(w->size_bytes, v.size_bytes) << name;
    EXPECT_EQ(std::memcmp(w->data, v.data, v.size_bytes), 0) << name;
  }
}

// A copy of a GGUF file with every tensor dequantized to F32 (the exact values the kernels read).
std::string DequantizedCopy(const std::string& path, const std::string& name) {
  auto g = formats::GgufFile::Open(path);
  EXPECT_TRUE(g.ok()) << g.status().ToString();
  auto weights = (*g)->Weights();
  EXPECT_TRUE(weights.ok());
  formats::GgufWriter w;
  for (const auto& [key, value] : (*g)->metadata()) w.Add(key, value);
  for (const auto& [tname, v] : weights->tensors()) {
    const TensorView view = v;
    Status s = w.AddTensor(tname, DType::kF32, ShapeOf(v), [view](uint8_t* dst) {
      for (int64_t r = 0; r < view.Rows(); ++r) {
        kernels::DequantizeRow(view.dtype, view.Row(r), view.Cols(), reinterpret_cast<float*>(dst) + r * view.Cols());
      }
      return Status::Ok();
    });
    EXPECT_TRUE(s.ok()) << s.ToString();
  }
  const std::string out = Scratch(name) + "/dequantized.gguf";
  EXPECT_TRUE(w.Write(out).ok());
  return out;
}

double RelativeRms(const std::vector<float>& got, const std::vector<float>& want) {
  double e2 = 0, w2 = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    e2 += (static_cast<double>(got[i]) - want[i]) * (static_cast<double>(got[i]) - want[i]);
    w2 += static_cast<double>(want[i]) * want[i];
  }
  return std::sqrt(e2 / w2);
}

// Q8_0 / Q4_0 / F16: matrices take the type, norms and router stay F32. Correctness of the quantized data: the
// model on the quantized file computes what an F32 model holding the dequantized values computes (same routing,
// f32 rounding only). Distance to the original F32 model is quantization error, amplified by these random-weight
// models and by routing flips (router gaps are only ~3e-3): printed, with loose bounds on the relative RMS.
TEST(ConvertTypes, QuantizedConversionsRunAndStayClose) {
  ThreadPool pool(2);
  for (const std::string variant : {"interleaved", "allmoe"}) {
    const auto ref = MustLoad(Fixture(variant));
    ASSERT_NE(ref, nullptr);
    const int64_t vocab = ref->model->config().vocab_size;
    const auto ids = ReadJson(Fixture(variant) + "/inputs.json")["prompts"]["p24"].get<std::vector<int32_t>>();
    const auto want = AllLogits(*ref->model, ids, pool);
    for (auto [type, rel_bound, file_type] :
         {std::tuple{DType::kQ8_0, 0.08, 7}, std::tuple{DType::kQ4_0, 0.8, 2}, std::tuple{DType::kF16, 1e-5, 1}}) {
      const std::string tname(DTypeName(type));
      const auto path = MustConvert(Fixture(variant), variant + "-" + tname, type);
      const auto m = MustLoad(path);
      ASSERT_NE(m, nullptr);
      EXPECT_EQ(*m->files.gguf->GetInt("general.file_type"), file_type);
      for (const formats::GgufTensorInfo& t : m->files.gguf->tensor_infos()) {
        const bool f32 = t.shape.size() == 1 || t.name.ends_with("ffn_gate_inp.weight");
        EXPECT_EQ(t.dtype, f32 ? DType::kF32 : type) << t.name;  // every fixture row length is a multiple of 32
      }
      model::ForwardTrace tq, tf;
      const auto got = AllLogits(*m->model, ids, pool, &tq);
      const auto deq = MustLoad(DequantizedCopy(path, variant + "-" + tname + "-f32"));
      ASSERT_NE(deq, nullptr);
      const auto same = AllLogits(*deq->model, ids, pool, &tf);
      // Quantized weights multiply 8-bit activations (kernels/cpu/qdot.h), so the dequantized copy differs by the
      // activation rounding alone (which can flip a near-tied router choice of these tiny random models, hence the
      // looser Q4_0 bound); F16 has no such rounding and must match it.
      const double rel_deq = RelativeRms(got, same);
      std::printf("%s %s vs its dequantized F32 copy: relative RMS %.4g\n", variant.c_str(), tname.c_str(), rel_deq);
      EXPECT_LT(rel_deq, type == DType::kF16    ? 1e-6
                         : type == DType::kQ8_0 ? 0.03
                                                : 0.1)
          << variant << " " << tname << " vs its dequantized copy";
      if (type == DType::kF16) {
        EXPECT_EQ(tq.router_choice, tf.router_choice) << variant << " " << tname;
      }
      const Diff d = Compare(got, want);
      const auto am = Argmax(got, vocab), am_ref = Argmax(want, vocab);
      int64_t agree = 0;
      for (size_t i = 0; i < am.size(); ++i) agree += am[i] == am_ref[i];
      const double rel = RelativeRms(got, want);
      std::printf("%s %s vs F32: max |logit diff| %.4g, relative RMS %.4g, argmax agrees at %lld/%zu positions\n",
                  variant.c_str(), tname.c_str(), d.max, rel, static_cast<long long>(agree), am.size());
      EXPECT_LT(rel, rel_bound) << variant << " " << tname;
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Synthetic HF checkpoints.

struct SynthTensor {
  std::string name;
  std::vector<int64_t> shape;
  float scale = 1;  // values ~ N(0, scale^2); norms: 1 + N(0, scale^2)
  bool norm = false;
};

// Writes config.json and a model.safetensors (F32 or BF16) with seeded random weights.
std::string WriteHfDir(const std::string& name, const nlohmann::json& config, const std::vector<SynthTensor>& tensors,
                       DType dtype = DType::kF32) {
  const std::string dir = Scratch(name);
  std::ofstream(dir + "/config.json") << config.dump(2);
  std::mt19937 rng(1234);
  std::normal_distribution<float> gauss(0.0f, 1.0f);
  nlohmann::json header = nlohmann::json::object();
  std::string data;
  for (const SynthTensor& t : tensors) {
    int64_t n = 1;
    for (int64_t s : t.shape) n *= s;
    const size_t begin = data.size();
    for (int64_t i = 0; i < n; ++i) {
      const float v = (t.norm ? 1.0f : 0.0f) + t.scale * gauss(rng);
      if (dtype == DType::kBF16) {
        const uint16_t h = F32ToBf16(v);
        data.append(reinterpret_cast<const char*>(&h), 2);
      } else {
        data.append(reinterpret_cast<const char*>(&v), 4);
      }
    }
    header[t.name] = {
        {"dtype", dtype == DType::kBF16 ? "BF16" : "F32"}, {"shape", t.shape}, {"data_offsets", {begin, data.size()}}};
  }
  std::string h = header.dump();
  while (h.size() % 8 != 0) h.push_back(' ');
  const uint64_t len = h.size();
  std::string file(reinterpret_cast<const char*>(&len), 8);
  file += h + data;
  ::herd::testing::WriteBytes(dir + "/model.safetensors", file);
  return dir;
}

std::vector<SynthTensor> DenseTensors(const std::string& prefix, const std::string& mlp, int64_t n_layers, int64_t d,
                                      int64_t q_dim, int64_t kv_dim, int64_t ffn, int64_t vocab) {
  std::vector<SynthTensor> t = {{prefix + "embed_tokens.weight", {vocab, d}, 1.0f},
                                {prefix + "norm.weight", {d}, 0.1f, true},
                                {"lm_head.weight", {vocab, d}, 3.0f / std::sqrt(float(d))}};
  for (int64_t l = 0; l < n_layers; ++l) {
    const std::string p = prefix + "layers." + std::to_string(l) + ".";
    const float sd = 1.0f / std::sqrt(float(d)), sf = 1.0f / std::sqrt(float(ffn));
    t.push_back({p + "input_layernorm.weight", {d}, 0.1f, true});
    t.push_back({p + "post_attention_layernorm.weight", {d}, 0.1f, true});
    t.push_back({p + "self_attn.q_proj.weight", {q_dim, d}, sd});
    t.push_back({p + "self_attn.k_proj.weight", {kv_dim, d}, sd});
    t.push_back({p + "self_attn.v_proj.weight", {kv_dim, d}, sd});
    t.push_back({p + "self_attn.o_proj.weight", {d, q_dim}, 1.0f / std::sqrt(float(q_dim))});
    t.push_back({p + mlp + ".gate_proj.weight", {ffn, d}, sd});
    t.push_back({p + mlp + ".up_proj.weight", {ffn, d}, sd});
    t.push_back({p + mlp + ".down_proj.weight", {d, ffn}, sf});
  }
  return t;
}

std::vector<int32_t> SomeTokens(int64_t vocab, int n) {
  std::vector<int32_t> ids;
  for (int i = 0; i < n; ++i) ids.push_back(static_cast<int32_t>((i * 37 + 11) % vocab));
  return ids;
}

// HF Llama (model_type llama): half-split Q/K rows that the converter restores to Meta's interleaved order, llama3
// scaling with all three bands as rope_freqs.weight, and rows of 80 that Q8_0 cannot hold.
TEST(ConvertSynthetic, HfLlamaUnpermutesQkAndWritesRopeFreqs) {
  const nlohmann::json config = {{"model_type", "llama"},
                                 {"hidden_size", 64},
                                 {"num_hidden_layers", 2},
                                 {"num_attention_heads", 4},
                                 {"num_key_value_heads", 2},
                                 {"intermediate_size", 80},
                                 {"vocab_size", 96},
                                 {"max_position_embeddings", 512},
                                 {"rms_norm_eps", 1e-5},
                                 {"rope_theta", 10000.0},
                                 {"tie_word_embeddings", false},
                                 {"rope_scaling",
                                  {{"rope_type", "llama3"},
                                   {"factor", 8.0},
                                   {"low_freq_factor", 1.0},
                                   {"high_freq_factor", 4.0},
                                   {"original_max_position_embeddings", 32}}}};
  const std::string dir = WriteHfDir("synth-llama", config, DenseTensors("model.", "mlp", 2, 64, 64, 32, 80, 96));
  std::vector<std::string> notes;
  const auto hf = MustLoad(dir);
  const auto gg = MustLoad(MustConvert(dir, "synth-llama-out", std::nullopt, &notes));
  ASSERT_TRUE(hf && gg);
  const formats::GgufFile& g = *gg->files.gguf;
  ExpectLlamaCppKeys(g, "llama");
  for (const auto& t : g.tensor_infos()) EXPECT_TRUE(IsLlamaCppTensorName("llama", t.name)) << t.name;
  EXPECT_EQ(*g.GetInt("llama.feed_forward_length"), 80);
  EXPECT_EQ(hf->model->config().rope_style, kernels::RopeStyle::kHalfSplit);
  EXPECT_EQ(gg->model->config().rope_style, kernels::RopeStyle::kInterleaved);
  ExpectSameConfig(hf->model->config(), gg->model->config(), /*same_rope_style=*/false);
  EXPECT_EQ(Compare(EffectiveInvFreq(*hf), EffectiveInvFreq(*gg)).n_different, 0);
  // The un-permutation: GGUF row h*16 + 2i + s is HF row h*16 + s*8 + i of q_proj (4 heads) and k_proj (2 heads).
  for (const char* t : {"blk.1.attn_q.weight", "blk.1.attn_k.weight"}) {
    const auto a = Decode(*hf->files.weights.Find(t)), b = Decode(*gg->files.weights.Find(t));
    ASSERT_EQ(a.size(), b.size());
    for (size_t r = 0; r < a.size() / 64; ++r) {
      const size_t h = r / 16, j = r % 16, src = h * 16 + (j % 2) * 8 + j / 2;
      EXPECT_EQ(std::memcmp(&b[r * 64], &a[src * 64], 64 * 4), 0) << t << " row " << r;
    }
  }
  // Half-split with HF rows vs interleaved with Meta rows: the same attention up to summation order.
  ThreadPool pool(2);
  const auto ids = SomeTokens(96, 40);
  const Diff d = Compare(AllLogits(*hf->model, ids, pool), AllLogits(*gg->model, ids, pool));
  std::printf("synthetic llama: HF vs GGUF max |logit diff| %.3g\n", d.max);
  EXPECT_LE(d.max, 1e-4);

  // Q8_0: rows of 80 (ffn_down) fall back to F16, with a note; the rest is Q8_0.
  notes.clear();
  const auto q8 = MustLoad(MustConvert(dir, "synth-llama-q8", DType::kQ8_0, &notes));
  ASSERT_NE(q8, nullptr);
  for (const auto& t : q8->files.gguf->tensor_infos()) {
    const DType want = t.shape.size() == 1                   ? DType::kF32
                       : t.name.ends_with("ffn_down.weight") ? DType::kF16
                                                             : DType::kQ8_0;
    EXPECT_EQ(t.dtype, want) << t.name;
  }
  int fallback_notes = 0;
  for (const std::string& n : notes) fallback_notes += n.find("written as F16") != std::string::npos;
  EXPECT_EQ(fallback_notes, 2);  // blk.0 and blk.1 ffn_down
  const auto lq = AllLogits(*q8->model, ids, pool), lf = AllLogits(*hf->model, ids, pool);
  std::printf("synthetic llama: Q8_0 vs F32 max |logit diff| %.3g, relative RMS %.3g\n", Compare(lq, lf).max,
              RelativeRms(lq, lf));
  EXPECT_LT(RelativeRms(lq, lf), 0.05);
  const auto deq = MustLoad(DequantizedCopy(q8->files.path, "synth-llama-q8-f32"));
  ASSERT_NE(deq, nullptr);
  // The same weights in F32: the Q8_0 model rounds its activations to 8 bits per block at every token count
  // (kernels/matmul.h), so the two agree to that rounding, not to the bit.
  const auto ld = AllLogits(*deq->model, ids, pool);
  std::printf("synthetic llama: Q8_0 vs its dequantized F32 copy: relative RMS %.3g\n", RelativeRms(lq, ld));
  EXPECT_LT(RelativeRms(lq, ld), 0.03);
  EXPECT_LT(RelativeRms(lq, ld), RelativeRms(lq, lf));
}

// A Llama 4 model without MoE layers runs the same kernels from both formats: logits bit-identical, which shows
// the converter itself is exact (weights, config, RoPE divisors with a medium band, chunking, NoPE layers).
TEST(ConvertSynthetic, DenseLlama4IsBitIdentical) {
  const nlohmann::json config = {{"model_type", "llama4_text"},
                                 {"hidden_size", 64},
                                 {"num_hidden_layers", 4},
                                 {"num_attention_heads", 4},
                                 {"num_key_value_heads", 2},
                                 {"head_dim", 16},
                                 {"intermediate_size", 96},
                                 {"intermediate_size_mlp", 128},
                                 {"vocab_size", 96},
                                 {"max_position_embeddings", 256},
                                 {"rms_norm_eps", 1e-5},
                                 {"rope_theta", 500000.0},
                                 {"num_local_experts", 1},
                                 {"moe_layers", nlohmann::json::array()},
                                 {"no_rope_layers", nlohmann::json::array()},
                                 {"attention_chunk_size", 8},
                                 {"floor_scale", 4},
                                 {"attn_scale", 0.1},
                                 {"use_qk_norm", true},
                                 {"rope_scaling",
                                  {{"rope_type", "llama3"},
                                   {"factor", 8.0},
                                   {"low_freq_factor", 1.0},
                                   {"high_freq_factor", 4.0},
                                   {"original_max_position_embeddings", 8192}}}};
  const std::string dir =
      WriteHfDir("synth-l4dense", config, DenseTensors("model.", "feed_forward", 4, 64, 64, 32, 128, 96));
  const auto hf = MustLoad(dir);
  std::vector<std::string> notes;
  const auto gg = MustLoad(MustConvert(dir, "synth-l4dense-out", std::nullopt, &notes));
  ASSERT_TRUE(hf && gg);
  ExpectSameConfig(hf->model->config(), gg->model->config());
  const auto a = EffectiveInvFreq(*hf), b = EffectiveInvFreq(*gg);
  EXPECT_EQ(Compare(a, b).n_different, 0);
  EXPECT_EQ(*gg->files.gguf->GetInt("llama4.interleave_moe_layer_step"), 1);
  bool noted = false;  // chunk 8, floor_scale 4 and no MoE layers: llama.cpp would compute differently
  for (const std::string& n : notes) noted |= n.find("llama.cpp cannot express") != std::string::npos;
  EXPECT_TRUE(noted);
  ThreadPool pool(2);
  const auto ids = SomeTokens(96, 40);
  EXPECT_EQ(Compare(AllLogits(*hf->model, ids, pool), AllLogits(*gg->model, ids, pool)).n_different, 0);
  EXPECT_EQ(Compare(GreedyLogits(*hf->model, ids, 8, pool), GreedyLogits(*gg->model, ids, 8, pool)).n_different, 0);
}

// A Llama 4 directory with the real tokenizer (so the vocabulary must be 202048 rows: a tiny BF16 model with tied
// embeddings): the GGUF carries the vocabulary, the EOS and chat template of tokenizer_config.json, and runs with
// its own tokenizer exactly as the directory runs with tokenizer.model.
TEST(ConvertSynthetic, Llama4WithTokenizer) {
  const int64_t vocab = 202048;
  const nlohmann::json config = {{"model_type", "llama4"},
                                 {"tie_word_embeddings", true},
                                 {"text_config",
                                  {{"model_type", "llama4_text"},
                                   {"hidden_size", 32},
                                   {"num_hidden_layers", 1},
                                   {"num_attention_heads", 2},
                                   {"num_key_value_heads", 1},
                                   {"head_dim", 16},
                                   {"intermediate_size", 32},
                                   {"intermediate_size_mlp", 32},
                                   {"vocab_size", vocab},
                                   {"max_position_embeddings", 1024},
                                   {"rms_norm_eps", 1e-5},
                                   {"rope_theta", 500000.0},
                                   {"num_local_experts", 1},
                                   {"moe_layers", nlohmann::json::array()},
                                   {"eos_token_id", {200001, 200007, 200008}},
                                   {"rope_scaling", nullptr}}}};
  std::vector<SynthTensor> tensors = DenseTensors("language_model.model.", "feed_forward", 1, 32, 32, 16, 32, vocab);
  tensors.erase(
      std::remove_if(tensors.begin(), tensors.end(), [](const SynthTensor& t) { return t.name == "lm_head.weight"; }),
      tensors.end());
  const std::string dir = WriteHfDir("synth-l4-tok", config, tensors, DType::kBF16);
  fs::create_symlink(SharedPath("models/llama4-tokenizer/tokenizer.model"), dir + "/tokenizer.model");
  std::ofstream(dir + "/tokenizer_config.json")
      << R"({"eos_token": "<|eot|>", "bos_token": "<|begin_of_text|>", "chat_template": "{{ bos_token }}hi"})";
  std::vector<std::string> notes;
  const std::string path = MustConvert(dir, "synth-l4-tok-out", std::nullopt, &notes);
  for (const std::string& n : notes) EXPECT_EQ(n.find("tokenizer"), std::string::npos) << n;

  LoadOptions o;
  o.model_path = path;
  o.show_progress = false;
  auto gg = LoadModel(o);  // requires a tokenizer: the GGUF's own
  ASSERT_TRUE(gg.ok()) << gg.status().ToString();
  o.model_path = dir;
  auto hf = LoadModel(o);  // the directory's tokenizer.model
  ASSERT_TRUE(hf.ok()) << hf.status().ToString();
  const formats::GgufFile& g = *(*gg)->files.gguf;
  EXPECT_EQ(*g.GetString("tokenizer.ggml.pre"), "llama4");
  EXPECT_EQ(*g.GetInt("tokenizer.ggml.eos_token_id"), 200008);
  EXPECT_EQ(*g.GetString("tokenizer.chat_template"), "{{ bos_token }}hi");
  EXPECT_FALSE((*gg)->files.weights.Contains("output.weight"));  // tied, as llama.cpp writes it
  EXPECT_EQ(*g.GetInt("general.file_type"), 32);
  ExpectSameConfig((*hf)->model->config(), (*gg)->model->config());
  EXPECT_EQ((*gg)->tokenizer->kind(), "gpt2");
  EXPECT_EQ((*gg)->tokenizer->eos_id(), 200008);
  const std::string text = "Hello, world! Führer   12345 🦙.cpp";
  const auto ids = (*hf)->tokenizer->Encode(text, true, false);
  EXPECT_EQ((*gg)->tokenizer->Encode(text, true, false), ids);
  // <|eot|> (EOS here, and tokenizer.ggml.eot_token_id) and <|eom|> (eom_token_id) end generation.
  for (int32_t stop : {200007, 200008}) {
    const auto s = (*gg)->stop_ids;
    EXPECT_NE(std::find(s.begin(), s.end(), stop), s.end()) << stop;
  }
  ThreadPool pool(2);
  EXPECT_EQ(Compare(AllLogits(*(*hf)->model, ids, pool), AllLogits(*(*gg)->model, ids, pool)).n_different, 0);
}

// ---------------------------------------------------------------------------------------------------------
// Vocabulary: tiktoken -> GGUF gpt2, checked with llama.cpp's tokenizer vectors.

struct Vector {
  std::string text;
  std::vector<int32_t> ids;
};

std::vector<Vector> ReadVectors(const std::string& stem) {
  const std::string inp = ReadText(stem + ".inp"), out = ReadText(stem + ".out");
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<Vector> v;
  for (size_t pos = 0, at; (at = inp.find(sep, pos)) != std::string::npos; pos = at + sep.size()) {
    v.push_back({inp.substr(pos, at - pos), {}});
  }
  std::istringstream lines(out);
  std::string line;
  for (size_t i = 0; std::getline(lines, line) && i < v.size(); ++i) {
    std::istringstream nums(line);
    for (int64_t x; nums >> x;) v[i].ids.push_back(static_cast<int32_t>(x));
  }
  return v;
}

struct VocabFile {
  std::vector<uint8_t> bytes;
  std::shared_ptr<const formats::GgufFile> gguf;
  std::unique_ptr<tokenizer::Tokenizer> tok;
};

VocabFile WriteAndReload(const tokenizer::Tokenizer& tik, const VocabOptions& o) {
  VocabFile f;
  formats::GgufWriter w;
  w.AddString("general.architecture", "llama4");
  Status s = WriteTiktokenVocab(tik, w, o);
  EXPECT_TRUE(s.ok()) << s.ToString();
  auto bytes = w.Serialize();
  EXPECT_TRUE(bytes.ok());
  f.bytes = std::move(bytes).value();
  auto g = formats::GgufFile::Parse(f.bytes.data(), f.bytes.size(), "vocab.gguf");
  EXPECT_TRUE(g.ok()) << g.status().ToString();
  f.gguf = *g;
  auto t = tokenizer::LoadTokenizerFromGguf(*f.gguf);
  EXPECT_TRUE(t.ok()) << t.status().ToString();
  if (t.ok()) f.tok = std::move(t).value();
  return f;
}

void CheckVocab(const std::string& dir, const std::string& vectors, const std::string& pre, int32_t bos, int32_t eos,
                const std::string& turn) {
  auto tik = tokenizer::LoadTiktoken(SharedPath("models/" + dir + "/tokenizer.model"));
  ASSERT_TRUE(tik.ok()) << tik.status().ToString();
  const tokenizer::Tokenizer& t = **tik;
  const VocabFile f = WriteAndReload(t, {});
  ASSERT_NE(f.tok, nullptr);
  const formats::GgufFile& g = *f.gguf;
  EXPECT_EQ(*g.GetString("tokenizer.ggml.model"), "gpt2");
  EXPECT_EQ(*g.GetString("tokenizer.ggml.pre"), pre);
  EXPECT_EQ(*g.GetInt("tokenizer.ggml.bos_token_id"), bos);
  EXPECT_EQ(*g.GetInt("tokenizer.ggml.eos_token_id"), eos);
  const auto types = *g.GetIntArray("tokenizer.ggml.token_type");
  ASSERT_EQ(static_cast<int64_t>(types.size()), t.vocab_size());
  for (int32_t id = 0; id < t.vocab_size(); ++id) ASSERT_EQ(types[id], t.IsSpecial(id) ? 3 : 1) << id;
  const auto tokens = *g.GetStringArray("tokenizer.ggml.tokens");
  EXPECT_EQ(tokens[220], "\xC4\xA0");  // " " -> U+0120 'Ġ' (byte-to-unicode)
  const auto merges = *g.GetStringArray("tokenizer.ggml.merges");
  std::printf("%s: %zu tokens, %zu merges\n", dir.c_str(), tokens.size(), merges.size());
  // At most one merge per multi-byte token; tokens that BPE over lower ranks cannot reach have none (0 for
  // Llama 4, 678 for Llama 3: those are only ever produced whole).
  int64_t n_normal = 0;
  for (int32_t id = 0; id < t.vocab_size(); ++id) n_normal += !t.IsSpecial(id);
  EXPECT_LE(static_cast<int64_t>(merges.size()), n_normal - 256);
  EXPECT_GE(static_cast<int64_t>(merges.size()), (n_normal - 256) * 99 / 100);

  EXPECT_EQ(f.tok->kind(), "gpt2");
  EXPECT_EQ(f.tok->vocab_size(), t.vocab_size());
  EXPECT_EQ(f.tok->bos_id(), bos);
  const auto v = ReadVectors(SharedPath("models/" + dir + "/" + vectors));
  ASSERT_EQ(v.size(), 46u);
  int ok = 0;
  for (const Vector& x : v) {
    const auto got = f.tok->Encode(x.text, false, false);
    EXPECT_EQ(got, x.ids) << "'" << x.text << "'";
    EXPECT_EQ(got, t.Encode(x.text, false, false)) << "'" << x.text << "'";
    EXPECT_EQ(f.tok->Decode(got, false), t.Decode(got, false));
    ok += got == x.ids;
  }
  EXPECT_EQ(ok, 46);
  const nlohmann::json ref = ReadJson(SharedPath("models/" + dir + "/reference_ids.json"));
  for (const auto& e : ref["plain_text_no_specials"]) {
    const std::string text = e["text"].get<std::string>();
    EXPECT_EQ(f.tok->Encode(text, false, false), e["ids"].get<std::vector<int32_t>>()) << text;
  }
  // Specials: parsed from text only when asked, with the tiktoken ids; BOS added by request.
  EXPECT_EQ(f.tok->Encode(turn, true, true), t.Encode(turn, true, true));
  EXPECT_EQ(f.tok->Encode(turn, true, false), t.Encode(turn, true, false));
  for (int32_t id : t.stop_ids()) {
    const auto s = f.tok->stop_ids();
    EXPECT_NE(std::find(s.begin(), s.end(), id), s.end()) << "stop id " << id;
  }
}

TEST(ConvertVocab, Llama4TiktokenAsGpt2) {
  CheckVocab("llama4-tokenizer", "ggml-vocab-llama4.gguf", "llama4", 200000, 200001,
             "<|header_start|>user<|header_end|>\n\nHello, world!<|eot|>");
}

TEST(ConvertVocab, Llama3TiktokenAsGpt2) {
  CheckVocab("llama3-tokenizer", "ggml-vocab-llama-bpe.gguf", "llama-bpe", 128000, 128001,
             "<|start_header_id|>user<|end_header_id|>\n\nHello, world!<|eot_id|>");
}

TEST(ConvertVocab, PaddingEosAndTemplate) {
  auto tik = tokenizer::LoadTiktoken(SharedPath("models/llama4-tokenizer/tokenizer.model"));
  ASSERT_TRUE(tik.ok());
  VocabOptions o;
  o.n_vocab = (*tik)->vocab_size() + 3;
  o.eos_id = 200008;
  o.chat_template = "{{ bos_token }}";
  const VocabFile f = WriteAndReload(**tik, o);
  const formats::GgufFile& g = *f.gguf;
  const auto tokens = *g.GetStringArray("tokenizer.ggml.tokens");
  const auto types = *g.GetIntArray("tokenizer.ggml.token_type");
  ASSERT_EQ(static_cast<int64_t>(tokens.size()), o.n_vocab);
  EXPECT_EQ(tokens.back(), "[PAD202050]");
  EXPECT_EQ(types.back(), 5);
  EXPECT_EQ(*g.GetInt("tokenizer.ggml.eos_token_id"), 200008);
  EXPECT_EQ(*g.GetInt("tokenizer.ggml.eot_token_id"), 200008);
  EXPECT_EQ(*g.GetInt("tokenizer.ggml.eom_token_id"), 200007);
  EXPECT_EQ(*g.GetInt("tokenizer.ggml.padding_token_id"), 200018);
  EXPECT_EQ(*g.GetString("tokenizer.chat_template"), "{{ bos_token }}");
  EXPECT_EQ(*g.GetBoolOpt("tokenizer.ggml.add_bos_token"), true);
  ASSERT_NE(f.tok, nullptr);
  EXPECT_EQ(f.tok->Encode("Hello world", false, false), (std::vector<int32_t>{19873, 3817}));

  formats::GgufWriter w;
  o.n_vocab = 10;  // smaller than the vocabulary
  EXPECT_EQ(WriteTiktokenVocab(**tik, w, o).code(), StatusCode::kInvalidArgument);
  auto spm = tokenizer::LoadTokenizer(SharedPath("models/llama2-tokenizer/ggml-vocab-llama-spm.gguf"));
  ASSERT_TRUE(spm.ok());
  EXPECT_EQ(WriteTiktokenVocab(**spm, w).code(), StatusCode::kInvalidArgument);
}

// ---------------------------------------------------------------------------------------------------------
// Bad inputs.

Status Convert(const std::string& in, const std::string& out, std::optional<DType> type = std::nullopt) {
  ConvertOptions o;
  o.input = in;
  o.output = out;
  o.type = type;
  o.on_note = [](const std::string&) {};
  return ConvertToGguf(o);
}

TEST(ConvertErrors, BadInputs) {
  const std::string tmp = Scratch("errors");
  const std::string out = tmp + "/out.gguf";
  Status s = Convert(tmp + "/missing", out);
  EXPECT_EQ(s.code(), StatusCode::kIOError) << s.ToString();
  EXPECT_NE(s.message().find("missing"), std::string::npos);

  // A file, not a directory.
  s = Convert(Fixture("allmoe") + "/config.json", out);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();

  // Unknown architecture.
  fs::create_directories(tmp + "/mistral");
  std::ofstream(tmp + "/mistral/config.json") << R"({"model_type": "mistral", "hidden_size": 64})";
  fs::create_symlink(Fixture("allmoe") + "/model.safetensors", tmp + "/mistral/model.safetensors");
  s = Convert(tmp + "/mistral", out);
  EXPECT_EQ(s.code(), StatusCode::kNotSupported) << s.ToString();
  EXPECT_NE(s.message().find("mistral"), std::string::npos) << s.ToString();

  // Unsupported output types.
  s = Convert(Fixture("allmoe"), out, DType::kQ2_K);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
  EXPECT_EQ(ParseConvertType("q3_k").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseConvertType("nonsense").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(*ParseConvertType("Q8_0"), DType::kQ8_0);
  EXPECT_EQ(*ParseConvertType("bf16"), DType::kBF16);
  EXPECT_EQ(Convert(Fixture("allmoe"), "").code(), StatusCode::kInvalidArgument);

  // A config that does not match the tensors.
  fs::create_directories(tmp + "/bad-config");
  nlohmann::json cfg = ReadJson(Fixture("allmoe") + "/config.json");
  cfg["text_config"]["hidden_size"] = 48;
  std::ofstream(tmp + "/bad-config/config.json") << cfg.dump();
  fs::create_symlink(Fixture("allmoe") + "/model.safetensors", tmp + "/bad-config/model.safetensors");
  s = Convert(tmp + "/bad-config", out);
  EXPECT_EQ(s.code(), StatusCode::kCorruption) << s.ToString();

  // A tokenizer with more tokens than the model has rows.
  fs::create_directories(tmp + "/with-tokenizer");
  for (const char* f : {"config.json", "model.safetensors"}) {
    fs::create_symlink(Fixture("allmoe") + "/" + f, tmp + "/with-tokenizer/" + f);
  }
  fs::create_symlink(SharedPath("models/llama4-tokenizer/tokenizer.model"), tmp + "/with-tokenizer/tokenizer.model");
  s = Convert(tmp + "/with-tokenizer", out);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
  EXPECT_NE(s.message().find("vocab_size is 512"), std::string::npos) << s.ToString();

  // An unwritable output: refused before any work, and nothing left behind.
  s = Convert(Fixture("allmoe"), tmp + "/no-such-dir/out.gguf");
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
  EXPECT_FALSE(fs::exists(tmp + "/no-such-dir"));
  EXPECT_FALSE(fs::exists(out));
}

}  // namespace
}  // namespace herd::tools
