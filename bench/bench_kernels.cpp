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

// --- shapes -------------------------------------------------------------------------------------
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

Case conv_case(const std::string& set, const std::string& layer, int n, int c, int h, int k, int r,
               int stride, int pad, bool bias) {
  Case x{.family = Family::kConv, .set = set, .layer = layer, .batch = n};
  x.conv = Conv2dDims{.n = n,
                      .c = c,
                      .h = h,
                      .w = h,
                      .k = k,
                      .r = r,
                      .s = r,
                      .stride_h = stride,
                      .stride_w = stride,
                      .pad_h = pad,
                      .pad_w = pad};
  x.bias = bias;
  return x;
}
Case linear_case(const std::string& set, const std::string& layer, int n, int in, int out) {
  Case x{.family = Family::kLinear, .set = set, .layer = layer, .batch = n};
  x.linear = LinearDims{.n = n, .in = in, .out = out};
  return x;
}
Case max_pool_case(const std::string& set, const std::string& layer, int n, int c, int h) {
  Case x{.family = Family::kPool, .set = set, .layer = layer, .batch = n};
  x.pool = Pool2dDims{.n = n, .c = c, .h = h, .w = h};  // 2×2, stride 2 (the defaults)
  x.pool_kind = PoolKind::kMax;
  return x;
}
Case gap_case(const std::string& set, const std::string& layer, int n, int c, int h) {
  Case x{.family = Family::kPool, .set = set, .layer = layer, .batch = n};
  x.pool = Pool2dDims{.n = n, .c = c, .h = h, .w = h};
  x.pool_kind = PoolKind::kGlobalAvg;
  return x;
}
Case ce_case(const std::string& set, const std::string& layer, int n, int classes) {
  Case x{.family = Family::kSoftmaxCe, .set = set, .layer = layer, .batch = n};
  x.ce = SoftmaxCeDims{.n = n, .c = classes, .s = 1};
  return x;
}
Case bn_case(const std::string& set, const std::string& layer, int n, int c, int h) {
  Case x{.family = Family::kBatchNorm, .set = set, .layer = layer, .batch = n};
  x.bn = BatchNormDims{.n = n, .c = c, .h = h, .w = h};
  return x;
}
Case elementwise_case(const std::string& set, const std::string& layer, int n, int c, int h) {
  Case x{.family = Family::kElementwise, .set = set, .layer = layer, .batch = n};
  x.count = int64_t{n} * c * h * h;
  x.channels = c;
  x.height = x.width = h;
  return x;
}
Case optimizer_case(const std::string& set, const std::string& model) {
  Case x{.family = Family::kOptimizer, .set = set, .layer = model + " parameters", .batch = 0};
  x.model = model;
  return x;
}
Case augment_case(const std::string& set, const std::string& layer, int n, int c, int h,
                  const AugmentConfig& augment) {
  Case x{.family = Family::kAugment, .set = set, .layer = layer, .batch = n};
  x.channels = c;
  x.height = x.width = h;
  x.augment = augment;
  return x;
}

// ref-cnn (include/wren/models.h) on 1×28×28: its layers, with the BN layers of ref-cnn-bn.
void add_refcnn(std::vector<Case>& out, const std::string& set, int n, bool optimizer) {
  out.push_back(conv_case(set, "conv1", n, 1, 28, 32, 3, 1, 1, true));
  out.push_back(conv_case(set, "conv2", n, 32, 14, 64, 3, 1, 1, true));
  out.push_back(linear_case(set, "fc1", n, 3136, 128));
  out.push_back(linear_case(set, "fc2", n, 128, 10));
  out.push_back(max_pool_case(set, "pool1", n, 32, 28));
  out.push_back(max_pool_case(set, "pool2", n, 64, 14));
  out.push_back(ce_case(set, "loss", n, 10));
  out.push_back(bn_case(set, "bn1 (ref-cnn-bn)", n, 32, 28));
  out.push_back(bn_case(set, "bn2 (ref-cnn-bn)", n, 64, 14));
  out.push_back(elementwise_case(set, "relu1", n, 32, 28));
  out.push_back(elementwise_case(set, "relu2", n, 64, 14));
  if (optimizer) out.push_back(optimizer_case(set, "ref-cnn"));
  out.push_back(augment_case(set, "image 1x28x28, crop 2 + flip", n, 1, 28,
                             AugmentConfig{.crop_padding = 2, .horizontal_flip = true}));
}

