// Dispatch of kernels/matmul.h to the best Highway target, and the split of a product over the thread pool.
// The per-target kernels are cpu/matmul-inl.h; this file is compiled once per target through foreach_target.h.

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/cpu/matmul.cpp"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
#include "kernels/cpu/matmul-inl.h"

HWY_BEFORE_NAMESPACE();
namespace herd::kernels::HWY_NAMESPACE {

// Row-major F32, F16 and BF16 weights (BF16 where the CPU has no native BF16 dot product): the f32 dot kernel
// of cpu/matmul-inl.h, one reduction order for every n_tokens. Quantized weights never come here (cpu/qdot.h).
void MatMulRowsT(const TensorView& w, const float* x, int64_t n_tokens, float* y, int64_t y_stride, int64_t o_begin,
                 int64_t o_end) {
  switch (w.dtype) {
    case DType::kF32:
      return MatMulRowsSrc<SrcF32>(w, x, n_tokens, y, y_stride, o_begin, o_end);
    case DType::kF16:
      return MatMulRowsSrc<SrcF16>(w, x, n_tokens, y, y_stride, o_begin, o_end);
    case DType::kBF16:
      return MatMulRowsSrc<SrcBF16>(w, x, n_tokens, y, y_stride, o_begin, o_end);
    default:
      HERD_CHECK(false && "MatMul: no f32 dot kernel for this weight dtype");
  }
}

void DequantizeRowT(const TensorView& w, int64_t r, float* dst) {
  const uint8_t* row = w.Row(r);
  const int64_t n = w.Cols();
  switch (w.dtype) {
    case DType::kF32:
      return DequantRange<SrcF32>(row, 0, n, dst);
    case DType::kF16:
      return DequantRange<SrcF16>(row, 0, n, dst);
    case DType::kBF16:
      return DequantRange<SrcBF16>(row, 0, n, dst);
    case DType::kQ8_0:
      return DequantRange<SrcQ8_0>(row, 0, n, dst);
    case DType::kQ4_0:
      return DequantRange<SrcQ4_0>(row, 0, n, dst);
    case DType::kQ4_K:
      return DequantRange<SrcQ4K>(row, 0, n, dst);
    case DType::kQ5_K:
      return DequantRange<SrcQ5K>(row, 0, n, dst);
    case DType::kQ6_K:
      return DequantRange<SrcQ6K>(row, 0, n, dst);
    default:
      HERD_CHECK(false && "DequantizeRow: unsupported weight dtype");
  }
}

void MatMulInputMajorT(const TensorView& w, int64_t c_begin, int64_t c_end, const float* x, int64_t n_tokens, float* y,
                       int64_t y_stride) {
  switch (w.dtype) {
    case DType::kF32:
      return MatMulInputMajorSrc<SrcF32>(w, c_begin, c_end, x, n_tokens, y, y_stride);
    case DType::kF16:
      return MatMulInputMajorSrc<SrcF16>(w, c_begin, c_end, x, n_tokens, y, y_stride);
    case DType::kBF16:
      return MatMulInputMajorSrc<SrcBF16>(w, c_begin, c_end, x, n_tokens, y, y_stride);
    default:
      HERD_CHECK(false && "MatMulInputMajor: unsupported weight dtype");
  }
}

}  // namespace herd::kernels::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include <algorithm>
#include <atomic>
#include <vector>

#include "kernels/cpu/parallel_grid.h"
#include "kernels/cpu/qdot.h"
#include "kernels/matmul.h"
#include "kernels/repack.h"

