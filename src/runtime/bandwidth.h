// Memory-bandwidth probe for `herd bench` (style.md 7): the bound that single-stream decoding cannot beat, measured
// in the same process as the figure it is compared with.
#pragma once

#include <cstdint>

#include "core/thread_pool.h"
#include "model/config.h"

namespace herd::runtime {

struct Bandwidth {
  double read_gbs = 0;   // read-only sweep, all threads, 1 or 8 streams per thread: the faster (decode reads only)
  double triad_gbs = 0;  // STREAM triad a = b + s * c, counted as 3 arrays of bytes (2 read + 1 write)
};

// Best of `passes` passes over buffers of `bytes` each (default 512 MiB: far beyond any cache), split statically
// over the pool's threads, in huge-page memory where the OS offers it (AnonymousMemory). Pages are touched before
// timing. Allocates and frees its buffers (not for hot paths).
Bandwidth MeasureBandwidth(ThreadPool& pool, int64_t bytes = int64_t{512} << 20, int passes = 5);

// Mean bytes of K and V that decoding reads per token while generating tokens at positions [pos_begin, pos_end):
// per layer, the keys a query at pos attends to (pos + 1, or the position within its chunk + 1 on chunked
// layers) x num_key_value_heads x head_dim x 2 (K and V) x kv_elem_bytes.
double KvBytesPerToken(const model::ModelConfig& c, int64_t pos_begin, int64_t pos_end, int64_t kv_elem_bytes);

}  // namespace herd::runtime
