// One training step (forward + backward + plain SGD) of the zoo models on the cpu device,
// with Google Benchmark. Reports images/s and the process's peak RSS (memory is planned once,
// so the peak is reached in the first step and stays flat).
//   build/release/bench_cpu_step --benchmark_min_time=2
// For comparisons with PyTorch pin OpenBLAS to one thread per process: OPENBLAS_NUM_THREADS=1.
#include <benchmark/benchmark.h>
#include <sys/resource.h>

#include <string>
#include <vector>

#include "wren/executor.h"
#include "wren/models.h"
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

  for (auto _ : state) {
    (void)ex.forward(wren::Mode::kTrain);
    (void)ex.backward();
    float* p = ex.params().data;
    const float* g = ex.grads().data;
    for (int64_t i = 0; i < ex.params().numel(); ++i) p[i] -= 1e-3f * g[i];
    benchmark::DoNotOptimize(p);
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
