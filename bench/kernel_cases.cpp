// `wren-bench kernels`: the shape sets (kernel_cases.h).
#include <cstdio>
#include <string>
#include <vector>

#include "kernel_cases.h"

namespace wren::bench {
namespace {

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

}  // namespace

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

}  // namespace wren::bench
