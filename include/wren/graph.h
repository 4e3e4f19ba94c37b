// The graph builder: a network described op by op, with shapes inferred as it is built.
//
//   Graph g;
//   Value x = g.input("image", {1, 28, 28});              // per-sample shape; N comes later
//   Value y = g.labels("label");
//   Value h = g.conv2d("conv1", x, {.out_channels = 32, .kernel = {3, 3}, .padding = {1, 1}});
//   h = g.max_pool2d(g.relu(h), {.kernel = {2, 2}});
//   Value logits = g.linear("fc1", h, {.out_features = 10});
//   Value loss = g.softmax_cross_entropy("loss", logits, y);
//   if (!g.status().ok()) ... g.status().message() names the op and both shapes
//
// Errors are sticky values (docs/ARCHITECTURE.md, "Errors"): the first error is kept in
// status(), every later op on an invalid Value returns an invalid Value without a new message,
// so a model can be written straight through and checked once.
//
// Shapes here are per sample (the batch dimension N is chosen when an Executor is planned);
// messages print them with a leading N, e.g. [N, 32, 14, 14].
// Parameters get PyTorch's names (`conv1.weight`, `conv1.bias`) and layouts (conv OIHW,
// linear [out, in]); biases and batch-norm parameters are in the no-decay group by default.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "wren/error.h"
#include "softmax_ce/softmax_ce.h"
#include "wren/shape.h"

namespace wren {

// A handle to a value (an op's output) in one Graph.
struct Value {
  int id = -1;
  bool valid() const { return id >= 0; }
};

enum class OpKind {
  kInput,
  kLabels,
  kConv2d,
  kLinear,
  kRelu,
  kLeakyRelu,
  kGelu,
  kMaxPool2d,
  kAvgPool2d,
  kGlobalAvgPool,
  kFlatten,
  kDropout,
  kBatchNorm2d,
  kAdd,
  kSoftmaxCrossEntropy,
};

const char* to_string(OpKind kind);

enum class ValueType { kFloat, kLabel };  // activations (T) or int32 class indices

// Weight decay applies to kDecay; biases and norm parameters are kNoDecay (wd_mult 0).
enum class ParamGroup { kDecay, kNoDecay };

const char* to_string(ParamGroup group);

// How a parameter is initialised (PyTorch's defaults for each layer).
enum class ParamInit {
  kUniformFanIn,  // U(−1/√fan_in, 1/√fan_in): nn.Conv2d / nn.Linear weight and bias
  kOnes,          // batch-norm weight (gamma)
  kZeros,         // batch-norm bias (beta)
};

struct ParamInfo {
  std::string name;  // "conv1.weight"
  Shape shape;       // OIHW for conv weights, [out, in] for linear weights
  ParamGroup group = ParamGroup::kDecay;
  float lr_mult = 1.0f;  // Caffe's per-parameter multipliers (docs/OPTIMIZERS.md)
  float wd_mult = 1.0f;
  ParamInit init = ParamInit::kUniformFanIn;
  int64_t fan_in = 1;
  int64_t offset = 0;  // element offset into the flat parameter (and gradient) buffer
};

// Non-trainable state that travels with the model (batch-norm running statistics).
struct BufferInfo {
  std::string name;  // "bn1.running_mean"
  Shape shape;
  float init_value = 0.0f;
  int64_t offset = 0;  // element offset into the flat buffer store
};

struct ValueInfo {
  Shape shape;  // per sample; for the loss: [] and not batched
  ValueType type = ValueType::kFloat;
  bool batched = true;
  int producer = -1;  // node index
};

struct Conv2dOptions {
  int out_channels = 0;
  std::array<int, 2> kernel{3, 3};
  std::array<int, 2> stride{1, 1};
  std::array<int, 2> padding{0, 0};
  std::array<int, 2> dilation{1, 1};
  bool bias = true;
  int in_channels = 0;  // 0: taken from the input; otherwise checked against it
};

struct LinearOptions {
  int out_features = 0;
  bool bias = true;
  int in_features = 0;  // 0: taken from the input; otherwise checked against it
};

struct Pool2dOptions {
  std::array<int, 2> kernel{2, 2};
  std::array<int, 2> stride{0, 0};  // 0: equal to the kernel (PyTorch's default)
  std::array<int, 2> padding{0, 0};
  bool count_include_pad = true;  // average pooling only
};

struct BatchNormOptions {
  double eps = 1e-5;
  double momentum = 0.1;
  bool affine = true;  // false: no gamma/beta parameters
};

struct CrossEntropyOptions {
  double label_smoothing = 0.0;
  int32_t ignore_index = -100;
  std::vector<float> class_weights{};  // empty: all 1; else one per class
};

// One op in the graph. Attributes that do not apply to a kind are left at their defaults.
struct Node {
  OpKind kind = OpKind::kInput;
  std::string name;
  std::vector<int> inputs;  // value ids
  int output = -1;          // value id
  int weight = -1, bias = -1;                    // parameter indices, -1 if none
  int running_mean = -1, running_var = -1;       // buffer indices (batch norm)
  Conv2dOptions conv;
  LinearOptions linear;
  Pool2dOptions pool;
  BatchNormOptions bn;
  CrossEntropyOptions ce;
  double slope = 0.01;  // leaky_relu
  double p = 0.0;       // dropout
};

class Graph {
 public:
  // A batch of images (or any per-sample tensor): `sample_shape` excludes N, e.g. {1, 28, 28}.
  Value input(const std::string& name, Shape sample_shape);
  // Class labels: per sample a scalar ({}), or {H, W} for per-pixel labels.
  Value labels(const std::string& name, Shape sample_shape = {});

