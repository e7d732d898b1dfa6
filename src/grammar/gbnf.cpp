// GBNF text -> byte-level Grammar (grammar.h): the parser, the lowering of code point classes into UTF-8 byte
// sequences and of repetitions into helper rules, and the checks (undefined rules, rules that never finish, left
// recursion, size limits).
#include <algorithm>
#include <cctype>
#include <functional>
#include <limits>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "grammar/grammar.h"

namespace herd::grammar {
namespace {

constexpr size_t kMaxTextBytes = 1 << 20;
constexpr int64_t kMaxPositions = 100'000;
constexpr int64_t kMaxRepeat = 10'000;
// Groups, parenthesized or made by a repetition suffix (x*+ is (x*)+), nest at most this deep: the parser, the
// lowering and an item's destructor recurse once per level.
constexpr int kMaxNesting = 256;
constexpr int32_t kInfinite = std::numeric_limits<int32_t>::max() / 4;

// Code point ranges, sorted and disjoint, surrogates excluded.
using Ranges = std::vector<std::pair<uint32_t, uint32_t>>;

struct Item;
using Sequence = std::vector<Item>;
using Alternatives = std::vector<Sequence>;

struct Item {
  enum class Kind { kLiteral, kClass, kRef, kGroup } kind;
  std::string literal;  // kLiteral: UTF-8 bytes
  Ranges ranges;        // kClass
  std::string name;     // kRef
  size_t offset = 0;    // kRef: where it was used (for the error)
  std::shared_ptr<Alternatives> group;
  int64_t min = 1, max = 1;  // max -1: unbounded
  int height = 0;            // groups nested in this item, itself included (kMaxNesting)
};

Ranges Normalize(Ranges r) {
  std::sort(r.begin(), r.end());
  Ranges out;
  for (auto [lo, hi] : r) {
    if (!out.empty() && lo <= out.back().second + 1) {
      out.back().second = std::max(out.back().second, hi);
    } else {
      out.push_back({lo, hi});
    }
  }
  // Remove the surrogates: they have no UTF-8 encoding.
  Ranges cut;
  for (auto [lo, hi] : out) {
    if (hi < 0xD800 || lo > 0xDFFF) {
      cut.push_back({lo, hi});
      continue;
    }
    if (lo < 0xD800) cut.push_back({lo, 0xD7FF});
    if (hi > 0xDFFF) cut.push_back({0xE000, hi});
  }
  return cut;
}

Ranges Complement(const Ranges& r) {
  Ranges out;
  uint32_t next = 0;
  for (auto [lo, hi] : r) {
    if (lo > next) out.push_back({next, lo - 1});
    next = hi + 1;
  }
  if (next <= 0x10FFFF) out.push_back({next, 0x10FFFF});
  return Normalize(out);
}

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// Splits [lo, hi] (one encoded length, no surrogates) into sequences of byte ranges, each sequence a product of
// ranges: the usual construction of UTF-8 automata (split at the length boundaries, then wherever the continuation
// bytes of lo and hi do not span their whole range).
void SplitUtf8(uint32_t lo, uint32_t hi, std::vector<std::vector<std::pair<uint8_t, uint8_t>>>* out) {
  static constexpr uint32_t kBounds[] = {0x7F, 0x7FF, 0xFFFF};
  for (uint32_t b : kBounds) {
    if (lo <= b && b < hi) {
      SplitUtf8(lo, b, out);
      SplitUtf8(b + 1, hi, out);
      return;
    }
  }
  if (hi < 0x80) {
    out->push_back({{static_cast<uint8_t>(lo), static_cast<uint8_t>(hi)}});
    return;
  }
  const int n = hi < 0x800 ? 2 : hi < 0x10000 ? 3 : 4;
  for (int i = 1; i < n; ++i) {
    const uint32_t m = (1u << (6 * i)) - 1;
    if ((lo & ~m) != (hi & ~m)) {
      if ((lo & m) != 0) {
        SplitUtf8(lo, lo | m, out);
        SplitUtf8((lo | m) + 1, hi, out);
        return;
      }
      if ((hi & m) != m) {
        SplitUtf8(lo, (hi & ~m) - 1, out);
        SplitUtf8(hi & ~m, hi, out);
        return;
      }
    }
  }
  std::string a, b;
  AppendUtf8(lo, &a);
  AppendUtf8(hi, &b);
  std::vector<std::pair<uint8_t, uint8_t>> seq;
  for (size_t i = 0; i < a.size(); ++i) seq.push_back({static_cast<uint8_t>(a[i]), static_cast<uint8_t>(b[i])});
  out->push_back(std::move(seq));
}

class Parser {
 public:
  explicit Parser(std::string_view text) : s_(text) {}

