// Dropout reference: the mask is the header's function of (key, step, index), deterministic,
// keeps close to 1 − p of the elements, and is the same for float and double; kept values are
// scaled by 1/(1 − p); the backward pass matches finite differences at the fixed mask.
#include "dropout/dropout.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "gradcheck.h"
#include "wren/rng.h"

namespace wren {
namespace {

using testing::check_gradient;
using testing::dot_loss;
using testing::expect_all_close;
using testing::random_vector;

template <class T>
class DropoutTest : public ::testing::Test {};
using Types = ::testing::Types<float, double>;
TYPED_TEST_SUITE(DropoutTest, Types);

// x / (1 − p) is one or two roundings in T.
template <class T>
constexpr double kRtol = std::is_same_v<T, float> ? 3e-7 : 5e-16;

int64_t count_of(const auto& v) {
  return static_cast<int64_t>(v.size());
}

const RngKey kKey = make_rng_key(1234, RngStream::kDropout);

// Random values in ±[0.1, 1), so no kept element is 0 and a kept/dropped decision is visible
// in y.
template <class T>
std::vector<T> nonzero_inputs(size_t count, uint64_t seed) {
  std::vector<T> x = random_vector<T>(count, seed, 0.1, 1.0);
  for (size_t i = 0; i < count; i += 2) x[i] = -x[i];
  return x;
}

template <class T>
struct Result {
  std::vector<T> y;
  std::vector<uint8_t> mask;
};

template <class T>
Result<T> run(const std::vector<T>& x, float p, RngKey key, uint64_t step) {
  Result<T> r{std::vector<T>(x.size(), T(99)), std::vector<uint8_t>(x.size(), 7)};
  cpu::dropout_forward(count_of(x), p, key, step, x.data(), r.y.data(), r.mask.data());
  return r;
}

// Fraction of positions where two masks differ.
double differing(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
  size_t n = 0;
  for (size_t i = 0; i < a.size(); ++i) n += a[i] != b[i] ? 1 : 0;
  return static_cast<double>(n) / static_cast<double>(a.size());
}

TYPED_TEST(DropoutTest, MaskIsTheHeadersFunctionOfKeyStepAndIndex) {
  using T = TypeParam;
  const std::vector<T> x = nonzero_inputs<T>(4099, 1);  // not a multiple of 4
  const float p = 0.3f;
  const uint64_t step = (uint64_t{5} << 32) + 17;  // both halves of the step matter
  const Result<T> r = run(x, p, kKey, step);
  for (size_t i = 0; i < x.size(); ++i) {
    const uint8_t expected = uniform_at(kKey, step, i) >= p ? 1 : 0;
    ASSERT_EQ(r.mask[i], expected) << i;
  }
}

TYPED_TEST(DropoutTest, MaskIsDeterministicAndDependsOnStepAndSeed) {
  using T = TypeParam;
  const std::vector<T> x = nonzero_inputs<T>(10000, 2);
  const float p = 0.5f;
  const Result<T> a = run(x, p, kKey, 3), b = run(x, p, kKey, 3);
  EXPECT_EQ(a.mask, b.mask);
  EXPECT_EQ(a.y, b.y);
  // Independent masks differ in 2·p·(1 − p) = 1/2 of the positions.
  const Result<T> next_step = run(x, p, kKey, 4);
  const Result<T> other_seed = run(x, p, make_rng_key(1235, RngStream::kDropout), 3);
  const Result<T> high_seed =
      run(x, p, make_rng_key(1234 + (uint64_t{1} << 32), RngStream::kDropout), 3);
  const Result<T> other_stream = run(x, p, make_rng_key(1234, RngStream::kInit), 3);
  for (const auto* other : {&next_step, &other_seed, &high_seed, &other_stream}) {
    const double f = differing(a.mask, other->mask);
    EXPECT_GT(f, 0.45);
    EXPECT_LT(f, 0.55);
  }
}

// Over 100k elements the kept count is Binomial(n, 1 − p): within 5 standard deviations.
TYPED_TEST(DropoutTest, KeptFractionIsCloseToOneMinusP) {
  using T = TypeParam;
  const size_t n = 100000;
  const std::vector<T> x = nonzero_inputs<T>(n, 3);
  uint64_t step = 0;
  for (float p : {0.1f, 0.3f, 0.5f, 0.9f}) {
    const Result<T> r = run(x, p, kKey, ++step);
    size_t kept = 0;
    for (uint8_t m : r.mask) {
      ASSERT_TRUE(m == 0 || m == 1);
      kept += m;
    }
    const double q = 1.0 - static_cast<double>(p);
    const double mean = static_cast<double>(n) * q;
    const double sigma = std::sqrt(static_cast<double>(n) * q * (1.0 - q));
    EXPECT_NEAR(static_cast<double>(kept), mean, 5 * sigma) << "p = " << p;
  }
}

TYPED_TEST(DropoutTest, KeptValuesAreScaledAndDroppedAreZero) {
  using T = TypeParam;
  const std::vector<T> x = nonzero_inputs<T>(5001, 4);
  for (float p : {0.25f, 0.6f}) {
    const Result<T> r = run(x, p, kKey, 9);
    size_t kept = 0;
    std::vector<long double> expected(x.size());
    for (size_t i = 0; i < x.size(); ++i) {
      ASSERT_TRUE(r.mask[i] == 0 || r.mask[i] == 1) << i;
      kept += r.mask[i];
      expected[i] = r.mask[i] ? static_cast<long double>(x[i]) / (1.0L - p) : 0.0L;
      if (!r.mask[i]) {
        EXPECT_EQ(r.y[i], T(0)) << i;
      }
    }
    EXPECT_GT(kept, 0u);
    EXPECT_LT(kept, x.size());
    expect_all_close(std::span<const T>(r.y), std::span<const long double>(expected), 0, kRtol<T>,
                     "y, p = " + std::to_string(p));
  }
}

TYPED_TEST(DropoutTest, PZeroIsIdentity) {
  using T = TypeParam;
  const std::vector<T> x = nonzero_inputs<T>(1001, 5);
  const Result<T> r = run(x, 0.0f, kKey, 1);
  EXPECT_EQ(r.y, x);
  EXPECT_EQ(r.mask, std::vector<uint8_t>(x.size(), 1));
  std::vector<T> dx(x.size());
  cpu::dropout_backward(count_of(x), 0.0f, r.mask.data(), x.data(), dx.data());
  EXPECT_EQ(dx, x);
}

// The mask is drawn in float whatever T, so float and double runs drop the same elements and
// agree on the values to float precision.
TEST(DropoutFloatDoubleTest, SameMaskAndValues) {
  const std::vector<float> xf = nonzero_inputs<float>(20000, 6);
  const std::vector<double> xd(xf.begin(), xf.end());
  const float p = 0.35f;
  const Result<double> d = run(xd, p, kKey, 11);
  const Result<float> f = run(xf, p, kKey, 11);
  EXPECT_EQ(d.mask, f.mask);
  expect_all_close(std::span<const float>(f.y), std::span<const double>(d.y), 0, 3e-7,
                   "float y vs double y");
}

TYPED_TEST(DropoutTest, BackwardHandComputed) {
  using T = TypeParam;
  const std::vector<uint8_t> mask = {1, 0, 1, 1, 0};
  const std::vector<T> dy = {T(1), T(2), T(-3), T(0.5), T(4)};
  std::vector<T> dx(5, T(99));
  cpu::dropout_backward(count_of(dy), 0.75f, mask.data(), dy.data(), dx.data());  // 1/(1−p) = 4
  EXPECT_EQ(dx, (std::vector<T>{T(4), T(0), T(-12), T(2), T(0)}));
}

// L = Σ dropout(x)·r with the mask fixed by (key, step): the forward draws the same mask at
// every perturbed x.
TYPED_TEST(DropoutTest, BackwardMatchesFiniteDifferences) {
  using T = TypeParam;
  std::vector<T> x = random_vector<T>(97, 7);
  const std::vector<T> r = random_vector<T>(x.size(), 8);
  const float p = 0.4f;
  std::vector<T> y(x.size()), dx(x.size());
  std::vector<uint8_t> mask(x.size());
  cpu::dropout_forward(count_of(x), p, kKey, 21, x.data(), y.data(), mask.data());
  cpu::dropout_backward(count_of(x), p, mask.data(), r.data(), dx.data());
  const auto loss = [&] {
    cpu::dropout_forward(count_of(x), p, kKey, 21, x.data(), y.data(), mask.data());
    return dot_loss<T>(y, r);
  };
  check_gradient<T>(x, dx, loss, "dx");
}

}  // namespace
}  // namespace wren
