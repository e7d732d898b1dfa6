// herd_cuda_bench: the speed of the CUDA kernels on the device at hand, as JSON lines on stdout (one object per
// measurement; gpu-check.sh collects them). The decode figures are matrix-vector products (one token) at Scout's
// shapes, reported as GB/s of weight bytes and as a fraction of the bandwidth a copy kernel reaches in the same run:
// the bound a decode step can approach. Prefill figures are GFLOP/s at 512 tokens (CUDA cores, no tensor cores
// yet). Timings are the median of repeated runs after warm-ups, measured with CUDA events.
//   herd_cuda_bench            all measurements (exit 2 without a device, 1 when a measurement fails)
//   herd_cuda_bench --probe    prints the device, or why none is usable (exit 1)
//   herd_cuda_bench --quick    fewer repetitions and no output head (a smoke run)
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "kernels/cuda/cuda.h"

namespace {

using herd::DType;
using herd::Status;
namespace cuda = herd::kernels::cuda;

std::string JsonString(const std::string& s) {
  std::string o = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      o += '\\';
      o += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      o += ' ';
    } else {
      o += c;
    }
  }
  return o + "\"";
}

struct Shape {
  const char* name;
  int64_t n_out, n_in;
};

// One matrix of `t` at `shape`: decode (1 token) and, when `prefill`, 512 tokens. False when a step failed.
bool BenchMatrix(DType t, const Shape& shape, double copy_gbs, bool prefill, int reps) {
  const int64_t w_bytes = herd::RowBytes(t, shape.n_in) * shape.n_out;
  const int64_t max_tokens = prefill ? 512 : 1;
  auto w = cuda::DeviceBuffer::Allocate(static_cast<size_t>(w_bytes));
  auto x = cuda::DeviceBuffer::Allocate(static_cast<size_t>(max_tokens * shape.n_in) * sizeof(float));
  auto y = cuda::DeviceBuffer::Allocate(static_cast<size_t>(max_tokens * shape.n_out) * sizeof(float));
  const std::string head = std::string("{\"bench\":\"matmul\",\"dtype\":\"") + std::string(herd::DTypeName(t)) +
                           "\",\"shape\":\"" + shape.name + "\",\"n_out\":" + std::to_string(shape.n_out) +
                           ",\"n_in\":" + std::to_string(shape.n_in);
  if (!w.ok() || !x.ok() || !y.ok()) {  // the output head may not fit beside the rest: say so, not a failure
    const Status& st = !w.ok() ? w.status() : !x.ok() ? x.status() : y.status();
    std::printf("%s,\"skipped\":%s}\n", head.c_str(), JsonString(st.ToString()).c_str());
    return true;
  }
  // Small normal numbers in every format (0x1111 as f16, bf16, or scale + codes): the timing does not depend on them.
  Status st = w->Fill(0x11);
  if (st.ok()) st = x->Fill(0x3C);
  bool ok = st.ok();
  for (int64_t n_tokens : {int64_t{1}, int64_t{512}}) {
    if (!ok || n_tokens > max_tokens) break;
    auto ms = cuda::MedianMs(
        [&] { return cuda::MatMul(t, w->data(), shape.n_out, shape.n_in, x->as<float>(), n_tokens, y->as<float>()); },
        3, n_tokens == 1 ? reps : std::max(3, reps / 4));
    if (!ms.ok()) {
      std::printf("%s,\"tokens\":%lld,\"error\":%s}\n", head.c_str(), static_cast<long long>(n_tokens),
                  JsonString(ms.status().ToString()).c_str());
      ok = false;
      break;
    }
    const double s = *ms * 1e-3;
    const double gbs = static_cast<double>(w_bytes) / s / 1e9;
    const double gflops = 2.0 * static_cast<double>(shape.n_out) * shape.n_in * n_tokens / s / 1e9;
    std::printf("%s,\"tokens\":%lld,\"ms\":%.4f,\"weight_gb_s\":%.1f,\"fraction_of_copy\":%.3f,\"gflop_s\":%.1f}\n",
                head.c_str(), static_cast<long long>(n_tokens), *ms, gbs, copy_gbs > 0 ? gbs / copy_gbs : 0.0, gflops);
    std::fflush(stdout);
  }
  if (!st.ok()) std::printf("%s,\"error\":%s}\n", head.c_str(), JsonString(st.ToString()).c_str());
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--probe") == 0) {
      std::string why;
      const bool ok = cuda::DeviceAvailable(&why);
      std::printf("%s\n", ok ? cuda::DeviceDescription().c_str() : why.c_str());
      return ok ? 0 : 1;
    }
    if (std::strcmp(argv[i], "--quick") == 0) {
      quick = true;
    } else {
      std::fprintf(stderr, "usage: herd_cuda_bench [--probe | --quick]\n");
      return 1;
    }
  }
  std::string why;
  if (!cuda::DeviceAvailable(&why)) {
    std::printf("{\"bench\":\"device\",\"available\":false,\"why\":%s}\n", JsonString(why).c_str());
    return 2;
  }
  std::printf("{\"bench\":\"device\",\"available\":true,\"device\":%s}\n",
              JsonString(cuda::DeviceDescription()).c_str());
  const int reps = quick ? 5 : 21;
  std::string error;
  const int64_t copy_bytes = int64_t{1} << 30;  // far beyond the L2 (50 MiB on an H100)
  const double copy_gbs = cuda::CopyBandwidthGBs(copy_bytes, reps, &error);
  std::printf("{\"bench\":\"copy\",\"bytes\":%lld,\"gb_s\":%.1f%s}\n", static_cast<long long>(copy_bytes), copy_gbs,
              error.empty() ? "" : (",\"error\":" + JsonString(error)).c_str());
  std::fflush(stdout);
  bool ok = error.empty();
  // Scout's attention projections (5120 x 5120), expert up/gate (16384 x 5120) and down (5120 x 16384) shapes; the
  // output head (202048 x 5120) in BF16 only, decode only (2 GB of weights).
  const Shape shapes[] = {
      {"attn_5120x5120", 5120, 5120}, {"ffn_up_16384x5120", 16384, 5120}, {"ffn_down_5120x16384", 5120, 16384}};
  for (DType t : {DType::kBF16, DType::kQ8_0, DType::kQ4_0}) {
    for (const Shape& s : shapes) ok = BenchMatrix(t, s, copy_gbs, true, reps) && ok;
  }
  if (!quick) ok = BenchMatrix(DType::kBF16, {"output_202048x5120", 202048, 5120}, copy_gbs, false, reps) && ok;
  return ok ? 0 : 1;
}
