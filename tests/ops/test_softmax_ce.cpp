// Softmax cross-entropy reference: forward against a direct long-double computation written
// here from the header's formula, backward against finite differences and the closed form.
#include "softmax_ce/softmax_ce.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "gradcheck.h"

namespace wren {
namespace {

using testing::check_gradient;
using testing::expect_all_close;
using testing::random_vector;

template <class T>
class SoftmaxCeTest : public ::testing::Test {};
using Types = ::testing::Types<float, double>;
TYPED_TEST_SUITE(SoftmaxCeTest, Types);

// The op sums in double and rounds once to T.
template <class T>
constexpr double kRtol = std::is_same_v<T, float> ? 1e-6 : 1e-12;
template <class T>
constexpr double kAtol = std::is_same_v<T, float> ? 1e-7 : 1e-14;

// One configuration: geometry, options, class weights or not, and which labels to ignore.
struct Config {
  std::string name;
  SoftmaxCeDims d;
  double label_smoothing = 0.0;
  bool weighted = false;
  double ignored_fraction = 0.0;  // of positions whose label becomes ignore_index
  int32_t ignore_index = -100;
};

const std::vector<Config>& configs() {
  static const std::vector<Config> all = {
      {"plain", {5, 7, 1}},
      {"label smoothing", {5, 7, 1}, 0.1},
      {"class weights", {5, 7, 1}, 0.0, true},
      {"smoothing and weights", {6, 4, 1}, 0.1, true},
      {"per-pixel with ignore", {2, 4, 15}, 0.0, false, 0.3, 255},
      {"per-pixel, everything", {2, 4, 15}, 0.1, true, 0.3, -100},
  };
  return all;
}

// Logits, labels and weights for one configuration from a fixed seed.
template <class T>
struct Inputs {
  std::vector<T> logits;
  std::vector<int32_t> labels;
  std::vector<T> weights;  // empty: unweighted
  SoftmaxCeOptions opt;

