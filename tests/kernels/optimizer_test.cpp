// The optimizer (kernels/optimizer/, include/wren/optimizer.h): the CPU step in float and double
// against docs/OPTIMIZERS.md, and the fused kernels on every device.
//
// The CPU step (kernels/optimizer/reference.cpp, wren::Optimizer<T>):
//   - every rule against a per-element double-precision transcription of the spec written
//     here (Reference), after t = 1, 2 and 10 steps of fresh random gradients and a decaying
//     lr (so a Caffe-style lr inside the momentum buffer would fail);
//   - closed forms for a constant gradient at a constant lr (SGD, momentum, dampening,
//     Nesterov, L2, Adam, AdamW);
//   - the exact sparsity pattern L1 produces on a separable quadratic;
//   - segment tables (from graphs, and hand-made ones with wd_mult 0 and lr_mult 2), clipping,
//     state handling for checkpoints, and the errors.
// Tolerances |a − b| ≤ atol + rtol·|ref|. Float: the implementation rounds each element-wise
// operation to float (~6e-8 relative) and 10 steps of O(1) values accumulate at most ~1e-6, so
// rtol 1e-5 / atol 1e-6 still fails on any wrong term (the smallest term tested, lr·wd·p, is
// ≥ 1e-4 on average). Double: the same argument at 1e-16 gives rtol 1e-12 / atol 1e-14.
//
// The kernels (kernels/optimizer/optimizer.cu: the fused step and the global gradient norm), one
// typed body per check on emu and cuda (OptimizerKernels/emu, OptimizerKernels/cuda; the cuda cases skip
// without a GPU), against the CPU reference (wren::Optimizer<float>), on the emulator under every
// fiber schedule. Every configuration runs 3 steps with fresh random gradients and a changing lr
// (read by the kernel from the device scalar block), on ref-cnn's segment table (biases wd_mult
// 0) and on a custom table with lr_mult 2, an odd parameter count and segments starting at
// offsets that are not multiples of 4; each with 16-byte aligned buffers (float4 path) and with
// buffers shifted by one float (scalar path). Parameters and optimizer state must match BIT FOR
// BIT after every step: the kernel performs the CPU loop's fp32 operations in the same order,
// with the per-step scalars formed in double and rounded once, as the CPU does.
//
// One justified exception, clipping: the kernel sums ‖g‖² in a tree order, the CPU in index
// order, so the two double norms may differ in the last bits (checked to 1e-12 relative). When
// the two clip scales round to the same float, the step is still required bit for bit; when
// they do not (one fp32 ulp apart), the parameters and state are compared with a relative
// tolerance of 1e-6 (a one-ulp change of every gradient, 6e-8 relative, carried through three
// steps).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "optimizer/optimizer.h"
#include "support/buffer.h"
#include "support/compare.h"
#include "support/device.h"
#include "support/gradcheck.h"
#include "wren/models.h"
#include "wren/optimizer.h"

namespace wren {
namespace {

// --- The CPU step --------------------------------------------------------------------------------

namespace reference_suite {

using testing::expect_all_close;

template <class T>
class OptimizerTest : public ::testing::Test {};
using Types = ::testing::Types<float, double>;
TYPED_TEST_SUITE(OptimizerTest, Types);

template <class T>
constexpr double kRtol = std::is_same_v<T, float> ? 1e-5 : 1e-12;
template <class T>
constexpr double kAtol = std::is_same_v<T, float> ? 1e-6 : 1e-14;

constexpr int64_t kCount = 203;  // odd, so nothing lines up with a power of two

// A table with bias-like segments (wd_mult 0) and lr_mult 2 segments, covering [0, 203).
std::vector<ParamSegment> mixed_segments() {
  return {{.offset = 0, .count = 90, .lr_mult = 1, .wd_mult = 1},
          {.offset = 90, .count = 7, .lr_mult = 1, .wd_mult = 0},
          {.offset = 97, .count = 60, .lr_mult = 2, .wd_mult = 1},
          {.offset = 157, .count = 11, .lr_mult = 2, .wd_mult = 0},
          {.offset = 168, .count = 35, .lr_mult = 1, .wd_mult = 1}};
}

std::vector<ParamSegment> one_segment(int64_t count) {
  return {{.offset = 0, .count = count, .lr_mult = 1, .wd_mult = 1}};
}

double sgn(double x) {
  return x > 0 ? 1.0 : (x < 0 ? -1.0 : 0.0);
}

// optimizers.md transcribed element by element in double. The default decay mode is resolved
// here from the spec (AdamW decoupled, SGD and Adam coupled), not through the library.
struct Reference {
  OptimizerConfig c;
  std::vector<double> lr_mult, wd_mult;  // per element, expanded from the segment table
  std::vector<double> p, b, m, v;        // parameters, SGD momentum, Adam moments
  int64_t t = 0;
  double norm = std::numeric_limits<double>::quiet_NaN();

  Reference(const OptimizerConfig& config, const std::vector<ParamSegment>& segments,
            std::vector<double> initial)
      : c(config), p(std::move(initial)) {
    for (const ParamSegment& s : segments)
      for (int64_t i = 0; i < s.count; ++i) {
        lr_mult.push_back(s.lr_mult);
        wd_mult.push_back(s.wd_mult);
      }
    b.assign(p.size(), 0.0);
    m.assign(p.size(), 0.0);
    v.assign(p.size(), 0.0);
  }

