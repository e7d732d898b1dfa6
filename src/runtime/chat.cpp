// Chat rendering.
#include "runtime/chat.h"

#include <algorithm>

namespace herd::runtime {
namespace {

struct FormatTokens {
  const char* header_start;
  const char* header_end;
  const char* end_of_turn;
};

FormatTokens TokensOf(ChatFormat f) {
  if (f == ChatFormat::kLlama4) return {"<|header_start|>", "<|header_end|>", "<|eot|>"};
  return {"<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"};
}

Result<int32_t> Special(const tokenizer::Tokenizer& tok, const char* text) {
  auto id = tok.TokenId(text);
  if (!id) return NotSupported(std::string("the tokenizer has no special token ") + text);
  return *id;
}

}  // namespace

Result<ChatFormat> DetectChatFormat(const tokenizer::Tokenizer& tok) {
  if (tok.TokenId("<|header_start|>") && tok.TokenId("<|eot|>")) return ChatFormat::kLlama4;
  if (tok.TokenId("<|start_header_id|>") && tok.TokenId("<|eot_id|>")) return ChatFormat::kLlama3;
  return NotSupported("the tokenizer (" + std::string(tok.kind()) +
                      ") has no chat special tokens (Llama 3 or Llama 4 headers); chat needs an instruct model");
}

Result<std::vector<int32_t>> RenderChat(const tokenizer::Tokenizer& tok, ChatFormat format,
                                        std::span<const ChatMessage> messages, bool add_bos,
                                        bool add_generation_prompt) {
  const FormatTokens ft = TokensOf(format);
  HERD_ASSIGN_OR_RETURN(int32_t header_start, Special(tok, ft.header_start));
  HERD_ASSIGN_OR_RETURN(int32_t header_end, Special(tok, ft.header_end));
  HERD_ASSIGN_OR_RETURN(int32_t end_of_turn, Special(tok, ft.end_of_turn));
  std::vector<int32_t> ids;
  if (add_bos) {
    if (!tok.bos_id()) return NotSupported("the tokenizer has no BOS token");
    ids.push_back(*tok.bos_id());
  }
  auto append_text = [&](const std::string& text) {
    std::vector<int32_t> t = tok.Encode(text, /*add_bos=*/false, /*parse_special=*/false);
    ids.insert(ids.end(), t.begin(), t.end());
  };
  auto header = [&](const std::string& role) {
    ids.push_back(header_start);
    append_text(role);
    ids.push_back(header_end);
    append_text("\n\n");
  };
  for (const ChatMessage& m : messages) {
    std::string role = m.role;
    if (role == "tool") role = "ipython";
    if (role != "system" && role != "user" && role != "assistant" && role != "ipython") {
      return InvalidArgument("unknown chat role '" + m.role + "' (expected system, user, assistant, tool, ipython)");
    }
    header(role);
    // The text pieces between the images, and how many images go before the first piece.
    std::vector<std::string_view> pieces;
    size_t leading = 0;
    std::string_view rest = m.content;
    if (m.images.empty()) {
      pieces.push_back(rest);
    } else if (!m.image_at.empty()) {
      if (m.image_at.size() != m.images.size()) {
        return InvalidArgument("a " + m.role + " message has " + std::to_string(m.images.size()) + " images but " +
                               std::to_string(m.image_at.size()) + " image offsets");
      }
      size_t from = 0;
      for (size_t at : m.image_at) {
        if (at < from || at > m.content.size()) {
          return InvalidArgument("a " + m.role + " message's image offsets are out of order or past its text");
        }
        pieces.push_back(rest.substr(from, at - from));
        from = at;
      }
      pieces.push_back(rest.substr(from));
    } else {  // images at their markers, the others first
      for (size_t at; (at = rest.find(kImageMarker)) != std::string_view::npos;) {
        pieces.push_back(rest.substr(0, at));
        rest.remove_prefix(at + kImageMarker.size());
      }
      pieces.push_back(rest);
      const size_t markers = pieces.size() - 1;
      if (markers > m.images.size()) {
        return InvalidArgument("a " + m.role + " message has " + std::to_string(markers) + " image markers (" +
                               std::string(kImageMarker) + ") but " + std::to_string(m.images.size()) + " images");
      }
      leading = m.images.size() - markers;
    }
    for (size_t k = 0; k < leading; ++k) ids.insert(ids.end(), m.images[k].begin(), m.images[k].end());
    // The text between images encoded piece by piece.
    for (size_t k = 0; k < pieces.size(); ++k) {
      if (!pieces[k].empty()) append_text(std::string(pieces[k]));
      if (k + 1 < pieces.size()) ids.insert(ids.end(), m.images[leading + k].begin(), m.images[leading + k].end());
    }
    ids.push_back(end_of_turn);
  }
  if (add_generation_prompt) header("assistant");
  return ids;
}

std::vector<int32_t> ChatStopIds(const tokenizer::Tokenizer& tok, ChatFormat format) {
  std::vector<int32_t> ids = tok.stop_ids();
  const char* extra[] = {format == ChatFormat::kLlama4 ? "<|eot|>" : "<|eot_id|>",
                         format == ChatFormat::kLlama4 ? "<|eom|>" : "<|eom_id|>", "<|end_of_text|>"};
  for (const char* t : extra) {
    auto id = tok.TokenId(t);
    if (id && std::find(ids.begin(), ids.end(), *id) == ids.end()) ids.push_back(*id);
  }
  return ids;
}

}  // namespace herd::runtime
