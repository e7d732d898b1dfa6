// Llama 4 with images, end to end against shared/fixtures/llama4-tiny-vision (Meta's reference, cross-checked with
// HF): from the PNGs through herd's preprocessing, the vision tower and early fusion into the batched step, the
// merged-sequence logits at every position of img_a, img_b and img_ab (1e-4) and the 8 greedy tokens generated
// with the KV cache (images only in the prefill). Each case runs from the F32 and the BF16 safetensors of the HF
// directory, and from the text GGUF + projector GGUF that `herd convert --mmproj-out` writes of them. The
// <|patch|> id comes from the config (image_token_index; herd.image_token_index in the GGUF), never a constant.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <condition_variable>
#include <filesystem>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "formats/vision_files.h"
#include "model/vision.h"
#include "runtime/engine.h"
#include "runtime/images.h"
#include "runtime/serving.h"
#include "test_util.h"
#include "tools/convert.h"
#include "vision/image.h"

namespace herd {
namespace {

namespace fs = std::filesystem;
using testing::ReadJson;
using testing::ReadNpy;

std::string Fixture() { return testing::SharedPath("fixtures/llama4-tiny-vision"); }

struct Case {
  std::string weights;  // model.safetensors | model.bf16.safetensors
  bool gguf = false;    // through herd convert --mmproj-out
};

std::string CaseName(const ::testing::TestParamInfo<Case>& info) {
  return std::string(info.param.weights == "model.safetensors" ? "F32" : "BF16") + (info.param.gguf ? "_gguf" : "");
}

// The model and projector paths of a case (made once per process).
std::pair<std::string, std::string> Paths(const Case& c) {
  static std::map<std::string, std::pair<std::string, std::string>> cache;
  const std::string key = c.weights + (c.gguf ? "/gguf" : "");
  if (auto it = cache.find(key); it != cache.end()) return it->second;
  std::string hf = Fixture();
  if (c.weights != "model.safetensors") {
    hf = testing::ScratchDir("vision-e2e-bf16");
    fs::create_symlink(Fixture() + "/config.json", hf + "/config.json");
    fs::create_symlink(Fixture() + "/" + c.weights, hf + "/model.safetensors");
  }
  std::pair<std::string, std::string> paths{hf, ""};
  if (c.gguf) {
    const std::string dir =
        testing::ScratchDir(std::string("vision-e2e-gguf-") + (c.weights.size() > 18 ? "bf16" : "f32"));
    tools::ConvertOptions o;
    o.input = hf;
    o.output = dir + "/text.gguf";
    o.on_note = [](const std::string&) {};
    const Status s = tools::ConvertToGguf(o);
    EXPECT_TRUE(s.ok()) << s.ToString();
    auto vf = formats::OpenVisionFiles(hf);
    EXPECT_TRUE(vf.ok()) << vf.status().ToString();
    if (vf.ok()) {
      auto tower = model::LoadVisionTower(vf->metadata, vf->weights);
      EXPECT_TRUE(tower.ok()) << tower.status().ToString();
      if (tower.ok()) {
        const Status w = formats::WriteMmproj(model::MetadataFromVisionConfig((*tower)->config()), (*tower)->weights(),
                                              dir + "/mmproj.gguf", vf->sources);
        EXPECT_TRUE(w.ok()) << w.ToString();
      }
    }
    paths = {o.output, dir + "/mmproj.gguf"};
  }
  cache[key] = paths;
  return paths;
}

class Llama4VisionTest : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    const auto [model, mmproj] = Paths(GetParam());
    runtime::LoadOptions o;
    o.model_path = model;
    o.mmproj_path = mmproj;
    o.require_tokenizer = false;  // the fixture has no tokenizer
    o.show_progress = false;
    auto m = runtime::LoadModel(o);
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    loaded_ = std::move(m).value();
    ASSERT_NE(loaded_->vision, nullptr) << "no vision tower loaded";
    inputs_ = ReadJson(Fixture() + "/inputs.json");
    expected_ = ReadJson(Fixture() + "/expected.json");
    auto pool = ThreadPool::Create(2);
    ASSERT_TRUE(pool.ok());
    pool_ = std::move(pool).value();
  }

