// A model's hyperparameters in GGUF metadata (llama4.md section 4.4): llama.cpp's keys for architectures llama
// and llama4 plus herd.* keys for what llama.cpp hardcodes or infers for Llama 4 (chunk size, the NoPE and MoE
// layer lists, QK-norm, temperature tuning), read into and written from the neutral ModelMetadata
// (core/metadata.h), so that the two directions are one table of rules.
#pragma once

#include <string>
#include <vector>

#include "core/metadata.h"
#include "core/status.h"
#include "formats/gguf.h"
#include "formats/gguf_writer.h"

namespace herd::formats {

// The metadata of `gguf`. Keys GGUF does not carry take llama.cpp's values (QK-norm unless 128 experts;
// attention.sliding_window 0 means no chunking); vocab_size comes from {arch}.vocab_size, else the length of
// tokenizer.ggml.tokens, else the rows of token_embd.weight, as llama.cpp does. An architecture other than llama
// and llama4 yields only model_type and name (the model layer names what it supports). Corruption naming the key
// for a missing required key or a wrong type; NotSupported for partial RoPE (rope.dimension_count != head_dim).
Result<ModelMetadata> MetadataFromGguf(const GgufFile& gguf);

// Writes `metadata` (complete, e.g. from model::MetadataFromConfig) as general.architecture, general.name and the
// architecture's keys, the way MetadataFromGguf reads them back. llama3 RoPE scaling is not a key in GGUF: the
// caller adds the rope_freqs.weight tensor (model::RopeFreqDivisors). Appends to *notes one line for each setting
// llama.cpp cannot express (it hardcodes the Llama 4 values; herd reads the herd.* keys). InvalidArgument for
// a missing field, a value outside uint32, or rope_layout half_split (GGUF stores Q/K in Meta's order).
Status AddModelMetadata(const ModelMetadata& metadata, GgufWriter& writer, std::vector<std::string>* notes);

}  // namespace herd::formats
