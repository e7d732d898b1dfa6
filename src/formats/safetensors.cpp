#include "formats/safetensors.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "core/file.h"
#include "core/json.h"
#include "formats/byte_ranges.h"

namespace herd::formats {
namespace fs = std::filesystem;

namespace {
constexpr uint64_t kMaxHeaderBytes = uint64_t{256} << 20;  // real headers are a few MB at most
}

std::optional<DType> SafetensorsDType(std::string_view s) {
  if (s == "F32") return DType::kF32;
  if (s == "F16") return DType::kF16;
  if (s == "BF16") return DType::kBF16;
  if (s == "F64") return DType::kF64;
  if (s == "I8") return DType::kI8;
  if (s == "I16") return DType::kI16;
  if (s == "I32") return DType::kI32;
  if (s == "I64") return DType::kI64;
  if (s == "U8") return DType::kU8;
  if (s == "BOOL") return DType::kBool;
  if (s == "F8_E4M3") return DType::kF8_E4M3;
  if (s == "F8_E5M2") return DType::kF8_E5M2;
  return std::nullopt;
}

std::string_view SafetensorsDTypeName(DType t) {
  switch (t) {
    case DType::kF32: return "F32";
    case DType::kF16: return "F16";
    case DType::kBF16: return "BF16";
    case DType::kF64: return "F64";
    case DType::kI8: return "I8";
    case DType::kI16: return "I16";
    case DType::kI32: return "I32";
    case DType::kI64: return "I64";
    case DType::kU8: return "U8";
    case DType::kBool: return "BOOL";
    case DType::kF8_E4M3: return "F8_E4M3";
    case DType::kF8_E5M2: return "F8_E5M2";
    default: return "";
  }
}

Result<std::shared_ptr<const SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  HERD_ASSIGN_OR_RETURN(std::shared_ptr<MappedFile> map, MappedFile::Open(path));
  std::shared_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->map_ = map;
  f->path_ = path;
  HERD_RETURN_IF_ERROR(f->ParseAll(map->data(), map->size()));
  return std::shared_ptr<const SafetensorsFile>(std::move(f));
}

Result<std::shared_ptr<const SafetensorsFile>> SafetensorsFile::Parse(const uint8_t* data, uint64_t size,
                                                                      std::string name) {
  std::shared_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = std::move(name);
  HERD_RETURN_IF_ERROR(f->ParseAll(data, size));
  return std::shared_ptr<const SafetensorsFile>(std::move(f));
}

Status SafetensorsFile::ParseAll(const uint8_t* data, uint64_t size) {
  if (size < 8) return Corruption(path_ + ": file of " + std::to_string(size) + " bytes is too short for safetensors");
  uint64_t n = 0;
  std::memcpy(&n, data, 8);
  if (n > kMaxHeaderBytes || n > size - 8) {
    return Corruption(path_ + ": header length " + std::to_string(n) + " exceeds the file size " +
                      std::to_string(size) + " (truncated or not a safetensors file)");
  }
  const char* h = reinterpret_cast<const char*>(data + 8);
  bool too_deep = false;
  nlohmann::json j = ParseJsonBounded(std::string_view(h, n), kMaxJsonNesting, &too_deep);
  if (too_deep) return Corruption(path_ + ": header nests deeper than " + std::to_string(kMaxJsonNesting) + " levels");
  if (j.is_discarded()) return Corruption(path_ + ": header is not valid JSON");
  if (!j.is_object()) return Corruption(path_ + ": header is not a JSON object");
  data_ = data + 8 + n;
  data_size_ = size - 8 - n;

  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& name = it.key();
    const nlohmann::json& e = it.value();
    if (name == "__metadata__") {
      if (!e.is_object()) return Corruption(path_ + ": __metadata__ is not an object");
      for (auto m = e.begin(); m != e.end(); ++m) {
        if (!m.value().is_string()) return Corruption(path_ + ": __metadata__ value '" + m.key() + "' is not a string");
        metadata_.emplace_back(m.key(), m.value().get<std::string>());
      }
      continue;
    }
    const std::string where = path_ + ": tensor '" + name + "'";
    if (!e.is_object()) return Corruption(where + ": entry is not an object");
    auto dt = e.find("dtype");
    auto sh = e.find("shape");
    auto off = e.find("data_offsets");
    if (dt == e.end() || !dt->is_string()) return Corruption(where + ": missing string 'dtype'");
    if (sh == e.end() || !sh->is_array()) return Corruption(where + ": missing array 'shape'");
    if (off == e.end() || !off->is_array() || off->size() != 2) {
      return Corruption(where + ": 'data_offsets' must be [begin, end]");
    }
    SafetensorsTensor t;
    t.name = name;
    const std::string dts = dt->get<std::string>();
    auto dtype = SafetensorsDType(dts);
    if (!dtype) return NotSupported(where + ": dtype '" + dts + "' is not supported");
    t.dtype = *dtype;
    if (sh->size() > static_cast<size_t>(kMaxDims)) {
      return NotSupported(where + ": " + std::to_string(sh->size()) + " dimensions (max " +
                          std::to_string(kMaxDims) + ")");
    }
    uint64_t elems = 1;
    for (const auto& d : *sh) {
      if (!d.is_number_unsigned()) return Corruption(where + ": shape entries must be non-negative integers");
      uint64_t x = d.get<uint64_t>();
      if (x > (uint64_t{1} << 40) || (x != 0 && elems > (uint64_t{1} << 60) / x)) {
        return Corruption(where + ": shape is too large");
      }
      elems *= x;
      t.shape.push_back(static_cast<int64_t>(x));
    }
    for (const auto& o : *off) {
      if (!o.is_number_unsigned()) return Corruption(where + ": data_offsets must be non-negative integers");
    }
    t.begin = (*off)[0].get<uint64_t>();
    t.end = (*off)[1].get<uint64_t>();
    if (t.begin > t.end || t.end > data_size_) {
      return Corruption(where + ": data_offsets [" + std::to_string(t.begin) + ", " + std::to_string(t.end) +
                        ") lie outside the data buffer of " + std::to_string(data_size_) +
                        " bytes (file truncated?)");
    }
    const uint64_t want = elems * static_cast<uint64_t>(Traits(t.dtype).type_size);
    if (t.end - t.begin != want) {
      return Corruption(where + ": shape " + ShapeString(t.shape.data(), int(t.shape.size())) + " " + dts +
                        " needs " + std::to_string(want) + " bytes but data_offsets span " +
                        std::to_string(t.end - t.begin));
    }
    tensors_.push_back(std::move(t));
  }
  // Tensors must not overlap (the format forbids it; an overlap means a corrupt or malicious header).
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (const auto& t : tensors_) ranges.emplace_back(t.begin, t.end);
  if (auto o = FindOverlap(ranges)) {
    return Corruption(path_ + ": tensors '" + tensors_[o->first].name + "' and '" + tensors_[o->second].name +
                      "' overlap");
  }
  return Status::Ok();
}

