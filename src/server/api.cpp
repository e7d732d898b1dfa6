// OpenAI request parsing and response shaping (server/api.h).
#include "server/api.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "core/base64.h"
#include "core/json.h"

namespace herd::server {
namespace {

using nlohmann::json;

constexpr int kMaxJsonDepth = 64;
constexpr int kMaxStopStrings = 4;
constexpr int kMaxChoices = 128;
constexpr int kMaxTopLogprobs = 20;

ResponseJson NullOr(const std::string& s) { return s.empty() ? ResponseJson(nullptr) : ResponseJson(s); }

std::string NumberText(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.10g", v);
  return buf;
}

// Reads the optional fields of one JSON object; the first error is kept and every later read is skipped.
class FieldReader {
 public:
  explicit FieldReader(const json& body) : body_(body) {}

  // The value of `key`, or null when absent or JSON null.
  const json* Find(const char* key) const {
    auto it = body_.find(key);
    if (it == body_.end() || it->is_null()) return nullptr;
    return &*it;
  }

  std::optional<double> Number(const char* key, double lo, double hi, bool lo_open = false) {
    const json* v = Find(key);
    if (!v || error_) return std::nullopt;
    if (!v->is_number()) return Fail(key, "must be a number, got " + std::string(v->type_name()));
    const double d = v->get<double>();
    if (!std::isfinite(d) || d > hi || d < lo || (lo_open && d == lo)) {
      return Fail(key, std::string("must be ") + (lo_open ? "above " : "from ") + NumberText(lo) +
                           (lo_open ? " and at most " : " to ") + NumberText(hi) + ", got " + NumberText(d));
    }
    return d;
  }

  std::optional<int64_t> Integer(const char* key, int64_t lo, int64_t hi) {
    const json* v = Find(key);
    if (!v || error_) return std::nullopt;
    return IntegerOf(*v, key, lo, hi);
  }

  // An integer in [lo, hi]: a JSON integer or a float with no fraction (5.0).
  std::optional<int64_t> IntegerOf(const json& v, const std::string& name, int64_t lo, int64_t hi) {
    const std::string range = " from " + std::to_string(lo) + " to " + std::to_string(hi);
    if (v.is_number_unsigned()) {
      const uint64_t u = v.get<uint64_t>();
      if (u > static_cast<uint64_t>(hi) || (lo > 0 && u < static_cast<uint64_t>(lo))) {
        return Fail(name, "must be an integer" + range + ", got " + v.dump());
      }
      return static_cast<int64_t>(u);
    }
    if (v.is_number_integer()) {
      const int64_t i = v.get<int64_t>();
      if (i < lo || i > hi) return Fail(name, "must be an integer" + range + ", got " + v.dump());
      return i;
    }
    if (v.is_number_float()) {
      const double d = v.get<double>();
      if (std::isfinite(d) && std::floor(d) == d && d >= static_cast<double>(lo) && d <= static_cast<double>(hi)) {
        return static_cast<int64_t>(d);
      }
      return Fail(name, "must be an integer" + range + ", got " + NumberText(d));
    }
    return Fail(name, "must be an integer, got " + std::string(v.type_name()));
  }

  std::optional<bool> Bool(const char* key) {
    const json* v = Find(key);
    if (!v || error_) return std::nullopt;
    if (!v->is_boolean()) return Fail(key, "must be a boolean, got " + std::string(v->type_name()));
    return v->get<bool>();
  }

  std::optional<std::string> String(const char* key) {
    const json* v = Find(key);
    if (!v || error_) return std::nullopt;
    if (!v->is_string()) return Fail(key, "must be a string, got " + std::string(v->type_name()));
    return v->get<std::string>();
  }

  // Records an error about `param` ("'param' " + what) and returns nullopt.
  std::nullopt_t Fail(const std::string& param, const std::string& what) {
    if (!error_) error_ = BadRequest("'" + param + "' " + what, param);
    return std::nullopt;
  }
  void Set(ApiError e) {
    if (!error_) error_ = std::move(e);
  }
  const std::optional<ApiError>& error() const { return error_; }

