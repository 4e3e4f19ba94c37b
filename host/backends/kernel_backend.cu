// wren::Backend<float> on the kernels (see kernel_backend.h): compiled by nvcc for the cuda
// device and by g++ for the emu device. Every op method forwards to its kernel family's
// launcher; the scratch the executor binds once (bind_scratch) serves the kernels whose
// reductions need one (linear, batch norm, softmax cross-entropy), conv gets the executor's
// workspace argument. Ops are queued on one stream in call order; synchronize() waits and turns
// a device error into a Status (under the emulator every launch has already run, and the first
// fault of a kernel is recorded with its kernel, block and thread: emu::take_error()).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

#include "augment/augment.h"
#include "backends/kernel_backend.h"
#include "batch_norm/batch_norm.h"
#include "common/launch.h"
#include "conv/conv.h"
#include "dropout/dropout.h"
#include "elementwise/elementwise.h"
#include "linear/cublas_linear.h"
#include "linear/linear.h"
#include "optimizer/optimizer.h"
#include "pool/pool.h"
#include "softmax_ce/softmax_ce.h"
#include "wren/data.h"

namespace wren::WREN_KERNELS_NS {
namespace {

// Device bytes allocated through the backend (parameters, arena, optimizer state, dataset,
// scratch), now and at the peak: benchmarks report the peak beside their timings. Not counted:
// the CUDA context, and cuBLAS's handle and workspace (--linear cublas).
class AllocationCount {
 public:
  void added(void* p, size_t bytes) {
    if (!p) return;
    sizes_[p] = bytes;
    current_ += bytes;
    peak_ = std::max(peak_, current_);
  }
  void removed(void* p) {
    auto it = sizes_.find(p);
    if (it == sizes_.end()) return;
    current_ -= it->second;
    sizes_.erase(it);
  }
  size_t peak_bytes() const { return peak_; }

 private:
  std::unordered_map<void*, size_t> sizes_;
  size_t current_ = 0, peak_ = 0;
};

// --- memory and errors: the only code that differs between the two devices -------------------
#if defined(__CUDACC__)
constexpr Device kDevice = Device::kCuda;

std::string cuda_message(cudaError_t e) {
  return std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e);
}

class Memory : public AllocationCount {
 public:
  Memory() {
    if (cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking) != cudaSuccess) {
      cudaGetLastError();
      stream_ = nullptr;  // the legacy default stream still works
    }
  }
  ~Memory() {
    if (stream_) cudaStreamDestroy(stream_);
  }
  StreamHandle stream() const { return stream_; }
  void* allocate(size_t bytes) {
    void* p = nullptr;
    if (cudaMalloc(&p, bytes) != cudaSuccess) {
      cudaGetLastError();  // out of memory is reported by the caller, not sticky
      return nullptr;
    }
    added(p, bytes);
    return p;
  }
  void release(void* p) {
    removed(p);
    cudaFree(p);
  }
  // Pageable host memory: the copies are synchronous with respect to the host buffer.
  void upload(void* dst, const void* src, size_t bytes) {
    cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_);
    cudaStreamSynchronize(stream_);
  }
  void download(void* dst, const void* src, size_t bytes) {
    cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_);
    cudaStreamSynchronize(stream_);
  }
  void fill_zero(void* dst, size_t bytes) { cudaMemsetAsync(dst, 0, bytes, stream_); }
  std::string synchronize() {
    const cudaError_t sync = cudaStreamSynchronize(stream_);
    const cudaError_t last = cudaGetLastError();
    if (sync != cudaSuccess) return cuda_message(sync);
    if (last != cudaSuccess) return cuda_message(last);
    return {};
  }

 private:
  cudaStream_t stream_ = nullptr;
};
#else
constexpr Device kDevice = Device::kEmu;

class Memory : public AllocationCount {
 public:
  StreamHandle stream() const { return nullptr; }
  void* allocate(size_t bytes) {
    void* p = emu::malloc(bytes);
    added(p, bytes);
    return p;
  }
  void release(void* p) {
    removed(p);
    emu::free(p);
  }
  void upload(void* dst, const void* src, size_t bytes) { emu::memcpy(dst, src, bytes); }
  void download(void* dst, const void* src, size_t bytes) { emu::memcpy(dst, src, bytes); }
  void fill_zero(void* dst, size_t bytes) {
    if (bytes) std::memset(dst, 0, bytes);
  }
  std::string synchronize() { return emu::synchronize(); }
};
#endif

