// BatchNorm2d (kernels/batch_norm/): the CPU reference in float and double, and the kernels on
// every device.
//
// The CPU reference (kernels/batch_norm/reference.cpp), in float and double (BatchNormTest):
// forward against a long-double computation written here, backward against finite differences
// (tests/support/gradcheck.h). The tiny hand-computed case holds on every device
// (BatchNormDevices/cpu_double, cpu_float, emu, cuda).
//
// The kernels (kernels/batch_norm/batch_norm.cu), one typed body per check on emu and cuda
// (BatchNormKernels/emu, BatchNormKernels/cuda; the cuda cases skip without a GPU): against the
// CPU reference (float), on the emulator under the forward, reverse and random fiber schedules.
//
// Shapes: N·H·W = 2 (1×1 planes; and N = 1 with 1×2 planes), odd C with 28×28 planes (float4
// units), 7×7 planes (single-float units), C = 300 with 2×2 planes (many channels, a single
// 32-thread block each), 48×1×28×28 (37 blocks per channel, so warp 0 of the apply kernels
// adds more than one partial per lane), affine off (gamma = beta = nullptr), a channel whose
// mean is 1e4 times its standard deviation, empty batches (N = 0, W = 0), and one channel of
// 266 240 values (the split count at its cap). Every shape runs the four launchers; the
// backward passes with every output, with dx = nullptr, and with dgamma alone.
//
// Tolerances, |kernel − reference| ≤ 2^-23·|reference| + atol:
//  - training forward (y, save_mean, save_invstd, running stats) and training backward (dx,
//    dgamma, dbeta), inference backward dgamma / dbeta: one fp32 ulp. The kernels sum in
//    double in another order than the reference (and form the variance from shifted sums
//    instead of a second pass); the doubles differ by ~1e-16 relative (bounded by
//    (M+1)·2^-53 for the variance), far below the fp32 rounding, so a result is the
//    reference's float or its neighbour. atol = 1e-12 covers values that are 0 up to double
//    rounding (y ≈ 0 where γ·x̂ ≈ −β, dx ≈ 0); for the sums it is 1e-9, for a Σ that nearly
//    cancels (the order difference is ~√M·2^-53·Σ|terms| ≲ 1e-11 here; the one-ulp term,
//    ≥ 2^-24·|Σ| with |Σ| ~ 1..1e3, dominates otherwise).
//  - inference forward y and inference dx: no sums, the reference's operations: bit for bit.
// Every schedule, a repeated run and unaligned pointers (scalar loads instead of float4) give
// the same bits; y = x and dx = dy in place give the out-of-place results; on a GPU, also the
// emulator's bits (the CUDA build performs the emulator's double operations in the same order).
#include "batch_norm/batch_norm.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "support/buffer.h"
#include "support/compare.h"
#include "support/device.h"
#include "support/gradcheck.h"
#include "support/inputs.h"

