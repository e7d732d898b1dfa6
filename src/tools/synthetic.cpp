// Synthetic Llama 4 models: presets from llama4.md sections 1-3, random weights in one anonymous mapping, and a
// GGUF writer with llama.cpp's llama4 keys (section 4.4). The config is built by model::ConfigFromMetadata from
// the fields of an HF text_config, so that the per-layer table (NoPE, chunking, QK-norm, MoE interleave) comes
// from the same code that reads real checkpoints.
#include "tools/synthetic.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "core/half.h"
#include "core/mapped_file.h"
#include "core/progress.h"
#include "formats/gguf_writer.h"
#include "kernels/matmul.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"
#include "tools/gguf_model.h"

namespace herd::tools {
namespace {

constexpr int64_t kAlign = 64;            // every tensor starts on a cache line (and a SIMD vector)
constexpr float kWeightStd = 0.02f;       // HF initializer_range (llama4.md section 3)
constexpr int64_t kChunkBytes = 1 << 20;  // unit of parallel filling and of its RNG streams
constexpr int64_t kProgressBytes = int64_t{1} << 30;

struct Preset {
  const char* name;
  int64_t layers, hidden, heads, kv_heads, experts, top_k, ffn, ffn_mlp, moe_step, vocab, max_pos;
  bool rope_scaling;  // Scout's llama3 scaling (factor 16, low 1, high 1, original 8192)
};

// llama4.md section 3 (HF config.json of the instruct models; context lengths per section 4.4).
constexpr Preset kPresets[] = {
    {"scout", 48, 5120, 40, 8, 16, 1, 8192, 16384, 1, 202048, 10485760, true},
    {"maverick", 48, 5120, 40, 8, 128, 1, 8192, 16384, 2, 202048, 1048576, false},
    // The reference shape of the llama.cpp comparison: Scout's layer structure at 1/30 of its size.
    {"small-moe", 8, 2048, 16, 4, 16, 1, 4096, 8192, 1, 32000, 131072, true},
    {"custom", 8, 2048, 16, 4, 16, 1, 4096, 8192, 1, 32000, 131072, true},
};

// splitmix64 (Steele, Lea, Flood, "Fast splittable pseudorandom number generators", 2014): one multiply-xorshift
// per 8 random bytes, and any seed gives an independent-looking stream, so every chunk seeds its own.
struct SplitMix64 {
  uint64_t state;
  uint64_t Next() {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Approximately N(0, 1): the Irwin-Hall sum of four 16-bit uniforms, centred and scaled to unit variance
  // (variance of one lane (2^32 - 1) / 12). Tails stop at +-3.46, which suits weights fine.
  float Normal() {
    const uint64_t r = Next();
    const int64_t s = static_cast<int64_t>(r & 0xffff) + static_cast<int64_t>((r >> 16) & 0xffff) +
                      static_cast<int64_t>((r >> 32) & 0xffff) + static_cast<int64_t>(r >> 48);
    constexpr float kInvStd = 1.0f / 37837.2f;  // 1 / sqrt(4 * (65536^2 - 1) / 12)
    return static_cast<float>(s - 131070) * kInvStd;
  }
  float Uniform() { return static_cast<float>(Next() >> 40) * (1.0f / (1 << 24)); }  // [0, 1)
};

uint64_t ChunkSeed(uint64_t seed, size_t tensor_idx, int64_t chunk_idx) {
  SplitMix64 g{seed ^ (0xD1B54A32D192ED03ull * (tensor_idx + 1)) ^ (0x8CB92BA72F3D8DD7ull * (chunk_idx + 1))};
  return g.Next();
}

// Sixteen f16 block scales spanning [0.75, 1.25] x the scale that gives codes of standard deviation
// `code_std` a weight standard deviation of kWeightStd; a block picks one at random.
std::array<uint16_t, 16> ScaleTable(float code_std) {
  std::array<uint16_t, 16> t{};
  for (int i = 0; i < 16; ++i) t[i] = F32ToF16(kWeightStd / code_std * (0.75f + 0.5f * static_cast<float>(i) / 15));
  return t;
}

// Fills units [u0, u1) of a tensor (a unit is a quant block or one element) with its initial values.
void FillUnits(const model::TensorSpec& t, bool is_norm, uint8_t* base, int64_t u0, int64_t u1, SplitMix64& rng) {
  const int64_t unit = Traits(t.dtype).type_size;
  uint8_t* p = base + u0 * unit;
  const int64_t n = u1 - u0;
  switch (t.dtype) {
    case DType::kF32: {
      float* f = reinterpret_cast<float*>(p);
      if (is_norm) {
        for (int64_t i = 0; i < n; ++i) f[i] = 1.0f + 0.1f * (rng.Uniform() - 0.5f);
      } else {
        for (int64_t i = 0; i < n; ++i) f[i] = kWeightStd * rng.Normal();
      }
      return;
    }
    case DType::kF16:
    case DType::kBF16: {
      for (int64_t i = 0; i < n; ++i) {
        const float v = is_norm ? 1.0f + 0.1f * (rng.Uniform() - 0.5f) : kWeightStd * rng.Normal();
        const uint16_t h = t.dtype == DType::kF16 ? F32ToF16(v) : F32ToBf16(v);
        std::memcpy(p + 2 * i, &h, 2);
      }
      return;
    }
    case DType::kQ8_0: {  // d (f16), qs[32] int8 uniform in [-128, 127]: code std 73.9
      static const std::array<uint16_t, 16> kScales = ScaleTable(73.9f);
      for (int64_t b = 0; b < n; ++b, p += 34) {
        uint64_t r[4] = {rng.Next(), rng.Next(), rng.Next(), rng.Next()};
        const uint16_t d = kScales[r[0] >> 60];
        std::memcpy(p, &d, 2);
        std::memcpy(p + 2, r, 32);
      }
      return;
    }
    case DType::kQ4_0: {  // d (f16), qs[16] nibbles, weight (q - 8) * d with q uniform in [0, 15]: code std 4.61
      static const std::array<uint16_t, 16> kScales = ScaleTable(4.61f);
      for (int64_t b = 0; b < n; ++b, p += 18) {
        uint64_t r[2] = {rng.Next(), rng.Next()};
        const uint16_t d = kScales[r[0] >> 60];
        std::memcpy(p, &d, 2);
        std::memcpy(p + 2, r, 16);
      }
      return;
    }
    case DType::kQ4_K:
    case DType::kQ5_K: {
      // Random bytes: 6-bit sc, mn uniform in [0, 63], codes uniform in [0, 15] (Q5_K [0, 31]). dmin = k d with
      // k = E[sc q] / E[mn] (7.5, 15.5) centres the weights d sc q - dmin mn on 0; code std ~257 (Q5_K ~525).
      const bool q5 = t.dtype == DType::kQ5_K;
      static const std::array<uint16_t, 16> kScales4 = ScaleTable(257.0f), kScales5 = ScaleTable(525.0f);
      const int64_t bytes = Traits(t.dtype).type_size;
      for (int64_t b = 0; b < n; ++b, p += bytes) {
        for (int64_t j = 0; j < bytes; j += 8) {
          const uint64_t r = rng.Next();
          std::memcpy(p + j, &r, static_cast<size_t>(std::min<int64_t>(8, bytes - j)));
        }
        const uint16_t d = (q5 ? kScales5 : kScales4)[p[4] >> 4];
        const uint16_t dmin = F32ToF16(F16ToF32(d) * (q5 ? 15.5f : 7.5f));
        std::memcpy(p, &d, 2);
        std::memcpy(p + 2, &dmin, 2);
      }
      return;
    }
    case DType::kQ6_K: {  // random ql, qh, int8 scales; weight d S (q - 32): code std 73.9 * 18.5 = 1367
      static const std::array<uint16_t, 16> kScales = ScaleTable(1367.0f);
      for (int64_t b = 0; b < n; ++b, p += 210) {
        for (int64_t j = 0; j < 208; j += 8) {
          const uint64_t r = rng.Next();
          std::memcpy(p + j, &r, 8);
        }
        const uint16_t d = kScales[p[0] >> 4];
        std::memcpy(p + 208, &d, 2);
      }
      return;
    }
    default:
      HERD_CHECK(false && "FillUnits: dtype not validated");
  }
}

bool CheckBlocks(DType dtype, int64_t cols) { return cols % Traits(dtype).block_size == 0; }

}  // namespace

const std::vector<std::string>& SyntheticPresets() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    for (const Preset& p : kPresets) v.push_back(p.name);
    return v;
  }();
  return names;
}

