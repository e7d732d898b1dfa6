// herd command line: run, logits, tokenize, info (chat, convert, quantize, perplexity, kld and bench live in their
// own files). Parses flags with CLI11 (its exceptions stop here); every command returns a Status, which becomes a
// message and an exit code in one place (cli/common.h Fail; the codes are in commands.h).
#include "cli/commands.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <map>
#include <new>
#include <nlohmann/json.hpp>
#include <string>
#include <system_error>

#include "cli/common.h"
#include "core/file.h"
#include "formats/gguf.h"
#include "formats/vision_files.h"
#include "model/vision.h"
#include "runtime/chat.h"
#include "runtime/engine.h"
#include "runtime/structured.h"

namespace herd::cli {

// herd serve and herd bench-serve (serve_cmd.cpp, bench_serve_cmd.cpp).
Command AddServeCommand(CLI::App& app);
Command AddBenchServeCommand(CLI::App& app);
Command AddGuardCommand(CLI::App& app);

namespace {

// ---- run ----
struct RunOptions {
  CommonOptions common;
  std::string prompt;
  std::string tokens;
  ImageOptions images;
  int64_t n_predict = 256;
  SamplingOptions sampling;
  std::vector<std::string> stop;
  bool no_bos = false;
  bool special = false;
  std::string json_schema;  // file
  std::string grammar;      // file (GBNF)
  bool json_object = false;
};

// The grammar --json-schema, --grammar or --json asks for (null: none), compiled for the model's vocabulary.
Result<std::shared_ptr<const grammar::CompiledGrammar>> RunGrammar(const RunOptions& o, const runtime::LoadedModel& m) {
  runtime::GrammarKind kind = runtime::GrammarKind::kJsonObject;
  std::string text;
  if (!o.json_schema.empty() || !o.grammar.empty()) {
    const std::string& path = o.json_schema.empty() ? o.grammar : o.json_schema;
    kind = o.json_schema.empty() ? runtime::GrammarKind::kGbnf : runtime::GrammarKind::kJsonSchema;
    auto read = ReadTextInput(path, 16 << 20);
    if (!read.ok()) return read.status();
    text = std::move(read.value());
  } else if (!o.json_object) {
    return std::shared_ptr<const grammar::CompiledGrammar>();
  }
  const double t0 = runtime::NowMs();
  runtime::GrammarCache cache(m, 1);
  auto compiled = cache.Get(kind, text);
  if (!compiled.ok()) {
    const std::string what = !o.json_schema.empty() ? o.json_schema : !o.grammar.empty() ? o.grammar : "--json";
    // A schema or grammar that cannot be used is bad input (exit 2), like a damaged model file.
    const StatusCode code =
        compiled.status().code() == StatusCode::kInvalidArgument ? StatusCode::kCorruption : compiled.status().code();
    return Status(code, what + ": " + compiled.status().message());
  }
  std::fprintf(stderr, "herd: grammar ready in %.1f ms\n", runtime::NowMs() - t0);
  return compiled;
}

// The prompt of `herd run`: the ids of --tokens as given; text with images in a user turn of the chat template
// (the images where the text has <__media__>, else before it); plain text encoded as it is.
Result<std::vector<int32_t>> RunPrompt(const RunOptions& o, const runtime::LoadedModel& m,
                                       const runtime::EncodedImages& enc) {
  if (!o.tokens.empty()) return ParseTokenList(o.tokens);
  if (enc.patch_rows.empty()) return m.tokenizer->Encode(o.prompt, !o.no_bos, o.special);
  HERD_ASSIGN_OR_RETURN(runtime::ChatFormat format, runtime::DetectChatFormat(*m.tokenizer));
  for (const auto& layout : enc.layouts) {
    if (layout.empty()) {
      return NotSupported(
          "the tokenizer lacks Llama 4's image tokens (<|image_start|>, <|image|>, <|patch|>, "
          "<|tile_x_separator|>, <|tile_y_separator|>, <|image_end|>); give the ids with --tokens");
    }
  }
  runtime::ChatMessage user{"user", o.prompt, enc.layouts};
  return runtime::RenderChat(*m.tokenizer, format, std::span<const runtime::ChatMessage>(&user, 1), !o.no_bos, true);
}

Status CmdRun(const RunOptions& o) {
  if (o.prompt.empty() == o.tokens.empty()) return InvalidArgument("run: give one of -p/--prompt or --tokens");
  HERD_ASSIGN_OR_RETURN(runtime::SamplingParams sp, o.sampling.Resolve());
  HERD_ASSIGN_OR_RETURN(auto loaded, Load(o.common, o.tokens.empty()));
  runtime::LoadedModel& m = *loaded;
  HERD_ASSIGN_OR_RETURN(auto pool, MakePool(o.common));
  HERD_ASSIGN_OR_RETURN(runtime::EncodedImages enc, EncodeImageFiles(o.images, m, *pool));
  HERD_ASSIGN_OR_RETURN(std::vector<int32_t> prompt, RunPrompt(o, m, enc));
  if (prompt.empty()) return InvalidArgument("the prompt encodes to no tokens (use a non-empty prompt or BOS)");
  HERD_ASSIGN_OR_RETURN(runtime::ImageFusion fusion, runtime::FuseImagesFor(m, prompt, enc));
  const model::EmbeddingOverride embeds = fusion.Override();
  HERD_ASSIGN_OR_RETURN(int64_t n_ctx,
                        ContextSize(o.common, m.model->config(), static_cast<int64_t>(prompt.size()) + o.n_predict));
  HERD_ASSIGN_OR_RETURN(auto state, NewState(o.common, *m.model, n_ctx));
  std::fprintf(stderr,
               "herd: loaded %s in %.1f ms (%s, %.2f MiB weights), %d threads, context %" PRId64 ", seed %" PRIu64 "\n",
               o.common.model.c_str(), m.load_ms, m.model->config().architecture_name.c_str(),
               static_cast<double>(m.model->WeightBytes()) / (1 << 20), pool->size(), n_ctx, sp.seed);
  runtime::GenerateOptions go;
  go.n_predict = o.n_predict;
  go.sampling = sp;
  go.stop_strings = o.stop;
  go.prompt_embeds = fusion.empty() ? nullptr : &embeds;
  HERD_ASSIGN_OR_RETURN(go.grammar, RunGrammar(o, m));
  // Echo the prompt text as the model saw it, then stream the continuation; a failed write ends generation.
  // Without a tokenizer (--tokens), the generated ids, comma-separated.
  if (m.tokenizer != nullptr && !WriteStdout(m.tokenizer->Decode(prompt, /*skip_special=*/true))) {
    return FinishOutput();
  }
  HERD_ASSIGN_OR_RETURN(runtime::GenerateResult r, runtime::Generate(m, *state, *pool, prompt, go, WriteStdout));
  if (r.stop_reason == runtime::StopReason::kCancelled) return FinishOutput();
  if (m.tokenizer == nullptr) {
    std::string ids;
    for (int32_t id : r.tokens) ids += (ids.empty() ? "" : ",") + std::to_string(id);
    if (!WriteStdout(ids)) return FinishOutput();
  }
  if (!WriteStdout("\n")) return FinishOutput();
  const double prompt_tps = r.prompt_ms > 0 ? 1000.0 * r.n_prompt / r.prompt_ms : 0;
  const double gen_tps = r.gen_ms > 0 ? 1000.0 * static_cast<double>(r.tokens.size()) / r.gen_ms : 0;
  std::fprintf(stderr,
               "herd: load %.1f ms | prompt %" PRId64
               " tokens, %.1f ms, %.2f tokens/s | generation %zu tokens, %.1f ms, %.2f tokens/s | stop: %s\n",
               m.load_ms, r.n_prompt, r.prompt_ms, prompt_tps, r.tokens.size(), r.gen_ms, gen_tps,
               std::string(runtime::StopReasonName(r.stop_reason)).c_str());
  return Status::Ok();
}

// ---- logits ----
struct LogitsOptions {
  CommonOptions common;
  std::string prompt;
  std::string tokens;
  ImageOptions images;
  bool all = false;
  int top = 0;
  bool json = false;
  bool no_bos = false;
  bool special = false;
};

Status CmdLogits(const LogitsOptions& o) {
  if (o.prompt.empty() == o.tokens.empty()) return InvalidArgument("logits: give one of --prompt or --tokens");
  std::vector<int32_t> ids;
  if (!o.tokens.empty()) {
    HERD_ASSIGN_OR_RETURN(ids, ParseTokenList(o.tokens));
  }
  HERD_ASSIGN_OR_RETURN(auto loaded, Load(o.common, o.tokens.empty()));
  runtime::LoadedModel& m = *loaded;
  if (o.tokens.empty()) {
    ids = m.tokenizer->Encode(o.prompt, !o.no_bos, o.special);
    if (ids.empty()) return InvalidArgument("the prompt encodes to no tokens");
  }
  const int64_t vocab = m.model->config().vocab_size;
  const int64_t n = static_cast<int64_t>(ids.size());
  HERD_ASSIGN_OR_RETURN(int64_t n_ctx, ContextSize(o.common, m.model->config(), n));
  HERD_ASSIGN_OR_RETURN(auto state, NewState(o.common, *m.model, n_ctx));
  HERD_ASSIGN_OR_RETURN(auto pool, MakePool(o.common));
  const int64_t rows = o.all ? n : 1;
  std::vector<float> logits(static_cast<size_t>(rows * vocab));
  // Images fill the <|patch|> rows of the ids in order (the ids must hold their layouts: --tokens, or --special
  // text that spells them).
  HERD_ASSIGN_OR_RETURN(runtime::EncodedImages enc, EncodeImageFiles(o.images, m, *pool));
  HERD_ASSIGN_OR_RETURN(runtime::ImageFusion fusion, runtime::FuseImagesFor(m, ids, enc));
  const model::EmbeddingOverride embeds = fusion.Override();
  HERD_RETURN_IF_ERROR(m.model->Forward(*state, ids, o.all ? model::LogitsMode::kAll : model::LogitsMode::kLast,
                                        logits.data(), *pool, fusion.empty() ? nullptr : &embeds));

  auto top_of = [&](const float* row) {
    std::vector<int32_t> idx(static_cast<size_t>(vocab));
    for (int64_t i = 0; i < vocab; ++i) idx[i] = static_cast<int32_t>(i);
    const int64_t k = std::min<int64_t>(o.top, vocab);
    std::partial_sort(idx.begin(), idx.begin() + k, idx.end(),
                      [&](int32_t a, int32_t b) { return row[a] > row[b] || (row[a] == row[b] && a < b); });
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
    std::printf("%s\n", out.dump().c_str());
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
  return Status::Ok();
}

// ---- tokenize ----
struct TokenizeOptions {
  std::string source;
  std::string text;
  bool pieces = false;
  bool no_bos = false;
  bool special = false;
};

Status CmdTokenize(const TokenizeOptions& o) {
  std::unique_ptr<tokenizer::Tokenizer> tok;
  // A tokenizer file, or a model (GGUF with vocab, HF dir, llama2.c .bin) that has one.
  auto direct = tokenizer::LoadTokenizer(o.source);
  if (direct.ok()) {
    tok = std::move(direct).value();
  } else {
    runtime::LoadOptions lo;
    lo.model_path = o.source;
    lo.show_progress = false;
    auto loaded = runtime::LoadModel(lo);
    if (!loaded.ok()) {
      return Status(loaded.status().code(),
                    loaded.status().message() + " (read as a tokenizer file: " + direct.status().message() + ")");
    }
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
  return Status::Ok();
}

// ---- info ----
// The vision tower of an HF directory or an mmproj file: its hyperparameters, tensors and bytes, and whether it binds.
Status PrintVision(const formats::VisionFiles& vf) {
  HERD_ASSIGN_OR_RETURN(model::VisionConfig vc, model::VisionConfigFromMetadata(vf.metadata));
  int64_t total = 0;
  for (const auto& [name, view] : vf.weights.tensors()) total += view.size_bytes;
  std::printf("\nvision tower (%s):\n%s", vf.gguf ? "projector GGUF" : "HF vision_config", vc.Describe().c_str());
  std::printf("tokens per tile: %" PRId64 "; %zu tensors, %" PRId64 " bytes (%.2f MiB)\n", vc.TokensPerTile(),
              vf.weights.size(), total, static_cast<double>(total) / (1 << 20));
  std::fflush(stdout);
  return model::VisionTower::Create(vc, vf.weights).status().WithContext("the vision tower cannot run");
}

Status CmdInfo(const std::string& path) {
  HERD_ASSIGN_OR_RETURN(formats::ModelFiles files, formats::OpenModelFiles(path));
  const char* fmt = files.format == formats::ModelFormat::kGguf             ? "GGUF"
                    : files.format == formats::ModelFormat::kSafetensorsDir ? "HF safetensors directory"
                                                                            : "llama2.c checkpoint";
  std::printf("file      %s\nformat    %s\n", path.c_str(), fmt);
  if (files.gguf) {
    std::printf("gguf      version %u, %zu metadata keys, %zu tensors\n", files.gguf->version(),
                files.gguf->metadata().size(), files.gguf->tensor_infos().size());
  }
  if (files.gguf) {
    auto arch = files.gguf->GetString("general.architecture");
    if (arch.ok() && *arch == "clip") {  // a vision projector (mmproj) alone
      HERD_ASSIGN_OR_RETURN(formats::VisionFiles vf, formats::OpenVisionFiles(path));
      return PrintVision(vf);
    }
  }
  HERD_ASSIGN_OR_RETURN(model::ModelConfig config, model::ConfigFromMetadata(files.metadata));
  std::printf("\n%s", config.Describe().c_str());
  // KV cache per cached position, every layer (chunked layers stop growing after their chunk, llama4.md 2.7).
  std::printf("kv cache per position:");
  for (const char* t : {"f32", "f16", "bf16", "q8_0"}) {
    const DType kv = *model::ParseKvType(t);
    if (model::CheckKvType(kv, config.head_dim).ok()) {
      std::printf(" %s %" PRId64 " bytes;", t, model::KvRowBytesPerToken(config, kv));
    }
  }
  int64_t chunked = 0, chunk = 0;
  for (const model::LayerConfig& lc : config.layers) {
    chunked += lc.attention_chunk_size > 0;
    chunk = std::max(chunk, lc.attention_chunk_size);
  }
  if (chunked > 0) {
    std::printf(" %" PRId64 " of %" PRId64 " layers chunked (%" PRId64
                " positions): beyond the chunk only the other %" PRId64 " grow",
                chunked, config.num_hidden_layers, chunk, config.num_hidden_layers - chunked);
  }
  std::printf("\n");
  if (files.gguf) {
    std::printf("\nmetadata:\n");
    for (const auto& [key, value] : files.gguf->metadata()) {
      std::printf("  %-44s %s\n", key.c_str(), formats::GgufValueToString(value).c_str());
    }
  }
  int64_t total = 0;
  std::map<std::string, int64_t> per_dtype;
  std::printf("\ntensors (%zu):\n", files.weights.size());
  for (const auto& [name, view] : files.weights.tensors()) {
    std::printf("  %-40s %-24s %12" PRId64 " bytes\n", name.c_str(), view.Describe().c_str(), view.size_bytes);
    total += view.size_bytes;
    per_dtype[std::string(DTypeName(view.dtype))] += view.size_bytes;
  }
  std::printf("\nweights: %" PRId64 " bytes (%.2f MiB)", total, static_cast<double>(total) / (1 << 20));
  for (const auto& [dt, bytes] : per_dtype)
    std::printf(", %s %.2f MiB", dt.c_str(), static_cast<double>(bytes) / (1 << 20));
  std::printf("\n");
  std::fflush(stdout);
  HERD_RETURN_IF_ERROR(
      model::CreateModel(std::move(config), files.weights).status().WithContext("the model cannot run"));
  if (files.format != formats::ModelFormat::kSafetensorsDir) return Status::Ok();
  auto vf = formats::OpenVisionFiles(path);
  if (!vf.ok()) return vf.status().code() == StatusCode::kInvalidArgument ? Status::Ok() : vf.status();
  return PrintVision(*vf);
}

// The command names, for messages.
std::string CommandList(const CLI::App& app) {
  std::string names;
  for (const CLI::App* sub : app.get_subcommands({})) names += (names.empty() ? "" : ", ") + sub->get_name();
  return names;
}

// A CLI11 parse error as one "herd: error:" line with the way to the help.
int UsageError(const CLI::App& app, const CLI::ParseError& e) {
  std::string where = "herd";
  for (const CLI::App* sub : app.get_subcommands()) where += " " + sub->get_name();
  std::string what = e.what();
  std::replace(what.begin(), what.end(), '\n', ' ');
  std::fprintf(stderr, "herd: error: %s (see '%s --help')\n", what.c_str(), where.c_str());
  return kExitUsage;
}

// A closed standard output would hand fd 1 to the next file herd opens (an output file receiving stdout's text):
// park /dev/full there instead, so that every write to it fails and FinishOutput reports it.
bool GuardClosedStdout() {
  if (::fcntl(STDOUT_FILENO, F_GETFD) != -1 || errno != EBADF) return false;
  const int fd = ::open("/dev/full", O_WRONLY | O_CLOEXEC);
  if (fd >= 0 && fd != STDOUT_FILENO) {
    ::dup2(fd, STDOUT_FILENO);
    ::close(fd);
  }
  return true;
}

int RunCommand(const std::function<Status()>& run, bool stdout_closed) {
  Status s = run();
  if (s.ok()) s = FinishOutput();
  // The last chance for a deferred write error (a network file system reports some only at close).
  if (s.ok() && std::fclose(stdout) != 0) s = OutputError("standard output", std::strerror(errno));
  if (!s.ok() && stdout_closed && IsOutputError(s)) s = OutputError("standard output", "it is closed");
  return s.ok() ? kExitOk : Fail(s);
}

}  // namespace

int Main(int argc, char** argv) {
  const bool stdout_closed = GuardClosedStdout();
  CLI::App app{"herd: inference engine for the Llama 4 herd and dense Llama models"};
  app.require_subcommand(1);
  app.set_help_all_flag("--help-all", "help for every command");

  RunOptions run;
  auto* run_cmd = app.add_subcommand("run", "generate text from a prompt (streams to stdout; speed to stderr)");
  AddModelOptions(run_cmd, &run.common);
  AddKvTypeOption(run_cmd, &run.common.kv_type);
  auto* run_prompt = run_cmd->add_option("-p,--prompt", run.prompt,
                                         "prompt text (with --image: a user turn of the "
                                         "chat template, the images where it says <__media__>, else before it)");
  auto* run_tokens = run_cmd->add_option("--tokens", run.tokens,
                                         "comma-separated prompt token ids instead of text (image layouts included; "
                                         "no tokenizer needed: the generated ids are printed)");
  run_prompt->excludes(run_tokens);
  AddImageOptions(run_cmd, &run.images);
  run_cmd->add_option("-n,--n-predict", run.n_predict, "tokens to generate")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 30));
  AddSamplingOptions(run_cmd, &run.sampling);
  run_cmd->add_option("--stop", run.stop, "stop string (repeatable)");
  run_cmd->add_flag("--no-bos", run.no_bos, "do not prepend BOS");
  run_cmd->add_flag("--special", run.special, "parse special-token text such as <|eot|> in the prompt");
  auto* run_schema = run_cmd->add_option("--json-schema", run.json_schema,
                                         "constrain the output to JSON valid for this JSON Schema file");
  auto* run_grammar = run_cmd->add_option("--grammar", run.grammar, "constrain the output to this GBNF grammar file");
  auto* run_json = run_cmd->add_flag("--json", run.json_object, "constrain the output to a JSON object");
  run_schema->excludes(run_grammar)->excludes(run_json);
  run_grammar->excludes(run_json);