  Status Parse() {
    SkipSpace(true);
    while (pos_ < s_.size()) {
      const size_t start = pos_;
      std::string name = Name();
      if (name.empty()) return Error("expected a rule name");
      SkipSpace(false);
      if (s_.substr(pos_, 3) != "::=") return Error("expected '::=' after rule name '" + name + "'");
      pos_ += 3;
      SkipSpace(true);
      auto alts = std::make_shared<Alternatives>();
      int height = 0;
      Status st = ParseAlternatives(false, alts.get(), &height);
      if (!st.ok()) return st;
      if (rules_.count(name)) {
        pos_ = start;
        return Error("rule '" + name + "' is defined twice");
      }
      order_.push_back(name);
      rules_[name] = std::move(alts);
      if (pos_ < s_.size() && s_[pos_] != '\n' && s_[pos_] != '\r') return Error("unexpected character");
      SkipSpace(true);
    }
    return Status::Ok();
  }

  const std::map<std::string, std::shared_ptr<Alternatives>>& rules() const { return rules_; }
  const std::vector<std::string>& order() const { return order_; }
  std::string Where(size_t offset) const {
    int line = 1, col = 1;
    for (size_t i = 0; i < offset && i < s_.size(); ++i) {
      if (s_[i] == '\n') {
        ++line;
        col = 1;
      } else {
        ++col;
      }
    }
    return std::to_string(line) + ":" + std::to_string(col);
  }

 private:
  Status Error(const std::string& what) const { return InvalidArgument("grammar " + Where(pos_) + ": " + what); }

  static bool IsNameChar(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
           c == '.';
  }
  std::string Name() {
    const size_t start = pos_;
    while (pos_ < s_.size() && IsNameChar(s_[pos_]) && !(pos_ == start && s_[pos_] == '.')) ++pos_;
    return std::string(s_.substr(start, pos_ - start));
  }

  void SkipSpace(bool newlines) {
    while (pos_ < s_.size()) {
      const char c = s_[pos_];
      if (c == ' ' || c == '\t') {
        ++pos_;
      } else if (c == '#') {
        while (pos_ < s_.size() && s_[pos_] != '\n' && s_[pos_] != '\r') ++pos_;
      } else if (newlines && (c == '\n' || c == '\r')) {
        ++pos_;
      } else {
        break;
      }
    }
  }

