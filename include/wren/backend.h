// The device boundary: everything the Executor and the trainer ask of a device. The executor,
// the graph and the trainer are written once against this interface; a device implements it
// (docs/ARCHITECTURE.md, design decision 1: three devices, one executor):
//   cpu  — CpuBackend<T> (host/backends/cpu_backend.cpp): the families' CPU references
//          (kernels/<family>/reference.cpp), float or double
//   cuda — the kernel backend (host/backends/kernel_backend.cu) compiled by nvcc: the families'
//          kernels (kernels/<family>/<family>.cu) on a GPU
//   emu  — the same kernel backend and kernels compiled by g++, run by the SIMT emulator
// Pointers passed to op methods point into memory this backend allocated. Every op method has
// the signature of its CPU reference in kernels/<family>/<family>.h, which is its
// specification.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "batch_norm/batch_norm.h"
#include "conv/conv.h"
#include "linear/linear.h"
#include "pool/pool.h"
#include "softmax_ce/softmax_ce.h"
#include "wren/data.h"
#include "wren/error.h"
#include "wren/math_mode.h"
#include "wren/optimizer.h"
#include "wren/rng.h"
#include "wren/tensor.h"

namespace wren {

// The optimizer of a device whose parameters live in device memory (cuda, emu): the fused
// optimizer kernel (kernels/optimizer/optimizer.h) with its state buffers in device memory. The cpu device
// has none: wren::Optimizer updates host memory directly. The host-side wren::Optimizer of a
// run stays the owner of the configuration and of the checkpointed state: download_state()
// copies the device state into it before a checkpoint, upload_state() after a resume.
class DeviceOptimizer {
 public:
  virtual ~DeviceOptimizer() = default;
  // One step on device buffers [param_count] at lr (the scheduler's lr_t). Errors as
  // wren::Optimizer::step: nothing is updated and the step count stays. With
  // OptimizerConfig::check_finite a non-finite gradient is such an error (kNumericError): the
  // kernel itself skips the update (parameters and state untouched) and sets a device flag,
  // which this call reads.
  virtual Status step(float* params, const float* grads, double lr) = 0;
  virtual int64_t step_count() = 0;
  // ‖grad‖₂ of the last step when clipping or check_finite is on, NaN otherwise.
  virtual double last_grad_norm() = 0;
  // The step in three parts, for step capture (CUDA graphs): set_lr uploads lr_t (outside
  // the captured work), enqueue_step enqueues the update without waiting (inside it),
  // finish_step waits and reads the outcome (outside): the device flag of a skipped step
  // becomes the kNumericError it returns. step() is the three in a row. `loss`: with
  // check_finite, a device scalar (the executor's loss) the step must also find finite,
  // checked on the device when the step runs (a recorded step decides on its own); nullptr:
  // the gradients only.
  virtual Status set_lr(double lr) = 0;
  virtual void enqueue_step(float* params, const float* grads, const float* loss = nullptr) = 0;
  virtual Status finish_step() = 0;
  // Copies state buffers and step count between the device and `host` (same config).
  virtual void download_state(Optimizer<float>& host) = 0;
  virtual void upload_state(const Optimizer<float>& host) = 0;
};

// The data path on a kernel device (cuda, emu): a dataset held in device memory once, as its
// uint8 pixels, and each batch gathered, augmented and normalized there by kernels/augment/augment.h,
// bit-identical to wren::make_batch<float>. Only the batch's sample indices travel per step.
class DeviceBatcher {
 public:
  virtual ~DeviceBatcher() = default;
  // images [n, C, H, W] and labels [n] (device memory, e.g. the executor's input and labels)
  // from `sample_indices` (n <= the batcher's max batch), as make_batch<float> with the
  // batcher's normalization and augmentation config.
  virtual Status make_batch(std::span<const int64_t> sample_indices, bool augment, uint64_t seed,
                            uint64_t step, float* images, int32_t* labels) = 0;
  // The number of the first `rows` rows of device logits [.., classes] whose argmax (first
  // maximum wins) equals the device label.
  virtual Expected<int64_t> count_correct(int rows, int classes, const float* logits,
                                          const int32_t* labels) = 0;
};

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
  // Waits for queued work; a device error (a failed kernel, an emulator fault) as a Status.
  virtual Status synchronize() { return {}; }
  // One line naming the device and its settings, for logs ("cpu", "emu (fp32)", ...).
  virtual std::string describe() const { return to_string(device()); }
  // The native queue the ops are enqueued on, for timing them from outside (wren-bench records
  // CUDA events on it): the cudaStream_t on the cuda device; nullptr on cpu and emu, whose ops
  // have run by the time synchronize() returns.
  virtual void* native_stream() const { return nullptr; }
  // The most device memory this backend held at once through allocate() and its optimizer and
  // batcher, in bytes (cuda, emu); 0 on the cpu, whose memory is the process's (peak RSS).
  virtual size_t peak_allocated_bytes() const { return 0; }

