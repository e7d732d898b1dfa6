// Opening inputs and writing outputs (core/file.h).
#include "core/file.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

namespace herd {
namespace {

std::string Quoted(const std::string& path) { return "'" + path + "'"; }

// Reads fd to its end, at most max_bytes (one more byte is read to tell "exactly the limit" from "more").
Result<std::string> ReadBounded(int fd, const std::string& path, uint64_t max_bytes) {
  std::string out;
  char buf[1 << 16];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return IOError("cannot read " + Quoted(path) + ": " + std::strerror(errno));
    }
    if (n == 0) return out;
    if (out.size() + static_cast<uint64_t>(n) > max_bytes) {
      return OutOfRange(Quoted(path) + " holds more than the limit of " + std::to_string(max_bytes) + " bytes");
    }
    out.append(buf, static_cast<size_t>(n));
  }
}

// The directory a path lives in ("." for a bare name).
std::string ParentDir(const std::string& path) {
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  return parent.empty() ? "." : parent.string();
}

constexpr std::string_view kOutputMarker = "cannot write '";
constexpr int kFifoWaitMs = 10000;  // how long a named FIFO given as text input may stay silent at first

}  // namespace

std::string_view FileTypeName(uint32_t mode) {
  if (S_ISREG(mode)) return "a regular file";
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a regular file";
}

namespace {

// Opens `path` read-only without blocking (a FIFO nobody writes to would block the open forever) and stats it.
Result<int> OpenNonBlocking(const std::string& path, struct stat* st) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return IOError("cannot open " + Quoted(path) + ": " + std::strerror(errno));
  if (::fstat(fd, st) != 0) {
    const int e = errno;
    ::close(fd);
    return IOError("cannot stat " + Quoted(path) + ": " + std::strerror(e));
  }
  return fd;
}

// Back to blocking reads once the file is known to be one herd reads.
void ClearNonBlocking(int fd) {
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags >= 0) ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
}

}  // namespace

Result<int> OpenRegularFile(const std::string& path, uint64_t* size_bytes) {
  struct stat st {};
  HERD_ASSIGN_OR_RETURN(int fd, OpenNonBlocking(path, &st));
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return IOError("cannot read " + Quoted(path) + ": it is " + std::string(FileTypeName(st.st_mode)) +
                   ", not a regular file");
  }
  ClearNonBlocking(fd);
  if (size_bytes != nullptr) *size_bytes = static_cast<uint64_t>(st.st_size);
  return fd;
}

Result<std::string> ReadFileToString(const std::string& path, uint64_t max_bytes) {
  HERD_ASSIGN_OR_RETURN(int fd, OpenRegularFile(path));
  auto text = ReadBounded(fd, path, max_bytes);
  ::close(fd);
  return text;
}

Result<std::string> ReadTextInput(const std::string& path, uint64_t max_bytes) {
  if (path == "-") return ReadBounded(STDIN_FILENO, "standard input", max_bytes);
  struct stat st {};
  HERD_ASSIGN_OR_RETURN(int fd, OpenNonBlocking(path, &st));
  if (S_ISDIR(st.st_mode)) {
    ::close(fd);
    return IOError("cannot read " + Quoted(path) + ": it is a directory, not a text file");
  }
  if (S_ISFIFO(st.st_mode)) {
    // A named FIFO: wait a while for its writer's first bytes (or its end), then give up with a message instead
    // of hanging. A pipe given as stdin ("-") or /dev/fd/N of a running command has its writer already.
    struct pollfd p {
      fd, POLLIN, 0
    };
    const int ready = ::poll(&p, 1, kFifoWaitMs);
    if (ready <= 0) {
      ::close(fd);
      return IOError("cannot read " + Quoted(path) + ": it is a FIFO and nothing was written to it within " +
                     std::to_string(kFifoWaitMs / 1000) + " s");
    }
  }
  ClearNonBlocking(fd);
  auto text = ReadBounded(fd, path, max_bytes);
  ::close(fd);
  return text;
}

