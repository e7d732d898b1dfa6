// The recognizer (hash-consed parse stacks, states as sets of stacks with memoized byte transitions), the
// vocabulary trie and the token masks (grammar.h).
#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>
#include <unordered_map>
#include <unordered_set>

#include "grammar/grammar.h"

namespace herd::grammar {

namespace detail {

// Parse stacks as hash-consed linked nodes (position, parent): equal stacks are equal ids. Node 0 is the empty
// stack (the sentence is complete), node 1 the escape marker that ends a truncated stack. A normalized stack's top
// is a byte-set position; the nodes below it hold return positions. A state is an interned sorted set of stacks.
class StackPool {
 public:
  static constexpr int32_t kEmpty = 0;
  static constexpr int32_t kEscape = 1;
  static constexpr int32_t kDead = 0;  // the state with no stack

  explicit StackPool(const Grammar& g) : g_(g) {
    nodes_.push_back({-1, -1});
    nodes_.push_back({-1, -1});
    min_bytes_.push_back(0);
    min_bytes_.push_back(0);
    states_.emplace_back();  // kDead
  }

  int32_t Node(int32_t pos, int32_t parent) {
    const uint64_t key = (static_cast<uint64_t>(static_cast<uint32_t>(pos)) << 32) | static_cast<uint32_t>(parent);
    auto [it, inserted] = node_ids_.emplace(key, static_cast<int32_t>(nodes_.size()));
    if (inserted) {
      nodes_.push_back({pos, parent});
      const int64_t m = int64_t{g_.TailMin(pos)} + min_bytes_[parent];
      min_bytes_.push_back(static_cast<int32_t>(std::min<int64_t>(m, std::numeric_limits<int32_t>::max() / 2)));
    }
    return it->second;
  }
  int32_t Pos(int32_t node) const { return nodes_[node].first; }
  int32_t Parent(int32_t node) const { return nodes_[node].second; }
  int32_t MinBytes(int32_t node) const { return min_bytes_[node]; }

  // The work of a matcher is bounded, counted in (position, parent) pairs taken by ExpandAll: a grammar whose nested
  // repetitions match the same text in many ways makes stacks for every way (the counts of each level, multiplied),
  // and would otherwise take minutes and gigabytes for one byte. One byte's transition (or the start) may take
  // kByteWork, one step of a matcher (a byte string, a token, a mask, a plan) kStepWork. Past either the pool is
  // exhausted for good: every transition is dead, and what was being computed is neither kept nor memoized.
  // Measured: the tests' largest step is 160000 (grammars at the size limits); over the 200k Llama 4 vocabulary, a
  // JSON schema's steps stay below 60000, and a list of 3000 words repeated fits (its first mask 0.35 s; 5000 words
  // are refused). A step that reaches the bound takes about 1.3 s here (hash-table nodes), a few under ASan.
  static constexpr int64_t kByteWork = int64_t{1} << 20;
  static constexpr int64_t kStepWork = int64_t{1} << 22;
  void BeginStep() { work_ = 0; }
  bool exhausted() const { return exhausted_; }

  int32_t State(std::vector<int32_t>* stacks) {
    std::sort(stacks->begin(), stacks->end());
    stacks->erase(std::unique(stacks->begin(), stacks->end()), stacks->end());
    if (stacks->empty()) return kDead;
    auto [it, inserted] = state_ids_.emplace(*stacks, static_cast<int32_t>(states_.size()));
    if (inserted) {
      StateRec rec;
      rec.stacks = *stacks;
      rec.min_bytes = std::numeric_limits<int32_t>::max();
      for (int32_t s : rec.stacks) {
        rec.has_empty |= s == kEmpty;
        rec.has_escape |= s == kEscape;
        rec.min_bytes = std::min(rec.min_bytes, min_bytes_[s]);
      }
      states_.push_back(std::move(rec));
    }
    return it->second;
  }

