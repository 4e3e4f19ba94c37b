// Element-wise ops (kernels/elementwise/: ReLU, leaky ReLU, GELU, add, accumulate, copy): the
// CPU reference in float and double, and the kernels on every device. Dropout has its own file
// (tests/kernels/dropout_test.cpp).
//
// The CPU reference (kernels/elementwise/reference.cpp), in float and double (ElementwiseTest):
// forward against a long-double computation written here; backward against finite differences
// (tests/support/gradcheck.h). ReLU and leaky ReLU gradients are checked on inputs kept away from
// the kink by construction: |x| ≥ 0.05, more than twice the largest step (float's 1e-2), so no
// point is skipped.
//
// The listed points and published constants hold on every device: one typed body each over the
// CPU reference in double and float and the kernels on emu and cuda (ElementwiseDevices/
// cpu_double, cpu_float, emu, cuda).
//
// The kernels (kernels/elementwise/elementwise.cu), one typed body on emu and cuda
// (ElementwiseKernels/emu, ElementwiseKernels/cuda; the cuda case skips without a GPU): against
// the CPU reference, bit for bit, on the emulator under every fiber schedule. Sizes cover the
// empty case, a scalar tail shorter than a float4, and a grid-stride loop over many blocks;
// offsets of one float exercise the scalar (unaligned) path. Inputs include ±0, ±Inf, NaN and
// denormals; GELU also gets values far in the tails (x·Φ(x) underflowing through the denormals
// to 0, and +large). A NaN matches any NaN (tests/support/compare.h, NanMatch::kAny).
//
// GELU on a GPU: CUDA's double erfc and exp are not correctly rounded (5 and 1 ulp), so there a
// result may be one fp32 ulp off the reference; the cuda case allows exactly that (kGeluUlps),
// with any NaN matching a NaN.
#include "elementwise/elementwise.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
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

// Runs `launch(inputs, output)` through device K on device copies of `inputs` and of `output`
// (copied as it is, so that an op which accumulates into it instead of overwriting shows),
// which receives the result.
template <class K, class T, class F>
void run_on_device(const std::vector<const std::vector<T>*>& inputs, std::vector<T>& output,
                   F launch) {
  std::vector<std::unique_ptr<testing::Buffer<T>>> buffers;
  std::vector<const T*> in;
  for (const auto* v : inputs) {
    buffers.push_back(std::make_unique<testing::Buffer<T>>(K::kGpu, *v));
    in.push_back(buffers.back()->get());
  }
  testing::Buffer<T> out(K::kGpu, output);
  launch(in, out.get());
  ASSERT_EQ(K::finish(), "");
  output = out.read();
}

// --- The CPU reference ---------------------------------------------------------------------------

namespace reference_suite {

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

}  // namespace reference_suite

// --- The kernels on emu and cuda -----------------------------------------------------------------

