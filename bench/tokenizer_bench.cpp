// Encoding speed of the three tokenizer families (tokenizer/tokenizer.h) on the same text of about 3000 tokens:
//   BM_Encode/llama3: tiktoken BPE, Llama 3 rank file (cl100k pre-tokenizer regex);
//   BM_Encode/llama4: tiktoken BPE, Llama 4 rank file (o200k regex);
//   BM_Encode/llama2: SentencePiece-style BPE from the Llama 2 vocabulary GGUF (no pre-tokenizer).
// The text is llama.cpp's 46 tokenizer test strings (shared/models/llama3-tokenizer/*.inp: ASCII, whitespace runs,
// digits, CJK, emoji) joined by newlines and repeated until the Llama 4 tokenizer gives at least 3000 tokens.
// Counters: tokens (per call, for that tokenizer), tokens_per_s, bytes_per_s (input bytes). One thread, no BOS,
// no special-token parsing. Reads the tokenizers from $HERD_SHARED, else ../shared (run from the checkout):
//   build/release/tokenizer_bench --benchmark_counters_tabular=true
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace herd::tokenizer {
namespace {

[[noreturn]] void Die(const std::string& message) {
  std::fprintf(stderr, "tokenizer_bench: %s\n", message.c_str());
  std::exit(1);
}

// $HERD_SHARED, else ../shared from the working directory; exits with a message when it has no models/ folder.
std::string SharedDir() {
  const char* env = std::getenv("HERD_SHARED");
  const std::string dir = env != nullptr && env[0] != '\0' ? env : "../shared";
  std::error_code ec;
  if (!std::filesystem::is_directory(std::filesystem::path(dir) / "models", ec)) {
    Die("shared test data not found at '" + dir +
        "' (no models/ folder there): run from the checkout with ../shared beside it, or set HERD_SHARED");
  }
  return dir;
}

std::unique_ptr<Tokenizer> MustLoad(Result<std::unique_ptr<Tokenizer>> r, const std::string& path) {
  if (!r.ok()) Die("cannot load " + path + ": " + r.status().ToString());
  return std::move(r).value();
}

// The strings of a llama.cpp .inp file (each followed by "\n__ggml_vocab_test__\n"), joined by newlines.
std::string ReadTestStrings(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) Die("cannot read " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string inp = ss.str(), sep = "\n__ggml_vocab_test__\n";
  std::string text;
  for (size_t pos = 0, at; (at = inp.find(sep, pos)) != std::string::npos; pos = at + sep.size()) {
    text.append(inp, pos, at - pos).append("\n");
  }
  if (text.empty()) Die(path + " holds no test strings");
  return text;
}

void BM_Encode(benchmark::State& state, const Tokenizer* tok, const std::string* text) {
  size_t n_tokens = 0;
  for (auto _ : state) {
    const std::vector<int32_t> ids = tok->Encode(*text, /*add_bos=*/false, /*parse_special=*/false);
    n_tokens = ids.size();
    benchmark::DoNotOptimize(ids.data());
  }
  state.counters["tokens"] = static_cast<double>(n_tokens);
  state.counters["tokens_per_s"] =
      benchmark::Counter(static_cast<double>(n_tokens), benchmark::Counter::kIsIterationInvariantRate);
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(text->size()));
}

}  // namespace

int Main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  const std::string shared = SharedDir() + "/models/";
  const std::string llama3_path = shared + "llama3-tokenizer/tokenizer.model";
  const std::string llama4_path = shared + "llama4-tokenizer/tokenizer.model";
  const std::string llama2_path = shared + "llama2-tokenizer/ggml-vocab-llama-spm.gguf";
  // Loaded once, before timing: the big rank files take a moment. Kept alive until the benchmarks have run.
  static const std::unique_ptr<Tokenizer> llama3 = MustLoad(LoadTiktoken(llama3_path), llama3_path);
  static const std::unique_ptr<Tokenizer> llama4 = MustLoad(LoadTiktoken(llama4_path), llama4_path);
  static const std::unique_ptr<Tokenizer> llama2 = MustLoad(LoadTokenizer(llama2_path), llama2_path);

  const std::string strings = ReadTestStrings(shared + "llama3-tokenizer/ggml-vocab-llama-bpe.gguf.inp");
  static std::string text;
  while (llama4->Encode(text, false, false).size() < 3000) text += strings;

  benchmark::RegisterBenchmark("BM_Encode/llama3", BM_Encode, llama3.get(), &text)->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("BM_Encode/llama4", BM_Encode, llama4.get(), &text)->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("BM_Encode/llama2", BM_Encode, llama2.get(), &text)->Unit(benchmark::kMillisecond);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

}  // namespace herd::tokenizer

int main(int argc, char** argv) { return herd::tokenizer::Main(argc, argv); }
