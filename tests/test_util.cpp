// Test helpers.
#include "test_util.h"

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

namespace herd::testing {
namespace {
[[noreturn]] void Die(const std::string& msg) {
  std::fprintf(stderr, "FATAL (test setup): %s\n", msg.c_str());
  std::abort();
}
}  // namespace

std::string ScratchDir(const std::string& name) {
  // The directories of this process; the static's destructor removes them at exit.
  struct Dirs {
    std::vector<std::string> list;
    ~Dirs() {
      std::error_code ec;
      for (const std::string& d : list) std::filesystem::remove_all(d, ec);
    }
  };
  static Dirs dirs;
  dirs.list.push_back(TempDir(name));
  return dirs.list.back();
}

std::string ShellQuote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

CommandOutcome RunCommand(const std::vector<std::string>& argv, const std::string& stdin_path,
                          const std::string& stdout_path) {
  static int counter = 0;
  const std::string dir = TempDir("run-" + std::to_string(counter++));
  std::string cmd;
  for (const auto& a : argv) cmd.append(cmd.empty() ? "" : " ").append(ShellQuote(a));
  const std::string out = stdout_path.empty() ? dir + "/out" : stdout_path;
  cmd.append(out == "-" ? " >&-" : " >" + ShellQuote(out));
  cmd.append(" 2>" + dir + "/err <" + ShellQuote(stdin_path));
  const int status = std::system(cmd.c_str());
  CommandOutcome o;
  if (WIFEXITED(status)) {
    o.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    o.signal = WTERMSIG(status);
  }
  if (stdout_path.empty()) o.out = ReadText(dir + "/out");
  o.err = ReadText(dir + "/err");
  return o;
}

const std::string& SharedDir() {
  static const std::string dir = [] {
    const char* env = std::getenv("HERD_SHARED");
    std::string d = (env != nullptr && env[0] != '\0') ? env : HERD_DEFAULT_SHARED;
    std::error_code ec;
    if (!std::filesystem::is_directory(std::filesystem::path(d) / "models", ec)) {
      Die("shared test data not found at '" + d +
          "' (expected ../shared beside the checkout or $HERD_SHARED); golden tests refuse to skip");
    }
    return std::filesystem::absolute(d).string();
  }();
  return dir;
}

std::string ModelParamName(const std::string& rel) {
  if (rel.find("interleaved") != std::string::npos) return "interleaved";
  if (rel.find("allmoe") != std::string::npos) return "allmoe";
  std::string stem = rel.substr(rel.find_last_of('/') + 1);
  stem = stem.substr(0, stem.find('.'));
  std::string name;
  for (char ch : stem) {
    if (std::isalnum(static_cast<unsigned char>(ch)) || ch == '_') name += ch;
  }
  return name;
}

std::string SharedPath(const std::string& rel) { return SharedDir() + "/" + rel; }

std::string TempDir(const std::string& name) {
  // ctest runs every test case as its own process, several at once: the pid keeps their directories apart.
  std::filesystem::path p =
      std::filesystem::path(HERD_BINARY_DIR) / "test-tmp" / (name + "." + std::to_string(getpid()));
  std::filesystem::remove_all(p);
  std::filesystem::create_directories(p);
  return p.string();
}

int64_t NpyArray::size() const {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

std::string ReadText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) Die("cannot open " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteBytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) Die("cannot write " + path);
}

nlohmann::json ReadJson(const std::string& path) {
  try {
    return nlohmann::json::parse(ReadText(path));
  } catch (const std::exception& e) {
    Die("bad JSON in " + path + ": " + e.what());
  }
}

NpyArray ReadNpy(const std::string& path) {
  std::string raw = ReadText(path);
  if (raw.size() < 10 || std::memcmp(raw.data(), "\x93NUMPY", 6) != 0) Die(path + ": not a .npy file");
  const uint8_t major = static_cast<uint8_t>(raw[6]);
  size_t header_len, offset;
  if (major == 1) {
    header_len = static_cast<uint8_t>(raw[8]) | (static_cast<size_t>(static_cast<uint8_t>(raw[9])) << 8);
    offset = 10;
  } else {
    uint32_t hl;
    std::memcpy(&hl, raw.data() + 8, 4);
    header_len = hl;
    offset = 12;
  }
  std::string header = raw.substr(offset, header_len);
  NpyArray a;
  auto descr_pos = header.find("'descr':");
  auto q1 = header.find('\'', descr_pos + 8);
  auto q2 = header.find('\'', q1 + 1);
  a.dtype = header.substr(q1 + 1, q2 - q1 - 1);
  if (header.find("'fortran_order': False") == std::string::npos) Die(path + ": fortran order not supported");
  auto sp = header.find("'shape':");
  auto p1 = header.find('(', sp), p2 = header.find(')', sp);
  std::string shape = header.substr(p1 + 1, p2 - p1 - 1);
  std::stringstream ss(shape);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.find_first_not_of(' ') == std::string::npos) continue;
    a.shape.push_back(std::stoll(item));
  }
  const char* data = raw.data() + offset + header_len;
  const int64_t n = a.size();
  if (a.dtype == "<f4") {
    if (raw.size() < offset + header_len + n * 4) Die(path + ": truncated");
    a.f32.resize(n);
    std::memcpy(a.f32.data(), data, n * 4);
  } else if (a.dtype == "<i4") {
    if (raw.size() < offset + header_len + n * 4) Die(path + ": truncated");
    a.i32.resize(n);
    std::memcpy(a.i32.data(), data, n * 4);
  } else if (a.dtype == "<i8") {
    if (raw.size() < offset + header_len + n * 8) Die(path + ": truncated");
    a.i32.resize(n);
    for (int64_t i = 0; i < n; ++i) {
      int64_t v;
      std::memcpy(&v, data + i * 8, 8);
      a.i32[i] = static_cast<int32_t>(v);
    }
  } else {
    Die(path + ": unsupported dtype " + a.dtype);
  }
  return a;
}

}  // namespace herd::testing