#if WREN_TEST_KERNEL_DEVICES
namespace kernel_suite {

using testing::expect_bits_equal;
using testing::expect_within_ulps;
using testing::kFlatCases;
using testing::NanMatch;
using testing::values_with_specials;

// GELU inputs: values_with_specials plus values in the tails: [−40, 10] and [−16, −10], where
// x·Φ(x) goes through the fp32 denormals to 0.
std::vector<float> gelu_values(size_t n, uint32_t seed) {
  std::vector<float> v = values_with_specials(n, seed);
  std::mt19937 rng(seed + 1000);
  std::uniform_real_distribution<float> wide(-40.0f, 10.0f), tail(-16.0f, -10.0f);
  for (size_t i = 7; i < n; ++i) {
    if (i % 4 == 1) v[i] = wide(rng);
    if (i % 4 == 2) v[i] = tail(rng);
  }
  return v;
}

// --- The devices ---------------------------------------------------------------------------------

#define WREN_ELEMENTWISE_LAUNCHERS(ns)                                                   \
  static void gelu_forward(int64_t n, const float* x, float* y) {                       \
    wren::ns::gelu_forward(n, x, y, nullptr);                                            \
  }                                                                                      \
  static void gelu_backward(int64_t n, const float* x, const float* dy, float* dx) {    \
    wren::ns::gelu_backward(n, x, dy, dx, nullptr);                                      \
  }                                                                                      \
  static void copy(int64_t n, const float* x, float* y) {                               \
    wren::ns::copy(n, x, y, nullptr);                                                    \
  }                                                                                      \
  static void relu_forward(int64_t n, const float* x, float* y) {                       \
    wren::ns::relu_forward(n, x, y, nullptr);                                            \
  }                                                                                      \
  static void relu_backward(int64_t n, const float* x, const float* dy, float* dx) {    \
    wren::ns::relu_backward(n, x, dy, dx, nullptr);                                      \
  }                                                                                      \
  static void leaky_relu_forward(int64_t n, float s, const float* x, float* y) {        \
    wren::ns::leaky_relu_forward(n, s, x, y, nullptr);                                   \
  }                                                                                      \
  static void leaky_relu_backward(int64_t n, float s, const float* x, const float* dy,  \
                                  float* dx) {                                           \
    wren::ns::leaky_relu_backward(n, s, x, dy, dx, nullptr);                             \
  }                                                                                      \
  static void add_forward(int64_t n, const float* a, const float* b, float* y) {        \
    wren::ns::add_forward(n, a, b, y, nullptr);                                          \
  }                                                                                      \
  static void accumulate(int64_t n, const float* x, float* acc) {                       \
    wren::ns::accumulate(n, x, acc, nullptr);                                            \
  }

#if defined(WREN_HAVE_EMU)
struct EmuElementwise : testing::EmuDevice {
  static constexpr int kGeluUlps = 0;  // the reference's libm: bit for bit
  WREN_ELEMENTWISE_LAUNCHERS(emu_kernels)
};
#endif
struct CudaElementwise : testing::CudaDevice {
  static constexpr int kGeluUlps = 1;  // CUDA's double erfc / exp (see the top of the file)
  WREN_ELEMENTWISE_LAUNCHERS(WREN_TEST_CUDA_KERNELS)
};
#undef WREN_ELEMENTWISE_LAUNCHERS

using Devices = WREN_KERNEL_DEVICES(EmuElementwise, CudaElementwise);

template <class K>
class ElementwiseKernels : public testing::DeviceTest<K> {};
TYPED_TEST_SUITE(ElementwiseKernels, Devices, testing::DeviceNames);

template <class K>
class ElementwiseLaunchers : public testing::LauncherTest<K> {};
TYPED_TEST_SUITE(ElementwiseLaunchers, Devices, testing::DeviceNames);

// Each kernel and the CPU reference on the same inputs; `offset` shifts every array by that
// many floats.
template <class K>
void check_all() {
  const std::string device = K::kName;
  for (const testing::FlatCase& c : kFlatCases) {
    const size_t n = static_cast<size_t>(c.count + c.offset);
    const std::vector<float> x = values_with_specials(n, 1), dy = values_with_specials(n, 2);
    const std::vector<float> xg = gelu_values(n, 3);
    const int64_t k = c.count;
    const size_t o = static_cast<size_t>(c.offset);
    const std::string where = device + " count " + std::to_string(k);
    std::vector<float> out(n, 7.0f), ref(n, 7.0f);
    auto expect_bits = [](const std::vector<float>& a, const std::vector<float>& r,
                          const std::string& what) {
      expect_bits_equal(a, r, what, NanMatch::kAny);
    };

    run_on_device<K>({&x}, out, [&](std::vector<const float*> in, float* y) {
      K::relu_forward(k, in[0] + o, y + o);
    });
    cpu::relu_forward<float>(k, x.data() + o, ref.data() + o);
    expect_bits(out, ref, "relu_forward " + where);

    run_on_device<K>({&x, &dy}, out, [&](std::vector<const float*> in, float* y) {
      K::relu_backward(k, in[0] + o, in[1] + o, y + o);
    });
    cpu::relu_backward<float>(k, x.data() + o, dy.data() + o, ref.data() + o);
    expect_bits(out, ref, "relu_backward " + where);

    run_on_device<K>({&x}, out, [&](std::vector<const float*> in, float* y) {
      K::leaky_relu_forward(k, 0.01f, in[0] + o, y + o);
    });
    cpu::leaky_relu_forward<float>(k, 0.01f, x.data() + o, ref.data() + o);
    expect_bits(out, ref, "leaky_relu_forward " + where);

    run_on_device<K>({&x, &dy}, out, [&](std::vector<const float*> in, float* y) {
      K::leaky_relu_backward(k, 0.2f, in[0] + o, in[1] + o, y + o);
    });
    cpu::leaky_relu_backward<float>(k, 0.2f, x.data() + o, dy.data() + o, ref.data() + o);
    expect_bits(out, ref, "leaky_relu_backward " + where);

    run_on_device<K>({&x, &dy}, out, [&](std::vector<const float*> in, float* y) {
      K::add_forward(k, in[0] + o, in[1] + o, y + o);
    });
    cpu::add_forward<float>(k, x.data() + o, dy.data() + o, ref.data() + o);
    expect_bits(out, ref, "add_forward " + where);

    // accumulate: the output starts as dy (acc += x).
    out = dy;
    ref = dy;
    run_on_device<K>({&x}, out, [&](std::vector<const float*> in, float* y) {
      K::accumulate(k, in[0] + o, y + o);
    });
    cpu::accumulate<float>(k, x.data() + o, ref.data() + o);
    expect_bits(out, ref, "accumulate " + where);

    out.assign(n, 7.0f);
    ref.assign(n, 7.0f);
    run_on_device<K>({&xg}, out, [&](std::vector<const float*> in, float* y) {
      K::gelu_forward(k, in[0] + o, y + o);
    });
    cpu::gelu_forward<float>(k, xg.data() + o, ref.data() + o);
    expect_within_ulps(out, ref, K::kGeluUlps, "gelu_forward " + where);

    run_on_device<K>({&xg, &dy}, out, [&](std::vector<const float*> in, float* y) {
      K::gelu_backward(k, in[0] + o, in[1] + o, y + o);
    });
    cpu::gelu_backward<float>(k, xg.data() + o, dy.data() + o, ref.data() + o);
    expect_within_ulps(out, ref, K::kGeluUlps, "gelu_backward " + where);

    run_on_device<K>({&x}, out, [&](std::vector<const float*> in, float* y) {
      K::copy(k, in[0] + o, y + o);
    });
    cpu::copy<float>(k, x.data() + o, ref.data() + o);
    expect_bits(out, ref, "copy " + where);
  }
}

TYPED_TEST(ElementwiseKernels, MatchesCpuBitForBit) {
  testing::under_schedules<TypeParam>(11, [] { check_all<TypeParam>(); });
}

// Host-side argument checks, made before any launch (so also without a GPU).
TYPED_TEST(ElementwiseLaunchers, RejectsBadArguments) {
  using K = TypeParam;
  using testing::expect_invalid_argument;
  std::vector<float> v(8, 1.0f);
  expect_invalid_argument([&] { K::gelu_forward(8, nullptr, v.data()); }, "gelu_forward: null");
  expect_invalid_argument([&] { K::gelu_backward(8, v.data(), nullptr, v.data()); }, "null");
  expect_invalid_argument([&] { K::copy(-2, v.data(), v.data()); }, "copy: count < 0");
  expect_invalid_argument([&] { K::relu_forward(8, v.data(), nullptr); }, "relu_forward: null");
  // Nothing to do: no pointers needed.
  K::copy(0, nullptr, nullptr);
}

}  // namespace kernel_suite
#endif  // WREN_TEST_KERNEL_DEVICES

