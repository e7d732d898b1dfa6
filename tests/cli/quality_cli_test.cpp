// End-to-end tests of herd quantize, perplexity and kld on stories260K: Q8_0 keeps the greedy text identical
// to F32 for 64 tokens, a model against itself has zero KL divergence, Q4_0 diverges more than Q8_0.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <string>

#include <nlohmann/json.hpp>

#include "test_util.h"

namespace herd {
namespace {

using testing::ReadJson;
using testing::ReadText;
using testing::SharedPath;

struct Outcome {
  int exit_code = -1;
  std::string out, err;
};

Outcome Herd(const std::string& args) {
  static int counter = 0;
  const std::string dir = testing::TempDir("quality-run-" + std::to_string(counter++));
  const std::string cmd = std::string(HERD_BINARY) + " " + args + " >" + dir + "/out 2>" + dir + "/err </dev/null";
  const int status = std::system(cmd.c_str());
  Outcome o;
  if (WIFEXITED(status)) o.exit_code = WEXITSTATUS(status);
  o.out = ReadText(dir + "/out");
  o.err = ReadText(dir + "/err");
  return o;
}

class QualityCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(testing::TempDir("quality"));
    const nlohmann::json ref = ReadJson(SharedPath("models/stories260K/greedy_reference.json"));
    std::string text;
    for (int rep = 0; rep < 3; ++rep) {
      for (const auto& c : ref["cases"]) text += c["text"].get<std::string>() + "\n";
    }
    testing::WriteBytes(*dir_ + "/story.txt", text);
  }
  static std::string Model() { return SharedPath("models/stories260K/stories260K.gguf"); }
  static std::string* dir_;
};
std::string* QualityCli::dir_ = nullptr;

TEST_F(QualityCli, Q8_0KeepsGreedyTextIdentical) {
  const std::string q8 = *dir_ + "/s-q8_0.gguf";
  Outcome q = Herd("quantize " + Model() + " " + q8 + " --type q8_0 -q");
  ASSERT_EQ(q.exit_code, 0) << q.err;
  Outcome info = Herd("info " + q8);
  ASSERT_EQ(info.exit_code, 0) << info.err;
  EXPECT_NE(info.out.find("Q8_0"), std::string::npos);
  const std::string run = " -p 'Once upon a time' -n 64 --temp 0 -t 1";
  Outcome a = Herd("run -m " + Model() + run), b = Herd("run -m " + q8 + run);
  ASSERT_EQ(a.exit_code, 0) << a.err;
  ASSERT_EQ(b.exit_code, 0) << b.err;
  EXPECT_EQ(a.out, b.out);
}

TEST_F(QualityCli, PerplexityAndKld) {
  Outcome p = Herd("perplexity -m " + Model() + " -f " + *dir_ + "/story.txt -c 128 --json");
  ASSERT_EQ(p.exit_code, 0) << p.err;
  const auto pj = nlohmann::json::parse(p.out);
  EXPECT_GT(pj["ppl"].get<double>(), 1.0);
  EXPECT_LT(pj["ppl"].get<double>(), 10.0);  // the model's own greedy text is very predictable

  Outcome self = Herd("kld -m " + Model() + " --ref " + Model() + " -f " + *dir_ + "/story.txt -c 128 --json");
  ASSERT_EQ(self.exit_code, 0) << self.err;
  const auto sj = nlohmann::json::parse(self.out);
  EXPECT_LT(sj["mean_kld"].get<double>(), 1e-9);
  EXPECT_EQ(sj["top1_agreement"].get<double>(), 1.0);

  double kld[2];
  int i = 0;
  for (const char* type : {"q8_0", "q4_0"}) {
    const std::string out = *dir_ + "/s-" + type + "-kld.gguf";
    ASSERT_EQ(Herd("quantize " + Model() + " " + out + " --type " + type + " -q").exit_code, 0);
    Outcome k = Herd("kld -m " + out + " --ref " + Model() + " -f " + *dir_ + "/story.txt -c 128 --json");
    ASSERT_EQ(k.exit_code, 0) << k.err;
    kld[i++] = nlohmann::json::parse(k.out)["mean_kld"].get<double>();
  }
  EXPECT_GT(kld[0], 0.0);
  EXPECT_GT(kld[1], 4 * kld[0]) << "q4_0 should lose much more than q8_0";
}

TEST_F(QualityCli, BadInput) {
  EXPECT_EQ(Herd("quantize " + Model() + " " + *dir_ + "/x.gguf --type q3_z").exit_code, 1);
  Outcome missing = Herd("quantize /nonexistent.gguf " + *dir_ + "/x.gguf");
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_NE(missing.err.find("/nonexistent.gguf"), std::string::npos);
  Outcome l2c = Herd("quantize " + SharedPath("models/stories260K/stories260K.bin") + " " + *dir_ + "/x.gguf");
  EXPECT_EQ(l2c.exit_code, 2) << l2c.err;
  Outcome short_text = Herd("perplexity -m " + Model() + " -f " + *dir_ + "/story.txt -c 100000");
  EXPECT_NE(short_text.exit_code, 0);
  EXPECT_NE(short_text.err.find("herd: error:"), std::string::npos);
}

}  // namespace
}  // namespace herd