Status device_error(const std::string& what) {
  return Error(ErrorCode::kInternal, std::string(to_string(kDevice)) + " device error: " + what);
}

// --- the fused optimizer ----------------------------------------------------------------------
class KernelOptimizer final : public DeviceOptimizer {
 public:
  KernelOptimizer(Memory& memory, const OptimizerConfig& config,
                  const std::vector<ParamSegment>& segments, int64_t param_count)
      : memory_(memory), param_count_(param_count) {
    fused_ = fused_optim_config(config);
    segment_count_ = static_cast<int32_t>(segments.size());
    host_segments_ = segments;
  }
  ~KernelOptimizer() override {
    for (void* p : owned_) memory_.release(p);
  }
  KernelOptimizer(const KernelOptimizer&) = delete;
  KernelOptimizer& operator=(const KernelOptimizer&) = delete;

  // Allocates the state, the table, the scalars and the workspace once.
  Status allocate() {
    const size_t bytes = static_cast<size_t>(std::max<int64_t>(param_count_, 1)) * sizeof(float);
    if (fused_.kind == FusedOptimKind::kSgd) {
      if (fused_.momentum > 0.0) momentum_ = static_cast<float*>(own(bytes));
    } else {
      m_ = static_cast<float*>(own(bytes));
      v_ = static_cast<float*>(own(bytes));
    }
    segments_ = static_cast<ParamSegment*>(
        own(std::max<size_t>(host_segments_.size(), 1) * sizeof(ParamSegment)));
    scalars_ = static_cast<FusedOptimScalars*>(own(sizeof(FusedOptimScalars)));
    workspace_ = own(fused_optimizer_workspace_bytes(segment_count_));
    if (failed_)
      return Error(ErrorCode::kUnavailable,
                   std::string("optimizer: out of ") + to_string(kDevice) +
                       " memory for the optimizer state (" +
                       std::to_string(((m_ || v_ || fused_.kind != FusedOptimKind::kSgd ? 2 : 1) *
                                       bytes) >> 20) +
                       " MiB)");
    if (!host_segments_.empty())
      memory_.upload(segments_, host_segments_.data(), host_segments_.size() * sizeof(ParamSegment));
    FusedOptimScalars s{};
    memory_.upload(scalars_, &s, sizeof(s));
    for (float* p : {momentum_, m_, v_})
      if (p) memory_.fill_zero(p, bytes);
    return {};
  }

  Status step(float* params, const float* grads, double lr) override {
    WREN_RETURN_IF_ERROR(set_lr(lr));
    enqueue_step(params, grads, nullptr);
    return finish_step();
  }

  Status set_lr(double lr) override {
    if (!(std::isfinite(lr) && lr >= 0.0))
      return invalid_argument(where() + ": the learning rate must be finite and >= 0, got " +
                              std::to_string(lr));
    memory_.upload(&scalars_->lr, &lr, sizeof(double));
    return {};
  }

  void enqueue_step(float* params, const float* grads, const float* loss) override {
    FusedOptimizerArgs args;
    args.params = params;
    args.grads = grads;
    args.momentum = momentum_;
    args.m = m_;
    args.v = v_;
    args.param_count = param_count_;
    args.segments = segments_;
    args.segment_count = segment_count_;
    args.scalars = scalars_;
    args.workspace = workspace_;
    args.loss = loss;
    args.config = fused_;
    fused_optimizer_step(args, memory_.stream());
  }

  Status finish_step() override {
    const std::string at = where();
    if (std::string e = memory_.synchronize(); !e.empty()) return device_error(e);
    FusedOptimScalars s{};
    memory_.download(&s, scalars_, sizeof(s));
    step_count_ = s.step_count;
    last_norm_ = fused_.clip_norm > 0.0 || fused_.check_finite ? s.grad_norm : std::nan("");
    // s.status is the device's flag: nonzero when the kernel skipped the update.
    switch (s.status) {
      case 0: return {};
      case kFusedStatusBadNorm:
        return Error(ErrorCode::kNumericError,
                     at + ": the gradient norm is " + std::to_string(s.grad_norm) +
                         " (a non-finite gradient); the step was not applied");
      case kFusedStatusBadLoss:
        return Error(ErrorCode::kNumericError,
                     at + ": the loss is not finite; the step was not applied");
      default:
        return invalid_argument(at + ": rejected by the device (status " +
                                std::to_string(s.status) + ")");
    }
  }

