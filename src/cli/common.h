// Pieces shared by the herd commands: the model and sampling options every command takes, the one mapping from
// Status to exit code and message, standard-output checks, loading, and the Command hook through which commands
// defined in their own files (bench, convert, chat, quality) register themselves.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cli/commands.h"
#include "core/status.h"
#include "core/thread_pool.h"
#include "model/config.h"
#include "runtime/engine.h"
#include "runtime/images.h"
#include "runtime/sampler.h"

namespace herd::cli {

struct CommonOptions {
  std::string model;
  std::string tokenizer;
  int threads = 0;
  int64_t ctx = 0;  // 0: min(model maximum, max(4096, needed))
  int64_t batch = 512;
  runtime::RepackMode repack = runtime::RepackMode::kAuto;  // --repack / --no-repack (runtime::RepackMode)
  std::string kv_type = "f16";                              // --kv-type (commands that keep a KV cache)
  std::string mmproj;                                       // --mmproj: the vision tower's GGUF
};

// -m/--model (required unless model_required is false), --tokenizer, --mmproj, -t, -c, -b, --repack, --no-repack.
void AddModelOptions(CLI::App* cmd, CommonOptions* o, bool model_required = true);

// --image FILE (repeatable) and --max-tiles N, for the commands that take images.
struct ImageOptions {
  std::vector<std::string> files;
  int64_t max_tiles = 16;
};
void AddImageOptions(CLI::App* cmd, ImageOptions* o);
// The images of `o` decoded and encoded by the model's vision tower (none: an empty result).
Result<runtime::EncodedImages> EncodeImageFiles(const ImageOptions& o, const runtime::LoadedModel& m, ThreadPool& pool);

// --kv-type f32|f16|bf16|q8_0 (default f16, as llama.cpp).
void AddKvTypeOption(CLI::App* cmd, std::string* kv_type);
// A single-sequence state of n_ctx positions with o's batch size and KV type.
Result<std::unique_ptr<model::ModelState>> NewState(const CommonOptions& o, const model::Model& m, int64_t n_ctx);

// --temp, --top-k, --top-p, --min-p, --repeat-penalty, --repeat-last-n and --seed (a decimal from 0 to 2^64 - 1;
// a sign, a fraction or a larger number is a usage error, never wrapped or clamped).
struct SamplingOptions {
  runtime::SamplingParams params;
  std::optional<uint64_t> seed;  // nullopt: random (printed)
  // The parameters with the seed filled in; InvalidArgument naming a bad value.
  Result<runtime::SamplingParams> Resolve() const;
};
void AddSamplingOptions(CLI::App* cmd, SamplingOptions* o);
// The --seed option of a command ("seed of the synthetic weights" for bench).
CLI::Option* AddSeedOption(CLI::App* cmd, std::optional<uint64_t>* seed, const std::string& help);

// Prints "herd: error: <message>" and returns the exit code of its kind (commands.h): kExitUsage for
// InvalidArgument, kExitOutput for a failed output (core/file.h IsOutputError), kExitResources for
// ResourceExhausted, kExitBadInput for everything else (a damaged, unsupported or unreadable model or input).
int Fail(const Status& s);

// Standard output: every command writes through stdio; FinishOutput flushes it and reports an earlier failed
// write (a full disk, a closed stdout) as IOError "cannot write to standard output". Main calls it once after a
// successful command. WriteStdout writes and flushes `text` and says whether that worked, for streaming commands
// (run, chat), which stop generating when nobody can read the result.
Status FinishOutput();
bool WriteStdout(std::string_view text);

Result<std::unique_ptr<runtime::LoadedModel>> Load(const CommonOptions& o, bool require_tokenizer);
// The worker pool of -t; ResourceExhausted when the OS refuses that many threads.
Result<std::unique_ptr<ThreadPool>> MakePool(const CommonOptions& o);

// The context to allocate: -c when given, else min(model maximum, max(4096, needed)). InvalidArgument when -c
// exceeds the model's max_position_embeddings.
Result<int64_t> ContextSize(const CommonOptions& o, const model::ModelConfig& c, int64_t needed);

// "1, 2,3" -> {1, 2, 3}: decimal ids from 0 to 2^31 - 1 separated by commas (spaces around them allowed).
// InvalidArgument naming the bad entry for anything else: a sign, an empty entry (",,", a trailing comma), a
// NUL byte or other junk.
Result<std::vector<int32_t>> ParseTokenList(std::string_view s);

// A subcommand registered on `app` and the function that runs it once parsed. Options live in the closure.
struct Command {
  CLI::App* app = nullptr;
  std::function<Status()> run;
};

Command AddBenchCommand(CLI::App& app);
Command AddConvertCommand(CLI::App& app);
Command AddChatCommand(CLI::App& app);
Command AddQuantizeCommand(CLI::App& app);
Command AddPerplexityCommand(CLI::App& app);
Command AddKldCommand(CLI::App& app);

}  // namespace herd::cli
