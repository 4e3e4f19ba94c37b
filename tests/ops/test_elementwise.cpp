// Element-wise ops reference: forward against listed points, published constants and a
// long-double computation written here; backward against finite differences
// (tests/gradcheck.h).
//
// ReLU and leaky ReLU gradients are checked on inputs kept away from the kink by construction:
// |x| ≥ 0.05, more than twice the largest step (float's 1e-2), so no point is skipped.
#include "elementwise/elementwise.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
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
class ElementwiseTest : public ::testing::Test {};
using Types = ::testing::Types<float, double>;
TYPED_TEST_SUITE(ElementwiseTest, Types);

// GELU is computed in double and rounded once to T.
template <class T>
constexpr double kRtol = std::is_same_v<T, float> ? 1e-6 : 1e-13;
template <class T>
constexpr double kAtol = std::is_same_v<T, float> ? 1e-7 : 1e-15;

int64_t count_of(const auto& v) {
  return static_cast<int64_t>(v.size());
}

template <class T>
std::vector<T> values(std::initializer_list<double> v) {
  return std::vector<T>(v.begin(), v.end());
}

// Uniform in ±[0.05, 2): random magnitude and sign, never within 0.05 of the kink at 0.
template <class T>
std::vector<T> away_from_zero(size_t count, uint64_t seed) {
  std::vector<T> x = random_vector<T>(count, seed, 0.05, 2.0);
  std::mt19937_64 gen(seed + 1);
  for (auto& e : x) e = (gen() & 1) ? e : -e;
  return x;
}

// The header's definitions evaluated independently in long double:
//   Φ(x) = (1 + erf(x/√2))/2, φ(x) = exp(−x²/2)/√(2π)
// For x < 0, Φ(x) = erfc(|x|/√2)/2: the same value without 1 + erf cancelling in the tail.
long double phi_cdf(long double x) {
  const long double z = x / std::sqrt(2.0L);
  return x < 0 ? 0.5L * std::erfc(-z) : 0.5L * (1.0L + std::erf(z));
}
long double phi_pdf(long double x) {
  return std::exp(-x * x / 2.0L) / std::sqrt(2.0L * 3.14159265358979323846264338327950288L);
}
long double gelu_ref(long double x) {
  return x * phi_cdf(x);
}
long double gelu_grad_ref(long double x) {
  return phi_cdf(x) + x * phi_pdf(x);
}

// ---------------------------------------------------------------------------------------------
// ReLU and leaky ReLU

TYPED_TEST(ElementwiseTest, ReluAtListedPoints) {
  using T = TypeParam;
  const std::vector<T> x = values<T>({-2, -0.5, 0, 0.25, 3});
  const std::vector<T> dy = values<T>({1, 2, 3, 4, 5});
  std::vector<T> y(5), dx(5);
  cpu::relu_forward(count_of(x), x.data(), y.data());
  EXPECT_EQ(y, values<T>({0, 0, 0, 0.25, 3}));
  cpu::relu_backward(count_of(x), x.data(), dy.data(), dx.data());
  EXPECT_EQ(dx, values<T>({0, 0, 0, 4, 5}));  // relu'(0) = 0
}

TYPED_TEST(ElementwiseTest, LeakyReluAtListedPoints) {
  using T = TypeParam;
  const T slope = T(0.125);  // exact in binary, so the products below are exact
  const std::vector<T> x = values<T>({-2, -0.5, 0, 0.25, 3});
  const std::vector<T> dy = values<T>({1, 2, 3, 4, 5});
  std::vector<T> y(5), dx(5);
  cpu::leaky_relu_forward(count_of(x), slope, x.data(), y.data());
  EXPECT_EQ(y, values<T>({-0.25, -0.0625, 0, 0.25, 3}));
  cpu::leaky_relu_backward(count_of(x), slope, x.data(), dy.data(), dx.data());
  EXPECT_EQ(dx, values<T>({0.125, 0.25, 0.375, 4, 5}));  // derivative at 0 is the slope
}

TYPED_TEST(ElementwiseTest, ReluAndLeakyForwardMatchDefinitionOnRandomInputs) {
  using T = TypeParam;
  const std::vector<T> x = random_vector<T>(1001, 10, -3.0, 3.0);
  const T slope = T(0.01);
  std::vector<T> y(x.size()), yl(x.size());
  cpu::relu_forward(count_of(x), x.data(), y.data());
  cpu::leaky_relu_forward(count_of(x), slope, x.data(), yl.data());
  for (size_t i = 0; i < x.size(); ++i) {
    EXPECT_EQ(y[i], x[i] > 0 ? x[i] : T(0)) << i;
    EXPECT_EQ(yl[i], x[i] > 0 ? x[i] : T(slope * x[i])) << i;
  }
}

