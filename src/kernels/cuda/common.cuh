// Helpers shared by the .cu files of herd_cuda (never included by host-only code): CUDA errors as herd Status
// values naming the kernel or runtime call, the exact dequantization of one weight element on the device, and warp
// reductions. Kept in one header so every kernel decodes F16/BF16/Q8_0/Q4_0 the same way as kernels/ref/matmul.cpp.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "core/dtype.h"
#include "core/status.h"
#include "kernels/cuda/cuda.h"

namespace herd::kernels::cuda::detail {

// "what: cudaErrorX (message)" as a Status; OK for cudaSuccess. A missing driver or device is Unavailable, memory
// exhaustion ResourceExhausted, anything else Internal.
inline Status CudaStatus(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return Status::Ok();
  std::string m = std::string(what) + ": " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")";
  switch (e) {
    case cudaErrorInsufficientDriver:
    case cudaErrorNoDevice:
    case cudaErrorInitializationError:
      return Unavailable(std::move(m));
    case cudaErrorMemoryAllocation:
      return ResourceExhausted(std::move(m));
    default:
      return Internal(std::move(m));
  }
}

// The status of the launch just made (configuration errors, a missing device); execution errors come later.
inline Status LaunchStatus(const char* kernel) { return CudaStatus(cudaGetLastError(), kernel); }

inline cudaStream_t Raw(Stream s) { return static_cast<cudaStream_t>(s.handle); }

// Rejects what a kernel cannot take before anything is launched.
inline Status CheckShape(bool ok, const char* kernel, const char* what) {
  return ok ? Status::Ok() : InvalidArgument(std::string(kernel) + ": " + what);
}

__device__ __forceinline__ float WarpSum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float WarpMax(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

__device__ __forceinline__ float HalfBits(uint16_t h) { return __half2float(__ushort_as_half(h)); }
__device__ __forceinline__ float Bf16Bits(uint16_t h) { return __uint_as_float(static_cast<uint32_t>(h) << 16); }

__device__ __forceinline__ uint16_t LoadU16(const uint8_t* p) { return *reinterpret_cast<const uint16_t*>(p); }

// Element i of a row of dtype T (bytes at `row`, 2-byte aligned), dequantized exactly as ref::DequantizeRow: F16 and
// BF16 widen exactly, Q8_0 is d * q, Q4_0 is (nibble - 8) * d, each product exact in f32.
template <DType T>
__device__ __forceinline__ float LoadElement(const uint8_t* row, int64_t i) {
  if constexpr (T == DType::kF32) {
    return reinterpret_cast<const float*>(row)[i];
  } else if constexpr (T == DType::kF16) {
    return HalfBits(reinterpret_cast<const uint16_t*>(row)[i]);
  } else if constexpr (T == DType::kBF16) {
    return Bf16Bits(reinterpret_cast<const uint16_t*>(row)[i]);
  } else if constexpr (T == DType::kQ8_0) {
    const uint8_t* blk = row + 34 * (i >> 5);
    return HalfBits(LoadU16(blk)) * static_cast<float>(static_cast<int8_t>(blk[2 + (i & 31)]));
  } else {
    static_assert(T == DType::kQ4_0, "LoadElement: unsupported dtype");
    const uint8_t* blk = row + 18 * (i >> 5);
    const int j = static_cast<int>(i & 31);
    const int nib = j < 16 ? (blk[2 + j] & 0x0F) : (blk[2 + j - 16] >> 4);
    return static_cast<float>(nib - 8) * HalfBits(LoadU16(blk));
  }
}

// Calls f.template operator()<T>() for the runtime dtype t (one of the MatMul dtypes), else returns NotSupported.
template <typename F>
Status DispatchDType(DType t, const char* kernel, F&& f) {
  switch (t) {
    case DType::kF32:
      return f.template operator()<DType::kF32>();
    case DType::kF16:
      return f.template operator()<DType::kF16>();
    case DType::kBF16:
      return f.template operator()<DType::kBF16>();
    case DType::kQ8_0:
      return f.template operator()<DType::kQ8_0>();
    case DType::kQ4_0:
      return f.template operator()<DType::kQ4_0>();
    default:
      return NotSupported(std::string(kernel) + ": weight dtype " + std::string(DTypeName(t)) +
                          " is not supported on CUDA yet (F32, F16, BF16, Q8_0, Q4_0)");
  }
}

}  // namespace herd::kernels::cuda::detail
