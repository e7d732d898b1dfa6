// Element-wise and reduction ops on f32 vectors: RMSNorm (llama4.md 2.3), dot, axpy, scale, softmax, SwiGLU
// (2.9/2.10), add. SIMD (Highway, best target chosen at run time); scalar twins with double accumulation in
// kernels/ref/ops.h are the oracle of ops_test.cpp.
// All functions are thread-safe, allocate nothing, accept any alignment and n == 0. In-place use (out == x) is
// allowed where noted; otherwise inputs and outputs must not overlap.
#pragma once

#include <cstdint>

namespace herd::kernels {

// out[j] = x[j] / sqrt(mean_k(x[k]^2) + eps) * weight[j]; weight == nullptr means weightless (QK-norm, 2.4).
// x, out: f32 [n]; weight: f32 [n] or nullptr; out == x allowed. Sum of squares in f32 (several lanes).
void RmsNorm(const float* x, const float* weight, int64_t n, float eps, float* out);

// sum_i a[i] * b[i] in f32.
float Dot(const float* a, const float* b, int64_t n);

// y[i] += alpha * x[i].
void Axpy(float alpha, const float* x, float* y, int64_t n);

// x[i] *= s (correctly rounded: bit-identical to the reference).
void Scale(float* x, float s, int64_t n);

// x = softmax(x): exp(x[i] - max) / sum; -inf entries become 0. At least one entry must be finite.
void SoftmaxInPlace(float* x, int64_t n);

// out[i] = silu(gate[i]) * up[i], silu(g) = g / (1 + exp(-g)). out may alias gate or up.
void SwiGLU(const float* gate, const float* up, float* out, int64_t n);

// out[i] = a[i] + b[i] (correctly rounded). out may alias a or b.
void Add(const float* a, const float* b, float* out, int64_t n);

// out (2n bytes, any alignment, in host byte order) = the IEEE binary16 of each x[i], bit for bit herd::F32ToF16
// (core/half.h: round to nearest even, overflow to infinity, NaN to the quiet NaN with the input's sign).
void F32ToF16Row(const float* x, int64_t n, uint8_t* out);

}  // namespace herd::kernels
