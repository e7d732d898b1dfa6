// herd bench-serve: a load generator for an OpenAI-compatible server (herd serve, or any other), in the manner of
// vLLM's benchmark_serving: streamed /v1/completions requests with fixed output lengths ("ignore_eos": true),
// sent all at once, with at most --concurrency in flight, or at Poisson arrivals of --rate requests/s; prompts of
// random token ids (or lines of --prompts-file). Reports request and token throughput and, with vLLM's names and
// definitions, TTFT (time to the first streamed text), TPOT ((latency - TTFT) / (output tokens - 1) per request)
// and ITL (every gap between streamed chunks): mean, median and p99. With -m it starts `herd serve --port 0` as a
// child process, waits for its "listening on" line and /health, and stops it (SIGTERM) at the end.
#include <fcntl.h>
#include <httplib.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>
#include <vector>

#include "cli/common.h"
#include "core/file.h"
#include "core/json.h"

extern char** environ;

namespace herd::cli {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

struct BenchServeOptions {
  std::string url;
  CommonOptions common;  // -m: start a server
  int parallel = 0;      // --parallel of the started server (0: its default)
  std::vector<std::string> serve_args;
  std::string api_key;
  int64_t n_requests = 100;
  int64_t concurrency = 0;  // 0: no limit
  double rate = 0;          // requests/s; 0: all at once
  int64_t prompt_tokens = 128;
  int64_t output_tokens = 128;
  std::string prompts_file;
  bool json = false;
  std::optional<uint64_t> seed;
};

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// ---- the server child (-m) ----

class ServerChild {
 public:
  ~ServerChild() { Stop(); }

  // Starts `herd serve ... --port 0` and waits for its listening line. The child's stderr is kept (the last lines,
  // for messages) and otherwise discarded.
  Status Start(const BenchServeOptions& o) {
    char self[4096];
    const ssize_t len = ::readlink("/proc/self/exe", self, sizeof self - 1);
    if (len <= 0) return IOError("cannot find the herd binary (/proc/self/exe)");
    self[len] = '\0';
    std::vector<std::string> args = {self, "serve", "-m", o.common.model, "--port", "0", "--host", "127.0.0.1"};
    if (!o.common.tokenizer.empty()) args.insert(args.end(), {"--tokenizer", o.common.tokenizer});
    if (o.common.threads > 0) args.insert(args.end(), {"-t", std::to_string(o.common.threads)});
    if (o.common.ctx > 0) args.insert(args.end(), {"-c", std::to_string(o.common.ctx)});
    if (o.common.repack == runtime::RepackMode::kAlways) args.push_back("--repack");
    if (o.common.repack == runtime::RepackMode::kNever) args.push_back("--no-repack");
    if (o.parallel > 0) args.insert(args.end(), {"--parallel", std::to_string(o.parallel)});
    if (!o.api_key.empty()) args.insert(args.end(), {"--api-key", o.api_key});
    args.insert(args.end(), o.serve_args.begin(), o.serve_args.end());
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);

    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) return IOError("pipe failed");
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], STDERR_FILENO);
    posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
    const int rc = ::posix_spawn(&pid_, self, &fa, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    ::close(fds[1]);
    if (rc != 0) {
      ::close(fds[0]);
      pid_ = -1;
      return IOError(std::string("cannot start herd serve: ") + std::strerror(rc));
    }
    fd_ = fds[0];
    // Lines until "herd: listening on URL".
    std::string line;
    char c;
    while (::read(fd_, &c, 1) == 1) {
      if (c != '\n') {
        line += c;
        continue;
      }
      Keep(line);
      const std::string prefix = "herd: listening on ";
      if (line.rfind(prefix, 0) == 0) {
        url_ = line.substr(prefix.size());
        reader_ = std::thread([this] { Drain(); });
        return Status::Ok();
      }
      line.clear();
    }
    return Unavailable("herd serve ended before listening: " + Tail());
  }

  const std::string& url() const { return url_; }
  bool running() {
    if (pid_ <= 0) return false;
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return false;
    }
    return true;
  }
  std::string Tail() {
    std::lock_guard lock(mu_);
    std::string out;
    for (const std::string& l : tail_) out += (out.empty() ? "" : " | ") + l;
    return out.empty() ? "(no output)" : out;
  }

  // SIGTERM, then SIGKILL after 15 s.
  void Stop() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      const auto deadline = Clock::now() + std::chrono::seconds(15);
      int status = 0;
      while (::waitpid(pid_, &status, WNOHANG) == 0) {
        if (Clock::now() > deadline) {
          ::kill(pid_, SIGKILL);
          ::waitpid(pid_, &status, 0);
          break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
      pid_ = -1;
    }
    if (reader_.joinable()) reader_.join();  // ends at EOF: the child is gone
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  static Status Unavailable(std::string m) { return Status(StatusCode::kUnavailable, std::move(m)); }
  void Keep(const std::string& line) {
    std::lock_guard lock(mu_);
    tail_.push_back(line);
    if (tail_.size() > 8) tail_.erase(tail_.begin());
  }
  void Drain() {
    std::string line;
    char buf[4096];
    ssize_t n;
    while ((n = ::read(fd_, buf, sizeof buf)) > 0) {
      for (ssize_t i = 0; i < n; ++i) {
        if (buf[i] == '\n') {
          Keep(line);
          line.clear();
        } else {
          line += buf[i];
        }
      }
    }
  }

  pid_t pid_ = -1;
  int fd_ = -1;
  std::string url_;
  std::thread reader_;
  std::mutex mu_;
  std::vector<std::string> tail_;
};

