// Dropout (kernels/dropout/): the CPU reference in float and double, and the kernels on every
// device.
//
// The CPU reference (kernels/dropout/reference.cpp), in float and double (DropoutTest): the mask
// is the header's function of (key, step, index), deterministic, keeps close to 1 − p of the
// elements, and is the same for float and double; kept values are scaled by 1/(1 − p); the
// backward pass matches finite differences at the fixed mask. p = 0 is the identity and the
// hand-computed backward holds on every device (DropoutDevices/cpu_double, cpu_float, emu, cuda).
//
// The kernels (kernels/dropout/dropout.cu), one typed body on emu and cuda (DropoutKernels/emu,
// DropoutKernels/cuda; the cuda case skips without a GPU): the mask bytes and y / dx against the
// CPU reference, bit for bit, for p = 0 (a copy), 0.1, 0.5 and 0.9, with a step above 2^32 (both
// counter words), on the emulator under every fiber schedule. Sizes and offsets are the
// element-wise kernels' (tests/support/inputs.h: the empty case, a scalar tail, a grid-stride
// loop, unaligned arrays), the mask's offset too (so its 4-byte path and its byte path both
// run), in place (y = x) as well. NaNs divided by (1 − p) become the device's NaN: on the
// emulator the reference's exactly; on a GPU any NaN, within one ulp otherwise.
#include "dropout/dropout.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "support/buffer.h"
#include "support/compare.h"
#include "support/device.h"
#include "support/gradcheck.h"
#include "support/inputs.h"
#include "wren/rng.h"

