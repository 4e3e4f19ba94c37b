#include "wren/graph.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <limits>

namespace wren {

const char* to_string(OpKind kind) {
  switch (kind) {
    case OpKind::kInput: return "input";
    case OpKind::kLabels: return "labels";
    case OpKind::kConv2d: return "conv2d";
    case OpKind::kLinear: return "linear";
    case OpKind::kRelu: return "relu";
    case OpKind::kLeakyRelu: return "leaky_relu";
    case OpKind::kGelu: return "gelu";
    case OpKind::kMaxPool2d: return "max_pool2d";
    case OpKind::kAvgPool2d: return "avg_pool2d";
    case OpKind::kGlobalAvgPool: return "global_avg_pool";
    case OpKind::kFlatten: return "flatten";
    case OpKind::kDropout: return "dropout";
    case OpKind::kBatchNorm2d: return "batch_norm2d";
    case OpKind::kAdd: return "add";
    case OpKind::kSoftmaxCrossEntropy: return "softmax_cross_entropy";
  }
  return "unknown";
}

const char* to_string(ParamGroup group) {
  return group == ParamGroup::kDecay ? "decay" : "no_decay";
}

namespace {

std::string op_label(OpKind kind, const std::string& name) {
  return std::string(to_string(kind)) + " '" + name + "'";
}

std::string pair_str(const std::array<int, 2>& v) {
  return std::to_string(v[0]) + "x" + std::to_string(v[1]);
}

// Ops index tensors with int (the executor refuses a batched value of 2^31 elements or more),
// so a per-sample value or a parameter that large cannot run. Counted without overflow: absurd
// sizes from a model file (conv2d out=2147483647 padding=2147483647) are an error, not a
// wrapped count (tests/fuzz/regressions/model_file/).
bool too_many_elements(const Shape& shape) {
  int64_t n = 1;
  for (int d = 0; d < shape.rank(); ++d) {
    if (__builtin_mul_overflow(n, shape[d], &n) || n > std::numeric_limits<int32_t>::max())
      return true;
  }
  return false;
}

constexpr char kTooMany[] = " has 2^31 elements or more";

}  // namespace

void Graph::fail(Error error) {
  if (status_.ok()) status_ = Status(std::move(error));
}

std::string Graph::shape_str(Value v) const {
  const ValueInfo& info = value_info(v);
  return info.batched ? info.shape.with_batch(0).str().replace(1, 1, "N") : info.shape.str();
}

bool Graph::expect_nchw(const std::string& label, Value x) {
  if (value_info(x).shape.rank() == 3) return true;
  fail(invalid_argument(label + ": expects an input [N, C, H, W], got " + shape_str(x)));
  return false;
}

std::string Graph::auto_name(OpKind kind, const std::string& name) {
  if (!name.empty()) return name;
  const auto same_kind = std::count_if(nodes_.begin(), nodes_.end(),
                                       [kind](const Node& n) { return n.kind == kind; });
  return std::string(to_string(kind)) + std::to_string(same_kind + 1);
}

bool Graph::claim_name(OpKind kind, const std::string& name) {
  if (name.empty()) {
    fail(invalid_argument(std::string(to_string(kind)) + ": an op with parameters needs a name"));
    return false;
  }
  for (const Node& n : nodes_) {
    if (n.name == name) {
      fail(invalid_argument(op_label(kind, name) + ": the name is already used by " +
                            op_label(n.kind, n.name)));
      return false;
    }
  }
  return true;
}

// Checks that the op can be added: the graph has no error yet, the name is free, and every
// input is a valid float value of this graph.
bool Graph::check_inputs(OpKind kind, const std::string& name,
                         std::initializer_list<Value> inputs) {
  if (!status_.ok()) return false;
  if (!claim_name(kind, name)) return false;
  for (Value v : inputs) {
    if (!v.valid() || v.id >= static_cast<int>(values_.size())) {
      fail(invalid_argument(op_label(kind, name) + ": input is not a value of this graph"));
      return false;
    }
  }
  return true;
}

Value Graph::add_node(Node node, Shape shape, ValueType type, bool batched) {
  for (int d = 0; d < shape.rank(); ++d) {
    if (shape[d] <= 0) {
      fail(internal_error(op_label(node.kind, node.name) + ": inferred an empty shape " +
                          shape.str()));
      return {};
    }
  }
  if (too_many_elements(shape)) {
    const std::string shown = batched ? shape.with_batch(0).str().replace(1, 1, "N") : shape.str();
    fail(invalid_argument(op_label(node.kind, node.name) + ": output " + shown + kTooMany +
                          " per sample"));
    return {};
  }
  const int value_id = static_cast<int>(values_.size());
  node.output = value_id;
  values_.push_back(ValueInfo{shape, type, batched, static_cast<int>(nodes_.size())});
  nodes_.push_back(std::move(node));
  return Value{value_id};
}

int Graph::add_param(const std::string& name, Shape shape, ParamGroup group, ParamInit init,
                     int64_t fan_in) {
  ParamInfo p;
  p.name = name;
  p.shape = shape;
  p.group = group;
  p.wd_mult = group == ParamGroup::kDecay ? 1.0f : 0.0f;
  p.init = init;
  p.fan_in = fan_in;
  p.offset = param_elems_;
  param_elems_ += shape.numel();
  params_.push_back(std::move(p));
  return static_cast<int>(params_.size()) - 1;
}

int Graph::add_buffer(const std::string& name, Shape shape, float init_value) {
  buffers_.push_back(BufferInfo{name, shape, init_value, buffer_elems_});
  buffer_elems_ += shape.numel();
  return static_cast<int>(buffers_.size()) - 1;
}

Value Graph::input(const std::string& name, Shape sample_shape) {
  if (!status_.ok() || !claim_name(OpKind::kInput, name)) return {};
  bool positive = sample_shape.rank() > 0 && sample_shape.rank() < Shape::kMaxRank;
  for (int d = 0; positive && d < sample_shape.rank(); ++d) positive = sample_shape[d] > 0;
  if (!positive) {
    fail(invalid_argument(op_label(OpKind::kInput, name) + ": per-sample shape " +
                          sample_shape.str() + " must have 1 to 3 positive dimensions"));
    return {};
  }
  Node node;
  node.kind = OpKind::kInput;
  node.name = name;
  return add_node(std::move(node), sample_shape);
}

Value Graph::labels(const std::string& name, Shape sample_shape) {
  if (!status_.ok() || !claim_name(OpKind::kLabels, name)) return {};
  if (sample_shape.rank() != 0 && sample_shape.rank() != 2) {
    fail(invalid_argument(op_label(OpKind::kLabels, name) + ": per-sample shape " +
                          sample_shape.str() + " must be [] (a class) or [H, W] (per pixel)"));
    return {};
  }
  Node node;
  node.kind = OpKind::kLabels;
  node.name = name;
  return add_node(std::move(node), sample_shape, ValueType::kLabel);
}

Value Graph::conv2d(const std::string& name, Value x, const Conv2dOptions& o) {
  const OpKind kind = OpKind::kConv2d;
  if (!check_inputs(kind, name, {x})) return {};
  const std::string label = op_label(kind, name);
  const Shape& in = value_info(x).shape;
  if (!expect_nchw(label, x)) return {};
  const bool bad_option = o.out_channels <= 0 || o.kernel[0] <= 0 || o.kernel[1] <= 0 ||
                          o.stride[0] <= 0 || o.stride[1] <= 0 || o.padding[0] < 0 ||
                          o.padding[1] < 0 || o.dilation[0] <= 0 || o.dilation[1] <= 0;
  if (bad_option) {
    fail(invalid_argument(label + ": out_channels " + std::to_string(o.out_channels) +
                          ", kernel " + pair_str(o.kernel) + ", stride " + pair_str(o.stride) +
                          ", dilation " + pair_str(o.dilation) +
                          " must be positive and padding " + pair_str(o.padding) +
                          " non-negative"));
    return {};
  }
  const int64_t c = in[0], h = in[1], w = in[2];
  if (o.in_channels > 0 && o.in_channels != c) {
    fail(invalid_argument(label + ": expects an input [N, " + std::to_string(o.in_channels) +
                          ", H, W], got " + shape_str(x)));
    return {};
  }
  const int64_t span_h = int64_t{o.dilation[0]} * (o.kernel[0] - 1) + 1;
  const int64_t span_w = int64_t{o.dilation[1]} * (o.kernel[1] - 1) + 1;
  const int64_t padded_h = h + 2 * int64_t{o.padding[0]}, padded_w = w + 2 * int64_t{o.padding[1]};
  if (span_h > padded_h || span_w > padded_w) {
    fail(invalid_argument(label + ": kernel " + pair_str(o.kernel) + " (dilation " +
                          pair_str(o.dilation) + ") does not fit input " + shape_str(x) +
                          " with padding " + pair_str(o.padding)));
    return {};
  }
  const int64_t p = (padded_h - span_h) / o.stride[0] + 1;
  const int64_t q = (padded_w - span_w) / o.stride[1] + 1;
  const Shape weight{o.out_channels, c, o.kernel[0], o.kernel[1]};
  if (too_many_elements(weight)) {
    fail(invalid_argument(label + ": weight " + weight.str() + kTooMany));
    return {};
  }
  const int64_t fan_in = c * o.kernel[0] * o.kernel[1];

  Node node;
  node.kind = kind;
  node.name = name;
  node.inputs = {x.id};
  node.conv = o;
  node.conv.in_channels = static_cast<int>(c);
  node.weight = add_param(name + ".weight", weight, ParamGroup::kDecay, ParamInit::kUniformFanIn,
                          fan_in);
  if (o.bias)
    node.bias = add_param(name + ".bias", Shape{o.out_channels}, ParamGroup::kNoDecay,
                          ParamInit::kUniformFanIn, fan_in);
  return add_node(std::move(node), Shape{o.out_channels, p, q});
}

Value Graph::linear(const std::string& name, Value x, const LinearOptions& o) {
  const OpKind kind = OpKind::kLinear;
  if (!check_inputs(kind, name, {x})) return {};
  const std::string label = op_label(kind, name);
  if (o.out_features <= 0) {
    fail(invalid_argument(label + ": out_features must be positive, got " +
                          std::to_string(o.out_features)));
    return {};
  }
  // Any per-sample shape is read as a flat vector: NCHW memory is contiguous per sample.
  const int64_t in = value_info(x).shape.numel();
  if (o.in_features > 0 && o.in_features != in) {
    fail(invalid_argument(label + ": expects " + std::to_string(o.in_features) +
                          " input features ([N, " + std::to_string(o.in_features) +
                          "]), got " + shape_str(x) + " = " + std::to_string(in) + " features"));
    return {};
  }
  const Shape weight{o.out_features, in};
  if (too_many_elements(weight)) {
    fail(invalid_argument(label + ": weight " + weight.str() + kTooMany));
    return {};
  }
  Node node;
  node.kind = kind;
  node.name = name;
  node.inputs = {x.id};
  node.linear = o;
  node.linear.in_features = static_cast<int>(in);
  node.weight = add_param(name + ".weight", weight, ParamGroup::kDecay, ParamInit::kUniformFanIn,
                          in);
  if (o.bias)
    node.bias = add_param(name + ".bias", Shape{o.out_features}, ParamGroup::kNoDecay,
                          ParamInit::kUniformFanIn, in);
  return add_node(std::move(node), Shape{o.out_features});
}

Value Graph::batch_norm2d(const std::string& name, Value x, const BatchNormOptions& o) {
  const OpKind kind = OpKind::kBatchNorm2d;
  if (!check_inputs(kind, name, {x})) return {};
  const std::string label = op_label(kind, name);
  const Shape& in = value_info(x).shape;
  if (!expect_nchw(label, x)) return {};
  if (!(o.eps > 0) || !(o.momentum >= 0 && o.momentum <= 1)) {
    fail(invalid_argument(label + ": eps must be > 0 and momentum in [0, 1]"));
    return {};
  }
  Node node;
  node.kind = kind;
  node.name = name;
  node.inputs = {x.id};
  node.bn = o;
  const Shape channels{in[0]};
  if (o.affine) {
    node.weight = add_param(name + ".weight", channels, ParamGroup::kNoDecay, ParamInit::kOnes, 1);
    node.bias = add_param(name + ".bias", channels, ParamGroup::kNoDecay, ParamInit::kZeros, 1);
  }
  node.running_mean = add_buffer(name + ".running_mean", channels, 0.0f);
  node.running_var = add_buffer(name + ".running_var", channels, 1.0f);
  return add_node(std::move(node), in);
}

Value Graph::unary(OpKind kind, Value x, const std::string& name, Node node) {
  const std::string full = auto_name(kind, name);
  if (!check_inputs(kind, full, {x})) return {};
  node.kind = kind;
  node.name = full;
  node.inputs = {x.id};
  return add_node(std::move(node), value_info(x).shape);
}

Value Graph::relu(Value x, const std::string& name) { return unary(OpKind::kRelu, x, name); }

Value Graph::leaky_relu(Value x, double slope, const std::string& name) {
  Node node;
  node.slope = slope;
  return unary(OpKind::kLeakyRelu, x, name, std::move(node));
}

Value Graph::gelu(Value x, const std::string& name) { return unary(OpKind::kGelu, x, name); }

Value Graph::dropout(Value x, double p, const std::string& name) {
  if (status_.ok() && !(p >= 0.0 && p < 1.0)) {
    fail(invalid_argument(op_label(OpKind::kDropout, auto_name(OpKind::kDropout, name)) +
                          ": p must be in [0, 1), got " + std::to_string(p)));
    return {};
  }
  Node node;
  node.p = p;
  return unary(OpKind::kDropout, x, name, std::move(node));
}

Value Graph::pool(OpKind kind, Value x, const Pool2dOptions& options, const std::string& name) {
  const std::string full = auto_name(kind, name);
  if (!check_inputs(kind, full, {x})) return {};
  const std::string label = op_label(kind, full);
  Pool2dOptions o = options;
  for (int i = 0; i < 2; ++i)
    if (o.stride[static_cast<size_t>(i)] == 0) o.stride[static_cast<size_t>(i)] = o.kernel[static_cast<size_t>(i)];
  const Shape& in = value_info(x).shape;
  if (!expect_nchw(label, x)) return {};
  if (o.kernel[0] <= 0 || o.kernel[1] <= 0 || o.stride[0] <= 0 || o.stride[1] <= 0 ||
      o.padding[0] < 0 || o.padding[1] < 0 || 2 * int64_t{o.padding[0]} > o.kernel[0] ||
      2 * int64_t{o.padding[1]} > o.kernel[1]) {
    fail(invalid_argument(label + ": kernel " + pair_str(o.kernel) + " and stride " +
                          pair_str(o.stride) + " must be positive, padding " +
                          pair_str(o.padding) + " at most half the kernel"));
    return {};
  }
  const int64_t h = in[1] + 2 * int64_t{o.padding[0]}, w = in[2] + 2 * int64_t{o.padding[1]};
  if (o.kernel[0] > h || o.kernel[1] > w) {
    fail(invalid_argument(label + ": kernel " + pair_str(o.kernel) + " does not fit input " +
                          shape_str(x) + " with padding " + pair_str(o.padding)));
    return {};
  }
  Node node;
  node.kind = kind;
  node.name = full;
  node.inputs = {x.id};
  node.pool = o;
  return add_node(std::move(node), Shape{in[0], (h - o.kernel[0]) / o.stride[0] + 1,
                                         (w - o.kernel[1]) / o.stride[1] + 1});
}

Value Graph::max_pool2d(Value x, const Pool2dOptions& options, const std::string& name) {
  return pool(OpKind::kMaxPool2d, x, options, name);
}

Value Graph::avg_pool2d(Value x, const Pool2dOptions& options, const std::string& name) {
  return pool(OpKind::kAvgPool2d, x, options, name);
}

Value Graph::global_avg_pool(Value x, const std::string& name) {
  const OpKind kind = OpKind::kGlobalAvgPool;
  const std::string full = auto_name(kind, name);
  if (!check_inputs(kind, full, {x})) return {};
  const Shape& in = value_info(x).shape;
  if (!expect_nchw(op_label(kind, full), x)) return {};
  Node node;
  node.kind = kind;
  node.name = full;
  node.inputs = {x.id};
  return add_node(std::move(node), Shape{in[0]});
}

Value Graph::flatten(Value x, const std::string& name) {
  const OpKind kind = OpKind::kFlatten;
  const std::string full = auto_name(kind, name);
  if (!check_inputs(kind, full, {x})) return {};
  Node node;
  node.kind = kind;
  node.name = full;
  node.inputs = {x.id};
  return add_node(std::move(node), Shape{value_info(x).shape.numel()});
}

Value Graph::add(Value a, Value b, const std::string& name) {
  const OpKind kind = OpKind::kAdd;
  const std::string full = auto_name(kind, name);
  if (!check_inputs(kind, full, {a, b})) return {};
  if (value_info(a).shape != value_info(b).shape) {
    fail(invalid_argument(op_label(kind, full) + ": shapes " + shape_str(a) + " and " +
                          shape_str(b) + " differ"));
    return {};
  }
  Node node;
  node.kind = kind;
  node.name = full;
  node.inputs = {a.id, b.id};
  return add_node(std::move(node), value_info(a).shape);
}

Value Graph::softmax_cross_entropy(const std::string& name, Value logits, Value labels,
                                   const CrossEntropyOptions& o) {
  const OpKind kind = OpKind::kSoftmaxCrossEntropy;
  if (!check_inputs(kind, name, {logits, labels})) return {};
  const std::string label = op_label(kind, name);
  const ValueInfo& li = value_info(logits);
  const ValueInfo& yi = value_info(labels);
  if (li.type != ValueType::kFloat || yi.type != ValueType::kLabel) {
    fail(invalid_argument(label + ": expects (logits, labels), got a " +
                          (li.type == ValueType::kLabel ? "labels" : "float") + " value and a " +
                          (yi.type == ValueType::kLabel ? "labels" : "float") + " value"));
    return {};
  }
  // logits [N, C] with labels [N], or logits [N, C, H, W] with labels [N, H, W].
  const bool per_class = li.shape.rank() == 1 && yi.shape.rank() == 0;
  const bool per_pixel = li.shape.rank() == 3 && yi.shape.rank() == 2 &&
                         li.shape[1] == yi.shape[0] && li.shape[2] == yi.shape[1];
  if (!per_class && !per_pixel) {
    fail(invalid_argument(label + ": logits " + shape_str(logits) + " do not match labels " +
                          shape_str(labels) + " (expected [N, C] with [N], or [N, C, H, W] " +
                          "with [N, H, W])"));
    return {};
  }
  const int64_t classes = li.shape[0];
  if (!o.class_weights.empty() && static_cast<int64_t>(o.class_weights.size()) != classes) {
    fail(invalid_argument(label + ": " + std::to_string(o.class_weights.size()) +
                          " class weights for " + std::to_string(classes) + " classes"));
    return {};
  }
  if (!(o.label_smoothing >= 0.0 && o.label_smoothing <= 1.0)) {
    fail(invalid_argument(label + ": label_smoothing must be in [0, 1]"));
    return {};
  }
  Node node;
  node.kind = kind;
  node.name = name;
  node.inputs = {logits.id, labels.id};
  node.ce = o;
  loss_ = add_node(std::move(node), Shape{}, ValueType::kFloat, /*batched=*/false);
  return loss_;
}

Expected<int> Graph::find_param(std::string_view name) const {
  for (size_t i = 0; i < params_.size(); ++i)
    if (params_[i].name == name) return static_cast<int>(i);
  std::string known;
  for (const ParamInfo& p : params_) known += (known.empty() ? "" : ", ") + p.name;
  return not_found("unknown parameter '" + std::string(name) + "' (the model has: " +
                   (known.empty() ? "none" : known) + ")");
}

Expected<Value> Graph::find_value(std::string_view op_name) const {
  for (const Node& n : nodes_)
    if (n.name == op_name) return Value{n.output};
  return not_found("no op named '" + std::string(op_name) + "' in the graph");
}

Status Graph::set_param_group(std::string_view param, ParamGroup group) {
  Expected<int> index = find_param(param);
  if (!index) return index.error();
  ParamInfo& p = params_[static_cast<size_t>(*index)];
  p.group = group;
  p.wd_mult = group == ParamGroup::kDecay ? 1.0f : 0.0f;
  return {};
}

Status Graph::set_param_multipliers(std::string_view param, float lr_mult, float wd_mult) {
  Expected<int> index = find_param(param);
  if (!index) return index.error();
  if (!(lr_mult >= 0.0f) || !(wd_mult >= 0.0f))
    return invalid_argument("parameter '" + std::string(param) +
                            "': lr_mult and wd_mult must be >= 0");
  params_[static_cast<size_t>(*index)].lr_mult = lr_mult;
  params_[static_cast<size_t>(*index)].wd_mult = wd_mult;
  return {};
}

std::string Graph::summary() const {
  std::string out;
  char line[256];
  std::snprintf(line, sizeof line, "%-24s %-22s %-20s %12s\n", "op", "kind", "output", "params");
  out += line;
  for (const Node& n : nodes_) {
    int64_t count = 0;
    for (int p : {n.weight, n.bias})
      if (p >= 0) count += params_[static_cast<size_t>(p)].shape.numel();
    std::snprintf(line, sizeof line, "%-24s %-22s %-20s %12lld\n", n.name.c_str(),
                  to_string(n.kind), shape_str(Value{n.output}).c_str(),
                  static_cast<long long>(count));
    out += line;
  }
  std::snprintf(line, sizeof line, "total trainable parameters: %lld\n",
                static_cast<long long>(param_elems_));
  return out + line;
}

}  // namespace wren
