// One rule for the tensors of a file: no two may share a byte (GGUF and safetensors headers both place tensors by
// offset; an overlap is a corrupt or malicious header that would otherwise load and compute wrong outputs).
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

namespace herd::formats {

// ranges[i] = [begin, end) in bytes. The indices of two overlapping ranges, or nullopt. Empty ranges occupy
// nothing. Sorting by begin, an overlap anywhere implies one between neighbours among the non-empty ranges.
inline std::optional<std::pair<size_t, size_t>> FindOverlap(const std::vector<std::pair<uint64_t, uint64_t>>& ranges) {
  std::vector<size_t> order;
  for (size_t i = 0; i < ranges.size(); ++i) {
    if (ranges[i].second > ranges[i].first) order.push_back(i);
  }
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return ranges[a].first < ranges[b].first; });
  for (size_t k = 1; k < order.size(); ++k) {
    if (ranges[order[k - 1]].second > ranges[order[k]].first) return std::make_pair(order[k - 1], order[k]);
  }
  return std::nullopt;
}

}  // namespace herd::formats