namespace herd::kernels {

HWY_EXPORT(MatMulRowsT);
HWY_EXPORT(DequantizeRowT);
HWY_EXPORT(MatMulInputMajorT);

namespace {

std::atomic<bool> g_count_bytes{false};
std::atomic<int64_t> g_bytes_read{0};

// Counts once per public call, before the work is split, so a row read by several threads counts once.
inline void CountWeightBytes(int64_t n_bytes) {
  if (g_count_bytes.load(std::memory_order_relaxed)) [[unlikely]] {
    g_bytes_read.fetch_add(n_bytes, std::memory_order_relaxed);
  }
}

}  // namespace

void EnableWeightByteCounting(bool enabled) { g_count_bytes.store(enabled, std::memory_order_relaxed); }
int64_t WeightBytesRead() { return g_bytes_read.load(std::memory_order_relaxed); }
void ResetWeightBytesRead() { g_bytes_read.store(0, std::memory_order_relaxed); }

bool MatMulSupports(DType t) {
  return t == DType::kF32 || t == DType::kF16 || t == DType::kBF16 || IsRepacked(t) || QuantDotSupports(t);
}

namespace {

// Weights multiplied by the integer kernels of cpu/qdot.h at every n_tokens (decode and prefill alike, so each
// output has one arithmetic whatever the batch): Q8_0, Q4_0, the K-quants and the repacked types. A repacked type on a
// target without its kernel takes the activations and kernel of the type it was packed from on rows unpacked back to
// it (QuantRows), so its outputs are that type's there too. BF16 always takes the f32 dot kernel, also where cpu/qdot.h
// has a native BF16 kernel: one kernel must serve every n_tokens, and the native one, three vdpbf16ps per 32 weights,
// ran prefill at about half the f32 kernel's speed and decode no faster on the Zen 4 VM (bench/RESULTS.md, "Batch
// invariance").
bool UsesQuantDot(DType t) { return IsRepacked(t) || (t != DType::kBF16 && QuantDotSupports(t)); }
DType ActivationType(DType t) { return IsRepacked(t) && !QuantDotSupports(t) ? PackedFrom(t) : t; }

// Tokens from which a quantization is split over the pool (each token's record is independent).
constexpr int64_t kParallelQuantizeTokens = 8;

// a = x [n_tokens, n_in] quantized for weights of dtype t (ActivationType), on the pool's threads for prefill.
void QuantizeFor(DType t, const float* x, int64_t n_tokens, int64_t n_in, QuantizedActivations& a, ThreadPool& pool) {
  a.Reserve(ActivationType(t), n_tokens, n_in);
  if (pool.size() > 1 && n_tokens >= kParallelQuantizeTokens) {
    pool.ParallelFor(n_tokens, [&](int64_t t0, int64_t t1) { a.QuantizeTokens(x, t0, t1); });
  } else {
    a.QuantizeTokens(x, 0, n_tokens);
  }
}

// Repacked rows unpacked per block into this thread's scratch (grown once), for targets without their kernel.
constexpr int64_t kUnpackBytes = int64_t{256} << 10;

// QuantDotRows for any weights UsesQuantDot takes; a as QuantizeFor made it.
void QuantRows(const TensorView& w, const QuantizedActivations& a, int64_t t_begin, int64_t t_end, float* y,
               int64_t y_stride, int64_t o_begin, int64_t o_end) {
  if (a.dtype() == w.dtype) return QuantDotRows(w, a, t_begin, t_end, y, y_stride, o_begin, o_end);
  HERD_DCHECK(IsRepacked(w.dtype) && a.dtype() == PackedFrom(w.dtype));
  const int64_t n_in = w.Cols(), row_bytes = RowBytes(PackedFrom(w.dtype), n_in);  // an unpacked row
  const int64_t block = std::max<int64_t>(1, kUnpackBytes / std::max<int64_t>(1, row_bytes));
  thread_local hwy::AlignedFreeUniquePtr<uint8_t[]> buf;
  thread_local int64_t capacity = 0;
  const int64_t need = std::min(block, o_end - o_begin) * row_bytes;
  if (need > capacity) {
    buf = hwy::AllocateAligned<uint8_t>(static_cast<size_t>(need));
    HERD_CHECK(buf != nullptr);
    capacity = need;
  }
  for (int64_t o0 = o_begin; o0 < o_end; o0 += block) {
    const int64_t nb = std::min(block, o_end - o0);
    for (int64_t r = 0; r < nb; ++r) UnpackRow(w.dtype, w.Row(o0 + r), n_in, buf.get() + r * row_bytes);
    TensorView q8 = w;
    q8.dtype = PackedFrom(w.dtype);
    q8.n_dims = 2;
    q8.shape = {nb, n_in, 1, 1};
    q8.data = buf.get();
    q8.size_bytes = nb * row_bytes;
    QuantDotRows(q8, a, t_begin, t_end, y + o0, y_stride, 0, nb);
  }
}

}  // namespace

bool MatMulInputMajorSupports(DType t) { return t == DType::kF32 || t == DType::kF16 || t == DType::kBF16; }

void MatMulRows(const TensorView& w, const float* x, int64_t n_tokens, float* y, int64_t y_stride, int64_t o_begin,
                int64_t o_end) {
  HERD_DCHECK(MatMulSupports(w.dtype) && 0 <= o_begin && o_begin <= o_end && o_end <= w.Rows());
  HERD_DCHECK(y_stride >= o_end);
  if (n_tokens <= 0 || o_begin >= o_end) return;
  CountWeightBytes((o_end - o_begin) * w.RowStride());
  if (UsesQuantDot(w.dtype)) {
    QuantizedActivations& acts = ThreadQuantizedActivations();
    acts.Quantize(ActivationType(w.dtype), x, n_tokens, w.Cols());
    QuantRows(w, acts, 0, n_tokens, y, y_stride, o_begin, o_end);
    return;
  }
  HWY_DYNAMIC_DISPATCH(MatMulRowsT)(w, x, n_tokens, y, y_stride, o_begin, o_end);
}

void MatMul(const TensorView& w, const float* x, int64_t n_tokens, float* y, ThreadPool& pool) {
  HERD_DCHECK(MatMulSupports(w.dtype));
  const int64_t n_out = w.Rows(), n_in = w.Cols();
  if (n_tokens <= 0 || n_out <= 0) return;
  // Decode: MatMulBatch's balanced split, for matrices that ParallelGrid would give every thread (smaller ones, such
  // as a router's, stay on fewer threads).
  if (UsesQuantDot(w.dtype) && n_tokens == 1 && n_out >= kRowGrain * pool.size()) {
    const MatMulJob job{&w, x, y};
    return MatMulBatch(&job, 1, n_tokens, pool);
  }
  CountWeightBytes(n_out * w.RowStride());
  if (UsesQuantDot(w.dtype)) {
    // Quantized once, into the calling thread's reused scratch; the workers only read it.
    QuantizedActivations& acts = ThreadQuantizedActivations();
    QuantizeFor(w.dtype, x, n_tokens, n_in, acts, pool);
    ParallelGrid(pool, n_out, n_tokens, [&](int64_t o0, int64_t o1, int64_t t0, int64_t t1) {
      QuantRows(w, acts, t0, t1, y + t0 * n_out, n_out, o0, o1);
    });
    return;
  }
  ParallelGrid(pool, n_out, n_tokens, [&](int64_t o0, int64_t o1, int64_t t0, int64_t t1) {
    HWY_DYNAMIC_DISPATCH(MatMulRowsT)(w, x + t0 * n_in, t1 - t0, y + t0 * n_out, n_out, o0, o1);
  });
}

namespace {
// Decode's balanced split (MatMulBatch): the weight bytes a thread claims at a time (~4 us of streaming, so that the
// claims cost ~1% and the threads finish within a few us of each other), and the most threads it is used for (their
// cursors live on the caller's stack).
constexpr int64_t kClaimBytes = int64_t{128} << 10;
constexpr int kMaxBalancedThreads = 64;
// Weights whose one-token kernel reads several streams spread over the thread's whole share (cpu/qdot-inl.h
// DecodeInStreams), which blocks would cut short: they keep the static split. Per target (Q8_0 and Q8_0R everywhere;
// Q4_0R, Q4_KR, Q4_0 and Q6_K on AVX2).
bool ReadsStreams(DType t) { return QuantDecodeStreams(t) > 1; }
}  // namespace

void MatMulBatch(const MatMulJob* jobs, int n_jobs, int64_t n_tokens, ThreadPool& pool) {
  constexpr int kMaxJobs = 8;
  if (n_tokens <= 0) return;
  // Jobs the fused path takes: weights on the integer-dot path; the rest run as MatMul.
  int fused[kMaxJobs], n_fused = 0;
  for (int j = 0; j < n_jobs; ++j) {
    const TensorView& w = *jobs[j].w;
    if (n_fused < kMaxJobs && UsesQuantDot(w.dtype) && w.Rows() > 0) {
      fused[n_fused++] = j;
    } else {
      MatMul(w, jobs[j].x, n_tokens, jobs[j].y, pool);
    }
  }
  if (n_fused == 0) return;
  // One quantization per distinct (x, activation type, n_in), in per-thread scratch slots that grow once.
  thread_local QuantizedActivations slots[kMaxJobs];
  const QuantizedActivations* acts[kMaxJobs];
  int n_slots = 0;
  int64_t begin_bytes[kMaxJobs + 1];
  begin_bytes[0] = 0;
  for (int i = 0; i < n_fused; ++i) {
    const MatMulJob& job = jobs[fused[i]];
    const TensorView& w = *job.w;
    acts[i] = nullptr;
    for (int k = 0; k < i; ++k) {
      const MatMulJob& other = jobs[fused[k]];
      if (other.x == job.x && ActivationType(other.w->dtype) == ActivationType(w.dtype) &&
          other.w->Cols() == w.Cols()) {
        acts[i] = acts[k];
      }
    }
    if (acts[i] == nullptr) {
      QuantizeFor(w.dtype, job.x, n_tokens, w.Cols(), slots[n_slots], pool);
      acts[i] = &slots[n_slots++];
    }
    CountWeightBytes(w.Rows() * w.RowStride());
    begin_bytes[i + 1] = begin_bytes[i] + w.Rows() * w.RowStride();
  }
  const int64_t total = begin_bytes[n_fused];
  const int threads = pool.size();
  // The rows of the concatenated bytes [b0, b1), cut at row boundaries of each job: row r belongs to the range that
  // holds its first byte, so ranges that partition the bytes partition the rows.
  auto rows_of = [&](int64_t b0, int64_t b1) {
    for (int i = 0; i < n_fused; ++i) {
      const int64_t lo = std::max(b0, begin_bytes[i]), hi = std::min(b1, begin_bytes[i + 1]);
      if (lo >= hi) continue;
      const TensorView& w = *jobs[fused[i]].w;
      const int64_t stride = w.RowStride();
      const int64_t o0 = CeilDiv(lo - begin_bytes[i], stride), o1 = CeilDiv(hi - begin_bytes[i], stride);
      if (o0 < o1) QuantRows(w, *acts[i], 0, n_tokens, jobs[fused[i]].y, w.Rows(), o0, o1);
    }
  };
  if (threads <= 1) return rows_of(0, total);
  bool balanced = n_tokens == 1 && threads <= kMaxBalancedThreads;
  for (int i = 0; i < n_fused; ++i) balanced = balanced && !ReadsStreams(jobs[fused[i]].w->dtype);
  if (!balanced) {  // each thread its share of the bytes
    pool.Run([&](int idx) { rows_of(total * idx / threads, total * (idx + 1) / threads); });
    return;
  }
  // Decode: each thread takes its share in blocks of kClaimBytes from the front (still one sequential stream), and a
  // thread done early takes the next blocks of the others' shares, so that the step does not wait for the thread whose
  // memory stream is slower; no output depends on which thread computes it. On the d2048 Q4_0 model (Q4_0R), whose
  // threads were busy 88-90% of the matrix products' time in the host's fast memory state, decode rose from a median
  // 72% to 80% of the bound there and stayed level in the slow state (bench/RESULTS.md).
  struct alignas(64) Cursor {
    std::atomic<int64_t> next;
  };
  Cursor cursors[kMaxBalancedThreads];
  for (int j = 0; j < threads; ++j) cursors[j].next.store(total * j / threads, std::memory_order_relaxed);
  pool.Run([&](int idx) {
    for (int k = 0; k < threads; ++k) {
      const int j = (idx + k) % threads;
      const int64_t end = total * (j + 1) / threads;
      for (;;) {
        const int64_t lo = cursors[j].next.fetch_add(kClaimBytes, std::memory_order_relaxed);
        if (lo >= end) break;
        rows_of(lo, std::min(lo + kClaimBytes, end));
      }
    }
  });
}

void DequantizeRow(const TensorView& w, int64_t r, float* dst) {
  HERD_DCHECK(MatMulSupports(w.dtype) && 0 <= r && r < w.Rows());
  CountWeightBytes(w.RowStride());
  if (!IsRepacked(w.dtype)) return HWY_DYNAMIC_DISPATCH(DequantizeRowT)(w, r, dst);
  // A repacked row is the row it was packed from (kernels/repack.h): unpacked, then decoded as that type (not a hot
  // path: the integer kernels multiply the repacked layout itself).
  const int64_t n_in = w.Cols(), row_bytes = RowBytes(PackedFrom(w.dtype), n_in);
  thread_local std::vector<uint8_t> unpacked;
  unpacked.resize(static_cast<size_t>(row_bytes));
  UnpackRow(w.dtype, w.Row(r), n_in, unpacked.data());
  TensorView row = w;
  row.dtype = PackedFrom(w.dtype);
  row.n_dims = 2;
  row.shape = {1, n_in, 1, 1};
  row.data = unpacked.data();
  row.size_bytes = row_bytes;
  HWY_DYNAMIC_DISPATCH(DequantizeRowT)(row, 0, dst);
}

void MatMulInputMajor(const TensorView& w, int64_t col_begin, int64_t col_end, const float* x, int64_t n_tokens,
                      float* y, ThreadPool& pool) {
  HERD_DCHECK(MatMulInputMajorSupports(w.dtype) && 0 <= col_begin && col_begin <= col_end && col_end <= w.Cols());
  const int64_t n_cols = col_end - col_begin, n_in = w.Rows();
  if (n_tokens <= 0 || n_cols <= 0) return;
  CountWeightBytes(n_in * RowBytes(w.dtype, n_cols));  // columns [col_begin, col_end) of every input row
  ParallelGrid(pool, n_cols, n_tokens, [&](int64_t c0, int64_t c1, int64_t t0, int64_t t1) {
    HWY_DYNAMIC_DISPATCH(MatMulInputMajorT)
    (w, col_begin + c0, col_begin + c1, x + t0 * n_in, t1 - t0, y + t0 * n_cols + c0, n_cols);
  });
}

}  // namespace herd::kernels
#endif  // HWY_ONCE
