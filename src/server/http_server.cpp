// HTTP routes, request lifetimes and metrics of herd serve (server/http_server.h).
#include "server/http_server.h"

#include <httplib.h>
#include <signal.h>
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <random>
#include <system_error>
#include <thread>
#include <vector>

#include "server/metrics.h"

namespace herd::server {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

// How often a waiting response checks its connection, and how long a non-streaming request may take before its
// 200 is committed (so that a client that goes away can still be noticed).
constexpr auto kPollInterval = std::chrono::milliseconds(100);
constexpr auto kCommitWait = std::chrono::milliseconds(500);
// httplib's listen backlog is compiled into the library (5): a burst of clients would wait for SYN retries.
constexpr int kListenBacklog = 1024;
constexpr int kKeepAliveSeconds = 2;

int64_t UnixNow() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// httplib's server with a longer accept queue than the library's compiled-in one.
class Listener : public httplib::Server {
 public:
  bool WidenBacklog(int n) { return ::listen(svr_sock_, n) == 0; }
};

// Worker threads for httplib's connections: one is started when a connection finds none idle (up to `max`), and
// started threads stay. Invariants: idle_ <= threads_.size(); a queued job finds an idle or a new thread unless
// the pool is at its maximum.
class GrowingPool : public httplib::TaskQueue {
 public:
  explicit GrowingPool(size_t max) : max_(max) {}

  void enqueue(std::function<void()> fn) override {
    std::unique_lock lock(mu_);
    jobs_.push_back(std::move(fn));
    if (jobs_.size() > idle_ && threads_.size() < max_) {
      try {
        threads_.emplace_back([this] { Work(); });
      } catch (const std::system_error&) {
        // The OS refused a thread: the job waits for a running one.
      }
    }
    cv_.notify_one();
  }

  void shutdown() override {
    {
      std::unique_lock lock(mu_);
      shutdown_ = true;
    }
    cv_.notify_all();
    for (std::thread& t : threads_) t.join();  // no new thread starts after shutdown_: enqueue is done
  }

 private:
  void Work() {
    for (;;) {
      std::function<void()> job;
      {
        std::unique_lock lock(mu_);
        ++idle_;
        cv_.wait(lock, [&] { return !jobs_.empty() || shutdown_; });
        --idle_;
        if (jobs_.empty()) return;  // shutting down
        job = std::move(jobs_.front());
        jobs_.pop_front();
      }
      job();
    }
  }

  const size_t max_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  std::vector<std::thread> threads_;
  size_t idle_ = 0;
  bool shutdown_ = false;
};

// The events of one request, from the engine thread to the HTTP thread that writes its response.
// Invariants: once gone is set the sink refuses every event (the engine cancels the request); events are
// appended in the engine's order and taken in that order.
struct RequestState {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<runtime::ServingEvent> events;
  bool gone = false;      // the client went away
  bool complete = false;  // the whole response was handed to httplib (HTTP thread only)
  uint64_t id = 0;        // the engine's id (set after Submit)

  bool Push(const runtime::ServingEvent& e) {
    std::lock_guard lock(mu);
    if (gone) return false;
    events.push_back(e);
    cv.notify_one();
    return true;
  }

  // The queued events; waits until `deadline` while there are none.
  std::deque<runtime::ServingEvent> Take(Clock::time_point deadline) {
    std::unique_lock lock(mu);
    cv.wait_until(lock, deadline, [&] { return !events.empty(); });
    std::deque<runtime::ServingEvent> out;
    out.swap(events);
    return out;
  }
};

// Counts a generation request as in flight for as long as it lives (held by its response's content provider).
class InFlight {
 public:
  explicit InFlight(std::atomic<int64_t>* n) : n_(n) { ++*n_; }
  ~InFlight() { --*n_; }
  InFlight(const InFlight&) = delete;
  InFlight& operator=(const InFlight&) = delete;

