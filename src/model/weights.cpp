// Weight binding checks.
#include "model/weights.h"

#include <cmath>
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

Result<TensorView> WeightBinder::Shaped(const std::string& name, const std::vector<int64_t>& shape,
                                        const std::vector<DType>& dtypes, bool (*supported)(DType)) {
  HERD_ASSIGN_OR_RETURN(TensorView v, Find(name));
  bool same = v.n_dims == static_cast<int>(shape.size());
  for (size_t i = 0; same && i < shape.size(); ++i) same = v.shape[i] == shape[i];
  if (!same) {
    return Corruption("tensor '" + name + "' has shape " + v.Describe() + ", expected " +
                      ShapeString(shape.data(), static_cast<int>(shape.size())));
  }
  bool ok_type = dtypes.empty() ? supported(v.dtype) : false;
  for (DType t : dtypes) ok_type |= v.dtype == t;
  if (!ok_type) {
    return NotSupported("tensor '" + name + "' has unsupported dtype " + std::string(DTypeName(v.dtype)));
  }
  return v;
}

Result<TensorView> WeightBinder::Tensor(const std::string& name, const std::vector<int64_t>& shape,
                                        const std::vector<DType>& dtypes) {
  return Shaped(name, shape, dtypes, kernels::MatMulSupports);
}

namespace {

// The elements of an F32, F16 or BF16 tensor as f32.
Result<std::vector<float>> ToF32(const std::string& name, const TensorView& v) {
  const int64_t n = v.NumElements();
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
                            "; 1-D weights and scales must be F32, F16 or BF16");
    }
  }
  return out;
}

// Dimensions other than 1.
std::vector<int64_t> Squeezed(const int64_t* shape, int n_dims) {
  std::vector<int64_t> s;
  for (int i = 0; i < n_dims; ++i) {
    if (shape[i] != 1) s.push_back(shape[i]);
  }
  return s;
}

}  // namespace

Result<std::vector<float>> WeightBinder::Vector(const std::string& name, int64_t n) {
  HERD_ASSIGN_OR_RETURN(TensorView v, Find(name));
  if (v.NumElements() != n || v.n_dims > 2 || (v.n_dims == 2 && v.shape[0] != 1)) {
    return Corruption("tensor '" + name + "' has shape " + v.Describe() + ", expected [" + std::to_string(n) + "]");
  }
  return ToF32(name, v);
}

Status WeightBinder::BindScale(const std::string& name, const TensorView& v, const std::vector<int64_t>& scale_dims,
                               std::vector<float>* out) {
  out->clear();
  const std::string scale_name =
      name.ends_with(".weight") ? name.substr(0, name.size() - 7) + ".scale" : name + ".scale";
  if (!weights_.Contains(scale_name)) {
    if (v.dtype == DType::kF8_E4M3) {
      return Corruption("tensor '" + name + "' is F8_E4M3 but its per-row scale '" + scale_name +
                        "' is missing (HF: '<module>.weight_scale' or '<experts>_scale', llama4.md 6.3)");
    }
    return Status::Ok();
  }
  HERD_ASSIGN_OR_RETURN(TensorView s, Find(scale_name));
  const std::vector<int64_t> want = Squeezed(scale_dims.data(), static_cast<int>(scale_dims.size()));
  if (Squeezed(s.shape.data(), s.n_dims) != want) {
    return Corruption("scale tensor '" + scale_name + "' of '" + name + "' " + v.Describe() + " has shape " +
                      s.Describe() + ", expected " +
                      ShapeString(scale_dims.data(), static_cast<int>(scale_dims.size())) +
                      " (one scale per output; size-1 dimensions may be added anywhere)");
  }
  HERD_ASSIGN_OR_RETURN(*out, ToF32(scale_name, s));
  for (size_t i = 0; i < out->size(); ++i) {
    if (!std::isfinite((*out)[i])) {
      return Corruption("scale tensor '" + scale_name + "' holds a non-finite value at element " + std::to_string(i));
    }
  }
  return Status::Ok();
}

Result<LinearWeight> WeightBinder::Linear(const std::string& name, int64_t rows, int64_t cols) {
  HERD_ASSIGN_OR_RETURN(TensorView v, Find(name));
  if (v.n_dims != 2 || (rows >= 0 && v.shape[0] != rows) || v.shape[1] != cols) {
    return Corruption("tensor '" + name + "' has shape " + v.Describe() + ", expected [" +
                      (rows >= 0 ? std::to_string(rows) : std::string("*")) + ", " + std::to_string(cols) + "]");
  }
  if (!kernels::MatMulScaledSupports(v.dtype)) {
    return NotSupported("tensor '" + name + "' has dtype " + std::string(DTypeName(v.dtype)) +
                        ", which the CPU kernels do not support");
  }
  LinearWeight lw{v, {}};
  HERD_RETURN_IF_ERROR(BindScale(name, v, {v.shape[0]}, &lw.scale));
  return lw;
}

Result<LinearWeight> WeightBinder::ScaledTensor(const std::string& name, const std::vector<int64_t>& shape,
                                                const std::vector<int64_t>& scale_dims,
                                                const std::vector<DType>& dtypes) {
  HERD_ASSIGN_OR_RETURN(TensorView v, Shaped(name, shape, dtypes, kernels::MatMulScaledSupports));
  LinearWeight lw{v, {}};
  HERD_RETURN_IF_ERROR(BindScale(name, v, scale_dims, &lw.scale));
  return lw;
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
