// A read-only memory map of a whole file. Weights are used in place from the map (no copies).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "core/status.h"

namespace herd {

class MappedFile {
 public:
  // Maps `path` read-only. IOError names the path and the OS error. An empty file maps to size 0.
  // The returned object is immutable and thread-safe; views into data() live as long as it does.
  static Result<std::shared_ptr<MappedFile>> Open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  uint64_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  MappedFile() = default;
  const uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
  std::string path_;
};

// Reads a whole (small) file into a string: config.json, index files, tokenizer files.
Result<std::string> ReadFileToString(const std::string& path, uint64_t max_bytes = uint64_t{1} << 31);

}  // namespace herd
