// The OpenAI-compatible API at the edge of the server (style.md section 1: JSON stays in the HTTP layer): request
// bodies of /v1/chat/completions and /v1/completions parsed and validated into runtime::ServingRequest, every error
// in OpenAI's shape naming its parameter, and the engine's events shaped into OpenAI's responses (whole JSON bodies
// or Server-Sent Events chunks). Shapes follow OpenAI's API reference (chat.completion, chat.completion.chunk,
// text_completion); the extra fields top_k, min_p, repetition_penalty and ignore_eos are vLLM's and llama.cpp's.
// Nothing here does I/O or blocks: http_server.cpp drives it.
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "runtime/chat.h"
#include "runtime/guard.h"
#include "runtime/serving.h"
#include "runtime/structured.h"
#include "runtime/tools.h"
#include "tokenizer/tokenizer.h"
#include "vision/image.h"
#include "vision/preprocess.h"

namespace herd::server {

// What the server sends: JSON objects keep the order their members were added in (OpenAI's: id, object, ...).
using ResponseJson = nlohmann::ordered_json;

// An error as OpenAI reports it: HTTP status + {"error": {"message", "type", "param", "code"}}.
struct ApiError {
  int http_status = 400;
  std::string message;
  std::string type = "invalid_request_error";
  std::string param;  // empty: null
  std::string code;   // empty: null
  ResponseJson ToJson() const;
};
ApiError BadRequest(std::string message, std::string param = "", std::string code = "");
// 503 with type "server_error" (the caller adds Retry-After).
ApiError Unavailable(std::string message, std::string code);
// A failed ServingEngine::Submit: InvalidArgument -> 400, OutOfRange -> 400 "context_length_exceeded",
// Unavailable -> 503 "server_busy", anything else -> 500 "server_error".
ApiError FromSubmitStatus(const Status& s);

// Image input of a model with a vision tower: chat content parts {"type": "image_url", "image_url": {"url":
// "data:image/png;base64,..."}} (PNG or JPEG, inline only: the server fetches nothing).
struct ImageInput {
  int64_t tile_size = 0;         // the vision tower's tile side
  int64_t patches_per_tile = 0;  // <|patch|> tokens per tile
  vision::ImageTokenIds ids;     // the image tokens of the prompt layout
  int64_t max_tiles = 16;        // tiles per image at most (--max-tiles)
  int64_t max_images = 16;       // images per request at most (each is held decoded until it is encoded)
  vision::DecodeLimits limits;
  // Encodes a request's images (decoded, in prompt order) into its prompt's embeds (runtime::ImageEmbeds). Called
  // on the request's HTTP thread, so it must be thread-safe. InvalidArgument -> 400, other errors -> 500.
  std::function<Result<runtime::PromptEmbeds>(std::span<const vision::Image> images, std::span<const int32_t> prompt)>
      encode;
};

// What the API needs to know of the served model. The tokenizer must outlive every use of this struct.
struct ModelInfo {
  std::string id;                                   // the served name (--alias, else the model file's name)
  int64_t created = 0;                              // unix seconds, for /v1/models
  int64_t vocab_size = 0;                           // token ids must be below it (the model's rows)
  int64_t n_ctx = 0;                                // the longest sequence (prompt + generated)
  const tokenizer::Tokenizer* tokenizer = nullptr;  // not null
  std::optional<runtime::ChatFormat> chat_format;   // nullopt: no chat template, /v1/chat/completions refused
  std::vector<int32_t> chat_stop_ids;               // runtime::ChatStopIds of chat_format: end chat replies
  std::optional<ImageInput> images;                 // nullopt: image parts refused (400 "image_input_not_supported")
  std::string no_images_reason = "this model has no vision tower";  // that 400's message
  // Compiles a response format's grammar for this model (runtime::GrammarCache::Get); empty: structured output
  // refused (400).
  std::function<Result<std::shared_ptr<const grammar::CompiledGrammar>>(runtime::GrammarKind, std::string_view)>
      grammars;
  // Llama Guard screening (herd serve --guard): requests' last user message, and with guard_output the replies;
  // POST /v1/moderations. Null: none.
  std::shared_ptr<runtime::GuardClassifier> guard;
  runtime::GuardPromptOptions guard_options;
  bool guard_output = false;
  std::string guard_name;  // the guard model's file name, for /v1/moderations
};

enum class ApiKind { kChatCompletion, kCompletion };

// A validated request.
struct ApiRequest {
  ApiKind kind = ApiKind::kCompletion;
  runtime::ServingRequest serving;  // prompt tokens, limits, sampling (seed only when seed_given)
  bool seed_given = false;          // false: the caller picks a random seed
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  bool logprobs = false;       // report logprobs (serving.top_logprobs >= 0 then)
  // The chat's images, decoded, in prompt order; their token layouts are in serving.prompt, and the server fills
  // serving.embeds from them (ModelInfo::images->encode).
  std::vector<vision::Image> images;
  // Chat tool calling: the request's functions, and whether the reply may be calls (tool_choice other than "none").
  std::vector<runtime::ToolFunction> tools;
  bool tools_active = false;
  // What a guard judges: the last user message's text (chat) or the prompt's (completions).
  std::string judged_user_text;
};

// Parses a request body: a JSON object nested at most 64 levels (checked before parsing, so hostile nesting costs
// no recursion). 400 "invalid_json" for anything else.
std::optional<ApiError> ParseJsonBody(std::string_view text, nlohmann::json* out);

// Validates `body` for the endpoint of `kind` and fills *out. Defaults are OpenAI's (temperature 1, top_p 1, no
// top_k / min_p / penalties), max_tokens defaults to the rest of the context and is capped by it. Errors: 400
// naming the parameter (wrong type, out of range, unsupported feature, token id outside the vocabulary, an image
// part for a model without images ("image_input_not_supported"), a remote image URL ("image_url_not_supported"), an
// image that does not decode ("invalid_image"), prompt longer than the context with code
// "context_length_exceeded"), 404 "model_not_found" when "model" is given and is not model.id.
std::optional<ApiError> ParseGenerateRequest(const nlohmann::json& body, const ModelInfo& model, ApiKind kind,
                                             ApiRequest* out);

// Builds the responses of one request from the engine's events, for every choice. Not thread-safe: one handler
// thread owns it. Events must arrive in the engine's order per choice.
class ResponseShaper {
 public:
  // `id` is the response id ("chatcmpl-..." / "cmpl-..."), `created` unix seconds. Keeps what it needs of
  // `request` (not the reference) and model.tokenizer (which must outlive it).
  ResponseShaper(const ApiRequest& request, const ModelInfo& model, std::string id, int64_t created);