  // One UTF-8 code point of the grammar text, or an escape.
  Status Char(uint32_t* cp, bool in_class) {
    if (pos_ >= s_.size()) return Error("unexpected end of grammar");
    const auto c = static_cast<uint8_t>(s_[pos_]);
    if (c == '\\') {
      if (pos_ + 1 >= s_.size()) return Error("unexpected end after '\\'");
      const char e = s_[pos_ + 1];
      pos_ += 2;
      int hex = 0;
      switch (e) {
        case 'n':
          *cp = '\n';
          return Status::Ok();
        case 'r':
          *cp = '\r';
          return Status::Ok();
        case 't':
          *cp = '\t';
          return Status::Ok();
        case '\\':
        case '"':
        case '[':
        case ']':
        case '-':
        case '^':
        case '/':
          *cp = static_cast<uint8_t>(e);
          return Status::Ok();
        case 'x':
          hex = 2;
          break;
        case 'u':
          hex = 4;
          break;
        case 'U':
          hex = 8;
          break;
        default:
          pos_ -= 2;
          return Error(std::string("unknown escape '\\") + e + "'");
      }
      uint32_t v = 0;
      for (int i = 0; i < hex; ++i) {
        if (pos_ >= s_.size() || !std::isxdigit(static_cast<unsigned char>(s_[pos_]))) {
          return Error("expected " + std::to_string(hex) + " hex digits in an escape");
        }
        const char h = s_[pos_++];
        v = v * 16 + static_cast<uint32_t>(h <= '9' ? h - '0' : (h | 0x20) - 'a' + 10);
      }
      if (v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return Error("escape is not a Unicode scalar value");
      *cp = v;
      return Status::Ok();
    }
    (void)in_class;
    // A UTF-8 sequence.
    int n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || pos_ + n > s_.size()) return Error("invalid UTF-8 in the grammar");
    uint32_t v = n == 1 ? c : n == 2 ? (c & 0x1F) : n == 3 ? (c & 0x0F) : (c & 0x07);
    for (int i = 1; i < n; ++i) {
      const auto d = static_cast<uint8_t>(s_[pos_ + i]);
      if ((d & 0xC0) != 0x80) return Error("invalid UTF-8 in the grammar");
      v = (v << 6) | (d & 0x3F);
    }
    static constexpr uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
    if (v < kMin[n] || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return Error("invalid UTF-8 in the grammar");
    pos_ += n;
    *cp = v;
    return Status::Ok();
  }

  Status ParseAlternatives(bool nested, Alternatives* alts, int* height) {
    *height = 0;
    while (true) {
      Sequence seq;
      Status st = ParseSequence(nested, &seq);
      if (!st.ok()) return st;
      for (const Item& item : seq) *height = std::max(*height, item.height);
      alts->push_back(std::move(seq));
      if (pos_ < s_.size() && s_[pos_] == '|') {
        ++pos_;
        SkipSpace(true);
        continue;
      }
      return Status::Ok();
    }
  }

  Status Count(int64_t* v) {
    const size_t start = pos_;
    int64_t x = 0;
    while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') {
      x = x * 10 + (s_[pos_++] - '0');
      if (x > kMaxRepeat) return Error("repetition count above " + std::to_string(kMaxRepeat));
    }
    if (pos_ == start) return Error("expected a number in a repetition");
    *v = x;
    return Status::Ok();
  }

