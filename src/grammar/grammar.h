// Grammar-constrained decoding: llama.cpp's GBNF grammar syntax compiled into a byte-level context-free grammar,
// a recognizer that follows it byte by byte (a set of parse stacks, as llama.cpp's grammar sampler keeps), and a
// token matcher that turns the recognizer's state into the set of vocabulary tokens allowed next.
//
// Everything works on bytes, not code points: character classes over Unicode are lowered into their UTF-8 byte
// sequences, so a token that ends in the middle of a character (byte-level BPE pieces, SPM byte tokens) is just a
// prefix like any other, and a character may span several tokens.
//
// The token mask is computed over a trie of the vocabulary, pruned where the grammar rejects a prefix. For the
// wide states (inside a JSON string almost every token is allowed) the walk is cached by the parts of the parse
// stacks above the topmost node they all share: the tokens accepted without looking below it are computed once per
// grammar, and only the tokens that reach below it (a string's closing quote followed by more bytes) are walked
// again with the real stacks at each step (XGrammar's context-independent / context-dependent split).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/status.h"

namespace herd::grammar {

// A byte-level context-free grammar: rules of alternatives, each a sequence of byte sets and rule references.
class Grammar {
 public:
  // One element of an alternative. The elements of all alternatives live in one array; a position is an index
  // into it, and every alternative ends with a kEnd element.
  enum class Kind : uint8_t { kBytes, kRule, kEnd };
  struct Element {
    Kind kind;
    int32_t arg;  // kBytes: byte set index; kRule: rule index
  };

  const std::vector<Element>& elements() const { return elements_; }
  bool Matches(int32_t pos, uint8_t byte) const {
    const auto& set = byte_sets_[elements_[pos].arg];
    return (set[byte >> 6] >> (byte & 63)) & 1;
  }
  const std::vector<int32_t>& Alternatives(int32_t rule) const { return rules_[rule].alternatives; }
  const std::string& RuleName(int32_t rule) const { return rules_[rule].name; }
  int32_t root() const { return root_; }
  int32_t num_rules() const { return static_cast<int32_t>(rules_.size()); }
  // Fewest bytes that complete the alternative from `pos` on (kEnd: 0).
  int32_t TailMin(int32_t pos) const { return tail_min_[pos]; }
  // Bounded repetitions X{m,n} become a chain of rules, one per number of further X allowed. The rules that allow
  // kRepeatHorizon or more are the same to any byte string of at most kRepeatHorizon bytes: Canonical maps their
  // positions to those of the rule allowing exactly kRepeatHorizon (identity elsewhere), and AtHorizon marks the
  // positions of that rule. The token masks use this to share one walk among the positions of a long string.
  static constexpr int kRepeatHorizon = 32;
  int32_t Canonical(int32_t pos) const { return canonical_[pos]; }
  bool AtHorizon(int32_t pos) const { return horizon_[pos] != 0; }

 private:
  friend class GrammarBuilder;
  struct Rule {
    std::string name;
    std::vector<int32_t> alternatives;  // first position of each
  };
  std::vector<Element> elements_;
  std::vector<std::array<uint64_t, 4>> byte_sets_;
  std::vector<Rule> rules_;
  std::vector<int32_t> tail_min_;
  std::vector<int32_t> canonical_;
  std::vector<uint8_t> horizon_;
  int32_t root_ = 0;
};

// Parses llama.cpp's GBNF: `name ::= alternatives`, `|`, string literals "..." and character classes [...] / [^...]
// with \n \r \t \\ \" \[ \] \- \xHH \uHHHH \UHHHHHHHH escapes, `.` (any character), rule references, groups ( ),
// repetitions * + ? {m} {m,} {m,n}, # comments; a rule continues over lines inside parentheses and after `|`.
// `root` names the start rule. InvalidArgument with line:column for a syntax error, and naming the rule for a
// reference to an undefined rule, a missing start rule, left recursion (a rule that can reach itself before
// reading a byte), a rule that can never finish, or a grammar above the size limits (1 MiB of text, 100,000
// positions, repetition counts above 10,000).
Result<std::shared_ptr<const Grammar>> ParseGbnf(std::string_view text, std::string_view root = "root");

namespace detail {
class StackPool;
}

// Follows a grammar byte by byte.
class ByteMatcher {
 public:
  explicit ByteMatcher(std::shared_ptr<const Grammar> grammar);
  ~ByteMatcher();
  ByteMatcher(ByteMatcher&&) noexcept;
  // Consumes `bytes` when they continue a valid prefix; returns false and leaves the state unchanged otherwise.
  bool Accept(std::string_view bytes);
  // Whether Accept(bytes) would succeed; the state is unchanged.
  bool Allows(std::string_view bytes) const;
  // The bytes so far are a complete sentence of the grammar.
  bool CanEnd() const;
  // No byte can follow: the sentence is complete and cannot be extended.
  bool IsComplete() const;
  // OK, or why Accept failed other than by the bytes: the grammar needed more work for one step than the matcher
  // allows (nested repetitions that match the same text in very many ways). The matcher then accepts nothing.
  Status status() const;

 private:
  std::shared_ptr<const Grammar> grammar_;
  std::unique_ptr<detail::StackPool> pool_;  // memo tables only: Allows may extend them
  int32_t state_;
};

// A vocabulary as bytes, in a trie (built once per tokenizer and shared). Tokens with empty bytes (special and
// control tokens) are never allowed by a grammar; `end_ids` (EOS, end of turn) are allowed where the grammar can end.
class TokenVocab {
 public:
  static std::shared_ptr<const TokenVocab> Build(const std::vector<std::string>& token_bytes,
                                                 std::vector<int32_t> end_ids);
  int32_t size() const { return size_; }
  const std::vector<int32_t>& end_ids() const { return end_ids_; }
  const std::string& bytes(int32_t id) const { return bytes_[id]; }
  // Whether every byte value is a token by itself (then the shortest completion of a grammar is always reachable
  // one byte per token, which the token budget relies on).
  bool has_all_single_bytes() const { return all_single_bytes_; }

