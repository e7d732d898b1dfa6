// Hugging Face config.json -> ModelMetadata (core/metadata.h): the text model's fields under their own names
// (text_config's for Llama4ForConditionalGeneration, llama4.md section 3; the top level for LlamaForCausalLM and
// Llama4ForCausalLM), the quantization method checked (llama4.md 6.3), and what the directory layout implies
// (rope_layout half_split for HF Llama 1-3, whose Q/K rows are stored for rotate_half: llama4.md 10.2).
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "core/metadata.h"
#include "core/status.h"

namespace herd::formats {

// `config` is the parsed config.json, `source` its path (for messages). Corruption for a malformed config (not an
// object, no model_type, llama4 without a text_config object, rope_scaling not an object), NotSupported for an
// unknown model_type or quantization method.
Result<ModelMetadata> MetadataFromHfConfig(const nlohmann::json& config, const std::string& source);

// `dir`/config.json, parsed with the nesting bound of core/json.h: IOError when the directory has none or it cannot
// be read, Corruption naming it when it nests deeper than kMaxJsonNesting (refused before it is parsed); otherwise
// its value, discarded when it is not valid JSON (each caller says what it expected). *path is set to the file's
// path, for messages.
Result<nlohmann::json> ReadHfConfigJson(const std::string& dir, std::string* path);

}  // namespace herd::formats
