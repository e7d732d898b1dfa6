// AddModelToGguf (tools/gguf_model.h).
#include "tools/gguf_model.h"

#include <cstring>
#include <vector>

#include "formats/gguf_metadata.h"

namespace herd::tools {

Status AddModelToGguf(const model::ModelConfig& c, DType file_type, formats::GgufWriter& w, const NoteFn& note) {
  HERD_ASSIGN_OR_RETURN(ModelMetadata md, model::MetadataFromConfig(c));
  std::vector<std::string> notes;
  HERD_RETURN_IF_ERROR(formats::AddModelMetadata(md, w, &notes));
  w.AddUint32("general.file_type", formats::GgufFileType(file_type));
  w.AddUint32("general.quantization_version", 2);
  int64_t inexact = 0;
  const std::vector<float> divisors = model::RopeFreqDivisors(c, &inexact);
  if (inexact > 0) {
    notes.push_back(
        std::to_string(inexact) + " of " + std::to_string(divisors.size()) +
        " RoPE frequencies cannot be expressed exactly as base / rope_freqs in f32; they differ by one ulp");
  }
  if (!divisors.empty()) {
    HERD_RETURN_IF_ERROR(w.AddTensor("rope_freqs.weight", DType::kF32, {static_cast<int64_t>(divisors.size())},
                                     [divisors](uint8_t* dst) {
                                       std::memcpy(dst, divisors.data(), divisors.size() * sizeof(float));
                                       return Status::Ok();
                                     }));
  }
  if (note) {
    for (const std::string& n : notes) note(n);
  }
  return Status::Ok();
}

}  // namespace herd::tools
