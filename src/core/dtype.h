// Element types of weights and activations. Values equal the ggml type ids of GGUF (llama4.md section 5.3) so
// the GGUF reader and writer need no table; types that only safetensors has use ids from 100 up.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace herd {

enum class DType : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ5_0 = 6,
  kQ5_1 = 7,
  kQ8_0 = 8,
  kQ8_1 = 9,
  kQ2_K = 10,
  kQ3_K = 11,
  kQ4_K = 12,
  kQ5_K = 13,
  kQ6_K = 14,
  kQ8_K = 15,
  kIQ2_XXS = 16,
  kIQ2_XS = 17,
  kIQ3_XXS = 18,
  kIQ1_S = 19,
  kIQ4_NL = 20,
  kIQ3_S = 21,
  kIQ2_S = 22,
  kIQ4_XS = 23,
  kI8 = 24,
  kI16 = 25,
  kI32 = 26,
  kI64 = 27,
  kF64 = 28,
  kIQ1_M = 29,
  kBF16 = 30,
  kTQ1_0 = 34,
  kTQ2_0 = 35,
  kMXFP4 = 39,
  // Not ggml types: safetensors only.
  kF8_E4M3 = 100,
  kF8_E5M2 = 101,
  kU8 = 102,
  kBool = 103,
  // Not in any file: herd's in-memory layouts made at load (kernels/repack.h). Ids from 200 up; never parsed
  // from a name or read from a file.
  kQ8_0R = 200,  // Q8_0 rows regrouped for one int32 lane per block (AVX-512 VNNI and AVX2 kernels)
  kQ4_0R = 201,  // Q4_0 rows regrouped the same way (kernels/repack.h)
  kQ4_KR = 202,  // Q4_K rows regrouped for the same kernel, scales and mins unpacked to bytes
  kQ5_KR = 203,  // Q5_K the same, with the fifth bits as byte masks
  kQ6_KR = 204,  // Q6_K the same, with the high two bits as bit planes and the 16-element scales as bytes
};

struct DTypeTraits {
  std::string_view name;  // "F32", "Q4_K", ...
  int64_t block_size;     // elements per block (1 for plain types)
  int64_t type_size;      // bytes per block
};

// Traits of a known type; nullopt for an id that is not a type (e.g. a retired ggml id read from a file).
std::optional<DTypeTraits> GetDTypeTraits(uint32_t id);
// Traits of a valid DType (aborts on an invalid enum value, which only a bug can produce).
const DTypeTraits& Traits(DType t);
inline std::string_view DTypeName(DType t) { return Traits(t).name; }
// Parses "f32", "Q8_0", "bf16" (case-insensitive); never an in-memory layout (ids >= 200).
std::optional<DType> ParseDType(std::string_view name);

// Bytes of `n_elements` consecutive elements; n_elements must be a multiple of the block size.
inline int64_t RowBytes(DType t, int64_t n_elements) {
  const DTypeTraits& tr = Traits(t);
  return n_elements / tr.block_size * tr.type_size;
}

}  // namespace herd