  // Records an event (text, logprobs, finish and usage of its choice).
  void Add(const runtime::ServingEvent& event);
  // Every choice finished (stop, length, cancelled or error).
  bool done() const { return n_open_ == 0; }
  int choices() const { return static_cast<int>(choices_.size()); }
  const std::string& ChoiceText(int choice) const { return choices_[static_cast<size_t>(choice)].text; }
  // Replaces a finished choice by a refusal: the text becomes `refusal`, finish_reason "content_filter".
  void Refuse(int choice, const std::string& refusal);
  // The whole response as one stream (head, the text of each choice, finish chunks, tail): streaming whose output is
  // held back until it is screened.
  std::string StreamWhole();
  // Set once a choice ended in error or was cancelled: what the client gets instead of a response (500 with the
  // engine's message; 503 "shutting_down" for a cancellation, which only a shutdown reports to a live client).
  const std::optional<ApiError>& failure() const { return failure_; }

  // Non-streaming: the whole response (chat.completion or text_completion) once done() without failure().
  ResponseJson Body() const;

  // Streaming, as Server-Sent Events ("data: <json>\n\n"): the head (chat: one chunk per choice with the role),
  // the chunks of an event (Add() + its text, logprobs and finish chunk; may be empty), the tail (the usage
  // chunk when include_usage, then "data: [DONE]"), and an error event (OpenAI clients raise it).
  std::string StreamHead() const;
  std::string StreamEvent(const runtime::ServingEvent& event);
  std::string StreamTail() const;
  static std::string StreamError(const ApiError& error);

  static std::string Sse(const ResponseJson& chunk);

 private:
  struct Choice {
    std::string text;
    ResponseJson logprobs_content = ResponseJson::array();  // chat: logprobs.content entries
    ResponseJson tokens = ResponseJson::array();            // completions: logprobs.tokens ...
    ResponseJson token_logprobs = ResponseJson::array();
    ResponseJson top_logprobs = ResponseJson::array();
    ResponseJson text_offset = ResponseJson::array();
    int64_t token_bytes = 0;  // bytes of the tokens so far (completions text_offset)
    bool finished = false;
    std::string finish_reason;
    int64_t completion_tokens = 0;
    bool refused = false;
    size_t streamed = 0;  // bytes of text already sent as content (tool calling holds text back while it may be a call)
  };
  // The message of a finished chat choice: content, or tool_calls when the reply is calls.
  ResponseJson Message(const Choice& c, std::string* finish_reason) const;
  std::string ToolCallId(size_t i) const;
  // Add(), returning the event's logprobs in the endpoint's chunk shape (null when none).
  ResponseJson Record(const runtime::ServingEvent& event);
  ResponseJson ChunkBase() const;
  ResponseJson LogprobsOf(const runtime::ServingEvent& event, Choice& choice) const;
  ResponseJson ChoiceLogprobs(const Choice& choice) const;
  ResponseJson Usage() const;
  std::string TokenText(int32_t id) const;

  ApiKind kind_;
  bool include_usage_, logprobs_;
  std::string model_id_;
  const tokenizer::Tokenizer* tokenizer_;
  std::string id_;
  int64_t created_;
  std::vector<Choice> choices_;
  int n_open_;
  int64_t prompt_tokens_;
  std::optional<int64_t> cached_tokens_;
  std::optional<ApiError> failure_;
  std::vector<runtime::ToolFunction> tools_;
  bool tools_active_ = false;
};

// "chatcmpl-" / "cmpl-" followed by 24 random letters and digits.
std::string NewResponseId(ApiKind kind);

// JSON text with invalid UTF-8 replaced by U+FFFD (token pieces may be partial characters).
std::string Dump(const ResponseJson& j);

}  // namespace herd::server