  // The prompt's ids and its images, encoded from the PNGs with the fixture's max_num_chunks.
  void Prompt(const std::string& name, std::vector<int32_t>* ids, runtime::EncodedImages* enc) {
    const nlohmann::json& p = inputs_["prompts"][name];
    *ids = p["tokens"].get<std::vector<int32_t>>();
    std::vector<vision::Image> images;
    for (const auto& image : p["images"]) {
      const std::string file = image.get<std::string>() == "image_a" ? "image_a_80x40.png" : "image_b_48x48.png";
      auto img = vision::ReadImageFile(Fixture() + "/" + file);
      ASSERT_TRUE(img.ok()) << img.status().ToString();
      images.push_back(std::move(img).value());
    }
    auto e = runtime::EncodeImages(*loaded_, images, inputs_["max_num_chunks"].get<int64_t>(), *pool_);
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    *enc = std::move(e).value();
  }

  int32_t PatchId() const {
    const runtime::ImageTokenIdsOf ids = runtime::ImageTokenIdsFor(*loaded_);
    EXPECT_TRUE(ids.patch.has_value());
    EXPECT_EQ(ids.patch.value_or(-1), inputs_["special_tokens"]["patch"].get<int32_t>());
    return ids.patch.value_or(-1);
  }

  std::unique_ptr<runtime::LoadedModel> loaded_;
  std::unique_ptr<ThreadPool> pool_;
  nlohmann::json inputs_, expected_;
};

TEST_P(Llama4VisionTest, LogitsAtEveryPositionAndGreedyTokens) {
  const int64_t vocab = loaded_->model->config().vocab_size;
  for (const std::string name : {"img_a", "img_b", "img_ab"}) {
    SCOPED_TRACE(name);
    std::vector<int32_t> ids;
    runtime::EncodedImages enc;
    Prompt(name, &ids, &enc);
    if (HasFatalFailure()) return;
    auto fusion = runtime::FuseImages(ids, PatchId(), enc);
    ASSERT_TRUE(fusion.ok()) << fusion.status().ToString();
    const model::EmbeddingOverride embeds = fusion->Override();

    const testing::NpyArray want = ReadNpy(Fixture() + "/logits_" + name + ".npy");
    ASSERT_EQ(want.size(), static_cast<int64_t>(ids.size()) * vocab);
    auto state = loaded_->model->NewState(256, 64, DType::kF32);
    ASSERT_TRUE(state.ok());
    std::vector<float> got(static_cast<size_t>(want.size()));
    ASSERT_TRUE(loaded_->model->Forward(**state, ids, model::LogitsMode::kAll, got.data(), *pool_, &embeds).ok());
    double worst = 0;
    int64_t first_bad = -1;
    for (int64_t i = 0; i < want.size(); ++i) {
      const double e = std::fabs(static_cast<double>(got[i]) - want.f32[i]);
      if (!(e <= worst)) worst = e;
      if (!(e <= 1e-4) && first_bad < 0) first_bad = i;
    }
    EXPECT_LT(first_bad, 0) << "logits: max |diff| " << worst << " > 1e-4, first at position " << first_bad / vocab;

    // Greedy with the KV cache: the images only in the prefill.
    auto gen_state = loaded_->model->NewState(256, 64, DType::kF32);
    ASSERT_TRUE(gen_state.ok());
    runtime::GenerateOptions go;
    go.n_predict = inputs_["greedy_steps"].get<int64_t>();
    go.sampling = runtime::SamplingParams::Greedy();
    go.prompt_embeds = &embeds;
    auto r = runtime::Generate(*loaded_, **gen_state, *pool_, ids, go, nullptr);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->tokens, expected_["greedy"][name]["tokens"].get<std::vector<int32_t>>());
  }
}

