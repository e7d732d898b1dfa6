// The Llama 4 vision tower's files: the vision part of an HF Llama4ForConditionalGeneration directory (config.json's
// vision_config, the vision_model.* and multi_modal_projector.* tensors; llama4.md 3, 4.2) and llama.cpp's separate
// projector GGUF ("mmproj": general.architecture "clip", clip.* keys, v.* and mm.* tensors; llama4.md 4.5), read
// into the neutral form the model layer takes (model/vision.h): a WeightMap under the mmproj tensor names and a
// ModelMetadata whose keys are vision_config's field names, and written back as an mmproj GGUF.
//
// Metadata keys (HF vision_config spelling, each entry's origin names the file's own key):
//   model_type                 "llama4_vision_model"
//   image_size, patch_size, num_channels, hidden_size, intermediate_size, num_hidden_layers, num_attention_heads,
//   norm_eps, rope_theta, pixel_shuffle_ratio, hidden_act, projector_input_dim, projector_output_dim,
//   vision_output_dim          as in vision_config (HF: every field it has, copied; GGUF: the ones below)
//   text_hidden_size           the projector's output width: HF text_config.hidden_size, GGUF
//   clip.vision.projection_dim
//
// mmproj keys, as llama.cpp's convert_hf_to_gguf.py (Llama4VisionModel) writes and tools/mtmd/clip.cpp reads them:
// clip.projector_type "llama4", clip.has_vision_encoder, clip.use_gelu, clip.vision.{image_size, patch_size,
// embedding_length, feed_forward_length, block_count, attention.head_count, attention.layer_norm_epsilon,
// projection_dim, projector.scale_factor (= 1 / pixel_shuffle_ratio), image_mean, image_std}. What the file does not
// state: rope_theta (llama.cpp fixes 10000 for llama4; herd writes herd.vision.rope_theta and reads it when present),
// the adapter and projector widths (from the shapes of mm.model.mlp.1/2.weight and mm.model.fc.weight, as
// llama.cpp takes them) and num_channels (3).
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/metadata.h"
#include "core/status.h"
#include "core/tensor.h"
#include "formats/gguf.h"

namespace herd::formats {

// The vision metadata of a parsed config.json (`source` its path, for messages): vision_config's fields, model_type
// and text_hidden_size as above. InvalidArgument when the model has no vision tower (model_type other than llama4, or
// no vision_config object), Corruption for a vision_config that is not an object.
Result<ModelMetadata> VisionMetadataFromHfConfig(const nlohmann::json& config, const std::string& source);

// The vision metadata of an mmproj GGUF. InvalidArgument for a file that is not one (general.architecture other
// than "clip", clip.has_vision_encoder false); NotSupported for a projector type other than llama4, clip.use_gelu
// false, or an image_mean / image_std other than Llama 4's 0.5 (the tower takes pixels normalised that way, llama4.md
// 9.2); Corruption naming the key (or the tensor whose shape gives a width) when one is missing or mistyped.
Result<ModelMetadata> VisionMetadataFromGguf(const GgufFile& gguf);

struct VisionFiles {
  std::string path;
  WeightMap weights;                     // the vision tensors under their mmproj names (v.*, mm.*), memory-mapped
  ModelMetadata metadata;                // the vision keys above
  std::shared_ptr<const GgufFile> gguf;  // an mmproj: the file; null for an HF directory
  // The files the tower comes from, which no output may replace: every file of an HF directory but *.gguf, or the
  // mmproj.
  std::vector<std::string> sources;
};

// Opens the vision tower of `path`: an HF Llama 4 directory whose config.json has a vision_config (only the
// vision tensors are mapped), or an mmproj GGUF. Errors name the file and the key or tensor: IOError for a missing
// path, InvalidArgument for a path that holds no vision tower (a text-only model, a text GGUF, another kind of file),
// and those of VisionMetadataFromHfConfig / VisionMetadataFromGguf and of the safetensors and GGUF readers.
Result<VisionFiles> OpenVisionFiles(const std::string& path, bool show_progress = false);

// Writes an mmproj GGUF at `path`: general.architecture "clip", the clip.* keys above (and herd.vision.rope_theta)
// from `metadata` (complete, e.g. model::MetadataFromVisionConfig), and every tensor of `weights` in its stored dtype
// and shape, bytes copied verbatim. Through GgufWriter::Write: `path` must not be one of `inputs`; a failure leaves
// it untouched. InvalidArgument for metadata that is not a Llama 4 vision tower (model_type, hidden_act other than
// gelu, a pixel_shuffle_ratio that is not 1 / an integer), a missing key, or a tensor whose name is not an mmproj
// name (v.*, mm.*); IOError when writing fails.
Status WriteMmproj(const ModelMetadata& metadata, const WeightMap& weights, const std::string& path,
                   const std::vector<std::string>& inputs = {});

}  // namespace herd::formats