namespace wren {
namespace {

// --- The CPU reference ---------------------------------------------------------------------------

namespace reference_suite {

using testing::check_gradient;
using testing::dot_loss;
using testing::expect_all_close;
using testing::random_vector;

template <class T>
class BatchNormTest : public ::testing::Test {};
using Types = ::testing::Types<float, double>;
TYPED_TEST_SUITE(BatchNormTest, Types);

// Comparison tolerances of the forward against long double. The op computes in double and
// rounds once to T, so float is within an ulp or two of the reference.
template <class T>
constexpr double kRtol = std::is_same_v<T, float> ? 1e-5 : 1e-12;
template <class T>
constexpr double kAtol = std::is_same_v<T, float> ? 1e-6 : 1e-12;

int64_t numel(const BatchNormDims& d) { return int64_t{d.n} * d.c * d.h * d.w; }

std::string name(const BatchNormDims& d) {
  return "[" + std::to_string(d.n) + "," + std::to_string(d.c) + "," + std::to_string(d.h) +
         "," + std::to_string(d.w) + "]";
}

// x [N, C, H, W] with a different offset and spread per channel, so that normalisation has
// real work to do (a mean far from 0, a variance far from 1).
template <class T>
std::vector<T> channel_data(const BatchNormDims& d, uint64_t seed) {
  std::vector<T> x = random_vector<T>(static_cast<size_t>(numel(d)), seed);
  const std::vector<double> offset = random_vector<double>(static_cast<size_t>(d.c), seed + 1,
                                                           -3.0, 3.0);
  const std::vector<double> spread = random_vector<double>(static_cast<size_t>(d.c), seed + 2,
                                                           0.5, 2.5);
  const int64_t hw = int64_t{d.h} * d.w;
  for (int64_t i = 0; i < numel(d); ++i) {
    const size_t c = static_cast<size_t>((i / hw) % d.c);
    x[static_cast<size_t>(i)] = static_cast<T>(offset[c] + spread[c] * x[static_cast<size_t>(i)]);
  }
  return x;
}

// The batch statistics of one channel in long double: mean and biased variance.
struct Moments {
  long double mean, var;
};

template <class T>
std::vector<Moments> reference_moments(const BatchNormDims& d, const std::vector<T>& x) {
  const int64_t hw = int64_t{d.h} * d.w, m = d.n * hw;
  std::vector<Moments> out(static_cast<size_t>(d.c), Moments{0.0L, 0.0L});
  for (int c = 0; c < d.c; ++c) {
    long double sum = 0.0L, sq = 0.0L;
    for (int n = 0; n < d.n; ++n)
      for (int64_t j = 0; j < hw; ++j) sum += x[static_cast<size_t>((n * d.c + c) * hw + j)];
    const long double mean = sum / m;
    for (int n = 0; n < d.n; ++n)
      for (int64_t j = 0; j < hw; ++j) {
        const long double dev = x[static_cast<size_t>((n * d.c + c) * hw + j)] - mean;
        sq += dev * dev;
      }
    out[static_cast<size_t>(c)] = {mean, sq / m};
  }
  return out;
}

// y = gamma·(x − mean)/√(var + eps) + beta per channel, in long double.
template <class T>
std::vector<long double> reference_normalise(const BatchNormDims& d, const std::vector<T>& x,
                                             const std::vector<long double>& mean,
                                             const std::vector<long double>& var, double eps,
                                             const T* gamma, const T* beta) {
  const int64_t hw = int64_t{d.h} * d.w;
  std::vector<long double> y(x.size());
  for (int64_t i = 0; i < numel(d); ++i) {
    const size_t c = static_cast<size_t>((i / hw) % d.c);
    const long double g = gamma ? static_cast<long double>(gamma[c]) : 1.0L;
    const long double b = beta ? static_cast<long double>(beta[c]) : 0.0L;
    y[static_cast<size_t>(i)] =
        g * (x[static_cast<size_t>(i)] - mean[c]) / std::sqrt(var[c] + eps) + b;
  }
  return y;
}

// --- forward, training mode ---------------------------------------------------------------

TYPED_TEST(BatchNormTest, TrainForwardMatchesLongDouble) {
  using T = TypeParam;
  const BatchNormDims shapes[] = {{3, 5, 3, 7}, {2, 3, 5, 5}, {1, 4, 3, 1}, {5, 2, 1, 1}};
  uint64_t seed = 100;
  for (const BatchNormDims& d : shapes) {
    for (const bool affine : {true, false}) {
      SCOPED_TRACE(name(d) + (affine ? " affine" : " no gamma/beta"));
      const size_t c = static_cast<size_t>(d.c);
      const std::vector<T> x = channel_data<T>(d, seed++);
      const std::vector<T> gamma = random_vector<T>(c, seed++, 0.5, 1.5);
      const std::vector<T> beta = random_vector<T>(c, seed++, -0.5, 0.5);
      const T* g = affine ? gamma.data() : nullptr;
      const T* b = affine ? beta.data() : nullptr;
      const double eps = 1e-5;
      std::vector<T> y(x.size()), save_mean(c), save_invstd(c);
      std::vector<T> running_mean(c, T(0)), running_var(c, T(1));
      cpu::batch_norm2d_forward_train<T>(d, T(eps), T(0.1), x.data(), g, b, y.data(),
                                         save_mean.data(), save_invstd.data(),
                                         running_mean.data(), running_var.data());

      const std::vector<Moments> mom = reference_moments(d, x);
      std::vector<long double> mean(c), var(c), invstd(c);
      for (size_t k = 0; k < c; ++k) {
        mean[k] = mom[k].mean;
        var[k] = mom[k].var;
        invstd[k] = 1.0L / std::sqrt(mom[k].var + eps);
      }
      expect_all_close<T, long double>(y, reference_normalise(d, x, mean, var, eps, g, b),
                                       kAtol<T>, kRtol<T>, "y");
      expect_all_close<T, long double>(save_mean, mean, kAtol<T>, kRtol<T>, "save_mean");
      expect_all_close<T, long double>(save_invstd, invstd, kAtol<T>, kRtol<T>, "save_invstd");
    }
  }
}

// Whatever x, each output channel has mean beta and biased variance gamma²·var/(var + eps).
// A large eps makes the var/(var + eps) factor visibly different from 1.
TYPED_TEST(BatchNormTest, TrainOutputMomentsPerChannel) {
  using T = TypeParam;
  const BatchNormDims d{3, 5, 3, 7};
  const size_t c = static_cast<size_t>(d.c);
  for (const double eps : {1e-5, 0.5}) {
    SCOPED_TRACE("eps " + std::to_string(eps));
    const std::vector<T> x = channel_data<T>(d, 7);
    const std::vector<T> gamma = random_vector<T>(c, 8, 0.5, 1.5);
    const std::vector<T> beta = random_vector<T>(c, 9, -0.5, 0.5);
    std::vector<T> y(x.size()), save_mean(c), save_invstd(c), rm(c, T(0)), rv(c, T(1));
    cpu::batch_norm2d_forward_train<T>(d, T(eps), T(0.1), x.data(), gamma.data(), beta.data(),
                                       y.data(), save_mean.data(), save_invstd.data(), rm.data(),
                                       rv.data());
    const std::vector<Moments> in = reference_moments(d, x);
    const std::vector<Moments> out = reference_moments(d, y);
    for (size_t k = 0; k < c; ++k) {
      const double var = static_cast<double>(in[k].var);
      const double g = gamma[k];
      EXPECT_NEAR(static_cast<double>(out[k].mean), beta[k], 10 * kAtol<T>) << "channel " << k;
      const double expected_var = g * g * var / (var + eps);
      EXPECT_NEAR(static_cast<double>(out[k].var), expected_var, 10 * kRtol<T> * expected_var)
          << "channel " << k;
    }
  }
}

// running = (1 − m)·running + m·batch with the unbiased batch variance, over 1 and 3 steps,
// each step on a new batch.
TYPED_TEST(BatchNormTest, RunningStatisticsAfterOneAndThreeUpdates) {
  using T = TypeParam;
  const BatchNormDims d{3, 5, 3, 7};
  const size_t c = static_cast<size_t>(d.c);
  const int64_t m = int64_t{d.n} * d.h * d.w;
  const double momentum = 0.3, eps = 1e-5;
  std::vector<T> running_mean = random_vector<T>(c, 20, -1.0, 1.0);
  std::vector<T> running_var = random_vector<T>(c, 21, 0.5, 2.0);
  std::vector<long double> ref_mean(running_mean.begin(), running_mean.end());
  std::vector<long double> ref_var(running_var.begin(), running_var.end());
  for (int step = 1; step <= 3; ++step) {
    SCOPED_TRACE("after update " + std::to_string(step));
    const std::vector<T> x = channel_data<T>(d, 30 + static_cast<uint64_t>(step));
    std::vector<T> y(x.size()), save_mean(c), save_invstd(c);
    cpu::batch_norm2d_forward_train<T>(d, T(eps), T(momentum), x.data(), nullptr, nullptr,
                                       y.data(), save_mean.data(), save_invstd.data(),
                                       running_mean.data(), running_var.data());
    const std::vector<Moments> mom = reference_moments(d, x);
    for (size_t k = 0; k < c; ++k) {
      const long double unbiased = mom[k].var * m / (m - 1);
      ref_mean[k] = (1 - momentum) * ref_mean[k] + momentum * mom[k].mean;
      ref_var[k] = (1 - momentum) * ref_var[k] + momentum * unbiased;
    }
    expect_all_close<T, long double>(running_mean, ref_mean, kAtol<T>, kRtol<T>, "running_mean");
    expect_all_close<T, long double>(running_var, ref_var, kAtol<T>, kRtol<T>, "running_var");
  }
}

// --- forward, inference mode --------------------------------------------------------------

TYPED_TEST(BatchNormTest, InferForwardMatchesFormula) {
  using T = TypeParam;
  const BatchNormDims shapes[] = {{3, 5, 3, 7}, {1, 3, 2, 5}};
  uint64_t seed = 200;
  for (const BatchNormDims& d : shapes) {
    for (const bool affine : {true, false}) {
      SCOPED_TRACE(name(d) + (affine ? " affine" : " no gamma/beta"));
      const size_t c = static_cast<size_t>(d.c);
      const std::vector<T> x = channel_data<T>(d, seed++);
      const std::vector<T> gamma = random_vector<T>(c, seed++, 0.5, 1.5);
      const std::vector<T> beta = random_vector<T>(c, seed++, -0.5, 0.5);
      const std::vector<T> rm = random_vector<T>(c, seed++, -2.0, 2.0);
      const std::vector<T> rv = random_vector<T>(c, seed++, 0.3, 3.0);
      const T* g = affine ? gamma.data() : nullptr;
      const T* b = affine ? beta.data() : nullptr;
      const double eps = 1e-3;
      std::vector<T> y(x.size());
      cpu::batch_norm2d_forward_infer<T>(d, T(eps), x.data(), g, b, rm.data(), rv.data(),
                                         y.data());
      const std::vector<long double> mean(rm.begin(), rm.end()), var(rv.begin(), rv.end());
      expect_all_close<T, long double>(y, reference_normalise(d, x, mean, var, eps, g, b),
                                       kAtol<T>, kRtol<T>, "y");
    }
  }
}

// --- backward -----------------------------------------------------------------------------

// Everything one gradient check needs: inputs, parameters and the random r of L = Σ y·r.
template <class T>
struct BackwardCase {
  BatchNormDims d;
  std::vector<T> x, gamma, beta, running_mean, running_var, r;