 private:
  std::atomic<int64_t>* n_;
};

// Compares without an early exit, so the time taken does not tell how much of a guessed key was right.
bool ConstantTimeEqual(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

void ReplyJson(httplib::Response& res, int status, const ResponseJson& body) {
  res.status = status;
  res.set_content(Dump(body), "application/json");
}

void ReplyError(httplib::Response& res, const ApiError& e) {
  ReplyJson(res, e.http_status, e.ToJson());
  if (e.http_status == 503) res.set_header("Retry-After", "1");
  if (e.http_status == 401) res.set_header("WWW-Authenticate", "Bearer");
}

// The routes and the methods they answer.
struct RouteSpec {
  const char* path;
  const char* method;
};
constexpr RouteSpec kRoutes[] = {
    {"/health", "GET"},
    {"/v1/health", "GET"},
    {"/metrics", "GET"},
    {"/v1/models", "GET"},
    {"/models", "GET"},
    {"/v1/chat/completions", "POST"},
    {"/chat/completions", "POST"},
    {"/v1/completions", "POST"},
    {"/completions", "POST"},
    {"/tokenize", "POST"},
    {"/detokenize", "POST"},
    {"/v1/moderations", "POST"},
};

// The metrics label of a request path: the route, or "other" (unknown paths must not grow the label set).
std::string RouteLabel(const std::string& path) {
  for (const RouteSpec& r : kRoutes) {
    if (path == r.path) return r.path;
  }
  if (path.rfind("/v1/models/", 0) == 0) return "/v1/models/{id}";
  return "other";
}

}  // namespace

class HttpServer::Impl {
 public:
  explicit Impl(const ServerOptions& o) : options_(o), seed_rng_(std::random_device{}()) {}

  Listener svr;
  ServerOptions options_;
  int port = 0;
  std::thread thread;
  std::atomic<bool> listen_ended{false};
  std::atomic<bool> ready{false}, draining{false};
  bool stopped = false;
  runtime::ServingEngine* engine = nullptr;
  ModelInfo model;
  int64_t created = UnixNow();
  std::atomic<int64_t> in_flight{0};
  mutable std::mutex counts_mu;
  std::map<std::pair<std::string, int>, int64_t> counts;

  void Install();

 private:
  using Request = httplib::Request;
  using Response = httplib::Response;

  // nullopt when the request may go on; else the error it gets.
  std::optional<ApiError> Gate(const Request& req, bool needs_model) const {
    if (!options_.api_key.empty()) {
      const std::string auth = req.get_header_value("Authorization");
      const std::string prefix = "Bearer ";
      if (auth.rfind(prefix, 0) != 0 || !ConstantTimeEqual(auth.substr(prefix.size()), options_.api_key)) {
        return ApiError{401, auth.empty() ? "Missing API key: send 'Authorization: Bearer KEY'" : "Invalid API key",
                        "authentication_error", "", "invalid_api_key"};
      }
    }
    if (needs_model && draining.load()) return Unavailable("the server is shutting down", "shutting_down");
    if (needs_model && !ready.load()) return Unavailable("the model is loading", "model_loading");
    return std::nullopt;
  }

  uint64_t NewSeed() {
    std::lock_guard lock(seed_mu_);
    return seed_rng_();
  }

  void Abandon(RequestState& st) {
    {
      std::lock_guard lock(st.mu);
      if (st.gone) return;
      st.gone = true;
    }
    engine->Cancel(st.id);
  }

  void Health(const Request&, Response& res) {
    if (draining.load()) return ReplyJson(res, 503, {{"status", "draining"}});
    if (!ready.load()) return ReplyJson(res, 503, {{"status", "loading"}});
    ReplyJson(res, 200, {{"status", "ok"}});
  }

  ResponseJson ModelObject() const {
    return {{"id", model.id},
            {"object", "model"},
            {"created", created},
            {"owned_by", "herd"},
            {"meta", {{"vocab_size", model.vocab_size}, {"n_ctx", model.n_ctx}}}};
  }

  void Models(const Request& req, Response& res) {
    if (auto e = Gate(req, true)) return ReplyError(res, *e);
    ReplyJson(res, 200, {{"object", "list"}, {"data", ResponseJson::array({ModelObject()})}});
  }

  void OneModel(const Request& req, Response& res) {
    if (auto e = Gate(req, true)) return ReplyError(res, *e);
    const std::string id = req.matches.size() > 1 ? req.matches[1].str() : "";
    if (id != model.id) {
      return ReplyError(res, ApiError{404, "The model '" + id + "' does not exist", "invalid_request_error", "model",
                                      "model_not_found"});
    }
    ReplyJson(res, 200, ModelObject());
  }

