// The HTTP server (server/http_server.h) against a scripted test double of runtime::ServingEngine, through a real
// socket with httplib's client: routes, status codes and OpenAI error bodies, SSE framing, n > 1, the API key,
// body limits, metrics, tokenize/detokenize, drain, and a client that goes away cancelling its request.
#include "server/http_server.h"

#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "server/test_fakes.h"

namespace herd::server {
namespace {

using nlohmann::json;
using testing::FakeEngine;
using testing::FakeTokenizer;
using namespace std::chrono_literals;

class HttpTest : public ::testing::Test {
 protected:
  void Start(ServerOptions options = {}, std::chrono::milliseconds tick = 1ms) {
    engine_ = std::make_unique<FakeEngine>(tick);
    options.port = 0;
    auto s = HttpServer::Create(options);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    server_ = std::move(s).value();
    ASSERT_GT(server_->port(), 0);
    ASSERT_TRUE(server_->Start().ok());
  }
  void Ready() {
    ModelInfo m;
    m.id = "tiny";
    m.created = 1;
    m.vocab_size = FakeTokenizer::kVocab;
    m.n_ctx = 64;
    m.tokenizer = &tok_;
    m.chat_format = runtime::ChatFormat::kLlama4;
    m.chat_stop_ids = runtime::ChatStopIds(tok_, runtime::ChatFormat::kLlama4);
    server_->SetReady(engine_.get(), m);
  }
  void TearDown() override {
    if (server_) server_->Stop(2000);
    if (engine_) engine_->Shutdown(0);
  }

  std::unique_ptr<httplib::Client> Client() {
    auto c = std::make_unique<httplib::Client>("127.0.0.1", server_->port());
    c->set_read_timeout(20, 0);
    return c;
  }
  httplib::Result Post(const std::string& path, const std::string& body, const httplib::Headers& headers = {}) {
    return Client()->Post(path, headers, body, "application/json");
  }
  httplib::Result Get(const std::string& path, const httplib::Headers& headers = {}) {
    return Client()->Get(path, headers);
  }

  // Expects an OpenAI error body with this status (and type, code when given).
  static void ExpectError(const httplib::Result& r, int status, const std::string& type = "",
                          const std::string& code = "") {
    ASSERT_TRUE(r) << httplib::to_string(r.error());
    EXPECT_EQ(r->status, status) << r->body;
    EXPECT_EQ(r->get_header_value("Content-Type"), "application/json");
    const json j = json::parse(r->body, nullptr, false);
    ASSERT_TRUE(j.is_object() && j.contains("error")) << r->body;
    const json& e = j["error"];
    EXPECT_TRUE(e["message"].is_string() && !e["message"].get<std::string>().empty()) << r->body;
    EXPECT_TRUE(e.contains("type") && e.contains("param") && e.contains("code")) << r->body;
    if (!type.empty()) {
      EXPECT_EQ(e["type"], type) << r->body;
    }
    if (!code.empty()) {
      EXPECT_EQ(e["code"], code) << r->body;
    }
  }

