// Dispatch of kernels/matmul.h to the best Highway target, and the split of a product over the thread pool.
// The per-target kernels are cpu/matmul-inl.h; this file is compiled once per target through foreach_target.h.

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/cpu/matmul.cpp"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
#include "kernels/cpu/matmul-inl.h"

HWY_BEFORE_NAMESPACE();
namespace herd::kernels::HWY_NAMESPACE {

void MatMulRowsT(const TensorView& w, const float* x, int64_t n_tokens, float* y, int64_t y_stride, int64_t o_begin,
                 int64_t o_end) {
  switch (w.dtype) {
    case DType::kF32:
      return MatMulRowsSrc<SrcF32>(w, x, n_tokens, y, y_stride, o_begin, o_end);
    case DType::kF16:
      return MatMulRowsSrc<SrcF16>(w, x, n_tokens, y, y_stride, o_begin, o_end);
    case DType::kBF16:
      return MatMulRowsSrc<SrcBF16>(w, x, n_tokens, y, y_stride, o_begin, o_end);
    // Quantized weights reach this function only for the GEMM (see MatMul below).
    case DType::kQ8_0:
      return GemmRowsSrc<SrcQ8_0>(w, x, n_tokens, y, y_stride, o_begin, o_end);
    case DType::kQ8_0R:  // also below QuantDotMaxTokens() on targets without the Q8_0R dot kernel
      return GemmRowsSrc<SrcQ8_0R>(w, x, n_tokens, y, y_stride, o_begin, o_end);
    case DType::kQ4_0:
      return GemmRowsSrc<SrcQ4_0>(w, x, n_tokens, y, y_stride, o_begin, o_end);
    case DType::kQ4_K:
      return GemmRowsSrc<SrcQ4K>(w, x, n_tokens, y, y_stride, o_begin, o_end);
    case DType::kQ5_K:
      return GemmRowsSrc<SrcQ5K>(w, x, n_tokens, y, y_stride, o_begin, o_end);
    case DType::kQ6_K:
      return GemmRowsSrc<SrcQ6K>(w, x, n_tokens, y, y_stride, o_begin, o_end);
    default:
      HERD_CHECK(false && "MatMul: unsupported weight dtype");
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
    case DType::kQ8_0R:
      return DequantRange<SrcQ8_0R>(row, 0, n, dst);
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

int64_t GemmMinTokensT() { return kGemmMinTokens; }

}  // namespace herd::kernels::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include <algorithm>
#include <atomic>

#include "kernels/cpu/parallel_grid.h"
#include "kernels/cpu/qdot.h"
#include "kernels/matmul.h"

namespace herd::kernels {

HWY_EXPORT(MatMulRowsT);
HWY_EXPORT(DequantizeRowT);
HWY_EXPORT(MatMulInputMajorT);
HWY_EXPORT(GemmMinTokensT);

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
  return t == DType::kF32 || t == DType::kF16 || t == DType::kBF16 || t == DType::kQ8_0R || QuantDotSupports(t);
}

namespace {

// Quantized weights below QuantDotMaxTokens() tokens: activations quantized once, integer dots (cpu/qdot.h).
bool UsesQuantDot(DType t, int64_t n_tokens) { return QuantDotSupports(t) && n_tokens < QuantDotMaxTokens(); }

}  // namespace

bool MatMulInputMajorSupports(DType t) { return t == DType::kF32 || t == DType::kF16 || t == DType::kBF16; }

void MatMulRows(const TensorView& w, const float* x, int64_t n_tokens, float* y, int64_t y_stride, int64_t o_begin,
                int64_t o_end) {
  HERD_DCHECK(MatMulSupports(w.dtype) && 0 <= o_begin && o_begin <= o_end && o_end <= w.Rows());
  HERD_DCHECK(y_stride >= o_end);
  if (n_tokens <= 0 || o_begin >= o_end) return;
  CountWeightBytes((o_end - o_begin) * w.RowStride());
  if (UsesQuantDot(w.dtype, n_tokens)) {
    QuantizedActivations& acts = ThreadQuantizedActivations();
    acts.Quantize(w.dtype, x, n_tokens, w.Cols());
    QuantDotRows(w, acts, 0, n_tokens, y, y_stride, o_begin, o_end);
    return;
  }
  HWY_DYNAMIC_DISPATCH(MatMulRowsT)(w, x, n_tokens, y, y_stride, o_begin, o_end);
}

void MatMul(const TensorView& w, const float* x, int64_t n_tokens, float* y, ThreadPool& pool) {
  HERD_DCHECK(MatMulSupports(w.dtype));
  const int64_t n_out = w.Rows(), n_in = w.Cols();
  if (n_tokens <= 0 || n_out <= 0) return;
  const int64_t gemm_min = HWY_DYNAMIC_DISPATCH(GemmMinTokensT)();
  CountWeightBytes(n_out * w.RowStride());
  if (UsesQuantDot(w.dtype, n_tokens)) {
    // Quantized once, on this thread, into its reused scratch; the workers only read it.
    QuantizedActivations& acts = ThreadQuantizedActivations();
    acts.Quantize(w.dtype, x, n_tokens, n_in);
    ParallelGrid(pool, n_out, n_tokens, gemm_min, [&](int64_t o0, int64_t o1, int64_t t0, int64_t t1) {
      QuantDotRows(w, acts, t0, t1, y + t0 * n_out, n_out, o0, o1);
    });
    return;
  }
  ParallelGrid(pool, n_out, n_tokens, gemm_min, [&](int64_t o0, int64_t o1, int64_t t0, int64_t t1) {
    HWY_DYNAMIC_DISPATCH(MatMulRowsT)(w, x + t0 * n_in, t1 - t0, y + t0 * n_out, n_out, o0, o1);
  });
}

void MatMulBatch(const MatMulJob* jobs, int n_jobs, int64_t n_tokens, ThreadPool& pool) {
  constexpr int kMaxJobs = 8;
  if (n_tokens <= 0) return;
  // Jobs the fused path takes: quantized weights on the integer-dot path; the rest run as MatMul.
  int fused[kMaxJobs], n_fused = 0;
  for (int j = 0; j < n_jobs; ++j) {
    const TensorView& w = *jobs[j].w;
    if (n_fused < kMaxJobs && UsesQuantDot(w.dtype, n_tokens) && w.Rows() > 0) {
      fused[n_fused++] = j;
    } else {
      MatMul(w, jobs[j].x, n_tokens, jobs[j].y, pool);
    }
  }
  if (n_fused == 0) return;
  // One quantization per distinct (x, dtype, n_in), in per-thread scratch slots that grow once.
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
      if (other.x == job.x && other.w->dtype == w.dtype && other.w->Cols() == w.Cols()) acts[i] = acts[k];
    }
    if (acts[i] == nullptr) {
      slots[n_slots].Quantize(w.dtype, job.x, n_tokens, w.Cols());
      acts[i] = &slots[n_slots++];
    }
    CountWeightBytes(w.Rows() * w.RowStride());
    begin_bytes[i + 1] = begin_bytes[i] + w.Rows() * w.RowStride();
  }
  const int64_t total = begin_bytes[n_fused];
  const int threads = pool.size();
  auto work = [&](int idx) {
    // This thread's share of the concatenated rows, by bytes, cut at row boundaries of each job.
    const int64_t b0 = total * idx / threads, b1 = total * (idx + 1) / threads;
    for (int i = 0; i < n_fused; ++i) {
      const int64_t lo = std::max(b0, begin_bytes[i]), hi = std::min(b1, begin_bytes[i + 1]);
      if (lo >= hi) continue;
      const TensorView& w = *jobs[fused[i]].w;
      const int64_t stride = w.RowStride();
      // Row r belongs to the thread whose byte range holds its first byte.
      const int64_t o0 = CeilDiv(lo - begin_bytes[i], stride), o1 = CeilDiv(hi - begin_bytes[i], stride);
      if (o0 < o1) QuantDotRows(w, *acts[i], 0, n_tokens, jobs[fused[i]].y, w.Rows(), o0, o1);
    }
  };
  if (threads <= 1) {
    work(0);
  } else {
    pool.Run([&](int idx) { work(idx); });
  }
}