// --- Every device: the listed points -----------------------------------------------------------

namespace device_suite {

using reference_suite::count_of;
using reference_suite::kAtol;
using reference_suite::kRtol;
using reference_suite::values;
using testing::expect_all_close;

// The CPU reference behind the kernels' launcher signatures.
template <class T>
struct CpuElementwise : testing::CpuDevice<T> {
  static void gelu_forward(int64_t n, const T* x, T* y) { cpu::gelu_forward<T>(n, x, y); }
  static void gelu_backward(int64_t n, const T* x, const T* dy, T* dx) {
    cpu::gelu_backward<T>(n, x, dy, dx);
  }
  static void copy(int64_t n, const T* x, T* y) { cpu::copy<T>(n, x, y); }
  static void relu_forward(int64_t n, const T* x, T* y) { cpu::relu_forward<T>(n, x, y); }
  static void relu_backward(int64_t n, const T* x, const T* dy, T* dx) {
    cpu::relu_backward<T>(n, x, dy, dx);
  }
  static void leaky_relu_forward(int64_t n, T s, const T* x, T* y) {
    cpu::leaky_relu_forward<T>(n, s, x, y);
  }
  static void leaky_relu_backward(int64_t n, T s, const T* x, const T* dy, T* dx) {
    cpu::leaky_relu_backward<T>(n, s, x, dy, dx);
  }
  static void add_forward(int64_t n, const T* a, const T* b, T* y) {
    cpu::add_forward<T>(n, a, b, y);
  }
  static void accumulate(int64_t n, const T* x, T* acc) { cpu::accumulate<T>(n, x, acc); }
};

template <class K>
class ElementwiseDevices : public testing::DeviceTest<K> {};
TYPED_TEST_SUITE(ElementwiseDevices,
                 WREN_ALL_DEVICES(CpuElementwise<double>, CpuElementwise<float>,
                                  kernel_suite::EmuElementwise, kernel_suite::CudaElementwise),
                 testing::DeviceNames);

TYPED_TEST(ElementwiseDevices, ReluAtListedPoints) {
  using K = TypeParam;
  using T = typename K::Scalar;
  const std::vector<T> x = values<T>({-2, -0.5, 0, 0.25, 3});
  const std::vector<T> dy = values<T>({1, 2, 3, 4, 5});
  std::vector<T> y(5), dx(5);
  run_on_device<K>({&x}, y, [&](std::vector<const T*> in, T* out) {
    K::relu_forward(count_of(x), in[0], out);
  });
  EXPECT_EQ(y, values<T>({0, 0, 0, 0.25, 3}));
  run_on_device<K>({&x, &dy}, dx, [&](std::vector<const T*> in, T* out) {
    K::relu_backward(count_of(x), in[0], in[1], out);
  });
  EXPECT_EQ(dx, values<T>({0, 0, 0, 4, 5}));  // relu'(0) = 0
}

TYPED_TEST(ElementwiseDevices, LeakyReluAtListedPoints) {
  using K = TypeParam;
  using T = typename K::Scalar;
  const T slope = T(0.125);  // exact in binary, so the products below are exact
  const std::vector<T> x = values<T>({-2, -0.5, 0, 0.25, 3});
  const std::vector<T> dy = values<T>({1, 2, 3, 4, 5});
  std::vector<T> y(5), dx(5);
  run_on_device<K>({&x}, y, [&](std::vector<const T*> in, T* out) {
    K::leaky_relu_forward(count_of(x), slope, in[0], out);
  });
  EXPECT_EQ(y, values<T>({-0.25, -0.0625, 0, 0.25, 3}));
  run_on_device<K>({&x, &dy}, dx, [&](std::vector<const T*> in, T* out) {
    K::leaky_relu_backward(count_of(x), slope, in[0], in[1], out);
  });
  EXPECT_EQ(dx, values<T>({0.125, 0.25, 0.375, 4, 5}));  // derivative at 0 is the slope
}

TYPED_TEST(ElementwiseDevices, ReluPropagatesNaN) {
  using K = TypeParam;
  using T = typename K::Scalar;
  const std::vector<T> x = {std::numeric_limits<T>::quiet_NaN(), T(-1)};
  std::vector<T> y(2);
  run_on_device<K>({&x}, y, [&](std::vector<const T*> in, T* out) {
    K::relu_forward(count_of(x), in[0], out);
  });
  EXPECT_TRUE(std::isnan(y[0]));
  EXPECT_EQ(y[1], T(0));
}

// Published values: Φ(1) = 0.841344746068542948585…, Φ(2) = 0.977249868051820792800…,
// φ(1) = 1/√(2πe) = 0.241970724519143349797…; gelu(1) = Φ(1), gelu(−1) = −(1 − Φ(1)),
// gelu(2) = 2·Φ(2), gelu'(1) = Φ(1) + φ(1), gelu'(−1) = Φ(−1) − φ(1).
TYPED_TEST(ElementwiseDevices, GeluKnownConstants) {
  using K = TypeParam;
  using T = typename K::Scalar;
  const std::vector<T> x = values<T>({1, -1, 2, 0});
  std::vector<T> y(4), dx(4);
  const std::vector<T> ones(4, T(1));
  run_on_device<K>({&x}, y, [&](std::vector<const T*> in, T* out) {
    K::gelu_forward(count_of(x), in[0], out);
  });
  run_on_device<K>({&x, &ones}, dx, [&](std::vector<const T*> in, T* out) {
    K::gelu_backward(count_of(x), in[0], in[1], out);
  });
  const std::vector<double> y_ref = {0.8413447460685429, -0.15865525393145705, 1.9544997361036416,
                                     0.0};
  const std::vector<double> dx_ref = {1.0833154705876863, -0.08331547058768630, 1.0852318010781971,
                                      0.5};
  expect_all_close(std::span<const T>(y), std::span<const double>(y_ref), kAtol<T>, kRtol<T>,
                   "gelu");
  expect_all_close(std::span<const T>(dx), std::span<const double>(dx_ref), kAtol<T>, kRtol<T>,
                   "gelu'");
}

TYPED_TEST(ElementwiseDevices, AddAccumulateCopyHandComputed) {
  using K = TypeParam;
  using T = typename K::Scalar;
  const std::vector<T> a = values<T>({1, -2, 0.5, 4});
  const std::vector<T> b = values<T>({0.25, 3, -0.5, -6});
  std::vector<T> y(4, T(99));
  run_on_device<K>({&a, &b}, y, [&](std::vector<const T*> in, T* out) {
    K::add_forward(count_of(a), in[0], in[1], out);
  });
  EXPECT_EQ(y, values<T>({1.25, 1, 0, -2}));
  run_on_device<K>({&a}, y, [&](std::vector<const T*> in, T* out) {
    K::accumulate(count_of(a), in[0], out);  // y += a
  });
  EXPECT_EQ(y, values<T>({2.25, -1, 0.5, 2}));
  run_on_device<K>({&b}, y, [&](std::vector<const T*> in, T* out) {
    K::copy(count_of(b), in[0], out);
  });
  EXPECT_EQ(y, b);
}

}  // namespace device_suite

}  // namespace
}  // namespace wren
