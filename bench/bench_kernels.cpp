// `wren-bench kernels` (bench_kernels.h). The shape sets, the FLOP and byte count of each pass,
// the timing loop over rows, the peers and the outputs.
//
// FLOP counts (multiply and add count as two):
//   conv, each of forward / backward data / backward weights: 2·N·K·P·Q·C·R·S
//   linear, each of its three passes:                         2·N·in·out
//   (bias additions and bias gradients are left out: they are < 1/(C·R·S) of the work)
// Byte counts, for the memory-bound families, are the minimum traffic of the pass: every
// tensor it must read once plus every tensor it writes once, in their stored types (float 4,
// int32 argmax/labels 4, uint8 pixels 1). A kernel that reads a tensor twice (batch norm's
// statistics then its apply) is charged once, so GB/s is the effective rate and % of the copy
// ceiling says how close the pass is to a single streaming pass over its data:
//   max pool fwd:   x + y + argmax                   bwd: argmax + dy + dx
//   global avg fwd: x + y                            bwd: dy + dx
//   softmax-CE fwd: logits + labels + loss           bwd: logits + labels + dlogits
//   batch norm fwd (train): x + y + 2·C params + 4·C statistics
//              bwd (train): x + dy + dx + 2·C statistics + C gamma + 2·C param grads
//              fwd (infer): x + y + 4·C
//   ReLU fwd: x + y     ReLU bwd: x + dy + dx     add: a + b + y
//   AdamW: p, g, m, v read + p, m, v written = 28 B/param; SGD momentum: p, g, μ + p, μ = 20
//   augment: B·C·H·W uint8 pixels + B labels read, B·C·H·W floats + B labels written, the B
//            sample indices (int64) uploaded
// Conv and linear rows are compared with the GEMM ceiling of the run's precision; the others
// with the copy ceiling.
#include "bench_kernels.h"

#include "kernel_cases.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench_cudnn.h"
#include "wren/backend.h"
#include "wren/data.h"
#include "wren/device.h"
#include "wren/models.h"
#include "wren/optimizer.h"