Result<TensorView> SafetensorsFile::View(const SafetensorsTensor& t) const {
  auto v = MakeTensorView(t.dtype, t.shape, data_ + t.begin, static_cast<int64_t>(t.end - t.begin), path_);
  if (!v.ok()) return v.status().WithContext(path_ + ": tensor '" + t.name + "'");
  return v;
}

Result<WeightMap> LoadSafetensorsDir(const std::string& dir, const TensorRenamer& rename, bool show_progress) {
  std::vector<std::string> shards;
  // Tensors the index assigns to each shard; used to skip shards with nothing wanted (e.g. vision-only shards).
  std::map<std::string, std::vector<std::string>> index_names;
  const fs::path index = fs::path(dir) / "model.safetensors.index.json";
  std::error_code ec;
  if (fs::exists(index, ec)) {
    HERD_ASSIGN_OR_RETURN(std::string text, ReadFileToString(index.string(), uint64_t{64} << 20));
    nlohmann::json j = ParseJsonBounded(text);
    if (j.is_discarded() || !j.is_object()) return Corruption(index.string() + ": not a JSON object");
    auto wm = j.find("weight_map");
    if (wm == j.end() || !wm->is_object()) return Corruption(index.string() + ": missing object 'weight_map'");
    for (auto it = wm->begin(); it != wm->end(); ++it) {
      if (!it.value().is_string()) return Corruption(index.string() + ": weight_map values must be file names");
      std::string file = it.value().get<std::string>();
      if (file.find('/') != std::string::npos || file.find("..") != std::string::npos) {
        return Corruption(index.string() + ": shard name '" + file + "' must be a plain file name");
      }
      index_names[file].push_back(it.key());
    }
    for (const auto& [file, names] : index_names) shards.push_back(file);
  } else if (fs::exists(fs::path(dir) / "model.safetensors", ec)) {
    shards.push_back("model.safetensors");
  } else {
    for (const auto& e : fs::directory_iterator(dir, ec)) {
      if (e.path().extension() == ".safetensors") shards.push_back(e.path().filename().string());
    }
    std::sort(shards.begin(), shards.end());
  }
  if (shards.empty()) return InvalidArgument(dir + ": no safetensors files (model.safetensors or an index)");

  WeightMap all;
  std::unique_ptr<Progress> progress;
  if (show_progress && shards.size() > 1) progress = std::make_unique<Progress>("loading shards", shards.size());
  int64_t done = 0;
  for (const std::string& shard : shards) {
    if (auto it = index_names.find(shard); it != index_names.end()) {
      bool wanted = false;
      for (const std::string& name : it->second) {
        HERD_ASSIGN_OR_RETURN(auto canon, rename(name));
        if (canon) {
          wanted = true;
          break;
        }
      }
      if (!wanted) {
        if (progress) progress->Update(++done);
        continue;
      }
    }
    const std::string path = (fs::path(dir) / shard).string();
    HERD_ASSIGN_OR_RETURN(auto file, SafetensorsFile::Open(path));
    for (const SafetensorsTensor& t : file->tensors()) {
      if (!index_names.empty()) {
        const auto& listed = index_names[shard];
        if (std::find(listed.begin(), listed.end(), t.name) == listed.end()) {
          return Corruption(path + ": tensor '" + t.name + "' is not listed for this shard in " + index.string());
        }
      }
      HERD_ASSIGN_OR_RETURN(auto canon, rename(t.name));
      if (!canon) continue;
      HERD_ASSIGN_OR_RETURN(TensorView v, file->View(t));
      HERD_RETURN_IF_ERROR(all.Add(*canon, v).WithContext(path + ": tensor '" + t.name + "'"));
    }
    all.KeepAlive(file);
    if (progress) progress->Update(++done);
  }
  if (progress) progress->Finish();
  // Every tensor the index promises must exist in its shard.
  for (const auto& [file, names] : index_names) {
    for (const std::string& name : names) {
      HERD_ASSIGN_OR_RETURN(auto canon, rename(name));
      if (canon && !all.Contains(*canon)) {
        return Corruption(dir + ": tensor '" + name + "' listed in the index is missing from " + file);
      }
    }
  }
  return all;
}

}  // namespace herd::formats
