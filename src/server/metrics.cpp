// Prometheus text format of the server's metrics (server/metrics.h).
#include "server/metrics.h"

#include <cinttypes>
#include <cstdio>

namespace herd::server {
namespace {

std::string Number(double v) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

void Header(std::string& out, const char* name, const char* type, const char* help) {
  out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
}

void Scalar(std::string& out, const char* name, const char* type, const char* help, double v) {
  Header(out, name, type, help);
  out += std::string(name) + " " + Number(v) + "\n";
}

void Histogram(std::string& out, const char* name, const char* help, const runtime::ServingStats::Histogram& h) {
  Header(out, name, "histogram", help);
  for (size_t i = 0; i < h.bounds.size() && i < h.counts.size(); ++i) {
    out += std::string(name) + "_bucket{le=\"" + Number(h.bounds[i]) + "\"} " + std::to_string(h.counts[i]) + "\n";
  }
  out += std::string(name) + "_bucket{le=\"+Inf\"} " + std::to_string(h.count) + "\n";
  out += std::string(name) + "_sum " + Number(h.sum) + "\n";
  out += std::string(name) + "_count " + std::to_string(h.count) + "\n";
}

// A label value with Prometheus' escapes (backslash, quote, newline).
std::string Label(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

}  // namespace

std::string FormatMetrics(const MetricsInput& in) {
  std::string out;
  Header(out, "herd_http_requests_total", "counter", "HTTP responses by route and status code.");
  for (const auto& [key, n] : in.requests) {
    out += "herd_http_requests_total{route=\"" + Label(key.first) + "\",status=\"" + std::to_string(key.second) +
           "\"} " + std::to_string(n) + "\n";
  }
  Scalar(out, "herd_http_requests_in_flight", "gauge", "Generation requests not yet answered.",
         static_cast<double>(in.in_flight));
  Scalar(out, "herd_model_loaded", "gauge", "1 once the model is loaded and requests are served.", in.ready ? 1 : 0);
  if (!in.ready) return out;
  const runtime::ServingStats& s = in.engine;
  Scalar(out, "herd_prompt_tokens_total", "counter", "Prompt tokens of admitted requests.",
         static_cast<double>(s.prompt_tokens));
  Scalar(out, "herd_generation_tokens_total", "counter", "Generated tokens.", static_cast<double>(s.generated_tokens));
  Scalar(out, "herd_requests_finished_total", "counter", "Requests that finished (stop or length).",
         static_cast<double>(s.requests_finished));
  Scalar(out, "herd_requests_cancelled_total", "counter", "Requests cancelled (client gone, shutdown).",
         static_cast<double>(s.requests_cancelled));
  Scalar(out, "herd_requests_failed_total", "counter", "Requests that ended in an error.",
         static_cast<double>(s.requests_failed));
  Scalar(out, "herd_preemptions_total", "counter", "Sequences preempted for lack of KV pages.",
         static_cast<double>(s.preemptions));
  Scalar(out, "herd_engine_steps_total", "counter", "Engine steps (batched forward passes).",
         static_cast<double>(s.steps));
  Scalar(out, "herd_requests_running", "gauge", "Sequences being generated.", static_cast<double>(s.running));
  Scalar(out, "herd_requests_waiting", "gauge", "Requests in the queue.", static_cast<double>(s.waiting));
  Scalar(out, "herd_kv_pages_used", "gauge", "KV cache pages in use.", static_cast<double>(s.kv_pages_used));
  Scalar(out, "herd_kv_pages_total", "gauge", "KV cache pages in the pool.", static_cast<double>(s.kv_pages_total));
  Scalar(out, "herd_kv_page_tokens", "gauge", "Tokens per KV cache page.", static_cast<double>(s.kv_page_tokens));
  Scalar(out, "herd_prefix_cache_queries_total", "counter", "Prompt tokens looked up in the prefix cache.",
         static_cast<double>(s.prefix_cache_queries));
  Scalar(out, "herd_prefix_cache_hits_total", "counter", "Prompt tokens found in the prefix cache.",
         static_cast<double>(s.prefix_cache_hits));
  Histogram(out, "herd_time_to_first_token_seconds", "Time from arrival to the first generated token.", s.ttft);
  Histogram(out, "herd_inter_token_latency_seconds", "Time between consecutive generated tokens of a sequence.", s.itl);
  return out;
}

}  // namespace herd::server
