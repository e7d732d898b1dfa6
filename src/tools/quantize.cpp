#include "tools/quantize.h"

#include <algorithm>
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

// The block index of "blk.N.<...>", or -1 (convert.h's LayerOf without the suffix).
int BlockIndex(const std::string& name) {
  std::string_view suffix;
  return static_cast<int>(LayerOf(name, &suffix));
}

// llama.cpp's layers that get more bits in its _m mixes: the first and last eighth and every third one between.
bool MoreBitsLayer(int layer, int n_layers) {
  return layer < n_layers / 8 || layer >= 7 * n_layers / 8 || (layer - n_layers / 8) % 3 == 2;
}

}  // namespace

DType MixTensorType(DType type, QuantMix mix, const std::string& name, bool moe, int n_layers) {
  if (mix == QuantMix::kNone) return type;
  if (name == "output.weight") return DType::kQ6_K;
  const int layer = BlockIndex(name);
  const bool more_bits = layer >= 0 && MoreBitsLayer(layer, n_layers);
  const bool q4 = type == DType::kQ4_K, medium = mix == QuantMix::kMedium;
  if (name.ends_with("attn_k.weight")) return moe ? DType::kQ8_0 : type;
  if (name.ends_with("attn_v.weight")) {
    if (moe) return DType::kQ8_0;
    if (q4 && !medium && layer >= 0 && layer < 4) return DType::kQ5_K;
    if (medium && type != DType::kQ6_K && more_bits) return DType::kQ6_K;
    return type;
  }
  if (name.ends_with("attn_output.weight")) return moe && q4 ? DType::kQ5_K : type;
  if (name.find("ffn_down") != std::string::npos) {
    if (q4 && !medium && layer >= 0 && layer < n_layers / 8) return DType::kQ5_K;
    if (medium && type != DType::kQ6_K && more_bits) return DType::kQ6_K;
  }
  return type;
}

std::optional<QuantizeType> ParseQuantizeType(const std::string& name) {
  static const std::pair<const char*, QuantizeType> kMixes[] = {
      {"q4_k_s", {DType::kQ4_K, QuantMix::kSmall}},  {"q4_k_m", {DType::kQ4_K, QuantMix::kMedium}},
      {"q5_k_s", {DType::kQ5_K, QuantMix::kSmall}},  {"q5_k_m", {DType::kQ5_K, QuantMix::kMedium}},
      {"q6_k_m", {DType::kQ6_K, QuantMix::kMedium}},
  };
  for (const auto& [n, t] : kMixes) {
    if (name == n) return t;
  }
  std::optional<DType> t = ParseDType(name);
  if (!t) return std::nullopt;
  return QuantizeType{*t, QuantMix::kNone};
}

uint32_t MixFileType(DType type, QuantMix mix) {
  if (mix == QuantMix::kNone) return formats::GgufFileType(type);
  if (type == DType::kQ4_K) return mix == QuantMix::kSmall ? 14u : 15u;
  if (type == DType::kQ5_K) return mix == QuantMix::kSmall ? 16u : 17u;
  return 18u;
}

Status QuantizeModel(const QuantizeOptions& o) {
  if (o.mix != QuantMix::kNone && o.type != DType::kQ4_K && o.type != DType::kQ5_K &&
      !(o.type == DType::kQ6_K && o.mix == QuantMix::kMedium)) {
    return InvalidArgument("a K-quant mix is made of Q4_K, Q5_K (_s, _m) or Q6_K (_m), not " +
                           std::string(DTypeName(o.type)));
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
    if (o.mix != QuantMix::kNone) {
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
  w.AddUint32("general.file_type", MixFileType(o.type, o.mix));
  w.AddUint32("general.quantization_version", 2);
  int kept = 0, skipped_shape = 0, fallback = 0;
  bool moe = false, tied = true;
  int n_layers = 0;
  for (const formats::GgufTensorInfo& info : files.gguf->tensor_infos()) {
    moe |= info.name.ends_with("_exps.weight");
    tied &= info.name != "output.weight";
    n_layers = std::max(n_layers, BlockIndex(info.name) + 1);
  }
  for (const formats::GgufTensorInfo& info : files.gguf->tensor_infos()) {
    const TensorView* v = files.weights.Find(info.name);
    if (v == nullptr) return Internal("tensor '" + info.name + "' vanished");
    const bool convertible = kernels::MatMulSupports(v->dtype);
    // Without output.weight the token embeddings are the output head too (tied), and get its type, as in llama.cpp.
    const std::string role = tied && info.name == "token_embd.weight" ? "output.weight" : info.name;
    const DType want = MixTensorType(o.type, o.mix, role, moe, n_layers);
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
