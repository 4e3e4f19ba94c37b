// The executor: runs a Graph on one Backend at one batch size.
//
// Memory is planned once (docs/ARCHITECTURE.md, design decision 2: memory is planned, not allocated per step):
//   - parameters, their gradients and the buffers (BN running statistics) each live in one
//     contiguous allocation; a parameter is a view at ParamInfo::offset into it, so an
//     optimizer can update the whole model in one pass and a checkpoint is a few copies;
//   - every activation, every activation gradient, each op's saved state (max-pool argmax,
//     dropout mask, BN batch statistics), the shared conv workspace and the constants
//     (class weights) come from one arena sized when the executor is created.
// forward() and backward() allocate nothing.
//
// The backward pass is derived from the op list: ops run in reverse order, each writing the
// gradients of its inputs; a value consumed by several ops (a residual branch) has its
// gradients summed. Only ops on a path from a parameter to the loss take part.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "wren/backend.h"
#include "wren/error.h"
#include "wren/graph.h"
#include "wren/tensor.h"

namespace wren {

enum class Mode { kTrain, kEval };

struct ExecutorOptions {
  int batch_size = 0;
  uint64_t seed = 0;  // parameter initialisation and dropout streams
};

template <class T>
class Executor {
 public:
  // Checks the graph, plans memory for `options.batch_size` and initialises the parameters
  // (PyTorch's default initialisation, drawn from the seed's init stream).
  static Expected<std::unique_ptr<Executor>> create(const Graph& graph,
                                                    std::unique_ptr<Backend<T>> backend,
                                                    const ExecutorOptions& options);
  ~Executor();
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  const Graph& graph() const { return graph_; }
  Backend<T>& backend() { return *backend_; }
  int batch_size() const { return batch_; }
  size_t arena_bytes() const { return arena_bytes_; }
  // Number of training-mode forward passes run so far (the dropout step counter).
  uint64_t step() const { return step_; }
  // Sets the step counter (resuming from a checkpoint; replaying a step in a gradient check).
  void set_step(uint64_t step) { step_ = step; }

  // --- feeding a batch ---------------------------------------------------------------------
  // Device views to fill: an input [N, ...] or the labels [N] / [N, H, W].
  Expected<TensorView<T>> input(std::string_view name);
  Expected<TensorView<int32_t>> labels(std::string_view name);
  // Copies host data in; the size must be exactly one batch.
  Status set_input(std::string_view name, std::span<const T> host);
  Status set_labels(std::string_view name, std::span<const int32_t> host);

  // --- running -------------------------------------------------------------------------------
  // Runs every op. Labels are checked first: an out-of-range label is an error naming it.
  Status forward(Mode mode);
  // Gradients of the loss w.r.t. every parameter (overwritten, not accumulated), using the
  // mode of the last forward pass.
  Status backward();
  // forward(kTrain) and backward() enqueued with no host work at all — no label check, no
  // wait, no step count — for step capture (Backend::capture_step, CUDA graphs). Callers make
  // sure the labels are valid (the device batcher's come from a validated dataset), run
  // check_train_shapes() once, and advance step() themselves per replay.
  void enqueue_train_step();
  Status check_train_shapes() const;
  // The loss of the last forward pass (downloaded from the device).
  T loss();

  // Device views of an activation and of its gradient (empty view if it has none).
  TensorView<T> value(Value v);
  TensorView<T> value_grad(Value v);

  // --- parameters ----------------------------------------------------------------------------
  TensorView<T> params() { return {params_, Shape{graph_.param_count()}, backend_->device()}; }
  TensorView<T> grads() { return {grads_, Shape{graph_.param_count()}, backend_->device()}; }
  TensorView<T> buffers() {
    return {buffers_, Shape{graph_.buffer_count()}, backend_->device()};
  }
  Expected<TensorView<T>> param(std::string_view name);
  Expected<TensorView<T>> grad(std::string_view name);
  Expected<TensorView<T>> buffer(std::string_view name);

  // Host copies of any view of this executor's memory.
  std::vector<T> download(TensorView<T> view);

 private:
  Executor(const Graph& graph, std::unique_ptr<Backend<T>> backend, const ExecutorOptions& opt);
  Status plan();
  void init_params();
  Status check_labels();
  Status run_ops(const char* what, const std::function<void()>& ops);
  void forward_node(int index, Mode mode);
  void backward_node(int index);
  T* act(int value) const;
  T* grad_dst(int value);  // where an op writes this value's gradient (see backward())
  void grad_done(int value);
  Conv2dDims conv_dims(const Node& n) const;
  Pool2dDims pool_dims(const Node& n) const;
  BatchNormDims bn_dims(const Node& n) const;
  SoftmaxCeDims ce_dims(const Node& n) const;
  T* param_ptr(int index) const;
  T* buffer_ptr(int index) const;

  Graph graph_;
  std::unique_ptr<Backend<T>> backend_;
  int batch_;
  uint64_t seed_;
  uint64_t step_ = 0;
  Mode last_mode_ = Mode::kTrain;
  bool forward_done_ = false;

  T* params_ = nullptr;
  T* grads_ = nullptr;
  T* buffers_ = nullptr;
  char* arena_ = nullptr;
  size_t arena_bytes_ = 0;

  // Byte offsets into the arena; -1 where a value or node has none.
  std::vector<int64_t> value_off_, grad_off_, aux_off_, const_off_;
  int64_t workspace_off_ = -1, scratch_off_ = -1;
  std::vector<bool> needs_grad_;    // per value: on a path from a parameter
  std::vector<bool> contributes_;   // per node: on a path to the loss
  std::vector<bool> grad_written_;  // per value, during backward()
  std::vector<int32_t> label_check_;  // host copy of one label batch, sized once
};

}  // namespace wren
