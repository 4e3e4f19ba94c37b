// BatchNorm2d reference: forward against a long-double computation written here, backward
// against finite differences (tests/gradcheck.h).
#include "batch_norm/batch_norm.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "gradcheck.h"

namespace wren {
namespace {

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

// N=2, C=1, H=1, W=2: x = {1, 2 | 3, 6}. mean 3, deviations {−2, −1, 0, 3}, Σdev² = 14:
// biased variance 3.5, unbiased 14/3. With eps = 0.5, invstd = 1/√4 = 0.5, so
// xhat = {−1, −0.5, 0, 1.5} and with gamma 2, beta 1, y = {−1, 0, 1, 4}.
// Running (momentum 0.1, from 0 and 1): mean 0.3, var 0.9 + 0.1·14/3 = 1.3666…
TYPED_TEST(BatchNormTest, TinyHandComputedCase) {
  using T = TypeParam;
  const BatchNormDims d{2, 1, 1, 2};
  const std::vector<T> x = {1, 2, 3, 6};
  const T gamma = 2, beta = 1;
  std::vector<T> y(4), save_mean(1), save_invstd(1), rm = {0}, rv = {1};
  cpu::batch_norm2d_forward_train<T>(d, T(0.5), T(0.1), x.data(), &gamma, &beta, y.data(),
                                     save_mean.data(), save_invstd.data(), rm.data(), rv.data());
  const std::vector<double> expected_y = {-1, 0, 1, 4};
  expect_all_close<T, double>(y, expected_y, 1e-6, 1e-6, "y");
  EXPECT_NEAR(save_mean[0], 3.0, 1e-6);
  EXPECT_NEAR(save_invstd[0], 0.5, 1e-6);
  EXPECT_NEAR(rm[0], 0.3, 1e-6);
  EXPECT_NEAR(rv[0], 0.9 + 0.1 * 14.0 / 3.0, 1e-6);

  // Without gamma/beta the output is xhat; inference with those running stats uses them.
  cpu::batch_norm2d_forward_train<T>(d, T(0.5), T(0.1), x.data(), nullptr, nullptr, y.data(),
                                     save_mean.data(), save_invstd.data(), rm.data(), rv.data());
  const std::vector<double> expected_xhat = {-1, -0.5, 0, 1.5};
  expect_all_close<T, double>(y, expected_xhat, 1e-6, 1e-6, "xhat");

  // Inference: running mean 1, var 3.5, eps 0.5 → (x − 1)/2·gamma + beta = {1, 2, 3, 6}.
  const std::vector<T> rm_i = {1}, rv_i = {T(3.5)};
  cpu::batch_norm2d_forward_infer<T>(d, T(0.5), x.data(), &gamma, &beta, rm_i.data(),
                                     rv_i.data(), y.data());
  const std::vector<double> expected_infer = {1, 2, 3, 6};
  expect_all_close<T, double>(y, expected_infer, 1e-6, 1e-6, "inference y");
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

}  // namespace
}  // namespace wren
