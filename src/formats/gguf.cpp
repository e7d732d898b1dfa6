#include "formats/gguf.h"

#include <cinttypes>
#include <cmath>
#include <cstring>
#include <limits>
#include <set>

#include "formats/byte_ranges.h"

namespace herd::formats {
namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as little-endian u32
constexpr int kMaxArrayDepth = 8;
constexpr uint64_t kMaxKeyBytes = 65535;
constexpr uint64_t kMaxTensorNameBytes = 4096;  // the format says 64; real files sometimes exceed it slightly

// Bounds-checked little-endian cursor over the file. Every read fails with a message naming the field and the
// offset instead of reading past the end.
class Cursor {
 public:
  Cursor(const uint8_t* data, uint64_t size, const std::string& name) : data_(data), size_(size), name_(name) {}

  uint64_t pos() const { return pos_; }
  uint64_t remaining() const { return size_ - pos_; }

  template <typename T>
  Status Read(T* out, const char* what) {
    if (remaining() < sizeof(T)) return Truncated(what);
    std::memcpy(out, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return Status::Ok();
  }

  Status ReadString(std::string* out, uint64_t max_len, const char* what) {
    uint64_t n = 0;
    HERD_RETURN_IF_ERROR(Read(&n, what));
    if (n > max_len) {
      return Corruption(name_ + ": " + what + " of " + std::to_string(n) + " bytes at offset " +
                        std::to_string(pos_ - 8) + " exceeds the limit of " + std::to_string(max_len));
    }
    if (n > remaining()) return Truncated(what);
    out->assign(reinterpret_cast<const char*>(data_ + pos_), n);
    pos_ += n;
    return Status::Ok();
  }

  const std::string& name() const { return name_; }
  Status Truncated(const char* what) const {
    return Corruption(name_ + ": file truncated while reading " + what + " at offset " + std::to_string(pos_) +
                      " (file size " + std::to_string(size_) + ")");
  }

 private:
  const uint8_t* data_;
  uint64_t size_;
  const std::string& name_;
  uint64_t pos_ = 0;
};

// Smallest encoded size of one element of type t (for checking array counts against the bytes left).
uint64_t MinEncodedSize(GgufType t) {
  switch (t) {
    case GgufType::kUint8:
    case GgufType::kInt8:
    case GgufType::kBool:
      return 1;
    case GgufType::kUint16:
    case GgufType::kInt16:
      return 2;
    case GgufType::kUint32:
    case GgufType::kInt32:
    case GgufType::kFloat32:
      return 4;
    case GgufType::kUint64:
    case GgufType::kInt64:
    case GgufType::kFloat64:
    case GgufType::kString:  // u64 length
      return 8;
    case GgufType::kArray:  // u32 type + u64 count
      return 12;
  }
  return 1;
}

bool ValidType(uint32_t t) { return t <= static_cast<uint32_t>(GgufType::kFloat64); }

Status ReadValue(Cursor& c, GgufType type, int depth, const std::string& key, GgufValue* v) {
  v->type = type;
  switch (type) {
    case GgufType::kUint8: {
      uint8_t x = 0;
      HERD_RETURN_IF_ERROR(c.Read(&x, "a uint8 value"));
      v->i = x;
      return Status::Ok();
    }
    case GgufType::kInt8: {
      int8_t x = 0;
      HERD_RETURN_IF_ERROR(c.Read(&x, "an int8 value"));
      v->i = x;
      return Status::Ok();
    }
    case GgufType::kUint16: {
      uint16_t x = 0;
      HERD_RETURN_IF_ERROR(c.Read(&x, "a uint16 value"));
      v->i = x;
      return Status::Ok();
    }
    case GgufType::kInt16: {
      int16_t x = 0;
      HERD_RETURN_IF_ERROR(c.Read(&x, "an int16 value"));
      v->i = x;
      return Status::Ok();
    }
    case GgufType::kUint32: {
      uint32_t x = 0;
      HERD_RETURN_IF_ERROR(c.Read(&x, "a uint32 value"));
      v->i = x;
      return Status::Ok();
    }
    case GgufType::kInt32: {
      int32_t x = 0;
      HERD_RETURN_IF_ERROR(c.Read(&x, "an int32 value"));
      v->i = x;
      return Status::Ok();
    }
    case GgufType::kUint64: {
      uint64_t x = 0;
      HERD_RETURN_IF_ERROR(c.Read(&x, "a uint64 value"));
      v->i = static_cast<int64_t>(x);
      return Status::Ok();
    }
    case GgufType::kInt64: {
      int64_t x = 0;
      HERD_RETURN_IF_ERROR(c.Read(&x, "an int64 value"));
      v->i = x;
      return Status::Ok();
    }
    case GgufType::kFloat32: {
      float x = 0;
      HERD_RETURN_IF_ERROR(c.Read(&x, "a float32 value"));
      v->f = x;
      return Status::Ok();
    }
    case GgufType::kFloat64: {
      double x = 0;
      HERD_RETURN_IF_ERROR(c.Read(&x, "a float64 value"));
      v->f = x;
      return Status::Ok();
    }
    case GgufType::kBool: {
      uint8_t x = 0;
      HERD_RETURN_IF_ERROR(c.Read(&x, "a bool value"));
      if (x > 1)
        return Corruption(c.name() + ": metadata key '" + key + "': bool value " + std::to_string(x) +
                          " is not 0 or 1");
      v->b = x != 0;
      return Status::Ok();
    }
    case GgufType::kString:
      return c.ReadString(&v->s, c.remaining(), "a string value");
    case GgufType::kArray: {
      if (depth >= kMaxArrayDepth) {
        return Corruption(c.name() + ": metadata key '" + key + "': arrays nested deeper than " +
                          std::to_string(kMaxArrayDepth));
      }
      uint32_t et = 0;
      uint64_t n = 0;
      HERD_RETURN_IF_ERROR(c.Read(&et, "an array element type"));
      if (!ValidType(et)) {
        return Corruption(c.name() + ": metadata key '" + key + "': unknown array element type " + std::to_string(et));
      }
      HERD_RETURN_IF_ERROR(c.Read(&n, "an array length"));
      v->elem_type = static_cast<GgufType>(et);
      if (n > c.remaining() / MinEncodedSize(v->elem_type)) {
        return Corruption(c.name() + ": metadata key '" + key + "': array of " + std::to_string(n) +
                          " elements cannot fit in the " + std::to_string(c.remaining()) + " bytes left in the file");
      }
      v->array.resize(n);
      for (uint64_t k = 0; k < n; ++k) {
        HERD_RETURN_IF_ERROR(ReadValue(c, v->elem_type, depth + 1, key, &v->array[k]));
      }
      return Status::Ok();
    }
  }
  return Corruption(c.name() + ": metadata key '" + key + "': unknown value type");
}

std::string Quote(std::string_view s, size_t max_len) {
  std::string out = "\"";
  for (size_t k = 0; k < s.size() && k < max_len; ++k) {
    unsigned char ch = static_cast<unsigned char>(s[k]);
    if (ch == '\n') {
      out += "\\n";
    } else if (ch == '"') {
      out += "\\\"";
    } else if (ch < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", ch);
      out += buf;
    } else {
      out += static_cast<char>(ch);
    }
  }
  if (s.size() > max_len) out += "...";
  return out + "\"";
}

}  // namespace

std::string_view GgufTypeName(GgufType t) {
  static constexpr std::string_view kNames[] = {"uint8", "int8",   "uint16", "int16", "uint32", "int32",  "float32",
                                                "bool",  "string", "array",  "uint64", "int64", "float64"};
  auto k = static_cast<uint32_t>(t);
  return k < std::size(kNames) ? kNames[k] : "unknown";
}

bool GgufValue::IsInteger() const {
  switch (type) {
    case GgufType::kUint8:
    case GgufType::kInt8:
    case GgufType::kUint16:
    case GgufType::kInt16:
    case GgufType::kUint32:
    case GgufType::kInt32:
    case GgufType::kUint64:
    case GgufType::kInt64:
      return true;
    default:
      return false;
  }
}

std::string GgufValueToString(const GgufValue& v) {
  if (v.type == GgufType::kUint64) return std::to_string(static_cast<uint64_t>(v.i));
  if (v.IsInteger()) return std::to_string(v.i);
  if (v.IsFloat()) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", v.f);
    return buf;
  }
  if (v.type == GgufType::kBool) return v.b ? "true" : "false";
  if (v.type == GgufType::kString) return Quote(v.s, 80);
  std::string out = std::string(GgufTypeName(v.elem_type)) + "[" + std::to_string(v.array.size()) + "] [";
  for (size_t k = 0; k < v.array.size() && k < 6; ++k) {
    if (k) out += ", ";
    out += v.array[k].type == GgufType::kString ? Quote(v.array[k].s, 24) : GgufValueToString(v.array[k]);
  }
  if (v.array.size() > 6) out += ", ...";
  return out + "]";
}

