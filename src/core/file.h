// Files from the outside world, opened one way everywhere (style.md 5: validate at the boundary):
//   - inputs that must be files (models, tokenizers, configs, saves) are regular files, checked before anything
//     is read, so that a FIFO cannot block herd forever and /dev/zero cannot pass for an empty model;
//   - text inputs (-f) may also be pipes, devices or "-" (stdin), and every read is bounded by the bytes really
//     read, not by what stat says (0 for a device);
//   - outputs are written to a fresh temporary file beside the target and renamed over it only when complete, so a
//     failure never leaves a half-written file nor replaces a device, a FIFO or one of the inputs.
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace herd {

// Opens `path` read-only after checking that it is a regular file (a FIFO is opened without blocking and then
// refused). Returns the file descriptor (the caller closes it) and, when size_bytes is given, the file's size.
// IOError naming the path and the OS error (no such file, permission, a symlink loop) or what it is instead
// ("a directory", "a FIFO", "a character device").
Result<int> OpenRegularFile(const std::string& path, uint64_t* size_bytes = nullptr);

// The whole of a small regular file (config.json, an index, a tokenizer), at most `max_bytes`: OutOfRange naming
// the limit when it holds more. Errors as OpenRegularFile.
Result<std::string> ReadFileToString(const std::string& path, uint64_t max_bytes = uint64_t{1} << 31);

// A text input: a regular file, a pipe, a FIFO, a character device, or "-" for standard input, read to its end
// but never more than `max_bytes` (OutOfRange naming the limit; a directory and read errors are IOError). A named
// FIFO whose writer sends nothing for 10 s is an IOError rather than a wait without end.
Result<std::string> ReadTextInput(const std::string& path, uint64_t max_bytes);

// "a directory", "a FIFO", "a character device", "a block device", "a socket", "a regular file".
std::string_view FileTypeName(uint32_t st_mode);

// Checks an output path before the work that fills it starts: its directory must exist and be writable, and an
// existing target must be a regular file that is none of `inputs` (same device and inode: hard links and other
// spellings of the same file count). InvalidArgument naming the problem.
Status CheckOutputPath(const std::string& path, const std::vector<std::string>& inputs = {});

// An IOError about writing an output: "cannot write 'PATH': REASON" (AtomicFile's errors, whatever context is
// added around them). IsOutputError tells them from errors of reading inputs, for the CLI's exit codes.
Status OutputError(const std::string& path, std::string_view reason);
bool IsOutputError(const Status& s);

// An output file that appears complete or not at all. Create() checks the target (CheckOutputPath) and creates a
// new temporary file beside it (never an existing one); Write() appends; Commit() flushes, syncs and renames the
// temporary file over the target. If Commit() is not reached or fails, the destructor removes the temporary file
// and the target is untouched. Not thread-safe.
class AtomicFile {
 public:
  static Result<std::unique_ptr<AtomicFile>> Create(const std::string& path,
                                                    const std::vector<std::string>& inputs = {});
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  // IOError (IsOutputError) naming the target and the OS error (a full disk, a quota).
  Status Write(const void* data, size_t size);
  Status Write(std::string_view s) { return Write(s.data(), s.size()); }
  Status Commit();
  const std::string& path() const { return path_; }

 private:
  AtomicFile() = default;
  std::string path_, tmp_;
  std::FILE* file_ = nullptr;
  bool committed_ = false;
};

}  // namespace herd
