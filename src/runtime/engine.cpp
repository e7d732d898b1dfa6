// Model loading and the generation loop.
#include "runtime/engine.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "core/clock.h"
#include "core/mapped_file.h"
#include "formats/vision_files.h"
#include "runtime/text_stream.h"

namespace herd::runtime {
namespace fs = std::filesystem;

std::string_view StopReasonName(StopReason reason) {
  switch (reason) {
    case StopReason::kLength:
      return "length";
    case StopReason::kEos:
      return "eos";
    case StopReason::kStopString:
      return "stop string";
    case StopReason::kContextFull:
      return "context full";
    case StopReason::kCancelled:
      return "cancelled";
    case StopReason::kGrammarEnd:
      return "grammar complete";
  }
  return "unknown";
}

double NowMs() { return 1000.0 * MonotonicSeconds(); }

namespace {

// Tokenizer files that may sit beside a llama2.c checkpoint: tokenizer.bin, or a single tok*.bin.
Result<std::string> FindLlama2cTokenizer(const std::string& model_path) {
  const fs::path dir = fs::path(model_path).parent_path().empty() ? fs::path(".") : fs::path(model_path).parent_path();
  if (fs::exists(dir / "tokenizer.bin")) return (dir / "tokenizer.bin").string();
  std::vector<std::string> found;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (e.path() != fs::path(model_path) && name.rfind("tok", 0) == 0 && e.path().extension() == ".bin") {
      found.push_back(e.path().string());
    }
  }
  if (found.size() == 1) return found[0];
  return InvalidArgument("no tokenizer given for llama2.c checkpoint '" + model_path +
                         "' and none found beside it (tokenizer.bin or a single tok*.bin); pass --tokenizer FILE");
}

Result<std::unique_ptr<tokenizer::Tokenizer>> OpenTokenizer(const formats::ModelFiles& files,
                                                            const model::ModelConfig& config, const LoadOptions& o) {
  // A llama2.c tokenizer.bin does not say how many tokens it holds: the checkpoint's vocabulary does.
  std::optional<int32_t> vocab;
  if (files.format == formats::ModelFormat::kLlama2c) vocab = static_cast<int32_t>(config.vocab_size);
  if (!o.tokenizer_path.empty()) return tokenizer::LoadTokenizer(o.tokenizer_path, vocab);
  switch (files.format) {
    case formats::ModelFormat::kGguf:
      return tokenizer::LoadTokenizerFromGguf(*files.gguf);
    case formats::ModelFormat::kSafetensorsDir:
      return tokenizer::LoadTokenizer(files.path);
    case formats::ModelFormat::kLlama2c: {
      HERD_ASSIGN_OR_RETURN(std::string path, FindLlama2cTokenizer(files.path));
      return tokenizer::LoadLlama2cTokenizer(path, *vocab);
    }
  }
  return Internal("unknown model format");
}

}  // namespace

uint64_t Fnv1a(std::span<const uint8_t> bytes, uint64_t h) {
  for (uint8_t b : bytes) h = (h ^ b) * 0x100000001b3ull;
  return h;
}

uint64_t Fnv1aInt(uint64_t v, uint64_t h) {
  uint8_t b[8];
  for (int i = 0; i < 8; ++i) b[i] = static_cast<uint8_t>(v >> (8 * i));
  return Fnv1a(b, h);
}

std::string ModelFingerprint(const LoadedModel& m) {
  uint64_t h = kFnv1aBasis;
  auto mix = [&](std::string_view s) {  // the length first, so that fields cannot run into each other
    h = Fnv1a(std::span(reinterpret_cast<const uint8_t*>(s.data()), s.size()), Fnv1aInt(s.size(), h));
  };
  const model::ModelConfig& c = m.model->config();
  mix(c.Describe());  // every field, rope_style and the layer table included
  for (const auto& [name, v] : m.files.weights.tensors()) {
    mix(name);
    mix(v.Describe());
  }
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
  return hex;
}

Result<model::Model::RepackStats> RepackModel(model::Model& model, ThreadPool& pool, bool show_progress, double* ms,
                                              const std::string& why) {
  const double t0 = NowMs();
  HERD_ASSIGN_OR_RETURN(model::Model::RepackStats stats, model.RepackWeights(pool, show_progress));
  *ms = NowMs() - t0;
  if (show_progress) {
    std::fprintf(stderr,
                 "herd: repacked %lld matrices (%.1f MiB) into huge-page memory in %.0f ms, %lld of them into the "
                 "repacked layouts (Q8_0R, Q4_0R, Q4_KR, Q5_KR, Q6_KR)%s%s%s\n",
                 static_cast<long long>(stats.tensors), static_cast<double>(stats.bytes) / (1 << 20), *ms,
                 static_cast<long long>(stats.relaid), why.empty() ? "" : " (", why.c_str(), why.empty() ? "" : ")");
  }
  return stats;
}

std::string_view RepackModeName(RepackMode mode) {
  switch (mode) {
    case RepackMode::kAuto:
      return "auto";
    case RepackMode::kAlways:
      return "on";
    case RepackMode::kNever:
      return "off";
  }
  return "auto";
}

