// WeightBinder: looks up canonical tensors and checks their presence, rank, shape and dtype against the
// config before the first FLOP (style.md section 2). Errors name the tensor, expected and actual.
#pragma once

#include <set>
#include <string>
#include <vector>

#include "core/status.h"
#include "core/tensor.h"

namespace herd::model {

class WeightBinder {
 public:
  explicit WeightBinder(const WeightMap& weights) : weights_(weights) {}

  // A 2-D weight [rows, cols] in a dtype the matmul kernels support; rows < 0 accepts any row count.
  Result<TensorView> Matrix(const std::string& name, int64_t rows, int64_t cols);
  // A tensor of exactly `shape` (outermost first) in any of `dtypes` (empty: any matmul dtype).
  Result<TensorView> Tensor(const std::string& name, const std::vector<int64_t>& shape,
                            const std::vector<DType>& dtypes = {});
  // A 1-D weight of n elements (F32, F16 or BF16), converted to f32 (norm weights are tiny).
  Result<std::vector<float>> Vector(const std::string& name, int64_t n);
  // NotSupported naming the first tensor of the file that no Matrix/Tensor/Vector call claimed.
  Status CheckAllUsed() const;
  int64_t bound_bytes() const { return bound_bytes_; }

 private:
  Result<TensorView> Find(const std::string& name);
  const WeightMap& weights_;
  std::set<std::string, std::less<>> used_;
  int64_t bound_bytes_ = 0;
};

}  // namespace herd::model
