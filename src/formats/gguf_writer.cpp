#include "formats/gguf_writer.h"

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>

#include "core/progress.h"

namespace herd::formats {
namespace {

GgufValue Scalar(GgufType t) {
  GgufValue v;
  v.type = t;
  return v;
}

class Bytes {
 public:
  void Raw(const void* p, size_t n) {
    if (n == 0) return;
    const size_t at = out_.size();
    out_.resize(at + n);
    std::memcpy(out_.data() + at, p, n);
  }
  template <typename T>
  void Put(T x) {
    Raw(&x, sizeof x);
  }
  void Str(std::string_view s) {
    Put<uint64_t>(s.size());
    Raw(s.data(), s.size());
  }
  std::vector<uint8_t>& out() { return out_; }

 private:
  std::vector<uint8_t> out_;
};

void EncodeValue(Bytes& b, const GgufValue& v) {
  switch (v.type) {
    case GgufType::kUint8:
      return b.Put<uint8_t>(static_cast<uint8_t>(v.i));
    case GgufType::kInt8:
      return b.Put<int8_t>(static_cast<int8_t>(v.i));
    case GgufType::kUint16:
      return b.Put<uint16_t>(static_cast<uint16_t>(v.i));
    case GgufType::kInt16:
      return b.Put<int16_t>(static_cast<int16_t>(v.i));
    case GgufType::kUint32:
      return b.Put<uint32_t>(static_cast<uint32_t>(v.i));
    case GgufType::kInt32:
      return b.Put<int32_t>(static_cast<int32_t>(v.i));
    case GgufType::kUint64:
      return b.Put<uint64_t>(static_cast<uint64_t>(v.i));
    case GgufType::kInt64:
      return b.Put<int64_t>(v.i);
    case GgufType::kFloat32:
      return b.Put<float>(static_cast<float>(v.f));
    case GgufType::kFloat64:
      return b.Put<double>(v.f);
    case GgufType::kBool:
      return b.Put<uint8_t>(v.b ? 1 : 0);
    case GgufType::kString:
      return b.Str(v.s);
    case GgufType::kArray:
      b.Put<uint32_t>(static_cast<uint32_t>(v.elem_type));
      b.Put<uint64_t>(v.array.size());
      for (const GgufValue& e : v.array) EncodeValue(b, e);
      return;
  }
}

struct FileSink {
  AtomicFile* f;
  Status Write(const uint8_t* p, size_t n, const std::string&) { return f->Write(p, n); }
};

struct MemorySink {
  std::vector<uint8_t>* out;
  Status Write(const uint8_t* p, size_t n, const std::string&) {
    if (n == 0) return Status::Ok();
    const size_t at = out->size();
    out->resize(at + n);
    std::memcpy(out->data() + at, p, n);
    return Status::Ok();
  }
};

}  // namespace

uint32_t GgufFileType(DType t) {
  switch (t) {
    case DType::kF32:
      return 0;
    case DType::kF16:
      return 1;
    case DType::kQ4_0:
      return 2;
    case DType::kQ8_0:
      return 7;
    case DType::kQ4_K:
      return 14;  // Q4_K_S: every matrix Q4_K
    case DType::kQ5_K:
      return 16;  // Q5_K_S
    case DType::kQ6_K:
      return 18;
    case DType::kBF16:
      return 32;
    default:
      return 0;
  }
}

void GgufWriter::Add(std::string key, GgufValue value) {
  for (auto& [k, v] : metadata_) {
    if (k == key) {
      v = std::move(value);
      return;
    }
  }
  metadata_.emplace_back(std::move(key), std::move(value));
}

void GgufWriter::AddString(std::string key, std::string value) {
  GgufValue v = Scalar(GgufType::kString);
  v.s = std::move(value);
  Add(std::move(key), std::move(v));
}
void GgufWriter::AddUint32(std::string key, uint32_t value) {
  GgufValue v = Scalar(GgufType::kUint32);
  v.i = value;
  Add(std::move(key), std::move(v));
}
void GgufWriter::AddInt32(std::string key, int32_t value) {
  GgufValue v = Scalar(GgufType::kInt32);
  v.i = value;
  Add(std::move(key), std::move(v));
}
void GgufWriter::AddUint64(std::string key, uint64_t value) {
  GgufValue v = Scalar(GgufType::kUint64);
  v.i = static_cast<int64_t>(value);
  Add(std::move(key), std::move(v));
}
void GgufWriter::AddFloat32(std::string key, float value) {
  GgufValue v = Scalar(GgufType::kFloat32);
  v.f = value;
  Add(std::move(key), std::move(v));
}
void GgufWriter::AddBool(std::string key, bool value) {
  GgufValue v = Scalar(GgufType::kBool);
  v.b = value;
  Add(std::move(key), std::move(v));
}
void GgufWriter::AddStringArray(std::string key, const std::vector<std::string>& values) {
  GgufValue v = Scalar(GgufType::kArray);
  v.elem_type = GgufType::kString;
  v.array.reserve(values.size());
  for (const std::string& s : values) {
    GgufValue e = Scalar(GgufType::kString);
    e.s = s;
    v.array.push_back(std::move(e));
  }
  Add(std::move(key), std::move(v));
}
void GgufWriter::AddFloat32Array(std::string key, const std::vector<float>& values) {
  GgufValue v = Scalar(GgufType::kArray);
  v.elem_type = GgufType::kFloat32;
  for (float x : values) {
    GgufValue e = Scalar(GgufType::kFloat32);
    e.f = x;
    v.array.push_back(e);
  }
  Add(std::move(key), std::move(v));
}
void GgufWriter::AddInt32Array(std::string key, const std::vector<int32_t>& values) {
  GgufValue v = Scalar(GgufType::kArray);
  v.elem_type = GgufType::kInt32;
  for (int32_t x : values) {
    GgufValue e = Scalar(GgufType::kInt32);
    e.i = x;
    v.array.push_back(e);
  }
  Add(std::move(key), std::move(v));
}

Status GgufWriter::AddTensor(std::string name, DType dtype, std::vector<int64_t> shape, Producer produce) {
  if (shape.empty() || shape.size() > static_cast<size_t>(kMaxDims)) {
    return InvalidArgument("tensor '" + name + "': rank must be 1 to 4");
  }
  const DTypeTraits& tr = Traits(dtype);
  if (shape.back() % tr.block_size != 0) {
    return InvalidArgument("tensor '" + name + "' " + ShapeString(shape.data(), int(shape.size())) + ": row length " +
                           "is not a multiple of the " + std::string(tr.name) + " block size " +
                           std::to_string(tr.block_size));
  }
  for (const Tensor& t : tensors_) {
    if (t.name == name) return InvalidArgument("tensor '" + name + "' added twice");
  }
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  const int64_t bytes = n / tr.block_size * tr.type_size;
  tensors_.push_back({std::move(name), dtype, std::move(shape), bytes, std::move(produce)});
  return Status::Ok();
}

Status GgufWriter::AddTensor(std::string name, const TensorView& view) {
  std::vector<int64_t> shape(view.shape.begin(), view.shape.begin() + view.n_dims);
  const uint8_t* src = view.data;
  const int64_t bytes = view.size_bytes;
  return AddTensor(std::move(name), view.dtype, std::move(shape), [src, bytes](uint8_t* dst) {
    std::memcpy(dst, src, bytes);
    return Status::Ok();
  });
}

template <typename Sink>
Status GgufWriter::Emit(Sink& sink, std::string_view progress_label) const {
  Bytes h;
  h.Raw("GGUF", 4);
  h.Put<uint32_t>(3);
  h.Put<uint64_t>(tensors_.size());
  GgufValue align = Scalar(GgufType::kUint32);
  align.i = static_cast<int64_t>(alignment_);
  bool has_align = false;
  for (const auto& [k, v] : metadata_) has_align |= k == "general.alignment";
  h.Put<uint64_t>(metadata_.size() + (alignment_ != 32 && !has_align ? 1 : 0));
  for (const auto& [k, v] : metadata_) {
    h.Str(k);
    h.Put<uint32_t>(static_cast<uint32_t>(v.type));
    EncodeValue(h, v);
  }
  if (alignment_ != 32 && !has_align) {
    h.Str("general.alignment");
    h.Put<uint32_t>(static_cast<uint32_t>(GgufType::kUint32));
    EncodeValue(h, align);
  }
  uint64_t offset = 0;
  for (const Tensor& t : tensors_) {
    h.Str(t.name);
    h.Put<uint32_t>(static_cast<uint32_t>(t.shape.size()));
    for (auto it = t.shape.rbegin(); it != t.shape.rend(); ++it) h.Put<uint64_t>(static_cast<uint64_t>(*it));
    h.Put<uint32_t>(static_cast<uint32_t>(t.dtype));
    h.Put<uint64_t>(offset);
    offset += (static_cast<uint64_t>(t.bytes) + alignment_ - 1) / alignment_ * alignment_;
  }
  while (h.out().size() % alignment_ != 0) h.Put<uint8_t>(0);
  const std::string where = "gguf writer";
  HERD_RETURN_IF_ERROR(sink.Write(h.out().data(), h.out().size(), where));

  std::unique_ptr<Progress> progress;
  if (!progress_label.empty()) progress = std::make_unique<Progress>(std::string(progress_label), tensors_.size());
  std::vector<uint8_t> buf;
  int64_t done = 0;
  for (const Tensor& t : tensors_) {
    const uint64_t padded = (static_cast<uint64_t>(t.bytes) + alignment_ - 1) / alignment_ * alignment_;
    buf.assign(padded, 0);
    HERD_RETURN_IF_ERROR(t.produce(buf.data()).WithContext("tensor '" + t.name + "'"));
    HERD_RETURN_IF_ERROR(sink.Write(buf.data(), buf.size(), where));
    if (progress) progress->Update(++done);
  }
  if (progress) progress->Finish();
  return Status::Ok();
}

Status GgufWriter::Write(const std::string& path, std::string_view progress_label,
                         const std::vector<std::string>& inputs) const {
  HERD_ASSIGN_OR_RETURN(std::unique_ptr<AtomicFile> file, AtomicFile::Create(path, inputs));
  FileSink sink{file.get()};
  HERD_RETURN_IF_ERROR(Emit(sink, progress_label));
  return file->Commit();
}

Result<std::vector<uint8_t>> GgufWriter::Serialize() const {
  std::vector<uint8_t> out;
  MemorySink sink{&out};
  HERD_RETURN_IF_ERROR(Emit(sink, {}));
  return out;
}

}  // namespace herd::formats
