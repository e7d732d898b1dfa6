// safetensors reader (llama4.md section 6.1), single files and sharded HF directories
// (model.safetensors.index.json). Files are memory-mapped; every header entry is checked (dtype, shape, offsets
// inside the data buffer, size = elements x dtype size, no overlaps) before a view is made.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/mapped_file.h"
#include "core/progress.h"
#include "core/status.h"
#include "core/tensor.h"

namespace herd::formats {

struct SafetensorsTensor {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // relative to the data buffer
  uint64_t end = 0;
};

class SafetensorsFile : public std::enable_shared_from_this<SafetensorsFile> {
 public:
  static Result<std::shared_ptr<const SafetensorsFile>> Open(const std::string& path);
  // Parses an in-memory buffer (fuzzing, tests); the bytes must outlive the object.
  static Result<std::shared_ptr<const SafetensorsFile>> Parse(const uint8_t* data, uint64_t size, std::string name);

  const std::string& path() const { return path_; }
  const std::vector<SafetensorsTensor>& tensors() const { return tensors_; }
  // The "__metadata__" string map, as key/value pairs.
  const std::vector<std::pair<std::string, std::string>>& metadata() const { return metadata_; }
  // A view of one tensor (the file stays alive as long as the WeightMap that KeepAlive()s it).
  Result<TensorView> View(const SafetensorsTensor& t) const;

 private:
  SafetensorsFile() = default;
  Status ParseAll(const uint8_t* data, uint64_t size);

  std::shared_ptr<MappedFile> map_;
  const uint8_t* data_ = nullptr;  // start of the data buffer
  uint64_t data_size_ = 0;
  std::string path_;
  std::vector<SafetensorsTensor> tensors_;
  std::vector<std::pair<std::string, std::string>> metadata_;
};

// Maps an HF tensor name to herd's canonical name; nullopt = not needed (e.g. vision weights for a text-only
// load); an error = a tensor the model does not know.
using TensorRenamer = std::function<Result<std::optional<std::string>>(std::string_view hf_name)>;

// Loads every safetensors file of an HF directory (through model.safetensors.index.json when present, else
// model.safetensors, else all *.safetensors), renaming tensors with `rename`. Shards that hold no wanted tensor
// are not mapped at all. `progress` (optional) counts shards.
Result<WeightMap> LoadSafetensorsDir(const std::string& dir, const TensorRenamer& rename, bool show_progress);

// safetensors dtype string -> DType ("BF16" -> kBF16); nullopt for a dtype herd has no type for.
std::optional<DType> SafetensorsDType(std::string_view s);
std::string_view SafetensorsDTypeName(DType t);

}  // namespace herd::formats
