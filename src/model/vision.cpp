// The Llama 4 vision tower (model/vision.h; llama4.md 9.3-9.6): config from the neutral metadata, weight binding,
// and the forward pass over a batch of tiles. Activations are f32; weights stay in their stored dtype and go through
// the text model's matrix kernels, biases are added after each product.
#include "model/vision.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <new>
#include <optional>
#include <sstream>
#include <stdexcept>

#include "kernels/attention.h"
#include "kernels/matmul.h"
#include "kernels/ops.h"
#include "kernels/rope.h"
#include "kernels/vision_ops.h"
#include "model/weights.h"

namespace herd::model {
namespace {

constexpr const char* kModelType = "llama4_vision_model";
// A grid of at most 256 x 256 patches (Scout and Maverick: 24 x 24) keeps every scratch size far from overflow.
constexpr int64_t kMaxGrid = 256;
constexpr int64_t kMaxDim = int64_t{1} << 20;
constexpr int64_t kMaxTiles = int64_t{1} << 16;

struct SizeLimit {
  const char* field;
  int64_t VisionConfig::*member;
  int64_t lo, hi;
};
constexpr SizeLimit kSizeLimits[] = {
    {"image_size", &VisionConfig::image_size, 1, kMaxGrid * 1024},
    {"patch_size", &VisionConfig::patch_size, 1, 1024},
    {"num_channels", &VisionConfig::num_channels, 1, 16},
    {"hidden_size", &VisionConfig::hidden_size, 1, kMaxDim},
    {"intermediate_size", &VisionConfig::intermediate_size, 1, kMaxDim},
    {"num_hidden_layers", &VisionConfig::num_hidden_layers, 1, 512},
    {"num_attention_heads", &VisionConfig::num_attention_heads, 1, 4096},
    {"projector_input_dim", &VisionConfig::projector_input_dim, 1, kMaxDim},
    {"projector_output_dim", &VisionConfig::projector_output_dim, 1, kMaxDim},
    {"vision_output_dim", &VisionConfig::vision_output_dim, 1, kMaxDim},
    {"text_hidden_size", &VisionConfig::text_hidden_size, 1, kMaxDim},
};

// 1 / ratio when it is an integer (to 1e-6), else 0.
int64_t ShuffleFactor(double ratio) {
  if (!(ratio > 0) || !std::isfinite(ratio) || ratio > 1) return 0;
  const int64_t f = std::llround(1.0 / ratio);
  return std::fabs(static_cast<double>(f) * ratio - 1.0) <= 1e-6 ? f : 0;
}

// Validate's rules; `where` names a field (with its origin in the file when the config was just read).
Status Check(const VisionConfig& c, const std::function<std::string(std::string_view)>& where) {
  const auto bad = [&](std::string_view field, const std::string& why) { return Corruption(where(field) + " " + why); };
  for (const SizeLimit& l : kSizeLimits) {
    const int64_t v = c.*l.member;
    if (v < l.lo || v > l.hi) {
      return bad(l.field, "= " + std::to_string(v) + " is outside the plausible range [" + std::to_string(l.lo) + ", " +
                              std::to_string(l.hi) + "]");
    }
  }
  if (c.num_channels != 3) return bad("num_channels", "= " + std::to_string(c.num_channels) + " must be 3 (RGB)");
  if (c.image_size % c.patch_size != 0) {
    return bad("image_size", "= " + std::to_string(c.image_size) + " is not a multiple of " + where("patch_size") +
                                 " = " + std::to_string(c.patch_size));
  }
  if (c.GridSize() > kMaxGrid) {
    return bad("image_size", "/ patch_size = " + std::to_string(c.GridSize()) + " patches per side exceeds " +
                                 std::to_string(kMaxGrid));
  }
  if (c.hidden_size % c.num_attention_heads != 0 || c.head_dim != c.hidden_size / c.num_attention_heads) {
    return bad("hidden_size", "= " + std::to_string(c.hidden_size) + " is not " + where("num_attention_heads") + " = " +
                                  std::to_string(c.num_attention_heads) + " heads of head_dim " +
                                  std::to_string(c.head_dim));
  }
  if (c.head_dim % 4 != 0) {
    return bad("num_attention_heads", "gives head_dim " + std::to_string(c.head_dim) +
                                          ", which the 2-D RoPE needs to be a multiple of 4 (llama4.md 9.4)");
  }
  const int64_t factor = ShuffleFactor(c.pixel_shuffle_ratio);
  if (factor == 0 || c.GridSize() % factor != 0) {
    return bad("pixel_shuffle_ratio", "= " + ModelMetadata::ToString(static_cast<double>(c.pixel_shuffle_ratio)) +
                                          " must be 1 / an integer that divides the " + std::to_string(c.GridSize()) +
                                          " patches per side");
  }
  if (c.intermediate_size != c.hidden_size * factor * factor) {
    return bad("intermediate_size", "= " + std::to_string(c.intermediate_size) + " must be hidden_size / " +
                                        "pixel_shuffle_ratio^2 = " + std::to_string(c.hidden_size * factor * factor) +
                                        " (the adapter's input is the shuffled width)");
  }
  if (c.projector_output_dim != c.projector_input_dim) {
    return bad("projector_output_dim", "= " + std::to_string(c.projector_output_dim) + " must equal " +
                                           where("projector_input_dim") + " = " +
                                           std::to_string(c.projector_input_dim) + " (adapter fc1 feeds fc2)");
  }
  if (c.vision_output_dim != c.projector_output_dim) {
    return bad("vision_output_dim", "= " + std::to_string(c.vision_output_dim) + " must equal " +
                                        where("projector_output_dim") + " = " + std::to_string(c.projector_output_dim) +
                                        " (the adapter feeds the projector)");
  }
  if (!(c.norm_eps > 0) || !std::isfinite(c.norm_eps)) {
    return bad("norm_eps", "must be finite and positive, got " + std::to_string(c.norm_eps));
  }
  if (!(c.rope_theta > 0) || !std::isfinite(c.rope_theta)) {
    return bad("rope_theta", "must be finite and positive, got " + std::to_string(c.rope_theta));
  }
  return Status::Ok();
}

// A finite f32 field; `fallback` nullopt: required.
Result<float> ReadFloat(const ModelMetadata& md, std::string_view field, std::optional<double> fallback) {
  HERD_ASSIGN_OR_RETURN(std::optional<double> v, md.Number(field));
  if (!v && !fallback) return Corruption(md.source() + ": missing required field '" + std::string(field) + "'");
  const double value = v ? *v : *fallback;
  if (!std::isfinite(value) || std::fabs(value) > 3.0e38) {
    return Corruption(md.Where(field) + " must be a finite number, got " + ModelMetadata::ToString(value));
  }
  return static_cast<float>(value);
}

// y[t, :] += bias for t < n_rows (y: [n_rows, n]), rows split over the pool.
void AddBias(float* y, const std::vector<float>& bias, int64_t n_rows, ThreadPool& pool) {
  const int64_t n = static_cast<int64_t>(bias.size());
  pool.ParallelFor(n_rows, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) kernels::Add(y + r * n, bias.data(), y + r * n, n);
  });
}