// resnet-cifar (one basic block per stage) on 3×32×32: each distinct layer shape once.
void add_cifar(std::vector<Case>& out, const std::string& set, int n) {
  out.push_back(conv_case(set, "stem.conv", n, 3, 32, 16, 3, 1, 1, false));
  out.push_back(conv_case(set, "stage1.block1.conv1 (= conv2)", n, 16, 32, 16, 3, 1, 1, false));
  out.push_back(conv_case(set, "stage2.block1.conv1", n, 16, 32, 32, 3, 2, 1, false));
  out.push_back(conv_case(set, "stage2.block1.conv2", n, 32, 16, 32, 3, 1, 1, false));
  out.push_back(conv_case(set, "stage2.block1.shortcut.conv", n, 16, 32, 32, 1, 2, 0, false));
  out.push_back(conv_case(set, "stage3.block1.conv1", n, 32, 16, 64, 3, 2, 1, false));
  out.push_back(conv_case(set, "stage3.block1.conv2", n, 64, 8, 64, 3, 1, 1, false));
  out.push_back(conv_case(set, "stage3.block1.shortcut.conv", n, 32, 16, 64, 1, 2, 0, false));
  out.push_back(linear_case(set, "fc", n, 64, 10));
  out.push_back(gap_case(set, "pool (global average)", n, 64, 8));
  out.push_back(ce_case(set, "loss", n, 10));
  out.push_back(bn_case(set, "stem.bn, stage1 bn", n, 16, 32));
  out.push_back(bn_case(set, "stage2 bn", n, 32, 16));
  out.push_back(bn_case(set, "stage3 bn", n, 64, 8));
  out.push_back(elementwise_case(set, "stage1 relu / add", n, 16, 32));
  out.push_back(elementwise_case(set, "stage3 relu / add", n, 64, 8));
  out.push_back(optimizer_case(set, "resnet-cifar"));
  out.push_back(augment_case(
      set, "image 3x32x32, crop 4 reflect + flip", n, 3, 32,
      AugmentConfig{.crop_padding = 4, .pad_mode = PadMode::kReflect, .horizontal_flip = true}));
}

// A batch sweep of one representative shape per family (the optimizer does not depend on it).
void add_sweep(std::vector<Case>& out, int n) {
  const std::string set = "sweep";
  out.push_back(conv_case(set, "ref-cnn conv2", n, 32, 14, 64, 3, 1, 1, true));
  out.push_back(conv_case(set, "resnet-cifar stage2.block1.conv2", n, 32, 16, 32, 3, 1, 1, false));
  out.push_back(linear_case(set, "ref-cnn fc1", n, 3136, 128));
  out.push_back(max_pool_case(set, "ref-cnn pool1", n, 32, 28));
  out.push_back(ce_case(set, "loss", n, 10));
  out.push_back(bn_case(set, "ref-cnn-bn bn1", n, 32, 28));
  out.push_back(elementwise_case(set, "ref-cnn relu1", n, 32, 28));
  out.push_back(augment_case(
      set, "image 3x32x32, crop 4 reflect + flip", n, 3, 32,
      AugmentConfig{.crop_padding = 4, .pad_mode = PadMode::kReflect, .horizontal_flip = true}));
}

