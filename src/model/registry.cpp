// Architecture -> family registry.
#include "model/decoder.h"
#include "model/model.h"

namespace herd::model {

Result<std::unique_ptr<Model>> CreateModel(ModelConfig config, const WeightMap& weights) {
  switch (config.architecture) {
    case Architecture::kLlama:
    case Architecture::kLlama4:
      return DecoderModel::Create(std::move(config), weights);
  }
  return Internal("architecture without a family");
}

}  // namespace herd::model