  FakeTokenizer tok_;
  std::unique_ptr<FakeEngine> engine_;
  std::unique_ptr<HttpServer> server_;
};

// "data: ..." events of an SSE body; *done when it ended with [DONE].
std::vector<json> Sse(const std::string& body, bool* done) {
  std::vector<json> chunks;
  *done = false;
  size_t at = 0;
  while (at < body.size()) {
    const size_t end = body.find("\n\n", at);
    EXPECT_NE(end, std::string::npos) << "unterminated event in " << body;
    if (end == std::string::npos) break;
    const std::string event = body.substr(at, end - at);
    EXPECT_EQ(event.rfind("data: ", 0), 0u) << event;
    if (event == "data: [DONE]") {
      *done = true;
    } else {
      EXPECT_FALSE(*done) << "an event after [DONE]";
      chunks.push_back(json::parse(event.substr(6)));
    }
    at = end + 2;
  }
  return chunks;
}

TEST_F(HttpTest, HealthSaysLoadingUntilReady) {
  Start();
  auto r = Get("/health");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 503);
  EXPECT_EQ(json::parse(r->body), json({{"status", "loading"}}));
  ExpectError(Post("/v1/completions", R"({"prompt": "x"})"), 503, "server_error", "model_loading");
  Ready();
  r = Get("/health");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(json::parse(r->body), json({{"status", "ok"}}));
  r = Get("/v1/health");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
}

TEST_F(HttpTest, CompletionRoundTrip) {
  Start();
  Ready();
  auto r = Post("/v1/completions", R"({"model": "tiny", "prompt": "hi", "max_tokens": 3, "temperature": 0,
                                       "seed": 7, "stop": ["zz"]})");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(r->get_header_value("Content-Type"), "application/json");
  const json j = json::parse(r->body);
  EXPECT_EQ(j["object"], "text_completion");
  EXPECT_EQ(j["model"], "tiny");
  EXPECT_EQ(j["id"].get<std::string>().rfind("cmpl-", 0), 0u);
  EXPECT_EQ(j["choices"][0]["text"], "aaa");
  EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(j["usage"]["prompt_tokens"], 3);
  EXPECT_EQ(j["usage"]["completion_tokens"], 3);
  EXPECT_EQ(j["usage"]["total_tokens"], 6);
  EXPECT_EQ(j["usage"]["prompt_tokens_details"]["cached_tokens"], 2);
  const auto submitted = engine_->submitted();
  ASSERT_EQ(submitted.size(), 1u);
  EXPECT_EQ(submitted[0].prompt, (std::vector<int32_t>{FakeTokenizer::kBos, 'h', 'i'}));
  EXPECT_EQ(submitted[0].max_tokens, 3);
  EXPECT_EQ(submitted[0].sampling.temperature, 0.0f);
  EXPECT_EQ(submitted[0].sampling.seed, 7u);
  EXPECT_EQ(submitted[0].stop_strings, std::vector<std::string>{"zz"});
  // Without a seed each request gets its own random one.
  ASSERT_TRUE(Post("/completions", R"({"prompt": "hi", "max_tokens": 1})"));
  ASSERT_TRUE(Post("/completions", R"({"prompt": "hi", "max_tokens": 1})"));
  const auto all = engine_->submitted();
  ASSERT_EQ(all.size(), 3u);
  EXPECT_NE(all[1].sampling.seed, all[2].sampling.seed);
}

TEST_F(HttpTest, ChatStreamIsServerSentEvents) {
  Start();
  Ready();
  auto r = Post("/v1/chat/completions", R"({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3,
                                            "n": 2, "stream": true, "stream_options": {"include_usage": true}})");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(r->get_header_value("Content-Type"), "text/event-stream");
  EXPECT_EQ(r->get_header_value("Transfer-Encoding"), "chunked");
  EXPECT_FALSE(r->has_header("Content-Encoding"));
  bool done = false;
  const auto chunks = Sse(r->body, &done);
  EXPECT_TRUE(done);
  ASSERT_GE(chunks.size(), 2u);
  std::string text[2];
  int finished = 0;
  for (size_t i = 0; i + 1 < chunks.size(); ++i) {
    EXPECT_EQ(chunks[i]["object"], "chat.completion.chunk");
    const json& c = chunks[i]["choices"][0];
    if (i < 2) {
      EXPECT_EQ(c["delta"]["role"], "assistant");
    }
    if (c["delta"].contains("content")) text[c["index"].get<int>()] += c["delta"]["content"].get<std::string>();
    if (!c["finish_reason"].is_null()) ++finished;
  }
  EXPECT_EQ(text[0], "aaa");
  EXPECT_EQ(text[1], "bbb");
  EXPECT_EQ(finished, 2);
  EXPECT_EQ(chunks.back()["choices"], json::array());
  EXPECT_EQ(chunks.back()["usage"]["completion_tokens"], 6);
}

