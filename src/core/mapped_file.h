// A read-only memory map of a whole file. Weights are used in place from the map (no copies).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "core/status.h"

namespace herd {

class MappedFile {
 public:
  // Maps `path` read-only; it must be a regular file (core/file.h OpenRegularFile, whose errors it returns). An
  // empty file maps to size 0.
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

// Bytes of memory the kernel reports as available (MemAvailable of /proc/meminfo); nullopt when unknown.
std::optional<int64_t> AvailableMemoryBytes();
// A size for messages: "512.0 MiB" below 1 GiB, "3.5 GiB" from there on.
std::string MemorySizeText(int64_t bytes);

// Zeroed anonymous memory for large weight copies (repacking at load): 2 MiB-aligned and, where the OS offers
// it (Linux madvise MADV_HUGEPAGE), backed by huge pages, so that touching it costs one fault per 2 MiB and
// streaming it one TLB entry per 2 MiB. ResourceExhausted naming the size when it exceeds AvailableMemoryBytes()
// or the OS refuses.
class AnonymousMemory {
 public:
  static Result<std::unique_ptr<AnonymousMemory>> Allocate(uint64_t bytes);
  ~AnonymousMemory();
  AnonymousMemory(const AnonymousMemory&) = delete;
  AnonymousMemory& operator=(const AnonymousMemory&) = delete;

  uint8_t* data() const { return data_; }
  uint64_t size() const { return size_; }
  // Faults every page in now, writable (Linux MADV_POPULATE_WRITE; elsewhere, or where the kernel lacks it, a write
  // to each 4 KiB page), so that no later first write stops for the OS to find and zero a page. For memory written a
  // little at a time on a latency path (the KV cache: a decoded token's rows would otherwise meet a fresh 2 MiB huge
  // page now and then, 0.3-2.5 ms of kernel zeroing inside one step on the test VM).
  void Populate();

 private:
  AnonymousMemory() = default;
  uint8_t* map_ = nullptr;  // the whole mapping (data_ rounded down to it)
  uint64_t map_size_ = 0;
  uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
};

}  // namespace herd
