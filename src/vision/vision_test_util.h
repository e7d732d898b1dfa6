// Test helpers of src/vision: Pillow 9.4 (Debian's python3-pil, the fixture's version) as the oracle that
// decodes and resizes the same files, run through python3. A machine without it fails these tests, naming
// scripts/install-deps.sh; they never skip.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "test_util.h"

namespace herd::vision::testing {

// The first of /usr/bin/python3 (where python3-pil installs) and the python3 on PATH that imports PIL, or "" when
// none does (the caller fails with OracleMissingMessage()).
inline const std::string& PillowPython() {
  static const std::string python = [] {
    for (const char* candidate : {"/usr/bin/python3", "python3"}) {
      const auto o = herd::testing::RunCommand({candidate, "-c", "import PIL; print(PIL.__version__)"});
      if (o.exit_code == 0) return std::string(candidate);
    }
    return std::string();
  }();
  return python;
}

inline std::string OracleMissingMessage() {
  return "the test oracle is missing: no python3 with Pillow (Debian's python3-pil) was found; run "
         "scripts/install-deps.sh";
}

// Runs `script` (Python source) with `args` under PillowPython(); returns its stdout, failing the test (and
// returning "") when the oracle is missing or the script fails.
inline std::string RunPillow(const std::string& script, const std::vector<std::string>& args) {
  if (PillowPython().empty()) {
    ADD_FAILURE() << OracleMissingMessage();
    return "";
  }
  std::vector<std::string> argv{PillowPython(), "-c", script};
  argv.insert(argv.end(), args.begin(), args.end());
  const auto o = herd::testing::RunCommand(argv);
  if (o.exit_code != 0) {
    ADD_FAILURE() << "the Pillow oracle failed (exit " << o.exit_code << ", signal " << o.signal << "): " << o.err;
    return "";
  }
  return o.out;
}

// Index and count of the bytes where a and b differ, for messages.
struct ByteDiff {
  int64_t n_diff = 0;
  int64_t first_idx = -1;
  int max_abs = 0;
};
inline ByteDiff CompareBytes(const std::vector<uint8_t>& a, const std::string& b) {
  ByteDiff d;
  const size_t n = std::min(a.size(), b.size());
  for (size_t i = 0; i < n; ++i) {
    const int diff = std::abs(int{a[i]} - int{static_cast<uint8_t>(b[i])});
    if (diff == 0) continue;
    if (d.first_idx < 0) d.first_idx = static_cast<int64_t>(i);
    ++d.n_diff;
    d.max_abs = std::max(d.max_abs, diff);
  }
  return d;
}

}  // namespace herd::vision::testing