Result<std::shared_ptr<const GgufFile>> GgufFile::Open(const std::string& path) {
  HERD_ASSIGN_OR_RETURN(std::shared_ptr<MappedFile> map, MappedFile::Open(path));
  std::shared_ptr<GgufFile> f(new GgufFile());
  f->map_ = map;
  f->path_ = path;
  HERD_RETURN_IF_ERROR(f->ParseAll(map->data(), map->size()));
  return std::shared_ptr<const GgufFile>(std::move(f));
}

Result<std::shared_ptr<const GgufFile>> GgufFile::Parse(const uint8_t* data, uint64_t size, std::string name) {
  std::shared_ptr<GgufFile> f(new GgufFile());
  f->path_ = std::move(name);
  HERD_RETURN_IF_ERROR(f->ParseAll(data, size));
  return std::shared_ptr<const GgufFile>(std::move(f));
}

Status GgufFile::ParseAll(const uint8_t* data, uint64_t size) {
  data_ = data;
  size_ = size;
  Cursor c(data, size, path_);
  uint32_t magic = 0;
  HERD_RETURN_IF_ERROR(c.Read(&magic, "the magic"));
  if (magic != kMagic) return Corruption(path_ + ": not a GGUF file (bad magic)");
  HERD_RETURN_IF_ERROR(c.Read(&version_, "the version"));
  if (version_ != 2 && version_ != 3) {
    if (version_ == 0x03000000 || version_ == 0x02000000) {
      return NotSupported(path_ + ": big-endian GGUF files are not supported");
    }
    return NotSupported(path_ + ": GGUF version " + std::to_string(version_) + " is not supported (only 2 and 3)");
  }
  uint64_t n_tensors = 0, n_kv = 0;
  HERD_RETURN_IF_ERROR(c.Read(&n_tensors, "the tensor count"));
  HERD_RETURN_IF_ERROR(c.Read(&n_kv, "the metadata count"));
  // Each key/value needs at least 8 (key length) + 4 (type) + 1 bytes; each tensor info at least 8+4+4+8.
  if (n_kv > c.remaining() / 13) {
    return Corruption(path_ + ": metadata count " + std::to_string(n_kv) + " cannot fit in a file of " +
                      std::to_string(size) + " bytes");
  }
  if (n_tensors > c.remaining() / 24) {
    return Corruption(path_ + ": tensor count " + std::to_string(n_tensors) + " cannot fit in a file of " +
                      std::to_string(size) + " bytes");
  }
  metadata_.reserve(n_kv);
  std::set<std::string, std::less<>> seen;
  for (uint64_t k = 0; k < n_kv; ++k) {
    std::string key;
    HERD_RETURN_IF_ERROR(c.ReadString(&key, kMaxKeyBytes, "a metadata key"));
    if (!seen.insert(key).second) return Corruption(path_ + ": duplicate metadata key '" + key + "'");
    uint32_t type = 0;
    HERD_RETURN_IF_ERROR(c.Read(&type, "a metadata value type"));
    if (!ValidType(type)) {
      return Corruption(path_ + ": metadata key '" + key + "' has unknown value type " + std::to_string(type));
    }
    GgufValue v;
    HERD_RETURN_IF_ERROR(ReadValue(c, static_cast<GgufType>(type), 0, key, &v));  // messages name path_
    metadata_.emplace_back(std::move(key), std::move(v));
  }

  if (const GgufValue* a = Find("general.alignment")) {
    if (!a->IsInteger() || a->i <= 0 || a->i > (1 << 20) || a->i % 8 != 0) {
      return Corruption(path_ + ": general.alignment must be a positive multiple of 8 (got " + GgufValueToString(*a) +
                        ")");
    }
    alignment_ = static_cast<uint64_t>(a->i);
  }

  tensors_.reserve(n_tensors);
  seen.clear();
  for (uint64_t k = 0; k < n_tensors; ++k) {
    GgufTensorInfo t;
    HERD_RETURN_IF_ERROR(c.ReadString(&t.name, kMaxTensorNameBytes, "a tensor name"));
    if (!seen.insert(t.name).second) return Corruption(path_ + ": duplicate tensor '" + t.name + "'");
    uint32_t n_dims = 0;
    HERD_RETURN_IF_ERROR(c.Read(&n_dims, "a tensor rank"));
    if (n_dims > static_cast<uint32_t>(kMaxDims)) {
      return Corruption(path_ + ": tensor '" + t.name + "' has " + std::to_string(n_dims) + " dimensions (max 4)");
    }
    std::vector<int64_t> ne(n_dims);
    for (uint32_t d = 0; d < n_dims; ++d) {
      uint64_t x = 0;
      HERD_RETURN_IF_ERROR(c.Read(&x, "a tensor dimension"));
      if (x > (uint64_t{1} << 40)) {
        return Corruption(path_ + ": tensor '" + t.name + "' dimension " + std::to_string(d) + " is " +
                          std::to_string(x) + ", too large");
      }
      ne[d] = static_cast<int64_t>(x);
    }
    uint32_t type = 0;
    HERD_RETURN_IF_ERROR(c.Read(&type, "a tensor type"));
    auto traits = GetDTypeTraits(type);
    if (!traits || type >= 100) {
      return Corruption(path_ + ": tensor '" + t.name + "' has unknown ggml type " + std::to_string(type));
    }
    t.dtype = static_cast<DType>(type);
    HERD_RETURN_IF_ERROR(c.Read(&t.offset, "a tensor offset"));
    t.shape.assign(ne.rbegin(), ne.rend());
    // Element count with overflow checks (each dim < 2^40 but the product may not be).
    uint64_t n = 1;
    for (int64_t d : ne) {
      if (d != 0 && n > (uint64_t{1} << 62) / static_cast<uint64_t>(d)) {
        return Corruption(path_ + ": tensor '" + t.name + "' has too many elements");
      }
      n *= static_cast<uint64_t>(d);
    }
    const int64_t inner = ne.empty() ? 1 : ne[0];
    if (inner % traits->block_size != 0) {
      return Corruption(path_ + ": tensor '" + t.name + "' " + ShapeString(t.shape.data(), n_dims) + " " +
                        std::string(traits->name) + ": row length " + std::to_string(inner) +
                        " is not a multiple of the block size " + std::to_string(traits->block_size));
    }
    t.size_bytes = static_cast<int64_t>(n / traits->block_size * traits->type_size);
    if (t.offset % alignment_ != 0) {
      return Corruption(path_ + ": tensor '" + t.name + "' offset " + std::to_string(t.offset) +
                        " is not a multiple of the alignment " + std::to_string(alignment_));
    }
    tensors_.push_back(std::move(t));
  }
  uint64_t pos = c.pos();
  data_offset_ = (pos + alignment_ - 1) / alignment_ * alignment_;
  if (n_tensors > 0 && data_offset_ > size) {
    return Corruption(path_ + ": file truncated before the data section (needs " + std::to_string(data_offset_) +
                      " bytes, has " + std::to_string(size) + ")");
  }
  const uint64_t data_bytes = size >= data_offset_ ? size - data_offset_ : 0;
  for (const GgufTensorInfo& t : tensors_) {
    if (t.offset > data_bytes || static_cast<uint64_t>(t.size_bytes) > data_bytes - t.offset) {
      return Corruption(path_ + ": tensor '" + t.name + "' " + ShapeString(t.shape.data(), int(t.shape.size())) + " " +
                        std::string(DTypeName(t.dtype)) + " needs bytes [" + std::to_string(t.offset) + ", " +
                        std::to_string(t.offset + t.size_bytes) + ") of the data section, which has only " +
                        std::to_string(data_bytes) + " bytes (file truncated?)");
    }
  }
  // No two tensors may share bytes (a norm pointing into token_embd would load and compute garbage).
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (const GgufTensorInfo& t : tensors_) ranges.emplace_back(t.offset, t.offset + static_cast<uint64_t>(t.size_bytes));
  if (auto o = FindOverlap(ranges)) {
    const GgufTensorInfo &a = tensors_[o->first], &b = tensors_[o->second];
    return Corruption(path_ + ": tensors '" + a.name + "' (bytes [" + std::to_string(a.offset) + ", " +
                      std::to_string(a.offset + a.size_bytes) + ")) and '" + b.name + "' (from byte " +
                      std::to_string(b.offset) + ") of the data section overlap");
  }
  return Status::Ok();
}

