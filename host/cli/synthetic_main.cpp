// wren-synthetic: the interim main job until the `wren` training CLI exists (issue 4).
// It trains ref-cnn with plain SGD on ONE synthetic, fixed batch of 28×28 images (a noisy
// template per class) and prints the loss falling: a smoke test of the whole engine (graph,
// planned memory, forward, derived backward, parameter update), not a real training run.
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <vector>

#include "wren/backend.h"
#include "wren/device.h"
#include "wren/executor.h"
#include "wren/models.h"
#include "wren/rng.h"

namespace {

// Images [N, 1, 28, 28]: a random binary template per class plus uniform noise.
void make_batch(int batch, int classes, uint64_t seed, std::vector<float>& images,
                std::vector<int32_t>& labels) {
  constexpr int kPixels = 28 * 28;
  const wren::RngKey key = wren::make_rng_key(seed, wren::RngStream::kTest);
  images.resize(static_cast<size_t>(batch) * kPixels);
  labels.resize(static_cast<size_t>(batch));
  for (int n = 0; n < batch; ++n) {
    const int label = n % classes;
    labels[static_cast<size_t>(n)] = label;
    for (int i = 0; i < kPixels; ++i) {
      const float templ =
          wren::uniform_at(key, 0, static_cast<uint64_t>(label * kPixels + i)) < 0.5f ? 0.f : 1.f;
      const float noise = wren::uniform_at(key, 1, static_cast<uint64_t>(n * kPixels + i));
      images[static_cast<size_t>(n * kPixels + i)] = 0.7f * templ + 0.3f * noise;
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "wren-synthetic: train ref-cnn with SGD on one synthetic batch (an engine smoke test;\n"
      "real Fashion-MNIST training arrives with the `wren` CLI)"};
  int steps = 80, batch = 64;
  double lr = 0.2;
  uint64_t seed = 1;
  std::string device = "auto";
  app.add_option("--steps", steps, "SGD steps")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--batch", batch, "batch size")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--lr", lr, "learning rate")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--seed", seed, "seed for the data and the initial weights")->capture_default_str();
  app.add_option("--device", device, "auto | cpu (cuda arrives with the CUDA backend)")
      ->check(CLI::IsMember({"auto", "cpu"}))
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  if (device == "auto" && wren::cuda_device_count() > 0)
    std::printf("note: a GPU is present (%s) but the CUDA backend is not built yet; using cpu\n",
                wren::cuda_device_name().c_str());

  wren::Graph graph = wren::ref_cnn();
  auto created = wren::Executor<float>::create(
      graph, wren::make_cpu_backend<float>(),
      wren::ExecutorOptions{.batch_size = batch, .seed = seed});
  if (!created) {
    std::fprintf(stderr, "wren-synthetic: %s\n", created.error().message().c_str());
    return 1;
  }
  wren::Executor<float>& ex = **created;
  std::printf("%s", graph.summary().c_str());
  std::printf("device cpu, batch %d, arena %.1f MiB\n", batch,
              static_cast<double>(ex.arena_bytes()) / (1 << 20));

  std::vector<float> images;
  std::vector<int32_t> labels;
  make_batch(batch, 10, seed, images, labels);
  if (auto s = ex.set_input("image", images); !s.ok()) {
    std::fprintf(stderr, "wren-synthetic: %s\n", s.message().c_str());
    return 1;
  }
  if (auto s = ex.set_labels("label", labels); !s.ok()) {
    std::fprintf(stderr, "wren-synthetic: %s\n", s.message().c_str());
    return 1;
  }

  const auto start = std::chrono::steady_clock::now();
  float loss = 0.0f;
  for (int step = 1; step <= steps; ++step) {
    if (auto s = ex.forward(wren::Mode::kTrain); !s.ok()) {
      std::fprintf(stderr, "wren-synthetic: step %d: %s\n", step, s.message().c_str());
      return 1;
    }
    loss = ex.loss();
    if (auto s = ex.backward(); !s.ok()) {
      std::fprintf(stderr, "wren-synthetic: step %d: %s\n", step, s.message().c_str());
      return 1;
    }
    // Plain SGD over the flat parameter buffer (the real optimizers come with issue 4).
    float* p = ex.params().data;
    const float* g = ex.grads().data;
    for (int64_t i = 0; i < ex.params().numel(); ++i) p[i] -= static_cast<float>(lr) * g[i];
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (step == 1 || step % 10 == 0 || step == steps)
      std::printf("step %4d/%d  loss %.5f  %.0f img/s  eta %.1f s\n", step, steps, loss,
                  step * batch / secs, secs / step * (steps - step));
  }
  std::printf("final loss %.5f\n", loss);
  return 0;
}
