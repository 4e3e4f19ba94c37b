#include "wren/executor.h"

#include <algorithm>
#include <cmath>
#include <exception>
#include <functional>
#include <limits>

namespace wren {
namespace {

constexpr int64_t kAlign = 256;  // every arena slot starts on a 256-byte boundary

int64_t align_up(int64_t bytes) { return (bytes + kAlign - 1) / kAlign * kAlign; }

std::string op_label(const Node& n) {
  return std::string(to_string(n.kind)) + " '" + n.name + "'";
}

}  // namespace

template <class T>
Executor<T>::Executor(const Graph& graph, std::unique_ptr<Backend<T>> backend,
                      const ExecutorOptions& opt)
    : graph_(graph), backend_(std::move(backend)), batch_(opt.batch_size), seed_(opt.seed) {}

template <class T>
Executor<T>::~Executor() {
  for (void* p : {static_cast<void*>(params_), static_cast<void*>(grads_),
                  static_cast<void*>(buffers_), static_cast<void*>(arena_)})
    if (p) backend_->release(p);
}

template <class T>
Expected<std::unique_ptr<Executor<T>>> Executor<T>::create(const Graph& graph,
                                                          std::unique_ptr<Backend<T>> backend,
                                                          const ExecutorOptions& options) {
  if (!graph.status().ok()) return graph.status().error().with_context("the graph has an error");
  if (!backend) return invalid_argument("executor: no backend given");
  std::unique_ptr<Executor> ex(new Executor(graph, std::move(backend), options));
  try {
    if (Status s = ex->plan(); !s.ok()) return s.error();
  } catch (const std::exception& e) {  // a kernel's workspace query refusing the sizes
    return invalid_argument(std::string("executor: planning on ") +
                            to_string(ex->backend().device()) + ": " + e.what());
  }
  ex->init_params();
  return ex;
}

template <class T>
Status Executor<T>::plan() {
  const auto& nodes = graph_.nodes();
  const auto& values = graph_.values();
  if (batch_ <= 0) {
    std::string inputs;
    for (const Node& n : nodes)
      if (n.kind == OpKind::kInput)
        inputs += (inputs.empty() ? "" : ", ") + op_label(n) + " " +
                  values[static_cast<size_t>(n.output)].shape.with_batch(batch_).str();
    return invalid_argument("executor: batch size must be at least 1, got " +
                            std::to_string(batch_) + " (for " +
                            (inputs.empty() ? "a graph without inputs" : inputs) + ")");
  }
  // Ops index with int: every batched tensor must have fewer than 2^31 elements.
  for (const Node& n : nodes) {
    const ValueInfo& v = values[static_cast<size_t>(n.output)];
    if (v.batched && v.shape.numel() > std::numeric_limits<int32_t>::max() / batch_)
      return invalid_argument("executor: " + op_label(n) + " output " +
                              v.shape.with_batch(batch_).str() +
                              " has 2^31 elements or more; use a smaller batch");
  }

  // Which values need a gradient (they depend on a parameter), which ops reach the loss.
  needs_grad_.assign(values.size(), false);
  for (const Node& n : nodes) {
    bool needs = n.weight >= 0 || n.bias >= 0;
    for (int in : n.inputs) needs = needs || needs_grad_[static_cast<size_t>(in)];
    needs_grad_[static_cast<size_t>(n.output)] =
        needs && values[static_cast<size_t>(n.output)].type == ValueType::kFloat;
  }
  contributes_.assign(nodes.size(), false);
  std::vector<bool> reaches_loss(values.size(), false);
  if (graph_.loss().valid()) reaches_loss[static_cast<size_t>(graph_.loss().id)] = true;
  for (size_t i = nodes.size(); i-- > 0;) {
    const Node& n = nodes[i];
    if (!reaches_loss[static_cast<size_t>(n.output)]) continue;
    contributes_[i] = true;
    for (int in : n.inputs) reaches_loss[static_cast<size_t>(in)] = true;
  }

  // Lay out the arena.
  int64_t offset = 0;
  auto slot = [&offset](int64_t bytes) {
    const int64_t at = offset;
    offset += align_up(std::max<int64_t>(bytes, 1));
    return at;
  };
  value_off_.assign(values.size(), -1);
  grad_off_.assign(values.size(), -1);
  aux_off_.assign(nodes.size(), -1);
  const_off_.assign(nodes.size(), -1);
  std::vector<int> consumers(values.size(), 0);
  for (size_t i = 0; i < nodes.size(); ++i)
    if (contributes_[i])
      for (int in : nodes[i].inputs) ++consumers[static_cast<size_t>(in)];

  int64_t scratch_bytes = 0;
  size_t workspace_bytes = 0;  // shared by every op: conv's workspace, kernels' reductions
  for (size_t v = 0; v < values.size(); ++v) {
    const ValueInfo& info = values[v];
    const int64_t count = info.batched ? info.shape.numel() * batch_ : 1;
    const int64_t elem = info.type == ValueType::kLabel ? int64_t{sizeof(int32_t)}
                                                        : int64_t{sizeof(T)};
    value_off_[v] = slot(count * elem);
    if (needs_grad_[v] && reaches_loss[v]) {
      grad_off_[v] = slot(count * elem);
      if (consumers[v] > 1) scratch_bytes = std::max(scratch_bytes, count * elem);
    }
  }
  for (size_t i = 0; i < nodes.size(); ++i) {
    const Node& n = nodes[i];
    const ValueInfo& out = values[static_cast<size_t>(n.output)];
    const int64_t out_count = out.shape.numel() * batch_;
    switch (n.kind) {
      case OpKind::kMaxPool2d:
        aux_off_[i] = slot(out_count * int64_t{sizeof(int32_t)});  // argmax
        break;
      case OpKind::kDropout:
        aux_off_[i] = slot(out_count);  // mask bytes
        break;
      case OpKind::kBatchNorm2d:
        aux_off_[i] = slot(2 * out.shape[0] * int64_t{sizeof(T)});  // save_mean, save_invstd
        workspace_bytes = std::max(workspace_bytes, backend_->batch_norm_workspace_bytes(bn_dims(n)));
        break;
      case OpKind::kConv2d:
        workspace_bytes = std::max(workspace_bytes,
                                   backend_->conv2d_workspace_elems(conv_dims(n)) * sizeof(T));
        break;
      case OpKind::kLinear:
        workspace_bytes = std::max(
            workspace_bytes,
            backend_->linear_workspace_bytes(
                LinearDims{batch_, n.linear.in_features, n.linear.out_features}));
        break;
      case OpKind::kSoftmaxCrossEntropy:
        workspace_bytes = std::max(workspace_bytes, backend_->softmax_ce_workspace_bytes(ce_dims(n)));
        if (!n.ce.class_weights.empty())
          const_off_[i] = slot(static_cast<int64_t>(n.ce.class_weights.size() * sizeof(T)));
        break;
      default:
        break;
    }
  }
  if (workspace_bytes > 0) workspace_off_ = slot(static_cast<int64_t>(workspace_bytes));
  if (scratch_bytes > 0) scratch_off_ = slot(scratch_bytes);
  arena_bytes_ = static_cast<size_t>(offset);

  // Allocate once.
  const size_t param_bytes = static_cast<size_t>(std::max<int64_t>(graph_.param_count(), 1)) * sizeof(T);
  const size_t buffer_bytes = static_cast<size_t>(std::max<int64_t>(graph_.buffer_count(), 1)) * sizeof(T);
  params_ = static_cast<T*>(backend_->allocate(param_bytes));
  grads_ = static_cast<T*>(backend_->allocate(param_bytes));
  buffers_ = static_cast<T*>(backend_->allocate(buffer_bytes));
  arena_ = static_cast<char*>(backend_->allocate(arena_bytes_));
  if (!params_ || !grads_ || !buffers_ || !arena_)
    return Error(ErrorCode::kUnavailable,
                 "executor: out of " + std::string(to_string(backend_->device())) +
                     " memory allocating " +
                     std::to_string((2 * param_bytes + buffer_bytes + arena_bytes_) >> 20) +
                     " MiB for batch size " + std::to_string(batch_) +
                     " (weights, gradients and activations); a smaller --batch needs less");
  // Zeroed once so that parameters off the loss path report zero gradients.
  backend_->fill_zero(grads_, param_bytes);
  backend_->fill_zero(arena_, arena_bytes_);
  if (workspace_off_ >= 0) backend_->bind_scratch(arena_ + workspace_off_, workspace_bytes);

  for (size_t i = 0; i < nodes.size(); ++i) {
    if (const_off_[i] < 0) continue;
    const std::vector<float>& w = nodes[i].ce.class_weights;
    std::vector<T> host(w.begin(), w.end());
    backend_->upload(arena_ + const_off_[i], host.data(), host.size() * sizeof(T));
  }
  size_t label_elems = 0;
  for (size_t v = 0; v < values.size(); ++v)
    if (values[v].type == ValueType::kLabel)
      label_elems = std::max(label_elems, static_cast<size_t>(values[v].shape.numel() * batch_));
  label_check_.resize(label_elems);
  grad_written_.assign(values.size(), false);
  return {};
}

template <class T>
void Executor<T>::init_params() {
  // PyTorch's defaults: conv/linear weights and biases U(−1/√fan_in, 1/√fan_in)
  // (kaiming_uniform with a = √5 reduces to this bound), BN gamma 1 and beta 0. Parameter i
  // draws from step i of the init stream, so adding a layer does not change the others.
  const RngKey key = make_rng_key(seed_, RngStream::kInit);
  std::vector<T> host(static_cast<size_t>(graph_.param_count()));
  const auto& params = graph_.params();
  for (size_t p = 0; p < params.size(); ++p) {
    const ParamInfo& info = params[p];
    T* dst = host.data() + info.offset;
    const int64_t count = info.shape.numel();
    for (int64_t i = 0; i < count; ++i) {
      switch (info.init) {
        case ParamInit::kUniformFanIn: {
          const double bound = 1.0 / std::sqrt(static_cast<double>(info.fan_in));
          const double u = uniform_at(key, p, static_cast<uint64_t>(i));
          dst[i] = static_cast<T>((2.0 * u - 1.0) * bound);
          break;
        }
        case ParamInit::kOnes: dst[i] = T(1); break;
        case ParamInit::kZeros: dst[i] = T(0); break;
      }
    }
  }
  if (!host.empty()) backend_->upload(params_, host.data(), host.size() * sizeof(T));
  std::vector<T> buffers(static_cast<size_t>(graph_.buffer_count()));
  for (const BufferInfo& b : graph_.buffers())
    std::fill_n(buffers.begin() + b.offset, b.shape.numel(), static_cast<T>(b.init_value));
  if (!buffers.empty()) backend_->upload(buffers_, buffers.data(), buffers.size() * sizeof(T));
}

// --- views ----------------------------------------------------------------------------------

template <class T>
T* Executor<T>::act(int value) const {
  return reinterpret_cast<T*>(arena_ + value_off_[static_cast<size_t>(value)]);
}

template <class T>
T* Executor<T>::param_ptr(int index) const {
  return index < 0 ? nullptr : params_ + graph_.params()[static_cast<size_t>(index)].offset;
}

template <class T>
T* Executor<T>::buffer_ptr(int index) const {
  return index < 0 ? nullptr : buffers_ + graph_.buffers()[static_cast<size_t>(index)].offset;
}

template <class T>
TensorView<T> Executor<T>::value(Value v) {
  const ValueInfo& info = graph_.value_info(v);
  return {act(v.id), info.batched ? info.shape.with_batch(batch_) : info.shape,
          backend_->device()};
}

template <class T>
TensorView<T> Executor<T>::value_grad(Value v) {
  const int64_t off = grad_off_.at(static_cast<size_t>(v.id));
  if (off < 0) return {};
  const ValueInfo& info = graph_.value_info(v);
  return {reinterpret_cast<T*>(arena_ + off),
          info.batched ? info.shape.with_batch(batch_) : info.shape, backend_->device()};
}

template <class T>
Expected<TensorView<T>> Executor<T>::input(std::string_view name) {
  Expected<Value> v = graph_.find_value(name);
  if (!v) return v.error();
  const Node& n = graph_.nodes()[static_cast<size_t>(graph_.value_info(*v).producer)];
  if (n.kind != OpKind::kInput)
    return invalid_argument("'" + std::string(name) + "' is a " + to_string(n.kind) +
                            " op, not an input");
  return value(*v);
}

template <class T>
Expected<TensorView<int32_t>> Executor<T>::labels(std::string_view name) {
  Expected<Value> v = graph_.find_value(name);
  if (!v) return v.error();
  const ValueInfo& info = graph_.value_info(*v);
  if (info.type != ValueType::kLabel)
    return invalid_argument("'" + std::string(name) + "' is not a labels value");
  return TensorView<int32_t>{reinterpret_cast<int32_t*>(arena_ + value_off_[static_cast<size_t>(v->id)]),
                             info.shape.with_batch(batch_), backend_->device()};
}

template <class T>
Status Executor<T>::set_input(std::string_view name, std::span<const T> host) {
  Expected<TensorView<T>> view = input(name);
  if (!view) return view.error();
  if (static_cast<int64_t>(host.size()) != view->numel())
    return invalid_argument("input '" + std::string(name) + "': got " +
                            std::to_string(host.size()) + " values, expected " +
                            view->shape.str() + " = " + std::to_string(view->numel()));
  backend_->upload(view->data, host.data(), host.size_bytes());
  return {};
}

template <class T>
Status Executor<T>::set_labels(std::string_view name, std::span<const int32_t> host) {
  Expected<TensorView<int32_t>> view = labels(name);
  if (!view) return view.error();
  if (static_cast<int64_t>(host.size()) != view->numel())
    return invalid_argument("labels '" + std::string(name) + "': got " +
                            std::to_string(host.size()) + " labels, expected " +
                            view->shape.str() + " = " + std::to_string(view->numel()));
  backend_->upload(view->data, host.data(), host.size_bytes());
  return {};
}

template <class T>
Expected<TensorView<T>> Executor<T>::param(std::string_view name) {
  Expected<int> index = graph_.find_param(name);
  if (!index) return index.error();
  return TensorView<T>{param_ptr(*index), graph_.params()[static_cast<size_t>(*index)].shape,
                       backend_->device()};
}

template <class T>
Expected<TensorView<T>> Executor<T>::grad(std::string_view name) {
  Expected<int> index = graph_.find_param(name);
  if (!index) return index.error();
  const ParamInfo& info = graph_.params()[static_cast<size_t>(*index)];
  return TensorView<T>{grads_ + info.offset, info.shape, backend_->device()};
}

template <class T>
Expected<TensorView<T>> Executor<T>::buffer(std::string_view name) {
  for (size_t i = 0; i < graph_.buffers().size(); ++i)
    if (graph_.buffers()[i].name == name)
      return TensorView<T>{buffer_ptr(static_cast<int>(i)), graph_.buffers()[i].shape,
                           backend_->device()};
  return not_found("unknown buffer '" + std::string(name) + "'");
}

template <class T>
std::vector<T> Executor<T>::download(TensorView<T> view) {
  std::vector<T> host(static_cast<size_t>(view.numel()));
  if (!host.empty()) backend_->download(host.data(), view.data, host.size() * sizeof(T));
  return host;
}

template <class T>
T Executor<T>::loss() {
  T value{};
  if (graph_.loss().valid()) backend_->download(&value, act(graph_.loss().id), sizeof(T));
  return value;
}

// --- op geometry ----------------------------------------------------------------------------

template <class T>
Conv2dDims Executor<T>::conv_dims(const Node& n) const {
  const Shape& in = graph_.values()[static_cast<size_t>(n.inputs[0])].shape;
  Conv2dDims d;
  d.n = batch_;
  d.c = static_cast<int>(in[0]);
  d.h = static_cast<int>(in[1]);
  d.w = static_cast<int>(in[2]);
  d.k = n.conv.out_channels;
  d.r = n.conv.kernel[0];
  d.s = n.conv.kernel[1];
  d.stride_h = n.conv.stride[0];
  d.stride_w = n.conv.stride[1];
  d.pad_h = n.conv.padding[0];
  d.pad_w = n.conv.padding[1];
  d.dil_h = n.conv.dilation[0];
  d.dil_w = n.conv.dilation[1];
  return d;
}

template <class T>
Pool2dDims Executor<T>::pool_dims(const Node& n) const {
  const Shape& in = graph_.values()[static_cast<size_t>(n.inputs[0])].shape;
  Pool2dDims d;
  d.n = batch_;
  d.c = static_cast<int>(in[0]);
  d.h = static_cast<int>(in[1]);
  d.w = static_cast<int>(in[2]);
  d.kernel_h = n.pool.kernel[0];
  d.kernel_w = n.pool.kernel[1];
  d.stride_h = n.pool.stride[0];
  d.stride_w = n.pool.stride[1];
  d.pad_h = n.pool.padding[0];
  d.pad_w = n.pool.padding[1];
  d.count_include_pad = n.pool.count_include_pad;
  return d;
}

template <class T>
BatchNormDims Executor<T>::bn_dims(const Node& n) const {
  const Shape& in = graph_.values()[static_cast<size_t>(n.inputs[0])].shape;
  return BatchNormDims{batch_, static_cast<int>(in[0]), static_cast<int>(in[1]),
                       static_cast<int>(in[2])};
}

template <class T>
SoftmaxCeDims Executor<T>::ce_dims(const Node& n) const {
  const Shape& logits = graph_.values()[static_cast<size_t>(n.inputs[0])].shape;
  return SoftmaxCeDims{batch_, static_cast<int>(logits[0]),
                       static_cast<int>(logits.numel_from(1))};
}

// --- forward --------------------------------------------------------------------------------

template <class T>
Status Executor<T>::check_labels() {
  for (const Node& n : graph_.nodes()) {
    if (n.kind != OpKind::kSoftmaxCrossEntropy) continue;
    const SoftmaxCeDims d = ce_dims(n);
    const size_t count = static_cast<size_t>(d.n) * static_cast<size_t>(d.s);
    backend_->download(label_check_.data(), act(n.inputs[1]), count * sizeof(int32_t));
    for (size_t i = 0; i < count; ++i) {
      const int32_t y = label_check_[i];
      if ((y >= 0 && y < d.c) || y == n.ce.ignore_index) continue;
      std::string where = "sample " + std::to_string(i / static_cast<size_t>(d.s));
      if (d.s > 1) where += ", pixel " + std::to_string(i % static_cast<size_t>(d.s));
      return Error(ErrorCode::kDataError,
                   op_label(n) + ": label " + std::to_string(y) + " at " + where +
                       " is outside [0, " + std::to_string(d.c) + ") and is not the ignore " +
                       "index " + std::to_string(n.ce.ignore_index));
    }
  }
  return {};
}

template <class T>
Status Executor<T>::check_train_shapes() const {
  // Batch statistics need two values per channel (PyTorch refuses the same case).
  for (const Node& n : graph_.nodes()) {
    if (n.kind != OpKind::kBatchNorm2d) continue;
    const BatchNormDims d = bn_dims(n);
    if (int64_t{d.n} * d.h * d.w < 2)
      return invalid_argument(op_label(n) + ": training needs more than one value per " +
                              "channel, got input " +
                              graph_.values()[static_cast<size_t>(n.inputs[0])]
                                  .shape.with_batch(batch_).str());
  }
  return {};
}

// A kernel launcher refuses arguments it cannot handle (sizes beyond its limits) with an
// exception; the executor reports it as a Status like every other error.
template <class T>
Status Executor<T>::run_ops(const char* what, const std::function<void()>& ops) {
  try {
    ops();
  } catch (const std::exception& e) {
    return Error(ErrorCode::kInvalidArgument,
                 std::string(what) + " on " + to_string(backend_->device()) + ": " + e.what());
  }
  return backend_->synchronize();
}

template <class T>
Status Executor<T>::forward(Mode mode) {
  if (mode == Mode::kTrain) WREN_RETURN_IF_ERROR(check_train_shapes());
  WREN_RETURN_IF_ERROR(check_labels());
  WREN_RETURN_IF_ERROR(run_ops("forward", [&] {
    for (size_t i = 0; i < graph_.nodes().size(); ++i) forward_node(static_cast<int>(i), mode);
  }));
  if (mode == Mode::kTrain) ++step_;
  last_mode_ = mode;
  forward_done_ = true;
  return {};
}

template <class T>
void Executor<T>::enqueue_train_step() {
  for (size_t i = 0; i < graph_.nodes().size(); ++i)
    forward_node(static_cast<int>(i), Mode::kTrain);
  last_mode_ = Mode::kTrain;
  forward_done_ = true;
  std::fill(grad_written_.begin(), grad_written_.end(), false);
  for (size_t i = graph_.nodes().size(); i-- > 0;)
    if (contributes_[i]) backward_node(static_cast<int>(i));
}

template <class T>
void Executor<T>::forward_node(int index, Mode mode) {
  const Node& n = graph_.nodes()[static_cast<size_t>(index)];
  Backend<T>& be = *backend_;
  T* y = act(n.output);
  const T* x = n.inputs.empty() ? nullptr : act(n.inputs[0]);
  const int64_t count = graph_.values()[static_cast<size_t>(n.output)].shape.numel() * batch_;
  char* aux = aux_off_[static_cast<size_t>(index)] >= 0 ? arena_ + aux_off_[static_cast<size_t>(index)] : nullptr;
  T* ws = workspace_off_ >= 0 ? reinterpret_cast<T*>(arena_ + workspace_off_) : nullptr;

  switch (n.kind) {
    case OpKind::kInput:
    case OpKind::kLabels:
      break;
    case OpKind::kConv2d:
      be.conv2d_forward(conv_dims(n), x, param_ptr(n.weight), param_ptr(n.bias), y, ws);
      break;
    case OpKind::kLinear:
      be.linear_forward(LinearDims{batch_, n.linear.in_features, n.linear.out_features}, x,
                        param_ptr(n.weight), param_ptr(n.bias), y);
      break;
    case OpKind::kRelu: be.relu_forward(count, x, y); break;
    case OpKind::kLeakyRelu: be.leaky_relu_forward(count, static_cast<T>(n.slope), x, y); break;
    case OpKind::kGelu: be.gelu_forward(count, x, y); break;
    case OpKind::kMaxPool2d:
      be.max_pool2d_forward(pool_dims(n), x, y, reinterpret_cast<int32_t*>(aux));
      break;
    case OpKind::kAvgPool2d: be.avg_pool2d_forward(pool_dims(n), x, y); break;
    case OpKind::kGlobalAvgPool: {
      const Shape& in = graph_.values()[static_cast<size_t>(n.inputs[0])].shape;
      be.global_avg_pool_forward(batch_, static_cast<int>(in[0]),
                                 static_cast<int>(in[1] * in[2]), x, y);
      break;
    }
    case OpKind::kFlatten: be.copy(count, x, y); break;
    case OpKind::kDropout:
      if (mode == Mode::kTrain) {
        // One stream per dropout op: the op's index perturbs the seed.
        const RngKey key =
            make_rng_key(seed_ + 0x9E3779B97F4A7C15ull * static_cast<uint64_t>(index + 1),
                         RngStream::kDropout);
        be.dropout_forward(count, static_cast<float>(n.p), key, step_, x, y,
                           reinterpret_cast<uint8_t*>(aux));
      } else {
        be.copy(count, x, y);
      }
      break;
    case OpKind::kBatchNorm2d: {
      T* save = reinterpret_cast<T*>(aux);
      const BatchNormDims d = bn_dims(n);
      if (mode == Mode::kTrain)
        be.batch_norm2d_forward_train(d, static_cast<T>(n.bn.eps), static_cast<T>(n.bn.momentum),
                                      x, param_ptr(n.weight), param_ptr(n.bias), y, save,
                                      save + d.c, buffer_ptr(n.running_mean),
                                      buffer_ptr(n.running_var));
      else
        be.batch_norm2d_forward_infer(d, static_cast<T>(n.bn.eps), x, param_ptr(n.weight),
                                      param_ptr(n.bias), buffer_ptr(n.running_mean),
                                      buffer_ptr(n.running_var), y);
      break;
    }
    case OpKind::kAdd: be.add_forward(count, x, act(n.inputs[1]), y); break;
    case OpKind::kSoftmaxCrossEntropy: {
      const int64_t w_off = const_off_[static_cast<size_t>(index)];
      be.softmax_cross_entropy_forward(
          ce_dims(n), SoftmaxCeOptions{n.ce.label_smoothing, n.ce.ignore_index}, x,
          reinterpret_cast<const int32_t*>(act(n.inputs[1])),
          w_off >= 0 ? reinterpret_cast<const T*>(arena_ + w_off) : nullptr, y);
      break;
    }
  }
}

// --- backward -------------------------------------------------------------------------------

// Ops overwrite the gradients they produce. The first op (in backward order) to produce a
// value's gradient writes it in place; any later one writes into the scratch slot, which is
// then added in (grad_done). Each op calls grad_dst, writes, then grad_done, one input at a time.
template <class T>
T* Executor<T>::grad_dst(int value) {
  const size_t v = static_cast<size_t>(value);
  return reinterpret_cast<T*>(arena_ + (grad_written_[v] ? scratch_off_ : grad_off_[v]));
}

template <class T>
void Executor<T>::grad_done(int value) {
  const size_t v = static_cast<size_t>(value);
  if (grad_written_[v]) {
    const ValueInfo& info = graph_.values()[v];
    backend_->accumulate(info.shape.numel() * batch_,
                         reinterpret_cast<const T*>(arena_ + scratch_off_),
                         reinterpret_cast<T*>(arena_ + grad_off_[v]));
  }
  grad_written_[v] = true;
}

template <class T>
Status Executor<T>::backward() {
  if (!graph_.loss().valid()) return invalid_argument("backward: the graph has no loss op");
  if (!forward_done_) return invalid_argument("backward: run forward() first");
  std::fill(grad_written_.begin(), grad_written_.end(), false);
  return run_ops("backward", [&] {
    for (size_t i = graph_.nodes().size(); i-- > 0;)
      if (contributes_[i]) backward_node(static_cast<int>(i));
  });
}

template <class T>
void Executor<T>::backward_node(int index) {
  const Node& n = graph_.nodes()[static_cast<size_t>(index)];
  if (n.kind == OpKind::kInput || n.kind == OpKind::kLabels) return;
  const size_t out = static_cast<size_t>(n.output);
  if (!needs_grad_[out]) return;
  Backend<T>& be = *backend_;
  const int in0 = n.inputs[0];
  const T* x = act(in0);
  const T* dy = reinterpret_cast<const T*>(arena_ + grad_off_[out]);
  const bool want_dx = needs_grad_[static_cast<size_t>(in0)];
  const int64_t count = graph_.values()[out].shape.numel() * batch_;
  char* aux = aux_off_[static_cast<size_t>(index)] >= 0 ? arena_ + aux_off_[static_cast<size_t>(index)] : nullptr;
  T* ws = workspace_off_ >= 0 ? reinterpret_cast<T*>(arena_ + workspace_off_) : nullptr;
  auto grad_of = [this](int p) { return p < 0 ? nullptr : grads_ + graph_.params()[static_cast<size_t>(p)].offset; };

  switch (n.kind) {
    case OpKind::kInput:
    case OpKind::kLabels:
      break;
    case OpKind::kConv2d: {
      const Conv2dDims d = conv_dims(n);
      be.conv2d_backward_weights(d, x, dy, grad_of(n.weight), grad_of(n.bias), ws);
      if (want_dx) {
        be.conv2d_backward_data(d, dy, param_ptr(n.weight), grad_dst(in0), ws);
        grad_done(in0);
      }
      break;
    }
    case OpKind::kLinear: {
      const LinearDims d{batch_, n.linear.in_features, n.linear.out_features};
      be.linear_backward_weights(d, x, dy, grad_of(n.weight), grad_of(n.bias));
      if (want_dx) {
        be.linear_backward_data(d, dy, param_ptr(n.weight), grad_dst(in0));
        grad_done(in0);
      }
      break;
    }
    case OpKind::kBatchNorm2d: {
      const BatchNormDims d = bn_dims(n);
      T* dx = want_dx ? grad_dst(in0) : nullptr;  // nullptr: BN straight on the input
      const T* save = reinterpret_cast<const T*>(aux);
      if (last_mode_ == Mode::kTrain)
        be.batch_norm2d_backward_train(d, x, dy, param_ptr(n.weight), save, save + d.c, dx,
                                       grad_of(n.weight), grad_of(n.bias));
      else
        be.batch_norm2d_backward_infer(d, static_cast<T>(n.bn.eps), x, dy, param_ptr(n.weight),
                                       buffer_ptr(n.running_mean), buffer_ptr(n.running_var), dx,
                                       grad_of(n.weight), grad_of(n.bias));
      if (want_dx) grad_done(in0);
      break;
    }
    case OpKind::kSoftmaxCrossEntropy: {
      if (!want_dx) break;
      const int64_t w_off = const_off_[static_cast<size_t>(index)];
      be.softmax_cross_entropy_backward(
          ce_dims(n), SoftmaxCeOptions{n.ce.label_smoothing, n.ce.ignore_index}, x,
          reinterpret_cast<const int32_t*>(act(n.inputs[1])),
          w_off >= 0 ? reinterpret_cast<const T*>(arena_ + w_off) : nullptr, T(1), grad_dst(in0));
      grad_done(in0);
      break;
    }
    case OpKind::kAdd:
      for (int in : n.inputs) {
        if (!needs_grad_[static_cast<size_t>(in)]) continue;
        be.copy(count, dy, grad_dst(in));
        grad_done(in);
      }
      break;
    default: {
      // Ops with one input and no parameters: nothing to do unless x needs a gradient.
      if (!want_dx) break;
      T* dx = grad_dst(in0);
      const int64_t in_count = graph_.values()[static_cast<size_t>(in0)].shape.numel() * batch_;
      switch (n.kind) {
        case OpKind::kRelu: be.relu_backward(count, x, dy, dx); break;
        case OpKind::kLeakyRelu:
          be.leaky_relu_backward(count, static_cast<T>(n.slope), x, dy, dx);
          break;
        case OpKind::kGelu: be.gelu_backward(count, x, dy, dx); break;
        case OpKind::kMaxPool2d:
          be.max_pool2d_backward(pool_dims(n), reinterpret_cast<const int32_t*>(aux), dy, dx);
          break;
        case OpKind::kAvgPool2d: be.avg_pool2d_backward(pool_dims(n), dy, dx); break;
        case OpKind::kGlobalAvgPool: {
          const Shape& in = graph_.values()[static_cast<size_t>(in0)].shape;
          be.global_avg_pool_backward(batch_, static_cast<int>(in[0]),
                                      static_cast<int>(in[1] * in[2]), dy, dx);
          break;
        }
        case OpKind::kFlatten: be.copy(in_count, dy, dx); break;
        case OpKind::kDropout:
          if (last_mode_ == Mode::kTrain)
            be.dropout_backward(count, static_cast<float>(n.p),
                                reinterpret_cast<const uint8_t*>(aux), dy, dx);
          else
            be.copy(count, dy, dx);
          break;
        default: break;
      }
      grad_done(in0);
      break;
    }
  }
}

template class Executor<float>;
template class Executor<double>;

}  // namespace wren
