// llama2.c checkpoints (legacy "version 0" format of karpathy/llama2.c run.c; llama4.md section 10.4): a header of
// seven int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len; a negative vocab_size means an
// unshared classifier), then f32 arrays in a fixed order, each matrix [out][in], layer after layer. The weights
// are exposed under canonical names as views into the memory map.
#pragma once

#include <memory>
#include <string>

#include "core/metadata.h"
#include "core/status.h"
#include "core/tensor.h"

namespace herd::formats {

struct Llama2cHeader {
  int32_t dim = 0;
  int32_t hidden_dim = 0;
  int32_t n_layers = 0;
  int32_t n_heads = 0;
  int32_t n_kv_heads = 0;
  int32_t vocab_size = 0;  // always positive here
  int32_t seq_len = 0;
  bool shared_classifier = true;
};

struct Llama2cModel {
  Llama2cHeader header;
  WeightMap weights;
};

Result<Llama2cModel> OpenLlama2c(const std::string& path);
// The header as ModelMetadata (core/metadata.h): a dense llama with run.c's hard-coded rms_norm_eps 1e-5 and
// rope_theta 10000 and interleaved RoPE (llama4.md 10.4). `source` names the file in messages.
ModelMetadata MetadataFromLlama2c(const Llama2cHeader& header, const std::string& source);
// Parses a buffer (fuzzing, tests); the bytes must outlive the returned views.
Result<Llama2cModel> ParseLlama2c(const uint8_t* data, uint64_t size, const std::string& name);

}  // namespace herd::formats
