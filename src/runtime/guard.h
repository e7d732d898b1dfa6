// Llama Guard 4 (../shared/docs/llama-guard-4.md): the classification prompt rendered to token ids, the verdict
// read from the reply, and P(unsafe) from the logits of the verdict position. The model is an all-dense Llama 4 (every
// layer a dense FFN, the vision tower present); herd loads it as any Llama 4 (model/config.cpp reads
// interleave_moe_layer_step 0 and an empty moe_layers as "no experts").
#pragma once

#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "runtime/engine.h"
#include "runtime/structured.h"
#include "tokenizer/tokenizer.h"

namespace herd::runtime {

// The two reference renderings (document section 3.1): Form H, the Hugging Face Hub chat template shipped with the
// weights (the default); Form M, Meta's llama-stack builder wrapped by the Llama 4 chat format.
enum class GuardForm { kHub, kMeta };

struct GuardCategory {
  std::string code;  // "S1" ... "S14"
  std::string name;  // as the prompt writes it, without the final period ("Violent Crimes")
};
// S1 ... S14 (document section 2).
const std::vector<GuardCategory>& GuardCategories();

struct GuardMessage {
  std::string role;  // "user" or "assistant"
  std::string text;
  // Token layouts of the message's images (placed right after the role label, before the text; Form H only).
  std::vector<std::vector<int32_t>> images;
};

struct GuardPromptOptions {
  GuardForm form = GuardForm::kHub;
  // The codes to list; empty: the form's default (Form H: S1-S14, S1-S13 when a message has an image; Form M:
  // S1-S13). Listed in code order whatever order they are given in.
  std::vector<std::string> categories;
};

// Category codes from a comma-separated list ("S1, S9"), blanks trimmed and empty entries dropped.
std::vector<std::string> GuardCodeList(std::string_view list);

// The codes the prompt lists, in code order: options.categories, or the form's default. InvalidArgument as for
// RenderGuardPrompt (which lists exactly these).
Result<std::vector<std::string>> GuardListedCodes(std::span<const GuardMessage> messages,
                                                  const GuardPromptOptions& options);

// The prompt's token ids: one <|begin_of_text|>, template special tokens as ids, every text piece encoded with
// special-token parsing off (the judged text can never close the turn). The judged role is the last message's (Form
// H: 'User' or 'Agent'; Form M: 'User' or 'Assistant'). InvalidArgument naming the problem: no messages, a role other
// than user/assistant, roles not alternating from user, an unknown category code, images in Form M, a tokenizer
// without Llama 4's special tokens.
Result<std::vector<int32_t>> RenderGuardPrompt(const tokenizer::Tokenizer& tok, std::span<const GuardMessage> messages,
                                               const GuardPromptOptions& options);

// The ids of the reply's first tokens: Form H writes "\n\n" before the verdict; "safe" and "unsafe" are single tokens.
struct GuardTokens {
  int32_t lead = -1;  // "\n\n"
  int32_t safe = -1;
  int32_t unsafe = -1;
};
// InvalidArgument when the tokenizer does not spell them as single tokens.
Result<GuardTokens> FindGuardTokens(const tokenizer::Tokenizer& tok);

// The reply read as a verdict (section 4.1): the first line "safe" or "unsafe", then the violated codes separated
// by commas. Codes outside S1-S14 are kept in `unknown`; an "unsafe" whose codes are all outside `listed` (the
// categories the prompt listed, when given) counts as safe, as llama-stack does.
struct GuardVerdict {
  bool valid = false;  // the first line was "safe" or "unsafe"
  bool unsafe = false;
  std::vector<std::string> categories;  // violated, listed codes
  std::vector<std::string> unknown;     // codes that are not S1-S14
};
GuardVerdict ParseGuardVerdict(std::string_view reply, std::span<const std::string> listed = {});

// P(unsafe) at the verdict position (section 4.4): softmax over the whole vocabulary of `logits`, the same restricted
// to the two verdict tokens, and P(safe).
struct GuardScore {
  double p_unsafe = 0;
  double p_safe = 0;
  double p_unsafe_2way = 0;
};
GuardScore ScoreGuard(std::span<const float> logits, const GuardTokens& ids);

// One classification: the verdict (the reply decoded greedily, constrained to "safe" or "unsafe" and listed codes, so
// that it always parses), P(unsafe) at the verdict position, and with category scores P(unsafe) times the model's
// distribution over the listed codes at the first code position ("unsafe\nS" + number).
struct GuardResult {
  GuardVerdict verdict;
  GuardScore score;
  std::vector<std::string> listed;                              // the codes the prompt listed, in code order
  std::vector<std::pair<std::string, double>> category_scores;  // per listed code, when asked
  std::string reply;
  bool lead_forced = false;  // Form H: the model's own first token was not "\n\n"
};

// Runs a Llama Guard model; Classify may be called from any thread (one classification at a time).
class GuardClassifier {
 public:
  // InvalidArgument when the model's tokenizer is not Llama 4's (no verdict tokens or special tokens).
  static Result<std::unique_ptr<GuardClassifier>> Create(const LoadedModel& model, int threads);
  Result<GuardResult> Classify(std::span<const GuardMessage> messages, const GuardPromptOptions& options,
                               bool category_scores);
  const LoadedModel& model() const { return m_; }

 private:
  GuardClassifier(const LoadedModel& m, GuardTokens ids, std::unique_ptr<ThreadPool> pool);
  const LoadedModel& m_;
  GuardTokens ids_;
  std::unique_ptr<ThreadPool> pool_;
  GrammarCache grammars_;  // the verdict grammars, over a vocabulary built once
  std::mutex mu_;
};

}  // namespace herd::runtime
