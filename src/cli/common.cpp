// Options, errors and outputs shared by the herd commands (cli/common.h).
#include "cli/common.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <random>

#include "core/file.h"

namespace herd::cli {

void AddModelOptions(CLI::App* cmd, CommonOptions* o, bool model_required) {
  auto* m = cmd->add_option("-m,--model", o->model,
                            "model: GGUF file, HF directory (config.json + safetensors) or llama2.c .bin");
  if (model_required) m->required();
  cmd->add_option("--tokenizer", o->tokenizer,
                  "tokenizer file (tokenizer.model, tokenizer.bin, GGUF); default: the model's own");
  cmd->add_option("-t,--threads", o->threads, "worker threads (default: all cores)")->check(CLI::Range(0, 1024));
  cmd->add_option("-c,--ctx", o->ctx, "context size in tokens (default: min(model maximum, 4096))")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 31));
  cmd->add_option("-b,--batch", o->batch, "prompt batch size (tokens per forward pass)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  auto* repack = cmd->add_flag_callback(
      "--repack", [o] { o->repack = runtime::RepackMode::kAlways; },
      "always copy the weight matrices at load into huge-page memory, regrouped for the AVX-512 VNNI and AVX2 kernels "
      "(faster decode and prefill, the same values rounded in another order; a second copy of the weights in RAM). "
      "The default does so when the copy fits in the available memory with a margin");
  auto* no_repack = cmd->add_flag_callback(
      "--no-repack", [o] { o->repack = runtime::RepackMode::kNever; },
      "use the weights in place from the file map (no second copy in RAM)");
  repack->excludes(no_repack);
  cmd->add_option("--mmproj", o->mmproj,
                  "the vision tower (llama.cpp's projector GGUF; an HF directory's own is found without it)");
}

void AddImageOptions(CLI::App* cmd, ImageOptions* o) {
  cmd->add_option("--image", o->files, "image file, PNG or JPEG (repeatable; in the prompt's order)");
  cmd->add_option("--max-tiles", o->max_tiles, "tiles per image at most (Meta's max_num_chunks)")
      ->check(CLI::Range(int64_t{1}, int64_t{64}));
}

Result<runtime::EncodedImages> EncodeImageFiles(const ImageOptions& o, const runtime::LoadedModel& m,
                                                ThreadPool& pool) {
  std::vector<vision::Image> images;
  for (const std::string& f : o.files) {
    auto image = vision::ReadImageFile(f);
    if (!image.ok()) return image.status().WithContext("--image " + f);
    images.push_back(std::move(image).value());
  }
  if (images.empty()) return runtime::EncodedImages{};
  HERD_ASSIGN_OR_RETURN(runtime::EncodedImages enc, runtime::EncodeImages(m, images, o.max_tiles, pool));
  std::fprintf(stderr, "herd: encoded %zu image(s), %lld tiles, in %.1f ms\n", images.size(),
               static_cast<long long>(enc.n_tiles), enc.encode_ms);
  return enc;
}

void AddKvTypeOption(CLI::App* cmd, std::string* kv_type) {
  cmd->add_option("--kv-type", *kv_type,
                  "KV cache row type: f32, f16 (default, as llama.cpp), bf16 or q8_0 (head_dim a multiple of 32)")
      ->check(CLI::IsMember({"f32", "f16", "bf16", "q8_0"}));
}

Result<std::unique_ptr<model::ModelState>> NewState(const CommonOptions& o, const model::Model& m, int64_t n_ctx) {
  HERD_ASSIGN_OR_RETURN(DType kv, model::ParseKvType(o.kv_type));
  return m.NewState(n_ctx, o.batch, kv);
}

namespace {

// A decimal integer in [0, max]: digits only (no sign, no spaces, no fraction), no overflow.
std::optional<uint64_t> ParseDecimal(std::string_view s, uint64_t max) {
  if (s.empty() || s.size() > 20) return std::nullopt;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    const uint64_t d = static_cast<uint64_t>(c - '0');
    if (v > (max - d) / 10) return std::nullopt;
    v = v * 10 + d;
  }
  return v;
}

// "a\0b" -> "a\\0b": how a bad argument is quoted in a message.
std::string Printable(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '\0') {
      out += "\\0";
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned char>(c));
      out += buf;
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace

CLI::Option* AddSeedOption(CLI::App* cmd, std::optional<uint64_t>* seed, const std::string& help) {
  return cmd
      ->add_option_function<std::string>(
          "--seed",
          [seed](const std::string& text) {
            const auto v = ParseDecimal(text, UINT64_MAX);
            if (!v) throw CLI::ValidationError("--seed", "'" + text + "' is not a whole number from 0 to 2^64 - 1");
            *seed = *v;
          },
          help)
      ->type_name("UINT64");
}

