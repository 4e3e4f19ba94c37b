// Softmax cross-entropy (kernels/softmax_ce/): the CPU reference in float and double, and the
// kernel on every device.
//
// The CPU reference (kernels/softmax_ce/reference.cpp), in float and double (SoftmaxCeTest):
// forward against a direct long-double computation written here from the header's formula,
// backward against finite differences and the closed form. The hand-computed case holds on every
// device (SoftmaxCeDevices/cpu_double, cpu_float, emu, cuda).
//
// The kernel (kernels/softmax_ce/softmax_ce.cu), one typed body per check on emu and cuda
// (SoftmaxCeKernels/emu, SoftmaxCeKernels/cuda; the cuda cases skip without a GPU): against the
// CPU reference (float), on the emulator under the forward, reverse and random fiber schedules.
//
// Cases: C = 10 (a thread per position), C = 32 over two blocks, C = 33 / 999 (a warp per row,
// single classes), C = 1000 and C = 40 (a warp per row, 4-class chunks: float4), C = 1; the
// per-pixel form (S = 63; S = 2560 with the denominator pre-pass and a multi-block loss);
// 1000 rows of C = 40 (pre-pass with the warp path); label smoothing, class weights,
// ignore_index (−100, and one inside [0, C)), every position ignored, every remaining label of
// weight 0, N = 0. Each case runs with both outputs, the loss only and the gradient only
// (the output not asked for must stay untouched), with dloss = 0.37.
//
// Tolerance: |kernel − reference| ≤ 2^-23·|reference| (one fp32 ulp) + 1e-15. The kernel forms
// the per-position values with the reference's double expressions; only summation orders
// differ (tree sums for the denominator, Σ_c w_c and the loss, and Σ exp in the warp path),
// which changes the doubles by ~1e-16 relative, so after the single rounding to float a result
// is the reference's or a neighbour (the 1e-15 absolute term covers gradients that are 0 up
// to double rounding: |g| ~ 1e-2 here). Degenerate denominators must give exact zeros. Every
// schedule (three runs; two runs on a GPU) must give the same bits; so must unaligned pointers
// (scalar loads) and aligned ones (float4).
#include "softmax_ce/softmax_ce.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <random>
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

}  // namespace reference_suite

// --- The kernel on emu and cuda ------------------------------------------------------------------

