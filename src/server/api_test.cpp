// Request parsing and validation, and response shaping, of the OpenAI API (server/api.h), on a byte-level fake
// tokenizer with Llama 4's chat tokens: every parameter's mapping onto runtime::ServingRequest, every error with
// its status, type, param and code, and the shapes of whole responses and stream chunks.
#include "server/api.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/base64.h"
#include "core/file.h"
#include "server/test_fakes.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"

namespace herd::server {
namespace {

using nlohmann::json;
using testing::FakeTokenizer;

class ApiTest : public ::testing::Test {
 protected:
  ApiTest() {
    model_.id = "tiny";
    model_.vocab_size = FakeTokenizer::kVocab;
    model_.n_ctx = 64;
    model_.tokenizer = &tok_;
    model_.chat_format = runtime::ChatFormat::kLlama4;
    model_.chat_stop_ids = runtime::ChatStopIds(tok_, runtime::ChatFormat::kLlama4);
  }

  // Parses `body` (JSON text) for `kind`; the error, if any.
  std::optional<ApiError> Parse(const std::string& body, ApiKind kind = ApiKind::kCompletion) {
    json j;
    if (auto e = ParseJsonBody(body, &j)) return e;
    return ParseGenerateRequest(j, model_, kind, &req_);
  }
  std::optional<ApiError> Chat(const std::string& body) { return Parse(body, ApiKind::kChatCompletion); }

  // Expects a 400 naming `param`.
  void ExpectBad(const std::string& body, const std::string& param, ApiKind kind = ApiKind::kCompletion) {
    auto e = Parse(body, kind);
    ASSERT_TRUE(e.has_value()) << body;
    EXPECT_EQ(e->http_status, 400) << body;
    EXPECT_EQ(e->type, "invalid_request_error") << body;
    EXPECT_EQ(e->param, param) << body << ": " << e->message;
  }

  FakeTokenizer tok_;
  ModelInfo model_;
  ApiRequest req_;
};

std::vector<int32_t> Bytes(const std::string& s, bool bos = true) {
  std::vector<int32_t> ids;
  if (bos) ids.push_back(FakeTokenizer::kBos);
  for (unsigned char c : s) ids.push_back(c);
  return ids;
}

TEST_F(ApiTest, CompletionPromptForms) {
  ASSERT_FALSE(Parse(R"({"prompt": "hi"})"));
  EXPECT_EQ(req_.serving.prompt, Bytes("hi"));
  ASSERT_FALSE(Parse(R"({"prompt": ["hi"]})"));
  EXPECT_EQ(req_.serving.prompt, Bytes("hi"));
  ASSERT_FALSE(Parse(R"({"prompt": [1, 2, 261]})"));
  EXPECT_EQ(req_.serving.prompt, (std::vector<int32_t>{1, 2, 261}));
  ASSERT_FALSE(Parse(R"({"prompt": [[7, 8.0]]})"));
  EXPECT_EQ(req_.serving.prompt, (std::vector<int32_t>{7, 8}));
  // Special-token text in a prompt string is plain text.
  ASSERT_FALSE(Parse(R"({"prompt": "<|eot|>"})"));
  EXPECT_EQ(req_.serving.prompt, Bytes("<|eot|>"));
}

TEST_F(ApiTest, CompletionPromptErrors) {
  ExpectBad(R"({})", "prompt");
  ExpectBad(R"({"prompt": null})", "prompt");
  ExpectBad(R"({"prompt": 5})", "prompt");
  ExpectBad(R"({"prompt": []})", "prompt");
  ExpectBad(R"({"prompt": [[]]})", "prompt");
  ExpectBad(R"({"prompt": ["a", "b"]})", "prompt");
  ExpectBad(R"({"prompt": [[1], [2]]})", "prompt");
  ExpectBad(R"({"prompt": [1, 262]})", "prompt");  // outside the vocabulary
  ExpectBad(R"({"prompt": [-1]})", "prompt");
  ExpectBad(R"({"prompt": [1.5]})", "prompt[0]");
  ExpectBad(R"({"prompt": [1, "a"]})", "prompt[1]");
  auto e = Parse(R"({"prompt": [5, 99999]})");
  ASSERT_TRUE(e);
  EXPECT_NE(e->message.find("99999"), std::string::npos) << e->message;
  EXPECT_NE(e->message.find("outside the vocabulary"), std::string::npos) << e->message;
}

TEST_F(ApiTest, ChatRendersWithTheTemplate) {
  model_.n_ctx = 512;  // one token per byte
  ASSERT_FALSE(Chat(R"({"messages": [{"role": "system", "content": "be brief"},
                                      {"role": "user", "content": [{"type": "text", "text": "he"},
                                                                   {"type": "text", "text": "llo"}]},
                                      {"role": "assistant", "content": null},
                                      {"role": "tool", "content": "42"}]})"));
  const std::vector<runtime::ChatMessage> messages = {
      {"system", "be brief"}, {"user", "hello"}, {"assistant", ""}, {"tool", "42"}};
  auto want = runtime::RenderChat(tok_, runtime::ChatFormat::kLlama4, messages, true, true);
  ASSERT_TRUE(want.ok());
  EXPECT_EQ(req_.serving.prompt, *want);
  EXPECT_EQ(req_.kind, ApiKind::kChatCompletion);
  // "developer" is OpenAI's newer name for system.
  ASSERT_FALSE(Chat(R"({"messages": [{"role": "developer", "content": "be brief"}]})"));
  auto sys = runtime::RenderChat(tok_, runtime::ChatFormat::kLlama4,
                                 std::vector<runtime::ChatMessage>{{"system", "be brief"}}, true, true);
  EXPECT_EQ(req_.serving.prompt, *sys);
}

TEST_F(ApiTest, ChatErrors) {
  const auto chat = ApiKind::kChatCompletion;
  ExpectBad(R"({})", "messages", chat);
  ExpectBad(R"({"messages": []})", "messages", chat);
  ExpectBad(R"({"messages": "hi"})", "messages", chat);
  ExpectBad(R"({"messages": [5]})", "messages[0]", chat);
  ExpectBad(R"({"messages": [{"content": "x"}]})", "messages[0].role", chat);
  ExpectBad(R"({"messages": [{"role": "wizard", "content": "x"}]})", "messages[0].role", chat);
  ExpectBad(R"({"messages": [{"role": "user", "content": null}]})", "messages[0].content", chat);
  ExpectBad(R"({"messages": [{"role": "user", "content": 3}]})", "messages[0].content", chat);
  ExpectBad(R"({"messages": [{"role": "user", "content": [{"type": "audio"}]}]})", "messages[0].content[0].type", chat);
  ExpectBad(R"({"messages": [{"role": "user", "content": [{"type": "text"}]}]})", "messages[0].content[0].text", chat);
  auto e = Chat(R"({"messages": [{"role": "user", "content": [{"type": "text", "text": "what is this"},
               {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]})");
  ASSERT_TRUE(e);
  EXPECT_EQ(e->http_status, 400);
  EXPECT_EQ(e->message, "this model has no vision tower: image input is not supported");
  EXPECT_EQ(e->param, "messages[0].content[1].type");
  EXPECT_EQ(e->code, "image_input_not_supported");
  // A model without chat tokens refuses chat.
  model_.chat_format.reset();
  ExpectBad(R"({"messages": [{"role": "user", "content": "x"}]})", "messages", chat);
}