 private:
  const json& body_;
  std::optional<ApiError> error_;
};

// An image part's picture: a data: URL with base64 PNG or JPEG bytes, decoded; nullopt with the error recorded.
std::optional<vision::Image> PartImage(const json& part, const std::string& at, const ModelInfo& model,
                                       FieldReader* r) {
  auto field = part.find("image_url");
  if (field == part.end()) return r->Fail(at + ".image_url", "is required");
  const json* url = &*field;
  std::string param = at + ".image_url";
  if (url->is_object()) {  // OpenAI's {"url": ..., "detail": ...}; a bare string is accepted too
    auto u = url->find("url");
    if (u == url->end()) return r->Fail(param + ".url", "is required");
    url = &*u;
    param += ".url";
  }
  if (!url->is_string()) return r->Fail(param, "must be a string, got " + std::string(url->type_name()));
  if (!model.images) {
    r->Set(BadRequest(model.no_images_reason + ": image input is not supported", at + ".type",
                      "image_input_not_supported"));
    return std::nullopt;
  }
  const std::string_view u = url->get_ref<const std::string&>();
  if (u.substr(0, 5) != "data:") {
    r->Set(BadRequest("the server does not fetch image URLs ('" + std::string(u.substr(0, 40)) +
                          (u.size() > 40 ? "...'" : "'") +
                          "); send the image inline as a data: URL (data:image/png;base64,...)",
                      param, "image_url_not_supported"));
    return std::nullopt;
  }
  const size_t comma = u.find(',');
  const std::string_view head = u.substr(0, comma);
  if (comma == std::string_view::npos || head.size() < 7 || head.substr(head.size() - 7) != ";base64") {
    return r->Fail(param, "must be a base64 data: URL (data:image/png;base64,...)");
  }
  std::string bytes;
  if (!DecodeBase64(u.substr(comma + 1), &bytes)) {
    return r->Fail(param, "holds invalid base64 (the standard alphabet with '=' padding, no whitespace)");
  }
  auto image = vision::DecodeImage(
      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()), model.images->limits);
  if (!image.ok()) {
    r->Set(BadRequest("the image could not be read: " + image.status().message(), param, "invalid_image"));
    return std::nullopt;
  }
  return std::move(image).value();
}

// A message's content: a string, or a list of text parts (concatenated) and image_url parts (each image placed
// where its part stands between the texts, its pixels appended to *images).
std::optional<runtime::ChatMessage> MessageContent(const json& content, const std::string& param, bool null_ok,
                                                   const ModelInfo& model, std::vector<vision::Image>* images,
                                                   int64_t* image_tokens, FieldReader* r) {
  runtime::ChatMessage m;
  if (content.is_null()) {
    if (null_ok) return m;
    return r->Fail(param, "must be a string or a list of content parts, got null");
  }
  if (content.is_string()) {
    m.content = content.get<std::string>();
    return m;
  }
  if (!content.is_array()) {
    return r->Fail(param, "must be a string or a list of content parts, got " + std::string(content.type_name()));
  }
  for (size_t i = 0; i < content.size(); ++i) {
    const json& part = content[i];
    const std::string at = param + "[" + std::to_string(i) + "]";
    if (!part.is_object()) return r->Fail(at, "must be an object, got " + std::string(part.type_name()));
    auto type = part.find("type");
    if (type == part.end() || !type->is_string()) return r->Fail(at + ".type", "must be a string");
    const std::string t = type->get<std::string>();
    if (t == "image_url") {
      if (model.images && static_cast<int64_t>(images->size()) >= model.images->max_images) {
        return r->Fail(at, "is image " + std::to_string(images->size() + 1) + "; a request may hold at most " +
                               std::to_string(model.images->max_images) + " images");
      }
      auto image = PartImage(part, at, model, r);
      if (!image) return std::nullopt;
      const ImageInput& in = *model.images;
      const vision::TileGrid grid = vision::BestCanvas(image->width, image->height, in.tile_size, in.max_tiles);
      m.images.push_back(vision::ImageTokens(grid, in.patches_per_tile, in.ids));
      m.image_at.push_back(m.content.size());
      images->push_back(std::move(*image));
      *image_tokens += static_cast<int64_t>(m.images.back().size());
      if (*image_tokens >= model.n_ctx) {  // refused before more images are decoded
        r->Set(BadRequest("This model's maximum context length is " + std::to_string(model.n_ctx) +
                              " tokens, but the images up to " + at + " take " + std::to_string(*image_tokens),
                          at, "context_length_exceeded"));
        return std::nullopt;
      }
      continue;
    }
    if (t != "text") {
      return r->Fail(at + ".type", "'" + t + "' is not a supported content part type (text, image_url)");
    }
    auto txt = part.find("text");
    if (txt == part.end() || !txt->is_string()) return r->Fail(at + ".text", "must be a string");
    m.content += txt->get<std::string>();
  }
  return m;
}

// The prompt of /v1/completions: a string, a list with one string, token ids, or a list with one list of ids.
std::optional<std::vector<int32_t>> CompletionPrompt(const json& body, const ModelInfo& model, FieldReader* r) {
  auto it = body.find("prompt");
  if (it == body.end() || it->is_null()) return r->Fail("prompt", "is required");
  const json* p = &*it;
  auto encode = [&](const std::string& text) {
    return model.tokenizer->Encode(text, /*add_bos=*/true, /*parse_special=*/false);
  };
  if (p->is_string()) return encode(p->get<std::string>());
  if (!p->is_array()) {
    return r->Fail("prompt", "must be a string, a list of strings, token ids or a list of token id lists, got " +
                                 std::string(p->type_name()));
  }
  if (p->empty()) return r->Fail("prompt", "must not be empty");
  if ((*p)[0].is_string() || (*p)[0].is_array()) {
    if (p->size() != 1) {
      return r->Fail("prompt", "holds " + std::to_string(p->size()) +
                                   " prompts; this server takes one prompt per request (use n for several choices)");
    }
    if ((*p)[0].is_string()) return encode((*p)[0].get<std::string>());
    p = &(*p)[0];
    if (p->empty()) return r->Fail("prompt", "must not be empty");
  }
  std::vector<int32_t> ids;
  ids.reserve(p->size());
  for (size_t i = 0; i < p->size(); ++i) {
    const json& v = (*p)[i];
    const std::string at = "prompt[" + std::to_string(i) + "]";
    if (v.is_number_integer()) {
      const bool inside = v.is_number_unsigned() ? v.get<uint64_t>() < static_cast<uint64_t>(model.vocab_size)
                                                 : v.get<int64_t>() >= 0 && v.get<int64_t>() < model.vocab_size;
      if (!inside) {
        r->Set(BadRequest("token id " + v.dump() + " at " + at + " is outside the vocabulary (0 to " +
                              std::to_string(model.vocab_size - 1) + ")",
                          "prompt"));
        return std::nullopt;
      }
      ids.push_back(static_cast<int32_t>(v.get<int64_t>()));
      continue;
    }
    auto id = r->IntegerOf(v, at, 0, model.vocab_size - 1);
    if (!id) return std::nullopt;
    ids.push_back(static_cast<int32_t>(*id));
  }
  return ids;
}

// An assistant message's tool_calls, as the model writes them (runtime/tools.h RenderToolCalls).
std::optional<std::string> PastToolCalls(const json& calls, const std::string& at, runtime::ChatFormat format,
                                         FieldReader* r) {
  if (!calls.is_array()) return r->Fail(at, "must be a list of tool calls");
  std::vector<runtime::ToolCall> list;
  for (size_t i = 0; i < calls.size(); ++i) {
    const std::string ci = at + "[" + std::to_string(i) + "]";
    const json& c = calls[i];
    const json* fn = c.is_object() && c.contains("function") ? &c["function"] : nullptr;
    if (fn == nullptr || !fn->is_object() || !fn->contains("name") || !(*fn)["name"].is_string()) {
      return r->Fail(ci + ".function.name", "is required (a string)");
    }
    runtime::ToolCall call;
    call.name = (*fn)["name"].get<std::string>();
    if (fn->contains("arguments")) {
      const json& a = (*fn)["arguments"];
      call.arguments = a.is_string() ? a.get<std::string>() : a.dump();
    }
    list.push_back(std::move(call));
  }
  auto text = runtime::RenderToolCalls(format, list);
  if (!text.ok()) return r->Fail(at, text.status().message());
  return std::move(text).value();
}

std::optional<std::vector<int32_t>> ChatPrompt(const json& body, const ModelInfo& model,
                                               std::vector<vision::Image>* images, const ApiRequest& req,
                                               FieldReader* r) {
  auto it = body.find("messages");
  if (it == body.end() || it->is_null()) return r->Fail("messages", "is required");
  if (!it->is_array()) return r->Fail("messages", "must be a list of messages, got " + std::string(it->type_name()));
  if (it->empty()) return r->Fail("messages", "must hold at least one message");
  if (!model.chat_format) {
    r->Set(
        BadRequest("this model's tokenizer has no chat template (no Llama 3 or Llama 4 header tokens); use "
                   "/v1/completions",
                   "messages", "chat_not_supported"));
    return std::nullopt;
  }
  std::vector<runtime::ChatMessage> messages;
  int64_t image_tokens = 0;  // prompt tokens of the images so far
  for (size_t i = 0; i < it->size(); ++i) {
    const json& m = (*it)[i];
    const std::string at = "messages[" + std::to_string(i) + "]";
    if (!m.is_object()) return r->Fail(at, "must be an object, got " + std::string(m.type_name()));
    auto role = m.find("role");
    if (role == m.end() || !role->is_string()) return r->Fail(at + ".role", "must be a string");
    std::string name = role->get<std::string>();
    if (name == "developer") name = "system";  // OpenAI's newer name for system instructions
    if (name != "system" && name != "user" && name != "assistant" && name != "tool" && name != "ipython") {
      return r->Fail(at + ".role", "'" + name + "' is not a role (system, user, assistant, tool)");
    }
    auto content = m.find("content");
    // An assistant turn that only called tools has no content.
    auto message = MessageContent(content == m.end() ? json(nullptr) : *content, at + ".content", name == "assistant",
                                  model, images, &image_tokens, r);
    if (!message) return std::nullopt;
    message->role = name;
    if (auto calls = m.find("tool_calls"); name == "assistant" && calls != m.end() && !calls->is_null()) {
      auto text = PastToolCalls(*calls, at + ".tool_calls", *model.chat_format, r);
      if (!text) return std::nullopt;
      message->content += *text;
    }
    messages.push_back(std::move(*message));
  }
  if (req.tools_active) {
    // The functions go where each format expects them: Llama 4's system prompt (before the request's own system
    // text), Llama 3.1's first user message.
    const std::string prompt = runtime::ToolPrompt(*model.chat_format, req.tools);
    if (*model.chat_format == runtime::ChatFormat::kLlama4) {
      if (!messages.empty() && messages[0].role == "system") {
        messages[0].content = prompt + "\n\n" + messages[0].content;
        for (auto& at : messages[0].image_at) at += prompt.size() + 2;
      } else {
        runtime::ChatMessage system;
        system.role = "system";
        system.content = prompt;
        messages.insert(messages.begin(), std::move(system));
      }
    } else {
      for (auto& m : messages) {
        if (m.role != "user") continue;
        m.content = prompt + m.content;
        for (auto& at : m.image_at) at += prompt.size();
        break;
      }
    }
  }
  auto ids = runtime::RenderChat(*model.tokenizer, *model.chat_format, messages, /*add_bos=*/true,
                                 /*add_generation_prompt=*/true);
  if (!ids.ok()) {
    r->Set(BadRequest(ids.status().message(), "messages"));
    return std::nullopt;
  }
  return std::move(ids).value();
}

// Stop strings: a string or a list of at most 4 (empty strings are ignored).
std::vector<std::string> StopStrings(FieldReader* r) {
  std::vector<std::string> out;
  const json* v = r->Find("stop");
  if (!v) return out;
  if (v->is_string()) {
    if (!v->get<std::string>().empty()) out.push_back(v->get<std::string>());
    return out;
  }
  if (!v->is_array()) {
    r->Fail("stop", "must be a string or a list of strings, got " + std::string(v->type_name()));
    return out;
  }
  if (v->size() > kMaxStopStrings) {
    r->Fail("stop", "holds " + std::to_string(v->size()) + " strings; at most " + std::to_string(kMaxStopStrings));
    return out;
  }
  for (size_t i = 0; i < v->size(); ++i) {
    if (!(*v)[i].is_string()) {
      r->Fail("stop", "must be a string or a list of strings; entry " + std::to_string(i) + " is a " +
                          std::string((*v)[i].type_name()));
      return {};
    }
    if (!(*v)[i].get<std::string>().empty()) out.push_back((*v)[i].get<std::string>());
  }
  return out;
}

std::vector<std::pair<int32_t, float>> LogitBias(const ModelInfo& model, FieldReader* r) {
  std::vector<std::pair<int32_t, float>> out;
  const json* v = r->Find("logit_bias");
  if (!v) return out;
  if (!v->is_object()) {
    r->Fail("logit_bias", "must be an object mapping token ids to biases, got " + std::string(v->type_name()));
    return out;
  }
  for (auto it = v->begin(); it != v->end(); ++it) {
    const std::string& key = it.key();
    int64_t id = -1;
    bool digits = !key.empty() && key.size() <= 10;
    for (char c : key) digits = digits && c >= '0' && c <= '9';
    if (digits) id = std::stoll(key);
    if (id < 0 || id >= model.vocab_size) {
      r->Fail("logit_bias", "key '" + key + "' is not a token id of the vocabulary (0 to " +
                                std::to_string(model.vocab_size - 1) + ")");
      return {};
    }
    if (!it.value().is_number() || !std::isfinite(it.value().get<double>()) || it.value().get<double>() < -100 ||
        it.value().get<double>() > 100) {
      r->Fail("logit_bias", "bias of token " + key + " must be a number from -100 to 100, got " + it.value().dump());
      return {};
    }
    out.emplace_back(static_cast<int32_t>(id), it.value().get<float>());
  }
  return out;
}

std::string FinishName(runtime::FinishReason r) {
  switch (r) {
    case runtime::FinishReason::kStop:
      return "stop";
    case runtime::FinishReason::kLength:
      return "length";
    case runtime::FinishReason::kCancelled:
      return "cancelled";
    case runtime::FinishReason::kError:
      return "error";
  }
  return "stop";
}

ResponseJson ByteList(const std::string& s) {
  ResponseJson out = ResponseJson::array();
  for (unsigned char c : s) out.push_back(static_cast<int>(c));
  return out;
}

}  // namespace

