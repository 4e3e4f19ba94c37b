// The graph builder: shape inference, parameter registration, and the errors for bad graphs.
#include <gtest/gtest.h>

#include "wren/graph.h"
#include "wren/models.h"

namespace wren {
namespace {

TEST(Graph, RefCnnShapesAndParameters) {
  Graph g = ref_cnn();
  ASSERT_TRUE(g.status().ok()) << g.status().message();
  // PyTorch's names, layouts and counts for the same network.
  struct Expect {
    const char* name;
    Shape shape;
    ParamGroup group;
  };
  const Expect expected[] = {
      {"conv1.weight", Shape{32, 1, 3, 3}, ParamGroup::kDecay},
      {"conv1.bias", Shape{32}, ParamGroup::kNoDecay},
      {"conv2.weight", Shape{64, 32, 3, 3}, ParamGroup::kDecay},
      {"conv2.bias", Shape{64}, ParamGroup::kNoDecay},
      {"fc1.weight", Shape{128, 3136}, ParamGroup::kDecay},
      {"fc1.bias", Shape{128}, ParamGroup::kNoDecay},
      {"fc2.weight", Shape{10, 128}, ParamGroup::kDecay},
      {"fc2.bias", Shape{10}, ParamGroup::kNoDecay},
  };
  ASSERT_EQ(g.params().size(), std::size(expected));
  int64_t offset = 0;
  for (size_t i = 0; i < std::size(expected); ++i) {
    const ParamInfo& p = g.params()[i];
    EXPECT_EQ(p.name, expected[i].name);
    EXPECT_EQ(p.shape, expected[i].shape) << p.name << " " << p.shape.str();
    EXPECT_EQ(p.group, expected[i].group) << p.name;
    EXPECT_EQ(p.wd_mult, expected[i].group == ParamGroup::kDecay ? 1.0f : 0.0f) << p.name;
    EXPECT_EQ(p.offset, offset) << p.name;  // packed back to back in one flat buffer
    offset += p.shape.numel();
  }
  EXPECT_EQ(g.param_count(), 421642);
  EXPECT_EQ(offset, 421642);

  Expected<Value> pool2 = g.find_value("max_pool2d2");
  ASSERT_TRUE(pool2.ok()) << pool2.error().message();
  EXPECT_EQ(g.value_info(*pool2).shape, (Shape{64, 7, 7}));
  Expected<Value> fc2 = g.find_value("fc2");
  ASSERT_TRUE(fc2.ok());
  EXPECT_EQ(g.value_info(*fc2).shape, (Shape{10}));
  EXPECT_TRUE(g.loss().valid());
  EXPECT_FALSE(g.value_info(g.loss()).batched);
}

TEST(Graph, BatchNormParametersAreNoDecayAndRunningStatsAreBuffers) {
  Graph g = ref_cnn_bn();
  ASSERT_TRUE(g.status().ok()) << g.status().message();
  Expected<int> gamma = g.find_param("bn1.weight");
  ASSERT_TRUE(gamma.ok());
  EXPECT_EQ(g.params()[static_cast<size_t>(*gamma)].group, ParamGroup::kNoDecay);
  EXPECT_FALSE(g.find_param("conv1.bias").ok());  // BN makes the conv bias redundant
  ASSERT_EQ(g.buffers().size(), 4u);
  EXPECT_EQ(g.buffers()[0].name, "bn1.running_mean");
  EXPECT_EQ(g.buffers()[1].name, "bn1.running_var");
  EXPECT_EQ(g.buffers()[1].init_value, 1.0f);
  EXPECT_EQ(g.buffer_count(), 2 * 32 + 2 * 64);
}

TEST(Graph, ConvPoolShapeArithmetic) {
  Graph g;
  Value x = g.input("x", Shape{3, 11, 9});
  Value c = g.conv2d("c", x, {.out_channels = 5, .kernel = {3, 2}, .stride = {2, 1},
                              .padding = {1, 0}, .dilation = {2, 3}});
  // H: (11 + 2 − 2·2 − 1)/2 + 1 = 5;  W: (9 − 3·1 − 1)/1 + 1 = 6
  ASSERT_TRUE(g.status().ok()) << g.status().message();
  EXPECT_EQ(g.value_info(c).shape, (Shape{5, 5, 6}));
  Value p = g.max_pool2d(c, {.kernel = {3, 3}, .stride = {2, 2}, .padding = {1, 1}});
  EXPECT_EQ(g.value_info(p).shape, (Shape{5, 3, 3}));
  Value a = g.avg_pool2d(c, {.kernel = {2, 2}});
  EXPECT_EQ(g.value_info(a).shape, (Shape{5, 2, 3}));
  Value gap = g.global_avg_pool(c);
  EXPECT_EQ(g.value_info(gap).shape, (Shape{5}));
  Value f = g.flatten(c);
  EXPECT_EQ(g.value_info(f).shape, (Shape{150}));
  Value l = g.linear("l", c, {.out_features = 4});
  EXPECT_EQ(g.value_info(l).shape, (Shape{4}));
  Expected<int> w = g.find_param("l.weight");
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(g.params()[static_cast<size_t>(*w)].shape, (Shape{4, 150}));
  EXPECT_TRUE(g.status().ok()) << g.status().message();
}

// A bad graph gives an error naming the op and both shapes; later ops do not overwrite it.
TEST(Graph, LinearInputMismatchNamesOpAndShapes) {
  Graph g;
  Value x = g.input("image", Shape{1, 28, 28});
  x = g.conv2d("conv1", x, {.out_channels = 8, .kernel = {3, 3}});
  Value bad = g.linear("fc1", x, {.out_features = 10, .in_features = 3136});
  EXPECT_FALSE(bad.valid());
  ASSERT_FALSE(g.status().ok());
  const std::string msg = g.status().message();
  EXPECT_NE(msg.find("linear 'fc1'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("3136"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[N, 8, 26, 26]"), std::string::npos) << msg;
  // Later ops on the invalid value add no new error.
  Value after = g.relu(bad);
  EXPECT_FALSE(after.valid());
  EXPECT_EQ(g.status().message(), msg);
}

TEST(Graph, ConvChannelMismatchNamesOpAndShapes) {
  Graph g;
  Value x = g.input("image", Shape{3, 32, 32});
  g.conv2d("conv1", x, {.out_channels = 16, .in_channels = 1});
  ASSERT_FALSE(g.status().ok());
  const std::string msg = g.status().message();
  EXPECT_NE(msg.find("conv2d 'conv1'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[N, 1, H, W]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[N, 3, 32, 32]"), std::string::npos) << msg;
}

TEST(Graph, KernelLargerThanInput) {
  Graph g;
  Value x = g.input("image", Shape{1, 4, 4});
  g.conv2d("big", x, {.out_channels = 2, .kernel = {5, 5}});
  ASSERT_FALSE(g.status().ok());
  EXPECT_NE(g.status().message().find("conv2d 'big'"), std::string::npos);
  EXPECT_NE(g.status().message().find("[N, 1, 4, 4]"), std::string::npos);

  Graph h;
  Value y = h.input("image", Shape{1, 4, 4});
  h.max_pool2d(y, {.kernel = {8, 8}});
  ASSERT_FALSE(h.status().ok());
  EXPECT_NE(h.status().message().find("max_pool2d"), std::string::npos);
}

TEST(Graph, AddShapeMismatch) {
  Graph g;
  Value x = g.input("x", Shape{4, 8, 8});
  Value a = g.conv2d("a", x, {.out_channels = 4, .padding = {1, 1}});
  Value b = g.conv2d("b", x, {.out_channels = 6, .padding = {1, 1}});
  g.add(a, b, "res");
  ASSERT_FALSE(g.status().ok());
  const std::string msg = g.status().message();
  EXPECT_NE(msg.find("add 'res'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[N, 4, 8, 8]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[N, 6, 8, 8]"), std::string::npos) << msg;
}

TEST(Graph, CrossEntropyChecks) {
  Graph g;
  Value x = g.input("x", Shape{5});
  Value y = g.labels("y", Shape{3, 3});
  g.softmax_cross_entropy("loss", x, y);
  ASSERT_FALSE(g.status().ok());
  EXPECT_NE(g.status().message().find("[N, 5]"), std::string::npos) << g.status().message();
  EXPECT_NE(g.status().message().find("[N, 3, 3]"), std::string::npos) << g.status().message();

  Graph h;
  Value logits = h.input("x", Shape{4});
  Value labels = h.labels("y");
  h.softmax_cross_entropy("loss", logits, labels, {.class_weights = {1, 2, 3}});
  ASSERT_FALSE(h.status().ok());
  EXPECT_NE(h.status().message().find("3 class weights for 4 classes"), std::string::npos);

  Graph pixel;
  Value pl = pixel.input("x", Shape{4, 3, 5});
  Value py = pixel.labels("y", Shape{3, 5});
  pixel.softmax_cross_entropy("loss", pl, py);
  EXPECT_TRUE(pixel.status().ok()) << pixel.status().message();
}

TEST(Graph, DuplicateNamesAndBadOptions) {
  Graph g;
  Value x = g.input("x", Shape{1, 8, 8});
  Value a = g.conv2d("c", x, {.out_channels = 2});
  g.conv2d("c", a, {.out_channels = 2});
  ASSERT_FALSE(g.status().ok());
  EXPECT_NE(g.status().message().find("already used"), std::string::npos);

  Graph h;
  Value y = h.input("x", Shape{1, 8, 8});
  h.conv2d("c", y, {.out_channels = 0});
  EXPECT_FALSE(h.status().ok());

  Graph d;
  Value z = d.input("x", Shape{4});
  d.dropout(z, 1.0);
  ASSERT_FALSE(d.status().ok());
  EXPECT_NE(d.status().message().find("dropout"), std::string::npos);
}

TEST(Graph, UnknownParameterNameListsKnownOnes) {
  Graph g = ref_cnn();
  Status s = g.set_param_multipliers("conv9.weight", 1.0f, 0.0f);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code(), ErrorCode::kNotFound);
  EXPECT_NE(s.message().find("conv9.weight"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("conv1.weight"), std::string::npos) << s.message();

  ASSERT_TRUE(g.set_param_group("fc1.bias", ParamGroup::kDecay).ok());
  EXPECT_EQ(g.params()[5].wd_mult, 1.0f);
  ASSERT_TRUE(g.set_param_multipliers("fc1.weight", 0.5f, 2.0f).ok());
  EXPECT_EQ(g.params()[4].lr_mult, 0.5f);
  EXPECT_EQ(g.params()[4].wd_mult, 2.0f);
}

TEST(Graph, UnknownModelName) {
  Expected<Graph> g = build_model("resnet-9000");
  ASSERT_FALSE(g.ok());
  EXPECT_NE(g.error().message().find("ref-cnn"), std::string::npos);
}

}  // namespace
}  // namespace wren
