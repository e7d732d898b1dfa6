// TextStream: the text of generated tokens as it becomes final — complete UTF-8 pieces, decoded in the context of
// the tokens before them, with stop strings held back until they can no longer match and cut where they do.
// One code path for `herd run`/`chat` (runtime::Generate) and the server (runtime::ServingEngine).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace herd::runtime {

class TextStream {
 public:
  // `context` (the prompt) is decoded first without being emitted, so that the first generated token is decoded
  // as a continuation (SentencePiece drops the leading space of a text's first piece). tok may be null: no text.
  TextStream(const tokenizer::Tokenizer* tok, std::span<const int32_t> context, std::vector<std::string> stop_strings);
  // Adds a generated token. Returns the text that became final; *stopped is set when the text reached a stop
  // string (the text is cut before it and nothing more is emitted).
  std::string Push(int32_t id, bool* stopped);
  // Generation ended without a stop string: the held-back rest.
  std::string Finish();
  // Everything emitted so far.
  const std::string& text() const { return text_; }

 private:
  std::unique_ptr<tokenizer::StreamDecoder> decoder_;
  std::vector<std::string> stops_;
  size_t max_stop_ = 0;
  std::string text_;    // decoded text (after a stop: cut before it)
  size_t emitted_ = 0;  // bytes of text_ returned
  bool stopped_ = false;
};

}  // namespace herd::runtime
