// Weight binding checks.
#include "model/weights.h"

#include <cstring>

#include "core/half.h"
#include "kernels/matmul.h"

namespace herd::model {

Result<TensorView> WeightBinder::Find(const std::string& name) {
  const TensorView* v = weights_.Find(name);
  if (v == nullptr) return Corruption("missing tensor '" + name + "'");
  if (used_.insert(name).second) bound_bytes_ += v->size_bytes;
  return *v;
}

Result<TensorView> WeightBinder::Matrix(const std::string& name, int64_t rows, int64_t cols) {
  HERD_ASSIGN_OR_RETURN(TensorView v, Find(name));
  if (v.n_dims != 2 || (rows >= 0 && v.shape[0] != rows) || v.shape[1] != cols) {
    return Corruption("tensor '" + name + "' has shape " + v.Describe() + ", expected [" +
                      (rows >= 0 ? std::to_string(rows) : std::string("*")) + ", " + std::to_string(cols) + "]");
  }
  if (!kernels::MatMulSupports(v.dtype)) {
    return NotSupported("tensor '" + name + "' has dtype " + std::string(DTypeName(v.dtype)) +
                        ", which the CPU kernels do not support");
  }
  return v;
}

Result<TensorView> WeightBinder::Tensor(const std::string& name, const std::vector<int64_t>& shape,
                                        const std::vector<DType>& dtypes) {
  HERD_ASSIGN_OR_RETURN(TensorView v, Find(name));
  bool same = v.n_dims == static_cast<int>(shape.size());
  for (size_t i = 0; same && i < shape.size(); ++i) same = v.shape[i] == shape[i];
  if (!same) {
    return Corruption("tensor '" + name + "' has shape " + v.Describe() + ", expected " +
                      ShapeString(shape.data(), static_cast<int>(shape.size())));
  }
  bool ok_type = dtypes.empty() ? kernels::MatMulSupports(v.dtype) : false;
  for (DType t : dtypes) ok_type |= v.dtype == t;
  if (!ok_type) {
    return NotSupported("tensor '" + name + "' has unsupported dtype " + std::string(DTypeName(v.dtype)));
  }
  return v;
}

Result<std::vector<float>> WeightBinder::Vector(const std::string& name, int64_t n) {
  HERD_ASSIGN_OR_RETURN(TensorView v, Find(name));
  if (v.NumElements() != n || v.n_dims > 2 || (v.n_dims == 2 && v.shape[0] != 1)) {
    return Corruption("tensor '" + name + "' has shape " + v.Describe() + ", expected [" + std::to_string(n) + "]");
  }
  std::vector<float> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    switch (v.dtype) {
      case DType::kF32: {
        float f;
        std::memcpy(&f, v.data + 4 * i, 4);
        out[i] = f;
        break;
      }
      case DType::kF16: {
        uint16_t h;
        std::memcpy(&h, v.data + 2 * i, 2);
        out[i] = F16ToF32(h);
        break;
      }
      case DType::kBF16: {
        uint16_t h;
        std::memcpy(&h, v.data + 2 * i, 2);
        out[i] = Bf16ToF32(h);
        break;
      }
      default:
        return NotSupported("tensor '" + name + "' has dtype " + std::string(DTypeName(v.dtype)) +
                            "; 1-D weights must be F32, F16 or BF16");
    }
  }
  return out;
}

Status WeightBinder::CheckAllUsed() const {
  for (const auto& [name, view] : weights_.tensors()) {
    if (!used_.contains(name)) {
      return NotSupported("tensor '" + name + "' (" + view.Describe() +
                          ") is not used by this architecture; the file may be a variant herd does not support");
    }
  }
  return Status::Ok();
}

}  // namespace herd::model