// The patch count of the prompt must match the images' (each image's tiles x 9 here), and the message says what
// each image needs; a model without a tower refuses images naming --mmproj.
TEST_P(Llama4VisionTest, MismatchedImagesAreRefused) {
  std::vector<int32_t> ids;
  runtime::EncodedImages enc;
  Prompt("img_b", &ids, &enc);
  if (HasFatalFailure()) return;
  std::vector<int32_t> a_ids;
  runtime::EncodedImages a_enc;
  Prompt("img_a", &a_ids, &a_enc);
  if (HasFatalFailure()) return;
  auto wrong = runtime::FuseImages(ids, PatchId(), a_enc);  // img_b's 9 patches, image_a's 27 rows
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(wrong.status().message().find("9 <|patch|> tokens"), std::string::npos) << wrong.status().ToString();
  EXPECT_NE(wrong.status().message().find("1x2 tiles + the global view = 27 patches"), std::string::npos)
      << wrong.status().ToString();

  runtime::LoadOptions o;
  o.model_path = Paths(Case{"model.safetensors", true}).first;  // the text GGUF, without --mmproj
  o.require_tokenizer = false;
  o.show_progress = false;
  auto text_only = runtime::LoadModel(o);
  ASSERT_TRUE(text_only.ok()) << text_only.status().ToString();
  EXPECT_EQ((*text_only)->vision, nullptr);
  auto img = vision::ReadImageFile(Fixture() + "/image_b_48x48.png");
  ASSERT_TRUE(img.ok());
  auto refused = runtime::EncodeImages(**text_only, std::span<const vision::Image>(&*img, 1), 4, *pool_);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("--mmproj"), std::string::npos) << refused.status().ToString();
}

// Each choice's tokens and usage, from the serving engine's events.
class Results {
 public:
  struct Choice {
    std::vector<int32_t> tokens;
    bool finished = false;
    runtime::FinishReason reason = runtime::FinishReason::kStop;
    int64_t cached_tokens = 0;
    std::string error;
  };
  runtime::ServingSink Sink(const std::string& key, int n) {
    std::lock_guard lock(mu_);
    choices_[key].resize(static_cast<size_t>(n));
    open_ += n;
    return [this, key](const runtime::ServingEvent& e) {
      std::lock_guard event_lock(mu_);
      Choice& c = choices_[key][static_cast<size_t>(e.choice)];
      c.tokens.insert(c.tokens.end(), e.tokens.begin(), e.tokens.end());
      if (e.finished) {
        c.finished = true;
        c.reason = e.finish_reason;
        c.cached_tokens = e.cached_tokens;
        c.error = e.error.ToString();
        --open_;
        cv_.notify_all();
      }
      return true;
    };
  }
  bool Wait() {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(120), [&] { return open_ == 0; });
  }
  std::vector<Choice> operator[](const std::string& key) {
    std::lock_guard lock(mu_);
    return choices_[key];
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, std::vector<Choice>> choices_;
  int open_ = 0;
};

