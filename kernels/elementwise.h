// Elementwise kernels (the CUDA twins of host/ops/elementwise.cpp, float only): ReLU, leaky
// ReLU, residual add and gradient accumulation. Every launcher takes flat arrays of `count`
// elements and matches the CPU reference bit for bit (the arithmetic is one operation per
// element, with the same NaN rules).
#pragma once

#include <cstdint>

#include "kernel_api.h"

#define WREN_DECLARE_ELEMENTWISE_KERNELS(ns)                                                  \
  namespace wren::ns {                                                                        \
  void relu_forward(int64_t count, const float* x, float* y, StreamHandle stream);            \
  void relu_backward(int64_t count, const float* x, const float* dy, float* dx,               \
                     StreamHandle stream);                                                    \
  void leaky_relu_forward(int64_t count, float slope, const float* x, float* y,               \
                          StreamHandle stream);                                               \
  void leaky_relu_backward(int64_t count, float slope, const float* x, const float* dy,       \
                           float* dx, StreamHandle stream);                                   \
  /* y = a + b */                                                                             \
  void add_forward(int64_t count, const float* a, const float* b, float* y,                   \
                   StreamHandle stream);                                                      \
  /* acc += x (a value consumed twice gets its gradients summed) */                           \
  void accumulate(int64_t count, const float* x, float* acc, StreamHandle stream);            \
  }

WREN_DECLARE_ELEMENTWISE_KERNELS(cuda_kernels)
WREN_DECLARE_ELEMENTWISE_KERNELS(emu_kernels)
