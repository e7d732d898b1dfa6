// Helpers shared by tests: locating ../shared (never skipping when it is missing), reading NumPy .npy
// fixtures and JSON files.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

// Defined in builds under AddressSanitizer (the asan preset), where tests that sweep large spaces take a subset (the
// Release run covers all of it).
#if defined(__SANITIZE_ADDRESS__)
#define HERD_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HERD_SANITIZED 1
#endif
#endif

namespace herd::testing {

#ifdef HERD_SANITIZED
inline constexpr bool kSanitized = true;
#else
inline constexpr bool kSanitized = false;
#endif

// Absolute path of the shared folder: $HERD_SHARED, else ../shared beside the source tree. Aborts the test
// program with a loud message when it does not exist: golden tests must fail, not skip, without it.
const std::string& SharedDir();
// SharedDir() + "/" + rel.
std::string SharedPath(const std::string& rel);
// A test-parameter name for a shared model path: "interleaved", "allmoe" (the Llama 4 tiny fixtures), else the file's
// stem with its characters outside [A-Za-z0-9_] dropped ("stories260K").
std::string ModelParamName(const std::string& rel);
// A fresh empty directory under the build tree for test outputs.
std::string TempDir(const std::string& name);
// As TempDir, removed when the test program exits (for large outputs such as converted models).
std::string ScratchDir(const std::string& name);

struct NpyArray {
  std::vector<int64_t> shape;
  std::string dtype;         // "<f4" or "<i4"
  std::vector<float> f32;    // filled for <f4
  std::vector<int32_t> i32;  // filled for <i4
  int64_t size() const;
};
// Reads a little-endian C-order .npy (format 1.0) of f4 or i4. Aborts the test on any problem.
NpyArray ReadNpy(const std::string& path);

// What a command did: its exit code (-1 when a signal ended it), the signal, and what it wrote.
struct CommandOutcome {
  int exit_code = -1;
  int signal = 0;
  std::string out, err;
};
// Runs `argv` (argv[0] the program) through the shell, with stdin from `stdin_path` and stdout to `stdout_path`
// (empty: captured into out) or "-" for closed (>&-); stderr is captured into err.
CommandOutcome RunCommand(const std::vector<std::string>& argv, const std::string& stdin_path = "/dev/null",
                          const std::string& stdout_path = "");
// A shell word for `s`.
std::string ShellQuote(const std::string& s);

nlohmann::json ReadJson(const std::string& path);
std::string ReadText(const std::string& path);
void WriteBytes(const std::string& path, const std::string& bytes);

}  // namespace herd::testing
