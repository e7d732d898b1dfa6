#include "cli/common.h"

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <sstream>

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
  cmd->add_flag("--repack", o->repack,
                "copy the weight matrices at load into huge-page memory, Q8_0 regrouped for the AVX-512 VNNI "
                "kernels (faster decode, same outputs; costs a second copy of the weights in RAM and the time "
                "it takes, which is reported)");
}

int Fail(const Status& s) {
  std::fprintf(stderr, "herd: error: %s\n", s.ToString().c_str());
  return s.code() == StatusCode::kInvalidArgument ? kExitUsage : kExitBadInput;
}

// Status from loading files or processing input: always "bad model or input" (exit 2).
int FailInput(const Status& s) {
  std::fprintf(stderr, "herd: error: %s\n", s.ToString().c_str());
  return kExitBadInput;
}

Result<std::unique_ptr<runtime::LoadedModel>> Load(const CommonOptions& o, bool require_tokenizer) {
  runtime::LoadOptions lo;
  lo.model_path = o.model;
  lo.tokenizer_path = o.tokenizer;
  lo.require_tokenizer = require_tokenizer;
  lo.repack = o.repack;
  lo.threads = o.threads;
  return runtime::LoadModel(lo);
}

int64_t ContextSize(const CommonOptions& o, const model::ModelConfig& c, int64_t needed) {
  if (o.ctx > 0) return o.ctx;
  int64_t n = std::min<int64_t>(c.max_position_embeddings, std::max<int64_t>(4096, needed));
  return n;
}

Result<std::vector<int32_t>> ParseTokenList(const std::string& s) {
  std::vector<int32_t> ids;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    size_t b = item.find_first_not_of(" \t"), e = item.find_last_not_of(" \t");
    if (b == std::string::npos) return InvalidArgument("empty entry in --tokens '" + s + "'");
    item = item.substr(b, e - b + 1);
    char* end = nullptr;
    errno = 0;
    long long v = std::strtoll(item.c_str(), &end, 10);
    if (*end != '\0' || errno != 0 || v < 0 || v > INT32_MAX) {
      return InvalidArgument("--tokens: '" + item + "' is not a token id");
    }
    ids.push_back(static_cast<int32_t>(v));
  }
  if (ids.empty()) return InvalidArgument("--tokens is empty");
  return ids;
}

}  // namespace herd::cli
