// 2-D convolution (cross-correlation, as PyTorch's Conv2d), NCHW activations, OIHW weights.
//
//   x  [N, C, H, W]     input
//   w  [K, C, R, S]     weights (K output channels, R×S kernel)
//   b  [K]              bias, optional (nullptr: no bias)
//   y  [N, K, P, Q]     output, P = (H + 2·pad_h − dil_h·(R−1) − 1) / stride_h + 1, Q likewise
//
// The CPU reference lowers each image to a column matrix (im2col, [C·R·S, P·Q]) and multiplies
// with OpenBLAS; it is the specification the CUDA kernels are measured against.
//
// Device launchers (the kernels compiled by nvcc for cuda and by g++ for emu):
//
// 2-D convolution kernels (the CUDA twins of kernels/conv/reference.cpp, float only): forward with
// the bias fused, backward data, backward weights (+ bias). Layouts as in
// kernels/conv/conv.h: x [N, C, H, W], w [K, C, R, S], b [K], y [N, K, P, Q].
//
// All three are implicit GEMMs on kernels/common/gemm_tile.cuh (no im2col matrix is materialised):
//   forward           y[n, k, p, q]  = Σ_{c, r, s} w[k, c, r, s] · x[n, c, h, w] + b[k]
//                     GEMM M = K, N = N·P·Q, reduction C·R·S
//   backward data     dx[n, c, h, w] = Σ_{k, r, s} w[k, c, r, s] · dy[n, k, p, q]
//                     over the (r, s) whose window position (p, q) exists: a gather, every dx
//                     element written once. GEMM M = C, N = N·H·W, reduction K·R·S
//   backward weights  dw[k, c, r, s] = Σ_{n, p, q} dy[n, k, p, q] · x[n, c, h, w]
//                     GEMM M = K, N = C·R·S, reduction N·P·Q (split for parallelism into
//                     partials in the workspace, summed in a fixed order by a second kernel);
//                     db[k] = Σ_{n, p, q} dy[n, k, p, q] in double (fixed order)
// with h = p·stride_h − pad_h + r·dil_h, w = q·stride_w − pad_w + s·dil_w.
//
// Math: kFp32 plain fp32 FMAs; kTf32 tensor cores (mma.sync m16n8k8, operands rounded to TF32
// with cvt.rna, fp32 accumulation). No atomics anywhere: reruns are bit-identical.
//
// Every pointer is a device pointer; `ws` is conv2d_workspace_bytes(d, math) bytes of device
// scratch (4-byte aligned; may be null when that is 0), shared by the three calls. Invalid
// host arguments (dims, null pointers, a missing workspace) throw std::invalid_argument
// naming the dims before anything is enqueued. N = 0 is valid (dw and db become 0).
#pragma once

#include <cstddef>

#include "common/kernel_api.h"
#include "wren/math_mode.h"  // MathMode: kTf32 = tensor cores (mma.sync m16n8k8), fp32 accumulate

namespace wren {

struct Conv2dDims {
  int n = 0, c = 0, h = 0, w = 0;  // input
  int k = 0, r = 0, s = 0;         // output channels, kernel height, kernel width
  int stride_h = 1, stride_w = 1;
  int pad_h = 0, pad_w = 0;
  int dil_h = 1, dil_w = 1;

  int p() const { return (h + 2 * pad_h - dil_h * (r - 1) - 1) / stride_h + 1; }  // out height
  int q() const { return (w + 2 * pad_w - dil_w * (s - 1) - 1) / stride_w + 1; }  // out width
};

namespace cpu {

// Scratch elements of T needed by every conv2d_* call below (the im2col matrix of one image).
size_t conv2d_workspace_elems(const Conv2dDims& d);

// y = conv(x, w) + b. `ws` holds conv2d_workspace_elems(d) elements.
template <class T>
void conv2d_forward(const Conv2dDims& d, const T* x, const T* w, const T* b, T* y, T* ws);

// dx = ∂L/∂x given dy = ∂L/∂y. Overwrites dx.
template <class T>
void conv2d_backward_data(const Conv2dDims& d, const T* dy, const T* w, T* dx, T* ws);

// dw = ∂L/∂w, db = ∂L/∂b (db may be nullptr). Overwrites dw and db.
template <class T>
void conv2d_backward_weights(const Conv2dDims& d, const T* x, const T* dy, T* dw, T* db, T* ws);

}  // namespace cpu
}  // namespace wren

#define WREN_DECLARE_CONV_KERNELS(ns)                                                           \
  namespace wren::ns {                                                                          \
  /* device scratch the three calls below need (may be 0) */                                    \
  size_t conv2d_workspace_bytes(Conv2dDims d, MathMode math);                                   \
  /* y = conv(x, w) + b; b may be null */                                                      \
  void conv2d_forward(Conv2dDims d, MathMode math, const float* x, const float* w,              \
                      const float* b, float* y, void* ws, StreamHandle stream);                  \
  /* dx = dL/dx from dy; overwrites dx */                                                       \
  void conv2d_backward_data(Conv2dDims d, MathMode math, const float* dy, const float* w,       \
                            float* dx, void* ws, StreamHandle stream);                          \
  /* dw = dL/dw, db = dL/db (db may be null); overwrites dw and db */                           \
  void conv2d_backward_weights(Conv2dDims d, MathMode math, const float* x, const float* dy,    \
                               float* dw, float* db, void* ws, StreamHandle stream);            \
  }

WREN_DECLARE_CONV_KERNELS(cuda_kernels)
WREN_DECLARE_CONV_KERNELS(emu_kernels)