  int32_t Initial() {
    byte_work_ = 0;
    std::vector<int32_t> stacks;
    visited_.clear();
    for (int32_t a : g_.Alternatives(g_.root())) ExpandAll(a, kEmpty, &stacks);
    return exhausted_ ? kDead : State(&stacks);
  }

  int32_t Trans(int32_t state, uint8_t byte) {
    if (state == kDead || exhausted_) return kDead;
    if (!states_[state].trans) {
      states_[state].trans = std::make_unique<int32_t[]>(256);
      std::fill_n(states_[state].trans.get(), 256, -1);
    }
    int32_t t = states_[state].trans[byte];
    if (t >= 0) return t;
    byte_work_ = 0;
    scratch_.clear();
    // One visited set for all the stacks: the result is the union of their expansions, and a pair one of them
    // reached has put its stacks there already. (A set per stack made x{0,975} over a group that can be empty, whose
    // 975 stacks each reach the rest of the chain, quadratic: 475000 pairs per byte.)
    visited_.clear();
    for (int32_t s : states_[state].stacks) {
      if (s <= kEscape) continue;
      const int32_t pos = nodes_[s].first;
      if (g_.Matches(pos, byte)) ExpandAll(pos + 1, nodes_[s].second, &scratch_);
      if (exhausted_) return kDead;
    }
    t = State(&scratch_);
    states_[state].trans[byte] = t;  // states_ may have grown: index again
    return t;
  }

  int32_t Advance(int32_t state, std::string_view bytes) {
    if (exhausted_) return kDead;  // past the work bound nothing is accepted, not even no bytes
    for (char c : bytes) {
      state = Trans(state, static_cast<uint8_t>(c));
      if (state == kDead) break;
    }
    return state;
  }

  const std::vector<int32_t>& Stacks(int32_t state) const { return states_[state].stacks; }
  bool HasEmpty(int32_t state) const { return states_[state].has_empty; }
  bool HasEscape(int32_t state) const { return states_[state].has_escape; }
  bool IsComplete(int32_t state) const {
    return states_[state].stacks.size() == 1 && states_[state].stacks[0] == kEmpty;
  }
  int32_t StateMinBytes(int32_t state) const { return states_[state].min_bytes; }
  size_t num_states() const { return states_.size(); }

 private:
  // The normalized stacks that (pos, parent) stands for, appended to *out: every (position, parent) reachable from it
  // through rule references and rule ends, each once (visited_, cleared by the caller), with a work list rather than
  // recursion: a chain of rules that each start with the next (r0 ::= r1 ..., up to the grammar's 100000 positions) or
  // groups nested deep would otherwise overflow the thread's stack. The set reached is the same in any order, and State
  // sorts it. Each pair taken counts towards the step's work.
  void ExpandAll(int32_t pos, int32_t parent, std::vector<int32_t>* out) {
    pending_.clear();
    pending_.push_back({pos, parent});
    while (!pending_.empty()) {
      if (++work_ > kStepWork || ++byte_work_ > kByteWork) {
        exhausted_ = true;
        return;
      }
      const auto [p, par] = pending_.back();
      pending_.pop_back();
      const uint64_t key = (static_cast<uint64_t>(static_cast<uint32_t>(p)) << 32) | static_cast<uint32_t>(par);
      if (!visited_.insert(key).second) continue;
      const Grammar::Element e = g_.elements()[p];
      switch (e.kind) {
        case Grammar::Kind::kBytes:
          out->push_back(Node(p, par));
          break;
        case Grammar::Kind::kEnd:
          if (par <= kEscape) {
            out->push_back(par);
          } else {
            pending_.push_back(nodes_[par]);
          }
          break;
        case Grammar::Kind::kRule: {
          const int32_t cont = g_.elements()[p + 1].kind == Grammar::Kind::kEnd ? par : Node(p + 1, par);
          for (int32_t a : g_.Alternatives(e.arg)) pending_.push_back({a, cont});
          break;
        }
      }
    }
  }