  BackwardCase(const BatchNormDims& dims, uint64_t seed) : d(dims) {
    const size_t c = static_cast<size_t>(d.c);
    x = channel_data<T>(d, seed);
    gamma = random_vector<T>(c, seed + 10, 0.5, 1.5);
    beta = random_vector<T>(c, seed + 11, -0.5, 0.5);
    running_mean = random_vector<T>(c, seed + 12, -1.0, 1.0);
    running_var = random_vector<T>(c, seed + 13, 0.5, 2.0);
    r = random_vector<T>(x.size(), seed + 14);
  }
  size_t channels() const { return static_cast<size_t>(d.c); }
};

// L = Σ y·r in training mode. The forward also moves the running statistics; L must not see
// that, so each evaluation works on copies and the case's buffers are never changed.
template <class T>
double train_loss(const BackwardCase<T>& k, const T* gamma, const T* beta) {
  const size_t c = k.channels();
  std::vector<T> y(k.x.size()), save_mean(c), save_invstd(c);
  std::vector<T> rm = k.running_mean, rv = k.running_var;
  cpu::batch_norm2d_forward_train<T>(k.d, T(1e-5), T(0.1), k.x.data(), gamma, beta, y.data(),
                                     save_mean.data(), save_invstd.data(), rm.data(), rv.data());
  return dot_loss<T>(y, k.r);
}

TYPED_TEST(BatchNormTest, TrainBackwardMatchesFiniteDifferences) {
  using T = TypeParam;
  const BatchNormDims shapes[] = {{2, 3, 3, 2}, {3, 2, 1, 3}};
  uint64_t seed = 300;
  for (const BatchNormDims& d : shapes) {
    for (const bool affine : {true, false}) {
      SCOPED_TRACE(name(d) + (affine ? " affine" : " no gamma/beta"));
      BackwardCase<T> k(d, seed);
      seed += 100;
      const size_t c = k.channels();
      T* g = affine ? k.gamma.data() : nullptr;
      T* b = affine ? k.beta.data() : nullptr;

      std::vector<T> y(k.x.size()), save_mean(c), save_invstd(c);
      std::vector<T> rm = k.running_mean, rv = k.running_var;
      cpu::batch_norm2d_forward_train<T>(d, T(1e-5), T(0.1), k.x.data(), g, b, y.data(),
                                         save_mean.data(), save_invstd.data(), rm.data(),
                                         rv.data());
      // Garbage in the outputs: the backward must overwrite, not accumulate.
      std::vector<T> dx(k.x.size(), T(7)), dgamma(c, T(7)), dbeta(c, T(7));
      cpu::batch_norm2d_backward_train<T>(d, k.x.data(), k.r.data(), g, save_mean.data(),
                                          save_invstd.data(), dx.data(),
                                          affine ? dgamma.data() : nullptr,
                                          affine ? dbeta.data() : nullptr);
      if (!affine) {
        EXPECT_EQ(dgamma, std::vector<T>(c, T(7))) << "dgamma written although absent";
        EXPECT_EQ(dbeta, std::vector<T>(c, T(7))) << "dbeta written although absent";
      }

      const auto loss = [&] { return train_loss(k, g, b); };
      // Default steps and thresholds. With float's 1e-2 step the worst element over 200 seeds
      // of these shapes used 0.29 of the 1e-3 threshold: the curvature is not a problem.
      check_gradient<T>(k.x, dx, loss, "dx");
      if (affine) {
        check_gradient<T>(k.gamma, dgamma, loss, "dgamma");
        check_gradient<T>(k.beta, dbeta, loss, "dbeta");
      }

      // The executor passes dx == nullptr when x needs no gradient: same parameter gradients.
      if (affine) {
        std::vector<T> dgamma2(c), dbeta2(c);
        cpu::batch_norm2d_backward_train<T>(d, k.x.data(), k.r.data(), g, save_mean.data(),
                                            save_invstd.data(), nullptr, dgamma2.data(),
                                            dbeta2.data());
        EXPECT_EQ(dgamma2, dgamma);
        EXPECT_EQ(dbeta2, dbeta);
      }
    }
  }
}

TYPED_TEST(BatchNormTest, InferBackwardMatchesFiniteDifferences) {
  using T = TypeParam;
  const BatchNormDims d{2, 3, 3, 2};
  const double eps = 1e-3;
  for (const bool affine : {true, false}) {
    SCOPED_TRACE(affine ? "affine" : "no gamma/beta");
    BackwardCase<T> k(d, 400);
    const size_t c = k.channels();
    T* g = affine ? k.gamma.data() : nullptr;
    T* b = affine ? k.beta.data() : nullptr;
    std::vector<T> dx(k.x.size(), T(7)), dgamma(c, T(7)), dbeta(c, T(7));
    cpu::batch_norm2d_backward_infer<T>(d, T(eps), k.x.data(), k.r.data(), g,
                                        k.running_mean.data(), k.running_var.data(), dx.data(),
                                        affine ? dgamma.data() : nullptr,
                                        affine ? dbeta.data() : nullptr);
    const auto loss = [&] {
      std::vector<T> y(k.x.size());
      cpu::batch_norm2d_forward_infer<T>(d, T(eps), k.x.data(), g, b, k.running_mean.data(),
                                         k.running_var.data(), y.data());
      return dot_loss<T>(y, k.r);
    };
    // Inference BN is affine in x, gamma and beta: the default float step is exact enough.
    check_gradient<T>(k.x, dx, loss, "dx");
    if (affine) {
      check_gradient<T>(k.gamma, dgamma, loss, "dgamma");
      check_gradient<T>(k.beta, dbeta, loss, "dbeta");
      std::vector<T> dgamma2(c), dbeta2(c);
      cpu::batch_norm2d_backward_infer<T>(d, T(eps), k.x.data(), k.r.data(), g,
                                          k.running_mean.data(), k.running_var.data(), nullptr,
                                          dgamma2.data(), dbeta2.data());
      EXPECT_EQ(dgamma2, dgamma);
      EXPECT_EQ(dbeta2, dbeta);
    }
  }
}

// In training mode y is invariant to shifting a channel of x by a constant, so Σ dx over each
// channel is 0; it is also invariant to scaling the channel about its mean (up to eps), so
// Σ dx·xhat is ≈ 0 too. Checked on a larger shape than the finite differences can afford.
TYPED_TEST(BatchNormTest, TrainDxSumsToZeroPerChannel) {
  using T = TypeParam;
  const BatchNormDims d{4, 6, 5, 7};
  const int64_t hw = int64_t{d.h} * d.w;
  BackwardCase<T> k(d, 500);
  const size_t c = k.channels();
  std::vector<T> y(k.x.size()), save_mean(c), save_invstd(c), dx(k.x.size()), dgamma(c),
      dbeta(c);
  cpu::batch_norm2d_forward_train<T>(d, T(1e-5), T(0.1), k.x.data(), k.gamma.data(),
                                     k.beta.data(), y.data(), save_mean.data(),
                                     save_invstd.data(), k.running_mean.data(),
                                     k.running_var.data());
  cpu::batch_norm2d_backward_train<T>(d, k.x.data(), k.r.data(), k.gamma.data(),
                                      save_mean.data(), save_invstd.data(), dx.data(),
                                      dgamma.data(), dbeta.data());
  // Relative to Σ|dx| of the channel: each dx carries a rounding error of about an ulp.
  const double tol = std::is_same_v<T, float> ? 1e-6 : 1e-13;
  for (size_t ch = 0; ch < c; ++ch) {
    long double sum = 0, sum_xhat = 0, abs_sum = 0;
    for (int n = 0; n < d.n; ++n) {
      for (int64_t j = 0; j < hw; ++j) {
        const size_t i = static_cast<size_t>((n * d.c + static_cast<int64_t>(ch)) * hw + j);
        const long double xhat =
            (static_cast<long double>(k.x[i]) - save_mean[ch]) * save_invstd[ch];
        sum += dx[i];
        sum_xhat += dx[i] * xhat;
        abs_sum += std::fabs(static_cast<long double>(dx[i]));
      }
    }
    ASSERT_GT(abs_sum, 1.0L) << "channel " << ch << ": dx is (nearly) zero, nothing tested";
    EXPECT_NEAR(static_cast<double>(sum), 0.0, tol * static_cast<double>(abs_sum))
        << "channel " << ch;
    // eps = 1e-5 breaks the scale invariance by ~eps/var; allow for it.
    EXPECT_NEAR(static_cast<double>(sum_xhat), 0.0, (tol + 1e-4) * static_cast<double>(abs_sum))
        << "channel " << ch;
  }
}

}  // namespace reference_suite

// --- The kernels on emu and cuda -----------------------------------------------------------------

#if WREN_TEST_KERNEL_DEVICES
namespace kernel_suite {

using testing::Buffer;
using testing::nonzero_normal;

#define WREN_BN_LAUNCHERS(ns)                                                                    \
  static size_t ws_bytes(BatchNormDims d) {                                                      \
    return wren::ns::batch_norm2d_workspace_bytes(d);                                            \
  }                                                                                              \
  static void forward_train(BatchNormDims d, float eps, float mom, const float* x,              \
                            const float* g, const float* b, float* y, float* sm, float* si,     \
                            float* rm, float* rv, void* ws) {                                   \
    wren::ns::batch_norm2d_forward_train(d, eps, mom, x, g, b, y, sm, si, rm, rv, ws, nullptr); \
  }                                                                                              \
  static void forward_infer(BatchNormDims d, float eps, const float* x, const float* g,         \
                            const float* b, const float* rm, const float* rv, float* y) {       \
    wren::ns::batch_norm2d_forward_infer(d, eps, x, g, b, rm, rv, y, nullptr);                  \
  }                                                                                              \
  static void backward_train(BatchNormDims d, const float* x, const float* dy, const float* g,  \
                             const float* sm, const float* si, float* dx, float* dg, float* db, \
                             void* ws) {                                                         \
    wren::ns::batch_norm2d_backward_train(d, x, dy, g, sm, si, dx, dg, db, ws, nullptr);        \
  }                                                                                              \
  static void backward_infer(BatchNormDims d, float eps, const float* x, const float* dy,       \
                             const float* g, const float* rm, const float* rv, float* dx,       \
                             float* dg, float* db, void* ws) {                                  \
    wren::ns::batch_norm2d_backward_infer(d, eps, x, dy, g, rm, rv, dx, dg, db, ws, nullptr);   \
  }

#if defined(WREN_HAVE_EMU)
struct EmuBn : testing::EmuDevice {
  WREN_BN_LAUNCHERS(emu_kernels)
};
#endif
struct CudaBn : testing::CudaDevice {
  WREN_BN_LAUNCHERS(WREN_TEST_CUDA_KERNELS)
};
#undef WREN_BN_LAUNCHERS

using Devices = WREN_KERNEL_DEVICES(EmuBn, CudaBn);

template <class K>
class BatchNormKernels : public testing::DeviceTest<K> {};
TYPED_TEST_SUITE(BatchNormKernels, Devices, testing::DeviceNames);

template <class K>
class BatchNormLaunchers : public testing::LauncherTest<K> {};
TYPED_TEST_SUITE(BatchNormLaunchers, Devices, testing::DeviceNames);

// --- Cases and inputs ------------------------------------------------------------------------------

struct BnCase {
  const char* name;
  int n, c, h, w;
  bool affine = true;
  float center = 0.5f;  // the inputs' mean (per channel: center·(1 + channel % 3))
  float spread = 2.0f;  // and standard deviation
};

const BnCase kCases[] = {
    {"nhw2_1x1", 2, 3, 1, 1},
    {"nhw2_n1", 1, 5, 1, 2},
    {"odd_c_28x28", 4, 5, 28, 28},
    {"7x7_scalar_units", 3, 7, 7, 7},
    {"c300_2x2", 2, 300, 2, 2},
    {"many_splits", 48, 1, 28, 28},
    {"affine_off_14x14", 4, 3, 14, 14, false},
    {"mean_1e4_std", 4, 2, 6, 6, true, 1000.0f, 0.1f},
    {"empty_n0", 0, 3, 5, 5},
    {"empty_w0", 2, 3, 4, 0},
};

std::string describe(const BnCase& c) {
  return std::string(c.name) + " [" + std::to_string(c.n) + "," + std::to_string(c.c) + "," +
         std::to_string(c.h) + "," + std::to_string(c.w) + "]";
}

struct Inputs {
  BatchNormDims d;
  float eps = 1e-5f, momentum = 0.1f;
  std::vector<float> x, dy, gamma, beta, running_mean, running_var;  // gamma/beta empty: off
};

size_t elements(const BatchNormDims& d) {
  return static_cast<size_t>(d.n) * d.c * d.h * d.w;
}

Inputs make_inputs(const BnCase& bc, uint32_t seed) {
  std::mt19937 rng(seed);
  Inputs in;
  in.d.n = bc.n;
  in.d.c = bc.c;
  in.d.h = bc.h;
  in.d.w = bc.w;
  const size_t hw = static_cast<size_t>(bc.h) * bc.w;
  in.x.resize(elements(in.d));
  in.dy.resize(elements(in.d));
  for (size_t i = 0; i < in.x.size(); ++i) {
    const int channel = static_cast<int>((i / hw) % bc.c);
    in.x[i] = nonzero_normal(rng, bc.spread, bc.center * static_cast<float>(1 + channel % 3));
    in.dy[i] = nonzero_normal(rng, 1.0f);
  }
  std::uniform_real_distribution<float> positive(0.5f, 1.5f);
  if (bc.affine) {
    for (int k = 0; k < bc.c; ++k) {
      in.gamma.push_back(positive(rng));
      in.beta.push_back(nonzero_normal(rng, 1.0f));
    }
  }
  for (int k = 0; k < bc.c; ++k) {
    in.running_mean.push_back(nonzero_normal(rng, 1.0f));
    in.running_var.push_back(positive(rng) * 2.0f);
  }
  return in;
}

const float* or_null(const std::vector<float>& v) {
  return v.empty() ? nullptr : v.data();
}

// --- Comparisons ---------------------------------------------------------------------------------

constexpr float kFill = 7.25f;  // outputs start as this
constexpr double kRtol = 0x1p-23;
constexpr double kAtolValues = 1e-12;
constexpr double kAtolSums = 1e-9;

// tolerance < 0: bit for bit.
void expect_close(const std::vector<float>& actual, const std::vector<float>& ref,
                  double atol, const std::string& what) {
  ASSERT_EQ(actual.size(), ref.size()) << what;
  size_t bad = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double a = actual[i], r = ref[i];
    const bool ok = atol < 0 ? std::bit_cast<uint32_t>(actual[i]) == std::bit_cast<uint32_t>(ref[i])
                             : std::fabs(a - r) <= atol + kRtol * std::fabs(r);
    if (!ok && ++bad <= 5) {
      ADD_FAILURE() << what << " [" << i << "]: " << actual[i] << " vs reference " << ref[i]
                    << " (diff " << a - r << ")";
    }
  }
  EXPECT_EQ(bad, 0u) << what;
}
constexpr double kExact = -1.0;

void expect_bits(const std::vector<float>& a, const std::vector<float>& b,
                 const std::string& what) {
  testing::expect_bits_equal(a, b, what);
}

// --- One pass of all four launchers ----------------------------------------------------------------

struct Outputs {
  bool all = true;  // false: a Calls::kBarriers run (only the training outputs)
  // forward train
  std::vector<float> y, save_mean, save_invstd, running_mean, running_var;
  // forward infer
  std::vector<float> y_infer;
  // backward train / infer, every output requested
  std::vector<float> dx, dgamma, dbeta, dx_infer, dgamma_infer, dbeta_infer;
  // backward train with dx = nullptr; with dgamma only
  std::vector<float> dgamma_no_dx, dbeta_no_dx, dgamma_alone, dgamma_infer_no_dx;
};

// kAll: the four launchers, the backward passes also with partial outputs. kBarriers: only the
// training forward and backward with every output — the launches whose kernels have barriers
// and reductions (what other schedules can change), at a third of the emulator time.
enum class Calls { kAll, kBarriers };

template <class K>
Outputs run_all(const Inputs& in, size_t offset = 0, Calls calls = Calls::kAll) {
  const BatchNormDims& d = in.d;
  const size_t n = elements(d), c = static_cast<size_t>(d.c);
  const std::vector<float> fill_n(n, kFill), fill_c(c, kFill);
  const size_t ws_bytes = K::ws_bytes(d);
  Outputs out;
  out.all = calls == Calls::kAll;
  Buffer<unsigned char> ws(K::kGpu, std::vector<unsigned char>(std::max<size_t>(ws_bytes, 1), 0xff));
  Buffer<float> x(K::kGpu, in.x, offset), dy(K::kGpu, in.dy, offset);
  Buffer<float> gamma(K::kGpu, in.gamma), beta(K::kGpu, in.beta);
  const float* g = in.gamma.empty() ? nullptr : gamma.get();
  const float* b = in.beta.empty() ? nullptr : beta.get();
  {
    Buffer<float> y(K::kGpu, fill_n, offset), sm(K::kGpu, fill_c), si(K::kGpu, fill_c);
    Buffer<float> rm(K::kGpu, in.running_mean), rv(K::kGpu, in.running_var);
    K::forward_train(d, in.eps, in.momentum, x.get(), g, b, y.get(), sm.get(), si.get(), rm.get(),
                     rv.get(), ws.get());
    EXPECT_EQ(K::finish(), "");
    out.y = y.read();
    out.save_mean = sm.read();
    out.save_invstd = si.read();
    out.running_mean = rm.read();
    out.running_var = rv.read();
  }
  Buffer<float> rm(K::kGpu, in.running_mean), rv(K::kGpu, in.running_var);
  if (calls == Calls::kAll) {
    Buffer<float> y(K::kGpu, fill_n, offset);
    K::forward_infer(d, in.eps, x.get(), g, b, rm.get(), rv.get(), y.get());
    EXPECT_EQ(K::finish(), "");
    out.y_infer = y.read();
  }
  // The backward passes use the CPU's saved statistics, so that they are checked on their own.
  std::vector<float> save_mean(c), save_invstd(c), y_cpu(n), rm_cpu = in.running_mean,
                                                           rv_cpu = in.running_var;
  cpu::batch_norm2d_forward_train<float>(d, in.eps, in.momentum, in.x.data(),
                                               or_null(in.gamma), or_null(in.beta), y_cpu.data(),
                                               save_mean.data(), save_invstd.data(),
                                               rm_cpu.data(), rv_cpu.data());
  Buffer<float> sm(K::kGpu, save_mean), si(K::kGpu, save_invstd);
  {
    Buffer<float> dx(K::kGpu, fill_n, offset), dg(K::kGpu, fill_c), db(K::kGpu, fill_c);
    K::backward_train(d, x.get(), dy.get(), g, sm.get(), si.get(), dx.get(), dg.get(), db.get(),
                      ws.get());
    EXPECT_EQ(K::finish(), "");
    out.dx = dx.read();
    out.dgamma = dg.read();
    out.dbeta = db.read();
  }
  if (calls == Calls::kBarriers) return out;
  {
    Buffer<float> dg(K::kGpu, fill_c), db(K::kGpu, fill_c);
    K::backward_train(d, x.get(), dy.get(), g, sm.get(), si.get(), nullptr, dg.get(), db.get(),
                      ws.get());
    EXPECT_EQ(K::finish(), "");
    out.dgamma_no_dx = dg.read();
    out.dbeta_no_dx = db.read();
  }
  {
    Buffer<float> dg(K::kGpu, fill_c);
    K::backward_train(d, x.get(), dy.get(), g, sm.get(), si.get(), nullptr, dg.get(), nullptr,
                      ws.get());
    EXPECT_EQ(K::finish(), "");
    out.dgamma_alone = dg.read();
  }
  {
    Buffer<float> dx(K::kGpu, fill_n, offset), dg(K::kGpu, fill_c), db(K::kGpu, fill_c);
    K::backward_infer(d, in.eps, x.get(), dy.get(), g, rm.get(), rv.get(), dx.get(), dg.get(),
                      db.get(), ws.get());
    EXPECT_EQ(K::finish(), "");
    out.dx_infer = dx.read();
    out.dgamma_infer = dg.read();
    out.dbeta_infer = db.read();
  }
  {
    Buffer<float> dg(K::kGpu, fill_c);
    K::backward_infer(d, in.eps, x.get(), dy.get(), g, rm.get(), rv.get(), nullptr, dg.get(),
                      nullptr, ws.get());
    EXPECT_EQ(K::finish(), "");
    out.dgamma_infer_no_dx = dg.read();
  }
  return out;
}

Outputs run_reference(const Inputs& in) {
  const BatchNormDims& d = in.d;
  const size_t n = elements(d), c = static_cast<size_t>(d.c);
  const float* g = or_null(in.gamma);
  const float* b = or_null(in.beta);
  Outputs out;
  out.y.assign(n, kFill);
  out.save_mean.assign(c, kFill);
  out.save_invstd.assign(c, kFill);
  out.running_mean = in.running_mean;
  out.running_var = in.running_var;
  cpu::batch_norm2d_forward_train<float>(d, in.eps, in.momentum, in.x.data(), g, b,
                                               out.y.data(), out.save_mean.data(),
                                               out.save_invstd.data(), out.running_mean.data(),
                                               out.running_var.data());
  out.y_infer.assign(n, kFill);
  cpu::batch_norm2d_forward_infer<float>(d, in.eps, in.x.data(), g, b,
                                               in.running_mean.data(), in.running_var.data(),
                                               out.y_infer.data());
  out.dx.assign(n, kFill);
  out.dgamma.assign(c, kFill);
  out.dbeta.assign(c, kFill);
  cpu::batch_norm2d_backward_train<float>(d, in.x.data(), in.dy.data(), g,
                                                out.save_mean.data(), out.save_invstd.data(),
                                                out.dx.data(), out.dgamma.data(), out.dbeta.data());
  out.dx_infer.assign(n, kFill);
  out.dgamma_infer.assign(c, kFill);
  out.dbeta_infer.assign(c, kFill);
  cpu::batch_norm2d_backward_infer<float>(d, in.eps, in.x.data(), in.dy.data(), g,
                                                in.running_mean.data(), in.running_var.data(),
                                                out.dx_infer.data(), out.dgamma_infer.data(),
                                                out.dbeta_infer.data());
  out.dgamma_no_dx = out.dgamma;
  out.dbeta_no_dx = out.dbeta;
  out.dgamma_alone = out.dgamma;
  out.dgamma_infer_no_dx = out.dgamma_infer;
  return out;
}

void check_against_reference(const Outputs& k, const Outputs& r, const std::string& what) {
  if (!k.all) {  // Calls::kBarriers
    expect_close(k.y, r.y, kAtolValues, what + " train y");
    expect_close(k.save_mean, r.save_mean, kAtolValues, what + " save_mean");
    expect_close(k.save_invstd, r.save_invstd, kAtolValues, what + " save_invstd");
    expect_close(k.running_mean, r.running_mean, kAtolValues, what + " running_mean");
    expect_close(k.running_var, r.running_var, kAtolValues, what + " running_var");
    expect_close(k.dx, r.dx, kAtolValues, what + " train dx");
    expect_close(k.dgamma, r.dgamma, kAtolSums, what + " train dgamma");
    expect_close(k.dbeta, r.dbeta, kAtolSums, what + " train dbeta");
    return;
  }
  expect_close(k.y, r.y, kAtolValues, what + " train y");
  expect_close(k.save_mean, r.save_mean, kAtolValues, what + " save_mean");
  expect_close(k.save_invstd, r.save_invstd, kAtolValues, what + " save_invstd");
  expect_close(k.running_mean, r.running_mean, kAtolValues, what + " running_mean");
  expect_close(k.running_var, r.running_var, kAtolValues, what + " running_var");
  expect_close(k.y_infer, r.y_infer, kExact, what + " infer y");
  expect_close(k.dx, r.dx, kAtolValues, what + " train dx");
  expect_close(k.dgamma, r.dgamma, kAtolSums, what + " train dgamma");
  expect_close(k.dbeta, r.dbeta, kAtolSums, what + " train dbeta");
  expect_close(k.dgamma_no_dx, r.dgamma_no_dx, kAtolSums, what + " train dgamma (dx null)");
  expect_close(k.dbeta_no_dx, r.dbeta_no_dx, kAtolSums, what + " train dbeta (dx null)");
  expect_close(k.dgamma_alone, r.dgamma_alone, kAtolSums, what + " train dgamma alone");
  expect_close(k.dx_infer, r.dx_infer, kExact, what + " infer dx");
  expect_close(k.dgamma_infer, r.dgamma_infer, kAtolSums, what + " infer dgamma");
  expect_close(k.dbeta_infer, r.dbeta_infer, kAtolSums, what + " infer dbeta");
  expect_close(k.dgamma_infer_no_dx, r.dgamma_infer_no_dx, kAtolSums,
               what + " infer dgamma (dx null)");
}

// Compares what both ran (a Calls::kBarriers run leaves the other outputs empty).
void check_same_bits(const Outputs& a, const Outputs& b, const std::string& what) {
  if (!a.all || !b.all) {
    expect_bits(a.y, b.y, what + " train y");
    expect_bits(a.save_mean, b.save_mean, what + " save_mean");
    expect_bits(a.save_invstd, b.save_invstd, what + " save_invstd");
    expect_bits(a.running_mean, b.running_mean, what + " running_mean");
    expect_bits(a.running_var, b.running_var, what + " running_var");
    expect_bits(a.dx, b.dx, what + " train dx");
    expect_bits(a.dgamma, b.dgamma, what + " train dgamma");
    expect_bits(a.dbeta, b.dbeta, what + " train dbeta");
    return;
  }
  expect_bits(a.y, b.y, what + " train y");
  expect_bits(a.save_mean, b.save_mean, what + " save_mean");
  expect_bits(a.save_invstd, b.save_invstd, what + " save_invstd");
  expect_bits(a.running_mean, b.running_mean, what + " running_mean");
  expect_bits(a.running_var, b.running_var, what + " running_var");
  expect_bits(a.y_infer, b.y_infer, what + " infer y");
  expect_bits(a.dx, b.dx, what + " train dx");
  expect_bits(a.dgamma, b.dgamma, what + " train dgamma");
  expect_bits(a.dbeta, b.dbeta, what + " train dbeta");
  expect_bits(a.dx_infer, b.dx_infer, what + " infer dx");
  expect_bits(a.dgamma_infer, b.dgamma_infer, what + " infer dgamma");
  expect_bits(a.dbeta_infer, b.dbeta_infer, what + " infer dbeta");
  // The partial outputs equal the full ones.
  expect_bits(a.dgamma_no_dx, a.dgamma, what + " dgamma (dx null) vs with dx");
  expect_bits(a.dbeta_no_dx, a.dbeta, what + " dbeta (dx null) vs with dx");
  expect_bits(a.dgamma_alone, a.dgamma, what + " dgamma alone vs with dx");
  expect_bits(a.dgamma_infer_no_dx, a.dgamma_infer, what + " infer dgamma (dx null)");
}

// Every launcher under the emulator's forward schedule (and on a GPU), the ones with barriers
// under the reverse and random schedules too, each against the reference and with the same bits
// as the first run; on a GPU a second run and the emulator give the same bits.
TYPED_TEST(BatchNormKernels, MatchesCpu) {
  using K = TypeParam;
  uint32_t seed = 300;
  for (const BnCase& bc : kCases) {
    const Inputs in = make_inputs(bc, ++seed);
    const Outputs ref = run_reference(in);
    Outputs first;
    testing::under_schedules<K>(41, [&](const testing::ScheduleRun& run) {
      const std::string what = std::string(K::kName) + " " + describe(bc) + " " + run.name;
      const Outputs out = run_all<K>(in, 0, run.first ? Calls::kAll : Calls::kBarriers);
      check_against_reference(out, ref, what);
      if (run.first) {
        first = out;
      } else {
        check_same_bits(out, first, what + " vs forward schedule");
      }
    });
    if constexpr (K::kGpu) {
      const std::string what = std::string(K::kName) + " " + describe(bc);
      check_same_bits(run_all<K>(in), first, what + " second run");
#if defined(WREN_HAVE_EMU)
      check_same_bits(first, run_all<EmuBn>(in), what + " vs emu");
#endif
    }
  }
}

// A second run and pointers one float off a 16-byte boundary (scalar loads of the same 4-float
// units) give the same bits.
TYPED_TEST(BatchNormKernels, DeterministicAndAlignmentIndependent) {
  using K = TypeParam;
  for (const BnCase& bc : {kCases[2], kCases[5], kCases[3]}) {
    const Inputs in = make_inputs(bc, 17);
    const Outputs a = run_all<K>(in);
    const Outputs again = run_all<K>(in, 0, Calls::kBarriers);
    const Outputs shifted = run_all<K>(in, 1);
    check_same_bits(again, a, std::string(K::kName) + " " + describe(bc) + " second run");
    check_same_bits(shifted, a, std::string(K::kName) + " " + describe(bc) + " unaligned");
  }
}

// One channel of 266 240 values (66 560 float4 units): the split count reaches its cap (256),
// so some threads take two units. One schedule (the kernels' barriers are covered above).
TYPED_TEST(BatchNormKernels, SplitCap) {
  using K = TypeParam;
  const BnCase bc{"split_cap", 1, 1, 520, 512};
  const Inputs in = make_inputs(bc, 51);
  check_against_reference(run_all<K>(in, 0, Calls::kBarriers), run_reference(in),
                          std::string(K::kName) + " " + describe(bc));
}

// y = x (forward) and dx = dy (backward) in place.
TYPED_TEST(BatchNormKernels, InPlace) {
  using K = TypeParam;
  const Inputs in = make_inputs(kCases[2], 23);
  const Outputs ref = run_all<K>(in);
  const BatchNormDims& d = in.d;
  const size_t c = static_cast<size_t>(d.c);
  Buffer<unsigned char> ws(K::kGpu, std::vector<unsigned char>(K::ws_bytes(d), 0xff));
  Buffer<float> gamma(K::kGpu, in.gamma), beta(K::kGpu, in.beta);
  {
    Buffer<float> xy(K::kGpu, in.x), sm(K::kGpu, c, kFill), si(K::kGpu, c, kFill);
    Buffer<float> rm(K::kGpu, in.running_mean), rv(K::kGpu, in.running_var);
    K::forward_train(d, in.eps, in.momentum, xy.get(), gamma.get(), beta.get(), xy.get(),
                     sm.get(), si.get(), rm.get(), rv.get(), ws.get());
    ASSERT_EQ(K::finish(), "");
    expect_bits(xy.read(), ref.y, "train forward in place");
    expect_bits(sm.read(), ref.save_mean, "train forward in place: save_mean");
  }
  {
    std::vector<float> save_mean(c), save_invstd(c), y(in.x.size()), rm = in.running_mean,
                                                                     rv = in.running_var;
    cpu::batch_norm2d_forward_train<float>(d, in.eps, in.momentum, in.x.data(), in.gamma.data(),
                                           in.beta.data(), y.data(), save_mean.data(),
                                           save_invstd.data(), rm.data(), rv.data());
    Buffer<float> x(K::kGpu, in.x), gdx(K::kGpu, in.dy), sm(K::kGpu, save_mean),
        si(K::kGpu, save_invstd);
    Buffer<float> dg(K::kGpu, c, kFill), db(K::kGpu, c, kFill);
    K::backward_train(d, x.get(), gdx.get(), gamma.get(), sm.get(), si.get(), gdx.get(), dg.get(),
                      db.get(), ws.get());
    ASSERT_EQ(K::finish(), "");
    expect_bits(gdx.read(), ref.dx, "train backward in place");
    expect_bits(dg.read(), ref.dgamma, "train backward in place: dgamma");
  }
}

// Host-side validation happens before anything is enqueued (so also without a GPU).
TYPED_TEST(BatchNormLaunchers, RejectsBadArguments) {
  using K = TypeParam;
  using testing::expect_invalid_argument;
  const BatchNormDims d{2, 3, 4, 4};
  std::vector<float> v(96, 1.0f), c3(3, 1.0f);
  std::vector<double> ws(1024);
  float* p = v.data();
  float* c = c3.data();
  void* w = ws.data();
  expect_invalid_argument([&] { (void)K::ws_bytes({2, -3, 4, 4}); }, "negative dims");
  expect_invalid_argument(
      [&] { K::forward_train({-1, 3, 4, 4}, 1e-5f, 0.1f, p, c, c, p, c, c, c, c, w); },
      "negative dims");
  expect_invalid_argument(
      [&] { K::forward_train({65536, 1, 256, 256}, 1e-5f, 0.1f, p, c, c, p, c, c, c, c, w); },
      "2^31");
  expect_invalid_argument([&] { K::forward_train(d, -1.0f, 0.1f, p, c, c, p, c, c, c, c, w); },
                          "eps");
  expect_invalid_argument([&] { K::forward_train(d, NAN, 0.1f, p, c, c, p, c, c, c, c, w); },
                          "eps");
  expect_invalid_argument(
      [&] { K::forward_train(d, 1e-5f, INFINITY, p, c, c, p, c, c, c, c, w); }, "momentum");
  expect_invalid_argument(
      [&] { K::forward_train(d, 1e-5f, 0.1f, nullptr, c, c, p, c, c, c, c, w); },
      "x must not be null");
  expect_invalid_argument(
      [&] { K::forward_train(d, 1e-5f, 0.1f, p, c, c, p, c, c, nullptr, c, w); }, "running_mean");
  expect_invalid_argument(
      [&] { K::forward_train(d, 1e-5f, 0.1f, p, c, c, p, c, nullptr, c, c, w); }, "save_invstd");
  expect_invalid_argument(
      [&] { K::forward_train(d, 1e-5f, 0.1f, p, c, c, p, c, c, c, c, nullptr); }, "workspace");
  expect_invalid_argument(
      [&] {
        K::forward_train(d, 1e-5f, 0.1f, p, c, c, p, c, c, c, c,
                         reinterpret_cast<unsigned char*>(ws.data()) + 4);
      },
      "workspace");
  expect_invalid_argument([&] { K::forward_infer(d, 1e-5f, p, c, c, c, nullptr, p); },
                          "running_var");
  expect_invalid_argument([&] { K::backward_train(d, p, nullptr, c, c, c, p, c, c, w); }, "dy");
  expect_invalid_argument([&] { K::backward_train(d, p, p, c, nullptr, c, p, c, c, w); },
                          "save_mean");
  expect_invalid_argument([&] { K::backward_train(d, p, p, c, c, c, p, c, c, nullptr); },
                          "workspace");
  expect_invalid_argument(
      [&] { K::backward_infer(d, 1e-5f, nullptr, p, c, c, c, p, c, c, w); },
      "x must not be null");
  expect_invalid_argument(
      [&] { K::backward_infer(d, 1e-5f, p, p, c, c, c, nullptr, c, nullptr, nullptr); },
      "workspace");
}

}  // namespace kernel_suite
#endif  // WREN_TEST_KERNEL_DEVICES

// --- Every device: the hand-computed case -------------------------------------------------------

namespace device_suite {

using testing::Buffer;

// The CPU reference behind the kernels' launcher signatures (no workspace).
template <class T>
struct CpuBn : testing::CpuDevice<T> {
  static size_t ws_bytes(BatchNormDims) { return 0; }
  static void forward_train(BatchNormDims d, T eps, T mom, const T* x, const T* g, const T* b,
                            T* y, T* sm, T* si, T* rm, T* rv, void*) {
    cpu::batch_norm2d_forward_train<T>(d, eps, mom, x, g, b, y, sm, si, rm, rv);
  }
  static void forward_infer(BatchNormDims d, T eps, const T* x, const T* g, const T* b,
                            const T* rm, const T* rv, T* y) {
    cpu::batch_norm2d_forward_infer<T>(d, eps, x, g, b, rm, rv, y);
  }
};

template <class K>
class BatchNormDevices : public testing::DeviceTest<K> {};
TYPED_TEST_SUITE(BatchNormDevices,
                 WREN_ALL_DEVICES(CpuBn<double>, CpuBn<float>, kernel_suite::EmuBn,
                                  kernel_suite::CudaBn),
                 testing::DeviceNames);

// N=2, C=1, H=1, W=2: x = {1, 2 | 3, 6}. mean 3, deviations {−2, −1, 0, 3}, Σdev² = 14:
// biased variance 3.5, unbiased 14/3. With eps = 0.5, invstd = 1/√4 = 0.5, so
// xhat = {−1, −0.5, 0, 1.5} and with gamma 2, beta 1, y = {−1, 0, 1, 4}.
// Running (momentum 0.1, from 0 and 1): mean 0.3, var 0.9 + 0.1·14/3 = 1.3666…
TYPED_TEST(BatchNormDevices, TinyHandComputedCase) {
  using K = TypeParam;
  using T = typename K::Scalar;
  using testing::expect_all_close;
  const BatchNormDims d{2, 1, 1, 2};
  Buffer<T> x(K::kGpu, std::vector<T>{1, 2, 3, 6}), gamma(K::kGpu, 1, T(2)), beta(K::kGpu, 1, T(1));
  Buffer<T> y(K::kGpu, 4, T(7)), save_mean(K::kGpu, 1, T(7)), save_invstd(K::kGpu, 1, T(7));
  Buffer<T> rm(K::kGpu, 1, T(0)), rv(K::kGpu, 1, T(1));
  Buffer<unsigned char> ws(K::kGpu, K::ws_bytes(d), 0xff);
  K::forward_train(d, T(0.5), T(0.1), x.get(), gamma.get(), beta.get(), y.get(), save_mean.get(),
                   save_invstd.get(), rm.get(), rv.get(), ws.get());
  ASSERT_EQ(K::finish(), "");
  const std::vector<double> expected_y = {-1, 0, 1, 4};
  expect_all_close<T, double>(y.read(), expected_y, 1e-6, 1e-6, "y");
  EXPECT_NEAR(save_mean.read()[0], 3.0, 1e-6);
  EXPECT_NEAR(save_invstd.read()[0], 0.5, 1e-6);
  EXPECT_NEAR(rm.read()[0], 0.3, 1e-6);
  EXPECT_NEAR(rv.read()[0], 0.9 + 0.1 * 14.0 / 3.0, 1e-6);

  // Without gamma/beta the output is xhat; inference with those running stats uses them.
  K::forward_train(d, T(0.5), T(0.1), x.get(), nullptr, nullptr, y.get(), save_mean.get(),
                   save_invstd.get(), rm.get(), rv.get(), ws.get());
  ASSERT_EQ(K::finish(), "");
  const std::vector<double> expected_xhat = {-1, -0.5, 0, 1.5};
  expect_all_close<T, double>(y.read(), expected_xhat, 1e-6, 1e-6, "xhat");

  // Inference: running mean 1, var 3.5, eps 0.5 → (x − 1)/2·gamma + beta = {1, 2, 3, 6}.
  Buffer<T> rm_i(K::kGpu, 1, T(1)), rv_i(K::kGpu, 1, T(3.5));
  K::forward_infer(d, T(0.5), x.get(), gamma.get(), beta.get(), rm_i.get(), rv_i.get(), y.get());
  ASSERT_EQ(K::finish(), "");
  const std::vector<double> expected_infer = {1, 2, 3, 6};
  expect_all_close<T, double>(y.read(), expected_infer, 1e-6, 1e-6, "inference y");
}

}  // namespace device_suite

}  // namespace
}  // namespace wren