// out[t, :] = LayerNorm(x[t, :]) for t < n_rows; out == x allowed.
void LayerNormRows(const float* x, const std::vector<float>& weight, const std::vector<float>& bias, int64_t n_rows,
                   float eps, float* out, ThreadPool& pool) {
  const int64_t n = static_cast<int64_t>(weight.size());
  pool.ParallelFor(n_rows, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) kernels::LayerNorm(x + r * n, weight.data(), bias.data(), n, eps, out + r * n);
  });
}

void GeluInPlace(float* x, int64_t n, ThreadPool& pool) {
  pool.ParallelFor(
      n, [&](int64_t b, int64_t e) { kernels::GeluErf(x + b, x + b, e - b); }, 1024);
}

// Activations of one Encode call: tokens = n_tiles * (grid^2 + 1), n_out = n_tiles * TokensPerTile.
struct Scratch {
  std::vector<float> patches;  // [n_tiles * grid^2, 3 p^2]
  std::vector<float> x, xn;    // [tokens, hidden_size]: residual stream, normed input
  std::vector<float> q, k, v;  // [tokens, hidden_size]; q holds the patch embeddings first, k the shuffled rows last
  std::vector<float> att;      // [tokens, hidden_size]
  std::vector<float> h;        // [tokens, intermediate_size]
  std::vector<float> a1, a2;   // [n_out, projector_input_dim], [n_out, projector_output_dim]
  std::vector<float> attn;     // [threads][kernels::AttentionScratchFloats(head_dim)]
};

}  // namespace