  void Metrics(const Request& req, Response& res) {
    if (auto e = Gate(req, false)) return ReplyError(res, *e);
    MetricsInput in;
    in.ready = ready.load();
    if (in.ready) in.engine = engine->stats();
    {
      std::lock_guard lock(counts_mu);
      in.requests = counts;
    }
    in.in_flight = in_flight.load();
    res.status = 200;
    res.set_content(FormatMetrics(in), "text/plain; version=0.0.4; charset=utf-8");
  }

  void Tokenize(const Request& req, Response& res) {
    if (auto e = Gate(req, true)) return ReplyError(res, *e);
    json body;
    if (auto e = ParseJsonBody(req.body, &body)) return ReplyError(res, *e);
    auto content = body.find("content");
    if (content == body.end() || !content->is_string()) {
      return ReplyError(res, BadRequest("'content' must be a string", "content"));
    }
    bool flags[3] = {false, true, false};  // add_special, parse_special, with_pieces (llama.cpp's defaults)
    const char* names[3] = {"add_special", "parse_special", "with_pieces"};
    for (int i = 0; i < 3; ++i) {
      auto it = body.find(names[i]);
      if (it == body.end() || it->is_null()) continue;
      if (!it->is_boolean()) {
        return ReplyError(res, BadRequest(std::string("'") + names[i] + "' must be a boolean", names[i]));
      }
      flags[i] = it->get<bool>();
    }
    const std::vector<int32_t> ids = model.tokenizer->Encode(content->get<std::string>(), flags[0], flags[1]);
    ResponseJson tokens = ResponseJson::array();
    for (int32_t id : ids) {
      if (flags[2]) {
        tokens.push_back({{"id", id}, {"piece", model.tokenizer->TokenBytes(id)}});
      } else {
        tokens.push_back(id);
      }
    }
    ReplyJson(res, 200, {{"tokens", tokens}});
  }

  void Detokenize(const Request& req, Response& res) {
    if (auto e = Gate(req, true)) return ReplyError(res, *e);
    json body;
    if (auto e = ParseJsonBody(req.body, &body)) return ReplyError(res, *e);
    auto tokens = body.find("tokens");
    if (tokens == body.end() || !tokens->is_array()) {
      return ReplyError(res, BadRequest("'tokens' must be a list of token ids", "tokens"));
    }
    std::vector<int32_t> ids;
    const int64_t vocab = model.tokenizer->vocab_size();
    for (size_t i = 0; i < tokens->size(); ++i) {
      const json& t = (*tokens)[i];
      if (!t.is_number_integer() || t.get<int64_t>() < 0 || t.get<int64_t>() >= vocab) {
        return ReplyError(
            res, BadRequest("tokens[" + std::to_string(i) + "] = " + t.dump() +
                                " is not a token id of the vocabulary (0 to " + std::to_string(vocab - 1) + ")",
                            "tokens"));
      }
      ids.push_back(static_cast<int32_t>(t.get<int64_t>()));
    }
    ReplyJson(res, 200, {{"content", model.tokenizer->Decode(ids, /*skip_special=*/false)}});
  }