Result<model::ModelConfig> SyntheticConfig(const SyntheticSpec& spec) {
  const Preset* preset = nullptr;
  for (const Preset& p : kPresets) {
    if (spec.preset == p.name) preset = &p;
  }
  if (preset == nullptr) {
    std::string names;
    for (const std::string& n : SyntheticPresets()) names += (names.empty() ? "" : ", ") + n;
    return InvalidArgument("unknown synthetic model '" + spec.preset + "' (presets: " + names + ")");
  }
  if (!kernels::MatMulSupports(spec.dtype)) {
    return InvalidArgument("synthetic weights of type " + std::string(DTypeName(spec.dtype)) +
                           " cannot run on the CPU kernels (types: f32, f16, bf16, q8_0, q4_0, q4_k, q5_k, q6_k)");
  }
  const std::pair<const char*, int64_t> sizes[] = {{"num_hidden_layers", spec.num_hidden_layers},
                                                   {"hidden_size", spec.hidden_size},
                                                   {"num_attention_heads", spec.num_attention_heads},
                                                   {"num_key_value_heads", spec.num_key_value_heads},
                                                   {"head_dim", spec.head_dim},
                                                   {"num_local_experts", spec.num_local_experts},
                                                   {"num_experts_per_tok", spec.num_experts_per_tok},
                                                   {"intermediate_size", spec.intermediate_size},
                                                   {"intermediate_size_mlp", spec.intermediate_size_mlp},
                                                   {"interleave_moe_layer_step", spec.interleave_moe_layer_step},
                                                   {"vocab_size", spec.vocab_size},
                                                   {"max_position_embeddings", spec.max_position_embeddings}};
  for (const auto& [field, v] : sizes) {
    if (v < 0) return InvalidArgument(std::string(field) + " must be positive, got " + std::to_string(v));
  }
  auto pick = [](int64_t override_value, int64_t preset_value) {
    return override_value > 0 ? override_value : preset_value;
  };
  const int64_t hidden = pick(spec.hidden_size, preset->hidden);
  const int64_t heads = pick(spec.num_attention_heads, preset->heads);
  const int64_t experts = pick(spec.num_local_experts, preset->experts);
  if (spec.head_dim == 0 && hidden % heads != 0) {
    return InvalidArgument("hidden_size " + std::to_string(hidden) + " is not a multiple of num_attention_heads " +
                           std::to_string(heads) + "; give head_dim explicitly");
  }
  const std::string source = "synthetic " + spec.preset;
  ModelMetadata md(source);
  auto set = [&](const char* field, ModelMetadata::Value v) { md.Set(field, std::move(v)); };
  set("model_type", "llama4");
  set("num_hidden_layers", pick(spec.num_hidden_layers, preset->layers));
  set("hidden_size", hidden);
  set("num_attention_heads", heads);
  set("num_key_value_heads", pick(spec.num_key_value_heads, preset->kv_heads));
  set("head_dim", pick(spec.head_dim, hidden / heads));
  set("num_local_experts", experts);
  set("num_experts_per_tok", pick(spec.num_experts_per_tok, preset->top_k));
  set("intermediate_size", pick(spec.intermediate_size, preset->ffn));
  // A custom expert width without a dense width keeps Scout's ratio of the two (16384 / 8192).
  set("intermediate_size_mlp",
      pick(spec.intermediate_size_mlp, spec.intermediate_size > 0 ? 2 * spec.intermediate_size : preset->ffn_mlp));
  set("interleave_moe_layer_step", pick(spec.interleave_moe_layer_step, preset->moe_step));
  if (spec.all_dense) set("moe_layers", ModelMetadata::IntList{});
  set("vocab_size", pick(spec.vocab_size, preset->vocab));
  set("max_position_embeddings", pick(spec.max_position_embeddings, preset->max_pos));
  set("rms_norm_eps", 1e-5);
  set("rope_theta", 500000.0);
  set("no_rope_layer_interval", int64_t{4});
  set("attention_chunk_size", int64_t{8192});
  set("attn_temperature_tuning", true);
  set("floor_scale", 8192.0);
  set("attn_scale", 0.1);
  // llama.cpp infers QK-norm from the expert count (llama4.md section 2.2): Scout on, Maverick off. Changed
  // expert counts follow the same rule so that a saved file means the same network to both engines.
  set("use_qk_norm", experts != 128);
  set("tie_word_embeddings", false);
  set("rope_layout", "interleaved");
  if (preset->rope_scaling) {
    set("rope_scaling.rope_type", "llama3");
    set("rope_scaling.factor", 16.0);
    set("rope_scaling.low_freq_factor", 1.0);
    set("rope_scaling.high_freq_factor", 1.0);
    set("rope_scaling.original_max_position_embeddings", 8192.0);
  }
  auto config = model::ConfigFromMetadata(md);
  if (!config.ok()) return InvalidArgument(config.status().message());
  model::ModelConfig c = std::move(config).value();
  c.name = "synthetic-" + spec.preset;
  if (c.vocab_size < 258) {
    return InvalidArgument("vocab_size " + std::to_string(c.vocab_size) +
                           " is too small: a synthetic vocabulary needs 256 byte tokens plus BOS and EOS");
  }
  const int64_t q_dim = c.num_attention_heads * c.head_dim, kv_dim = c.num_key_value_heads * c.head_dim;
  for (const auto& [what, cols] : {std::pair<const char*, int64_t>{"hidden_size", c.hidden_size},
                                   {"num_attention_heads x head_dim", q_dim},
                                   {"num_key_value_heads x head_dim", kv_dim},
                                   {"intermediate_size", c.intermediate_size},
                                   {"intermediate_size_mlp", c.intermediate_size_mlp}}) {
    if (!CheckBlocks(spec.dtype, cols)) {
      return InvalidArgument(std::string(what) + " = " + std::to_string(cols) + " is not a multiple of the " +
                             std::string(DTypeName(spec.dtype)) + " block size " +
                             std::to_string(Traits(spec.dtype).block_size));
    }
  }
  return c;
}

