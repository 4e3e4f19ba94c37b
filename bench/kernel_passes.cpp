// `wren-bench kernels`: the timed passes of each case, with the FLOP and byte counts of
// bench_kernels.cpp's header comment.
#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "kernel_cases.h"
#include "wren/models.h"
#include "wren/optimizer.h"

namespace wren::bench {

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

}  // namespace wren::bench
