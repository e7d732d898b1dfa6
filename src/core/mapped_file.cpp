// POSIX mmap of weight files.
#include "core/mapped_file.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "core/file.h"

namespace herd {

Result<std::shared_ptr<MappedFile>> MappedFile::Open(const std::string& path) {
  uint64_t size = 0;
  HERD_ASSIGN_OR_RETURN(int fd, OpenRegularFile(path, &size));
  std::shared_ptr<MappedFile> f(new MappedFile());
  f->path_ = path;
  f->size_ = size;
  if (f->size_ > 0) {
    void* p = ::mmap(nullptr, f->size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      int e = errno;
      ::close(fd);
      return IOError("cannot map '" + path + "': " + std::strerror(e));
    }
    f->data_ = static_cast<const uint8_t*>(p);
  }
  ::close(fd);
  return f;
}

MappedFile::~MappedFile() {
  if (data_ != nullptr) ::munmap(const_cast<uint8_t*>(data_), size_);
}

std::string MemorySizeText(int64_t bytes) {
  constexpr int64_t kGiB = int64_t{1} << 30;
  char buf[32];
  if (bytes < kGiB) {
    std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(bytes) / (1 << 20));
  } else {
    std::snprintf(buf, sizeof buf, "%.1f GiB", static_cast<double>(bytes) / static_cast<double>(kGiB));
  }
  return buf;
}

std::optional<int64_t> AvailableMemoryBytes() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  int64_t value = 0;
  std::string unit;
  while (in >> key >> value) {
    std::getline(in, unit);
    if (key == "MemAvailable:") return value * 1024;  // reported in kB
  }
  return std::nullopt;
}

Result<std::unique_ptr<AnonymousMemory>> AnonymousMemory::Allocate(uint64_t bytes) {
  constexpr uint64_t kHuge = uint64_t{2} << 20;
  std::unique_ptr<AnonymousMemory> m(new AnonymousMemory());
  if (bytes == 0) return m;
  const uint64_t want = (bytes + kHuge - 1) / kHuge * kHuge;
  if (want < bytes || want > UINT64_MAX - kHuge) {
    return ResourceExhausted("cannot allocate " + std::to_string(bytes) + " bytes");
  }
  // The map itself would succeed (overcommit) and the process be killed when the pages are touched: say so now.
  if (auto avail = AvailableMemoryBytes(); avail && bytes > static_cast<uint64_t>(*avail)) {
    return ResourceExhausted("needs " + std::to_string(bytes >> 20) + " MiB but only " + std::to_string(*avail >> 20) +
                             " MiB of memory is available (MemAvailable)");
  }
  m->map_size_ = want + kHuge;  // room to start on a 2 MiB boundary
  void* p = ::mmap(nullptr, m->map_size_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    const int err = errno;
    return ResourceExhausted("cannot allocate " + std::to_string(bytes >> 20) + " MiB: " + std::strerror(err));
  }
  m->map_ = static_cast<uint8_t*>(p);
  const uintptr_t at = (reinterpret_cast<uintptr_t>(p) + kHuge - 1) / kHuge * kHuge;
  m->data_ = reinterpret_cast<uint8_t*>(at);
  m->size_ = bytes;
#ifdef MADV_HUGEPAGE
  ::madvise(m->data_, want, MADV_HUGEPAGE);  // advice only: without huge pages the memory works the same
#endif
  return m;
}

void AnonymousMemory::Populate() {
  if (size_ == 0) return;
#ifdef MADV_POPULATE_WRITE
  if (::madvise(data_, size_, MADV_POPULATE_WRITE) == 0) return;
#endif
  constexpr uint64_t kPage = 4096;
  volatile uint8_t* p = data_;
  for (uint64_t i = 0; i < size_; i += kPage) p[i] = 0;  // zero already: only the fault matters
}

AnonymousMemory::~AnonymousMemory() {
  if (map_ != nullptr) ::munmap(map_, map_size_);
}

}  // namespace herd