  // Completed steps, as the device counted them after the last finish_step (or upload_state).
  int64_t step_count() override { return step_count_; }
  double last_grad_norm() override { return last_norm_; }

  void download_state(Optimizer<float>& host) override {
    for (const std::string& name : host.state_names()) {
      std::span<float> dst = host.state(name);
      if (float* src = buffer(name); src && !dst.empty())
        memory_.download(dst.data(), src, dst.size_bytes());
    }
    host.set_step_count(step_count());
  }
  void upload_state(const Optimizer<float>& host) override {
    for (const std::string& name : host.state_names()) {
      std::span<const float> src = host.state(name);
      if (float* dst = buffer(name); dst && !src.empty())
        memory_.upload(dst, src.data(), src.size_bytes());
    }
    FusedOptimScalars s{};
    memory_.download(&s, scalars_, sizeof(s));
    s.step_count = host.step_count();
    memory_.upload(scalars_, &s, sizeof(s));
    step_count_ = s.step_count;
  }

 private:
  void* own(size_t bytes) {
    void* p = memory_.allocate(bytes);
    if (!p) {
      failed_ = true;
      return nullptr;
    }
    owned_.push_back(p);
    return p;
  }
  // "optimizer step t" of the step being made (the device counts the completed ones).
  std::string where() { return "optimizer step " + std::to_string(step_count_ + 1); }
  float* buffer(const std::string& name) {
    if (name == "momentum") return momentum_;
    if (name == "m") return m_;
    if (name == "v") return v_;
    return nullptr;
  }

  Memory& memory_;
  int64_t param_count_;
  FusedOptimConfig fused_{};
  int32_t segment_count_ = 0;
  std::vector<ParamSegment> host_segments_;
  std::vector<void*> owned_;
  bool failed_ = false;
  float *momentum_ = nullptr, *m_ = nullptr, *v_ = nullptr;
  ParamSegment* segments_ = nullptr;
  FusedOptimScalars* scalars_ = nullptr;
  void* workspace_ = nullptr;
  int64_t step_count_ = 0;
  double last_norm_ = std::nan("");
};

// --- the data path --------------------------------------------------------------------------
class KernelBatcher final : public DeviceBatcher {
 public:
  KernelBatcher(Memory& memory, const AugmentConfig& augment) : memory_(memory), augment_(augment) {}
  ~KernelBatcher() override {
    for (void* p : owned_) memory_.release(p);
  }
  KernelBatcher(const KernelBatcher&) = delete;
  KernelBatcher& operator=(const KernelBatcher&) = delete;

  Status upload(const Dataset& dataset, const Normalization& norm, int max_batch) {
    if (norm.mean.size() != static_cast<size_t>(dataset.channels) ||
        norm.std.size() != norm.mean.size())
      return invalid_argument("device data: normalization has " +
                              std::to_string(norm.mean.size()) + " channels, the dataset " +
                              std::to_string(dataset.channels));
    channels_ = dataset.channels;
    count_ = dataset.count;
    max_batch_ = max_batch;
    auto* images = static_cast<uint8_t*>(own(std::max<size_t>(dataset.pixels.size(), 1)));
    auto* labels = static_cast<int32_t*>(own(std::max<size_t>(dataset.labels.size(), 1) * 4));
    indices_ = static_cast<int64_t*>(own(static_cast<size_t>(max_batch) * sizeof(int64_t)));
    mean_ = static_cast<float*>(own(norm.mean.size() * sizeof(float)));
    std_ = static_cast<float*>(own(norm.std.size() * sizeof(float)));
    workspace_ = own(make_batch_workspace_bytes(max_batch, dataset.channels));
    correct_ = static_cast<int64_t*>(own(sizeof(int64_t)));
    if (failed_)
      return Error(ErrorCode::kUnavailable,
                   "device data: out of " + std::string(to_string(kDevice)) +
                       " memory holding " + dataset.source + " (" +
                       std::to_string(dataset.pixels.size() >> 20) +
                       " MiB as uint8, on the device for the whole run): a device with more "
                       "memory, a smaller model or batch, or --device cpu");
    if (!dataset.pixels.empty()) memory_.upload(images, dataset.pixels.data(), dataset.pixels.size());
    if (!dataset.labels.empty())
      memory_.upload(labels, dataset.labels.data(), dataset.labels.size() * sizeof(int32_t));
    memory_.upload(mean_, norm.mean.data(), norm.mean.size() * sizeof(float));
    memory_.upload(std_, norm.std.data(), norm.std.size() * sizeof(float));
    view_ = device_dataset_view(dataset, images, labels);
    return {};
  }