  struct VectorHash {
    size_t operator()(const std::vector<int32_t>& v) const {
      uint64_t h = 0x9e3779b97f4a7c15ull ^ v.size();
      for (int32_t x : v) h = (h ^ static_cast<uint32_t>(x)) * 0x100000001b3ull;
      return static_cast<size_t>(h ^ (h >> 29));
    }
  };
  struct StateRec {
    std::vector<int32_t> stacks;
    std::unique_ptr<int32_t[]> trans;  // 256 next states, -1 not yet known
    bool has_empty = false, has_escape = false;
    int32_t min_bytes = 0;
  };

  const Grammar& g_;
  std::vector<std::pair<int32_t, int32_t>> nodes_;
  std::vector<int32_t> min_bytes_;
  std::unordered_map<uint64_t, int32_t> node_ids_;
  std::vector<StateRec> states_;
  std::unordered_map<std::vector<int32_t>, int32_t, VectorHash> state_ids_;
  std::unordered_set<uint64_t> visited_;
  std::vector<std::pair<int32_t, int32_t>> pending_;  // ExpandAll's (position, parent) pairs still to take
  std::vector<int32_t> scratch_;
  int64_t work_ = 0;       // pairs taken since BeginStep
  int64_t byte_work_ = 0;  // and in this transition
  bool exhausted_ = false;
};

}  // namespace detail

using detail::StackPool;

// --- ByteMatcher ---

namespace {

Status TooComplex() {
  return InvalidArgument("the grammar is too complex to follow: its parse stacks needed more than " +
                         std::to_string(StackPool::kByteWork) + " expansions for one byte or " +
                         std::to_string(StackPool::kStepWork) +
                         " for one token (nested repetitions that match the same text in very many ways, such as "
                         "((x? \"b\"?){0,6}){0,6}..., or alternatives by the thousand repeated); simplify the grammar");
}

}  // namespace

ByteMatcher::ByteMatcher(std::shared_ptr<const Grammar> grammar)
    : grammar_(std::move(grammar)), pool_(std::make_unique<StackPool>(*grammar_)) {
  state_ = pool_->Initial();
}
ByteMatcher::~ByteMatcher() = default;
ByteMatcher::ByteMatcher(ByteMatcher&&) noexcept = default;

bool ByteMatcher::Accept(std::string_view bytes) {
  pool_->BeginStep();
  const int32_t next = pool_->Advance(state_, bytes);
  if (next == StackPool::kDead) return false;
  state_ = next;
  return true;
}
bool ByteMatcher::Allows(std::string_view bytes) const {
  pool_->BeginStep();
  return pool_->Advance(state_, bytes) != StackPool::kDead;
}
Status ByteMatcher::status() const { return pool_->exhausted() ? TooComplex() : Status::Ok(); }
bool ByteMatcher::CanEnd() const { return pool_->HasEmpty(state_); }
bool ByteMatcher::IsComplete() const { return pool_->IsComplete(state_); }

// --- TokenVocab ---

int64_t TokenMask::Count() const {
  int64_t n = 0;
  for (uint64_t w : bits) n += std::popcount(w);
  return n;
}

std::shared_ptr<const TokenVocab> TokenVocab::Build(const std::vector<std::string>& token_bytes,
                                                    std::vector<int32_t> end_ids) {
  auto v = std::make_shared<TokenVocab>();
  v->size_ = static_cast<int32_t>(token_bytes.size());
  v->bytes_ = token_bytes;
  std::sort(end_ids.begin(), end_ids.end());
  end_ids.erase(std::unique(end_ids.begin(), end_ids.end()), end_ids.end());
  v->end_ids_ = std::move(end_ids);
  std::vector<int32_t> order;
  for (int32_t i = 0; i < v->size_; ++i) {
    if (!token_bytes[i].empty() && !std::binary_search(v->end_ids_.begin(), v->end_ids_.end(), i)) {
      order.push_back(i);
    }
  }
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
    return token_bytes[a] != token_bytes[b] ? token_bytes[a] < token_bytes[b] : a < b;
  });
  // Sorted order is depth-first preorder: keep the path of open nodes and add the new suffix of each token.
  v->nodes_.push_back({});
  std::vector<int32_t> path = {0};
  std::string prev;
  std::array<bool, 256> single{};
  for (int32_t id : order) {
    const std::string& t = token_bytes[id];
    if (t.size() == 1) single[static_cast<uint8_t>(t[0])] = true;
    size_t common = 0;
    while (common < t.size() && common < prev.size() && t[common] == prev[common]) ++common;
    while (path.size() > common + 1) {
      v->nodes_[path.back()].subtree_end = static_cast<int32_t>(v->nodes_.size());
      path.pop_back();
    }
    for (size_t i = common; i < t.size(); ++i) {
      Node n;
      n.parent = path.back();
      n.byte = static_cast<uint8_t>(t[i]);
      n.depth = static_cast<int32_t>(i + 1);
      path.push_back(static_cast<int32_t>(v->nodes_.size()));
      v->nodes_.push_back(n);
    }
    Node& leaf = v->nodes_[path.back()];
    if (leaf.tokens_begin == leaf.tokens_end) leaf.tokens_begin = static_cast<int32_t>(v->node_tokens_.size());
    v->node_tokens_.push_back(id);
    leaf.tokens_end = static_cast<int32_t>(v->node_tokens_.size());
    prev = t;
  }
  while (!path.empty()) {
    v->nodes_[path.back()].subtree_end = static_cast<int32_t>(v->nodes_.size());
    path.pop_back();
  }
  v->all_single_bytes_ = std::all_of(single.begin(), single.end(), [](bool b) { return b; });
  return v;
}