// Image parts: data: URLs of PNG or JPEG, decoded, each laid out where its part stands between the texts; remote
// URLs, other encodings, broken images, too many images and images past the context are refused by name.
TEST_F(ApiTest, ChatImages) {
  ImageInput in;
  in.tile_size = 48;
  in.patches_per_tile = 9;
  in.ids = {200, 201, 202, 203, 204, 205};
  in.max_tiles = 4;
  model_.images = in;
  model_.n_ctx = 256;
  auto png = ReadFileToString(herd::testing::SharedPath("fixtures/llama4-tiny-vision/image_a_80x40.png"), 1 << 20);
  ASSERT_TRUE(png.ok());
  const std::string url = "data:image/png;base64," + EncodeBase64(*png);
  auto body = [](const std::string& image_part) {
    return R"({"messages": [{"role": "user", "content": [{"type": "text", "text": "ab"}, )" + image_part +
           R"(, {"type": "text", "text": "c"}]}]})";
  };
  ASSERT_FALSE(Chat(body(R"({"type": "image_url", "image_url": {"url": ")" + url + R"(", "detail": "auto"}})")));
  ASSERT_EQ(req_.images.size(), 1u);
  EXPECT_EQ(req_.images[0].width, 80);
  EXPECT_EQ(req_.images[0].height, 40);
  // The user turn: "ab", the image's layout (80x40 in 48-pixel tiles: 1x2 and the global view), "c".
  const std::vector<int32_t> layout = vision::ImageTokens(vision::TileGrid{1, 2}, 9, in.ids);
  std::vector<int32_t> turn = Bytes("ab", false);
  turn.insert(turn.end(), layout.begin(), layout.end());
  turn.push_back('c');
  const std::vector<int32_t>& prompt = req_.serving.prompt;
  EXPECT_NE(std::search(prompt.begin(), prompt.end(), turn.begin(), turn.end()), prompt.end());
  // A bare string url is taken too.
  req_ = {};
  ASSERT_FALSE(Chat(body(R"({"type": "image_url", "image_url": ")" + url + R"("})")));
  EXPECT_EQ(req_.images.size(), 1u);

  struct Bad {
    std::string part, param, code;
  };
  const std::string at = "messages[0].content[1]";
  for (const Bad& b : std::vector<Bad>{
           {R"({"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}})", at + ".image_url.url",
            "image_url_not_supported"},
           {R"({"type": "image_url", "image_url": {"url": "file:///etc/passwd"}})", at + ".image_url.url",
            "image_url_not_supported"},
           {R"({"type": "image_url", "image_url": {"url": "data:image/png,abc"}})", at + ".image_url.url", ""},
           {R"({"type": "image_url", "image_url": {"url": "data:image/png;base64,@@@@"}})", at + ".image_url.url", ""},
           {R"({"type": "image_url", "image_url": {"url": "data:image/png;base64,aGVyZA=="}})", at + ".image_url.url",
            "invalid_image"},
           {R"({"type": "image_url", "image_url": {"url": "data:image/png;base64,)" +
                EncodeBase64(png->substr(0, png->size() / 2)) + R"("}})",
            at + ".image_url.url", "invalid_image"},
           {R"({"type": "image_url", "image_url": {}})", at + ".image_url.url", ""},
           {R"({"type": "image_url", "image_url": 7})", at + ".image_url", ""},
           {R"({"type": "image_url"})", at + ".image_url", ""},
           {R"({"type": "input_image", "image_url": "x"})", at + ".type", ""},
       }) {
    SCOPED_TRACE(b.part.substr(0, 120));
    req_ = {};
    auto e = Chat(body(b.part));
    ASSERT_TRUE(e);
    EXPECT_EQ(e->http_status, 400);
    EXPECT_EQ(e->param, b.param) << e->message;
    EXPECT_EQ(e->code, b.code) << e->message;
  }
  // At most max_images; the images' tokens are counted against the context before more are decoded.
  const std::string part = R"({"type": "image_url", "image_url": {"url": ")" + url + R"("}})";
  model_.images->max_images = 2;
  auto three = Chat(body(part + ", " + part + ", " + part));
  ASSERT_TRUE(three);
  EXPECT_EQ(three->param, "messages[0].content[3]") << three->message;
  model_.n_ctx = 64;
  auto two = Chat(body(part + ", " + part));
  ASSERT_TRUE(two);
  EXPECT_EQ(two->code, "context_length_exceeded") << two->message;
  EXPECT_EQ(two->param, "messages[0].content[2]") << two->message;
}