namespace wren::bench {
namespace {

constexpr double kMiB = 1024.0 * 1024.0;

// --- rows -------------------------------------------------------------------------------------
struct Row {
  std::string family{}, set{}, layer{}, shape{}, pass{};
  int batch = 0;
  double flops = 0, bytes = 0;
  Stats stats{};
  double gflops = 0, gbs = 0, pct = 0;
  std::string bound{};  // compute | memory
  std::string peer{};   // "cuDNN", "cuBLAS", or ""
  std::optional<Stats> peer_stats{};
  std::string peer_note{};
  double ratio = 0;  // Wren's median / the peer's
  double rss_mib = 0, device_mib = -1, alloc_mib = 0;
  std::string error{};
};

std::string rate_text(double v) {
  if (v <= 0) return "-";
  return v >= 100 ? fmt(v, 0) : v >= 10 ? fmt(v, 1) : fmt(v, 2);
}

std::string ms_text(double v) {
  return v >= 100 ? fmt(v, 1) : v >= 1 ? fmt(v, 3) : fmt(v, 4);
}

void print_header(bool gpu) {
  std::printf("%s %s %s %s %s %s %s %s %s %s %s %s\n", pad("family", 11).c_str(),
              pad("layer", 30).c_str(), pad("shape", 30).c_str(), pad("pass", 12).c_str(),
              pad("median ms", 10, true).c_str(), pad("p90 ms", 10, true).c_str(),
              pad("GFLOP/s", 9, true).c_str(), pad("GB/s", 8, true).c_str(),
              pad("% ceil", 7, true).c_str(), pad("peer ms", 9, true).c_str(),
              pad("vs peer", 8, true).c_str(), pad(gpu ? "dev MiB" : "RSS MiB", 8, true).c_str());
}

void print_row(const Row& r, bool gpu) {
  if (!r.error.empty()) {
    std::printf("%s %s %s %s ERROR: %s\n", pad(r.family, 11).c_str(), pad(r.layer, 30).c_str(),
                pad(r.shape, 30).c_str(), pad(r.pass, 12).c_str(), r.error.c_str());
    return;
  }
  std::string peer_ms = "-", ratio = "-";
  if (r.peer_stats) {
    peer_ms = ms_text(r.peer_stats->median_ms);
    ratio = fmt(r.ratio, 2) + "x";
  } else if (!r.peer_note.empty() && r.peer_note.rfind("n/a", 0) == 0) {
    peer_ms = "n/a";
  }
  std::printf("%s %s %s %s %s %s %s %s %s %s %s %s\n", pad(r.family, 11).c_str(),
              pad(r.layer, 30).c_str(), pad(r.shape, 30).c_str(), pad(r.pass, 12).c_str(),
              pad(ms_text(r.stats.median_ms), 10, true).c_str(),
              pad(ms_text(r.stats.p90_ms), 10, true).c_str(),
              pad(rate_text(r.gflops), 9, true).c_str(), pad(rate_text(r.gbs), 8, true).c_str(),
              pad(fmt(r.pct, 1), 7, true).c_str(), pad(peer_ms, 9, true).c_str(),
              pad(ratio, 8, true).c_str(),
              pad(fmt(gpu ? r.device_mib : r.rss_mib, 0), 8, true).c_str());
  std::fflush(stdout);
}

nlohmann::json stats_json(const Stats& s) {
  return {{"reps", s.reps},
          {"median_ms", s.median_ms},
          {"min_ms", s.min_ms},
          {"p90_ms", s.p90_ms},
          {"mean_ms", s.mean_ms}};
}

}  // namespace

const char* to_string(Family family) {
  switch (family) {
    case Family::kConv:
      return "conv";
    case Family::kLinear:
      return "linear";
    case Family::kPool:
      return "pool";
    case Family::kSoftmaxCe:
      return "softmax_ce";
    case Family::kBatchNorm:
      return "batch_norm";
    case Family::kElementwise:
      return "elementwise";
    case Family::kOptimizer:
      return "optimizer";
    case Family::kAugment:
      return "augment";
  }
  return "?";
}

Expected<Family> parse_family(const std::string& name) {
  for (Family f : kAllFamilies)
    if (name == to_string(f)) return f;
  if (name == "pooling") return Family::kPool;
  if (name == "softmax-ce" || name == "ce" || name == "softmax") return Family::kSoftmaxCe;
  if (name == "bn" || name == "batchnorm" || name == "batch-norm") return Family::kBatchNorm;
  if (name == "relu" || name == "activation") return Family::kElementwise;
  if (name == "optim" || name == "fused_optimizer" || name == "fused-optimizer")
    return Family::kOptimizer;
  if (name == "aug" || name == "augmentation" || name == "data") return Family::kAugment;
  std::string known;
  for (Family f : kAllFamilies) known += (known.empty() ? "" : ", ") + std::string(to_string(f));
  return invalid_argument("--families: unknown family '" + name + "' (known: " + known + ")");
}

int run_kernels(const KernelsOptions& o) {
  const MathMode math = o.math == "tf32" ? MathMode::kTf32 : MathMode::kFp32;

  // --- the device ---
  Device device = resolve_device(o.device);
  auto made = make_backend(BackendOptions{.device = device, .math = math});
  if (!made && o.device == "auto" && device == Device::kCuda) {
    std::fprintf(stderr, "wren-bench: %s; using the cpu\n", made.error().message().c_str());
    device = Device::kCpu;
    made = make_backend(BackendOptions{.device = device, .math = math});
  }
  if (!made) {
    std::fprintf(stderr, "wren-bench: %s\n", made.error().message().c_str());
    return 1;
  }
  std::unique_ptr<Backend<float>> backend = std::move(*made);
  const bool gpu = device == Device::kCuda;
  if (math == MathMode::kTf32 && device == Device::kCpu)
    std::fprintf(stderr, "wren-bench: --math tf32 has no effect on the cpu device (fp32)\n");

  const std::string device_name = device_display_name(device);
  const std::string label = device_label(device);

  // --- timing, ceilings, peers ---
  TimingOptions timing = o.timing;
  auto timer = make_timer(*backend, timing);
  if (!timer) {
    std::fprintf(stderr, "wren-bench: %s\n", timer.error().message().c_str());
    return 1;
  }
  std::printf("wren-bench kernels: %s on %s, math %s\n", backend->describe().c_str(),
              device_name.c_str(), to_string(math));
  std::printf("%s\n", label.c_str());
  std::printf("measuring ceilings...\n");
  std::fflush(stdout);
  auto ceilings = measure_ceilings(device, o.quick);
  if (!ceilings) {
    std::fprintf(stderr, "wren-bench: %s\n", ceilings.error().message().c_str());
    return 1;
  }
  const double gemm_ceiling = math == MathMode::kTf32 && ceilings->gemm_tf32_gflops > 0
                                  ? ceilings->gemm_tf32_gflops
                                  : ceilings->gemm_fp32_gflops;
  std::printf("ceilings: copy %.1f GB/s (%s); GEMM fp32 %.1f GFLOP/s", ceilings->copy_gbs,
              ceilings->copy_method.c_str(), ceilings->gemm_fp32_gflops);
  if (ceilings->gemm_tf32_gflops > 0)
    std::printf(", tf32 %.1f GFLOP/s", ceilings->gemm_tf32_gflops);
  std::printf(" (%s)\n", ceilings->gemm_method.c_str());
  std::printf("timing: %s; %d warm-up, >= %d reps and >= %.2f s per row, %d input sets\n",
              (*timer)->method().c_str(), timing.warmup, timing.reps, timing.min_time_s, o.sets);

  std::string conv_peer_status = "n/a (peers run on the cuda device only)";
  std::string linear_peer_status = conv_peer_status;
  std::unique_ptr<ConvPeer> cudnn;
  std::unique_ptr<Backend<float>> cublas_backend;
  if (gpu && o.peers) {
    auto peer = make_cudnn_peer(backend->native_stream(), math);
    if (peer) {
      cudnn = std::move(*peer);
      conv_peer_status = "cuDNN";
    } else {
      conv_peer_status = "n/a (" + peer.error().message() + ")";
    }
    auto cublas = make_backend(
        BackendOptions{.device = Device::kCuda, .math = math, .linear = LinearImpl::kCublas});
    if (cublas) {
      cublas_backend = std::move(*cublas);
      linear_peer_status = "cuBLAS";
    } else {
      linear_peer_status = "n/a (" + cublas.error().message() + ")";
    }
  } else if (gpu) {
    conv_peer_status = linear_peer_status = "n/a (--no-peers)";
  }
  if (gpu)
    std::printf("peers: conv %s, linear %s\n", conv_peer_status.c_str(),
                linear_peer_status.c_str());

  // --- the cases ---
  std::vector<Case> cases;
  for (const std::string& set : o.shapes) {
    if (set == "refcnn")
      add_refcnn(cases, "refcnn", o.batch, true);
    else if (set == "cifar")
      add_cifar(cases, "cifar", o.batch);
    else if (set == "sweep")
      for (int n : o.sweep_batches) add_sweep(cases, n);
  }
  auto wanted = [&](Family f) {
    return o.families.empty() ||
           std::find(o.families.begin(), o.families.end(), f) != o.families.end();
  };

  std::vector<Row> rows;
  bool failed = false;
  double run_peak_rss = 0;
  std::string section;
  print_header(gpu);
  for (const Case& c : cases) {
    if (!wanted(c.family)) continue;
    const std::string this_section = c.set == "sweep"
                                         ? "sweep, batch " + std::to_string(c.batch)
                                         : c.set + ", batch " + std::to_string(o.batch);
    if (this_section != section) {
      section = this_section;
      std::printf("-- %s\n", section.c_str());
    }
    // Each row's peak RSS is the peak since here (the case's setup, its passes and peers).
    run_peak_rss = std::max(run_peak_rss, peak_rss_mib());
    reset_peak_rss();
    auto error = std::make_shared<std::string>();
    std::vector<std::shared_ptr<void>> keep;
    std::vector<Pass> passes;
    std::unique_ptr<Buffers> mem;
    std::string setup_error;
    try {
      mem = std::make_unique<Buffers>(*backend);
      passes = make_passes(*backend, c, o.sets, *mem, error, keep);
      if (Status s = backend->synchronize(); !s.ok()) setup_error = s.message();
    } catch (const std::exception& e) {
      setup_error = e.what();
    }
    if (!setup_error.empty()) {
      Row r{.family = to_string(c.family),
            .set = c.set,
            .layer = c.layer,
            .shape = shape_text(c),
            .pass = "*",
            .batch = c.batch};
      r.error = setup_error;
      print_row(r, gpu);
      rows.push_back(r);
      failed = true;
      continue;
    }

    // The peer's passes for linear: the same make_passes on a backend whose linear layers run
    // on cuBLAS.
    std::vector<Pass> linear_peer;
    std::unique_ptr<Buffers> peer_mem;
    std::vector<std::shared_ptr<void>> peer_keep;
    if (c.family == Family::kLinear && cublas_backend) {
      try {
        peer_mem = std::make_unique<Buffers>(*cublas_backend);
        linear_peer = make_passes(*cublas_backend, c, o.sets, *peer_mem, error, peer_keep);
      } catch (const std::exception& e) {
        linear_peer_status = std::string("n/a (") + e.what() + ")";
      }
    }

    for (size_t i = 0; i < passes.size(); ++i) {
      const Pass& p = passes[i];
      Row r{.family = to_string(c.family),
            .set = c.set,
            .layer = c.layer,
            .shape = shape_text(c),
            .pass = p.name,
            .batch = c.batch};
      r.flops = p.flops;
      r.bytes = p.bytes;
      r.alloc_mib = static_cast<double>(mem->bytes()) / kMiB;
      r.bound = p.flops > 0 ? "compute" : "memory";
      try {
        auto stats = (*timer)->time(p.run, backend->native_stream());
        if (!stats)
          r.error = stats.error().message();
        else
          r.stats = *stats;
      } catch (const std::exception& e) {
        r.error = e.what();
      }
      if (r.error.empty() && !error->empty()) r.error = *error;
      if (r.error.empty()) {
        const double s = r.stats.median_ms * 1e-3;
        r.gflops = p.flops > 0 ? p.flops / s / 1e9 : 0;
        r.gbs = p.bytes / s / 1e9;
        r.pct = p.flops > 0 ? 100.0 * r.gflops / gemm_ceiling : 100.0 * r.gbs / ceilings->copy_gbs;
      }
      // Peers.
      if (c.family == Family::kConv) {
        r.peer = "cuDNN";
        r.peer_note = cudnn ? "" : conv_peer_status;
        if (cudnn && r.error.empty()) {
          const ConvPass pass = i == 0   ? ConvPass::kForward
                                : i == 1 ? ConvPass::kBackwardData
                                         : ConvPass::kBackwardWeights;
          auto run = cudnn->prepare(c.conv, c.bias, pass, o.sets);
          if (!run) {
            r.peer_note = "n/a (" + run.error().message() + ")";
          } else {
            r.peer_note = run->algo;
            auto stats = (*timer)->time(run->run, backend->native_stream());
            if (Status s = cudnn->check(); !s.ok())
              r.peer_note = "n/a (" + s.message() + ")";
            else if (!stats)
              r.peer_note = "n/a (" + stats.error().message() + ")";
            else
              r.peer_stats = *stats;
          }
          r.alloc_mib += static_cast<double>(cudnn->allocated_bytes()) / kMiB;
        }
      } else if (c.family == Family::kLinear) {
        r.peer = "cuBLAS";
        r.peer_note = linear_peer.size() == passes.size() ? "cublasSgemm via --linear cublas"
                                                          : linear_peer_status;
        if (linear_peer.size() == passes.size() && r.error.empty()) {
          auto stats = (*timer)->time(linear_peer[i].run, cublas_backend->native_stream());
          if (Status s = cublas_backend->synchronize(); !s.ok())
            r.peer_note = "n/a (" + s.message() + ")";
          else if (!stats)
            r.peer_note = "n/a (" + stats.error().message() + ")";
          else
            r.peer_stats = *stats;
          r.alloc_mib += static_cast<double>(peer_mem->bytes()) / kMiB;
        }
      }
      if (r.peer_stats && r.peer_stats->median_ms > 0)
        r.ratio = r.stats.median_ms / r.peer_stats->median_ms;
      r.rss_mib = peak_rss_mib();
      r.device_mib = device_used_mib();
      if (!r.error.empty()) failed = true;
      print_row(r, gpu);
      rows.push_back(r);
    }
  }
  const double final_rss = std::max({run_peak_rss, peak_rss_mib(), process_peak_rss_mib()});
  std::printf("peak host RSS %.0f MiB", final_rss);
  if (gpu) std::printf("; device memory in use at the end %.0f MiB", device_used_mib());
  const bool tf32_ceiling = math == MathMode::kTf32 && ceilings->gemm_tf32_gflops > 0;
  std::printf(
      "\n%% ceil: GFLOP/s of the %s GEMM ceiling for conv and linear, GB/s of the copy "
      "ceiling otherwise. vs peer: Wren's median / the peer's (> 1: Wren is slower).\n",
      tf32_ceiling ? "TF32" : "fp32");

  // --- outputs ---
  if (!o.json_path.empty()) {
    nlohmann::json j;
    j["tool"] = "wren-bench kernels";
    j["schema"] = 1;
    j["command"] = o.command;
    j["date"] = iso_date();
    j["device"] = to_string(device);
    j["device_name"] = device_name;
    j["backend"] = backend->describe();
    j["label"] = label;
    j["math"] = to_string(math);
    j["host"] = {{"cpu", host_cpu_name()}, {"cores", host_cores()}};
    j["timing"] = {{"method", (*timer)->method()},
                   {"warmup", timing.warmup},
                   {"min_reps", timing.reps},
                   {"max_reps", timing.max_reps},
                   {"min_time_s", timing.min_time_s},
                   {"flush_bytes", (*timer)->flush_bytes()},
                   {"input_sets", o.sets},
                   {"quick", o.quick}};
    j["ceilings"] = {{"copy_gbs", ceilings->copy_gbs},
                     {"copy_method", ceilings->copy_method},
                     {"gemm_fp32_gflops", ceilings->gemm_fp32_gflops},
                     {"gemm_tf32_gflops", ceilings->gemm_tf32_gflops > 0
                                              ? nlohmann::json(ceilings->gemm_tf32_gflops)
                                              : nlohmann::json(nullptr)},
                     {"gemm_method", ceilings->gemm_method},
                     {"gemm_used", tf32_ceiling ? "tf32" : "fp32"}};
    j["peers"] = {{"conv", conv_peer_status}, {"linear", linear_peer_status}};
    j["peak_rss_mib"] = final_rss;
    j["device_used_mib"] = gpu ? nlohmann::json(device_used_mib()) : nlohmann::json(nullptr);
    j["rows"] = nlohmann::json::array();
    for (const Row& r : rows) {
      nlohmann::json row = {{"family", r.family}, {"set", r.set},     {"layer", r.layer},
                            {"shape", r.shape},   {"pass", r.pass},   {"batch", r.batch},
                            {"flops", r.flops},   {"bytes", r.bytes}, {"bound", r.bound}};
      if (r.error.empty()) {
        row["time"] = stats_json(r.stats);
        row["median_ms"] = r.stats.median_ms;
        row["gflops"] = r.flops > 0 ? nlohmann::json(r.gflops) : nlohmann::json(nullptr);
        row["gbs"] = r.gbs;
        row["pct_of_ceiling"] = r.pct;
      } else {
        row["error"] = r.error;
      }
      row["peer"] = r.peer.empty() ? nlohmann::json(nullptr) : nlohmann::json(r.peer);
      row["peer_note"] = r.peer_note;
      row["peer_time"] = r.peer_stats ? stats_json(*r.peer_stats) : nlohmann::json(nullptr);
      row["ratio_vs_peer"] = r.peer_stats ? nlohmann::json(r.ratio) : nlohmann::json(nullptr);
      row["peak_rss_mib"] = r.rss_mib;
      row["device_used_mib"] =
          r.device_mib >= 0 ? nlohmann::json(r.device_mib) : nlohmann::json(nullptr);
      row["allocated_mib"] = r.alloc_mib;
      j["rows"].push_back(row);
    }
    failed |= !write_output(o.json_path, j.dump(2) + "\n");
  }
  if (!o.csv_path.empty()) {
    std::ostringstream f;
    f << "device,device_name,math,date,family,set,layer,shape,pass,batch,flops,bytes,reps,"
         "median_ms,min_ms,p90_ms,gflops,gbs,bound,pct_of_ceiling,peer,peer_median_ms,"
         "ratio_vs_peer,peer_note,peak_rss_mib,device_used_mib,allocated_mib,error,command\n";
    const std::string date = iso_date();
    for (const Row& r : rows) {
      const bool ok = r.error.empty();
      f << to_string(device) << ',' << csv_field(device_name) << ',' << to_string(math) << ','
        << date << ',' << r.family << ',' << r.set << ',' << csv_field(r.layer) << ','
        << csv_field(r.shape) << ',' << r.pass << ',' << r.batch << ',' << r.flops << ',' << r.bytes
        << ',' << (ok ? std::to_string(r.stats.reps) : "") << ','
        << (ok ? fmt(r.stats.median_ms, 6) : "") << ',' << (ok ? fmt(r.stats.min_ms, 6) : "") << ','
        << (ok ? fmt(r.stats.p90_ms, 6) : "") << ',' << (ok && r.flops > 0 ? fmt(r.gflops, 3) : "")
        << ',' << (ok ? fmt(r.gbs, 3) : "") << ',' << r.bound << ',' << (ok ? fmt(r.pct, 2) : "")
        << ',' << r.peer << ',' << (r.peer_stats ? fmt(r.peer_stats->median_ms, 6) : "") << ','
        << (r.peer_stats ? fmt(r.ratio, 4) : "") << ',' << csv_field(r.peer_note) << ','
        << fmt(r.rss_mib, 1) << ',' << (r.device_mib >= 0 ? fmt(r.device_mib, 1) : "") << ','
        << fmt(r.alloc_mib, 1) << ',' << csv_field(r.error) << ',' << csv_field(o.command) << "\n";
    }
    failed |= !write_output(o.csv_path, f.str());
  }
  return failed ? 1 : 0;
}

}  // namespace wren::bench