const GgufValue* GgufFile::Find(std::string_view key) const {
  for (const auto& [k, v] : metadata_) {
    if (k == key) return &v;
  }
  return nullptr;
}

namespace {

Status WrongType(const std::string& path, std::string_view key, const GgufValue& v, const char* want) {
  return Corruption(path + ": metadata key '" + std::string(key) + "' has type " +
                    std::string(GgufTypeName(v.type)) + ", expected " + want);
}

}  // namespace

Result<std::optional<int64_t>> GgufFile::GetIntOpt(std::string_view key) const {
  const GgufValue* v = Find(key);
  if (!v) return std::optional<int64_t>();
  if (!v->IsInteger()) return WrongType(path_, key, *v, "an integer");
  if (v->type == GgufType::kUint64 && v->i < 0) {
    return Corruption(path_ + ": metadata key '" + std::string(key) + "' is out of range");
  }
  return std::optional<int64_t>(v->i);
}

Result<int64_t> GgufFile::GetInt(std::string_view key) const {
  HERD_ASSIGN_OR_RETURN(std::optional<int64_t> v, GetIntOpt(key));
  if (!v) return Corruption(path_ + ": missing metadata key '" + std::string(key) + "'");
  return *v;
}

Result<std::optional<double>> GgufFile::GetFloatOpt(std::string_view key) const {
  const GgufValue* v = Find(key);
  if (!v) return std::optional<double>();
  if (v->IsFloat()) return std::optional<double>(v->f);
  if (v->IsInteger()) return std::optional<double>(static_cast<double>(v->i));
  return WrongType(path_, key, *v, "a number");
}

