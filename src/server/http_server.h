// The HTTP front of `herd serve` (cpp-httplib): OpenAI's /v1/chat/completions, /v1/completions and /v1/models,
// llama.cpp's /health, /tokenize and /detokenize, and Prometheus /metrics, over a runtime::ServingEngine.
//
// Threading: httplib's accept thread hands each connection to a worker of a growing pool (one thread per open
// connection, up to max_http_threads, kept once started), so every streaming client has a thread that waits on
// its own request's event queue. The engine's sink only appends to that queue (mutex + condition variable) and
// never blocks. A client that goes away (a failed write, a closed socket noticed between chunks, polled every
// 100 ms) has its request cancelled at once; a non-streaming request is answered directly when it finishes
// within 500 ms, else with a 200 whose JSON body follows when done, the connection watched meanwhile.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>

#include "core/status.h"
#include "runtime/serving.h"
#include "server/api.h"

namespace herd::server {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;      // 0: any free port (see HttpServer::port)
  std::string api_key;  // empty: no authentication; else every route but /health needs "Bearer KEY"
  int64_t max_body_bytes = int64_t{64} << 20;  // larger bodies: 413
  int max_http_threads = 1024;                 // connections served at once; more wait for a free thread
  int io_timeout_s = 30;                       // socket read and write timeout
};

class HttpServer {
 public:
  // Binds the socket (nothing is served until Start). Ignores SIGPIPE for the process (httplib writes with plain
  // send()). InvalidArgument when the address cannot be bound (in use, not local, privileged).
  static Result<std::unique_ptr<HttpServer>> Create(const ServerOptions& options);
  ~HttpServer();  // Stop(0)

  // The bound port (the real one for port 0).
  int port() const;
  // Serves on a thread of its own. Until SetReady, /health answers 503 {"status": "loading"} and the API 503.
  // Internal when httplib's accept loop does not start.
  Status Start();
  // From now on serves `engine` for `model`. Both must outlive Stop(); call at most once.
  void SetReady(runtime::ServingEngine* engine, ModelInfo model);
  // New API requests get 503 "shutting_down" and /health 503 {"status": "draining"}; running ones go on.
  void BeginDrain();
  // Waits up to wait_ms for the generation responses in flight to be written, then stops serving and joins the
  // thread. Idempotent.
  void Stop(double wait_ms);

  // Responses written so far by route and status code (the numbers /metrics reports).
  std::map<std::pair<std::string, int>, int64_t> RequestCounts() const;
  // Generation requests whose response is not yet written.
  int64_t in_flight() const;

 private:
  class Impl;
  explicit HttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace herd::server