// --- Shortest completions ---

namespace {

constexpr int64_t kNoPlan = std::numeric_limits<int64_t>::max() / 4;

// The bytes of a shortest completion of `state` up to a state holding the empty stack (or the escape marker of a
// truncated stack), following the stack that needs the fewest bytes, lowest byte first.
std::string ShortestCompletion(StackPool& pool, const Grammar& g, int32_t state) {
  std::string w;
  while (state != StackPool::kDead && !pool.HasEmpty(state) && !pool.HasEscape(state)) {
    int32_t best = -1;
    for (int32_t s : pool.Stacks(state)) {
      if (s > StackPool::kEscape && (best < 0 || pool.MinBytes(s) < pool.MinBytes(best))) best = s;
    }
    int byte = 0;
    while (byte < 256 && !g.Matches(pool.Pos(best), static_cast<uint8_t>(byte))) ++byte;
    w.push_back(static_cast<char>(byte));
    state = pool.Trans(state, static_cast<uint8_t>(byte));
  }
  return w;
}

// The fewest vocabulary tokens that spell `w` (into *tokens); kNoPlan when some byte cannot be spelled.
int64_t Segment(const TokenVocab& v, std::string_view w, std::vector<int32_t>* tokens) {
  const auto& nodes = v.nodes();
  const size_t n = w.size();
  std::vector<int64_t> best(n + 1, kNoPlan);
  std::vector<int32_t> tok(n + 1, -1), next(n + 1, 0);
  best[n] = 0;
  for (size_t i = n; i-- > 0;) {
    int32_t node = 0;
    for (size_t j = i; j < n; ++j) {
      int32_t child = -1;
      for (int32_t c = node + 1; c < nodes[node].subtree_end; c = nodes[c].subtree_end) {
        if (nodes[c].byte == static_cast<uint8_t>(w[j])) {
          child = c;
          break;
        }
      }
      if (child < 0) break;
      node = child;
      if (nodes[node].tokens_begin < nodes[node].tokens_end && best[j + 1] + 1 < best[i]) {
        best[i] = best[j + 1] + 1;
        tok[i] = v.node_tokens()[nodes[node].tokens_begin];
        next[i] = static_cast<int32_t>(j + 1);
      }
    }
  }
  if (best[0] >= kNoPlan) return kNoPlan;
  if (tokens != nullptr) {
    tokens->clear();
    for (size_t i = 0; i < n; i = static_cast<size_t>(next[i])) tokens->push_back(tok[i]);
  }
  return best[0];
}

}  // namespace

