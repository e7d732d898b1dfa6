// The pre-tokenizer split expressions, run with PCRE2 (UTF + UCP, JIT when available): OpenAI's cl100k_base
// pattern for Llama 3 (llama4.md 10.3), o200k_base for Llama 4 (llama4.md 7.3) and GPT-2's original pattern.
// The references (tiktoken's fancy-regex, HF's Oniguruma) read \s as the Unicode White_Space property; PCRE2's
// \s under UCP differs at the edges (U+0085, U+180E), so the patterns spell the class out.
#include <mutex>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "tokenizer/internal.h"

namespace herd::tokenizer::internal {
namespace {

// Unicode White_Space, as the contents of a character class.
#define HERD_WS \
  "\\t\\n\\x{0B}\\f\\r\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"

constexpr const char* kCl100kPattern =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)"
    "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+"
    "|\\p{N}{1,3}"
    "| ?[^" HERD_WS
    "\\p{L}\\p{N}]+[\\r\\n]*"
    "|[" HERD_WS
    "]*[\\r\\n]+"
    "|[" HERD_WS "]+(?![^" HERD_WS
    "])"
    "|[" HERD_WS "]+";

constexpr const char* kO200kPattern =
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+"
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    "|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*"
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    "|\\p{N}{1,3}"
    "| ?[^" HERD_WS
    "\\p{L}\\p{N}]+[\\r\\n/]*"
    "|[" HERD_WS
    "]*[\\r\\n]+"
    "|[" HERD_WS "]+(?![^" HERD_WS
    "])"
    "|[" HERD_WS "]+";

constexpr const char* kGpt2Pattern =
    "'s|'t|'re|'ve|'m|'ll|'d"
    "| ?\\p{L}+"
    "| ?\\p{N}+"
    "| ?[^" HERD_WS
    "\\p{L}\\p{N}]+"
    "|[" HERD_WS "]+(?![^" HERD_WS
    "])"
    "|[" HERD_WS "]+";

#undef HERD_WS

const char* PatternOf(PreTokenizerKind kind) {
  switch (kind) {
    case PreTokenizerKind::kCl100k:
      return kCl100kPattern;
    case PreTokenizerKind::kO200k:
      return kO200kPattern;
    case PreTokenizerKind::kGpt2:
      return kGpt2Pattern;
  }
  return kGpt2Pattern;
}

pcre2_code* Code(void* p) { return static_cast<pcre2_code*>(p); }

}  // namespace

PreTokenizer::PreTokenizer(PreTokenizerKind kind) {
  int err = 0;
  PCRE2_SIZE err_off = 0;
  const char* pattern = PatternOf(kind);
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern), PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP,
                                   &err, &err_off, nullptr);
  if (code == nullptr) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof(msg));
    std::fprintf(stderr, "herd: pre-tokenizer pattern does not compile at %zu: %s\n", static_cast<size_t>(err_off),
                 reinterpret_cast<const char*>(msg));
    HERD_CHECK(code != nullptr);
  }
  // JIT is an optimisation only: a library built without it still matches through the interpreter.
  (void)pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
  code_ = code;
  // No match limit. PCRE2's default (10 million backtracking steps) guards against patterns that backtrack
  // exponentially; these do not: each alternative scans a run of one class and gives back at most that run, so a
  // match costs at most twice what it and the attempt after it consume. With the default, a run of more than 10
  // million white-space characters failed every match: the text was then split one character at a time (words the
  // reference would not make) at a full limit's cost per character, which took hours.
  pcre2_match_context* context = pcre2_match_context_create(nullptr);
  HERD_CHECK(context != nullptr);
  pcre2_set_match_limit(context, ~uint32_t{0});
  context_ = context;
}

PreTokenizer::~PreTokenizer() {
  pcre2_match_context_free(static_cast<pcre2_match_context*>(context_));
  pcre2_code_free(Code(code_));
}

void PreTokenizer::Split(std::string_view text, std::vector<std::string_view>* words) const {
  if (text.empty()) return;
  pcre2_match_data* md = pcre2_match_data_create_from_pattern(Code(code_), nullptr);
  HERD_CHECK(md != nullptr);
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  auto* context = static_cast<pcre2_match_context*>(context_);
  const size_t n = text.size();
  size_t pos = 0;
  // One character, for the cases the pattern cannot handle (never expected: every character is covered).
  auto one_char = [&] {
    size_t len = NextUtf8(text.substr(pos)).len;
    words->push_back(text.substr(pos, len));
    pos += len;
  };
  while (pos < n) {
    int rc = pcre2_match(Code(code_), subject, n, pos, PCRE2_NO_UTF_CHECK, md, context);
    if (rc < 0 && rc != PCRE2_ERROR_NOMATCH) {
      // The JIT's stack exhausted: retry with the interpreter (its frames on the heap) before giving up.
      rc = pcre2_match(Code(code_), subject, n, pos, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, md, context);
    }
    if (rc < 0) {
      one_char();
      continue;
    }
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    const size_t start = ov[0], end = ov[1];
    if (start > pos) words->push_back(text.substr(pos, start - pos));  // uncovered gap: keep it, never drop text
    if (end <= start) {
      pos = start;
      one_char();
      continue;
    }
    words->push_back(text.substr(start, end - start));
    pos = end;
  }
  pcre2_match_data_free(md);
}

const PreTokenizer& GetPreTokenizer(PreTokenizerKind kind) {
  // Function-local statics are initialised once and thread-safely.
  switch (kind) {
    case PreTokenizerKind::kCl100k: {
      static const PreTokenizer p(PreTokenizerKind::kCl100k);
      return p;
    }
    case PreTokenizerKind::kO200k: {
      static const PreTokenizer p(PreTokenizerKind::kO200k);
      return p;
    }
    case PreTokenizerKind::kGpt2:
      break;
  }
  static const PreTokenizer p(PreTokenizerKind::kGpt2);
  return p;
}

}  // namespace herd::tokenizer::internal
