// The executor: planned memory, the derived backward pass (checked end to end by finite
// differences in double on a network that uses every op, residual fan-out included), errors,
// and determinism.
#include <gtest/gtest.h>

#include <cmath>

#include "support/gradcheck.h"
#include "wren/executor.h"
#include "wren/models.h"
#include "conv/conv.h"
#include "elementwise/elementwise.h"
#include "linear/linear.h"
#include "pool/pool.h"
#include "softmax_ce/softmax_ce.h"

namespace wren {
namespace {

using testing::random_vector;

template <class T>
std::unique_ptr<Executor<T>> make(const Graph& g, int batch, uint64_t seed = 7) {
  auto ex = Executor<T>::create(g, make_cpu_backend<T>(), {.batch_size = batch, .seed = seed});
  EXPECT_TRUE(ex.ok()) << (ex.ok() ? "" : ex.error().message());
  return ex.ok() ? std::move(*ex) : nullptr;
}

std::vector<int32_t> labels_for(int batch, int classes) {
  std::vector<int32_t> y(static_cast<size_t>(batch));
  for (int i = 0; i < batch; ++i) y[static_cast<size_t>(i)] = (i * 7 + 3) % classes;
  return y;
}

// Checks every parameter's gradient against finite differences of the executor's loss in
// `mode`. `replay_step` re-runs dropout step 0 each time, so the mask stays fixed across the
// perturbed passes. Returns the analytic gradients.
std::vector<double> check_param_gradients(Executor<double>& ex, Mode mode, const std::string& what,
                                          bool replay_step = false) {
  auto loss = [&ex, mode, replay_step] {
    if (replay_step) ex.set_step(0);
    EXPECT_TRUE(ex.forward(mode).ok());
    return static_cast<double>(ex.loss());
  };
  loss();
  EXPECT_TRUE(ex.backward().ok());
  const std::vector<double> analytic = ex.download(ex.grads());
  std::span<double> params(ex.params().data, static_cast<size_t>(ex.params().numel()));
  testing::check_gradient<double>(params, analytic, loss, what);
  return analytic;
}

// Every op kind, a residual add (fan-out of `a`), a value with two consumers (`pooled`), and
// a cross-entropy with label smoothing and class weights.
Graph every_op_graph() {
  Graph g;
  Value x = g.input("image", Shape{3, 6, 6});
  Value y = g.labels("label");
  Value a = g.conv2d("conv_a", x, {.out_channels = 4, .kernel = {3, 3}, .padding = {1, 1}});
  a = g.relu(g.batch_norm2d("bn_a", a));
  Value b = g.conv2d("conv_b", a, {.out_channels = 4, .kernel = {3, 3}, .padding = {1, 1}});
  b = g.gelu(b);
  Value r = g.leaky_relu(g.add(a, b, "residual"), 0.1);
  Value pooled = g.dropout(g.max_pool2d(r, {.kernel = {2, 2}}), 0.25);  // [4, 3, 3]
  Value avg = g.flatten(g.avg_pool2d(pooled, {.kernel = {3, 3}, .stride = {2, 2},
                                              .padding = {1, 1}}));  // [16]
  Value gap = g.global_avg_pool(pooled);                             // [4]
  Value logits = g.add(g.linear("fc_avg", avg, {.out_features = 5}),
                       g.linear("fc_gap", gap, {.out_features = 5, .bias = false}));
  g.softmax_cross_entropy("loss", logits, y,
                          {.label_smoothing = 0.1, .class_weights = {1.0f, 2.0f, 0.5f, 1.5f, 1.0f}});
  return g;
}

TEST(Executor, WholeNetworkGradientsMatchFiniteDifferences) {
  Graph g = every_op_graph();
  ASSERT_TRUE(g.status().ok()) << g.status().message();
  constexpr int kBatch = 3;
  auto ex = make<double>(g, kBatch);
  ASSERT_TRUE(ex);
  const auto images = random_vector<double>(kBatch * 3 * 6 * 6, 11);
  ASSERT_TRUE(ex->set_input("image", images).ok());
  ASSERT_TRUE(ex->set_labels("label", labels_for(kBatch, 5)).ok());

  const std::vector<double> analytic =
      check_param_gradients(*ex, Mode::kTrain, "every_op_graph params", /*replay_step=*/true);
  // Every parameter gets a gradient (none is left at the zero of the plan).
  for (const ParamInfo& p : g.params()) {
    double norm = 0;
    for (int64_t i = 0; i < p.shape.numel(); ++i)
      norm += std::fabs(analytic[static_cast<size_t>(p.offset + i)]);
    EXPECT_GT(norm, 0.0) << p.name;
  }
}

TEST(Executor, EvalModeGradientsMatchFiniteDifferences) {
  // Inference-mode batch norm and identity dropout have backward passes too.
  Graph g = every_op_graph();
  constexpr int kBatch = 2;
  auto ex = make<double>(g, kBatch, 3);
  ASSERT_TRUE(ex);
  ASSERT_TRUE(ex->set_input("image", random_vector<double>(kBatch * 108, 5)).ok());
  ASSERT_TRUE(ex->set_labels("label", labels_for(kBatch, 5)).ok());
  // Non-trivial running statistics.
  ASSERT_TRUE(ex->forward(Mode::kTrain).ok());
  check_param_gradients(*ex, Mode::kEval, "every_op_graph params (eval)");
}

TEST(Executor, PerPixelCrossEntropyGradients) {
  Graph g;
  Value x = g.input("image", Shape{2, 5, 4});
  Value y = g.labels("mask", Shape{5, 4});
  Value h = g.conv2d("conv", x, {.out_channels = 3, .kernel = {3, 3}, .padding = {1, 1}});
  g.softmax_cross_entropy("loss", h, y, {.ignore_index = 255});
  ASSERT_TRUE(g.status().ok()) << g.status().message();
  auto ex = make<double>(g, 2);
  ASSERT_TRUE(ex);
  ASSERT_TRUE(ex->set_input("image", random_vector<double>(2 * 2 * 20, 9)).ok());
  std::vector<int32_t> mask(40);
  for (size_t i = 0; i < mask.size(); ++i) mask[i] = i % 7 == 0 ? 255 : static_cast<int32_t>(i % 3);
  ASSERT_TRUE(ex->set_labels("mask", mask).ok());
  check_param_gradients(*ex, Mode::kTrain, "per-pixel params");
}

// Batch norm straight on the input: its input needs no gradient, its parameters do.
TEST(Executor, BatchNormOnTheInputGradients) {
  Graph g;
  Value x = g.input("image", Shape{2, 3, 3});
  Value y = g.labels("label");
  Value h = g.linear("fc", g.batch_norm2d("bn", x), {.out_features = 3});
  g.softmax_cross_entropy("loss", h, y);
  ASSERT_TRUE(g.status().ok()) << g.status().message();
  auto ex = make<double>(g, 4);
  ASSERT_TRUE(ex);
  ASSERT_TRUE(ex->set_input("image", random_vector<double>(4 * 18, 17)).ok());
  ASSERT_TRUE(ex->set_labels("label", labels_for(4, 3)).ok());
  check_param_gradients(*ex, Mode::kTrain, "bn-on-input params");
}

// The executor runs exactly the composition of the reference ops, in float.
TEST(Executor, ForwardEqualsComposedReferenceOps) {
  Graph g = ref_cnn();
  constexpr int kBatch = 3;
  auto ex = make<float>(g, kBatch);
  ASSERT_TRUE(ex);
  const auto images = random_vector<float>(kBatch * 784, 21, 0.0, 1.0);
  const auto labels = labels_for(kBatch, 10);
  ASSERT_TRUE(ex->set_input("image", images).ok());
  ASSERT_TRUE(ex->set_labels("label", labels).ok());
  ASSERT_TRUE(ex->forward(Mode::kTrain).ok());

  auto p = [&ex](const char* name) { return ex->param(name)->data; };
  Conv2dDims c1{.n = kBatch, .c = 1, .h = 28, .w = 28, .k = 32, .r = 3, .s = 3, .pad_h = 1, .pad_w = 1};
  std::vector<float> ws(cpu::conv2d_workspace_elems(Conv2dDims{.n = kBatch, .c = 32, .h = 14, .w = 14, .k = 64, .r = 3, .s = 3, .pad_h = 1, .pad_w = 1}));
  std::vector<float> a1(kBatch * 32 * 784), p1(kBatch * 32 * 196), a2(kBatch * 64 * 196),
      p2(kBatch * 64 * 49), f1(kBatch * 128), f2(kBatch * 10);
  std::vector<int32_t> argmax(kBatch * 64 * 196);
  cpu::conv2d_forward(c1, images.data(), p("conv1.weight"), p("conv1.bias"), a1.data(), ws.data());
  cpu::relu_forward<float>(static_cast<int64_t>(a1.size()), a1.data(), a1.data());
  cpu::max_pool2d_forward(Pool2dDims{.n = kBatch, .c = 32, .h = 28, .w = 28}, a1.data(), p1.data(), argmax.data());
  Conv2dDims c2{.n = kBatch, .c = 32, .h = 14, .w = 14, .k = 64, .r = 3, .s = 3, .pad_h = 1, .pad_w = 1};
  cpu::conv2d_forward(c2, p1.data(), p("conv2.weight"), p("conv2.bias"), a2.data(), ws.data());
  cpu::relu_forward<float>(static_cast<int64_t>(a2.size()), a2.data(), a2.data());
  cpu::max_pool2d_forward(Pool2dDims{.n = kBatch, .c = 64, .h = 14, .w = 14}, a2.data(), p2.data(), argmax.data());
  cpu::linear_forward(LinearDims{kBatch, 3136, 128}, p2.data(), p("fc1.weight"), p("fc1.bias"), f1.data());
  cpu::relu_forward<float>(static_cast<int64_t>(f1.size()), f1.data(), f1.data());
  cpu::linear_forward(LinearDims{kBatch, 128, 10}, f1.data(), p("fc2.weight"), p("fc2.bias"), f2.data());
  float loss = 0;
  cpu::softmax_cross_entropy_forward(SoftmaxCeDims{kBatch, 10, 1}, SoftmaxCeOptions{}, f2.data(),
                                     labels.data(), static_cast<const float*>(nullptr), &loss);
  EXPECT_EQ(ex->loss(), loss);  // the same ops in the same order: bit-identical
  const std::vector<float> logits = ex->download(ex->value(*g.find_value("fc2")));
  EXPECT_EQ(logits, f2);
}

TEST(Executor, FloatGradientsMatchDouble) {
  Graph g = every_op_graph();
  constexpr int kBatch = 4;
  auto ef = make<float>(g, kBatch);
  auto ed = make<double>(g, kBatch);
  ASSERT_TRUE(ef && ed);
  const auto images = random_vector<double>(kBatch * 108, 13);
  // Same parameters in both: the double executor's, rounded to float.
  const std::vector<double> pd = ed->download(ed->params());
  for (size_t i = 0; i < pd.size(); ++i) ef->params().data[i] = static_cast<float>(pd[i]);
  for (size_t i = 0; i < pd.size(); ++i) ed->params().data[i] = static_cast<float>(pd[i]);
  ASSERT_TRUE(ed->set_input("image", images).ok());
  ASSERT_TRUE(ef->set_input("image", std::vector<float>(images.begin(), images.end())).ok());
  ASSERT_TRUE(ed->set_labels("label", labels_for(kBatch, 5)).ok());
  ASSERT_TRUE(ef->set_labels("label", labels_for(kBatch, 5)).ok());
  ASSERT_TRUE(ef->forward(Mode::kTrain).ok() && ef->backward().ok());
  ASSERT_TRUE(ed->forward(Mode::kTrain).ok() && ed->backward().ok());
  EXPECT_NEAR(ef->loss(), ed->loss(), 1e-5 * std::fabs(ed->loss()));
  // fp32 through ~7 layers with BN: a few ulps per op, relative 1e-4 of the gradient scale.
  const std::vector<float> gf = ef->download(ef->grads());
  const std::vector<double> gd = ed->download(ed->grads());
  double scale = 0;
  for (double v : gd) scale = std::max(scale, std::fabs(v));
  testing::expect_all_close<float, double>(gf, gd, 1e-4 * scale, 1e-4, "float vs double grads");
}

TEST(Executor, BatchOfZeroIsAnErrorNamingTheInput) {
  Graph g = ref_cnn();
  auto ex = Executor<float>::create(g, make_cpu_backend<float>(), {.batch_size = 0});
  ASSERT_FALSE(ex.ok());
  const std::string msg = ex.error().message();
  EXPECT_NE(msg.find("batch size must be at least 1, got 0"), std::string::npos) << msg;
  EXPECT_NE(msg.find("input 'image' [0, 1, 28, 28]"), std::string::npos) << msg;
}

TEST(Executor, GraphErrorIsReported) {
  Graph g;
  Value x = g.input("x", Shape{1, 4, 4});
  g.linear("fc", x, {.out_features = 2, .in_features = 3});
  auto ex = Executor<float>::create(g, make_cpu_backend<float>(), {.batch_size = 2});
  ASSERT_FALSE(ex.ok());
  EXPECT_NE(ex.error().message().find("linear 'fc'"), std::string::npos);
}

TEST(Executor, LabelOutOfRangeIsAnError) {
  Graph g = ref_cnn();
  auto ex = make<float>(g, 4);
  ASSERT_TRUE(ex);
  ASSERT_TRUE(ex->set_input("image", std::vector<float>(4 * 784, 0.5f)).ok());
  ASSERT_TRUE(ex->set_labels("label", std::vector<int32_t>{1, 2, 10, 3}).ok());
  Status s = ex->forward(Mode::kTrain);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code(), ErrorCode::kDataError);
  EXPECT_NE(s.message().find("label 10 at sample 2"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("[0, 10)"), std::string::npos) << s.message();
  // Wrong batch sizes for the inputs are errors too.
  EXPECT_FALSE(ex->set_input("image", std::vector<float>(3 * 784)).ok());
  EXPECT_FALSE(ex->set_labels("label", std::vector<int32_t>{1}).ok());
  EXPECT_FALSE(ex->set_input("nope", std::vector<float>(4 * 784)).ok());
  EXPECT_EQ(ex->param("conv9.weight").error().code(), ErrorCode::kNotFound);
}

TEST(Executor, InitialisationFollowsPyTorchDefaults) {
  Graph g = ref_cnn_bn();
  auto ex = make<float>(g, 2, 123);
  ASSERT_TRUE(ex);
  const std::vector<float> fc1 = ex->download(*ex->param("fc1.weight"));
  const double bound = 1.0 / std::sqrt(3136.0);
  double sum = 0, sum_sq = 0;
  for (float v : fc1) {
    ASSERT_LE(std::fabs(v), bound);
    sum += v;
    sum_sq += static_cast<double>(v) * v;
  }
  const double n = static_cast<double>(fc1.size());
  EXPECT_NEAR(sum / n, 0.0, 5 * bound / std::sqrt(3 * n));             // mean of U(−b, b)
  EXPECT_NEAR(sum_sq / n, bound * bound / 3, 0.01 * bound * bound);     // variance b²/3
  for (float v : ex->download(*ex->param("bn1.weight"))) EXPECT_EQ(v, 1.0f);
  for (float v : ex->download(*ex->param("bn1.bias"))) EXPECT_EQ(v, 0.0f);
  for (float v : ex->download(*ex->buffer("bn2.running_var"))) EXPECT_EQ(v, 1.0f);
}

TEST(Executor, SameSeedIsBitIdenticalOtherSeedIsNot) {
  Graph g = every_op_graph();
  auto run = [&g](uint64_t seed) {
    auto ex = make<float>(g, 4, seed);
    EXPECT_TRUE(ex->set_input("image", random_vector<float>(4 * 108, 3)).ok());
    EXPECT_TRUE(ex->set_labels("label", labels_for(4, 5)).ok());
    for (int step = 0; step < 3; ++step) {
      EXPECT_TRUE(ex->forward(Mode::kTrain).ok());
      EXPECT_TRUE(ex->backward().ok());
      float* p = ex->params().data;
      for (int64_t i = 0; i < ex->params().numel(); ++i) p[i] -= 0.1f * ex->grads().data[i];
    }
    return ex->download(ex->params());
  };
  EXPECT_EQ(run(1), run(1));
  EXPECT_NE(run(1), run(2));
}

}  // namespace
}  // namespace wren
