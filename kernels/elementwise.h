// Elementwise kernels (the CUDA twins of host/ops/elementwise.cpp and host/ops/dropout.cpp,
// float only): ReLU, leaky ReLU, GELU, residual add, gradient accumulation, copy and inverted
// dropout. Every launcher takes flat arrays of `count` elements (device pointers; an output may
// be the same array as an input, but must not partially overlap one).
//
// Exactness against the CPU reference:
//  - ReLU, leaky ReLU, add, accumulate, copy, dropout: bit for bit on every device (one IEEE
//    operation per element, same NaN rules; dropout's mask is uniform_at(key, step, i) >= p,
//    an integer-exact computation, and kept values are x / (1 - p) as one fp32 division).
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
// Dropout: p must be in [0, 1) (std::invalid_argument otherwise). One Philox call serves four
// consecutive elements (uniform_at's counter is i/4), so the mask costs a quarter of a Philox
// per element.
#pragma once

#include <cstdint>

#include "kernel_api.h"
#include "wren/rng.h"

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
  /* mask[i] = uniform_at(key, step, i) >= p; y[i] = mask[i] ? x[i] / (1 - p) : 0 */           \
  void dropout_forward(int64_t count, float p, RngKey key, uint64_t step, const float* x,      \
                       float* y, uint8_t* mask, StreamHandle stream);                          \
  /* dx[i] = mask[i] ? dy[i] / (1 - p) : 0 */                                                  \
  void dropout_backward(int64_t count, float p, const uint8_t* mask, const float* dy,          \
                        float* dx, StreamHandle stream);                                       \
  }

WREN_DECLARE_ELEMENTWISE_KERNELS(cuda_kernels)
WREN_DECLARE_ELEMENTWISE_KERNELS(emu_kernels)
