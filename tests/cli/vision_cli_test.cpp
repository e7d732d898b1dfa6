// End-to-end tests of images on the command line with shared/fixtures/llama4-tiny-vision: `herd convert
// --mmproj-out` writes the projector beside the text GGUF, `herd info` shows the tower, `herd run --tokens IDS
// --image ...` prints the fixture's greedy tokens from the HF directory and from the two GGUF files, `herd logits
// --image` gives the fixture's logits, and wrong images exit with a message naming the problem: 1 for arguments
// that disagree (a count that does not match the prompt's patches, an --mmproj that is no projector), 2 for bad
// input (no tower in the model, a file that is no image or is cut short).
#include <gtest/gtest.h>

#include <cmath>
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

std::string Fixture() { return testing::SharedPath("fixtures/llama4-tiny-vision"); }

// The ids of a fixture prompt, comma-separated, and its --image arguments.
std::string Ids(const std::string& prompt) {
  const nlohmann::json j = testing::ReadJson(Fixture() + "/inputs.json");
  std::string ids;
  for (int32_t id : j["prompts"][prompt]["tokens"].get<std::vector<int32_t>>()) {
    ids += (ids.empty() ? "" : ",") + std::to_string(id);
  }
  return ids;
}
std::vector<std::string> Images(const std::string& prompt) {
  const nlohmann::json j = testing::ReadJson(Fixture() + "/inputs.json");
  std::vector<std::string> args;
  for (const auto& name : j["prompts"][prompt]["images"]) {
    args.push_back("--image");
    args.push_back(Fixture() + (name == "image_a" ? "/image_a_80x40.png" : "/image_b_48x48.png"));
  }
  return args;
}
std::string Greedy(const std::string& prompt) {
  const nlohmann::json j = testing::ReadJson(Fixture() + "/expected.json");
  std::string ids;
  for (int32_t id : j["greedy"][prompt]["tokens"].get<std::vector<int32_t>>()) {
    ids += (ids.empty() ? "" : ",") + std::to_string(id);
  }
  return ids + "\n";
}

std::vector<std::string> RunArgs(const std::vector<std::string>& model, const std::string& prompt) {
  std::vector<std::string> a = {"run"};
  a.insert(a.end(), model.begin(), model.end());
  for (const std::string& s : {std::string("--tokens"), Ids(prompt), std::string("--max-tiles"), std::string("4"),
                               std::string("-n"), std::string("8"), std::string("--temp"), std::string("0"),
                               std::string("--kv-type"), std::string("f32"), std::string("-t"), std::string("2")}) {
    a.push_back(s);
  }
  for (const std::string& s : Images(prompt)) a.push_back(s);
  return a;
}

TEST(VisionCliTest, ConvertInfoRunAndLogits) {
  const std::string dir = testing::TempDir("vision-cli");
  Outcome conv = Herd({"convert", Fixture(), "-o", dir + "/text.gguf", "--mmproj-out", dir + "/mmproj.gguf", "-q"});
  ASSERT_EQ(conv.exit_code, 0) << conv.err;
  EXPECT_NE(conv.err.find("the vision tower"), std::string::npos) << conv.err;

  Outcome info = Herd({"info", dir + "/mmproj.gguf"});
  ASSERT_EQ(info.exit_code, 0) << info.err;
  EXPECT_NE(info.out.find("vision tower (projector GGUF)"), std::string::npos) << info.out;
  EXPECT_NE(info.out.find("tokens per tile: 9"), std::string::npos) << info.out;
  Outcome hf_info = Herd({"info", Fixture()});
  ASSERT_EQ(hf_info.exit_code, 0) << hf_info.err;
  EXPECT_NE(hf_info.out.find("vision tower (HF vision_config)"), std::string::npos) << hf_info.out;

  for (const std::string prompt : {"img_a", "img_b", "img_ab"}) {
    Outcome hf = Herd(RunArgs({"-m", Fixture()}, prompt));
    ASSERT_EQ(hf.exit_code, 0) << prompt << ": " << hf.err;
    EXPECT_EQ(hf.out, Greedy(prompt)) << prompt;
    Outcome gguf = Herd(RunArgs({"-m", dir + "/text.gguf", "--mmproj", dir + "/mmproj.gguf"}, prompt));
    ASSERT_EQ(gguf.exit_code, 0) << prompt << ": " << gguf.err;
    EXPECT_EQ(gguf.out, Greedy(prompt)) << prompt;
  }

  std::vector<std::string> lg = {"logits", "-m",    Fixture(), "--tokens",  Ids("img_b"), "--max-tiles",
                                 "4",      "--all", "--json",  "--kv-type", "f32"};
  for (const std::string& s : Images("img_b")) lg.push_back(s);
  Outcome logits = Herd(lg);
  ASSERT_EQ(logits.exit_code, 0) << logits.err;
  const nlohmann::json j = nlohmann::json::parse(logits.out);
  const testing::NpyArray want = testing::ReadNpy(Fixture() + "/logits_img_b.npy");
  const int64_t vocab = want.shape[1];
  ASSERT_EQ(j["positions"].size(), static_cast<size_t>(want.shape[0]));
  double worst = 0;
  for (int64_t p = 0; p < want.shape[0]; ++p) {
    const std::vector<float> row = j["positions"][p]["logits"].get<std::vector<float>>();
    ASSERT_EQ(static_cast<int64_t>(row.size()), vocab);
    for (int64_t i = 0; i < vocab; ++i) worst = std::max(worst, std::fabs(double(row[i]) - want.f32[p * vocab + i]));
  }
  EXPECT_LE(worst, 1e-4);
}