TEST_F(ApiTest, OpenAiDefaults) {
  ASSERT_FALSE(Parse(R"({"prompt": "hi"})"));
  const runtime::ServingRequest& r = req_.serving;
  EXPECT_EQ(r.sampling.temperature, 1.0f);
  EXPECT_EQ(r.sampling.top_p, 1.0f);
  EXPECT_EQ(r.sampling.top_k, 0);
  EXPECT_EQ(r.sampling.min_p, 0.0f);
  EXPECT_EQ(r.sampling.repeat_penalty, 1.0f);
  EXPECT_EQ(r.frequency_penalty, 0.0f);
  EXPECT_EQ(r.presence_penalty, 0.0f);
  EXPECT_EQ(r.max_tokens, 64 - 3);  // the rest of the context
  EXPECT_EQ(r.n, 1);
  EXPECT_EQ(r.top_logprobs, -1);
  EXPECT_FALSE(r.ignore_eos);
  EXPECT_TRUE(r.stop_strings.empty());
  EXPECT_TRUE(r.stop_ids.empty());  // completions stop at the model's own end tokens only
  EXPECT_TRUE(r.logit_bias.empty());
  EXPECT_FALSE(req_.seed_given);
  EXPECT_FALSE(req_.stream);
  EXPECT_FALSE(req_.include_usage);
  EXPECT_FALSE(req_.logprobs);
}

TEST_F(ApiTest, ParametersMapOntoTheServingRequest) {
  ASSERT_FALSE(Parse(R"({"model": "tiny", "prompt": "hi", "max_tokens": 5, "temperature": 0, "top_p": 0.5,
                        "top_k": 7, "min_p": 0.1, "frequency_penalty": 0.5, "presence_penalty": -1.5,
                        "repetition_penalty": 1.3, "logit_bias": {"65": -100, "10": 2.5}, "seed": 42,
                        "stop": ["\n", "", "end"], "n": 3, "stream": true,
                        "stream_options": {"include_usage": true}, "logprobs": 4, "ignore_eos": true,
                        "user": "u1", "some_future_field": {"x": 1}})"));
  const runtime::ServingRequest& r = req_.serving;
  EXPECT_EQ(r.max_tokens, 5);
  EXPECT_EQ(r.sampling.temperature, 0.0f);
  EXPECT_EQ(r.sampling.top_p, 0.5f);
  EXPECT_EQ(r.sampling.top_k, 7);
  EXPECT_FLOAT_EQ(r.sampling.min_p, 0.1f);
  EXPECT_EQ(r.frequency_penalty, 0.5f);
  EXPECT_EQ(r.presence_penalty, -1.5f);
  EXPECT_FLOAT_EQ(r.sampling.repeat_penalty, 1.3f);
  EXPECT_EQ(r.logit_bias, (std::vector<std::pair<int32_t, float>>{{10, 2.5f}, {65, -100.0f}}));
  EXPECT_TRUE(req_.seed_given);
  EXPECT_EQ(r.sampling.seed, 42u);
  EXPECT_EQ(r.stop_strings, (std::vector<std::string>{"\n", "end"}));
  EXPECT_EQ(r.n, 3);
  EXPECT_TRUE(req_.stream);
  EXPECT_TRUE(req_.include_usage);
  EXPECT_TRUE(req_.logprobs);
  EXPECT_EQ(r.top_logprobs, 4);
  EXPECT_TRUE(r.ignore_eos);

  ASSERT_FALSE(Parse(R"({"prompt": "hi", "stop": "x", "seed": -1, "top_k": -1, "max_tokens": 1000})"));
  EXPECT_EQ(req_.serving.stop_strings, std::vector<std::string>{"x"});
  EXPECT_EQ(req_.serving.sampling.seed, UINT64_MAX);
  EXPECT_EQ(req_.serving.sampling.top_k, 0);   // vLLM's -1: off
  EXPECT_EQ(req_.serving.max_tokens, 64 - 3);  // capped by the context
  ASSERT_FALSE(Parse(R"({"prompt": "hi", "top_p": 0})"));
  EXPECT_EQ(req_.serving.sampling.top_k, 1);  // top_p -> 0 keeps the most likely token alone
  EXPECT_EQ(req_.serving.sampling.top_p, 1.0f);
  ASSERT_FALSE(Parse(R"({"prompt": "hi", "logprobs": 0})"));
  EXPECT_TRUE(req_.logprobs);
  EXPECT_EQ(req_.serving.top_logprobs, 0);
}