Status CheckOutputPath(const std::string& path, const std::vector<std::string>& inputs) {
  if (path.empty()) return InvalidArgument("no output file given");
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) {
    if (!S_ISREG(st.st_mode)) {
      return InvalidArgument("output " + Quoted(path) + " is " + std::string(FileTypeName(st.st_mode)) +
                             "; herd writes regular files only (and never replaces anything else)");
    }
    for (const std::string& in : inputs) {
      struct stat is {};
      if (::stat(in.c_str(), &is) == 0 && is.st_dev == st.st_dev && is.st_ino == st.st_ino) {
        return InvalidArgument("output " + Quoted(path) + " is the input " + Quoted(in) + "; write to another file");
      }
    }
  } else if (errno != ENOENT) {
    return InvalidArgument("output " + Quoted(path) + ": " + std::strerror(errno));
  }
  const std::string dir = ParentDir(path);
  struct stat ds {};
  if (::stat(dir.c_str(), &ds) != 0) {
    return InvalidArgument("output " + Quoted(path) + ": its directory " + Quoted(dir) + " does not exist");
  }
  if (!S_ISDIR(ds.st_mode))
    return InvalidArgument("output " + Quoted(path) + ": " + Quoted(dir) + " is not a directory");
  if (::access(dir.c_str(), W_OK | X_OK) != 0) {
    return InvalidArgument("output " + Quoted(path) + ": cannot create files in " + Quoted(dir) + ": " +
                           std::strerror(errno));
  }
  return Status::Ok();
}

Status OutputError(const std::string& path, std::string_view reason) {
  return IOError(std::string(kOutputMarker) + path + "': " + std::string(reason));
}

bool IsOutputError(const Status& s) {
  return s.code() == StatusCode::kIOError && s.message().find(kOutputMarker) != std::string::npos;
}

Result<std::unique_ptr<AtomicFile>> AtomicFile::Create(const std::string& path,
                                                       const std::vector<std::string>& inputs) {
  HERD_RETURN_IF_ERROR(CheckOutputPath(path, inputs));
  std::unique_ptr<AtomicFile> f(new AtomicFile());
  f->path_ = path;
  // A new file (O_EXCL through mkstemp) in the target's directory, so the rename stays on one file system.
  std::string tmpl = path + ".tmp.XXXXXX";
  const int fd = ::mkstemp(tmpl.data());
  if (fd < 0)
    return OutputError(path, std::string("cannot create a temporary file beside it: ") + std::strerror(errno));
  f->tmp_ = tmpl;
  ::fchmod(fd, 0644);
  f->file_ = ::fdopen(fd, "wb");
  if (f->file_ == nullptr) {
    const int e = errno;
    ::close(fd);
    return OutputError(path, std::strerror(e));
  }
  return f;
}

AtomicFile::~AtomicFile() {
  if (file_ != nullptr) std::fclose(file_);
  if (!committed_ && !tmp_.empty()) ::unlink(tmp_.c_str());
}

Status AtomicFile::Write(const void* data, size_t size) {
  if (file_ == nullptr) return OutputError(path_, "the file is already closed");
  if (size > 0 && std::fwrite(data, 1, size, file_) != size) return OutputError(path_, std::strerror(errno));
  return Status::Ok();
}

Status AtomicFile::Commit() {
  if (file_ == nullptr) return OutputError(path_, "the file is already closed");
  std::FILE* f = file_;
  file_ = nullptr;
  const bool flushed = std::fflush(f) == 0 && ::fsync(::fileno(f)) == 0;
  const int e = errno;
  if (std::fclose(f) != 0 || !flushed) return OutputError(path_, std::strerror(flushed ? errno : e));
  if (std::rename(tmp_.c_str(), path_.c_str()) != 0) return OutputError(path_, std::strerror(errno));
  committed_ = true;
  return Status::Ok();
}

}  // namespace herd