// --- CompiledGrammar ---

// The cached walk from one set of truncated stacks: the tokens accepted without reaching below the truncation,
// grouped by the (truncated) state they lead to, and the trie nodes (topmost, in preorder) where some stack reached
// the truncation, whose subtrees are walked again with the real stacks.
struct CompiledGrammar::Context {
  struct Group {
    int32_t state = 0;      // the truncated state its tokens lead to
    int32_t min_bytes = 0;  // the bytes that state needs to reach the truncation or the end
    std::vector<int32_t> tokens;
  };
  std::vector<Group> groups;
  TokenMask all;  // every group's tokens
  int32_t max_min_bytes = 0;
  std::vector<int32_t> escapes;
};

CompiledGrammar::CompiledGrammar(std::shared_ptr<const Grammar> grammar, std::shared_ptr<const TokenVocab> vocab)
    : grammar_(std::move(grammar)), vocab_(std::move(vocab)), local_pool_(std::make_unique<StackPool>(*grammar_)) {}
CompiledGrammar::~CompiledGrammar() = default;

// --- TokenMatcher ---

TokenMatcher::TokenMatcher(std::shared_ptr<const CompiledGrammar> compiled)
    : compiled_(std::move(compiled)), pool_(std::make_unique<StackPool>(compiled_->grammar())) {
  state_ = pool_->Initial();
}

Status TokenMatcher::status() const { return too_complex_ || pool_->exhausted() ? TooComplex() : Status::Ok(); }
TokenMatcher::~TokenMatcher() = default;
TokenMatcher::TokenMatcher(TokenMatcher&&) noexcept = default;

bool TokenMatcher::CanEnd() const { return ended_ || pool_->HasEmpty(state_); }
bool TokenMatcher::IsComplete() const { return ended_ || pool_->IsComplete(state_); }

int64_t TokenMatcher::ByteCost(int32_t state) const {
  if (pool_->IsComplete(state)) return 0;
  if (pool_->HasEmpty(state)) return 1;
  return int64_t{pool_->StateMinBytes(state)} + 1;
}

const TokenMatcher::Plan& TokenMatcher::PlanOf(int32_t state) {
  auto it = plans_.find(state);
  if (it != plans_.end()) return it->second;
  Plan p;
  if (!pool_->IsComplete(state)) {
    const std::string w = ShortestCompletion(*pool_, compiled_->grammar(), state);
    const int32_t end = pool_->Advance(state, w);
    p.end = pool_->IsComplete(end) ? 0 : 1;
    if (Segment(compiled_->vocab(), w, &p.tokens) >= kNoPlan) p.end = kNoPlan;
  }
  return plans_.emplace(state, std::move(p)).first->second;
}

int64_t TokenMatcher::PlanCost(const Plan& p, size_t from) {
  return p.end >= kNoPlan ? kNoPlan : static_cast<int64_t>(p.tokens.size() - from) + p.end;
}

bool TokenMatcher::Fits(int32_t state, int64_t remaining) {
  if (remaining < 0 || ByteCost(state) <= remaining - 1) return true;
  return PlanCost(PlanOf(state), 0) <= remaining - 1;
}

int64_t TokenMatcher::TokensToFinish() {
  pool_->BeginStep();
  const int64_t n = FinishCost();
  return status().ok() ? n : kNoPlan;
}

