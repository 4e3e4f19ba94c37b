// Finite-difference gradient checking, Caffe's rule (BVLC/caffe, GradientChecker):
//   |analytic − numeric| ≤ threshold · max(|analytic|, |numeric|, 1)
// with the numeric derivative from central differences. The scalar being differentiated is
// L = Σ_j y_j · r_j for a fixed random r, so the analytic gradient is the op's backward pass
// run with dy = r. L is accumulated in double whatever the op's type.
//
// Points near a kink (ReLU at 0, max-pool near-ties) are skipped through `near_kink`, as Caffe
// does with kink / kink_range; the fraction skipped is bounded so that a test cannot pass by
// skipping everything.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

namespace wren::testing {

// Default step and threshold per type. Double: h = 1e-6 leaves truncation error ~h²·f''' ≈ 1e-12
// and rounding error ~1e-16·|L|/h ≈ 1e-9, far below 1e-6. Float: h = 1e-2 (Caffe's) keeps
// the rounding error of the float forward pass (~6e-8·|Δy|/h) near 1e-5 and the truncation
// error near 1e-5 for ops with bounded third derivatives; 1e-3 is then a 10x margin.
template <class T>
struct GradCheckOptions {
  double step = std::is_same_v<T, double> ? 1e-6 : 1e-2;
  double threshold = std::is_same_v<T, double> ? 1e-6 : 1e-3;
  double max_skipped_fraction = 0.2;
  std::function<bool(size_t)> near_kink;  // index into the checked input -> skip?
};

// Checks `analytic` (dL/dx) against central differences of `loss` (which reads x) for every
// element of x. `what` names the input in failure messages.
template <class T>
void check_gradient(std::span<T> x, std::span<const T> analytic,
                    const std::function<double()>& loss, const std::string& what,
                    const GradCheckOptions<T>& opt = {}) {
  ASSERT_EQ(x.size(), analytic.size()) << what;
  size_t skipped = 0, failures = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    if (opt.near_kink && opt.near_kink(i)) {
      ++skipped;
      continue;
    }
    const T original = x[i];
    x[i] = static_cast<T>(original + opt.step);
    const double x_plus = x[i];
    const double l_plus = loss();
    x[i] = static_cast<T>(original - opt.step);
    const double x_minus = x[i];
    const double l_minus = loss();
    x[i] = original;
    // Divide by the perturbation actually applied (float rounds original ± step).
    const double numeric = (l_plus - l_minus) / (x_plus - x_minus);
    const double a = analytic[i];
    const double scale = std::max({std::fabs(a), std::fabs(numeric), 1.0});
    if (!(std::fabs(a - numeric) <= opt.threshold * scale)) {  // NaN fails too
      if (++failures <= 10) {
        ADD_FAILURE() << what << "[" << i << "]: analytic " << a << " vs numeric " << numeric
                      << " (|diff| " << std::fabs(a - numeric) << " > " << opt.threshold * scale
                      << ")";
      }
    }
  }
  EXPECT_EQ(failures, 0u) << what << ": " << failures << " of " << x.size() << " elements off";
  EXPECT_LE(static_cast<double>(skipped), opt.max_skipped_fraction * static_cast<double>(x.size()))
      << what << ": too many points skipped as near a kink";
}

// L = Σ y_j · r_j in double.
template <class T>
double dot_loss(std::span<const T> y, std::span<const T> r) {
  double sum = 0.0;
  for (size_t j = 0; j < y.size(); ++j) sum += static_cast<double>(y[j]) * static_cast<double>(r[j]);
  return sum;
}

// Uniform random values in [lo, hi), from a fixed seed: tests are reproducible.
template <class T>
std::vector<T> random_vector(size_t count, uint64_t seed, double lo = -1.0, double hi = 1.0) {
  std::mt19937_64 gen(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<T> v(count);
  for (auto& e : v) e = static_cast<T>(dist(gen));
  return v;
}

// Relative + absolute closeness: |a − b| ≤ atol + rtol·|ref|, element by element.
template <class T, class U>
void expect_all_close(std::span<const T> actual, std::span<const U> ref, double atol, double rtol,
                      const std::string& what) {
  ASSERT_EQ(actual.size(), ref.size()) << what;
  size_t failures = 0;
  for (size_t i = 0; i < actual.size(); ++i) {
    const double a = actual[i], r = static_cast<double>(ref[i]);
    if (!(std::fabs(a - r) <= atol + rtol * std::fabs(r))) {
      if (++failures <= 10) ADD_FAILURE() << what << "[" << i << "]: " << a << " vs " << r;
    }
  }
  EXPECT_EQ(failures, 0u) << what << ": " << failures << " of " << actual.size() << " off";
}

}  // namespace wren::testing