  LogitsOptions lg;
  auto* lg_cmd = app.add_subcommand("logits", "print the logits of the last (or every) position");
  AddModelOptions(lg_cmd, &lg.common);
  AddKvTypeOption(lg_cmd, &lg.common.kv_type);
  auto* lg_prompt = lg_cmd->add_option("--prompt,-p", lg.prompt, "prompt text");
  auto* lg_tokens = lg_cmd->add_option("--tokens", lg.tokens, "comma-separated token ids (no tokenizer needed)");
  lg_prompt->excludes(lg_tokens);
  AddImageOptions(lg_cmd, &lg.images);
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
  std::vector<Command> extra = {AddChatCommand(app),       AddConvertCommand(app),   AddQuantizeCommand(app),
                                AddPerplexityCommand(app), AddKldCommand(app),       AddBenchCommand(app),
                                AddServeCommand(app),      AddBenchServeCommand(app), AddGuardCommand(app)};

  // A first word that is no command gets its own message (CLI11 would say "A subcommand is required").
  if (argc < 2) {
    std::fprintf(stderr, "herd: error: no command given (commands: %s; see 'herd --help')\n", CommandList(app).c_str());
    return kExitUsage;
  }
  const std::string first = argv[1];
  const auto subs = app.get_subcommands([&](const CLI::App* sub) { return sub->check_name(first); });
  if (!first.starts_with("-") && subs.empty()) {
    std::fprintf(stderr, "herd: error: unknown command '%s' (commands: %s; see 'herd --help')\n", first.c_str(),
                 CommandList(app).c_str());
    return kExitUsage;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    return UsageError(app, e);
  }
  // Exceptions from libraries that escape a command (an allocation beyond the machine, a thread the OS refuses)
  // end it with a message and the resources exit code instead of an abort.
  try {
    if (run_cmd->parsed()) return RunCommand([&] { return CmdRun(run); }, stdout_closed);
    if (lg_cmd->parsed()) return RunCommand([&] { return CmdLogits(lg); }, stdout_closed);
    if (tk_cmd->parsed()) return RunCommand([&] { return CmdTokenize(tk); }, stdout_closed);
    if (info_cmd->parsed()) return RunCommand([&] { return CmdInfo(info_path); }, stdout_closed);
    for (const Command& c : extra) {
      if (c.app->parsed()) return RunCommand(c.run, stdout_closed);
    }
  } catch (const std::bad_alloc&) {
    return Fail(ResourceExhausted("out of memory"));
  } catch (const std::system_error& e) {
    return Fail(ResourceExhausted(e.what()));
  }
  return kExitUsage;
}

}  // namespace herd::cli