int64_t TokenMatcher::FinishCost() {
  if (ended_) return 0;
  const int64_t plan = plan_valid_ ? PlanCost(plan_, plan_pos_) : PlanCost(PlanOf(state_), 0);
  return std::min(ByteCost(state_), plan);
}

bool TokenMatcher::Accept(int32_t token) {
  pool_->BeginStep();
  if (ended_ || token < 0 || token >= compiled_->vocab().size() || !status().ok()) return false;
  const auto& ends = compiled_->vocab().end_ids();
  if (std::binary_search(ends.begin(), ends.end(), token)) {
    if (!pool_->HasEmpty(state_)) return false;
    ended_ = true;
    return true;
  }
  const std::string& bytes = compiled_->vocab().bytes(token);
  if (bytes.empty()) return false;
  const int32_t next = pool_->Advance(state_, bytes);
  if (next == StackPool::kDead) return false;
  // The plan that justified the token: its rest when the token was the plan's next one, else the new state's own
  // (made when next needed). Without a budget no plan is kept.
  if (!budgeted_) {
    state_ = next;
    return true;
  }
  if (!plan_valid_) {
    plan_ = PlanOf(state_);
    plan_pos_ = 0;
    plan_valid_ = plan_.end < kNoPlan;
  }
  if (plan_valid_ && plan_pos_ < plan_.tokens.size() && plan_.tokens[plan_pos_] == token) {
    ++plan_pos_;
    if (PlanCost(PlanOf(next), 0) < PlanCost(plan_, plan_pos_)) plan_valid_ = false;
  } else {
    plan_valid_ = false;
  }
  state_ = next;
  return true;
}

// Marks the tokens of the subtree of `node` (its own included), reached in `state`.
void TokenMatcher::WalkExact(int32_t state, int32_t node, int64_t remaining, TokenMask* mask) {
  const auto& nodes = compiled_->vocab().nodes();
  const auto& toks = compiled_->vocab().node_tokens();
  std::vector<std::pair<int32_t, int32_t>> todo = {{node, state}};
  while (!todo.empty()) {
    auto [n, s] = todo.back();
    todo.pop_back();
    if (n != 0 && nodes[n].tokens_begin < nodes[n].tokens_end && Fits(s, remaining)) {
      for (int32_t i = nodes[n].tokens_begin; i < nodes[n].tokens_end; ++i) mask->Set(toks[i]);
    }
    for (int32_t c = n + 1; c < nodes[n].subtree_end; c = nodes[c].subtree_end) {
      const int32_t next = pool_->Trans(s, nodes[c].byte);
      if (next != StackPool::kDead) todo.push_back({c, next});
    }
  }
}

void TokenMatcher::FillMask(int64_t remaining, TokenMask* mask) {
  pool_->BeginStep();
  if (status().ok()) FillMaskStep(remaining, mask);
  if (!status().ok()) mask->Reset(compiled_->vocab().size());  // what was found before the work ran out is not all
}