#if WREN_TEST_KERNEL_DEVICES
namespace kernel_suite {

using testing::Buffer;
using testing::expect_bits_equal;
using testing::nonzero_normal;

#define WREN_SOFTMAX_CE_LAUNCHERS(ns)                                                       \
  static size_t ws_bytes(SoftmaxCeDims d) { return wren::ns::softmax_ce_workspace_bytes(d); } \
  static void run(SoftmaxCeDims d, SoftmaxCeOptions o, const float* z, const int32_t* y,    \
                  const float* w, float dloss, float* loss, float* g, void* ws) {           \
    wren::ns::softmax_cross_entropy(d, o, z, y, w, dloss, loss, g, ws, nullptr);            \
  }

#if defined(WREN_HAVE_EMU)
struct EmuCe : testing::EmuDevice {
  WREN_SOFTMAX_CE_LAUNCHERS(emu_kernels)
};
#endif
struct CudaCe : testing::CudaDevice {
  WREN_SOFTMAX_CE_LAUNCHERS(WREN_TEST_CUDA_KERNELS)
};
#undef WREN_SOFTMAX_CE_LAUNCHERS

using Devices = WREN_KERNEL_DEVICES(EmuCe, CudaCe);

template <class K>
class SoftmaxCeKernels : public testing::DeviceTest<K> {};
TYPED_TEST_SUITE(SoftmaxCeKernels, Devices, testing::DeviceNames);

template <class K>
class SoftmaxCeLaunchers : public testing::LauncherTest<K> {};
TYPED_TEST_SUITE(SoftmaxCeLaunchers, Devices, testing::DeviceNames);

// --- Cases ---------------------------------------------------------------------------------------

enum class Labels { kRandom, kAllIgnored, kZeroWeight };

struct CeCase {
  const char* name;
  int n, c, s;
  double smoothing;
  bool weights;
  int ignore_percent;
  int32_t ignore_index = -100;
  Labels labels = Labels::kRandom;
};

const CeCase kCases[] = {
    {"c10", 37, 10, 1, 0.0, false, 10},
    {"c10_smooth_weights", 37, 10, 1, 0.1, true, 10},
    {"c32_two_blocks", 300, 32, 1, 0.05, false, 5},
    {"c33_rows", 20, 33, 1, 0.1, true, 10},
    {"c40_rows_prepass", 1000, 40, 1, 0.1, true, 10},
    {"c999_rows", 11, 999, 1, 0.2, true, 10},
    {"c1000_rows_float4", 19, 1000, 1, 0.1, true, 10},
    {"c1000_plain", 19, 1000, 1, 0.0, false, 0},
    {"c1", 9, 1, 1, 0.1, true, 0},
    {"pixel_s63", 3, 5, 63, 0.1, true, 20},
    {"pixel_s2560_prepass", 2, 3, 2560, 0.0, true, 15},
    {"ignore_index_in_range", 40, 10, 1, 0.1, false, 0, 2},
    {"all_ignored", 12, 10, 1, 0.1, true, 0, -100, Labels::kAllIgnored},
    {"all_ignored_pixel", 2, 4, 30, 0.0, false, 0, -100, Labels::kAllIgnored},
    {"zero_weights", 25, 10, 1, 0.1, true, 10, -100, Labels::kZeroWeight},
    {"zero_weights_rows", 9, 64, 1, 0.0, true, 0, -100, Labels::kZeroWeight},
    {"empty_batch", 0, 10, 1, 0.1, true, 0},
};

std::string describe(const CeCase& c) {
  return std::string(c.name) + " [N=" + std::to_string(c.n) + ", C=" + std::to_string(c.c) +
         ", S=" + std::to_string(c.s) + "]";
}

struct Inputs {
  SoftmaxCeDims d;
  SoftmaxCeOptions o;
  std::vector<float> logits;
  std::vector<int32_t> labels;
  std::vector<float> weights;  // empty: none
};

Inputs make_inputs(const CeCase& cc, uint32_t seed) {
  std::mt19937 rng(seed);
  Inputs in;
  in.d.n = cc.n;
  in.d.c = cc.c;
  in.d.s = cc.s;
  in.o.label_smoothing = cc.smoothing;
  in.o.ignore_index = cc.ignore_index;
  const size_t positions = static_cast<size_t>(cc.n) * cc.s;
  in.logits.resize(positions * cc.c);
  for (float& z : in.logits) z = nonzero_normal(rng, 2.0f);
  std::uniform_int_distribution<int> percent(0, 99);
  // kZeroWeight: labels only from the first half of the classes, whose weights are 0.
  const int label_classes = cc.labels == Labels::kZeroWeight ? std::max(cc.c / 2, 1) : cc.c;
  std::uniform_int_distribution<int32_t> label(0, label_classes - 1);
  in.labels.resize(positions);
  for (int32_t& y : in.labels) {
    y = label(rng);
    if (cc.labels == Labels::kAllIgnored || percent(rng) < cc.ignore_percent) y = cc.ignore_index;
  }
  if (cc.weights) {
    std::uniform_real_distribution<float> weight(0.25f, 2.0f);
    in.weights.resize(cc.c);
    for (int k = 0; k < cc.c; ++k) {
      in.weights[k] = cc.labels == Labels::kZeroWeight && k < label_classes ? 0.0f : weight(rng);
    }
  }
  return in;
}

struct Reference {
  float loss;
  std::vector<float> dlogits;
  bool degenerate;  // denominator 0: exact zeros expected
};

constexpr float kDloss = 0.37f;

Reference reference(const Inputs& in) {
  Reference r;
  const float* w = in.weights.empty() ? nullptr : in.weights.data();
  cpu::softmax_cross_entropy_forward<float>(in.d, in.o, in.logits.data(), in.labels.data(),
                                                  w, &r.loss);
  r.dlogits.assign(in.logits.size(), 0.0f);
  cpu::softmax_cross_entropy_backward<float>(in.d, in.o, in.logits.data(), in.labels.data(),
                                                   w, kDloss, r.dlogits.data());
  double den = 0.0;
  for (int32_t y : in.labels) {
    if (y != in.o.ignore_index) den += w ? w[y] : 1.0;
  }
  r.degenerate = den == 0.0;
  return r;
}

// --- Running and comparing -----------------------------------------------------------------------

constexpr float kSentinel = 7.25f;  // outputs start as this, never a correct result
constexpr double kRtol = 0x1p-23;   // one fp32 ulp
constexpr double kAtol = 1e-15;

enum class Want { kBoth, kLoss, kGrad, kNone };
const char* want_name(Want w) {
  switch (w) {
    case Want::kBoth:
      return "loss+grad";
    case Want::kLoss:
      return "loss only";
    case Want::kGrad:
      return "grad only";
    case Want::kNone:
      return "nothing";
  }
  return "?";
}

struct Output {
  float loss = kSentinel;
  std::vector<float> dlogits;
};

template <class K>
Output run(const Inputs& in, Want want, size_t offset = 0) {
  Buffer<float> z(K::kGpu, in.logits, offset);
  Buffer<int32_t> y(K::kGpu, in.labels);
  Buffer<float> w(K::kGpu, in.weights);
  Buffer<float> loss(K::kGpu, std::vector<float>{kSentinel});
  Buffer<float> g(K::kGpu, std::vector<float>(in.logits.size(), kSentinel), offset);
  const size_t ws_bytes = K::ws_bytes(in.d);
  Buffer<unsigned char> ws(K::kGpu, std::vector<unsigned char>(ws_bytes, 0xff));
  const bool want_loss = want == Want::kBoth || want == Want::kLoss;
  const bool want_grad = want == Want::kBoth || want == Want::kGrad;
  K::run(in.d, in.o, z.get(), y.get(), in.weights.empty() ? nullptr : w.get(), kDloss,
         want_loss ? loss.get() : nullptr, want_grad ? g.get() : nullptr,
         ws_bytes > 0 ? ws.get() : nullptr);
  EXPECT_EQ(K::finish(), "");
  Output out;
  out.loss = loss.read()[0];
  out.dlogits = g.read();
  return out;
}

::testing::AssertionResult close(float actual, float ref) {
  if (std::fabs(static_cast<double>(actual) - ref) <= kAtol + kRtol * std::fabs(ref)) {
    return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure() << actual << " vs reference " << ref << " (diff "
                                       << static_cast<double>(actual) - ref << ")";
}

// Checks one run's outputs against the reference (and the outputs not asked for untouched).
void check_output(const Output& out, const Reference& ref, Want want, const std::string& what) {
  const bool want_loss = want == Want::kBoth || want == Want::kLoss;
  const bool want_grad = want == Want::kBoth || want == Want::kGrad;
  if (!want_loss) {
    EXPECT_EQ(out.loss, kSentinel) << what << ": loss written";
  } else if (ref.degenerate) {
    EXPECT_EQ(std::bit_cast<uint32_t>(out.loss), 0u) << what << ": loss " << out.loss;
  } else {
    EXPECT_TRUE(close(out.loss, ref.loss)) << what << ": loss";
  }
  size_t bad = 0;
  for (size_t i = 0; i < out.dlogits.size(); ++i) {
    const float a = out.dlogits[i];
    ::testing::AssertionResult ok = ::testing::AssertionSuccess();
    if (!want_grad) {
      if (a != kSentinel) ok = ::testing::AssertionFailure() << "written: " << a;
    } else if (ref.degenerate) {
      if (std::bit_cast<uint32_t>(a) != 0u) ok = ::testing::AssertionFailure() << a << " not +0";
    } else {
      ok = close(a, ref.dlogits[i]);
    }
    if (!ok && ++bad <= 5) ADD_FAILURE() << what << ": dlogits[" << i << "] " << ok.message();
  }
  EXPECT_EQ(bad, 0u) << what << ": dlogits";
}

// Every case and request against the reference, under every schedule with the same bits (the
// partial requests take the same barriers: the forward schedule is enough for them, which keeps
// the ASan build's run short); on a GPU a second run gives the same bits.
TYPED_TEST(SoftmaxCeKernels, MatchesCpu) {
  using K = TypeParam;
  uint32_t seed = 100;
  for (const CeCase& cc : kCases) {
    const Inputs in = make_inputs(cc, ++seed);
    const Reference ref = reference(in);
    for (Want want : {Want::kBoth, Want::kLoss, Want::kGrad}) {
      const std::string what = std::string(K::kName) + " " + describe(cc) + " " + want_name(want);
      Output first;
      testing::under_schedules<K>(31, [&](const testing::ScheduleRun& sched) {
        if (want != Want::kBoth && !sched.first) return;
        const Output out = run<K>(in, want);
        check_output(out, ref, want, what + ", " + sched.name);
        if (sched.first) {
          first = out;
          return;
        }
        // The same bits under every schedule.
        EXPECT_EQ(std::bit_cast<uint32_t>(out.loss), std::bit_cast<uint32_t>(first.loss))
            << what << ", " << sched.name;
        expect_bits_equal(out.dlogits, first.dlogits, what + ", " + sched.name + " vs forward");
      });
      if constexpr (K::kGpu) {
        const Output again = run<K>(in, want);
        EXPECT_EQ(std::bit_cast<uint32_t>(first.loss), std::bit_cast<uint32_t>(again.loss))
            << what;
        expect_bits_equal(first.dlogits, again.dlogits, what + " second run");
      }
    }
  }
}

TYPED_TEST(SoftmaxCeKernels, NothingAskedWritesNothing) {
  const Inputs in = make_inputs(kCases[1], 7);
  const Output out = run<TypeParam>(in, Want::kNone);
  EXPECT_EQ(out.loss, kSentinel);
  for (float g : out.dlogits) ASSERT_EQ(g, kSentinel);
}

// Float4 against scalar loads (logits and dlogits one float off a 16-byte boundary) give the
// same bits, under another random schedule on the emulator (repeated runs are compared in
// MatchesCpu).
TYPED_TEST(SoftmaxCeKernels, AlignmentIndependent) {
  using K = TypeParam;
  testing::under_random_schedule<K>(5, [] {
    for (const CeCase& cc : {kCases[6], kCases[4], kCases[10]}) {
      const Inputs in = make_inputs(cc, 77);
      const Output a = run<K>(in, Want::kBoth);
      const Output shifted = run<K>(in, Want::kBoth, 1);
      const std::string what = std::string(K::kName) + " " + describe(cc);
      EXPECT_EQ(std::bit_cast<uint32_t>(a.loss), std::bit_cast<uint32_t>(shifted.loss)) << what;
      expect_bits_equal(a.dlogits, shifted.dlogits, what + " unaligned");
    }
  });
}

// A grid larger than the kernel's cap: 4200 rows (a warp each, 8 per block) exceed the 512
// main blocks, so warps loop over rows (grid-stride) and the loss has 512 partials. One
// schedule (the kernel has the same barriers as above).
TYPED_TEST(SoftmaxCeKernels, GridStrideBeyondTheCap) {
  using K = TypeParam;
  const CeCase cc{"rows_grid_stride", 4200, 36, 1, 0.1, true, 5};
  const Inputs in = make_inputs(cc, 99);
  check_output(run<K>(in, Want::kBoth), reference(in), Want::kBoth,
               std::string(K::kName) + " " + describe(cc));
}

// A label outside [0, C) (a caller error) is not read past: the loss and the gradient are NaN.
TYPED_TEST(SoftmaxCeKernels, LabelOutOfRangeGivesNan) {
  for (const CeCase& cc : {kCases[0], kCases[6], kCases[9]}) {
    Inputs in = make_inputs(cc, 3);
    in.labels[in.labels.size() / 2] = cc.c;  // one past the last class
    const Output out = run<TypeParam>(in, Want::kBoth);
    EXPECT_TRUE(std::isnan(out.loss)) << describe(cc);
    EXPECT_TRUE(std::isnan(out.dlogits[0])) << describe(cc);
  }
}

// Host-side validation happens before anything is enqueued, so the CUDA launchers can be
// checked without a GPU.
TYPED_TEST(SoftmaxCeLaunchers, RejectsBadArguments) {
  using K = TypeParam;
  using testing::expect_invalid_argument;
  std::vector<float> z(40, 1.0f), ws(64, 0.0f);
  std::vector<int32_t> y(4, 1);
  float loss = 0.0f;
  SoftmaxCeDims d;
  d.n = 4;
  d.c = 10;
  SoftmaxCeOptions o;
  expect_invalid_argument(
      [&] { K::run({-1, 10, 1}, o, z.data(), y.data(), nullptr, 1, &loss, nullptr, ws.data()); },
      "dims");
  expect_invalid_argument(
      [&] { K::run({4, 0, 1}, o, z.data(), y.data(), nullptr, 1, &loss, nullptr, ws.data()); },
      "C >= 1");
  expect_invalid_argument(
      [&] { K::run({4, 10, 0}, o, z.data(), y.data(), nullptr, 1, &loss, nullptr, ws.data()); },
      "S >= 1");
  expect_invalid_argument([&] { (void)K::ws_bytes({4, 0, 1}); }, "dims");
  SoftmaxCeOptions smooth;
  smooth.label_smoothing = 1.5;
  expect_invalid_argument(
      [&] { K::run(d, smooth, z.data(), y.data(), nullptr, 1, &loss, nullptr, ws.data()); },
      "label_smoothing");
  smooth.label_smoothing = std::nan("");
  expect_invalid_argument(
      [&] { K::run(d, smooth, z.data(), y.data(), nullptr, 1, &loss, nullptr, ws.data()); },
      "label_smoothing");
  expect_invalid_argument(
      [&] { K::run(d, o, nullptr, y.data(), nullptr, 1, &loss, nullptr, ws.data()); }, "logits");
  expect_invalid_argument(
      [&] { K::run(d, o, z.data(), nullptr, nullptr, 1, &loss, nullptr, ws.data()); }, "labels");
  // A size whose plan needs a workspace.
  SoftmaxCeDims big;
  big.n = 5000;
  big.c = 10;
  ASSERT_GT(K::ws_bytes(big), 0u);
  std::vector<float> zb(50000, 1.0f);
  std::vector<int32_t> yb(5000, 1);
  expect_invalid_argument(
      [&] { K::run(big, o, zb.data(), yb.data(), nullptr, 1, &loss, nullptr, nullptr); },
      "workspace");
  expect_invalid_argument(
      [&] {
        K::run(big, o, zb.data(), yb.data(), nullptr, 1, &loss, nullptr,
               reinterpret_cast<unsigned char*>(ws.data()) + 4);
      },
      "workspace");
}

}  // namespace kernel_suite
#endif  // WREN_TEST_KERNEL_DEVICES

// --- Every device: the hand-computed case -------------------------------------------------------

namespace device_suite {

using testing::Buffer;

// The CPU reference behind the kernel's launcher signature (no workspace): the forward when a
// loss is asked for, the backward when a gradient is.
template <class T>
struct CpuCe : testing::CpuDevice<T> {
  static size_t ws_bytes(SoftmaxCeDims) { return 0; }
  static void run(SoftmaxCeDims d, SoftmaxCeOptions o, const T* z, const int32_t* y, const T* w,
                  T dloss, T* loss, T* g, void*) {
    if (loss != nullptr) cpu::softmax_cross_entropy_forward<T>(d, o, z, y, w, loss);
    if (g != nullptr) cpu::softmax_cross_entropy_backward<T>(d, o, z, y, w, dloss, g);
  }
};

template <class K>
class SoftmaxCeDevices : public testing::DeviceTest<K> {};
TYPED_TEST_SUITE(SoftmaxCeDevices,
                 WREN_ALL_DEVICES(CpuCe<double>, CpuCe<float>, kernel_suite::EmuCe,
                                  kernel_suite::CudaCe),
                 testing::DeviceNames);

// The loss (dloss = 0) or the gradient (times dloss) of logits `z` and labels `y` on device K.
template <class K, class T = typename K::Scalar>
T loss_on(const SoftmaxCeDims& d, const SoftmaxCeOptions& o, const std::vector<T>& z,
          const std::vector<int32_t>& y) {
  Buffer<T> zb(K::kGpu, z), loss(K::kGpu, 1, T(7));  // garbage: the forward must write it
  Buffer<int32_t> yb(K::kGpu, y);
  Buffer<unsigned char> ws(K::kGpu, K::ws_bytes(d), 0xff);
  K::run(d, o, zb.get(), yb.get(), nullptr, T(0), loss.get(), nullptr, ws.get());
  EXPECT_EQ(K::finish(), "");
  return loss.read()[0];
}
template <class K, class T = typename K::Scalar>
std::vector<T> grad_on(const SoftmaxCeDims& d, const SoftmaxCeOptions& o, const std::vector<T>& z,
                       const std::vector<int32_t>& y, T dloss) {
  Buffer<T> zb(K::kGpu, z), g(K::kGpu, z.size(), T(7));  // garbage: the backward must overwrite
  Buffer<int32_t> yb(K::kGpu, y);
  Buffer<unsigned char> ws(K::kGpu, K::ws_bytes(d), 0xff);
  K::run(d, o, zb.get(), yb.get(), nullptr, dloss, nullptr, g.get(), ws.get());
  EXPECT_EQ(K::finish(), "");
  return g.read();
}

// logits {1, 2, 3}, label 2: loss = log(e + e² + e³) − 3.
TYPED_TEST(SoftmaxCeDevices, HandComputedCase) {
  using K = TypeParam;
  using T = typename K::Scalar;
  using testing::expect_all_close;
  const SoftmaxCeDims d{1, 3, 1};
  const std::vector<T> z = {1, 2, 3};
  const std::vector<int32_t> y = {2};
  SoftmaxCeOptions o;
  EXPECT_NEAR(loss_on<K>(d, o, z, y), 0.40760596444438013, 1e-7);
  // dlogits = softmax − onehot = {0.0900…, 0.2447…, 0.6652… − 1}, times dloss.
  const std::vector<double> expected = {2 * 0.09003057317038046, 2 * 0.24472847105479767,
                                        2 * (0.6652409557748219 - 1)};
  expect_all_close<T, double>(grad_on<K>(d, o, z, y, T(2)), expected, 1e-7, 1e-6, "dlogits");

  // Label smoothing 0.1 on the same logits: l = −0.9·lp[2] − (0.1/3)·Σ lp.
  o.label_smoothing = 0.1;
  const double lse = 3 + 0.40760596444438013;
  const double smoothed = -0.9 * (3 - lse) - 0.1 / 3 * ((1 - lse) + (2 - lse) + (3 - lse));
  EXPECT_NEAR(loss_on<K>(d, o, z, y), smoothed, 1e-6);
}

}  // namespace device_suite

}  // namespace
}  // namespace wren