  // The trie, nodes in depth-first preorder: node 0 is the root, the subtree of node n is [n, subtree_end[n]).
  // The children of n are n + 1, then subtree_end of each child in turn, while below subtree_end[n].
  struct Node {
    int32_t subtree_end = 0;
    int32_t parent = -1;
    int32_t tokens_begin = 0, tokens_end = 0;  // into token_ids(): the tokens whose bytes end here
    uint8_t byte = 0;                          // the byte from the parent
    int32_t depth = 0;
  };
  const std::vector<Node>& nodes() const { return nodes_; }
  const std::vector<int32_t>& node_tokens() const { return node_tokens_; }

 private:
  int32_t size_ = 0;
  std::vector<std::string> bytes_;
  std::vector<int32_t> end_ids_;
  std::vector<Node> nodes_;
  std::vector<int32_t> node_tokens_;
  bool all_single_bytes_ = false;
};

// A set of token ids as a bit per token.
struct TokenMask {
  std::vector<uint64_t> bits;
  void Reset(int32_t size) { bits.assign((size + 63) / 64, 0); }
  void Set(int32_t id) { bits[id >> 6] |= 1ull << (id & 63); }
  bool Test(int32_t id) const { return (bits[id >> 6] >> (id & 63)) & 1; }
  int64_t Count() const;
};

// A grammar prepared for a vocabulary; shared by every matcher of it (thread-safe: the cache of masks by stack
// tops is filled under a lock).
class CompiledGrammar {
 public:
  CompiledGrammar(std::shared_ptr<const Grammar> grammar, std::shared_ptr<const TokenVocab> vocab);
  ~CompiledGrammar();
  const Grammar& grammar() const { return *grammar_; }
  const TokenVocab& vocab() const { return *vocab_; }
  std::shared_ptr<const Grammar> grammar_ptr() const { return grammar_; }

 private:
  friend class TokenMatcher;
  struct Context;  // the cached walk of one set of truncated stacks
  std::shared_ptr<const Grammar> grammar_;
  std::shared_ptr<const TokenVocab> vocab_;
  mutable std::mutex mu_;
  std::unique_ptr<detail::StackPool> local_pool_;           // truncated stacks, ending in the escape marker
  mutable std::vector<std::unique_ptr<Context>> contexts_;  // by local state id
};

// Follows a grammar token by token over a vocabulary.
class TokenMatcher {
 public:
  explicit TokenMatcher(std::shared_ptr<const CompiledGrammar> compiled);
  ~TokenMatcher();
  TokenMatcher(TokenMatcher&&) noexcept;

  // The tokens allowed next into *mask (sized to the vocabulary): those whose bytes continue a valid prefix, and
  // the end ids where the grammar can end. With `remaining` >= 0 (tokens left, this one included), only tokens
  // after which the grammar can still be finished within remaining - 1 tokens; the matcher keeps a plan (a shortest
  // completion spelled in the fewest tokens) so that some token always does while TokensToFinish() <= remaining.
  // Empty only when the matcher IsComplete, or when the budget is already smaller than TokensToFinish.
  void FillMask(int64_t remaining, TokenMask* mask);
  // Consumes a token; false (state unchanged) when it is not allowed. An end id is allowed only when CanEnd, and
  // completes the matcher.
  bool Accept(int32_t token);
  bool CanEnd() const;
  // Nothing can follow (the grammar's sentence is complete, or an end id was accepted): generation stops here.
  bool IsComplete() const;
  // An upper bound on the tokens needed to finish from here, the end id included (0 when complete): the fewer of
  // one token per byte of the shortest completion and the tokens of the plan.
  int64_t TokensToFinish();
  // OK, or InvalidArgument naming the grammar as too complex: one step (the start, a mask, a token, the plan)
  // needed more work than the matcher allows. From then on the masks are empty, tokens are refused and
  // TokensToFinish is huge; callers check this after each step to tell it from a grammar that allows nothing.
  Status status() const;

 private:
  struct Plan {
    std::vector<int32_t> tokens;
    int64_t end = 0;  // 1 when an end id must follow the tokens; a huge value when no plan could be made
  };
  int64_t ByteCost(int32_t state) const;
  int64_t FinishCost();  // TokensToFinish within a step
  void FillMaskStep(int64_t remaining, TokenMask* mask);
  const Plan& PlanOf(int32_t state);  // memoized per state
  static int64_t PlanCost(const Plan& p, size_t from);
  bool Fits(int32_t state, int64_t remaining);
  void WalkExact(int32_t state, int32_t node, int64_t remaining, TokenMask* mask);
  void FinishMask(int64_t remaining, TokenMask* mask);

  std::shared_ptr<const CompiledGrammar> compiled_;
  std::unique_ptr<detail::StackPool> pool_;
  int32_t state_;
  bool ended_ = false;
  std::unordered_map<int32_t, Plan> plans_;
  Plan plan_;  // the current plan, followed from plan_pos_
  size_t plan_pos_ = 0;
  bool plan_valid_ = false;
  std::vector<int32_t> group_states_;  // FillMask's scratch
  bool budgeted_ = false;              // FillMask was given a budget: plans are kept from then on
  bool too_complex_ = false;           // the grammar's shared pool ran out of work (status)
};

}  // namespace herd::grammar
