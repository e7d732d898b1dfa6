// The Llama 4 vision tower (llama4.md 9.3-9.6): per tile of normalised pixels, patch embedding (unfold + linear, no
// bias), the class token appended last, learned positions, LayerNorm, a pre-norm ViT encoder (LayerNorm, q/k/v/o with
// biases, 2-D RoPE, bidirectional attention, GELU MLP) and LayerNorm, the class token dropped, pixel shuffle in Meta's
// order, the adapter (two linears, each followed by an exact GELU) and the projector into the text model's hidden
// size: the rows that replace the <|patch|> embeddings (section 9.7). References: Meta's vision/encoder.py and
// embedding.py, HF Llama4VisionModel; pinned to shared/fixtures/llama4-tiny-vision (tests/golden).
//
// Like the text model, the tower sees only a WeightMap under canonical names (llama.cpp's mmproj names: v.*, mm.*;
// llama4.md 4.2) and the neutral ModelMetadata, never a file: formats/vision_files.h opens an HF directory or an
// mmproj GGUF into those and writes the mmproj back. Loading from a path is therefore two calls:
//   HERD_ASSIGN_OR_RETURN(formats::VisionFiles files, formats::OpenVisionFiles(path));  // HF dir or --mmproj file
//   HERD_ASSIGN_OR_RETURN(auto tower, model::LoadVisionTower(files.metadata, files.weights));
// and writing an mmproj of a tower:
//   formats::WriteMmproj(model::MetadataFromVisionConfig(tower->config()), tower->weights(), path, files.sources);
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/metadata.h"
#include "core/status.h"
#include "core/tensor.h"
#include "core/thread_pool.h"

namespace herd::model {

// The tower's hyperparameters, fields spelled as HF's vision_config (llama4.md section 3; Scout and Maverick in
// parentheses). Built by VisionConfigFromMetadata and checked by Validate before any weight is bound.
struct VisionConfig {
  int64_t image_size = 0;            // tile side S in pixels (336)
  int64_t patch_size = 0;            // patch side p (14): a grid of S / p patches per side (24)
  int64_t num_channels = 3;          // RGB
  int64_t hidden_size = 0;           // D (1408)
  int64_t intermediate_size = 0;     // encoder MLP width, also the adapter's input: D / pixel_shuffle_ratio^2 (5632)
  int64_t num_hidden_layers = 0;     // (34)
  int64_t num_attention_heads = 0;   // (16)
  int64_t head_dim = 0;              // hidden_size / num_attention_heads (88), a multiple of 4 for the 2-D RoPE
  float norm_eps = 1e-5f;            // every LayerNorm
  float rope_theta = 10000.0f;       // 2-D RoPE base (section 9.4)
  float pixel_shuffle_ratio = 0.5f;  // 1 / an integer factor dividing the grid (section 9.5)
  int64_t projector_input_dim = 0;   // adapter fc1 output (4096)
  int64_t projector_output_dim = 0;  // adapter fc2 input and output (4096); equals projector_input_dim
  int64_t vision_output_dim = 0;     // projector input (4096); equals projector_output_dim
  int64_t text_hidden_size = 0;      // projector output: the text model's hidden_size (5120)

  // Derived sizes, meaningful for a config that passed Validate (VisionConfigFromMetadata's results do).
  int64_t GridSize() const { return image_size / patch_size; }
  int64_t PixelShuffleFactor() const;  // 1 / pixel_shuffle_ratio (2); 0 when that is not an integer
  // Output rows per tile: (grid / factor)^2 (144).
  int64_t TokensPerTile() const;
  // Arithmetic of one tile's encode, counting a multiply-add as 2: the patch embedding, per layer the four
  // projections, the MLP and attention's scores and weighted values over grid^2 + 1 positions, the adapter and the
  // projector (1.02 T for Scout's tower into 5120). Norms, GELU, RoPE and softmax are left out.
  double FlopsPerTile() const;

