// WeightBinder: looks up canonical tensors and checks their presence, rank, shape and dtype against the
// config before the first FLOP (style.md section 2). Errors name the tensor, expected and actual.
#pragma once

#include <set>
#include <string>
#include <vector>

#include "core/status.h"
#include "core/tensor.h"

namespace herd::model {

// A linear weight as the matmul kernels take it: the stored tensor and, for FP8 checkpoints (llama4.md 6.3), one
// f32 scale per output, W[o, :] = weight[o, :] * scale[o] (kernels::MatMulScaled and friends).
struct LinearWeight {
  TensorView w;
  std::vector<float> scale;  // [n_out] f32 (all experts' outputs in a row for stacked experts), or empty: none
  const float* scale_data() const { return scale.empty() ? nullptr : scale.data(); }
};

class WeightBinder {
 public:
  explicit WeightBinder(const WeightMap& weights) : weights_(weights) {}

  // A 2-D weight [rows, cols] in a dtype the matmul kernels support; rows < 0 accepts any row count.
  Result<TensorView> Matrix(const std::string& name, int64_t rows, int64_t cols);
  // A tensor of exactly `shape` (outermost first) in any of `dtypes` (empty: any matmul dtype).
  Result<TensorView> Tensor(const std::string& name, const std::vector<int64_t>& shape,
                            const std::vector<DType>& dtypes = {});
  // As Matrix, in any dtype of kernels::MatMulScaledSupports (F8_E4M3 too), with its per-row scale: for a weight
  // "X.weight", the tensor "X.scale" when the file has one ([rows] or [rows, 1], F32, F16 or BF16, finite).
  // Corruption for a scale of another shape or a non-finite scale, and for an F8_E4M3 weight without a scale.
  Result<LinearWeight> Linear(const std::string& name, int64_t rows, int64_t cols);
  // As Tensor (empty `dtypes`: any kernels::MatMulScaledSupports dtype), with the optional scale "X.scale" whose
  // dimensions other than 1 must be `scale_dims` (HF's fused FP8 experts: gate_up_proj_scale [E, 1, 2F] and
  // down_proj_scale [E, D, 1] match {E, 2F} and {E, D}); the same errors as Linear.
  Result<LinearWeight> ScaledTensor(const std::string& name, const std::vector<int64_t>& shape,
                                    const std::vector<int64_t>& scale_dims, const std::vector<DType>& dtypes = {});
  // A 1-D weight of n elements (F32, F16 or BF16), converted to f32 (norm weights are tiny).
  Result<std::vector<float>> Vector(const std::string& name, int64_t n);
  // NotSupported naming the first tensor of the file that no Matrix/Tensor/Vector call claimed.
  Status CheckAllUsed() const;
  int64_t bound_bytes() const { return bound_bytes_; }

 private:
  Result<TensorView> Find(const std::string& name);
  // Find, then check the exact shape and a dtype of `dtypes` (empty: any that `supported` accepts).
  Result<TensorView> Shaped(const std::string& name, const std::vector<int64_t>& shape,
                            const std::vector<DType>& dtypes, bool (*supported)(DType));
  // Binds the scale of weight `name` (see ScaledTensor) into `out`, or checks that `v` needs none.
  Status BindScale(const std::string& name, const TensorView& v, const std::vector<int64_t>& scale_dims,
                   std::vector<float>* out);
  const WeightMap& weights_;
  std::set<std::string, std::less<>> used_;
  int64_t bound_bytes_ = 0;
};

}  // namespace herd::model