TEST_F(ApiTest, ChatParameters) {
  ASSERT_FALSE(Chat(R"({"messages": [{"role": "user", "content": "x"}], "max_tokens": 9,
                        "max_completion_tokens": 4, "logprobs": true, "top_logprobs": 3})"));
  EXPECT_EQ(req_.serving.max_tokens, 4);  // max_completion_tokens wins
  EXPECT_EQ(req_.serving.stop_ids, runtime::ChatStopIds(tok_, runtime::ChatFormat::kLlama4));  // end of turn
  EXPECT_TRUE(req_.logprobs);
  EXPECT_EQ(req_.serving.top_logprobs, 3);
  ASSERT_FALSE(Chat(R"({"messages": [{"role": "user", "content": "x"}], "logprobs": true})"));
  EXPECT_EQ(req_.serving.top_logprobs, 0);
  ASSERT_FALSE(Chat(R"({"messages": [{"role": "user", "content": "x"}], "logprobs": false, "tools": [],
                        "response_format": {"type": "text"}})"));
  EXPECT_EQ(req_.serving.top_logprobs, -1);
}

TEST_F(ApiTest, WrongTypesAndRangesNameTheParameter) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"("temperature": "hot")", "temperature"},
      {R"("temperature": 2.5)", "temperature"},
      {R"("temperature": -0.1)", "temperature"},
      {R"("top_p": 1.5)", "top_p"},
      {R"("top_k": -2)", "top_k"},
      {R"("top_k": 2.5)", "top_k"},
      {R"("min_p": 2)", "min_p"},
      {R"("frequency_penalty": 3)", "frequency_penalty"},
      {R"("presence_penalty": -2.5)", "presence_penalty"},
      {R"("repetition_penalty": 0)", "repetition_penalty"},
      {R"("max_tokens": 0)", "max_tokens"},
      {R"("max_tokens": "many")", "max_tokens"},
      {R"("max_tokens": 1e12)", "max_tokens"},
      {R"("n": 0)", "n"},
      {R"("n": 129)", "n"},
      {R"("n": true)", "n"},
      {R"("stop": ["a", "b", "c", "d", "e"])", "stop"},
      {R"("stop": [1])", "stop"},
      {R"("stop": {"a": 1})", "stop"},
      {R"("logit_bias": [1])", "logit_bias"},
      {R"("logit_bias": {"abc": 1})", "logit_bias"},
      {R"("logit_bias": {"262": 1})", "logit_bias"},
      {R"("logit_bias": {"-1": 1})", "logit_bias"},
      {R"("logit_bias": {"5": 101})", "logit_bias"},
      {R"("logit_bias": {"5": "x"})", "logit_bias"},
      {R"("seed": "x")", "seed"},
      {R"("seed": 1.5)", "seed"},
      {R"("stream": "yes")", "stream"},
      {R"("stream_options": 1)", "stream_options"},
      {R"("stream_options": {"include_usage": 1})", "stream_options.include_usage"},
      {R"("logprobs": 21)", "logprobs"},
      {R"("logprobs": true)", "logprobs"},
      {R"("ignore_eos": 1)", "ignore_eos"},
      {R"("user": 5)", "user"},
      {R"("echo": true)", "echo"},
      {R"("suffix": "x")", "suffix"},
      {R"("best_of": 3)", "best_of"},
      {R"("model": 5)", "model"},
      {R"("response_format": {"type": "json_object"})", "response_format"},
  };
  for (const auto& [field, param] : cases) ExpectBad(R"({"prompt": "hi", )" + field + "}", param);
  const std::string msg = R"({"messages": [{"role": "user", "content": "x"}], )";
  ExpectBad(msg + R"("logprobs": 3})", "logprobs", ApiKind::kChatCompletion);
  ExpectBad(msg + R"("top_logprobs": 21, "logprobs": true})", "top_logprobs", ApiKind::kChatCompletion);
  ExpectBad(msg + R"("top_logprobs": 2})", "top_logprobs", ApiKind::kChatCompletion);
  ExpectBad(msg + R"("max_completion_tokens": -1})", "max_completion_tokens", ApiKind::kChatCompletion);
  ExpectBad(msg + R"("tools": [{"type": "function"}]})", "tools[0]", ApiKind::kChatCompletion);
  ExpectBad(msg + R"("tools": {"type": "function"}})", "tools", ApiKind::kChatCompletion);
  ExpectBad(msg + R"("tool_choice": "required"})", "tool_choice", ApiKind::kChatCompletion);
  ExpectBad(R"({"prompt": "hi", "tools": []})", "tools");
  auto e = Parse(R"({"prompt": "hi", "temperature": 3})");
  ASSERT_TRUE(e);
  EXPECT_EQ(e->message, "'temperature' must be from 0 to 2, got 3");
}

TEST_F(ApiTest, UnknownModelIs404) {
  auto e = Parse(R"({"model": "gpt-4", "prompt": "hi"})");
  ASSERT_TRUE(e);
  EXPECT_EQ(e->http_status, 404);
  EXPECT_EQ(e->code, "model_not_found");
  EXPECT_EQ(e->param, "model");
  EXPECT_FALSE(Parse(R"({"model": "tiny", "prompt": "hi"})"));
  EXPECT_FALSE(Parse(R"({"model": null, "prompt": "hi"})"));
}

