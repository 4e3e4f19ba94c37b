#include "bench_train.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <unistd.h>
#include <sstream>
#include <string>
#include <vector>

#include "bench_timing.h"
#include "wren/device.h"
#include "wren/train.h"

namespace wren::bench {
namespace {

namespace fs = std::filesystem;

// The synthetic dataset a model trains on here: uniform random pixels and labels in the file
// formats the trainer reads (so the run is the user's run: uint8 on the device, batches made
// there). ref-cnn and ref-cnn-bn: 1x28x28 IDX files; resnet-cifar: CIFAR-10 binary batches.
struct SyntheticData {
  std::string dir;
  int channels = 1, size = 28;
};

uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

void put_be32(std::ofstream& f, uint32_t v) {
  const char b[4] = {static_cast<char>(v >> 24), static_cast<char>(v >> 16),
                     static_cast<char>(v >> 8), static_cast<char>(v)};
  f.write(b, 4);
}

Status write_idx(const fs::path& dir, const std::string& prefix, int count, uint64_t seed) {
  std::ofstream images(dir / (prefix + "-images-idx3-ubyte"), std::ios::binary);
  std::ofstream labels(dir / (prefix + "-labels-idx1-ubyte"), std::ios::binary);
  put_be32(images, 0x803);
  put_be32(images, static_cast<uint32_t>(count));
  put_be32(images, 28);
  put_be32(images, 28);
  put_be32(labels, 0x801);
  put_be32(labels, static_cast<uint32_t>(count));
  std::vector<char> pixels(28 * 28);
  for (int i = 0; i < count; ++i) {
    for (char& p : pixels) p = static_cast<char>(splitmix64(seed) & 0xff);
    images.write(pixels.data(), static_cast<std::streamsize>(pixels.size()));
    labels.put(static_cast<char>(splitmix64(seed) % 10));
  }
  if (!images || !labels) return io_error("cannot write the synthetic IDX files in " + dir.string());
  return {};
}

Status write_cifar_batch(const fs::path& path, int count, uint64_t seed) {
  std::ofstream f(path, std::ios::binary);
  std::vector<char> record(1 + 3 * 32 * 32);
  for (int i = 0; i < count; ++i) {
    record[0] = static_cast<char>(splitmix64(seed) % 10);
    for (size_t j = 1; j < record.size(); ++j) record[j] = static_cast<char>(splitmix64(seed) & 0xff);
    f.write(record.data(), static_cast<std::streamsize>(record.size()));
  }
  if (!f) return io_error("cannot write " + path.string());
  return {};
}

Expected<SyntheticData> make_synthetic(const fs::path& root, bool cifar, int train_images) {
  SyntheticData d;
  const fs::path dir = root / (cifar ? "cifar10" : "idx28");
  d.dir = dir.string();
  if (fs::exists(dir / (cifar ? "test_batch.bin" : "t10k-labels-idx1-ubyte"))) {
    if (cifar) d.channels = 3, d.size = 32;
    return d;
  }
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return io_error("cannot create " + dir.string() + ": " + ec.message());
  if (cifar) {
    d.channels = 3, d.size = 32;
    for (int b = 1; b <= 5; ++b)
      WREN_RETURN_IF_ERROR(write_cifar_batch(dir / ("data_batch_" + std::to_string(b) + ".bin"),
                                             train_images / 5, 100 + b));
    WREN_RETURN_IF_ERROR(write_cifar_batch(dir / "test_batch.bin", 256, 7));
  } else {
    WREN_RETURN_IF_ERROR(write_idx(dir, "train", train_images, 1));
    WREN_RETURN_IF_ERROR(write_idx(dir, "t10k", 256, 2));
  }
  return d;
}

struct Row {
  std::string model;
  int batch = 0;
  std::string graph;  // "on", "off", "n/a" (cpu)
  int steps = 0;
  double median_ms = 0, p10_ms = 0, p90_ms = 0, mean_ms = 0;
  double img_per_s = 0, img_per_s_mean = 0;
  double device_peak_mib = -1, rss_mib = 0;
  std::string error;
};

double quantile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())));
  return v[i];
}