void DequantizeRow(const TensorView& w, int64_t r, float* dst) {
  HERD_DCHECK(MatMulSupports(w.dtype) && 0 <= r && r < w.Rows());
  CountWeightBytes(w.RowStride());
  HWY_DYNAMIC_DISPATCH(DequantizeRowT)(w, r, dst);
}

void MatMulInputMajor(const TensorView& w, int64_t col_begin, int64_t col_end, const float* x, int64_t n_tokens,
                      float* y, ThreadPool& pool) {
  HERD_DCHECK(MatMulInputMajorSupports(w.dtype) && 0 <= col_begin && col_begin <= col_end && col_end <= w.Cols());
  const int64_t n_cols = col_end - col_begin, n_in = w.Rows();
  if (n_tokens <= 0 || n_cols <= 0) return;
  const int64_t gemm_min = HWY_DYNAMIC_DISPATCH(GemmMinTokensT)();
  CountWeightBytes(n_in * RowBytes(w.dtype, n_cols));  // columns [col_begin, col_end) of every input row
  ParallelGrid(pool, n_cols, n_tokens, gemm_min, [&](int64_t c0, int64_t c1, int64_t t0, int64_t t1) {
    HWY_DYNAMIC_DISPATCH(MatMulInputMajorT)
    (w, col_begin + c0, col_begin + c1, x + t0 * n_in, t1 - t0, y + t0 * n_cols + c0, n_cols);
  });
}

}  // namespace herd::kernels
#endif  // HWY_ONCE