  // Consistency and plausible ranges: every size within its limit, image_size a multiple of patch_size, heads
  // dividing hidden_size into head_dim (a multiple of 4), num_channels 3, pixel_shuffle_ratio 1 / an integer factor
  // dividing the grid, intermediate_size = hidden_size * factor^2 (the adapter's input is the shuffled width),
  // projector_input_dim = projector_output_dim = vision_output_dim (the adapter and projector chain: HF's
  // Llama4VisionMLP2 and Llama4MultiModalProjector), norm_eps and rope_theta finite and positive. Corruption naming
  // the field.
  Status Validate() const;
  // One line per field, for `herd info` (of a valid config).
  std::string Describe() const;
  bool operator==(const VisionConfig&) const = default;
};

// The config of vision metadata (formats/vision_files.h keys). Required: image_size, patch_size, hidden_size,
// intermediate_size, num_hidden_layers, num_attention_heads, norm_eps, pixel_shuffle_ratio, projector_input_dim,
// projector_output_dim, vision_output_dim, text_hidden_size; rope_theta defaults to 10000 (HF's default; Meta fixes
// it), num_channels to 3 and hidden_act to "gelu", the only activation supported. NotSupported for a model_type
// other than llama4_vision_model or another hidden_act; Corruption naming the field, its origin in the file and the
// value for anything missing, mistyped, out of range or inconsistent (Validate's rules).
Result<VisionConfig> VisionConfigFromMetadata(const ModelMetadata& metadata);
// The inverse, for writers of mmproj files (formats::WriteMmproj): VisionConfigFromMetadata of the result is `config`.
ModelMetadata MetadataFromVisionConfig(const VisionConfig& config);

// One encoder layer. Matrices are [out, in] in any dtype kernels::MatMul supports; 1-D weights are converted to f32
// at bind time (they are tiny).
struct VisionLayerWeights {
  std::vector<float> ln1_weight, ln1_bias;                                  // [hidden_size]: input_layernorm
  TensorView attn_q, attn_k, attn_v, attn_out;                              // [hidden_size, hidden_size]
  std::vector<float> attn_q_bias, attn_k_bias, attn_v_bias, attn_out_bias;  // [hidden_size]
  std::vector<float> ln2_weight, ln2_bias;                                  // [hidden_size]: post_attention_layernorm
  TensorView ffn_up;                                                        // [intermediate_size, hidden_size]: fc1
  std::vector<float> ffn_up_bias;                                           // [intermediate_size]
  TensorView ffn_down;                                                      // [hidden_size, intermediate_size]: fc2
  std::vector<float> ffn_down_bias;                                         // [hidden_size]
};

// Intermediate values of one Encode call, for tests.
struct VisionTrace {
  std::vector<float> encoder;  // [n_tiles, grid^2, hidden_size]: after layernorm_post, class token dropped
  std::vector<float> adapter;  // [n_tiles * TokensPerTile(), projector_output_dim]: after the adapter's second GELU
};

class VisionTower {
 public:
  // Binds every tensor of `weights` (mmproj names) after checking presence, dtype and shape against `config`:
  //   v.patch_embd.weight      [hidden_size, 3 * p * p], or the same bytes as a conv kernel [hidden_size, 3, p, p]
  //   v.class_embd             [hidden_size]
  //   v.position_embd.weight   [grid^2 + 1, hidden_size] (the class token's row last)
  //   v.pre_ln.{weight,bias}, v.post_ln.{weight,bias}                          [hidden_size]
  //   v.blk.N.{attn_q,attn_k,attn_v,attn_out}.weight [hidden_size, hidden_size], .bias [hidden_size]
  //   v.blk.N.{ln1,ln2}.{weight,bias} [hidden_size]
  //   v.blk.N.ffn_up.weight [intermediate_size, hidden_size], .bias [intermediate_size]
  //   v.blk.N.ffn_down.weight [hidden_size, intermediate_size], .bias [hidden_size]
  //   mm.model.mlp.1.weight    [projector_input_dim, intermediate_size]
  //   mm.model.mlp.2.weight    [projector_output_dim, projector_output_dim]
  //   mm.model.fc.weight       [text_hidden_size, vision_output_dim]
  // Matrices (and the positions) in any dtype kernels::MatMul supports (F32, F16, BF16, Q8_0, ...), vectors F32, F16
  // or BF16. Corruption / NotSupported naming the tensor, expected and actual; a tensor no field uses is an error.
  // The tower keeps what `weights` keeps alive (the file maps).
  static Result<std::unique_ptr<VisionTower>> Create(VisionConfig config, const WeightMap& weights);

  const VisionConfig& config() const { return config_; }
  // The bound tensors under their mmproj names, in their stored dtypes (for formats::WriteMmproj).
  const WeightMap& weights() const { return weights_; }
  int64_t TileSize() const { return config_.image_size; }
  int64_t TokensPerTile() const { return config_.TokensPerTile(); }
  int64_t OutputDim() const { return config_.text_hidden_size; }
  int64_t WeightBytes() const { return weight_bytes_; }

  // Encodes n_tiles tiles of normalised pixels (llama4.md 9.2: (v / 255 - 0.5) / 0.5), f32 [n_tiles, 3, S, S]
  // with S = TileSize(), into out: f32 [n_tiles * TokensPerTile(), OutputDim()], tile after tile, each tile's rows in
  // the shuffled order of section 9.5. All tiles' tokens go through each matrix product together; attention runs per
  // tile and head. Each tile's rows are bit-identical whether it is encoded alone or with others (the kernels are
  // batch invariant). `trace` (optional) receives the encoder and adapter outputs. Allocates its scratch for the call:
  // (6 hidden_size + intermediate_size + 3 patch_size^2) f32 per token, grid^2 + 1 tokens per tile, plus the adapter's
  // rows (Scout: about 39 MB per tile). Thread-safe: calls may run concurrently with distinct pools. InvalidArgument
  // for n_tiles outside [1, 65536] or a non-finite pixel (naming tile, channel, row and column); ResourceExhausted
  // when the scratch cannot be allocated.
  Status Encode(const float* pixels, int64_t n_tiles, float* out, ThreadPool& pool, VisionTrace* trace = nullptr) const;

 private:
  VisionTower() = default;

  VisionConfig config_;
  WeightMap weights_;                                                               // keeps the mapped files alive
  TensorView patch_embd_;                                                           // [hidden_size, 3 * p * p]
  std::vector<float> class_embd_;                                                   // [hidden_size]
  std::vector<float> position_embd_;                                                // [grid^2 + 1, hidden_size]
  std::vector<float> pre_ln_weight_, pre_ln_bias_, post_ln_weight_, post_ln_bias_;  // [hidden_size]
  std::vector<VisionLayerWeights> layers_;
  TensorView adapter_fc1_;                  // [projector_input_dim, intermediate_size]
  TensorView adapter_fc2_;                  // [projector_output_dim, projector_output_dim]
  TensorView projector_;                    // [text_hidden_size, vision_output_dim]
  std::vector<float> rope_cos_, rope_sin_;  // [grid^2 + 1, head_dim / 2]: kernels::VisionRopeTable
  int64_t weight_bytes_ = 0;
};

// VisionConfigFromMetadata, then VisionTower::Create: the tower of what formats::OpenVisionFiles returns.
Result<std::unique_ptr<VisionTower>> LoadVisionTower(const ModelMetadata& metadata, const WeightMap& weights);

}  // namespace herd::model