  Status ParseSequence(bool nested, Sequence* seq) {
    while (true) {
      SkipSpace(nested);
      if (pos_ >= s_.size()) return Status::Ok();
      const char c = s_[pos_];
      if (c == '|' || c == '\n' || c == '\r' || (c == ')' && nested)) return Status::Ok();
      Item item;
      if (c == '"') {
        ++pos_;
        item.kind = Item::Kind::kLiteral;
        while (true) {
          if (pos_ >= s_.size()) return Error("unterminated string literal");
          if (s_[pos_] == '"') {
            ++pos_;
            break;
          }
          if (s_[pos_] == '\n' || s_[pos_] == '\r') return Error("unterminated string literal");
          uint32_t cp = 0;
          Status st = Char(&cp, false);
          if (!st.ok()) return st;
          AppendUtf8(cp, &item.literal);
        }
      } else if (c == '[') {
        ++pos_;
        item.kind = Item::Kind::kClass;
        bool negated = false;
        if (pos_ < s_.size() && s_[pos_] == '^') {
          negated = true;
          ++pos_;
        }
        Ranges r;
        while (true) {
          if (pos_ >= s_.size()) return Error("unterminated character class");
          if (s_[pos_] == ']') {
            ++pos_;
            break;
          }
          uint32_t lo = 0, hi = 0;
          Status st = Char(&lo, true);
          if (!st.ok()) return st;
          hi = lo;
          if (pos_ + 1 < s_.size() && s_[pos_] == '-' && s_[pos_ + 1] != ']') {
            ++pos_;
            st = Char(&hi, true);
            if (!st.ok()) return st;
            if (hi < lo) return Error("character range is backwards");
          }
          r.push_back({lo, hi});
        }
        item.ranges = Normalize(r);
        if (negated) item.ranges = Complement(item.ranges);
        if (item.ranges.empty()) return Error("character class matches nothing");
      } else if (c == '.') {
        ++pos_;
        item.kind = Item::Kind::kClass;
        item.ranges = Normalize({{0, 0x10FFFF}});
      } else if (c == '(') {
        if (open_ >= kMaxNesting) return Error("groups nested more than " + std::to_string(kMaxNesting) + " deep");
        ++pos_;
        SkipSpace(true);
        item.kind = Item::Kind::kGroup;
        item.group = std::make_shared<Alternatives>();
        ++open_;
        Status st = ParseAlternatives(true, item.group.get(), &item.height);
        --open_;
        if (!st.ok()) return st;
        ++item.height;
        if (pos_ >= s_.size() || s_[pos_] != ')') return Error("expected ')'");
        ++pos_;
        if (item.group->size() == 1 && (*item.group)[0].size() == 1) {  // (x) is x, so that (x*)+ merges as x*+
          Item inner = std::move((*item.group)[0][0]);
          item = std::move(inner);
        }
      } else if (IsNameChar(c)) {
        item.kind = Item::Kind::kRef;
        item.offset = pos_;
        item.name = Name();
        // A name followed by ::= starts the next rule: the previous rule ended without a newline.
        size_t p = pos_;
        while (p < s_.size() && (s_[p] == ' ' || s_[p] == '\t')) ++p;
        if (s_.substr(p, 3) == "::=") {
          pos_ = item.offset;
          return Error("expected a newline before rule '" + item.name + "'");
        }
      } else if (c == '<' || c == '!') {
        return Error("token references (<...>, !<...>) are not supported");
      } else {
        return Error(std::string("unexpected character '") + c + "'");
      }
      // Repetition suffixes (several apply in turn, each to what is before it).
      while (pos_ < s_.size()) {
        const char r = s_[pos_];
        int64_t lo = 0, hi = 0;
        if (r == '*') {
          lo = 0, hi = -1, ++pos_;
        } else if (r == '+') {
          lo = 1, hi = -1, ++pos_;
        } else if (r == '?') {
          lo = 0, hi = 1, ++pos_;
        } else if (r == '{') {
          ++pos_;
          SkipSpace(false);
          Status st = Count(&lo);
          if (!st.ok()) return st;
          SkipSpace(false);
          hi = lo;
          if (pos_ < s_.size() && s_[pos_] == ',') {
            ++pos_;
            SkipSpace(false);
            if (pos_ < s_.size() && s_[pos_] == '}') {
              hi = -1;
            } else {
              st = Count(&hi);
              if (!st.ok()) return st;
              if (hi < lo) return Error("repetition {m,n} with n < m");
            }
            SkipSpace(false);
          }
          if (pos_ >= s_.size() || s_[pos_] != '}') return Error("expected '}' in a repetition");
          ++pos_;
        } else {
          break;
        }
        if ((item.min != 1 || item.max != 1) && item.min <= 1) {
          // (x{a,b}){c,d} with a <= 1 is x{ac,bd}: the counts k a .. k b for k = c .. d leave no gap. Merged, a chain
          // of suffixes on a nullable item (x*+++...) is one repetition, not a nest whose expansions double per level.
          item.min *= lo;
          item.max = item.max == -1 || hi == -1 ? -1 : item.max * hi;
          if (item.max > kMaxRepeat || item.min > kMaxRepeat) {
            return Error("repetition count above " + std::to_string(kMaxRepeat));
          }
          continue;
        }
        if (item.min != 1 || item.max != 1) {
          Item wrap;
          wrap.kind = Item::Kind::kGroup;
          wrap.height = item.height + 1;
          wrap.group = std::make_shared<Alternatives>(Alternatives{Sequence{std::move(item)}});
          item = std::move(wrap);
        }
        if (open_ + item.height > kMaxNesting) {
          return Error("groups and repetitions nested more than " + std::to_string(kMaxNesting) + " deep");
        }
        item.min = lo;
        item.max = hi;
      }
      seq->push_back(std::move(item));
    }
  }

  std::string_view s_;
  size_t pos_ = 0;
  int open_ = 0;  // parentheses open at pos_
  std::map<std::string, std::shared_ptr<Alternatives>> rules_;
  std::vector<std::string> order_;
};

}  // namespace

// Lowers the parsed rules into a Grammar.
class GrammarBuilder {
 public:
  explicit GrammarBuilder(const Parser& parser) : parser_(parser) {}

