// Regression tests of issue 18 (a hostile probe of the command line): each reproduction of the issue, run against
// the herd binary, must end with a clear error and the README's exit code (1 usage, 2 bad model or input, 3 output
// not written, 4 resources exhausted), never a signal, a hang, a replaced file or silently wrong output.
// M = stories260K.gguf, F = the interleaved Llama 4 fixture, as in the issue.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "herd_cli.h"
#include "test_util.h"

namespace herd {
namespace {

namespace fs = std::filesystem;
using testing::CommandOutcome;
using testing::ReadText;
using testing::SharedPath;

std::string M() { return SharedPath("models/stories260K/stories260K.gguf"); }
std::string F() { return SharedPath("fixtures/llama4-tiny-text/interleaved"); }

CommandOutcome Herd(const std::vector<std::string>& args, const std::string& stdout_path = "") {
  return testing::Herd(args, "/dev/null", stdout_path);
}

// `herd args` ends with `code` and a one-line "herd: error:" message that contains `needle`.
void ExpectError(const std::vector<std::string>& args, int code, const std::string& needle) {
  std::string cmd;
  for (const auto& a : args) cmd += " " + a;
  const CommandOutcome o = Herd(args);
  EXPECT_EQ(o.signal, 0) << cmd;
  EXPECT_EQ(o.exit_code, code) << cmd << "\n" << o.err;
  EXPECT_NE(o.err.find("herd: error: "), std::string::npos) << cmd << "\n" << o.err;
  EXPECT_NE(o.err.find(needle), std::string::npos) << cmd << "\nwanted: " << needle << "\n" << o.err;
}

std::string Scratch(const std::string& name) { return testing::TempDir("issue18-" + name); }

// The byte offset of a GGUF metadata key's value (after its u64 length, name and u32 type).
size_t ValueOffset(const std::string& gguf, const std::string& key) {
  const size_t at = gguf.find(key);
  EXPECT_NE(at, std::string::npos) << key;
  return at + key.size() + 4;
}

// The byte offset of a GGUF tensor's data offset field (after name, n_dims, the dims and the type).
size_t TensorOffsetField(const std::string& gguf, const std::string& name) {
  const size_t at = gguf.find(name);
  EXPECT_NE(at, std::string::npos) << name;
  uint32_t n_dims = 0;
  std::memcpy(&n_dims, gguf.data() + at + name.size(), 4);
  return at + name.size() + 4 + 8 * n_dims + 4;
}

// ---- 1-4: crashes and hangs ----

TEST(Issue18, SizesAreValidatedBeforeAllocation) {
  std::string gguf = ReadText(M());
  const uint32_t max = 0xFFFFFFFFu;
  std::memcpy(gguf.data() + ValueOffset(gguf, "llama.block_count"), &max, 4);
  const std::string path = Scratch("sizes") + "/block_count.gguf";
  testing::WriteBytes(path, gguf);
  ExpectError({"info", path}, 2, "num_hidden_layers (llama.block_count in " + path + ") = 4294967295 is outside");
  ExpectError({"run", "-m", path, "-p", "Once", "-n", "2"}, 2, "llama.block_count");

  // An HF config with 2^31 - 1 layers and no lists to size them from.
  const std::string dir = Scratch("hf-layers");
  nlohmann::json cfg = testing::ReadJson(F() + "/config.json");
  cfg["text_config"]["num_hidden_layers"] = 2147483647;
  cfg["text_config"].erase("no_rope_layers");
  cfg["text_config"].erase("moe_layers");
  std::ofstream(dir + "/config.json") << cfg.dump();
  fs::create_symlink(F() + "/model.safetensors", dir + "/model.safetensors");
  ExpectError({"info", dir}, 2, "num_hidden_layers (text_config.num_hidden_layers in " + dir + "/config.json)");

  // issue 18 item 13: vocab_size 0 is no vocabulary.
  cfg = testing::ReadJson(F() + "/config.json");
  cfg["text_config"]["vocab_size"] = 0;
  std::ofstream(dir + "/config.json") << cfg.dump();
  ExpectError({"info", dir}, 2, "vocab_size (text_config.vocab_size");
}

TEST(Issue18, StoriesGgufStatesItsVocabulary) {
  const CommandOutcome o = Herd({"info", M()});
  ASSERT_EQ(o.exit_code, 0) << o.err;
  EXPECT_NE(o.out.find("vocab_size              512\n"), std::string::npos) << o.out.substr(0, 400);
}

TEST(Issue18, DevicesAreReadWithinLimits) {
  ExpectError({"perplexity", "-m", M(), "-f", "/dev/zero", "--chunks", "1"}, 2, "more than the limit of");
}

// The issue limited the address space (ulimit -v), which AddressSanitizer's shadow memory cannot live with; a
// limit on the processes of the user makes the OS refuse threads in every build. root ignores that limit, so root
// runs herd as nobody, from copies in a world-readable directory (the checkout may sit in root's home).
TEST(Issue18, RefusedThreadsAreAnError) {
  std::string dir = "/tmp/herd-issue18-XXXXXX";
  ASSERT_NE(::mkdtemp(dir.data()), nullptr);
  fs::permissions(dir, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                           fs::perms::others_read | fs::perms::others_exec);
  fs::copy_file(HERD_BINARY, dir + "/herd");
  fs::copy_file(M(), dir + "/m.gguf");
  fs::permissions(dir + "/m.gguf", fs::perms::others_read, fs::perm_options::add);
  std::vector<std::string> argv;
  if (::geteuid() == 0) argv = {"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"};
  for (const char* a : {"prlimit", "--nproc=4"}) argv.push_back(a);
  for (const std::string& a : {dir + "/herd", std::string("run"), std::string("-m"), dir + "/m.gguf",
                               std::string("-p"), std::string("Once"), std::string("-t"), std::string("300")}) {
    argv.push_back(a);
  }
  const CommandOutcome o = testing::RunCommand(argv);
  fs::remove_all(dir);
  EXPECT_EQ(o.exit_code, 4) << o.err;
  EXPECT_NE(o.err.find("herd: error: Resource exhausted: cannot start 300 threads"), std::string::npos) << o.err;
}

TEST(Issue18, FifosAreRefusedNotWaitedFor) {
  const std::string dir = Scratch("fifo");
  const std::string fifo = dir + "/fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  ExpectError({"info", fifo}, 2, "it is a FIFO, not a regular file");
  ExpectError({"run", "-m", fifo, "-p", "x"}, 2, "it is a FIFO");
  ExpectError({"run", "-m", M(), "--tokenizer", fifo, "-p", "x"}, 2, "it is a FIFO");
  ExpectError({"tokenize", "-m", fifo, "hi"}, 2, "it is a FIFO");
  for (const char* member : {"config.json", "model.safetensors"}) {
    const std::string hf = Scratch(std::string("fifo-hf-") + member);
    for (const char* f : {"config.json", "model.safetensors"}) {
      const std::string p = hf + "/" + f;
      if (std::string(f) == member) {
        ASSERT_EQ(::mkfifo(p.c_str(), 0600), 0);
      } else {
        fs::create_symlink(F() + "/" + f, p);
      }
    }
    ExpectError({"info", hf}, 2, std::string(member) + "': it is a FIFO");
  }
  // A text input may be a FIFO: one with a writer is read, one without gives up (after 10 s) instead of hanging.
  const std::string text = dir + "/text.txt";
  testing::WriteBytes(text, std::string(3000, 'a') + " once upon a time\n");
  const CommandOutcome fed =
      testing::RunCommand({"/bin/sh", "-c",
                           "cat " + testing::ShellQuote(text) + " > " + testing::ShellQuote(fifo) + " & exec " +
                               testing::ShellQuote(HERD_BINARY) + " perplexity -m " + testing::ShellQuote(M()) +
                               " -f " + testing::ShellQuote(fifo) + " -c 64 --chunks 1 --json"});
  EXPECT_EQ(fed.exit_code, 0) << fed.err;
  ExpectError({"perplexity", "-m", M(), "-f", fifo, "-c", "64"}, 2, "nothing was written to it within 10 s");
}

// ---- 5-9: lost data and silently wrong output ----

TEST(Issue18, OutputsThatAreNotRegularFilesAreRefused) {
  const std::string dir = Scratch("outputs");
  ExpectError({"convert", F(), "-o", "/dev/full", "-q"}, 1, "output '/dev/full' is a character device");
  struct stat st {};
  ASSERT_EQ(::stat("/dev/full", &st), 0);
  EXPECT_TRUE(S_ISCHR(st.st_mode)) << "/dev/full was replaced";

  const std::string fifo = dir + "/out.fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  ExpectError({"quantize", M(), fifo, "--type", "q8_0", "-q"}, 1, "is a FIFO");
  ASSERT_EQ(::stat(fifo.c_str(), &st), 0);
  EXPECT_TRUE(S_ISFIFO(st.st_mode));

  ExpectError({"quantize", M(), dir, "--type", "q8_0", "-q"}, 1, "is a directory");
  ExpectError({"convert", F(), "-o", dir, "-q"}, 1, "is a directory");
  ExpectError({"convert", F(), "-o", dir + "/missing/x.gguf", "-q"}, 1, "does not exist");
  // Nothing left behind: no OUT.tmp, no half file.
  for (const auto& e : fs::directory_iterator(dir)) EXPECT_EQ(e.path().filename(), "out.fifo") << e.path();

  // A successful write replaces an existing regular file whole.
  const std::string out = dir + "/q.gguf";
  testing::WriteBytes(out, "old contents");
  const CommandOutcome q = Herd({"quantize", M(), out, "--type", "q8_0", "-q"});
  ASSERT_EQ(q.exit_code, 0) << q.err;
  EXPECT_EQ(Herd({"info", out}).exit_code, 0);
  for (const auto& e : fs::directory_iterator(dir)) {
    EXPECT_EQ(e.path().string().find(".tmp"), std::string::npos) << e.path();
  }
}

TEST(Issue18, TheInputIsNeverOverwritten) {
  const std::string dir = Scratch("overwrite");
  const std::string x = dir + "/x.gguf";
  const std::string original = ReadText(M());
  testing::WriteBytes(x, original);
  ExpectError({"quantize", x, x, "--type", "q8_0", "-q"}, 1, "is the input");
  const std::string link = dir + "/hardlink.gguf";
  fs::create_hard_link(x, link);
  ExpectError({"quantize", x, link, "--type", "q8_0", "-q"}, 1, "is the input");
  EXPECT_EQ(ReadText(x), original);

  // convert DIR -o DIR/model.safetensors, and any other file of the checkpoint's directory.
  const std::string hf = Scratch("overwrite-hf");
  fs::copy_file(F() + "/config.json", hf + "/config.json");
  fs::copy_file(F() + "/model.safetensors", hf + "/model.safetensors");
  const std::string weights = ReadText(hf + "/model.safetensors");
  ExpectError({"convert", hf, "-o", hf + "/model.safetensors", "-q"}, 1, "is the input");
  ExpectError({"convert", hf, "-o", hf + "/config.json", "-q"}, 1, "is the input");
  EXPECT_EQ(ReadText(hf + "/model.safetensors"), weights);
  // A new file beside them is fine.
  EXPECT_EQ(Herd({"convert", hf, "-o", hf + "/model.gguf", "-q"}).exit_code, 0);
}

// Every command that prints, with stdout on a full disk or closed: exit 3 and a message, not success.
TEST(Issue18, FailedWritesToStdoutAreErrors) {
  const std::string dir = Scratch("stdout");
  const std::string text = dir + "/text.txt";
  testing::WriteBytes(text, std::string(600, 'a') + " the end\n");
  const std::vector<std::vector<std::string>> commands = {
      {"info", M()},
      {"run", "-m", M(), "-p", "Once", "-n", "8", "--temp", "0"},
      {"tokenize", "-m", M(), "Once upon a time"},
      {"logits", "-m", M(), "--tokens", "1,2,3", "--top", "3"},
      {"perplexity", "-m", M(), "-f", text, "-c", "64", "--chunks", "1"},
      {"kld", "-m", M(), "--ref", M(), "-f", text, "-c", "64", "--chunks", "1"},
      {"bench", "-m", M(), "-p", "4", "-n", "2", "-r", "1", "--probe-mib", "0"},
  };
  for (const auto& args : commands) {
    for (const std::string& out : {std::string("/dev/full"), std::string("-")}) {
      const CommandOutcome o = Herd(args, out);
      EXPECT_EQ(o.exit_code, 3) << args[0] << " > " << out << "\n" << o.err;
      // stdio keeps only a flag for a failed write inside printf: the reason is named when herd saw it.
      const std::string want = out == "-" ? "cannot write 'standard output': it is closed"
                                          : "herd: error: I/O error: cannot write 'standard output'";
      EXPECT_NE(o.err.find(want), std::string::npos) << args[0] << " > " << out << "\n" << o.err;
    }
  }
  // chat prints its replies to stdout too.
  const std::string in = dir + "/chat.in";
  testing::WriteBytes(in, "1,2,3\n4,5\n");
  const CommandOutcome chat = testing::RunCommand(
      {HERD_BINARY, "chat", "-m", F(), "--tokens", "-n", "4", "--temp", "0", "-c", "64"}, in, "/dev/full");
  EXPECT_EQ(chat.exit_code, 3) << chat.err;
  // Commands that print nothing on stdout do not mind.
  EXPECT_EQ(Herd({"quantize", M(), dir + "/q.gguf", "--type", "q8_0", "-q"}, "/dev/full").exit_code, 0);
}

TEST(Issue18, OverlappingGgufTensorsAreRefused) {
  const std::string dir = Scratch("overlap");
  std::string gguf = ReadText(M());
  uint64_t q_offset = 0;
  std::memcpy(&q_offset, gguf.data() + TensorOffsetField(gguf, "blk.0.attn_q.weight"), 8);
  std::memcpy(gguf.data() + TensorOffsetField(gguf, "blk.0.attn_k.weight"), &q_offset, 8);
  testing::WriteBytes(dir + "/k_on_q.gguf", gguf);
  ExpectError({"run", "-m", dir + "/k_on_q.gguf", "-p", "Once", "-n", "4"}, 2, "overlap");

  gguf = ReadText(M());
  uint64_t embd_offset = 0;
  std::memcpy(&embd_offset, gguf.data() + TensorOffsetField(gguf, "token_embd.weight"), 8);
  std::memcpy(gguf.data() + TensorOffsetField(gguf, "blk.0.attn_norm.weight"), &embd_offset, 8);
  testing::WriteBytes(dir + "/norm_in_embd.gguf", gguf);
  ExpectError({"info", dir + "/norm_in_embd.gguf"}, 2, "overlap");
}

// A chat save is replaced only by a complete one, belongs to one model, and its tokens are checked on /load.
TEST(Issue18, ChatSavesAreSafe) {
  const std::string dir = Scratch("chat");
  const std::string save = dir + "/conv.chat";
  auto chat = [&](const std::string& model, const std::string& input) {
    testing::WriteBytes(dir + "/in", input);
    return testing::RunCommand(
        {HERD_BINARY, "chat", "-m", model, "--tokens", "-n", "4", "--temp", "0", "-c", "64", "-t", "1"}, dir + "/in");
  };
  CommandOutcome o = chat(F(), "1,2,3\n/save " + save + "\n");
  ASSERT_EQ(o.exit_code, 0) << o.err;
  const std::string saved = ReadText(save);

  // The same KV shape, another model: refused, and the session goes on.
  o = chat(SharedPath("fixtures/llama4-tiny-text/allmoe"), "/load " + save + "\n5,6\n");
  EXPECT_NE(o.exit_code, 0);
  EXPECT_NE(o.err.find("saved from another model"), std::string::npos) << o.err;
  EXPECT_NE(o.err.find("[turn 1:"), std::string::npos) << o.err;

  // pending_tokens outside the vocabulary: refused on /load, and later turns still work.
  const size_t len_at = std::string("HERDCHAT1\n").size();
  uint64_t n = 0;
  std::memcpy(&n, saved.data() + len_at, 8);
  nlohmann::json header = nlohmann::json::parse(saved.substr(len_at + 8, n));
  header["pending_tokens"] = {999999};
  const std::string h = header.dump();
  const uint64_t hn = h.size();
  std::string bad =
      saved.substr(0, len_at) + std::string(reinterpret_cast<const char*>(&hn), 8) + h + saved.substr(len_at + 8 + n);
  testing::WriteBytes(dir + "/bad.chat", bad);
  o = chat(F(), "/load " + dir + "/bad.chat\n7,8\n");
  EXPECT_EQ(o.exit_code, 2) << o.err;
  EXPECT_NE(o.err.find("token 999999 is outside the vocabulary"), std::string::npos) << o.err;
  EXPECT_NE(o.err.find("[turn 1:"), std::string::npos) << o.err;

  // A save that cannot be written (over the model's own file, into a missing directory) leaves everything as it
  // was, and the exit code says so.
  const std::string model_dir = Scratch("chat-model");
  for (const char* f : {"config.json", "model.safetensors"}) fs::copy_file(F() + "/" + f, model_dir + "/" + f);
  const std::string weights = ReadText(model_dir + "/model.safetensors");
  o = chat(model_dir, "1,2\n/save " + model_dir + "/model.safetensors\n/save " + dir + "/no/such.chat\n");
  EXPECT_EQ(o.exit_code, 1) << o.err;
  EXPECT_NE(o.err.find("is the input"), std::string::npos) << o.err;
  EXPECT_EQ(ReadText(model_dir + "/model.safetensors"), weights);
  // A failed /load too.
  o = chat(F(), "/load " + dir + "/missing.chat\n");
  EXPECT_EQ(o.exit_code, 2) << o.err;
  // Saving over an existing save replaces it whole.
  o = chat(F(), "9,9,9\n/save " + save + "\n");
  ASSERT_EQ(o.exit_code, 0) << o.err;
  EXPECT_NE(ReadText(save), saved);
  for (const auto& e : fs::directory_iterator(dir)) {
    EXPECT_EQ(e.path().string().find(".tmp"), std::string::npos) << e.path();
  }
}

// ---- 10-13: wrong codes and unclear messages ----

TEST(Issue18, ArgumentsAreParsedStrictly) {
  ExpectError({"run", "-m", M(), "-p", "x", "--seed", "-5"}, 1, "--seed: '-5' is not a whole number");
  ExpectError({"run", "-m", M(), "-p", "x", "--seed", "99999999999999999999999"}, 1, "is not a whole number");
  ExpectError({"run", "-m", M(), "-p", "x", "--top-k", "-5"}, 1, "--top-k");
  ExpectError({"logits", "-m", M(), "--tokens", "1,2,"}, 1, "has an empty entry");
  ExpectError({"logits", "-m", M(), "--tokens", "+5"}, 1, "'+5' is not a token id");
  ExpectError({"logits", "-m", M(), "--tokens", ",,,"}, 1, "has an empty entry");
  // The largest seed is a seed.
  const CommandOutcome big = Herd({"run", "-m", M(), "-p", "x", "-n", "2", "--seed", "18446744073709551615"});
  EXPECT_EQ(big.exit_code, 0) << big.err;
  EXPECT_NE(big.err.find("seed 18446744073709551615"), std::string::npos) << big.err;
  // A token line with a NUL byte in chat is not the number before it.
  const std::string dir = Scratch("nul");
  testing::WriteBytes(dir + "/in", std::string("7\0garbage\n", 10));
  const CommandOutcome chat = testing::RunCommand(
      {HERD_BINARY, "chat", "-m", F(), "--tokens", "-n", "2", "--temp", "0", "-c", "64"}, dir + "/in");
  EXPECT_EQ(chat.exit_code, 1) << chat.err;
  EXPECT_NE(chat.err.find("'7\\0garbage' is not a token id"), std::string::npos) << chat.err;
}

TEST(Issue18, MessagesNameTheProblem) {
  const std::string dir = Scratch("messages");
  std::string gguf = ReadText(M());
  const uint32_t seven = 7;
  std::memcpy(gguf.data() + ValueOffset(gguf, "llama.attention.head_count"), &seven, 4);
  testing::WriteBytes(dir + "/heads7.gguf", gguf);
  ExpectError({"info", dir + "/heads7.gguf"}, 2, "= 64 is not divisible by num_attention_heads");
  ExpectError({"info", "/dev/zero"}, 2, "'/dev/zero': it is a character device, not a regular file");
  fs::create_symlink(dir + "/loop2", dir + "/loop1");
  fs::create_symlink(dir + "/loop1", dir + "/loop2");
  ExpectError({"info", dir + "/loop1"}, 2, "Too many levels of symbolic links");
  ExpectError({"run", "-m", M(), "--tokenizer", F() + "/config.json", "-p", "x"}, 2, "is JSON");
  // A GGUF string whose length runs past the end names the file once.
  gguf = ReadText(M());
  const uint64_t huge = uint64_t{1} << 40;
  std::memcpy(gguf.data() + ValueOffset(gguf, "general.architecture"), &huge, 8);
  const std::string bad = dir + "/bad-string.gguf";
  testing::WriteBytes(bad, gguf);
  const CommandOutcome o = Herd({"info", bad});
  EXPECT_EQ(o.exit_code, 2);
  EXPECT_EQ(o.err.find(bad), o.err.rfind(bad)) << o.err;
}

TEST(Issue18, ExitCodesFollowTheReadme) {
  ExpectError({"frobnicate"}, 1, "unknown command 'frobnicate' (commands: run,");
  const CommandOutcome parse = Herd({"run", "-m", M(), "-p", "x", "--bogus"});
  EXPECT_EQ(parse.exit_code, 1);
  EXPECT_EQ(parse.err.rfind("herd: error: ", 0), 0u) << parse.err;
  EXPECT_EQ(parse.err.find('\n'), parse.err.size() - 1) << "one line: " << parse.err;
  // A token id outside the vocabulary and a malformed one are both usage errors.
  ExpectError({"logits", "-m", M(), "--tokens", "1,512"}, 1, "outside the vocabulary");
  ExpectError({"logits", "-m", M(), "--tokens", "1,-1"}, 1, "is not a token id");
  // -c above the model's maximum is a usage error; a prompt or text that does not fit is bad input.
  ExpectError({"run", "-m", M(), "-p", "x", "-c", "5000"}, 1, "above the model's maximum context of 2048");
  ExpectError({"run", "-m", M(), "-p", "Once upon a time there was", "-c", "4"}, 2, "does not fit the context");
  const std::string dir = Scratch("codes");
  testing::WriteBytes(dir + "/short.txt", "hi\n");
  ExpectError({"perplexity", "-m", M(), "-f", dir + "/short.txt"}, 2, "fewer than one chunk");
}

TEST(Issue18, BenchChecksArgumentsBeforeBuildingWeights) {
  const CommandOutcome o = Herd({"bench", "--synthetic", "custom", "--max-ctx", "1", "-p", "4", "-n", "4"});
  EXPECT_EQ(o.exit_code, 1);
  EXPECT_NE(o.err.find("exceeds the model's maximum context of 1"), std::string::npos) << o.err;
  EXPECT_EQ(o.err.find("weights made"), std::string::npos) << "built the weights first: " << o.err;
  const CommandOutcome save = Herd({"bench", "--synthetic", "custom", "--layers", "1", "--save", "/dev/full"});
  EXPECT_EQ(save.exit_code, 1);
  EXPECT_EQ(save.err.find("weights made"), std::string::npos) << save.err;
}

}  // namespace
}  // namespace herd
