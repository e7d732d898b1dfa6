// herd serve: the OpenAI-compatible HTTP server (server/http_server.h) over a runtime::ServingEngine. It listens
// before loading the model, so that /health can say "loading", prints "herd: listening on http://HOST:PORT" on
// stderr (the real port for --port 0), and on SIGINT/SIGTERM stops taking requests, lets the engine finish what
// runs for up to --drain-s seconds, stops the HTTP server and exits 0.
#include <pthread.h>
#include <signal.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <cinttypes>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <mutex>
#include <thread>

#include "cli/common.h"
#include "core/file.h"
#include "runtime/chat.h"
#include "runtime/guard.h"
#include "runtime/images.h"
#include "runtime/serving.h"
#include "server/http_server.h"

namespace herd::cli {
namespace {

struct ServeOptions {
  CommonOptions common;
  std::string host = "127.0.0.1";
  int port = 8080;
  int parallel = 4;
  int64_t kv_mib = 0;
  std::string api_key;
  std::string api_key_file;
  std::string alias;
  int64_t max_body_mib = 64;
  double drain_s = 30;
  int64_t max_queue = 256;
  int64_t step_tokens = 512;
  int64_t max_tiles = runtime::kDefaultMaxTiles;
  int64_t max_images = 16;
  std::string guard;            // a Llama Guard 4 model screening requests
  std::string guard_tokenizer;  // its tokenizer, when the file has none
  bool guard_output = false;
  std::string guard_categories;  // comma-separated codes
};

// Images of chat requests, when the model has a vision tower: decoded and laid out by the API (server/api.h), encoded
// here on the request's HTTP thread, one request at a time, on a pool as large as the engine's.
class ImageEncoder {
 public:
  ImageEncoder(const runtime::LoadedModel& m, std::unique_ptr<ThreadPool> pool, int64_t max_tiles)
      : m_(m), pool_(std::move(pool)), max_tiles_(max_tiles) {}

  Result<runtime::PromptEmbeds> Encode(std::span<const vision::Image> images, std::span<const int32_t> prompt) {
    std::lock_guard lock(mu_);
    HERD_ASSIGN_OR_RETURN(runtime::EncodedImages enc, runtime::EncodeImages(m_, images, max_tiles_, *pool_));
    return runtime::ImageEmbeds(m_, prompt, std::move(enc));
  }

