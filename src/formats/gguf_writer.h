// GGUF v3 writer: metadata of every value type and tensors whose bytes are produced on demand (copied from a
// view, converted or quantized), so a converter never holds more than one tensor in memory. Used by
// `herd convert`, `herd quantize` and `herd bench --synthetic --save`, and by tests to build files.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "core/file.h"
#include "core/status.h"
#include "core/tensor.h"
#include "formats/gguf.h"

namespace herd::formats {

// llama.cpp's general.file_type for a model whose matrices are mostly of type t (informational; llama4.md 5.5):
// F32 0, F16 1, Q4_0 2, Q8_0 7, Q4_K 14 (Q4_K_S), Q5_K 16 (Q5_K_S), Q6_K 18, BF16 32; 0 for any other type.
uint32_t GgufFileType(DType t);

class GgufWriter {
 public:
  // Fills `dst` (exactly the tensor's byte size) with the tensor's data.
  using Producer = std::function<Status(uint8_t* dst)>;

  void SetAlignment(uint64_t alignment) { alignment_ = alignment; }

  void Add(std::string key, GgufValue value);
  void AddString(std::string key, std::string value);
  void AddUint32(std::string key, uint32_t value);
  void AddInt32(std::string key, int32_t value);
  void AddUint64(std::string key, uint64_t value);
  void AddFloat32(std::string key, float value);
  void AddBool(std::string key, bool value);
  void AddStringArray(std::string key, const std::vector<std::string>& values);
  void AddFloat32Array(std::string key, const std::vector<float>& values);
  void AddInt32Array(std::string key, const std::vector<int32_t>& values);

  // A tensor of `shape` (outermost first) whose bytes `produce` writes. InvalidArgument when the inner dimension
  // is not a multiple of the dtype's block size or the name repeats.
  Status AddTensor(std::string name, DType dtype, std::vector<int64_t> shape, Producer produce);
  // A tensor copied verbatim from a view (same dtype and shape).
  Status AddTensor(std::string name, const TensorView& view);

  // Writes the file through core/file.h's AtomicFile: `path` must not be a device, a FIFO, a directory or one of
  // `inputs` (InvalidArgument, before anything is written); a failure leaves `path` untouched and no temporary
  // file behind (IOError, IsOutputError). `progress_label` non-empty shows progress over the tensors.
  Status Write(const std::string& path, std::string_view progress_label = {},
               const std::vector<std::string>& inputs = {}) const;
  // The whole file in memory (tests, fuzz seeds).
  Result<std::vector<uint8_t>> Serialize() const;

  size_t tensor_count() const { return tensors_.size(); }

 private:
  struct Tensor {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
    int64_t bytes;
    Producer produce;
  };
  template <typename Sink>
  Status Emit(Sink& sink, std::string_view progress_label) const;

  uint64_t alignment_ = 32;
  std::vector<std::pair<std::string, GgufValue>> metadata_;
  std::vector<Tensor> tensors_;
};

}  // namespace herd::formats
