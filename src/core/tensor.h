// TensorView: a typed, shaped, non-owning view of tensor bytes (usually inside a memory map), and WeightMap:
// canonical tensor name -> view. Canonical names are llama.cpp's GGUF names ("blk.3.attn_q.weight"); each
// format reader translates into them, so model code never sees which file a weight came from (style.md 2).
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/dtype.h"
#include "core/status.h"

namespace herd {

constexpr int kMaxDims = 4;

struct TensorView {
  DType dtype = DType::kF32;
  int n_dims = 0;
  // Outermost first, row-major: a linear weight is [out, in]. Unused trailing entries are 1.
  std::array<int64_t, kMaxDims> shape{1, 1, 1, 1};
  const uint8_t* data = nullptr;
  int64_t size_bytes = 0;
  // Where the bytes came from, for error messages ("model.safetensors").
  std::string_view source;

  int64_t NumElements() const;
  // Innermost (contiguous) dimension.
  int64_t Cols() const { return n_dims == 0 ? 1 : shape[n_dims - 1]; }
  // Product of all but the innermost dimension.
  int64_t Rows() const { return Cols() == 0 ? 0 : NumElements() / Cols(); }
  int64_t RowStride() const { return RowBytes(dtype, Cols()); }
  const uint8_t* Row(int64_t r) const { return data + r * RowStride(); }
  // "[5120, 1024] Q8_0"
  std::string Describe() const;
  // Sub-view of index `i` along the outermost dimension (e.g. expert i of [E, F, D]).
  TensorView Slice(int64_t i) const;
};

// Shape as "[a, b, c]".
std::string ShapeString(const int64_t* shape, int n_dims);

// Builds a view and checks that `size_bytes` matches dtype x shape (inner dim a multiple of the block size).
Result<TensorView> MakeTensorView(DType dtype, const std::vector<int64_t>& shape, const uint8_t* data,
                                  int64_t size_bytes, std::string_view source);

class WeightMap {
 public:
  // Adds a tensor; Corruption if the name is already present.
  Status Add(std::string name, TensorView view);
  // nullptr when absent. The view lives as long as this WeightMap.
  const TensorView* Find(std::string_view name) const;
  bool Contains(std::string_view name) const { return Find(name) != nullptr; }
  size_t size() const { return tensors_.size(); }
  const std::map<std::string, TensorView, std::less<>>& tensors() const { return tensors_; }
  // Keeps `owner` (a memory map or a buffer) alive as long as this map.
  void KeepAlive(std::shared_ptr<const void> owner) { owners_.push_back(std::move(owner)); }
  // Moves all tensors and owners of `other` in; Corruption on a duplicate name.
  Status Merge(WeightMap&& other);

 private:
  std::map<std::string, TensorView, std::less<>> tensors_;
  std::vector<std::shared_ptr<const void>> owners_;
};

}  // namespace herd