 private:
  const runtime::LoadedModel& m_;
  std::unique_ptr<ThreadPool> pool_;
  int64_t max_tiles_;
  std::mutex mu_;
};

// The API's image input for `m`, or why there is none (*reason).
Result<std::optional<server::ImageInput>> ImageInputFor(const ServeOptions& o, const runtime::LoadedModel& m,
                                                        std::shared_ptr<ImageEncoder>* encoder, std::string* reason) {
  if (m.vision == nullptr) {
    *reason = m.vision_error.ok() ? "this model has no vision tower (start the server with --mmproj FILE)"
                                  : "the vision tower did not load (" + m.vision_error.message() + ")";
    return std::optional<server::ImageInput>();
  }
  const runtime::ImageTokenIdsOf ids = runtime::ImageTokenIdsFor(m);
  if (!ids.all) {
    *reason = "the tokenizer lacks Llama 4's image tokens";
    return std::optional<server::ImageInput>();
  }
  HERD_ASSIGN_OR_RETURN(std::unique_ptr<ThreadPool> pool, ThreadPool::Create(o.common.threads));
  *encoder = std::make_shared<ImageEncoder>(m, std::move(pool), o.max_tiles);
  server::ImageInput in;
  in.tile_size = m.vision->TileSize();
  in.patches_per_tile = m.vision->TokensPerTile();
  in.ids = *ids.all;
  in.max_tiles = o.max_tiles;
  in.max_images = o.max_images;
  in.limits.max_pixels = int64_t{1} << 24;  // 16 Mpixel per image: a request holds its images decoded
  in.encode = [e = *encoder](std::span<const vision::Image> images, std::span<const int32_t> prompt) {
    return e->Encode(images, prompt);
  };
  return std::optional<server::ImageInput>(std::move(in));
}

// The name clients use: --alias, else the model file's (or directory's) name.
std::string ServedName(const ServeOptions& o) {
  if (!o.alias.empty()) return o.alias;
  std::filesystem::path p(o.common.model);
  if (!p.has_filename()) p = p.parent_path();
  return p.filename().string();
}

Result<std::string> ApiKey(const ServeOptions& o) {
  if (o.api_key_file.empty()) return o.api_key;
  HERD_ASSIGN_OR_RETURN(std::string text, ReadFileToString(o.api_key_file, 64 << 10));
  const size_t end = text.find_first_of("\r\n");
  std::string key = text.substr(0, end);
  while (!key.empty() && (key.back() == ' ' || key.back() == '\t')) key.pop_back();
  if (key.empty()) return InvalidArgument("--api-key-file " + o.api_key_file + ": the first line holds no key");
  return key;
}

std::string Url(const std::string& host, int port) {
  const bool v6 = host.find(':') != std::string::npos;
  return "http://" + (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

// SIGINT and SIGTERM, taken by a thread of their own (blocked everywhere else: every thread inherits the mask of
// the thread that starts it, so this is set up before any other thread exists).
class SignalWatcher {
 public:
  SignalWatcher() {
    sigemptyset(&set_);
    sigaddset(&set_, SIGINT);
    sigaddset(&set_, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set_, &old_);
    thread_ = std::thread([this] { Watch(); });
  }
  ~SignalWatcher() {
    quit_ = true;
    thread_.join();
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  // Waits for the first signal; returns its name.
  const char* Wait() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return signal_ != 0; });
    return signal_ == SIGINT ? "SIGINT" : "SIGTERM";
  }
  // Before the model is loaded a signal ends the process at once (loading cannot be interrupted and nothing is
  // being served); so does a second signal while draining.
  void set_exit_on_signal(bool v) { exit_on_signal_ = v; }

 private:
  void Watch() {
    const timespec poll = {0, 200 * 1000 * 1000};
    while (!quit_) {
      const int sig = sigtimedwait(&set_, nullptr, &poll);
      if (sig <= 0) continue;
      if (exit_on_signal_) {
        std::fprintf(stderr, "herd: %s: exiting\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
        std::_Exit(kExitOk);
      }
      {
        std::lock_guard lock(mu_);
        signal_ = sig;
      }
      cv_.notify_all();
      exit_on_signal_ = true;
    }
  }

  sigset_t set_, old_;
  std::thread thread_;
  std::atomic<bool> quit_{false}, exit_on_signal_{true};
  std::mutex mu_;
  std::condition_variable cv_;
  int signal_ = 0;
};

Status CmdServe(const ServeOptions& o) {
  if (o.alias.find_first_not_of(" \t") == std::string::npos && !o.alias.empty()) {
    return InvalidArgument("--alias must not be blank");
  }
  if (!o.api_key.empty() && !o.api_key_file.empty()) {
    return InvalidArgument("give one of --api-key and --api-key-file");
  }
  HERD_ASSIGN_OR_RETURN(const std::string api_key, ApiKey(o));

  SignalWatcher signals;
  server::ServerOptions so;
  so.host = o.host;
  so.port = o.port;
  so.api_key = api_key;
  so.max_body_bytes = o.max_body_mib << 20;
  so.max_http_threads = static_cast<int>(std::clamp<int64_t>(o.parallel + o.max_queue + 64, 1024, 4096));
  HERD_ASSIGN_OR_RETURN(std::unique_ptr<server::HttpServer> http, server::HttpServer::Create(so));
  HERD_RETURN_IF_ERROR(http->Start());
  std::fprintf(stderr, "herd: listening on %s\n", Url(o.host, http->port()).c_str());

  HERD_ASSIGN_OR_RETURN(std::unique_ptr<runtime::LoadedModel> loaded, Load(o.common, /*require_tokenizer=*/true));
  std::unique_ptr<runtime::LoadedModel> guard_model;
  std::shared_ptr<runtime::GuardClassifier> guard;
  if (!o.guard.empty()) {
    CommonOptions g = o.common;
    g.model = o.guard;
    g.tokenizer = o.guard_tokenizer;
    g.mmproj.clear();
    HERD_ASSIGN_OR_RETURN(guard_model, Load(g, /*require_tokenizer=*/true));
    auto classifier = runtime::GuardClassifier::Create(*guard_model, o.common.threads);
    if (!classifier.ok()) return classifier.status().WithContext("--guard " + o.guard);
    guard = std::move(classifier).value();
    std::fprintf(stderr, "herd: requests%s are screened by %s\n", o.guard_output ? " and replies" : "",
                 o.guard.c_str());
  }
  const model::ModelConfig& config = loaded->model->config();
  HERD_ASSIGN_OR_RETURN(const int64_t n_ctx, ContextSize(o.common, config, 0));
  runtime::ServingOptions eo;
  eo.parallel = o.parallel;
  eo.n_ctx = n_ctx;
  eo.kv_bytes = o.kv_mib << 20;
  eo.kv_type = o.common.kv_type;
  eo.step_tokens = o.step_tokens;
  eo.max_queue = o.max_queue;
  eo.threads = o.common.threads;
  HERD_ASSIGN_OR_RETURN(std::unique_ptr<runtime::ServingEngine> engine, runtime::ServingEngine::Create(*loaded, eo));

  server::ModelInfo info;
  info.id = ServedName(o);
  info.created = static_cast<int64_t>(std::time(nullptr));
  info.vocab_size = config.vocab_size;
  info.n_ctx = n_ctx;
  info.tokenizer = loaded->tokenizer.get();
  if (auto format = runtime::DetectChatFormat(*loaded->tokenizer); format.ok()) {
    info.chat_format = *format;
    info.chat_stop_ids = runtime::ChatStopIds(*loaded->tokenizer, *format);
  }
  if (guard) {
    info.guard = guard;
    info.guard_output = o.guard_output;
    info.guard_name = std::filesystem::path(o.guard).filename().string();
    info.guard_options.categories = runtime::GuardCodeList(o.guard_categories);
    const runtime::GuardMessage probe{"user", "x", {}};
    HERD_RETURN_IF_ERROR(
        runtime::GuardListedCodes(std::span<const runtime::GuardMessage>(&probe, 1), info.guard_options)
            .status()
            .WithContext("--guard-categories"));
  }
  // Structured output: grammars compiled once per distinct schema (the vocabulary's trie is built on first use).
  auto grammars = std::make_shared<runtime::GrammarCache>(*loaded, 32);
  info.grammars = [grammars](runtime::GrammarKind kind, std::string_view text) { return grammars->Get(kind, text); };
  std::shared_ptr<ImageEncoder> encoder;
  HERD_ASSIGN_OR_RETURN(info.images, ImageInputFor(o, *loaded, &encoder, &info.no_images_reason));
  if (!info.images && loaded->vision == nullptr && !loaded->vision_error.ok()) {
    std::fprintf(stderr, "herd: warning: serving text only: %s\n", info.no_images_reason.c_str());
  }
  const std::string name = info.id;
  const bool chat = info.chat_format.has_value();
  const bool images = info.images.has_value();
  http->SetReady(engine.get(), std::move(info));
  signals.set_exit_on_signal(false);
  std::fprintf(
      stderr, "herd: serving %s as '%s' in %.1f ms: context %" PRId64 ", parallel %d, KV %s (%.1f KiB per token)%s%s\n",
      o.common.model.c_str(), name.c_str(), loaded->load_ms, n_ctx, o.parallel, o.common.kv_type.c_str(),
      static_cast<double>(engine->KvBytesPerToken()) / 1024, chat ? "" : ", no chat template",
      images ? (", images (up to " + std::to_string(o.max_tiles) + " tiles each)").c_str() : "");

  const char* sig = signals.Wait();
  std::fprintf(stderr, "herd: %s: draining (up to %g s; another signal exits at once)\n", sig, o.drain_s);
  http->BeginDrain();
  engine->Shutdown(o.drain_s * 1000);
  http->Stop(/*wait_ms=*/5000);
  std::fprintf(stderr, "herd: stopped\n");
  return Status::Ok();
}

}  // namespace

Command AddServeCommand(CLI::App& app) {
  auto o = std::make_shared<ServeOptions>();
  auto* cmd = app.add_subcommand(
      "serve", "OpenAI-compatible HTTP server (/v1/chat/completions, /v1/completions, /v1/models, /health, /metrics)");
  AddModelOptions(cmd, &o->common);
  cmd->add_option("--host", o->host, "address to listen on (default 127.0.0.1: this machine only)");
  cmd->add_option("--port", o->port, "TCP port (0: any free port; the real one is printed)")
      ->check(CLI::Range(0, 65535));
  cmd->add_option("--parallel", o->parallel, "sequences generated at once (continuous batching)")
      ->check(CLI::Range(1, 4096));
  cmd->add_option("--kv-mem", o->kv_mib,
                  "KV cache pool in MiB (default: a quarter of the free memory, at most "
                  "what --parallel sequences of -c tokens need)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 30));
  AddKvTypeOption(cmd, &o->common.kv_type);
  auto* key = cmd->add_option("--api-key", o->api_key, "require 'Authorization: Bearer KEY' (not on /health)");
  auto* key_file = cmd->add_option("--api-key-file", o->api_key_file, "read the API key from the first line of FILE");
  key->excludes(key_file);
  cmd->add_option("--alias", o->alias, "model name served (default: the model file's name)");
  cmd->add_option("--guard", o->guard,
                  "a Llama Guard 4 model: every request's last user message is classified first, and a flagged one "
                  "is answered with a refusal (finish_reason content_filter); also serves POST /v1/moderations");
  cmd->add_option("--guard-tokenizer", o->guard_tokenizer, "the guard model's tokenizer, when its file has none");
  cmd->add_flag("--guard-output", o->guard_output,
                "also screen every reply before it is sent (streamed replies are held back until screened)");
  cmd->add_option("--guard-categories", o->guard_categories,
                  "comma-separated codes the guard checks (S1..S14; default all)");
  cmd->add_option("--max-body-mib", o->max_body_mib, "largest request body in MiB (larger: 413)")
      ->check(CLI::Range(int64_t{1}, int64_t{4096}));
  cmd->add_option("--drain-s", o->drain_s, "seconds running requests may take to finish after SIGINT/SIGTERM")
      ->check(CLI::Range(0.0, 86400.0));
  cmd->add_option("--max-queue", o->max_queue, "waiting requests at most (more: 503 with Retry-After)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 20));
  cmd->add_option("--step-tokens", o->step_tokens, "tokens per engine step at most (decode first, then prefill)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  cmd->add_option("--max-tiles", o->max_tiles, "image tiles per image at most (Meta's max_num_chunks)")
      ->check(CLI::Range(int64_t{1}, int64_t{64}));
  cmd->add_option("--max-images", o->max_images, "images per request at most")
      ->check(CLI::Range(int64_t{1}, int64_t{256}));
  return {cmd, [o] { return CmdServe(*o); }};
}

}  // namespace herd::cli