  void Generate(const Request& req, Response& res, ApiKind kind) {
    auto guard = std::make_shared<InFlight>(&in_flight);
    if (auto e = Gate(req, true)) return ReplyError(res, *e);
    json body;
    if (auto e = ParseJsonBody(req.body, &body)) return ReplyError(res, *e);
    ApiRequest api;
    if (auto e = ParseGenerateRequest(body, model, kind, &api)) return ReplyError(res, *e);
    if (!api.seed_given) api.serving.sampling.seed = NewSeed();
    if (!api.images.empty()) {  // ParseGenerateRequest takes images only when model.images is set
      auto embeds = model.images->encode(api.images, api.serving.prompt);
      if (!embeds.ok()) {
        const Status& s = embeds.status();
        return ReplyError(res, s.code() == StatusCode::kInvalidArgument
                                   ? BadRequest(s.message(), "messages", "invalid_image")
                                   : ApiError{500, "image encoding failed: " + s.message(), "server_error"});
      }
      api.images.clear();
      api.images.shrink_to_fit();
      api.serving.embeds = std::make_shared<const runtime::PromptEmbeds>(std::move(embeds).value());
    }

    auto st = std::make_shared<RequestState>();
    auto shaper = std::make_shared<ResponseShaper>(api, model, NewResponseId(kind), UnixNow());
    const bool stream = api.stream;
    if (model.guard && !api.judged_user_text.empty()) {
      // The request is screened before anything is generated; a flagged one is answered with a refusal.
      const runtime::GuardMessage judged{"user", api.judged_user_text, {}};
      auto verdict =
          model.guard->Classify(std::span<const runtime::GuardMessage>(&judged, 1), model.guard_options, false);
      if (!verdict.ok()) {
        return ReplyError(res, ApiError{500, "the safety check failed: " + verdict.status().message(), "server_error",
                                        "", "guard_failed"});
      }
      if (verdict->verdict.unsafe) {
        for (int i = 0; i < shaper->choices(); ++i) {
          runtime::ServingEvent e;
          e.choice = i;
          e.finished = true;
          e.prompt_tokens = static_cast<int64_t>(api.serving.prompt.size());
          shaper->Add(e);
          shaper->Refuse(i, Refusal(*verdict, "request"));
        }
        if (stream) {
          res.set_header("Cache-Control", "no-cache");
          return res.set_content(shaper->StreamWhole(), "text/event-stream");
        }
        return ReplyJson(res, 200, shaper->Body());
      }
    }
    const std::string judged_user = api.judged_user_text;
    Result<uint64_t> id =
        engine->Submit(std::move(api.serving), [st](const runtime::ServingEvent& e) { return st->Push(e); });
    if (!id.ok()) return ReplyError(res, FromSubmitStatus(id.status()));
    st->id = *id;
    if (model.guard && model.guard_output) return Screened(res, st, shaper, guard, stream, judged_user);
    if (stream) return Stream(res, st, shaper, guard);
    Whole(res, st, shaper, guard);
  }

  // The text that replaces flagged content, naming the categories.
  std::string Refusal(const runtime::GuardResult& r, const char* what) const {
    std::string cats;
    for (const auto& code : r.verdict.categories) {
      for (const auto& c : runtime::GuardCategories()) {
        if (c.code == code) cats += (cats.empty() ? "" : ", ") + c.code + ": " + c.name;
      }
    }
    return std::string("I can't help with that: the ") + what + " was flagged by the safety policy" +
           (cats.empty() ? "" : " (" + cats + ")") + ".";
  }

  // --guard-output: the whole reply is generated, each choice is screened (the last user message and the reply),
  // and only then is it sent, streamed or not; a flagged choice is replaced by a refusal (content_filter).
  void Screened(Response& res, std::shared_ptr<RequestState> st, std::shared_ptr<ResponseShaper> shaper,
                std::shared_ptr<InFlight> guard, bool stream, std::string user) {
    res.status = 200;
    if (stream) {
      res.set_header("Cache-Control", "no-cache");
      res.set_header("X-Accel-Buffering", "no");
    }
    res.set_chunked_content_provider(
        stream ? "text/event-stream" : "application/json",
        [this, st, shaper, stream, user](size_t, httplib::DataSink& sink) {
          for (const runtime::ServingEvent& e : st->Take(Clock::now() + kPollInterval)) shaper->Add(e);
          if (!shaper->done() && !shaper->failure()) return sink.is_writable();
          if (!shaper->done()) Abandon(*st);
          std::string body;
          if (shaper->failure()) {
            body = stream ? ResponseShaper::StreamError(*shaper->failure()) : Dump(shaper->failure()->ToJson());
          } else {
            std::optional<ApiError> failed;
            for (int i = 0; i < shaper->choices() && !failed; ++i) {
              const runtime::GuardMessage conv[2] = {{"user", user, {}}, {"assistant", shaper->ChoiceText(i), {}}};
              auto v = model.guard->Classify(conv, model.guard_options, false);
              if (!v.ok()) {
                failed = ApiError{500, "the safety check failed: " + v.status().message(), "server_error", "",
                                  "guard_failed"};
              } else if (v->verdict.unsafe) {
                shaper->Refuse(i, Refusal(*v, "reply"));
              }
            }
            if (failed) {
              body = stream ? ResponseShaper::StreamError(*failed) : Dump(failed->ToJson());
            } else {
              body = stream ? shaper->StreamWhole() : Dump(shaper->Body());
            }
          }
          if (!sink.write(body.data(), body.size())) return false;
          st->complete = true;
          sink.done();
          return true;
        },
        [this, st, guard](bool) {
          if (!st->complete) Abandon(*st);
        });
  }

