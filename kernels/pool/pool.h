// Pooling over NCHW activations.
//
//   x [N, C, H, W] -> y [N, C, P, Q],  P = (H + 2·pad_h − kernel_h) / stride_h + 1, Q likewise
//
// Max pooling treats padding as −∞ (PyTorch); the window's first maximum in row-major order
// wins ties, and its flat index into the input plane (h·W + w) is saved in `argmax` [N, C, P, Q]
// so the backward pass is a gather: each input element sums dy over the windows that chose it.
// That makes the backward free of scatter races, so a GPU kernel can do the same
// deterministically. A NaN wins its window (the first one), so it propagates as in PyTorch.
// Sums are accumulated in double and rounded once. Average pooling divides by the whole window including padding when
// count_include_pad (PyTorch's default), else by the number of in-image elements.
//
// Device launchers (the kernels compiled by nvcc for cuda and by g++ for emu):
//
// Pooling kernels (the CUDA twins of kernels/pool/reference.cpp, float only): max pooling with a saved
// argmax, average pooling, and global average pooling, forward and backward. Every launcher
// matches the CPU reference (kernels/pool/pool.h) bit for bit: the same NaN and tie rules
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

#include "common/kernel_api.h"

namespace wren {

struct Pool2dDims {
  int n = 0, c = 0, h = 0, w = 0;
  int kernel_h = 2, kernel_w = 2;
  int stride_h = 2, stride_w = 2;
  int pad_h = 0, pad_w = 0;
  bool count_include_pad = true;  // average pooling only

  int p() const { return (h + 2 * pad_h - kernel_h) / stride_h + 1; }
  int q() const { return (w + 2 * pad_w - kernel_w) / stride_w + 1; }
};

namespace cpu {

template <class T>
void max_pool2d_forward(const Pool2dDims& d, const T* x, T* y, int32_t* argmax);

// Overwrites dx [N, C, H, W].
template <class T>
void max_pool2d_backward(const Pool2dDims& d, const int32_t* argmax, const T* dy, T* dx);

template <class T>
void avg_pool2d_forward(const Pool2dDims& d, const T* x, T* y);

// Overwrites dx.
template <class T>
void avg_pool2d_backward(const Pool2dDims& d, const T* dy, T* dx);

// Global average pool: x [N, C, H, W] -> y [N, C] (mean over H·W).
template <class T>
void global_avg_pool_forward(int n, int c, int hw, const T* x, T* y);

// Overwrites dx.
template <class T>
void global_avg_pool_backward(int n, int c, int hw, const T* dy, T* dx);

}  // namespace cpu
}  // namespace wren

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