// ---- requests ----

struct Outcome {
  bool ok = false;
  std::string error;
  double ttft = 0, latency = 0;  // seconds
  std::vector<double> itl;       // seconds between streamed chunks with text
  int64_t prompt_tokens = 0, output_tokens = 0;
};

// Reading a server's JSON, which is not trusted: each accessor gives null (or the default) for a missing member or
// another type, never an exception.
const json* Member(const json* j, const char* key) {
  if (!j || !j->is_object()) return nullptr;
  auto it = j->find(key);
  return it == j->end() ? nullptr : &*it;
}
const json* Element(const json* j, size_t i) { return j && j->is_array() && i < j->size() ? &(*j)[i] : nullptr; }
std::string StringOr(const json* j, std::string fallback) {
  return j && j->is_string() ? j->get<std::string>() : fallback;
}
int64_t IntOr(const json* j, int64_t fallback) { return j && j->is_number_integer() ? j->get<int64_t>() : fallback; }

httplib::Headers AuthHeaders(const std::string& key) {
  if (key.empty()) return {};
  return {{"Authorization", "Bearer " + key}};
}

// Sends one streamed completion and times its chunks.
Outcome Send(httplib::Client& cli, const std::string& api_key, const json& body) {
  Outcome out;
  httplib::Request req;
  req.method = "POST";
  req.path = "/v1/completions";
  req.headers = AuthHeaders(api_key);
  req.set_header("Content-Type", "application/json");
  req.body = body.dump();
  std::string buffer;
  const Clock::time_point start = Clock::now();
  Clock::time_point last;
  bool first = true, done = false;
  req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
    const Clock::time_point now = Clock::now();
    buffer.append(data, n);
    size_t end;
    while ((end = buffer.find("\n\n")) != std::string::npos) {
      const std::string event = buffer.substr(0, end);
      buffer.erase(0, end + 2);
      if (event.rfind("data: ", 0) != 0) continue;
      const std::string payload = event.substr(6);
      if (payload == "[DONE]") {
        done = true;
        continue;
      }
      const json chunk = ParseJsonBounded(payload);
      if (const json* error = Member(&chunk, "error")) {
        out.error = StringOr(Member(error, "message"), "an error event");
        return false;
      }
      if (const json* usage = Member(&chunk, "usage")) {
        out.prompt_tokens = IntOr(Member(usage, "prompt_tokens"), out.prompt_tokens);
        out.output_tokens = IntOr(Member(usage, "completion_tokens"), out.output_tokens);
      }
      if (StringOr(Member(Element(Member(&chunk, "choices"), 0), "text"), "").empty()) continue;
      if (first) {
        out.ttft = Seconds(now - start);
        first = false;
      } else {
        out.itl.push_back(Seconds(now - last));
      }
      last = now;
    }
    return true;
  };
  httplib::Response res;
  httplib::Error err = httplib::Error::Success;
  const bool sent = cli.send(req, res, err);
  out.latency = Seconds(Clock::now() - start);
  if (!out.error.empty()) return out;
  if (!sent) {
    out.error = "HTTP request failed: " + httplib::to_string(err);
  } else if (res.status != 200) {
    const json e = ParseJsonBounded(res.body);
    out.error =
        "HTTP " + std::to_string(res.status) + ": " + StringOr(Member(Member(&e, "error"), "message"), res.body);
  } else if (!done) {
    out.error = "the stream ended without [DONE]";
  } else if (first) {
    out.error = "no text was streamed";
  } else {
    out.ok = true;
  }
  return out;
}