ResponseJson ApiError::ToJson() const {
  return {{"error", {{"message", message}, {"type", type}, {"param", NullOr(param)}, {"code", NullOr(code)}}}};
}

ApiError BadRequest(std::string message, std::string param, std::string code) {
  return ApiError{400, std::move(message), "invalid_request_error", std::move(param), std::move(code)};
}

ApiError Unavailable(std::string message, std::string code) {
  return ApiError{503, std::move(message), "server_error", "", std::move(code)};
}

ApiError FromSubmitStatus(const Status& s) {
  switch (s.code()) {
    case StatusCode::kInvalidArgument:
      return BadRequest(s.message());
    case StatusCode::kOutOfRange:
      return BadRequest(s.message(), "", "context_length_exceeded");
    case StatusCode::kUnavailable:
      return Unavailable(s.message(), "server_busy");
    default:
      return ApiError{500, s.ToString(), "server_error", "", "internal_error"};
  }
}

std::string Dump(const ResponseJson& j) { return j.dump(-1, ' ', false, ResponseJson::error_handler_t::replace); }

std::optional<ApiError> ParseJsonBody(std::string_view text, json* out) {
  // Nesting checked before the parser sees the text.
  bool too_deep = false;
  json j = ParseJsonBounded(text, kMaxJsonDepth, &too_deep);
  if (too_deep) {
    return BadRequest("the request body nests deeper than " + std::to_string(kMaxJsonDepth) + " levels", "",
                      "invalid_json");
  }
  if (j.is_discarded()) {
    return BadRequest(
        text.empty() ? "the request body is empty; expected a JSON object" : "the request body is not valid JSON", "",
        "invalid_json");
  }
  if (!j.is_object()) {
    return BadRequest("the request body must be a JSON object, got " + std::string(j.type_name()), "", "invalid_json");
  }
  *out = std::move(j);
  return std::nullopt;
}