TYPED_TEST(ElementwiseTest, ReluPropagatesNaN) {
  using T = TypeParam;
  const std::vector<T> x = {std::numeric_limits<T>::quiet_NaN(), T(-1)};
  std::vector<T> y(2);
  cpu::relu_forward(count_of(x), x.data(), y.data());
  EXPECT_TRUE(std::isnan(y[0]));
  EXPECT_EQ(y[1], T(0));
}

TYPED_TEST(ElementwiseTest, ReluBackwardMatchesFiniteDifferences) {
  using T = TypeParam;
  std::vector<T> x = away_from_zero<T>(97, 20);
  const std::vector<T> r = random_vector<T>(x.size(), 21);
  std::vector<T> y(x.size()), dx(x.size());
  cpu::relu_backward(count_of(x), x.data(), r.data(), dx.data());
  const auto loss = [&] {
    cpu::relu_forward(count_of(x), x.data(), y.data());
    return dot_loss<T>(y, r);
  };
  check_gradient<T>(x, dx, loss, "dx");
}

TYPED_TEST(ElementwiseTest, LeakyReluBackwardMatchesFiniteDifferences) {
  using T = TypeParam;
  std::vector<T> x = away_from_zero<T>(97, 30);
  const std::vector<T> r = random_vector<T>(x.size(), 31);
  const T slope = T(0.2);
  std::vector<T> y(x.size()), dx(x.size());
  cpu::leaky_relu_backward(count_of(x), slope, x.data(), r.data(), dx.data());
  const auto loss = [&] {
    cpu::leaky_relu_forward(count_of(x), slope, x.data(), y.data());
    return dot_loss<T>(y, r);
  };
  check_gradient<T>(x, dx, loss, "dx");
}

// ---------------------------------------------------------------------------------------------
// GELU

// Published values: Φ(1) = 0.841344746068542948585…, Φ(2) = 0.977249868051820792800…,
// φ(1) = 1/√(2πe) = 0.241970724519143349797…; gelu(1) = Φ(1), gelu(−1) = −(1 − Φ(1)),
// gelu(2) = 2·Φ(2), gelu'(1) = Φ(1) + φ(1), gelu'(−1) = Φ(−1) − φ(1).
TYPED_TEST(ElementwiseTest, GeluKnownConstants) {
  using T = TypeParam;
  const std::vector<T> x = values<T>({1, -1, 2, 0});
  std::vector<T> y(4), dx(4);
  const std::vector<T> ones(4, T(1));
  cpu::gelu_forward(count_of(x), x.data(), y.data());
  cpu::gelu_backward(count_of(x), x.data(), ones.data(), dx.data());
  const std::vector<double> y_ref = {0.8413447460685429, -0.15865525393145705, 1.9544997361036416,
                                     0.0};
  const std::vector<double> dx_ref = {1.0833154705876863, -0.08331547058768630, 1.0852318010781971,
                                      0.5};
  expect_all_close(std::span<const T>(y), std::span<const double>(y_ref), kAtol<T>, kRtol<T>,
                   "gelu");
  expect_all_close(std::span<const T>(dx), std::span<const double>(dx_ref), kAtol<T>, kRtol<T>,
                   "gelu'");
}

// Listed points from −10 to 6 against erf in long double. At −10, gelu ≈ −7.6e−23: the relative
// tolerance catches a formula that cancels (1 + erf) to 0 there.
TYPED_TEST(ElementwiseTest, GeluAtListedPointsMatchesLongDouble) {
  using T = TypeParam;
  const std::vector<T> x = values<T>({-10, -6, -3, -1.5, -0.5, -0.125, 0.125, 0.5, 1.5, 3, 6});
  std::vector<T> y(x.size()), dx(x.size());
  const std::vector<T> ones(x.size(), T(1));
  cpu::gelu_forward(count_of(x), x.data(), y.data());
  cpu::gelu_backward(count_of(x), x.data(), ones.data(), dx.data());
  std::vector<long double> y_ref, dx_ref;
  for (T v : x) {
    y_ref.push_back(gelu_ref(v));
    dx_ref.push_back(gelu_grad_ref(v));
  }
  // Relative only (atol 0): values go down to 1e-22.
  expect_all_close(std::span<const T>(y), std::span<const long double>(y_ref), 0, kRtol<T>, "gelu");
  expect_all_close(std::span<const T>(dx), std::span<const long double>(dx_ref), 0, kRtol<T>,
                   "gelu'");
}

TYPED_TEST(ElementwiseTest, GeluForwardMatchesLongDoubleOnRandomInputs) {
  using T = TypeParam;
  const std::vector<T> x = random_vector<T>(1001, 40, -4.0, 4.0);
  std::vector<T> y(x.size());
  cpu::gelu_forward(count_of(x), x.data(), y.data());
  std::vector<long double> ref;
  for (T v : x) ref.push_back(gelu_ref(v));
  expect_all_close(std::span<const T>(y), std::span<const long double>(ref), kAtol<T>, kRtol<T>,
                   "y");
}

