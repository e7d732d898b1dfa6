// Scalar reference of kernels/ops.h: plain loops computing in double and rounding once to f32 per output
// (so Scale and Add are correctly rounded, and Dot is returned in double). The oracle of ops_test.cpp.
#pragma once

#include <cstdint>

namespace herd::kernels::ref {

void RmsNorm(const float* x, const float* weight, int64_t n, float eps, float* out);
double Dot(const float* a, const float* b, int64_t n);
void Axpy(float alpha, const float* x, float* y, int64_t n);
void Scale(float* x, float s, int64_t n);
void SoftmaxInPlace(float* x, int64_t n);
void SwiGLU(const float* gate, const float* up, float* out, int64_t n);
void Add(const float* a, const float* b, float* out, int64_t n);

}  // namespace herd::kernels::ref
