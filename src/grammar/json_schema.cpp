// JSON Schema -> GBNF (grammar/json_schema.h). The schema is compiled into a small expression tree per rule
// (Expr), checked as a grammar (no rule reachable from itself before reading a byte, every rule can finish), and
// rendered as text. Integer and number ranges are exact digit-by-digit grammars (IntRange, MagnitudeRange).
#include "grammar/json_schema.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace herd::grammar {
namespace {

using Json = nlohmann::ordered_json;

constexpr size_t kMaxGrammarBytes = size_t{1} << 20;
constexpr size_t kMaxRules = 10000;
constexpr int64_t kMaxCount = 10000;  // minItems, maxItems, minLength, maxLength
constexpr int kMaxSchemaDepth = 100;  // nested subschemas
constexpr int kMaxJsonDepth = 1000;   // nesting of the schema document itself, checked before any recursion
// The largest integer part a number may have: 16 digits (an unconstrained model cannot emit an endless number).
constexpr int kIntDigits = 16;
constexpr int64_t kMaxMagnitude = 9999999999999999;
constexpr int kFractionDigits = 16;
constexpr int kExponentDigits = 3;
// Bounds are clamped here before rounding: beyond the 16-digit range, far from int64 overflow.
constexpr int64_t kClamp = 100000000000000000;  // 1e17
// A trie of property names nests at most this deep in one rule before a new rule starts.
constexpr int kTrieDepthPerRule = 16;

// ---------------------------------------------------------------------------------------------------------------
// Expressions

struct Expr {
  enum class Kind { kLiteral, kClass, kRule, kSeq, kAlt, kRepeat };
  Kind kind = Kind::kSeq;
  std::string text;                                   // kLiteral: the bytes (UTF-8); kRule: the rule name
  std::vector<std::pair<uint32_t, uint32_t>> ranges;  // kClass: code point ranges
  bool negated = false;                               // kClass
  std::vector<Expr> items;                            // kSeq, kAlt; kRepeat: the one repeated item
  int min = 0, max = -1;                              // kRepeat; max -1: unbounded
};

Expr Empty() { return Expr{}; }  // an empty sequence: matches the empty string

Expr Lit(std::string bytes) {
  Expr e;
  e.kind = Expr::Kind::kLiteral;
  e.text = std::move(bytes);
  return e;
}

Expr Class(std::vector<std::pair<uint32_t, uint32_t>> ranges, bool negated = false) {
  Expr e;
  e.kind = Expr::Kind::kClass;
  e.ranges = std::move(ranges);
  e.negated = negated;
  return e;
}

Expr Ref(std::string name) {
  Expr e;
  e.kind = Expr::Kind::kRule;
  e.text = std::move(name);
  return e;
}

bool IsEmpty(const Expr& e) {
  return (e.kind == Expr::Kind::kSeq && e.items.empty()) || (e.kind == Expr::Kind::kLiteral && e.text.empty());
}

// Flattens nested sequences and joins adjacent literals.
Expr Seq(std::vector<Expr> parts) {
  Expr e;
  e.kind = Expr::Kind::kSeq;
  auto add = [&](Expr p) {
    if (p.kind == Expr::Kind::kLiteral && !e.items.empty() && e.items.back().kind == Expr::Kind::kLiteral) {
      e.items.back().text += p.text;
    } else {
      e.items.push_back(std::move(p));
    }
  };
  for (Expr& p : parts) {
    if (IsEmpty(p)) continue;
    if (p.kind == Expr::Kind::kSeq) {
      for (Expr& q : p.items) add(std::move(q));
    } else {
      add(std::move(p));
    }
  }
  if (e.items.size() == 1) return std::move(e.items[0]);
  return e;
}

// Flattens nested alternatives; `alts` must not be empty.
Expr Alt(std::vector<Expr> alts) {
  Expr e;
  e.kind = Expr::Kind::kAlt;
  for (Expr& a : alts) {
    if (a.kind == Expr::Kind::kAlt) {
      for (Expr& b : a.items) e.items.push_back(std::move(b));
    } else {
      e.items.push_back(std::move(a));
    }
  }
  if (e.items.size() == 1) return std::move(e.items[0]);
  return e;
}

Expr Repeat(Expr item, int min, int max) {
  if (max == 0) return Empty();
  if (min == 1 && max == 1) return item;
  Expr e;
  e.kind = Expr::Kind::kRepeat;
  e.min = min;
  e.max = max;
  e.items.push_back(std::move(item));
  return e;
}
Expr Opt(Expr item) { return Repeat(std::move(item), 0, 1); }
Expr Star(Expr item) { return Repeat(std::move(item), 0, -1); }

// A class of the given ASCII characters.
Expr CharSet(std::string_view chars) {
  std::vector<std::pair<uint32_t, uint32_t>> ranges;
  for (char c : chars) ranges.push_back({static_cast<uint32_t>(c), static_cast<uint32_t>(c)});
  return Class(std::move(ranges));
}

Expr Digit() { return Class({{'0', '9'}}); }
Expr Digits(int min, int max) { return Repeat(Digit(), min, max); }
Expr HexDigit() { return Class({{'0', '9'}, {'a', 'f'}, {'A', 'F'}}); }

// ---------------------------------------------------------------------------------------------------------------
// Rendering

void AppendHex(uint32_t v, int digits, std::string* out) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  for (int i = digits - 1; i >= 0; --i) out->push_back(kHex[(v >> (4 * i)) & 15]);
}

void AppendLiteral(const std::string& bytes, std::string* out) {
  out->push_back('"');
  for (unsigned char c : bytes) {
    switch (c) {
      case '"':
        *out += "\\\"";
        break;
      case '\\':
        *out += "\\\\";
        break;
      case '\n':
        *out += "\\n";
        break;
      case '\r':
        *out += "\\r";
        break;
      case '\t':
        *out += "\\t";
        break;
      default:
        if (c < 0x20 || c == 0x7F) {
          *out += "\\x";
          AppendHex(c, 2, out);
        } else {
          out->push_back(static_cast<char>(c));  // UTF-8 passes through: literals are code point sequences
        }
    }
  }
  out->push_back('"');
}

void AppendClassChar(uint32_t c, std::string* out) {
  if (c == '\\' || c == ']' || c == '[' || c == '-' || c == '^') {
    out->push_back('\\');
    out->push_back(static_cast<char>(c));
  } else if (c == '\n') {
    *out += "\\n";
  } else if (c == '\r') {
    *out += "\\r";
  } else if (c == '\t') {
    *out += "\\t";
  } else if (c < 0x20 || c == 0x7F) {
    *out += "\\x";
    AppendHex(c, 2, out);
  } else if (c < 0x80) {
    out->push_back(static_cast<char>(c));
  } else if (c <= 0xFFFF) {
    *out += "\\u";
    AppendHex(c, 4, out);
  } else {
    *out += "\\U";
    AppendHex(c, 8, out);
  }
}

// Precedence of the context an expression is rendered in: an alternative, an element of a sequence, or the
// operand of a repetition.
enum class Prec { kAlt, kSeq, kAtom };

