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
#pragma once

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
