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

}  // namespace

Graph ref_cnn(const ModelInput& in) { return ref_cnn_impl(in, false); }
Graph ref_cnn_bn(const ModelInput& in) { return ref_cnn_impl(in, true); }

std::vector<std::string> model_names() { return {"ref-cnn", "ref-cnn-bn"}; }

Expected<Graph> build_model(std::string_view name, const ModelInput& in) {
  if (name == "ref-cnn") return ref_cnn(in);
  if (name == "ref-cnn-bn") return ref_cnn_bn(in);
  std::string known;
  for (const std::string& n : model_names()) known += (known.empty() ? "" : ", ") + n;
  return not_found("unknown model '" + std::string(name) + "' (built in: " + known + ")");
}

}  // namespace wren
