// VocabTokenizer: decoding, lookups and special-token bookkeeping shared by every tokenizer kind.
#include "tokenizer/vocab.h"

namespace herd::tokenizer::internal {

VocabTokenizer::VocabTokenizer(VocabData vocab, SpecialIds ids) : vocab_(std::move(vocab)), ids_(std::move(ids)) {
  by_text_.reserve(static_cast<size_t>(vocab_.size()));
  for (int32_t id = 0; id < vocab_.size(); ++id) {
    by_text_.emplace(vocab_.Text(id), id);
    if (IsSpecialType(vocab_.types[id])) specials_.Add(vocab_.Text(id), id);
  }
  auto add_stop = [&](std::optional<int32_t> id) {
    if (id && InRange(*id) && std::find(stop_ids_.begin(), stop_ids_.end(), *id) == stop_ids_.end()) {
      stop_ids_.push_back(*id);
    }
  };
  add_stop(ids_.eos);
  for (int32_t id : ids_.extra_stops) add_stop(id);
  // End-of-turn / end-of-message tokens of Llama 3 (llama4.md 10.3) and Llama 4 (llama4.md 8.5).
  // <|end_of_text|> too: a GGUF may name <|eot|> as its EOS, and generation must still stop at end of text.
  for (const char* name : {"<|eot|>", "<|eom|>", "<|eot_id|>", "<|eom_id|>", "<|end_of_text|>"}) {
    add_stop(specials_.Find(name));
  }
}

std::string VocabTokenizer::TokenBytes(int32_t id) const {
  std::string out;
  if (!InRange(id)) return out;
  if (IsSpecialType(vocab_.types[id])) {
    out.assign(vocab_.Text(id));
  } else {
    AppendBytes(id, &out);
  }
  return out;
}

std::string VocabTokenizer::Decode(std::span<const int32_t> ids, bool skip_special) const {
  std::string out;
  bool at_start = true;  // nothing but BOS so far: SentencePiece drops the dummy-prefix space here
  const bool strip = StripsFirstSpace();
  for (int32_t id : ids) {
    if (!InRange(id)) continue;
    if (IsSpecialType(vocab_.types[id])) {
      if (!skip_special) out.append(vocab_.Text(id));
      if (!(ids_.bos && id == *ids_.bos)) at_start = false;
      continue;
    }
    const size_t before = out.size();
    AppendBytes(id, &out);
    if (out.size() == before) continue;
    if (at_start && strip && out[before] == ' ') out.erase(before, 1);
    at_start = false;
  }
  return out;
}

std::optional<int32_t> VocabTokenizer::TokenId(std::string_view piece) const {
  if (auto s = specials_.Find(piece)) return s;
  auto it = by_text_.find(piece);
  if (it == by_text_.end()) return std::nullopt;
  return it->second;
}

}  // namespace herd::tokenizer::internal
