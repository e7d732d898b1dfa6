#include "formats/llama2c.h"

#include <climits>
#include <cstring>

#include "core/mapped_file.h"

namespace herd::formats {

Result<Llama2cModel> ParseLlama2c(const uint8_t* data, uint64_t size, const std::string& name) {
  int32_t h[7];
  if (size < sizeof h) {
    return Corruption(name + ": file of " + std::to_string(size) + " bytes is too short for a llama2.c header");
  }
  std::memcpy(h, data, sizeof h);
  if (h[0] == 0x616b3432) {  // "ak42": the newer versioned export format
    return NotSupported(name + ": llama2.c export version 1+ ('ak42' magic) is not supported; use the legacy format");
  }
  if (h[5] == INT32_MIN) return Corruption(name + ": invalid llama2.c header (vocab_size " + std::to_string(h[5]) + ")");
  Llama2cHeader hd{h[0], h[1], h[2], h[3], h[4], h[5] < 0 ? -h[5] : h[5], h[6], h[5] > 0};
  auto bad = [&](const std::string& what) {
    return Corruption(name + ": invalid llama2.c header (dim " + std::to_string(hd.dim) + ", hidden_dim " +
                      std::to_string(hd.hidden_dim) + ", n_layers " + std::to_string(hd.n_layers) + ", n_heads " +
                      std::to_string(hd.n_heads) + ", n_kv_heads " + std::to_string(hd.n_kv_heads) + ", vocab " +
                      std::to_string(h[5]) + ", seq_len " + std::to_string(hd.seq_len) + "): " + what);
  };
  if (hd.dim <= 0 || hd.hidden_dim <= 0 || hd.n_layers <= 0 || hd.n_heads <= 0 || hd.n_kv_heads <= 0 ||
      hd.vocab_size <= 0 || hd.seq_len <= 0) {
    return bad("every field must be positive");
  }
  if (hd.dim % hd.n_heads != 0 || hd.n_heads % hd.n_kv_heads != 0 || (hd.dim / hd.n_heads) % 2 != 0) {
    return bad("dim must split into heads of even size and n_heads must be a multiple of n_kv_heads");
  }
  if (hd.dim > (1 << 16) || hd.hidden_dim > (1 << 18) || hd.n_layers > 1024 || hd.vocab_size > (1 << 24) ||
      hd.seq_len > (1 << 24)) {
    return bad("sizes are implausibly large");
  }
  const int64_t d = hd.dim, f = hd.hidden_dim, L = hd.n_layers, V = hd.vocab_size;
  const int64_t hs = d / hd.n_heads, kv = hs * hd.n_kv_heads;
  // Element counts in file order (run.c memory_map_weights).
  struct Part {
    const char* name;  // canonical suffix; nullptr for skipped arrays
    int64_t rows, cols;
    bool per_layer;
  };
  const Part parts[] = {
      {"token_embd.weight", V, d, false}, {"attn_norm.weight", 1, d, true},  {"attn_q.weight", d, d, true},
      {"attn_k.weight", kv, d, true},     {"attn_v.weight", kv, d, true},    {"attn_output.weight", d, d, true},
      {"ffn_norm.weight", 1, d, true},    {"ffn_gate.weight", f, d, true},   {"ffn_down.weight", d, f, true},
      {"ffn_up.weight", f, d, true},      {"output_norm.weight", 1, d, false},
      {nullptr, int64_t{hd.seq_len}, hs / 2, false},  // freq_cis_real (unused: RoPE is recomputed)
      {nullptr, int64_t{hd.seq_len}, hs / 2, false},  // freq_cis_imag
  };
  int64_t total = 0;
  for (const Part& p : parts) total += p.rows * p.cols * (p.per_layer ? L : 1);
  if (!hd.shared_classifier) total += V * d;
  const uint64_t want = sizeof h + static_cast<uint64_t>(total) * 4;
  if (size != want) {
    return Corruption(name + ": llama2.c checkpoint should be " + std::to_string(want) + " bytes for its header (" +
                      std::to_string(hd.n_layers) + " layers, dim " + std::to_string(hd.dim) + ", vocab " +
                      std::to_string(hd.vocab_size) + "), but the file has " + std::to_string(size) +
                      (size < want ? " (truncated)" : " (trailing data)"));
  }
  Llama2cModel m;
  m.header = hd;
  const uint8_t* p = data + sizeof h;
  auto add = [&](const std::string& canon, int64_t rows, int64_t cols) -> Status {
    const int64_t bytes = rows * cols * 4;
    std::vector<int64_t> shape = rows == 1 ? std::vector<int64_t>{cols} : std::vector<int64_t>{rows, cols};
    HERD_ASSIGN_OR_RETURN(TensorView v, MakeTensorView(DType::kF32, shape, p, bytes, name));
    p += bytes;
    return m.weights.Add(canon, v);
  };
  for (const Part& part : parts) {
    if (!part.name) {
      p += part.rows * part.cols * 4;
      continue;
    }
    if (!part.per_layer) {
      HERD_RETURN_IF_ERROR(add(part.name, part.rows, part.cols));
      continue;
    }
    for (int64_t l = 0; l < L; ++l) {
      HERD_RETURN_IF_ERROR(add("blk." + std::to_string(l) + "." + part.name, part.rows, part.cols));
    }
  }
  if (!hd.shared_classifier) HERD_RETURN_IF_ERROR(add("output.weight", V, d));
  return m;
}

ModelMetadata MetadataFromLlama2c(const Llama2cHeader& h, const std::string& source) {
  ModelMetadata md(source);
  auto set = [&](const char* field, ModelMetadata::Value v, const char* origin) {
    md.Set(field, std::move(v), std::string("llama2.c header ") + origin);
  };
  set("model_type", "llama", "(version 0)");
  set("name", "llama2.c", "(version 0)");
  set("vocab_size", int64_t{h.vocab_size}, "vocab_size");
  set("hidden_size", int64_t{h.dim}, "dim");
  set("num_hidden_layers", int64_t{h.n_layers}, "n_layers");
  set("num_attention_heads", int64_t{h.n_heads}, "n_heads");
  set("num_key_value_heads", int64_t{h.n_kv_heads}, "n_kv_heads");
  set("intermediate_size", int64_t{h.hidden_dim}, "hidden_dim");
  set("max_position_embeddings", int64_t{h.seq_len}, "seq_len");
  set("tie_word_embeddings", h.shared_classifier, "vocab_size sign");
  // run.c hard-codes both (llama4.md 10.4).
  set("rms_norm_eps", 1e-5, "(run.c's constant)");
  set("rope_theta", 10000.0, "(run.c's constant)");
  set("rope_layout", "interleaved", "(run.c)");
  return md;
}

Result<Llama2cModel> OpenLlama2c(const std::string& path) {
  HERD_ASSIGN_OR_RETURN(std::shared_ptr<MappedFile> map, MappedFile::Open(path));
  // The views name `path` as their source: keep a copy of it alive with the map.
  auto name = std::make_shared<std::string>(path);
  HERD_ASSIGN_OR_RETURN(Llama2cModel m, ParseLlama2c(map->data(), map->size(), *name));
  m.weights.KeepAlive(map);
  m.weights.KeepAlive(name);
  return m;
}

}  // namespace herd::formats