int64_t VisionConfig::PixelShuffleFactor() const { return ShuffleFactor(pixel_shuffle_ratio); }

int64_t VisionConfig::TokensPerTile() const {
  const int64_t side = GridSize() / PixelShuffleFactor();
  return side * side;
}

double VisionConfig::FlopsPerTile() const {
  const double t = static_cast<double>(GridSize() * GridSize() + 1), d = static_cast<double>(hidden_size),
               f = static_cast<double>(intermediate_size), s = static_cast<double>(TokensPerTile());
  const double patch = 2 * (t - 1) * d * static_cast<double>(num_channels * patch_size * patch_size);
  const double layer = 2 * t * (4 * d * d + 2 * d * f) + 2 * 2 * t * t * d;
  const double adapter = 2 * s *
                         (f * static_cast<double>(projector_input_dim) +
                          static_cast<double>(projector_output_dim) * static_cast<double>(projector_output_dim));
  const double projector = 2 * s * static_cast<double>(vision_output_dim) * static_cast<double>(text_hidden_size);
  return patch + static_cast<double>(num_hidden_layers) * layer + adapter + projector;
}

Status VisionConfig::Validate() const {
  return Check(*this, [](std::string_view field) { return std::string(field); });
}

std::string VisionConfig::Describe() const {
  std::ostringstream s;
  s << "image_size              " << image_size << "\n"
    << "patch_size              " << patch_size << " (" << GridSize() << " x " << GridSize() << " patches)\n"
    << "hidden_size             " << hidden_size << "\n"
    << "intermediate_size       " << intermediate_size << "\n"
    << "num_hidden_layers       " << num_hidden_layers << "\n"
    << "num_attention_heads     " << num_attention_heads << " (head_dim " << head_dim << ")\n"
    << "norm_eps                " << norm_eps << "\n"
    << "rope_theta              " << rope_theta << "\n"
    << "pixel_shuffle_ratio     " << pixel_shuffle_ratio << " (" << TokensPerTile() << " tokens per tile)\n"
    << "projector_input_dim     " << projector_input_dim << "\n"
    << "projector_output_dim    " << projector_output_dim << "\n"
    << "vision_output_dim       " << vision_output_dim << "\n"
    << "text_hidden_size        " << text_hidden_size << "\n";
  return s.str();
}

Result<VisionConfig> VisionConfigFromMetadata(const ModelMetadata& md) {
  HERD_ASSIGN_OR_RETURN(std::optional<std::string> type, md.String("model_type"));
  if (!type) return Corruption(md.source() + ": missing required field 'model_type'");
  if (*type != kModelType) {
    return NotSupported(md.Where("model_type") + " '" + *type +
                        "' is not a supported vision tower (supported: " + kModelType + ")");
  }
  HERD_ASSIGN_OR_RETURN(std::optional<std::string> act, md.String("hidden_act"));
  if (act && *act != "gelu") {
    return NotSupported(md.Where("hidden_act") + " '" + *act + "' is not supported (Llama 4: gelu, exact)");
  }
  VisionConfig c;
  for (const SizeLimit& l : kSizeLimits) {
    HERD_ASSIGN_OR_RETURN(std::optional<int64_t> v, md.Int(l.field));
    if (!v && std::string_view(l.field) != "num_channels") {
      return Corruption(md.source() + ": missing required field '" + l.field + "'");
    }
    // Range-checked here, before head_dim below divides by a count from the file.
    const int64_t value = v.value_or(3);
    if (value < l.lo || value > l.hi) {
      return Corruption(md.Where(l.field) + " = " + std::to_string(value) + " is outside the plausible range [" +
                        std::to_string(l.lo) + ", " + std::to_string(l.hi) + "]");
    }
    c.*l.member = value;
  }
  c.head_dim = c.hidden_size / c.num_attention_heads;
  HERD_ASSIGN_OR_RETURN(c.norm_eps, ReadFloat(md, "norm_eps", std::nullopt));
  HERD_ASSIGN_OR_RETURN(c.rope_theta, ReadFloat(md, "rope_theta", 10000.0));
  HERD_ASSIGN_OR_RETURN(c.pixel_shuffle_ratio, ReadFloat(md, "pixel_shuffle_ratio", std::nullopt));
  HERD_RETURN_IF_ERROR(Check(c, [&](std::string_view field) { return md.Where(field); }));
  return c;
}

