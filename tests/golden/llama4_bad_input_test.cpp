// A Llama 4 checkpoint whose config and tensors disagree must be rejected before any compute, with an error
// that names the field or tensor: inconsistent shapes, missing or unused tensors, an expert count that does not
// match the expert tensors, unknown RoPE scaling, and a context above the configured maximum.
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "model/model.h"
#include "runtime/engine.h"
#include "test_util.h"

namespace herd {
namespace {

namespace fs = std::filesystem;
using testing::ReadJson;
using testing::SharedPath;

// A copy of the interleaved fixture's directory with `edit` applied to its text_config.
std::string EditedFixture(const std::string& name, const std::function<void(nlohmann::json&)>& edit) {
  const std::string src = SharedPath("fixtures/llama4-tiny-text/interleaved");
  const std::string dir = testing::TempDir("bad-" + name);
  nlohmann::json cfg = ReadJson(src + "/config.json");
  edit(cfg["text_config"]);
  std::ofstream(dir + "/config.json") << cfg.dump(2);
  fs::create_symlink(src + "/model.safetensors", dir + "/model.safetensors");
  return dir;
}

// Loads the model as herd run does (no tokenizer needed).
Result<std::unique_ptr<runtime::LoadedModel>> Load(const std::string& dir) {
  runtime::LoadOptions o;
  o.model_path = dir;
  o.require_tokenizer = false;
  o.show_progress = false;
  return runtime::LoadModel(o);
}

Status CreateStatus(const std::string& dir) { return Load(dir).status(); }

void ExpectError(const std::string& name, const std::function<void(nlohmann::json&)>& edit,
                 const std::string& needle) {
  Status s = CreateStatus(EditedFixture(name, edit));
  ASSERT_FALSE(s.ok()) << name;
  EXPECT_NE(s.message().find(needle), std::string::npos) << name << ": " << s.ToString();
}

TEST(Llama4BadInput, UnchangedFixtureLoads) { EXPECT_TRUE(CreateStatus(EditedFixture("none", [](auto&) {})).ok()); }

TEST(Llama4BadInput, InconsistentShapes) {
  ExpectError("hidden", [](nlohmann::json& t) { t["hidden_size"] = 80; }, "token_embd.weight");
  ExpectError("heads", [](nlohmann::json& t) { t["num_attention_heads"] = 2; }, "attn_q.weight");
  ExpectError("ffn", [](nlohmann::json& t) { t["intermediate_size"] = 64; }, "shexp");
}

TEST(Llama4BadInput, ExpertCountMustMatchTensors) {
  ExpectError("experts", [](nlohmann::json& t) { t["num_local_experts"] = 8; }, "ffn_gate_inp.weight");
  ExpectError("topk", [](nlohmann::json& t) { t["num_experts_per_tok"] = 9; }, "num_experts_per_tok");
}

TEST(Llama4BadInput, MissingAndUnusedTensors) {
  ExpectError("more_layers", [](nlohmann::json& t) {
    t["num_hidden_layers"] = 9;
    t["no_rope_layers"].push_back(1);
  }, "blk.8.");
  ExpectError("fewer_layers", [](nlohmann::json& t) {
    t["num_hidden_layers"] = 6;
    t["no_rope_layers"] = nlohmann::json::array({1, 1, 1, 0, 1, 1});
    t["moe_layers"] = nlohmann::json::array({1, 3, 5});
  }, "blk.6.");
}

TEST(Llama4BadInput, UnknownRopeScalingAndBadLists) {
  ExpectError("yarn", [](nlohmann::json& t) { t["rope_scaling"]["rope_type"] = "yarn"; }, "yarn");
  ExpectError("norope", [](nlohmann::json& t) { t["no_rope_layers"] = nlohmann::json::array({1, 0}); },
              "no_rope_layers");
  ExpectError("moe_oob", [](nlohmann::json& t) { t["moe_layers"] = nlohmann::json::array({1, 30}); }, "moe_layers");
}

TEST(Llama4BadInput, ContextAboveMaximum) {
  auto m = Load(SharedPath("fixtures/llama4-tiny-text/interleaved"));
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  auto state = (*m)->model->NewState(4097, 64);
  ASSERT_FALSE(state.ok());
  EXPECT_EQ(state.status().code(), StatusCode::kOutOfRange);
  EXPECT_NE(state.status().message().find("4096"), std::string::npos) << state.status().ToString();
}

}  // namespace
}  // namespace herd