namespace {

constexpr int64_t kGiB = int64_t{1} << 30;

int64_t RepackMargin(int64_t available) { return std::max(kGiB, available / 8); }

}  // namespace

bool RepackFits(int64_t bytes, std::optional<int64_t> available) {
  return available.has_value() && bytes <= *available - RepackMargin(*available);
}

RepackChoice DecideRepack(RepackMode mode, const model::Model& model) {
  const int64_t bytes = model.RepackBytes();
  if (mode == RepackMode::kNever) return {false, "--no-repack"};
  if (mode == RepackMode::kAlways) return {bytes > 0, "--repack"};
  if (bytes == 0) return {false, "auto: nothing to repack"};
  const std::optional<int64_t> available = AvailableMemoryBytes();
  if (!available) return {false, "auto: the available memory is unknown; --repack forces the copy"};
  if (RepackFits(bytes, available)) {
    return {true, "auto: the " + MemorySizeText(bytes) + " copy fits in " + MemorySizeText(*available) +
                      " available; --no-repack uses the file map"};
  }
  return {false, "auto: a " + MemorySizeText(bytes) + " copy would leave less than " +
                     MemorySizeText(RepackMargin(*available)) + " of the " + MemorySizeText(*available) +
                     " available; --repack forces it"};
}

Result<RepackChoice> ApplyRepack(RepackMode mode, model::Model& model, ThreadPool& pool, bool show_progress,
                                 model::Model::RepackStats* stats, double* ms) {
  RepackChoice choice = DecideRepack(mode, model);
  *stats = {};
  *ms = 0;
  if (choice.repack) {
    auto done = RepackModel(model, pool, show_progress, ms, choice.why);
    if (done.ok()) {
      *stats = *done;
      return choice;
    }
    if (mode == RepackMode::kAlways) return done.status();
    choice = {false, "auto: the copy could not be had (" + done.status().message() + ")"};
  }
  if (show_progress) std::fprintf(stderr, "herd: weights used in place from the file map (%s)\n", choice.why.c_str());
  return choice;
}

namespace {

// The vision tower of --mmproj, or of the HF directory itself; its projector must feed the text model's width. A
// tower found in the directory that cannot be loaded (a config with a vision_config but no vision tensors) leaves
// the model text-only, its reason kept for the first image; an --mmproj that fails is an error.
Status LoadVision(const LoadOptions& o, LoadedModel& m) {
  const bool asked = !o.mmproj_path.empty();
  if (!asked && m.files.format != formats::ModelFormat::kSafetensorsDir) return Status::Ok();
  const std::string path = asked ? o.mmproj_path : o.model_path;
  auto load = [&]() -> Status {
    HERD_ASSIGN_OR_RETURN(formats::VisionFiles files, formats::OpenVisionFiles(path, o.show_progress));
    HERD_ASSIGN_OR_RETURN(m.vision, model::LoadVisionTower(files.metadata, files.weights));
    const int64_t text = m.model->config().hidden_size, out = m.vision->OutputDim();
    if (out != text) {
      m.vision.reset();
      return InvalidArgument("the vision projector of " + path + " outputs " + std::to_string(out) +
                             " features but the text model's hidden size is " + std::to_string(text) +
                             " (a projector of another model?)");
    }
    return Status::Ok();
  };
  const Status s = load();
  if (s.ok() || asked) return s.WithContext("--mmproj");
  // An HF directory without a vision_config is simply a text model.
  if (s.code() != StatusCode::kInvalidArgument) m.vision_error = s.WithContext("the vision tower of " + path);
  return Status::Ok();
}

}  // namespace

Result<std::unique_ptr<LoadedModel>> LoadModel(const LoadOptions& o) {
  const double t0 = NowMs();
  auto m = std::make_unique<LoadedModel>();
  HERD_ASSIGN_OR_RETURN(m->files, formats::OpenModelFiles(o.model_path));
  HERD_ASSIGN_OR_RETURN(model::ModelConfig config, model::ConfigFromMetadata(m->files.metadata));
  HERD_ASSIGN_OR_RETURN(m->model, model::CreateModel(std::move(config), m->files.weights));
  {
    HERD_ASSIGN_OR_RETURN(std::unique_ptr<ThreadPool> pool,
                          ThreadPool::Create(o.repack == RepackMode::kNever ? 1 : o.threads));
    HERD_ASSIGN_OR_RETURN(m->repack_choice,
                          ApplyRepack(o.repack, *m->model, *pool, o.show_progress, &m->repack, &m->repack_ms));
  }
  HERD_RETURN_IF_ERROR(LoadVision(o, *m));
  auto tok = OpenTokenizer(m->files, m->model->config(), o);
  if (tok.ok()) {
    m->tokenizer = std::move(tok).value();
    if (m->tokenizer->vocab_size() > m->model->config().vocab_size) {
      return Corruption("tokenizer has " + std::to_string(m->tokenizer->vocab_size()) +
                        " tokens but the model's vocabulary has only " + std::to_string(m->model->config().vocab_size) +
                        " rows");
    }
    m->stop_ids = m->tokenizer->stop_ids();
    // llama2.c's run.c ends a story when the model emits BOS.
    if (m->files.format == formats::ModelFormat::kLlama2c && m->tokenizer->bos_id()) {
      m->stop_ids.push_back(*m->tokenizer->bos_id());
    }
  } else if (o.require_tokenizer) {
    return tok.status();
  }
  m->load_ms = NowMs() - t0;
  return m;
}

