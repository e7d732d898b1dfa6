// herd bench: prompt-processing and generation speed of a model file or of a synthetic model built in memory
// (tools/synthetic.h: Scout / Maverick shapes, or custom sizes), best of N repetitions. --save writes the
// synthetic model as GGUF so llama.cpp can be measured on the same file; --count-bytes reports the weight bytes
// the kernels read per decoded token next to the analytic active-parameter bytes (style.md section 7).
#include <algorithm>
#include <cinttypes>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>

#include "cli/common.h"
#include "core/file.h"
#include "core/profile.h"
#include "core/thread_pool.h"
#include "kernels/cpu/qdot.h"
#include "kernels/matmul.h"
#include "model/model.h"
#include "model/vision.h"
#include "runtime/engine.h"
#include "runtime/images.h"
#include "runtime/serving.h"
#include "tools/bandwidth.h"
#include "tools/compute.h"
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
  bool profile = false;     // one more prefill and decode, timed per op (core/profile.h)
  int64_t probe_mib = 512;  // bandwidth probe buffer size; 0: no probe
  // Synthetic model (instead of -m).
  std::string synthetic;
  std::string type = "q8_0";
  std::string save;
  std::optional<uint64_t> seed;  // of the synthetic weights
  tools::SyntheticSpec spec;
  // Serving: concurrent streams through the serving engine (runtime/serving.h) instead of one sequence.
  std::vector<int> streams;
  bool prefix_ttft = false;
  // Images: encode this many tiles (the model's tower, or a synthetic one with --synthetic).
  int64_t image_tiles = 0;
  std::string vision = "scout";     // the synthetic tower: scout (Llama 4's, for every size) | tiny
  std::string vision_type = "f16";  // its matrices (llama.cpp writes mmproj files in f16)
};