TEST_F(ApiTest, PromptLongerThanTheContext) {
  auto e = Parse(R"({"prompt": ")" + std::string(63, 'x') + R"("})");  // BOS + 63 = 64: no room for a token
  ASSERT_TRUE(e);
  EXPECT_EQ(e->http_status, 400);
  EXPECT_EQ(e->code, "context_length_exceeded");
  EXPECT_NE(e->message.find("maximum context length is 64 tokens"), std::string::npos) << e->message;
  EXPECT_NE(e->message.find("64 tokens"), std::string::npos);
  ASSERT_FALSE(Parse(R"({"prompt": ")" + std::string(62, 'x') + R"("})"));
  EXPECT_EQ(req_.serving.max_tokens, 1);
}

TEST_F(ApiTest, MalformedBodies) {
  json j;
  for (const std::string bad : {"", "{", "{\"prompt\": }", "nul", "{\"a\": 1} x", "\xff\xfe"}) {
    auto e = ParseJsonBody(bad, &j);
    ASSERT_TRUE(e) << bad;
    EXPECT_EQ(e->http_status, 400);
    EXPECT_EQ(e->type, "invalid_request_error");
    EXPECT_EQ(e->code, "invalid_json");
  }
  for (const std::string not_object : {"[]", "5", "\"x\"", "null"}) {
    auto e = ParseJsonBody(not_object, &j);
    ASSERT_TRUE(e) << not_object;
    EXPECT_NE(e->message.find("must be a JSON object"), std::string::npos);
  }
  // Deep nesting is refused before parsing (no recursion to exhaust); brackets inside strings do not count.
  EXPECT_TRUE(ParseJsonBody(std::string(100000, '['), &j));
  EXPECT_TRUE(ParseJsonBody("{\"a\":" + std::string(70, '[') + std::string(70, ']') + "}", &j));
  EXPECT_FALSE(ParseJsonBody("{\"a\": \"" + std::string(1000, '[') + "\\\"\"}", &j));
  EXPECT_FALSE(ParseJsonBody("{\"a\":" + std::string(60, '[') + std::string(60, ']') + "}", &j));
}

TEST_F(ApiTest, SubmitStatusMapping) {
  ApiError e = FromSubmitStatus(InvalidArgument("n must be >= 1"));
  EXPECT_EQ(e.http_status, 400);
  EXPECT_EQ(e.type, "invalid_request_error");
  e = FromSubmitStatus(OutOfRange("prompt too long"));
  EXPECT_EQ(e.http_status, 400);
  EXPECT_EQ(e.code, "context_length_exceeded");
  e = FromSubmitStatus(Status(StatusCode::kUnavailable, "queue full"));
  EXPECT_EQ(e.http_status, 503);
  EXPECT_EQ(e.type, "server_error");
  e = FromSubmitStatus(Internal("bug"));
  EXPECT_EQ(e.http_status, 500);
  EXPECT_EQ(e.type, "server_error");
  e = FromSubmitStatus(ResourceExhausted("no memory"));
  EXPECT_EQ(e.http_status, 500);
  const ResponseJson j = BadRequest("m", "p", "c").ToJson();
  EXPECT_EQ(j, ResponseJson::parse(R"({"error": {"message": "m", "type": "invalid_request_error", "param": "p",
                                          "code": "c"}})"));
  EXPECT_EQ(BadRequest("m").ToJson()["error"]["param"], nullptr);
  EXPECT_EQ(BadRequest("m").ToJson()["error"]["code"], nullptr);
}

// Events of a request from the fake engine's default script.
std::vector<runtime::ServingEvent> Events(const ApiRequest& r) { return testing::DefaultScript(r.serving); }

std::vector<json> SseChunks(const std::string& sse, bool* done) {
  std::vector<json> chunks;
  *done = false;
  size_t at = 0;
  while (at < sse.size()) {
    const size_t end = sse.find("\n\n", at);
    EXPECT_NE(end, std::string::npos) << "an SSE event must end with a blank line";
    if (end == std::string::npos) break;
    const std::string event = sse.substr(at, end - at);
    EXPECT_EQ(event.rfind("data: ", 0), 0u) << event;
    const std::string data = event.substr(6);
    if (data == "[DONE]") {
      *done = true;
    } else {
      EXPECT_FALSE(*done) << "data after [DONE]";
      chunks.push_back(json::parse(data));
    }
    at = end + 2;
  }
  return chunks;
}

TEST_F(ApiTest, ChatBodyShape) {
  ASSERT_FALSE(Chat(R"({"messages": [{"role": "user", "content": "x"}], "max_tokens": 3, "n": 2})"));
  ResponseShaper shaper(req_, model_, "chatcmpl-abc", 1700000000);
  for (const auto& e : Events(req_)) {
    EXPECT_FALSE(shaper.done());
    shaper.Add(e);
  }
  EXPECT_TRUE(shaper.done());
  EXPECT_FALSE(shaper.failure());
  const ResponseJson body = shaper.Body();
  const int64_t n_prompt = static_cast<int64_t>(req_.serving.prompt.size());
  const ResponseJson want = {{"id", "chatcmpl-abc"},
                             {"object", "chat.completion"},
                             {"created", 1700000000},
                             {"model", "tiny"},
                             {"choices",
                              {{{"index", 0},
                                {"message", {{"role", "assistant"}, {"content", "aaa"}, {"refusal", nullptr}}},
                                {"logprobs", nullptr},
                                {"finish_reason", "length"}},
                               {{"index", 1},
                                {"message", {{"role", "assistant"}, {"content", "bbb"}, {"refusal", nullptr}}},
                                {"logprobs", nullptr},
                                {"finish_reason", "length"}}}},
                             {"usage",
                              {{"prompt_tokens", n_prompt},
                               {"completion_tokens", 6},
                               {"total_tokens", n_prompt + 6},
                               {"prompt_tokens_details", {{"cached_tokens", 2}}}}}};
  EXPECT_EQ(body, want) << body.dump(2);
}

