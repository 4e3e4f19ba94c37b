// Model files (docs/MODEL_FORMAT.md) and the resnet-cifar zoo model: a file builds exactly the
// graph the zoo's C++ builds (same ops, values, parameters, offsets, hence the same initial
// weights, loss and gradients, bit for bit), every option reaches the builder, every mistake is
// an error at file:line:column, and the residual nets' gradients match finite differences.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "support/gradcheck.h"
#include "wren/executor.h"
#include "wren/model_file.h"
#include "wren/models.h"

namespace wren {
namespace {

using testing::random_vector;

constexpr ModelInput kMnist{.channels = 1, .height = 28, .width = 28, .classes = 10};
constexpr ModelInput kCifar{.channels = 3, .height = 32, .width = 32, .classes = 10};

std::filesystem::path examples_dir() {
  return std::filesystem::path(__FILE__).parent_path().parent_path() / "examples" / "models";
}

Graph parse_ok(std::string_view text, const ModelInput& input) {
  Expected<Graph> g = parse_model_text(text, input, "test.wren");
  EXPECT_TRUE(g.ok()) << (g.ok() ? "" : g.error().message());
  return g.ok() ? std::move(*g) : Graph();
}

// Field by field: what every op is, what it reads and its options; every value's shape; every
// parameter and buffer with its place in the flat buffers.
void expect_same_graph(const Graph& a, const Graph& b) {
  ASSERT_TRUE(a.status().ok()) << a.status().message();
  ASSERT_TRUE(b.status().ok()) << b.status().message();
  ASSERT_EQ(a.nodes().size(), b.nodes().size()) << a.summary() << b.summary();
  for (size_t i = 0; i < a.nodes().size(); ++i) {
    const Node &x = a.nodes()[i], &y = b.nodes()[i];
    SCOPED_TRACE("node " + std::to_string(i) + " " + x.name);
    EXPECT_EQ(x.kind, y.kind);
    EXPECT_EQ(x.name, y.name);
    EXPECT_EQ(x.inputs, y.inputs);
    EXPECT_EQ(x.output, y.output);
    EXPECT_EQ(x.weight, y.weight);
    EXPECT_EQ(x.bias, y.bias);
    EXPECT_EQ(x.running_mean, y.running_mean);
    EXPECT_EQ(x.running_var, y.running_var);
    EXPECT_EQ(x.conv.out_channels, y.conv.out_channels);
    EXPECT_EQ(x.conv.kernel, y.conv.kernel);
    EXPECT_EQ(x.conv.stride, y.conv.stride);
    EXPECT_EQ(x.conv.padding, y.conv.padding);
    EXPECT_EQ(x.conv.dilation, y.conv.dilation);
    EXPECT_EQ(x.conv.bias, y.conv.bias);
    EXPECT_EQ(x.conv.in_channels, y.conv.in_channels);
    EXPECT_EQ(x.linear.out_features, y.linear.out_features);
    EXPECT_EQ(x.linear.bias, y.linear.bias);
    EXPECT_EQ(x.linear.in_features, y.linear.in_features);
    EXPECT_EQ(x.pool.kernel, y.pool.kernel);
    EXPECT_EQ(x.pool.stride, y.pool.stride);
    EXPECT_EQ(x.pool.padding, y.pool.padding);
    EXPECT_EQ(x.pool.count_include_pad, y.pool.count_include_pad);
    EXPECT_EQ(x.bn.eps, y.bn.eps);
    EXPECT_EQ(x.bn.momentum, y.bn.momentum);
    EXPECT_EQ(x.bn.affine, y.bn.affine);
    EXPECT_EQ(x.ce.label_smoothing, y.ce.label_smoothing);
    EXPECT_EQ(x.ce.ignore_index, y.ce.ignore_index);
    EXPECT_EQ(x.ce.class_weights, y.ce.class_weights);
    EXPECT_EQ(x.slope, y.slope);
    EXPECT_EQ(x.p, y.p);
  }
  ASSERT_EQ(a.values().size(), b.values().size());
  for (size_t i = 0; i < a.values().size(); ++i) {
    const ValueInfo &x = a.values()[i], &y = b.values()[i];
    EXPECT_EQ(x.shape, y.shape) << "value " << i << ": " << x.shape.str() << " vs "
                                << y.shape.str();
    EXPECT_EQ(x.type, y.type) << "value " << i;
    EXPECT_EQ(x.batched, y.batched) << "value " << i;
    EXPECT_EQ(x.producer, y.producer) << "value " << i;
  }
  ASSERT_EQ(a.params().size(), b.params().size());
  for (size_t i = 0; i < a.params().size(); ++i) {
    const ParamInfo &x = a.params()[i], &y = b.params()[i];
    EXPECT_EQ(x.name, y.name);
    EXPECT_EQ(x.shape, y.shape) << x.name << " " << x.shape.str() << " vs " << y.shape.str();
    EXPECT_EQ(x.group, y.group) << x.name;
    EXPECT_EQ(x.lr_mult, y.lr_mult) << x.name;
    EXPECT_EQ(x.wd_mult, y.wd_mult) << x.name;
    EXPECT_EQ(x.init, y.init) << x.name;
    EXPECT_EQ(x.fan_in, y.fan_in) << x.name;
    EXPECT_EQ(x.offset, y.offset) << x.name;
  }
  ASSERT_EQ(a.buffers().size(), b.buffers().size());
  for (size_t i = 0; i < a.buffers().size(); ++i) {
    const BufferInfo &x = a.buffers()[i], &y = b.buffers()[i];
    EXPECT_EQ(x.name, y.name);
    EXPECT_EQ(x.shape, y.shape) << x.name;
    EXPECT_EQ(x.init_value, y.init_value) << x.name;
    EXPECT_EQ(x.offset, y.offset) << x.name;
  }
  EXPECT_EQ(a.param_count(), b.param_count());
  EXPECT_EQ(a.buffer_count(), b.buffer_count());
  EXPECT_EQ(a.loss().id, b.loss().id);
}

std::vector<int32_t> labels_for(int batch, int classes) {
  std::vector<int32_t> y(static_cast<size_t>(batch));
  for (int i = 0; i < batch; ++i) y[static_cast<size_t>(i)] = (i * 7 + 3) % classes;
  return y;
}

template <class T>
std::unique_ptr<Executor<T>> make_executor(const Graph& g, int batch, uint64_t seed) {
  auto ex = Executor<T>::create(g, make_cpu_backend<T>(), {.batch_size = batch, .seed = seed});
  EXPECT_TRUE(ex.ok()) << (ex.ok() ? "" : ex.error().message());
  return ex.ok() ? std::move(*ex) : nullptr;
}

// Feeds one fixed batch to the graph's "image" and "label".
template <class T>
void feed(Executor<T>& ex, const Graph& g, int batch, int classes) {
  const int64_t sample = g.value_info(*g.find_value("image")).shape.numel();
  ASSERT_TRUE(ex.set_input("image", random_vector<T>(static_cast<size_t>(batch * sample), 11))
                  .ok());
  ASSERT_TRUE(ex.set_labels("label", labels_for(batch, classes)).ok());
}

struct StepResult {
  double loss = 0;
  std::vector<double> params, grads, buffers;
};

// One training-mode forward and backward in double from the seed's initial weights.
StepResult train_step(const Graph& g, int batch, int classes, uint64_t seed) {
  StepResult r;
  auto ex = make_executor<double>(g, batch, seed);
  if (!ex) return r;
  feed(*ex, g, batch, classes);
  EXPECT_TRUE(ex->forward(Mode::kTrain).ok());
  EXPECT_TRUE(ex->backward().ok());
  r.loss = ex->loss();
  r.params = ex->download(ex->params());
  r.grads = ex->download(ex->grads());
  r.buffers = ex->download(ex->buffers());
  return r;
}

// Same graph, same seed, same batch: the same numbers, bit for bit.
void expect_same_step(const Graph& a, const Graph& b, int batch, int classes) {
  const StepResult x = train_step(a, batch, classes, 42), y = train_step(b, batch, classes, 42);
  EXPECT_TRUE(std::isfinite(x.loss));
  EXPECT_GT(x.loss, 0.0);
  EXPECT_EQ(x.loss, y.loss);
  EXPECT_EQ(x.params, y.params);
  EXPECT_EQ(x.grads, y.grads);
  EXPECT_EQ(x.buffers, y.buffers);  // BN running statistics after one step
}

// Finite differences on every parameter of the executor's graph (double). Each pass replays
// step 0, so a dropout mask stays fixed across the perturbed passes.
void check_all_param_gradients(Executor<double>& ex, const std::string& what) {
  auto loss = [&ex] {
    ex.set_step(0);
    EXPECT_TRUE(ex.forward(Mode::kTrain).ok());
    return static_cast<double>(ex.loss());
  };
  loss();
  ASSERT_TRUE(ex.backward().ok());
  const std::vector<double> analytic = ex.download(ex.grads());
  std::span<double> params(ex.params().data, static_cast<size_t>(ex.params().numel()));
  testing::check_gradient<double>(params, analytic, loss, what);
}

// Finite differences on `per_tensor` elements of every parameter tensor (first, last and
// evenly between): a network too large to perturb every weight of is still checked in every
// layer. The sampled values live in `sample`; the loss writes them back before each pass.
void check_sampled_param_gradients(Executor<double>& ex, const Graph& g, int64_t per_tensor,
                                   const std::string& what) {
  auto forward = [&ex] {
    EXPECT_TRUE(ex.forward(Mode::kTrain).ok());
    return static_cast<double>(ex.loss());
  };
  forward();
  ASSERT_TRUE(ex.backward().ok());
  const std::vector<double> grads = ex.download(ex.grads());
  std::vector<size_t> index;
  for (const ParamInfo& p : g.params()) {
    const int64_t n = p.shape.numel(), count = std::min(n, per_tensor);
    for (int64_t k = 0; k < count; ++k)
      index.push_back(
          static_cast<size_t>(p.offset + (count == 1 ? 0 : k * (n - 1) / (count - 1))));
  }
  double* params = ex.params().data;
  std::vector<double> sample(index.size()), analytic(index.size());
  for (size_t j = 0; j < index.size(); ++j) {
    sample[j] = params[index[j]];
    analytic[j] = grads[index[j]];
  }
  auto loss = [&] {
    for (size_t j = 0; j < index.size(); ++j) params[index[j]] = sample[j];
    return forward();
  };
  testing::check_gradient<double>(std::span<double>(sample), analytic, loss, what);
}

// --- the format against the zoo ---------------------------------------------------------------

constexpr std::string_view kRefCnnText = R"(# ref-cnn in the model format
input image 1 28 28          # name C H W
labels label
conv2d conv1 out=32 kernel=3 padding=1
relu
maxpool kernel=2
conv2d conv2 out=64 kernel=3 padding=1
relu
max_pool2d kernel=2
linear fc1 out=128
relu
linear fc2 out=classes       # 'classes' = the dataset's class count
softmax_ce loss              # consumes the current value and the labels
)";

TEST(ModelFile, RefCnnTextBuildsTheZoosGraph) {
  Graph parsed = parse_ok(kRefCnnText, kMnist);
  expect_same_graph(parsed, ref_cnn(kMnist));
  EXPECT_EQ(parsed.param_count(), 421642);
  EXPECT_EQ(parsed.value_info(*parsed.find_value("max_pool2d2")).shape, (Shape{64, 7, 7}));
  expect_same_step(parsed, ref_cnn(kMnist), 2, 10);
}

// Each example whose name is a zoo model is that model, for MNIST- and CIFAR-shaped data, and
// gives the same first step; every example parses.
TEST(ModelFile, ExamplesAreTheZooModels) {
  std::vector<std::filesystem::path> files;
  for (const auto& entry : std::filesystem::directory_iterator(examples_dir()))
    if (entry.path().extension() == ".wren") files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  ASSERT_GE(files.size(), 3u) << examples_dir();
  const std::vector<std::string> zoo = model_names();
  int zoo_files = 0;
  for (const auto& file : files) {
    SCOPED_TRACE(file.string());
    const std::string stem = file.stem().string();
    const bool in_zoo = std::find(zoo.begin(), zoo.end(), stem) != zoo.end();
    zoo_files += in_zoo;
    for (const ModelInput& in : {kMnist, kCifar, ModelInput{.channels = 3, .height = 8,
                                                            .width = 8, .classes = 7}}) {
      Expected<Graph> parsed = parse_model_file(file.string(), in);
      ASSERT_TRUE(parsed.ok()) << parsed.error().message();
      if (!in_zoo) continue;
      Expected<Graph> built = build_model(stem, in);
      ASSERT_TRUE(built.ok()) << built.error().message();
      expect_same_graph(*parsed, *built);
      if (in.height == 8) expect_same_step(*parsed, *built, 2, in.classes);
    }
  }
  EXPECT_GE(zoo_files, 3) << "ref-cnn, ref-cnn-bn and resnet-cifar have example files";
}

TEST(ModelFile, ResnetCifarExampleMatchesAtCifarSize) {
  const std::string path = (examples_dir() / "resnet-cifar.wren").string();
  Expected<Graph> parsed = parse_model_file(path, kCifar);
  ASSERT_TRUE(parsed.ok()) << parsed.error().message();
  expect_same_graph(*parsed, resnet_cifar(kCifar));
  EXPECT_EQ(parsed->param_count(), 78042);
  expect_same_step(*parsed, resnet_cifar(kCifar), 2, 10);
}

// Without input and labels lines the data's shape and the names "image" / "label" are used.
TEST(ModelFile, ImplicitInputAndLabels) {
  const ModelInput in{.channels = 3, .height = 12, .width = 10, .classes = 5};
  Graph g = parse_ok("conv2d c out=4 padding=1\nflatten\nlinear fc out=classes\nsoftmax_ce\n", in);
  ASSERT_TRUE(g.status().ok());
  EXPECT_EQ(g.value_info(*g.find_value("image")).shape, (Shape{3, 12, 10}));
  EXPECT_EQ(g.value_info(*g.find_value("label")).type, ValueType::kLabel);
  EXPECT_EQ(g.value_info(*g.find_value("fc")).shape, (Shape{5}));
  EXPECT_EQ(g.nodes().back().name, "loss");  // the loss's default name
  // `auto` says the same thing explicitly.
  Graph explicit_auto = parse_ok(
      "input image auto\nlabels label\nconv2d c out=4 padding=1\nflatten\n"
      "linear fc out=classes\nsoftmax_ce\n", in);
  expect_same_graph(g, explicit_auto);
  // Either line alone: the other is implicit.
  Graph only_labels = parse_ok("labels label\nconv2d c out=4 padding=1\nflatten\n"
                               "linear fc out=classes\nsoftmax_ce\n", in);
  EXPECT_EQ(only_labels.value_info(*only_labels.find_value("image")).shape, (Shape{3, 12, 10}));
  Graph only_input = parse_ok("input pixels auto\nconv2d c out=4 padding=1\nflatten\n"
                              "linear fc out=classes\nsoftmax_ce\n", in);
  EXPECT_EQ(only_input.value_info(*only_input.find_value("label")).type, ValueType::kLabel);
  EXPECT_EQ(only_input.value_info(*only_input.find_value("pixels")).shape, (Shape{3, 12, 10}));
}

// Every option of every builder op is reachable and lands in the node.
TEST(ModelFile, EveryOptionReachesTheBuilder) {
  const ModelInput in{.channels = 2, .height = 11, .width = 9, .classes = 4};
  Graph g = parse_ok(R"(
input x 2 11 9
labels y
conv2d c out=6 kernel=3,2 stride=2,1 padding=1,0 dilation=2,3 bias=false in=2
batch_norm2d bn eps=1e-3 momentum=0.25 affine=false
leaky_relu lr slope=0.2
gelu g
maxpool mp kernel=3 stride=2 padding=1
avg_pool2d ap kernel=2,1 stride=1,1 padding=1,0 count_include_pad=false from=lr
global_avg_pool gap from=mp
dropout d p=0.3 from=ap
flatten f
linear fc out=classes bias=false in=216
linear fc_gap out=4 from=gap
add sum from=fc,fc_gap
relu r
softmax_cross_entropy ce label_smoothing=0.1 ignore_index=-1 class_weights=1,2,0.5,1.5
param fc_gap.bias group=decay
param fc_gap.weight lr_mult=2 wd_mult=0.5
param c.weight group=no_decay lr_mult=0.1
)", in);
  ASSERT_TRUE(g.status().ok()) << g.status().message();
  auto node = [&g](const char* name) -> const Node& {
    return g.nodes()[static_cast<size_t>(g.value_info(*g.find_value(name)).producer)];
  };
  const Node& c = node("c");
  EXPECT_EQ(c.conv.out_channels, 6);
  EXPECT_EQ(c.conv.kernel, (std::array<int, 2>{3, 2}));
  EXPECT_EQ(c.conv.stride, (std::array<int, 2>{2, 1}));
  EXPECT_EQ(c.conv.padding, (std::array<int, 2>{1, 0}));
  EXPECT_EQ(c.conv.dilation, (std::array<int, 2>{2, 3}));
  EXPECT_FALSE(c.conv.bias);
  EXPECT_EQ(c.bias, -1);
  // H: (11 + 2 − 2·2 − 1)/2 + 1 = 5;  W: (9 − 3·1 − 1)/1 + 1 = 6
  EXPECT_EQ(g.value_info(*g.find_value("c")).shape, (Shape{6, 5, 6}));
  const Node& bn = node("bn");
  EXPECT_EQ(bn.bn.eps, 1e-3);
  EXPECT_EQ(bn.bn.momentum, 0.25);
  EXPECT_FALSE(bn.bn.affine);
  EXPECT_EQ(bn.weight, -1);
  EXPECT_EQ(node("lr").slope, 0.2);
  EXPECT_EQ(node("g").kind, OpKind::kGelu);
  EXPECT_EQ(node("mp").pool.kernel, (std::array<int, 2>{3, 3}));
  EXPECT_EQ(node("mp").pool.stride, (std::array<int, 2>{2, 2}));
  EXPECT_EQ(node("mp").pool.padding, (std::array<int, 2>{1, 1}));
  EXPECT_EQ(node("mp").inputs, std::vector<int>{g.find_value("g")->id});
  const Node& ap = node("ap");
  EXPECT_EQ(ap.kind, OpKind::kAvgPool2d);
  EXPECT_EQ(ap.pool.kernel, (std::array<int, 2>{2, 1}));
  EXPECT_EQ(ap.pool.stride, (std::array<int, 2>{1, 1}));
  EXPECT_EQ(ap.pool.padding, (std::array<int, 2>{1, 0}));
  EXPECT_FALSE(ap.pool.count_include_pad);
  EXPECT_EQ(ap.inputs, std::vector<int>{g.find_value("lr")->id});
  EXPECT_EQ(g.value_info(*g.find_value("ap")).shape, (Shape{6, 6, 6}));
  EXPECT_EQ(node("gap").inputs, std::vector<int>{g.find_value("mp")->id});
  EXPECT_EQ(node("d").p, 0.3);
  const Node& fc = node("fc");
  EXPECT_EQ(fc.linear.out_features, 4);
  EXPECT_EQ(fc.linear.in_features, 216);
  EXPECT_FALSE(fc.linear.bias);
  EXPECT_EQ(node("sum").inputs, (std::vector<int>{g.find_value("fc")->id,
                                                  g.find_value("fc_gap")->id}));
  const Node& ce = node("ce");
  EXPECT_EQ(ce.ce.label_smoothing, 0.1);
  EXPECT_EQ(ce.ce.ignore_index, -1);
  EXPECT_EQ(ce.ce.class_weights, (std::vector<float>{1.0f, 2.0f, 0.5f, 1.5f}));
  EXPECT_EQ(ce.inputs, (std::vector<int>{g.find_value("r")->id, g.find_value("y")->id}));
  auto param = [&g](const char* name) {
    return g.params()[static_cast<size_t>(*g.find_param(name))];
  };
  EXPECT_EQ(param("fc_gap.bias").group, ParamGroup::kDecay);
  EXPECT_EQ(param("fc_gap.bias").wd_mult, 1.0f);
  EXPECT_EQ(param("fc_gap.weight").lr_mult, 2.0f);
  EXPECT_EQ(param("fc_gap.weight").wd_mult, 0.5f);
  EXPECT_EQ(param("c.weight").group, ParamGroup::kNoDecay);
  EXPECT_EQ(param("c.weight").lr_mult, 0.1f);
  EXPECT_EQ(param("c.weight").wd_mult, 0.0f);
}

// `add from=B` adds the current value and B; unnamed values are reachable by their automatic
// names.
TEST(ModelFile, AddWithOneNameTakesTheCurrentValue) {
  const ModelInput in{.channels = 2, .height = 4, .width = 4, .classes = 3};
  Graph g = parse_ok("conv2d a out=2 padding=1\nrelu\nconv2d b out=2 padding=1\n"
                     "add s from=relu1\nflatten\nlinear fc out=classes\nsoftmax_ce\n", in);
  ASSERT_TRUE(g.status().ok());
  const Node& s = g.nodes()[static_cast<size_t>(g.value_info(*g.find_value("s")).producer)];
  EXPECT_EQ(s.inputs, (std::vector<int>{g.find_value("b")->id, g.find_value("relu1")->id}));
}

// A projection block and an identity block with every activation, pool and dropout, written
// in the format: the executor's gradients of every parameter match finite differences.
TEST(ModelFile, ResidualBlocksGradientsMatchFiniteDifferences) {
  const ModelInput in{.channels = 2, .height = 6, .width = 6, .classes = 3};
  Graph g = parse_ok(R"(
input image auto
labels label
conv2d b1.conv1 out=3 kernel=3 stride=2 padding=1 bias=false   # [N, 3, 3, 3]
batch_norm2d b1.bn1
relu b1.relu1
conv2d b1.conv2 out=3 kernel=3 padding=1
conv2d b1.shortcut out=3 kernel=1 stride=2 from=image
batch_norm2d b1.shortcut.bn momentum=0.5
add b1.add from=b1.conv2,b1.shortcut.bn
gelu b1.out
conv2d b2.conv1 out=3 kernel=3 padding=2 dilation=2
leaky_relu slope=0.1
add from=b1.out                                                 # identity shortcut
avg_pool2d kernel=2 stride=1 count_include_pad=false padding=1  # [N, 3, 4, 4]
dropout p=0.25
flatten
linear fc out=classes
softmax_cross_entropy loss label_smoothing=0.1
)", in);
  ASSERT_TRUE(g.status().ok()) << g.status().message();
  constexpr int kBatch = 3;
  auto ex = make_executor<double>(g, kBatch, 5);
  ASSERT_TRUE(ex);
  feed(*ex, g, kBatch, in.classes);
  check_all_param_gradients(*ex, "residual file params");
}

// --- errors: each names the source, the line, the column and the token ------------------------

struct ErrorCase {
  const char* text = "";
  const char* expected = "";  // a substring of the message, starting with the location
  ErrorCode code = ErrorCode::kInvalidArgument;
};

TEST(ModelFile, ErrorsNameFileLineColumnAndToken) {
  const ModelInput in{.channels = 1, .height = 8, .width = 8, .classes = 4};
  const std::string head = "input image 1 8 8\nlabels label\n";  // lines 1 and 2
  const ErrorCase cases[] = {
      {"conv2d c out=4 strid=2\n",
       "net.wren:3:16: conv2d 'c': unknown key 'strid' (conv2d takes: from, out, kernel, "
       "stride, padding, dilation, bias, in)"},
      {"relu r p=0.5\n", "net.wren:3:8: relu 'r': unknown key 'p' (relu takes: from)"},
      {"conv2d c out=3x\n",
       "net.wren:3:14: conv2d 'c': bad value '3x' for out (expected an integer or 'classes')"},
      {"conv2d c out=4 kernel=3,3,3\n",
       "net.wren:3:23: conv2d 'c': bad value '3,3,3' for kernel (expected N or H,W)"},
      {"conv2d c out=4 stride=2,x\n",
       "net.wren:3:25: conv2d 'c': bad value 'x' for stride (expected an integer)"},
      {"conv2d c out=4 bias=no\n",
       "net.wren:3:21: conv2d 'c': bad value 'no' for bias (expected true or false)"},
      {"dropout d p=abc\n", "net.wren:3:13: dropout 'd': bad value 'abc' for p (expected a "
                            "finite number)"},
      {"batch_norm2d bn eps=nan\n",
       "net.wren:3:21: batch_norm2d 'bn': bad value 'nan' for eps (expected a finite number)"},
      {"conv3d c out=4\n", "net.wren:3:1: unknown op 'conv3d' (known: input, labels, param, "},
      {"relu from=nothing\n",
       "net.wren:3:11: relu: no value named 'nothing' is defined before this line"},
      {"add s from=image,later\nrelu later\n",
       "net.wren:3:18: add 's': no value named 'later' is defined before this line"},
      {"relu from=label\n",
       "net.wren:3:11: relu: 'label' (line 2) holds the labels; an op takes activations"},
      {"flatten\nlinear fc out=classes\n",
       "net.wren:4: the model has no loss: end it with a 'softmax_cross_entropy' line"},
      {"linear fc out=10 in=5\n",
       "net.wren:3:1: linear 'fc': expects 5 input features ([N, 5]), got [N, 1, 8, 8] = 64 "
       "features"},
      {"conv2d c out=4\nadd sum from=c,image\n",
       "net.wren:4:1: add 'sum': shapes [N, 4, 6, 6] and [N, 1, 8, 8] differ"},
      {"conv2d c out=4 kernel=9\n",
       "net.wren:3:1: conv2d 'c': kernel 9x9 (dilation 1x1) does not fit input [N, 1, 8, 8]"},
      {"conv2d c out=4\nconv2d c out=4\n",
       "net.wren:4:8: conv2d: the name 'c' is already used on line 3"},
      {"relu image\n", "net.wren:3:6: relu: the name 'image' is already used on line 1"},
      {"conv2d out=4\n", "net.wren:3:1: conv2d needs a name (e.g. 'conv2d conv1 ...')"},
      {"conv2d c kernel=3\n", "net.wren:3:1: conv2d 'c': needs out=CHANNELS"},
      {"linear fc\n", "net.wren:3:1: linear 'fc': needs out=FEATURES"},
      {"conv2d c out=4 out=5\n", "net.wren:3:16: conv2d 'c': key 'out' is given twice"},
      {"conv2d c out=\n", "net.wren:3:10: conv2d 'c': key 'out' has no value"},
      {"conv2d c =4\n", "net.wren:3:10: conv2d 'c': '=4' has no key (expected KEY=VALUE)"},
      {"relu r extra\n", "net.wren:3:8: relu 'r': unexpected 'extra' (options are KEY=VALUE)"},
      {"conv2d 1c out=4\n", "net.wren:3:8: conv2d: bad name '1c'"},
      {"flatten\nlinear fc out=4\nsoftmax_ce\nrelu\n",
       "net.wren:6:1: relu: comes after the loss (line 5); only 'param' lines may follow it"},
      {"flatten\nlinear fc out=4\nsoftmax_ce\nsoftmax_ce l2\n",
       "net.wren:6:1: softmax_cross_entropy 'l2': comes after the loss (line 5)"},
      {"relu\ninput x 1 8 8\n", "net.wren:4:1: input: a model has one input, already defined "
                                "on line 1"},
      {"dropout p=1\n", "net.wren:3:1: dropout 'dropout1': p must be in [0, 1), got 1"},
      {"flatten\nlinear fc out=3\nsoftmax_ce loss class_weights=1,2\n",
       "net.wren:5:1: softmax_cross_entropy 'loss': 2 class weights for 3 classes"},
      {"flatten\nlinear fc out=3\nsoftmax_ce loss class_weights=1,x\n",
       "net.wren:5:33: softmax_cross_entropy 'loss': bad value 'x' for class_weights"},
      {"add from=image,image,image\n",
       "net.wren:3:10: add: from='image,image,image' names 3 values; add takes two"},
      {"relu from=image,image\n",
       "net.wren:3:11: relu: from='image,image' names 2 values; this op takes one"},
      {"add\n", "net.wren:3:1: add: needs from=A,B (or from=B: the current value + B)"},
      {"flatten\nlinear fc out=4\nsoftmax_ce\nparam fc.weight group=big\n",
       "net.wren:6:23: param 'fc.weight': bad value 'big' for group (expected decay or "
       "no_decay)"},
      {"flatten\nlinear fc out=4\nsoftmax_ce\nparam fc9.weight lr_mult=2\n",
       "net.wren:6:7: unknown parameter 'fc9.weight' (the model has: fc.weight, fc.bias)",
       ErrorCode::kNotFound},
      {"flatten\nlinear fc out=4\nsoftmax_ce\nparam fc.weight wd_mult=-1\n",
       "net.wren:6:25: param 'fc.weight': wd_mult must be >= 0, got -1"},
      {"flatten\nlinear fc out=4\nsoftmax_ce\nparam fc.weight\n",
       "net.wren:6:1: param: nothing to set (keys: group, lr_mult, wd_mult)"},
      {"linear fc out=0\n", "net.wren:3:1: linear 'fc': out_features must be positive, got 0"},
      {"maxpool kernel=3 padding=2\n", "net.wren:3:1: max_pool2d 'max_pool2d1': kernel 3x3 "
                                       "and stride 3x3 must be positive, padding 2x2 at most "
                                       "half the kernel"},
  };
  for (const ErrorCase& c : cases) {
    const std::string text = head + c.text;
    SCOPED_TRACE(text);
    Expected<Graph> g = parse_model_text(text, in, "net.wren");
    ASSERT_FALSE(g.ok());
    EXPECT_EQ(g.error().code(), c.code);
    EXPECT_NE(g.error().message().find(c.expected), std::string::npos)
        << "message:  " << g.error().message() << "\nexpected: " << c.expected;
    EXPECT_EQ(g.error().message().rfind("net.wren:", 0), 0u) << g.error().message();
  }
}

// Errors about the input and labels lines themselves.
TEST(ModelFile, InputAndLabelsErrors) {
  const ModelInput in{.channels = 1, .height = 8, .width = 8, .classes = 4};
  const ErrorCase cases[] = {
      {"input image 3 32 32\n", "net.wren:1:13: input 'image': the file says [N, 3, 32, 32] "
                                "but the data is [N, 1, 8, 8] (write 'auto' to take the data's "
                                "shape)"},
      {"input image 1 8\n", "net.wren:1:13: input 'image': expected C H W or 'auto' after the "
                            "name, got 2 tokens"},
      {"input image 1 8 x\n", "net.wren:1:17: input 'image': bad value 'x' for a dimension"},
      {"input image 0 8 8\n", "net.wren:1:13: input 'image': bad value '0' for a dimension "
                              "(expected an integer in [1, 2147483647])"},
      {"input\n", "net.wren:1:1: input needs a name"},
      {"input image shape=auto\n", "net.wren:1:13: input 'image': unknown key 'shape' (input "
                                   "takes no keys)"},
      {"labels label\nlabels again\n", "net.wren:2:1: labels: a model has one labels value, "
                                       "already defined on line 1"},
      {"relu\nlabels label\n", "net.wren:2:1: labels: must come before the first op (line 1)"},
      {"labels label 4\n", "net.wren:1:14: labels 'label': expected nothing (a class per "
                           "sample) or H W after the name"},
      {"# only a comment\n\n", "net.wren:2: the model has no loss"},
      {"", "net.wren:1: the model has no loss"},
  };
  for (const ErrorCase& c : cases) {
    SCOPED_TRACE(c.text);
    Expected<Graph> g = parse_model_text(c.text, in, "net.wren");
    ASSERT_FALSE(g.ok());
    EXPECT_NE(g.error().message().find(c.expected), std::string::npos)
        << "message:  " << g.error().message() << "\nexpected: " << c.expected;
  }
  // Per-pixel labels take H W.
  Graph g = parse_ok("labels mask 8 8\nconv2d c out=classes padding=1\nsoftmax_ce\n", in);
  EXPECT_EQ(g.value_info(*g.find_value("mask")).shape, (Shape{8, 8}));
  EXPECT_EQ(g.value_info(*g.find_value("c")).shape, (Shape{4, 8, 8}));
}

TEST(ModelFile, FileErrorsNameThePath) {
  const std::filesystem::path dir = std::filesystem::temp_directory_path();
  const std::string missing = (dir / "wren_no_such_model.wren").string();
  Expected<Graph> g = parse_model_file(missing, kMnist);
  ASSERT_FALSE(g.ok());
  EXPECT_EQ(g.error().code(), ErrorCode::kNotFound);
  EXPECT_NE(g.error().message().find(missing + ": cannot open model file"), std::string::npos)
      << g.error().message();

  const std::string bad =
      (dir / ("wren_bad_model_" + std::to_string(::getpid()) + ".wren")).string();
  {
    std::ofstream out(bad);
    out << "# a comment\ninput image auto\n\nconv2d c out=4 stride=two\n";
  }
  g = parse_model_file(bad, kMnist);
  std::filesystem::remove(bad);
  ASSERT_FALSE(g.ok());
  EXPECT_NE(g.error().message().find(bad + ":4:23: conv2d 'c': bad value 'two' for stride"),
            std::string::npos)
      << g.error().message();

  g = parse_model_file(dir.string(), kMnist);  // a directory: opens, cannot be read
  ASSERT_FALSE(g.ok());
  EXPECT_EQ(g.error().code(), ErrorCode::kIoError) << g.error().message();
}

// --- resnet-cifar ------------------------------------------------------------------------------

TEST(ResnetCifar, ParametersAsDocumented) {
  Graph g = resnet_cifar(kCifar);
  ASSERT_TRUE(g.status().ok()) << g.status().message();
  // stem 432 + 32; stage 1: 2·2304 + 2·32; stage 2: 4608 + 9216 + 512 + 3·64;
  // stage 3: 18432 + 36864 + 2048 + 3·128; fc 640 + 10.
  EXPECT_EQ(g.param_count(), 78042);
  const std::vector<std::pair<const char*, Shape>> expected = {
      {"stem.conv.weight", Shape{16, 3, 3, 3}},
      {"stem.bn.weight", Shape{16}},
      {"stem.bn.bias", Shape{16}},
      {"stage1.block1.conv1.weight", Shape{16, 16, 3, 3}},
      {"stage1.block1.bn1.weight", Shape{16}},
      {"stage1.block1.bn1.bias", Shape{16}},
      {"stage1.block1.conv2.weight", Shape{16, 16, 3, 3}},
      {"stage1.block1.bn2.weight", Shape{16}},
      {"stage1.block1.bn2.bias", Shape{16}},
      {"stage2.block1.conv1.weight", Shape{32, 16, 3, 3}},
      {"stage2.block1.bn1.weight", Shape{32}},
      {"stage2.block1.bn1.bias", Shape{32}},
      {"stage2.block1.conv2.weight", Shape{32, 32, 3, 3}},
      {"stage2.block1.bn2.weight", Shape{32}},
      {"stage2.block1.bn2.bias", Shape{32}},
      {"stage2.block1.shortcut.conv.weight", Shape{32, 16, 1, 1}},
      {"stage2.block1.shortcut.bn.weight", Shape{32}},
      {"stage2.block1.shortcut.bn.bias", Shape{32}},
      {"stage3.block1.conv1.weight", Shape{64, 32, 3, 3}},
      {"stage3.block1.bn1.weight", Shape{64}},
      {"stage3.block1.bn1.bias", Shape{64}},
      {"stage3.block1.conv2.weight", Shape{64, 64, 3, 3}},
      {"stage3.block1.bn2.weight", Shape{64}},
      {"stage3.block1.bn2.bias", Shape{64}},
      {"stage3.block1.shortcut.conv.weight", Shape{64, 32, 1, 1}},
      {"stage3.block1.shortcut.bn.weight", Shape{64}},
      {"stage3.block1.shortcut.bn.bias", Shape{64}},
      {"fc.weight", Shape{10, 64}},
      {"fc.bias", Shape{10}},
  };
  ASSERT_EQ(g.params().size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(g.params()[i].name, expected[i].first);
    EXPECT_EQ(g.params()[i].shape, expected[i].second) << expected[i].first;
    const bool decay = g.params()[i].name.ends_with("conv.weight") ||
                       g.params()[i].name.ends_with("conv1.weight") ||
                       g.params()[i].name.ends_with("conv2.weight") ||
                       g.params()[i].name == "fc.weight";
    EXPECT_EQ(g.params()[i].group, decay ? ParamGroup::kDecay : ParamGroup::kNoDecay)
        << expected[i].first;
  }
  EXPECT_EQ(g.buffers().size(), 2u * 9);  // running mean and variance of 9 batch norms
  // Stage 1 keeps the stem's output as its shortcut; stages 2 and 3 project.
  const Node& add1 = g.nodes()[static_cast<size_t>(
      g.value_info(*g.find_value("stage1.block1.add")).producer)];
  EXPECT_EQ(add1.inputs, (std::vector<int>{g.find_value("stage1.block1.bn2")->id,
                                           g.find_value("stem.relu")->id}));
  // ResNet-20 (three blocks per stage) is the same code: 2 more blocks per stage.
  Graph r20 = resnet_cifar(kCifar, 3);
  ASSERT_TRUE(r20.status().ok()) << r20.status().message();
  EXPECT_EQ(r20.param_count(), 78042 + 2 * (2 * 2304 + 2 * 32) + 2 * (2 * 9216 + 2 * 64) +
                                   2 * (2 * 36864 + 2 * 128));
}

// Any input size: 32×32×3 ends in [64, 8, 8], 28×28×1 in [64, 7, 7]; a float forward pass runs.
TEST(ResnetCifar, ForwardOnCifarAndMnistShapes) {
  const std::pair<ModelInput, int64_t> cases[] = {{kCifar, 8}, {kMnist, 7}};
  for (const auto& [in, last] : cases) {
    SCOPED_TRACE(std::to_string(in.channels) + "x" + std::to_string(in.height));
    Graph g = resnet_cifar(in);
    ASSERT_TRUE(g.status().ok()) << g.status().message();
    EXPECT_EQ(g.value_info(*g.find_value("stage3.block1.out")).shape, (Shape{64, last, last}));
    EXPECT_EQ(g.value_info(*g.find_value("stage2.block1.shortcut.bn")).shape,
              (Shape{32, (in.height + 1) / 2, (in.width + 1) / 2}));
    EXPECT_EQ(g.value_info(*g.find_value("fc")).shape, (Shape{10}));
    constexpr int kBatch = 4;
    auto ex = make_executor<float>(g, kBatch, 1);
    ASSERT_TRUE(ex);
    feed(*ex, g, kBatch, in.classes);
    ASSERT_TRUE(ex->forward(Mode::kTrain).ok());
    ASSERT_TRUE(ex->backward().ok());
    // Small uniform init and BN: the first loss is near ln 10 = 2.303.
    EXPECT_TRUE(std::isfinite(ex->loss()));
    EXPECT_NEAR(ex->loss(), std::log(10.0), 0.5);
    for (float v : ex->download(ex->grads())) ASSERT_TRUE(std::isfinite(v));
  }
}

// 8×8×3, batch 2, double, train mode (batch statistics; stage 3 normalises over 2·2·2 values):
// eight elements of every parameter tensor, first and last included, so every layer and both
// shortcut kinds are checked without perturbing all 78,042 weights.
TEST(ResnetCifar, GradientsMatchFiniteDifferences) {
  const ModelInput in{.channels = 3, .height = 8, .width = 8, .classes = 10};
  Graph g = resnet_cifar(in);
  ASSERT_TRUE(g.status().ok()) << g.status().message();
  constexpr int kBatch = 2;
  auto ex = make_executor<double>(g, kBatch, 3);
  ASSERT_TRUE(ex);
  feed(*ex, g, kBatch, in.classes);
  check_sampled_param_gradients(*ex, g, 8, "resnet-cifar params");
}

// --- the zoo ---------------------------------------------------------------------------------

TEST(Zoo, EveryNameBuildsForMnistAndCifar) {
  const std::vector<std::string> names = model_names();
  EXPECT_NE(std::find(names.begin(), names.end(), "resnet-cifar"), names.end());
  for (const std::string& name : names) {
    for (const ModelInput& in : {kMnist, kCifar}) {
      Expected<Graph> g = build_model(name, in);
      ASSERT_TRUE(g.ok()) << name << ": " << g.error().message();
      EXPECT_TRUE(g->status().ok()) << name << ": " << g->status().message();
      EXPECT_EQ(g->value_info(*g->find_value("image")).shape,
                (Shape{in.channels, in.height, in.width}));
      EXPECT_TRUE(g->loss().valid()) << name;
    }
  }
  Expected<Graph> built = build_model("resnet-cifar", kCifar);
  ASSERT_TRUE(built.ok());
  expect_same_graph(*built, resnet_cifar(kCifar));
  Expected<Graph> unknown = build_model("resnet-9000");
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.error().message().find("resnet-cifar"), std::string::npos);
}

}  // namespace
}  // namespace wren