  Result<std::shared_ptr<const Grammar>> Build(std::string_view root) {
    g_ = std::make_shared<Grammar>();
    for (const auto& name : parser_.order()) NewRule(name, /*user=*/true);
    auto it = rule_ids_.find(std::string(root));
    if (it == rule_ids_.end()) return InvalidArgument("grammar has no rule '" + std::string(root) + "' to start from");
    g_->root_ = it->second;
    for (const auto& name : parser_.order()) {
      Status st = Lower(rule_ids_.at(name), *parser_.rules().at(name));
      if (!st.ok()) return st;
    }
    // Helper rules are appended while lowering; they were lowered as they were made.
    Status st = Check();
    if (!st.ok()) return st;
    return std::shared_ptr<const Grammar>(g_);
  }

 private:
  using Seq = std::vector<Grammar::Element>;

  // A rule of the text (`user`: found by its name) or a helper rule of a group, class or repetition (named after its
  // rule for messages only, so that it cannot take the place of a rule of the text with the same name).
  int32_t NewRule(const std::string& name, bool user = false) {
    const auto id = static_cast<int32_t>(g_->rules_.size());
    g_->rules_.push_back({name, {}});
    if (user) rule_ids_[name] = id;
    return id;
  }
  std::string HelperName(int32_t parent) { return g_->rules_[parent].name + "-" + std::to_string(++helpers_); }

  int32_t ByteSet(const std::array<uint64_t, 4>& set) {
    auto [it, inserted] = byte_set_ids_.emplace(set, static_cast<int32_t>(g_->byte_sets_.size()));
    if (inserted) g_->byte_sets_.push_back(set);
    return it->second;
  }
  Grammar::Element Bytes(uint8_t lo, uint8_t hi) {
    std::array<uint64_t, 4> set{};
    for (int b = lo; b <= hi; ++b) set[b >> 6] |= 1ull << (b & 63);
    return {Grammar::Kind::kBytes, ByteSet(set)};
  }

  Status AddAlternative(int32_t rule, const Seq& seq) {
    if (static_cast<int64_t>(g_->elements_.size() + seq.size() + 1) > kMaxPositions) {
      return InvalidArgument("grammar is too large: more than " + std::to_string(kMaxPositions) + " positions");
    }
    g_->rules_[rule].alternatives.push_back(static_cast<int32_t>(g_->elements_.size()));
    g_->elements_.insert(g_->elements_.end(), seq.begin(), seq.end());
    g_->elements_.push_back({Grammar::Kind::kEnd, 0});
    return Status::Ok();
  }

  Status Lower(int32_t rule, const Alternatives& alts) {
    for (const auto& seq : alts) {
      Seq out;
      Status st = LowerSequence(rule, seq, &out);
      if (!st.ok()) return st;
      st = AddAlternative(rule, out);
      if (!st.ok()) return st;
    }
    return Status::Ok();
  }

  // Whether one occurrence of `item` (without its repetition) surely matches the empty string, from the item alone: a
  // reference to a rule counts as not (finding which rules are nullable takes a fixpoint over the whole grammar, one
  // pass per link of a chain of rules). Saying not for a nullable item only keeps a repetition as written. Memoized
  // per group, so nested groups are looked at once each.
  bool NullableOnce(const Item& item) {
    switch (item.kind) {
      case Item::Kind::kLiteral:
        return item.literal.empty();
      case Item::Kind::kClass:
      case Item::Kind::kRef:
        return false;
      case Item::Kind::kGroup: {
        auto [it, inserted] = nullable_groups_.emplace(item.group.get(), false);
        if (inserted) {
          it->second = std::any_of(item.group->begin(), item.group->end(), [&](const Sequence& seq) {
            return std::all_of(seq.begin(), seq.end(), [&](const Item& i) { return i.min == 0 || NullableOnce(i); });
          });
        }
        return it->second;
      }
    }
    return false;
  }