  Status make_batch(std::span<const int64_t> sample_indices, bool augment, uint64_t seed,
                    uint64_t step, float* images, int32_t* labels) override {
    const size_t n = sample_indices.size();
    if (n == 0 || n > static_cast<size_t>(max_batch_))
      return invalid_argument("device data: a batch of " + std::to_string(n) +
                              " samples (this batcher holds up to " +
                              std::to_string(max_batch_) + ")");
    for (size_t i = 0; i < n; ++i)
      if (sample_indices[i] < 0 || sample_indices[i] >= count_)
        return invalid_argument("device data: sample index " + std::to_string(sample_indices[i]) +
                                " at batch position " + std::to_string(i) + " is outside [0, " +
                                std::to_string(count_) + ")");
    memory_.upload(indices_, sample_indices.data(), n * sizeof(int64_t));
    WREN_KERNELS_NS::make_batch(view_, indices_, static_cast<int>(n), mean_, std_, augment_,
                                augment, seed, step, images, labels, workspace_, memory_.stream());
    return {};
  }

  Expected<int64_t> count_correct(int rows, int classes, const float* logits,
                                  const int32_t* labels) override {
    WREN_KERNELS_NS::count_correct(rows, classes, logits, labels, correct_, memory_.stream());
    if (std::string e = memory_.synchronize(); !e.empty()) return device_error(e).error();
    int64_t correct = 0;
    memory_.download(&correct, correct_, sizeof correct);
    return correct;
  }

 private:
  void* own(size_t bytes) {
    void* p = memory_.allocate(bytes);
    if (!p) {
      failed_ = true;
      return nullptr;
    }
    owned_.push_back(p);
    return p;
  }

  Memory& memory_;
  AugmentConfig augment_;
  std::vector<void*> owned_;
  bool failed_ = false;
  DatasetView view_{};
  int channels_ = 0;
  int64_t count_ = 0;
  int max_batch_ = 0;
  int64_t* indices_ = nullptr;
  float *mean_ = nullptr, *std_ = nullptr;
  void* workspace_ = nullptr;
  int64_t* correct_ = nullptr;
};

// --- the backend ------------------------------------------------------------------------------
class KernelBackend final : public Backend<float> {
 public:
  explicit KernelBackend(MathMode math) : math_(math) {}
  ~KernelBackend() override {
#if defined(__CUDACC__)
    if (graph_exec_) cudaGraphExecDestroy(graph_exec_);
#endif
  }
  KernelBackend(const KernelBackend&) = delete;
  KernelBackend& operator=(const KernelBackend&) = delete;

  Device device() const override { return kDevice; }
  std::string describe() const override {
    return std::string(to_string(kDevice)) + " (" + to_string(math_) + " matrix products" +
           (cublas_ ? ", linear on cuBLAS" : "") + ")";
  }

  Status use_linear(LinearImpl linear) {
    if (linear == LinearImpl::kWren) return {};
#if defined(__CUDACC__)
    cublas_ = std::make_unique<CublasLinear>();
    if (std::string e = cublas_->init(static_cast<cudaStream_t>(memory_.stream()), math_);
        !e.empty())
      return unavailable("--linear cublas: " + e);
    return {};
#else
    return unavailable("--linear cublas: cuBLAS needs a GPU; the emu device runs Wren's own "
                       "linear kernel only");
#endif
  }

  void* allocate(size_t bytes) override { return memory_.allocate(bytes); }
  void release(void* ptr) override { memory_.release(ptr); }
  void upload(void* dst, const void* src, size_t bytes) override {
    memory_.upload(dst, src, bytes);
  }
  void download(void* dst, const void* src, size_t bytes) override {
    memory_.download(dst, src, bytes);
  }
  void fill_zero(void* dst, size_t bytes) override { memory_.fill_zero(dst, bytes); }
  void* native_stream() const override { return memory_.stream(); }
  size_t peak_allocated_bytes() const override { return memory_.peak_bytes(); }
  Status synchronize() override {
    if (std::string e = memory_.synchronize(); !e.empty()) return device_error(e);
#if defined(__CUDACC__)
    if (cublas_ && !cublas_->error().empty()) return device_error(cublas_->error());
#endif
    return {};
  }

