// Special-token matching in input text (llama4.md 7.4: only when the caller allows it). Longest match at each
// position, so that a special whose text is a prefix of another never shadows it.
#include <algorithm>

#include "tokenizer/internal.h"

namespace herd::tokenizer::internal {

void SpecialMatcher::Add(std::string_view text, int32_t id) {
  if (text.empty() || !IsValidUtf8(text)) return;
  if (!by_text_.emplace(text, id).second) return;
  if (std::find(lengths_.begin(), lengths_.end(), text.size()) == lengths_.end()) {
    lengths_.push_back(text.size());
    std::sort(lengths_.begin(), lengths_.end(), std::greater<>());
  }
  first_byte_.set(static_cast<uint8_t>(text[0]));
}

std::optional<int32_t> SpecialMatcher::Find(std::string_view text) const {
  auto it = by_text_.find(text);
  if (it == by_text_.end()) return std::nullopt;
  return it->second;
}

bool SpecialMatcher::MatchAt(std::string_view text, size_t pos, int32_t* id, size_t* len) const {
  if (!first_byte_.test(static_cast<uint8_t>(text[pos]))) return false;
  // Specials are valid UTF-8, so a match starting on a character boundary also ends on one; the check on the
  // start keeps a special from being found inside a multibyte character.
  if ((static_cast<uint8_t>(text[pos]) & 0xC0) == 0x80) return false;
  const size_t left = text.size() - pos;
  for (size_t l : lengths_) {
    if (l > left) continue;
    auto it = by_text_.find(text.substr(pos, l));
    if (it != by_text_.end()) {
      *id = it->second;
      *len = l;
      return true;
    }
  }
  return false;
}

}  // namespace herd::tokenizer::internal