TEST_F(ApiTest, CompletionBodyWithLogprobs) {
  ASSERT_FALSE(Parse(R"({"prompt": "x", "max_tokens": 2, "logprobs": 2})"));
  ResponseShaper shaper(req_, model_, "cmpl-x", 1);
  for (const auto& e : Events(req_)) shaper.Add(e);
  const ResponseJson body = shaper.Body();
  EXPECT_EQ(body["object"], "text_completion");
  const ResponseJson& c = body["choices"][0];
  EXPECT_EQ(c["text"], "aa");
  EXPECT_EQ(c["finish_reason"], "length");
  const ResponseJson want_lp = {{"tokens", {"a", "a"}},
                                {"token_logprobs", {-0.25, -0.25}},
                                {"top_logprobs", {{{"a", -0.25}, {"b", -1.25}}, {{"a", -0.25}, {"b", -1.25}}}},
                                {"text_offset", {0, 1}}};
  EXPECT_EQ(c["logprobs"], want_lp) << c["logprobs"].dump();
}

TEST_F(ApiTest, ChatLogprobsShape) {
  ASSERT_FALSE(Chat(R"({"messages": [{"role": "user", "content": "x"}], "max_tokens": 1, "logprobs": true,
                        "top_logprobs": 2})"));
  ResponseShaper shaper(req_, model_, "chatcmpl-x", 1);
  for (const auto& e : Events(req_)) shaper.Add(e);
  const ResponseJson lp = shaper.Body()["choices"][0]["logprobs"];
  const ResponseJson want = {{"content",
                              {{{"token", "a"},
                                {"logprob", -0.25},
                                {"bytes", {97}},
                                {"top_logprobs",
                                 {{{"token", "a"}, {"logprob", -0.25}, {"bytes", {97}}},
                                  {{"token", "b"}, {"logprob", -1.25}, {"bytes", {98}}}}}}}},
                             {"refusal", nullptr}};
  EXPECT_EQ(lp, want) << lp.dump();
}

TEST_F(ApiTest, ChatStreamChunks) {
  ASSERT_FALSE(Chat(R"({"messages": [{"role": "user", "content": "x"}], "max_tokens": 2, "n": 2, "stream": true,
                        "stream_options": {"include_usage": true}})"));
  ResponseShaper shaper(req_, model_, "chatcmpl-s", 5);
  std::string sse = shaper.StreamHead();
  for (const auto& e : Events(req_)) sse += shaper.StreamEvent(e);
  EXPECT_TRUE(shaper.done());
  sse += shaper.StreamTail();
  bool done = false;
  const std::vector<json> chunks = SseChunks(sse, &done);
  EXPECT_TRUE(done);
  // Role chunks, 2 content chunks per choice, a finish chunk per choice, the usage chunk.
  ASSERT_EQ(chunks.size(), 2u + 4u + 2u + 1u) << sse;
  std::string text[2];
  int finishes = 0;
  for (size_t i = 0; i + 1 < chunks.size(); ++i) {
    const json& c = chunks[i];
    EXPECT_EQ(c["id"], "chatcmpl-s");
    EXPECT_EQ(c["object"], "chat.completion.chunk");
    EXPECT_EQ(c["created"], 5);
    EXPECT_EQ(c["model"], "tiny");
    EXPECT_TRUE(c.contains("usage") && c["usage"].is_null());  // include_usage: null until the last chunk
    ASSERT_EQ(c["choices"].size(), 1u);
    const json& ch = c["choices"][0];
    const int idx = ch["index"].get<int>();
    if (i < 2) {
      EXPECT_EQ(ch["delta"], json({{"role", "assistant"}, {"content", ""}}));
      EXPECT_EQ(idx, static_cast<int>(i));
    }
    if (ch["delta"].contains("content")) text[idx] += ch["delta"]["content"].get<std::string>();
    if (!ch["finish_reason"].is_null()) {
      EXPECT_EQ(ch["finish_reason"], "length");
      EXPECT_EQ(ch["delta"], json::object());
      ++finishes;
    }
  }
  EXPECT_EQ(text[0], "aa");
  EXPECT_EQ(text[1], "bb");
  EXPECT_EQ(finishes, 2);
  const json& usage = chunks.back();
  EXPECT_EQ(usage["choices"], json::array());
  EXPECT_EQ(usage["usage"]["completion_tokens"], 4);
  EXPECT_EQ(usage["usage"]["prompt_tokens"], req_.serving.prompt.size());
  EXPECT_EQ(usage["usage"]["prompt_tokens_details"]["cached_tokens"], 2);
}

TEST_F(ApiTest, CompletionStreamChunksWithoutUsage) {
  ASSERT_FALSE(Parse(R"({"prompt": "x", "max_tokens": 3, "stream": true, "logprobs": 0})"));
  ResponseShaper shaper(req_, model_, "cmpl-s", 5);
  std::string sse = shaper.StreamHead();
  EXPECT_EQ(sse, "");
  for (const auto& e : Events(req_)) sse += shaper.StreamEvent(e);
  sse += shaper.StreamTail();
  bool done = false;
  const std::vector<json> chunks = SseChunks(sse, &done);
  EXPECT_TRUE(done);
  ASSERT_EQ(chunks.size(), 3u) << sse;  // the last text rides with the finish_reason
  std::string text;
  for (size_t i = 0; i < chunks.size(); ++i) {
    const json& ch = chunks[i]["choices"][0];
    EXPECT_EQ(chunks[i]["object"], "text_completion");
    EXPECT_FALSE(chunks[i].contains("usage"));
    text += ch["text"].get<std::string>();
    EXPECT_EQ(ch["logprobs"]["tokens"], json::array({"a"}));
    EXPECT_EQ(ch["logprobs"]["text_offset"], json::array({i}));
    EXPECT_EQ(ch["finish_reason"], i + 1 == chunks.size() ? json("length") : json(nullptr));
  }
  EXPECT_EQ(text, "aaa");
}

