// 2-D batch normalisation over NCHW (PyTorch's BatchNorm2d semantics).
//
//   x, y           [N, C, H, W]
//   gamma, beta    [C]  parameters; gamma == nullptr means 1, beta == nullptr means 0
//                       (affine=false, or a BN "without scale")
//   running_mean,
//   running_var    [C]  buffers (not parameters): never touched by an optimizer
//   save_mean,
//   save_invstd    [C]  the batch statistics of the forward pass, kept for the backward pass
//
// Training: mean and biased variance over (N, H, W) normalise the batch,
//   y = gamma·(x − mean)·invstd + beta,  invstd = 1/√(var + eps)
// and the running statistics move by `momentum` towards the batch's, using the *unbiased*
// variance (var · m/(m−1), m = N·H·W), as PyTorch does:
//   running = (1 − momentum)·running + momentum·batch
// Inference: running statistics normalise instead; nothing is updated.
// Statistics are accumulated in double whatever T is, in a fixed order.
//
// Device launchers (the kernels compiled by nvcc for cuda and by g++ for emu):
//
// BatchNorm2d kernels (the CUDA twins of kernels/batch_norm/reference.cpp, float only): training and
// inference forward and backward over NCHW, with the CPU functions' arguments and semantics
// (kernels/batch_norm/batch_norm.h): gamma / beta nullable (1 / 0), dx / dgamma / dbeta nullable
// in the backward passes, the running statistics moved by `momentum` with the unbiased
// variance, batch statistics in double. All pointers are device pointers; y may be x and dx
// may be dy (each element is read before it is written).
//
//   ws: batch_norm2d_workspace_bytes(d) bytes of device memory, 8-byte aligned: per-channel
//       partial sums (training forward, both backward passes when they need sums).
//
// Deterministic: no atomics; every per-channel sum is accumulated in double in a fixed order
// (per thread, then a fixed tree per block, then the blocks' partials in a fixed tree), so
// results are bit-identical from run to run, under every emulator schedule, and — the double
// operations are written without FMA contraction and division and square root are IEEE — the
// same in the CUDA and the emulator builds. Against the CPU reference the sums differ in order
// (and the training variance is formed from sums shifted by the channel's first element
// rather than in a second pass), which moves results by at most one fp32 ulp; the inference
// forward and the inference dx involve no sums and match the reference bit for bit.
//
// Host-side argument errors (negative dims, N·H·W ≥ 2^31, missing arrays or workspace, a
// negative or non-finite eps, a non-finite momentum) throw std::invalid_argument before
// anything is enqueued.
#pragma once

#include <cstddef>

#include "common/kernel_api.h"

namespace wren {

struct BatchNormDims {
  int n = 0, c = 0, h = 0, w = 0;
};

namespace cpu {

template <class T>
void batch_norm2d_forward_train(const BatchNormDims& d, T eps, T momentum, const T* x,
                                const T* gamma, const T* beta, T* y, T* save_mean,
                                T* save_invstd, T* running_mean, T* running_var);

template <class T>
void batch_norm2d_forward_infer(const BatchNormDims& d, T eps, const T* x, const T* gamma,
                                const T* beta, const T* running_mean, const T* running_var,
                                T* y);

// Backward of the training-mode forward: the batch statistics depend on x.
// Overwrites dx (nullptr: x needs no gradient); dgamma / dbeta (nullptr when the parameter is
// absent) are overwritten. Training needs N·H·W ≥ 2 (the executor refuses less).
template <class T>
void batch_norm2d_backward_train(const BatchNormDims& d, const T* x, const T* dy, const T* gamma,
                                 const T* save_mean, const T* save_invstd, T* dx, T* dgamma,
                                 T* dbeta);

// Backward of the inference-mode forward: the statistics are constants. dx may be nullptr.
template <class T>
void batch_norm2d_backward_infer(const BatchNormDims& d, T eps, const T* x, const T* dy,
                                 const T* gamma, const T* running_mean, const T* running_var,
                                 T* dx, T* dgamma, T* dbeta);

}  // namespace cpu
}  // namespace wren

#define WREN_DECLARE_BATCH_NORM_KERNELS(ns)                                                   \
  namespace wren::ns {                                                                        \
  size_t batch_norm2d_workspace_bytes(BatchNormDims d);                                       \
  void batch_norm2d_forward_train(BatchNormDims d, float eps, float momentum, const float* x,  \
                                  const float* gamma, const float* beta, float* y,            \
                                  float* save_mean, float* save_invstd, float* running_mean,  \
                                  float* running_var, void* ws, StreamHandle stream);         \
  void batch_norm2d_forward_infer(BatchNormDims d, float eps, const float* x,                 \
                                  const float* gamma, const float* beta,                      \
                                  const float* running_mean, const float* running_var,        \
                                  float* y, StreamHandle stream);                             \
  void batch_norm2d_backward_train(BatchNormDims d, const float* x, const float* dy,          \
                                   const float* gamma, const float* save_mean,                \
                                   const float* save_invstd, float* dx, float* dgamma,        \
                                   float* dbeta, void* ws, StreamHandle stream);              \
  void batch_norm2d_backward_infer(BatchNormDims d, float eps, const float* x, const float* dy, \
                                   const float* gamma, const float* running_mean,             \
                                   const float* running_var, float* dx, float* dgamma,        \
                                   float* dbeta, void* ws, StreamHandle stream);              \
  }

WREN_DECLARE_BATCH_NORM_KERNELS(cuda_kernels)
WREN_DECLARE_BATCH_NORM_KERNELS(emu_kernels)