std::vector<model::TensorSpec> SyntheticLayout(const model::ModelConfig& c, DType dtype) {
  std::vector<model::TensorSpec> out;
  auto add = [&](std::string name, DType t, std::vector<int64_t> shape) {
    int64_t n = 1;
    for (int64_t dim : shape) n *= dim;
    out.push_back({std::move(name), t, shape, RowBytes(t, n)});
  };
  const int64_t d = c.hidden_size, hd = c.head_dim;
  const int64_t q_dim = c.num_attention_heads * hd, kv_dim = c.num_key_value_heads * hd;
  const int64_t e = c.num_local_experts;
  add("token_embd.weight", dtype, {c.vocab_size, d});
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    const int64_t f = c.layers[l].ffn_size;
    add(p + "attn_norm.weight", DType::kF32, {d});
    add(p + "attn_q.weight", dtype, {q_dim, d});
    add(p + "attn_k.weight", dtype, {kv_dim, d});
    add(p + "attn_v.weight", dtype, {kv_dim, d});
    add(p + "attn_output.weight", dtype, {d, q_dim});
    add(p + "ffn_norm.weight", DType::kF32, {d});
    if (c.layers[l].moe) {
      add(p + "ffn_gate_inp.weight", DType::kF32, {e, d});  // llama.cpp forces the router to F32
      add(p + "ffn_gate_exps.weight", dtype, {e, f, d});
      add(p + "ffn_up_exps.weight", dtype, {e, f, d});
      add(p + "ffn_down_exps.weight", dtype, {e, d, f});
      add(p + "ffn_gate_shexp.weight", dtype, {f, d});
      add(p + "ffn_up_shexp.weight", dtype, {f, d});
      add(p + "ffn_down_shexp.weight", dtype, {d, f});
    } else {
      add(p + "ffn_gate.weight", dtype, {f, d});
      add(p + "ffn_up.weight", dtype, {f, d});
      add(p + "ffn_down.weight", dtype, {d, f});
    }
  }
  add("output_norm.weight", DType::kF32, {d});
  add("output.weight", dtype, {c.vocab_size, d});
  return out;
}