  // POST /v1/moderations (OpenAI's shape): each input classified by the guard, with per-category scores.
  void Moderations(const Request& req, Response& res) {
    if (auto e = Gate(req, true)) return ReplyError(res, *e);
    if (!model.guard) {
      return ReplyError(res, BadRequest("moderation needs a guard model: start herd serve with --guard", "model",
                                        "moderation_not_available"));
    }
    json body;
    if (auto e = ParseJsonBody(req.body, &body)) return ReplyError(res, *e);
    std::vector<std::string> inputs;
    auto input = body.find("input");
    if (input != body.end() && input->is_string()) {
      inputs.push_back(input->get<std::string>());
    } else if (input != body.end() && input->is_array() && !input->empty() && input->size() <= 32) {
      for (const auto& i : *input) {
        if (!i.is_string())
          return ReplyError(res, BadRequest("'input' must be a string or a list of strings", "input"));
        inputs.push_back(i.get<std::string>());
      }
    } else {
      return ReplyError(res, BadRequest("'input' must be a string or a list of 1 to 32 strings", "input"));
    }
    ResponseJson results = ResponseJson::array();
    for (const auto& text : inputs) {
      const runtime::GuardMessage m{"user", text, {}};
      auto r = model.guard->Classify(std::span<const runtime::GuardMessage>(&m, 1), model.guard_options, true);
      if (!r.ok()) {
        const bool bad =
            r.status().code() == StatusCode::kInvalidArgument || r.status().code() == StatusCode::kOutOfRange;
        return ReplyError(res, bad ? BadRequest(r.status().message(), "input")
                                   : ApiError{500, "the safety check failed: " + r.status().message(), "server_error",
                                              "", "guard_failed"});
      }
      ResponseJson categories = ResponseJson::object(), scores = ResponseJson::object(), names = ResponseJson::object();
      for (const auto& [code, p] : r->category_scores) {
        categories[code] =
            std::find(r->verdict.categories.begin(), r->verdict.categories.end(), code) != r->verdict.categories.end();
        scores[code] = p;
        for (const auto& c : runtime::GuardCategories()) {
          if (c.code == code) names[code] = c.name;
        }
      }
      results.push_back({{"flagged", r->verdict.unsafe},
                         {"categories", categories},
                         {"category_scores", scores},
                         {"category_names", names},
                         {"p_unsafe", r->score.p_unsafe_2way}});
    }
    std::string id = NewResponseId(ApiKind::kCompletion);
    id.replace(0, 4, "modr");
    ReplyJson(res, 200, {{"id", id}, {"model", model.guard_name}, {"results", results}});
  }

  void Stream(Response& res, std::shared_ptr<RequestState> st, std::shared_ptr<ResponseShaper> shaper,
              std::shared_ptr<InFlight> guard) {
    res.status = 200;
    res.set_header("Cache-Control", "no-cache");
    res.set_header("X-Accel-Buffering", "no");
    auto started = std::make_shared<bool>(false);
    res.set_chunked_content_provider(
        "text/event-stream",
        [this, st, shaper, started](size_t, httplib::DataSink& sink) {
          std::string out;
          if (!*started) {
            out = shaper->StreamHead();
            *started = true;
          }
          for (const runtime::ServingEvent& e : st->Take(Clock::now() + kPollInterval)) {
            out += shaper->StreamEvent(e);
          }
          const bool failed = shaper->failure().has_value();
          if (failed) out += ResponseShaper::StreamError(*shaper->failure());
          if (!failed && shaper->done()) out += shaper->StreamTail();
          // A client that left is noticed by a failed write or, with nothing to write, by a look at the socket
          // (httplib 0.11 does not check it between calls); the releaser then cancels.
          if (out.empty() ? !sink.is_writable() : !sink.write(out.data(), out.size())) return false;
          if (failed || shaper->done()) {
            if (failed && !shaper->done()) Abandon(*st);  // the other choices
            st->complete = true;
            sink.done();
          }
          return true;
        },
        [this, st, guard](bool) {
          if (!st->complete) Abandon(*st);
        });
  }