std::optional<ApiError> ParseGenerateRequest(const json& body, const ModelInfo& model, ApiKind kind, ApiRequest* out) {
  FieldReader r(body);
  ApiRequest req;
  req.kind = kind;
  const bool chat = kind == ApiKind::kChatCompletion;

  if (auto name = r.String("model"); name && *name != model.id) {
    return ApiError{404, "The model '" + *name + "' does not exist (this server serves '" + model.id + "')",
                    "invalid_request_error", "model", "model_not_found"};
  }
  if (r.error()) return r.error();

  // Features this server does not have are refused rather than ignored: they change what the client gets.
  if (auto echo = r.Bool("echo"); echo && *echo) r.Fail("echo", "is not supported");
  if (auto suffix = r.String("suffix"); suffix && !suffix->empty()) r.Fail("suffix", "is not supported");
  // Tools (chat only): the functions, tool_choice and parallel_tool_calls.
  std::optional<std::string> named_tool;
  bool require_call = false;
  bool parallel_calls = true;
  if (const json* tools = r.Find("tools"); tools && !tools->is_null()) {
    if (!chat) {
      r.Fail("tools", "are only for /v1/chat/completions");
    } else if (!tools->is_array()) {
      r.Fail("tools", "must be a list of {\"type\": \"function\", \"function\": {...}}");
    } else {
      for (size_t i = 0; i < tools->size() && !r.error(); ++i) {
        const json& t = (*tools)[i];
        const std::string at = "tools[" + std::to_string(i) + "]";
        const json* fn = t.is_object() && t.contains("function") ? &t["function"] : nullptr;
        if (!t.is_object() || !t.contains("type") || t["type"] != "function" || fn == nullptr || !fn->is_object()) {
          r.Fail(at, "must be {\"type\": \"function\", \"function\": {\"name\", \"description\", \"parameters\"}}");
          break;
        }
        runtime::ToolFunction f;
        if (!fn->contains("name") || !(*fn)["name"].is_string() || (*fn)["name"].get<std::string>().empty()) {
          r.Fail(at + ".function.name", "is required (a non-empty string)");
          break;
        }
        f.name = (*fn)["name"].get<std::string>();
        for (char c : f.name) {
          if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-' && c != '.') {
            r.Fail(at + ".function.name", "'" + f.name + "' may hold only letters, digits, '_', '-' and '.'");
            break;
          }
        }
        for (const auto& other : req.tools) {
          if (other.name == f.name) r.Fail(at + ".function.name", "'" + f.name + "' is defined twice");
        }
        if (fn->contains("description") && (*fn)["description"].is_string()) {
          f.description = (*fn)["description"].get<std::string>();
        }
        if (fn->contains("parameters")) {
          if (!(*fn)["parameters"].is_object()) {
            r.Fail(at + ".function.parameters", "must be a JSON Schema object");
            break;
          }
          f.parameters = runtime::ToolParameters((*fn)["parameters"]);
        }
        req.tools.push_back(std::move(f));
      }
    }
  }
  if (const json* choice = r.Find("tool_choice"); choice && !choice->is_null()) {
    if (choice->is_string() && (*choice == "none" || *choice == "auto" || *choice == "required")) {
      require_call = *choice == "required";
      req.tools_active = *choice != "none";
    } else if (choice->is_object() && choice->contains("function") && (*choice)["function"].is_object() &&
               (*choice)["function"].contains("name") && (*choice)["function"]["name"].is_string()) {
      named_tool = (*choice)["function"]["name"].get<std::string>();
      require_call = true;
      req.tools_active = true;
      bool known = false;
      for (const auto& t : req.tools) known |= t.name == *named_tool;
      if (!known) r.Fail("tool_choice", "names '" + *named_tool + "', which is not one of the tools");
    } else {
      r.Fail("tool_choice",
             "must be \"none\", \"auto\", \"required\" or {\"type\": \"function\", \"function\": {\"name\"}}");
    }
  } else {
    req.tools_active = !req.tools.empty();
  }
  if (req.tools.empty()) {
    if (require_call) r.Fail("tool_choice", "requires tools");
    req.tools_active = false;
  }
  if (auto p = r.Bool("parallel_tool_calls")) parallel_calls = *p;
  // Structured output: OpenAI's response_format, and llama.cpp's json_schema and grammar fields.
  std::optional<std::pair<runtime::GrammarKind, std::string>> format;
  std::string format_param;
  if (const json* fmt = r.Find("response_format")) {
    format_param = "response_format";
    const json* type = nullptr;
    if (fmt->is_object()) {
      auto it = fmt->find("type");
      if (it != fmt->end()) type = &*it;
    }
    if (type == nullptr || !type->is_string()) {
      r.Fail("response_format", "must be an object with a \"type\": \"text\", \"json_object\" or \"json_schema\"");
    } else if (*type == "json_object") {
      format.emplace(runtime::GrammarKind::kJsonObject, "");
    } else if (*type == "json_schema") {
      const json* js = fmt->contains("json_schema") ? &(*fmt)["json_schema"] : nullptr;
      if (js == nullptr || !js->is_object()) {
        r.Fail("response_format.json_schema", "must be an object with the schema in \"schema\"");
      } else if (!js->contains("schema")) {
        r.Fail("response_format.json_schema.schema", "is missing");
      } else if (!(*js)["schema"].is_object() && !(*js)["schema"].is_boolean()) {
        r.Fail("response_format.json_schema.schema", "must be a JSON Schema object");
      } else {
        format.emplace(runtime::GrammarKind::kJsonSchema, (*js)["schema"].dump());
        format_param = "response_format.json_schema.schema";
      }
    } else if (*type != "text") {
      r.Fail("response_format.type", "must be \"text\", \"json_object\" or \"json_schema\", got " + type->dump());
    }
  }
  if (const json* js = r.Find("json_schema"); js && !js->is_null()) {
    if (format) r.Fail("json_schema", "cannot be combined with response_format");
    if (!js->is_object() && !js->is_boolean()) r.Fail("json_schema", "must be a JSON Schema object");
    format.emplace(runtime::GrammarKind::kJsonSchema, js->dump());
    format_param = "json_schema";
  }
  if (const json* g = r.Find("grammar"); g && !g->is_null()) {
    if (format) r.Fail("grammar", "cannot be combined with response_format or json_schema");
    if (!g->is_string()) r.Fail("grammar", "must be a string of GBNF rules");
    if (g->is_string()) format.emplace(runtime::GrammarKind::kGbnf, g->get<std::string>());
    format_param = "grammar";
  }
  if (require_call && !r.error()) {
    // The reply must be calls: constrained to the JSON form of calls of the request's functions.
    if (format) r.Fail("tool_choice", "cannot require a tool call together with " + format_param);
    format.emplace(runtime::GrammarKind::kJsonSchema,
                   runtime::ToolCallSchema(req.tools, named_tool, parallel_calls).dump());
    format_param = "tools";
  }
  if (r.error()) return r.error();
  if (format) {
    if (!model.grammars) return BadRequest("structured output is not available for this model", format_param);
    auto compiled = model.grammars(format->first, format->second);
    if (!compiled.ok()) return BadRequest(compiled.status().message(), format_param);
    req.serving.grammar = std::move(compiled.value());
  }

  auto prompt = chat ? ChatPrompt(body, model, &req.images, req, &r) : CompletionPrompt(body, model, &r);
  if (r.error()) return r.error();
  if (!prompt || prompt->empty()) return BadRequest("the prompt encodes to no tokens", chat ? "messages" : "prompt");
  req.serving.prompt = std::move(*prompt);
  if (chat) req.serving.stop_ids = model.chat_stop_ids;
  if (model.guard) {
    // What a guard judges: the last user message's text parts (chat) or the prompt (completions).
    if (chat) {
      const json& messages = body["messages"];
      for (auto it = messages.rbegin(); it != messages.rend(); ++it) {
        if (!it->is_object() || !it->contains("role") || (*it)["role"] != "user" || !it->contains("content")) continue;
        const json& content = (*it)["content"];
        if (content.is_string()) {
          req.judged_user_text = content.get<std::string>();
        } else if (content.is_array()) {
          for (const auto& part : content) {
            if (part.is_object() && part.contains("text") && part["text"].is_string()) {
              req.judged_user_text += part["text"].get<std::string>();
            }
          }
        }
        break;
      }
    } else {
      req.judged_user_text = model.tokenizer->Decode(req.serving.prompt, /*skip_special=*/true);
    }
  }
  const int64_t n_prompt = static_cast<int64_t>(req.serving.prompt.size());
  if (n_prompt + 1 > model.n_ctx) {
    return BadRequest("This model's maximum context length is " + std::to_string(model.n_ctx) +
                          " tokens, but the prompt has " + std::to_string(n_prompt) +
                          " tokens (and at least one token must be generated)",
                      chat ? "messages" : "prompt", "context_length_exceeded");
  }

  const int64_t room = model.n_ctx - n_prompt;
  std::optional<int64_t> max_tokens = r.Integer("max_tokens", 1, INT32_MAX);
  if (chat) {
    if (auto mct = r.Integer("max_completion_tokens", 1, INT32_MAX)) max_tokens = mct;
  }
  req.serving.max_tokens = std::min(max_tokens.value_or(room), room);

  runtime::SamplingParams& sp = req.serving.sampling;
  sp.temperature = static_cast<float>(r.Number("temperature", 0, 2).value_or(1.0));
  sp.top_p = static_cast<float>(r.Number("top_p", 0, 1).value_or(1.0));
  sp.top_k = static_cast<int32_t>(r.Integer("top_k", -1, INT32_MAX).value_or(0));
  if (sp.top_k < 0) sp.top_k = 0;  // vLLM's -1: off
  if (sp.top_p == 0) {             // the limit of top_p -> 0 is the most likely token alone
    sp.top_p = 1;
    sp.top_k = 1;
  }
  sp.min_p = static_cast<float>(r.Number("min_p", 0, 1).value_or(0.0));
  sp.repeat_penalty = static_cast<float>(r.Number("repetition_penalty", 0, 1e6, /*lo_open=*/true).value_or(1.0));
  req.serving.frequency_penalty = static_cast<float>(r.Number("frequency_penalty", -2, 2).value_or(0.0));
  req.serving.presence_penalty = static_cast<float>(r.Number("presence_penalty", -2, 2).value_or(0.0));
  req.serving.logit_bias = LogitBias(model, &r);
  if (const json* seed = r.Find("seed")) {
    // Any 64-bit integer, signed or not (a negative seed is taken modulo 2^64).
    if (seed->is_number_unsigned()) {
      sp.seed = seed->get<uint64_t>();
      req.seed_given = true;
    } else if (seed->is_number_integer()) {
      sp.seed = static_cast<uint64_t>(seed->get<int64_t>());
      req.seed_given = true;
    } else {
      r.Fail("seed", "must be an integer from -2^63 to 2^64 - 1, got " +
                         (seed->is_number() ? NumberText(seed->get<double>()) : std::string(seed->type_name())));
    }
  }
  req.serving.stop_strings = StopStrings(&r);
  req.serving.n = static_cast<int>(r.Integer("n", 1, kMaxChoices).value_or(1));
  if (auto best_of = r.Integer("best_of", 1, kMaxChoices); best_of && *best_of != req.serving.n) {
    r.Fail("best_of", "is not supported (other than equal to n)");
  }
  req.serving.ignore_eos = r.Bool("ignore_eos").value_or(false);
  req.stream = r.Bool("stream").value_or(false);
  if (const json* so = r.Find("stream_options")) {
    if (!so->is_object()) {
      r.Fail("stream_options", "must be an object, got " + std::string(so->type_name()));
    } else if (so->contains("include_usage") && !(*so)["include_usage"].is_null()) {
      if (!(*so)["include_usage"].is_boolean()) {
        r.Fail("stream_options.include_usage", "must be a boolean");
      } else {
        req.include_usage = (*so)["include_usage"].get<bool>();
      }
    }
  }
  if (chat) {
    const bool lp = r.Bool("logprobs").value_or(false);
    auto top = r.Integer("top_logprobs", 0, kMaxTopLogprobs);
    if (top && !lp) r.Fail("top_logprobs", "needs logprobs set to true");
    req.logprobs = lp;
    req.serving.top_logprobs = lp ? static_cast<int>(top.value_or(0)) : -1;
  } else {
    auto lp = r.Integer("logprobs", 0, kMaxTopLogprobs);
    req.logprobs = lp.has_value();
    req.serving.top_logprobs = lp ? static_cast<int>(*lp) : -1;
  }
  if (auto user = r.Find("user"); user && !user->is_string()) r.Fail("user", "must be a string");
  if (r.error()) return r.error();
  if (Status s = sp.Validate(); !s.ok()) return BadRequest(s.message());
  *out = std::move(req);
  return std::nullopt;
}

