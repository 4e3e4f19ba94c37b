// wren-bench: Wren's benchmarks as one program (docs/BENCHMARKS.md).
//   wren-bench kernels [--device auto|cpu|emu|cuda] [--math fp32|tf32] [--families conv,...]
//                      [--shapes refcnn,cifar,sweep] [--batch N] [--reps N] [--min-time S]
//                      [--json FILE] [--csv FILE] [--quick]
//   wren-bench train   [--device ...] [--math ...] [--models a,b] [--batches 32,128,512]
//                      [--graph both|on|off] [--steps N] [--warmup N] [--json F] [--csv F]
#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>
#include <sstream>
#include <string>
#include <vector>

#include "bench_kernels.h"
#include "bench_train.h"

namespace {

// argv as one shell-quoted line, for the outputs' "command".
std::string command_line(int argc, char** argv) {
  std::string out;
  for (int i = 0; i < argc; ++i) {
    std::string arg = argv[i];
    const bool plain = !arg.empty() && arg.find_first_not_of(
                                           "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                           "0123456789-_=./,:+@%") == std::string::npos;
    if (!plain) {
      std::string quoted = "'";
      for (char c : arg) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
      arg = quoted + "'";
    }
    out += (i ? " " : "") + arg;
  }
  return out;
}

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ','))
    if (!item.empty()) out.push_back(item);
  return out;
}

// A positive int, or 0 when `text` is not one.
int parse_positive(const std::string& text) {
  size_t used = 0;
  int n = 0;
  try {
    n = std::stoi(text, &used);
  } catch (const std::exception&) {
    return 0;
  }
  return used == text.size() && n > 0 ? n : 0;
}

