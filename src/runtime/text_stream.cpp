// Streamed text with stop strings (runtime/text_stream.h).
#include "runtime/text_stream.h"

#include <algorithm>

namespace herd::runtime {

TextStream::TextStream(const tokenizer::Tokenizer* tok, std::span<const int32_t> context,
                       std::vector<std::string> stop_strings)
    : stops_(std::move(stop_strings)) {
  for (const std::string& s : stops_) max_stop_ = std::max(max_stop_, s.size());
  if (tok == nullptr) return;
  decoder_ = std::make_unique<tokenizer::StreamDecoder>(*tok);
  for (int32_t id : context) (void)decoder_->Push(id);
}

std::string TextStream::Push(int32_t id, bool* stopped) {
  *stopped = stopped_;
  if (decoder_ == nullptr || stopped_) return {};
  text_ += decoder_->Push(id);
  for (const std::string& s : stops_) {
    if (s.empty()) continue;
    const size_t at = text_.find(s, emitted_ > s.size() ? emitted_ - s.size() : 0);
    if (at != std::string::npos) {
      text_.resize(at);
      stopped_ = true;
    }
  }
  size_t safe = text_.size();
  if (!stopped_) {
    // Hold back a tail that could still become a stop string; never split a UTF-8 character.
    safe = text_.size() >= max_stop_ ? text_.size() - (max_stop_ > 0 ? max_stop_ - 1 : 0) : 0;
    while (safe > emitted_ && safe < text_.size() && (static_cast<uint8_t>(text_[safe]) & 0xC0) == 0x80) --safe;
  }
  *stopped = stopped_;
  if (safe <= emitted_) return {};
  std::string out = text_.substr(emitted_, safe - emitted_);
  emitted_ = safe;
  return out;
}

std::string TextStream::Finish() {
  if (decoder_ == nullptr) return {};
  if (!stopped_) text_ += decoder_->Flush();
  std::string out = text_.size() > emitted_ ? text_.substr(emitted_) : std::string();
  emitted_ = text_.size();
  return out;
}

}  // namespace herd::runtime