  void step(const std::vector<double>& grad, double lr) {
    ++t;
    double scale = 1.0;
    if (c.clip_norm > 0) {
      double sum = 0.0;
      for (double g : grad) sum += g * g;
      norm = std::sqrt(sum);
      scale = std::min(1.0, c.clip_norm / norm);
    }
    const bool wd_decoupled = c.wd_mode.has_value() ? *c.wd_mode == DecayMode::kDecoupled
                                                    : c.kind == OptimizerKind::kAdamW;
    const bool l1_decoupled = c.l1_mode == DecayMode::kDecoupled;
    for (size_t i = 0; i < p.size(); ++i) {
      const double lr_i = lr * lr_mult[i];
      const double wd_i = c.weight_decay * wd_mult[i];
      const double l1_i = c.l1 * wd_mult[i];
      const double p0 = p[i];
      double g = grad[i] * scale;
      if (!wd_decoupled) g += wd_i * p0;
      if (!l1_decoupled) g += l1_i * sgn(p0);
      if (wd_decoupled) p[i] -= lr_i * wd_i * p0;
      if (l1_decoupled) p[i] -= lr_i * l1_i * sgn(p0);
      if (c.kind == OptimizerKind::kSgd) {
        if (c.momentum != 0) {
          b[i] = t == 1 ? g : c.momentum * b[i] + (1 - c.dampening) * g;
          g = c.nesterov ? g + c.momentum * b[i] : b[i];
        }
        p[i] -= lr_i * g;
      } else {
        m[i] = c.beta1 * m[i] + (1 - c.beta1) * g;
        v[i] = c.beta2 * v[i] + (1 - c.beta2) * g * g;
        const double m_hat = m[i] / (1 - std::pow(c.beta1, static_cast<double>(t)));
        const double v_hat = v[i] / (1 - std::pow(c.beta2, static_cast<double>(t)));
        p[i] -= lr_i * m_hat / (std::sqrt(v_hat) + c.eps);
      }
    }
  }
};

template <class T>
void expect_close(std::span<const T> actual, std::span<const double> ref, const std::string& what,
                  double atol = kAtol<T>, double rtol = kRtol<T>) {
  expect_all_close<T, double>(actual, ref, atol, rtol, what);
}

template <class T>
std::vector<T> uniform(std::mt19937& gen, size_t count, double lo, double hi) {
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<T> out(count);
  for (T& e : out) e = static_cast<T>(dist(gen));
  return out;
}

template <class T>
std::vector<double> to_double(const std::vector<T>& x) {
  return std::vector<double>(x.begin(), x.end());
}

// Runs 10 steps of fresh U(−1, 1) gradients at lr_t = base_lr·(1 − 0.04·(t − 1)) through the
// optimizer and the reference from the same T-rounded start, comparing parameters and state
// after steps 1, 2 and 10.
template <class T>
void check_against_reference(const OptimizerConfig& config, std::vector<ParamSegment> segments,
                             double base_lr, uint32_t seed) {
  std::mt19937 gen(seed);
  std::vector<T> params = uniform<T>(gen, static_cast<size_t>(kCount), -1.0, 1.0);
  Reference ref(config, segments, to_double(params));
  Expected<Optimizer<T>> opt = Optimizer<T>::create(config, segments, kCount);
  ASSERT_TRUE(opt.ok()) << opt.error().message();
  for (int t = 1; t <= 10; ++t) {
    const std::vector<T> grads = uniform<T>(gen, static_cast<size_t>(kCount), -1.0, 1.0);
    const std::vector<T> grads_before = grads;
    const double lr = base_lr * (1.0 - 0.04 * (t - 1));
    const Status status = opt->step(params, grads, lr);
    ASSERT_TRUE(status.ok()) << status.message();
    ref.step(to_double(grads), lr);
    ASSERT_EQ(opt->step_count(), t);
    ASSERT_EQ(grads, grads_before) << "the step modified the gradients";
    if (config.clip_norm > 0) {
      EXPECT_NEAR(opt->last_grad_norm(), ref.norm, 1e-12 * ref.norm) << "step " << t;
    } else {
      EXPECT_TRUE(std::isnan(opt->last_grad_norm()));
    }
    if (t == 1 || t == 2 || t == 10) {
      const std::string at = " after step " + std::to_string(t);
      expect_close<T>(params, ref.p, "params" + at);
      if (config.kind == OptimizerKind::kSgd) {
        if (config.momentum > 0) expect_close<T>(opt->state("momentum"), ref.b, "momentum" + at);
      } else {
        expect_close<T>(opt->state("m"), ref.m, "m" + at);
        expect_close<T>(opt->state("v"), ref.v, "v" + at);
      }
    }
  }
}

template <class T>
void check_against_reference(const OptimizerConfig& config, double base_lr, uint32_t seed) {
  check_against_reference<T>(config, one_segment(kCount), base_lr, seed);
}

// ---------------------------------------------------------------------------------------------
// Each rule against the reference

TYPED_TEST(OptimizerTest, SgdPlain) {
  check_against_reference<TypeParam>({}, 0.1, 1);
}

TYPED_TEST(OptimizerTest, SgdMomentum) {
  check_against_reference<TypeParam>({.momentum = 0.9}, 0.1, 2);
}

TYPED_TEST(OptimizerTest, SgdMomentumDampening) {
  check_against_reference<TypeParam>({.momentum = 0.9, .dampening = 0.3}, 0.1, 3);
}

TYPED_TEST(OptimizerTest, SgdNesterov) {
  check_against_reference<TypeParam>({.momentum = 0.8, .nesterov = true}, 0.1, 4);
}

TYPED_TEST(OptimizerTest, SgdCoupledL2) {
  // wd_mode unset: coupled for SGD; the decay term then goes through the momentum buffer.
  check_against_reference<TypeParam>({.momentum = 0.9, .weight_decay = 0.05}, 0.1, 5);
  check_against_reference<TypeParam>({.weight_decay = 0.05}, 0.1, 6);
}

TYPED_TEST(OptimizerTest, SgdDecoupledSgdw) {
  check_against_reference<TypeParam>(
      {.momentum = 0.9, .weight_decay = 0.05, .wd_mode = DecayMode::kDecoupled}, 0.1, 7);
}

TYPED_TEST(OptimizerTest, SgdL1Coupled) {
  check_against_reference<TypeParam>({.momentum = 0.9, .l1 = 0.02}, 0.1, 8);
}

TYPED_TEST(OptimizerTest, SgdL1Decoupled) {
  check_against_reference<TypeParam>(
      {.momentum = 0.9, .l1 = 0.02, .l1_mode = DecayMode::kDecoupled}, 0.1, 9);
}

TYPED_TEST(OptimizerTest, SgdL2AndL1Together) {
  check_against_reference<TypeParam>(
      {.momentum = 0.9, .dampening = 0.1, .weight_decay = 0.05, .l1 = 0.02}, 0.1, 10);
  check_against_reference<TypeParam>({.momentum = 0.9,
                                      .nesterov = true,
                                      .weight_decay = 0.05,
                                      .wd_mode = DecayMode::kDecoupled,
                                      .l1 = 0.02,
                                      .l1_mode = DecayMode::kDecoupled},
                                     0.1, 11);
}

TYPED_TEST(OptimizerTest, AdamPlain) {
  check_against_reference<TypeParam>({.kind = OptimizerKind::kAdam}, 0.01, 12);
}

TYPED_TEST(OptimizerTest, AdamCoupledL2) {
  check_against_reference<TypeParam>({.kind = OptimizerKind::kAdam, .weight_decay = 0.1}, 0.01, 13);
}

TYPED_TEST(OptimizerTest, AdamWDecoupled) {
  // wd_mode unset: decoupled for AdamW. A large wd so that the decay term dominates the error
  // budget: lr·wd·|p| ≈ 5e-3 per step.
  check_against_reference<TypeParam>({.kind = OptimizerKind::kAdamW, .weight_decay = 0.5}, 0.01,
                                     14);
  // Adam with decoupled decay is AdamW.
  check_against_reference<TypeParam>(
      {.kind = OptimizerKind::kAdam, .weight_decay = 0.5, .wd_mode = DecayMode::kDecoupled}, 0.01,
      15);
  // Non-default betas and ε exercise the bias corrections.
  check_against_reference<TypeParam>({.kind = OptimizerKind::kAdamW,
                                      .beta1 = 0.5,
                                      .beta2 = 0.9,
                                      .eps = 1e-3,
                                      .weight_decay = 1e-2},
                                     0.01, 16);
}

TYPED_TEST(OptimizerTest, AdamWithL1) {
  check_against_reference<TypeParam>({.kind = OptimizerKind::kAdam, .l1 = 0.05}, 0.01, 17);
  check_against_reference<TypeParam>({.kind = OptimizerKind::kAdamW,
                                      .weight_decay = 1e-2,
                                      .l1 = 0.05,
                                      .l1_mode = DecayMode::kDecoupled},
                                     0.01, 18);
}

TYPED_TEST(OptimizerTest, SegmentMultipliers) {
  using T = TypeParam;
  check_against_reference<T>({.momentum = 0.9, .weight_decay = 0.05, .l1 = 0.02}, mixed_segments(),
                             0.1, 19);
  check_against_reference<T>({.momentum = 0.9,
                              .weight_decay = 0.05,
                              .wd_mode = DecayMode::kDecoupled,
                              .l1 = 0.02,
                              .l1_mode = DecayMode::kDecoupled},
                             mixed_segments(), 0.1, 20);
  check_against_reference<T>({.kind = OptimizerKind::kAdam, .weight_decay = 0.1, .l1 = 0.05},
                             mixed_segments(), 0.01, 21);
  check_against_reference<T>({.kind = OptimizerKind::kAdamW,
                              .weight_decay = 0.5,
                              .l1 = 0.05,
                              .l1_mode = DecayMode::kDecoupled},
                             mixed_segments(), 0.01, 22);
}

// With zero gradients only the decay acts: wd_mult 0 elements stay bit for bit, the others
// shrink by exactly the factor of their segment.
TYPED_TEST(OptimizerTest, ZeroWdMultSegmentsAreNotDecayed) {
  using T = TypeParam;
  const double lr = 0.1, wd = 0.05;
  for (const DecayMode mode : {DecayMode::kCoupled, DecayMode::kDecoupled}) {
    SCOPED_TRACE(to_string(mode));
    std::mt19937 gen(23);
    std::vector<T> params = uniform<T>(gen, static_cast<size_t>(kCount), -1.0, 1.0);
    const std::vector<T> start = params;
    const std::vector<T> zeros(static_cast<size_t>(kCount), T(0));
    auto opt = Optimizer<T>::create({.weight_decay = wd, .wd_mode = mode, .l1 = 0.01},
                                    mixed_segments(), kCount);
    ASSERT_TRUE(opt.ok()) << opt.error().message();
    ASSERT_TRUE(opt->step(params, zeros, lr).ok());
    for (const ParamSegment& s : mixed_segments()) {
      for (int64_t i = s.offset; i < s.offset + s.count; ++i) {
        const size_t k = static_cast<size_t>(i);
        if (s.wd_mult == 0) {
          EXPECT_EQ(params[k], start[k]) << "element " << i << " of a wd_mult 0 segment";
        } else {
          const double p0 = start[k];
          const double expected = p0 - lr * s.lr_mult * (wd * p0 + 0.01 * sgn(p0));
          EXPECT_NEAR(params[k], expected, kAtol<T> + kRtol<T> * std::fabs(expected)) << i;
          EXPECT_NE(params[k], start[k]) << i;
        }
      }
    }
  }
}

// sign(0) = 0: a weight at exactly 0 with a zero gradient stays at 0 under L1, in both modes
// and for both kinds (Adam: g = 0 gives m = v = 0 and a step of 0/(0 + ε)).
TYPED_TEST(OptimizerTest, L1SignOfZeroIsZero) {
  using T = TypeParam;
  for (const OptimizerKind kind : {OptimizerKind::kSgd, OptimizerKind::kAdam}) {
    for (const DecayMode mode : {DecayMode::kCoupled, DecayMode::kDecoupled}) {
      SCOPED_TRACE(std::string(to_string(kind)) + ", " + to_string(mode));
      std::vector<T> params = {T(0), T(0.5), T(-0.5)};
      auto opt =
          Optimizer<T>::create({.kind = kind, .l1 = 0.1, .l1_mode = mode}, one_segment(3), 3);
      ASSERT_TRUE(opt.ok());
      for (int t = 0; t < 3; ++t) ASSERT_TRUE(opt->step(params, std::vector<T>(3, T(0)), 0.1).ok());
      EXPECT_EQ(params[0], T(0));
      EXPECT_LT(params[1], T(0.5));
      EXPECT_GT(params[2], T(-0.5));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Clipping

TYPED_TEST(OptimizerTest, ClippingAgainstReference) {
  using T = TypeParam;
  // ‖g‖ of 203 U(−1, 1) values is ≈ √(203/3) ≈ 8.2: c = 1 clips every step.
  check_against_reference<T>({.momentum = 0.9, .weight_decay = 0.05, .clip_norm = 1.0}, 0.1, 24);
  check_against_reference<T>({.kind = OptimizerKind::kAdamW, .weight_decay = 0.1, .clip_norm = 1.0},
                             mixed_segments(), 0.01, 25);
}

// Clipping only acts above c: at c ≥ ‖g‖ the step is bit for bit the unclipped one, and just
// below ‖g‖ it is not. The norm is reported before clipping.
TYPED_TEST(OptimizerTest, ClippingOnlyAboveThreshold) {
  using T = TypeParam;
  std::mt19937 gen(26);
  const std::vector<T> start = uniform<T>(gen, static_cast<size_t>(kCount), -1.0, 1.0);
  const std::vector<T> grads = uniform<T>(gen, static_cast<size_t>(kCount), -1.0, 1.0);
  double sum = 0.0;
  for (T g : grads) sum += static_cast<double>(g) * static_cast<double>(g);
  const double norm = std::sqrt(sum);

  auto run = [&](double clip_norm, double* reported) {
    std::vector<T> params = start;
    auto opt = Optimizer<T>::create({.momentum = 0.9, .clip_norm = clip_norm}, one_segment(kCount),
                                    kCount);
    EXPECT_TRUE(opt.ok());
    EXPECT_TRUE(opt->step(params, grads, 0.1).ok());
    if (reported) *reported = opt->last_grad_norm();
    return params;
  };
  const std::vector<T> unclipped = run(0.0, nullptr);
  double reported = 0.0;
  EXPECT_EQ(run(norm, &reported), unclipped) << "c = ‖g‖ must not scale";
  EXPECT_NEAR(reported, norm, 1e-12 * norm);
  EXPECT_EQ(run(norm * (1 + 1e-6), nullptr), unclipped) << "c > ‖g‖ must not scale up";
  EXPECT_EQ(run(10 * norm, &reported), unclipped) << "c > ‖g‖ must not scale";
  const std::vector<T> clipped = run(0.5 * norm, &reported);
  EXPECT_NEAR(reported, norm, 1e-12 * norm);
  // Plain momentum at t = 1 is p − lr·g·scale: the scaled step is exactly half.
  for (size_t i = 0; i < start.size(); ++i) {
    const double expected = start[i] - 0.1 * 0.5 * static_cast<double>(grads[i]);
    EXPECT_NEAR(clipped[i], expected, kAtol<T> + kRtol<T> * std::fabs(expected)) << i;
  }
  EXPECT_NE(run(norm * (1 - 1e-3), nullptr), unclipped);
}

TYPED_TEST(OptimizerTest, NonFiniteGradientNormIsANumericError) {
  using T = TypeParam;
  for (const T bad : {std::numeric_limits<T>::infinity(), std::numeric_limits<T>::quiet_NaN()}) {
    std::vector<T> params = {T(1), T(-2), T(3)};
    const std::vector<T> start = params;
    auto opt = Optimizer<T>::create({.momentum = 0.9, .clip_norm = 1.0}, one_segment(3), 3);
    ASSERT_TRUE(opt.ok());
    ASSERT_TRUE(opt->step(params, std::vector<T>{T(0.1), T(0.2), T(0.3)}, 0.1).ok());
    const std::vector<T> after_one = params;
    const Status status = opt->step(params, std::vector<T>{T(0.1), bad, T(0.3)}, 0.1);
    ASSERT_FALSE(status.ok());
    EXPECT_EQ(status.error().code(), ErrorCode::kNumericError);
    EXPECT_NE(status.message().find("step 2"), std::string::npos) << status.message();
    EXPECT_EQ(params, after_one) << "a rejected step must not touch the parameters";
    EXPECT_EQ(opt->step_count(), 1);
  }
}

// The non-finite check (--on-nonfinite): every step computes the norm. A finite step is bit for
// bit the unchecked one; a NaN or an infinity anywhere in the gradients rejects the step
// (kNumericError naming it) with the parameters, the state and the step count untouched, and
// the run then continues as if that step had never been asked for.
TYPED_TEST(OptimizerTest, CheckFiniteSkipsANonFiniteStepAndChangesNothingElse) {
  using T = TypeParam;
  std::mt19937 gen(31);
  const std::vector<T> start = uniform<T>(gen, static_cast<size_t>(kCount), -1.0, 1.0);
  std::vector<std::vector<T>> grads;
  for (int s = 0; s < 3; ++s)
    grads.push_back(uniform<T>(gen, static_cast<size_t>(kCount), -1.0, 1.0));
  auto same_bits = [](std::span<const T> a, std::span<const T> b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size_bytes()) == 0;
  };
  const OptimizerConfig configs[] = {
      {.kind = OptimizerKind::kAdamW, .weight_decay = 1e-2, .l1 = 1e-3},
      {.kind = OptimizerKind::kSgd, .momentum = 0.9, .nesterov = true, .weight_decay = 1e-2},
      {.kind = OptimizerKind::kSgd, .momentum = 0.9, .clip_norm = 1.0},
  };
  for (const OptimizerConfig& base : configs) {
    SCOPED_TRACE(to_string(base.kind));
    OptimizerConfig checked = base;
    checked.check_finite = true;
    auto plain = Optimizer<T>::create(base, mixed_segments(), kCount);
    auto check = Optimizer<T>::create(checked, mixed_segments(), kCount);
    ASSERT_TRUE(plain.ok() && check.ok());
    std::vector<T> p_plain = start, p_check = start;
    ASSERT_TRUE(plain->step(p_plain, grads[0], 0.1).ok());
    ASSERT_TRUE(check->step(p_check, grads[0], 0.1).ok());
    EXPECT_TRUE(same_bits(p_plain, p_check));
    EXPECT_TRUE(std::isfinite(check->last_grad_norm()));

    const std::vector<T> after_one = p_check;
    for (const T bad : {std::numeric_limits<T>::quiet_NaN(), std::numeric_limits<T>::infinity(),
                        -std::numeric_limits<T>::infinity()}) {
      std::vector<T> poisoned = grads[1];
      poisoned[static_cast<size_t>(kCount / 2)] = bad;
      const Status status = check->step(p_check, poisoned, 0.05);
      ASSERT_FALSE(status.ok());
      EXPECT_EQ(status.error().code(), ErrorCode::kNumericError);
      EXPECT_NE(status.message().find("step 2"), std::string::npos) << status.message();
      EXPECT_TRUE(same_bits(p_check, after_one)) << "a skipped step must not touch the parameters";
      EXPECT_EQ(check->step_count(), 1);
      EXPECT_FALSE(std::isfinite(check->last_grad_norm()));
      for (const std::string& name : check->state_names())
        EXPECT_TRUE(same_bits(std::as_const(*check).state(name), std::as_const(*plain).state(name)))
            << name << " must be untouched";
    }
    for (int s = 1; s < 3; ++s) {
      ASSERT_TRUE(plain->step(p_plain, grads[static_cast<size_t>(s)], 0.05).ok());
      ASSERT_TRUE(check->step(p_check, grads[static_cast<size_t>(s)], 0.05).ok());
    }
    EXPECT_TRUE(same_bits(p_plain, p_check)) << "the skipped step left no trace";
    for (const std::string& name : check->state_names())
      EXPECT_TRUE(same_bits(std::as_const(*check).state(name), std::as_const(*plain).state(name)))
          << name;
    EXPECT_EQ(check->step_count(), 3);
  }
}

// ---------------------------------------------------------------------------------------------
// Closed forms: a constant gradient g (per element) at a constant lr, no clipping.
//
// SGD, momentum μ, dampening d:  b_1 = g,  b_s = μ·b_{s−1} + (1 − d)·g.
//   With b* = (1 − d)·g/(1 − μ) (the fixed point), b_s − b* = μ^{s−1}·(b_1 − b*), so
//   b_s = b* + μ^{s−1}·(g − b*)  and  Σ_{s=1..t} b_s = t·b* + (g − b*)·(1 − μ^t)/(1 − μ).
//   (d = 0: b_s = g·(1 − μ^s)/(1 − μ).)
//   Heavy ball:  p_t = p_0 − lr·Σ b_s.   Nesterov (d = 0):  p_t = p_0 − lr·(t·g + μ·Σ b_s).
// Plain SGD with L2 wd (coupled or decoupled: for plain SGD both give p ← (1 − lr·wd)·p − lr·g):
//   p_t = p* + (1 − lr·wd)^t·(p_0 − p*),  p* = −g/wd.
// Adam: m_t = (1 − β1^t)·g and v_t = (1 − β2^t)·g², so m̂ = g, v̂ = g² and every step is
//   u = g/(|g| + ε):  p_t = p_0 − t·lr·u.
// AdamW: p ← (1 − lr·wd)·p − lr·u, the same recurrence as SGD with L2:  p* = −u/wd.

template <class T>
void check_closed_form(const OptimizerConfig& config, double lr, uint32_t seed,
                       const std::function<double(double p0, double g, int t)>& closed_form) {
  std::mt19937 gen(seed);
  const size_t n = 101;
  std::vector<T> params = uniform<T>(gen, n, -1.0, 1.0);
  // |g| in [0.1, 1] with a random sign: u = g/(|g| + ε) is then well away from 0.
  std::vector<T> grads = uniform<T>(gen, n, 0.1, 1.0);
  std::bernoulli_distribution coin(0.5);
  for (T& g : grads) g = coin(gen) ? g : -g;
  const std::vector<T> start = params;
  auto opt =
      Optimizer<T>::create(config, one_segment(static_cast<int64_t>(n)), static_cast<int64_t>(n));
  ASSERT_TRUE(opt.ok()) << opt.error().message();
  for (int t = 1; t <= 20; ++t) {
    ASSERT_TRUE(opt->step(params, grads, lr).ok());
    if (t == 1 || t == 2 || t == 10 || t == 20) {
      std::vector<double> expected(n);
      for (size_t i = 0; i < n; ++i) expected[i] = closed_form(start[i], grads[i], t);
      expect_close<T>(params, expected, "closed form after step " + std::to_string(t));
    }
  }
}

TYPED_TEST(OptimizerTest, SgdClosedForms) {
  using T = TypeParam;
  const double lr = 0.05;
  check_closed_form<T>({}, lr, 30, [&](double p0, double g, int t) { return p0 - t * lr * g; });

  for (const double mu : {0.5, 0.9}) {
    for (const double d : {0.0, 0.4}) {
      SCOPED_TRACE("momentum " + std::to_string(mu) + ", dampening " + std::to_string(d));
      auto sum_b = [=](double g, int t) {
        const double b_star = (1 - d) * g / (1 - mu);
        return t * b_star + (g - b_star) * (1 - std::pow(mu, t)) / (1 - mu);
      };
      check_closed_form<T>({.momentum = mu, .dampening = d}, lr, 31,
                           [&](double p0, double g, int t) { return p0 - lr * sum_b(g, t); });
      if (d == 0.0) {
        check_closed_form<T>(
            {.momentum = mu, .nesterov = true}, lr, 32,
            [&](double p0, double g, int t) { return p0 - lr * (t * g + mu * sum_b(g, t)); });
      }
    }
  }

  const double wd = 0.2;
  for (const DecayMode mode : {DecayMode::kCoupled, DecayMode::kDecoupled}) {
    SCOPED_TRACE(to_string(mode));
    check_closed_form<T>({.weight_decay = wd, .wd_mode = mode}, lr, 33,
                         [&](double p0, double g, int t) {
                           const double p_star = -g / wd;
                           return p_star + std::pow(1 - lr * wd, t) * (p0 - p_star);
                         });
  }
}

TYPED_TEST(OptimizerTest, AdamClosedForms) {
  using T = TypeParam;
  const double lr = 0.01, eps = 1e-8;
  check_closed_form<T>({.kind = OptimizerKind::kAdam}, lr, 34, [&](double p0, double g, int t) {
    return p0 - t * lr * g / (std::fabs(g) + eps);
  });
  const double wd = 0.5;
  check_closed_form<T>({.kind = OptimizerKind::kAdamW, .weight_decay = wd}, lr, 35,
                       [&](double p0, double g, int t) {
                         const double p_star = -(g / (std::fabs(g) + eps)) / wd;
                         return p_star + std::pow(1 - lr * wd, t) * (p0 - p_star);
                       });
}

// ---------------------------------------------------------------------------------------------
// L1 sparsity on a separable quadratic: loss ½·Σ(p_i − a_i)², so g = p − a, plain SGD with
// L1 coefficient l1 at lr < 1. Coupled and decoupled L1 are the same map for plain SGD:
//   p ← p − lr·(p − a) − lr·l1·sign(p).
// |a| > l1: on the side sign(p) = sign(a) the map is p ← (1 − lr)·p + lr·(a − l1·sign(a)), a
//   contraction towards p* = a − l1·sign(a), which has that same sign; from the other side (or
//   0) each step moves p towards it by at least lr·(|a| − l1), so p crosses over and converges.
// |a| < l1: for p > 0, p' − p = −lr·(p − a + l1) ≤ −lr·(l1 − |a|) < 0, and for p < 0 the step
//   is ≥ lr·(l1 − |a|) > 0: p is driven to 0 from both sides and can never settle. The band
//   [lr·(a − l1), lr·(a + l1)] is invariant: from p ∈ (0, lr·(a + l1)],
//   p' = (1 − lr)·p + lr·(a − l1) ∈ (lr·(a − l1), lr·(a + l1)], symmetrically from p < 0, and
//   p = 0 maps to lr·a. So p ends oscillating inside the band (half-width < 2·lr·l1), not at
//   a − l1·sign(a).
// With l1 = 0.5 and lr = 0.1, picking |a| ≤ 0.4 for exactly 37 of 100 weights and |a| ≥ 0.7
// for the others, after 2000 steps exactly those 37 lie within 2·lr·l1 = 0.1 of zero and the
// other 63 sit at a − l1·sign(a) (|p| ≥ 0.2).
TYPED_TEST(OptimizerTest, L1ProducesThePredictedSparsity) {
  using T = TypeParam;
  const double lr = 0.1, l1 = 0.5;
  const size_t n = 100, n_small = 37;
  for (const DecayMode mode : {DecayMode::kCoupled, DecayMode::kDecoupled}) {
    SCOPED_TRACE(to_string(mode));
    std::mt19937 gen(40);
    std::vector<T> a = uniform<T>(gen, n_small, 0.0, 0.4);
    const std::vector<T> large = uniform<T>(gen, n - n_small, 0.7, 1.5);
    a.insert(a.end(), large.begin(), large.end());
    std::shuffle(a.begin(), a.end(), gen);
    std::bernoulli_distribution coin(0.5);
    for (T& e : a) e = coin(gen) ? e : -e;
    std::vector<T> params = uniform<T>(gen, n, -1.0, 1.0);

    auto opt = Optimizer<T>::create({.l1 = l1, .l1_mode = mode},
                                    one_segment(static_cast<int64_t>(n)), static_cast<int64_t>(n));
    ASSERT_TRUE(opt.ok()) << opt.error().message();
    std::vector<T> grads(n);
    size_t band_violations = 0;
    for (int t = 1; t <= 2000; ++t) {
      for (size_t i = 0; i < n; ++i) grads[i] = params[i] - a[i];
      ASSERT_TRUE(opt->step(params, grads, lr).ok());
      if (t <= 1900) continue;
      // The last 100 steps: every small-|a| weight stays in its band (up to rounding).
      for (size_t i = 0; i < n; ++i) {
        const double ai = a[i], p = params[i];
        if (std::fabs(ai) < l1 &&
            !(p >= lr * (ai - l1) - kAtol<T> && p <= lr * (ai + l1) + kAtol<T>))
          ++band_violations;
      }
    }
    EXPECT_EQ(band_violations, 0u);
    size_t near_zero = 0;
    for (size_t i = 0; i < n; ++i) {
      const double ai = a[i], p = params[i];
      if (std::fabs(p) < 2 * lr * l1) ++near_zero;
      if (std::fabs(ai) > l1) {
        const double p_star = ai - l1 * sgn(ai);
        EXPECT_NEAR(p, p_star, kAtol<T> + kRtol<T> * std::fabs(p_star)) << "weight " << i;
      } else {
        EXPECT_LT(std::fabs(p), 2 * lr * l1) << "weight " << i << " (a = " << ai << ")";
      }
    }
    EXPECT_EQ(near_zero, n_small);
  }
}

// ---------------------------------------------------------------------------------------------
// State, checkpoints, errors

TYPED_TEST(OptimizerTest, StateBuffersPerKind) {
  using T = TypeParam;
  auto sgd = Optimizer<T>::create({}, one_segment(5), 5);
  ASSERT_TRUE(sgd.ok());
  EXPECT_TRUE(sgd->state_names().empty());
  EXPECT_TRUE(sgd->state("momentum").empty());

  auto heavy = Optimizer<T>::create({.momentum = 0.9}, one_segment(5), 5);
  ASSERT_TRUE(heavy.ok());
  EXPECT_EQ(heavy->state_names(), std::vector<std::string>{"momentum"});
  EXPECT_EQ(heavy->state("momentum").size(), 5u);
  EXPECT_TRUE(heavy->state("m").empty());

  for (const OptimizerKind kind : {OptimizerKind::kAdam, OptimizerKind::kAdamW}) {
    auto adam = Optimizer<T>::create({.kind = kind}, one_segment(5), 5);
    ASSERT_TRUE(adam.ok());
    EXPECT_EQ(adam->state_names(), (std::vector<std::string>{"m", "v"}));
    EXPECT_EQ(adam->state("m").size(), 5u);
    EXPECT_EQ(adam->state("v").size(), 5u);
    EXPECT_TRUE(adam->state("momentum").empty());
    EXPECT_TRUE(adam->state("nonsense").empty());
    for (T x : adam->state("v")) EXPECT_EQ(x, T(0));
    EXPECT_EQ(adam->step_count(), 0);
    EXPECT_TRUE(std::isnan(adam->last_grad_norm()));
  }
}

// A run interrupted after 4 steps and resumed in a fresh optimizer from the state buffers and
// the step count continues bit for bit as if uninterrupted.
TYPED_TEST(OptimizerTest, ResumeFromStateIsExact) {
  using T = TypeParam;
  for (const OptimizerConfig& config :
       {OptimizerConfig{.momentum = 0.9, .weight_decay = 0.01},
        OptimizerConfig{.kind = OptimizerKind::kAdamW, .weight_decay = 0.01}}) {
    std::mt19937 gen(50);
    std::vector<T> p_run = uniform<T>(gen, 64, -1.0, 1.0);
    std::vector<std::vector<T>> grads;
    for (int t = 0; t < 10; ++t) grads.push_back(uniform<T>(gen, 64, -1.0, 1.0));
    auto whole = Optimizer<T>::create(config, one_segment(64), 64);
    auto first = Optimizer<T>::create(config, one_segment(64), 64);
    auto second = Optimizer<T>::create(config, one_segment(64), 64);
    ASSERT_TRUE(whole.ok() && first.ok() && second.ok());
    std::vector<T> p_resumed = p_run;
    for (int t = 0; t < 10; ++t) ASSERT_TRUE(whole->step(p_run, grads[t], 0.05).ok());
    for (int t = 0; t < 4; ++t) ASSERT_TRUE(first->step(p_resumed, grads[t], 0.05).ok());
    for (const std::string& name : first->state_names()) {
      std::span<const T> saved = first->state(name);
      std::copy(saved.begin(), saved.end(), second->state(name).begin());
    }
    second->set_step_count(first->step_count());
    for (int t = 4; t < 10; ++t) ASSERT_TRUE(second->step(p_resumed, grads[t], 0.05).ok());
    EXPECT_EQ(p_resumed, p_run) << to_string(config.kind);
    EXPECT_EQ(second->step_count(), 10);
  }
}

TYPED_TEST(OptimizerTest, StepRejectsBadArguments) {
  using T = TypeParam;
  auto opt = Optimizer<T>::create({.momentum = 0.9}, one_segment(4), 4);
  ASSERT_TRUE(opt.ok());
  std::vector<T> params = {T(1), T(2), T(3), T(4)};
  const std::vector<T> start = params;
  const std::vector<T> grads = {T(1), T(1), T(1), T(1)};
  std::vector<T> short_params = {T(1), T(2), T(3)};
  auto expect_invalid = [&](const Status& status, const std::string& mentions) {
    ASSERT_FALSE(status.ok());
    EXPECT_EQ(status.error().code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(status.message().find(mentions), std::string::npos) << status.message();
  };
  expect_invalid(opt->step(short_params, grads, 0.1), "4 elements");
  expect_invalid(opt->step(params, std::vector<T>{T(1)}, 0.1), "4 elements");
  expect_invalid(opt->step(params, grads, -0.1), "learning rate");
  expect_invalid(opt->step(params, grads, std::numeric_limits<double>::quiet_NaN()),
                 "learning rate");
  expect_invalid(opt->step(params, grads, std::numeric_limits<double>::infinity()),
                 "learning rate");
  EXPECT_EQ(params, start);
  EXPECT_EQ(opt->step_count(), 0);
  opt->set_step_count(-3);
  expect_invalid(opt->step(params, grads, 0.1), "step count");
  EXPECT_EQ(params, start);
}

TEST(OptimizerConfigTest, DefaultsAndDecayModes) {
  const OptimizerConfig defaults;
  EXPECT_TRUE(defaults.validate().ok());
  EXPECT_EQ(defaults.kind, OptimizerKind::kSgd);
  EXPECT_EQ(defaults.beta1, 0.9);
  EXPECT_EQ(defaults.beta2, 0.999);
  EXPECT_EQ(defaults.eps, 1e-8);
  EXPECT_EQ(defaults.weight_decay, 0.0);
  EXPECT_EQ(OptimizerConfig::kAdamWDefaultWeightDecay, 1e-2);
  EXPECT_EQ(defaults.weight_decay_mode(), DecayMode::kCoupled);
  EXPECT_EQ(OptimizerConfig{.kind = OptimizerKind::kAdam}.weight_decay_mode(), DecayMode::kCoupled);
  EXPECT_EQ(OptimizerConfig{.kind = OptimizerKind::kAdamW}.weight_decay_mode(),
            DecayMode::kDecoupled);
  EXPECT_EQ(OptimizerConfig{.wd_mode = DecayMode::kDecoupled}.weight_decay_mode(),
            DecayMode::kDecoupled);
}

TEST(OptimizerConfigTest, ValidationErrorsNameTheOption) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  struct Bad {
    OptimizerConfig config;
    const char* message;
  };
  const Bad cases[] = {
      {{.nesterov = true}, "--nesterov requires --momentum > 0 and --dampening 0"},
      {{.momentum = 0.9, .dampening = 0.1, .nesterov = true},
       "--nesterov requires --momentum > 0 and --dampening 0"},
      {{.weight_decay = -1e-4}, "--wd must be >= 0"},
      {{.weight_decay = inf}, "--wd must be a finite number"},
      {{.momentum = nan}, "--momentum must be a finite number"},
      {{.momentum = -0.1}, "--momentum must be in [0, 1)"},
      {{.momentum = 1.0}, "--momentum must be in [0, 1)"},
      {{.dampening = 1.5}, "--dampening must be in [0, 1]"},
      {{.beta1 = 1.0}, "--beta1 must be in [0, 1)"},
      {{.beta2 = -0.5}, "--beta2 must be in [0, 1)"},
      {{.eps = 0.0}, "--eps must be > 0"},
      {{.l1 = -1.0}, "--l1 must be >= 0"},
      {{.clip_norm = -1.0}, "--clip-norm must be >= 0"},
      {{.kind = OptimizerKind::kAdam, .momentum = 0.9}, "--opt sgd only"},
      {{.kind = OptimizerKind::kAdamW, .wd_mode = DecayMode::kCoupled}, "--opt adamw"},
  };
  for (const Bad& bad : cases) {
    const Status status = bad.config.validate();
    ASSERT_FALSE(status.ok()) << bad.message;
    EXPECT_EQ(status.error().code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(status.message().find(bad.message), std::string::npos) << status.message();
    // create() refuses the same config with the same message.
    Expected<Optimizer<float>> opt = Optimizer<float>::create(bad.config, one_segment(3), 3);
    ASSERT_FALSE(opt.ok());
    EXPECT_EQ(opt.error().message(), status.message());
  }
  EXPECT_TRUE((OptimizerConfig{.momentum = 0.9, .nesterov = true}).validate().ok());
  EXPECT_TRUE((OptimizerConfig{.kind = OptimizerKind::kAdam, .wd_mode = DecayMode::kDecoupled})
                  .validate()
                  .ok());
}

// ---------------------------------------------------------------------------------------------
// Segment tables

TEST(OptimizerSegmentsTest, BadTablesAreRejected) {
  using S = ParamSegment;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  struct Bad {
    std::vector<S> segments;
    int64_t count;
    const char* message;
  };
  const Bad cases[] = {
      {{{.offset = 0, .count = 4}, {.offset = 5, .count = 5}}, 10, "previous segment ends at 4"},
      {{{.offset = 0, .count = 6}, {.offset = 5, .count = 5}}, 10, "previous segment ends at 6"},
      {{{.offset = 5, .count = 5}, {.offset = 0, .count = 5}}, 10, "starts at 5"},
      {{{.offset = 0, .count = 0}, {.offset = 0, .count = 10}}, 10, "count must be > 0"},
      {{{.offset = 0, .count = 8}}, 10, "cover [0, 8) but the model has 10"},
      {{{.offset = 0, .count = 12}}, 10, "ends past the parameter count 10"},
      {{}, 10, "cover [0, 0) but the model has 10"},
      {{{.offset = 0, .count = 10, .lr_mult = -1}}, 10, "must be finite and >= 0"},
      {{{.offset = 0, .count = 10, .wd_mult = nan}}, 10, "must be finite and >= 0"},
  };
  for (const Bad& bad : cases) {
    Expected<Optimizer<double>> opt = Optimizer<double>::create({}, bad.segments, bad.count);
    ASSERT_FALSE(opt.ok()) << bad.message;
    EXPECT_EQ(opt.error().code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(opt.error().message().find(bad.message), std::string::npos) << opt.error().message();
  }
  EXPECT_TRUE(Optimizer<double>::create({}, {}, 0).ok());  // a model without parameters
}

void expect_segments(const std::vector<ParamSegment>& actual,
                     const std::vector<ParamSegment>& expected) {
  ASSERT_EQ(actual.size(), expected.size());
  for (size_t k = 0; k < actual.size(); ++k) {
    EXPECT_EQ(actual[k].offset, expected[k].offset) << "segment " << k;
    EXPECT_EQ(actual[k].count, expected[k].count) << "segment " << k;
    EXPECT_EQ(actual[k].lr_mult, expected[k].lr_mult) << "segment " << k;
    EXPECT_EQ(actual[k].wd_mult, expected[k].wd_mult) << "segment " << k;
  }
}

TEST(OptimizerSegmentsTest, FromGraphMergesEqualNeighbours) {
  // c1.weight [4,3,3,3] = 108, c1.bias 4, fc.weight [5, 256] = 1280, fc.bias 5.
  Graph g;
  Value x = g.input("image", Shape{3, 8, 8});
  Value y = g.labels("label");
  x = g.conv2d("c1", x, {.out_channels = 4, .kernel = {3, 3}, .padding = {1, 1}});
  Value logits = g.linear("fc", g.flatten(x), {.out_features = 5});
  g.softmax_cross_entropy("loss", logits, y);
  ASSERT_TRUE(g.status().ok()) << g.status().message();
  ASSERT_EQ(g.param_count(), 1397);

  expect_segments(param_segments(g), {{.offset = 0, .count = 108, .lr_mult = 1, .wd_mult = 1},
                                      {.offset = 108, .count = 4, .lr_mult = 1, .wd_mult = 0},
                                      {.offset = 112, .count = 1280, .lr_mult = 1, .wd_mult = 1},
                                      {.offset = 1392, .count = 5, .lr_mult = 1, .wd_mult = 0}});
  ASSERT_TRUE(g.set_param_multipliers("c1.bias", 1.0f, 1.0f).ok());
  expect_segments(param_segments(g), {{.offset = 0, .count = 1392, .lr_mult = 1, .wd_mult = 1},
                                      {.offset = 1392, .count = 5, .lr_mult = 1, .wd_mult = 0}});
  ASSERT_TRUE(g.set_param_multipliers("fc.weight", 2.0f, 1.0f).ok());
  expect_segments(param_segments(g), {{.offset = 0, .count = 112, .lr_mult = 1, .wd_mult = 1},
                                      {.offset = 112, .count = 1280, .lr_mult = 2, .wd_mult = 1},
                                      {.offset = 1392, .count = 5, .lr_mult = 1, .wd_mult = 0}});
  EXPECT_TRUE(validate_segments(param_segments(g), g.param_count()).ok());
}

// Every parameter of a zoo model lies inside one segment carrying its multipliers: biases and
// batch-norm parameters wd_mult 0, weights 1; the table covers [0, param_count) in order.
void expect_model_segments(const char* model, size_t expected_segments) {
  SCOPED_TRACE(model);
  Expected<Graph> g = build_model(model);
  ASSERT_TRUE(g.ok()) << g.error().message();
  const std::vector<ParamSegment> segments = param_segments(*g);
  EXPECT_EQ(segments.size(), expected_segments);
  EXPECT_TRUE(validate_segments(segments, g->param_count()).ok());
  for (const ParamInfo& p : g->params()) {
    const bool no_decay = p.name.ends_with(".bias") || p.name.starts_with("bn");
    auto seg = std::find_if(segments.begin(), segments.end(), [&](const ParamSegment& s) {
      return s.offset <= p.offset && p.offset < s.offset + s.count;
    });
    ASSERT_NE(seg, segments.end()) << p.name;
    EXPECT_LE(p.offset + p.shape.numel(), seg->offset + seg->count) << p.name;
    EXPECT_EQ(seg->wd_mult, no_decay ? 0.0f : 1.0f) << p.name;
    EXPECT_EQ(seg->lr_mult, 1.0f) << p.name;
  }
}

TEST(OptimizerSegmentsTest, RefCnnBiasesHaveNoDecay) {
  // conv1.w | conv1.b | conv2.w | conv2.b | fc1.w | fc1.b | fc2.w | fc2.b: nothing merges.
  expect_model_segments("ref-cnn", 8);
  // conv1.w | bn1.w bn1.b | conv2.w | bn2.w bn2.b | fc1.w | fc1.b | fc2.w | fc2.b
  expect_model_segments("ref-cnn-bn", 8);
}

// End to end on ref-cnn's table: SGDW with zero gradients leaves every bias bit for bit and
// shrinks every weight by (1 − lr·wd).
TEST(OptimizerSegmentsTest, RefCnnDecoupledDecaySkipsBiases) {
  Expected<Graph> g = build_model("ref-cnn");
  ASSERT_TRUE(g.ok());
  const int64_t n = g->param_count();
  auto opt = Optimizer<double>::create({.weight_decay = 0.1, .wd_mode = DecayMode::kDecoupled},
                                       param_segments(*g), n);
  ASSERT_TRUE(opt.ok()) << opt.error().message();
  std::vector<double> params(static_cast<size_t>(n), 1.0);
  ASSERT_TRUE(opt->step(params, std::vector<double>(static_cast<size_t>(n), 0.0), 0.5).ok());
  for (const ParamInfo& p : g->params()) {
    const double expected = p.name.ends_with(".bias") ? 1.0 : 1.0 - 0.5 * 0.1;
    for (int64_t i = p.offset; i < p.offset + p.shape.numel(); ++i)
      ASSERT_EQ(params[static_cast<size_t>(i)], expected) << p.name << " element " << i;
  }
}

}  // namespace reference_suite

// --- The kernels on emu and cuda -----------------------------------------------------------------

#if WREN_TEST_KERNEL_DEVICES
namespace kernel_suite {

using testing::Buffer;
using testing::expect_bits_equal;

#define WREN_OPTIMIZER_LAUNCHERS(ns)                                      \
  static void step(const FusedOptimizerArgs& a) {                         \
    wren::ns::fused_optimizer_step(a, nullptr);                           \
  }                                                                       \
  static void norm(const float* g, int64_t n, void* ws, double* out) {    \
    wren::ns::global_grad_norm(g, n, ws, out, nullptr);                   \
  }

#if defined(WREN_HAVE_EMU)
struct EmuOptim : testing::EmuDevice {
  WREN_OPTIMIZER_LAUNCHERS(emu_kernels)
};
#endif
struct CudaOptim : testing::CudaDevice {
  WREN_OPTIMIZER_LAUNCHERS(WREN_TEST_CUDA_KERNELS)
};
#undef WREN_OPTIMIZER_LAUNCHERS

template <class K>
class OptimizerKernels : public testing::DeviceTest<K> {};
TYPED_TEST_SUITE(OptimizerKernels, WREN_KERNEL_DEVICES(EmuOptim, CudaOptim), testing::DeviceNames);

// Writes the lr field of the device scalar block alone (the step count lives on the device).
template <class K>
void set_lr(Buffer<FusedOptimScalars>& scalars, double lr) {
  testing::copy_to_device(K::kGpu,
                          reinterpret_cast<unsigned char*>(scalars.get()) +
                              offsetof(FusedOptimScalars, lr),
                          &lr, sizeof lr);
}

// Normal values; every 7th exactly 0 (sign(0) = 0), one -0.
std::vector<float> random_values(size_t n, float sigma, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, sigma);
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = i % 7 == 3 ? 0.0f : normal(rng);
  if (n > 5) v[5] = -0.0f;
  return v;
}

size_t count_tolerance_mismatches(const std::vector<float>& actual, const std::vector<float>& ref,
                                  const std::string& what) {
  size_t bad = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double a = actual[i], r = ref[i];
    const double tol = 1e-6 * std::max(std::abs(a), std::abs(r)) + 1e-12;
    if (!(std::abs(a - r) <= tol) && ++bad <= 3) {
      ADD_FAILURE() << what << "[" << i << "]: " << actual[i] << " vs " << ref[i];
    }
  }
  return bad;
}

struct Table {
  std::string name;
  std::vector<ParamSegment> segments;
  int64_t param_count;
};

Table ref_cnn_table() {
  Expected<Graph> g = build_model("ref-cnn");
  if (!g.ok()) return {"ref-cnn (failed to build)", {}, 0};
  return {"ref-cnn", param_segments(*g), g->param_count()};
}

// Odd count, lr_mult 2, segment starts 3, 253, 770 (not multiples of 4), a 1-element segment.
Table custom_table() {
  return {"custom",
          {{.offset = 0, .count = 3, .lr_mult = 2.0f, .wd_mult = 1.0f},
           {.offset = 3, .count = 250, .lr_mult = 1.0f, .wd_mult = 0.0f},
           {.offset = 253, .count = 517, .lr_mult = 2.0f, .wd_mult = 0.5f},
           {.offset = 770, .count = 1, .lr_mult = 0.5f, .wd_mult = 3.0f},
           {.offset = 771, .count = 230, .lr_mult = 1.0f, .wd_mult = 1.0f}},
          1001};
}

struct Config {
  const char* name;
  OptimizerConfig config;
};

OptimizerConfig sgd(double momentum = 0.0) {
  OptimizerConfig c;
  c.kind = OptimizerKind::kSgd;
  c.momentum = momentum;
  return c;
}
OptimizerConfig adam(OptimizerKind kind) {
  OptimizerConfig c;
  c.kind = kind;
  return c;
}
template <class F>
OptimizerConfig with(OptimizerConfig c, F f) {
  f(c);
  return c;
}

std::vector<Config> all_configs() {
  return {
      {"sgd", sgd()},
      {"sgd momentum", sgd(0.9)},
      {"sgd dampening", with(sgd(0.9), [](auto& c) { c.dampening = 0.3; })},
      {"sgd nesterov", with(sgd(0.9), [](auto& c) { c.nesterov = true; })},
      {"sgd coupled L2", with(sgd(0.9), [](auto& c) { c.weight_decay = 5e-2; })},
      {"sgdw", with(sgd(0.9), [](auto& c) {
         c.weight_decay = 5e-2;
         c.wd_mode = DecayMode::kDecoupled;
       })},
      {"sgd L1 coupled", with(sgd(), [](auto& c) { c.l1 = 1e-2; })},
      {"sgd L1 decoupled", with(sgd(0.5), [](auto& c) {
         c.l1 = 1e-2;
         c.l1_mode = DecayMode::kDecoupled;
       })},
      {"adam", adam(OptimizerKind::kAdam)},
      {"adam L2", with(adam(OptimizerKind::kAdam), [](auto& c) { c.weight_decay = 1e-2; })},
      {"adamw", with(adam(OptimizerKind::kAdamW), [](auto& c) { c.weight_decay = 1e-2; })},
      {"adamw L1 decoupled", with(adam(OptimizerKind::kAdamW), [](auto& c) {
         c.weight_decay = 1e-2;
         c.l1 = 1e-3;
         c.l1_mode = DecayMode::kDecoupled;
       })},
      {"adamw L1 coupled", with(adam(OptimizerKind::kAdamW), [](auto& c) {
         c.weight_decay = 1e-2;
         c.l1 = 1e-3;
       })},
  };
}

// Clipping: c is set relative to the gradients' norm (≈ 0.1·√n) by the caller.
std::vector<Config> clip_configs() {
  return {
      {"sgd nesterov clip", with(sgd(0.9), [](auto& c) {
         c.nesterov = true;
         c.weight_decay = 1e-2;
       })},
      {"adamw L1 clip", with(adam(OptimizerKind::kAdamW), [](auto& c) {
         c.weight_decay = 1e-2;
         c.l1 = 1e-3;
       })},
  };
}

// Runs `config` on `table` for 3 steps on device K and through the CPU reference and compares
// after every step. clip_fraction > 0 turns clipping on with c = clip_fraction·(expected norm).
// check_finite: the non-finite check on both sides (finite gradients: it must change nothing).
template <class K>
void check_case(const Table& table, const Config& cfg, size_t offset, double clip_fraction,
                uint32_t seed, bool check_finite = false) {
  const std::string where = std::string(K::kName) + " " + table.name + " " + cfg.name +
                            " offset " + std::to_string(offset) +
                            (clip_fraction > 0 ? " clip " + std::to_string(clip_fraction) : "") +
                            (check_finite ? " check_finite" : "");
  SCOPED_TRACE(where);
  const int64_t n = table.param_count;
  const size_t un = static_cast<size_t>(n);
  OptimizerConfig config = cfg.config;
  config.check_finite = check_finite;
  if (clip_fraction > 0) config.clip_norm = clip_fraction * 0.1 * std::sqrt(static_cast<double>(n));
  Expected<Optimizer<float>> opt = Optimizer<float>::create(config, table.segments, n);
  ASSERT_TRUE(opt.ok()) << opt.error().message();

  const bool sgd_kind = config.kind == OptimizerKind::kSgd;
  const bool momentum = sgd_kind && config.momentum > 0.0;
  std::vector<float> params_ref = random_values(un, 0.1f, seed);
  const std::vector<float> initial = params_ref;

  Buffer<float> params(K::kGpu, params_ref, offset), grads(K::kGpu, un, 0.0f, offset);
  Buffer<float> mom(K::kGpu, momentum ? un : 0, 0.0f, offset),
      m(K::kGpu, sgd_kind ? 0 : un, 0.0f, offset), v(K::kGpu, sgd_kind ? 0 : un, 0.0f, offset);
  const std::vector<ParamSegment>& segs = table.segments;
  Buffer<ParamSegment> d_segs(K::kGpu, segs);
  Buffer<FusedOptimScalars> d_scalars(K::kGpu, std::vector<FusedOptimScalars>(1));
  const int32_t nseg = static_cast<int32_t>(segs.size());
  Buffer<unsigned char> workspace(K::kGpu, fused_optimizer_workspace_bytes(nseg), 0xff);

  FusedOptimizerArgs args;
  args.params = params.get();
  args.grads = grads.get();
  args.momentum = momentum ? mom.get() : nullptr;
  args.m = sgd_kind ? nullptr : m.get();
  args.v = sgd_kind ? nullptr : v.get();
  args.param_count = n;
  args.segments = d_segs.get();
  args.segment_count = nseg;
  args.scalars = d_scalars.get();
  args.workspace = workspace.get();
  args.config = fused_optim_config(config);

  const double lrs_sgd[] = {0.1, 0.05, 0.02};
  const double lrs_adam[] = {1e-2, 3e-3, 1e-3};
  for (int s = 0; s < 3; ++s) {
    SCOPED_TRACE("step " + std::to_string(s + 1));
    const double lr = sgd_kind ? lrs_sgd[s] : lrs_adam[s];
    const std::vector<float> g = random_values(un, 0.1f, seed * 31 + static_cast<uint32_t>(s) + 1);
    grads.write(g);
    // Only the lr changes on the host side between steps (the step count lives on the device).
    set_lr<K>(d_scalars, lr);
    K::step(args);
    ASSERT_EQ(K::finish(), "");
    const Status st = opt->step(params_ref, g, lr);
    ASSERT_TRUE(st.ok()) << st.message();
    const FusedOptimScalars scalars = d_scalars.read()[0];
    ASSERT_EQ(scalars.status, 0);
    ASSERT_EQ(scalars.step_count, s + 1);

    bool exact = true;
    if (check_finite) {
      const double ref_norm = opt->last_grad_norm();
      EXPECT_NEAR(scalars.grad_norm, ref_norm, 1e-12 * ref_norm);
      if (config.clip_norm == 0) {
        EXPECT_EQ(scalars.clip_scale, 1.0);
      }
    }
    if (config.clip_norm > 0) {
      const double ref_norm = opt->last_grad_norm();
      EXPECT_NEAR(scalars.grad_norm, ref_norm, 1e-12 * ref_norm);
      const double ref_scale = ref_norm > config.clip_norm ? config.clip_norm / ref_norm : 1.0;
      EXPECT_NEAR(scalars.clip_scale, ref_scale, 1e-12 * ref_scale);
      if (clip_fraction < 1.0) {
        EXPECT_LT(scalars.clip_scale, 1.0);  // clipping is active
      } else {
        EXPECT_EQ(scalars.clip_scale, 1.0);  // inactive: scale exactly 1 on both sides
      }
      exact = static_cast<float>(scalars.clip_scale) == static_cast<float>(ref_scale);
    }
    auto compare = [&](const std::vector<float>& actual, std::span<const float> ref,
                       const char* what) {
      const std::vector<float> r(ref.begin(), ref.end());
      if (exact) {
        expect_bits_equal(actual, r, std::string(what) + " (bit for bit)");
      } else {
        EXPECT_EQ(count_tolerance_mismatches(actual, r, what), 0u) << what << " (tolerance 1e-6)";
      }
    };
    compare(params.read(), params_ref, "params");
    if (momentum) compare(mom.read(), std::as_const(*opt).state("momentum"), "momentum");
    if (!sgd_kind) {
      compare(m.read(), std::as_const(*opt).state("m"), "m");
      compare(v.read(), std::as_const(*opt).state("v"), "v");
    }
  }
  EXPECT_NE(params_ref, initial);  // the steps did something
}

// `full`: every configuration on both tables. Otherwise (the emulator's reverse and random
// schedules, which matter for the norm's barriers, not for the barrier-free update) the
// custom table in full and the ref-cnn table (421,642 parameters) with the clipping cases on
// aligned buffers only, to keep the ASan run short.
template <class K>
void check_all(bool full) {
  const Table tables[] = {ref_cnn_table(), custom_table()};
  ASSERT_GT(tables[0].param_count, 0) << tables[0].name;
  uint32_t seed = 1;
  for (const Table& table : tables) {
    const bool reduced = !full && table.name == "ref-cnn";
    for (size_t offset : {size_t{0}, size_t{1}}) {
      if (reduced && offset != 0) continue;
      if (!reduced)
        for (const Config& c : all_configs()) check_case<K>(table, c, offset, 0.0, ++seed);
      for (const Config& c : clip_configs()) {
        check_case<K>(table, c, offset, 0.5, ++seed);  // active
        check_case<K>(table, c, offset, 4.0, ++seed);  // inactive: bit for bit
      }
      // The non-finite check computes the norm every step and must change no bit of a finite
      // step: every configuration on the custom table, two on ref-cnn's (the full run only).
      // Under ASan (minutes for the whole suite there) every fourth configuration.
#if defined(WREN_EMU_ASAN)
      constexpr size_t kFiniteStride = 4;
#else
      constexpr size_t kFiniteStride = 1;
#endif
      if (table.name == "custom") {
        const std::vector<Config> finite_configs = all_configs();
        for (size_t i = 0; i < finite_configs.size(); i += kFiniteStride)
          check_case<K>(table, finite_configs[i], offset, 0.0, ++seed, /*check_finite=*/true);
        check_case<K>(table, clip_configs()[1], offset, 0.5, ++seed, /*check_finite=*/true);
      } else if (full && offset == 0) {
        const std::vector<Config> configs = all_configs();
        check_case<K>(table, configs[3], offset, 0.0, ++seed, /*check_finite=*/true);
        check_case<K>(table, configs[12], offset, 0.0, ++seed, /*check_finite=*/true);
      }
    }
  }
}

// The norm alone, against a plain index-order sum in double, over sizes that exercise the
// empty case, a partial chunk, both paths and the grid-stride loop of the first pass.
template <class K>
void check_norms() {
  for (int64_t n : {int64_t{0}, int64_t{1}, int64_t{7}, int64_t{4099}, int64_t{1 << 20} + 13}) {
    for (size_t offset : {size_t{0}, size_t{1}}) {
      SCOPED_TRACE(std::string(K::kName) + " norm n " + std::to_string(n) + " offset " +
                   std::to_string(offset));
      const size_t un = static_cast<size_t>(n);
      const std::vector<float> g = random_values(un, 1.0f, static_cast<uint32_t>(n) + 5);
      double sum = 0.0;
      for (float x : g) sum += static_cast<double>(x) * static_cast<double>(x);
      const double ref = std::sqrt(sum);
      Buffer<float> d(K::kGpu, g, offset);
      Buffer<double> ws(K::kGpu, kFusedNormMaxBlocks, NAN), out(K::kGpu, 1, -1.0);
      K::norm(d.get(), n, ws.get(), out.get());
      ASSERT_EQ(K::finish(), "");
      const double norm = out.read()[0];
      EXPECT_NEAR(norm, ref, 1e-12 * ref);
    }
  }
}

// Rejected steps update nothing and keep the step count, as the CPU's errors do.
template <class K>
void check_rejected() {
  const Table table = custom_table();
  const size_t un = static_cast<size_t>(table.param_count);
  OptimizerConfig config = with(adam(OptimizerKind::kAdamW), [](auto& c) { c.clip_norm = 1.0; });
  const std::vector<float> p0 = random_values(un, 0.1f, 77);
  std::vector<float> g = random_values(un, 0.1f, 78);
  const std::vector<float> zeros(un, 0.0f);
  Buffer<float> params(K::kGpu, p0), grads(K::kGpu, un, 0.0f), m(K::kGpu, zeros),
      v(K::kGpu, zeros);
  const std::vector<ParamSegment>& segs = table.segments;
  Buffer<ParamSegment> d_segs(K::kGpu, segs);
  Buffer<FusedOptimScalars> d_scalars(K::kGpu, std::vector<FusedOptimScalars>(1));
  const int32_t nseg = static_cast<int32_t>(segs.size());
  Buffer<unsigned char> workspace(K::kGpu, fused_optimizer_workspace_bytes(nseg), 0xff);
  FusedOptimizerArgs args;
  args.params = params.get();
  args.grads = grads.get();
  args.m = m.get();
  args.v = v.get();
  args.param_count = table.param_count;
  args.segments = d_segs.get();
  args.segment_count = nseg;
  args.scalars = d_scalars.get();
  args.workspace = workspace.get();
  args.config = fused_optim_config(config);

  auto run = [&](double lr, int32_t expected_status) {
    FusedOptimScalars sc;
    sc.lr = lr;
    sc.step_count = 4;
    d_scalars.write({sc});
    grads.write(g);
    K::step(args);
    ASSERT_EQ(K::finish(), "");
    sc = d_scalars.read()[0];
    EXPECT_EQ(sc.status, expected_status);
    EXPECT_EQ(sc.step_count, expected_status == 0 ? 5 : 4);
    const std::vector<float> p = params.read();
    if (expected_status == 0) {
      EXPECT_NE(p, p0);
    } else {
      expect_bits_equal(p, p0, "params");
      expect_bits_equal(m.read(), zeros, "m");
    }
  };
  run(-1.0, kFusedStatusBadLr);
  run(std::nan(""), kFusedStatusBadLr);
  g[500] = INFINITY;
  run(1e-3, kFusedStatusBadNorm);
  g[500] = 0.5f;
  run(1e-3, 0);
}

// The non-finite check (OptimizerConfig::check_finite, --on-nonfinite): a NaN or an infinity
// in the gradients (anywhere: a full chunk, the last partial chunk) or a non-finite loss scalar
// makes the kernel skip the step — status kFusedStatusBadNorm / BadLoss is the flag, the
// parameters, momentum / m / v and the step count stay bit for bit — and the steps around it
// match the CPU reference (which rejects the same step) bit for bit. Skipping the very first
// step keeps SGD's "first step" (b ← g) for the next one.
template <class K>
void check_skipped() {
  const Table table = custom_table();
  const int64_t n = table.param_count;
  const size_t un = static_cast<size_t>(n);
  const Config configs[] = {
      {"sgd momentum", with(sgd(0.9), [](auto& c) { c.weight_decay = 1e-2; })},
      {"adamw L1", with(adam(OptimizerKind::kAdamW), [](auto& c) {
         c.weight_decay = 1e-2;
         c.l1 = 1e-3;
       })},
  };
  for (const Config& cfg : configs) {
    for (size_t offset : {size_t{0}, size_t{1}}) {
      SCOPED_TRACE(std::string(K::kName) + " skip " + cfg.name + " offset " +
                   std::to_string(offset));
      OptimizerConfig config = cfg.config;
      config.check_finite = true;
      Expected<Optimizer<float>> opt = Optimizer<float>::create(config, table.segments, n);
      ASSERT_TRUE(opt.ok()) << opt.error().message();
      const bool sgd_kind = config.kind == OptimizerKind::kSgd;
      std::vector<float> params_ref = random_values(un, 0.1f, 91);
      Buffer<float> params(K::kGpu, params_ref, offset), grads(K::kGpu, un, 0.0f, offset),
          s0(K::kGpu, un, 0.0f, offset), s1(K::kGpu, un, 0.0f, offset);
      const std::vector<ParamSegment>& segs = table.segments;
      Buffer<ParamSegment> d_segs(K::kGpu, segs);
      Buffer<FusedOptimScalars> d_scalars(K::kGpu, std::vector<FusedOptimScalars>(1));
      Buffer<float> d_loss(K::kGpu, 1, 0.0f);
      const int32_t nseg = static_cast<int32_t>(segs.size());
      Buffer<unsigned char> workspace(K::kGpu, fused_optimizer_workspace_bytes(nseg), 0xff);
      FusedOptimizerArgs args;
      args.params = params.get();
      args.grads = grads.get();
      args.momentum = sgd_kind ? s0.get() : nullptr;
      args.m = sgd_kind ? nullptr : s0.get();
      args.v = sgd_kind ? nullptr : s1.get();
      args.param_count = n;
      args.segments = d_segs.get();
      args.segment_count = nseg;
      args.scalars = d_scalars.get();
      args.workspace = workspace.get();
      args.loss = d_loss.get();
      args.config = fused_optim_config(config);

      auto device_state = [&] {
        std::vector<float> all = params.read();
        const std::vector<float> a = s0.read(), b = s1.read();
        all.insert(all.end(), a.begin(), a.end());
        if (!sgd_kind) all.insert(all.end(), b.begin(), b.end());
        return all;
      };
      auto ref_state = [&] {
        std::vector<float> all = params_ref;
        for (const std::string& name : opt->state_names()) {
          const std::span<const float> st = std::as_const(*opt).state(name);
          all.insert(all.end(), st.begin(), st.end());
        }
        return all;
      };
      // One step: gradients `g`, loss scalar `loss`; `expected` the status (0: applied).
      int64_t steps_done = 0;
      auto step = [&](const std::vector<float>& g, float loss, int32_t expected) {
        grads.write(g);
        d_loss.write({loss});
        const double lr = sgd_kind ? 0.05 : 3e-3;
        set_lr<K>(d_scalars, lr);
        const std::vector<float> before = device_state();
        K::step(args);
        ASSERT_EQ(K::finish(), "");
        const FusedOptimScalars sc = d_scalars.read()[0];
        EXPECT_EQ(sc.status, expected);
        if (expected == 0) {
          ++steps_done;
          ASSERT_TRUE(opt->step(params_ref, g, lr).ok());
          expect_bits_equal(device_state(), ref_state(), "params and state");
        } else {
          expect_bits_equal(device_state(), before,
                            "params and state (a skipped step must touch nothing)");
          if (expected == kFusedStatusBadNorm) {
            EXPECT_FALSE(std::isfinite(sc.grad_norm));
            const Status st = opt->step(params_ref, g, lr);  // the CPU rejects it too
            ASSERT_FALSE(st.ok());
            EXPECT_EQ(st.error().code(), ErrorCode::kNumericError);
          }
        }
        EXPECT_EQ(sc.step_count, steps_done);
        EXPECT_EQ(opt->step_count(), steps_done);
      };
      std::vector<float> g = random_values(un, 0.1f, 92);
      g[500] = std::nanf("");
      step(g, 1.0f, kFusedStatusBadNorm);  // the very first step
      step(random_values(un, 0.1f, 93), 1.0f, 0);
      g = random_values(un, 0.1f, 94);
      g[un - 1] = -INFINITY;  // in the last, partial chunk
      step(g, 1.0f, kFusedStatusBadNorm);
      step(random_values(un, 0.1f, 95), INFINITY, kFusedStatusBadLoss);
      step(random_values(un, 0.1f, 95), std::nanf(""), kFusedStatusBadLoss);
      step(random_values(un, 0.1f, 96), 2.5f, 0);
      step(random_values(un, 0.1f, 97), 2.5f, 0);
      EXPECT_EQ(steps_done, 3);
    }
  }
}

// Every configuration under the emulator's forward schedule (and on a GPU); the norm-relevant
// subset under its reverse and random schedules.
TYPED_TEST(OptimizerKernels, MatchesCpuBitForBit) {
  testing::under_schedules<TypeParam>(23, [](const testing::ScheduleRun& run) {
    check_all<TypeParam>(run.first);
  });
}

TYPED_TEST(OptimizerKernels, GradNormIsDeterministicAndAccurate) {
  testing::under_schedules<TypeParam>(29, [] { check_norms<TypeParam>(); });
}

TYPED_TEST(OptimizerKernels, RejectedStepUpdatesNothing) {
  check_rejected<TypeParam>();
}

TYPED_TEST(OptimizerKernels, NonFiniteCheckSkipsTheStepAndSetsTheFlag) {
  testing::under_schedules<TypeParam>(31, [] { check_skipped<TypeParam>(); });
}

}  // namespace kernel_suite
#endif  // WREN_TEST_KERNEL_DEVICES

}  // namespace
}  // namespace wren