// ---- responses ----

std::string NewResponseId(ApiKind kind) {
  static const char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  thread_local std::mt19937_64 rng(std::random_device{}());
  std::string id = kind == ApiKind::kChatCompletion ? "chatcmpl-" : "cmpl-";
  for (int i = 0; i < 24; ++i) id += kAlphabet[rng() % (sizeof kAlphabet - 1)];
  return id;
}

ResponseShaper::ResponseShaper(const ApiRequest& request, const ModelInfo& model, std::string id, int64_t created)
    : kind_(request.kind),
      include_usage_(request.include_usage),
      logprobs_(request.logprobs),
      model_id_(model.id),
      tokenizer_(model.tokenizer),
      id_(std::move(id)),
      created_(created),
      choices_(static_cast<size_t>(std::max(1, request.serving.n))),
      n_open_(static_cast<int>(choices_.size())),
      prompt_tokens_(static_cast<int64_t>(request.serving.prompt.size())),
      tools_(request.tools),
      tools_active_(request.tools_active && request.kind == ApiKind::kChatCompletion) {}

void ResponseShaper::Refuse(int choice, const std::string& refusal) {
  Choice& c = choices_[static_cast<size_t>(choice)];
  c.text = refusal;
  c.refused = true;
  c.finish_reason = "content_filter";
  c.logprobs_content = ResponseJson::array();
}

