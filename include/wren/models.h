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

// resnet-cifar: a small residual net for CIFAR-10 (He et al. 2016, §4.2; ResNet-(6n+2) with
// n = blocks_per_stage, so ResNet-8 by default). Stem: conv 3×3 16 + BN + ReLU. Three stages of
// basic blocks at 16, 32, 64 channels, the first block of stages 2 and 3 with stride 2 and a
// 1×1 conv + BN projection shortcut (identity shortcuts elsewhere). Global average pool, linear
// 64→classes. Convolutions have no bias (BN follows each). Any input size works.
// Parameter names: stem.conv, stem.bn, stage{1,2,3}.block{b}.{conv1,bn1,conv2,bn2},
// stage{2,3}.block1.shortcut.{conv,bn}, fc; op names add .relu1, .add, .out (the block's
// output ReLU), stem.relu, pool, loss. 78,042 parameters for 3 channels and 10 classes
// (examples/models/resnet-cifar.wren is the same network in the model format).
Graph resnet_cifar(const ModelInput& in = {.channels = 3, .height = 32, .width = 32},
                   int blocks_per_stage = 1);

// A model by its zoo name ("ref-cnn", "ref-cnn-bn", "resnet-cifar"); an unknown name lists the
// known ones.
Expected<Graph> build_model(std::string_view name, const ModelInput& in = {});
std::vector<std::string> model_names();

}  // namespace wren