// The model under test with what the report needs, whichever way it was made.
struct BenchModel {
  std::string label;
  std::unique_ptr<runtime::LoadedModel> loaded;  // -m, or --synthetic's model without files or tokenizer
  model::WeightFootprint footprint;
  double load_ms = 0;  // repacking included
  model::Model::RepackStats repack;
  double repack_ms = 0;
  runtime::RepackChoice repack_choice;
  DType matrix_type = DType::kF32;  // of the stored matrices (blk.0.attn_q.weight)
  const model::Model& model() const { return *loaded->model; }
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
  out->loaded = std::make_unique<runtime::LoadedModel>();
  out->loaded->model = std::move(m).value();
  out->load_ms = runtime::NowMs() - t0;
  out->label = "synthetic:" + spec.preset;
  out->matrix_type = spec.dtype;
  std::fprintf(stderr, "herd: synthetic %s (%s, %" PRId64 " layers): %.2f MiB of weights made in %.0f ms\n",
               spec.preset.c_str(), std::string(DTypeName(spec.dtype)).c_str(), config.num_hidden_layers,
               static_cast<double>(weights.size_bytes) / (1 << 20), out->load_ms);
  if (!o.save.empty()) {
    const double t_save = runtime::NowMs();
    HERD_RETURN_IF_ERROR(tools::SaveSyntheticGguf(config, weights.weights, o.save));
    std::fprintf(stderr, "herd: wrote %s in %.0f ms\n", o.save.c_str(), runtime::NowMs() - t_save);
  }
  // After --save (the file keeps the GGUF layout); as `herd run` decides for a file.
  HERD_ASSIGN_OR_RETURN(out->repack_choice,
                        runtime::ApplyRepack(o.common.repack, *out->loaded->model, pool,
                                             /*show_progress=*/true, &out->repack, &out->repack_ms));
  out->load_ms += out->repack_ms;
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

// --streams: aggregate decode speed of N concurrent sequences in the serving engine (continuous batching), beside
// the bandwidth bound of each N: the weight bytes a step reads (measured by the kernels' byte counter: attention,
// shared expert, every expert any stream chose, output head) plus the streams' KV bytes, over the probe's read
// bandwidth. All N sequences get a random prompt of -p tokens and generate -n tokens (end tokens ignored); the
// decode window runs from the moment the last stream has its first token to the moment the first one finishes,
// when all N decode in every step.
Status BenchStreams(const BenchOptions& o, BenchModel& bm, tools::BandwidthProbe* probe) {
  const model::ModelConfig& c = bm.model().config();
  HERD_ASSIGN_OR_RETURN(const DType kv_type, model::ParseKvType(o.common.kv_type));
  if (o.n_gen < 2) return InvalidArgument("--streams needs -n of at least 2 generated tokens");
  if (o.n_prompt < 1) return InvalidArgument("--streams needs -p of at least 1 prompt token");
  nlohmann::json rows = nlohmann::json::array();
  if (!o.json) {
    std::printf("model %s, %s KV, prompt %" PRId64 ", generation %" PRId64 " tokens per stream\n", bm.label.c_str(),
                o.common.kv_type.c_str(), o.n_prompt, o.n_gen);
    std::printf("  %7s %12s %12s %14s %10s %12s %9s\n", "streams", "decode t/s", "per stream", "MiB read/step",
                "read GB/s", "bound t/s", "fraction");
  }
  for (int n : o.streams) {
    runtime::ServingOptions so;
    so.parallel = n;
    so.n_ctx = o.n_prompt + o.n_gen + 1;
    so.kv_type = o.common.kv_type;
    so.step_tokens = std::max<int64_t>(o.common.batch, n);
    so.threads = o.common.threads;
    so.max_queue = n;
    HERD_ASSIGN_OR_RETURN(auto engine, runtime::ServingEngine::Create(*bm.loaded, so));
    std::mt19937 rng(1234);
    std::vector<std::vector<double>> times(static_cast<size_t>(n));
    std::mutex mu;
    std::condition_variable cv;
    int open = n, started = 0;
    bool window_open = false, window_closed = false;
    int64_t bytes0 = 0, bytes1 = 0, steps0 = 0, steps1 = 0;
    Status failed;
    kernels::EnableWeightByteCounting(true);
    for (int i = 0; i < n; ++i) {
      runtime::ServingRequest r;
      r.prompt.resize(static_cast<size_t>(o.n_prompt));
      for (auto& id : r.prompt) id = static_cast<int32_t>(rng() % c.vocab_size);
      r.max_tokens = o.n_gen;
      r.sampling = runtime::SamplingParams::Greedy();
      r.ignore_eos = true;
      times[i].reserve(static_cast<size_t>(o.n_gen));
      auto id = engine->Submit(std::move(r), [&, i](const runtime::ServingEvent& e) {
        // On the engine thread, between steps: counters read here belong to whole steps.
        std::lock_guard<std::mutex> lock(mu);
        const double now = runtime::NowMs();
        for (size_t k = 0; k < e.tokens.size(); ++k) times[i].push_back(now);
        if (times[i].size() == e.tokens.size() && !e.tokens.empty() && ++started == n) {
          window_open = true;
          bytes0 = kernels::WeightBytesRead();
          steps0 = engine->stats().steps;
        }
        if (e.finished) {
          if (e.finish_reason == runtime::FinishReason::kError) failed = e.error;
          if (window_open && !window_closed) {
            window_closed = true;
            bytes1 = kernels::WeightBytesRead();
            steps1 = engine->stats().steps;
          }
          if (--open == 0) cv.notify_all();
        }
        return true;
      });
      if (!id.ok()) return id.status();
    }
    {
      std::unique_lock<std::mutex> lock(mu);
      cv.wait(lock, [&] { return open == 0; });
    }
    kernels::EnableWeightByteCounting(false);
    HERD_RETURN_IF_ERROR(failed);
    engine->Shutdown(0);
    double t_start = 0, t_end = 1e300;
    for (const auto& t : times) {
      if (t.empty()) return Internal("a stream produced no token");
      t_start = std::max(t_start, t.front());
      t_end = std::min(t_end, t.back());
    }
    int64_t window_tokens = 0;
    for (const auto& t : times) {
      for (double x : t) window_tokens += x > t_start && x <= t_end;
    }
    const double secs = (t_end - t_start) / 1000.0;
    const double tok_s = secs > 0 ? static_cast<double>(window_tokens) / secs : 0;
    const int64_t steps = steps1 - steps0;
    const double weight_step = steps > 0 ? static_cast<double>(bytes1 - bytes0) / static_cast<double>(steps) : 0;
    const double kv_step = n * model::KvBytesPerToken(c, o.n_prompt, o.n_prompt + o.n_gen, 1) *
                           static_cast<double>(RowBytes(kv_type, c.head_dim)) / static_cast<double>(c.head_dim);
    const tools::Bandwidth bw = probe != nullptr ? probe->Measure() : tools::Bandwidth{};
    const double bound = bw.read_gbs > 0 && weight_step > 0 ? n * bw.read_gbs * 1e9 / (weight_step + kv_step) : 0;
    rows.push_back({{"streams", n},
                    {"decode_tok_s", tok_s},
                    {"per_stream_tok_s", tok_s / n},
                    {"weight_bytes_per_step", weight_step},
                    {"kv_bytes_per_step", kv_step},
                    {"window_steps", steps},
                    {"bandwidth_gbs", bw.read_gbs},
                    {"bound_tok_s", bound},
                    {"bound_fraction", bound > 0 ? tok_s / bound : 0.0}});
    if (!o.json) {
      std::printf("  %7d %12.2f %12.2f %14.2f %10.2f %12.2f %8.1f%%\n", n, tok_s, tok_s / n,
                  (weight_step + kv_step) / (1 << 20), bw.read_gbs, bound, bound > 0 ? 100.0 * tok_s / bound : 0.0);
      std::fflush(stdout);
    }
  }
  if (o.json) std::printf("%s\n", nlohmann::json({{"model", bm.label}, {"streams", rows}}).dump().c_str());
  return Status::Ok();
}

// --prefix-ttft: time to first token of a -p token prompt, then of a second request that shares it and adds 16
// tokens (served from the prefix cache: only the new tokens and the partial last page are computed).
Status BenchPrefixTtft(const BenchOptions& o, BenchModel& bm) {
  const model::ModelConfig& c = bm.model().config();
  runtime::ServingOptions so;
  so.parallel = 1;
  so.n_ctx = o.n_prompt + 32;
  so.kv_type = o.common.kv_type;
  so.step_tokens = o.common.batch;
  so.threads = o.common.threads;
  so.kv_bytes = 4 * (so.n_ctx + 64) * model::KvRowBytesPerToken(c, *model::ParseKvType(o.common.kv_type));
  HERD_ASSIGN_OR_RETURN(auto engine, runtime::ServingEngine::Create(*bm.loaded, so));
  std::mt19937 rng(99);
  std::vector<int32_t> prompt(static_cast<size_t>(o.n_prompt));
  for (auto& id : prompt) id = static_cast<int32_t>(rng() % c.vocab_size);
  auto ttft = [&](std::vector<int32_t> p, int64_t* cached) -> Result<double> {
    std::mutex mu;
    std::condition_variable cv;
    double first = -1;
    bool done = false;
    Status err;
    runtime::ServingRequest r;
    r.prompt = std::move(p);
    r.max_tokens = 1;
    r.sampling = runtime::SamplingParams::Greedy();
    r.ignore_eos = true;
    const double t0 = runtime::NowMs();
    auto id = engine->Submit(std::move(r), [&](const runtime::ServingEvent& e) {
      std::lock_guard<std::mutex> lock(mu);
      if (first < 0) first = runtime::NowMs() - t0;
      if (e.finished) {
        if (e.finish_reason == runtime::FinishReason::kError) err = e.error;
        *cached = e.cached_tokens;
        done = true;
        cv.notify_all();
      }
      return true;
    });
    if (!id.ok()) return id.status();
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return done; });
    HERD_RETURN_IF_ERROR(err);
    return first;
  };
  int64_t cached_a = 0, cached_b = 0;
  HERD_ASSIGN_OR_RETURN(const double a, ttft(prompt, &cached_a));
  std::vector<int32_t> longer = prompt;
  for (int i = 0; i < 16; ++i) longer.push_back(static_cast<int32_t>(rng() % c.vocab_size));
  HERD_ASSIGN_OR_RETURN(const double b, ttft(longer, &cached_b));
  if (o.json) {
    std::printf("%s\n", nlohmann::json({{"model", bm.label},
                                        {"prefix_tokens", o.n_prompt},
                                        {"ttft_first_ms", a},
                                        {"ttft_shared_prefix_ms", b},
                                        {"cached_tokens", cached_b},
                                        {"ratio", a > 0 ? b / a : 0.0}})
                            .dump()
                            .c_str());
  } else {
    std::printf("prefix of %" PRId64 " tokens: first request TTFT %.1f ms; a second sharing it (+16 tokens, %" PRId64
                " cached) %.1f ms = %.1f%% of the first\n",
                o.n_prompt, a, cached_b, b, a > 0 ? 100.0 * b / a : 0.0);
  }
  engine->Shutdown(0);
  return Status::Ok();
}

