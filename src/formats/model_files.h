// Opening a model from whatever the user has: a GGUF file (single or the first of a split set), a Hugging Face
// directory (config.json + safetensors), or a llama2.c checkpoint. The result holds the canonical WeightMap plus
// the format-specific metadata the config builder needs.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "core/status.h"
#include "core/tensor.h"
#include "formats/gguf.h"
#include "formats/llama2c.h"

namespace herd::formats {

enum class ModelFormat { kGguf, kSafetensorsDir, kLlama2c };

struct ModelFiles {
  ModelFormat format = ModelFormat::kGguf;
  std::string path;
  WeightMap weights;
  std::shared_ptr<const GgufFile> gguf;        // kGguf: the first (metadata) file
  nlohmann::json hf_config;                    // kSafetensorsDir: config.json
  std::optional<Llama2cHeader> llama2c;        // kLlama2c
  int64_t file_bytes = 0;                      // total size of the weight files
};

struct OpenOptions {
  bool show_progress = false;
};

// Detects the format by content (GGUF magic, directory, llama2.c header) and opens it. Every problem is an error
// naming the file and, where one is involved, the tensor.
Result<ModelFiles> OpenModelFiles(const std::string& path, const OpenOptions& options = {});

}  // namespace herd::formats
