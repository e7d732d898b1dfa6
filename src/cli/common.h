// Pieces shared by the herd commands: the model options every command takes, exit-code mapping, loading, and the
// Command hook through which commands defined in their own files (bench, convert, chat) register themselves.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "cli/commands.h"
#include "core/status.h"
#include "model/config.h"
#include "runtime/engine.h"

namespace herd::cli {

struct CommonOptions {
  std::string model;
  std::string tokenizer;
  int threads = 0;
  int64_t ctx = 0;  // 0: min(model maximum, max(4096, needed))
  int64_t batch = 512;
  bool repack = false;  // --repack: model::Model::RepackWeights at load
};

// -m/--model (required unless model_required is false), --tokenizer, -t, -c, -b, --repack.
void AddModelOptions(CLI::App* cmd, CommonOptions* o, bool model_required = true);

// Prints "herd: error: ..." and returns the exit code: 1 for InvalidArgument (usage), else 2.
int Fail(const Status& s);
// Prints "herd: error: ..." and returns 2 (bad model or input), whatever the code.
int FailInput(const Status& s);

Result<std::unique_ptr<runtime::LoadedModel>> Load(const CommonOptions& o, bool require_tokenizer);

// The context to allocate: -c when given, else min(model maximum, max(4096, needed)).
int64_t ContextSize(const CommonOptions& o, const model::ModelConfig& c, int64_t needed);

// "1, 2,3" -> {1, 2, 3}; InvalidArgument naming the bad entry.
Result<std::vector<int32_t>> ParseTokenList(const std::string& s);

// A subcommand registered on `app` and the function that runs it once parsed. Options live in the closure.
struct Command {
  CLI::App* app = nullptr;
  std::function<int()> run;
};

Command AddBenchCommand(CLI::App& app);
Command AddConvertCommand(CLI::App& app);
Command AddChatCommand(CLI::App& app);
Command AddQuantizeCommand(CLI::App& app);
Command AddPerplexityCommand(CLI::App& app);
Command AddKldCommand(CLI::App& app);

}  // namespace herd::cli
