// herd quantize, herd perplexity and herd kld: making quantized models and measuring what quantization costs.
//   perplexity: the text is cut into chunks of -c tokens, each starting with BOS; every chunk is one batch and
//               the negative log-likelihood of its second half is averaged (llama.cpp's perplexity method, so the
//               figures are comparable);
//   kld:        the same chunks through a reference model and the model under test; per scored position the
//               KL divergence KL(P_ref || P_test), and whether both put the same token first (like llama.cpp's
//               --kl-divergence).
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli/common.h"
#include "core/file.h"
#include "core/thread_pool.h"
#include "tools/quantize.h"

namespace herd::cli {
namespace {

struct QuantizeCmdOptions {
  std::string input, output, type = "q8_0";
  int threads = 0;
  bool quiet = false;
};

Status CmdQuantize(const QuantizeCmdOptions& o) {
  // q4_k_s ... q6_k_m: the K-quant mixes (tools::MixTensorType).
  const std::optional<tools::QuantizeType> t = tools::ParseQuantizeType(o.type);
  if (!t) {
    return InvalidArgument("unknown type '" + o.type +
                           "' (q8_0, q4_0, q4_k, q4_k_s, q4_k_m, q5_k, q5_k_s, q5_k_m, q6_k, q6_k_m, f16, bf16, f32)");
  }
  tools::QuantizeOptions q;
  q.input = o.input;
  q.output = o.output;
  q.type = t->type;
  q.mix = t->mix;
  q.threads = o.threads;
  q.show_progress = !o.quiet;
  return tools::QuantizeModel(q);
}

// Texts are read whole (pipes and stdin too); a quarter GiB is tens of millions of tokens, more than any
// evaluation runs.
constexpr uint64_t kMaxTextBytes = uint64_t{256} << 20;

struct EvalOptions {
  CommonOptions common;
  std::string reference;  // kld only
  std::string text_file;
  int64_t max_chunks = 0;  // 0: all
  bool json = false;
};

// log-softmax of `row` at `id`, and the full distribution into `p` when p != nullptr.
double LogProb(const float* row, int64_t n, int32_t id, std::vector<double>* p) {
  double mx = row[0];
  for (int64_t i = 1; i < n; ++i) mx = std::max<double>(mx, row[i]);
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += std::exp(row[i] - mx);
  const double lse = mx + std::log(sum);
  if (p) {
    p->resize(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) (*p)[i] = std::exp(row[i] - lse);
  }
  return row[id] - lse;
}

struct Chunks {
  std::vector<int32_t> tokens;
  int64_t n_ctx = 0, n_chunks = 0;
};

Result<Chunks> MakeChunks(const EvalOptions& o, runtime::LoadedModel& m) {
  HERD_ASSIGN_OR_RETURN(std::string text, ReadTextInput(o.text_file, kMaxTextBytes));
  Chunks c;
  c.tokens = m.tokenizer->Encode(text, /*add_bos=*/false, /*parse_special=*/false);
  c.n_ctx = o.common.ctx > 0 ? o.common.ctx : std::min<int64_t>(512, m.model->config().max_position_embeddings);
  if (c.n_ctx < 8) return InvalidArgument("-c must be at least 8 for perplexity");
  if (c.n_ctx > m.model->config().max_position_embeddings) {
    return InvalidArgument("-c " + std::to_string(c.n_ctx) + " is above the model's maximum context of " +
                           std::to_string(m.model->config().max_position_embeddings) + " positions");
  }
  c.n_chunks = static_cast<int64_t>(c.tokens.size()) / c.n_ctx;
  if (o.max_chunks > 0) c.n_chunks = std::min(c.n_chunks, o.max_chunks);
  if (c.n_chunks == 0) {
    return OutOfRange(o.text_file + " has " + std::to_string(c.tokens.size()) + " tokens, fewer than one chunk of -c " +
                      std::to_string(c.n_ctx));
  }
  return c;
}

// Runs chunk k through `m`; logits [n_ctx, vocab].
Status RunChunk(runtime::LoadedModel& m, model::ModelState& state, const Chunks& c, int64_t k, ThreadPool& pool,
                std::vector<float>* logits) {
  std::vector<int32_t> ids(c.tokens.begin() + k * c.n_ctx, c.tokens.begin() + (k + 1) * c.n_ctx);
  if (m.tokenizer->bos_id()) ids[0] = *m.tokenizer->bos_id();
  state.Reset();
  logits->resize(static_cast<size_t>(c.n_ctx * m.model->config().vocab_size));
  return m.model->Forward(state, ids, model::LogitsMode::kAll, logits->data(), pool);
}

Status CmdPerplexity(const EvalOptions& o) {
  HERD_ASSIGN_OR_RETURN(auto loaded, Load(o.common, true));
  runtime::LoadedModel& m = *loaded;
  HERD_ASSIGN_OR_RETURN(const Chunks c, MakeChunks(o, m));
  HERD_ASSIGN_OR_RETURN(auto state, NewState(o.common, *m.model, c.n_ctx));
  HERD_ASSIGN_OR_RETURN(auto pool, MakePool(o.common));
  const int64_t vocab = m.model->config().vocab_size;
  std::vector<float> logits;
  double nll = 0;
  int64_t count = 0;
  const double t0 = runtime::NowMs();
  for (int64_t k = 0; k < c.n_chunks; ++k) {
    HERD_RETURN_IF_ERROR(RunChunk(m, *state, c, k, *pool, &logits));
    for (int64_t j = c.n_ctx / 2; j + 1 < c.n_ctx; ++j) {
      nll -= LogProb(logits.data() + j * vocab, vocab, c.tokens[k * c.n_ctx + j + 1], nullptr);
      ++count;
    }
    if (!o.json)
      std::fprintf(stderr, "[chunk %" PRId64 "/%" PRId64 "] ppl %.4f\n", k + 1, c.n_chunks, std::exp(nll / count));
  }
  const double ppl = std::exp(nll / static_cast<double>(count));
  const double secs = (runtime::NowMs() - t0) / 1000;
  if (o.json) {
    std::printf("%s\n", nlohmann::json{{"model", o.common.model},
                                       {"ppl", ppl},
                                       {"n_ctx", c.n_ctx},
                                       {"chunks", c.n_chunks},
                                       {"scored_tokens", count},
                                       {"seconds", secs}}
                            .dump()
                            .c_str());
  } else {
    std::printf("perplexity %.4f over %" PRId64 " tokens (%" PRId64 " chunks of %" PRId64 "), %.1f s\n", ppl, count,
                c.n_chunks, c.n_ctx, secs);
  }
  return Status::Ok();
}

Status CmdKld(const EvalOptions& o) {
  HERD_ASSIGN_OR_RETURN(auto loaded, Load(o.common, true));
  CommonOptions ref_opts = o.common;
  ref_opts.model = o.reference;
  HERD_ASSIGN_OR_RETURN(auto ref_loaded, Load(ref_opts, true));
  runtime::LoadedModel& m = *loaded;
  runtime::LoadedModel& r = *ref_loaded;
  const int64_t vocab = m.model->config().vocab_size;
  if (r.model->config().vocab_size != vocab) {
    return Corruption("the models have different vocabularies (" + std::to_string(vocab) + " and " +
                      std::to_string(r.model->config().vocab_size) + ")");
  }
  HERD_ASSIGN_OR_RETURN(const Chunks c, MakeChunks(o, r));
  HERD_ASSIGN_OR_RETURN(auto state, NewState(o.common, *m.model, c.n_ctx));
  HERD_ASSIGN_OR_RETURN(auto ref_state, r.model->NewState(c.n_ctx, o.common.batch));
  HERD_ASSIGN_OR_RETURN(auto pool, MakePool(o.common));
  std::vector<float> lm, lr;
  std::vector<double> pm, pr;
  double kld_sum = 0, kld_max = 0, nll_m = 0, nll_r = 0;
  int64_t count = 0, same_top = 0;
  for (int64_t k = 0; k < c.n_chunks; ++k) {
    HERD_RETURN_IF_ERROR(RunChunk(r, *ref_state, c, k, *pool, &lr));
    HERD_RETURN_IF_ERROR(RunChunk(m, *state, c, k, *pool, &lm));
    for (int64_t j = c.n_ctx / 2; j + 1 < c.n_ctx; ++j) {
      const int32_t next = c.tokens[k * c.n_ctx + j + 1];
      nll_r -= LogProb(lr.data() + j * vocab, vocab, next, &pr);
      nll_m -= LogProb(lm.data() + j * vocab, vocab, next, &pm);
      double kl = 0;
      int64_t top_r = 0, top_m = 0;
      for (int64_t i = 0; i < vocab; ++i) {
        if (pr[i] > 0) kl += pr[i] * (std::log(pr[i]) - std::log(std::max(pm[i], 1e-300)));
        if (pr[i] > pr[top_r]) top_r = i;
        if (pm[i] > pm[top_m]) top_m = i;
      }
      kl = std::max(kl, 0.0);
      kld_sum += kl;
      kld_max = std::max(kld_max, kl);
      same_top += top_r == top_m;
      ++count;
    }
  }
  const double mean_kld = kld_sum / static_cast<double>(count);
  const double top1 = static_cast<double>(same_top) / static_cast<double>(count);
  const double ppl_m = std::exp(nll_m / count), ppl_r = std::exp(nll_r / count);
  if (o.json) {
    std::printf("%s\n", nlohmann::json{{"model", o.common.model},
                                       {"reference", o.reference},
                                       {"mean_kld", mean_kld},
                                       {"max_kld", kld_max},
                                       {"top1_agreement", top1},
                                       {"ppl", ppl_m},
                                       {"ppl_reference", ppl_r},
                                       {"scored_tokens", count}}
                            .dump()
                            .c_str());
  } else {
    std::printf("mean KLD %.6f (max %.6f), top-1 agreement %.2f%%, PPL %.4f vs reference %.4f, %" PRId64 " tokens\n",
                mean_kld, kld_max, 100 * top1, ppl_m, ppl_r, count);
  }
  return Status::Ok();
}

}  // namespace

Command AddQuantizeCommand(CLI::App& app) {
  auto o = std::make_shared<QuantizeCmdOptions>();
  auto* cmd = app.add_subcommand("quantize", "rewrite a model's weight matrices in a quantized type (GGUF output)");
  cmd->add_option("input", o->input, "GGUF file or HF directory")->required();
  cmd->add_option("output", o->output, "GGUF file to write")->required();
  cmd->add_option("--type", o->type,
                  "q8_0, q4_0, q4_k, q5_k, q6_k (every matrix in that type), f16, bf16, f32; or a K-quant mix, "
                  "more bits where rounding costs most (llama.cpp's names and about its sizes): q4_k_s, q4_k_m, "
                  "q5_k_s, q5_k_m, q6_k_m (README.md lists which tensor gets which type)");
  cmd->add_option("-t,--threads", o->threads, "threads (default: all cores)")->check(CLI::Range(0, 1024));
  cmd->add_flag("-q,--quiet", o->quiet, "no progress bar");
  return {cmd, [o] { return CmdQuantize(*o); }};
}

Command AddPerplexityCommand(CLI::App& app) {
  auto o = std::make_shared<EvalOptions>();
  auto* cmd = app.add_subcommand("perplexity", "perplexity of a model on a text file (chunks of -c tokens)");
  AddModelOptions(cmd, &o->common);
  AddKvTypeOption(cmd, &o->common.kv_type);
  cmd->add_option("-f,--file", o->text_file, "text file, or - for standard input (at most 256 MiB)")->required();
  cmd->add_option("--chunks", o->max_chunks, "evaluate at most this many chunks")->check(CLI::Range(0, 1 << 30));
  cmd->add_flag("--json", o->json, "one JSON object");
  return {cmd, [o] { return CmdPerplexity(*o); }};
}

Command AddKldCommand(CLI::App& app) {
  auto o = std::make_shared<EvalOptions>();
  auto* cmd = app.add_subcommand("kld", "KL divergence and top-1 agreement of a model against a reference model");
  AddModelOptions(cmd, &o->common);
  AddKvTypeOption(cmd, &o->common.kv_type);
  cmd->add_option("--ref,--reference", o->reference, "reference model (e.g. the F32 or BF16 original)")->required();
  cmd->add_option("-f,--file", o->text_file, "text file, or - for standard input (at most 256 MiB)")->required();
  cmd->add_option("--chunks", o->max_chunks, "evaluate at most this many chunks")->check(CLI::Range(0, 1 << 30));
  cmd->add_flag("--json", o->json, "one JSON object");
  return {cmd, [o] { return CmdKld(*o); }};
}

}  // namespace herd::cli