std::string ResponseShaper::StreamWhole() {
  std::string out = StreamHead();
  for (size_t i = 0; i < choices_.size(); ++i) {
    Choice& c = choices_[i];
    std::string finish = c.finish_reason;
    ResponseJson delta;
    const bool chat = kind_ == ApiKind::kChatCompletion;
    if (chat) {
      const ResponseJson message = Message(c, &finish);
      delta = ResponseJson::object();
      delta["content"] = message["content"];
      if (message.contains("tool_calls")) delta["tool_calls"] = message["tool_calls"];
      if (c.refused) delta["refusal"] = c.text;
    }
    ResponseJson chunk = ChunkBase();
    ResponseJson choice = {{"index", i}};
    if (chat) {
      choice["delta"] = delta;
    } else {
      choice["text"] = c.text;
    }
    choice["logprobs"] = nullptr;
    choice["finish_reason"] = nullptr;
    if (chat && delta.contains("tool_calls")) {
      for (size_t k = 0; k < delta["tool_calls"].size(); ++k) delta["tool_calls"][k]["index"] = k;
      choice["delta"] = delta;
    }
    chunk["choices"] = ResponseJson::array({choice});
    out += Sse(chunk);
    ResponseJson end = ChunkBase();
    ResponseJson last = {{"index", i}, {"logprobs", nullptr}, {"finish_reason", finish}};
    if (chat) {
      last["delta"] = ResponseJson::object();
    } else {
      last["text"] = "";
    }
    end["choices"] = ResponseJson::array({last});
    out += Sse(end);
  }
  return out + StreamTail();
}