// The compute probe (tools/compute.h) beside a figure: the CPU's int8, f32 and bf16 peaks, and the one for products of
// weights of `type`: integer dot products for the quantized types, vdpbf16ps for BF16 where the CPU has it, f32
// multiply-adds otherwise (F32, F16, BF16 without it).
struct PeakFigures {
  tools::ComputePeak peak;
  double gops = 0;           // the peak for the weights' arithmetic
  const char* kind = "f32";  // its name in the report

  // compute_int8_gops, compute_f32_gflops, compute_bf16_gflops, compute_peak_kind, compute_gops.
  void AddTo(nlohmann::json& j) const {
    j["compute_int8_gops"] = peak.int8_gops;
    j["compute_f32_gflops"] = peak.f32_gflops;
    j["compute_bf16_gflops"] = peak.bf16_gflops;
    j["compute_peak_kind"] = kind;
    j["compute_gops"] = gops;
  }
};

// One run of `fn` timed per op (core/profile.h): the ops by time, and the run's wall time.
struct OpProfile {
  double wall_s = 0;
  std::vector<profile::OpStats> ops;

  // The time outside every op (the step's own bookkeeping), counted as one thread's work.
  double UntimedS() const {
    double timed = 0;
    for (const auto& op : ops) timed += op.wall_s;
    return std::max(0.0, wall_s - timed);
  }
  // The share of the threads' time that did work over the whole run.
  double Utilization(int threads) const {
    double work = UntimedS();
    for (const auto& op : ops) work += op.busy_s + op.wall_s - op.run_s;
    return wall_s > 0 ? std::min(1.0, work / (threads * wall_s)) : 0;
  }
  nlohmann::json Json(int threads) const {
    nlohmann::json list = nlohmann::json::array();
    for (const auto& op : ops) {
      list.push_back({{"op", op.name},
                      {"calls", op.calls},
                      {"ms", 1e3 * op.wall_s},
                      {"share", wall_s > 0 ? op.wall_s / wall_s : 0},
                      {"utilization", op.Utilization(threads)}});
    }
    return {{"wall_ms", 1e3 * wall_s},
            {"untimed_ms", 1e3 * UntimedS()},
            {"utilization", Utilization(threads)},
            {"ops", list}};
  }
  void Print(const char* what, int threads) const {
    std::printf("  %s, per op (%.2f ms; the threads busy %.1f%% of the time)\n", what, 1e3 * wall_s,
                100.0 * Utilization(threads));
    std::printf("    %-14s %8s %10s %7s %8s\n", "op", "calls", "ms", "share", "busy");
    for (const auto& op : ops) {
      std::printf("    %-14s %8" PRId64 " %10.2f %6.1f%% %7.1f%%\n", op.name.c_str(), op.calls, 1e3 * op.wall_s,
                  wall_s > 0 ? 100.0 * op.wall_s / wall_s : 0.0, 100.0 * op.Utilization(threads));
    }
    std::printf("    %-14s %8s %10.2f %6.1f%%\n", "(untimed)", "", 1e3 * UntimedS(),
                wall_s > 0 ? 100.0 * UntimedS() / wall_s : 0.0);
  }
};

