// A model's config as a GGUF file states it: herd convert and herd bench --synthetic --save write the same keys
// (formats/gguf_metadata.h, from model::MetadataFromConfig) and the same rope_freqs.weight divisors for llama3
// scaling (model::RopeFreqDivisors, llama4.md 4.3), so that model::ConfigFromMetadata reads back the same network.
#pragma once

#include <functional>
#include <string>

#include "core/dtype.h"
#include "core/status.h"
#include "formats/gguf_writer.h"
#include "model/config.h"

namespace herd::tools {

// Receives one line per note (settings llama.cpp cannot express, inexact RoPE divisors).
using NoteFn = std::function<void(const std::string&)>;

// Adds general.architecture, general.name (config.name), general.file_type for matrices of `file_type`,
// general.quantization_version 2, the architecture's keys, and, when the config has llama3 RoPE scaling, the
// rope_freqs.weight tensor (call it before adding the other tensors: llama.cpp's files start with it).
// InvalidArgument / NotSupported from formats::AddModelMetadata and model::MetadataFromConfig.
Status AddModelToGguf(const model::ModelConfig& config, DType file_type, formats::GgufWriter& writer,
                      const NoteFn& note);

}  // namespace herd::tools