std::string shape_text(const Case& c) {
  char buf[160];
  switch (c.family) {
    case Family::kConv: {
      const Conv2dDims& d = c.conv;
      std::snprintf(buf, sizeof buf, "n%d %dx%dx%d k%d %dx%d s%d p%d%s", d.n, d.c, d.h, d.w, d.k,
                    d.r, d.s, d.stride_h, d.pad_h, c.bias ? " +b" : "");
      break;
    }
    case Family::kLinear:
      std::snprintf(buf, sizeof buf, "n%d %d->%d", c.linear.n, c.linear.in, c.linear.out);
      break;
    case Family::kPool:
      if (c.pool_kind == PoolKind::kMax)
        std::snprintf(buf, sizeof buf, "n%d %dx%dx%d max 2x2 s2", c.pool.n, c.pool.c, c.pool.h,
                      c.pool.w);
      else
        std::snprintf(buf, sizeof buf, "n%d %dx%dx%d global avg", c.pool.n, c.pool.c, c.pool.h,
                      c.pool.w);
      break;
    case Family::kSoftmaxCe:
      std::snprintf(buf, sizeof buf, "n%d classes %d", c.ce.n, c.ce.c);
      break;
    case Family::kBatchNorm:
      std::snprintf(buf, sizeof buf, "n%d %dx%dx%d", c.bn.n, c.bn.c, c.bn.h, c.bn.w);
      break;
    case Family::kElementwise:
      std::snprintf(buf, sizeof buf, "n%d %dx%dx%d (%lld)", c.batch, c.channels, c.height, c.width,
                    static_cast<long long>(c.count));
      break;
    case Family::kOptimizer:
      std::snprintf(buf, sizeof buf, "%s", c.model.c_str());
      break;
    case Family::kAugment:
      std::snprintf(buf, sizeof buf, "n%d %dx%dx%d", c.batch, c.channels, c.height, c.width);
      break;
  }
  return buf;
}

