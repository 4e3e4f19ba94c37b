// The built-in model zoo. Each builder returns a Graph with the input "image" [N, C, H, W],
// the labels "label" [N] and the loss op "loss"; the logits are the loss op's first input.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "wren/error.h"
#include "wren/graph.h"

namespace wren {

struct ModelInput {
  int channels = 1, height = 28, width = 28;
  int classes = 10;
};

// ref-cnn: conv 1→32 3×3 pad 1, ReLU, maxpool 2, conv 32→64 3×3 pad 1, ReLU, maxpool 2,
// linear 3136→128, ReLU, linear 128→10 (for 28×28 inputs). 421,642 parameters.
Graph ref_cnn(const ModelInput& in = {});

// ref-cnn with a batch norm after each convolution (conv biases dropped, as BN makes them
// redundant).
Graph ref_cnn_bn(const ModelInput& in = {});

// A model by its zoo name ("ref-cnn", "ref-cnn-bn"); an unknown name lists the known ones.
Expected<Graph> build_model(std::string_view name, const ModelInput& in = {});
std::vector<std::string> model_names();

}  // namespace wren