namespace wren {
namespace {

// --- The CPU reference ---------------------------------------------------------------------------

namespace reference_suite {

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

}  // namespace reference_suite

// --- The kernels on emu and cuda -----------------------------------------------------------------

#if WREN_TEST_KERNEL_DEVICES
namespace kernel_suite {

using testing::Buffer;
using testing::expect_bits_equal;
using testing::expect_within_ulps;
using testing::kFlatCases;
using testing::values_with_specials;

#define WREN_DROPOUT_LAUNCHERS(ns)                                                           \
  static void forward(int64_t n, float p, RngKey key, uint64_t step, const float* x, float* y, \
                      uint8_t* mask) {                                                       \
    wren::ns::dropout_forward(n, p, key, step, x, y, mask, nullptr);                         \
  }                                                                                          \
  static void backward(int64_t n, float p, const uint8_t* mask, const float* dy, float* dx) { \
    wren::ns::dropout_backward(n, p, mask, dy, dx, nullptr);                                 \
  }

#if defined(WREN_HAVE_EMU)
struct EmuDropout : testing::EmuDevice {
  WREN_DROPOUT_LAUNCHERS(emu_kernels)
};
#endif
struct CudaDropout : testing::CudaDevice {
  WREN_DROPOUT_LAUNCHERS(WREN_TEST_CUDA_KERNELS)
};
#undef WREN_DROPOUT_LAUNCHERS

using Devices = WREN_KERNEL_DEVICES(EmuDropout, CudaDropout);

template <class K>
class DropoutKernels : public testing::DeviceTest<K> {};
TYPED_TEST_SUITE(DropoutKernels, Devices, testing::DeviceNames);

template <class K>
class DropoutLaunchers : public testing::LauncherTest<K> {};
TYPED_TEST_SUITE(DropoutLaunchers, Devices, testing::DeviceNames);

template <class K>
void check_dropout() {
  const int ulps = K::kExactNan ? 0 : 1;
  const RngKey key = make_rng_key(0x1234567890ull, RngStream::kDropout);
  const uint64_t step = (uint64_t{1} << 33) + 7;
  for (const testing::FlatCase& c : kFlatCases) {
    for (size_t mask_offset : {size_t{0}, static_cast<size_t>(c.offset ? 1 : 3)}) {
      for (float p : {0.0f, 0.1f, 0.5f, 0.9f}) {
        // The large sizes (the grid-stride loop) once, to keep the test fast.
        if (c.count > 4096 && (p != 0.5f || mask_offset != 0)) continue;
        const size_t n = static_cast<size_t>(c.count + c.offset);
        const int64_t k = c.count;
        const size_t o = static_cast<size_t>(c.offset);
        const std::string where = std::string(K::kName) + " count " + std::to_string(k) +
                                  " offset " + std::to_string(o) + " mask offset " +
                                  std::to_string(mask_offset) + " p " + std::to_string(p);
        const std::vector<float> x = values_with_specials(n, 5), dy = values_with_specials(n, 6);
        std::vector<float> y_ref(n, 7.0f), dx_ref(n, 7.0f);
        std::vector<uint8_t> mask_ref(static_cast<size_t>(k), 9);
        cpu::dropout_forward<float>(k, p, key, step, x.data() + o, y_ref.data() + o,
                                    mask_ref.data());
        cpu::dropout_backward<float>(k, p, mask_ref.data(), dy.data() + o, dx_ref.data() + o);

        Buffer<float> xd(K::kGpu, x), yd(K::kGpu, n, 7.0f);
        Buffer<uint8_t> md(K::kGpu, std::vector<uint8_t>(static_cast<size_t>(k), 9), mask_offset);
        K::forward(k, p, key, step, xd.get() + o, yd.get() + o, md.get());
        ASSERT_EQ(K::finish(), "") << where;
        expect_bits_equal(md.read(), mask_ref, "dropout mask " + where);
        expect_within_ulps(yd.read(), y_ref, ulps, "dropout y " + where);

        Buffer<float> dyd(K::kGpu, dy), dxd(K::kGpu, n, 7.0f);
        K::backward(k, p, md.get(), dyd.get() + o, dxd.get() + o);
        ASSERT_EQ(K::finish(), "") << where;
        expect_within_ulps(dxd.read(), dx_ref, ulps, "dropout dx " + where);

        // In place: y = x.
        Buffer<float> inplace(K::kGpu, x);
        K::forward(k, p, key, step, inplace.get() + o, inplace.get() + o, md.get());
        ASSERT_EQ(K::finish(), "") << where;
        std::vector<float> expect_inplace = y_ref;
        for (size_t i = 0; i < o; ++i) expect_inplace[i] = x[i];
        expect_within_ulps(inplace.read(), expect_inplace, ulps, "dropout y in place " + where);
      }
    }
  }
}

TYPED_TEST(DropoutKernels, MatchesCpuBitForBit) {
  testing::under_schedules<TypeParam>(13, [] { check_dropout<TypeParam>(); });
}

// Host-side argument checks, made before any launch (so also without a GPU).
TYPED_TEST(DropoutLaunchers, RejectsBadArguments) {
  using K = TypeParam;
  using testing::expect_invalid_argument;
  std::vector<float> v(8, 1.0f);
  std::vector<uint8_t> m(8, 1);
  const RngKey key{};
  expect_invalid_argument([&] { K::forward(8, 1.0f, key, 0, v.data(), v.data(), m.data()); },
                          "p must be");
  expect_invalid_argument([&] { K::forward(8, -0.5f, key, 0, v.data(), v.data(), m.data()); },
                          "p must be");
  expect_invalid_argument([&] { K::forward(8, NAN, key, 0, v.data(), v.data(), m.data()); },
                          "p must be");
  expect_invalid_argument([&] { K::backward(8, 1.5f, m.data(), v.data(), v.data()); },
                          "p must be");
  expect_invalid_argument([&] { K::forward(8, 0.5f, key, 0, v.data(), v.data(), nullptr); },
                          "null");
  expect_invalid_argument([&] { K::backward(-1, 0.5f, m.data(), v.data(), v.data()); },
                          "count < 0");
  // Nothing to do: no pointers needed.
  K::forward(0, 0.5f, key, 0, nullptr, nullptr, nullptr);
}

}  // namespace kernel_suite
#endif  // WREN_TEST_KERNEL_DEVICES

// --- Every device: the identity and the hand-computed backward ----------------------------------

namespace device_suite {

using reference_suite::count_of;
using reference_suite::kKey;
using reference_suite::nonzero_inputs;
using testing::Buffer;

// The CPU reference behind the kernels' launcher signatures.
template <class T>
struct CpuDropout : testing::CpuDevice<T> {
  static void forward(int64_t n, float p, RngKey key, uint64_t step, const T* x, T* y,
                      uint8_t* mask) {
    cpu::dropout_forward<T>(n, p, key, step, x, y, mask);
  }
  static void backward(int64_t n, float p, const uint8_t* mask, const T* dy, T* dx) {
    cpu::dropout_backward<T>(n, p, mask, dy, dx);
  }
};

template <class K>
class DropoutDevices : public testing::DeviceTest<K> {};
TYPED_TEST_SUITE(DropoutDevices,
                 WREN_ALL_DEVICES(CpuDropout<double>, CpuDropout<float>,
                                  kernel_suite::EmuDropout, kernel_suite::CudaDropout),
                 testing::DeviceNames);

TYPED_TEST(DropoutDevices, PZeroIsIdentity) {
  using K = TypeParam;
  using T = typename K::Scalar;
  const std::vector<T> x = nonzero_inputs<T>(1001, 5);
  Buffer<T> xb(K::kGpu, x), y(K::kGpu, x.size(), T(99)), dx(K::kGpu, x.size(), T(99));
  Buffer<uint8_t> mask(K::kGpu, x.size(), uint8_t{7});
  K::forward(count_of(x), 0.0f, kKey, 1, xb.get(), y.get(), mask.get());
  K::backward(count_of(x), 0.0f, mask.get(), xb.get(), dx.get());
  ASSERT_EQ(K::finish(), "");
  EXPECT_EQ(y.read(), x);
  EXPECT_EQ(mask.read(), std::vector<uint8_t>(x.size(), 1));
  EXPECT_EQ(dx.read(), x);
}

TYPED_TEST(DropoutDevices, BackwardHandComputed) {
  using K = TypeParam;
  using T = typename K::Scalar;
  Buffer<uint8_t> mask(K::kGpu, std::vector<uint8_t>{1, 0, 1, 1, 0});
  Buffer<T> dy(K::kGpu, std::vector<T>{T(1), T(2), T(-3), T(0.5), T(4)}), dx(K::kGpu, 5, T(99));
  K::backward(5, 0.75f, mask.get(), dy.get(), dx.get());  // 1/(1−p) = 4
  ASSERT_EQ(K::finish(), "");
  EXPECT_EQ(dx.read(), (std::vector<T>{T(4), T(0), T(-12), T(2), T(0)}));
}

}  // namespace device_suite

}  // namespace
}  // namespace wren
