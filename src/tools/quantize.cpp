#include "tools/quantize.h"

#include <cstdio>
#include <filesystem>
#include <vector>

#include "core/thread_pool.h"
#include "formats/gguf_writer.h"
#include "formats/model_files.h"
#include "kernels/matmul.h"
#include "kernels/quantize.h"
#include "tools/convert.h"

namespace herd::tools {

namespace {

// Tensors that stay as they are: 1-D weights (norms), the router (its logits pick the experts: small errors
// change routing) and RoPE frequency factors.
bool KeepAsIs(const std::string& name, const TensorView& v) {
  if (v.n_dims < 2) return true;
  if (name.find("ffn_gate_inp") != std::string::npos) return true;
  if (name.find("rope_freqs") != std::string::npos) return true;
  return false;
}

// The type `name` gets (QuantizeOptions::mixed): in a mix the output head takes Q6_K; in a model with routed
// experts, where attention is a few percent of the weights, attn_k and attn_v take Q8_0 and attn_output Q6_K; in a
// dense model attn_v takes Q6_K. Everything else the requested type.
DType TargetType(const QuantizeOptions& o, const std::string& name, bool moe) {
  if (!o.mixed) return o.type;
  if (name == "output.weight") return DType::kQ6_K;
  if (moe) {
    if (name.ends_with("attn_k.weight") || name.ends_with("attn_v.weight")) return DType::kQ8_0;
    if (name.ends_with("attn_output.weight")) return DType::kQ6_K;
  } else if (name.ends_with("attn_v.weight")) {
    return DType::kQ6_K;
  }
  return o.type;
}

}  // namespace

Status QuantizeModel(const QuantizeOptions& o) {
  if (o.mixed && o.type != DType::kQ4_K && o.type != DType::kQ5_K) {
    return InvalidArgument("a K-quant mix (_m) is made of Q4_K or Q5_K, not " + std::string(DTypeName(o.type)));
  }
  if (!kernels::QuantizeSupports(o.type)) {
    return InvalidArgument("cannot quantize to " + std::string(DTypeName(o.type)));
  }
  auto note = [&](const std::string& s) {
    if (o.on_note) {
      o.on_note(s);
    } else {
      std::fprintf(stderr, "herd: note: %s\n", s.c_str());
    }
  };
  std::error_code ec;
  if (std::filesystem::is_directory(o.input, ec)) {
    if (o.mixed) {
      return NotSupported(o.input +
                          ": the K-quant mixes are made from GGUF files; convert the directory first "
                          "(herd convert DIR -o F32.gguf --type f32)");
    }
    ConvertOptions c;
    c.input = o.input;
    c.output = o.output;
    c.type = o.type;
    c.show_progress = o.show_progress;
    c.on_note = o.on_note;
    return ConvertToGguf(c);
  }
  HERD_ASSIGN_OR_RETURN(formats::ModelFiles files, formats::OpenModelFiles(o.input));
  if (files.format != formats::ModelFormat::kGguf) {
    return NotSupported(o.input +
                        ": quantize reads GGUF files and HF directories (convert a llama2.c checkpoint "
                        "to GGUF first)");
  }
  HERD_RETURN_IF_ERROR(CheckOutputPath(o.output, files.sources));
  HERD_ASSIGN_OR_RETURN(std::shared_ptr<ThreadPool> pool, ThreadPool::Create(o.threads));
  formats::GgufWriter w;
  w.SetAlignment(files.gguf->alignment());
  for (const auto& [key, value] : files.gguf->metadata()) {
    if (key.starts_with("split.")) continue;  // the output is one file
    w.Add(key, value);
  }
  // llama.cpp's file types of its mixes: MOSTLY_Q4_K_M = 15, MOSTLY_Q5_K_M = 17.
  w.AddUint32("general.file_type", o.mixed ? (o.type == DType::kQ4_K ? 15u : 17u) : formats::GgufFileType(o.type));
  w.AddUint32("general.quantization_version", 2);
  int kept = 0, skipped_shape = 0, fallback = 0;
  bool moe = false;
  for (const formats::GgufTensorInfo& info : files.gguf->tensor_infos()) moe |= info.name.ends_with("_exps.weight");
  for (const formats::GgufTensorInfo& info : files.gguf->tensor_infos()) {
    const TensorView* v = files.weights.Find(info.name);
    if (v == nullptr) return Internal("tensor '" + info.name + "' vanished");
    const bool convertible = kernels::MatMulSupports(v->dtype);
    const DType want = TargetType(o, info.name, moe);
    const DType type = KeepAsIs(info.name, *v) || !convertible ? want : RowCompatibleType(want, v->Cols());
    if (type != want) {
      ++fallback;
      note("tensor '" + info.name + "' " + v->Describe() + ": rows are not a multiple of 256; written as Q8_0");
    }
    if (KeepAsIs(info.name, *v) || v->dtype == type || !convertible || v->Cols() % Traits(type).block_size != 0) {
      if (!KeepAsIs(info.name, *v) && v->dtype != type) {
        ++skipped_shape;
        note("tensor '" + info.name + "' " + v->Describe() + " keeps its type (" +
             (convertible ? "rows are not a multiple of " + std::to_string(Traits(type).block_size)
                          : std::string("unsupported source")) +
             ")");
      } else {
        ++kept;
      }
      HERD_RETURN_IF_ERROR(w.AddTensor(info.name, *v));
      continue;
    }
    const TensorView src = *v;
    HERD_RETURN_IF_ERROR(w.AddTensor(info.name, type, info.shape, [src, type, pool](uint8_t* dst) {
      const int64_t rows = src.Rows(), cols = src.Cols(), row_bytes = RowBytes(type, cols);
      pool->ParallelFor(rows, [&](int64_t b, int64_t e) {
        std::vector<float> buf(static_cast<size_t>(cols));
        for (int64_t r = b; r < e; ++r) {
          kernels::DequantizeRow(src, r, buf.data());
          kernels::QuantizeRow(type, buf.data(), cols, dst + r * row_bytes);
        }
      });
      return Status::Ok();
    }));
  }
  HERD_RETURN_IF_ERROR(w.Write(o.output, o.show_progress ? "quantizing" : "", files.sources));
  note("wrote " + o.output + ": " + std::to_string(w.tensor_count()) + " tensors, " + std::to_string(kept) +
       " kept in their type (norms, router, already " + std::string(DTypeName(o.type)) + "), " +
       std::to_string(skipped_shape) + " not quantizable" +
       (fallback > 0 ? ", " + std::to_string(fallback) + " written as Q8_0 (rows not a multiple of 256)" : ""));
  return Status::Ok();
}

}  // namespace herd::tools
