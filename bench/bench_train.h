// `wren-bench train`: images/s and time per training step of the zoo models, through the real
// trainer (wren::train) on a synthetic dataset, at several batch sizes, with and without CUDA
// graphs (docs/BENCHMARKS.md).
#pragma once

#include <string>
#include <vector>

namespace wren::bench {

struct TrainBenchOptions {
  std::string device = "auto";  // auto | cpu | emu | cuda
  std::string math = "fp32";
  std::vector<std::string> models = {"ref-cnn", "ref-cnn-bn", "resnet-cifar"};
  std::vector<int> batches = {32, 128, 512};
  std::vector<bool> graphs = {true, false};  // cuda/emu: --cuda-graph on and off
  int steps = 200;   // timed steps per row
  int warmup = 20;   // steps run first and left out (capture, first launches, caches)
  std::string json_path, csv_path;
  std::string command;  // the exact command line, recorded in the outputs
};

// Runs the rows, prints a table, writes JSON / CSV. Returns 0, or 1 when a row failed.
int run_train_bench(const TrainBenchOptions& options);

}  // namespace wren::bench
