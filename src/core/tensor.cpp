// TensorView helpers and WeightMap.
#include "core/tensor.h"

#include <limits>

namespace herd {

int64_t TensorView::NumElements() const {
  int64_t n = 1;
  for (int i = 0; i < n_dims; ++i) n *= shape[i];
  return n;
}

std::string ShapeString(const int64_t* shape, int n_dims) {
  std::string s = "[";
  for (int i = 0; i < n_dims; ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

std::string TensorView::Describe() const {
  return ShapeString(shape.data(), n_dims) + " " + std::string(DTypeName(dtype));
}

TensorView TensorView::Slice(int64_t i) const {
  TensorView v = *this;
  HERD_DCHECK(n_dims >= 2 && i >= 0 && i < shape[0]);
  const int64_t per = size_bytes / shape[0];
  for (int d = 0; d + 1 < n_dims; ++d) v.shape[d] = shape[d + 1];
  v.shape[n_dims - 1] = 1;
  v.n_dims = n_dims - 1;
  v.data = data + i * per;
  v.size_bytes = per;
  return v;
}

Result<TensorView> MakeTensorView(DType dtype, const std::vector<int64_t>& shape, const uint8_t* data,
                                  int64_t size_bytes, std::string_view source) {
  if (shape.size() > static_cast<size_t>(kMaxDims)) {
    return NotSupported("tensor has " + std::to_string(shape.size()) + " dimensions; at most 4 are supported");
  }
  TensorView v;
  v.dtype = dtype;
  v.n_dims = static_cast<int>(shape.size());
  v.data = data;
  v.size_bytes = size_bytes;
  v.source = source;
  int64_t n = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] < 0) return Corruption("negative dimension in shape " + ShapeString(shape.data(), v.n_dims));
    v.shape[i] = shape[i];
    if (shape[i] != 0 && n > std::numeric_limits<int64_t>::max() / shape[i]) {
      return Corruption("element count of shape " + ShapeString(shape.data(), v.n_dims) + " overflows");
    }
    n *= shape[i];
  }
  const DTypeTraits& tr = Traits(dtype);
  const int64_t cols = v.Cols();
  if (cols % tr.block_size != 0) {
    return Corruption("innermost dimension " + std::to_string(cols) + " of a " + std::string(tr.name) +
                      " tensor is not a multiple of its block size " + std::to_string(tr.block_size));
  }
  const int64_t blocks = n / tr.block_size;
  if (blocks > std::numeric_limits<int64_t>::max() / tr.type_size) return Corruption("tensor byte size overflows");
  const int64_t expected = blocks * tr.type_size;
  if (expected != size_bytes) {
    return Corruption("shape " + v.Describe() + " needs " + std::to_string(expected) + " bytes but " +
                      std::to_string(size_bytes) + " are given");
  }
  return v;
}

Status WeightMap::Add(std::string name, TensorView view) {
  auto [it, inserted] = tensors_.emplace(std::move(name), view);
  if (!inserted) return Corruption("duplicate tensor '" + it->first + "'");
  return Status::Ok();
}

const TensorView* WeightMap::Find(std::string_view name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

Status WeightMap::Merge(WeightMap&& other) {
  for (auto& [name, view] : other.tensors_) HERD_RETURN_IF_ERROR(Add(name, view));
  for (auto& o : other.owners_) owners_.push_back(std::move(o));
  other.tensors_.clear();
  other.owners_.clear();
  return Status::Ok();
}

}  // namespace herd
