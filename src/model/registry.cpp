// Architecture -> family registry.
#include "model/decoder.h"
#include "model/model.h"

namespace herd::model {

Result<std::unique_ptr<Model>> CreateModel(ModelConfig config, const WeightMap& weights,
                                           std::unique_ptr<Backend> backend) {
  switch (config.architecture) {
    case Architecture::kLlama:
    case Architecture::kLlama4:
      return DecoderModel::Create(std::move(config), weights, std::move(backend));
  }
  return Internal("architecture without a family");
}

Result<std::unique_ptr<Model>> CreateModel(ModelConfig config, const WeightMap& weights) {
  return CreateModel(std::move(config), weights, nullptr);
}

}  // namespace herd::model