TYPED_TEST(ElementwiseTest, GeluBackwardMatchesFiniteDifferences) {
  using T = TypeParam;
  std::vector<T> x = random_vector<T>(97, 50, -3.0, 3.0);
  const std::vector<T> r = random_vector<T>(x.size(), 51);
  std::vector<T> y(x.size()), dx(x.size());
  cpu::gelu_backward(count_of(x), x.data(), r.data(), dx.data());
  const auto loss = [&] {
    cpu::gelu_forward(count_of(x), x.data(), y.data());
    return dot_loss<T>(y, r);
  };
  check_gradient<T>(x, dx, loss, "dx");
}

// ---------------------------------------------------------------------------------------------
// Add, accumulate, copy

TYPED_TEST(ElementwiseTest, AddAccumulateCopyHandComputed) {
  using T = TypeParam;
  const std::vector<T> a = values<T>({1, -2, 0.5, 4});
  const std::vector<T> b = values<T>({0.25, 3, -0.5, -6});
  std::vector<T> y(4, T(99));
  cpu::add_forward(count_of(a), a.data(), b.data(), y.data());
  EXPECT_EQ(y, values<T>({1.25, 1, 0, -2}));
  cpu::accumulate(count_of(a), a.data(), y.data());  // y += a
  EXPECT_EQ(y, values<T>({2.25, -1, 0.5, 2}));
  cpu::copy(count_of(b), b.data(), y.data());
  EXPECT_EQ(y, b);
}

TYPED_TEST(ElementwiseTest, AddAccumulateCopyOnRandomInputs) {
  using T = TypeParam;
  const std::vector<T> a = random_vector<T>(1001, 60), b = random_vector<T>(1001, 61);
  std::vector<T> y(a.size()), acc = random_vector<T>(a.size(), 62), c(a.size());
  const std::vector<T> acc0 = acc;
  cpu::add_forward(count_of(a), a.data(), b.data(), y.data());
  cpu::accumulate(count_of(a), a.data(), acc.data());
  cpu::copy(count_of(a), a.data(), c.data());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(y[i], T(a[i] + b[i])) << i;
    EXPECT_EQ(acc[i], T(acc0[i] + a[i])) << i;
    EXPECT_EQ(c[i], a[i]) << i;
  }
  // A count shorter than the buffers touches only the first `count` elements.
  std::vector<T> partial(a.size(), T(5));
  cpu::copy(int64_t{10}, a.data(), partial.data());
  EXPECT_EQ(partial[9], a[9]);
  EXPECT_EQ(partial[10], T(5));
}

// The residual add's gradient is dy for both inputs (two copies of dy).
TYPED_TEST(ElementwiseTest, AddBackwardMatchesFiniteDifferencesForBothInputs) {
  using T = TypeParam;
  std::vector<T> a = random_vector<T>(53, 70), b = random_vector<T>(53, 71);
  const std::vector<T> r = random_vector<T>(a.size(), 72);
  std::vector<T> y(a.size()), da(a.size()), db(a.size());
  cpu::copy(count_of(r), r.data(), da.data());
  cpu::copy(count_of(r), r.data(), db.data());
  const auto loss = [&] {
    cpu::add_forward(count_of(a), a.data(), b.data(), y.data());
    return dot_loss<T>(y, r);
  };
  check_gradient<T>(a, da, loss, "da");
  check_gradient<T>(b, db, loss, "db");
}

// y_out = y_in + x: the gradient reaching both x and y_in is dy.
TYPED_TEST(ElementwiseTest, AccumulateMatchesFiniteDifferences) {
  using T = TypeParam;
  std::vector<T> x = random_vector<T>(53, 80), y_in = random_vector<T>(53, 81);
  const std::vector<T> r = random_vector<T>(x.size(), 82);
  std::vector<T> y(x.size());
  const auto loss = [&] {
    cpu::copy(count_of(y_in), y_in.data(), y.data());
    cpu::accumulate(count_of(x), x.data(), y.data());
    return dot_loss<T>(y, r);
  };
  check_gradient<T>(x, r, loss, "dx");
  check_gradient<T>(y_in, r, loss, "dy_in");
}

TYPED_TEST(ElementwiseTest, CopyBackwardMatchesFiniteDifferences) {
  using T = TypeParam;
  std::vector<T> x = random_vector<T>(53, 90);
  const std::vector<T> r = random_vector<T>(x.size(), 91);
  std::vector<T> y(x.size()), dx(x.size());
  cpu::copy(count_of(r), r.data(), dx.data());  // the backward of a copy is a copy
  const auto loss = [&] {
    cpu::copy(count_of(x), x.data(), y.data());
    return dot_loss<T>(y, r);
  };
  check_gradient<T>(x, dx, loss, "dx");
}

}  // namespace
}  // namespace wren