// --- device buffers
// ------------------------------------------------------------------------------- Uniform values in
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
                              std::vector<std::shared_ptr<void>>& keep) {
  std::vector<Pass> passes;
  const auto S = static_cast<size_t>(sets);
  auto pick = [S](int rep) { return static_cast<size_t>(rep) % S; };
  auto set_error = [error](const Status& s) {
    if (!s.ok() && error->empty()) *error = s.message();
  };
  Backend<float>* b = &backend;

  switch (c.family) {
    case Family::kConv: {
      const Conv2dDims d = c.conv;
      const size_t xs = size_t(d.n) * d.c * d.h * d.w, ys = size_t(d.n) * d.k * d.p() * d.q(),
                   ws = size_t(d.k) * d.c * d.r * d.s;
      std::vector<float*> x, w, dy;
      for (size_t s = 0; s < S; ++s) {
        x.push_back(mem.random(xs, 10 * s + 1));
        w.push_back(mem.random(ws, 10 * s + 2, -0.5f, 0.5f));
        dy.push_back(mem.random(ys, 10 * s + 3));
      }
      float* bias = c.bias ? mem.random(size_t(d.k), 4) : nullptr;
      float* y = mem.zeros(ys);
      float* dx = mem.zeros(xs);
      float* dw = mem.zeros(ws);
      float* db = c.bias ? mem.zeros(size_t(d.k)) : nullptr;
      float* work = mem.zeros(std::max<size_t>(backend.conv2d_workspace_elems(d), 1));
      const double flops = 2.0 * d.n * d.k * d.p() * d.q() * double(d.c) * d.r * d.s;
      const double bias_bytes = c.bias ? 4.0 * d.k : 0.0;
      passes.push_back({"fwd", flops, 4.0 * double(xs + ws + ys) + bias_bytes, [=](int rep) {
                          b->conv2d_forward(d, x[pick(rep)], w[pick(rep)], bias, y, work);
                        }});
      passes.push_back({"bwd_data", flops, 4.0 * double(ys + ws + xs), [=](int rep) {
                          b->conv2d_backward_data(d, dy[pick(rep)], w[pick(rep)], dx, work);
                        }});
      passes.push_back(
          {"bwd_weights", flops, 4.0 * double(xs + ys + ws) + bias_bytes, [=](int rep) {
             b->conv2d_backward_weights(d, x[pick(rep)], dy[pick(rep)], dw, db, work);
           }});
      break;
    }
    case Family::kLinear: {
      const LinearDims d = c.linear;
      const size_t xs = size_t(d.n) * d.in, ys = size_t(d.n) * d.out, ws = size_t(d.out) * d.in;
      std::vector<float*> x, w, dy;
      for (size_t s = 0; s < S; ++s) {
        x.push_back(mem.random(xs, 10 * s + 1));
        w.push_back(mem.random(ws, 10 * s + 2, -0.1f, 0.1f));
        dy.push_back(mem.random(ys, 10 * s + 3));
      }
      float* bias = mem.random(size_t(d.out), 4);
      float* y = mem.zeros(ys);
      float* dx = mem.zeros(xs);
      float* dw = mem.zeros(ws);
      float* db = mem.zeros(size_t(d.out));
      const size_t scratch = backend.linear_workspace_bytes(d);
      if (scratch) backend.bind_scratch(mem.raw(scratch), scratch);
      const double flops = 2.0 * d.n * double(d.in) * d.out;
      passes.push_back({"fwd", flops, 4.0 * double(xs + ws + ys + size_t(d.out)), [=](int rep) {
                          b->linear_forward(d, x[pick(rep)], w[pick(rep)], bias, y);
                        }});
      passes.push_back({"bwd_data", flops, 4.0 * double(ys + ws + xs), [=](int rep) {
                          b->linear_backward_data(d, dy[pick(rep)], w[pick(rep)], dx);
                        }});
      passes.push_back(
          {"bwd_weights", flops, 4.0 * double(xs + ys + ws + size_t(d.out)),
           [=](int rep) { b->linear_backward_weights(d, x[pick(rep)], dy[pick(rep)], dw, db); }});
      break;
    }
    case Family::kPool: {
      const Pool2dDims d = c.pool;
      const size_t xs = size_t(d.n) * d.c * d.h * d.w;
      if (c.pool_kind == PoolKind::kMax) {
        const size_t ys = size_t(d.n) * d.c * d.p() * d.q();
        std::vector<float*> x, dy;
        std::vector<int32_t*> argmax;
        float* y = mem.zeros(ys);
        for (size_t s = 0; s < S; ++s) {
          x.push_back(mem.random(xs, 10 * s + 1));
          dy.push_back(mem.random(ys, 10 * s + 3));
          argmax.push_back(static_cast<int32_t*>(mem.raw(ys * sizeof(int32_t))));
          backend.max_pool2d_forward(d, x[s], y, argmax[s]);  // the backward's saved state
        }
        float* dx = mem.zeros(xs);
        passes.push_back({"max_fwd", 0, 4.0 * double(xs + 2 * ys), [=](int rep) {
                            b->max_pool2d_forward(d, x[pick(rep)], y, argmax[pick(rep)]);
                          }});
        passes.push_back({"max_bwd", 0, 4.0 * double(2 * ys + xs), [=](int rep) {
                            b->max_pool2d_backward(d, argmax[pick(rep)], dy[pick(rep)], dx);
                          }});
      } else {
        const int hw = d.h * d.w;
        const size_t ys = size_t(d.n) * d.c;
        std::vector<float*> x, dy;
        for (size_t s = 0; s < S; ++s) {
          x.push_back(mem.random(xs, 10 * s + 1));
          dy.push_back(mem.random(ys, 10 * s + 3));
        }
        float* y = mem.zeros(ys);
        float* dx = mem.zeros(xs);
        passes.push_back({"gap_fwd", 0, 4.0 * double(xs + ys), [=](int rep) {
                            b->global_avg_pool_forward(d.n, d.c, hw, x[pick(rep)], y);
                          }});
        passes.push_back({"gap_bwd", 0, 4.0 * double(ys + xs), [=](int rep) {
                            b->global_avg_pool_backward(d.n, d.c, hw, dy[pick(rep)], dx);
                          }});
      }
      break;
    }
    case Family::kSoftmaxCe: {
      const SoftmaxCeDims d = c.ce;
      const SoftmaxCeOptions o{};
      const size_t rows = size_t(d.n) * d.s, ls = rows * d.c;
      std::vector<float*> logits;
      std::vector<int32_t*> labels;
      for (size_t s = 0; s < S; ++s) {
        logits.push_back(mem.random(ls, 10 * s + 1, -4.0f, 4.0f));
        labels.push_back(mem.labels(rows, d.c, 10 * s + 2));
      }
      float* loss = mem.zeros(1);
      float* dlogits = mem.zeros(ls);
      const size_t scratch = backend.softmax_ce_workspace_bytes(d);
      if (scratch) backend.bind_scratch(mem.raw(scratch), scratch);
      passes.push_back({"fwd", 0, 4.0 * double(ls + rows + 1), [=](int rep) {
                          b->softmax_cross_entropy_forward(d, o, logits[pick(rep)],
                                                           labels[pick(rep)], nullptr, loss);
                        }});
      passes.push_back({"bwd", 0, 4.0 * double(2 * ls + rows), [=](int rep) {
                          b->softmax_cross_entropy_backward(
                              d, o, logits[pick(rep)], labels[pick(rep)], nullptr, 1.0f, dlogits);
                        }});
      break;
    }
    case Family::kBatchNorm: {
      const BatchNormDims d = c.bn;
      const size_t xs = size_t(d.n) * d.c * d.h * d.w, cs = size_t(d.c);
      const float eps = 1e-5f, momentum = 0.1f;
      const size_t scratch = backend.batch_norm_workspace_bytes(d);
      if (scratch) backend.bind_scratch(mem.raw(scratch), scratch);
      float* gamma = mem.random(cs, 5, 0.5f, 1.5f);
      float* beta = mem.random(cs, 6);
      float* running_mean = mem.zeros(cs);
      float* running_var = mem.random(cs, 7, 0.5f, 1.5f);
      float* y = mem.zeros(xs);
      float* dx = mem.zeros(xs);
      float* dgamma = mem.zeros(cs);
      float* dbeta = mem.zeros(cs);
      std::vector<float*> x, dy, mean, invstd;
      for (size_t s = 0; s < S; ++s) {
        x.push_back(mem.random(xs, 10 * s + 1, -2.0f, 3.0f));
        dy.push_back(mem.random(xs, 10 * s + 3));
        mean.push_back(mem.zeros(cs));
        invstd.push_back(mem.zeros(cs));
        // The backward's saved statistics.
        backend.batch_norm2d_forward_train(d, eps, momentum, x[s], gamma, beta, y, mean[s],
                                           invstd[s], running_mean, running_var);
      }
      passes.push_back({"fwd_train", 0, 4.0 * double(2 * xs + 6 * cs), [=](int rep) {
                          b->batch_norm2d_forward_train(d, eps, momentum, x[pick(rep)], gamma, beta,
                                                        y, mean[pick(rep)], invstd[pick(rep)],
                                                        running_mean, running_var);
                        }});
      passes.push_back({"bwd_train", 0, 4.0 * double(3 * xs + 5 * cs), [=](int rep) {
                          b->batch_norm2d_backward_train(d, x[pick(rep)], dy[pick(rep)], gamma,
                                                         mean[pick(rep)], invstd[pick(rep)], dx,
                                                         dgamma, dbeta);
                        }});
      passes.push_back({"fwd_infer", 0, 4.0 * double(2 * xs + 4 * cs), [=](int rep) {
                          b->batch_norm2d_forward_infer(d, eps, x[pick(rep)], gamma, beta,
                                                        running_mean, running_var, y);
                        }});
      break;
    }
    case Family::kElementwise: {
      const int64_t n = c.count;
      const auto count = static_cast<size_t>(n);
      std::vector<float*> x, dy, other;
      for (size_t s = 0; s < S; ++s) {
        x.push_back(mem.random(count, 10 * s + 1));
        dy.push_back(mem.random(count, 10 * s + 3));
        other.push_back(mem.random(count, 10 * s + 5));
      }
      float* y = mem.zeros(count);
      float* dx = mem.zeros(count);
      passes.push_back({"relu_fwd", 0, 8.0 * double(count),
                        [=](int rep) { b->relu_forward(n, x[pick(rep)], y); }});
      passes.push_back({"relu_bwd", 0, 12.0 * double(count),
                        [=](int rep) { b->relu_backward(n, x[pick(rep)], dy[pick(rep)], dx); }});
      passes.push_back({"add", 0, 12.0 * double(count),
                        [=](int rep) { b->add_forward(n, x[pick(rep)], other[pick(rep)], y); }});
      break;
    }
    case Family::kOptimizer: {
      const ModelInput input = c.model == "resnet-cifar"
                                   ? ModelInput{.channels = 3, .height = 32, .width = 32}
                                   : ModelInput{};
      auto graph = build_model(c.model, input);
      if (!graph) throw std::runtime_error(graph.error().message());
      const int64_t count = graph->param_count();
      const std::vector<ParamSegment> segments = param_segments(*graph);
      float* params = mem.random(static_cast<size_t>(count), 1, -0.1f, 0.1f);
      std::vector<float*> grads;
      for (size_t s = 0; s < S; ++s)
        grads.push_back(mem.random(static_cast<size_t>(count), 10 * s + 2, -1e-2f, 1e-2f));
      const OptimizerConfig adamw{.kind = OptimizerKind::kAdamW, .weight_decay = 5e-4};
      const OptimizerConfig sgd{
          .kind = OptimizerKind::kSgd, .momentum = 0.9, .nesterov = true, .weight_decay = 5e-4};
      const double lr = 1e-3;
      for (const auto& [name, config, bytes_per] :
           {std::tuple{"adamw", adamw, 28.0}, std::tuple{"sgd_nesterov", sgd, 20.0}}) {
        auto device_opt = backend.make_optimizer(config, segments, count);
        if (!device_opt) throw std::runtime_error(device_opt.error().message());
        if (*device_opt) {
          // cuda, emu: the fused kernel; the lr is uploaded once, each rep enqueues a step.
          std::shared_ptr<DeviceOptimizer> opt(std::move(*device_opt));
          set_error(opt->set_lr(lr));
          keep.push_back(opt);
          passes.push_back({name, 0, bytes_per * double(count),
                            [=](int rep) { opt->enqueue_step(params, grads[pick(rep)]); }});
        } else {
          // cpu: wren::Optimizer<float> on the host buffers.
          auto host_opt = Optimizer<float>::create(config, segments, count);
          if (!host_opt) throw std::runtime_error(host_opt.error().message());
          auto opt = std::make_shared<Optimizer<float>>(std::move(*host_opt));
          keep.push_back(opt);
          const auto n = static_cast<size_t>(count);
          passes.push_back({name, 0, bytes_per * double(count), [=](int rep) {
                              set_error(opt->step(std::span<float>(params, n),
                                                  std::span<const float>(grads[pick(rep)], n), lr));
                            }});
        }
      }
      break;
    }
    case Family::kAugment: {
      const int batch = c.batch;
      auto dataset = std::make_shared<Dataset>();
      dataset->channels = c.channels;
      dataset->height = c.height;
      dataset->width = c.width;
      dataset->num_classes = 10;
      dataset->count = std::max<int64_t>(4 * int64_t{batch}, 1024);
      dataset->source = "random pixels";
      dataset->pixels.resize(static_cast<size_t>(dataset->count * dataset->image_size()));
      dataset->labels.resize(static_cast<size_t>(dataset->count));
      Random rng(11);
      for (uint8_t& p : dataset->pixels) p = static_cast<uint8_t>(rng.next() & 0xff);
      for (int32_t& l : dataset->labels) l = static_cast<int32_t>(rng.next() % 10);
      auto norm = std::make_shared<Normalization>();
      norm->mean.assign(static_cast<size_t>(c.channels), 0.5f);
      norm->std.assign(static_cast<size_t>(c.channels), 0.25f);
      auto indices = std::make_shared<std::vector<std::vector<int64_t>>>(S);
      for (auto& set : *indices)
        for (int i = 0; i < batch; ++i)
          set.push_back(static_cast<int64_t>(rng.next() % static_cast<uint64_t>(dataset->count)));
      keep.push_back(dataset);
      keep.push_back(norm);
      keep.push_back(indices);
      const size_t image = static_cast<size_t>(dataset->image_size()) * size_t(batch);
      float* images = mem.zeros(image);
      auto* labels = static_cast<int32_t*>(mem.raw(size_t(batch) * sizeof(int32_t)));
      const double bytes = double(image) * 5.0 + 16.0 * batch;
      const AugmentConfig augment = c.augment;
      auto device_batcher = backend.make_batcher(*dataset, *norm, augment, batch);
      if (!device_batcher) throw std::runtime_error(device_batcher.error().message());
      if (*device_batcher) {
        std::shared_ptr<DeviceBatcher> batcher(std::move(*device_batcher));
        keep.push_back(batcher);
        passes.push_back({"batch", 0, bytes, [=](int rep) {
                            set_error(batcher->make_batch((*indices)[pick(rep)], true, 1,
                                                          static_cast<uint64_t>(rep), images,
                                                          labels));
                          }});
      } else {
        // cpu: make_batch on the host, into the backend's (host) memory.
        passes.push_back({"batch", 0, bytes, [=](int rep) {
                            make_batch<float>(*dataset, (*indices)[pick(rep)], *norm, augment, true,
                                              1, static_cast<uint64_t>(rep), images, labels);
                          }});
      }
      break;
    }
  }
  return passes;
}

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
