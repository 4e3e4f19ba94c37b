// The device boundary: everything the Executor asks of a device. The executor, the graph and
// (later) the optimizer driver are written once against this interface; a device implements
// it (design.md, "three devices, one executor"):
//   cpu  — CpuBackend<T>: the reference ops of host/ops/, float or double
//   cuda — the kernels of kernels/ on a GPU          (the CUDA issue)
//   emu  — the same kernels run by the SIMT emulator (the emulator issue)
// Pointers passed to op methods point into memory this backend allocated. Every op method has
// the signature of its CPU reference in include/wren/ops/, which is its specification.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "wren/ops/batch_norm.h"
#include "wren/ops/conv2d.h"
#include "wren/ops/linear.h"
#include "wren/ops/pool.h"
#include "wren/ops/softmax_ce.h"
#include "wren/rng.h"
#include "wren/tensor.h"

namespace wren {

template <class T>
class Backend {
 public:
  virtual ~Backend() = default;
  virtual Device device() const = 0;

  // --- memory: allocated once when a plan is made, never inside a step -----------------------
  virtual void* allocate(size_t bytes) = 0;  // aligned to at least 256 bytes; nullptr if out
  virtual void release(void* ptr) = 0;
  virtual void upload(void* dst, const void* host_src, size_t bytes) = 0;
  virtual void download(void* host_dst, const void* src, size_t bytes) = 0;
  virtual void fill_zero(void* dst, size_t bytes) = 0;

  // --- ops ------------------------------------------------------------------------------------
  virtual size_t conv2d_workspace_elems(const Conv2dDims& d) const = 0;
  virtual void conv2d_forward(const Conv2dDims& d, const T* x, const T* w, const T* b, T* y,
                              T* ws) = 0;
  virtual void conv2d_backward_data(const Conv2dDims& d, const T* dy, const T* w, T* dx,
                                    T* ws) = 0;
  virtual void conv2d_backward_weights(const Conv2dDims& d, const T* x, const T* dy, T* dw,
                                       T* db, T* ws) = 0;

  virtual void linear_forward(const LinearDims& d, const T* x, const T* w, const T* b, T* y) = 0;
  virtual void linear_backward_data(const LinearDims& d, const T* dy, const T* w, T* dx) = 0;
  virtual void linear_backward_weights(const LinearDims& d, const T* x, const T* dy, T* dw,
                                       T* db) = 0;

  virtual void max_pool2d_forward(const Pool2dDims& d, const T* x, T* y, int32_t* argmax) = 0;
  virtual void max_pool2d_backward(const Pool2dDims& d, const int32_t* argmax, const T* dy,
                                   T* dx) = 0;
  virtual void avg_pool2d_forward(const Pool2dDims& d, const T* x, T* y) = 0;
  virtual void avg_pool2d_backward(const Pool2dDims& d, const T* dy, T* dx) = 0;
  virtual void global_avg_pool_forward(int n, int c, int hw, const T* x, T* y) = 0;
  virtual void global_avg_pool_backward(int n, int c, int hw, const T* dy, T* dx) = 0;

  virtual void relu_forward(int64_t count, const T* x, T* y) = 0;
  virtual void relu_backward(int64_t count, const T* x, const T* dy, T* dx) = 0;
  virtual void leaky_relu_forward(int64_t count, T slope, const T* x, T* y) = 0;
  virtual void leaky_relu_backward(int64_t count, T slope, const T* x, const T* dy, T* dx) = 0;
  virtual void gelu_forward(int64_t count, const T* x, T* y) = 0;
  virtual void gelu_backward(int64_t count, const T* x, const T* dy, T* dx) = 0;
  virtual void add_forward(int64_t count, const T* a, const T* b, T* y) = 0;
  virtual void accumulate(int64_t count, const T* x, T* y) = 0;
  virtual void copy(int64_t count, const T* x, T* y) = 0;

  virtual void dropout_forward(int64_t count, float p, RngKey key, uint64_t step, const T* x,
                               T* y, uint8_t* mask) = 0;
  virtual void dropout_backward(int64_t count, float p, const uint8_t* mask, const T* dy,
                                T* dx) = 0;

  virtual void batch_norm2d_forward_train(const BatchNormDims& d, T eps, T momentum, const T* x,
                                          const T* gamma, const T* beta, T* y, T* save_mean,
                                          T* save_invstd, T* running_mean, T* running_var) = 0;
  virtual void batch_norm2d_forward_infer(const BatchNormDims& d, T eps, const T* x,
                                          const T* gamma, const T* beta, const T* running_mean,
                                          const T* running_var, T* y) = 0;
  virtual void batch_norm2d_backward_train(const BatchNormDims& d, const T* x, const T* dy,
                                           const T* gamma, const T* save_mean,
                                           const T* save_invstd, T* dx, T* dgamma,
                                           T* dbeta) = 0;
  virtual void batch_norm2d_backward_infer(const BatchNormDims& d, T eps, const T* x,
                                           const T* dy, const T* gamma, const T* running_mean,
                                           const T* running_var, T* dx, T* dgamma,
                                           T* dbeta) = 0;

  virtual void softmax_cross_entropy_forward(const SoftmaxCeDims& d, const SoftmaxCeOptions& o,
                                             const T* logits, const int32_t* labels,
                                             const T* class_weights, T* loss) = 0;
  virtual void softmax_cross_entropy_backward(const SoftmaxCeDims& d, const SoftmaxCeOptions& o,
                                              const T* logits, const int32_t* labels,
                                              const T* class_weights, T dloss, T* dlogits) = 0;
};

// The CPU reference device (host/cpu_backend.cpp), for T = float or double.
template <class T>
std::unique_ptr<Backend<T>> make_cpu_backend();

}  // namespace wren