  size_t linear_workspace_bytes(const LinearDims& d) const override {
    return linear_workspace_bytes_of(d, math_);
  }
  size_t batch_norm_workspace_bytes(const BatchNormDims& d) const override {
    return batch_norm2d_workspace_bytes(d);
  }
  size_t softmax_ce_workspace_bytes(const SoftmaxCeDims& d) const override {
    return softmax_ce_workspace_bytes_of(d);
  }
  void bind_scratch(void* scratch, size_t bytes) override {
    scratch_ = scratch;
    scratch_bytes_ = bytes;
  }

  bool can_capture() const override { return true; }
  Status capture_step(std::function<void()> body) override {
#if defined(__CUDACC__)
    if (graph_exec_) {
      cudaGraphExecDestroy(graph_exec_);
      graph_exec_ = nullptr;
    }
    if (memory_.stream() == nullptr)
      return unavailable("step capture needs a CUDA stream, and creating one failed");
    cudaStream_t stream = static_cast<cudaStream_t>(memory_.stream());
    // Relaxed: a launcher may query or set function attributes while capturing.
    cudaError_t e = cudaStreamBeginCapture(stream, cudaStreamCaptureModeRelaxed);
    if (e != cudaSuccess) return device_error("cudaStreamBeginCapture: " + cuda_message(e));
    try {
      body();
    } catch (...) {
      cudaGraph_t broken = nullptr;
      cudaStreamEndCapture(stream, &broken);
      if (broken) cudaGraphDestroy(broken);
      cudaGetLastError();
      throw;
    }
    cudaGraph_t graph = nullptr;
    e = cudaStreamEndCapture(stream, &graph);
    if (e != cudaSuccess) return device_error("capturing the training step: " + cuda_message(e));
    e = cudaGraphInstantiateWithFlags(&graph_exec_, graph, 0);
    cudaGraphDestroy(graph);
    if (e != cudaSuccess) {
      graph_exec_ = nullptr;
      return device_error("cudaGraphInstantiate: " + cuda_message(e));
    }
    return {};
#else
    captured_ = std::move(body);
    return {};
#endif
  }
  Status replay_step() override {
#if defined(__CUDACC__)
    if (!graph_exec_) return unavailable("no captured step");
    const cudaError_t e =
        cudaGraphLaunch(graph_exec_, static_cast<cudaStream_t>(memory_.stream()));
    if (e != cudaSuccess) return device_error("cudaGraphLaunch: " + cuda_message(e));
    return {};
#else
    if (!captured_) return unavailable("no captured step");
    captured_();
    return {};
#endif
  }

  Expected<std::unique_ptr<DeviceOptimizer>> make_optimizer(
      const OptimizerConfig& config, const std::vector<ParamSegment>& segments,
      int64_t param_count) override {
    WREN_RETURN_IF_ERROR(config.validate());
    WREN_RETURN_IF_ERROR(validate_segments(segments, param_count));
    auto opt = std::make_unique<KernelOptimizer>(memory_, config, segments, param_count);
    WREN_RETURN_IF_ERROR(opt->allocate());
    return std::unique_ptr<DeviceOptimizer>(std::move(opt));
  }

  Expected<std::unique_ptr<DeviceBatcher>> make_batcher(const Dataset& dataset,
                                                        const Normalization& normalization,
                                                        const AugmentConfig& augment,
                                                        int max_batch) override {
    WREN_RETURN_IF_ERROR(check_batch_inputs(dataset, {}, normalization, augment));
    if (max_batch <= 0) return invalid_argument("device data: max batch must be positive");
    auto batcher = std::make_unique<KernelBatcher>(memory_, augment);
    WREN_RETURN_IF_ERROR(batcher->upload(dataset, normalization, max_batch));
    return std::unique_ptr<DeviceBatcher>(std::move(batcher));
  }

