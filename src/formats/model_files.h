// Opening a model from whatever the user has: a GGUF file (single or the first of a split set), a Hugging Face
// directory (config.json + safetensors), or a llama2.c checkpoint. The result holds the canonical WeightMap and the
// hyperparameters as neutral ModelMetadata (core/metadata.h), which is all the model layer needs.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/metadata.h"
#include "core/status.h"
#include "core/tensor.h"
#include "formats/gguf.h"

namespace herd::formats {

enum class ModelFormat { kGguf, kSafetensorsDir, kLlama2c };

struct ModelFiles {
  ModelFormat format = ModelFormat::kGguf;
  std::string path;
  WeightMap weights;
  ModelMetadata metadata;                      // the hyperparameters (GGUF keys, config.json or llama2.c header)
  std::shared_ptr<const GgufFile> gguf;        // kGguf: the first file (its tokenizer, `herd info`, quantize)
  int64_t file_bytes = 0;                      // total size of the weight files
  // The files the model consists of, which no output may replace: every part of a GGUF, the llama2.c checkpoint,
  // every file of an HF directory but *.gguf (shards not mapped, tokenizer files and configs included).
  std::vector<std::string> sources;
};

struct OpenOptions {
  bool show_progress = false;
};

// Detects the format by content (GGUF magic, directory, llama2.c header) and opens it. Every problem is an error
// naming the file and, where one is involved, the tensor.
Result<ModelFiles> OpenModelFiles(const std::string& path, const OpenOptions& options = {});

}  // namespace herd::formats
