// UTF-8 validation and repair, and the GPT-2 byte-level alphabet (llama4.md section 7.5). The validator follows
// Unicode 15 table 3-7 exactly (no overlongs, no surrogates, nothing above U+10FFFF), because PCRE2 is run with
// PCRE2_NO_UTF_CHECK on what it accepts.
#include <array>

#include "tokenizer/internal.h"

namespace herd::tokenizer::internal {

Utf8Step NextUtf8(std::string_view s) {
  const auto* p = reinterpret_cast<const uint8_t*>(s.data());
  const size_t n = s.size();
  const uint8_t b0 = p[0];
  if (b0 < 0x80) return {1, true, false};
  size_t need;                   // continuation bytes after the lead byte
  uint8_t lo = 0x80, hi = 0xBF;  // allowed range of the second byte (table 3-7)
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    need = 1;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    need = 2;
    if (b0 == 0xE0) lo = 0xA0;  // overlong
    if (b0 == 0xED) hi = 0x9F;  // surrogates
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    need = 3;
    if (b0 == 0xF0) lo = 0x90;  // overlong
    if (b0 == 0xF4) hi = 0x8F;  // above U+10FFFF
  } else {
    return {1, false, false};  // 0x80..0xC1, 0xF5..0xFF never start a character
  }
  for (size_t k = 1; k <= need; ++k) {
    if (k >= n) return {k, false, true};
    const uint8_t b = p[k];
    const uint8_t klo = k == 1 ? lo : 0x80;
    const uint8_t khi = k == 1 ? hi : 0xBF;
    if (b < klo || b > khi) return {k, false, false};
  }
  return {need + 1, true, false};
}

bool IsValidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    // ASCII runs are the common case; skip them without the table logic.
    if (static_cast<uint8_t>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    const Utf8Step st = NextUtf8(s.substr(i));
    if (!st.valid) return false;
    i += st.len;
  }
  return true;
}

std::string SanitizeUtf8(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 8);
  size_t i = 0;
  while (i < s.size()) {
    const Utf8Step st = NextUtf8(s.substr(i));
    if (st.valid) {
      out.append(s.data() + i, st.len);
    } else {
      out.append(kReplacement);
    }
    i += st.len;
  }
  return out;
}

size_t Utf8EmittablePrefix(std::string_view s) {
  // Only the last (at most 3) bytes can be the start of an unfinished character.
  const size_t start = s.size() > 3 ? s.size() - 3 : 0;
  for (size_t i = start; i < s.size(); ++i) {
    const uint8_t b = static_cast<uint8_t>(s[i]);
    if (b < 0xC2 || b > 0xF4) continue;  // not a lead byte of a multibyte character
    const Utf8Step st = NextUtf8(s.substr(i));
    if (st.truncated) return i;
  }
  return s.size();
}

namespace {

struct ByteLevelTables {
  std::array<std::string, 256> to_unicode;
  std::array<int16_t, 324> from_code_point;  // code points 0..323 cover the whole alphabet; -1: not in it
};

const ByteLevelTables& Tables() {
  static const ByteLevelTables t = [] {
    ByteLevelTables r;
    r.from_code_point.fill(-1);
    // Printable bytes keep their own code point; the other 68, in increasing order, map to 256, 257, ...
    uint32_t next = 256;
    for (uint32_t b = 0; b < 256; ++b) {
      const bool keep = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      const uint32_t cp = keep ? b : next++;
      std::string u;
      if (cp < 0x80) {
        u.push_back(static_cast<char>(cp));
      } else {
        u.push_back(static_cast<char>(0xC0 | (cp >> 6)));
        u.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
      }
      r.to_unicode[b] = u;
      r.from_code_point[cp] = static_cast<int16_t>(b);
    }
    return r;
  }();
  return t;
}

}  // namespace

std::string_view ByteToUnicode(uint8_t b) { return Tables().to_unicode[b]; }

bool ByteLevelDecode(std::string_view s, std::string* out) {
  const ByteLevelTables& t = Tables();
  out->clear();
  size_t i = 0;
  while (i < s.size()) {
    const uint8_t b0 = static_cast<uint8_t>(s[i]);
    uint32_t cp;
    if (b0 < 0x80) {
      cp = b0;
      i += 1;
    } else if ((b0 & 0xE0) == 0xC0 && i + 1 < s.size() && (static_cast<uint8_t>(s[i + 1]) & 0xC0) == 0x80) {
      cp = ((b0 & 0x1Fu) << 6) | (static_cast<uint8_t>(s[i + 1]) & 0x3Fu);
      i += 2;
    } else {
      return false;  // the alphabet only uses code points below U+0800
    }
    if (cp >= t.from_code_point.size() || t.from_code_point[cp] < 0) return false;
    out->push_back(static_cast<char>(t.from_code_point[cp]));
  }
  return true;
}

std::string ByteLevelEncode(std::string_view raw) {
  std::string out;
  out.reserve(raw.size() * 2);
  for (char c : raw) out.append(ByteToUnicode(static_cast<uint8_t>(c)));
  return out;
}

}  // namespace herd::tokenizer::internal

namespace herd::tokenizer {

std::string ByteLevelSpelling(std::string_view raw) { return internal::ByteLevelEncode(raw); }

}  // namespace herd::tokenizer