ResponseJson ResponseShaper::Message(const Choice& c, std::string* finish_reason) const {
  ResponseJson message = {{"role", "assistant"}, {"content", c.text}, {"refusal", nullptr}};
  if (c.refused) {
    message["refusal"] = c.text;
    return message;
  }
  if (!tools_active_) return message;
  const runtime::ParsedReply parsed = runtime::ParseToolCalls(c.text, tools_);
  if (!parsed.is_call) return message;
  if (!parsed.error.empty()) {
    // Reported, never passed off as calls: the text stays the content (special tokens are never in it).
    message["tool_call_error"] = parsed.error;
    return message;
  }
  ResponseJson calls = ResponseJson::array();
  for (size_t i = 0; i < parsed.calls.size(); ++i) {
    calls.push_back({{"id", ToolCallId(i)},
                     {"type", "function"},
                     {"function", {{"name", parsed.calls[i].name}, {"arguments", parsed.calls[i].arguments}}}});
  }
  message["content"] = nullptr;
  message["tool_calls"] = std::move(calls);
  if (*finish_reason == "stop") *finish_reason = "tool_calls";
  return message;
}

std::string ResponseShaper::ToolCallId(size_t i) const {
  // Stable per response and call: the response id's random part and the call's index.
  return "call_" + id_.substr(id_.find('-') + 1) + "_" + std::to_string(i);
}

std::string ResponseShaper::TokenText(int32_t id) const {
  if (id < 0 || id >= tokenizer_->vocab_size()) return "";
  return tokenizer_->TokenBytes(id);
}

void ResponseShaper::Add(const runtime::ServingEvent& event) { Record(event); }

ResponseJson ResponseShaper::Record(const runtime::ServingEvent& event) {
  if (event.choice < 0 || event.choice >= static_cast<int>(choices_.size())) return nullptr;
  Choice& c = choices_[static_cast<size_t>(event.choice)];
  if (c.finished) return nullptr;
  c.text += event.text;
  ResponseJson logprobs = nullptr;
  if (logprobs_ && !event.logprobs.empty()) logprobs = LogprobsOf(event, c);
  if (!event.finished) return logprobs;
  c.finished = true;
  --n_open_;
  c.finish_reason = FinishName(event.finish_reason);
  c.completion_tokens = event.completion_tokens;
  prompt_tokens_ = event.prompt_tokens > 0 ? event.prompt_tokens : prompt_tokens_;
  cached_tokens_ = std::min(cached_tokens_.value_or(event.cached_tokens), event.cached_tokens);
  if (failure_) return logprobs;
  if (event.finish_reason == runtime::FinishReason::kError) {
    failure_ = ApiError{500, "generation failed: " + event.error.ToString(), "server_error", "", "internal_error"};
  } else if (event.finish_reason == runtime::FinishReason::kCancelled) {
    failure_ = Unavailable("the request was cancelled: the server is shutting down", "shutting_down");
  }
  return logprobs;
}

// Appends the logprobs of `event` to `choice` and returns them in the endpoint's shape for a stream chunk.
ResponseJson ResponseShaper::LogprobsOf(const runtime::ServingEvent& event, Choice& choice) const {
  ResponseJson chunk_content = ResponseJson::array();
  ResponseJson chunk_tokens = ResponseJson::array(), chunk_lp = ResponseJson::array(),
               chunk_top = ResponseJson::array(), chunk_off = ResponseJson::array();
  for (const runtime::TokenLogprob& t : event.logprobs) {
    const std::string text = TokenText(t.id);
    if (kind_ == ApiKind::kChatCompletion) {
      ResponseJson top = ResponseJson::array();
      for (const auto& [id, lp] : t.top) {
        const std::string alt = TokenText(id);
        top.push_back({{"token", alt}, {"logprob", lp}, {"bytes", ByteList(alt)}});
      }
      ResponseJson entry = {{"token", text}, {"logprob", t.logprob}, {"bytes", ByteList(text)}, {"top_logprobs", top}};
      chunk_content.push_back(entry);
      choice.logprobs_content.push_back(std::move(entry));
    } else {
      ResponseJson top = ResponseJson::object();
      for (const auto& [id, lp] : t.top) top[TokenText(id)] = lp;
      chunk_tokens.push_back(text);
      chunk_lp.push_back(t.logprob);
      chunk_top.push_back(top);
      chunk_off.push_back(choice.token_bytes);
      choice.tokens.push_back(text);
      choice.token_logprobs.push_back(t.logprob);
      choice.top_logprobs.push_back(std::move(top));
      choice.text_offset.push_back(choice.token_bytes);
      choice.token_bytes += static_cast<int64_t>(text.size());
    }
  }
  if (kind_ == ApiKind::kChatCompletion) return {{"content", chunk_content}, {"refusal", nullptr}};
  return {
      {"tokens", chunk_tokens}, {"token_logprobs", chunk_lp}, {"top_logprobs", chunk_top}, {"text_offset", chunk_off}};
}

ResponseJson ResponseShaper::ChoiceLogprobs(const Choice& c) const {
  if (!logprobs_) return nullptr;
  if (kind_ == ApiKind::kChatCompletion) return {{"content", c.logprobs_content}, {"refusal", nullptr}};
  return {{"tokens", c.tokens},
          {"token_logprobs", c.token_logprobs},
          {"top_logprobs", c.top_logprobs},
          {"text_offset", c.text_offset}};
}

ResponseJson ResponseShaper::Usage() const {
  int64_t completion = 0;
  for (const Choice& c : choices_) completion += c.completion_tokens;
  return {{"prompt_tokens", prompt_tokens_},
          {"completion_tokens", completion},
          {"total_tokens", prompt_tokens_ + completion},
          {"prompt_tokens_details", {{"cached_tokens", cached_tokens_.value_or(0)}}}};
}

ResponseJson ResponseShaper::Body() const {
  ResponseJson choices = ResponseJson::array();
  for (size_t i = 0; i < choices_.size(); ++i) {
    const Choice& c = choices_[i];
    ResponseJson choice = {{"index", i}};
    std::string finish = c.finish_reason;
    if (kind_ == ApiKind::kChatCompletion) {
      choice["message"] = Message(c, &finish);
    } else {
      choice["text"] = c.text;
    }
    choice["logprobs"] = ChoiceLogprobs(c);
    choice["finish_reason"] = finish;
    choices.push_back(std::move(choice));
  }
  return {{"id", id_},           {"object", kind_ == ApiKind::kChatCompletion ? "chat.completion" : "text_completion"},
          {"created", created_}, {"model", model_id_},
          {"choices", choices},  {"usage", Usage()}};
}

