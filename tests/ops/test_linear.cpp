// Linear reference: forward against hand-computed values and a naive loop in double; backward
// for x, w and b against finite differences of L = Σ y·r (tests/gradcheck.h). Outputs start
// as NaN, so an op that accumulates into them instead of overwriting shows.
#include "linear/linear.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "gradcheck.h"

namespace wren {
namespace {

using testing::check_gradient;
using testing::dot_loss;
using testing::expect_all_close;
using testing::random_vector;

template <class T>
class LinearTest : public ::testing::Test {};
using Types = ::testing::Types<float, double>;
TYPED_TEST_SUITE(LinearTest, Types);

template <class T>
constexpr T kNaN = std::numeric_limits<T>::quiet_NaN();


std::string name(const LinearDims& d) {
  return "n=" + std::to_string(d.n) + " in=" + std::to_string(d.in) +
         " out=" + std::to_string(d.out);
}

// Odd sizes, a batch of one, in or out of 1, and in > out and in < out.
std::vector<LinearDims> shapes() {
  return {{3, 7, 5}, {1, 1, 1}, {4, 13, 2}, {5, 2, 9}, {2, 1, 6}, {1, 8, 1}};
}

template <class T>
std::vector<T> forward(const LinearDims& d, const std::vector<T>& x, const std::vector<T>& w,
                       const T* b) {
  std::vector<T> y(size_t(d.n) * d.out, kNaN<T>);
  cpu::linear_forward(d, x.data(), w.data(), b, y.data());
  return y;
}

TYPED_TEST(LinearTest, HandComputed) {
  using T = TypeParam;
  // x = [1 2 3], w = [[1 0 −1], [2 1 0]], b = [0.5 −1]: y = [1 − 3 + 0.5, 2 + 2 − 1].
  const LinearDims d{1, 3, 2};
  const std::vector<T> x = {1, 2, 3}, w = {1, 0, -1, 2, 1, 0}, b = {0.5, -1};
  EXPECT_EQ(forward(d, x, w, b.data()), (std::vector<T>{-1.5, 3}));
  EXPECT_EQ(forward<T>(d, x, w, nullptr), (std::vector<T>{-2, 4}));
  // dy = [1 −2]: dx = dy·w = [1 − 4, −2, −1], dw = dyᵀ·x = [[1 2 3], [−2 −4 −6]], db = dy.
  const std::vector<T> dy = {1, -2};
  std::vector<T> dx(3, kNaN<T>), dw(6, kNaN<T>), db(2, kNaN<T>);
  cpu::linear_backward_data(d, dy.data(), w.data(), dx.data());
  cpu::linear_backward_weights(d, x.data(), dy.data(), dw.data(), db.data());
  EXPECT_EQ(dx, (std::vector<T>{-3, -2, -1}));
  EXPECT_EQ(dw, (std::vector<T>{1, 2, 3, -2, -4, -6}));
  EXPECT_EQ(db, dy);
}

TYPED_TEST(LinearTest, ForwardMatchesNaiveLoop) {
  using T = TypeParam;
  std::vector<LinearDims> all = shapes();
  all.push_back({7, 67, 33});  // large enough for OpenBLAS's blocked kernels
  uint64_t seed = 100;
  for (const LinearDims& d : all) {
    SCOPED_TRACE(name(d));
    for (const bool bias : {true, false}) {
      SCOPED_TRACE(bias ? "with bias" : "without bias");
      const std::vector<T> x = random_vector<T>(size_t(d.n) * d.in, seed += 10);
      const std::vector<T> w = random_vector<T>(size_t(d.out) * d.in, seed + 1);
      const std::vector<T> b = random_vector<T>(size_t(d.out), seed + 2);
      const T* bp = bias ? b.data() : nullptr;
      std::vector<double> ref(size_t(d.n) * d.out);
      for (size_t i = 0; i < size_t(d.n); ++i)
        for (size_t o = 0; o < size_t(d.out); ++o) {
          double acc = bp ? double(bp[o]) : 0.0;
          for (size_t j = 0; j < size_t(d.in); ++j)
            acc += double(x[i * size_t(d.in) + j]) * double(w[o * size_t(d.in) + j]);
          ref[i * size_t(d.out) + o] = acc;
        }
      // A sum of in + 1 terms of magnitude ≤ 1: a few ulps of 1 per term at most.
      const double atol = 4.0 * std::numeric_limits<T>::epsilon() * (d.in + 1);
      const double rtol = std::is_same_v<T, float> ? 1e-5 : 1e-12;
      expect_all_close<T, double>(forward(d, x, w, bp), ref, atol, rtol, "y");
    }
  }
}

TYPED_TEST(LinearTest, BackwardMatchesFiniteDifferences) {
  using T = TypeParam;
  uint64_t seed = 200;
  for (const LinearDims& d : shapes()) {
    SCOPED_TRACE(name(d));
    for (const bool bias : {true, false}) {
      SCOPED_TRACE(bias ? "with bias" : "without bias (db = nullptr)");
      std::vector<T> x = random_vector<T>(size_t(d.n) * d.in, seed += 10);
      std::vector<T> w = random_vector<T>(size_t(d.out) * d.in, seed + 1);
      std::vector<T> b = random_vector<T>(size_t(d.out), seed + 2);
      const std::vector<T> r = random_vector<T>(size_t(d.n) * d.out, seed + 3);
      std::vector<T> y(r.size());
      auto loss = [&] {
        std::fill(y.begin(), y.end(), kNaN<T>);
        cpu::linear_forward(d, x.data(), w.data(), bias ? b.data() : nullptr, y.data());
        return dot_loss<T>(y, r);
      };
      std::vector<T> dx(x.size(), kNaN<T>), dw(w.size(), kNaN<T>), db(b.size(), kNaN<T>);
      cpu::linear_backward_data(d, r.data(), w.data(), dx.data());
      cpu::linear_backward_weights(d, x.data(), r.data(), dw.data(), bias ? db.data() : nullptr);
      check_gradient<T>(x, dx, loss, "dx");
      check_gradient<T>(w, dw, loss, "dw");
      if (bias) check_gradient<T>(b, db, loss, "db");
    }
  }
}

// A batch of 0 has no contributions: parameter gradients are zero, not left as they were.
TYPED_TEST(LinearTest, EmptyBatchZeroesParameterGradients) {
  using T = TypeParam;
  const LinearDims d{0, 5, 3};
  std::vector<T> dw(15, kNaN<T>), db(3, kNaN<T>);
  cpu::linear_backward_weights<T>(d, nullptr, nullptr, dw.data(), db.data());
  EXPECT_EQ(dw, std::vector<T>(15, T(0)));
  EXPECT_EQ(db, std::vector<T>(3, T(0)));
}

}  // namespace
}  // namespace wren