  // The elements of one occurrence of `item` (without its repetition).
  Status LowerOnce(int32_t rule, const Item& item, Seq* out) {
    switch (item.kind) {
      case Item::Kind::kLiteral:
        for (char c : item.literal) out->push_back(Bytes(static_cast<uint8_t>(c), static_cast<uint8_t>(c)));
        return Status::Ok();
      case Item::Kind::kRef: {
        auto it = rule_ids_.find(item.name);
        if (it == rule_ids_.end()) {
          return InvalidArgument("grammar " + parser_.Where(item.offset) + ": undefined rule '" + item.name + "'");
        }
        out->push_back({Grammar::Kind::kRule, it->second});
        return Status::Ok();
      }
      case Item::Kind::kGroup: {
        const int32_t helper = NewRule(HelperName(rule));
        Status st = Lower(helper, *item.group);
        if (!st.ok()) return st;
        out->push_back({Grammar::Kind::kRule, helper});
        return Status::Ok();
      }
      case Item::Kind::kClass: {
        if (item.ranges.back().second < 0x80) {
          std::array<uint64_t, 4> set{};
          for (auto [lo, hi] : item.ranges) {
            for (uint32_t b = lo; b <= hi; ++b) set[b >> 6] |= 1ull << (b & 63);
          }
          out->push_back({Grammar::Kind::kBytes, ByteSet(set)});
          return Status::Ok();
        }
        auto cached = class_rules_.find(item.ranges);
        if (cached != class_rules_.end()) {
          out->push_back({Grammar::Kind::kRule, cached->second});
          return Status::Ok();
        }
        std::vector<std::vector<std::pair<uint8_t, uint8_t>>> seqs;
        for (auto [lo, hi] : item.ranges) SplitUtf8(lo, hi, &seqs);
        // Single bytes merge into one element; the multi-byte sequences are alternatives of their own.
        std::array<uint64_t, 4> ascii{};
        bool has_ascii = false;
        const int32_t helper = NewRule(HelperName(rule));
        for (const auto& s : seqs) {
          if (s.size() == 1) {
            for (int b = s[0].first; b <= s[0].second; ++b) ascii[b >> 6] |= 1ull << (b & 63);
            has_ascii = true;
            continue;
          }
          Seq alt;
          for (auto [lo, hi] : s) alt.push_back(Bytes(lo, hi));
          Status st = AddAlternative(helper, alt);
          if (!st.ok()) return st;
        }
        if (has_ascii) {
          Status st = AddAlternative(helper, {{Grammar::Kind::kBytes, ByteSet(ascii)}});
          if (!st.ok()) return st;
        }
        class_rules_[item.ranges] = helper;
        out->push_back({Grammar::Kind::kRule, helper});
        return Status::Ok();
      }
    }
    return Internal("unknown grammar item");
  }

  Status LowerSequence(int32_t rule, const Sequence& seq, Seq* out) {
    for (const auto& item : seq) {
      Seq once;
      Status st = LowerOnce(rule, item, &once);
      if (!st.ok()) return st;
      if (item.min == 1 && item.max == 1) {
        out->insert(out->end(), once.begin(), once.end());
        continue;
      }
      // When one occurrence can be empty, the least count is no constraint: x{m,n} is x{0,n}, and x{m,} is x*. Kept,
      // the m required copies would be m places for the same text (ambiguity the recognizer carries as m stacks per
      // nesting level, m^depth in all).
      const int64_t min = NullableOnce(item) ? 0 : item.min;
      if (static_cast<int64_t>(once.size()) * std::max<int64_t>(min, item.max) > kMaxPositions) {
        return InvalidArgument("grammar is too large: a repetition needs more than " + std::to_string(kMaxPositions) +
                               " positions");
      }
      if (item.max == -1) {
        // x{m,} is m - 1 copies then plus, with plus ::= once more and more ::= plus | (empty); x* is more. Every
        // occurrence after the copies is the one in plus, so it returns to the same place: x x* would put the first
        // one somewhere else, and a nest of such repetitions would hold a stack for each choice of first or later
        // occurrence at each level (2^depth).
        for (int64_t i = 0; i + 1 < min; ++i) out->insert(out->end(), once.begin(), once.end());
        const int32_t plus = NewRule(HelperName(rule));
        const int32_t more = NewRule(HelperName(rule));
        Seq body = once;
        body.push_back({Grammar::Kind::kRule, more});
        st = AddAlternative(plus, body);
        if (!st.ok()) return st;
        st = AddAlternative(more, {{Grammar::Kind::kRule, plus}});
        if (!st.ok()) return st;
        st = AddAlternative(more, {});
        if (!st.ok()) return st;
        out->push_back({Grammar::Kind::kRule, min == 0 ? more : plus});
        continue;
      }
      for (int64_t i = 0; i < min; ++i) out->insert(out->end(), once.begin(), once.end());
      if (item.max > min) {
        // opt_k ::= once opt_(k+1) | (empty), the last without the reference; built from the innermost out.
        // In a long chain, the rules that allow kRepeatHorizon or more further occurrences are the same to every
        // token that is at most kRepeatHorizon bytes long: they map to the one that allows exactly that many.
        int32_t next = -1, canonical = -1;
        for (int64_t left = 1; left <= item.max - min; ++left) {
          const int32_t opt = NewRule(HelperName(rule));
          Seq body = once;
          if (next >= 0) body.push_back({Grammar::Kind::kRule, next});
          st = AddAlternative(opt, body);
          if (!st.ok()) return st;
          st = AddAlternative(opt, {});
          if (!st.ok()) return st;
          if (left == Grammar::kRepeatHorizon) canonical = opt;
          if (left > Grammar::kRepeatHorizon) canonical_rules_.push_back({opt, canonical});
          next = opt;
        }
        if (canonical >= 0) horizon_rules_.push_back(canonical);
        out->push_back({Grammar::Kind::kRule, next});
      }
    }
    return Status::Ok();
  }

