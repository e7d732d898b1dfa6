// Structured output: the grammars that constrain generation (a JSON Schema, any JSON object, or a GBNF grammar),
// compiled for a model's vocabulary and cached.
#pragma once

#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "core/status.h"
#include "grammar/grammar.h"
#include "runtime/engine.h"

namespace herd::runtime {

enum class GrammarKind {
  kGbnf,        // llama.cpp's grammar syntax
  kJsonSchema,  // a JSON Schema (grammar/json_schema.h says which keywords)
  kJsonObject,  // any JSON object (OpenAI's response_format json_object)
};

// The vocabulary of `m` as bytes for grammar masks: its tokenizer's tokens, special tokens never allowed, ids past
// the tokenizer's up to the model's vocabulary size never allowed, and m.stop_ids as the ends. FailedPrecondition-like
// InvalidArgument when the model has no tokenizer.
Result<std::shared_ptr<const grammar::TokenVocab>> MakeGrammarVocab(const LoadedModel& m);

// Compiled grammars by (kind, text), most recently used kept (thread-safe); the vocabulary is made on first use.
class GrammarCache {
 public:
  explicit GrammarCache(const LoadedModel& m, size_t capacity = 16) : m_(m), capacity_(capacity) {}
  // InvalidArgument naming the problem for a schema or grammar that cannot be compiled.
  Result<std::shared_ptr<const grammar::CompiledGrammar>> Get(GrammarKind kind, std::string_view text);

 private:
  const LoadedModel& m_;
  size_t capacity_;
  std::mutex mu_;
  std::shared_ptr<const grammar::TokenVocab> vocab_;
  std::list<std::pair<std::string, std::shared_ptr<const grammar::CompiledGrammar>>> entries_;  // most recent first
};

// The GBNF text of `kind` and `text` (a schema is compiled; kJsonObject ignores `text`).
Result<std::string> GrammarText(GrammarKind kind, std::string_view text);

}  // namespace herd::runtime
