// libFuzzer target for the grammar compilers and the matchers (src/grammar): the first byte picks what the rest is,
// a GBNF grammar or a JSON Schema; what compiles is then run over the input's own bytes (the byte matcher) and over
// a small vocabulary with a budget (token masks, accepting a masked token at each step). Properties: no crash, hang,
// leak or UB; a refusal is InvalidArgument with a message; every token a mask allows is accepted, and with a budget
// the matcher never asks for more tokens than are left. A matcher may stop at its work bound (a grammar too complex
// to follow: status() says so, InvalidArgument naming it); it then allows nothing, and the run ends there.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "grammar/grammar.h"
#include "grammar/json_schema.h"

namespace {

[[noreturn]] void Die(const std::string& msg) {
  std::fprintf(stderr, "grammar_fuzz: FATAL: %s\n", msg.c_str());
  std::abort();
}

std::shared_ptr<const herd::grammar::TokenVocab> Vocab() {
  static const auto vocab = [] {
    std::vector<std::string> toks;
    for (int b = 0; b < 256; ++b) toks.push_back(std::string(1, static_cast<char>(b)));
    for (const char* t : {"{\"", "\":", "\",", "\"}", "true", "false", "null", " \"", "12", "abc", "\\u00", "[{", "}]",
                          "é", "\xC3", "ab\"", "  ", "\n  "}) {
      toks.push_back(t);
    }
    toks.push_back("");  // the end token
    return herd::grammar::TokenVocab::Build(toks, {static_cast<int32_t>(toks.size() - 1)});
  }();
  return vocab;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1 || size > 4096) return 0;
  const bool schema = data[0] & 1;
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  std::string gbnf;
  if (schema) {
    auto r = herd::grammar::JsonSchemaToGbnf(text);
    if (!r.ok()) {
      if (r.status().message().empty()) Die("a refusal without a message");
      return 0;
    }
    gbnf = std::move(r).value();
  } else {
    gbnf = std::string(text);
  }
  auto g = herd::grammar::ParseGbnf(gbnf);
  if (!g.ok()) {
    if (g.status().code() != herd::StatusCode::kInvalidArgument) Die("a refusal other than InvalidArgument");
    if (schema) Die("the schema compiler wrote GBNF that does not parse: " + g.status().message());
    return 0;
  }
  // Whether a matcher stopped at its work bound, checking that it says so properly.
  auto too_complex = [](const herd::Status& s) {
    if (s.ok()) return false;
    if (s.code() != herd::StatusCode::kInvalidArgument || s.message().find("too complex") == std::string::npos) {
      Die("a matcher failed other than as too complex: " + s.ToString());
    }
    return true;
  };
  herd::grammar::ByteMatcher bytes(*g);
  for (size_t i = 0; i < text.size(); ++i) bytes.Accept(text.substr(i, 1));
  (void)bytes.CanEnd();
  if (too_complex(bytes.status()) && bytes.Accept("")) Die("a matcher past its work bound accepted");
  auto compiled = std::make_shared<herd::grammar::CompiledGrammar>(*g, Vocab());
  herd::grammar::TokenMatcher m(compiled);
  const int64_t budget = 24;
  if (m.TokensToFinish() > budget || too_complex(m.status())) return 0;
  herd::grammar::TokenMask mask;
  for (int64_t step = 0; step < budget && !m.IsComplete(); ++step) {
    m.FillMask(budget - step, &mask);
    if (too_complex(m.status())) {
      if (mask.Count() != 0) Die("a matcher past its work bound allowed tokens");
      return 0;
    }
    std::vector<int32_t> allowed;
    for (int32_t id = 0; id < Vocab()->size(); ++id) {
      if (mask.Test(id)) allowed.push_back(id);
    }
    if (allowed.empty()) Die("no token allowed within the budget");
    const int32_t pick = allowed[static_cast<size_t>(data[step % size]) % allowed.size()];
    if (!m.Accept(pick)) {
      if (too_complex(m.status())) return 0;
      Die("a masked token was refused");
    }
    const int64_t left = m.TokensToFinish();
    if (too_complex(m.status())) return 0;
    if (left > budget - step - 1) Die("the budget was not kept");
  }
  if (!m.IsComplete() && !m.CanEnd()) Die("the budget ran out before the grammar could end");
  return 0;
}