  Status Check() {
    const auto& el = g_->elements_;
    const int32_t n = g_->num_rules();
    // Shortest sentence of each rule (kInfinite: none), by relaxation to a fixpoint.
    std::vector<int32_t> rule_min(n, kInfinite);
    for (bool changed = true; changed;) {
      changed = false;
      for (int32_t r = 0; r < n; ++r) {
        for (int32_t a : g_->rules_[r].alternatives) {
          int64_t len = 0;
          for (int32_t p = a; el[p].kind != Grammar::Kind::kEnd; ++p) {
            len += el[p].kind == Grammar::Kind::kBytes ? 1 : rule_min[el[p].arg];
          }
          if (len < rule_min[r]) {
            rule_min[r] = static_cast<int32_t>(len);
            changed = true;
          }
        }
      }
    }
    g_->canonical_.resize(el.size());
    for (size_t p = 0; p < el.size(); ++p) g_->canonical_[p] = static_cast<int32_t>(p);
    g_->horizon_.assign(el.size(), 0);
    for (auto [r, c] : canonical_rules_) {
      const auto& from = g_->rules_[r].alternatives;
      const auto& to = g_->rules_[c].alternatives;
      for (size_t a = 0; a < from.size(); ++a) {
        for (int32_t p = from[a], q = to[a];; ++p, ++q) {
          g_->canonical_[p] = q;
          if (el[p].kind == Grammar::Kind::kEnd) break;
        }
      }
    }
    for (int32_t c : horizon_rules_) {
      for (int32_t a : g_->rules_[c].alternatives) {
        for (int32_t p = a;; ++p) {
          g_->horizon_[p] = 1;
          if (el[p].kind == Grammar::Kind::kEnd) break;
        }
      }
    }
    g_->tail_min_.assign(el.size(), 0);
    for (int32_t r = 0; r < n; ++r) {
      for (int32_t a : g_->rules_[r].alternatives) {
        int32_t end = a;
        while (el[end].kind != Grammar::Kind::kEnd) ++end;
        int64_t acc = 0;
        for (int32_t p = end; p >= a; --p) {
          if (p < end) acc += el[p].kind == Grammar::Kind::kBytes ? 1 : rule_min[el[p].arg];
          g_->tail_min_[p] = static_cast<int32_t>(std::min<int64_t>(acc, kInfinite));
        }
      }
    }
    // Rules reachable from the start must be able to finish.
    std::vector<char> reached(n, 0);
    std::vector<int32_t> todo = {g_->root_};
    reached[g_->root_] = 1;
    while (!todo.empty()) {
      const int32_t r = todo.back();
      todo.pop_back();
      if (rule_min[r] >= kInfinite) {
        return InvalidArgument("grammar rule '" + g_->rules_[r].name +
                               "' can never finish (every alternative recurses)");
      }
      for (int32_t a : g_->rules_[r].alternatives) {
        for (int32_t p = a; el[p].kind != Grammar::Kind::kEnd; ++p) {
          if (el[p].kind == Grammar::Kind::kRule && !reached[el[p].arg]) {
            reached[el[p].arg] = 1;
            todo.push_back(el[p].arg);
          }
        }
      }
    }
    // Left recursion: a rule reaching itself before any byte, through a reference that has more to do after it (a
    // reference at the end of an alternative is a tail call and does not grow the stack).
    struct Edge {
      int32_t to;
      bool grows;
    };
    std::vector<std::vector<Edge>> edges(n);
    for (int32_t r = 0; r < n; ++r) {
      for (int32_t a : g_->rules_[r].alternatives) {
        for (int32_t p = a; el[p].kind == Grammar::Kind::kRule; ++p) {
          edges[r].push_back({el[p].arg, el[p + 1].kind != Grammar::Kind::kEnd});
          if (rule_min[el[p].arg] != 0) break;
        }
      }
    }
    // Tarjan's strongly connected components, iteratively.
    std::vector<int32_t> index(n, -1), low(n, 0), comp(n, -1), stack;
    std::vector<char> on_stack(n, 0);
    int32_t counter = 0, comps = 0;
    for (int32_t start = 0; start < n; ++start) {
      if (index[start] >= 0) continue;
      std::vector<std::pair<int32_t, size_t>> call = {{start, 0}};
      index[start] = low[start] = counter++;
      stack.push_back(start);
      on_stack[start] = 1;
      while (!call.empty()) {
        auto& [v, next] = call.back();
        if (next < edges[v].size()) {
          const int32_t w = edges[v][next++].to;
          if (index[w] < 0) {
            index[w] = low[w] = counter++;
            stack.push_back(w);
            on_stack[w] = 1;
            call.push_back({w, 0});
          } else if (on_stack[w]) {
            low[v] = std::min(low[v], index[w]);
          }
          continue;
        }
        if (low[v] == index[v]) {
          while (true) {
            const int32_t w = stack.back();
            stack.pop_back();
            on_stack[w] = 0;
            comp[w] = comps;
            if (w == v) break;
          }
          ++comps;
        }
        const int32_t done = v;
        call.pop_back();
        if (!call.empty()) low[call.back().first] = std::min(low[call.back().first], low[done]);
      }
    }
    for (int32_t r = 0; r < n; ++r) {
      for (const auto& e : edges[r]) {
        if (e.grows && comp[e.to] == comp[r]) {
          return InvalidArgument("grammar rule '" + g_->rules_[r].name + "' is left-recursive (through '" +
                                 g_->rules_[e.to].name + "'); rewrite it with repetition");
        }
      }
    }
    return Status::Ok();
  }

  const Parser& parser_;
  std::shared_ptr<Grammar> g_;
  std::unordered_map<std::string, int32_t> rule_ids_;
  std::map<std::array<uint64_t, 4>, int32_t> byte_set_ids_;
  std::map<Ranges, int32_t> class_rules_;
  std::vector<std::pair<int32_t, int32_t>> canonical_rules_;       // (rule, the rule it is the same as)
  std::vector<int32_t> horizon_rules_;                             // the rules they map to
  std::unordered_map<const Alternatives*, bool> nullable_groups_;  // NullableOnce's memo
  int helpers_ = 0;
};

Result<std::shared_ptr<const Grammar>> ParseGbnf(std::string_view text, std::string_view root) {
  if (text.size() > kMaxTextBytes) {
    return InvalidArgument("grammar is too large: " + std::to_string(text.size()) + " bytes, the limit is " +
                           std::to_string(kMaxTextBytes));
  }
  Parser parser(text);
  Status st = parser.Parse();
  if (!st.ok()) return st;
  if (parser.order().empty()) return InvalidArgument("grammar is empty: no rules");
  return GrammarBuilder(parser).Build(root);
}

}  // namespace herd::grammar
