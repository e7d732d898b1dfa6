#include "runtime/structured.h"

#include "grammar/json_schema.h"

namespace herd::runtime {

Result<std::shared_ptr<const grammar::TokenVocab>> MakeGrammarVocab(const LoadedModel& m) {
  if (m.tokenizer == nullptr) return InvalidArgument("a grammar needs the model's tokenizer, and this model has none");
  const auto vocab = static_cast<int32_t>(m.model->config().vocab_size);
  const int32_t tok_size = m.tokenizer->vocab_size();
  std::vector<std::string> bytes(static_cast<size_t>(vocab));
  for (int32_t id = 0; id < vocab && id < tok_size; ++id) {
    if (!m.tokenizer->IsSpecial(id)) bytes[id] = m.tokenizer->TokenBytes(id);
  }
  std::vector<int32_t> ends;
  for (int32_t id : m.stop_ids) {
    if (id >= 0 && id < vocab) ends.push_back(id);
  }
  return grammar::TokenVocab::Build(bytes, std::move(ends));
}

Result<std::string> GrammarText(GrammarKind kind, std::string_view text) {
  switch (kind) {
    case GrammarKind::kGbnf:
      return std::string(text);
    case GrammarKind::kJsonSchema:
      return grammar::JsonSchemaToGbnf(text);
    case GrammarKind::kJsonObject:
      return grammar::JsonObjectGbnf();
  }
  return Internal("unknown grammar kind");
}

Result<std::shared_ptr<const grammar::CompiledGrammar>> GrammarCache::Get(GrammarKind kind, std::string_view text) {
  std::string key = std::to_string(static_cast<int>(kind)) + ":";
  if (kind != GrammarKind::kJsonObject) key += text;
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = entries_.begin(); it != entries_.end(); ++it) {
    if (it->first == key) {
      entries_.splice(entries_.begin(), entries_, it);
      return entries_.front().second;
    }
  }
  if (!vocab_) {
    HERD_ASSIGN_OR_RETURN(vocab_, MakeGrammarVocab(m_));
  }
  HERD_ASSIGN_OR_RETURN(std::string gbnf, GrammarText(kind, text));
  HERD_ASSIGN_OR_RETURN(std::shared_ptr<const grammar::Grammar> g, grammar::ParseGbnf(gbnf));
  auto compiled = std::make_shared<const grammar::CompiledGrammar>(std::move(g), vocab_);
  entries_.emplace_front(std::move(key), compiled);
  if (entries_.size() > capacity_) entries_.pop_back();
  return std::shared_ptr<const grammar::CompiledGrammar>(compiled);
}

}  // namespace herd::runtime