TEST_F(ApiTest, StopAndFinishReasons) {
  ASSERT_FALSE(Parse(R"({"prompt": "x", "n": 2})"));
  ResponseShaper shaper(req_, model_, "cmpl-r", 5);
  runtime::ServingEvent a;
  a.choice = 0;
  a.text = "hello";
  a.finished = true;
  a.finish_reason = runtime::FinishReason::kStop;  // an end-of-turn token or a stop string
  a.completion_tokens = 2;
  runtime::ServingEvent b = a;
  b.choice = 1;
  b.finish_reason = runtime::FinishReason::kLength;
  shaper.Add(a);
  shaper.Add(b);
  const ResponseJson body = shaper.Body();
  EXPECT_EQ(body["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(body["choices"][1]["finish_reason"], "length");
  EXPECT_EQ(body["usage"]["completion_tokens"], 4);
}

TEST_F(ApiTest, ErrorsAndCancellationsBecomeFailures) {
  ASSERT_FALSE(Parse(R"({"prompt": "x", "stream": true, "n": 2})"));
  ResponseShaper shaper(req_, model_, "cmpl-e", 5);
  runtime::ServingEvent e;
  e.choice = 1;
  e.finished = true;
  e.finish_reason = runtime::FinishReason::kError;
  e.error = Internal("a kernel failed");
  EXPECT_EQ(shaper.StreamEvent(e), "");
  ASSERT_TRUE(shaper.failure());
  EXPECT_EQ(shaper.failure()->http_status, 500);
  EXPECT_NE(shaper.failure()->message.find("a kernel failed"), std::string::npos);
  EXPECT_FALSE(shaper.done());
  bool done = false;
  auto chunks = SseChunks(ResponseShaper::StreamError(*shaper.failure()), &done);
  ASSERT_EQ(chunks.size(), 1u);
  EXPECT_EQ(chunks[0]["error"]["type"], "server_error");

  ResponseShaper cancelled(req_, model_, "cmpl-c", 5);
  e.finish_reason = runtime::FinishReason::kCancelled;
  cancelled.Add(e);
  ASSERT_TRUE(cancelled.failure());
  EXPECT_EQ(cancelled.failure()->http_status, 503);
  EXPECT_EQ(cancelled.failure()->code, "shutting_down");
}

// A reply that ends as a call streams its arguments in pieces; a piece boundary inside a multi-byte character would
// reach the client as U+FFFD and the pieces would no longer add up to the call's arguments.
TEST_F(ApiTest, StreamedToolCallArgumentsSplitBetweenCharacters) {
  model_.n_ctx = 8192;  // the tools' system prompt is long
  const auto err = Chat(R"({"messages": [{"role": "user", "content": "x"}], "stream": true,
                        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters":
                                   {"type": "object", "properties": {"city": {"type": "string"}}}}}]})");
  ASSERT_FALSE(err) << err->message;
  ResponseShaper shaper(req_, model_, "chatcmpl-t", 5);
  std::string sse = shaper.StreamHead();
  runtime::ServingEvent e;
  // 3-byte characters after the 9 bytes of {"city":" put a character across every 16-byte offset.
  std::string city_utf8;
  for (int i = 0; i < 8; ++i) city_utf8 += "\u8eca\ubbf8\ub798";  // 車미래 in UTF-8, 3 bytes each
  e.text = "[get_weather(city=\"" + city_utf8 + "\")]";
  e.tokens = {1, 2, 3};
  e.finished = true;
  e.finish_reason = runtime::FinishReason::kStop;
  e.completion_tokens = 3;
  sse += shaper.StreamEvent(e);
  sse += shaper.StreamTail();
  EXPECT_EQ(sse.find("\xEF\xBF\xBD"), std::string::npos) << "a piece carried a replacement character";
  bool done = false;
  std::string arguments, finish;
  int pieces = 0;
  for (const json& c : SseChunks(sse, &done)) {
    if (c["choices"].empty()) continue;
    const json& ch = c["choices"][0];
    if (!ch["finish_reason"].is_null()) finish = ch["finish_reason"].get<std::string>();
    for (const json& t : ch["delta"].value("tool_calls", json::array())) {
      const std::string piece = t["function"]["arguments"].get<std::string>();
      EXPECT_LE(piece.size(), 18u);  // about 16 bytes, moved to the next character boundary
      pieces += !piece.empty();
      arguments += piece;
    }
  }
  EXPECT_TRUE(done);
  EXPECT_EQ(finish, "tool_calls");
  EXPECT_GT(pieces, 4);
  EXPECT_EQ(json::parse(arguments), json({{"city", city_utf8}})) << arguments;
}

