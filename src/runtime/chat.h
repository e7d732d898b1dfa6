// Chat formats rendered straight to token ids (llama4.md section 8.1, Meta's format; section 10.3 for
// Llama 3). Special tokens come only from the template; message content is encoded with special-token parsing
// disabled, so typing "<|eot|>" in a message cannot inject a control token (llama4.md section 7.4).
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "tokenizer/tokenizer.h"

namespace herd::runtime {

enum class ChatFormat {
  kLlama4,  // <|header_start|>role<|header_end|>\n\n content <|eot|>
  kLlama3,  // <|start_header_id|>role<|end_header_id|>\n\n content <|eot_id|>
};

struct ChatMessage {
  std::string role;  // system, user, assistant, tool / ipython
  std::string content;
  // Token layouts of the message's images (vision::ImageTokens), in order. Where they go: at image_at's byte offsets
  // into content when it is given (one per image, ascending; content is then plain text, markers included: the
  // server's content parts); otherwise image k goes where the k-th kImageMarker stands in content and images
  // without a marker go before the text (Meta's order for an image attached to a message). A message without
  // images is plain text.
  std::vector<std::vector<int32_t>> images;
  std::vector<size_t> image_at;
};

// Where an image goes in a message's text: llama.cpp's default media marker.
inline constexpr std::string_view kImageMarker = "<__media__>";

// The chat format a tokenizer supports, from its special tokens; NotSupported when it has none.
Result<ChatFormat> DetectChatFormat(const tokenizer::Tokenizer& tok);

// Tokens of `messages`: BOS (when add_bos) + each message + (when add_generation_prompt) the open assistant
// header. Role "tool" is rendered as "ipython". InvalidArgument for an unknown role, for more image markers in a
// message than it has images, or for image_at of the wrong size, out of order or past the content.
Result<std::vector<int32_t>> RenderChat(const tokenizer::Tokenizer& tok, ChatFormat format,
                                        std::span<const ChatMessage> messages, bool add_bos,
                                        bool add_generation_prompt);

// Tokens that end an assistant turn in `format` (Llama 4: <|eot|>, <|eom|>, <|end_of_text|>).
std::vector<int32_t> ChatStopIds(const tokenizer::Tokenizer& tok, ChatFormat format);

}  // namespace herd::runtime