Result<double> GgufFile::GetFloat(std::string_view key) const {
  HERD_ASSIGN_OR_RETURN(std::optional<double> v, GetFloatOpt(key));
  if (!v) return Corruption(path_ + ": missing metadata key '" + std::string(key) + "'");
  return *v;
}

Result<std::optional<std::string_view>> GgufFile::GetStringOpt(std::string_view key) const {
  const GgufValue* v = Find(key);
  if (!v) return std::optional<std::string_view>();
  if (v->type != GgufType::kString) return WrongType(path_, key, *v, "a string");
  return std::optional<std::string_view>(v->s);
}

Result<std::string_view> GgufFile::GetString(std::string_view key) const {
  HERD_ASSIGN_OR_RETURN(std::optional<std::string_view> v, GetStringOpt(key));
  if (!v) return Corruption(path_ + ": missing metadata key '" + std::string(key) + "'");
  return *v;
}

Result<std::optional<bool>> GgufFile::GetBoolOpt(std::string_view key) const {
  const GgufValue* v = Find(key);
  if (!v) return std::optional<bool>();
  if (v->type == GgufType::kBool) return std::optional<bool>(v->b);
  if (v->IsInteger() && (v->i == 0 || v->i == 1)) return std::optional<bool>(v->i == 1);
  return WrongType(path_, key, *v, "a bool");
}

