#include "wren/models.h"

namespace wren {
namespace {

Graph ref_cnn_impl(const ModelInput& in, bool batch_norm) {
  Graph g;
  Value x = g.input("image", Shape{in.channels, in.height, in.width});
  Value y = g.labels("label");
  const Pool2dOptions pool2{.kernel = {2, 2}};
  int channels = in.channels;
  for (int stage : {1, 2}) {
    const int out = stage == 1 ? 32 : 64;
    const std::string conv = "conv" + std::to_string(stage);
    x = g.conv2d(conv, x, {.out_channels = out, .kernel = {3, 3}, .padding = {1, 1},
                           .bias = !batch_norm, .in_channels = channels});
    if (batch_norm) x = g.batch_norm2d("bn" + std::to_string(stage), x);
    x = g.max_pool2d(g.relu(x), pool2);
    channels = out;
  }
  x = g.relu(g.linear("fc1", x, {.out_features = 128}));
  Value logits = g.linear("fc2", x, {.out_features = in.classes});
  g.softmax_cross_entropy("loss", logits, y);
  return g;
}

// A basic block: conv 3×3 (stride) + BN + ReLU, conv 3×3 + BN, plus the shortcut: the input
// itself, or a 1×1 conv (stride) + BN where the channels or the size change; ReLU after the add.
// Both paths map H to ⌊(H − 1)/stride⌋ + 1, so the add fits for any input size.
Value basic_block(Graph& g, const std::string& name, Value x, int in_channels, int out_channels,
                  int stride) {
  const Conv2dOptions conv3x3{.out_channels = out_channels, .kernel = {3, 3},
                              .stride = {stride, stride}, .padding = {1, 1}, .bias = false};
  Value h = g.conv2d(name + ".conv1", x, conv3x3);
  h = g.relu(g.batch_norm2d(name + ".bn1", h), name + ".relu1");
  h = g.conv2d(name + ".conv2", h, {.out_channels = out_channels, .kernel = {3, 3},
                                    .padding = {1, 1}, .bias = false});
  h = g.batch_norm2d(name + ".bn2", h);
  Value shortcut = x;
  if (stride != 1 || in_channels != out_channels) {
    shortcut = g.conv2d(name + ".shortcut.conv", x,
                        {.out_channels = out_channels, .kernel = {1, 1},
                         .stride = {stride, stride}, .bias = false});
    shortcut = g.batch_norm2d(name + ".shortcut.bn", shortcut);
  }
  return g.relu(g.add(h, shortcut, name + ".add"), name + ".out");
}

}  // namespace

Graph resnet_cifar(const ModelInput& in, int blocks_per_stage) {
  Graph g;
  Value x = g.input("image", Shape{in.channels, in.height, in.width});
  Value y = g.labels("label");
  x = g.conv2d("stem.conv", x, {.out_channels = 16, .kernel = {3, 3}, .padding = {1, 1},
                                .bias = false});
  x = g.relu(g.batch_norm2d("stem.bn", x), "stem.relu");
  int channels = 16;
  for (int stage = 1; stage <= 3; ++stage) {
    const int out = 16 << (stage - 1);  // 16, 32, 64
    for (int block = 1; block <= blocks_per_stage; ++block) {
      const int stride = stage > 1 && block == 1 ? 2 : 1;
      x = basic_block(g, "stage" + std::to_string(stage) + ".block" + std::to_string(block), x,
                      channels, out, stride);
      channels = out;
    }
  }
  x = g.global_avg_pool(x, "pool");
  Value logits = g.linear("fc", x, {.out_features = in.classes});
  g.softmax_cross_entropy("loss", logits, y);
  return g;
}

Graph ref_cnn(const ModelInput& in) { return ref_cnn_impl(in, false); }
Graph ref_cnn_bn(const ModelInput& in) { return ref_cnn_impl(in, true); }

std::vector<std::string> model_names() { return {"ref-cnn", "ref-cnn-bn", "resnet-cifar"}; }

Expected<Graph> build_model(std::string_view name, const ModelInput& in) {
  if (name == "ref-cnn") return ref_cnn(in);
  if (name == "ref-cnn-bn") return ref_cnn_bn(in);
  if (name == "resnet-cifar") return resnet_cifar(in);
  std::string known;
  for (const std::string& n : model_names()) known += (known.empty() ? "" : ", ") + n;
  return not_found("unknown model '" + std::string(name) + "' (built in: " + known + ")");
}

}  // namespace wren