namespace {

// 1-D tensors that hold scales around 1 (norm weights); biases and the class embedding are drawn like matrices.
bool IsNormWeight(const model::TensorSpec& t) {
  const std::string_view n = t.name;
  return t.shape.size() == 1 && !(n.size() >= 4 && n.substr(n.size() - 4) == "bias") && n != "v.class_embd";
}

// Allocates and fills every tensor of `layout` (MakeSyntheticWeights' values); `what` names it in messages.
Result<SyntheticModel> FillLayout(const std::vector<model::TensorSpec>& layout, uint64_t seed, ThreadPool& pool,
                                  const std::string& what) {
  std::vector<int64_t> offsets;
  int64_t total = 0, padded = 0;
  for (const model::TensorSpec& t : layout) {
    offsets.push_back(padded);
    total += t.size_bytes;
    padded += (t.size_bytes + kAlign - 1) / kAlign * kAlign;
  }
  if (auto avail = AvailableMemoryBytes(); avail && padded > *avail) {
    return ResourceExhausted("the synthetic model needs " + MemorySizeText(padded) + " (" + what + ") but only " +
                             MemorySizeText(*avail) +
                             " of memory is available (MemAvailable); use fewer layers or a smaller type");
  }
  // Huge pages where the OS offers them: decode streams every weight once per token. Released when the last
  // WeightMap copy drops it.
  auto memory = AnonymousMemory::Allocate(static_cast<uint64_t>(padded));
  if (!memory.ok()) return memory.status().WithContext("the synthetic model (" + what + ")");
  std::shared_ptr<const AnonymousMemory> map = std::move(memory).value();
  uint8_t* base = map->data();

  // Work items of about kChunkBytes, each with its own RNG stream, taken dynamically by the threads.
  struct Item {
    size_t tensor_idx;
    int64_t u0, u1, chunk_idx;
  };
  std::vector<Item> items;
  for (size_t i = 0; i < layout.size(); ++i) {
    const int64_t unit = Traits(layout[i].dtype).type_size;
    const int64_t n_units = layout[i].size_bytes / unit;
    const int64_t per = std::max<int64_t>(1, kChunkBytes / unit);
    for (int64_t u = 0, k = 0; u < n_units; u += per, ++k) items.push_back({i, u, std::min(n_units, u + per), k});
  }
  std::unique_ptr<Progress> progress;
  if (padded >= kProgressBytes) progress = std::make_unique<Progress>("synthetic weights (" + what + ")", total);
  std::atomic<size_t> next{0};
  std::atomic<int64_t> done_bytes{0};
  pool.Run([&](int thread_idx) {
    for (size_t k = next.fetch_add(1); k < items.size(); k = next.fetch_add(1)) {
      const Item& it = items[k];
      const model::TensorSpec& t = layout[it.tensor_idx];
      SplitMix64 rng{ChunkSeed(seed, it.tensor_idx, it.chunk_idx)};
      FillUnits(t, IsNormWeight(t), base + offsets[it.tensor_idx], it.u0, it.u1, rng);
      const int64_t done = done_bytes.fetch_add((it.u1 - it.u0) * Traits(t.dtype).type_size) +
                           (it.u1 - it.u0) * Traits(t.dtype).type_size;
      if (thread_idx == 0 && progress) progress->Update(done);  // Progress is not thread-safe: one writer
    }
  });
  if (progress) progress->Finish();

  SyntheticModel out;
  out.size_bytes = total;
  for (size_t i = 0; i < layout.size(); ++i) {
    const model::TensorSpec& t = layout[i];
    HERD_ASSIGN_OR_RETURN(TensorView v, MakeTensorView(t.dtype, t.shape, base + offsets[i], t.size_bytes, "synthetic"));
    HERD_RETURN_IF_ERROR(out.weights.Add(t.name, v));
  }
  out.weights.KeepAlive(std::move(map));
  return out;
}

}  // namespace

