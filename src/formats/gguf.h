// GGUF v2/v3 reader (llama4.md section 4): header, typed metadata (all 13 value types, nested arrays), tensor
// table and the aligned data section, memory-mapped. Every count, offset, shape and size is checked against the
// file before use; errors are Corruption/NotSupported naming the file, the key or tensor, and the problem.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/mapped_file.h"
#include "core/status.h"
#include "core/tensor.h"

namespace herd::formats {

enum class GgufType : uint32_t {
  kUint8 = 0,
  kInt8 = 1,
  kUint16 = 2,
  kInt16 = 3,
  kUint32 = 4,
  kInt32 = 5,
  kFloat32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kUint64 = 10,
  kInt64 = 11,
  kFloat64 = 12,
};

std::string_view GgufTypeName(GgufType t);

// One metadata value. Integers of every width are held in `i` (uint64 values above INT64_MAX keep their bits),
// floats in `f`, bools in `b`, strings in `s`; arrays hold their element type and elements.
struct GgufValue {
  GgufType type = GgufType::kUint8;
  int64_t i = 0;
  double f = 0;
  bool b = false;
  std::string s;
  GgufType elem_type = GgufType::kUint8;  // for kArray
  std::vector<GgufValue> array;           // for kArray

  bool IsInteger() const;
  bool IsFloat() const { return type == GgufType::kFloat32 || type == GgufType::kFloat64; }
};

// Short human-readable rendering for `herd info` (long arrays are abbreviated).
std::string GgufValueToString(const GgufValue& v);

struct GgufTensorInfo {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;  // outermost first (GGUF stores innermost first; the reader reverses)
  uint64_t offset = 0;         // relative to the data section
  int64_t size_bytes = 0;
};

class GgufFile : public std::enable_shared_from_this<GgufFile> {
 public:
  // Maps and parses `path`.
  static Result<std::shared_ptr<const GgufFile>> Open(const std::string& path);
  // Parses an in-memory buffer (fuzzing, tests); `name` is used in messages. The bytes must outlive the file.
  static Result<std::shared_ptr<const GgufFile>> Parse(const uint8_t* data, uint64_t size, std::string name);

  uint32_t version() const { return version_; }
  const std::string& path() const { return path_; }
  uint64_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }
  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return metadata_; }
  const std::vector<GgufTensorInfo>& tensor_infos() const { return tensors_; }

  // nullptr when absent.
  const GgufValue* Find(std::string_view key) const;

  // Typed getters. The plain form fails (Corruption naming the key) when the key is missing or has the wrong
  // type; the Opt form returns nullopt when missing and fails only on a wrong type. Integers accept any integer
  // type (range-checked); floats accept float or integer types.
  Result<int64_t> GetInt(std::string_view key) const;
  Result<std::optional<int64_t>> GetIntOpt(std::string_view key) const;
  Result<double> GetFloat(std::string_view key) const;
  Result<std::optional<double>> GetFloatOpt(std::string_view key) const;
  Result<std::string_view> GetString(std::string_view key) const;
  Result<std::optional<std::string_view>> GetStringOpt(std::string_view key) const;
  Result<std::optional<bool>> GetBoolOpt(std::string_view key) const;
  // Arrays: element types must match (any integer type for GetIntArray, float/int for GetFloatArray).
  Result<std::vector<std::string_view>> GetStringArray(std::string_view key) const;
  Result<std::vector<float>> GetFloatArray(std::string_view key) const;
  Result<std::vector<int64_t>> GetIntArray(std::string_view key) const;

  // Views of every tensor, under their GGUF names (which are herd's canonical names). Keeps the map alive.
  Result<WeightMap> Weights() const;

 private:
  GgufFile() = default;
  Status ParseAll(const uint8_t* data, uint64_t size);

  std::shared_ptr<MappedFile> map_;
  const uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
  std::string path_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::vector<std::pair<std::string, GgufValue>> metadata_;
  std::vector<GgufTensorInfo> tensors_;
};

}  // namespace herd::formats
