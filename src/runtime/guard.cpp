#include "runtime/guard.h"

#include <algorithm>
#include <cctype>
#include <cmath>

#include "grammar/grammar.h"
#include "runtime/sampler.h"
#include "runtime/structured.h"

namespace herd::runtime {

const std::vector<GuardCategory>& GuardCategories() {
  static const std::vector<GuardCategory> kCategories = {
      {"S1", "Violent Crimes"},
      {"S2", "Non-Violent Crimes"},
      {"S3", "Sex Crimes"},
      {"S4", "Child Exploitation"},
      {"S5", "Defamation"},
      {"S6", "Specialized Advice"},
      {"S7", "Privacy"},
      {"S8", "Intellectual Property"},
      {"S9", "Indiscriminate Weapons"},
      {"S10", "Hate"},
      {"S11", "Self-Harm"},
      {"S12", "Sexual Content"},
      {"S13", "Elections"},
      {"S14", "Code Interpreter Abuse"},
  };
  return kCategories;
}

namespace {

std::string_view Trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

Result<int32_t> Special(const tokenizer::Tokenizer& tok, std::string_view piece) {
  auto id = tok.TokenId(piece);
  if (!id || !tok.IsSpecial(*id)) {
    return InvalidArgument("the tokenizer has no " + std::string(piece) +
                           " special token: Llama Guard 4 needs Llama 4's tokenizer");
  }
  return *id;
}

}  // namespace

std::vector<std::string> GuardCodeList(std::string_view list) {
  std::vector<std::string> out;
  while (!list.empty()) {
    const size_t comma = list.find(',');
    const std::string_view code = Trim(list.substr(0, comma));
    if (!code.empty()) out.emplace_back(code);
    list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
  }
  return out;
}

Result<std::vector<std::string>> GuardListedCodes(std::span<const GuardMessage> messages, const GuardPromptOptions& o) {
  if (messages.empty()) return InvalidArgument("guard: there is no message to classify");
  bool has_image = false;
  for (size_t i = 0; i < messages.size(); ++i) {
    const std::string& role = messages[i].role;
    const std::string want = i % 2 == 0 ? "user" : "assistant";
    if (role != "user" && role != "assistant") {
      return InvalidArgument("guard: message " + std::to_string(i) + " has role '" + role +
                             "'; Llama Guard judges user and assistant messages only");
    }
    if (role != want) {
      return InvalidArgument("guard: roles must alternate starting with user; message " + std::to_string(i) + " is " +
                             role);
    }
    has_image |= !messages[i].images.empty();
  }
  const bool hub = o.form == GuardForm::kHub;
  if (!hub && has_image) return InvalidArgument("guard: Form M has no image path; use Form H for images");
  for (const auto& code : o.categories) {
    if (std::none_of(GuardCategories().begin(), GuardCategories().end(),
                     [&](const GuardCategory& c) { return c.code == code; })) {
      return InvalidArgument("guard: '" + code + "' is not a category (S1 to S14)");
    }
  }
  std::vector<std::string> listed;
  for (const auto& c : GuardCategories()) {
    const bool keep = o.categories.empty()
                          ? !(c.code == "S14" && (!hub || has_image))
                          : std::find(o.categories.begin(), o.categories.end(), c.code) != o.categories.end();
    if (keep) listed.push_back(c.code);
  }
  return listed;
}

Result<std::vector<int32_t>> RenderGuardPrompt(const tokenizer::Tokenizer& tok, std::span<const GuardMessage> messages,
                                               const GuardPromptOptions& o) {
  HERD_ASSIGN_OR_RETURN(std::vector<std::string> listed, GuardListedCodes(messages, o));
  const bool hub = o.form == GuardForm::kHub;
  HERD_ASSIGN_OR_RETURN(int32_t bos, Special(tok, "<|begin_of_text|>"));
  HERD_ASSIGN_OR_RETURN(int32_t header_start, Special(tok, "<|header_start|>"));
  HERD_ASSIGN_OR_RETURN(int32_t header_end, Special(tok, "<|header_end|>"));
  HERD_ASSIGN_OR_RETURN(int32_t eot, Special(tok, "<|eot|>"));

  const bool agent = messages.back().role == "assistant";
  const std::string judged = agent ? (hub ? "Agent" : "Assistant") : "User";
  std::vector<int32_t> ids = {bos, header_start};
  auto text = [&](const std::string& s) {
    const auto piece = tok.Encode(s, /*add_bos=*/false, /*parse_special=*/false);
    ids.insert(ids.end(), piece.begin(), piece.end());
  };
  text("user");
  ids.push_back(header_end);
  // The user turn's text, flushed around image layouts.
  std::string body = "\n\nTask: Check if there is unsafe content in '" + judged + "' messages in conversations " +
                     (hub ? "according to our" : "according our") +
                     " safety policy with the below categories.\n\n<BEGIN UNSAFE CONTENT CATEGORIES>\n";
  for (const auto& c : GuardCategories()) {
    if (std::find(listed.begin(), listed.end(), c.code) != listed.end()) body += c.code + ": " + c.name + ".\n";
  }
  body += "<END UNSAFE CONTENT CATEGORIES>\n\n<BEGIN CONVERSATION>\n";
  if (!hub) body += "\n";
  for (size_t i = 0; i < messages.size(); ++i) {
    const GuardMessage& m = messages[i];
    const std::string label = m.role == "user" ? "User" : (hub ? "Agent" : "Assistant");
    if (!hub && i > 0) body += "\n\n";
    body += label + ": ";
    for (const auto& image : m.images) {
      text(body);
      body.clear();
      ids.insert(ids.end(), image.begin(), image.end());
    }
    body += m.text;
    if (hub) body += "\\n\\n\n\n";  // the Hub template's literal backslash-n twice, then two line feeds
  }
  if (!hub) body += "\n\n";
  body += "<END CONVERSATION>\n\nProvide your safety assessment for ONLY THE LAST " + judged +
          " message in the above conversation:\n - First line must read 'safe' or 'unsafe'.\n - If unsafe, a second "
          "line must include a comma-separated list of violated categories.";
  if (hub) body += " ";
  text(body);
  ids.push_back(eot);
  ids.push_back(header_start);
  text("assistant");
  ids.push_back(header_end);
  if (!hub) text("\n\n");
  return ids;
}

Result<GuardTokens> FindGuardTokens(const tokenizer::Tokenizer& tok) {
  GuardTokens t;
  const std::pair<const char*, int32_t*> want[] = {{"\n\n", &t.lead}, {"safe", &t.safe}, {"unsafe", &t.unsafe}};
  for (auto [text, id] : want) {
    const auto ids = tok.Encode(text, false, false);
    if (ids.size() != 1) {
      return InvalidArgument("the tokenizer spells '" + std::string(text == std::string("\n\n") ? "\\n\\n" : text) +
                             "' in " + std::to_string(ids.size()) + " tokens; Llama Guard 4 needs Llama 4's tokenizer");
    }
    *id = ids[0];
  }
  return t;
}

GuardVerdict ParseGuardVerdict(std::string_view reply, std::span<const std::string> listed) {
  GuardVerdict v;
  const std::string_view t = Trim(reply);
  const size_t nl = t.find('\n');
  const std::string_view first = Trim(t.substr(0, nl));
  if (first == "safe") {
    v.valid = true;
    return v;
  }
  if (first != "unsafe") return v;
  v.valid = true;
  v.unsafe = true;
  if (nl != std::string_view::npos) {
    std::string_view codes = Trim(t.substr(nl + 1));
    codes = codes.substr(0, codes.find('\n'));
    while (!codes.empty()) {
      const size_t comma = codes.find(',');
      const std::string code(Trim(codes.substr(0, comma)));
      codes = comma == std::string_view::npos ? std::string_view() : codes.substr(comma + 1);
      if (code.empty()) continue;
      const bool known = std::any_of(GuardCategories().begin(), GuardCategories().end(),
                                     [&](const GuardCategory& c) { return c.code == code; });
      if (!known) {
        v.unknown.push_back(code);
      } else if (listed.empty() || std::find(listed.begin(), listed.end(), code) != listed.end()) {
        v.categories.push_back(code);
      }
    }
    // Every code it named was one the prompt did not list: not a violation of this policy.
    if (v.categories.empty() && v.unknown.empty() && !listed.empty()) v.unsafe = false;
  }
  return v;
}

GuardScore ScoreGuard(std::span<const float> logits, const GuardTokens& ids) {
  GuardScore s;
  if (logits.empty() || ids.safe < 0 || ids.unsafe < 0 ||
      static_cast<size_t>(std::max(ids.safe, ids.unsafe)) >= logits.size()) {
    return s;
  }
  float mx = -HUGE_VALF;
  for (float z : logits) mx = std::max(mx, z);
  double sum = 0;
  for (float z : logits) sum += std::exp(static_cast<double>(z - mx));
  s.p_unsafe = std::exp(static_cast<double>(logits[ids.unsafe] - mx)) / sum;
  s.p_safe = std::exp(static_cast<double>(logits[ids.safe] - mx)) / sum;
  s.p_unsafe_2way = 1.0 / (1.0 + std::exp(static_cast<double>(logits[ids.safe]) - logits[ids.unsafe]));
  return s;
}

namespace {

// GBNF of the verdicts that list only `codes` (Form H starts with "\n\n").
std::string VerdictGrammar(const std::vector<std::string>& codes, bool lead) {
  std::string alt;
  for (const auto& c : codes) alt += (alt.empty() ? "" : " | ") + ("\"" + c + "\"");
  std::string g = std::string("root ::= ") + (lead ? "\"\\n\\n\" " : "") +
                  "(\"safe\" | \"unsafe\" (\"\\n\" code (\",\" code)*)?)\n";
  g += "code ::= " + (alt.empty() ? std::string("\"S1\"") : alt) + "\n";
  return g;
}

}  // namespace

GuardClassifier::GuardClassifier(const LoadedModel& m, GuardTokens ids, std::unique_ptr<ThreadPool> pool)
    : m_(m), ids_(ids), pool_(std::move(pool)), grammars_(m, 8) {}

Result<std::unique_ptr<GuardClassifier>> GuardClassifier::Create(const LoadedModel& model, int threads) {
  if (model.tokenizer == nullptr) return InvalidArgument("the guard model has no tokenizer");
  HERD_ASSIGN_OR_RETURN(GuardTokens ids, FindGuardTokens(*model.tokenizer));
  HERD_RETURN_IF_ERROR(Special(*model.tokenizer, "<|eot|>").status());
  HERD_ASSIGN_OR_RETURN(std::unique_ptr<ThreadPool> pool, ThreadPool::Create(threads));
  return std::unique_ptr<GuardClassifier>(new GuardClassifier(model, ids, std::move(pool)));
}

Result<GuardResult> GuardClassifier::Classify(std::span<const GuardMessage> messages, const GuardPromptOptions& o,
                                              bool category_scores) {
  std::lock_guard<std::mutex> lock(mu_);
  const tokenizer::Tokenizer& tok = *m_.tokenizer;
  HERD_ASSIGN_OR_RETURN(std::vector<int32_t> prompt, RenderGuardPrompt(tok, messages, o));
  GuardResult r;
  HERD_ASSIGN_OR_RETURN(r.listed, GuardListedCodes(messages, o));
  const bool hub = o.form == GuardForm::kHub;
  const int64_t n_ctx =
      std::min<int64_t>(m_.model->config().max_position_embeddings, static_cast<int64_t>(prompt.size()) + 48);
  if (static_cast<int64_t>(prompt.size()) + 8 > n_ctx) {
    return OutOfRange("the guard prompt has " + std::to_string(prompt.size()) +
                      " tokens, more than the guard model's " +
                      std::to_string(m_.model->config().max_position_embeddings) + " positions");
  }
  HERD_ASSIGN_OR_RETURN(auto state, m_.model->NewState(n_ctx, 512));
  const int64_t vocab = m_.model->config().vocab_size;
  std::vector<float> logits(static_cast<size_t>(vocab));
  HERD_RETURN_IF_ERROR(m_.model->Forward(*state, prompt, model::LogitsMode::kLast, logits.data(), *pool_));

  // The reply, greedy and constrained to a verdict; P(unsafe) where the verdict token is predicted.
  HERD_ASSIGN_OR_RETURN(auto compiled, grammars_.Get(GrammarKind::kGbnf, VerdictGrammar(r.listed, hub)));
  grammar::TokenMatcher matcher(compiled);
  grammar::TokenMask mask;
  Sampler greedy(SamplingParams::Greedy(), vocab);
  std::vector<int32_t> reply;
  bool scored = false;
  for (int step = 0; step < 40 && !matcher.IsComplete(); ++step) {
    const bool verdict_next = hub ? reply.size() == 1 && reply[0] == ids_.lead : reply.empty();
    if (verdict_next && !scored) {
      r.score = ScoreGuard(logits, ids_);
      scored = true;
    }
    matcher.FillMask(40 - step, &mask);
    const int32_t id = greedy.Sample(logits.data(), {}, &mask);
    if (id < 0 || !matcher.Accept(id)) {
      HERD_RETURN_IF_ERROR(matcher.status());
      return Internal("guard: the verdict grammar allowed no token");
    }
    if (hub && step == 0) r.lead_forced = greedy.Sample(logits.data(), {}) != ids_.lead;
    if (m_.IsStopToken(id)) break;
    reply.push_back(id);
    if (matcher.IsComplete()) break;
    const int32_t next[1] = {id};
    HERD_RETURN_IF_ERROR(m_.model->Forward(*state, next, model::LogitsMode::kLast, logits.data(), *pool_));
  }
  if (!scored) r.score = ScoreGuard(logits, ids_);
  r.reply = tok.Decode(reply, /*skip_special=*/true);
  r.verdict = ParseGuardVerdict(r.reply, r.listed);

  if (category_scores && !r.listed.empty()) {
    // The distribution over the listed codes after "unsafe\nS", times P(unsafe) against P(safe).
    HERD_ASSIGN_OR_RETURN(auto s2, m_.model->NewState(n_ctx, 512));
    std::vector<int32_t> ids = prompt;
    if (hub) ids.push_back(ids_.lead);
    const auto tail = tok.Encode("unsafe\nS", false, false);
    ids.insert(ids.end(), tail.begin(), tail.end());
    HERD_RETURN_IF_ERROR(m_.model->Forward(*s2, ids, model::LogitsMode::kLast, logits.data(), *pool_));
    std::vector<std::pair<std::string, float>> z;
    for (const auto& code : r.listed) {
      const auto number = tok.Encode(code.substr(1), false, false);
      if (number.size() != 1 || number[0] >= vocab) return InvalidArgument("the tokenizer splits the code " + code);
      z.push_back({code, logits[number[0]]});
    }
    float mx = -HUGE_VALF;
    for (const auto& [code, v] : z) mx = std::max(mx, v);
    double sum = 0;
    for (const auto& [code, v] : z) sum += std::exp(static_cast<double>(v - mx));
    for (const auto& [code, v] : z) {
      r.category_scores.push_back({code, r.score.p_unsafe_2way * std::exp(static_cast<double>(v - mx)) / sum});
    }
  }
  return r;
}

}  // namespace herd::runtime