size_t CountCodePoints(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

void Render(const Expr& e, Prec prec, std::string* out) {
  switch (e.kind) {
    case Expr::Kind::kLiteral:
      // A repeated literal of several characters is grouped, so that no reader can apply the repetition to its
      // last character only.
      if (prec == Prec::kAtom && CountCodePoints(e.text) > 1) {
        *out += '(';
        AppendLiteral(e.text, out);
        *out += ')';
      } else {
        AppendLiteral(e.text, out);
      }
      return;
    case Expr::Kind::kClass:
      *out += e.negated ? "[^" : "[";
      for (const auto& [lo, hi] : e.ranges) {
        AppendClassChar(lo, out);
        if (hi != lo) {
          out->push_back('-');
          AppendClassChar(hi, out);
        }
      }
      *out += ']';
      return;
    case Expr::Kind::kRule:
      *out += e.text;
      return;
    case Expr::Kind::kSeq: {
      if (e.items.empty()) {
        if (prec != Prec::kAlt) *out += "\"\"";
        return;
      }
      const bool group = prec == Prec::kAtom;
      if (group) *out += '(';
      for (size_t i = 0; i < e.items.size(); ++i) {
        if (i > 0) *out += ' ';
        Render(e.items[i], Prec::kSeq, out);
      }
      if (group) *out += ')';
      return;
    }
    case Expr::Kind::kAlt: {
      const bool group = prec != Prec::kAlt;
      if (group) *out += '(';
      for (size_t i = 0; i < e.items.size(); ++i) {
        if (i > 0) *out += IsEmpty(e.items[i - 1]) ? "| " : " | ";
        Render(e.items[i], Prec::kAlt, out);
      }
      if (group) *out += ')';
      return;
    }
    case Expr::Kind::kRepeat: {
      if (prec == Prec::kAtom) *out += '(';
      Render(e.items[0], Prec::kAtom, out);
      if (e.min == 0 && e.max == 1) {
        *out += '?';
      } else if (e.min == 0 && e.max < 0) {
        *out += '*';
      } else if (e.min == 1 && e.max < 0) {
        *out += '+';
      } else if (e.max < 0) {
        *out += '{' + std::to_string(e.min) + ",}";
      } else if (e.min == e.max) {
        *out += '{' + std::to_string(e.min) + '}';
      } else {
        *out += '{' + std::to_string(e.min) + ',' + std::to_string(e.max) + '}';
      }
      if (prec == Prec::kAtom) *out += ')';
      return;
    }
  }
}

std::string RenderBody(const Expr& e) {
  std::string s;
  Render(e, Prec::kAlt, &s);
  return s;
}

// ---------------------------------------------------------------------------------------------------------------
// Integer and number ranges

std::string Decimal(uint64_t v) { return std::to_string(v); }

uint64_t Pow10(int n) {
  uint64_t p = 1;
  for (int i = 0; i < n; ++i) p *= 10;
  return p;
}

int NumDigits(uint64_t v) { return static_cast<int>(Decimal(v).size()); }

// Digit strings of equal length n from x to y (x <= y as numbers), leading zeros part of the string.
Expr SameLengthRange(const std::string& x, const std::string& y) {
  if (x.empty()) return Empty();
  if (x == y) return Lit(x);
  if (x[0] == y[0]) return Seq({Lit(x.substr(0, 1)), SameLengthRange(x.substr(1), y.substr(1))});
  const size_t rest = x.size() - 1;
  const std::string x_rest = x.substr(1), y_rest = y.substr(1);
  const bool low_full = x_rest == std::string(rest, '0');
  const bool high_full = y_rest == std::string(rest, '9');
  const char lo_digit = low_full ? x[0] : static_cast<char>(x[0] + 1);
  const char hi_digit = high_full ? y[0] : static_cast<char>(y[0] - 1);
  std::vector<Expr> alts;
  if (!low_full) alts.push_back(Seq({Lit(x.substr(0, 1)), SameLengthRange(x_rest, std::string(rest, '9'))}));
  if (lo_digit <= hi_digit) {
    Expr lead = lo_digit == hi_digit ? Lit(std::string(1, lo_digit))
                                     : Class({{static_cast<uint32_t>(lo_digit), static_cast<uint32_t>(hi_digit)}});
    alts.push_back(Seq({std::move(lead), Digits(static_cast<int>(rest), static_cast<int>(rest))}));
  }
  if (!high_full) alts.push_back(Seq({Lit(y.substr(0, 1)), SameLengthRange(std::string(rest, '0'), y_rest)}));
  return Alt(std::move(alts));
}

// The decimal integers a..b (0 <= a <= b <= kMaxMagnitude) without leading zeros: by number of digits, the runs
// of lengths whose every number is in range as one `[1-9] [0-9]{m,n}`.
Expr UIntRange(uint64_t a, uint64_t b) {
  if (b < 10)
    return a == b ? Lit(Decimal(a)) : Class({{static_cast<uint32_t>('0' + a), static_cast<uint32_t>('0' + b)}});
  std::vector<Expr> alts;
  if (a == 0) {
    alts.push_back(Lit("0"));
    a = 1;
  }
  int full_from = 0, full_to = 0;
  auto flush_full = [&] {
    if (full_from == 0) return;
    alts.push_back(Seq({Class({{'1', '9'}}), Digits(full_from - 1, full_to - 1)}));
    full_from = full_to = 0;
  };
  for (int len = NumDigits(a); len <= NumDigits(b); ++len) {
    const uint64_t len_lo = Pow10(len - 1), len_hi = Pow10(len) - 1;
    const uint64_t x = std::max(a, len_lo), y = std::min(b, len_hi);
    if (x > y) continue;
    if (x == len_lo && y == len_hi) {
      if (full_from == 0) full_from = len;
      full_to = len;
      continue;
    }
    flush_full();
    alts.push_back(SameLengthRange(Decimal(x), Decimal(y)));
  }
  flush_full();
  return Alt(std::move(alts));
}

// The decimal integers lo..hi (-kMaxMagnitude <= lo <= hi <= kMaxMagnitude); no `-0`.
Expr IntRange(int64_t lo, int64_t hi) {
  std::vector<Expr> alts;
  if (lo < 0) {
    const uint64_t mag_lo = hi < 0 ? static_cast<uint64_t>(-hi) : 1, mag_hi = static_cast<uint64_t>(-lo);
    alts.push_back(Seq({Lit("-"), UIntRange(mag_lo, mag_hi)}));
  }
  if (hi >= 0) alts.push_back(UIntRange(static_cast<uint64_t>(std::max<int64_t>(lo, 0)), static_cast<uint64_t>(hi)));
  return Alt(std::move(alts));
}

Expr AnyFraction() { return Opt(Seq({Lit("."), Digits(1, kFractionDigits)})); }
Expr ZeroFraction() { return Opt(Seq({Lit("."), Repeat(Lit("0"), 1, kFractionDigits)})); }

// One bound of a range of magnitudes.
struct MagBound {
  uint64_t value = 0;
  bool exclusive = false;
};

// Decimal numbers (integer part, optional fraction) whose value m satisfies lo <(=) m <(=) hi, hi absent meaning
// the 16-digit limit; nullopt when none does. `fraction_nonzero` names the rule of 1-16 fraction digits that are
// not all zero.
std::optional<Expr> MagnitudeRange(MagBound lo, std::optional<MagBound> hi, const std::string& fraction_nonzero) {
  if (hi && hi->value < lo.value) return std::nullopt;
  if (hi && hi->value == lo.value) {
    if (lo.exclusive || hi->exclusive) return std::nullopt;
    return Seq({Lit(Decimal(lo.value)), ZeroFraction()});
  }
  std::vector<Expr> alts;
  uint64_t mid_from = lo.value;
  if (lo.exclusive) {
    alts.push_back(Seq({Lit(Decimal(lo.value) + "."), Ref(fraction_nonzero)}));
    ++mid_from;
  }
  const uint64_t mid_to = hi ? hi->value - 1 : static_cast<uint64_t>(kMaxMagnitude);
  if (mid_from <= mid_to) alts.push_back(Seq({UIntRange(mid_from, mid_to), AnyFraction()}));
  if (hi && !hi->exclusive) alts.push_back(Seq({Lit(Decimal(hi->value)), ZeroFraction()}));
  if (alts.empty()) return std::nullopt;
  return Alt(std::move(alts));
}

// ---------------------------------------------------------------------------------------------------------------
// String formats
//
// Each format is a subset of what it names, chosen so that every string produced passes the strict checkers
// (Python's datetime/ipaddress, IDNA, RFC 3986's grammar): where a format is wider than is practical to enforce
// exactly, the grammar produces a plain, common part of it. The shared rules (date, hostname, uri, ...) take their
// bodies from here; formats whose strings can be long also have shorter variants, for a schema's maxLength.

// The longest host name the `hostname` rule produces (the limit is 253).
constexpr int kHostnameMax = 251;
// The longest local part of an email address (RFC 5321).
constexpr int kEmailLocalMax = 64;
constexpr int kEmailMax = kEmailLocalMax + 1 + kHostnameMax;

Expr Alnum() { return Class({{'0', '9'}, {'A', 'Z'}, {'a', 'z'}}); }
Expr LdhChar() { return Class({{'-', '-'}, {'0', '9'}, {'A', 'Z'}, {'a', 'z'}}); }

// A host name label of 1..max_len (>= 1) letters, digits and hyphens that neither starts nor ends with a hyphen
// and does not have "--" as its 3rd and 4th characters (IDNA reserves those for A-labels such as xn--...).
Expr HostnameLabel(int max_len) {
  std::vector<Expr> rest;  // after the first character
  if (max_len >= 2) rest.push_back(Alnum());
  if (max_len >= 3) rest.push_back(Seq({LdhChar(), Alnum()}));
  if (max_len >= 4) rest.push_back(Seq({LdhChar(), LdhChar(), Alnum()}));
  if (max_len >= 5) {
    const Expr not_two_hyphens = Alt({Seq({Alnum(), LdhChar()}), Seq({Lit("-"), Alnum()})});
    rest.push_back(Seq({LdhChar(), not_two_hyphens, Repeat(LdhChar(), 0, max_len - 5), Alnum()}));
  }
  if (rest.empty()) return Alnum();
  return Seq({Alnum(), Opt(Alt(std::move(rest)))});
}

// Host names of at most max_len (>= 1) characters, by number of labels: one label of up to min(63, max_len)
// characters, two of up to min(63, (max_len - 1) / 2), three of up to min(63, (max_len - 2) / 3), or four to
// twelve of up to 20 (fewer and shorter as max_len requires). For the full rule (max_len 253): up to three labels
// of up to 63 characters (191), or up to twelve of up to 20 (251).
Expr HostnameBody(int max_len) {
  auto label = [](int m) { return m == 63 ? Ref("hostname-label") : HostnameLabel(m); };
  auto labels = [&](int m, int min_count, int max_count) {
    return Seq({label(m), Repeat(Seq({Lit("."), label(m)}), min_count - 1, max_count - 1)});
  };
  std::vector<Expr> alts = {label(std::min(63, max_len))};
  const int two = std::min(63, (max_len - 1) / 2), three = std::min(63, (max_len - 2) / 3);
  if (two >= 1 && two == three) {
    alts.push_back(labels(two, 2, 3));
  } else {
    if (two >= 1) alts.push_back(labels(two, 2, 2));
    if (three >= 1) alts.push_back(labels(three, 3, 3));
  }
  const int b = std::min(20, (max_len + 1) / 4 - 1);
  const int c = b >= 1 ? std::min(12, (max_len + 1) / (b + 1)) : 0;  // the most labels of length b that fit
  if (c >= 4) alts.push_back(labels(b, 4, c));
  return Alt(std::move(alts));
}
Expr Hostname(int max_len) { return max_len >= kHostnameMax ? Ref("hostname") : HostnameBody(max_len); }

// The local part of an email address, at most max_len (>= 1) characters: one atom of RFC 5321 atext up to
// min(64, max_len) characters, or two to four dot-separated atoms of up to min(15, (max_len - 3) / 4) each.
Expr EmailLocal(int max_len) {
  const Expr atext = Class({{'!', '!'},
                            {'#', '\''},
                            {'*', '+'},
                            {'-', '-'},
                            {'/', '9'},
                            {'=', '='},
                            {'?', '?'},
                            {'A', 'Z'},
                            {'^', '~'}});  // A-Za-z0-9 ! # $ % & ' * + - / = ? ^ _ ` { | } ~
  std::vector<Expr> alts = {Repeat(atext, 1, std::min(kEmailLocalMax, max_len))};
  const int k = std::min(15, (max_len - 3) / 4);
  if (k >= 1) alts.push_back(Seq({Repeat(atext, 1, k), Repeat(Seq({Lit("."), Repeat(atext, 1, k)}), 1, 3)}));
  return Alt(std::move(alts));
}

// Email addresses of at most max_len (>= 3) characters: local part "@" host name.
Expr EmailBody(int max_len) {
  if (max_len >= kEmailMax) return Seq({EmailLocal(kEmailLocalMax), Lit("@"), Ref("hostname")});
  const int local = std::min(kEmailLocalMax, std::max(1, (max_len - 1) / 3));
  return Seq({EmailLocal(local), Lit("@"), Hostname(max_len - 1 - local)});
}

// RFC 3986 pchar as one character (unreserved, sub-delims, ":", "@"), plus `extra`; no percent escapes.
Expr UriCharClass(std::string_view extra) {
  std::vector<std::pair<uint32_t, uint32_t>> ranges = {{'0', '9'}, {'A', 'Z'}, {'a', 'z'}};
  auto add = [&](std::string_view chars) {
    for (char c : chars) ranges.push_back({static_cast<uint32_t>(c), static_cast<uint32_t>(c)});
  };
  add("-._~!$&'()*+,;=:@");
  add(extra);
  return Class(std::move(ranges));
}
// pchar with percent escapes, plus `extra`.
Expr UriChar(std::string_view extra) { return Alt({UriCharClass(extra), Seq({Lit("%"), HexDigit(), HexDigit()})}); }
Expr UriScheme(int max_len) {  // max_len -1: unbounded
  const Expr rest = Class({{'+', '+'}, {'-', '.'}, {'0', '9'}, {'A', 'Z'}, {'a', 'z'}});
  return Seq({Class({{'A', 'Z'}, {'a', 'z'}}), max_len < 0 ? Star(rest) : Repeat(rest, 0, max_len - 1)});
}

// Absolute URIs with an authority: scheme "://" host-name [":" port] path-abempty ["?" query] ["#" fragment].
Expr UriBody() {
  const Expr port = Opt(Seq({Lit(":"), Digits(1, 5)}));
  const Expr path = Star(Seq({Lit("/"), Star(UriChar(""))}));
  return Seq({UriScheme(-1), Lit("://"), Ref("hostname"), port, path, Opt(Seq({Lit("?"), Star(UriChar("/?"))})),
              Opt(Seq({Lit("#"), Star(UriChar("/?"))}))});
}

// The same shape within max_len (>= 5) characters, every part given a share: a scheme of up to half the length
// (16 at most), a host name of up to half of the rest, a port when there is room, then a path, a query and a
// fragment of single characters (no percent escapes).
Expr ShortUriBody(int max_len) {
  const int scheme = std::clamp((max_len - 4) / 2, 1, 16);
  int rest = max_len - 3 - scheme;
  const int host = std::clamp(rest / 2, 1, kHostnameMax);
  rest -= host;
  std::vector<Expr> parts = {UriScheme(scheme), Lit("://"), Hostname(host)};
  if (rest >= 12) {
    parts.push_back(Opt(Seq({Lit(":"), Digits(1, 5)})));
    rest -= 6;
  }
  const int path = rest / 2, query = rest / 4, fragment = rest - path - query;
  if (path >= 1) parts.push_back(Opt(Seq({Lit("/"), Repeat(UriCharClass("/"), 0, path - 1)})));
  if (query >= 1) parts.push_back(Opt(Seq({Lit("?"), Repeat(UriCharClass("/?"), 0, query - 1)})));
  if (fragment >= 1) parts.push_back(Opt(Seq({Lit("#"), Repeat(UriCharClass("/?"), 0, fragment - 1)})));
  return Seq(std::move(parts));
}

// IPv6 addresses: eight groups of 1-4 hex digits, or fewer with one "::" standing for at least one zero group
// (no embedded IPv4, no zone).
Expr Ipv6Body() {
  const Expr h16 = Repeat(HexDigit(), 1, 4);
  auto after_gap = [&](int n) {  // up to n groups after "::"
    return n == 0 ? Empty() : Opt(Seq({h16, Repeat(Seq({Lit(":"), h16}), 0, n - 1)}));
  };
  Expr tail = Empty();  // after k groups and no "::" yet, from k = 8 down to 1
  for (int k = 7; k >= 1; --k) tail = Seq({Lit(":"), Alt({Seq({h16, tail}), Seq({Lit(":"), after_gap(7 - k)})})});
  return Alt({Seq({Lit("::"), after_gap(7)}), Seq({h16, tail})});
}

// Calendar dates YYYY-MM-DD, years 0001-9999 (Python's date has no year 0), the days of each month, February 29
// in leap years only.
Expr DateBody() {
  const Expr d = Digit(), nz = Class({{'1', '9'}});
  const Expr year =
      Alt({Seq({Lit("000"), nz}), Seq({Lit("00"), nz, d}), Seq({Lit("0"), nz, d, d}), Seq({nz, d, d, d})});
  // The multiples of 4 from 04 to 96; a leap year ends in one (and is not divisible by 100), or is one followed by
  // 00 (divisible by 400; 0000 is not a year).
  const Expr mult4 = Alt({Seq({CharSet("02468"), CharSet("48")}), Seq({CharSet("13579"), CharSet("26")}),
                          Seq({CharSet("2468"), Lit("0")})});
  const Expr leap_year = Alt({Seq({d, d, mult4}), Seq({mult4, Lit("00")})});
  const Expr day_1_to_9 = Seq({Lit("0"), nz});
  const Expr month_day =
      Alt({Seq({Alt({Seq({Lit("0"), CharSet("13578")}), Seq({Lit("1"), CharSet("02")})}), Lit("-"),
                Alt({day_1_to_9, Seq({CharSet("12"), d}), Seq({Lit("3"), CharSet("01")})})}),
           Seq({Alt({Seq({Lit("0"), CharSet("469")}), Lit("11")}), Lit("-"),
                Alt({day_1_to_9, Seq({CharSet("12"), d}), Lit("30")})}),
           Seq({Lit("02-"), Alt({day_1_to_9, Seq({Lit("1"), d}), Seq({Lit("2"), Class({{'0', '8'}})})})})});
  return Alt({Seq({year, Lit("-"), month_day}), Seq({leap_year, Lit("-02-29")})});
}

// JSON pointers (RFC 6901): "/"-prefixed tokens of any characters but "~" and "/", which are written ~0 and ~1.
// Characters JSON would escape (", \, controls) are left out.
Expr JsonPointerBody() {
  const Expr token_char =
      Alt({Class({{'"', '"'}, {'\\', '\\'}, {0x00, 0x1F}, {'/', '/'}, {'~', '~'}}, /*negated=*/true),
           Seq({Lit("~"), CharSet("01")})});
  return Star(Seq({Lit("/"), Star(token_char)}));
}

// Regular expressions (as Python's re and ECMA 262 both read them) from a small safe part of the syntax: literal
// letters, digits, space, "_" and "-", ".", classes of letters, digits and "_" without ranges, the escapes
// \d \D \w \W \s \S, each atom with at most one of * + ?, alternatives with |, groups one level deep, and
// optional ^ and $ anchors around the whole.
Expr RegexSimpleAtom() {
  return Alt({Class({{' ', ' '}, {'-', '.'}, {'0', '9'}, {'A', 'Z'}, {'_', '_'}, {'a', 'z'}}),
              Seq({Lit("["), Repeat(Class({{'0', '9'}, {'A', 'Z'}, {'_', '_'}, {'a', 'z'}}), 1, -1), Lit("]")}),
              Seq({Lit("\\\\"), CharSet("dDwWsS")})});  // the JSON text \\d is the regex \d
}
Expr RegexAlternatives(const Expr& atom) {
  const Expr branch = Star(Seq({atom, Opt(CharSet("*+?"))}));
  return Seq({branch, Star(Seq({Lit("|"), branch}))});
}

// ---------------------------------------------------------------------------------------------------------------
// Schema helpers

// Keyword lists (constant, trivially destructible).
constexpr std::string_view kAnnotations[] = {"title",         "description", "$schema",    "$id",      "$comment",
                                             "default",       "examples",    "deprecated", "readOnly", "writeOnly",
                                             "discriminator", "$defs",       "definitions"};
// clang-format off
constexpr std::string_view kRefused[] = {
    "not", "if", "then", "else", "patternProperties", "dependentRequired", "dependentSchemas", "dependencies",
    "propertyNames", "unevaluatedProperties", "unevaluatedItems", "contains", "minContains", "maxContains",
    "multipleOf", "minProperties", "maxProperties", "pattern", "$anchor", "$dynamicRef", "$dynamicAnchor",
    "$recursiveRef", "$recursiveAnchor"};
// clang-format on
constexpr std::string_view kObjectKeywords[] = {"properties", "required", "additionalProperties"};
constexpr std::string_view kArrayKeywords[] = {"items", "prefixItems", "minItems", "maxItems", "uniqueItems"};
constexpr std::string_view kStringKeywords[] = {"minLength", "maxLength", "format"};
constexpr std::string_view kNumberKeywords[] = {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"};
constexpr std::string_view kGeneralKeywords[] = {"type", "enum", "const", "anyOf", "oneOf", "allOf", "$ref"};
constexpr std::string_view kTypeNames[] = {"null", "boolean", "object", "array", "number", "integer", "string"};

// The shared rules, in the order they are emitted.
// clang-format off
constexpr std::string_view kPrimitives[] = {
    "value", "object", "member", "array", "string", "char", "number", "integer", "fraction-nonzero", "boolean",
    "null", "date", "time", "date-time", "uuid", "ipv4", "ipv6", "hostname", "hostname-label", "email", "uri",
    "json-pointer", "relative-json-pointer", "regex", "regex-atom", "ws"};
// clang-format on

// The string formats the grammar enforces: the shared rule of each, the shortest and longest string it produces
// (-1: no limit), and whether a shorter variant is made for a smaller maxLength.
struct Format {
  std::string_view name, rule;
  int64_t min_length, max_length;
  bool shortens = false;
};
constexpr Format kFormats[] = {{"date", "date", 10, 10},
                               {"time", "time", 9, 24},
                               {"date-time", "date-time", 20, 35},
                               {"uuid", "uuid", 36, 36},
                               {"ipv4", "ipv4", 7, 15},
                               {"ipv6", "ipv6", 2, 39},
                               {"hostname", "hostname", 1, kHostnameMax, true},
                               {"idn-hostname", "hostname", 1, kHostnameMax, true},
                               {"email", "email", 3, kEmailMax, true},
                               {"idn-email", "email", 3, kEmailMax, true},
                               {"uri", "uri", 5, -1, true},
                               {"uri-reference", "uri", 5, -1, true},
                               {"iri", "uri", 5, -1, true},
                               {"iri-reference", "uri", 5, -1, true},
                               {"json-pointer", "json-pointer", 0, -1},
                               {"relative-json-pointer", "relative-json-pointer", 1, -1},
                               {"regex", "regex", 0, -1}};

// The variant of a shortening format's rule whose strings have at most max_len characters (at least the rule's
// shortest).
Expr ShortFormatBody(std::string_view rule, int max_len) {
  if (rule == "hostname") return HostnameBody(max_len);
  if (rule == "email") return EmailBody(max_len);
  HERD_CHECK(rule == "uri");
  return ShortUriBody(max_len);
}

template <size_t N>
bool In(const std::string_view (&list)[N], std::string_view word) {
  return std::find(std::begin(list), std::end(list), word) != std::end(list);
}

std::string EscapePointerToken(const std::string& token) {
  std::string out;
  for (char c : token) {
    if (c == '~') {
      out += "~0";
    } else if (c == '/') {
      out += "~1";
    } else {
      out += c;
    }
  }
  return out;
}

std::string Child(const std::string& pointer, const std::string& token) {
  return pointer + "/" + EscapePointerToken(token);
}

Status Err(const std::string& pointer, const std::string& message) {
  return InvalidArgument("json schema #" + pointer + ": " + message);
}

// Rule names: letters, digits and '-', from the schema's words.
std::string SanitizeName(const std::string& s) {
  std::string out;
  for (char c : s) {
    const bool word = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    if (word) {
      out += c;
    } else if (!out.empty() && out.back() != '-') {
      out += '-';
    }
  }
  while (!out.empty() && out.back() == '-') out.pop_back();
  if (out.size() > 48) out.resize(48);
  while (!out.empty() && out.back() == '-') out.pop_back();
  return out;
}

// Name hints: a property's rule is named after the property (under the root without a prefix), other parts
// (items, anyOf branches) after their parent.
std::string PropHint(const std::string& hint, const std::string& prop) {
  std::string p = SanitizeName(prop);
  if (p.empty()) p = "prop";
  return hint == "root" ? p : hint + "-" + p;
}
std::string SubHint(const std::string& hint, const std::string& part) { return hint + "-" + part; }

std::string Quote(const std::string& s) { return "'" + s + "'"; }

std::string Dump(const Json& v) { return v.dump(); }

// Decodes UTF-8 (already validated by the JSON reader); nullopt for a malformed sequence.
std::optional<std::vector<uint32_t>> DecodeUtf8(const std::string& s) {
  std::vector<uint32_t> out;
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = s[i];
    int n_more = 0;
    uint32_t cp = c;
    if (c >= 0x80) {
      if ((c >> 5) == 6) {
        n_more = 1, cp = c & 0x1F;
      } else if ((c >> 4) == 14) {
        n_more = 2, cp = c & 0x0F;
      } else if ((c >> 3) == 30) {
        n_more = 3, cp = c & 0x07;
      } else {
        return std::nullopt;
      }
    }
    for (int k = 1; k <= n_more; ++k) {
      if (i + k >= s.size()) return std::nullopt;
      const unsigned char d = s[i + k];
      if ((d & 0xC0) != 0x80) return std::nullopt;
      cp = (cp << 6) | (d & 0x3F);
    }
    out.push_back(cp);
    i += n_more + 1;
  }
  return out;
}

std::string EncodeUtf8(uint32_t cp) {
  std::string s;
  if (cp < 0x80) {
    s += static_cast<char>(cp);
  } else if (cp < 0x800) {
    s += static_cast<char>(0xC0 | (cp >> 6));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    s += static_cast<char>(0xE0 | (cp >> 12));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    s += static_cast<char>(0xF0 | (cp >> 18));
    s += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return s;
}

bool IsIntegerValued(const Json& v) {
  if (v.is_number_integer()) return true;  // includes unsigned
  if (!v.is_number_float()) return false;
  const double d = v.get<double>();
  return std::isfinite(d) && d == std::floor(d);
}

// floor / ceil of a JSON number, clamped to [-kClamp, kClamp].
int64_t FloorClamped(const Json& v) {
  if (v.is_number_unsigned()) return static_cast<int64_t>(std::min<uint64_t>(v.get<uint64_t>(), kClamp));
  if (v.is_number_integer()) return std::clamp<int64_t>(v.get<int64_t>(), -kClamp, kClamp);
  const double d = std::floor(v.get<double>());
  if (d >= static_cast<double>(kClamp)) return kClamp;
  if (d <= -static_cast<double>(kClamp)) return -kClamp;
  return static_cast<int64_t>(d);
}
int64_t CeilClamped(const Json& v) {
  if (!v.is_number_float()) return FloorClamped(v);
  const double d = std::ceil(v.get<double>());
  if (d >= static_cast<double>(kClamp)) return kClamp;
  if (d <= -static_cast<double>(kClamp)) return -kClamp;
  return static_cast<int64_t>(d);
}

bool TypeMatches(const Json& v, const std::string& type) {
  if (type == "null") return v.is_null();
  if (type == "boolean") return v.is_boolean();
  if (type == "object") return v.is_object();
  if (type == "array") return v.is_array();
  if (type == "number") return v.is_number();
  if (type == "integer") return v.is_number() && IsIntegerValued(v);
  if (type == "string") return v.is_string();
  return false;
}

// Whether the document nests deeper than `limit` (iterative: a hostile document must not overflow the stack).
template <typename J>
bool NestsDeeperThan(const J& root, int limit) {
  std::vector<std::pair<const J*, int>> stack = {{&root, 0}};
  while (!stack.empty()) {
    auto [v, depth] = stack.back();
    stack.pop_back();
    if (depth > limit) return true;
    if (v->is_object() || v->is_array()) {
      for (const auto& child : *v) stack.push_back({&child, depth + 1});
    }
  }
  return false;
}

// ---------------------------------------------------------------------------------------------------------------
// The compiler

class Compiler {
 public:
  explicit Compiler(const Json* root) : root_(root) {}

  // GBNF for the whole schema.
  Result<std::string> CompileSchema() {
    ref_rules_[""] = "root";
    used_names_.insert("root");
    const size_t root_idx = AddRule("root", "");
    HERD_ASSIGN_OR_RETURN(Expr body, Compile(*root_, "", "root", 0));
    rules_[root_idx].body = std::move(body);
    rules_[root_idx].defined = true;
    return Finish();
  }

  // GBNF whose root is the shared rule `name`.
  std::string Primitive(const std::string& name) {
    const size_t root_idx = AddRule("root", "");
    rules_[root_idx].body = Ref(name);
    rules_[root_idx].defined = true;
    Result<std::string> text = Finish();
    HERD_CHECK(text.ok());
    return *text;
  }

 private:
  struct Rule {
    std::string name;
    std::string pointer;  // of the schema it came from, for messages
    Expr body;
    bool defined = false;
  };

  // ---- rules

  size_t AddRule(const std::string& name, const std::string& pointer) {
    rule_index_[name] = rules_.size();
    rules_.push_back({name, pointer, Empty(), false});
    return rules_.size() - 1;
  }

  // A fresh rule name from `hint`, starting with a letter. Never `parent-N` with N all digits: that is how GBNF
  // readers (grammar.h's) name the helper rules of repetitions and groups, and a clash would redefine a rule.
  std::string NewName(const std::string& hint) {
    std::string base = SanitizeName(hint);
    if (base.empty()) base = "rule";
    if (base[0] >= '0' && base[0] <= '9') base.insert(0, "n");  // names start with a letter
    const size_t last = base.rfind('-') == std::string::npos ? 0 : base.rfind('-') + 1;
    if (base.find_first_not_of("0123456789", last) == std::string::npos) base.insert(last, "n");
    std::string name = base;
    for (int i = 2; used_names_.count(name) > 0 || IsPrimitive(name); ++i) name = base + "-v" + std::to_string(i);
    used_names_.insert(name);
    return name;
  }

  static bool IsPrimitive(const std::string& name) { return In(kPrimitives, name); }

  // A rule named after `hint` with `body`, or the existing rule with the same body.
  Expr NewRule(const std::string& hint, const std::string& pointer, Expr body) {
    std::string text = RenderBody(body);
    if (auto it = rule_by_body_.find(text); it != rule_by_body_.end()) return Ref(it->second);
    const std::string name = NewName(hint);
    text_bytes_ += name.size() + text.size() + 6;
    const size_t idx = AddRule(name, pointer);
    rules_[idx].body = std::move(body);
    rules_[idx].defined = true;
    rule_by_body_.emplace(std::move(text), name);
    return Ref(name);
  }

  // `e` itself when it is a rule reference, a class or a short literal, else a new rule for it.
  Expr RuleFor(const std::string& hint, const std::string& pointer, Expr e) {
    if (e.kind == Expr::Kind::kRule || e.kind == Expr::Kind::kClass ||
        (e.kind == Expr::Kind::kLiteral && e.text.size() <= 32)) {
      return e;
    }
    return NewRule(hint, pointer, std::move(e));
  }

  Status CheckLimits(const std::string& pointer) const {
    if (rules_.size() > kMaxRules) {
      return Err(pointer, "the grammar would have more than " + std::to_string(kMaxRules) + " rules (the limit)");
    }
    if (text_bytes_ > kMaxGrammarBytes) {
      return Err(pointer, "the grammar would exceed " + std::to_string(kMaxGrammarBytes) + " bytes (the limit)");
    }
    return Status::Ok();
  }

  // ---- the shared rules

  static Expr Ws() { return Ref("ws"); }
  static Expr Sep() { return Seq({Ws(), Lit(","), Ws()}); }

  static Expr PrimitiveBody(const std::string& name) {
    const Expr int_part = Alt({Lit("0"), Seq({Class({{'1', '9'}}), Digits(0, kIntDigits - 1)})});
    const Expr two_digits_hour = Alt({Seq({Class({{'0', '1'}}), Digit()}), Seq({Lit("2"), Class({{'0', '3'}})})});
    const Expr minute = Seq({Class({{'0', '5'}}), Digit()});
    if (name == "ws") {
      return Alt({Empty(), Lit(" "), Seq({Lit("\n"), Repeat(CharSet(" \t"), 0, 20)})});
    }
    if (name == "char") {
      // An escaped surrogate pair (backslash-u D800-DBFF, backslash-u DC00-DFFF) is one character, as JSON Schema
      // counts code points; lone surrogates are not produced.
      const Expr hex2 = Repeat(HexDigit(), 2, 2);
      const Expr not_surrogate =
          Alt({Seq({Class({{'0', '9'}, {'a', 'c'}, {'A', 'C'}, {'e', 'f'}, {'E', 'F'}}), Repeat(HexDigit(), 3, 3)}),
               Seq({CharSet("dD"), Class({{'0', '7'}}), hex2})});
      const Expr pair = Seq({CharSet("dD"), Class({{'8', '9'}, {'a', 'b'}, {'A', 'B'}}), hex2, Lit("\\u"),
                             CharSet("dD"), Class({{'c', 'f'}, {'C', 'F'}}), hex2});
      const Expr escape = Alt({CharSet("\"\\/bfnrt"), Seq({Lit("u"), Alt({not_surrogate, pair})})});
      return Alt({Class({{'"', '"'}, {'\\', '\\'}, {0x00, 0x1F}}, /*negated=*/true), Seq({Lit("\\"), escape})});
    }
    if (name == "string") return Seq({Lit("\""), Star(Ref("char")), Lit("\"")});
    if (name == "integer") {  // no "-0"
      return Alt({Lit("0"), Seq({Opt(Lit("-")), Class({{'1', '9'}}), Digits(0, kIntDigits - 1)})});
    }
    if (name == "number") {
      return Seq({Opt(Lit("-")), int_part, AnyFraction(),
                  Opt(Seq({CharSet("eE"), Opt(CharSet("-+")), Digits(1, kExponentDigits)}))});
    }
    if (name == "fraction-nonzero") {  // 1..16 fraction digits, not all zero: by the place of the first nonzero
      std::vector<Expr> alts;
      for (int zeros = 0; zeros < kFractionDigits; ++zeros) {
        alts.push_back(
            Seq({Repeat(Lit("0"), zeros, zeros), Class({{'1', '9'}}), Digits(0, kFractionDigits - 1 - zeros)}));
      }
      return Alt(std::move(alts));
    }
    if (name == "boolean") return Alt({Lit("true"), Lit("false")});
    if (name == "null") return Lit("null");
    if (name == "value") {
      return Alt({Ref("object"), Ref("array"), Ref("string"), Ref("number"), Ref("boolean"), Ref("null")});
    }
    if (name == "object") {
      return Seq({Lit("{"), Ws(), Opt(Seq({Ref("member"), Star(Seq({Sep(), Ref("member")})), Ws()})), Lit("}")});
    }
    if (name == "member") return Seq({Ref("string"), Ws(), Lit(":"), Ws(), Ref("value")});
    if (name == "array") {
      return Seq({Lit("["), Ws(), Opt(Seq({Ref("value"), Star(Seq({Sep(), Ref("value")})), Ws()})), Lit("]")});
    }
    if (name == "date") return DateBody();
    if (name == "time") {
      return Seq({two_digits_hour, Lit(":"), minute, Lit(":"), minute, Opt(Seq({Lit("."), Digits(1, 9)})),
                  Alt({Lit("Z"), Seq({CharSet("+-"), two_digits_hour, Lit(":"), minute})})});
    }
    if (name == "date-time") return Seq({Ref("date"), Lit("T"), Ref("time")});
    if (name == "uuid") {
      return Seq({Repeat(HexDigit(), 8, 8), Lit("-"), Repeat(HexDigit(), 4, 4), Lit("-"), Repeat(HexDigit(), 4, 4),
                  Lit("-"), Repeat(HexDigit(), 4, 4), Lit("-"), Repeat(HexDigit(), 12, 12)});
    }
    if (name == "ipv4") {
      const Expr octet = UIntRange(0, 255);  // no leading zeros
      return Seq({octet, Repeat(Seq({Lit("."), octet}), 3, 3)});
    }
    if (name == "ipv6") return Ipv6Body();
    if (name == "hostname") return HostnameBody(253);
    if (name == "hostname-label") return HostnameLabel(63);
    if (name == "email") return EmailBody(kEmailMax);
    if (name == "uri") return UriBody();
    if (name == "json-pointer") return JsonPointerBody();
    if (name == "relative-json-pointer") {  // at most 2 digits: jsonschema 4.10 refuses a digit after a 0 ("100")
      return Seq({Alt({Lit("0"), Seq({Class({{'1', '9'}}), Opt(Digit())})}), Alt({Lit("#"), Ref("json-pointer")})});
    }
    if (name == "regex") return Seq({Opt(Lit("^")), RegexAlternatives(Ref("regex-atom")), Opt(Lit("$"))});
    if (name == "regex-atom") {
      return Alt({RegexSimpleAtom(), Seq({Lit("("), RegexAlternatives(RegexSimpleAtom()), Lit(")")})});
    }
    HERD_CHECK(false && "unknown primitive");
    return Empty();
  }

  // ---- schemas

  // An expression for the instances of `schema` at `pointer`; `hint` names the rules made for its parts.
  Result<Expr> Compile(const Json& schema, const std::string& pointer, const std::string& hint, int depth) {
    HERD_RETURN_IF_ERROR(CheckLimits(pointer));
    if (depth > kMaxSchemaDepth) {
      return Err(pointer, "schemas nested deeper than " + std::to_string(kMaxSchemaDepth) + " levels");
    }
    if (schema.is_boolean()) {
      if (schema.get<bool>()) return Ref("value");
      return Err(pointer, "the schema false has no instances");
    }
    if (!schema.is_object()) return Err(pointer, "a schema must be an object or a boolean, not " + Dump(schema));

    std::vector<std::string> keywords;  // the validation keywords present, in document order
    for (const auto& [key, value] : schema.items()) {
      if (key.rfind("x-", 0) == 0 || In(kAnnotations, key)) {
        if ((key == "$defs" || key == "definitions") && !value.is_object()) {
          return Err(Child(pointer, key), key + " must be an object");
        }
        continue;
      }
      if (In(kRefused, key)) return Err(Child(pointer, key), key + " is not supported");
      if (key == "uniqueItems") {
        if (!value.is_boolean()) return Err(Child(pointer, key), "uniqueItems must be a boolean");
        if (value.get<bool>()) return Err(Child(pointer, key), "uniqueItems: true is not supported");
        continue;
      }
      if (!In(kGeneralKeywords, key) && !In(kObjectKeywords, key) && !In(kArrayKeywords, key) &&
          !In(kStringKeywords, key) && !In(kNumberKeywords, key)) {
        return Err(Child(pointer, key), "unknown keyword " + Quote(key) +
                                            " (not supported; keys starting with x- are ignored as extensions)");
      }
      keywords.push_back(key);
    }
    auto has = [&](const char* k) { return schema.contains(k); };
    // $ref, allOf, anyOf/oneOf stand alone; enum and const may be narrowed by type.
    for (const char* alone : {"$ref", "allOf", "anyOf", "oneOf"}) {
      if (!has(alone)) continue;
      for (const std::string& k : keywords) {
        if (k != alone) {
          return Err(Child(pointer, k), std::string(alone) + " combined with " + Quote(k) + " is not supported");
        }
      }
    }
    if (has("$ref")) return CompileRef(schema["$ref"], Child(pointer, "$ref"), depth);
    if (has("allOf")) return CompileAllOf(schema["allOf"], Child(pointer, "allOf"), hint, depth);
    if (has("anyOf")) return CompileAnyOf(schema["anyOf"], Child(pointer, "anyOf"), hint, depth);
    if (has("oneOf")) return CompileAnyOf(schema["oneOf"], Child(pointer, "oneOf"), hint, depth);
    if (has("enum") || has("const")) return CompileEnum(schema, pointer, keywords);
    return CompileTyped(schema, pointer, hint, depth);
  }

  Result<Expr> CompileRef(const Json& ref_value, const std::string& pointer, int depth) {
    if (!ref_value.is_string()) return Err(pointer, "$ref must be a string");
    const std::string ref = ref_value.get<std::string>();
    if (ref.empty() || ref[0] != '#') {
      return Err(pointer, "remote $ref " + Quote(ref) +
                              " is not supported (only references inside the schema, such as #/$defs/NAME)");
    }
    HERD_ASSIGN_OR_RETURN(std::string target_pointer, DecodeFragment(ref.substr(1), pointer));
    if (!target_pointer.empty() && target_pointer[0] != '/') {
      return Err(pointer, "$ref to an anchor " + Quote(ref) + " is not supported (use a JSON pointer)");
    }
    if (auto it = ref_rules_.find(target_pointer); it != ref_rules_.end()) return Ref(it->second);
    // Walk the pointer.
    const Json* target = root_;
    std::string token, name_hint = "root";
    for (size_t i = 1; i <= target_pointer.size(); ++i) {
      if (i < target_pointer.size() && target_pointer[i] != '/') {
        token += target_pointer[i];
        continue;
      }
      std::string key;
      for (size_t k = 0; k < token.size(); ++k) {
        if (token[k] == '~' && k + 1 < token.size() && (token[k + 1] == '0' || token[k + 1] == '1')) {
          key += token[k + 1] == '0' ? '~' : '/';
          ++k;
        } else if (token[k] == '~') {
          return Err(pointer, "$ref " + Quote(ref) + " has a bad ~ escape");
        } else {
          key += token[k];
        }
      }
      token.clear();
      if (target->is_object() && target->contains(key)) {
        target = &(*target)[key];
      } else if (target->is_array() && !key.empty() && key.size() < 10 &&
                 key.find_first_not_of("0123456789") == std::string::npos && std::stoul(key) < target->size()) {
        target = &(*target)[std::stoul(key)];
      } else {
        return Err(pointer, "$ref " + Quote(ref) + " does not resolve to anything in the schema");
      }
      name_hint = key;
    }
    const std::string name = NewName(name_hint);
    ref_rules_[target_pointer] = name;
    const size_t idx = AddRule(name, target_pointer);
    HERD_ASSIGN_OR_RETURN(Expr body, Compile(*target, target_pointer, name, depth + 1));
    rules_[idx].body = std::move(body);
    rules_[idx].defined = true;
    return Ref(name);
  }

  // A URI fragment's percent escapes decoded.
  static Result<std::string> DecodeFragment(const std::string& fragment, const std::string& pointer) {
    std::string out;
    for (size_t i = 0; i < fragment.size(); ++i) {
      if (fragment[i] != '%') {
        out += fragment[i];
        continue;
      }
      auto hex = [](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
      };
      if (i + 2 >= fragment.size()) return Err(pointer, "$ref has a bad percent escape");
      const int h = hex(fragment[i + 1]), l = hex(fragment[i + 2]);
      if (h < 0 || l < 0) return Err(pointer, "$ref has a bad percent escape");
      out += static_cast<char>(h * 16 + l);
      i += 2;
    }
    return out;
  }

  Result<Expr> CompileAllOf(const Json& all, const std::string& pointer, const std::string& hint, int depth) {
    if (!all.is_array() || all.empty()) return Err(pointer, "allOf must be a non-empty array of schemas");
    if (all.size() > 1) {
      return Err(pointer, "allOf with more than one schema is not supported (" + std::to_string(all.size()) +
                              " given; merge them into one schema)");
    }
    return Compile(all[0], Child(pointer, "0"), hint, depth + 1);
  }

  // oneOf is compiled as anyOf: the grammar does not enforce that exactly one branch matches.
  Result<Expr> CompileAnyOf(const Json& any, const std::string& pointer, const std::string& hint, int depth) {
    const std::string keyword = pointer.substr(pointer.rfind('/') + 1);
    if (!any.is_array() || any.empty()) return Err(pointer, keyword + " must be a non-empty array of schemas");
    std::vector<Expr> alts;
    for (size_t i = 0; i < any.size(); ++i) {
      const std::string branch_pointer = Child(pointer, std::to_string(i));
      const std::string branch_hint = SubHint(hint, "alt" + std::to_string(i));
      HERD_ASSIGN_OR_RETURN(Expr e, Compile(any[i], branch_pointer, branch_hint, depth + 1));
      alts.push_back(RuleFor(branch_hint, branch_pointer, std::move(e)));
    }
    return Alt(std::move(alts));
  }

  Result<std::vector<std::string>> ReadTypes(const Json& schema, const std::string& pointer) {
    const Json& t = schema["type"];
    std::vector<std::string> types;
    auto add = [&](const Json& name) -> Status {
      if (!name.is_string() || !In(kTypeNames, name.get<std::string>())) {
        return Err(pointer, "unknown type " + Dump(name) +
                                " (expected null, boolean, object, array, number, integer or string)");
      }
      if (std::find(types.begin(), types.end(), name.get<std::string>()) != types.end()) {
        return Err(pointer, "type lists " + Dump(name) + " twice");
      }
      types.push_back(name.get<std::string>());
      return Status::Ok();
    };
    if (t.is_array()) {
      if (t.empty()) return Err(pointer, "type must not be an empty array");
      for (const Json& name : t) HERD_RETURN_IF_ERROR(add(name));
    } else {
      HERD_RETURN_IF_ERROR(add(t));
    }
    return types;
  }

  Result<Expr> CompileEnum(const Json& schema, const std::string& pointer, const std::vector<std::string>& keywords) {
    for (const std::string& k : keywords) {
      if (k != "enum" && k != "const" && k != "type") {
        return Err(Child(pointer, k), std::string(schema.contains("enum") ? "enum" : "const") + " combined with " +
                                          Quote(k) + " is not supported (only type may narrow enum and const)");
      }
    }
    std::vector<Json> values;
    if (schema.contains("enum")) {
      const Json& e = schema["enum"];
      if (!e.is_array()) return Err(Child(pointer, "enum"), "enum must be an array");
      if (e.empty()) return Err(Child(pointer, "enum"), "enum is empty: no instance exists");
      for (const Json& v : e) {
        if (std::find(values.begin(), values.end(), v) == values.end()) values.push_back(v);
      }
    }
    if (schema.contains("const")) {
      const Json& c = schema["const"];
      if (schema.contains("enum") && std::find(values.begin(), values.end(), c) == values.end()) {
        return Err(Child(pointer, "const"), "const " + Dump(c) + " is not among the enum values: no instance exists");
      }
      values = {c};
    }
    if (schema.contains("type")) {
      HERD_ASSIGN_OR_RETURN(std::vector<std::string> types, ReadTypes(schema, Child(pointer, "type")));
      std::vector<Json> kept;
      for (const Json& v : values) {
        for (const std::string& t : types) {
          if (TypeMatches(v, t)) {
            kept.push_back(v);
            break;
          }
        }
      }
      if (kept.empty()) {
        return Err(Child(pointer, "type"), std::string(schema.contains("const") ? "const" : "enum") +
                                               " has no value of type " + Dump(schema["type"]) +
                                               ": no instance exists");
      }
      values = std::move(kept);
    }
    std::vector<Expr> alts;
    for (const Json& v : values) alts.push_back(Lit(Dump(v)));
    return Alt(std::move(alts));
  }

  Result<Expr> CompileTyped(const Json& schema, const std::string& pointer, const std::string& hint, int depth) {
    std::vector<std::string> types;
    if (schema.contains("type")) {
      HERD_ASSIGN_OR_RETURN(types, ReadTypes(schema, Child(pointer, "type")));
    } else {
      // Type-specific keywords without a type: the types they constrain (as llama.cpp infers them).
      auto any_of = [&](const auto& keywords) {
        for (std::string_view k : keywords) {
          if (schema.contains(k)) return true;
        }
        return false;
      };
      if (any_of(kObjectKeywords)) types.push_back("object");
      if (any_of(kArrayKeywords)) types.push_back("array");
      if (any_of(kStringKeywords)) types.push_back("string");
      if (any_of(kNumberKeywords)) types.push_back("number");
      if (types.empty()) return Ref("value");
    }
    if (std::find(types.begin(), types.end(), "number") != types.end()) {
      types.erase(std::remove(types.begin(), types.end(), "integer"), types.end());  // numbers include integers
    }
    std::vector<Expr> alts;
    for (const std::string& type : types) {
      HERD_ASSIGN_OR_RETURN(Expr e, CompileType(type, schema, pointer, hint, depth));
      if (types.size() == 1) return e;
      alts.push_back(RuleFor(SubHint(hint, type), pointer, std::move(e)));
    }
    return Alt(std::move(alts));
  }

  Result<Expr> CompileType(const std::string& type, const Json& schema, const std::string& pointer,
                           const std::string& hint, int depth) {
    if (type == "null") return Ref("null");
    if (type == "boolean") return Ref("boolean");
    if (type == "string") return CompileString(schema, pointer);
    if (type == "integer") return CompileInteger(schema, pointer);
    if (type == "number") return CompileNumber(schema, pointer);
    if (type == "object") return CompileObject(schema, pointer, hint, depth);
    return CompileArray(schema, pointer, hint, depth);
  }

  // A count keyword (minItems, maxLength, ...): a non-negative integer up to kMaxCount.
  static Result<std::optional<int64_t>> ReadCount(const Json& schema, const char* key, const std::string& pointer) {
    if (!schema.contains(key)) return std::optional<int64_t>();
    const Json& v = schema[key];
    const std::string p = Child(pointer, key);
    if (!v.is_number() || !IsIntegerValued(v) || CeilClamped(v) < 0) {
      return Err(p, std::string(key) + " must be a non-negative integer, not " + Dump(v));
    }
    const int64_t n = FloorClamped(v);
    if (n > kMaxCount) {
      return Err(p, std::string(key) + " " + Dump(v) + " is above the limit of " + std::to_string(kMaxCount));
    }
    return std::optional<int64_t>(n);
  }

  Result<Expr> CompileString(const Json& schema, const std::string& pointer) {
    HERD_ASSIGN_OR_RETURN(std::optional<int64_t> min_len, ReadCount(schema, "minLength", pointer));
    HERD_ASSIGN_OR_RETURN(std::optional<int64_t> max_len, ReadCount(schema, "maxLength", pointer));
    const int64_t lo = min_len.value_or(0);
    if (max_len && lo > *max_len) {
      return Err(Child(pointer, "minLength"), "minLength " + std::to_string(lo) + " is greater than maxLength " +
                                                  std::to_string(*max_len) + ": no instance exists");
    }
    if (schema.contains("format")) {
      const Json& f = schema["format"];
      if (!f.is_string()) return Err(Child(pointer, "format"), "format must be a string");
      const std::string format = f.get<std::string>();
      for (const Format& known : kFormats) {
        if (known.name != format) continue;
        const int64_t f_lo = known.min_length, f_hi = known.max_length;  // f_hi -1: no limit
        const std::string fp = Child(pointer, "format");
        if ((f_hi >= 0 && f_hi < lo) || (max_len && f_lo > *max_len)) {
          return Err(fp, "format " + Quote(format) + " strings cannot satisfy minLength/maxLength: no instance exists");
        }
        if (f_lo < lo) {
          return Err(fp, "format " + Quote(format) + " combined with minLength " + std::to_string(lo) +
                             " is not supported (its shortest strings have " + std::to_string(f_lo) + " characters)");
        }
        const std::string rule(known.rule);
        if (!max_len || (f_hi >= 0 && f_hi <= *max_len)) return Seq({Lit("\""), Ref(rule), Lit("\"")});
        if (!known.shortens) {
          return Err(fp, "format " + Quote(format) + " combined with maxLength " + std::to_string(*max_len) +
                             " is not supported (its strings have up to " +
                             (f_hi < 0 ? std::string("any number of") : std::to_string(f_hi)) + " characters)");
        }
        Expr body = ShortFormatBody(rule, static_cast<int>(*max_len));
        return Seq({Lit("\""), NewRule(rule + "-max" + std::to_string(*max_len), fp, std::move(body)), Lit("\"")});
      }
      // Any other format (duration, uri-template, int32, ...) is an annotation.
    }
    if (lo == 0 && !max_len) return Ref("string");
    return Seq(
        {Lit("\""), Repeat(Ref("char"), static_cast<int>(lo), max_len ? static_cast<int>(*max_len) : -1), Lit("\"")});
  }

  static Status ReadBound(const Json& schema, const char* key, const std::string& pointer, const Json** out) {
    *out = nullptr;
    if (!schema.contains(key)) return Status::Ok();
    const Json& v = schema[key];
    if (!v.is_number()) {
      return Err(Child(pointer, key), std::string(key) + " must be a number, not " + Dump(v) +
                                          (v.is_boolean() ? " (the draft-4 boolean form is not supported)" : ""));
    }
    *out = &v;
    return Status::Ok();
  }

  static Result<Expr> CompileInteger(const Json& schema, const std::string& pointer) {
    const Json *min_v, *xmin_v, *max_v, *xmax_v;
    HERD_RETURN_IF_ERROR(ReadBound(schema, "minimum", pointer, &min_v));
    HERD_RETURN_IF_ERROR(ReadBound(schema, "exclusiveMinimum", pointer, &xmin_v));
    HERD_RETURN_IF_ERROR(ReadBound(schema, "maximum", pointer, &max_v));
    HERD_RETURN_IF_ERROR(ReadBound(schema, "exclusiveMaximum", pointer, &xmax_v));
    if (!min_v && !xmin_v && !max_v && !xmax_v) return Ref("integer");
    // The smallest and largest integers allowed (bounds rounded inward), and the keywords that set them.
    int64_t lo = -kClamp, hi = kClamp;
    std::string lo_key, hi_key;
    if (min_v && CeilClamped(*min_v) > lo) lo = CeilClamped(*min_v), lo_key = "minimum";
    if (xmin_v && FloorClamped(*xmin_v) + 1 > lo) lo = FloorClamped(*xmin_v) + 1, lo_key = "exclusiveMinimum";
    if (max_v && FloorClamped(*max_v) < hi) hi = FloorClamped(*max_v), hi_key = "maximum";
    if (xmax_v && CeilClamped(*xmax_v) - 1 < hi) hi = CeilClamped(*xmax_v) - 1, hi_key = "exclusiveMaximum";
    if (!lo_key.empty() && !hi_key.empty() && lo > hi) {
      return Err(Child(pointer, lo_key), lo_key + " " + Dump(schema[lo_key]) + " and " + hi_key + " " +
                                             Dump(schema[hi_key]) + " leave no integer");
    }
    if (lo > kMaxMagnitude) {
      return Err(Child(pointer, lo_key), lo_key + " " + Dump(schema[lo_key]) +
                                             " is above the largest integer the grammar produces (16 digits)");
    }
    if (hi < -kMaxMagnitude) {
      return Err(Child(pointer, hi_key), hi_key + " " + Dump(schema[hi_key]) +
                                             " is below the smallest integer the grammar produces (16 digits)");
    }
    return IntRange(std::max(lo, -kMaxMagnitude), std::min(hi, kMaxMagnitude));
  }

  Result<Expr> CompileNumber(const Json& schema, const std::string& pointer) {
    struct Bound {
      int64_t value;
      bool exclusive;
      std::string key;
    };
    std::optional<Bound> lo, hi;
    for (const char* key : {"minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"}) {
      const Json* v;
      HERD_RETURN_IF_ERROR(ReadBound(schema, key, pointer, &v));
      if (!v) continue;
      if (!IsIntegerValued(*v)) {
        return Err(Child(pointer, key), "a non-integer " + std::string(key) + " (" + Dump(*v) +
                                            ") on a number is not supported (integer-valued bounds only)");
      }
      const std::string k = key;
      const Bound b{FloorClamped(*v), k.rfind("exclusive", 0) == 0, k};
      if (k == "minimum" || k == "exclusiveMinimum") {
        if (!lo || b.value > lo->value || (b.value == lo->value && b.exclusive)) lo = b;
      } else {
        if (!hi || b.value < hi->value || (b.value == hi->value && b.exclusive)) hi = b;
      }
    }
    if (!lo && !hi) return Ref("number");
    if (lo && hi && (lo->value > hi->value || (lo->value == hi->value && (lo->exclusive || hi->exclusive)))) {
      return Err(Child(pointer, lo->key), lo->key + " " + Dump(schema[lo->key]) + " and " + hi->key + " " +
                                              Dump(schema[hi->key]) + " leave no number");
    }
    if (lo && lo->value > kMaxMagnitude) {
      return Err(Child(pointer, lo->key), lo->key + " " + Dump(schema[lo->key]) +
                                              " is above the largest number the grammar produces (16 digits)");
    }
    if (hi && hi->value < -kMaxMagnitude) {
      return Err(Child(pointer, hi->key), hi->key + " " + Dump(schema[hi->key]) +
                                              " is below the smallest number the grammar produces (16 digits)");
    }
    if (lo && lo->value < -kMaxMagnitude) lo.reset();  // beyond the 16-digit limit: no bound in effect
    if (hi && hi->value > kMaxMagnitude) hi.reset();
    std::vector<Expr> alts;
    // Negative values: magnitudes m with -hi <(=) m (or 0 < m) and m <(=) -lo.
    if (!lo || lo->value < 0) {
      MagBound m_lo{0, true};
      if (hi && hi->value < 0) m_lo = {static_cast<uint64_t>(-hi->value), hi->exclusive};
      std::optional<MagBound> m_hi;
      if (lo) m_hi = MagBound{static_cast<uint64_t>(-lo->value), lo->exclusive};
      if (auto e = MagnitudeRange(m_lo, m_hi, "fraction-nonzero")) alts.push_back(Seq({Lit("-"), std::move(*e)}));
    }
    // Values >= 0.
    if (!hi || hi->value > 0 || (hi->value == 0 && !hi->exclusive)) {
      MagBound m_lo{0, false};
      if (lo && lo->value >= 0) m_lo = {static_cast<uint64_t>(lo->value), lo->exclusive};
      std::optional<MagBound> m_hi;
      if (hi) m_hi = MagBound{static_cast<uint64_t>(hi->value), hi->exclusive};
      if (auto e = MagnitudeRange(m_lo, m_hi, "fraction-nonzero")) alts.push_back(std::move(*e));
    }
    HERD_CHECK(!alts.empty());  // the contradictions were refused above
    return Alt(std::move(alts));
  }

  // One key-value pair of an object being built.
  struct Member {
    Expr kv;
    bool required = false;
    bool repeated = false;  // additional properties: any number of pairs
  };

  Result<Expr> CompileObject(const Json& schema, const std::string& pointer, const std::string& hint, int depth) {
    const Json* props = nullptr;
    if (schema.contains("properties")) {
      props = &schema["properties"];
      if (!props->is_object()) return Err(Child(pointer, "properties"), "properties must be an object");
    }
    std::vector<std::string> required;
    if (schema.contains("required")) {
      const Json& r = schema["required"];
      const std::string rp = Child(pointer, "required");
      if (!r.is_array()) return Err(rp, "required must be an array of strings");
      for (const Json& name : r) {
        if (!name.is_string()) return Err(rp, "required must be an array of strings, not " + Dump(r));
        if (std::find(required.begin(), required.end(), name.get<std::string>()) != required.end()) {
          return Err(rp, "required lists " + Dump(name) + " twice");
        }
        required.push_back(name.get<std::string>());
      }
    }
    const Json* additional = nullptr;
    if (schema.contains("additionalProperties")) {
      additional = &schema["additionalProperties"];
      if (!additional->is_boolean() && !additional->is_object()) {
        return Err(Child(pointer, "additionalProperties"), "additionalProperties must be a schema");
      }
    }
    if (!props && required.empty() && !additional) return Ref("object");
    const bool additional_allowed = additional && !(additional->is_boolean() && !additional->get<bool>());

    auto is_required = [&](const std::string& name) {
      return std::find(required.begin(), required.end(), name) != required.end();
    };
    std::vector<Member> members;
    std::vector<std::string> known;  // every name that is not an additional property
    if (props) {
      for (const auto& [name, prop_schema] : props->items()) {
        known.push_back(name);
        const std::string prop_pointer = Child(Child(pointer, "properties"), name);
        if (prop_schema.is_boolean() && !prop_schema.get<bool>()) {  // the property must be absent
          if (is_required(name)) {
            return Err(Child(pointer, "required"),
                       "required property " + Quote(name) + " has the schema false: no instance exists");
          }
          continue;
        }
        const std::string prop_hint = PropHint(hint, name);
        HERD_ASSIGN_OR_RETURN(Expr value, Compile(prop_schema, prop_pointer, prop_hint, depth + 1));
        value = RuleFor(prop_hint, prop_pointer, std::move(value));
        Expr kv = NewRule(prop_hint + "-kv", prop_pointer, Seq({Lit(Dump(Json(name))), Ws(), Lit(":"), Ws(), value}));
        members.push_back({std::move(kv), is_required(name), false});
      }
    }
    // The additional properties' values.
    std::optional<Expr> additional_value;
    if (additional_allowed) {
      const std::string ap = Child(pointer, "additionalProperties");
      const std::string ah = SubHint(hint, "additional");
      HERD_ASSIGN_OR_RETURN(Expr v, Compile(*additional, ap, ah, depth + 1));
      additional_value = RuleFor(ah, ap, std::move(v));
    }
    // Required names without a property schema: required keys after the declared ones.
    for (const std::string& name : required) {
      if (std::find(known.begin(), known.end(), name) != known.end()) continue;
      if (additional && !additional_allowed) {
        return Err(Child(pointer, "required"),
                   "required property " + Quote(name) + " is not in properties and additionalProperties is false");
      }
      known.push_back(name);
      const Expr value = additional_value ? *additional_value : Ref("value");
      const std::string prop_hint = PropHint(hint, name);
      Expr kv = NewRule(prop_hint + "-kv", Child(pointer, "required"),
                        Seq({Lit(Dump(Json(name))), Ws(), Lit(":"), Ws(), value}));
      members.push_back({std::move(kv), true, false});
    }
    if (additional_allowed) {
      Expr key = AdditionalKey(known, SubHint(hint, "additional-key"), pointer);
      Expr kv = NewRule(SubHint(hint, "additional-kv"), Child(pointer, "additionalProperties"),
                        Seq({std::move(key), Ws(), Lit(":"), Ws(), *additional_value}));
      members.push_back({std::move(kv), false, true});
    }
    HERD_RETURN_IF_ERROR(CheckLimits(pointer));
    if (members.empty()) return Seq({Lit("{"), Ws(), Lit("}")});
    return Seq({Lit("{"), Ws(), MemberList(members, hint, pointer), Lit("}")});
  }

  // The members in order, separated by commas, required ones present, followed by ws (all inside the braces).
  Expr MemberList(const std::vector<Member>& members, const std::string& hint, const std::string& pointer) {
    const size_t n = members.size();
    auto after = [&](const Member& m) {  // the member as it follows an earlier one
      Expr e = Seq({Sep(), m.kv});
      if (m.required) return e;
      return m.repeated ? Star(std::move(e)) : Opt(std::move(e));
    };
    // The alternatives start with each member that may be the first present one: up to the first required one.
    size_t n_first = 0;
    while (n_first < n && !members[n_first].required) ++n_first;
    const bool all_optional = n_first == n;
    if (!all_optional) ++n_first;
    // tails[j]: the members from j on, each after a separator. Shared as rules when the alternatives would repeat
    // many of them (O(n^2) text otherwise).
    const bool share = n_first >= 3 && n_first * n > 24;
    std::vector<Expr> tails(n + 1);
    for (size_t j = n; j-- > 1;) {
      Expr tail = Seq({after(members[j]), tails[j + 1]});
      if (share && j + 1 < n && !IsEmpty(tail)) {
        tail = NewRule(SubHint(hint, "rest" + std::to_string(j)), pointer, std::move(tail));
      }
      tails[j] = std::move(tail);
    }
    std::vector<Expr> alts;
    for (size_t k = 0; k < n_first; ++k) {
      const Member& m = members[k];
      alts.push_back(Seq({m.kv, m.repeated ? Star(Seq({Sep(), m.kv})) : Empty(), tails[k + 1]}));
    }
    Expr list = Seq({Alt(std::move(alts)), Ws()});
    return all_optional ? Opt(std::move(list)) : list;
  }

  // A JSON string without escapes that is none of `names`: a trie of the names, where each node may end the key
  // (when it is not a name), continue along the trie, or leave it with any other character.
  Expr AdditionalKey(const std::vector<std::string>& names, const std::string& hint, const std::string& pointer) {
    struct Node {
      bool terminal = false;
      std::map<uint32_t, size_t> children;
    };
    std::vector<Node> trie(1);
    for (const std::string& name : names) {
      std::optional<std::vector<uint32_t>> cps = DecodeUtf8(name);
      if (!cps) continue;  // not UTF-8: no key without escapes can equal it
      bool escapable = false;
      for (uint32_t c : *cps) escapable |= c == '"' || c == '\\' || c < 0x20;
      if (escapable) continue;  // its JSON spelling has an escape, which additional keys never have
      size_t node = 0;
      for (uint32_t c : *cps) {
        auto it = trie[node].children.find(c);
        if (it == trie[node].children.end()) {
          trie.push_back({});
          it = trie[node].children.emplace(c, trie.size() - 1).first;
        }
        node = it->second;
      }
      trie[node].terminal = true;
    }
    const Expr key_char = Class({{'"', '"'}, {'\\', '\\'}, {0x00, 0x1F}}, true);
    if (trie[0].children.empty() && !trie[0].terminal) return Seq({Lit("\""), Star(key_char), Lit("\"")});
    // Built bottom-up (children have larger indices), every kTrieDepthPerRule levels a rule.
    std::vector<int> depth(trie.size(), 0);
    for (size_t i = 0; i < trie.size(); ++i) {
      for (const auto& [c, child] : trie[i].children) depth[child] = depth[i] + 1;
    }
    std::vector<Expr> exprs(trie.size());
    for (size_t i = trie.size(); i-- > 0;) {
      const Node& node = trie[i];
      std::vector<Expr> alts;
      if (!node.terminal) alts.push_back(Lit("\""));
      std::vector<std::pair<uint32_t, uint32_t>> excluded = {{'"', '"'}, {'\\', '\\'}, {0x00, 0x1F}};
      for (const auto& [c, child] : node.children) {
        alts.push_back(Seq({Lit(EncodeUtf8(c)), std::move(exprs[child])}));
        excluded.push_back({c, c});
      }
      alts.push_back(Seq({Class(std::move(excluded), true), Star(key_char), Lit("\"")}));
      Expr e = Alt(std::move(alts));
      if (depth[i] > 0 && depth[i] % kTrieDepthPerRule == 0) e = NewRule(hint, pointer, std::move(e));
      exprs[i] = std::move(e);
    }
    return NewRule(hint, pointer, Seq({Lit("\""), std::move(exprs[0])}));
  }

  Result<Expr> CompileArray(const Json& schema, const std::string& pointer, const std::string& hint, int depth) {
    HERD_ASSIGN_OR_RETURN(std::optional<int64_t> min_items, ReadCount(schema, "minItems", pointer));
    HERD_ASSIGN_OR_RETURN(std::optional<int64_t> max_items, ReadCount(schema, "maxItems", pointer));
    if (min_items && max_items && *min_items > *max_items) {
      return Err(Child(pointer, "minItems"), "minItems " + std::to_string(*min_items) + " is greater than maxItems " +
                                                 std::to_string(*max_items) + ": no instance exists");
    }
    std::vector<Expr> prefix;
    if (schema.contains("prefixItems")) {
      const Json& p = schema["prefixItems"];
      const std::string pp = Child(pointer, "prefixItems");
      if (!p.is_array() || p.empty()) return Err(pp, "prefixItems must be a non-empty array of schemas");
      for (size_t i = 0; i < p.size(); ++i) {
        const std::string ip = Child(pp, std::to_string(i)), ih = SubHint(hint, "item" + std::to_string(i));
        HERD_ASSIGN_OR_RETURN(Expr e, Compile(p[i], ip, ih, depth + 1));
        prefix.push_back(RuleFor(ih, ip, std::move(e)));
      }
    }
    std::optional<Expr> item = Ref("value");  // nullopt: no elements beyond prefixItems
    if (schema.contains("items")) {
      const Json& it = schema["items"];
      const std::string ip = Child(pointer, "items");
      if (it.is_array()) return Err(ip, "items must be a schema (an array of schemas is draft 7: use prefixItems)");
      if (it.is_boolean() && !it.get<bool>()) {
        item.reset();
      } else {
        const std::string ih = SubHint(hint, "item");
        HERD_ASSIGN_OR_RETURN(Expr e, Compile(it, ip, ih, depth + 1));
        item = RuleFor(ih, ip, std::move(e));
      }
    }
    if (prefix.empty() && !min_items && !max_items && item && item->kind == Expr::Kind::kRule &&
        item->text == "value") {
      return Ref("array");
    }
    const int64_t n_prefix = static_cast<int64_t>(prefix.size());
    int64_t hi = max_items.value_or(-1);  // -1: unbounded
    if (!item) {
      if (min_items && *min_items > n_prefix) {
        return Err(Child(pointer, "minItems"), "minItems " + std::to_string(*min_items) + " is more than the " +
                                                   std::to_string(n_prefix) +
                                                   " prefixItems and items is false: no instance exists");
      }
      hi = hi < 0 ? n_prefix : std::min(hi, n_prefix);
    }
    const int64_t n_fixed = hi < 0 ? n_prefix : std::min(n_prefix, hi);  // the prefix elements present: all
    const int64_t lo = std::max(min_items.value_or(0), n_fixed);
    if (hi == 0) return Seq({Lit("["), Ws(), Lit("]")});
    if (lo == 0) {  // no prefix: any number of items up to hi
      const int rest_max = hi < 0 ? -1 : static_cast<int>(hi - 1);
      return Seq({Lit("["), Ws(), Opt(Seq({*item, Repeat(Seq({Sep(), *item}), 0, rest_max), Ws()})), Lit("]")});
    }
    std::vector<Expr> parts = {Lit("["), Ws()};
    int64_t emitted = 0;
    for (; emitted < n_fixed; ++emitted) {
      if (emitted > 0) parts.push_back(Sep());
      parts.push_back(prefix[emitted]);
    }
    if (emitted == 0) {
      parts.push_back(*item);
      emitted = 1;
    }
    if (item && (hi < 0 || hi > emitted)) {
      const int rest_min = static_cast<int>(std::max<int64_t>(lo - emitted, 0));
      const int rest_max = hi < 0 ? -1 : static_cast<int>(hi - emitted);
      parts.push_back(Repeat(Seq({Sep(), *item}), rest_min, rest_max));
    }
    parts.push_back(Ws());
    parts.push_back(Lit("]"));
    return Seq(std::move(parts));
  }

  // ---- checks and text

  // Applies `f` to every rule reference of `e`.
  template <typename F>
  static void ForEachRef(const Expr& e, F&& f) {
    if (e.kind == Expr::Kind::kRule) f(e.text);
    for (const Expr& c : e.items) ForEachRef(c, f);
  }

  bool Nullable(const Expr& e, const std::vector<char>& nullable_rules) const {
    switch (e.kind) {
      case Expr::Kind::kLiteral:
        return e.text.empty();
      case Expr::Kind::kClass:
        return false;
      case Expr::Kind::kRule:
        return nullable_rules[rule_index_.at(e.text)];
      case Expr::Kind::kSeq:
        for (const Expr& c : e.items) {
          if (!Nullable(c, nullable_rules)) return false;
        }
        return true;
      case Expr::Kind::kAlt:
        for (const Expr& c : e.items) {
          if (Nullable(c, nullable_rules)) return true;
        }
        return false;
      case Expr::Kind::kRepeat:
        return e.min == 0 || Nullable(e.items[0], nullable_rules);
    }
    return false;
  }

  bool Productive(const Expr& e, const std::vector<char>& productive_rules) const {
    switch (e.kind) {
      case Expr::Kind::kLiteral:
      case Expr::Kind::kClass:
        return true;
      case Expr::Kind::kRule:
        return productive_rules[rule_index_.at(e.text)];
      case Expr::Kind::kSeq:
        for (const Expr& c : e.items) {
          if (!Productive(c, productive_rules)) return false;
        }
        return true;
      case Expr::Kind::kAlt:
        for (const Expr& c : e.items) {
          if (Productive(c, productive_rules)) return true;
        }
        return false;
      case Expr::Kind::kRepeat:
        return e.min == 0 || Productive(e.items[0], productive_rules);
    }
    return false;
  }

  // The rules `e` can begin with before reading a byte.
  void FirstRules(const Expr& e, const std::vector<char>& nullable_rules, std::set<size_t>* out) const {
    switch (e.kind) {
      case Expr::Kind::kLiteral:
      case Expr::Kind::kClass:
        return;
      case Expr::Kind::kRule:
        out->insert(rule_index_.at(e.text));
        return;
      case Expr::Kind::kSeq:
        for (const Expr& c : e.items) {
          FirstRules(c, nullable_rules, out);
          if (!Nullable(c, nullable_rules)) return;
        }
        return;
      case Expr::Kind::kAlt:
        for (const Expr& c : e.items) FirstRules(c, nullable_rules, out);
        return;
      case Expr::Kind::kRepeat:
        FirstRules(e.items[0], nullable_rules, out);
        return;
    }
  }

  bool IsRefTarget(const std::string& name) const {
    for (const auto& [pointer, rule] : ref_rules_) {
      if (rule == name && !pointer.empty()) return true;
    }
    return false;
  }

  // Marks the rules reachable from root, adding the shared rules as they are reached.
  std::vector<char> Reachable() {
    std::vector<char> reachable(rules_.size(), 0);
    std::vector<size_t> stack = {rule_index_.at("root")};
    reachable[stack[0]] = 1;
    while (!stack.empty()) {
      const size_t r = stack.back();
      stack.pop_back();
      HERD_CHECK(rules_[r].defined);
      std::vector<std::string> refs;
      ForEachRef(rules_[r].body, [&](const std::string& name) { refs.push_back(name); });
      for (const std::string& name : refs) {
        auto it = rule_index_.find(name);
        if (it == rule_index_.end()) {
          HERD_CHECK(IsPrimitive(name));
          const size_t idx = AddRule(name, "");
          rules_[idx].body = PrimitiveBody(name);
          rules_[idx].defined = true;
          reachable.push_back(0);
          it = rule_index_.find(name);
        }
        if (!reachable[it->second]) {
          reachable[it->second] = 1;
          stack.push_back(it->second);
        }
      }
    }
    return reachable;
  }

  // Left recursion: a rule reachable from itself before reading a byte ($ref cycles that consume nothing), found
  // by an iterative depth-first search that keeps its path to name the cycle.
  Status CheckNoEmptyCycle(const std::vector<char>& reachable, const std::vector<char>& nullable) const {
    const size_t n = rules_.size();
    std::vector<std::set<size_t>> first(n);
    for (size_t r = 0; r < n; ++r) {
      if (reachable[r]) FirstRules(rules_[r].body, nullable, &first[r]);
    }
    std::vector<int> color(n, 0);  // 0 new, 1 on the path, 2 done
    for (size_t start = 0; start < n; ++start) {
      if (!reachable[start] || color[start] != 0) continue;
      std::vector<std::pair<size_t, std::set<size_t>::const_iterator>> dfs = {{start, first[start].begin()}};
      std::vector<size_t> path = {start};
      color[start] = 1;
      while (!dfs.empty()) {
        const size_t r = dfs.back().first;
        if (dfs.back().second == first[r].end()) {
          color[r] = 2;
          dfs.pop_back();
          path.pop_back();
          continue;
        }
        const size_t next = *dfs.back().second++;
        if (color[next] == 1) {
          std::string cycle;
          for (auto p = std::find(path.begin(), path.end(), next); p != path.end(); ++p) {
            cycle += "#" + rules_[*p].pointer + " -> ";
          }
          cycle += "#" + rules_[next].pointer;
          return Err(rules_[next].pointer, "$ref cycle that consumes no input: " + cycle);
        }
        if (color[next] == 0) {
          color[next] = 1;
          path.push_back(next);
          dfs.push_back({next, first[next].begin()});
        }
      }
    }
    return Status::Ok();
  }

  // Every rule can finish; a $ref target is named when one cannot (the rules that use it cannot either).
  Status CheckFinite(const std::vector<char>& reachable, const std::vector<char>& productive) const {
    std::optional<size_t> stuck;
    for (size_t r = 0; r < rules_.size(); ++r) {
      if (!reachable[r] || productive[r]) continue;
      if (!stuck || (!IsRefTarget(rules_[*stuck].name) && IsRefTarget(rules_[r].name))) stuck = r;
    }
    if (!stuck) return Status::Ok();
    return Err(rules_[*stuck].pointer,
               "the schema has no finite instance (its recursion through $ref never ends; make it optional)");
  }

  // Adds the shared rules that are used, checks the grammar and renders it: root, the schema's rules in the order
  // they were made, then the shared rules.
  Result<std::string> Finish() {
    const std::vector<char> reachable = Reachable();
    const size_t n = rules_.size();
    if (n > kMaxRules) {
      return Err("", "the grammar would have " + std::to_string(n) + " rules, above the limit of " +
                         std::to_string(kMaxRules));
    }
    // Fixpoints: which rules can match the empty string, which can finish at all.
    std::vector<char> nullable(n, 0), productive(n, 0);
    for (bool changed = true; changed;) {
      changed = false;
      for (size_t r = n; r-- > 0;) {  // rules mostly use later ones: one pass usually settles
        if (!reachable[r]) continue;
        if (!nullable[r] && Nullable(rules_[r].body, nullable)) nullable[r] = 1, changed = true;
        if (!productive[r] && Productive(rules_[r].body, productive)) productive[r] = 1, changed = true;
      }
    }
    HERD_RETURN_IF_ERROR(CheckNoEmptyCycle(reachable, nullable));
    HERD_RETURN_IF_ERROR(CheckFinite(reachable, productive));
    std::string text;
    auto emit = [&](size_t r) {
      text += rules_[r].name;
      text += " ::= ";
      text += RenderBody(rules_[r].body);
      text += '\n';
    };
    emit(rule_index_.at("root"));
    for (size_t r = 0; r < n; ++r) {
      if (reachable[r] && rules_[r].name != "root" && !IsPrimitive(rules_[r].name)) emit(r);
    }
    for (std::string_view name : kPrimitives) {
      auto it = rule_index_.find(std::string(name));
      if (it != rule_index_.end() && reachable[it->second]) emit(it->second);
    }
    if (text.size() > kMaxGrammarBytes) {
      return Err("", "the grammar would be " + std::to_string(text.size()) + " bytes, above the limit of " +
                         std::to_string(kMaxGrammarBytes));
    }
    return text;
  }

  const Json* root_;
  std::vector<Rule> rules_;
  std::unordered_map<std::string, size_t> rule_index_;
  std::set<std::string> used_names_;
  std::map<std::string, std::string> ref_rules_;     // JSON pointer of a $ref target -> its rule
  std::map<std::string, std::string> rule_by_body_;  // rendered body -> rule, to share identical rules
  size_t text_bytes_ = 0;                            // the grammar's size so far, roughly
};

Result<std::string> CompileChecked(const Json& schema) {
  if (NestsDeeperThan(schema, kMaxJsonDepth)) {
    return Err("", "the schema document nests deeper than " + std::to_string(kMaxJsonDepth) + " levels");
  }
  try {
    Compiler compiler(&schema);
    return compiler.CompileSchema();
  } catch (const nlohmann::json::exception& e) {  // e.g. a string that is not UTF-8, met by dump()
    return InvalidArgument(std::string("json schema: ") + e.what());
  }
}

}  // namespace

Result<std::string> JsonSchemaToGbnf(const nlohmann::ordered_json& schema) { return CompileChecked(schema); }

Result<std::string> JsonSchemaToGbnf(const nlohmann::json& schema) {
  if (NestsDeeperThan(schema, kMaxJsonDepth)) {
    return Err("", "the schema document nests deeper than " + std::to_string(kMaxJsonDepth) + " levels");
  }
  Json ordered;
  try {
    ordered = Json(schema);
  } catch (const nlohmann::json::exception& e) {
    return InvalidArgument(std::string("json schema: ") + e.what());
  }
  return CompileChecked(ordered);
}

Result<std::string> JsonSchemaToGbnf(std::string_view schema_text) {
  Json schema;
  try {
    schema = Json::parse(schema_text);
  } catch (const nlohmann::json::parse_error& e) {
    return InvalidArgument("json schema is not valid JSON (at byte " + std::to_string(e.byte) + "): " + e.what());
  } catch (const nlohmann::json::exception& e) {  // a number too large for a double, ...
    return InvalidArgument(std::string("json schema is not valid JSON: ") + e.what());
  }
  return CompileChecked(schema);
}

Result<std::string> JsonSchemaToGbnf(const std::string& schema_text) {
  return JsonSchemaToGbnf(std::string_view(schema_text));
}

Result<std::string> JsonSchemaToGbnf(const char* schema_text) {
  return JsonSchemaToGbnf(std::string_view(schema_text));
}

std::string JsonObjectGbnf() { return Compiler(nullptr).Primitive("object"); }

std::string JsonValueGbnf() { return Compiler(nullptr).Primitive("value"); }

}  // namespace herd::grammar