ModelMetadata MetadataFromVisionConfig(const VisionConfig& c) {
  ModelMetadata md("vision config");
  md.Set("model_type", std::string(kModelType));
  for (const SizeLimit& l : kSizeLimits) md.Set(l.field, c.*l.member);
  md.Set("norm_eps", static_cast<double>(c.norm_eps));
  md.Set("rope_theta", static_cast<double>(c.rope_theta));
  md.Set("pixel_shuffle_ratio", static_cast<double>(c.pixel_shuffle_ratio));
  md.Set("hidden_act", std::string("gelu"));
  return md;
}

Result<std::unique_ptr<VisionTower>> VisionTower::Create(VisionConfig config, const WeightMap& weights) {
  HERD_RETURN_IF_ERROR(config.Validate());  // sizes below are products of these fields
  std::unique_ptr<VisionTower> t(new VisionTower());
  t->weights_ = weights;
  WeightBinder b(t->weights_);
  const int64_t d = config.hidden_size, f = config.intermediate_size, p = config.patch_size;
  const int64_t ch = config.num_channels, n_tokens = config.GridSize() * config.GridSize() + 1;

  // The unfolded patch's order c * p^2 + ky * p + kx is the conv kernel's [hidden, c, ky, kx]: the same bytes
  // (llama4.md 4.2), viewed as a matrix.
  if (const TensorView* pe = t->weights_.Find("v.patch_embd.weight"); pe != nullptr && pe->n_dims == 4) {
    HERD_ASSIGN_OR_RETURN(TensorView conv, b.Tensor("v.patch_embd.weight", {d, ch, p, p}));
    HERD_ASSIGN_OR_RETURN(t->patch_embd_,
                          MakeTensorView(conv.dtype, {d, ch * p * p}, conv.data, conv.size_bytes, conv.source));
  } else {
    HERD_ASSIGN_OR_RETURN(t->patch_embd_, b.Matrix("v.patch_embd.weight", d, ch * p * p));
  }
  HERD_ASSIGN_OR_RETURN(t->class_embd_, b.Vector("v.class_embd", d));
  HERD_ASSIGN_OR_RETURN(TensorView pos, b.Matrix("v.position_embd.weight", n_tokens, d));
  t->position_embd_.resize(static_cast<size_t>(n_tokens * d));
  for (int64_t r = 0; r < n_tokens; ++r) kernels::DequantizeRow(pos, r, t->position_embd_.data() + r * d);
  HERD_ASSIGN_OR_RETURN(t->pre_ln_weight_, b.Vector("v.pre_ln.weight", d));
  HERD_ASSIGN_OR_RETURN(t->pre_ln_bias_, b.Vector("v.pre_ln.bias", d));
  for (int64_t l = 0; l < config.num_hidden_layers; ++l) {
    const std::string n = "v.blk." + std::to_string(l) + ".";
    VisionLayerWeights lw;
    HERD_ASSIGN_OR_RETURN(lw.ln1_weight, b.Vector(n + "ln1.weight", d));
    HERD_ASSIGN_OR_RETURN(lw.ln1_bias, b.Vector(n + "ln1.bias", d));
    HERD_ASSIGN_OR_RETURN(lw.attn_q, b.Matrix(n + "attn_q.weight", d, d));
    HERD_ASSIGN_OR_RETURN(lw.attn_q_bias, b.Vector(n + "attn_q.bias", d));
    HERD_ASSIGN_OR_RETURN(lw.attn_k, b.Matrix(n + "attn_k.weight", d, d));
    HERD_ASSIGN_OR_RETURN(lw.attn_k_bias, b.Vector(n + "attn_k.bias", d));
    HERD_ASSIGN_OR_RETURN(lw.attn_v, b.Matrix(n + "attn_v.weight", d, d));
    HERD_ASSIGN_OR_RETURN(lw.attn_v_bias, b.Vector(n + "attn_v.bias", d));
    HERD_ASSIGN_OR_RETURN(lw.attn_out, b.Matrix(n + "attn_out.weight", d, d));
    HERD_ASSIGN_OR_RETURN(lw.attn_out_bias, b.Vector(n + "attn_out.bias", d));
    HERD_ASSIGN_OR_RETURN(lw.ln2_weight, b.Vector(n + "ln2.weight", d));
    HERD_ASSIGN_OR_RETURN(lw.ln2_bias, b.Vector(n + "ln2.bias", d));
    HERD_ASSIGN_OR_RETURN(lw.ffn_up, b.Matrix(n + "ffn_up.weight", f, d));
    HERD_ASSIGN_OR_RETURN(lw.ffn_up_bias, b.Vector(n + "ffn_up.bias", f));
    HERD_ASSIGN_OR_RETURN(lw.ffn_down, b.Matrix(n + "ffn_down.weight", d, f));
    HERD_ASSIGN_OR_RETURN(lw.ffn_down_bias, b.Vector(n + "ffn_down.bias", d));
    t->layers_.push_back(std::move(lw));
  }
  HERD_ASSIGN_OR_RETURN(t->post_ln_weight_, b.Vector("v.post_ln.weight", d));
  HERD_ASSIGN_OR_RETURN(t->post_ln_bias_, b.Vector("v.post_ln.bias", d));
  HERD_ASSIGN_OR_RETURN(t->adapter_fc1_, b.Matrix("mm.model.mlp.1.weight", config.projector_input_dim, f));
  HERD_ASSIGN_OR_RETURN(t->adapter_fc2_,
                        b.Matrix("mm.model.mlp.2.weight", config.projector_output_dim, config.projector_output_dim));
  HERD_ASSIGN_OR_RETURN(t->projector_,
                        b.Matrix("mm.model.fc.weight", config.text_hidden_size, config.vision_output_dim));
  HERD_RETURN_IF_ERROR(b.CheckAllUsed());

  const int64_t half = config.head_dim / 2;
  t->rope_cos_.resize(static_cast<size_t>(n_tokens * half));
  t->rope_sin_.resize(t->rope_cos_.size());
  kernels::VisionRopeTable(config.GridSize(), config.head_dim, config.rope_theta, t->rope_cos_.data(),
                           t->rope_sin_.data());
  t->weight_bytes_ = b.bound_bytes();
  t->config_ = config;
  return t;
}