  // --- scratch beyond the conv workspace ------------------------------------------------------
  // Bytes of device scratch an op needs (kernels with multi-block reductions); the executor
  // plans one region of the largest size, shared by all ops, and binds it once after planning.
  virtual size_t linear_workspace_bytes(const LinearDims&) const { return 0; }
  virtual size_t batch_norm_workspace_bytes(const BatchNormDims&) const { return 0; }
  virtual size_t softmax_ce_workspace_bytes(const SoftmaxCeDims&) const { return 0; }
  virtual void bind_scratch(void* /*scratch*/, size_t /*bytes*/) {}

  // --- step capture (CUDA graphs) ----------------------------------------------------------
  // capture_step runs `body` once while recording the work it enqueues; replay_step runs the
  // recording again. cuda: stream capture into a CUDA graph, replayed with one
  // cudaGraphLaunch (the host then launches nothing per step). emu: the recording is `body`
  // itself, run again at each replay, so the emulator exercises the same enqueue-only path.
  // `body` must not wait for the device or copy between host and device. The cpu device
  // cannot capture.
  virtual bool can_capture() const { return false; }
  virtual Status capture_step(std::function<void()> /*body*/) {
    return unavailable("step capture needs a kernel device (cuda or emu)");
  }
  virtual Status replay_step() { return unavailable("no captured step"); }

  // The fused optimizer for parameters in this device's memory; nullptr on the cpu device.
  virtual Expected<std::unique_ptr<DeviceOptimizer>> make_optimizer(
      const OptimizerConfig& /*config*/, const std::vector<ParamSegment>& /*segments*/,
      int64_t /*param_count*/) {
    return std::unique_ptr<DeviceOptimizer>();
  }
  // The dataset uploaded once for batches of up to `max_batch`; nullptr on the cpu device
  // (make_batch runs on the host there).
  virtual Expected<std::unique_ptr<DeviceBatcher>> make_batcher(
      const Dataset& /*dataset*/, const Normalization& /*normalization*/,
      const AugmentConfig& /*augment*/, int /*max_batch*/) {
    return std::unique_ptr<DeviceBatcher>();
  }

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

// The CPU reference device (host/backends/cpu_backend.cpp), for T = float or double.
struct CpuBackendOptions {
  // Round the matrix operands of conv and linear (both inputs of every product, forward and
  // backward) to TF32 before the fp32 product, as the device's --math tf32 path does; bias and
  // everything else stay fp32. `wren check --math tf32` compares against this reference, so
  // that TF32's own rounding does not flip ReLU masks and max-pool choices between the two
  // sides. Float only (ignored for double).
  bool tf32_operands = false;
};
template <class T>
std::unique_ptr<Backend<T>> make_cpu_backend(const CpuBackendOptions& options = {});

const char* to_string(MathMode mode);  // "fp32", "tf32"

// Which GEMM runs the linear layers on the cuda device: Wren's kernel (kernels/linear/linear.cu, also
// in the emulator) or cuBLAS (kernels/linear/cublas_linear.cu; cuda only).
enum class LinearImpl { kWren, kCublas };
const char* to_string(LinearImpl impl);  // "wren", "cublas"

struct BackendOptions {
  Device device = Device::kCpu;
  MathMode math = MathMode::kFp32;          // cuda and emu only
  LinearImpl linear = LinearImpl::kWren;    // cuda only (emu and cpu refuse kCublas)
};

// A float backend for any device (host/backends/device.cpp): kUnavailable naming what is missing when
// this build or this machine cannot provide it (no CUDA toolkit at build time, no GPU, no
// emulator), not a crash.
Expected<std::unique_ptr<Backend<float>>> make_backend(const BackendOptions& options);

}  // namespace wren
