// HF directory -> GGUF (tools/convert.h). The model is opened and bound exactly as `herd run` opens it, so a
// directory herd cannot run is never converted; then every output tensor is planned (name, dtype, shape and a row
// producer) and the writer pulls the tensors one at a time.
#include "tools/convert.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/file.h"
#include "core/json.h"
#include "core/mapped_file.h"
#include "formats/gguf_writer.h"
#include "formats/model_files.h"
#include "kernels/quantize.h"
#include "model/config.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"
#include "tools/gguf_model.h"

namespace herd::tools {
namespace {

namespace fs = std::filesystem;
using Note = NoteFn;

// ---------------------------------------------------------------------------------------------------------
// Tensor plans.

// Writes rows [r0, r0 + n) of an output tensor as f32 into out[n][cols].
using RowFill = std::function<void(int64_t r0, int64_t n, float* out)>;

struct OutTensor {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;  // outermost first
  TensorView source;           // the HF tensor it comes from
  RowFill fill;                // empty: `source` rows in order (copied verbatim when the dtype is unchanged)
};

bool IsSourceDType(DType t) { return t == DType::kF32 || t == DType::kF16 || t == DType::kBF16; }

int64_t NumRows(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (size_t i = 0; i + 1 < shape.size(); ++i) n *= shape[i];
  return n;
}

// Source rows in order, optionally through a row permutation (output row r <- source row perm(r)).
RowFill SourceRows(const TensorView& v, std::function<int64_t(int64_t)> perm) {
  return [v, perm = std::move(perm)](int64_t r0, int64_t n, float* out) {
    const int64_t cols = v.Cols();
    for (int64_t i = 0; i < n; ++i) {
      const int64_t r = perm ? perm(r0 + i) : r0 + i;
      kernels::DequantizeRow(v.dtype, v.Row(r), cols, out + i * cols);
    }
  };
}

// Transpose of input-major experts: source [E, K, N]; output [E, M, K] with out[e][m][k] = src[e][k][c0 + m].
// Reads contiguous segments of source rows (a tile of output rows at a time), never single strided elements.
RowFill TransposedExperts(const TensorView& v, int64_t c0, int64_t m_per_expert) {
  return [v, c0, m_per_expert](int64_t r0, int64_t n, float* out) {
    const int64_t k_dim = v.shape[1], n_dim = v.shape[2];
    const int64_t elem = Traits(v.dtype).type_size;
    std::vector<float> seg;
    for (int64_t i = 0; i < n;) {
      const int64_t r = r0 + i, e = r / m_per_expert, m0 = r % m_per_expert;
      const int64_t cnt = std::min(n - i, m_per_expert - m0);
      seg.resize(static_cast<size_t>(cnt));
      for (int64_t k = 0; k < k_dim; ++k) {
        const uint8_t* p = v.data + ((e * k_dim + k) * n_dim + c0 + m0) * elem;
        kernels::DequantizeRow(v.dtype, p, cnt, seg.data());
        for (int64_t j = 0; j < cnt; ++j) out[(i + j) * k_dim + k] = seg[j];
      }
      i += cnt;
    }
  };
}

formats::GgufWriter::Producer MakeProducer(const OutTensor& t) {
  const int64_t cols = t.shape.back(), rows = NumRows(t.shape);
  RowFill fill = t.fill ? t.fill : SourceRows(t.source, nullptr);
  const DType dtype = t.dtype;
  return [fill, dtype, rows, cols](uint8_t* dst) -> Status {
    // Up to 256 rows (8 MiB of f32) per tile, so that the expert transposes read source segments of 256
    // elements rather than single strided elements.
    const int64_t tile = std::clamp<int64_t>((int64_t{1} << 21) / std::max<int64_t>(cols, 1), 1, 256);
    std::vector<float> buf(static_cast<size_t>(tile * cols));
    const int64_t row_bytes = RowBytes(dtype, cols);
    for (int64_t r0 = 0; r0 < rows; r0 += tile) {
      const int64_t n = std::min(tile, rows - r0);
      fill(r0, n, buf.data());
      for (int64_t i = 0; i < n; ++i) {
        kernels::QuantizeRow(dtype, buf.data() + i * cols, cols, dst + (r0 + i) * row_bytes);
      }
    }
    return Status::Ok();
  };
}

// llama.cpp's order: rope_freqs, token_embd, the blocks in layer order, output_norm, output.
std::tuple<int, int64_t, std::string> SortKey(const std::string& name) {
  std::string_view suffix;
  const int64_t layer = LayerOf(name, &suffix);
  if (layer >= 0) return {2, layer, std::string(suffix)};
  if (name == "rope_freqs.weight") return {0, 0, name};
  if (name == "token_embd.weight") return {1, 0, name};
  if (name == "output_norm.weight") return {3, 0, name};
  return {4, 0, name};
}

// What the converter writes a tensor as (ConvertOptions::type).
DType ChooseType(const std::string& name, const std::vector<int64_t>& shape, DType source,
                 const std::optional<DType>& target, const Note& note) {
  std::string_view suffix;
  LayerOf(name, &suffix);
  // llama.cpp keeps 1-D weights (norms, rope_freqs) and the MoE router in F32 whatever the file type.
  if (shape.size() == 1 || suffix == "ffn_gate_inp.weight" || name.ends_with("_norm.weight")) return DType::kF32;
  const DType asked = target ? *target : source;
  const DType want = RowCompatibleType(asked, shape.back());
  if (want != asked) {
    note("tensor '" + name + "' " + ShapeString(shape.data(), static_cast<int>(shape.size())) + ": rows of " +
         std::to_string(shape.back()) + " are not a multiple of 256; written as Q8_0");
  }
  const int64_t block = Traits(want).block_size;
  if (shape.back() % block != 0) {
    note("tensor '" + name + "' " + ShapeString(shape.data(), static_cast<int>(shape.size())) + ": rows of " +
         std::to_string(shape.back()) + " are not a multiple of the " + std::string(DTypeName(want)) + " block size " +
         std::to_string(block) + "; written as F16");
    return DType::kF16;
  }
  return want;
}

// ---------------------------------------------------------------------------------------------------------
// Tokenizer.

// The two tokens BPE over ranks below `limit` leaves for `bytes`, or {-1, -1} when it leaves another number of
// parts (then the token is only ever produced whole, by the whole-word rule). tiktoken merges the adjacent pair of
// lowest rank first (leftmost on ties), so the last merge that forms a token is exactly this pair.
std::pair<int32_t, int32_t> LastMerge(std::string_view bytes, int32_t limit,
                                      const std::unordered_map<std::string_view, int32_t>& rank) {
  std::vector<size_t> starts(bytes.size());  // part i is bytes[starts[i], starts[i+1])
  for (size_t i = 0; i < bytes.size(); ++i) starts[i] = i;
  auto end_of = [&](size_t i) { return i + 1 < starts.size() ? starts[i + 1] : bytes.size(); };
  while (starts.size() > 2) {
    size_t best = SIZE_MAX;
    int32_t best_rank = limit;
    for (size_t i = 0; i + 1 < starts.size(); ++i) {
      auto it = rank.find(bytes.substr(starts[i], end_of(i + 1) - starts[i]));
      if (it != rank.end() && it->second < best_rank) {
        best_rank = it->second;
        best = i;
      }
    }
    if (best == SIZE_MAX) return {-1, -1};
    starts.erase(starts.begin() + static_cast<std::ptrdiff_t>(best) + 1);
  }
  if (starts.size() != 2) return {-1, -1};
  auto l = rank.find(bytes.substr(0, starts[1]));
  auto r = rank.find(bytes.substr(starts[1]));
  if (l == rank.end() || r == rank.end() || l->second >= limit || r->second >= limit) return {-1, -1};
  return {l->second, r->second};
}

// tokenizer_config.json "eos_token" (a string or {"content": ...}), else config.json's integer eos_token_id (the
// sources llama.cpp's SpecialVocab reads; the text model's first); nullopt: the tokenizer's own EOS.
std::optional<int32_t> EosFromDir(const std::string& dir, const ModelMetadata& md, const tokenizer::Tokenizer& tok) {
  auto cfg = ReadFileToString(dir + "/tokenizer_config.json", uint64_t{64} << 20);
  if (cfg.ok()) {
    const nlohmann::json j = ParseJsonBounded(*cfg);
    if (j.is_object()) {
      auto it = j.find("eos_token");
      std::string text;
      if (it != j.end() && it->is_string()) text = it->get<std::string>();
      if (it != j.end() && it->is_object() && it->contains("content") && (*it)["content"].is_string()) {
        text = (*it)["content"].get<std::string>();
      }
      if (!text.empty()) {
        if (auto id = tok.TokenId(text)) return *id;
      }
    }
  }
  const ModelMetadata::Entry* e = md.Find("eos_token_id");
  const int64_t* id = e != nullptr ? std::get_if<int64_t>(&e->value) : nullptr;
  if (id != nullptr && *id >= 0 && *id < tok.vocab_size()) return static_cast<int32_t>(*id);
  return std::nullopt;
}

// tokenizer_config.json "chat_template" (a string, or a list of {name, template} whose "default" is taken), else
// chat_template.jinja.
std::string ChatTemplateFromDir(const std::string& dir) {
  auto cfg = ReadFileToString(dir + "/tokenizer_config.json", uint64_t{64} << 20);
  if (cfg.ok()) {
    const nlohmann::json j = ParseJsonBounded(*cfg);
    if (j.is_object() && j.contains("chat_template")) {
      const nlohmann::json& t = j["chat_template"];
      if (t.is_string()) return t.get<std::string>();
      if (t.is_array()) {
        for (const auto& e : t) {
          if (!e.is_object()) continue;
          auto name = e.find("name"), tmpl = e.find("template");
          if (name != e.end() && *name == "default" && tmpl != e.end() && tmpl->is_string()) {
            return tmpl->get<std::string>();
          }
        }
      }
    }
  }
  auto jinja = ReadFileToString(dir + "/chat_template.jinja", uint64_t{64} << 20);
  return jinja.ok() ? *jinja : std::string();
}

Status AddTokenizer(const std::string& dir, const ModelMetadata& md, const model::ModelConfig& c,
                    formats::GgufWriter& w, const Note& note) {
  std::error_code ec;
  const std::string path = dir + "/tokenizer.model";
  if (!fs::exists(path, ec)) {
    note(fs::exists(dir + "/tokenizer.json", ec)
             ? "only tokenizer.json found in " + dir +
                   " (herd convert reads tiktoken tokenizer.model files); the GGUF has no vocabulary: pass "
                   "--tokenizer when running it"
             : "no tokenizer.model in " + dir + "; the GGUF has no vocabulary: pass --tokenizer when running it");
    return Status::Ok();
  }
  auto tok = tokenizer::LoadTokenizer(path);
  if (!tok.ok() || (*tok)->kind() != "tiktoken") {
    note(path + " is not a tiktoken rank file (" +
         (tok.ok() ? "a " + std::string((*tok)->kind()) + " tokenizer" : tok.status().message()) +
         "); the GGUF has no vocabulary: pass --tokenizer when running it");
    return Status::Ok();
  }
  const tokenizer::Tokenizer& t = **tok;
  if (t.vocab_size() > c.vocab_size) {
    return InvalidArgument(path + " has " + std::to_string(t.vocab_size()) + " tokens but the model's vocab_size is " +
                           std::to_string(c.vocab_size) + "; the tokenizer does not belong to this model");
  }
  VocabOptions vo;
  vo.n_vocab = c.vocab_size;
  vo.eos_id = EosFromDir(dir, md, t);
  vo.chat_template = ChatTemplateFromDir(dir);
  return WriteTiktokenVocab(t, w, vo).WithContext(path);
}

std::string DirName(const std::string& dir) {
  fs::path p(dir);
  if (p.filename().empty()) p = p.parent_path();
  return p.filename().string();
}

}  // namespace

int64_t LayerOf(std::string_view name, std::string_view* suffix) {
  *suffix = name;
  if (!name.starts_with("blk.")) return -1;
  const size_t dot = name.find('.', 4);
  if (dot == std::string_view::npos) return -1;
  int64_t layer = -1;
  auto [p, ec] = std::from_chars(name.data() + 4, name.data() + dot, layer);
  if (ec != std::errc() || p != name.data() + dot) return -1;
  *suffix = name.substr(dot + 1);
  return layer;
}

DType RowCompatibleType(DType want, int64_t cols) {
  if (Traits(want).block_size == 256 && cols % 256 != 0 && cols % 32 == 0) return DType::kQ8_0;
  return want;
}

Result<DType> ParseConvertType(std::string_view s) {
  const std::optional<DType> t = ParseDType(s);
  if (!t || !kernels::QuantizeSupports(*t)) {
    return InvalidArgument("unsupported output type '" + std::string(s) +
                           "' (choose f32, f16, bf16, q8_0, q4_0, q4_k, q5_k or q6_k)");
  }
  return *t;
}

Status WriteTiktokenVocab(const tokenizer::Tokenizer& tok, formats::GgufWriter& w, const VocabOptions& options) {
  if (tok.kind() != "tiktoken") {
    return InvalidArgument("a " + std::string(tok.kind()) +
                           " tokenizer cannot be written as a gpt2 vocabulary from tiktoken ranks");
  }
  const int32_t n = tok.vocab_size();
  const int64_t n_out = options.n_vocab > 0 ? options.n_vocab : n;
  if (n_out < n) {
    return InvalidArgument("vocabulary of " + std::to_string(n) + " tokens does not fit n_vocab " +
                           std::to_string(n_out));
  }
  struct Family {
    const char* pre;
    const char* eot;
    const char* eom;
    const char* pad;
  };
  Family f;
  if (tok.TokenId("<|header_start|>")) {  // Llama 4 (llama4.md 7.2)
    f = {"llama4", "<|eot|>", "<|eom|>", "<|finetune_right_pad|>"};
  } else if (tok.TokenId("<|start_header_id|>")) {  // Llama 3 (llama4.md 10.3)
    f = {"llama-bpe", "<|eot_id|>", "<|eom_id|>", "<|finetune_right_pad_id|>"};
  } else {
    return NotSupported("tiktoken tokenizer with an unknown special-token layout (neither Llama 3 nor Llama 4)");
  }

  // Raw bytes of every normal token, and their ranks (= ids).
  std::vector<std::string> raw(static_cast<size_t>(n));
  std::unordered_map<std::string_view, int32_t> rank;
  rank.reserve(static_cast<size_t>(n));
  std::vector<std::string> tokens;
  std::vector<int32_t> types;
  tokens.reserve(static_cast<size_t>(n_out));
  types.reserve(static_cast<size_t>(n_out));
  for (int32_t id = 0; id < n; ++id) {
    if (tok.IsSpecial(id)) {
      tokens.push_back(tok.TokenBytes(id));
      types.push_back(3);  // CONTROL
    } else {
      raw[id] = tok.TokenBytes(id);
      rank.emplace(raw[id], id);
      tokens.push_back(tokenizer::ByteLevelSpelling(raw[id]));
      types.push_back(1);  // NORMAL
    }
  }
  for (int64_t id = n; id < n_out; ++id) {
    tokens.push_back("[PAD" + std::to_string(id) + "]");
    types.push_back(5);  // UNUSED
  }
  std::vector<std::string> merges;
  for (int32_t id = 0; id < n; ++id) {
    if (tok.IsSpecial(id) || raw[id].size() < 2) continue;
    const auto [l, r] = LastMerge(raw[id], id, rank);
    if (l >= 0) merges.push_back(tokens[l] + " " + tokens[r]);
  }

  w.AddString("tokenizer.ggml.model", "gpt2");
  w.AddString("tokenizer.ggml.pre", f.pre);
  w.AddStringArray("tokenizer.ggml.tokens", tokens);
  w.AddInt32Array("tokenizer.ggml.token_type", types);
  w.AddStringArray("tokenizer.ggml.merges", merges);
  if (auto bos = tok.bos_id()) w.AddUint32("tokenizer.ggml.bos_token_id", static_cast<uint32_t>(*bos));
  const std::optional<int32_t> eos = options.eos_id ? options.eos_id : tok.eos_id();
  if (eos) w.AddUint32("tokenizer.ggml.eos_token_id", static_cast<uint32_t>(*eos));
  // llama.cpp does not recognise <|eot|> / <|eom|> by name (llama4.md 8.5): give it their ids.
  if (auto id = tok.TokenId(f.eot)) w.AddUint32("tokenizer.ggml.eot_token_id", static_cast<uint32_t>(*id));
  if (auto id = tok.TokenId(f.eom)) w.AddUint32("tokenizer.ggml.eom_token_id", static_cast<uint32_t>(*id));
  if (auto id = tok.TokenId(f.pad)) w.AddUint32("tokenizer.ggml.padding_token_id", static_cast<uint32_t>(*id));
  w.AddBool("tokenizer.ggml.add_bos_token", true);
  w.AddBool("tokenizer.ggml.add_eos_token", false);
  if (!options.chat_template.empty()) w.AddString("tokenizer.chat_template", options.chat_template);
  return Status::Ok();
}

Status ConvertToGguf(const ConvertOptions& options) {
  const Note note = options.on_note
                        ? options.on_note
                        : Note([](const std::string& s) { std::fprintf(stderr, "herd: note: %s\n", s.c_str()); });
  if (options.output.empty()) return InvalidArgument("no output file given");
  if (options.type && !kernels::QuantizeSupports(*options.type)) {
    return InvalidArgument("unsupported output type " + std::string(DTypeName(*options.type)) +
                           " (choose F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q5_K or Q6_K)");
  }
  std::error_code ec;
  if (!fs::exists(options.input, ec)) return IOError(options.input + ": no such file or directory");
  if (!fs::is_directory(options.input, ec)) {
    return InvalidArgument(options.input +
                           ": herd convert reads a Hugging Face directory (config.json + safetensors), not a file");
  }

  formats::OpenOptions oo;
  oo.show_progress = options.show_progress;
  HERD_ASSIGN_OR_RETURN(formats::ModelFiles files, formats::OpenModelFiles(options.input, oo));
  HERD_RETURN_IF_ERROR(CheckOutputPath(options.output, files.sources));
  HERD_ASSIGN_OR_RETURN(model::ModelConfig c, model::ConfigFromMetadata(files.metadata));
  // Bind the model as `herd run` would: every tensor present, with the right shape and dtype, none left over.
  HERD_RETURN_IF_ERROR(model::CreateModel(c, files.weights).status());
  // HF Llama 1-3 store Q/K rows for rotate_half; GGUF wants Meta's interleaved order (llama4.md 10.2).
  const bool unpermute = c.rope_style == kernels::RopeStyle::kHalfSplit;
  const int64_t hd = c.head_dim;

  std::vector<OutTensor> out;
  for (const auto& [name, v] : files.weights.tensors()) {
    if (!IsSourceDType(v.dtype)) {
      return NotSupported("tensor '" + name + "' (" + std::string(v.source) + ") has dtype " +
                          std::string(DTypeName(v.dtype)) + "; herd convert reads F32, F16 and BF16 checkpoints");
    }
    std::string_view suffix;
    const int64_t layer = LayerOf(name, &suffix);
    const std::string blk = "blk." + std::to_string(layer) + ".";
    std::vector<int64_t> shape(v.shape.begin(), v.shape.begin() + v.n_dims);
    if (suffix == "ffn_gate_up_exps_im.weight") {  // [E, D, 2F] -> gate, up [E, F, D]
      const int64_t f = shape[2] / 2;
      out.push_back({blk + "ffn_gate_exps.weight", v.dtype, {shape[0], f, shape[1]}, v, TransposedExperts(v, 0, f)});
      out.push_back({blk + "ffn_up_exps.weight", v.dtype, {shape[0], f, shape[1]}, v, TransposedExperts(v, f, f)});
    } else if (suffix == "ffn_down_exps_im.weight") {  // [E, F, D] -> [E, D, F]
      out.push_back({blk + "ffn_down_exps.weight",
                     v.dtype,
                     {shape[0], shape[2], shape[1]},
                     v,
                     TransposedExperts(v, 0, shape[2])});
    } else if (unpermute && (suffix == "attn_q.weight" || suffix == "attn_k.weight")) {
      // Per head: GGUF row 2i + s <- HF row s * hd/2 + i (llama.cpp LlamaModel.permute).
      auto perm = [hd](int64_t r) {
        const int64_t h = r / hd, j = r % hd;
        return h * hd + (j % 2) * (hd / 2) + j / 2;
      };
      out.push_back({name, v.dtype, shape, v, SourceRows(v, perm)});
    } else {
      out.push_back({name, v.dtype, shape, v, nullptr});
    }
  }
  std::sort(out.begin(), out.end(),
            [](const OutTensor& a, const OutTensor& b) { return SortKey(a.name) < SortKey(b.name); });

  formats::GgufWriter w;
  DType main_type = options.type.value_or(DType::kF32);
  if (!options.type) {
    if (const TensorView* e = files.weights.Find("token_embd.weight")) main_type = e->dtype;
  }
  model::ModelConfig written = c;
  written.name = options.name.empty() ? DirName(options.input) : options.name;
  written.rope_style = kernels::RopeStyle::kInterleaved;  // the Q/K rows are unpermuted below
  HERD_RETURN_IF_ERROR(AddModelToGguf(written, main_type, w, note));
  // The <|patch|> id of a multimodal checkpoint (llama4.md 9.7), for files without a vocabulary (llama.cpp finds
  // the token by name).
  HERD_ASSIGN_OR_RETURN(std::optional<int64_t> image_token, files.metadata.Int("image_token_index"));
  if (image_token) {
    if (*image_token < 0 || *image_token >= c.vocab_size) {
      return Corruption(files.metadata.Where("image_token_index") + ": image_token_index " +
                        std::to_string(*image_token) + " is outside the vocabulary");
    }
    w.AddUint32("herd.image_token_index", static_cast<uint32_t>(*image_token));
  }
  HERD_RETURN_IF_ERROR(AddTokenizer(options.input, files.metadata, c, w, note));
  for (OutTensor& t : out) {
    t.dtype = ChooseType(t.name, t.shape, t.source.dtype, options.type, note);
    if (!t.fill && t.dtype == t.source.dtype) {
      HERD_RETURN_IF_ERROR(w.AddTensor(t.name, t.source));  // byte copy
    } else {
      HERD_RETURN_IF_ERROR(w.AddTensor(t.name, t.dtype, t.shape, MakeProducer(t)));
    }
  }
  return w.Write(options.output, options.show_progress ? "convert" : "", files.sources);
}

}  // namespace herd::tools
