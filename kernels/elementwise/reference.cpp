// CPU reference for element-wise ops (see kernels/elementwise/elementwise.h): every array is
// [count], contiguous. Outputs may alias inputs (each element is read before it is written).
//
// GELU is evaluated in double and rounded once to T. Φ(x) is written as erfc(−x/√2)/2 rather
// than (1 + erf(x/√2))/2: for very negative x the latter cancels to 0 (or to a few ulps of
// garbage) where x·Φ(x) is small but representable.
//   gelu(x)  = x·Φ(x)
//   gelu'(x) = Φ(x) + x·φ(x),  φ(x) = exp(−x²/2)/√(2π)
#include "elementwise/elementwise.h"

#include <cmath>
#include <cstdint>

namespace wren::cpu {
namespace {

constexpr double kInvSqrt2 = 0.70710678118654752440;    // 1/√2
constexpr double kInvSqrt2Pi = 0.39894228040143267794;  // 1/√(2π)

double normal_cdf(double x) {
  return 0.5 * std::erfc(-x * kInvSqrt2);
}
double normal_pdf(double x) {
  return kInvSqrt2Pi * std::exp(-0.5 * x * x);
}

}  // namespace

template <class T>
void relu_forward(int64_t count, const T* x, T* y) {
#pragma omp parallel for simd schedule(static) if (count > 65536)
  for (int64_t i = 0; i < count; ++i) {
    const T v = x[i];
    // A NaN passes through (as in PyTorch) so that divergence is not hidden. (v != v rather
    // than std::isnan, and no branches, so that the loop vectorizes.)
    y[i] = (v > T(0) || v != v) ? v : T(0);
  }
}

template <class T>
void relu_backward(int64_t count, const T* x, const T* dy, T* dx) {
#pragma omp parallel for simd schedule(static) if (count > 65536)
  for (int64_t i = 0; i < count; ++i) {
    const T g = dy[i];  // loaded unconditionally so that the select vectorizes
    dx[i] = x[i] > T(0) ? g : T(0);
  }
}

template <class T>
void leaky_relu_forward(int64_t count, T slope, const T* x, T* y) {
  for (int64_t i = 0; i < count; ++i) y[i] = x[i] > T(0) ? x[i] : slope * x[i];
}

template <class T>
void leaky_relu_backward(int64_t count, T slope, const T* x, const T* dy, T* dx) {
  for (int64_t i = 0; i < count; ++i) dx[i] = x[i] > T(0) ? dy[i] : slope * dy[i];
}

template <class T>
void gelu_forward(int64_t count, const T* x, T* y) {
  for (int64_t i = 0; i < count; ++i) {
    const double v = static_cast<double>(x[i]);
    y[i] = static_cast<T>(v * normal_cdf(v));
  }
}

template <class T>
void gelu_backward(int64_t count, const T* x, const T* dy, T* dx) {
  for (int64_t i = 0; i < count; ++i) {
    const double v = static_cast<double>(x[i]);
    const double derivative = normal_cdf(v) + v * normal_pdf(v);
    dx[i] = static_cast<T>(static_cast<double>(dy[i]) * derivative);
  }
}

template <class T>
void add_forward(int64_t count, const T* a, const T* b, T* y) {
  for (int64_t i = 0; i < count; ++i) y[i] = a[i] + b[i];
}

template <class T>
void accumulate(int64_t count, const T* x, T* y) {
  for (int64_t i = 0; i < count; ++i) y[i] += x[i];
}

template <class T>
void copy(int64_t count, const T* x, T* y) {
  for (int64_t i = 0; i < count; ++i) y[i] = x[i];
}

#define WREN_INSTANTIATE_ELEMENTWISE(T)                                     \
  template void relu_forward<T>(int64_t, const T*, T*);                     \
  template void relu_backward<T>(int64_t, const T*, const T*, T*);          \
  template void leaky_relu_forward<T>(int64_t, T, const T*, T*);            \
  template void leaky_relu_backward<T>(int64_t, T, const T*, const T*, T*); \
  template void gelu_forward<T>(int64_t, const T*, T*);                     \
  template void gelu_backward<T>(int64_t, const T*, const T*, T*);          \
  template void add_forward<T>(int64_t, const T*, const T*, T*);            \
  template void accumulate<T>(int64_t, const T*, T*);                       \
  template void copy<T>(int64_t, const T*, T*);

WREN_INSTANTIATE_ELEMENTWISE(float)
WREN_INSTANTIATE_ELEMENTWISE(double)

#undef WREN_INSTANTIATE_ELEMENTWISE

}  // namespace wren::cpu
