// The split of one matrix product over the thread pool, shared by cpu/matmul.cpp (MatMul, MatMulInputMajor) and
// cpu/matmul_fp8.cpp (MatMulScaled, MatMulInputMajorScaled), so that both split work the same way: no thread gets a
// partial micro-tile inside the matrix (results never depend on the split: see ParallelGrid). Internal to the kernels
// module; not SIMD code (no Highway target), included once per translation unit.
#pragma once

#include <algorithm>
#include <cstdint>

#include "core/thread_pool.h"

namespace herd::kernels {

// Row ranges start at multiples of kRowGrain so that no thread gets a partial micro-tile in the middle of the
// matrix (the largest micro-tile of cpu/matmul-inl.h, input-major GEMM, is 32 columns); token ranges are multiples of
// kTokenGrain.
inline constexpr int64_t kRowGrain = 32;
inline constexpr int64_t kTokenGrain = 16;

inline int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Splits [0, n) into `parts` ranges on multiples of `grain`; returns range `idx` in [*begin, *end).
inline void SplitRange(int64_t n, int64_t parts, int64_t idx, int64_t grain, int64_t* begin, int64_t* end) {
  const int64_t chunks = CeilDiv(n, grain);
  *begin = std::min(n, chunks * idx / parts * grain);
  *end = std::min(n, chunks * (idx + 1) / parts * grain);
}

// Runs fn(o_begin, o_end, t_begin, t_end) over a grid of row and token ranges, one cell per thread of `pool`, and
// returns when every cell is done (on the calling thread alone when there is one cell). Tokens are split only when
// the rows cannot keep every thread busy and every part keeps at least kTokenGrain tokens (so that each part still
// reuses its weights over many tokens). The kernels compute every output in an order fixed by its row and token
// alone, so the split never changes a result.
template <class Fn>
void ParallelGrid(ThreadPool& pool, int64_t n_rows, int64_t n_tokens, const Fn& fn) {
  const int64_t n_threads = pool.size();
  const int64_t row_parts = std::max<int64_t>(1, std::min(n_threads, CeilDiv(n_rows, kRowGrain)));
  int64_t tok_parts = 1;
  if (row_parts < n_threads && n_tokens >= 2 * kTokenGrain) {
    tok_parts = std::min(n_threads / row_parts, n_tokens / kTokenGrain);
  }
  const int64_t cells = row_parts * tok_parts;
  if (cells <= 1) {
    fn(int64_t{0}, n_rows, int64_t{0}, n_tokens);
    return;
  }
  pool.Run([&](int idx) {
    if (idx >= cells) return;
    int64_t o0, o1, t0, t1;
    SplitRange(n_rows, row_parts, idx % row_parts, kRowGrain, &o0, &o1);
    SplitRange(n_tokens, tok_parts, idx / row_parts, kTokenGrain, &t0, &t1);
    if (o0 < o1 && t0 < t1) fn(o0, o1, t0, t1);
  });
}

}  // namespace herd::kernels
