// Pooling kernels (the CUDA twins of host/ops/pool.cpp, float only): max pooling with a saved
// argmax, average pooling, and global average pooling, forward and backward. Every launcher
// matches the CPU reference (include/wren/ops/pool.h) bit for bit: the same NaN and tie rules
// (a NaN wins its window, the first maximum in row-major order wins ties, argmax is the flat
// index h·W + w into the input plane, −1 for a window entirely in the padding), every sum
// accumulated in double in the reference's order and rounded once to float.
//
// Both backward passes are gathers (one thread per input element, visiting the windows that
// cover it in increasing (p, q)): deterministic, no atomics. Backward launchers overwrite dx.
// All pointers are device pointers; `stream` is a cudaStream_t / wren::emu::Stream (nullptr is
// the default stream).
#pragma once

#include <cstdint>

#include "kernel_api.h"
#include "wren/ops/pool.h"

#define WREN_DECLARE_POOL_KERNELS(ns)                                                       \
  namespace wren::ns {                                                                      \
  /* x [N, C, H, W] -> y, argmax [N, C, P, Q] */                                            \
  void max_pool2d_forward(Pool2dDims d, const float* x, float* y, int32_t* argmax,          \
                          StreamHandle stream);                                             \
  /* argmax, dy [N, C, P, Q] -> dx [N, C, H, W] */                                          \
  void max_pool2d_backward(Pool2dDims d, const int32_t* argmax, const float* dy, float* dx, \
                           StreamHandle stream);                                            \
  void avg_pool2d_forward(Pool2dDims d, const float* x, float* y, StreamHandle stream);     \
  void avg_pool2d_backward(Pool2dDims d, const float* dy, float* dx, StreamHandle stream);  \
  /* x [N, C, hw] -> y [N, C] (mean over each plane) */                                     \
  void global_avg_pool_forward(int n, int c, int hw, const float* x, float* y,              \
                               StreamHandle stream);                                        \
  /* dy [N, C] -> dx [N, C, hw] */                                                          \
  void global_avg_pool_backward(int n, int c, int hw, const float* dy, float* dx,           \
                                StreamHandle stream);                                       \
  }

WREN_DECLARE_POOL_KERNELS(cuda_kernels)
WREN_DECLARE_POOL_KERNELS(emu_kernels)
