// herd command line: run, logits, tokenize, info (chat, convert and bench live in their own files). Parses
// flags with CLI11 (its exceptions stop here), maps every Status to an exit code in one place: 0 ok, 1 usage,
// 2 bad model or input.
#include "cli/commands.h"

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <iostream>
#include <random>
#include <sstream>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "core/thread_pool.h"
#include "formats/gguf.h"
#include "cli/common.h"
#include "runtime/engine.h"

namespace herd::cli {
namespace {

// ---- run ----
struct RunOptions {
  CommonOptions common;
  std::string prompt;
  int64_t n_predict = 256;
  runtime::SamplingParams sampling;
  std::optional<uint64_t> seed;
  std::vector<std::string> stop;
  bool no_bos = false;
  bool special = false;
};

int CmdRun(const RunOptions& o) {
  runtime::SamplingParams sp = o.sampling;
  sp.seed = o.seed ? *o.seed : std::random_device{}();
  if (Status s = sp.Validate(); !s.ok()) return Fail(s);
  auto loaded = Load(o.common, true);
  if (!loaded.ok()) return FailInput(loaded.status());
  runtime::LoadedModel& m = **loaded;
  std::vector<int32_t> prompt = m.tokenizer->Encode(o.prompt, !o.no_bos, o.special);
  if (prompt.empty()) return Fail(InvalidArgument("the prompt encodes to no tokens (use a non-empty prompt or BOS)"));
  const int64_t n_ctx = ContextSize(o.common, m.model->config(), static_cast<int64_t>(prompt.size()) + o.n_predict);
  auto state = m.model->NewState(n_ctx, o.common.batch);
  if (!state.ok()) return FailInput(state.status());
  ThreadPool pool(o.common.threads);
  std::fprintf(stderr, "herd: loaded %s in %.1f ms (%s, %.2f MiB weights), %d threads, context %" PRId64 ", seed %" PRIu64 "\n",
               o.common.model.c_str(), m.load_ms, m.model->config().architecture_name.c_str(),
               static_cast<double>(m.model->WeightBytes()) / (1 << 20), pool.size(), n_ctx, sp.seed);
  runtime::GenerateOptions go;
  go.n_predict = o.n_predict;
  go.sampling = sp;
  go.stop_strings = o.stop;
  // Echo the prompt text as the model saw it, then stream the continuation.
  std::string prompt_text = m.tokenizer->Decode(prompt, /*skip_special=*/true);
  std::fwrite(prompt_text.data(), 1, prompt_text.size(), stdout);
  std::fflush(stdout);
  auto r = runtime::Generate(m, **state, pool, prompt, go, [](std::string_view piece) {
    return std::fwrite(piece.data(), 1, piece.size(), stdout) == piece.size() && std::fflush(stdout) == 0;
  });
  std::fputc('\n', stdout);
  if (!r.ok()) return FailInput(r.status());
  const double prompt_tps = r->prompt_ms > 0 ? 1000.0 * r->n_prompt / r->prompt_ms : 0;
  const double gen_tps = r->gen_ms > 0 ? 1000.0 * static_cast<double>(r->tokens.size()) / r->gen_ms : 0;
  std::fprintf(stderr, "herd: load %.1f ms | prompt %" PRId64 " tokens, %.1f ms, %.2f tokens/s | generation %zu tokens, %.1f ms, %.2f tokens/s | stop: %s\n",
               m.load_ms, r->n_prompt, r->prompt_ms, prompt_tps, r->tokens.size(), r->gen_ms, gen_tps,
               std::string(runtime::StopReasonName(r->stop_reason)).c_str());
  return kExitOk;
}

// ---- logits ----
struct LogitsOptions {
  CommonOptions common;
  std::string prompt;
  std::string tokens;
  bool all = false;
  int top = 0;
  bool json = false;
  bool no_bos = false;
  bool special = false;
};

int CmdLogits(const LogitsOptions& o) {
  auto loaded = Load(o.common, o.tokens.empty());
  if (!loaded.ok()) return FailInput(loaded.status());
  runtime::LoadedModel& m = **loaded;
  std::vector<int32_t> ids;
  if (!o.tokens.empty()) {
    auto parsed = ParseTokenList(o.tokens);
    if (!parsed.ok()) return Fail(parsed.status());
    ids = *parsed;
  } else {
    ids = m.tokenizer->Encode(o.prompt, !o.no_bos, o.special);
    if (ids.empty()) return Fail(InvalidArgument("the prompt encodes to no tokens"));
  }
  const int64_t vocab = m.model->config().vocab_size;
  const int64_t n = static_cast<int64_t>(ids.size());
  auto state = m.model->NewState(ContextSize(o.common, m.model->config(), n), o.common.batch);
  if (!state.ok()) return FailInput(state.status());
  ThreadPool pool(o.common.threads);
  const int64_t rows = o.all ? n : 1;
  std::vector<float> logits(static_cast<size_t>(rows * vocab));
  Status s = m.model->Forward(**state, ids, o.all ? model::LogitsMode::kAll : model::LogitsMode::kLast,
                              logits.data(), pool);
  if (!s.ok()) return FailInput(s);

  auto top_of = [&](const float* row) {
    std::vector<int32_t> idx(static_cast<size_t>(vocab));
    for (int64_t i = 0; i < vocab; ++i) idx[i] = static_cast<int32_t>(i);
    const int64_t k = std::min<int64_t>(o.top, vocab);
    std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int32_t a, int32_t b) {
      return row[a] > row[b] || (row[a] == row[b] && a < b);
    });
    idx.resize(static_cast<size_t>(k));
    return idx;
  };
  if (o.json) {
    nlohmann::json out;
    out["tokens"] = ids;
    out["n_vocab"] = vocab;
    nlohmann::json positions = nlohmann::json::array();
    for (int64_t r = 0; r < rows; ++r) {
      const float* row = logits.data() + r * vocab;
      nlohmann::json p;
      p["pos"] = o.all ? r : n - 1;
      if (o.top > 0) {
        nlohmann::json top = nlohmann::json::array();
        for (int32_t id : top_of(row)) top.push_back({{"id", id}, {"logit", row[id]}});
        p["top"] = top;
      } else {
        p["logits"] = std::vector<float>(row, row + vocab);
      }
      positions.push_back(p);
    }
    out["positions"] = positions;
    std::cout << out.dump() << "\n";
  } else {
    for (int64_t r = 0; r < rows; ++r) {
      const float* row = logits.data() + r * vocab;
      std::printf("pos %" PRId64 " (token %d):", o.all ? r : n - 1, ids[o.all ? r : n - 1]);
      if (o.top > 0) {
        for (int32_t id : top_of(row)) std::printf(" %d:%.6f", id, row[id]);
      } else {
        for (int64_t i = 0; i < vocab; ++i) std::printf(" %.6f", row[i]);
      }
      std::printf("\n");
    }
  }
  return kExitOk;
}