// Images through the serving engine (what herd serve runs): the three prompts at once, in prefill chunks of at most
// 16 tokens that cut through the images, with n = 2 on img_ab, give the fixture's greedy tokens; the same prompt again
// takes its leading pages from the prefix cache, while the same ids with other pixels take none of the pages that
// hold image positions; a KV pool too small for all at once (preemption, recompute from the embeds) changes nothing.
TEST_P(Llama4VisionTest, ServingEngineWithImages) {
  std::map<std::string, std::vector<int32_t>> ids;
  std::map<std::string, std::shared_ptr<const runtime::PromptEmbeds>> embeds;
  for (const std::string name : {"img_a", "img_b", "img_ab"}) {
    runtime::EncodedImages enc;
    Prompt(name, &ids[name], &enc);
    if (HasFatalFailure()) return;
    auto e = runtime::ImageEmbeds(*loaded_, ids[name], std::move(enc));
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    embeds[name] = std::make_shared<const runtime::PromptEmbeds>(std::move(e).value());
  }
  auto request = [&](const std::string& name, int n = 1) {
    runtime::ServingRequest r;
    r.prompt = ids[name];
    r.embeds = embeds[name];
    r.max_tokens = inputs_["greedy_steps"].get<int64_t>();
    r.sampling = runtime::SamplingParams::Greedy();
    r.n = n;
    return r;
  };
  auto greedy = [&](const std::string& name) {
    return expected_["greedy"][name]["tokens"].get<std::vector<int32_t>>();
  };
  for (const int64_t kv_tokens : {int64_t{0}, int64_t{96}}) {
    SCOPED_TRACE("KV pool of " + std::to_string(kv_tokens) + " tokens (0: room for all)");
    runtime::ServingOptions o;
    o.parallel = 4;
    o.n_ctx = 256;
    o.kv_type = "f32";
    o.step_tokens = 16;
    o.threads = 2;
    if (kv_tokens > 0) {
      o.kv_bytes = kv_tokens * model::KvRowBytesPerToken(loaded_->model->config(), DType::kF32);
      o.n_ctx = 80;
    }
    auto engine = runtime::ServingEngine::Create(*loaded_, o);
    ASSERT_TRUE(engine.ok()) << engine.status().ToString();
    Results results;
    for (const std::string name : {"img_a", "img_b", "img_ab"}) {
      const int n = name == "img_ab" ? 2 : 1;
      auto id = (*engine)->Submit(request(name, n), results.Sink(name, n));
      ASSERT_TRUE(id.ok()) << id.status().ToString();
    }
    ASSERT_TRUE(results.Wait());
    for (const std::string name : {"img_a", "img_b", "img_ab"}) {
      for (const auto& c : results[name]) {
        EXPECT_EQ(c.reason, runtime::FinishReason::kLength) << name << ": " << c.error;
        EXPECT_EQ(c.tokens, greedy(name)) << name;
      }
    }
    if (kv_tokens > 0) {
      RecordProperty("preemptions", std::to_string((*engine)->stats().preemptions));
      continue;
    }
    // Again: the prefix cache holds img_a's pages.
    ASSERT_TRUE((*engine)->Submit(request("img_a"), results.Sink("again", 1)).ok());
    // img_a's ids with other pixels: nothing from the first image position on may come from the cache.
    std::vector<vision::Image> other(1);
    auto a = vision::ReadImageFile(Fixture() + "/image_a_80x40.png");
    ASSERT_TRUE(a.ok());
    other[0] = std::move(a).value();
    for (uint8_t& v : other[0].rgb) v = static_cast<uint8_t>(255 - v);
    auto enc = runtime::EncodeImages(*loaded_, other, inputs_["max_num_chunks"].get<int64_t>(), *pool_);
    ASSERT_TRUE(enc.ok());
    auto e = runtime::ImageEmbeds(*loaded_, ids["img_a"], std::move(enc).value());
    ASSERT_TRUE(e.ok());
    runtime::ServingRequest r = request("img_a");
    r.embeds = std::make_shared<const runtime::PromptEmbeds>(std::move(e).value());
    ASSERT_TRUE((*engine)->Submit(std::move(r), results.Sink("other", 1)).ok());
    ASSERT_TRUE(results.Wait());
    EXPECT_EQ(results["again"][0].tokens, greedy("img_a"));
    EXPECT_GT(results["again"][0].cached_tokens, 0);
    EXPECT_LE(results["other"][0].cached_tokens, embeds["img_a"]->at.front());
    EXPECT_EQ(results["other"][0].reason, runtime::FinishReason::kLength);

    // Embeds that do not fit the prompt are refused at Submit.
    runtime::ServingRequest bad = request("img_b");
    bad.embeds = embeds["img_a"];
    auto refused = (*engine)->Submit(std::move(bad), results.Sink("bad", 1));
    ASSERT_FALSE(refused.ok());
    EXPECT_EQ(refused.status().code(), StatusCode::kInvalidArgument) << refused.status().ToString();
  }
}

INSTANTIATE_TEST_SUITE_P(Files, Llama4VisionTest,
                         ::testing::Values(Case{"model.safetensors"}, Case{"model.bf16.safetensors"},
                                           Case{"model.safetensors", true}, Case{"model.bf16.safetensors", true}),
                         CaseName);

}  // namespace
}  // namespace herd
