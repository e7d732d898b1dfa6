// /metrics of herd serve in Prometheus' text exposition format (version 0.0.4): the HTTP responses by route and
// status, and the engine's counters, gauges and latency histograms (runtime::ServingStats). Names follow
// Prometheus' conventions (herd_ prefix, _total for counters, _seconds for times).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>

#include "runtime/serving.h"

namespace herd::server {

struct MetricsInput {
  bool ready = false;  // engine holds a snapshot only when the model is loaded
  runtime::ServingStats engine;
  std::map<std::pair<std::string, int>, int64_t> requests;  // (route, status) -> responses
  int64_t in_flight = 0;                                    // generation requests not yet answered
};

std::string FormatMetrics(const MetricsInput& in);

}  // namespace herd::server