  // --- ops ------------------------------------------------------------------------------------
  size_t conv2d_workspace_elems(const Conv2dDims& d) const override {
    return (conv2d_workspace_bytes(d, math_) + sizeof(float) - 1) / sizeof(float);
  }
  void conv2d_forward(const Conv2dDims& d, const float* x, const float* w, const float* b,
                      float* y, float* ws) override {
    WREN_KERNELS_NS::conv2d_forward(d, math_, x, w, b, y, ws, stream());
  }
  void conv2d_backward_data(const Conv2dDims& d, const float* dy, const float* w, float* dx,
                            float* ws) override {
    WREN_KERNELS_NS::conv2d_backward_data(d, math_, dy, w, dx, ws, stream());
  }
  void conv2d_backward_weights(const Conv2dDims& d, const float* x, const float* dy, float* dw,
                               float* db, float* ws) override {
    WREN_KERNELS_NS::conv2d_backward_weights(d, math_, x, dy, dw, db, ws, stream());
  }

  void linear_forward(const LinearDims& d, const float* x, const float* w, const float* b,
                      float* y) override {
#if defined(__CUDACC__)
    if (cublas_) return cublas_->forward(d, x, w, b, y);
#endif
    WREN_KERNELS_NS::linear_forward(d, math_, x, w, b, y, scratch_, stream());
  }
  void linear_backward_data(const LinearDims& d, const float* dy, const float* w,
                            float* dx) override {
#if defined(__CUDACC__)
    if (cublas_) return cublas_->backward_data(d, dy, w, dx);
#endif
    WREN_KERNELS_NS::linear_backward_data(d, math_, dy, w, dx, scratch_, stream());
  }
  void linear_backward_weights(const LinearDims& d, const float* x, const float* dy, float* dw,
                               float* db) override {
#if defined(__CUDACC__)
    if (cublas_) return cublas_->backward_weights(d, x, dy, dw, db);
#endif
    WREN_KERNELS_NS::linear_backward_weights(d, math_, x, dy, dw, db, scratch_, stream());
  }

  void max_pool2d_forward(const Pool2dDims& d, const float* x, float* y,
                          int32_t* argmax) override {
    WREN_KERNELS_NS::max_pool2d_forward(d, x, y, argmax, stream());
  }
  void max_pool2d_backward(const Pool2dDims& d, const int32_t* argmax, const float* dy,
                           float* dx) override {
    WREN_KERNELS_NS::max_pool2d_backward(d, argmax, dy, dx, stream());
  }
  void avg_pool2d_forward(const Pool2dDims& d, const float* x, float* y) override {
    WREN_KERNELS_NS::avg_pool2d_forward(d, x, y, stream());
  }
  void avg_pool2d_backward(const Pool2dDims& d, const float* dy, float* dx) override {
    WREN_KERNELS_NS::avg_pool2d_backward(d, dy, dx, stream());
  }
  void global_avg_pool_forward(int n, int c, int hw, const float* x, float* y) override {
    WREN_KERNELS_NS::global_avg_pool_forward(n, c, hw, x, y, stream());
  }
  void global_avg_pool_backward(int n, int c, int hw, const float* dy, float* dx) override {
    WREN_KERNELS_NS::global_avg_pool_backward(n, c, hw, dy, dx, stream());
  }

  void relu_forward(int64_t count, const float* x, float* y) override {
    WREN_KERNELS_NS::relu_forward(count, x, y, stream());
  }
  void relu_backward(int64_t count, const float* x, const float* dy, float* dx) override {
    WREN_KERNELS_NS::relu_backward(count, x, dy, dx, stream());
  }
  void leaky_relu_forward(int64_t count, float slope, const float* x, float* y) override {
    WREN_KERNELS_NS::leaky_relu_forward(count, slope, x, y, stream());
  }
  void leaky_relu_backward(int64_t count, float slope, const float* x, const float* dy,
                           float* dx) override {
    WREN_KERNELS_NS::leaky_relu_backward(count, slope, x, dy, dx, stream());
  }
  void gelu_forward(int64_t count, const float* x, float* y) override {
    WREN_KERNELS_NS::gelu_forward(count, x, y, stream());
  }
  void gelu_backward(int64_t count, const float* x, const float* dy, float* dx) override {
    WREN_KERNELS_NS::gelu_backward(count, x, dy, dx, stream());
  }
  void add_forward(int64_t count, const float* a, const float* b, float* y) override {
    WREN_KERNELS_NS::add_forward(count, a, b, y, stream());
  }
  void accumulate(int64_t count, const float* x, float* y) override {
    WREN_KERNELS_NS::accumulate(count, x, y, stream());
  }
  void copy(int64_t count, const float* x, float* y) override {
    WREN_KERNELS_NS::copy(count, x, y, stream());
  }
  void dropout_forward(int64_t count, float p, RngKey key, uint64_t step, const float* x,
                       float* y, uint8_t* mask) override {
    WREN_KERNELS_NS::dropout_forward(count, p, key, step, x, y, mask, stream());
  }
  void dropout_backward(int64_t count, float p, const uint8_t* mask, const float* dy,
                        float* dx) override {
    WREN_KERNELS_NS::dropout_backward(count, p, mask, dy, dx, stream());
  }

