// wren-bench: Wren's benchmarks as one program (docs/BENCHMARKS.md).
//   wren-bench kernels [--device auto|cpu|emu|cuda] [--math fp32|tf32] [--families conv,...]
//                      [--shapes refcnn,cifar,sweep] [--batch N] [--reps N] [--min-time S]
//                      [--json FILE] [--csv FILE] [--quick]
#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>
#include <sstream>
#include <string>
#include <vector>

#include "bench_kernels.h"

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

  CLI11_PARSE(app, argc, argv);

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
        int n = 0;
        try {
          n = std::stoi(b);
        } catch (const std::exception&) {
        }
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