// herd chat: /image FILE shows the image with the next message; a file that cannot be read fails that line only.
TEST(VisionCliTest, ChatImageCommand) {
  const std::string dir = testing::TempDir("vision-cli-chat");
  {
    std::ofstream in(dir + "/in.txt");
    in << "/image " << Fixture() << "/image_a_80x40.png\n" << Ids("img_a") << "\n/image " << dir << "/missing.png\n";
  }
  Outcome chat = Herd({"chat", "-m", Fixture(), "--tokens", "-n", "8", "--temp", "0", "--kv-type", "f32", "--max-tiles",
                       "4", "-t", "2"},
                      dir + "/in.txt");
  EXPECT_EQ(chat.out, Greedy("img_a"));
  EXPECT_NE(chat.err.find("image 1 queued"), std::string::npos) << chat.err;
  EXPECT_NE(chat.err.find("missing.png"), std::string::npos) << chat.err;
  EXPECT_NE(chat.exit_code, 0);  // one line failed
}

TEST(VisionCliTest, WrongImagesFailWithTheReason) {
  // img_b's ids hold 9 patches; image_a needs 27.
  std::vector<std::string> a = RunArgs({"-m", Fixture()}, "img_b");
  a.back() = Fixture() + "/image_a_80x40.png";
  Outcome wrong = Herd(a);
  EXPECT_EQ(wrong.exit_code, 1);  // the arguments disagree: a usage error
  EXPECT_NE(wrong.err.find("9 <|patch|> tokens"), std::string::npos) << wrong.err;
  EXPECT_NE(wrong.err.find("= 27 patches"), std::string::npos) << wrong.err;

  // A text GGUF without --mmproj has no tower.
  const std::string dir = testing::TempDir("vision-cli-text");
  ASSERT_EQ(Herd({"convert", Fixture(), "-o", dir + "/text.gguf", "-q"}).exit_code, 0);
  Outcome no_tower = Herd(RunArgs({"-m", dir + "/text.gguf"}, "img_b"));
  EXPECT_EQ(no_tower.exit_code, 2);
  EXPECT_NE(no_tower.err.find("--mmproj"), std::string::npos) << no_tower.err;

  // A file that is not an image, and a truncated PNG.
  {
    std::ofstream(dir + "/not.png") << "hello, world";
    std::ifstream in(Fixture() + "/image_b_48x48.png", std::ios::binary);
    std::string png((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::ofstream(dir + "/cut.png", std::ios::binary) << png.substr(0, png.size() / 2);
  }
  for (const std::string bad : {"not.png", "cut.png"}) {
    std::vector<std::string> b = RunArgs({"-m", Fixture()}, "img_b");
    b.back() = dir + "/" + bad;
    Outcome o = Herd(b);
    EXPECT_EQ(o.exit_code, 2) << bad;
    EXPECT_NE(o.err.find(bad), std::string::npos) << o.err;
  }
  // An --mmproj that is not a projector.
  std::vector<std::string> c = RunArgs({"-m", dir + "/text.gguf", "--mmproj", dir + "/text.gguf"}, "img_b");
  Outcome not_mmproj = Herd(c);
  EXPECT_EQ(not_mmproj.exit_code, 1);
  EXPECT_NE(not_mmproj.err.find("--mmproj"), std::string::npos) << not_mmproj.err;
}

}  // namespace
}  // namespace herd
