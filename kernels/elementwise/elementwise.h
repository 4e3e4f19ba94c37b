// Element-wise ops over `count` contiguous elements: activations, the residual add, copies.
//
// Backward functions overwrite dx. Activation backward passes take the forward input x.
//   relu(x)        = max(x, 0);                       relu'(0) = 0
//   leaky_relu(x)  = x > 0 ? x : slope·x;             derivative at 0 is slope
//   gelu(x)        = x·Φ(x), Φ the standard normal CDF (PyTorch approximate='none'),
//                    evaluated in double through erfc (1 + erf cancels for very negative x)
// NaN inputs propagate (relu(NaN) = NaN, as in PyTorch).
//
// Device launchers (the kernels compiled by nvcc for cuda and by g++ for emu):
//
// Elementwise kernels (the CUDA twins of reference.cpp, float only): ReLU, leaky ReLU, GELU,
// residual add, gradient accumulation and copy. Every launcher takes flat arrays of `count` elements (device pointers; an output may
// be the same array as an input, but must not partially overlap one).
//
// Exactness against the CPU reference:
//  - ReLU, leaky ReLU, add, accumulate, copy: bit for bit on every device (one IEEE
//    operation per element, same NaN rules).
//  - GELU: the reference's double-precision formula, operation by operation (no FMA
//    contraction), rounded once to float. The emulator calls the same libm erfc/exp as the
//    reference: bit for bit. On a GPU, CUDA's double erfc and exp are not correctly rounded
//    (the CUDA programming guide documents 5 and 1 ulp), so the double result may differ from
//    glibc's by a few double ulps, and the float result by one fp32 ulp where the value lies
//    that close to a rounding boundary (on random inputs practically never). Exception: the
//    backward's Φ(x) + x·φ(x) cancels near its zero x ≈ −0.7518, where the relative error of
//    the double value (and of the reference's) grows as 1/|gelu'(x)|; there the bound is an
//    absolute ~1e-16·|dy|.
//
#pragma once

#include <cstdint>

#include "common/kernel_api.h"

namespace wren::cpu {

template <class T>
void relu_forward(int64_t count, const T* x, T* y);
template <class T>
void relu_backward(int64_t count, const T* x, const T* dy, T* dx);

template <class T>
void leaky_relu_forward(int64_t count, T slope, const T* x, T* y);
template <class T>
void leaky_relu_backward(int64_t count, T slope, const T* x, const T* dy, T* dx);

template <class T>
void gelu_forward(int64_t count, const T* x, T* y);
template <class T>
void gelu_backward(int64_t count, const T* x, const T* dy, T* dx);

// y = a + b (the residual add). Its backward is da = db = dy: two copies.
template <class T>
void add_forward(int64_t count, const T* a, const T* b, T* y);

// y += x: gradient accumulation where a value feeds several ops.
template <class T>
void accumulate(int64_t count, const T* x, T* y);

// y = x (flatten is a copy of contiguous memory; its backward is a copy too).
template <class T>
void copy(int64_t count, const T* x, T* y);

}  // namespace wren::cpu

#define WREN_DECLARE_ELEMENTWISE_KERNELS(ns)                                                   \
  namespace wren::ns {                                                                         \
  void relu_forward(int64_t count, const float* x, float* y, StreamHandle stream);             \
  void relu_backward(int64_t count, const float* x, const float* dy, float* dx,                \
                     StreamHandle stream);                                                     \
  void leaky_relu_forward(int64_t count, float slope, const float* x, float* y,                \
                          StreamHandle stream);                                                \
  void leaky_relu_backward(int64_t count, float slope, const float* x, const float* dy,        \
                           float* dx, StreamHandle stream);                                    \
  /* y = a + b */                                                                              \
  void add_forward(int64_t count, const float* a, const float* b, float* y,                    \
                   StreamHandle stream);                                                       \
  /* acc += x (a value consumed twice gets its gradients summed) */                            \
  void accumulate(int64_t count, const float* x, float* acc, StreamHandle stream);             \
  /* y = x·Φ(x) (exact GELU); dx = dy·(Φ(x) + x·φ(x)) */                                       \
  void gelu_forward(int64_t count, const float* x, float* y, StreamHandle stream);             \
  void gelu_backward(int64_t count, const float* x, const float* dy, float* dx,                \
                     StreamHandle stream);                                                     \
  /* y = x (bits preserved, NaN payloads included) */                                          \
  void copy(int64_t count, const float* x, float* y, StreamHandle stream);                     \
  }

WREN_DECLARE_ELEMENTWISE_KERNELS(cuda_kernels)
WREN_DECLARE_ELEMENTWISE_KERNELS(emu_kernels)
