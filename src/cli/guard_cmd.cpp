// herd guard: Llama Guard 4 classification (runtime/guard.h). The conversation is rendered as the document's Form H
// (or Form M), the reply is decoded greedily and constrained to a verdict ("safe", or "unsafe" and listed codes), and
// P(unsafe) is read from the logits at the position that predicts the verdict token.
#include <CLI/CLI.hpp>
#include <cinttypes>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/common.h"
#include "core/file.h"
#include "core/json.h"
#include "runtime/engine.h"
#include "runtime/guard.h"

namespace herd::cli {
namespace {

struct GuardOptions {
  CommonOptions common;
  std::string text;
  std::string file;
  std::string conversation;  // a JSON file of messages
  std::string user;          // the user message an agent reply answers (--role agent)
  std::string role = "user";
  std::string categories;  // comma-separated codes to list
  std::string exclude;     // comma-separated codes to leave out of the default list
  std::string form = "h";
  bool json = false;
  bool show_prompt = false;
};

Result<std::vector<runtime::GuardMessage>> Messages(const GuardOptions& o) {
  std::vector<runtime::GuardMessage> messages;
  if (!o.conversation.empty()) {
    HERD_ASSIGN_OR_RETURN(std::string text, ReadTextInput(o.conversation, 64 << 20));
    const auto j = ParseJsonBounded(text);
    if (!j.is_array()) {
      return Corruption(o.conversation + ": expected a JSON list of {\"role\", \"content\"} messages");
    }
    for (size_t i = 0; i < j.size(); ++i) {
      const auto& m = j[i];
      if (!m.is_object() || !m.contains("role") || !m["role"].is_string() || !m.contains("content") ||
          !m["content"].is_string()) {
        return Corruption(o.conversation + ": message " + std::to_string(i) +
                          " must be {\"role\": \"user\" | \"assistant\", \"content\": \"...\"}");
      }
      std::string role = m["role"].get<std::string>();
      if (role == "agent") role = "assistant";
      messages.push_back({role, m["content"].get<std::string>(), {}});
    }
    return messages;
  }
  std::string text = o.text;
  if (!o.file.empty()) {
    HERD_ASSIGN_OR_RETURN(text, ReadTextInput(o.file, 64 << 20));
  }
  if (o.role == "agent") messages.push_back({"user", o.user, {}});
  messages.push_back({o.role == "agent" ? "assistant" : "user", text, {}});
  return messages;
}

Status CmdGuard(const GuardOptions& o) {
  const int sources = !o.text.empty() + !o.file.empty() + !o.conversation.empty();
  if (sources != 1) return InvalidArgument("guard: give one of TEXT, --file or --conversation");
  if (o.role != "user" && o.role != "agent") return InvalidArgument("guard: --role must be user or agent");
  if (o.form != "h" && o.form != "m")
    return InvalidArgument("guard: --form must be h (the Hub template) or m (Meta's)");
  if (!o.categories.empty() && !o.exclude.empty()) {
    return InvalidArgument("guard: give --categories or --exclude, not both");
  }
  HERD_ASSIGN_OR_RETURN(std::vector<runtime::GuardMessage> messages, Messages(o));
  runtime::GuardPromptOptions po;
  po.form = o.form == "h" ? runtime::GuardForm::kHub : runtime::GuardForm::kMeta;
  po.categories = runtime::GuardCodeList(o.categories);
  if (!o.exclude.empty()) {
    const auto excluded = runtime::GuardCodeList(o.exclude);
    for (const auto& c : runtime::GuardCategories()) {
      if (c.code == "S14" && po.form == runtime::GuardForm::kMeta) continue;
      if (std::find(excluded.begin(), excluded.end(), c.code) == excluded.end()) po.categories.push_back(c.code);
    }
    for (const auto& e : excluded) {
      bool known = false;
      for (const auto& c : runtime::GuardCategories()) known |= c.code == e;
      if (!known) return InvalidArgument("guard: '" + e + "' is not a category (S1 to S14)");
    }
  }
  HERD_ASSIGN_OR_RETURN(auto loaded, Load(o.common, /*require_tokenizer=*/true));
  HERD_ASSIGN_OR_RETURN(auto classifier, runtime::GuardClassifier::Create(*loaded, o.common.threads));
  if (o.show_prompt) {
    HERD_ASSIGN_OR_RETURN(std::vector<int32_t> prompt, runtime::RenderGuardPrompt(*loaded->tokenizer, messages, po));
    std::fprintf(stderr, "%s\n", loaded->tokenizer->Decode(prompt, /*skip_special=*/false).c_str());
  }
  HERD_ASSIGN_OR_RETURN(runtime::GuardResult r, classifier->Classify(messages, po, o.json));
  const runtime::GuardVerdict& v = r.verdict;
  const runtime::GuardScore* score = &r.score;
  const std::vector<std::string>& listed = r.listed;
  const std::string& text = r.reply;
  const bool hub = po.form == runtime::GuardForm::kHub;
  const bool lead_forced = r.lead_forced;
  std::string codes;
  for (const auto& c : v.categories) codes += (codes.empty() ? "" : ",") + c;
  if (o.json) {
    nlohmann::ordered_json j;
    j["verdict"] = v.unsafe ? "unsafe" : "safe";
    j["categories"] = v.categories;
    j["p_unsafe"] = score->p_unsafe;
    j["p_unsafe_2way"] = score->p_unsafe_2way;
    j["p_safe"] = score->p_safe;
    j["reply"] = text;
    j["listed"] = listed;
    nlohmann::ordered_json scores = nlohmann::ordered_json::object();
    for (const auto& [code, p] : r.category_scores) scores[code] = p;
    j["category_scores"] = scores;
    j["form"] = hub ? "H" : "M";
    if (lead_forced) j["note"] = "the model's greedy first token was not \"\\n\\n\"; the verdict was constrained";
    if (!WriteStdout(j.dump(2) + "\n")) return FinishOutput();
    return Status::Ok();
  }
  std::string out = v.unsafe ? "unsafe\n" : "safe\n";
  if (v.unsafe && !codes.empty()) out += codes + "\n";
  char p[96];
  std::snprintf(p, sizeof p, "P(unsafe) %.6f (unsafe vs safe only: %.6f)\n", score->p_unsafe, score->p_unsafe_2way);
  out += p;
  if (!WriteStdout(out)) return FinishOutput();
  if (lead_forced) std::fprintf(stderr, "herd: note: the model's greedy first token was not \"\\n\\n\" (Form H)\n");
  return Status::Ok();
}

}  // namespace

Command AddGuardCommand(CLI::App& app) {
  auto o = std::make_shared<GuardOptions>();
  auto* cmd =
      app.add_subcommand("guard", "classify a message with Llama Guard 4: safe or unsafe, categories, P(unsafe)");
  AddModelOptions(cmd, &o->common);
  cmd->add_option("text", o->text, "the message to classify");
  cmd->add_option("--file", o->file, "read the message from a file (- for stdin)");
  cmd->add_option(
      "--conversation", o->conversation,
      "a JSON file of messages [{\"role\": \"user\" | \"assistant\", \"content\": ...}]; the last is judged");
  cmd->add_option("--role", o->role, "whose message TEXT is: user (default) or agent (then --user is the prompt)");
  cmd->add_option("--user", o->user, "with --role agent: the user message the agent answered");
  cmd->add_option("--categories", o->categories, "comma-separated codes to check (S1..S14; default: all)");
  cmd->add_option("--exclude", o->exclude, "comma-separated codes to leave out of the default list");
  cmd->add_option("--form", o->form, "prompt form: h (the Hub template, default) or m (Meta's llama-stack)");
  cmd->add_flag("--json", o->json, "one JSON object: verdict, categories, p_unsafe, p_unsafe_2way, p_safe, reply");
  cmd->add_flag("--show-prompt", o->show_prompt, "print the rendered prompt on stderr");
  return {cmd, [o] { return CmdGuard(*o); }};
}

}  // namespace herd::cli