void AddSamplingOptions(CLI::App* cmd, SamplingOptions* o) {
  runtime::SamplingParams& p = o->params;
  cmd->add_option("--temp", p.temperature, "temperature (0 = greedy)");
  cmd->add_option("--top-k", p.top_k, "top-k (0 = off)")->check(CLI::Range(0, INT32_MAX));
  cmd->add_option("--top-p", p.top_p, "top-p (1 = off)");
  cmd->add_option("--min-p", p.min_p, "min-p (0 = off)");
  cmd->add_option("--repeat-penalty", p.repeat_penalty, "repetition penalty (1 = off)");
  cmd->add_option("--repeat-last-n", p.repeat_last_n, "tokens the penalty looks back")->check(CLI::Range(0, INT32_MAX));
  AddSeedOption(cmd, &o->seed, "random seed (default: random, printed)");
}

Result<runtime::SamplingParams> SamplingOptions::Resolve() const {
  runtime::SamplingParams p = params;
  p.seed = seed ? *seed : std::random_device{}();
  HERD_RETURN_IF_ERROR(p.Validate());
  return p;
}

int Fail(const Status& s) {
  std::fprintf(stderr, "herd: error: %s\n", s.ToString().c_str());
  if (s.code() == StatusCode::kInvalidArgument) return kExitUsage;
  if (s.code() == StatusCode::kResourceExhausted) return kExitResources;
  if (IsOutputError(s)) return kExitOutput;
  return kExitBadInput;
}

namespace {
int stdout_errno = 0;  // the first error of a write to stdout (stdio keeps only a flag)
}  // namespace

bool WriteStdout(std::string_view text) {
  errno = 0;
  if (std::fwrite(text.data(), 1, text.size(), stdout) == text.size() && std::fflush(stdout) == 0) return true;
  if (stdout_errno == 0) stdout_errno = errno;
  return false;
}

Status FinishOutput() {
  errno = 0;
  const bool flushed = std::fflush(stdout) == 0;
  if (flushed && !std::ferror(stdout)) return Status::Ok();
  if (stdout_errno == 0) stdout_errno = errno;
  return OutputError("standard output", stdout_errno != 0 ? std::strerror(stdout_errno) : "a write failed");
}

Result<std::unique_ptr<runtime::LoadedModel>> Load(const CommonOptions& o, bool require_tokenizer) {
  runtime::LoadOptions lo;
  lo.model_path = o.model;
  lo.tokenizer_path = o.tokenizer;
  lo.require_tokenizer = require_tokenizer;
  lo.repack = o.repack;
  lo.threads = o.threads;
  lo.mmproj_path = o.mmproj;
  return runtime::LoadModel(lo);
}

Result<std::unique_ptr<ThreadPool>> MakePool(const CommonOptions& o) { return ThreadPool::Create(o.threads); }

Result<int64_t> ContextSize(const CommonOptions& o, const model::ModelConfig& c, int64_t needed) {
  if (o.ctx > c.max_position_embeddings) {
    return InvalidArgument("-c " + std::to_string(o.ctx) + " is above the model's maximum context of " +
                           std::to_string(c.max_position_embeddings) + " positions (max_position_embeddings)");
  }
  if (o.ctx > 0) return o.ctx;
  return std::min<int64_t>(c.max_position_embeddings, std::max<int64_t>(4096, needed));
}

Result<std::vector<int32_t>> ParseTokenList(std::string_view s) {
  std::vector<int32_t> ids;
  size_t at = 0;
  for (;;) {
    const size_t comma = s.find(',', at);
    std::string_view item = s.substr(at, comma == std::string_view::npos ? std::string_view::npos : comma - at);
    const size_t b = item.find_first_not_of(" \t"), e = item.find_last_not_of(" \t");
    if (b == std::string_view::npos) {
      return InvalidArgument("token list '" + Printable(s) + "' has an empty entry");
    }
    item = item.substr(b, e - b + 1);
    const auto v = ParseDecimal(item, INT32_MAX);
    if (!v) return InvalidArgument("token list: '" + Printable(item) + "' is not a token id (0 to 2147483647)");
    ids.push_back(static_cast<int32_t>(*v));
    if (comma == std::string_view::npos) break;
    at = comma + 1;
  }
  return ids;
}

}  // namespace herd::cli