Result<SyntheticModel> MakeSyntheticWeights(const model::ModelConfig& c, DType dtype, uint64_t seed, ThreadPool& pool) {
  if (!kernels::MatMulSupports(dtype)) {
    return InvalidArgument("synthetic weights of type " + std::string(DTypeName(dtype)) + " are not supported");
  }
  return FillLayout(SyntheticLayout(c, dtype), seed, pool,
                    std::string(DTypeName(dtype)) + ", " + std::to_string(c.num_hidden_layers) +
                        (c.num_hidden_layers == 1 ? " layer" : " layers"));
}

Result<model::VisionConfig> SyntheticVisionConfig(const std::string& preset, int64_t text_hidden_size) {
  model::VisionConfig c;
  if (preset == "scout" || preset == "maverick") {  // llama4.md section 3: the same tower for both
    c.image_size = 336;
    c.patch_size = 14;
    c.hidden_size = 1408;
    c.intermediate_size = 5632;
    c.num_hidden_layers = 34;
    c.num_attention_heads = 16;
    c.projector_input_dim = c.projector_output_dim = c.vision_output_dim = 4096;
  } else if (preset == "tiny") {
    c.image_size = 16;
    c.patch_size = 4;
    c.hidden_size = 32;
    c.intermediate_size = 128;
    c.num_hidden_layers = 2;
    c.num_attention_heads = 4;
    c.projector_input_dim = c.projector_output_dim = c.vision_output_dim = 64;
  } else {
    return InvalidArgument("unknown synthetic vision tower '" + preset + "' (scout, maverick, tiny)");
  }
  c.head_dim = c.hidden_size / c.num_attention_heads;
  c.norm_eps = 1e-5f;
  c.rope_theta = 10000.0f;
  c.pixel_shuffle_ratio = 0.5f;
  c.text_hidden_size = text_hidden_size;
  HERD_RETURN_IF_ERROR(c.Validate());
  return c;
}