  void Whole(Response& res, std::shared_ptr<RequestState> st, std::shared_ptr<ResponseShaper> shaper,
             std::shared_ptr<InFlight> guard) {
    auto settled = [&] { return shaper->done() || shaper->failure().has_value(); };
    const auto deadline = Clock::now() + kCommitWait;
    while (!settled() && Clock::now() < deadline) {
      for (const runtime::ServingEvent& e : st->Take(deadline)) shaper->Add(e);
    }
    if (settled()) {
      st->complete = true;
      if (!shaper->done()) Abandon(*st);
      if (shaper->failure()) return ReplyError(res, *shaper->failure());
      return ReplyJson(res, 200, shaper->Body());
    }
    // Still generating: commit the 200 and write the body when done, looking at the socket meanwhile so that a
    // client that left is noticed.
    res.status = 200;
    res.set_chunked_content_provider(
        "application/json",
        [this, st, shaper](size_t, httplib::DataSink& sink) {
          for (const runtime::ServingEvent& e : st->Take(Clock::now() + kPollInterval)) shaper->Add(e);
          if (!shaper->done() && !shaper->failure()) return sink.is_writable();
          if (!shaper->done()) Abandon(*st);
          const std::string body = Dump(shaper->failure() ? shaper->failure()->ToJson() : shaper->Body());
          if (!sink.write(body.data(), body.size())) return false;
          st->complete = true;
          sink.done();
          return true;
        },
        [this, st, guard](bool) {
          if (!st->complete) Abandon(*st);
        });
  }

  void MethodNotAllowed(const Request& req, Response& res, const char* allowed) {
    res.set_header("Allow", allowed);
    ReplyError(res, ApiError{405, "Method " + req.method + " is not allowed for " + req.path + " (use " + allowed + ")",
                             "invalid_request_error", "", "method_not_allowed"});
  }