// ---- tokenize ----
struct TokenizeOptions {
  std::string source;
  std::string text;
  bool pieces = false;
  bool no_bos = false;
  bool special = false;
};

int CmdTokenize(const TokenizeOptions& o) {
  std::unique_ptr<tokenizer::Tokenizer> tok;
  // A model (GGUF with vocab, HF dir, llama2.c .bin) or a tokenizer file.
  auto direct = tokenizer::LoadTokenizer(o.source);
  if (direct.ok()) {
    tok = std::move(direct).value();
  } else {
    runtime::LoadOptions lo;
    lo.model_path = o.source;
    auto files = formats::OpenModelFiles(o.source);
    if (!files.ok()) {
      std::fprintf(stderr, "herd: error: %s\n(as a tokenizer file: %s)\n", files.status().ToString().c_str(),
                   direct.status().ToString().c_str());
      return kExitBadInput;
    }
    auto loaded = runtime::LoadModel(lo);
    if (!loaded.ok()) return FailInput(loaded.status());
    tok = std::move((*loaded)->tokenizer);
  }
  std::vector<int32_t> ids = tok->Encode(o.text, !o.no_bos, o.special);
  if (o.pieces) {
    for (int32_t id : ids) std::printf("%d\t'%s'\n", id, tok->TokenPiece(id).c_str());
  } else {
    std::printf("[");
    for (size_t i = 0; i < ids.size(); ++i) std::printf("%s%d", i ? ", " : "", ids[i]);
    std::printf("]\n");
  }
  return kExitOk;
}

// ---- info ----
int CmdInfo(const std::string& path) {
  auto files = formats::OpenModelFiles(path);
  if (!files.ok()) return FailInput(files.status());
  const char* fmt = files->format == formats::ModelFormat::kGguf             ? "GGUF"
                    : files->format == formats::ModelFormat::kSafetensorsDir ? "HF safetensors directory"
                                                                             : "llama2.c checkpoint";
  std::printf("file      %s\nformat    %s\n", path.c_str(), fmt);
  if (files->gguf) {
    std::printf("gguf      version %u, %zu metadata keys, %zu tensors\n", files->gguf->version(),
                files->gguf->metadata().size(), files->gguf->tensor_infos().size());
  }
  auto config = model::ConfigFromMetadata(files->metadata);
  if (!config.ok()) return FailInput(config.status());
  std::printf("\n%s", config->Describe().c_str());
  if (files->gguf) {
    std::printf("\nmetadata:\n");
    for (const auto& [key, value] : files->gguf->metadata()) {
      std::printf("  %-44s %s\n", key.c_str(), formats::GgufValueToString(value).c_str());
    }
  }
  int64_t total = 0;
  std::map<std::string, int64_t> per_dtype;
  std::printf("\ntensors (%zu):\n", files->weights.size());
  for (const auto& [name, view] : files->weights.tensors()) {
    std::printf("  %-40s %-24s %12" PRId64 " bytes\n", name.c_str(), view.Describe().c_str(), view.size_bytes);
    total += view.size_bytes;
    per_dtype[std::string(DTypeName(view.dtype))] += view.size_bytes;
  }
  std::printf("\nweights: %" PRId64 " bytes (%.2f MiB)", total, static_cast<double>(total) / (1 << 20));
  for (const auto& [dt, bytes] : per_dtype) std::printf(", %s %.2f MiB", dt.c_str(), static_cast<double>(bytes) / (1 << 20));
  std::printf("\n");
  auto model = model::CreateModel(*config, files->weights);
  if (!model.ok()) {
    std::fflush(stdout);
    return FailInput(model.status().WithContext("the model cannot run"));
  }
  return kExitOk;
}

}  // namespace