template <class Fn>
Result<OpProfile> ProfileOps(Fn&& fn) {
  profile::Reset();
  profile::SetEnabled(true);
  const double t0 = runtime::NowMs();
  Status st = fn();
  OpProfile p;
  p.wall_s = (runtime::NowMs() - t0) / 1e3;
  profile::SetEnabled(false);
  HERD_RETURN_IF_ERROR(st);
  p.ops = profile::Snapshot();
  std::sort(p.ops.begin(), p.ops.end(), [](const auto& a, const auto& b) { return a.wall_s > b.wall_s; });
  return p;
}

PeakFigures MeasurePeakFor(ThreadPool& pool, DType type) {
  PeakFigures f;
  f.peak = tools::MeasureComputePeak(pool);
  switch (type) {
    case DType::kQ8_0:
    case DType::kQ8_0R:
    case DType::kQ4_0:
    case DType::kQ4_0R:
    case DType::kQ4_K:
    case DType::kQ4_KR:
    case DType::kQ5_KR:
    case DType::kQ6_KR:
    case DType::kQ5_K:
    case DType::kQ6_K:
      f.gops = f.peak.int8_gops;
      f.kind = "int8";
      break;
    case DType::kBF16:
      if (f.peak.bf16_gflops > 0) {
        f.gops = f.peak.bf16_gflops;
        f.kind = "bf16";
        break;
      }
      [[fallthrough]];
    default:
      f.gops = f.peak.f32_gflops;
      f.kind = "f32";
  }
  return f;
}