  void batch_norm2d_forward_train(const BatchNormDims& d, float eps, float momentum,
                                  const float* x, const float* gamma, const float* beta, float* y,
                                  float* save_mean, float* save_invstd, float* running_mean,
                                  float* running_var) override {
    WREN_KERNELS_NS::batch_norm2d_forward_train(d, eps, momentum, x, gamma, beta, y, save_mean,
                                                save_invstd, running_mean, running_var, scratch_,
                                                stream());
  }
  void batch_norm2d_forward_infer(const BatchNormDims& d, float eps, const float* x,
                                  const float* gamma, const float* beta,
                                  const float* running_mean, const float* running_var,
                                  float* y) override {
    WREN_KERNELS_NS::batch_norm2d_forward_infer(d, eps, x, gamma, beta, running_mean,
                                                running_var, y, stream());
  }
  void batch_norm2d_backward_train(const BatchNormDims& d, const float* x, const float* dy,
                                   const float* gamma, const float* save_mean,
                                   const float* save_invstd, float* dx, float* dgamma,
                                   float* dbeta) override {
    WREN_KERNELS_NS::batch_norm2d_backward_train(d, x, dy, gamma, save_mean, save_invstd, dx,
                                                 dgamma, dbeta, scratch_, stream());
  }
  void batch_norm2d_backward_infer(const BatchNormDims& d, float eps, const float* x,
                                   const float* dy, const float* gamma,
                                   const float* running_mean, const float* running_var,
                                   float* dx, float* dgamma, float* dbeta) override {
    WREN_KERNELS_NS::batch_norm2d_backward_infer(d, eps, x, dy, gamma, running_mean, running_var,
                                                 dx, dgamma, dbeta, scratch_, stream());
  }

  // Forward writes the loss only, backward dlogits only: the fused kernel does either or both.
  void softmax_cross_entropy_forward(const SoftmaxCeDims& d, const SoftmaxCeOptions& o,
                                     const float* logits, const int32_t* labels,
                                     const float* class_weights, float* loss) override {
    WREN_KERNELS_NS::softmax_cross_entropy(d, o, logits, labels, class_weights, 1.0f, loss,
                                           nullptr, scratch_, stream());
  }
  void softmax_cross_entropy_backward(const SoftmaxCeDims& d, const SoftmaxCeOptions& o,
                                      const float* logits, const int32_t* labels,
                                      const float* class_weights, float dloss,
                                      float* dlogits) override {
    WREN_KERNELS_NS::softmax_cross_entropy(d, o, logits, labels, class_weights, dloss, nullptr,
                                           dlogits, scratch_, stream());
  }

 private:
  StreamHandle stream() const { return memory_.stream(); }
  // The launchers' workspace queries, named apart from the overriding members.
  static size_t linear_workspace_bytes_of(const LinearDims& d, MathMode math) {
    return WREN_KERNELS_NS::linear_workspace_bytes(d, math);
  }
  static size_t softmax_ce_workspace_bytes_of(const SoftmaxCeDims& d) {
    return WREN_KERNELS_NS::softmax_ce_workspace_bytes(d);
  }

  MathMode math_;
  Memory memory_;
#if defined(__CUDACC__)
  cudaGraphExec_t graph_exec_ = nullptr;
  std::unique_ptr<CublasLinear> cublas_;  // --linear cublas
#else
  static constexpr bool cublas_ = false;
  std::function<void()> captured_;
#endif
  void* scratch_ = nullptr;
  size_t scratch_bytes_ = 0;
};

}  // namespace

Expected<std::unique_ptr<Backend<float>>> make_kernel_backend(MathMode math, LinearImpl linear) {
  auto backend = std::make_unique<KernelBackend>(math);
  WREN_RETURN_IF_ERROR(backend->use_linear(linear));
  return std::unique_ptr<Backend<float>>(std::move(backend));
}

}  // namespace wren::WREN_KERNELS_NS
