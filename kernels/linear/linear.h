// Fully connected layer, PyTorch's nn.Linear layout:
//   x [N, in]   w [out, in]   b [out] (optional)   y [N, out] = x · wᵀ + b
// An input of higher rank is read as [N, prod(rest)]: NCHW memory is already flat per sample.
//
// Device launchers (the kernels compiled by nvcc for cuda and by g++ for emu):
//
// Fully connected kernels (the CUDA twins of kernels/linear/reference.cpp, float only), PyTorch's
// nn.Linear layout (kernels/linear/linear.h): x [N, in], w [out, in], b [out], y [N, out].
//
// Three GEMMs on kernels/common/gemm_tile.cuh, the building block of the convolution kernels:
//   forward           y  = x · wᵀ + b     M = N,   N = out, reduction in
//   backward data     dx = dy · w         M = N,   N = in,  reduction out
//   backward weights  dw = dyᵀ · x        M = out, N = in,  reduction N
//                     db = Σ_n dy (in double, fixed order)
// A reduction that is long for its output (a forward of a small batch onto few outputs) is
// split into partials in the workspace and summed in a fixed order: no atomics, reruns are
// bit-identical. Math: MathMode (wren/math_mode.h): kFp32 FMAs or kTf32 tensor cores.
//
// Every pointer is a device pointer; b and db may be null; `ws` is
// linear_workspace_bytes(d, math) bytes of device scratch (4-byte aligned; null when that is
// 0). Invalid host arguments throw std::invalid_argument naming the dims. N = 0 is valid.
#pragma once

#include <cstddef>

#include "common/kernel_api.h"
#include "wren/math_mode.h"

namespace wren {

struct LinearDims {
  int n = 0, in = 0, out = 0;
};

namespace cpu {

template <class T>
void linear_forward(const LinearDims& d, const T* x, const T* w, const T* b, T* y);

// dx = dy · w. Overwrites dx.
template <class T>
void linear_backward_data(const LinearDims& d, const T* dy, const T* w, T* dx);

// dw = dyᵀ · x, db = Σ_n dy (db may be nullptr). Overwrites dw and db.
template <class T>
void linear_backward_weights(const LinearDims& d, const T* x, const T* dy, T* dw, T* db);

}  // namespace cpu
}  // namespace wren

#define WREN_DECLARE_LINEAR_KERNELS(ns)                                                            \
  namespace wren::ns {                                                                             \
  size_t linear_workspace_bytes(LinearDims d, MathMode math);                                      \
  /* y = x w^T + b (b may be null) */                                                              \
  void linear_forward(LinearDims d, MathMode math, const float* x, const float* w, const float* b, \
                      float* y, void* ws, StreamHandle stream);                                    \
  /* dx = dy w; overwrites dx */                                                                   \
  void linear_backward_data(LinearDims d, MathMode math, const float* dy, const float* w,          \
                            float* dx, void* ws, StreamHandle stream);                             \
  /* dw = dy^T x, db = sum_n dy (db may be null); overwrites dw and db */                          \
  void linear_backward_weights(LinearDims d, MathMode math, const float* x, const float* dy,       \
                               float* dw, float* db, void* ws, StreamHandle stream);               \
  }

WREN_DECLARE_LINEAR_KERNELS(cuda_kernels)
WREN_DECLARE_LINEAR_KERNELS(emu_kernels)