TEST_F(HttpTest, CompletionStreamAndLogprobs) {
  Start();
  Ready();
  auto r = Post("/v1/completions", R"({"prompt": [1, 2], "max_tokens": 2, "stream": true, "logprobs": 1})");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200);
  bool done = false;
  const auto chunks = Sse(r->body, &done);
  EXPECT_TRUE(done);
  ASSERT_EQ(chunks.size(), 2u) << r->body;
  EXPECT_EQ(chunks[0]["choices"][0]["logprobs"]["token_logprobs"], json::array({-0.25}));
  EXPECT_EQ(chunks[1]["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(engine_->submitted().at(0).prompt, (std::vector<int32_t>{1, 2}));
  EXPECT_EQ(engine_->submitted().at(0).top_logprobs, 1);
}

TEST_F(HttpTest, RequestErrors) {
  Start();
  Ready();
  ExpectError(Post("/v1/completions", "{not json"), 400, "invalid_request_error", "invalid_json");
  ExpectError(Post("/v1/completions", ""), 400, "invalid_request_error", "invalid_json");
  ExpectError(Post("/v1/chat/completions", "[1]"), 400, "invalid_request_error", "invalid_json");
  auto r = Post("/v1/completions", R"({"prompt": "x", "temperature": "hot"})");
  ExpectError(r, 400, "invalid_request_error");
  EXPECT_EQ(json::parse(r->body)["error"]["param"], "temperature");
  r = Post("/v1/completions", R"({"prompt": [1, 9999]})");
  ExpectError(r, 400, "invalid_request_error");
  EXPECT_EQ(json::parse(r->body)["error"]["param"], "prompt");
  ExpectError(Post("/v1/completions", R"({"model": "gpt-4o", "prompt": "x"})"), 404, "invalid_request_error",
              "model_not_found");
  ExpectError(Post("/v1/completions", R"({"prompt": ")" + std::string(100, 'x') + R"("})"), 400,
              "invalid_request_error", "context_length_exceeded");
  r = Post("/v1/chat/completions",
           R"({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]})");
  ExpectError(r, 400);
  EXPECT_EQ(json::parse(r->body)["error"]["message"],
            "this model has no vision tower: image input is not supported");
  EXPECT_TRUE(engine_->submitted().empty());
  // Unknown routes and wrong methods.
  ExpectError(Get("/v2/nothing"), 404, "invalid_request_error", "not_found");
  ExpectError(Post("/v1/embeddings", "{}"), 404);
  r = Get("/v1/completions");
  ExpectError(r, 405, "invalid_request_error", "method_not_allowed");
  EXPECT_EQ(r->get_header_value("Allow"), "POST");
  ExpectError(Post("/health", "{}"), 405);
  ExpectError(Client()->Delete("/v1/models"), 405);
}

TEST_F(HttpTest, SubmitErrorsMapToStatusCodes) {
  Start();
  Ready();
  const std::string body = R"({"prompt": "x"})";
  engine_->SetSubmitStatus(Status(StatusCode::kUnavailable, "the queue is full (256 waiting)"));
  auto r = Post("/v1/completions", body);
  ExpectError(r, 503, "server_error", "server_busy");
  EXPECT_EQ(r->get_header_value("Retry-After"), "1");
  engine_->SetSubmitStatus(OutOfRange("the prompt needs more KV pages than the pool holds"));
  ExpectError(Post("/v1/completions", body), 400, "invalid_request_error", "context_length_exceeded");
  engine_->SetSubmitStatus(InvalidArgument("n must be at most parallel"));
  ExpectError(Post("/v1/completions", body), 400, "invalid_request_error");
  engine_->SetSubmitStatus(Internal("bug"));
  ExpectError(Post("/v1/completions", body), 500, "server_error");
}

TEST_F(HttpTest, EngineErrorMidRequest) {
  Start();
  Ready();
  engine_->SetScript([](const runtime::ServingRequest&) {
    runtime::ServingEvent a, b;
    a.text = "par";
    b.finished = true;
    b.finish_reason = runtime::FinishReason::kError;
    b.error = Internal("the step failed");
    return std::vector<runtime::ServingEvent>{a, b};
  });
  ExpectError(Post("/v1/completions", R"({"prompt": "x"})"), 500, "server_error");
  auto r = Post("/v1/completions", R"({"prompt": "x", "stream": true})");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  bool done = false;
  const auto chunks = Sse(r->body, &done);
  EXPECT_FALSE(done);  // an error event ends the stream instead of [DONE]
  ASSERT_EQ(chunks.size(), 2u) << r->body;
  EXPECT_EQ(chunks[0]["choices"][0]["text"], "par");
  EXPECT_EQ(chunks[1]["error"]["type"], "server_error");
  EXPECT_NE(chunks[1]["error"]["message"].get<std::string>().find("the step failed"), std::string::npos);
}

TEST_F(HttpTest, ApiKey) {
  ServerOptions o;
  o.api_key = "sekret";
  Start(o);
  Ready();
  const std::string body = R"({"prompt": "x", "max_tokens": 1})";
  auto r = Post("/v1/completions", body);
  ExpectError(r, 401, "authentication_error", "invalid_api_key");
  EXPECT_EQ(r->get_header_value("WWW-Authenticate"), "Bearer");
  ExpectError(Post("/v1/completions", body, {{"Authorization", "Bearer wrong"}}), 401);
  ExpectError(Post("/v1/completions", body, {{"Authorization", "sekret"}}), 401);
  ExpectError(Post("/v1/completions", body, {{"Authorization", "Bearer sekret2"}}), 401);
  ExpectError(Get("/v1/models"), 401);
  ExpectError(Get("/metrics"), 401);
  ExpectError(Post("/tokenize", R"({"content": "x"})"), 401);
  r = Post("/v1/completions", body, {{"Authorization", "Bearer sekret"}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
  r = Get("/health");  // stays open
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(engine_->submitted().size(), 1u);
}

TEST_F(HttpTest, BodyLimit) {
  ServerOptions o;
  o.max_body_bytes = 1 << 20;
  Start(o);
  Ready();
  const std::string big = R"({"prompt": ")" + std::string((1 << 20) + 10, 'x') + R"("})";
  ExpectError(Post("/v1/completions", big), 413, "invalid_request_error", "request_too_large");
  // The server goes on.
  auto r = Post("/v1/completions", R"({"prompt": "x", "max_tokens": 1})");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
}

TEST_F(HttpTest, ModelsTokenizeDetokenize) {
  Start();
  Ready();
  auto r = Get("/v1/models");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200);
  const json models = json::parse(r->body);
  EXPECT_EQ(models["object"], "list");
  ASSERT_EQ(models["data"].size(), 1u);
  EXPECT_EQ(models["data"][0]["id"], "tiny");
  EXPECT_EQ(models["data"][0]["object"], "model");
  EXPECT_EQ(models["data"][0]["owned_by"], "herd");
  r = Get("/v1/models/tiny");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  ExpectError(Get("/v1/models/other"), 404, "invalid_request_error", "model_not_found");

  r = Post("/tokenize", R"({"content": "a<|eot|>"})");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(json::parse(r->body)["tokens"], json::array({'a', FakeTokenizer::kEot}));
  r = Post("/tokenize", R"({"content": "a", "add_special": true, "with_pieces": true})");
  ASSERT_TRUE(r);
  EXPECT_EQ(json::parse(r->body)["tokens"],
            json::parse(R"([{"id": 256, "piece": "<|begin_of_text|>"}, {"id": 97, "piece": "a"}])"));
  ExpectError(Post("/tokenize", R"({"content": 5})"), 400);
  ExpectError(Post("/tokenize", R"({"content": "x", "add_special": "yes"})"), 400);
  r = Post("/detokenize", R"({"tokens": [104, 105, 260]})");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200);
  EXPECT_EQ(json::parse(r->body)["content"], "hi<|eot|>");
  ExpectError(Post("/detokenize", R"({"tokens": [104, 262]})"), 400);
  ExpectError(Post("/detokenize", R"({"tokens": [-1]})"), 400);
  ExpectError(Post("/detokenize", R"({"tokens": "hi"})"), 400);
  // Bytes that are not UTF-8 are replaced, never an exception.
  r = Post("/detokenize", R"({"tokens": [255]})");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(json::parse(r->body)["content"], "\xEF\xBF\xBD");
}

TEST_F(HttpTest, Metrics) {
  Start();
  auto r = Get("/metrics");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_NE(r->body.find("herd_model_loaded 0"), std::string::npos) << r->body;
  Ready();
  ASSERT_TRUE(Post("/v1/completions", R"({"prompt": "x", "max_tokens": 1})"));
  ASSERT_TRUE(Post("/v1/completions", "{bad"));
  // A response is counted once written, which its client may see first.
  for (int i = 0; i < 200 && server_->RequestCounts().count({"/v1/completions", 400}) == 0; ++i) {
    std::this_thread::sleep_for(5ms);
  }
  r = Get("/metrics");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200);
  EXPECT_EQ(r->get_header_value("Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
  const std::string& m = r->body;
  for (const char* want : {
           "# TYPE herd_http_requests_total counter\n",
           "herd_http_requests_total{route=\"/v1/completions\",status=\"200\"} 1\n",
           "herd_http_requests_total{route=\"/v1/completions\",status=\"400\"} 1\n",
           "herd_http_requests_total{route=\"/health\",status=\"503\"} 0",  // never asked: absent (checked below)
           "herd_model_loaded 1\n",
           "herd_kv_pages_used 7\n",
           "herd_kv_pages_total 100\n",
           "herd_prefix_cache_queries_total 40\n",
           "herd_prefix_cache_hits_total 10\n",
           "herd_requests_running ",
           "herd_requests_waiting 0\n",
           "# TYPE herd_time_to_first_token_seconds histogram\n",
           "herd_time_to_first_token_seconds_bucket{le=\"0.1\"} 3\n",
           "herd_time_to_first_token_seconds_bucket{le=\"1\"} 5\n",
           "herd_time_to_first_token_seconds_bucket{le=\"+Inf\"} 5\n",
           "herd_time_to_first_token_seconds_sum 1.5\n",
           "herd_time_to_first_token_seconds_count 5\n",
           "herd_inter_token_latency_seconds_count 9\n",
           "herd_prompt_tokens_total 0\n",
           "herd_generation_tokens_total 0\n",
       }) {
    if (std::string(want).find("/health") != std::string::npos) {
      EXPECT_EQ(m.find(want), std::string::npos);
      continue;
    }
    EXPECT_NE(m.find(want), std::string::npos) << "missing '" << want << "' in\n" << m;
  }
  int64_t scrapes = 0;
  for (int i = 0; i < 200 && scrapes < 2; ++i) {
    const auto counts = server_->RequestCounts();
    auto it = counts.find({"/metrics", 200});
    scrapes = it == counts.end() ? 0 : it->second;
    if (scrapes < 2) std::this_thread::sleep_for(5ms);
  }
  EXPECT_EQ(scrapes, 2);
}

TEST_F(HttpTest, DrainRefusesNewRequests) {
  Start();
  Ready();
  server_->BeginDrain();
  ExpectError(Post("/v1/completions", R"({"prompt": "x"})"), 503, "server_error", "shutting_down");
  auto r = Get("/health");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 503);
  EXPECT_EQ(json::parse(r->body)["status"], "draining");
}

// A streaming client that reads two chunks and hangs up: the server cancels its request at once.
TEST_F(HttpTest, StreamingClientGoneCancels) {
  Start({}, 20ms);
  Ready();
  auto cli = Client();
  httplib::Request req;
  req.method = "POST";
  req.path = "/v1/completions";
  req.body = R"({"prompt": "x", "stream": true})";  // 61 tokens, one per 20 ms
  req.set_header("Content-Type", "application/json");
  int chunks = 0;
  req.content_receiver = [&](const char*, size_t, uint64_t, uint64_t) { return ++chunks < 2; };
  httplib::Response res;
  httplib::Error err;
  EXPECT_FALSE(cli->send(req, res, err));
  cli->stop();
  cli.reset();
  EXPECT_TRUE(engine_->WaitCancelled(1, 2000ms)) << "the request was not cancelled";
  // The server serves the next client.
  auto r = Post("/v1/completions", R"({"prompt": "x", "max_tokens": 2})");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
}

// A non-streaming client that gives up (read timeout) is noticed after the response is committed.
TEST_F(HttpTest, WaitingClientGoneCancels) {
  Start({}, 50ms);
  Ready();
  auto cli = Client();
  cli->set_read_timeout(1, 0);
  auto r = cli->Post("/v1/completions", R"({"prompt": "x"})", "application/json");  // 61 tokens x 50 ms
  EXPECT_FALSE(r);
  cli->stop();
  cli.reset();
  EXPECT_TRUE(engine_->WaitCancelled(1, 2000ms)) << "the request was not cancelled";
  // Cancelled, not finished (61 tokens take 3 s): the engine drops it at its next step.
  for (int i = 0; i < 50 && engine_->active() > 0; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(engine_->active(), 0u);
}

// A non-streaming request that takes longer than the commit wait still gets its whole JSON body.
TEST_F(HttpTest, SlowNonStreamingRequestGetsItsBody) {
  Start({}, 40ms);
  Ready();
  auto r = Post("/v1/completions", R"({"prompt": "x", "max_tokens": 20})");  // ~800 ms
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200);
  const json j = json::parse(r->body);
  EXPECT_EQ(j["choices"][0]["text"], std::string(20, 'a'));
  EXPECT_TRUE(engine_->cancelled().empty());
}

TEST_F(HttpTest, ManyConcurrentStreams) {
  Start({}, 2ms);
  Ready();
  constexpr int kClients = 80;
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kClients; ++i) {
    threads.emplace_back([&] {
      auto r = Post("/v1/chat/completions",
                    R"({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 20, "stream": true})");
      if (!r || r->status != 200) return;
      bool done = false;
      const auto chunks = Sse(r->body, &done);
      std::string text;
      for (const json& c : chunks) {
        if (c["choices"][0]["delta"].contains("content")) text += c["choices"][0]["delta"]["content"];
      }
      if (done && text == std::string(20, 'a')) ++ok;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), kClients);
  // A stream's slot is released when httplib drops its content provider, which can come just after the client has
  // read the end of the body: wait for it (bounded) rather than race it.
  for (int i = 0; i < 200 && server_->in_flight() != 0; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(server_->in_flight(), 0);
}

TEST_F(HttpTest, StopWaitsForResponsesInFlight) {
  Start({}, 10ms);
  Ready();
  std::thread client([&] {
    auto r = Post("/v1/completions", R"({"prompt": "x", "max_tokens": 30, "stream": true})");
    ASSERT_TRUE(r);
    bool done = false;
    Sse(r->body, &done);
    EXPECT_TRUE(done) << "the stream was cut";
  });
  while (engine_->submitted().empty()) std::this_thread::sleep_for(1ms);
  server_->BeginDrain();
  server_->Stop(5000);
  client.join();
  EXPECT_TRUE(engine_->cancelled().empty());
}

}  // namespace
}  // namespace herd::server
