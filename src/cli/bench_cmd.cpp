// herd bench: prompt-processing and generation speed of a model file or of a synthetic model built in memory
// (tools/synthetic.h: Scout / Maverick shapes, or custom sizes), best of N repetitions. --save writes the
// synthetic model as GGUF so llama.cpp can be measured on the same file; --count-bytes reports the weight bytes
// the kernels read per decoded token next to the analytic active-parameter bytes (style.md section 7).
#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <random>

#include "cli/common.h"
#include "core/file.h"
#include "core/thread_pool.h"
#include "kernels/matmul.h"
#include "model/model.h"
#include "runtime/engine.h"
#include "tools/bandwidth.h"
#include "tools/synthetic.h"

namespace herd::cli {
namespace {

struct BenchOptions {
  CommonOptions common;
  int64_t n_prompt = 512;
  int64_t n_gen = 128;
  int reps = 3;
  bool json = false;
  bool count_bytes = false;
  int64_t probe_mib = 512;  // bandwidth probe buffer size; 0: no probe
  // Synthetic model (instead of -m).
  std::string synthetic;
  std::string type = "q8_0";
  std::string save;
  std::optional<uint64_t> seed;  // of the synthetic weights
  tools::SyntheticSpec spec;
};

// The model under test with what the report needs, whichever way it was made.
struct BenchModel {
  std::string label;
  std::unique_ptr<runtime::LoadedModel> loaded;  // -m
  std::unique_ptr<model::Model> synthetic;       // --synthetic
  model::WeightFootprint footprint;
  double load_ms = 0;  // repacking included
  model::Model::RepackStats repack;
  double repack_ms = 0;
  const model::Model& model() const { return loaded ? *loaded->model : *synthetic; }
};

// The synthetic spec of the options; InvalidArgument for a bad --type.
Result<tools::SyntheticSpec> SyntheticSpecOf(const BenchOptions& o) {
  tools::SyntheticSpec spec = o.spec;
  spec.preset = o.synthetic;
  if (o.seed) spec.seed = *o.seed;
  std::optional<DType> dtype = ParseDType(o.type);
  if (!dtype)
    return InvalidArgument("--type '" + o.type + "' is not a type (f32, f16, bf16, q8_0, q4_0, q4_k, q5_k, q6_k)");
  spec.dtype = *dtype;
  return spec;
}

// -p + -n must fit the model's context.
Status CheckContext(const BenchOptions& o, const model::ModelConfig& c) {
  if (o.n_prompt + o.n_gen > c.max_position_embeddings) {
    return InvalidArgument("-p " + std::to_string(o.n_prompt) + " + -n " + std::to_string(o.n_gen) +
                           " exceeds the model's maximum context of " + std::to_string(c.max_position_embeddings));
  }
  return Status::Ok();
}

// Builds the synthetic model (and saves it when asked). Every argument is checked before the weights are made
// (they can take minutes and most of the memory).
Status MakeSynthetic(const BenchOptions& o, ThreadPool& pool, BenchModel* out) {
  HERD_ASSIGN_OR_RETURN(const tools::SyntheticSpec spec, SyntheticSpecOf(o));
  HERD_ASSIGN_OR_RETURN(const model::ModelConfig config, tools::SyntheticConfig(spec));
  HERD_RETURN_IF_ERROR(CheckContext(o, config));
  if (!o.save.empty()) HERD_RETURN_IF_ERROR(CheckOutputPath(o.save));
  const double t0 = runtime::NowMs();
  HERD_ASSIGN_OR_RETURN(tools::SyntheticModel weights,
                        tools::MakeSyntheticWeights(config, spec.dtype, spec.seed, pool));
  out->footprint = model::ComputeFootprint(config, weights.weights);
  auto m = model::CreateModel(config, weights.weights);
  if (!m.ok()) return m.status().WithContext("synthetic model");
  out->synthetic = std::move(m).value();
  out->load_ms = runtime::NowMs() - t0;
  out->label = "synthetic:" + spec.preset;
  std::fprintf(stderr, "herd: synthetic %s (%s, %" PRId64 " layers): %.2f MiB of weights made in %.0f ms\n",
               spec.preset.c_str(), std::string(DTypeName(spec.dtype)).c_str(), config.num_hidden_layers,
               static_cast<double>(weights.size_bytes) / (1 << 20), out->load_ms);
  if (!o.save.empty()) {
    const double t_save = runtime::NowMs();
    HERD_RETURN_IF_ERROR(tools::SaveSyntheticGguf(config, weights.weights, o.save));
    std::fprintf(stderr, "herd: wrote %s in %.0f ms\n", o.save.c_str(), runtime::NowMs() - t_save);
  }
  if (o.common.repack) {  // after --save: the file keeps the GGUF layout
    HERD_ASSIGN_OR_RETURN(out->repack,
                          runtime::RepackModel(*out->synthetic, pool, /*show_progress=*/true, &out->repack_ms));
    out->load_ms += out->repack_ms;
  }
  return Status::Ok();
}

// "3.64 G" / "552.1 M" parameters.
std::string Count(int64_t n) {
  char buf[32];
  if (n >= 1000000000) {
    std::snprintf(buf, sizeof buf, "%.2f G", n / 1e9);
  } else {
    std::snprintf(buf, sizeof buf, "%.1f M", n / 1e6);
  }
  return buf;
}

Status CmdBench(const BenchOptions& o) {
  if (o.common.model.empty() == o.synthetic.empty()) {
    return InvalidArgument("give exactly one of -m/--model FILE and --synthetic PRESET");
  }
  HERD_ASSIGN_OR_RETURN(auto pool_ptr, MakePool(o.common));
  ThreadPool& pool = *pool_ptr;
  BenchModel bm;
  if (!o.synthetic.empty()) {
    HERD_RETURN_IF_ERROR(MakeSynthetic(o, pool, &bm));
  } else {
    HERD_ASSIGN_OR_RETURN(bm.loaded, Load(o.common, false));
    bm.footprint = model::ComputeFootprint(bm.loaded->model->config(), bm.loaded->files.weights);
    bm.load_ms = bm.loaded->load_ms;
    bm.repack = bm.loaded->repack;
    bm.repack_ms = bm.loaded->repack_ms;
    bm.label = o.common.model;
  }
  const model::Model& model = bm.model();
  const model::ModelConfig& c = model.config();
  HERD_RETURN_IF_ERROR(CheckContext(o, c));
  HERD_ASSIGN_OR_RETURN(auto state, model.NewState(std::max<int64_t>(o.n_prompt + o.n_gen, 1), o.common.batch));
  std::mt19937 rng(1234);
  std::vector<int32_t> prompt(static_cast<size_t>(o.n_prompt));
  for (auto& id : prompt) id = static_cast<int32_t>(rng() % c.vocab_size);
  std::vector<float> logits(static_cast<size_t>(c.vocab_size));
  double best_prompt = 0, best_gen = 0;
  int64_t gen_bytes_read = 0;
  // The bound beside the figure (style.md 7), measured in this process with the same threads. With generation,
  // right after each repetition's: the host's memory speed changes from minute to minute, and a bound from
  // another moment than the figure's can put the fraction anywhere (bench/RESULTS.md).
  std::unique_ptr<tools::BandwidthProbe> probe;
  if (o.probe_mib > 0) {
    auto created = tools::BandwidthProbe::Create(pool, o.probe_mib << 20);
    if (!created.ok()) {
      return Status(created.status().code(),
                    "--probe-mib " + std::to_string(o.probe_mib) + " " + created.status().message());
    }
    probe = std::move(created).value();
  }
  tools::Bandwidth bw;
  std::vector<double> gen_reps, read_reps;
  kernels::EnableWeightByteCounting(o.count_bytes);
  for (int rep = 0; rep < o.reps; ++rep) {
    state->Reset();
    if (o.n_prompt > 0) {
      const double t0 = runtime::NowMs();
      HERD_RETURN_IF_ERROR(model.Forward(*state, prompt, model::LogitsMode::kLast, logits.data(), pool));
      best_prompt = std::max(best_prompt, 1000.0 * o.n_prompt / (runtime::NowMs() - t0));
    }
    if (o.n_gen > 0) {
      int32_t tok[1] = {static_cast<int32_t>(rng() % c.vocab_size)};
      kernels::ResetWeightBytesRead();
      const double t0 = runtime::NowMs();
      for (int64_t i = 0; i < o.n_gen; ++i) {
        HERD_RETURN_IF_ERROR(model.Forward(*state, tok, model::LogitsMode::kLast, logits.data(), pool));
        tok[0] = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
      }
      const double gen = 1000.0 * o.n_gen / (runtime::NowMs() - t0);
      gen_bytes_read = kernels::WeightBytesRead();
      gen_reps.push_back(gen);
      if (probe) {
        const tools::Bandwidth now = probe->Measure();
        read_reps.push_back(now.read_gbs);
        if (gen > best_gen) bw = now;  // the fastest repetition is the figure; its own moment's bound
      }
      best_gen = std::max(best_gen, gen);
    }
  }
  kernels::EnableWeightByteCounting(false);
  if (probe && o.n_gen == 0) bw = probe->Measure();
  const model::WeightFootprint& fp = bm.footprint;
  const double gen_gb_s = best_gen * static_cast<double>(fp.active_bytes) / 1e9;
  // herd's KV cache holds f32 (model/decoder.h); generated tokens sit at positions [n_prompt, n_prompt + n_gen).
  const double kv_bytes = model::KvBytesPerToken(c, o.n_prompt, o.n_prompt + o.n_gen, sizeof(float));
  const double bytes_per_token = static_cast<double>(fp.active_bytes) + kv_bytes;
  const double bound_tok_s = bw.read_gbs > 0 ? bw.read_gbs * 1e9 / bytes_per_token : 0;
  const double bound_fraction = bound_tok_s > 0 ? best_gen / bound_tok_s : 0;
  const bool have_bytes_read = o.count_bytes && o.n_gen > 0;
  const double bytes_read_per_token = have_bytes_read ? static_cast<double>(gen_bytes_read) / o.n_gen : 0;
  if (o.json) {
    nlohmann::json j = {{"model", bm.label},
                        {"architecture", c.architecture_name},
                        {"threads", pool.size()},
                        {"n_prompt", o.n_prompt},
                        {"n_gen", o.n_gen},
                        {"reps", o.reps},
                        {"prompt_tok_s", best_prompt},
                        {"gen_tok_s", best_gen},
                        {"weight_bytes", model.WeightBytes()},
                        {"params", fp.total_params},
                        {"active_params", fp.active_params},
                        {"active_bytes_per_token", fp.active_bytes},
                        {"gen_active_gb_s", gen_gb_s},
                        {"kv_bytes_per_token", kv_bytes},
                        {"load_ms", bm.load_ms},
                        {"repack", o.common.repack},
                        {"repacked_bytes", bm.repack.bytes},
                        {"repack_ms", bm.repack_ms}};
    if (have_bytes_read) j["bytes_read_per_token"] = bytes_read_per_token;
    if (o.n_gen > 0) j["gen_tok_s_reps"] = gen_reps;
    if (o.probe_mib > 0) {
      j["bandwidth_gbs"] = bw.read_gbs;
      if (o.n_gen > 0) j["bandwidth_gbs_reps"] = read_reps;
      j["triad_gbs"] = bw.triad_gbs;
      j["bound_tok_s"] = bound_tok_s;
      j["bound_fraction"] = bound_fraction;
      // The same against the triad figure, for machines where it exceeds the read sweep.
      j["bound_fraction_triad"] = bw.triad_gbs > 0 ? best_gen * bytes_per_token / (bw.triad_gbs * 1e9) : 0.0;
    }
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf("model %s (%s, %.2f MiB weights, %s params, %s active per token), %d threads, best of %d\n",
                bm.label.c_str(), c.architecture_name.c_str(), static_cast<double>(model.WeightBytes()) / (1 << 20),
                Count(fp.total_params).c_str(), Count(fp.active_params).c_str(), pool.size(), o.reps);
    std::printf("  prompt     %6" PRId64 " tokens  %10.2f tokens/s\n", o.n_prompt, best_prompt);
    std::printf("  generation %6" PRId64 " tokens  %10.2f tokens/s  (%.2f GB/s of active weights)\n", o.n_gen, best_gen,
                gen_gb_s);
    std::printf("  active weight bytes per token  %.2f MiB (+ %.2f MiB of KV cache read)\n",
                static_cast<double>(fp.active_bytes) / (1 << 20), kv_bytes / (1 << 20));
    if (o.probe_mib > 0) {
      std::printf(
          "  memory bandwidth (after it)    %.2f GB/s read, %.2f GB/s triad -> bound %.2f tokens/s; generation at "
          "%.1f%% of it\n",
          bw.read_gbs, bw.triad_gbs, bound_tok_s, 100.0 * bound_fraction);
    }
    if (have_bytes_read) {
      std::printf("  weight bytes read per token    %.2f MiB (%.4f x active)\n", bytes_read_per_token / (1 << 20),
                  bytes_read_per_token / static_cast<double>(fp.active_bytes));
    }
  }
  return Status::Ok();
}

}  // namespace

Command AddBenchCommand(CLI::App& app) {
  auto o = std::make_shared<BenchOptions>();
  auto* cmd = app.add_subcommand("bench", "measure prompt and generation speed of a model file or a synthetic model");
  AddModelOptions(cmd, &o->common, /*model_required=*/false);
  cmd->add_option("-p,--n-prompt", o->n_prompt, "prompt tokens")->check(CLI::Range(int64_t{0}, int64_t{1} << 24));
  cmd->add_option("-n,--n-gen", o->n_gen, "generated tokens")->check(CLI::Range(int64_t{0}, int64_t{1} << 24));
  cmd->add_option("-r,--reps", o->reps, "repetitions (best is reported)")->check(CLI::Range(1, 1000));
  cmd->add_flag("--json", o->json,
                "one JSON object (prompt_tok_s, gen_tok_s, bandwidth_gbs, bound_fraction, weight_bytes, ...)");
  cmd->add_option("--probe-mib", o->probe_mib,
                  "MiB per buffer of the memory-bandwidth probe, run right after each repetition's generation (0: no "
                  "probe); bound_fraction = (active weight + KV bytes per token) x gen tokens/s / the probe's read "
                  "bandwidth, both of the fastest repetition")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 16));
  cmd->add_flag("--count-bytes", o->count_bytes, "count the weight bytes the kernels read per generated token");

  std::string presets;
  for (const std::string& p : tools::SyntheticPresets()) presets += (presets.empty() ? "" : "|") + p;
  auto* syn = cmd->add_option("--synthetic", o->synthetic,
                              "random weights in memory with the shape of " + presets +
                                  " (custom: small-moe's sizes, changed by the size flags)")
                  ->check(CLI::IsMember(tools::SyntheticPresets()));
  auto size = [&](const char* flag, int64_t* field, const char* help) {
    cmd->add_option(flag, *field, help)->check(CLI::Range(int64_t{1}, int64_t{1} << 24))->needs(syn);
  };
  tools::SyntheticSpec& s = o->spec;
  size("--layers", &s.num_hidden_layers, "number of layers (keeps the preset's layer pattern)");
  size("--hidden", &s.hidden_size, "hidden_size");
  size("--heads", &s.num_attention_heads, "num_attention_heads");
  size("--kv-heads", &s.num_key_value_heads, "num_key_value_heads");
  size("--head-dim", &s.head_dim, "head_dim (default hidden_size / heads)");
  size("--experts", &s.num_local_experts, "num_local_experts (routed)");
  size("--top-k", &s.num_experts_per_tok, "num_experts_per_tok");
  size("--ffn", &s.intermediate_size, "expert and shared-expert FFN width (intermediate_size)");
  size("--ffn-dense", &s.intermediate_size_mlp, "dense-layer FFN width (intermediate_size_mlp)");
  size("--moe-step", &s.interleave_moe_layer_step, "interleave_moe_layer_step (1: every layer MoE)");
  size("--vocab", &s.vocab_size, "vocab_size (at least 258)");
  size("--max-ctx", &s.max_position_embeddings, "max_position_embeddings");
  cmd->add_option("--type", o->type,
                  "weight type of the synthetic matrices: f32, f16, bf16, q8_0, q4_0, q4_k, q5_k, q6_k")
      ->needs(syn);
  AddSeedOption(cmd, &o->seed, "seed of the synthetic weights")->needs(syn);
  cmd->add_option("--save", o->save, "also write the synthetic model to this GGUF file")->needs(syn);
  return {cmd, [o] { return CmdBench(*o); }};
}

}  // namespace herd::cli