// ---- statistics ----

// numpy.percentile's default (linear interpolation between the closest ranks).
double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const double rank = p / 100.0 * static_cast<double>(v.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(rank));
  const size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (rank - static_cast<double>(lo));
}

double Mean(const std::vector<double>& v) {
  if (v.empty()) return 0;
  double s = 0;
  for (double x : v) s += x;
  return s / static_cast<double>(v.size());
}

Result<std::vector<std::string>> ReadPrompts(const std::string& path) {
  HERD_ASSIGN_OR_RETURN(std::string text, ReadTextInput(path, uint64_t{256} << 20));
  std::vector<std::string> prompts;
  size_t at = 0;
  while (at <= text.size()) {
    size_t end = text.find('\n', at);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(at, end - at);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (!line.empty()) prompts.push_back(std::move(line));
    at = end + 1;
  }
  if (prompts.empty()) return InvalidArgument("--prompts-file " + path + " holds no prompt (one per line)");
  return prompts;
}

Status CmdBenchServe(const BenchServeOptions& o) {
  if (!o.url.empty() && !o.common.model.empty()) return InvalidArgument("give one of --url and -m");
  if (o.rate < 0 || !std::isfinite(o.rate)) return InvalidArgument("--rate must be a positive number");
  std::vector<std::string> file_prompts;
  if (!o.prompts_file.empty()) {
    HERD_ASSIGN_OR_RETURN(file_prompts, ReadPrompts(o.prompts_file));
  }
  const uint64_t seed = o.seed ? *o.seed : std::random_device{}();

  ServerChild child;
  std::string url = o.url.empty() ? "http://127.0.0.1:8080" : o.url;
  if (!o.common.model.empty()) {
    HERD_RETURN_IF_ERROR(child.Start(o));
    url = child.url();
    if (!o.json) std::fprintf(stderr, "herd: started herd serve at %s\n", url.c_str());
  }
  httplib::Client probe(url);
  if (!probe.is_valid()) return InvalidArgument("--url '" + url + "' is not an http URL");
  probe.set_connection_timeout(5, 0);
  probe.set_read_timeout(30, 0);
  // Wait until the model is loaded (the child's /health says "loading" before).
  for (;;) {
    auto r = probe.Get("/health");
    if (r && r->status == 200) break;
    if (!o.common.model.empty() && !child.running()) {
      return Status(StatusCode::kUnavailable, "herd serve ended while loading: " + child.Tail());
    }
    if (o.common.model.empty() && !(r && r->status == 503)) {
      return Status(StatusCode::kUnavailable,
                    "no server at " + url + " (" +
                        (r ? "HTTP " + std::to_string(r->status) : httplib::to_string(r.error())) + ")");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  auto models = probe.Get("/v1/models", AuthHeaders(o.api_key));
  if (!models || models->status != 200) {
    return Status(StatusCode::kUnavailable,
                  "GET " + url + "/v1/models failed: " +
                      (models ? "HTTP " + std::to_string(models->status) : httplib::to_string(models.error())));
  }
  const json mj = ParseJsonBounded(models->body);
  const json* first_model = Element(Member(&mj, "data"), 0);
  if (!first_model) return Status(StatusCode::kUnavailable, "GET /v1/models returned no model: " + models->body);
  const std::string model_id = StringOr(Member(first_model, "id"), "");
  const int64_t vocab = IntOr(Member(Member(first_model, "meta"), "vocab_size"), 0);
  if (file_prompts.empty() && vocab <= 0) {
    return InvalidArgument(
        "the server does not say its vocabulary size (/v1/models meta.vocab_size); give --prompts-file");
  }

  // The requests and their arrival times.
  std::mt19937_64 rng(seed);
  std::vector<json> bodies;
  std::vector<double> arrival;
  double t = 0;
  std::exponential_distribution<double> gap(o.rate > 0 ? o.rate : 1.0);
  std::uniform_int_distribution<int64_t> token(0, std::max<int64_t>(0, vocab - 1));
  for (int64_t i = 0; i < o.n_requests; ++i) {
    json body = {{"model", model_id},
                 {"max_tokens", o.output_tokens},
                 {"temperature", 0},
                 {"stream", true},
                 {"stream_options", {{"include_usage", true}}},
                 {"ignore_eos", true}};
    if (!file_prompts.empty()) {
      body["prompt"] = file_prompts[static_cast<size_t>(i) % file_prompts.size()];
    } else {
      std::vector<int64_t> ids(static_cast<size_t>(o.prompt_tokens));
      for (int64_t& id : ids) id = token(rng);
      body["prompt"] = ids;
    }
    bodies.push_back(std::move(body));
    arrival.push_back(t);
    if (o.rate > 0) t += gap(rng);
  }

  const int64_t limit = o.concurrency > 0 ? o.concurrency : o.n_requests;
  const int64_t n_workers = std::clamp<int64_t>(std::min(limit, o.n_requests), 1, 1024);
  std::vector<Outcome> outcomes(static_cast<size_t>(o.n_requests));
  std::atomic<int64_t> next{0};
  const Clock::time_point start = Clock::now();
  std::vector<std::thread> workers;
  for (int64_t w = 0; w < n_workers; ++w) {
    workers.emplace_back([&] {
      httplib::Client cli(url);
      cli.set_connection_timeout(30, 0);
      cli.set_read_timeout(3600, 0);
      cli.set_write_timeout(60, 0);
      for (;;) {
        const int64_t i = next++;
        if (i >= o.n_requests) return;
        std::this_thread::sleep_until(start + std::chrono::duration_cast<Clock::duration>(
                                                  std::chrono::duration<double>(arrival[static_cast<size_t>(i)])));
        outcomes[static_cast<size_t>(i)] = Send(cli, o.api_key, bodies[static_cast<size_t>(i)]);
      }
    });
  }
  for (std::thread& w : workers) w.join();
  const double duration = Seconds(Clock::now() - start);
  child.Stop();

  int64_t completed = 0, input = 0, output = 0;
  std::vector<double> ttft, tpot, itl;
  std::vector<std::string> errors;
  for (const Outcome& r : outcomes) {
    if (!r.ok) {
      if (errors.size() < 5) errors.push_back(r.error);
      continue;
    }
    ++completed;
    input += r.prompt_tokens;
    output += r.output_tokens;
    ttft.push_back(r.ttft * 1000);
    if (r.output_tokens > 1) tpot.push_back((r.latency - r.ttft) * 1000 / static_cast<double>(r.output_tokens - 1));
    for (double x : r.itl) itl.push_back(x * 1000);
  }
  const int64_t failed = o.n_requests - completed;
  json report = {{"url", url},
                 {"model", model_id},
                 {"completed", completed},
                 {"failed", failed},
                 {"duration_s", duration},
                 {"total_input_tokens", input},
                 {"total_output_tokens", output},
                 {"request_throughput", completed / duration},
                 {"output_throughput", static_cast<double>(output) / duration},
                 {"total_token_throughput", static_cast<double>(input + output) / duration},
                 {"concurrency", o.concurrency},
                 {"rate", o.rate},
                 {"seed", seed},
                 {"errors", errors}};
  for (const auto& [name, v] :
       {std::pair<const char*, const std::vector<double>*>{"ttft", &ttft}, {"tpot", &tpot}, {"itl", &itl}}) {
    report[std::string("mean_") + name + "_ms"] = Mean(*v);
    report[std::string("median_") + name + "_ms"] = Percentile(*v, 50);
    report[std::string("p99_") + name + "_ms"] = Percentile(*v, 99);
  }
  if (o.json) {
    std::printf("%s\n", report.dump().c_str());
  } else {
    auto row = [](const char* label, const std::string& value) { std::printf("%-40s %s\n", label, value.c_str()); };
    auto num = [](double v, int digits = 2) {
      char buf[64];
      std::snprintf(buf, sizeof buf, "%.*f", digits, v);
      return std::string(buf);
    };
    std::printf("============ Serving Benchmark Result ============\n");
    row("Successful requests:", std::to_string(completed));
    row("Failed requests:", std::to_string(failed));
    row("Benchmark duration (s):", num(duration));
    row("Total input tokens:", std::to_string(input));
    row("Total generated tokens:", std::to_string(output));
    row("Request throughput (req/s):", num(completed / duration));
    row("Output token throughput (tok/s):", num(static_cast<double>(output) / duration));
    row("Total Token throughput (tok/s):", num(static_cast<double>(input + output) / duration));
    const struct {
      const char* title;
      const char* key;
      const char* label;
    } sections[] = {{"---------------Time to First Token----------------", "ttft", "TTFT"},
                    {"-----Time per Output Token (excl. 1st token)------", "tpot", "TPOT"},
                    {"---------------Inter-token Latency----------------", "itl", "ITL"}};
    for (const auto& s : sections) {
      std::printf("%s\n", s.title);
      for (const char* stat : {"mean", "median", "p99"}) {
        const std::string label = std::string(stat == std::string("mean")     ? "Mean"
                                              : stat == std::string("median") ? "Median"
                                                                              : "P99") +
                                  " " + s.label + " (ms):";
        row(label.c_str(), num(report[std::string(stat) + "_" + s.key + "_ms"].get<double>()));
      }
    }
    std::printf("==================================================\n");
    for (const std::string& e : errors) std::fprintf(stderr, "herd: a request failed: %s\n", e.c_str());
  }
  if (completed == 0)
    return Status(StatusCode::kUnavailable,
                  "every request failed (" + (errors.empty() ? std::string("no error message") : errors[0]) + ")");
  return Status::Ok();
}

}  // namespace

Command AddBenchServeCommand(CLI::App& app) {
  auto o = std::make_shared<BenchServeOptions>();
  auto* cmd = app.add_subcommand("bench-serve",
                                 "load-test an OpenAI-compatible server: throughput, TTFT, TPOT, ITL (vLLM's names)");
  auto* url = cmd->add_option("--url", o->url, "server to test (default http://127.0.0.1:8080)");
  AddModelOptions(cmd, &o->common, /*model_required=*/false);
  cmd->get_option("-m")->description("start `herd serve --port 0` on this model for the benchmark (instead of --url)");
  cmd->get_option("-m")->excludes(url);
  cmd->add_option("--parallel", o->parallel, "--parallel of the server started with -m")->check(CLI::Range(1, 4096));
  cmd->add_option("--serve-arg", o->serve_args,
                  "one more argument for the server started with -m (repeatable: --serve-arg=--kv-type "
                  "--serve-arg=q8_0)")
      ->allow_extra_args(false);
  cmd->add_option("--api-key", o->api_key, "send 'Authorization: Bearer KEY'");
  cmd->add_option("-n,--requests", o->n_requests, "requests to send")->check(CLI::Range(int64_t{1}, int64_t{1} << 24));
  cmd->add_option("--concurrency", o->concurrency, "requests in flight at most (default: no limit)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  cmd->add_option("--rate", o->rate, "Poisson arrivals at this many requests/s (default: all at once)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--prompt-tokens", o->prompt_tokens, "random prompt tokens per request")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 24));
  cmd->add_option("--output-tokens", o->output_tokens, "tokens generated per request (ignore_eos)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 24));
  cmd->add_option("--prompts-file", o->prompts_file, "prompts, one per line (instead of random token ids)");
  cmd->add_flag("--json", o->json, "one JSON object instead of the table");
  AddSeedOption(cmd, &o->seed, "seed of the random prompts and arrivals (default: random, in the report)");
  return {cmd, [o] { return CmdBenchServe(*o); }};
}

}  // namespace herd::cli
