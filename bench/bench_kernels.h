// `wren-bench kernels`: every kernel family on a documented shape set, timed through
// Backend<float> (cpu, emu and cuda share this code), with FLOP and byte counts, the machine's
// ceilings and, on cuda, cuDNN / cuBLAS on the same shapes. docs/BENCHMARKS.md.
#pragma once

#include <string>
#include <vector>

#include "bench_timing.h"

namespace wren::bench {

enum class Family {
  kConv,         // forward, backward data, backward weights
  kLinear,       // forward, backward data, backward weights
  kPool,         // max pool 2×2 forward/backward, global average pool forward/backward
  kSoftmaxCe,    // softmax cross-entropy forward (loss), backward (dlogits)
  kBatchNorm,    // training forward, training backward, inference forward
  kElementwise,  // ReLU forward/backward, residual add
  kOptimizer,    // the fused optimizer: AdamW, SGD with Nesterov momentum
  kAugment,      // the data path: gather + crop/flip + normalize one batch
};
inline constexpr Family kAllFamilies[] = {
    Family::kConv,      Family::kLinear,      Family::kPool,      Family::kSoftmaxCe,
    Family::kBatchNorm, Family::kElementwise, Family::kOptimizer, Family::kAugment};
const char* to_string(Family family);  // "conv", "linear", "pool", "softmax_ce", ...
// Accepts the names above and a few aliases ("bn", "ce", "softmax-ce", "optim", "aug", ...).
Expected<Family> parse_family(const std::string& name);

struct KernelsOptions {
  std::string device = "auto";   // auto | cpu | emu | cuda
  std::string math = "fp32";     // fp32 | tf32
  std::vector<Family> families;  // empty: all
  std::vector<std::string> shapes = {"refcnn", "cifar", "sweep"};
  int batch = 128;  // refcnn and cifar sets
  std::vector<int> sweep_batches = {16, 64, 256, 1024};
  int sets = 3;  // input sets rotated between reps
  TimingOptions timing;
  bool quick = false;  // tiny rep counts and ceilings (CI, emu)
  bool peers = true;   // cuDNN / cuBLAS on cuda
  std::string json_path, csv_path;
  std::string command;  // the exact command line, recorded in the outputs
};

// Runs the benchmark, prints the table on stdout, writes the JSON / CSV files asked for.
// Returns the process exit code: 0, or 1 when the device could not be made or a row failed.
int run_kernels(const KernelsOptions& options);

}  // namespace wren::bench