Status VisionTower::Encode(const float* pixels, int64_t n_tiles, float* out, ThreadPool& pool,
                           VisionTrace* trace) const {
  const VisionConfig& c = config_;
  if (n_tiles < 1 || n_tiles > kMaxTiles) {
    return InvalidArgument("cannot encode " + std::to_string(n_tiles) + " image tiles (1 to " +
                           std::to_string(kMaxTiles) + " per call)");
  }
  const int64_t s = c.image_size, ch = c.num_channels, tile_floats = ch * s * s;
  for (int64_t i = 0; i < n_tiles * tile_floats; ++i) {
    if (!std::isfinite(pixels[i])) {
      const int64_t in_tile = i % tile_floats;
      return InvalidArgument("pixel value " + std::to_string(pixels[i]) + " of image tile " +
                             std::to_string(i / tile_floats) + " (channel " + std::to_string(in_tile / (s * s)) +
                             ", row " + std::to_string(in_tile % (s * s) / s) + ", column " +
                             std::to_string(in_tile % s) + ") is not finite");
    }
  }
  const int64_t g = c.GridSize(), n_patches = g * g, n_pos = n_patches + 1, d = c.hidden_size;
  const int64_t f = c.intermediate_size, hd = c.head_dim, n_heads = c.num_attention_heads, half = hd / 2;
  const int64_t factor = c.PixelShuffleFactor(), n_out = n_tiles * TokensPerTile();
  const int64_t patch_floats = ch * c.patch_size * c.patch_size, m = n_tiles * n_pos;
  Scratch w;
  try {
    w.patches.resize(static_cast<size_t>(n_tiles * n_patches * patch_floats));
    for (std::vector<float>* buf : {&w.x, &w.xn, &w.q, &w.k, &w.v, &w.att}) buf->resize(static_cast<size_t>(m * d));
    w.h.resize(static_cast<size_t>(m * f));
    w.a1.resize(static_cast<size_t>(n_out * c.projector_input_dim));
    w.a2.resize(static_cast<size_t>(n_out * c.projector_output_dim));
    w.attn.resize(static_cast<size_t>(pool.size() * kernels::AttentionScratchFloats(hd)));
  } catch (const std::bad_alloc&) {
    return ResourceExhausted("not enough memory for the vision scratch of " + std::to_string(n_tiles) + " tiles");
  } catch (const std::length_error&) {
    return ResourceExhausted("the vision scratch of " + std::to_string(n_tiles) + " tiles exceeds the address space");
  }

  // Patch embedding (no bias), the class token appended last, positions added (llama4.md 9.3 steps 1-3).
  pool.ParallelFor(n_tiles, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      kernels::UnfoldPatches(pixels + t * tile_floats, ch, s, c.patch_size,
                             w.patches.data() + t * n_patches * patch_floats);
    }
  });
  kernels::MatMul(patch_embd_, w.patches.data(), n_tiles * n_patches, w.q.data(), pool);
  pool.ParallelFor(m, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t t = r / n_pos, j = r % n_pos;
      const float* e = j < n_patches ? w.q.data() + (t * n_patches + j) * d : class_embd_.data();
      kernels::Add(e, position_embd_.data() + j * d, w.x.data() + r * d, d);
    }
  });
  LayerNormRows(w.x.data(), pre_ln_weight_, pre_ln_bias_, m, c.norm_eps, w.x.data(), pool);

  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(hd)));  // HF: head_dim ** -0.5
  const int64_t block = kernels::AttentionTokenBlock(1);
  const int64_t blocks_per_tile = (n_pos + block - 1) / block;
  const int64_t n_items = n_tiles * n_heads * blocks_per_tile;
  const int64_t scratch_floats = kernels::AttentionScratchFloats(hd);
  for (const VisionLayerWeights& lw : layers_) {
    LayerNormRows(w.x.data(), lw.ln1_weight, lw.ln1_bias, m, c.norm_eps, w.xn.data(), pool);
    const kernels::MatMulJob qkv[3] = {{&lw.attn_q, w.xn.data(), w.q.data()},
                                       {&lw.attn_k, w.xn.data(), w.k.data()},
                                       {&lw.attn_v, w.xn.data(), w.v.data()}};
    kernels::MatMulBatch(qkv, 3, m, pool);
    pool.ParallelFor(m, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        float* qr = w.q.data() + r * d;
        float* kr = w.k.data() + r * d;
        kernels::Add(qr, lw.attn_q_bias.data(), qr, d);
        kernels::Add(kr, lw.attn_k_bias.data(), kr, d);
        kernels::Add(w.v.data() + r * d, lw.attn_v_bias.data(), w.v.data() + r * d, d);
        const float* cs = rope_cos_.data() + (r % n_pos) * half;
        const float* sn = rope_sin_.data() + (r % n_pos) * half;
        for (int64_t h = 0; h < n_heads; ++h) {
          kernels::Rope(qr + h * hd, hd, cs, sn, kernels::RopeStyle::kInterleaved);
          kernels::Rope(kr + h * hd, hd, cs, sn, kernels::RopeStyle::kInterleaved);
        }
      }
    });
    // Bidirectional: every token of a tile attends to all n_pos tokens of its tile, per head.
    pool.Run([&](int thread_idx) {
      float* scratch = w.attn.data() + thread_idx * scratch_floats;
      int64_t key_begin[kernels::kAttentionMaxRows], key_end[kernels::kAttentionMaxRows];
      std::fill(key_begin, key_begin + block, 0);
      std::fill(key_end, key_end + block, n_pos);
      for (int64_t it = thread_idx; it < n_items; it += pool.size()) {
        const int64_t t = it / (n_heads * blocks_per_tile), h = it / blocks_per_tile % n_heads;
        const int64_t t0 = it % blocks_per_tile * block, nt = std::min(block, n_pos - t0);
        const int64_t tile_row = t * n_pos, head_col = h * hd;
        kernels::Attention(w.q.data() + (tile_row + t0) * d + head_col, d, nt, 1, hd,
                           w.k.data() + tile_row * d + head_col, w.v.data() + tile_row * d + head_col, d, key_begin,
                           key_end, scale, w.att.data() + (tile_row + t0) * d + head_col, d, scratch);
      }
    });
    kernels::MatMul(lw.attn_out, w.att.data(), m, w.xn.data(), pool);
    AddBias(w.xn.data(), lw.attn_out_bias, m, pool);
    kernels::Add(w.x.data(), w.xn.data(), w.x.data(), m * d);

    LayerNormRows(w.x.data(), lw.ln2_weight, lw.ln2_bias, m, c.norm_eps, w.xn.data(), pool);
    kernels::MatMul(lw.ffn_up, w.xn.data(), m, w.h.data(), pool);
    AddBias(w.h.data(), lw.ffn_up_bias, m, pool);
    GeluInPlace(w.h.data(), m * f, pool);
    kernels::MatMul(lw.ffn_down, w.h.data(), m, w.xn.data(), pool);
    AddBias(w.xn.data(), lw.ffn_down_bias, m, pool);
    kernels::Add(w.x.data(), w.xn.data(), w.x.data(), m * d);
  }
  LayerNormRows(w.x.data(), post_ln_weight_, post_ln_bias_, m, c.norm_eps, w.x.data(), pool);
  if (trace != nullptr) {
    trace->encoder.resize(static_cast<size_t>(n_tiles * n_patches * d));
    for (int64_t t = 0; t < n_tiles; ++t) {
      std::memcpy(trace->encoder.data() + t * n_patches * d, w.x.data() + t * n_pos * d,
                  static_cast<size_t>(n_patches * d) * sizeof(float));
    }
  }

  // The class token (each tile's last row) is dropped: the shuffle reads the grid^2 patch rows only (9.3 step 7).
  const int64_t shuffled = TokensPerTile() * factor * factor * d;
  pool.ParallelFor(n_tiles, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      kernels::PixelShuffle(w.x.data() + t * n_pos * d, g, d, factor, w.k.data() + t * shuffled);
    }
  });
  kernels::MatMul(adapter_fc1_, w.k.data(), n_out, w.a1.data(), pool);
  GeluInPlace(w.a1.data(), n_out * c.projector_input_dim, pool);
  kernels::MatMul(adapter_fc2_, w.a1.data(), n_out, w.a2.data(), pool);
  GeluInPlace(w.a2.data(), n_out * c.projector_output_dim, pool);
  if (trace != nullptr) trace->adapter = w.a2;
  kernels::MatMul(projector_, w.a2.data(), n_out, out, pool);
  return Status::Ok();
}

Result<std::unique_ptr<VisionTower>> LoadVisionTower(const ModelMetadata& metadata, const WeightMap& weights) {
  HERD_ASSIGN_OR_RETURN(VisionConfig config, VisionConfigFromMetadata(metadata));
  return VisionTower::Create(std::move(config), weights);
}

}  // namespace herd::model