ResponseJson ResponseShaper::ChunkBase() const {
  ResponseJson chunk = {{"id", id_},
                        {"object", kind_ == ApiKind::kChatCompletion ? "chat.completion.chunk" : "text_completion"},
                        {"created", created_},
                        {"model", model_id_}};
  if (include_usage_) chunk["usage"] = nullptr;
  return chunk;
}

std::string ResponseShaper::Sse(const ResponseJson& chunk) { return "data: " + Dump(chunk) + "\n\n"; }

std::string ResponseShaper::StreamHead() const {
  if (kind_ != ApiKind::kChatCompletion) return "";
  std::string out;
  for (size_t i = 0; i < choices_.size(); ++i) {
    ResponseJson chunk = ChunkBase();
    chunk["choices"] = ResponseJson::array({{{"index", i},
                                             {"delta", {{"role", "assistant"}, {"content", ""}}},
                                             {"logprobs", nullptr},
                                             {"finish_reason", nullptr}}});
    out += Sse(chunk);
  }
  return out;
}

std::string ResponseShaper::StreamEvent(const runtime::ServingEvent& event) {
  if (event.choice < 0 || event.choice >= static_cast<int>(choices_.size())) return "";
  Choice& c = choices_[static_cast<size_t>(event.choice)];
  if (c.finished) return "";
  const bool chat = kind_ == ApiKind::kChatCompletion;
  const ResponseJson logprobs = Record(event);
  if (event.finished && (event.finish_reason == runtime::FinishReason::kError ||
                         event.finish_reason == runtime::FinishReason::kCancelled)) {
    return "";  // the caller ends the stream with failure()
  }
  std::string out;
  std::string finish = c.finish_reason;
  if (tools_active_) {
    // Text that may still become a call is held back; once it cannot, it goes out as content. A reply that ends as
    // calls goes out as tool_calls deltas: the id and name first, then the arguments in pieces.
    std::string text;
    const bool holding = c.streamed == 0 && runtime::MayBeToolCall(c.text);
    if (!holding) {
      text = c.text.substr(c.streamed);
      c.streamed = c.text.size();
    }
    if (event.finished && holding) {
      const ResponseJson message = Message(c, &finish);
      if (message.contains("tool_calls")) {
        const auto& calls = message["tool_calls"];
        for (size_t i = 0; i < calls.size(); ++i) {
          const std::string args = calls[i]["function"]["arguments"].get<std::string>();
          ResponseJson head = ChunkBase();
          head["choices"] = ResponseJson::array(
              {{{"index", event.choice},
                {"delta",
                 {{"tool_calls", ResponseJson::array(
                                     {{{"index", i},
                                       {"id", calls[i]["id"]},
                                       {"type", "function"},
                                       {"function", {{"name", calls[i]["function"]["name"]}, {"arguments", ""}}}}})}}},
                {"logprobs", nullptr},
                {"finish_reason", nullptr}}});
          out += Sse(head);
          for (size_t at = 0, len = 0; at < args.size(); at += len) {
            // Pieces of about 16 bytes that end on a character boundary: a piece holding part of a multi-byte
            // UTF-8 character would reach the client as U+FFFD, and the pieces would not add up to the arguments.
            len = std::min<size_t>(16, args.size() - at);
            while (at + len < args.size() && (static_cast<unsigned char>(args[at + len]) & 0xC0) == 0x80) ++len;
            ResponseJson piece = ChunkBase();
            piece["choices"] = ResponseJson::array(
                {{{"index", event.choice},
                  {"delta",
                   {{"tool_calls",
                     ResponseJson::array({{{"index", i}, {"function", {{"arguments", args.substr(at, len)}}}}})}}},
                  {"logprobs", nullptr},
                  {"finish_reason", nullptr}}});
            out += Sse(piece);
          }
        }
      } else {
        text = c.text;  // not calls after all (or calls that could not be read): the text is the content
        c.streamed = c.text.size();
      }
    }
    if (!text.empty()) {
      ResponseJson chunk = ChunkBase();
      chunk["choices"] = ResponseJson::array({{{"index", event.choice},
                                               {"delta", {{"content", text}}},
                                               {"logprobs", nullptr},
                                               {"finish_reason", nullptr}}});
      out += Sse(chunk);
    }
  }
  const bool has_content = !tools_active_ && (!event.text.empty() || !logprobs.is_null());
  if (has_content && (chat || !event.finished)) {
    ResponseJson chunk = ChunkBase();
    ResponseJson choice = {{"index", event.choice}};
    if (chat) {
      choice["delta"] = {{"content", event.text}};
    } else {
      choice["text"] = event.text;
    }
    choice["logprobs"] = logprobs;
    choice["finish_reason"] = nullptr;
    chunk["choices"] = ResponseJson::array({choice});
    out += Sse(chunk);
  }
  if (event.finished) {
    ResponseJson chunk = ChunkBase();
    ResponseJson choice = {{"index", event.choice}};
    if (chat) {
      choice["delta"] = ResponseJson::object();
      choice["logprobs"] = nullptr;
    } else {
      // A completion's last chunk carries its last text.
      choice["text"] = event.text;
      choice["logprobs"] = logprobs;
    }
    choice["finish_reason"] = finish;
    chunk["choices"] = ResponseJson::array({choice});
    out += Sse(chunk);
  }
  return out;
}

std::string ResponseShaper::StreamTail() const {
  std::string out;
  if (include_usage_) {
    ResponseJson chunk = ChunkBase();
    chunk["choices"] = ResponseJson::array();
    chunk["usage"] = Usage();
    out += Sse(chunk);
  }
  return out + "data: [DONE]\n\n";
}

std::string ResponseShaper::StreamError(const ApiError& error) { return Sse(error.ToJson()); }

}  // namespace herd::server