int run(int argc, char** argv) {
  CLI::App app{"wren-bench: Wren's benchmarks (docs/BENCHMARKS.md)", "wren-bench"};
  app.require_subcommand(1);

  wren::bench::KernelsOptions k;
  std::string families, shapes = "refcnn,cifar,sweep", sweep_batches;
  bool no_flush = false, no_peers = false;
  CLI::App* kernels = app.add_subcommand(
      "kernels",
      "time every kernel family on the ref-cnn and resnet-cifar layers and a batch sweep: "
      "median ms, GFLOP/s, GB/s, % of the measured ceilings, and cuDNN / cuBLAS on cuda");
  kernels
      ->add_option("--device", k.device,
                   "auto (the GPU when there is one, else the CPU) | "
                   "cpu | emu (the kernels in the SIMT emulator) | cuda")
      ->check(CLI::IsMember({"auto", "cpu", "emu", "cuda"}))
      ->capture_default_str();
  kernels->add_option("--math", k.math, "matrix products of conv and linear: fp32 | tf32")
      ->check(CLI::IsMember({"fp32", "tf32"}))
      ->capture_default_str();
  kernels->add_option("--families", families,
                      "comma-separated: conv, linear, pool, softmax_ce, batch_norm, elementwise, "
                      "optimizer, augment (default: all)");
  kernels->add_option("--shapes", shapes, "comma-separated shape sets: refcnn, cifar, sweep")
      ->capture_default_str();
  kernels->add_option("--batch", k.batch, "batch size of the refcnn and cifar sets")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  kernels->add_option("--sweep-batches", sweep_batches,
                      "comma-separated batch sizes of the sweep set (default 16,64,256,1024; "
                      "--quick: 8,32)");
  kernels->add_option("--reps", k.timing.reps, "at least this many timed reps per row")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  kernels
      ->add_option("--min-time", k.timing.min_time_s,
                   "and at least this many seconds of timed reps per row")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  kernels->add_option("--max-reps", k.timing.max_reps, "at most this many timed reps per row")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  kernels->add_option("--warmup", k.timing.warmup, "untimed runs before the timed ones")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  kernels->add_option("--sets", k.sets, "input sets rotated between reps")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  kernels->add_flag("--no-flush", no_flush, "do not flush the caches between reps");
  kernels->add_flag("--no-peers", no_peers, "do not run cuDNN / cuBLAS (cuda)");
  kernels->add_option("--json", k.json_path, "write the results as JSON to this file");
  kernels->add_option("--csv", k.csv_path, "write the results as CSV to this file");
  kernels->add_flag("--quick", k.quick,
                    "tiny rep counts and ceilings (CI, emu): 1 warm-up, 3 reps, no minimum "
                    "time, 2 input sets; explicit --reps/--min-time/--warmup/--sets win");

  wren::bench::TrainBenchOptions t;
  std::string train_models, train_batches, train_graph = "both";
  bool train_quick = false;
  CLI::App* train = app.add_subcommand(
      "train",
      "images/s and ms per step of the zoo models through the real trainer on synthetic data, "
      "at several batch sizes, with and without CUDA graphs");
  train->add_option("--device", t.device, "auto | cpu | emu | cuda")
      ->check(CLI::IsMember({"auto", "cpu", "emu", "cuda"}))
      ->capture_default_str();
  train->add_option("--math", t.math, "fp32 | tf32")
      ->check(CLI::IsMember({"fp32", "tf32"}))
      ->capture_default_str();
  train->add_option("--models", train_models,
                    "comma-separated zoo models (default ref-cnn,ref-cnn-bn,resnet-cifar)");
  train->add_option("--batches", train_batches, "comma-separated batch sizes (default 32,128,512)");
  train->add_option("--graph", train_graph, "cuda/emu: CUDA graph on, off, or both rows")
      ->check(CLI::IsMember({"both", "on", "off"}))
      ->capture_default_str();
  train->add_option("--steps", t.steps, "timed steps per row")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  train->add_option("--warmup", t.warmup, "steps run first and left out")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  train->add_option("--json", t.json_path, "write the results as JSON to this file");
  train->add_option("--csv", t.csv_path, "write the results as CSV to this file");
  train->add_flag("--quick", train_quick,
                  "CI and emu: batch 8, 1 warm-up and 3 timed steps (explicit flags win)");

  CLI11_PARSE(app, argc, argv);

  if (*train) {
    if (train_quick) {
      if (train->count("--steps") == 0) t.steps = 3;
      if (train->count("--warmup") == 0) t.warmup = 1;
      if (train->count("--batches") == 0) t.batches = {8};
    }
    if (!train_models.empty()) t.models = split_list(train_models);
    for (const std::string& m : t.models)
      if (m != "ref-cnn" && m != "ref-cnn-bn" && m != "resnet-cifar") {
        std::fprintf(stderr, "wren-bench: --models: unknown model '%s' (ref-cnn, ref-cnn-bn, "
                             "resnet-cifar)\n", m.c_str());
        return 1;
      }
    if (!train_batches.empty()) {
      t.batches.clear();
      for (const std::string& b : split_list(train_batches)) {
        const int n = parse_positive(b);
        if (n <= 0) {
          std::fprintf(stderr, "wren-bench: --batches: '%s' is not a positive number\n", b.c_str());
          return 1;
        }
        t.batches.push_back(n);
      }
    }
    t.graphs = train_graph == "both" ? std::vector<bool>{true, false}
                                     : std::vector<bool>{train_graph == "on"};
    t.command = command_line(argc, argv);
    return wren::bench::run_train_bench(t);
  }

  if (*kernels) {
    if (k.quick) {
      if (kernels->count("--warmup") == 0) k.timing.warmup = 1;
      if (kernels->count("--reps") == 0) k.timing.reps = 3;
      if (kernels->count("--min-time") == 0) k.timing.min_time_s = 0;
      if (kernels->count("--sets") == 0) k.sets = 2;
      k.sweep_batches = {8, 32};
      k.timing.max_host_flush_bytes = size_t{32} << 20;
    }
    k.timing.flush = !no_flush;
    k.peers = !no_peers;
    for (const std::string& name : split_list(families)) {
      auto f = wren::bench::parse_family(name);
      if (!f) {
        std::fprintf(stderr, "wren-bench: %s\n", f.error().message().c_str());
        return 1;
      }
      k.families.push_back(*f);
    }
    k.shapes = split_list(shapes);
    for (const std::string& s : k.shapes)
      if (s != "refcnn" && s != "cifar" && s != "sweep") {
        std::fprintf(stderr, "wren-bench: --shapes: unknown set '%s' (refcnn, cifar, sweep)\n",
                     s.c_str());
        return 1;
      }
    if (!sweep_batches.empty()) {
      k.sweep_batches.clear();
      for (const std::string& b : split_list(sweep_batches)) {
        const int n = parse_positive(b);
        if (n <= 0) {
          std::fprintf(stderr, "wren-bench: --sweep-batches: '%s' is not a positive number\n",
                       b.c_str());
          return 1;
        }
        k.sweep_batches.push_back(n);
      }
    }
    k.command = command_line(argc, argv);
    return wren::bench::run_kernels(k);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "wren-bench: internal error: %s\n", e.what());
    return 2;
  }
}
