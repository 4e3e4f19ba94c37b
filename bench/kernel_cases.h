// `wren-bench kernels`, internal: the cases (one shape of one family), their device buffers and
// their timed passes (kernel_cases.cpp, kernel_passes.cpp); bench_kernels.cpp runs them.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench_kernels.h"
#include "wren/backend.h"
#include "wren/data.h"

namespace wren::bench {

enum class PoolKind { kMax, kGlobalAvg };

// One shape of one family; it yields one row per pass.
struct Case {
  Family family = Family::kConv;
  std::string set{};    // refcnn | cifar | sweep
  std::string layer{};  // the layer's name in the model (graph names)
  int batch = 0;
  Conv2dDims conv{};
  bool bias = false;
  LinearDims linear{};
  Pool2dDims pool{};
  PoolKind pool_kind = PoolKind::kMax;
  BatchNormDims bn{};
  SoftmaxCeDims ce{};
  int64_t count = 0;                        // elementwise
  std::string model{};                      // optimizer: the model whose parameters are updated
  int channels = 0, height = 0, width = 0;  // augment: the image
  AugmentConfig augment{};
};

// The shape sets (docs/BENCHMARKS.md): ref-cnn's and resnet-cifar's layers at batch n, and a
// batch sweep of one representative shape per family.
void add_refcnn(std::vector<Case>& out, const std::string& set, int n, bool optimizer);
void add_cifar(std::vector<Case>& out, const std::string& set, int n);
void add_sweep(std::vector<Case>& out, int n);
std::string shape_text(const Case& c);

// [-1, 1) from a splitmix64 stream (fast enough for the sweep's big inputs).
class Random {
 public:
  explicit Random(uint64_t seed) : state_(0x9e3779b97f4a7c15ull * (seed + 1)) {}
  uint64_t next() {
    state_ += 0x9e3779b97f4a7c15ull;
    uint64_t z = state_;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  float uniform(float lo, float hi) {
    return lo + (hi - lo) * static_cast<float>(next() >> 40) * (1.0f / 16777216.0f);
  }

 private:
  uint64_t state_;
};

// Memory of one row, allocated through the backend and freed with it.
class Buffers {
 public:
  explicit Buffers(Backend<float>& backend) : backend_(backend) {}
  ~Buffers() {
    (void)backend_.synchronize();
    for (void* p : owned_) backend_.release(p);
  }
  Buffers(const Buffers&) = delete;
  Buffers& operator=(const Buffers&) = delete;

  void* raw(size_t bytes) {
    bytes = std::max<size_t>(bytes, 4);
    void* p = backend_.allocate(bytes);
    if (!p)
      throw std::runtime_error("out of " + std::string(to_string(backend_.device())) +
                               " memory allocating " + std::to_string(bytes >> 20) + " MiB");
    owned_.push_back(p);
    bytes_ += bytes;
    return p;
  }
  float* zeros(size_t count) {
    auto* p = static_cast<float*>(raw(count * sizeof(float)));
    backend_.fill_zero(p, count * sizeof(float));
    return p;
  }
  float* random(size_t count, uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
    auto* p = static_cast<float*>(raw(count * sizeof(float)));
    std::vector<float> host(count);
    Random rng(seed);
    for (float& v : host) v = rng.uniform(lo, hi);
    backend_.upload(p, host.data(), count * sizeof(float));
    return p;
  }
  int32_t* labels(size_t count, int classes, uint64_t seed) {
    auto* p = static_cast<int32_t*>(raw(count * sizeof(int32_t)));
    std::vector<int32_t> host(count);
    Random rng(seed);
    for (int32_t& v : host) v = static_cast<int32_t>(rng.next() % static_cast<uint64_t>(classes));
    backend_.upload(p, host.data(), count * sizeof(int32_t));
    return p;
  }
  size_t bytes() const { return bytes_; }

 private:
  Backend<float>& backend_;
  std::vector<void*> owned_;
  size_t bytes_ = 0;
};

// One pass of a case, ready to time.
struct Pass {
  std::string name;
  double flops = 0, bytes = 0;
  std::function<void(int rep)> run;
};

// The passes of `c` on `backend` with `sets` input sets; the buffers go to `mem`. Errors of
// ops that return a Status (optimizer, augment) are kept in `*error`.
std::vector<Pass> make_passes(Backend<float>& backend, const Case& c, int sets, Buffers& mem,
                              std::shared_ptr<std::string> error,
                              std::vector<std::shared_ptr<void>>& keep);

}  // namespace wren::bench
