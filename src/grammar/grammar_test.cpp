#include "grammar/grammar.h"

#include <gtest/gtest.h>

#include <random>
#include <regex>

namespace herd::grammar {
namespace {

std::shared_ptr<const Grammar> MustParse(std::string_view text) {
  auto g = ParseGbnf(text);
  EXPECT_TRUE(g.ok()) << g.status().ToString();
  return g.ok() ? g.value() : nullptr;
}

bool InLanguage(const std::shared_ptr<const Grammar>& g, std::string_view text) {
  ByteMatcher m(g);
  return m.Accept(text) && m.CanEnd();
}

TEST(Gbnf, ParsesTheSyntax) {
  auto g = MustParse(R"(# a comment
root ::= greeting (" " name)? "!"   # trailing comment
greeting ::= "hello" | "hi"
name ::= [A-Z] [a-z]{1,5}
)");
  EXPECT_TRUE(InLanguage(g, "hello!"));
  EXPECT_TRUE(InLanguage(g, "hi Bob!"));
  EXPECT_TRUE(InLanguage(g, "hi Bobbyx!"));
  EXPECT_FALSE(InLanguage(g, "hi Bobbyxy!"));
  EXPECT_FALSE(InLanguage(g, "hi B!"));
  EXPECT_FALSE(InLanguage(g, "hello"));
  EXPECT_FALSE(InLanguage(g, "hey!"));
}

TEST(Gbnf, HelperRulesNeverTakeTheNameOfARule) {
  auto g = MustParse("root ::= root-1 (\"a\")* root-2\nroot-1 ::= \"2\"\nroot-2 ::= \"3\"?\n");
  EXPECT_TRUE(InLanguage(g, "2aa3"));
  EXPECT_TRUE(InLanguage(g, "2"));
  EXPECT_FALSE(InLanguage(g, "aa3"));
}

TEST(Gbnf, RulesContinueInsideParenthesesAndAfterBar) {
  auto g = MustParse("root ::= (\n  \"a\"\n  \"b\" ) |\n  \"c\"\nother ::= \"x\"\n");
  EXPECT_TRUE(InLanguage(g, "ab"));
  EXPECT_TRUE(InLanguage(g, "c"));
  EXPECT_FALSE(InLanguage(g, "x"));
}

TEST(Gbnf, EscapesAndUnicode) {
  auto g = MustParse(R"(root ::= "\x41\u00e9\n\t\\\"" [\u4e00-\u9fff]+ "€")");
  EXPECT_TRUE(InLanguage(g, "A\xC3\xA9\n\t\\\"\xE4\xB8\xAD\xE6\x96\x87\xE2\x82\xAC"));
  EXPECT_FALSE(InLanguage(g, "A\xC3\xA9\n\t\\\"\xE2\x82\xAC"));
}

TEST(Gbnf, NegatedClassesAndDotCoverWholeCharacters) {
  auto g = MustParse(R"(root ::= "\"" [^"\\]* "\"")");
  EXPECT_TRUE(InLanguage(g, "\"plain\""));
  EXPECT_TRUE(InLanguage(g, "\"caf\xC3\xA9 \xF0\x9F\x98\x80\""));
  EXPECT_FALSE(InLanguage(g, "\"a\"b\""));
  EXPECT_FALSE(InLanguage(g, "\"\xC3\""));              // a lead byte without its continuation
  EXPECT_FALSE(InLanguage(g, "\"\xED\xA0\x80\""));      // an encoded surrogate
  EXPECT_FALSE(InLanguage(g, "\"\xC0\xAF\""));          // an overlong form
  EXPECT_FALSE(InLanguage(g, "\"\xF4\x90\x80\x80\""));  // above U+10FFFF
  // Every code point of a sample, whole, is one `.`.
  auto dot = MustParse("root ::= . .");
  std::mt19937 rng(7);
  for (int i = 0; i < 2000; ++i) {
    uint32_t cp = rng() % 0x110000;
    if (cp >= 0xD800 && cp <= 0xDFFF) continue;
    std::string s;
    if (cp < 0x80) {
      s.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      s += {static_cast<char>(0xC0 | (cp >> 6)), static_cast<char>(0x80 | (cp & 0x3F))};
    } else if (cp < 0x10000) {
      s += {static_cast<char>(0xE0 | (cp >> 12)), static_cast<char>(0x80 | ((cp >> 6) & 0x3F)),
            static_cast<char>(0x80 | (cp & 0x3F))};
    } else {
      s += {static_cast<char>(0xF0 | (cp >> 18)), static_cast<char>(0x80 | ((cp >> 12) & 0x3F)),
            static_cast<char>(0x80 | ((cp >> 6) & 0x3F)), static_cast<char>(0x80 | (cp & 0x3F))};
    }
    ASSERT_TRUE(InLanguage(dot, s + "a")) << cp;
    ASSERT_FALSE(InLanguage(dot, s)) << cp;
  }
}

// Regular grammars against std::regex on every string up to a length over a small alphabet.
TEST(Gbnf, AgreesWithRegexOnEveryShortString) {
  const std::pair<const char*, const char*> cases[] = {
      {R"(root ::= ("ab" | "c")* "d"?)", "(ab|c)*d?"},
      {R"(root ::= [a-c]{2,3} ("d" | [ab]+)?)", "[a-c]{2,3}(d|[ab]+)?"},
      {R"(root ::= ("a"? "b")+ "c"{0,2})", "(a?b)+c{0,2}"},
      {R"(root ::= x x
x ::= "a" | "b" x)",
       "(b*a){2}"},
      {R"(root ::= ("a"?)* "b")", "a*b"},
      {R"(root ::= [^a]{1,2} "a")", "[^a]{1,2}a"},
  };
  const std::string alphabet = "abcd";
  for (auto [gbnf, re] : cases) {
    auto g = MustParse(gbnf);
    ASSERT_NE(g, nullptr);
    std::regex rx(re);
    std::vector<std::string> all = {""};
    for (size_t i = 0; i < all.size(); ++i) {
      if (all[i].size() < 6) {
        for (char c : alphabet) all.push_back(all[i] + c);
      }
    }
    for (const auto& s : all) {
      ASSERT_EQ(InLanguage(g, s), std::regex_match(s, rx)) << gbnf << " on '" << s << "'";
    }
  }
}

TEST(Gbnf, MatcherStateIsUnchangedByARejectedInput) {
  auto g = MustParse(R"(root ::= "abc" "def")");
  ByteMatcher m(g);
  EXPECT_TRUE(m.Accept("ab"));
  EXPECT_FALSE(m.Accept("x"));
  EXPECT_TRUE(m.Allows("cd"));
  EXPECT_FALSE(m.Allows("cx"));
  EXPECT_TRUE(m.Accept("cdef"));
  EXPECT_TRUE(m.CanEnd());
  EXPECT_TRUE(m.IsComplete());
}

TEST(Gbnf, ErrorsNameTheProblem) {
  struct Case {
    const char* text;
    const char* message;
  };
  const Case cases[] = {
      {"root ::= \"a", "1:12: unterminated string literal"},
      {"root ::= a\n", "1:10: undefined rule 'a'"},
      {"root ::= [b-a]", "backwards"},
      {"start ::= \"a\"", "no rule 'root'"},
      {"root ::= root \"a\" | \"b\"", "'root' is left-recursive"},
      {"root ::= x \"a\"\nx ::= \"\" | root", "left-recursive"},
      {"root ::= \"a\" root", "'root' can never finish"},
      {"root ::= \"a\"{3,2}", "n < m"},
      {"root ::= \"a\"{20000}", "above 10000"},
      {"root ::= \"a\"\nroot ::= \"b\"", "defined twice"},
      {"root ::= \"\\q\"", "unknown escape"},
      {"root ::= \"a\" ::= \"b\"", "unexpected character"},
      {"root ::= <[1000]>", "token references"},
      {"root ::= ( \"a\" ", "expected ')'"},
      {"root ::= \"\xFF\"", "invalid UTF-8"},
      {"root ::= [\\x00-\\x{10}]", "hex digits"},
      {"", "no rules"},
  };
  for (const auto& c : cases) {
    auto g = ParseGbnf(c.text);
    ASSERT_FALSE(g.ok()) << c.text;
    EXPECT_EQ(g.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(g.status().message().find(c.message), std::string::npos) << c.text << " -> " << g.status().message();
  }
  // Size limits hold before any work is done.
  EXPECT_FALSE(ParseGbnf(std::string(2 << 20, ' ')).ok());
  auto big = ParseGbnf("root ::= (\"abcdefghij\"{10000}){20}");
  ASSERT_FALSE(big.ok());
  EXPECT_NE(big.status().message().find("too large"), std::string::npos);
}

// Nesting that the parser, the lowering or the matcher would follow one stack frame per level: groups and suffix
// chains past the limit are errors that say so; just under it, and rule chains as long as the grammar may hold, parse
// and match (the matcher expands rule references with a work list, not recursion).
TEST(Gbnf, DeepNestingIsAnErrorOrWorksNeverACrash) {
  const auto message = [](const std::string& text) {
    auto g = ParseGbnf(text);
    return g.ok() ? std::string("ok") : g.status().message();
  };
  EXPECT_NE(
      message("root ::= " + std::string(100000, '(') + "\"a\"" + std::string(100000, ')')).find("nested more than 256"),
      std::string::npos);
  std::string twice;  // "a"{2}{2}...: a minimum above 1 does not merge, so each suffix nests a group
  for (int i = 0; i < 300; ++i) twice += "{2}";
  EXPECT_NE(message("root ::= \"a\"" + twice).find("nested more than 256"), std::string::npos);
  EXPECT_NE(message("root ::= " + std::string(200, '(') + "\"a\"" + twice.substr(0, 300) + std::string(200, ')'))
                .find("nested more than 256"),
            std::string::npos);
  // Suffixes on an item with a minimum of 0 or 1 merge into one repetition ((x*)+ is x*; (x?){2,3} is x{0,3}).
  auto plus = MustParse("root ::= \"a\"" + std::string(100000, '+'));
  ASSERT_NE(plus, nullptr);
  EXPECT_TRUE(InLanguage(plus, "aaa"));
  EXPECT_FALSE(InLanguage(plus, ""));
  auto opt = MustParse("root ::= ((\"a\"?){2,3}) \"b\"");
  ASSERT_NE(opt, nullptr);
  EXPECT_TRUE(InLanguage(opt, "b"));
  EXPECT_TRUE(InLanguage(opt, "aaab"));
  EXPECT_FALSE(InLanguage(opt, "aaaab"));
  auto even = MustParse("root ::= (\"a\"{2})* \"b\"");  // not merged: only even counts
  ASSERT_NE(even, nullptr);
  EXPECT_TRUE(InLanguage(even, "aab"));
  EXPECT_FALSE(InLanguage(even, "aaab"));
  // What the fuzzer found (an ASan stack overflow in the matcher): many suffixes on a nullable item.
  auto fuzzed = ParseGbnf("root ::= \"a\" [b=d]*" + std::string(55, '+') + " (\"x\" | \"yz\"){2,6}\n");
  if (fuzzed.ok()) {
    EXPECT_TRUE(InLanguage(fuzzed.value(), "abxyz"));
    EXPECT_FALSE(InLanguage(fuzzed.value(), "abx"));
  }
  auto deep = MustParse("root ::= " + std::string(250, '(') + "\"a\"*" + std::string(250, ')') + " \"b\"");
  ASSERT_NE(deep, nullptr);
  EXPECT_TRUE(InLanguage(deep, "aaab"));
  EXPECT_FALSE(InLanguage(deep, "aaa"));
  // 20000 rules, each the next one first: the matcher's expansion follows all of them for the first byte.
  std::string chain = "root ::= r0 \"!\"\n";
  for (int i = 0; i < 20000; ++i) chain += "r" + std::to_string(i) + " ::= r" + std::to_string(i + 1) + "\n";
  chain += "r20000 ::= \"x\" | \"\"\n";
  auto g = MustParse(chain);
  ASSERT_NE(g, nullptr);
  EXPECT_TRUE(InLanguage(g, "x!"));
  EXPECT_TRUE(InLanguage(g, "!"));
  EXPECT_FALSE(InLanguage(g, "xx!"));
}

// A repetition of a group that can match the empty string: the least count is no constraint, and nests of such
// repetitions (or of x+ in general) keep one parse stack per level instead of one per way of counting.
TEST(Gbnf, RepetitionsOfNullableGroups) {
  auto bounded = MustParse("root ::= (\"a\"? \"b\"?){2,3} \"!\"");
  ASSERT_NE(bounded, nullptr);
  EXPECT_TRUE(InLanguage(bounded, "!"));  // two empty occurrences
  EXPECT_TRUE(InLanguage(bounded, "a!"));
  EXPECT_TRUE(InLanguage(bounded, "ababab!"));
  EXPECT_FALSE(InLanguage(bounded, "abababab!"));  // four "ab": one too many
  EXPECT_FALSE(InLanguage(bounded, "ba ab!"));
  auto unbounded = MustParse("root ::= (\"a\"? \"b\"?){3,} \"!\"");
  ASSERT_NE(unbounded, nullptr);
  EXPECT_TRUE(InLanguage(unbounded, "!"));
  EXPECT_TRUE(InLanguage(unbounded, "abbaab!"));
  EXPECT_FALSE(InLanguage(unbounded, "abc!"));
  auto at_least = MustParse("root ::= \"a\"{3,} \"!\"");  // not nullable: the count still holds
  ASSERT_NE(at_least, nullptr);
  EXPECT_FALSE(InLanguage(at_least, "aa!"));
  EXPECT_TRUE(InLanguage(at_least, "aaa!"));
  EXPECT_TRUE(InLanguage(at_least, "aaaaaaa!"));
  // Nullable through a rule: kept as written, and still right.
  auto rule = MustParse("root ::= item{2,} \"!\"\nitem ::= \"x\" | opt\nopt ::= \"y\"?\n");
  ASSERT_NE(rule, nullptr);
  EXPECT_TRUE(InLanguage(rule, "!"));
  EXPECT_TRUE(InLanguage(rule, "xyx!"));
  // 40 levels of (x "b"?)+: a stack for every choice of first or later occurrence at each level would be 2^40. It
  // stays within the matcher's work bound (status OK), and the language is right.
  std::string nest = "\"a\"";
  for (int i = 0; i < 40; ++i) nest = "(" + nest + " \"b\"?)+";
  auto plus = MustParse("root ::= " + nest + " \"!\"\n");
  ASSERT_NE(plus, nullptr);
  std::string text;
  for (int i = 0; i < 200; ++i) text += i % 7 == 0 ? "abb" : "a";
  ByteMatcher m(plus);
  EXPECT_TRUE(m.Accept(text)) << m.status().ToString();
  EXPECT_TRUE(m.status().ok()) << m.status().ToString();
  EXPECT_TRUE(m.Accept("!"));
  EXPECT_TRUE(m.CanEnd());
  EXPECT_FALSE(InLanguage(plus, "b!"));
  EXPECT_FALSE(InLanguage(plus, "a" + std::string(42, 'b') + "!"));  // one "b"? per level and no more
  EXPECT_TRUE(InLanguage(plus, "a" + std::string(40, 'b') + "!"));
}

// Nested bounded repetitions that match the same text in very many ways multiply their stacks (the counts of every
// level): the matcher stops at its work bound with an error that says so, within seconds, and refuses
// everything after; other matchers are unaffected.
TEST(Gbnf, AGrammarTooComplexToFollowIsAnErrorNotAHang) {
  std::string nest = "\"a\"";
  for (int i = 0; i < 10; ++i) nest = "(" + nest + "? \"b\"?){0,6}";
  auto g = MustParse("root ::= " + nest + "\n");
  ASSERT_NE(g, nullptr);
  ByteMatcher m(g);
  bool accepted = true;
  for (int i = 0; i < 40 && accepted; ++i) accepted = m.Accept("a");
  EXPECT_FALSE(accepted);
  ASSERT_FALSE(m.status().ok());
  EXPECT_EQ(m.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(m.status().message().find("too complex"), std::string::npos) << m.status().message();
  EXPECT_FALSE(m.Accept(""));  // refuses everything from now on, even nothing
  EXPECT_FALSE(m.Allows("a"));

  // The same when the bound is reached at a later byte rather than at the start (grammar_fuzz found Accept("") still
  // true there): a repetition of 675 x 675 over a group with an optional empty branch.
  const std::string group =
      "\"a\x14\x14\x14\x14\x1b\x14\x14%\x14\x14\x14\x14\x14\x16\x14x\" \"y\x14/\" [b-n]* ( |\"x\" \"yz\")";
  const std::string text = "root ::= " + group + group + "{675}{675}\n";
  auto late = MustParse(text);
  ASSERT_NE(late, nullptr);
  ByteMatcher lm(late);
  ASSERT_TRUE(lm.status().ok());
  for (size_t i = 0; i < text.size() && lm.status().ok(); ++i) lm.Accept(text.substr(i, 1));
  ASSERT_FALSE(lm.status().ok());
  EXPECT_FALSE(lm.Accept(""));
  EXPECT_FALSE(lm.Allows(""));

  std::vector<std::string> toks;
  for (int b = 0; b < 256; ++b) toks.push_back(std::string(1, static_cast<char>(b)));
  toks.push_back("aaaa");
  toks.push_back("");  // the end token
  auto vocab = TokenVocab::Build(toks, {static_cast<int32_t>(toks.size() - 1)});
  auto compiled = std::make_shared<CompiledGrammar>(g, vocab);
  TokenMatcher tm(compiled);
  TokenMask mask;
  for (int i = 0; i < 40 && tm.status().ok(); ++i) {
    tm.FillMask(-1, &mask);
    if (tm.status().ok()) {
      EXPECT_TRUE(mask.Test('a'));
      EXPECT_TRUE(tm.Accept('a') || !tm.status().ok());
    }
  }
  ASSERT_FALSE(tm.status().ok());
  EXPECT_NE(tm.status().message().find("too complex"), std::string::npos);
  tm.FillMask(-1, &mask);
  EXPECT_EQ(mask.Count(), 0);
  EXPECT_FALSE(tm.Accept('a'));
  EXPECT_GT(tm.TokensToFinish(), int64_t{1} << 40);

  ByteMatcher simple(MustParse("root ::= \"a\"+"));
  EXPECT_TRUE(simple.Accept("aaaa"));
  EXPECT_TRUE(simple.status().ok());
}

// A random vocabulary with every single byte, for exhaustive mask checks; some tokens longer than the repetition
// horizon (Grammar::kRepeatHorizon).
std::shared_ptr<const TokenVocab> RandomVocab(std::mt19937& rng, int n, const std::string& alphabet) {
  std::vector<std::string> toks;
  for (int b = 0; b < 256; ++b) toks.push_back(std::string(1, static_cast<char>(b)));
  toks.push_back("");  // a special token: never allowed
  while (static_cast<int>(toks.size()) < n) {
    std::string t;
    if (rng() % 20 == 0) {
      // Long runs of letters, some ending in a quote and more (across the end of a string).
      static const char* kEnds[] = {"", "\"", "\":", "\",", "\" }"};
      const int len = 20 + static_cast<int>(rng() % 70);
      for (int i = 0; i < len; ++i) t.push_back("abcdexyz "[rng() % 9]);
      t += kEnds[rng() % 5];
    } else {
      const int len = 2 + static_cast<int>(rng() % 7);
      for (int i = 0; i < len; ++i) t.push_back(alphabet[rng() % alphabet.size()]);
    }
    toks.push_back(t);
  }
  toks.push_back("\"a");  // duplicates of a piece
  toks.push_back("\"a");
  toks.push_back("");  // the end token
  return TokenVocab::Build(toks, {static_cast<int32_t>(toks.size() - 1)});
}

constexpr const char* kJsonGbnf = R"(root ::= object
value ::= object | array | string | number | "true" | "false" | "null"
object ::= "{" ws ( string ":" ws value ws ( "," ws string ":" ws value ws )* )? "}"
array ::= "[" ws ( value ws ( "," ws value ws )* )? "]"
string ::= "\"" ( [^"\\\x00-\x1f] | "\\" ["\\/bfnrt] | "\\u" [0-9a-fA-F]{4} )* "\""
number ::= "-"? ( "0" | [1-9] [0-9]{0,15} ) ( "." [0-9]+ )? ( [eE] [-+]? [0-9]+ )?
ws ::= | " " | "\n" [ \t]{0,20}
)";

// Long bounded repetitions, whose positions share cached walks (Grammar::Canonical), inside and outside strings.
constexpr const char* kLongRepeatGbnf = R"(root ::= "{" ws "\"k\":" ws "\"" [a-z ]{0,100} "\"" ws item* "}"
item ::= "," ws "\"" [a-z]{3,70} "\":" ws ( [0-9]{1,40} | "[" ws ( "x" ws "," ws ){2,45} "]" )
ws ::= [ \n]{0,3}
)";

// The mask equals a token-by-token check of the byte matcher, along random paths through the grammar, with and
// without a budget; every path that samples from the mask ends in a complete sentence within its budget.
TEST(TokenMatcher, MaskIsExactAndTheBudgetIsKept) {
  std::mt19937 rng(1234);
  const std::pair<const char*, const char*> cases[] = {
      {kJsonGbnf, "{}[]\":,. \n0123456789-eEtrufalsn\\abcx\xC3\xA9"},
      {kLongRepeatGbnf, "{}[]\":, \nabcdefxyz0123456789kx"},
  };
  for (auto [gbnf, alphabet] : cases) {
    auto g = MustParse(gbnf);
    ASSERT_NE(g, nullptr);
    auto vocab = RandomVocab(rng, 3000, alphabet);
    auto compiled = std::make_shared<CompiledGrammar>(g, vocab);
    const int32_t end_id = vocab->end_ids()[0];
    for (int trial = 0; trial < 40; ++trial) {
      TokenMatcher tm(compiled);
      ByteMatcher bm(g);
      const int64_t budget = trial % 2 ? -1 : 8 + trial * 3;
      std::string text;
      TokenMask mask;
      for (int64_t step = 0;; ++step) {
        const int64_t remaining = budget < 0 ? -1 : budget - step;
        if (budget < 0 && step > 300) break;
        tm.FillMask(remaining, &mask);
        if (tm.IsComplete()) {
          EXPECT_EQ(mask.Count(), 0);
          break;
        }
        ASSERT_GT(mask.Count(), 0) << "no token allowed after '" << text << "' with " << remaining << " left";
        std::vector<int32_t> allowed;
        for (int32_t id = 0; id < vocab->size(); ++id) {
          const bool by_bytes = id == end_id ? bm.CanEnd() : !vocab->bytes(id).empty() && bm.Allows(vocab->bytes(id));
          if (budget < 0) {
            ASSERT_EQ(mask.Test(id), by_bytes) << "token '" << vocab->bytes(id) << "' after '" << text << "'";
          } else if (mask.Test(id)) {
            ASSERT_TRUE(by_bytes) << "token '" << vocab->bytes(id) << "' after '" << text << "'";
          }
          if (mask.Test(id)) allowed.push_back(id);
        }
        // Prefer long tokens and deep nesting so that the budget and the horizon are tested.
        int32_t pick = allowed[rng() % allowed.size()];
        if (rng() % 3 == 0) {
          for (int32_t id : allowed) {
            if (vocab->bytes(id).size() > 20 || vocab->bytes(id).find_first_of("{[,") != std::string::npos) pick = id;
          }
        }
        ASSERT_TRUE(tm.Accept(pick));
        if (pick == end_id) {
          EXPECT_TRUE(tm.IsComplete());
          break;
        }
        ASSERT_TRUE(bm.Accept(vocab->bytes(pick)));
        text += vocab->bytes(pick);
        if (budget >= 0) {
          ASSERT_LE(step + 1 + tm.TokensToFinish(), budget) << text;
        }
      }
      if (budget >= 0) {
        EXPECT_TRUE(bm.CanEnd()) << text;
        EXPECT_TRUE(tm.IsComplete() || tm.CanEnd()) << text;
      }
    }
  }
}

TEST(TokenMatcher, RejectsWhatTheGrammarDoesNot) {
  std::vector<std::string> toks = {"a", "b", "ab", "", "ba"};
  auto vocab = TokenVocab::Build(toks, {3});
  auto compiled = std::make_shared<CompiledGrammar>(MustParse("root ::= \"ab\" \"b\"?"), vocab);
  TokenMatcher tm(compiled);
  EXPECT_FALSE(tm.Accept(1));
  EXPECT_FALSE(tm.Accept(3));  // the end token before the grammar can end
  EXPECT_FALSE(tm.Accept(99));
  EXPECT_TRUE(tm.Accept(2));
  EXPECT_TRUE(tm.CanEnd());
  EXPECT_FALSE(tm.IsComplete());
  EXPECT_EQ(tm.TokensToFinish(), 1);
  TokenMask mask;
  tm.FillMask(-1, &mask);
  EXPECT_TRUE(mask.Test(1));
  EXPECT_TRUE(mask.Test(3));
  EXPECT_FALSE(mask.Test(4));
  EXPECT_TRUE(tm.Accept(1));
  EXPECT_TRUE(tm.IsComplete());
}

}  // namespace
}  // namespace herd::grammar