// --image-tiles N: the vision tower's encode of N tiles (random pixels), best of the repetitions, beside the compute
// ceiling of its weights' arithmetic; then the text model's prefill of a prompt holding them (N one-tile images in
// Meta's layout, ids from the model's config or tokenizer where known, else random, the <|patch|> rows replaced)
// against the same length of text, and the time to the first token of that prompt (encode + prefill).
Status BenchImages(const BenchOptions& o, BenchModel& bm, ThreadPool& pool) {
  const model::ModelConfig& c = bm.model().config();
  std::unique_ptr<model::VisionTower> synthetic;
  const model::VisionTower* tower = bm.loaded->vision.get();
  std::string tower_label = "the model's";
  if (!o.synthetic.empty()) {
    std::optional<DType> type = ParseDType(o.vision_type);
    if (!type) return InvalidArgument("--vision-type '" + o.vision_type + "' is not a type");
    HERD_ASSIGN_OR_RETURN(model::VisionConfig vc, tools::SyntheticVisionConfig(o.vision, c.hidden_size));
    HERD_ASSIGN_OR_RETURN(tools::SyntheticModel w,
                          tools::MakeSyntheticVisionWeights(vc, *type, o.seed.value_or(1), pool));
    HERD_ASSIGN_OR_RETURN(synthetic, model::VisionTower::Create(vc, w.weights));
    tower = synthetic.get();
    tower_label = "synthetic " + o.vision + " (" + o.vision_type + ")";
  } else if (tower == nullptr) {
    return bm.loaded->vision_error.ok()
               ? InvalidArgument("--image-tiles: the model has no vision tower (give --mmproj FILE)")
               : bm.loaded->vision_error;
  }
  const model::VisionConfig& vc = tower->config();
  const TensorView* probe_w = tower->weights().Find("v.blk.0.ffn_up.weight");
  const DType wtype = probe_w != nullptr ? probe_w->dtype : DType::kF32;
  const int64_t n = o.image_tiles, s = vc.image_size, per_tile = tower->TokensPerTile();
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> pixels(static_cast<size_t>(n * 3 * s * s));
  for (float& v : pixels) v = u(rng);
  runtime::EncodedImages enc;  // N one-tile images
  enc.rows.resize(static_cast<size_t>(n * per_tile * tower->OutputDim()));
  double best_encode = 0;
  for (int rep = 0; rep < o.reps; ++rep) {
    const double t0 = runtime::NowMs();
    HERD_RETURN_IF_ERROR(tower->Encode(pixels.data(), n, enc.rows.data(), pool));
    const double ms = runtime::NowMs() - t0;
    if (rep == 0 || ms < best_encode) best_encode = ms;
  }
  const PeakFigures peak = MeasurePeakFor(pool, wtype);
  const double gflop_tile = vc.FlopsPerTile() / 1e9;
  const double encode_gflops = gflop_tile * static_cast<double>(n) / (best_encode / 1000);
  const double encode_fraction = peak.gops > 0 ? encode_gflops / peak.gops : 0;

  // The prompt: BOS-less text around N one-tile images (<|image_start|> <|image|> <|patch|> x P <|image_end|>).
  runtime::ImageTokenIdsOf known = runtime::ImageTokenIdsFor(*bm.loaded);
  auto pick = [&](std::optional<int32_t> id, int32_t salt) {
    return id.value_or(static_cast<int32_t>((c.vocab_size - 1 - salt) % c.vocab_size));
  };
  vision::ImageTokenIds ids;
  if (known.all) {
    ids = *known.all;
  } else {
    ids = {pick(std::nullopt, 1), pick(std::nullopt, 2), pick(known.patch, 3),
           pick(std::nullopt, 4), pick(std::nullopt, 5), pick(std::nullopt, 6)};
  }
  std::vector<int32_t> prompt;
  const std::vector<int32_t> layout = vision::ImageTokens(vision::TileGrid{1, 1}, per_tile, ids);
  for (int64_t k = 0; k < n; ++k) {
    for (int i = 0; i < 8; ++i) prompt.push_back(static_cast<int32_t>(rng() % 256));
    prompt.insert(prompt.end(), layout.begin(), layout.end());
    enc.grids.push_back(vision::TileGrid{1, 1});
    enc.patch_rows.push_back(per_tile);
    enc.layouts.push_back(layout);
    enc.hashes.push_back(static_cast<uint64_t>(k));
  }
  for (int i = 0; i < 8; ++i) prompt.push_back(static_cast<int32_t>(rng() % 256));
  const int64_t n_prompt = static_cast<int64_t>(prompt.size());
  if (n_prompt > c.max_position_embeddings) return InvalidArgument("--image-tiles: the prompt exceeds the context");
  HERD_ASSIGN_OR_RETURN(const runtime::ImageFusion fusion, runtime::FuseImages(prompt, ids.patch, enc));
  const model::EmbeddingOverride embeds = fusion.Override();
  HERD_ASSIGN_OR_RETURN(auto state, NewState(o.common, bm.model(), n_prompt));
  std::vector<float> logits(static_cast<size_t>(c.vocab_size));
  std::vector<int32_t> text(prompt.size());
  for (auto& id : text) id = static_cast<int32_t>(rng() % c.vocab_size);
  double best_images = 0, best_text = 0;
  for (int rep = 0; rep < o.reps; ++rep) {  // alternating, so both see the same moments of a noisy host
    for (const bool with_images : {true, false}) {
      state->Reset();
      const double t0 = runtime::NowMs();
      HERD_RETURN_IF_ERROR(bm.model().Forward(*state, with_images ? prompt : text, model::LogitsMode::kLast,
                                              logits.data(), pool, with_images ? &embeds : nullptr));
      const double tok_s = 1000.0 * static_cast<double>(n_prompt) / (runtime::NowMs() - t0);
      double& best = with_images ? best_images : best_text;
      best = std::max(best, tok_s);
    }
  }
  const double ttft_ms = best_encode + 1000.0 * static_cast<double>(n_prompt) / best_images;
  if (o.json) {
    nlohmann::json j = {{"model", bm.label},
                        {"vision_tower", tower_label},
                        {"vision_weight_type", std::string(DTypeName(wtype))},
                        {"threads", pool.size()},
                        {"image_tiles", n},
                        {"tokens_per_tile", per_tile},
                        {"encode_ms", best_encode},
                        {"encode_ms_per_tile", best_encode / static_cast<double>(n)},
                        {"vision_gflop_per_tile", gflop_tile},
                        {"encode_gflops", encode_gflops},
                        {"encode_fraction", encode_fraction},
                        {"image_prompt_tokens", n_prompt},
                        {"prompt_tok_s_images", best_images},
                        {"prompt_tok_s_text", best_text},
                        {"ttft_ms", ttft_ms}};
    peak.AddTo(j);
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf("vision tower %s (%s, %" PRId64 " layers, %" PRId64 "-pixel tiles, %" PRId64
                " tokens each), %d threads, best of %d\n",
                tower_label.c_str(), std::string(DTypeName(wtype)).c_str(), vc.num_hidden_layers, s, per_tile,
                pool.size(), o.reps);
    std::printf("  encode %" PRId64 " tiles  %10.1f ms  (%.1f ms per tile, %.2f GFLOP per tile)\n", n, best_encode,
                best_encode / static_cast<double>(n), gflop_tile);
    std::printf("  compute       %.1f GFLOP/s = %.1f%% of the %s peak (%.1f G/s measured)\n", encode_gflops,
                100.0 * encode_fraction, peak.kind, peak.gops);
    std::printf("  prefill %" PRId64 " tokens with the images  %.2f tokens/s (text alone %.2f tokens/s)\n", n_prompt,
                best_images, best_text);
    std::printf("  first token after %.1f ms (encode + prefill)\n", ttft_ms);
  }
  return Status::Ok();
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
    bm.repack_choice = bm.loaded->repack_choice;
    if (const TensorView* q = bm.loaded->files.weights.Find("blk.0.attn_q.weight")) bm.matrix_type = q->dtype;
    bm.label = o.common.model;
  }
  const model::Model& model = bm.model();
  const model::ModelConfig& c = model.config();
  HERD_RETURN_IF_ERROR(CheckContext(o, c));
  if (o.prefix_ttft) return BenchPrefixTtft(o, bm);
  if (o.image_tiles > 0) return BenchImages(o, bm, pool);
  if (!o.streams.empty()) {
    std::unique_ptr<tools::BandwidthProbe> probe;
    if (o.probe_mib > 0) {
      HERD_ASSIGN_OR_RETURN(probe, tools::BandwidthProbe::Create(pool, o.probe_mib << 20));
    }
    return BenchStreams(o, bm, probe.get());
  }
  HERD_ASSIGN_OR_RETURN(auto state, NewState(o.common, model, std::max<int64_t>(o.n_prompt + o.n_gen, 1)));
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
  // --profile: one more prefill and decode, timed per op (outside the figures above).
  std::optional<OpProfile> prefill_ops, decode_ops;
  if (o.profile) {
    state->Reset();
    if (o.n_prompt > 0) {
      HERD_ASSIGN_OR_RETURN(prefill_ops, ProfileOps([&] {
                              return model.Forward(*state, prompt, model::LogitsMode::kLast, logits.data(), pool);
                            }));
    }
    if (o.n_gen > 0) {
      HERD_ASSIGN_OR_RETURN(
          decode_ops, ProfileOps([&]() -> Status {
            int32_t tok[1] = {static_cast<int32_t>(rng() % c.vocab_size)};
            for (int64_t i = 0; i < o.n_gen; ++i) {
              HERD_RETURN_IF_ERROR(model.Forward(*state, tok, model::LogitsMode::kLast, logits.data(), pool));
              tok[0] = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
            }
            return Status::Ok();
          }));
    }
  }
  if (probe && o.n_gen == 0) bw = probe->Measure();
  // The compute ceiling beside the prefill figure: the matrix products' multiply-adds per prompt token (every active
  // weight but the embedding row, the output head once per prompt: only the last position's logits are computed)
  // against the probe's rate for the weights' arithmetic. Attention's f32 work is not counted.
  PeakFigures peak;
  double prefill_gops = 0, prefill_fraction = 0;
  if (o.n_prompt > 0) {
    peak = MeasurePeakFor(pool, bm.matrix_type);
    const double head = static_cast<double>(c.vocab_size) * static_cast<double>(c.hidden_size);
    const double per_token =
        2 * (static_cast<double>(bm.footprint.active_params) - static_cast<double>(c.hidden_size) - head) +
        2 * head / static_cast<double>(o.n_prompt);
    prefill_gops = best_prompt * per_token / 1e9;
    prefill_fraction = peak.gops > 0 ? prefill_gops / peak.gops : 0;
  }
  const model::WeightFootprint& fp = bm.footprint;
  const double gen_gb_s = best_gen * static_cast<double>(fp.active_bytes) / 1e9;
  // KV rows of --kv-type (model/kv_cache.h); generated tokens sit at positions [n_prompt, n_prompt + n_gen).
  HERD_ASSIGN_OR_RETURN(const DType kv_type, model::ParseKvType(o.common.kv_type));
  const double kv_bytes = model::KvBytesPerToken(c, o.n_prompt, o.n_prompt + o.n_gen, 1) *
                          static_cast<double>(RowBytes(kv_type, c.head_dim)) / static_cast<double>(c.head_dim);
  // What one more cached position costs in memory, every layer counted (chunked layers stop growing after their
  // chunk; llama4.md 2.7).
  const int64_t kv_stored = model::KvRowBytesPerToken(c, kv_type);
  const double bytes_per_token = static_cast<double>(fp.active_bytes) + kv_bytes;
  const double bound_tok_s = bw.read_gbs > 0 ? bw.read_gbs * 1e9 / bytes_per_token : 0;
  const double bound_fraction = bound_tok_s > 0 ? best_gen / bound_tok_s : 0;
  const bool have_bytes_read = o.count_bytes && o.n_gen > 0;
  const double bytes_read_per_token = have_bytes_read ? static_cast<double>(gen_bytes_read) / o.n_gen : 0;
  if (o.json) {
    nlohmann::json j = {{"model", bm.label},
                        {"architecture", c.architecture_name},
                        {"backend", model.BackendName()},
                        {"cpu_target", kernels::QuantDotTarget()},
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
                        {"kv_type", o.common.kv_type},
                        {"kv_cache_bytes_per_position", kv_stored},
                        {"load_ms", bm.load_ms},
                        {"repack", bm.repack_choice.repack},
                        {"repack_mode", std::string(runtime::RepackModeName(o.common.repack))},
                        {"repack_why", bm.repack_choice.why},
                        {"repacked_bytes", bm.repack.bytes},
                        {"repack_ms", bm.repack_ms}};
    if (have_bytes_read) j["bytes_read_per_token"] = bytes_read_per_token;
    if (o.n_prompt > 0) {
      peak.AddTo(j);
      j["prefill_gops"] = prefill_gops;
      j["prefill_fraction"] = prefill_fraction;
    }
    if (o.n_gen > 0) j["gen_tok_s_reps"] = gen_reps;
    if (prefill_ops) j["profile"]["prefill"] = prefill_ops->Json(pool.size());
    if (decode_ops) j["profile"]["decode"] = decode_ops->Json(pool.size());
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
    std::printf(
        "model %s (%s, %.2f MiB weights, %s params, %s active per token), %s backend (%s kernels), %d threads, best of "
        "%d\n",
        bm.label.c_str(), c.architecture_name.c_str(), static_cast<double>(model.WeightBytes()) / (1 << 20),
        Count(fp.total_params).c_str(), Count(fp.active_params).c_str(), model.BackendName(), kernels::QuantDotTarget(),
        pool.size(), o.reps);
    std::printf("  prompt     %6" PRId64 " tokens  %10.2f tokens/s", o.n_prompt, best_prompt);
    if (o.n_prompt > 0) {
      std::printf("  (%.1f G ops/s of matrix products = %.1f%% of the %s peak, %.1f G/s measured)", prefill_gops,
                  100.0 * prefill_fraction, peak.kind, peak.gops);
    }
    std::printf("\n");
    std::printf("  generation %6" PRId64 " tokens  %10.2f tokens/s  (%.2f GB/s of active weights)\n", o.n_gen, best_gen,
                gen_gb_s);
    std::printf("  active weight bytes per token  %.2f MiB (+ %.2f MiB of KV cache read)\n",
                static_cast<double>(fp.active_bytes) / (1 << 20), kv_bytes / (1 << 20));
    std::printf("  KV cache (%s)                 %" PRId64 " bytes per position, all layers\n",
                o.common.kv_type.c_str(), kv_stored);
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
    if (prefill_ops) prefill_ops->Print(("prefill of " + std::to_string(o.n_prompt) + " tokens").c_str(), pool.size());
    if (decode_ops) decode_ops->Print((std::to_string(o.n_gen) + " decode steps").c_str(), pool.size());
  }
  return Status::Ok();
}

}  // namespace

