// Architecture -> family registry.
#include "formats/model_files.h"
#include "model/decoder.h"
#include "model/model.h"

namespace herd::model {

Result<ModelConfig> ConfigFromFiles(const formats::ModelFiles& files) {
  switch (files.format) {
    case formats::ModelFormat::kGguf:
      return ConfigFromGguf(*files.gguf);
    case formats::ModelFormat::kSafetensorsDir:
      return ConfigFromHf(files.hf_config, files.path + "/config.json");
    case formats::ModelFormat::kLlama2c:
      return ConfigFromLlama2c(*files.llama2c);
  }
  return Internal("unknown model format");
}

Result<std::unique_ptr<Model>> CreateModel(const formats::ModelFiles& files) {
  HERD_ASSIGN_OR_RETURN(ModelConfig config, ConfigFromFiles(files));
  switch (config.architecture) {
    case Architecture::kLlama:
    case Architecture::kLlama4:
      return DecoderModel::Create(std::move(config), files.weights);
  }
  return Internal("architecture without a family");
}

}  // namespace herd::model
