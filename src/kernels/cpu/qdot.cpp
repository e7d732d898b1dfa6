// Dispatch of cpu/qdot.h to the best Highway target: activation quantization and the integer dot kernels of
// cpu/qdot-inl.h. Compiled once per target through foreach_target.h, AVX3_DL (AVX-512 VNNI) included.

// Highway 1.0.3 compiles AVX3_DL only on request; its runtime check requires AVX512-VNNI, which the kernels use.
#ifndef HWY_WANT_AVX3_DL
#define HWY_WANT_AVX3_DL
#endif

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/cpu/qdot.cpp"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
#include "kernels/cpu/qdot-inl.h"

#if HWY_ONCE
#include <algorithm>

#if HWY_ARCH_X86 && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#endif

#include "kernels/cpu/qdot.h"
#include "kernels/repack.h"

namespace herd::kernels {

HWY_EXPORT(QuantTokenBytesT);
HWY_EXPORT(QuantizeActivationsT);
HWY_EXPORT(QuantDotRowsT);
HWY_EXPORT(NativeBf16DotT);
HWY_EXPORT(RepackedDotT);
HWY_EXPORT(QuantDotTargetT);
HWY_EXPORT(QuantDecodeStreamsT);
HWY_EXPORT(PeakOpsT);

namespace {

// CPUID.(EAX=7, ECX=1):EAX bit 5. The OS's support for AVX-512 state was checked by Highway for AVX3_DL.
bool CpuHasAvx512Bf16() {
#if HWY_ARCH_X86 && (defined(__GNUC__) || defined(__clang__))
  static const bool has = [] {
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (__get_cpuid_max(0, nullptr) < 7) return false;
    __cpuid_count(7, 1, a, b, c, d);
    return (a >> 5 & 1u) != 0;
  }();
  return has;
#else
  return false;
#endif
}

}  // namespace

bool QuantDotSupports(DType t) {
  if (t == DType::kBF16) return HWY_DYNAMIC_DISPATCH(NativeBf16DotT)() && CpuHasAvx512Bf16();
  if (IsRepacked(t)) return HWY_DYNAMIC_DISPATCH(RepackedDotT)(t);
  return t == DType::kQ8_0 || t == DType::kQ4_0 || t == DType::kQ4_K || t == DType::kQ5_K || t == DType::kQ6_K;
}

void QuantizedActivations::Reserve(DType t, int64_t n_tokens, int64_t n_in) {
  HERD_DCHECK(QuantDotSupports(t) && n_tokens >= 0 && n_in % Traits(t).block_size == 0);
  token_bytes_ = HWY_DYNAMIC_DISPATCH(QuantTokenBytesT)(t, n_in);
  const int64_t need = std::max<int64_t>(1, n_tokens * token_bytes_);
  if (need > capacity_) {
    buf_ = hwy::AllocateAligned<uint8_t>(static_cast<size_t>(need));
    HERD_CHECK(buf_ != nullptr);
    capacity_ = need;
  }
  dtype_ = t;
  n_tokens_ = n_tokens;
  n_in_ = n_in;
}

void QuantizedActivations::QuantizeTokens(const float* x, int64_t t_begin, int64_t t_end) {
  HERD_DCHECK(0 <= t_begin && t_begin <= t_end && t_end <= n_tokens_);
  if (t_begin >= t_end) return;
  HWY_DYNAMIC_DISPATCH(QuantizeActivationsT)
  (dtype_, x + t_begin * n_in_, t_end - t_begin, n_in_, buf_.get() + t_begin * token_bytes_, token_bytes_);
}

void QuantDotRows(const TensorView& w, const QuantizedActivations& a, int64_t t_begin, int64_t t_end, float* y,
                  int64_t y_stride, int64_t o_begin, int64_t o_end) {
  HERD_DCHECK(a.dtype() == w.dtype && a.n_in() == w.Cols() && 0 <= t_begin && t_begin <= t_end &&
              t_end <= a.n_tokens());
  if (t_begin >= t_end || o_begin >= o_end) return;
  HWY_DYNAMIC_DISPATCH(QuantDotRowsT)
  (w, a.Token(t_begin), a.token_bytes(), t_end - t_begin, y, y_stride, o_begin, o_end);
}

int64_t PeakOps(PeakKind kind, int64_t iters) {
  if (kind == PeakKind::kBf16 && !CpuHasAvx512Bf16()) return 0;
  return HWY_DYNAMIC_DISPATCH(PeakOpsT)(static_cast<int>(kind), iters);
}

const char* QuantDotTarget() { return HWY_DYNAMIC_DISPATCH(QuantDotTargetT)(); }

int QuantDecodeStreams(DType t) { return HWY_DYNAMIC_DISPATCH(QuantDecodeStreamsT)(t); }

QuantizedActivations& ThreadQuantizedActivations() {
  thread_local QuantizedActivations acts;
  return acts;
}

}  // namespace herd::kernels
#endif  // HWY_ONCE