  Value conv2d(const std::string& name, Value x, const Conv2dOptions& options);
  Value linear(const std::string& name, Value x, const LinearOptions& options);
  Value batch_norm2d(const std::string& name, Value x, const BatchNormOptions& options = {});

  // Ops without parameters; an empty name gets an automatic one ("relu3").
  Value relu(Value x, const std::string& name = "");
  Value leaky_relu(Value x, double slope = 0.01, const std::string& name = "");
  Value gelu(Value x, const std::string& name = "");
  Value max_pool2d(Value x, const Pool2dOptions& options, const std::string& name = "");
  Value avg_pool2d(Value x, const Pool2dOptions& options, const std::string& name = "");
  Value global_avg_pool(Value x, const std::string& name = "");  // [N,C,H,W] -> [N,C]
  Value flatten(Value x, const std::string& name = "");          // [N, ...] -> [N, prod(...)]
  Value dropout(Value x, double p, const std::string& name = "");
  Value add(Value a, Value b, const std::string& name = "");  // the residual add

  // Mean softmax cross-entropy of logits [N, C] (or [N, C, H, W] with labels [N, H, W]).
  Value softmax_cross_entropy(const std::string& name, Value logits, Value labels,
                              const CrossEntropyOptions& options = {});

  // The first error met while building, or ok.
  const Status& status() const { return status_; }

  // Per-parameter options by name; an unknown name is an error that lists the known ones.
  Status set_param_group(std::string_view param, ParamGroup group);
  Status set_param_multipliers(std::string_view param, float lr_mult, float wd_mult);
  Expected<int> find_param(std::string_view name) const;
  Expected<Value> find_value(std::string_view op_name) const;  // an op's output by op name

  const std::vector<Node>& nodes() const { return nodes_; }
  const std::vector<ValueInfo>& values() const { return values_; }
  const std::vector<ParamInfo>& params() const { return params_; }
  const std::vector<BufferInfo>& buffers() const { return buffers_; }
  const ValueInfo& value_info(Value v) const { return values_.at(static_cast<size_t>(v.id)); }
  int64_t param_count() const { return param_elems_; }   // trainable elements
  int64_t buffer_count() const { return buffer_elems_; }  // buffer elements
  // The (last) loss value, or an invalid Value if the graph has none.
  Value loss() const { return loss_; }

  // A table: one row per op with its output shape and parameter count.
  std::string summary() const;

 private:
  bool check_inputs(OpKind kind, const std::string& name, std::initializer_list<Value> inputs);
  void fail(Error error);
  std::string auto_name(OpKind kind, const std::string& name);
  bool claim_name(OpKind kind, const std::string& name);
  Value add_node(Node node, Shape shape, ValueType type = ValueType::kFloat, bool batched = true);
  int add_param(const std::string& name, Shape shape, ParamGroup group, ParamInit init,
                int64_t fan_in);
  int add_buffer(const std::string& name, Shape shape, float init_value);
  std::string shape_str(Value v) const;  // "[N, 32, 14, 14]"
  bool expect_nchw(const std::string& label, Value x);  // per-sample [C, H, W], else fail
  Value unary(OpKind kind, Value x, const std::string& name, Node node = {});
  Value pool(OpKind kind, Value x, const Pool2dOptions& options, const std::string& name);

  std::vector<Node> nodes_;
  std::vector<ValueInfo> values_;
  std::vector<ParamInfo> params_;
  std::vector<BufferInfo> buffers_;
  int64_t param_elems_ = 0, buffer_elems_ = 0;
  Value loss_;
  Status status_;
};

}  // namespace wren
