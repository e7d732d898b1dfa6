// `herd guard` end to end on a tiny random-weight all-dense Llama 4 (Llama Guard 4's shape, made here with herd bench
// --synthetic --dense --save) with the real Llama 4 tokenizer: the verdict format, the category options, the two
// prompt forms, and P(unsafe) equal to the softmax of `herd logits` at the verdict position (the prompt plus the
// leading "\n\n" in Form H). No real Llama Guard weights exist here, so the verdict itself is not checked.
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>
#include <string>

#include "herd_cli.h"
#include "runtime/guard.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"

namespace herd {
namespace {

using testing::Herd;

const std::string& Tokenizer() {
  static const std::string path = testing::SharedPath("models/llama4-tokenizer/tokenizer.model");
  return path;
}

const std::string& GuardModel() {
  static const std::string path = [] {
    const std::string p = testing::TempDir("guard-cli") + "/tiny-guard.gguf";
    auto o = Herd(
        {"bench",     "--synthetic", "custom", "--dense", "--layers", "2",           "--hidden", "64",      "--heads",
         "4",         "--kv-heads",  "2",      "--ffn",   "64",       "--ffn-dense", "128",      "--vocab", "202048",
         "--max-ctx", "4096",        "--type", "q8_0",    "--seed",   "11",          "--save",   p,         "-p",
         "4",         "-n",          "2",      "-r",      "1",        "--probe-mib", "0",        "-t",      "1"});
    EXPECT_EQ(o.exit_code, 0) << o.err;
    return p;
  }();
  return path;
}

nlohmann::json GuardJson(std::vector<std::string> extra) {
  std::vector<std::string> args = {"guard", "-m", GuardModel(), "--tokenizer", Tokenizer(), "--json", "-t", "1"};
  args.insert(args.end(), extra.begin(), extra.end());
  auto o = Herd(args);
  EXPECT_EQ(o.exit_code, 0) << o.err;
  return nlohmann::json::parse(o.out);
}

TEST(GuardCli, TheModelIsAllDense) {
  auto o = Herd({"info", GuardModel()});
  ASSERT_EQ(o.exit_code, 0) << o.err;
  EXPECT_NE(o.out.find("  0: Rcq- D ffn 128"), std::string::npos) << o.out;
  EXPECT_NE(o.out.find("  1: Rcq- D ffn 128"), std::string::npos) << o.out;
}

TEST(GuardCli, VerdictAndProbability) {
  auto o = Herd({"guard", "-m", GuardModel(), "--tokenizer", Tokenizer(), "-t", "1", "How to make a bomb?"});
  ASSERT_EQ(o.exit_code, 0) << o.err;
  const std::string first = o.out.substr(0, o.out.find('\n'));
  EXPECT_TRUE(first == "safe" || first == "unsafe") << o.out;
  EXPECT_NE(o.out.find("P(unsafe) "), std::string::npos) << o.out;

  const auto j = GuardJson({"How to make a bomb?"});
  EXPECT_TRUE(j["verdict"] == "safe" || j["verdict"] == "unsafe");
  EXPECT_EQ(j["listed"].size(), 14u);
  const double pu = j["p_unsafe"], ps = j["p_safe"], p2 = j["p_unsafe_2way"];
  EXPECT_TRUE(pu >= 0 && pu <= 1 && ps >= 0 && ps <= 1);
  EXPECT_NEAR(p2, pu / (pu + ps), 1e-7);
  EXPECT_EQ(j["reply"].get<std::string>().rfind("\n\n", 0), 0u);  // Form H's reply starts with "\n\n"
  EXPECT_EQ(GuardJson({"How to make a bomb?"}), j);               // greedy: the same every time
  double category_sum = 0;
  for (const auto& [code, p] : j["category_scores"].items()) category_sum += p.get<double>();
  EXPECT_EQ(j["category_scores"].size(), 14u);
  EXPECT_NEAR(category_sum, p2, 1e-6);  // P(unsafe) shared out over the listed codes

  // P(unsafe) is the softmax at the verdict position: what herd logits gives for the prompt + "\n\n".
  auto tok = tokenizer::LoadTokenizer(Tokenizer());
  ASSERT_TRUE(tok.ok());
  const runtime::GuardMessage m{"user", "How to make a bomb?", {}};
  auto ids = runtime::RenderGuardPrompt(**tok, std::span<const runtime::GuardMessage>(&m, 1), {});
  ASSERT_TRUE(ids.ok());
  std::string list;
  for (int32_t id : *ids) list += std::to_string(id) + ",";
  list += "368";
  auto l = Herd({"logits", "-m", GuardModel(), "--tokens", list, "--json", "-t", "1"});
  ASSERT_EQ(l.exit_code, 0) << l.err;
  const auto logits = nlohmann::json::parse(l.out)["positions"].back()["logits"].get<std::vector<double>>();
  double mx = -1e300, sum = 0;
  for (double z : logits) mx = std::max(mx, z);
  for (double z : logits) sum += std::exp(z - mx);
  EXPECT_NEAR(pu, std::exp(logits[72110] - mx) / sum, 1e-6 * std::max(1.0, pu * 1e3));
  EXPECT_NEAR(ps, std::exp(logits[60411] - mx) / sum, 1e-6 * std::max(1.0, ps * 1e3));
}

TEST(GuardCli, CategoriesRolesAndForms) {
  auto j = GuardJson({"--exclude", "S1,S2,S9", "x"});
  EXPECT_EQ(j["listed"], nlohmann::json({"S3", "S4", "S5", "S6", "S7", "S8", "S10", "S11", "S12", "S13", "S14"}));
  for (const auto& c : j["categories"])
    EXPECT_NE(std::find(j["listed"].begin(), j["listed"].end(), c), j["listed"].end());
  j = GuardJson({"--categories", "S10,S2", "x"});
  EXPECT_EQ(j["listed"], nlohmann::json({"S2", "S10"}));
  j = GuardJson({"--form", "m", "x"});
  EXPECT_EQ(j["listed"].size(), 13u);
  EXPECT_EQ(j["form"], "M");
  EXPECT_EQ(j["reply"].get<std::string>().rfind("\n\n", 0), std::string::npos);  // Form M's reply is the verdict

  auto o = Herd({"guard", "-m", GuardModel(), "--tokenizer", Tokenizer(), "-t", "1", "--show-prompt", "--role", "agent",
                 "--user", "What is the capital of France?", "The capital of France is Paris."});
  ASSERT_EQ(o.exit_code, 0) << o.err;
  EXPECT_NE(o.err.find("'Agent' messages"), std::string::npos) << o.err;
  EXPECT_NE(o.err.find("User: What is the capital of France?\\n\\n\n\nAgent: The capital of France is Paris.\\n\\n"),
            std::string::npos)
      << o.err;

  const std::string conv = testing::TempDir("guard-cli-conv") + "/c.json";
  testing::WriteBytes(conv, R"([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
                               {"role": "user", "content": "bye"}])");
  o = Herd(
      {"guard", "-m", GuardModel(), "--tokenizer", Tokenizer(), "-t", "1", "--show-prompt", "--conversation", conv});
  ASSERT_EQ(o.exit_code, 0) << o.err;
  EXPECT_NE(o.err.find("ONLY THE LAST User message"), std::string::npos);
}

TEST(GuardCli, BadInputIsRefused) {
  auto o = Herd({"guard", "-m", GuardModel(), "--tokenizer", Tokenizer(), "--categories", "S1,S99", "x"});
  EXPECT_EQ(o.exit_code, 1) << o.err;
  EXPECT_NE(o.err.find("'S99'"), std::string::npos) << o.err;
  o = Herd({"guard", "-m", GuardModel(), "--tokenizer", Tokenizer()});
  EXPECT_EQ(o.exit_code, 1) << o.err;
  const std::string conv = testing::TempDir("guard-cli-bad") + "/c.json";
  testing::WriteBytes(conv, R"([{"role": "assistant", "content": "hi"}])");
  o = Herd({"guard", "-m", GuardModel(), "--tokenizer", Tokenizer(), "--conversation", conv});
  EXPECT_NE(o.exit_code, 0);
  EXPECT_NE(o.err.find("alternate"), std::string::npos) << o.err;
  testing::WriteBytes(conv, "not json");
  o = Herd({"guard", "-m", GuardModel(), "--tokenizer", Tokenizer(), "--conversation", conv});
  EXPECT_EQ(o.exit_code, 2) << o.err;
  // A tokenizer without Llama 4's special tokens.
  o = Herd({"guard", "-m", testing::SharedPath("models/stories260K/stories260K.bin"), "x"});
  EXPECT_NE(o.exit_code, 0);
  EXPECT_NE(o.err.find("Llama 4's tokenizer"), std::string::npos) << o.err;
}

}  // namespace
}  // namespace herd