Result<std::vector<std::string_view>> GgufFile::GetStringArray(std::string_view key) const {
  const GgufValue* v = Find(key);
  if (!v) return Corruption(path_ + ": missing metadata key '" + std::string(key) + "'");
  if (v->type != GgufType::kArray || v->elem_type != GgufType::kString) {
    return WrongType(path_, key, *v, "an array of strings");
  }
  std::vector<std::string_view> out;
  out.reserve(v->array.size());
  for (const GgufValue& e : v->array) out.push_back(e.s);
  return out;
}

Result<std::vector<float>> GgufFile::GetFloatArray(std::string_view key) const {
  const GgufValue* v = Find(key);
  if (!v) return Corruption(path_ + ": missing metadata key '" + std::string(key) + "'");
  if (v->type != GgufType::kArray) return WrongType(path_, key, *v, "an array of numbers");
  std::vector<float> out;
  out.reserve(v->array.size());
  for (const GgufValue& e : v->array) {
    if (e.IsFloat()) {
      out.push_back(static_cast<float>(e.f));
    } else if (e.IsInteger()) {
      out.push_back(static_cast<float>(e.i));
    } else {
      return WrongType(path_, key, *v, "an array of numbers");
    }
  }
  return out;
}

Result<std::vector<int64_t>> GgufFile::GetIntArray(std::string_view key) const {
  const GgufValue* v = Find(key);
  if (!v) return Corruption(path_ + ": missing metadata key '" + std::string(key) + "'");
  if (v->type != GgufType::kArray) return WrongType(path_, key, *v, "an array of integers");
  std::vector<int64_t> out;
  out.reserve(v->array.size());
  for (const GgufValue& e : v->array) {
    if (!e.IsInteger()) return WrongType(path_, key, *v, "an array of integers");
    out.push_back(e.i);
  }
  return out;
}

Result<WeightMap> GgufFile::Weights() const {
  WeightMap w;
  for (const GgufTensorInfo& t : tensors_) {
    const uint8_t* p = data_ + data_offset_ + t.offset;
    auto v = MakeTensorView(t.dtype, t.shape, p, t.size_bytes, path_);
    if (!v.ok()) return v.status().WithContext(path_ + ": tensor '" + t.name + "'");
    HERD_RETURN_IF_ERROR(w.Add(t.name, *v).WithContext(path_));
  }
  // The views point into the map and name path_ as their source: keep this whole object alive.
  w.KeepAlive(shared_from_this());
  return w;
}

}  // namespace herd::formats