std::vector<model::TensorSpec> SyntheticVisionLayout(const model::VisionConfig& c, DType dtype) {
  std::vector<model::TensorSpec> out;
  auto add = [&](std::string name, DType t, std::vector<int64_t> shape) {
    // Matrices whose rows are not whole blocks of `dtype` (the 588-wide patch embedding) are stored F16.
    if (shape.size() == 2 && shape[1] % Traits(t).block_size != 0) t = DType::kF16;
    int64_t n = 1;
    for (int64_t dim : shape) n *= dim;
    out.push_back({std::move(name), t, shape, RowBytes(t, n)});
  };
  const int64_t d = c.hidden_size, f = c.intermediate_size, n_pos = c.GridSize() * c.GridSize() + 1;
  add("v.patch_embd.weight", dtype, {d, c.num_channels * c.patch_size * c.patch_size});
  add("v.class_embd", DType::kF32, {d});
  add("v.position_embd.weight", DType::kF32, {n_pos, d});
  for (const char* ln : {"v.pre_ln", "v.post_ln"}) {
    add(std::string(ln) + ".weight", DType::kF32, {d});
    add(std::string(ln) + ".bias", DType::kF32, {d});
  }
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const std::string p = "v.blk." + std::to_string(l) + ".";
    for (const char* ln : {"ln1", "ln2"}) {
      add(p + ln + ".weight", DType::kF32, {d});
      add(p + ln + ".bias", DType::kF32, {d});
    }
    for (const char* m : {"attn_q", "attn_k", "attn_v", "attn_out"}) {
      add(p + m + ".weight", dtype, {d, d});
      add(p + m + ".bias", DType::kF32, {d});
    }
    add(p + "ffn_up.weight", dtype, {f, d});
    add(p + "ffn_up.bias", DType::kF32, {f});
    add(p + "ffn_down.weight", dtype, {d, f});
    add(p + "ffn_down.bias", DType::kF32, {d});
  }
  add("mm.model.mlp.1.weight", dtype, {c.projector_input_dim, f});
  add("mm.model.mlp.2.weight", dtype, {c.projector_output_dim, c.projector_output_dim});
  add("mm.model.fc.weight", dtype, {c.text_hidden_size, c.vision_output_dim});
  return out;
}

