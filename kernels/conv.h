// 2-D convolution kernels (the CUDA twins of host/ops/conv2d.cpp, float only): forward with
// the bias and an optional ReLU fused, backward data, backward weights (+ bias). Layouts as in
// include/wren/ops/conv2d.h: x [N, C, H, W], w [K, C, R, S], b [K], y [N, K, P, Q].
//
// All three are implicit GEMMs on kernels/gemm_tile.cuh (no im2col matrix is materialised):
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

#include "kernel_api.h"
#include "wren/math_mode.h"  // MathMode: kTf32 = tensor cores (mma.sync m16n8k8), fp32 accumulate
#include "wren/ops/conv2d.h"

namespace wren {
enum class ConvEpilogue { kNone, kRelu };  // fused into the forward after the bias
}  // namespace wren

#define WREN_DECLARE_CONV_KERNELS(ns)                                                           \
  namespace wren::ns {                                                                          \
  /* device scratch the three calls below need (may be 0) */                                    \
  size_t conv2d_workspace_bytes(Conv2dDims d, MathMode math);                                   \
  /* y = epilogue(conv(x, w) + b); b may be null */                                             \
  void conv2d_forward(Conv2dDims d, MathMode math, ConvEpilogue epilogue, const float* x,       \
                      const float* w, const float* b, float* y, void* ws, StreamHandle stream); \
  /* dx = dL/dx from dy; overwrites dx */                                                       \
  void conv2d_backward_data(Conv2dDims d, MathMode math, const float* dy, const float* w,       \
                            float* dx, void* ws, StreamHandle stream);                          \
  /* dw = dL/dw, db = dL/db (db may be null); overwrites dw and db */                           \
  void conv2d_backward_weights(Conv2dDims d, MathMode math, const float* x, const float* dy,    \
                               float* dw, float* db, void* ws, StreamHandle stream);            \
  }

WREN_DECLARE_CONV_KERNELS(cuda_kernels)
WREN_DECLARE_CONV_KERNELS(emu_kernels)
