// ModelMetadata: a model's hyperparameters as its files state them, in one neutral form whatever the file format,
// so that the model layer never sees GGUF keys, config.json or a llama2.c header (style.md section 2). Keys are
// Hugging Face config.json field names of the text model (llama4.md section 3: hidden_size, num_hidden_layers,
// no_rope_layers, ...); formats/ fills it from GGUF metadata, config.json or a llama2.c header and writes it back
// as GGUF keys, model/config.cpp turns it into a validated ModelConfig. Every entry remembers where it came from
// ("llama.block_count in m.gguf"), so that an error found later names what the user can see and fix.
//
// Keys beyond config.json's spelling:
//   model_type                 "llama" or "llama4" (HF "llama4_text" is "llama4"; GGUF general.architecture)
//   name                       general.name, or the directory name
//   rope_layout                "interleaved" (Meta order: GGUF, llama2.c, HF Llama 4) or "half_split" (HF Llama
//                              1-3 safetensors store Q/K rows for rotate_half; llama4.md 10.2)
//   rope_scaling.<field>       the fields of config.json's rope_scaling object (rope_type, factor, ...)
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/status.h"

namespace herd {

class ModelMetadata {
 public:
  // A JSON-like scalar or integer list. `Other` holds anything else a file may state (an object, a list that is not
  // all integers) as text, so that reading it as a number or list is an error naming it rather than a silent
  // absence.
  struct Null {};
  struct Other {
    std::string text;
  };
  using IntList = std::vector<int64_t>;
  using Value = std::variant<Null, bool, int64_t, double, std::string, IntList, Other>;
  struct Entry {
    Value value;
    std::string origin;  // "llama.block_count", "text_config.num_hidden_layers", "llama2.c header dim"
  };

  ModelMetadata() = default;
  // `source` names the file for messages ("m.gguf", "dir/config.json").
  explicit ModelMetadata(std::string source) : source_(std::move(source)) {}

  const std::string& source() const { return source_; }
  // Sets (or replaces) `key`; `origin` defaults to the key itself.
  void Set(std::string key, Value value, std::string origin = {});
  void Erase(std::string_view key);
  // nullptr when absent.
  const Entry* Find(std::string_view key) const;
  bool Contains(std::string_view key) const { return Find(key) != nullptr; }
  const std::map<std::string, Entry, std::less<>>& entries() const { return entries_; }

  // Typed reads: nullopt when the key is absent or null; Corruption naming the key, its origin and the value when
  // it has another type. Int accepts integers only (and doubles that are whole numbers), Number integers and
  // doubles, Bool booleans and numbers (non-zero is true: config.json's attn_temperature_tuning is 4 in Scout).
  Result<std::optional<int64_t>> Int(std::string_view key) const;
  Result<std::optional<double>> Number(std::string_view key) const;
  Result<std::optional<bool>> Bool(std::string_view key) const;
  Result<std::optional<std::string>> String(std::string_view key) const;
  Result<std::optional<IntList>> Ints(std::string_view key) const;
  // Present with the value null.
  bool IsNull(std::string_view key) const;

  // "num_hidden_layers (llama.block_count in m.gguf)", or "num_hidden_layers in SOURCE" when the key is absent or
  // its origin is its own name: how messages name a field.
  std::string Where(std::string_view key) const;
  // The value as config.json would spell it: 42, 1e-05, true, "llama", [1, 0, 1], null.
  static std::string ToString(const Value& v);

 private:
  Status WrongType(std::string_view key, const Entry& e, std::string_view want) const;
  std::string source_;
  std::map<std::string, Entry, std::less<>> entries_;
};

}  // namespace herd
