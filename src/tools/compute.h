// Compute-ceiling probe for `herd bench` (style.md 7): the arithmetic rate a prefill or an image encode cannot beat,
// measured in the same process, on the same threads, as the figure it is compared with (the bandwidth probe's
// counterpart, tools/bandwidth.h).
#pragma once

#include "core/thread_pool.h"

namespace herd::tools {

struct ComputePeak {
  double int8_gops = 0;    // byte dot products as the quantized kernels issue them (VNNI vpdpbusd where present)
  double f32_gflops = 0;   // f32 fused multiply-adds (the F32 / F16 / vision kernels' arithmetic)
  double bf16_gflops = 0;  // vdpbf16ps; 0 where the CPU lacks AVX512_BF16
};

// Every thread of `pool` runs 12 independent accumulator chains of each kind (registers only, kernels::PeakOps) for
// about `ms` milliseconds at once; the best of `passes` passes, in G operations per second counting a multiply-add
// as 2, summed over the threads.
ComputePeak MeasureComputePeak(ThreadPool& pool, double ms = 40, int passes = 3);

}  // namespace herd::tools