  const T* w() const { return weights.empty() ? nullptr : weights.data(); }
};

template <class T>
Inputs<T> make_inputs(const Config& cfg, uint64_t seed) {
  const SoftmaxCeDims& d = cfg.d;
  Inputs<T> in;
  in.logits = random_vector<T>(static_cast<size_t>(int64_t{d.n} * d.c * d.s), seed, -3.0, 3.0);
  std::mt19937_64 gen(seed + 1);
  std::uniform_int_distribution<int32_t> cls(0, d.c - 1);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  const size_t positions = static_cast<size_t>(d.n) * static_cast<size_t>(d.s);
  in.labels.resize(positions);
  for (auto& y : in.labels) y = u(gen) < cfg.ignored_fraction ? cfg.ignore_index : cls(gen);
  if (cfg.ignored_fraction > 0) {  // at least one of each kind, whatever the draw
    in.labels[0] = cfg.ignore_index;
    in.labels[positions - 1] = d.c - 1;
  }
  if (cfg.weighted) in.weights = random_vector<T>(static_cast<size_t>(d.c), seed + 2, 0.2, 2.0);
  in.opt = SoftmaxCeOptions{cfg.label_smoothing, cfg.ignore_index};
  return in;
}

// The header's formula computed directly: probabilities as exp(z)/Σexp(z) with no max
// subtracted (the logits here are small), in long double.
//   l_i = −(1 − ε)·w[y_i]·log p[y_i] − (ε/C)·Σ_c w[c]·log p[c],  loss = Σ_i l_i / Σ_i w[y_i]
// Also the gradient, from ∂/∂z_j of the same expression via ∂log p_k/∂z_j = [k = j] − p_j.
template <class T>
long double reference_loss(const SoftmaxCeDims& d, const Inputs<T>& in,
                           std::vector<long double>* grad = nullptr) {
  const long double eps = in.opt.label_smoothing;
  const auto w = [&](int64_t k) {
    return in.weights.empty() ? 1.0L : static_cast<long double>(in.weights[static_cast<size_t>(k)]);
  };
  const auto at = [&](int64_t n, int64_t k, int64_t s) {
    return static_cast<size_t>((n * d.c + k) * d.s + s);
  };
  long double num = 0, den = 0;
  std::vector<long double> g(in.logits.size(), 0.0L);
  for (int64_t n = 0; n < d.n; ++n) {
    for (int64_t s = 0; s < d.s; ++s) {
      const int32_t y = in.labels[static_cast<size_t>(n * d.s + s)];
      if (y == in.opt.ignore_index) continue;
      std::vector<long double> p(static_cast<size_t>(d.c));
      long double z_sum = 0;
      for (int64_t k = 0; k < d.c; ++k) {
        p[static_cast<size_t>(k)] = std::exp(static_cast<long double>(in.logits[at(n, k, s)]));
        z_sum += p[static_cast<size_t>(k)];
      }
      for (auto& e : p) e /= z_sum;
      long double l = -(1 - eps) * w(y) * std::log(p[static_cast<size_t>(y)]);
      for (int64_t k = 0; k < d.c; ++k) l -= eps / d.c * w(k) * std::log(p[static_cast<size_t>(k)]);
      num += l;
      den += w(y);
      // ∂l/∂z_j = −(1−ε)·w[y]·([j=y] − p_j) − (ε/C)·Σ_k w[k]·([k=j] − p_j)
      long double w_sum = 0;
      for (int64_t k = 0; k < d.c; ++k) w_sum += w(k);
      for (int64_t j = 0; j < d.c; ++j) {
        const long double pj = p[static_cast<size_t>(j)];
        g[at(n, j, s)] = -(1 - eps) * w(y) * ((j == y ? 1 : 0) - pj) -
                         eps / d.c * (w(j) - w_sum * pj);
      }
    }
  }
  if (den == 0) {
    if (grad) grad->assign(in.logits.size(), 0.0L);
    return 0;
  }
  if (grad) {
    for (auto& e : g) e /= den;
    *grad = g;
  }
  return num / den;
}

template <class T>
T run_forward(const SoftmaxCeDims& d, const Inputs<T>& in) {
  T loss = T(7);  // garbage: the forward must write it
  cpu::softmax_cross_entropy_forward<T>(d, in.opt, in.logits.data(), in.labels.data(), in.w(),
                                        &loss);
  return loss;
}

template <class T>
std::vector<T> run_backward(const SoftmaxCeDims& d, const Inputs<T>& in, T dloss) {
  std::vector<T> dlogits(in.logits.size(), T(7));  // garbage: the backward must overwrite
  cpu::softmax_cross_entropy_backward<T>(d, in.opt, in.logits.data(), in.labels.data(), in.w(),
                                         dloss, dlogits.data());
  return dlogits;
}

// --- forward ------------------------------------------------------------------------------

// logits {1, 2, 3}, label 2: loss = log(e + e² + e³) − 3.
TYPED_TEST(SoftmaxCeTest, HandComputedCase) {
  using T = TypeParam;
  const SoftmaxCeDims d{1, 3, 1};
  Inputs<T> in;
  in.logits = {1, 2, 3};
  in.labels = {2};
  EXPECT_NEAR(run_forward(d, in), 0.40760596444438013, 1e-7);
  // dlogits = softmax − onehot = {0.0900…, 0.2447…, 0.6652… − 1}, times dloss.
  const std::vector<double> expected = {2 * 0.09003057317038046, 2 * 0.24472847105479767,
                                        2 * (0.6652409557748219 - 1)};
  expect_all_close<T, double>(run_backward(d, in, T(2)), expected, 1e-7, 1e-6, "dlogits");

  // Label smoothing 0.1 on the same logits: l = −0.9·lp[2] − (0.1/3)·Σ lp.
  in.opt.label_smoothing = 0.1;
  const double lse = 3 + 0.40760596444438013;
  const double smoothed = -0.9 * (3 - lse) - 0.1 / 3 * ((1 - lse) + (2 - lse) + (3 - lse));
  EXPECT_NEAR(run_forward(d, in), smoothed, 1e-6);
}

TYPED_TEST(SoftmaxCeTest, ForwardMatchesDirectComputation) {
  using T = TypeParam;
  uint64_t seed = 10;
  for (const Config& cfg : configs()) {
    SCOPED_TRACE(cfg.name);
    const Inputs<T> in = make_inputs<T>(cfg, seed++);
    const long double ref = reference_loss(cfg.d, in);
    ASSERT_GT(ref, 0.1L) << "degenerate case";
    EXPECT_NEAR(run_forward(cfg.d, in), static_cast<double>(ref),
                kAtol<T> + kRtol<T> * static_cast<double>(ref));
  }
}

TYPED_TEST(SoftmaxCeTest, AllIgnoredGivesZeroLossAndGradient) {
  using T = TypeParam;
  for (const Config& cfg : configs()) {
    SCOPED_TRACE(cfg.name);
    Inputs<T> in = make_inputs<T>(cfg, 20);
    for (auto& y : in.labels) y = cfg.ignore_index;
    EXPECT_EQ(run_forward(cfg.d, in), T(0));
    EXPECT_EQ(run_backward(cfg.d, in, T(1)), std::vector<T>(in.logits.size(), T(0)));
  }
}

// Logits that are multiples of 2⁻¹⁰ in [−3, 3]: adding a constant such as 1000 is then exact in
// float as well, so shifted and unshifted inputs are the same problem to the last bit.
template <class T>
void make_dyadic(std::vector<T>& v) {
  for (auto& e : v) e = static_cast<T>(std::round(static_cast<double>(e) * 1024) / 1024);
}

// Softmax is invariant to adding a constant to all logits of one position: so are the loss and
// the gradient.
TYPED_TEST(SoftmaxCeTest, InvariantToShiftingOnePositionsLogits) {
  using T = TypeParam;
  const Config& cfg = configs().back();  // per-pixel, smoothing, weights, ignore
  Inputs<T> in = make_inputs<T>(cfg, 30);
  make_dyadic(in.logits);
  // Position (n = 1, s = 4), made a non-ignored one.
  const SoftmaxCeDims& d = cfg.d;
  const int64_t n = 1, s = 4;
  in.labels[static_cast<size_t>(n * d.s + s)] = 2;
  const T loss = run_forward(d, in);
  const std::vector<T> grad = run_backward(d, in, T(1));
  for (int64_t k = 0; k < d.c; ++k) in.logits[static_cast<size_t>((n * d.c + k) * d.s + s)] += 37;
  EXPECT_NEAR(run_forward(d, in), loss, kRtol<T> * std::fabs(loss));
  expect_all_close<T, T>(run_backward(d, in, T(1)), grad, kAtol<T>, kRtol<T>,
                         "dlogits after shift");
}

// Logits around ±1000: exp overflows without the max subtracted. Loss and gradient stay finite
// and equal to those of the same logits shifted back to around 0.
TYPED_TEST(SoftmaxCeTest, LargeLogitsStayFinite) {
  using T = TypeParam;
  for (const Config& cfg : configs()) {
    SCOPED_TRACE(cfg.name);
    Inputs<T> in = make_inputs<T>(cfg, 40);
    make_dyadic(in.logits);
    const long double ref = reference_loss(cfg.d, in);
    std::vector<long double> ref_grad;
    reference_loss(cfg.d, in, &ref_grad);
    for (const T shift : {T(1000), T(-1000)}) {
      Inputs<T> big = in;
      for (auto& z : big.logits) z += shift;
      const T loss = run_forward(cfg.d, big);
      ASSERT_TRUE(std::isfinite(loss)) << "shift " << shift;
      EXPECT_NEAR(loss, static_cast<double>(ref), kAtol<T> + kRtol<T> * static_cast<double>(ref));
      const std::vector<T> grad = run_backward(cfg.d, big, T(1));
      for (const T g : grad) ASSERT_TRUE(std::isfinite(g)) << "shift " << shift;
      expect_all_close<T, long double>(grad, ref_grad, kAtol<T>, kRtol<T>, "dlogits");
    }
  }
  // Spread over 2000 within one position: p = {1, 0, 0}, loss ≈ 1000 for label 1.
  Inputs<T> in;
  in.logits = {1000, 0, -1000};
  in.labels = {1};
  EXPECT_NEAR(run_forward(SoftmaxCeDims{1, 3, 1}, in), 1000.0, 1e-3);
  const std::vector<double> expected = {1, -1, 0};
  expect_all_close<T, double>(run_backward(SoftmaxCeDims{1, 3, 1}, in, T(1)), expected, 1e-7,
                              0, "dlogits");
}

// --- backward -----------------------------------------------------------------------------

// L = r·loss for a scalar r ≠ 1, so the dloss scaling is checked too.
TYPED_TEST(SoftmaxCeTest, BackwardMatchesFiniteDifferences) {
  using T = TypeParam;
  const double r = 0.75;
  uint64_t seed = 50;
  for (const Config& cfg : configs()) {
    SCOPED_TRACE(cfg.name);
    Inputs<T> in = make_inputs<T>(cfg, seed++);
    const std::vector<T> dlogits = run_backward(cfg.d, in, T(r));
    const auto loss = [&] { return r * static_cast<double>(run_forward(cfg.d, in)); };
    check_gradient<T>(in.logits, dlogits, loss, "dlogits");

    // Ignored positions get exactly zero gradient.
    for (int64_t n = 0; n < cfg.d.n; ++n) {
      for (int64_t s = 0; s < cfg.d.s; ++s) {
        if (in.labels[static_cast<size_t>(n * cfg.d.s + s)] != cfg.ignore_index) continue;
        for (int64_t k = 0; k < cfg.d.c; ++k) {
          EXPECT_EQ(dlogits[static_cast<size_t>((n * cfg.d.c + k) * cfg.d.s + s)], T(0))
              << "ignored position n=" << n << " s=" << s;
        }
      }
    }

    // And against the gradient of the direct computation.
    std::vector<long double> ref;
    reference_loss(cfg.d, in, &ref);
    for (auto& e : ref) e *= r;
    expect_all_close<T, long double>(dlogits, ref, kAtol<T>, kRtol<T>, "dlogits vs direct");
  }
}

// Plain cross-entropy: dlogits = (softmax − onehot)/N.
TYPED_TEST(SoftmaxCeTest, PlainBackwardIsSoftmaxMinusOneHotOverN) {
  using T = TypeParam;
  const Config& cfg = configs().front();
  ASSERT_EQ(cfg.name, "plain");
  const SoftmaxCeDims& d = cfg.d;
  const Inputs<T> in = make_inputs<T>(cfg, 60);
  std::vector<long double> expected(in.logits.size());
  for (int64_t n = 0; n < d.n; ++n) {
    long double sum = 0;
    for (int64_t k = 0; k < d.c; ++k) {
      sum += std::exp(static_cast<long double>(in.logits[static_cast<size_t>(n * d.c + k)]));
    }
    for (int64_t k = 0; k < d.c; ++k) {
      const size_t i = static_cast<size_t>(n * d.c + k);
      const long double onehot = in.labels[static_cast<size_t>(n)] == k ? 1 : 0;
      expected[i] = (std::exp(static_cast<long double>(in.logits[i])) / sum - onehot) / d.n;
    }
  }
  expect_all_close<T, long double>(run_backward(d, in, T(1)), expected, kAtol<T>, kRtol<T>,
                                   "dlogits");
}

}  // namespace
}  // namespace wren
