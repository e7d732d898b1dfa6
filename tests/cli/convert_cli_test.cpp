// End-to-end tests of `herd convert`: the shared Llama 4 fixture converts (keeping its dtype, and to q8_0), the
// result runs under `herd info` and `herd logits` with the same logits as the HF directory, usage errors exit 1
// and bad input exits 2 with a message naming the problem.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "herd_cli.h"
#include "test_util.h"

namespace herd {
namespace {

using testing::Herd;
using testing::Outcome;

namespace fs = std::filesystem;
using testing::ReadText;
using testing::SharedPath;

// A fresh scratch directory (TempDir keeps parallel test processes apart).
std::string Scratch(const std::string& name) { return testing::TempDir("convert-cli-" + name); }

std::string Fixture(const std::string& variant) { return SharedPath("fixtures/llama4-tiny-text/" + variant); }

TEST(ConvertCliTest, Help) {
  Outcome o = Herd({"convert", "--help"});
  ASSERT_EQ(o.exit_code, 0) << o.err;
  EXPECT_NE(o.out.find("Usage"), std::string::npos);
  EXPECT_NE(o.out.find("--type"), std::string::npos);
}

TEST(ConvertCliTest, ConvertsTheFixtureAndRunsIt) {
  const std::string dir = Scratch("fixture");
  const std::string gguf = dir + "/allmoe.gguf";
  Outcome o = Herd({"convert", Fixture("allmoe"), "-o", gguf});
  ASSERT_EQ(o.exit_code, 0) << o.err;
  EXPECT_TRUE(fs::exists(gguf));
  EXPECT_FALSE(fs::exists(gguf + ".tmp"));
  EXPECT_NE(o.err.find("wrote " + gguf), std::string::npos) << o.err;
  EXPECT_NE(o.err.find("no tokenizer.model"), std::string::npos) << o.err;  // the note about the vocabulary

  o = Herd({"info", gguf});
  ASSERT_EQ(o.exit_code, 0) << o.err;
  EXPECT_NE(o.out.find("llama4.expert_count"), std::string::npos);
  EXPECT_NE(o.out.find("blk.0.ffn_gate_exps.weight"), std::string::npos);
  EXPECT_NE(o.out.find("herd.attention_chunk_size"), std::string::npos);

  // The same logits from the converted file as from the HF directory (within f32 summation-order differences).
  const std::vector<std::string> tokens = {"--tokens", "1,17,300,42,7,99", "--all", "--json", "-t", "2"};
  std::vector<std::string> a = {"logits", "-m", Fixture("allmoe"), "--kv-type", "f32"},
                           b = {"logits", "-m", gguf, "--kv-type", "f32"};
  a.insert(a.end(), tokens.begin(), tokens.end());
  b.insert(b.end(), tokens.begin(), tokens.end());
  Outcome from_hf = Herd(a), from_gguf = Herd(b);
  ASSERT_EQ(from_hf.exit_code, 0) << from_hf.err;
  ASSERT_EQ(from_gguf.exit_code, 0) << from_gguf.err;
  const nlohmann::json ja = nlohmann::json::parse(from_hf.out), jb = nlohmann::json::parse(from_gguf.out);
  std::vector<double> va, vb;
  auto flatten = [](const nlohmann::json& j, std::vector<double>* out, auto&& self) -> void {
    if (j.is_number()) {
      out->push_back(j.get<double>());
    } else if (j.is_array() || j.is_object()) {
      for (const auto& e : j) self(e, out, self);
    }
  };
  flatten(ja, &va, flatten);
  flatten(jb, &vb, flatten);
  ASSERT_EQ(va.size(), vb.size());
  ASSERT_GT(va.size(), 512u);
  double worst = 0;
  for (size_t i = 0; i < va.size(); ++i) worst = std::max(worst, std::abs(va[i] - vb[i]));
  EXPECT_LE(worst, 1e-4);

  o = Herd({"convert", Fixture("interleaved"), "-o", dir + "/q8.gguf", "--type", "q8_0", "--name", "tiny-q8", "-q"});
  ASSERT_EQ(o.exit_code, 0) << o.err;
  o = Herd({"info", dir + "/q8.gguf"});
  ASSERT_EQ(o.exit_code, 0) << o.err;
  EXPECT_NE(o.out.find("Q8_0"), std::string::npos);
  EXPECT_NE(o.out.find("tiny-q8"), std::string::npos);
  fs::remove_all(dir);
}

TEST(ConvertCliTest, UsageErrorsExitOne) {
  const std::string dir = Scratch("usage");
  EXPECT_EQ(Herd({"convert"}).exit_code, 1);
  EXPECT_EQ(Herd({"convert", Fixture("allmoe")}).exit_code, 1);  // no -o
  Outcome o = Herd({"convert", Fixture("allmoe"), "-o", dir + "/x.gguf", "--type", "q3_k"});
  EXPECT_EQ(o.exit_code, 1);
  EXPECT_NE(o.err.find("q8_0"), std::string::npos) << o.err;  // lists the choices
  EXPECT_FALSE(fs::exists(dir + "/x.gguf"));
  fs::remove_all(dir);
}

TEST(ConvertCliTest, BadInputExitsTwo) {
  const std::string dir = Scratch("bad");
  Outcome o = Herd({"convert", dir + "/missing", "-o", dir + "/x.gguf"});
  EXPECT_EQ(o.exit_code, 2);
  EXPECT_NE(o.err.find("missing"), std::string::npos) << o.err;

  fs::create_directories(dir + "/mistral");
  std::ofstream(dir + "/mistral/config.json") << R"({"model_type": "mistral"})";
  o = Herd({"convert", dir + "/mistral", "-o", dir + "/x.gguf"});
  EXPECT_EQ(o.exit_code, 2);
  EXPECT_NE(o.err.find("mistral"), std::string::npos) << o.err;

  // An output path that cannot be written is a usage error, found before any work.
  o = Herd({"convert", Fixture("allmoe"), "-o", dir + "/no-such-dir/x.gguf"});
  EXPECT_EQ(o.exit_code, 1);
  EXPECT_NE(o.err.find("does not exist"), std::string::npos) << o.err;
  EXPECT_FALSE(fs::exists(dir + "/no-such-dir"));
  fs::remove_all(dir);
}

}  // namespace
}  // namespace herd
