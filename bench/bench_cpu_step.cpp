// One training step (forward + backward + AdamW step over the flat parameter buffer, lr 1e-3,
// wd 5e-4: the recipe bench/pytorch_ref_cnn.py runs in PyTorch) of the zoo models on the cpu
// device, with Google Benchmark. Reports images/s and the process's peak RSS (memory is planned once,
// so the peak is reached in the first step and stays flat).
//   build/release/bench_cpu_step --benchmark_min_time=2
// Threads: OMP_NUM_THREADS (default: every core); side by side with PyTorch:
// bash bench/compare_cpu.sh build/release 2.
#include <benchmark/benchmark.h>
#include <sys/resource.h>

#include <span>
#include <string>
#include <vector>

#include "wren/executor.h"
#include "wren/models.h"
#include "wren/optimizer.h"
#include "wren/rng.h"

namespace {

double peak_rss_mib() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;  // ru_maxrss is in KiB on Linux
}

void train_step(benchmark::State& state, const std::string& model) {
  const int batch = static_cast<int>(state.range(0));
  auto graph = wren::build_model(model);
  auto created = wren::Executor<float>::create(*graph, wren::make_cpu_backend<float>(),
                                               {.batch_size = batch, .seed = 1});
  if (!created) {
    state.SkipWithError(created.error().message().c_str());
    return;
  }
  wren::Executor<float>& ex = **created;
  std::vector<float> images(static_cast<size_t>(batch) * 784);
  const wren::RngKey key = wren::make_rng_key(1, wren::RngStream::kTest);
  for (size_t i = 0; i < images.size(); ++i) images[i] = wren::uniform_at(key, 0, i);
  std::vector<int32_t> labels(static_cast<size_t>(batch));
  for (int i = 0; i < batch; ++i) labels[static_cast<size_t>(i)] = i % 10;
  (void)ex.set_input("image", images);
  (void)ex.set_labels("label", labels);
  auto optimizer = wren::Optimizer<float>::create(
      {.kind = wren::OptimizerKind::kAdamW, .weight_decay = 5e-4}, wren::param_segments(*graph),
      graph->param_count());
  if (!optimizer) {
    state.SkipWithError(optimizer.error().message().c_str());
    return;
  }
  const auto n = static_cast<size_t>(ex.params().numel());

  for (auto _ : state) {
    (void)ex.forward(wren::Mode::kTrain);
    (void)ex.backward();
    (void)optimizer->step(std::span<float>(ex.params().data, n),
                          std::span<const float>(ex.grads().data, n), 1e-3);
    benchmark::DoNotOptimize(ex.params().data);
  }
  state.SetItemsProcessed(state.iterations() * batch);
  state.counters["img/s"] = benchmark::Counter(static_cast<double>(state.iterations() * batch),
                                               benchmark::Counter::kIsRate);
  state.counters["arena_MiB"] = static_cast<double>(ex.arena_bytes()) / (1 << 20);
  state.counters["peak_rss_MiB"] = peak_rss_mib();
}

}  // namespace

BENCHMARK_CAPTURE(train_step, ref_cnn, std::string("ref-cnn"))
    ->Arg(128)->Arg(512)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(train_step, ref_cnn_bn, std::string("ref-cnn-bn"))
    ->Arg(128)->Unit(benchmark::kMillisecond)->UseRealTime();

BENCHMARK_MAIN();
