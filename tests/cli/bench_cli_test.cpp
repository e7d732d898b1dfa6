// End-to-end tests of `herd bench --synthetic`: JSON with the speed and byte keys, the bytes read per decoded
// token close to the active bytes, --save writing a GGUF that `herd info` and `herd bench -m` accept, and usage
// errors (exit 1) for bad flag combinations.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "test_util.h"

namespace herd {
namespace {

struct Outcome {
  int exit_code = -1;  // -1: killed by a signal
  std::string out, err;
};

std::string Quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

Outcome Herd(const std::vector<std::string>& args) {
  static int counter = 0;
  const std::string dir = testing::TempDir("bench-cli-run-" + std::to_string(counter++));
  std::string cmd = Quote(HERD_BINARY);
  for (const auto& a : args) cmd.append(" ").append(Quote(a));
  cmd.append(" >").append(dir).append("/out 2>").append(dir).append("/err </dev/null");
  const int status = std::system(cmd.c_str());
  Outcome o;
  if (WIFEXITED(status)) o.exit_code = WEXITSTATUS(status);
  o.out = testing::ReadText(dir + "/out");
  o.err = testing::ReadText(dir + "/err");
  return o;
}

// A tiny Llama 4: 2 layers, 4 experts top-1 + shared expert, hidden 64.
const std::vector<std::string> kTiny = {"--synthetic", "custom", "--hidden", "64",  "--heads",   "4",
                                        "--kv-heads",  "2",      "--layers", "2",   "--experts", "4",
                                        "--top-k",     "1",      "--ffn",    "128", "--vocab",   "512"};

// kTiny with `flag` set to `value`.
std::vector<std::string> TinyWith(const std::string& flag, const std::string& value) {
  std::vector<std::string> v = kTiny;
  for (size_t i = 0; i + 1 < v.size(); ++i) {
    if (v[i] == flag) {
      v[i + 1] = value;
      return v;
    }
  }
  v.push_back(flag);
  v.push_back(value);
  return v;
}

std::vector<std::string> Args(std::vector<std::string> head, const std::vector<std::string>& tail) {
  head.insert(head.end(), tail.begin(), tail.end());
  return head;
}

TEST(BenchCliTest, SyntheticJsonHasTheKeys) {
  Outcome o = Herd(Args(Args({"bench"}, kTiny), {"-p", "16", "-n", "4", "-r", "1", "-t", "2", "--json"}));
  ASSERT_EQ(o.exit_code, 0) << o.err;
  auto j = nlohmann::json::parse(o.out);
  EXPECT_EQ(j["model"], "synthetic:custom");
  EXPECT_EQ(j["architecture"], "llama4");
  EXPECT_GT(j["prompt_tok_s"].get<double>(), 0);
  EXPECT_GT(j["gen_tok_s"].get<double>(), 0);
  EXPECT_GT(j["weight_bytes"].get<int64_t>(), 0);
  EXPECT_GT(j["active_bytes_per_token"].get<int64_t>(), 0);
  EXPECT_LT(j["active_bytes_per_token"].get<int64_t>(), j["weight_bytes"].get<int64_t>());
  EXPECT_FALSE(j.contains("bytes_read_per_token"));  // only with --count-bytes
}

TEST(BenchCliTest, CountBytesMatchesActiveBytes) {
  Outcome o = Herd(
      Args(Args({"bench"}, kTiny), {"-p", "8", "-n", "4", "-r", "1", "--type", "q4_0", "--count-bytes", "--json"}));
  ASSERT_EQ(o.exit_code, 0) << o.err;
  auto j = nlohmann::json::parse(o.out);
  const double read = j["bytes_read_per_token"].get<double>();
  const double active = j["active_bytes_per_token"].get<double>();
  EXPECT_GT(read, 0.9 * active);
  EXPECT_LT(read, 1.1 * active);
}

TEST(BenchCliTest, SavedGgufWorksWithInfoAndBench) {
  const std::string path = testing::TempDir("bench-cli-save") + "/tiny.gguf";
  Outcome save = Herd(Args(Args({"bench"}, kTiny), {"-p", "4", "-n", "2", "-r", "1", "--save", path, "--json"}));
  ASSERT_EQ(save.exit_code, 0) << save.err;
  const auto synthetic = nlohmann::json::parse(save.out);

  Outcome info = Herd({"info", path});
  ASSERT_EQ(info.exit_code, 0) << info.err;
  EXPECT_NE(info.out.find("llama4"), std::string::npos) << info.out;
  EXPECT_NE(info.out.find("blk.1.ffn_gate_exps.weight"), std::string::npos) << info.out;
  EXPECT_NE(info.out.find("num_local_experts       4"), std::string::npos) << info.out;

  Outcome bench = Herd({"bench", "-m", path, "-p", "16", "-n", "4", "-r", "1", "--json"});
  ASSERT_EQ(bench.exit_code, 0) << bench.err;
  auto j = nlohmann::json::parse(bench.out);
  EXPECT_GT(j["gen_tok_s"].get<double>(), 0);
  // The file adds only the rope_freqs divisors: head_dim / 2 = 8 F32 values.
  EXPECT_EQ(j["weight_bytes"].get<int64_t>(), synthetic["weight_bytes"].get<int64_t>() + 8 * 4);

  // The tokenizer in the file is usable: herd run generates from it.
  Outcome run = Herd({"run", "-m", path, "-p", "hello", "-n", "3", "--temp", "0"});
  EXPECT_EQ(run.exit_code, 0) << run.err;
}

TEST(BenchCliTest, BadFlagsExitOne) {
  EXPECT_EQ(Herd({"bench"}).exit_code, 1);  // neither -m nor --synthetic
  EXPECT_EQ(Herd({"bench", "--synthetic", "behemoth"}).exit_code, 1);
  EXPECT_EQ(Herd({"bench", "--hidden", "64", "-m", "x.gguf"}).exit_code, 1);     // size flag without --synthetic
  EXPECT_EQ(Herd(Args(Args({"bench"}, kTiny), {"-m", "x.gguf"})).exit_code, 1);  // both
  EXPECT_EQ(Herd(Args({"bench"}, TinyWith("--type", "q9_9"))).exit_code, 1);
  EXPECT_EQ(Herd(Args({"bench"}, TinyWith("--type", "q4_k"))).exit_code, 1);  // a type the kernels lack
  EXPECT_EQ(Herd(Args({"bench"}, TinyWith("--hidden", "48"))).exit_code, 1);  // not a Q8_0 block multiple
  EXPECT_EQ(Herd(Args({"bench"}, TinyWith("--kv-heads", "3"))).exit_code, 1);
  EXPECT_EQ(Herd(Args({"bench"}, TinyWith("--layers", "0"))).exit_code, 1);
  EXPECT_EQ(Herd(Args({"bench"}, TinyWith("--top-k", "5"))).exit_code, 1);  // more than the 4 experts
  Outcome o = Herd(Args({"bench"}, TinyWith("--vocab", "100")));
  EXPECT_EQ(o.exit_code, 1);
  EXPECT_NE(o.err.find("vocab_size"), std::string::npos) << o.err;
}

}  // namespace
}  // namespace herd