void print_row(const Row& r, bool device_memory) {
  if (!r.error.empty()) {
    std::printf("%s %s %s ERROR: %s\n", pad(r.model, 13).c_str(), pad(std::to_string(r.batch), 6, true).c_str(),
                pad(r.graph, 6, true).c_str(), r.error.c_str());
    return;
  }
  std::printf("%s %s %s %s %s %s %s %s\n", pad(r.model, 13).c_str(),
              pad(std::to_string(r.batch), 6, true).c_str(), pad(r.graph, 6, true).c_str(),
              pad(fmt(r.median_ms, 3), 10, true).c_str(), pad(fmt(r.p90_ms, 3), 9, true).c_str(),
              pad(fmt(r.img_per_s, 0), 10, true).c_str(),
              pad(fmt(r.img_per_s_mean, 0), 10, true).c_str(),
              pad(fmt(device_memory ? r.device_peak_mib : r.rss_mib, 1), 9, true).c_str());
  std::fflush(stdout);
}

}  // namespace

int run_train_bench(const TrainBenchOptions& o) {
  const Device device = resolve_device(o.device);
  const Expected<MathMode> math = parse_math_mode(o.math);
  if (!math) {
    std::fprintf(stderr, "wren-bench: %s\n", math.error().message().c_str());
    return 1;
  }
  if (device == Device::kCuda && !(built_with_cuda() && cuda_device_count() > 0)) {
    std::fprintf(stderr, "wren-bench: --device cuda: %s\n",
                 built_with_cuda() ? "no CUDA GPU is visible" : "this build has no CUDA backend");
    return 1;
  }
  const bool kernels = device != Device::kCpu;
  const std::string device_name = device_display_name(device), label = device_label(device);

  std::error_code ec;
  const fs::path root = fs::temp_directory_path() / ("wren-bench-train-" + std::to_string(::getpid()));
  fs::create_directories(root, ec);
  if (ec) {
    std::fprintf(stderr, "wren-bench: cannot create %s: %s\n", root.c_str(), ec.message().c_str());
    return 1;
  }
  std::FILE* quiet = std::tmpfile();  // the trainer's notes; the table is ours

  std::printf("wren-bench train: %s on %s, math %s\n", to_string(device), device_name.c_str(),
              o.math.c_str());
  std::printf("%s\n", label.c_str());
  std::printf("the real trainer (wren::train) on synthetic uint8 data, AdamW lr 1e-3 wd 5e-4, no "
              "augmentation, no evaluation; %d warm-up steps left out, then %d timed steps; a "
              "step = the batch gathered and normalized from uint8 (on the device for cuda/emu) "
              "+ forward + backward + optimizer + the loss read that checks it is finite (one "
              "host sync per step)\n",
              o.warmup, o.steps);
  std::printf("%s %s %s %s %s %s %s %s\n", pad("model", 13).c_str(), pad("batch", 6, true).c_str(),
              pad("graph", 6, true).c_str(), pad("median ms", 10, true).c_str(),
              pad("p90 ms", 9, true).c_str(), pad("img/s", 10, true).c_str(),
              pad("img/s mean", 10, true).c_str(), pad(kernels ? "dev MiB" : "RSS MiB", 9, true).c_str());

  std::vector<Row> rows;
  bool failed = false;
  for (const std::string& model : o.models) {
    const bool cifar = model == "resnet-cifar";
    for (int batch : o.batches) {
      const int images = std::clamp(batch * 32, 4096, 32768);
      auto data = make_synthetic(root / std::to_string(images), cifar, images);
      for (bool graph : kernels ? o.graphs : std::vector<bool>{false}) {
        Row r;
        r.model = model;
        r.batch = batch;
        r.graph = kernels ? (graph ? "on" : "off") : "n/a";
        if (!data) {
          r.error = data.error().message();
        } else {
          TrainConfig c;
          c.model = model;
          c.data_dir = data->dir;
          c.device = *parse_device_choice(to_string(device));  // a resolved device: never auto
          c.math = *math;
          c.cuda_graph = graph;
          c.batch = batch;
          c.steps = o.warmup + o.steps;
          c.augment_auto = false;
          c.augment = false;
          c.val_count = 0;
          c.evaluate_test = false;
          c.write_checkpoints = false;
          c.progress = false;
          c.log_every = 1000000;
          c.out_dir = (root / "runs" / (model + "-b" + std::to_string(batch) + "-" + r.graph)).string();
          reset_peak_rss();
          auto result = train(c, quiet);
          r.rss_mib = peak_rss_mib();
          if (!result) {
            r.error = result.error().message();
          } else if (static_cast<int>(result->step_seconds.size()) <= o.warmup) {
            r.error = "ran " + std::to_string(result->step_seconds.size()) + " steps, not more than the warm-up";
          } else {
            std::vector<double> ms(result->step_seconds.begin() + o.warmup, result->step_seconds.end());
            for (double& t : ms) t *= 1e3;
            r.steps = static_cast<int>(ms.size());
            r.median_ms = quantile(ms, 0.5);
            r.p10_ms = quantile(ms, 0.1);
            r.p90_ms = quantile(ms, 0.9);
            double sum = 0;
            for (double t : ms) sum += t;
            r.mean_ms = sum / static_cast<double>(ms.size());
            r.img_per_s = batch / (r.median_ms * 1e-3);
            r.img_per_s_mean = batch / (r.mean_ms * 1e-3);
            if (kernels) r.device_peak_mib = static_cast<double>(result->device_peak_bytes) / 1048576.0;
          }
        }
        failed |= !r.error.empty();
        print_row(r, kernels);
        rows.push_back(r);
      }
    }
  }
  if (quiet) std::fclose(quiet);
  fs::remove_all(root, ec);
  std::printf("median ms: of the timed steps' wall times; img/s = batch / median; img/s mean = "
              "batch / mean step; %s\n",
              kernels ? "dev MiB: peak device memory the backend allocated (weights, arena, "
                        "optimizer state, dataset)"
                      : "RSS MiB: peak host resident set of the row");

  if (!o.json_path.empty()) {
    nlohmann::json j;
    j["tool"] = "wren-bench train";
    j["schema"] = 1;
    j["command"] = o.command;
    j["date"] = iso_date();
    j["device"] = to_string(device);
    j["device_name"] = device_name;
    j["label"] = label;
    j["math"] = o.math;
    j["host"] = {{"cpu", host_cpu_name()}, {"cores", host_cores()}};
    j["method"] = {{"warmup_steps", o.warmup}, {"timed_steps", o.steps},
                   {"data", "synthetic uint8, no augmentation"},
                   {"optimizer", "adamw lr 1e-3 wd 5e-4 (no decay on biases and norms)"}};
    j["rows"] = nlohmann::json::array();
    for (const Row& r : rows) {
      nlohmann::json row = {{"model", r.model}, {"batch", r.batch}, {"cuda_graph", r.graph}};
      if (r.error.empty()) {
        row["steps"] = r.steps;
        row["median_ms"] = r.median_ms;
        row["p10_ms"] = r.p10_ms;
        row["p90_ms"] = r.p90_ms;
        row["mean_ms"] = r.mean_ms;
        row["img_per_s"] = r.img_per_s;
        row["img_per_s_mean"] = r.img_per_s_mean;
        row["device_peak_mib"] = r.device_peak_mib >= 0 ? nlohmann::json(r.device_peak_mib) : nlohmann::json(nullptr);
        row["peak_rss_mib"] = r.rss_mib;
      } else {
        row["error"] = r.error;
      }
      j["rows"].push_back(row);
    }
    failed |= !write_output(o.json_path, j.dump(2) + "\n");
  }
  if (!o.csv_path.empty()) {
    std::ostringstream f;
    f << "device,device_name,math,date,model,batch,cuda_graph,steps,median_ms,p10_ms,p90_ms,"
         "mean_ms,img_per_s,img_per_s_mean,device_peak_mib,peak_rss_mib,error,command\n";
    const std::string date = iso_date();
    for (const Row& r : rows) {
      const bool ok = r.error.empty();
      f << to_string(device) << ',' << csv_field(device_name) << ',' << o.math << ',' << date << ','
        << r.model << ',' << r.batch << ',' << r.graph << ',' << (ok ? std::to_string(r.steps) : "")
        << ',' << (ok ? fmt(r.median_ms, 4) : "") << ',' << (ok ? fmt(r.p10_ms, 4) : "") << ','
        << (ok ? fmt(r.p90_ms, 4) : "") << ',' << (ok ? fmt(r.mean_ms, 4) : "") << ','
        << (ok ? fmt(r.img_per_s, 1) : "") << ',' << (ok ? fmt(r.img_per_s_mean, 1) : "") << ','
        << (ok && r.device_peak_mib >= 0 ? fmt(r.device_peak_mib, 1) : "") << ','
        << fmt(r.rss_mib, 1) << ',' << csv_field(r.error) << ',' << csv_field(o.command) << "\n";
    }
    failed |= !write_output(o.csv_path, f.str());
  }
  return failed ? 1 : 0;
}

}  // namespace wren::bench