Command AddBenchCommand(CLI::App& app) {
  auto o = std::make_shared<BenchOptions>();
  auto* cmd = app.add_subcommand("bench", "measure prompt and generation speed of a model file or a synthetic model");
  AddModelOptions(cmd, &o->common, /*model_required=*/false);
  AddKvTypeOption(cmd, &o->common.kv_type);
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
  cmd->add_flag("--profile", o->profile,
                "after the repetitions, one more prefill and decode timed per op: each op's time, share of the step "
                "and how busy the threads were in it (table, or \"profile\" in --json)");
  cmd->add_option("--streams", o->streams,
                  "serving: aggregate decode speed of each number of concurrent streams (e.g. 1,4,8,16) through "
                  "the serving engine, beside the bandwidth bound of the bytes each step reads")
      ->delimiter(',')
      ->check(CLI::Range(1, 4096));
  cmd->add_option("--image-tiles", o->image_tiles,
                  "images: encode N tiles with the vision tower (the model's, or with --synthetic a synthetic one of "
                  "--vision's shape), beside the compute peak; then prefill them in a prompt")
      ->check(CLI::Range(int64_t{1}, int64_t{256}));
  cmd->add_option("--vision", o->vision, "shape of the synthetic vision tower: scout (Llama 4's) | tiny")
      ->check(CLI::IsMember({"scout", "maverick", "tiny"}));
  cmd->add_option("--vision-type", o->vision_type, "weight type of the synthetic vision tower's matrices");
  cmd->add_flag("--prefix-ttft", o->prefix_ttft,
                "serving: time to first token of a -p token prompt and of a second request sharing it (prefix cache)");

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
  cmd->add_flag("--dense", s.all_dense, "every layer a dense FFN, no experts (Llama Guard 4's shape)")->needs(syn);
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