  std::mutex seed_mu_;
  std::mt19937_64 seed_rng_;
};

void HttpServer::Impl::Install() {
  using HR = httplib::Server::HandlerResponse;
  svr.new_task_queue = [this] { return new GrowingPool(static_cast<size_t>(std::max(1, options_.max_http_threads))); };
  svr.set_read_timeout(options_.io_timeout_s, 0);
  svr.set_write_timeout(options_.io_timeout_s, 0);
  svr.set_keep_alive_max_count(1000);
  // An idle connection holds a worker that polls it (and delays Stop) until this timeout; clients see it in the
  // Keep-Alive header and close first.
  svr.set_keep_alive_timeout(kKeepAliveSeconds);
  svr.set_payload_max_length(static_cast<size_t>(options_.max_body_bytes));
  svr.set_tcp_nodelay(true);
  // httplib's default also sets SO_REUSEPORT, which would let a second server bind the same port.
  svr.set_socket_options([](socket_t sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  // Responses are never compressed: httplib would gzip an SSE stream into buffered blocks. The request object is
  // httplib's own non-const one, handed to this hook as const.
  svr.set_pre_routing_handler([](const Request& req, Response&) {
    const_cast<Request&>(req).headers.erase("Accept-Encoding");
    return HR::Unhandled;
  });
  svr.set_logger([this](const Request& req, const Response& res) {
    std::lock_guard lock(counts_mu);
    ++counts[{RouteLabel(req.path), res.status}];
  });
  svr.set_exception_handler([](const Request&, Response& res, std::exception_ptr) {
    ReplyError(res, ApiError{500, "internal error", "server_error", "", "internal_error"});
  });
  // Errors httplib produces itself (unknown route, body too large, malformed HTTP) get OpenAI's shape too.
  svr.set_error_handler(httplib::Server::HandlerWithResponse([this](const Request& req, Response& res) {
    if (!res.body.empty() || res.content_provider_) return HR::Unhandled;
    ApiError e{res.status, "", "invalid_request_error", "", ""};
    if (res.status == 404) {
      e.message = "Invalid URL (" + req.method + " " + req.path + ")";
      e.code = "not_found";
    } else if (res.status == 413) {
      e.message =
          "the request body is larger than " + std::to_string(options_.max_body_bytes >> 20) + " MiB (--max-body-mib)";
      e.code = "request_too_large";
    } else {
      e.message = "HTTP error " + std::to_string(res.status);
      if (res.status >= 500) e.type = "server_error";
    }
    ReplyJson(res, e.http_status, e.ToJson());
    return HR::Handled;
  }));

  auto gen = [this](ApiKind kind) {
    return [this, kind](const Request& req, Response& res) { Generate(req, res, kind); };
  };
  std::map<std::string, httplib::Server::Handler> handlers = {
      {"/health", [this](const Request& q, Response& r) { Health(q, r); }},
      {"/v1/health", [this](const Request& q, Response& r) { Health(q, r); }},
      {"/metrics", [this](const Request& q, Response& r) { Metrics(q, r); }},
      {"/v1/models", [this](const Request& q, Response& r) { Models(q, r); }},
      {"/models", [this](const Request& q, Response& r) { Models(q, r); }},
      {"/v1/chat/completions", gen(ApiKind::kChatCompletion)},
      {"/chat/completions", gen(ApiKind::kChatCompletion)},
      {"/v1/completions", gen(ApiKind::kCompletion)},
      {"/completions", gen(ApiKind::kCompletion)},
      {"/tokenize", [this](const Request& q, Response& r) { Tokenize(q, r); }},
      {"/detokenize", [this](const Request& q, Response& r) { Detokenize(q, r); }},
      {"/v1/moderations", [this](const Request& q, Response& r) { Moderations(q, r); }},
  };
  for (const RouteSpec& route : kRoutes) {
    const std::string method = route.method;
    const char* allowed = route.method;
    auto wrong = [this, allowed](const Request& q, Response& r) { MethodNotAllowed(q, r, allowed); };
    const httplib::Server::Handler& h = handlers.at(route.path);
    svr.Get(route.path, method == "GET" ? h : wrong);
    svr.Post(route.path, method == "POST" ? h : wrong);
    svr.Put(route.path, wrong);
    svr.Patch(route.path, wrong);
    svr.Delete(route.path, wrong);
    svr.Options(route.path, wrong);
  }
  svr.Get(R"(/v1/models/(.+))", [this](const Request& q, Response& r) { OneModel(q, r); });
}

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

HttpServer::~HttpServer() { Stop(0); }

Result<std::unique_ptr<HttpServer>> HttpServer::Create(const ServerOptions& options) {
  ::signal(SIGPIPE, SIG_IGN);
  auto impl = std::make_unique<Impl>(options);
  impl->Install();
  int port = options.port;
  if (options.port == 0) {
    port = impl->svr.bind_to_any_port(options.host);
    if (port < 0) port = 0;
  } else if (!impl->svr.bind_to_port(options.host, options.port)) {
    port = 0;
  }
  if (port <= 0) {
    return InvalidArgument("cannot listen on " + options.host + ":" + std::to_string(options.port) +
                           " (--host/--port: the port is in use, the host is no address of this machine, or the "
                           "port is privileged)");
  }
  impl->svr.WidenBacklog(kListenBacklog);
  impl->port = port;
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl)));
}

int HttpServer::port() const { return impl_->port; }

Status HttpServer::Start() {
  Impl& m = *impl_;
  m.thread = std::thread([&m] {
    m.svr.listen_after_bind();
    m.listen_ended = true;
  });
  // Stop() must find the accept loop running (httplib's stop() does nothing before it runs).
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  while (!m.svr.is_running() && !m.listen_ended.load() && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (!m.svr.is_running()) return Internal("the HTTP server's accept loop did not start");
  return Status::Ok();
}

void HttpServer::SetReady(runtime::ServingEngine* engine, ModelInfo model) {
  impl_->engine = engine;
  impl_->model = std::move(model);
  impl_->ready = true;
}

void HttpServer::BeginDrain() { impl_->draining = true; }

void HttpServer::Stop(double wait_ms) {
  Impl& m = *impl_;
  if (m.stopped) return;
  m.stopped = true;
  const auto deadline = Clock::now() + std::chrono::microseconds(static_cast<int64_t>(wait_ms * 1000));
  while (m.in_flight.load() > 0 && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (m.thread.joinable()) {
    // Start() saw the accept loop running, so stop() acts (once: a second call would find no socket). The
    // thread ends when the open connections have (idle keep-alive ones within kKeepAliveSeconds).
    m.svr.stop();
    m.thread.join();
  }
}

std::map<std::pair<std::string, int>, int64_t> HttpServer::RequestCounts() const {
  std::lock_guard lock(impl_->counts_mu);
  return impl_->counts;
}

int64_t HttpServer::in_flight() const { return impl_->in_flight.load(); }

}  // namespace herd::server