int Main(int argc, char** argv) {
  CLI::App app{"herd: inference engine for the Llama 4 herd and dense Llama models"};
  app.require_subcommand(1);
  app.set_help_all_flag("--help-all", "help for every command");

  RunOptions run;
  auto* run_cmd = app.add_subcommand("run", "generate text from a prompt (streams to stdout; speed to stderr)");
  AddModelOptions(run_cmd, &run.common);
  run_cmd->add_option("-p,--prompt", run.prompt, "prompt text")->required();
  run_cmd->add_option("-n,--n-predict", run.n_predict, "tokens to generate")->check(CLI::Range(int64_t{0}, int64_t{1} << 30));
  run_cmd->add_option("--temp", run.sampling.temperature, "temperature (0 = greedy)");
  run_cmd->add_option("--top-k", run.sampling.top_k, "top-k (0 = off)");
  run_cmd->add_option("--top-p", run.sampling.top_p, "top-p (1 = off)");
  run_cmd->add_option("--min-p", run.sampling.min_p, "min-p (0 = off)");
  run_cmd->add_option("--repeat-penalty", run.sampling.repeat_penalty, "repetition penalty (1 = off)");
  run_cmd->add_option("--repeat-last-n", run.sampling.repeat_last_n, "tokens the penalty looks back");
  run_cmd->add_option("--seed", run.seed, "random seed (default: random, printed)");
  run_cmd->add_option("--stop", run.stop, "stop string (repeatable)");
  run_cmd->add_flag("--no-bos", run.no_bos, "do not prepend BOS");
  run_cmd->add_flag("--special", run.special, "parse special-token text such as <|eot|> in the prompt");

  LogitsOptions lg;
  auto* lg_cmd = app.add_subcommand("logits", "print the logits of the last (or every) position");
  AddModelOptions(lg_cmd, &lg.common);
  auto* lg_prompt = lg_cmd->add_option("--prompt,-p", lg.prompt, "prompt text");
  auto* lg_tokens = lg_cmd->add_option("--tokens", lg.tokens, "comma-separated token ids (no tokenizer needed)");
  lg_prompt->excludes(lg_tokens);
  lg_cmd->add_flag("--all", lg.all, "every position, not only the last");
  lg_cmd->add_option("--top", lg.top, "print only the K largest logits per position")->check(CLI::Range(0, 1 << 30));
  lg_cmd->add_flag("--json", lg.json, "JSON output");
  lg_cmd->add_flag("--no-bos", lg.no_bos, "do not prepend BOS to --prompt");
  lg_cmd->add_flag("--special", lg.special, "parse special-token text in --prompt");

  TokenizeOptions tk;
  auto* tk_cmd = app.add_subcommand("tokenize", "print the token ids of a text");
  tk_cmd->add_option("-m,--model", tk.source, "model or tokenizer file")->required();
  tk_cmd->add_option("text", tk.text, "text to tokenize")->required();
  tk_cmd->add_flag("--pieces", tk.pieces, "print each id with its piece");
  tk_cmd->add_flag("--no-bos", tk.no_bos, "do not prepend BOS");
  tk_cmd->add_flag("--special", tk.special, "parse special-token text");

  std::string info_path;
  auto* info_cmd = app.add_subcommand("info", "architecture, hyperparameters, tensors and sizes of a model");
  info_cmd->add_option("model", info_path, "model path")->required();

  // Commands defined in their own files.
  std::vector<Command> extra = {AddChatCommand(app),     AddConvertCommand(app),    AddQuantizeCommand(app),
                                AddPerplexityCommand(app), AddKldCommand(app), AddBenchCommand(app)};

  try {
    app.parse(argc, argv);
    if (lg_cmd->parsed() && lg.prompt.empty() && lg.tokens.empty()) {
      throw CLI::ValidationError("logits: one of --prompt or --tokens is required");
    }
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? kExitOk : kExitUsage;
  }
  if (run_cmd->parsed()) return CmdRun(run);
  if (lg_cmd->parsed()) return CmdLogits(lg);
  if (tk_cmd->parsed()) return CmdTokenize(tk);
  if (info_cmd->parsed()) return CmdInfo(info_path);
  for (const Command& c : extra) {
    if (c.app->parsed()) return c.run();
  }
  return kExitUsage;
}

}  // namespace herd::cli