Result<GenerateResult> Generate(const LoadedModel& m, model::ModelState& state, ThreadPool& pool,
                                std::span<const int32_t> prompt, const GenerateOptions& o, const TextSink& on_text) {
  HERD_RETURN_IF_ERROR(o.sampling.Validate());
  if (prompt.empty()) return InvalidArgument("the prompt has no tokens");
  if (state.n_past() + static_cast<int64_t>(prompt.size()) > state.n_ctx()) {
    return OutOfRange("prompt of " + std::to_string(prompt.size()) + " tokens does not fit the context of " +
                      std::to_string(state.n_ctx()) + " positions (" + std::to_string(state.n_past()) +
                      " already used); raise -c");
  }
  const int64_t vocab = m.model->config().vocab_size;
  std::vector<float> logits(static_cast<size_t>(vocab));
  std::vector<int32_t> history(prompt.begin(), prompt.end());
  // Generation ends when the context is full, whatever n_predict says: reserve no more than that.
  history.reserve(history.size() +
                  static_cast<size_t>(std::clamp<int64_t>(o.n_predict, 0, state.n_ctx() - state.n_past())));
  Sampler sampler(o.sampling, vocab);
  GenerateResult r;
  r.n_prompt = static_cast<int64_t>(prompt.size());

  double t = NowMs();
  HERD_RETURN_IF_ERROR(m.model->Forward(state, prompt, model::LogitsMode::kLast, logits.data(), pool, o.prompt_embeds));
  r.prompt_ms = NowMs() - t;

  TextStream stream(m.tokenizer.get(), prompt, o.stop_strings);
  bool go_on = true;  // what on_text said last
  auto emit = [&](const std::string& piece) {
    r.text += piece;
    if (!piece.empty() && go_on && on_text) go_on = on_text(piece);
  };

  std::optional<grammar::TokenMatcher> matcher;
  grammar::TokenMask mask;
  if (o.grammar) {
    if (o.grammar->vocab().size() != vocab) {
      return Internal("the grammar was prepared for a vocabulary of " + std::to_string(o.grammar->vocab().size()) +
                      " tokens, the model has " + std::to_string(vocab));
    }
    matcher.emplace(o.grammar);
  }
  // Tokens that can still be generated from step i on: n_predict's and the context's.
  const int64_t ctx_left = state.n_ctx() - state.n_past() + 1;
  auto budget = [&](int64_t i) { return std::min(o.n_predict, ctx_left) - i; };
  if (matcher) {
    const int64_t need = matcher->TokensToFinish();
    HERD_RETURN_IF_ERROR(matcher->status());
    if (need > budget(0)) {
      return InvalidArgument("the grammar's shortest output needs " + std::to_string(need) + " tokens, more than the " +
                             std::to_string(budget(0)) + " that may be generated");
    }
  }

  r.stop_reason = StopReason::kLength;
  t = NowMs();
  for (int64_t i = 0; i < o.n_predict; ++i) {
    if (matcher) matcher->FillMask(budget(i), &mask);
    const int32_t id = sampler.Sample(logits.data(), history, matcher ? &mask : nullptr);
    if (matcher) HERD_RETURN_IF_ERROR(matcher->status());
    if (id < 0) return Internal("the grammar allows no token after " + std::to_string(i) + " generated tokens");
    if (matcher && !matcher->Accept(id)) {
      HERD_RETURN_IF_ERROR(matcher->status());
      return Internal("the grammar refused the token it allowed");
    }
    if (m.IsStopToken(id)) {
      r.stop_reason = StopReason::kEos;
      r.stop_token = id;
      break;
    }
    r.tokens.push_back(id);
    history.push_back(id);
    bool stopped = false;
    emit(stream.Push(id, &stopped));
    if (stopped) {
      r.stop_reason = StopReason::kStopString;
      break;
    }
    if (!go_on) {
      r.stop_reason = StopReason::kCancelled;
      break;
    }
    if (matcher && matcher->IsComplete()) {
      r.stop_reason = StopReason::kGrammarEnd;
      break;
    }
    if (i + 1 == o.n_predict) break;
    if (state.n_past() >= state.n_ctx()) {
      r.stop_reason = StopReason::kContextFull;
      break;
    }
    const int32_t next[1] = {id};
    HERD_RETURN_IF_ERROR(m.model->Forward(state, next, model::LogitsMode::kLast, logits.data(), pool));
  }
  r.n_uncached = r.stop_reason == StopReason::kEos || r.tokens.empty() ? 0 : 1;
  if (r.stop_reason != StopReason::kStopString && r.stop_reason != StopReason::kCancelled) emit(stream.Finish());
  r.gen_ms = NowMs() - t;
  return r;
}

}  // namespace herd::runtime