void TokenMatcher::FillMaskStep(int64_t remaining, TokenMask* mask) {
  const TokenVocab& vocab = compiled_->vocab();
  mask->Reset(vocab.size());
  if (ended_ || pool_->IsComplete(state_) || remaining == 0) return;
  if (remaining > 0 && FinishCost() > remaining) return;
  const auto& nodes = vocab.nodes();
  const auto& toks = vocab.node_tokens();

  // The stacks cut below the topmost node they all share (their common rest), in the shared pool: the cached walk
  // is keyed by the parts above it, so the interior of every JSON string of a grammar shares one walk, and a
  // truncated state maps back to exactly one real state. The rest's fewest bytes bound what the cut parts hide.
  const auto& stacks = pool_->Stacks(state_);
  int32_t rest = StackPool::kEmpty;
  if (stacks.front() != StackPool::kEmpty) {
    std::unordered_map<int32_t, int32_t> seen;
    for (int32_t s : stacks) {
      for (int32_t n = s; n > StackPool::kEscape; n = pool_->Parent(n)) ++seen[n];
    }
    for (int32_t n = stacks.front(); n > StackPool::kEscape; n = pool_->Parent(n)) {
      if (seen[n] == static_cast<int32_t>(stacks.size())) {
        rest = pool_->Parent(n);
        break;
      }
    }
  }
  const int64_t max_rest_min = rest > StackPool::kEscape ? pool_->MinBytes(rest) : 0;
  const CompiledGrammar::Context* ctx = nullptr;
  bool canonicalized = false, at_horizon = false;  // the key holds positions of long repetitions (grammar.h)
  {
    std::lock_guard<std::mutex> lock(compiled_->mu_);
    StackPool& local = *compiled_->local_pool_;
    // The shared pool ran out on some matcher's step: the grammar is too complex for every matcher.
    if (local.exhausted()) {
      too_complex_ = true;
      return;
    }
    local.BeginStep();
    std::vector<int32_t> cut, positions;
    const Grammar& gr = compiled_->grammar();
    for (int32_t s : stacks) {
      positions.clear();
      int32_t n = s;
      for (; n > StackPool::kEscape && n != rest; n = pool_->Parent(n)) {
        const int32_t pos = gr.Canonical(pool_->Pos(n));
        canonicalized |= pos != pool_->Pos(n);
        at_horizon |= gr.AtHorizon(pos);
        positions.push_back(pos);
      }
      int32_t bottom = n > StackPool::kEscape ? StackPool::kEscape : StackPool::kEmpty;
      for (auto it = positions.rbegin(); it != positions.rend(); ++it) bottom = local.Node(*it, bottom);
      cut.push_back(bottom);
    }
    const int32_t lstate = local.State(&cut);
    auto& contexts = compiled_->contexts_;
    if (static_cast<size_t>(lstate) >= contexts.size()) contexts.resize(lstate + 1);
    if (!contexts[lstate]) {
      auto c = std::make_unique<CompiledGrammar::Context>();
      c->all.Reset(vocab.size());
      // A key at the horizon stands for longer repetitions too: it is walked only kRepeatHorizon bytes deep, and
      // longer tokens are escapes, walked with the real stacks.
      const int32_t max_depth = at_horizon ? Grammar::kRepeatHorizon : std::numeric_limits<int32_t>::max();
      std::vector<int32_t> group_of;  // by truncated state
      std::vector<std::pair<int32_t, int32_t>> todo = {{0, lstate}};
      while (!todo.empty()) {
        auto [n, s] = todo.back();
        todo.pop_back();
        for (int32_t ch = n + 1; ch < nodes[n].subtree_end; ch = nodes[ch].subtree_end) {
          if (nodes[ch].depth > max_depth) {  // past the horizon only the real stacks can tell
            c->escapes.push_back(ch);
            continue;
          }
          const int32_t next = local.Trans(s, nodes[ch].byte);
          if (next == StackPool::kDead) continue;
          if (local.HasEscape(next)) {
            c->escapes.push_back(ch);
            continue;
          }
          if (nodes[ch].tokens_begin < nodes[ch].tokens_end) {
            if (static_cast<size_t>(next) >= group_of.size()) group_of.resize(local.num_states(), -1);
            const bool inserted = group_of[next] < 0;
            if (inserted) {
              group_of[next] = static_cast<int32_t>(c->groups.size());
              c->groups.emplace_back();
              c->groups.back().state = next;
              c->groups.back().min_bytes = local.StateMinBytes(next);
              c->max_min_bytes = std::max(c->max_min_bytes, c->groups.back().min_bytes);
            }
            for (int32_t i = nodes[ch].tokens_begin; i < nodes[ch].tokens_end; ++i) {
              c->groups[group_of[next]].tokens.push_back(toks[i]);
              c->all.Set(toks[i]);
            }
          }
          todo.push_back({ch, next});
        }
      }
      if (local.exhausted()) {  // the walk is incomplete: not kept
        too_complex_ = true;
        return;
      }
      std::sort(c->escapes.begin(), c->escapes.end());
      contexts[lstate] = std::move(c);
    }
    ctx = contexts[lstate].get();  // contexts are never freed while the grammar lives
    // Near the end of the budget, the real state of each group (the bound of some may not fit).
    group_states_.clear();
    if (remaining >= 0 && !canonicalized && ctx->max_min_bytes + max_rest_min + 1 > remaining - 1) {
      std::vector<int32_t> real_stacks;
      for (const auto& g : ctx->groups) {
        real_stacks.clear();
        for (int32_t ls : local.Stacks(g.state)) {
          positions.clear();
          int32_t n = ls;
          for (; n > StackPool::kEscape; n = local.Parent(n)) positions.push_back(local.Pos(n));
          int32_t real = n == StackPool::kEscape ? rest : StackPool::kEmpty;  // ESC stands for the rest
          for (auto it = positions.rbegin(); it != positions.rend(); ++it) real = pool_->Node(*it, real);
          real_stacks.push_back(real);
        }
        group_states_.push_back(pool_->State(&real_stacks));
      }
    }
  }

  // A group's tokens lead to states needing at most its bytes above the cut plus the most any cut part needs.
  auto group_fits = [&](int64_t min_bytes) { return remaining < 0 || min_bytes + max_rest_min + 1 <= remaining - 1; };
  if (group_fits(ctx->max_min_bytes)) {
    mask->bits = ctx->all.bits;
  } else if (canonicalized) {
    // The cached groups' states are those of the canonical positions: walk everything with the real stacks.
    WalkExact(state_, 0, remaining, mask);
    FinishMask(remaining, mask);
    return;
  } else {
    // Near the end of the budget: each group by the real state its tokens lead to.
    for (size_t gi = 0; gi < ctx->groups.size(); ++gi) {
      const auto& g = ctx->groups[gi];
      if (group_fits(g.min_bytes) || Fits(group_states_[gi], remaining)) {
        for (int32_t id : g.tokens) mask->Set(id);
      }
    }
  }
  // The escapes' subtrees, with the real stacks, descending only towards them.
  const auto& esc = ctx->escapes;
  std::vector<std::pair<int32_t, int32_t>> todo;
  if (!esc.empty()) todo.push_back({0, state_});
  while (!todo.empty()) {
    auto [n, s] = todo.back();
    todo.pop_back();
    for (int32_t ch = n + 1; ch < nodes[n].subtree_end; ch = nodes[ch].subtree_end) {
      auto it = std::lower_bound(esc.begin(), esc.end(), ch);
      if (it == esc.end() || *it >= nodes[ch].subtree_end) continue;
      const int32_t next = pool_->Trans(s, nodes[ch].byte);
      if (next == StackPool::kDead) continue;
      if (*it == ch) {
        WalkExact(next, ch, remaining, mask);
      } else {
        todo.push_back({ch, next});
      }
    }
  }
  FinishMask(remaining, mask);
}

// The plan's next token and the end ids.
void TokenMatcher::FinishMask(int64_t remaining, TokenMask* mask) {
  const TokenVocab& vocab = compiled_->vocab();
  if (remaining > 0) {
    budgeted_ = true;
    // The plan's next token always fits: the budget was kept by following it.
    if (!plan_valid_) {
      plan_ = PlanOf(state_);
      plan_pos_ = 0;
      plan_valid_ = plan_.end < kNoPlan;
    }
    if (plan_valid_ && plan_pos_ < plan_.tokens.size() && PlanCost(plan_, plan_pos_) <= remaining) {
      mask->Set(plan_.tokens[plan_pos_]);
    }
  }
  if (pool_->HasEmpty(state_)) {
    for (int32_t id : vocab.end_ids()) mask->Set(id);
  }
}

}  // namespace herd::grammar