TEST_F(ApiTest, InvalidUtf8InTokensIsReplaced) {
  EXPECT_EQ(Dump(ResponseJson{{"t", std::string("a\xff")}}), "{\"t\":\"a\xEF\xBF\xBD\"}");
  EXPECT_EQ(NewResponseId(ApiKind::kChatCompletion).rfind("chatcmpl-", 0), 0u);
  EXPECT_EQ(NewResponseId(ApiKind::kCompletion).size(), 5u + 24u);
  EXPECT_NE(NewResponseId(ApiKind::kCompletion), NewResponseId(ApiKind::kCompletion));
}

}  // namespace
}  // namespace herd::server

namespace herd::server {
namespace {

// The model facts the request parser needs, for a real tokenizer and its chat format.
ModelInfo InfoFor(const tokenizer::Tokenizer& tok, runtime::ChatFormat format) {
  ModelInfo m;
  m.id = "t";
  m.vocab_size = tok.vocab_size();
  m.n_ctx = 8192;
  m.tokenizer = &tok;
  m.chat_format = format;
  m.chat_stop_ids = runtime::ChatStopIds(tok, format);
  return m;
}

// Tool calling renders the functions where each format expects them, past calls as the model writes them, and tool
// results as ipython turns (real Llama 4 and Llama 3 tokenizers).
TEST(ApiTools, PromptsPlaceTheFunctionsAsEachFormatExpects) {
  const char* body = R"({"messages": [{"role": "system", "content": "Be brief."},
      {"role": "user", "content": "Weather in Paris?"},
      {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
        "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\", \"days\": 2}"}}]},
      {"role": "tool", "tool_call_id": "c1", "content": "{\"t\": 21}"}],
    "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
      "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]})";
  const std::pair<runtime::ChatFormat, const char*> formats[] = {
      {runtime::ChatFormat::kLlama4, "models/llama4-tokenizer/tokenizer.model"},
      {runtime::ChatFormat::kLlama3, "models/llama3-tokenizer/tokenizer.model"}};
  for (auto [format, path] : formats) {
    auto tok = tokenizer::LoadTokenizer(herd::testing::SharedPath(path));
    ASSERT_TRUE(tok.ok()) << tok.status().ToString();
    const ModelInfo m = InfoFor(**tok, format);
    ApiRequest req;
    auto e = ParseGenerateRequest(json::parse(body), m, ApiKind::kChatCompletion, &req);
    ASSERT_FALSE(e.has_value()) << e->message;
    EXPECT_TRUE(req.tools_active);
    const std::string text = (*tok)->Decode(req.serving.prompt, /*skip_special=*/false);
    if (format == runtime::ChatFormat::kLlama4) {
      EXPECT_NE(text.find("<|header_start|>system<|header_end|>\n\nYou are a helpful assistant and an expert in "
                          "function composition."),
                std::string::npos)
          << text;
      EXPECT_NE(text.find("by using the tool outputs.\n\nBe brief.<|eot|>"), std::string::npos) << text;
      EXPECT_NE(text.find("<|header_start|>assistant<|header_end|>\n\n[get_weather(city=\"Paris\", days=2)]<|eot|>"),
                std::string::npos)
          << text;
      EXPECT_NE(text.find("<|header_start|>ipython<|header_end|>\n\n{\"t\": 21}<|eot|>"), std::string::npos) << text;
    } else {
      EXPECT_NE(text.find("<|start_header_id|>user<|end_header_id|>\n\nGiven the following functions, please respond "
                          "with a JSON for a function call"),
                std::string::npos)
          << text;
      EXPECT_NE(text.find("\"name\": \"get_weather\""), std::string::npos) << text;
      EXPECT_NE(text.find("\n\nWeather in Paris?<|eot_id|>"), std::string::npos) << text;
      EXPECT_NE(text.find("{\"name\":\"get_weather\",\"parameters\":{\"city\":\"Paris\",\"days\":2}}<|eot_id|>"),
                std::string::npos)
          << text;
      EXPECT_NE(text.find("<|start_header_id|>ipython<|end_header_id|>\n\n{\"t\": 21}<|eot_id|>"), std::string::npos)
          << text;
    }
  }
}

// A past call's arguments are a JSON text inside a string, out of reach of the body's nesting bound: nested a million
// deep they are a 400 that says so, not a walk that overflows the stack of the server's thread (issue 18: it did).
TEST(ApiTools, DeeplyNestedPastCallArgumentsAre400) {
  auto tok = tokenizer::LoadTokenizer(herd::testing::SharedPath("models/llama4-tokenizer/tokenizer.model"));
  ASSERT_TRUE(tok.ok()) << tok.status().ToString();
  const ModelInfo m = InfoFor(**tok, runtime::ChatFormat::kLlama4);
  const size_t levels = size_t{1} << 20;
  json body = json::parse(R"({"messages": [{"role": "user", "content": "Weather in Paris?"},
      {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
        "function": {"name": "get_weather", "arguments": ""}}]},
      {"role": "tool", "tool_call_id": "c1", "content": "{\"t\": 21}"}]})");
  body["messages"][1]["tool_calls"][0]["function"]["arguments"] =
      "{\"city\": " + std::string(levels, '[') + std::string(levels, ']') + "}";
  json parsed;
  ASSERT_FALSE(ParseJsonBody(body.dump(), &parsed));  // the body itself nests 6 levels
  ApiRequest req;
  auto e = ParseGenerateRequest(parsed, m, ApiKind::kChatCompletion, &req);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->http_status, 400);
  EXPECT_NE(e->message.find("nest deeper than 256 levels"), std::string::npos) << e->message;
}

}  // namespace
}  // namespace herd::server
