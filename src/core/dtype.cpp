// ggml type table (llama4.md section 5.3).
#include "core/dtype.h"

#include <array>
#include <cctype>
#include <iterator>
#include <string>

#include "core/status.h"

namespace herd {
namespace {

struct Entry {
  uint32_t id;
  DTypeTraits traits;
};

constexpr Entry kTable[] = {
    {0, {"F32", 1, 4}},         {1, {"F16", 1, 2}},         {2, {"Q4_0", 32, 18}},      {3, {"Q4_1", 32, 20}},
    {6, {"Q5_0", 32, 22}},      {7, {"Q5_1", 32, 24}},      {8, {"Q8_0", 32, 34}},      {9, {"Q8_1", 32, 36}},
    {10, {"Q2_K", 256, 84}},    {11, {"Q3_K", 256, 110}},   {12, {"Q4_K", 256, 144}},   {13, {"Q5_K", 256, 176}},
    {14, {"Q6_K", 256, 210}},   {15, {"Q8_K", 256, 292}},   {16, {"IQ2_XXS", 256, 66}}, {17, {"IQ2_XS", 256, 74}},
    {18, {"IQ3_XXS", 256, 98}}, {19, {"IQ1_S", 256, 50}},   {20, {"IQ4_NL", 32, 18}},   {21, {"IQ3_S", 256, 110}},
    {22, {"IQ2_S", 256, 82}},   {23, {"IQ4_XS", 256, 136}}, {24, {"I8", 1, 1}},         {25, {"I16", 1, 2}},
    {26, {"I32", 1, 4}},        {27, {"I64", 1, 8}},        {28, {"F64", 1, 8}},        {29, {"IQ1_M", 256, 56}},
    {30, {"BF16", 1, 2}},       {34, {"TQ1_0", 256, 54}},   {35, {"TQ2_0", 256, 66}},   {39, {"MXFP4", 32, 17}},
    {100, {"F8_E4M3", 1, 1}},   {101, {"F8_E5M2", 1, 1}},   {102, {"U8", 1, 1}},        {103, {"BOOL", 1, 1}},
    {200, {"Q8_0R", 32, 34}},   {201, {"Q4_0R", 32, 18}},   {202, {"Q4_KR", 512, 296}}, {203, {"Q5_KR", 512, 360}},
    {204, {"Q6_KR", 512, 420}},
};

}  // namespace

std::optional<DTypeTraits> GetDTypeTraits(uint32_t id) {
  for (const Entry& e : kTable) {
    if (e.id == id) return e.traits;
  }
  return std::nullopt;
}

const DTypeTraits& Traits(DType t) {
  // Index of each id's entry (-1: none), built once: RowBytes calls this on the kernels' paths.
  static const std::array<int16_t, 256> kIndex = [] {
    std::array<int16_t, 256> index;
    index.fill(-1);
    for (size_t i = 0; i < std::size(kTable); ++i) index[kTable[i].id] = static_cast<int16_t>(i);
    return index;
  }();
  const uint32_t id = static_cast<uint32_t>(t);
  HERD_CHECK(id < kIndex.size() && kIndex[id] >= 0 && "invalid DType");
  return kTable[kIndex[id]].traits;
}

std::optional<DType> ParseDType(std::string_view name) {
  std::string upper;
  for (char c : name) upper.push_back(static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
  for (const Entry& e : kTable) {
    if (e.id < 200 && e.traits.name == upper) return static_cast<DType>(e.id);
  }
  return std::nullopt;
}

}  // namespace herd