Result<SyntheticModel> MakeSyntheticVisionWeights(const model::VisionConfig& c, DType dtype, uint64_t seed,
                                                  ThreadPool& pool) {
  if (!kernels::MatMulSupports(dtype)) {
    return InvalidArgument("synthetic weights of type " + std::string(DTypeName(dtype)) + " are not supported");
  }
  HERD_RETURN_IF_ERROR(c.Validate());
  return FillLayout(
      SyntheticVisionLayout(c, dtype), seed, pool,
      "vision tower, " + std::string(DTypeName(dtype)) + ", " + std::to_string(c.num_hidden_layers) + " layers");
}

Result<std::unique_ptr<model::Model>> MakeSyntheticModel(const SyntheticSpec& spec, ThreadPool& pool) {
  HERD_ASSIGN_OR_RETURN(model::ModelConfig config, SyntheticConfig(spec));
  HERD_ASSIGN_OR_RETURN(SyntheticModel weights, MakeSyntheticWeights(config, spec.dtype, spec.seed, pool));
  return model::CreateModel(std::move(config), weights.weights);
}

Status SaveSyntheticGguf(const model::ModelConfig& c, const WeightMap& weights, const std::string& path) {
  if (c.vocab_size < 258) {
    return InvalidArgument("vocab_size " + std::to_string(c.vocab_size) + " is too small for a GGUF vocabulary");
  }
  formats::GgufWriter w;
  // The dtype of the matrices decides general.file_type.
  const TensorView* q = weights.Find("blk.0.attn_q.weight");
  model::ModelConfig named = c;
  if (named.name.empty()) named.name = "synthetic";
  HERD_RETURN_IF_ERROR(AddModelToGguf(named, q != nullptr ? q->dtype : DType::kF32, w, nullptr));

  // Minimal gpt2 vocabulary: bytes, BOS, EOS, fillers; no merges (every text tokenizes to byte tokens).
  std::vector<std::string> tokens;
  std::vector<int32_t> types;
  tokens.reserve(static_cast<size_t>(c.vocab_size));
  for (int b = 0; b < 256; ++b) tokens.push_back(tokenizer::ByteLevelSpelling(std::string(1, static_cast<char>(b))));
  types.assign(256, 1);  // normal
  tokens.push_back("<|begin_of_text|>");
  tokens.push_back("<|end_of_text|>");
  types.push_back(3);  // control
  types.push_back(3);
  for (int64_t i = 258; i < c.vocab_size; ++i) {
    tokens.push_back("<tok_" + std::to_string(i) + ">");
    types.push_back(1);
  }
  w.AddString("tokenizer.ggml.model", "gpt2");
  w.AddString("tokenizer.ggml.pre", "default");
  w.AddStringArray("tokenizer.ggml.tokens", tokens);
  w.AddInt32Array("tokenizer.ggml.token_type", types);
  w.AddStringArray("tokenizer.ggml.merges", {});
  w.AddUint32("tokenizer.ggml.bos_token_id", 256);
  w.AddUint32("tokenizer.ggml.eos_token_id", 257);
  w.AddBool("tokenizer.ggml.add_bos_token", true);

  const std::vector<model::TensorSpec> layout = SyntheticLayout(c, q != nullptr ? q->dtype : DType::kF32);
  if (layout.size() != weights.size()) {
    return InvalidArgument("the weights hold " + std::to_string(weights.size()) + " tensors; a llama4 model of this " +
                           "config has " + std::to_string(layout.size()));
  }
  for (const model::TensorSpec& t : layout) {
    const TensorView* v = weights.Find(t.name);
    if (v == nullptr) return InvalidArgument("tensor '" + t.name + "' is missing from the weights to save");
    HERD_RETURN_IF_ERROR(w.AddTensor(t.name, *v));
  }
  const int64_t total = ComputeFootprint(c, weights).total_bytes;
  return w.Write(path, total >= kProgressBytes ? "writing " + path : std::string());
}

}  // namespace herd::tools
