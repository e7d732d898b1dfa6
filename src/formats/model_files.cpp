#include "formats/model_files.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "formats/gguf_metadata.h"
#include "formats/hf_config.h"
#include "formats/hf_names.h"
#include "formats/llama2c.h"
#include "formats/safetensors.h"

namespace herd::formats {
namespace fs = std::filesystem;

namespace {

Result<ModelFiles> OpenHfDir(const std::string& dir, const OpenOptions& options) {
  ModelFiles m;
  m.format = ModelFormat::kSafetensorsDir;
  m.path = dir;
  std::string cfg_path;
  HERD_ASSIGN_OR_RETURN(const nlohmann::json config, ReadHfConfigJson(dir, &cfg_path));
  if (config.is_discarded() || !config.is_object()) return Corruption(cfg_path + ": not a valid JSON object");
  HERD_ASSIGN_OR_RETURN(m.metadata, MetadataFromHfConfig(config, cfg_path));
  const TensorRenamer rename =
      *m.metadata.String("model_type").value() == "llama" ? HfLlamaToCanonical : HfLlama4ToCanonical;
  HERD_ASSIGN_OR_RETURN(m.weights, LoadSafetensorsDir(dir, rename, options.show_progress));
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (e.path().extension() == ".safetensors") m.file_bytes += static_cast<int64_t>(e.file_size(ec));
    if (e.path().extension() != ".gguf") m.sources.push_back(e.path().string());
  }
  return m;
}

// "name-00001-of-00003.gguf" -> the paths of all parts, or just `path` when it is not a split file.
Result<std::vector<std::string>> SplitParts(const GgufFile& first, const std::string& path) {
  HERD_ASSIGN_OR_RETURN(std::optional<int64_t> count, first.GetIntOpt("split.count"));
  if (!count || *count <= 1) return std::vector<std::string>{path};
  HERD_ASSIGN_OR_RETURN(std::optional<int64_t> no, first.GetIntOpt("split.no"));
  if (no && *no != 0) return InvalidArgument(path + ": open the first part of a split GGUF (split.no is " +
                                             std::to_string(*no) + ")");
  if (*count > 9999) return Corruption(path + ": split.count " + std::to_string(*count) + " is implausible");
  const std::string suffix = "-00001-of-" + [&] {
    char b[16];
    std::snprintf(b, sizeof b, "%05d", static_cast<int>(*count));
    return std::string(b);
  }() + ".gguf";
  if (path.size() < suffix.size() || path.compare(path.size() - suffix.size(), suffix.size(), suffix) != 0) {
    return InvalidArgument(path + ": split GGUF (split.count " + std::to_string(*count) +
                           ") must be named PREFIX" + suffix);
  }
  const std::string prefix = path.substr(0, path.size() - suffix.size());
  std::vector<std::string> parts;
  for (int64_t k = 1; k <= *count; ++k) {
    char b[40];
    std::snprintf(b, sizeof b, "-%05d-of-%05d.gguf", static_cast<int>(k), static_cast<int>(*count));
    parts.push_back(prefix + b);
  }
  return parts;
}

Result<ModelFiles> OpenGguf(const std::string& path) {
  ModelFiles m;
  m.format = ModelFormat::kGguf;
  m.path = path;
  HERD_ASSIGN_OR_RETURN(m.gguf, GgufFile::Open(path));
  HERD_ASSIGN_OR_RETURN(m.metadata, MetadataFromGguf(*m.gguf));
  HERD_ASSIGN_OR_RETURN(std::vector<std::string> parts, SplitParts(*m.gguf, path));
  for (size_t k = 0; k < parts.size(); ++k) {
    std::shared_ptr<const GgufFile> f = m.gguf;
    if (k > 0) {
      HERD_ASSIGN_OR_RETURN(f, GgufFile::Open(parts[k]));
    }
    HERD_ASSIGN_OR_RETURN(WeightMap w, f->Weights());
    HERD_RETURN_IF_ERROR(m.weights.Merge(std::move(w)));
    m.sources.push_back(parts[k]);
    std::error_code ec;
    m.file_bytes += static_cast<int64_t>(fs::file_size(parts[k], ec));
  }
  return m;
}

}  // namespace

Result<ModelFiles> OpenModelFiles(const std::string& path, const OpenOptions& options) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return IOError("cannot open '" + path + "': " + std::strerror(errno));
  if (S_ISDIR(st.st_mode)) return OpenHfDir(path, options);
  HERD_ASSIGN_OR_RETURN(std::shared_ptr<MappedFile> map, MappedFile::Open(path));
  if (map->size() >= 4 && std::memcmp(map->data(), "GGUF", 4) == 0) return OpenGguf(path);
  if (path.ends_with(".safetensors")) {
    return InvalidArgument(path + ": a safetensors file alone has no config; pass its directory (with config.json)");
  }
  ModelFiles m;
  m.format = ModelFormat::kLlama2c;
  m.path = path;
  auto l2c = OpenLlama2c(path);
  if (!l2c.ok()) {
    return l2c.status().WithContext("not a GGUF file or HF directory, and not a valid llama2.c checkpoint");
  }
  m.metadata = MetadataFromLlama2c(l2c->header, path);
  m.sources.push_back(path);
  m.weights = std::move(l2c->weights);
  m.file_bytes = static_cast<int64_t>(map->size());
  return m;
}

}  // namespace herd::formats
