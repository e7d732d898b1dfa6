// End-to-end tests of `herd chat` on the Llama 4 fixture model (no tokenizer: --tokens mode). They show that a
// conversation stays in the KV cache: each turn processes only its new tokens, the replies equal what a full
// recomputation of the whole conversation gives, and /save + /reset + /load continues exactly where it left off.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "herd_cli.h"
#include "test_util.h"

namespace herd {
namespace {

using testing::Outcome;
using testing::ReadText;
using testing::SharedPath;

// Runs `herd chat` on the interleaved fixture with `input` on stdin.
Outcome Chat(const std::string& input, const std::vector<std::string>& extra = {}) {
  static int counter = 0;
  const std::string in = testing::TempDir("chat-in-" + std::to_string(counter++)) + "/in";
  testing::WriteBytes(in, input);
  std::vector<std::string> args = {"chat",     "-m", SharedPath("fixtures/llama4-tiny-text/interleaved"),
                                   "--tokens", "-n", "6",
                                   "--temp",   "0",  "-c",
                                   "512",      "-t", "2"};
  args.insert(args.end(), extra.begin(), extra.end());
  return testing::Herd(args, in);
}

std::vector<std::string> Lines(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string line;
  while (std::getline(ss, line)) out.push_back(line);
  return out;
}

// "processed N new tokens" per turn, from stderr.
std::vector<int> Processed(const std::string& err) {
  std::vector<int> n;
  std::regex re("processed ([0-9]+) new tokens");
  for (std::sregex_iterator it(err.begin(), err.end(), re), end; it != end; ++it) n.push_back(std::stoi((*it)[1]));
  return n;
}

TEST(ChatCli, EachTurnProcessesOnlyNewTokensAndMatchesFullRecompute) {
  Outcome o = Chat("1,5,9,22\n7,8\n40,41,42\n");
  ASSERT_EQ(o.exit_code, 0) << o.err;
  const auto replies = Lines(o.out);
  ASSERT_EQ(replies.size(), 3u) << o.out;
  // Turn 1: its 4 tokens. Later turns: the previous reply's last token (sampled but not yet forwarded) + new ones.
  EXPECT_EQ(Processed(o.err), (std::vector<int>{4, 1 + 2, 1 + 3})) << o.err;
  EXPECT_NE(o.err.find("[11 tokens processed in total]"), std::string::npos) << o.err;

  // Recomputing the whole conversation in one turn gives the same third reply.
  const std::string full = "1,5,9,22," + replies[0] + ",7,8," + replies[1] + ",40,41,42\n";
  Outcome once = Chat(full);
  ASSERT_EQ(once.exit_code, 0) << once.err;
  EXPECT_EQ(Lines(once.out).at(0), replies[2]);
}

TEST(ChatCli, SaveResetLoadContinuesTheConversation) {
  const std::string save = testing::TempDir("chat-save") + "/conv.chat";
  Outcome straight = Chat("1,5,9,22\n7,8\n40,41,42\n");
  Outcome resumed = Chat("1,5,9,22\n7,8\n/save " + save + "\n/reset\n3,3,3\n/load " + save + "\n40,41,42\n");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  const auto a = Lines(straight.out), b = Lines(resumed.out);
  ASSERT_EQ(a.size(), 3u);
  ASSERT_EQ(b.size(), 4u);
  EXPECT_EQ(b[3], a[2]) << "the reply after /load differs from the uninterrupted conversation";
  // The loaded turn processed only its own tokens (+ the pending one), not the history.
  EXPECT_EQ(Processed(resumed.err).back(), 4) << resumed.err;
}

// Each bad line is an error that ends its turn, not the session; the exit code still says that lines failed
// (issue 18: a failed /load or /save ended with exit 0), with the code of the last failure (/nope: usage, 1).
TEST(ChatCli, BadInputEndsTheTurnNotTheSession) {
  const std::string bad = testing::TempDir("chat-bad") + "/junk.chat";
  testing::WriteBytes(bad, "HERDCHAT1\nnonsense");
  Outcome o = Chat("1,2\nnot,ids\n999999\n/load " + bad + "\n/load /nonexistent/x.chat\n/nope\n3,4\n");
  EXPECT_EQ(o.exit_code, 1) << o.err;
  EXPECT_NE(o.err.find("herd: error: Invalid argument: 5 of 7 lines failed; the last: unknown command '/nope'"),
            std::string::npos)
      << o.err;
  EXPECT_EQ(Lines(o.out).size(), 2u) << o.out;
  EXPECT_NE(o.err.find("'not' is not a token id"), std::string::npos) << o.err;
  EXPECT_NE(o.err.find("999999"), std::string::npos) << o.err;
  EXPECT_NE(o.err.find("junk.chat"), std::string::npos) << o.err;
  EXPECT_NE(o.err.find("unknown command '/nope'"), std::string::npos) << o.err;
}

TEST(ChatCli, TextModeNeedsAChatTokenizer) {
  // stories260K has a tokenizer but no chat template tokens: a clear error, exit 2.
  const Outcome o = testing::Herd({"chat", "-m", SharedPath("models/stories260K/stories260K.gguf")});
  EXPECT_EQ(o.exit_code, 2);
  EXPECT_NE(o.err.find("no chat special tokens"), std::string::npos) << o.err;
}

}  // namespace
}  // namespace herd
