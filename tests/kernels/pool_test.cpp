// Pooling (kernels/pool/): the CPU reference in float and double, and the kernels on every
// device.
//
// The CPU reference (kernels/pool/reference.cpp), in float and double (PoolTest): forward against
// a direct implementation written here (over an explicitly padded copy of each plane, in long
// double), backward against the scatter formulation and against finite differences
// (tests/support/gradcheck.h). Max-pool gradients are checked on inputs with no near-ties by
// construction: each plane is a random permutation of evenly spaced values 0.05 apart, more than
// twice the largest step (float's 1e-2), so a perturbation never changes a window's argmax and
// no point is skipped.
//
// The hand-computed cases (max, average and global average pooling, padding, overlapping
// windows, ties, NaN) hold on every device: one typed body each over the CPU reference in double
// and float and the kernels on emu and cuda (PoolDevices/cpu_double, cpu_float, emu, cuda).
//
// The kernels (kernels/pool/pool.cu), one typed body per kernel on emu and cuda (PoolKernels/emu,
// PoolKernels/cuda; the cuda cases skip without a GPU): against the CPU reference, bit for bit,
// argmax included, on the emulator under the forward, reverse and random fiber schedules.
// Geometries are the reference's random_geometries (non-overlapping, overlapping with padding,
// rectangular kernels with unequal strides, stride > kernel, 7×5 planes) with and without
// count_include_pad, the reference CNN's N=4, C=32, 28×28 k2 s2, a window entirely in the
// padding, and a kernel larger than the image. Inputs are fresh random values from std::mt19937
// (never zero), values with many ties (floor of random values), and values with NaNs and −∞;
// gradients include −0. NaN outputs: the emulator runs on the reference's CPU and must match its
// NaN bits exactly; a GPU produces its canonical NaN from arithmetic on NaNs, so there a NaN
// matches any NaN (the device's kExactNan).
#include "pool/pool.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
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

Pool2dDims dims(int n, int c, int h, int w, int kh, int kw, int sh, int sw, int ph, int pw,
                bool include_pad = true) {
  Pool2dDims d;
  d.n = n;
  d.c = c;
  d.h = h;
  d.w = w;
  d.kernel_h = kh;
  d.kernel_w = kw;
  d.stride_h = sh;
  d.stride_w = sw;
  d.pad_h = ph;
  d.pad_w = pw;
  d.count_include_pad = include_pad;
  return d;
}

size_t in_size(const Pool2dDims& d) {
  return static_cast<size_t>(d.n) * d.c * d.h * d.w;
}
size_t out_size(const Pool2dDims& d) {
  return static_cast<size_t>(d.n) * d.c * std::max(d.p(), 0) * std::max(d.q(), 0);
}

std::string name(const Pool2dDims& d) {
  return "x[" + std::to_string(d.n) + "," + std::to_string(d.c) + "," + std::to_string(d.h) + "," +
         std::to_string(d.w) + "] k" + std::to_string(d.kernel_h) + "x" +
         std::to_string(d.kernel_w) + " s" + std::to_string(d.stride_h) + "," +
         std::to_string(d.stride_w) + " p" + std::to_string(d.pad_h) + "," +
         std::to_string(d.pad_w) + (d.count_include_pad ? " incl" : " excl");
}

// Random geometries with odd sizes: non-overlapping, overlapping with padding, rectangular
// kernels with unequal strides, and stride > kernel (inputs covered by no window).
std::vector<Pool2dDims> random_geometries(bool include_pad) {
  return {
      dims(2, 3, 7, 5, 2, 2, 2, 2, 0, 0, include_pad),
      dims(2, 3, 7, 5, 3, 3, 2, 2, 1, 1, include_pad),
      dims(2, 2, 6, 7, 3, 3, 1, 1, 1, 1, include_pad),
      dims(1, 3, 7, 9, 2, 3, 1, 2, 1, 0, include_pad),
      dims(2, 2, 7, 8, 2, 2, 3, 3, 0, 1, include_pad),
  };
}

// --- The CPU reference ---------------------------------------------------------------------------

namespace reference_suite {

using testing::check_gradient;
using testing::dot_loss;
using testing::expect_all_close;
using testing::GradCheckOptions;
using testing::random_vector;

template <class T>
class PoolTest : public ::testing::Test {};
using Types = ::testing::Types<float, double>;
TYPED_TEST_SUITE(PoolTest, Types);

// The op sums in double and rounds once to T.
template <class T>
constexpr double kRtol = std::is_same_v<T, float> ? 1e-6 : 1e-13;
template <class T>
constexpr double kAtol = std::is_same_v<T, float> ? 1e-7 : 1e-14;

// Plane-wise direct implementation: copy the plane into [H + 2·pad_h, W + 2·pad_w] filled with
// `fill`, then read each window of the padded copy. in_image marks the real elements.
struct Padded {
  int64_t hp, wp;
  std::vector<long double> v;
  std::vector<int64_t> source;  // flat index h·W + w in the original plane, −1 in the padding
};

template <class T>
Padded pad_plane(const Pool2dDims& d, const T* plane, long double fill) {
  Padded out{d.h + 2 * d.pad_h, d.w + 2 * d.pad_w, {}, {}};
  out.v.assign(static_cast<size_t>(out.hp * out.wp), fill);
  out.source.assign(out.v.size(), -1);
  for (int h = 0; h < d.h; ++h) {
    for (int w = 0; w < d.w; ++w) {
      const size_t at = static_cast<size_t>((h + d.pad_h) * out.wp + (w + d.pad_w));
      out.v[at] = plane[h * d.w + w];
      out.source[at] = h * d.w + w;
    }
  }
  return out;
}

struct MaxRef {
  std::vector<long double> y;
  std::vector<int32_t> argmax;
};

template <class T>
MaxRef reference_max(const Pool2dDims& d, const std::vector<T>& x) {
  MaxRef out;
  const int64_t hw = int64_t{d.h} * d.w;
  for (int64_t plane = 0; plane < int64_t{d.n} * d.c; ++plane) {
    const Padded pd = pad_plane(d, x.data() + plane * hw, -INFINITY);
    for (int p = 0; p < d.p(); ++p) {
      for (int q = 0; q < d.q(); ++q) {
        long double best = -INFINITY;
        int64_t where = -1;
        for (int r = 0; r < d.kernel_h; ++r) {
          for (int s = 0; s < d.kernel_w; ++s) {
            const size_t at =
                static_cast<size_t>((p * d.stride_h + r) * pd.wp + q * d.stride_w + s);
            if (pd.source[at] >= 0 && (where < 0 || pd.v[at] > best)) {
              best = pd.v[at];
              where = pd.source[at];
            }
          }
        }
        out.y.push_back(best);
        out.argmax.push_back(static_cast<int32_t>(where));
      }
    }
  }
  return out;
}

// Average pooling, and the divisor of each window (for the backward reference).
struct AvgRef {
  std::vector<long double> y, divisor;
};

template <class T>
AvgRef reference_avg(const Pool2dDims& d, const std::vector<T>& x) {
  AvgRef out;
  const int64_t hw = int64_t{d.h} * d.w;
  for (int64_t plane = 0; plane < int64_t{d.n} * d.c; ++plane) {
    const Padded pd = pad_plane(d, x.data() + plane * hw, 0.0L);
    for (int p = 0; p < d.p(); ++p) {
      for (int q = 0; q < d.q(); ++q) {
        long double sum = 0;
        int real = 0;
        for (int r = 0; r < d.kernel_h; ++r) {
          for (int s = 0; s < d.kernel_w; ++s) {
            const size_t at =
                static_cast<size_t>((p * d.stride_h + r) * pd.wp + q * d.stride_w + s);
            sum += pd.v[at];
            real += pd.source[at] >= 0 ? 1 : 0;
          }
        }
        const long double div = d.count_include_pad ? d.kernel_h * d.kernel_w : real;
        out.y.push_back(sum / div);
        out.divisor.push_back(div);
      }
    }
  }
  return out;
}

// Backward by scatter: each window sends its gradient to the element(s) it read.
template <class T>
std::vector<long double> scatter_max_backward(const Pool2dDims& d,
                                              const std::vector<int32_t>& argmax,
                                              const std::vector<T>& dy) {
  std::vector<long double> dx(in_size(d), 0.0L);
  const int64_t hw = int64_t{d.h} * d.w, pq = int64_t{d.p()} * d.q();
  for (int64_t plane = 0; plane < int64_t{d.n} * d.c; ++plane) {
    for (int64_t o = 0; o < pq; ++o) {
      const size_t at = static_cast<size_t>(plane * pq + o);
      dx[static_cast<size_t>(plane * hw + argmax[at])] += dy[at];
    }
  }
  return dx;
}

template <class T>
std::vector<long double> scatter_avg_backward(const Pool2dDims& d, const AvgRef& ref,
                                              const std::vector<T>& dy) {
  std::vector<long double> dx(in_size(d), 0.0L);
  for (int64_t plane = 0; plane < int64_t{d.n} * d.c; ++plane) {
    for (int p = 0; p < d.p(); ++p) {
      for (int q = 0; q < d.q(); ++q) {
        const size_t o = static_cast<size_t>((plane * d.p() + p) * d.q() + q);
        for (int r = 0; r < d.kernel_h; ++r) {
          for (int s = 0; s < d.kernel_w; ++s) {
            const int h = p * d.stride_h - d.pad_h + r, w = q * d.stride_w - d.pad_w + s;
            if (h < 0 || h >= d.h || w < 0 || w >= d.w) continue;
            dx[static_cast<size_t>((plane * d.h + h) * d.w + w)] += dy[o] / ref.divisor[o];
          }
        }
      }
    }
  }
  return dx;
}

// Each plane a random permutation of {0, 1, …, HW − 1}·0.05 − 1 (distinct, 0.05 apart).
template <class T>
std::vector<T> distinct_planes(const Pool2dDims& d, uint64_t seed) {
  std::mt19937_64 gen(seed);
  const size_t hw = static_cast<size_t>(d.h) * d.w;
  std::vector<T> x(in_size(d));
  std::vector<int> order(hw);
  for (size_t plane = 0; plane < x.size() / hw; ++plane) {
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), gen);
    for (size_t i = 0; i < hw; ++i) x[plane * hw + i] = static_cast<T>(0.05 * order[i] - 1.0);
  }
  return x;
}

template <class T>
std::vector<T> exact_values(std::initializer_list<double> v) {
  return std::vector<T>(v.begin(), v.end());
}

// The 4×4 plane of the hand-computed cases.
//    1   5   2   0
//    3  −1   4   8
//    7   6  −2   9
//   −3   2  11  10
template <class T>
std::vector<T> plane4x4() {
  return exact_values<T>({1, 5, 2, 0, 3, -1, 4, 8, 7, 6, -2, 9, -3, 2, 11, 10});
}

// ---------------------------------------------------------------------------------------------
// Max pooling

// Overlapping windows over a plane full of ties (values from {0, 1, 2}).
TYPED_TEST(PoolTest, MaxTiesInOverlappingWindowsMatchReference) {
  using T = TypeParam;
  const Pool2dDims d = dims(2, 2, 7, 6, 3, 3, 1, 1, 1, 1);
  std::vector<T> x = random_vector<T>(in_size(d), 41, 0.0, 3.0);
  for (auto& e : x) e = std::floor(e);
  std::vector<T> y(out_size(d));
  std::vector<int32_t> argmax(out_size(d));
  cpu::max_pool2d_forward(d, x.data(), y.data(), argmax.data());
  const MaxRef ref = reference_max(d, x);
  EXPECT_EQ(argmax, ref.argmax);
  expect_all_close(std::span<const T>(y), std::span<const long double>(ref.y), 0, 0, "y");
}

TYPED_TEST(PoolTest, MaxForwardMatchesDirectImplementation) {
  using T = TypeParam;
  uint64_t seed = 100;
  for (const Pool2dDims& d : random_geometries(true)) {
    SCOPED_TRACE(name(d));
    const std::vector<T> x = random_vector<T>(in_size(d), ++seed, -2.0, 2.0);
    std::vector<T> y(out_size(d));
    std::vector<int32_t> argmax(out_size(d));
    cpu::max_pool2d_forward(d, x.data(), y.data(), argmax.data());
    const MaxRef ref = reference_max(d, x);
    EXPECT_EQ(argmax, ref.argmax);
    expect_all_close(std::span<const T>(y), std::span<const long double>(ref.y), 0, 0, "y");
  }
}

// The gather must equal the scatter formulation (dx[argmax] += dy), including inputs covered
// by several windows and inputs covered by none.
TYPED_TEST(PoolTest, MaxBackwardGatherEqualsScatter) {
  using T = TypeParam;
  uint64_t seed = 200;
  for (const Pool2dDims& d : random_geometries(true)) {
    SCOPED_TRACE(name(d));
    std::vector<T> x = random_vector<T>(in_size(d), ++seed, 0.0, 4.0);
    for (auto& e : x) e = std::floor(e);  // plenty of ties
    std::vector<T> y(out_size(d));
    std::vector<int32_t> argmax(out_size(d));
    cpu::max_pool2d_forward(d, x.data(), y.data(), argmax.data());
    const std::vector<T> dy = random_vector<T>(out_size(d), ++seed);
    std::vector<T> dx(in_size(d), T(7));
    cpu::max_pool2d_backward(d, argmax.data(), dy.data(), dx.data());
    const std::vector<long double> ref = scatter_max_backward(d, argmax, dy);
    expect_all_close(std::span<const T>(dx), std::span<const long double>(ref), kAtol<T>, kRtol<T>,
                     "dx");
  }
}

TYPED_TEST(PoolTest, MaxBackwardMatchesFiniteDifferences) {
  using T = TypeParam;
  uint64_t seed = 300;
  for (const Pool2dDims& d : random_geometries(true)) {
    SCOPED_TRACE(name(d));
    std::vector<T> x = distinct_planes<T>(d, ++seed);
    const std::vector<T> r = random_vector<T>(out_size(d), ++seed);
    std::vector<T> y(out_size(d)), dx(in_size(d));
    std::vector<int32_t> argmax(out_size(d));
    cpu::max_pool2d_forward(d, x.data(), y.data(), argmax.data());
    cpu::max_pool2d_backward(d, argmax.data(), r.data(), dx.data());
    const auto loss = [&] {
      cpu::max_pool2d_forward(d, x.data(), y.data(), argmax.data());
      return dot_loss<T>(y, r);
    };
    check_gradient<T>(x, dx, loss, "dx");
  }
}

// ---------------------------------------------------------------------------------------------
// Average pooling

TYPED_TEST(PoolTest, AvgForwardMatchesDirectImplementation) {
  using T = TypeParam;
  uint64_t seed = 400;
  for (bool include_pad : {true, false}) {
    for (const Pool2dDims& d : random_geometries(include_pad)) {
      SCOPED_TRACE(name(d));
      const std::vector<T> x = random_vector<T>(in_size(d), ++seed, -2.0, 2.0);
      std::vector<T> y(out_size(d));
      cpu::avg_pool2d_forward(d, x.data(), y.data());
      const AvgRef ref = reference_avg(d, x);
      expect_all_close(std::span<const T>(y), std::span<const long double>(ref.y), kAtol<T>,
                       kRtol<T>, "y");
    }
  }
}

TYPED_TEST(PoolTest, AvgBackwardGatherEqualsScatter) {
  using T = TypeParam;
  uint64_t seed = 500;
  for (bool include_pad : {true, false}) {
    for (const Pool2dDims& d : random_geometries(include_pad)) {
      SCOPED_TRACE(name(d));
      const std::vector<T> x = random_vector<T>(in_size(d), ++seed);
      const std::vector<T> dy = random_vector<T>(out_size(d), ++seed);
      std::vector<T> dx(in_size(d), T(7));
      cpu::avg_pool2d_backward(d, dy.data(), dx.data());
      const std::vector<long double> ref = scatter_avg_backward(d, reference_avg(d, x), dy);
      expect_all_close(std::span<const T>(dx), std::span<const long double>(ref), kAtol<T>,
                       kRtol<T>, "dx");
    }
  }
}

TYPED_TEST(PoolTest, AvgBackwardMatchesFiniteDifferences) {
  using T = TypeParam;
  uint64_t seed = 600;
  for (bool include_pad : {true, false}) {
    for (const Pool2dDims& d : random_geometries(include_pad)) {
      SCOPED_TRACE(name(d));
      std::vector<T> x = random_vector<T>(in_size(d), ++seed);
      const std::vector<T> r = random_vector<T>(out_size(d), ++seed);
      std::vector<T> y(out_size(d)), dx(in_size(d));
      cpu::avg_pool2d_backward(d, r.data(), dx.data());
      const auto loss = [&] {
        cpu::avg_pool2d_forward(d, x.data(), y.data());
        return dot_loss<T>(y, r);
      };
      check_gradient<T>(x, dx, loss, "dx");
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Global average pooling

TYPED_TEST(PoolTest, GlobalAvgForwardMatchesDirectSum) {
  using T = TypeParam;
  const int n = 2, c = 3, hw = 7 * 5;
  const std::vector<T> x = random_vector<T>(static_cast<size_t>(n * c * hw), 700, -2.0, 3.0);
  std::vector<T> y(static_cast<size_t>(n * c));
  cpu::global_avg_pool_forward(n, c, hw, x.data(), y.data());
  std::vector<long double> ref(y.size(), 0.0L);
  for (size_t i = 0; i < x.size(); ++i) ref[i / hw] += x[i];
  for (auto& e : ref) e /= hw;
  expect_all_close(std::span<const T>(y), std::span<const long double>(ref), kAtol<T>, kRtol<T>,
                   "y");
}

TYPED_TEST(PoolTest, GlobalAvgBackwardMatchesFiniteDifferences) {
  using T = TypeParam;
  const int n = 2, c = 3, hw = 3 * 5;
  std::vector<T> x = random_vector<T>(static_cast<size_t>(n * c * hw), 701);
  const std::vector<T> r = random_vector<T>(static_cast<size_t>(n * c), 702);
  std::vector<T> y(r.size()), dx(x.size());
  cpu::global_avg_pool_backward(n, c, hw, r.data(), dx.data());
  const auto loss = [&] {
    cpu::global_avg_pool_forward(n, c, hw, x.data(), y.data());
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
using testing::NanMatch;
using testing::nonzero_normal;

std::vector<Pool2dDims> geometries() {
  std::vector<Pool2dDims> out;
  for (bool include_pad : {true, false}) {
    for (const Pool2dDims& d : random_geometries(include_pad)) out.push_back(d);
    // Padding ≥ kernel: the first row and column of windows lie entirely in the padding
    // (max: −∞ and argmax −1; average without count_include_pad: 0).
    out.push_back(dims(1, 2, 5, 6, 2, 2, 2, 2, 2, 2, include_pad));
    // Kernel larger than the image: P = Q = 1, the window clipped.
    out.push_back(dims(2, 2, 3, 3, 4, 4, 2, 2, 0, 0, include_pad));
  }
  out.push_back(dims(4, 32, 28, 28, 2, 2, 2, 2, 0, 0));  // the reference CNN's max-pool
  return out;
}

// Input kinds: continuous values; ties (floor of random values, + 0.5 so never zero); NaNs
// (and −∞) sprinkled over continuous values; for global pooling also kCancel (below).
enum class Kind { kRandom, kTies, kNan, kCancel };
const Kind kKinds[] = {Kind::kRandom, Kind::kTies, Kind::kNan};
const char* kind_name(Kind k) {
  switch (k) {
    case Kind::kRandom:
      return "random";
    case Kind::kTies:
      return "ties";
    case Kind::kNan:
      return "nan";
    case Kind::kCancel:
      return "cancel";
  }
  return "?";
}

std::vector<float> make_input(size_t n, Kind kind, std::mt19937& rng) {
  std::vector<float> v(n);
  std::uniform_real_distribution<float> uniform(-3.0f, 3.0f);
  std::uniform_int_distribution<int> percent(0, 99);
  for (float& x : v) {
    switch (kind) {
      case Kind::kRandom:
      case Kind::kCancel:
        x = nonzero_normal(rng, 2.0f);
        break;
      case Kind::kTies:
        x = std::floor(uniform(rng)) + 0.5f;
        break;
      case Kind::kNan: {
        const int r = percent(rng);
        x = r < 8 ? NAN : (r < 12 ? -INFINITY : nonzero_normal(rng, 2.0f));
        break;
      }
    }
  }
  return v;
}

// Gradients: random, with some −0 (the double sum turns −0 into +0; the kernels must too).
std::vector<float> make_grad(size_t n, std::mt19937& rng) {
  std::vector<float> v(n);
  std::uniform_int_distribution<int> percent(0, 99);
  for (float& x : v) x = percent(rng) < 10 ? -0.0f : nonzero_normal(rng, 1.0f);
  return v;
}

// The reference's bits, NaNs as the device makes them (K::kExactNan).
template <class K>
void expect_same(const std::vector<float>& actual, const std::vector<float>& ref,
                 const std::string& what) {
  expect_bits_equal(actual, ref, what, K::kExactNan ? NanMatch::kBits : NanMatch::kAny);
}

// --- The devices ---------------------------------------------------------------------------------

#define WREN_POOL_LAUNCHERS(ns)                                                  \
  static void max_forward(Pool2dDims d, const float* x, float* y, int32_t* a) { \
    wren::ns::max_pool2d_forward(d, x, y, a, nullptr);                           \
  }                                                                              \
  static void max_backward(Pool2dDims d, const int32_t* a, const float* dy,     \
                           float* dx) {                                          \
    wren::ns::max_pool2d_backward(d, a, dy, dx, nullptr);                        \
  }                                                                              \
  static void avg_forward(Pool2dDims d, const float* x, float* y) {             \
    wren::ns::avg_pool2d_forward(d, x, y, nullptr);                              \
  }                                                                              \
  static void avg_backward(Pool2dDims d, const float* dy, float* dx) {          \
    wren::ns::avg_pool2d_backward(d, dy, dx, nullptr);                           \
  }                                                                              \
  static void gap_forward(int n, int c, int hw, const float* x, float* y) {     \
    wren::ns::global_avg_pool_forward(n, c, hw, x, y, nullptr);                  \
  }                                                                              \
  static void gap_backward(int n, int c, int hw, const float* dy, float* dx) {  \
    wren::ns::global_avg_pool_backward(n, c, hw, dy, dx, nullptr);               \
  }

#if defined(WREN_HAVE_EMU)
struct EmuPool : testing::EmuDevice {
  WREN_POOL_LAUNCHERS(emu_kernels)
};
#endif
struct CudaPool : testing::CudaDevice {
  WREN_POOL_LAUNCHERS(WREN_TEST_CUDA_KERNELS)
};
#undef WREN_POOL_LAUNCHERS

template <class K>
class PoolKernels : public testing::DeviceTest<K> {};
TYPED_TEST_SUITE(PoolKernels, WREN_KERNEL_DEVICES(EmuPool, CudaPool), testing::DeviceNames);

// --- Checks, one per kernel, over every geometry and input kind ------------------------------

constexpr float kFill = 7.25f;          // outputs start as this, never a correct result
constexpr int32_t kIndexFill = -12345;  // argmax likewise

template <class K>
void check_max_forward(uint32_t seed) {
  std::mt19937 rng(seed);
  for (const Pool2dDims& d : geometries()) {
    for (Kind kind : kKinds) {
      const std::string what =
          std::string(K::kName) + " max_pool2d_forward " + name(d) + " " + kind_name(kind);
      const std::vector<float> x = make_input(in_size(d), kind, rng);
      std::vector<float> y_ref(out_size(d), kFill);
      std::vector<int32_t> a_ref(out_size(d), kIndexFill);
      cpu::max_pool2d_forward<float>(d, x.data(), y_ref.data(), a_ref.data());

      Buffer<float> xb(K::kGpu, x), yb(K::kGpu, std::vector<float>(out_size(d), kFill));
      Buffer<int32_t> ab(K::kGpu, std::vector<int32_t>(out_size(d), kIndexFill));
      K::max_forward(d, xb.get(), yb.get(), ab.get());
      ASSERT_EQ(K::finish(), "") << what;
      expect_same<K>(yb.read(), y_ref, what + " y");
      expect_bits_equal(ab.read(), a_ref, what + " argmax");
    }
  }
}

template <class K>
void check_max_backward(uint32_t seed) {
  std::mt19937 rng(seed);
  for (const Pool2dDims& d : geometries()) {
    for (Kind kind : kKinds) {
      const std::string what =
          std::string(K::kName) + " max_pool2d_backward " + name(d) + " " + kind_name(kind);
      // The argmax of a real forward pass (ties and NaNs decide which element wins).
      const std::vector<float> x = make_input(in_size(d), kind, rng);
      std::vector<float> y(out_size(d));
      std::vector<int32_t> argmax(out_size(d));
      cpu::max_pool2d_forward<float>(d, x.data(), y.data(), argmax.data());
      const std::vector<float> dy = make_grad(out_size(d), rng);
      std::vector<float> dx_ref(in_size(d), kFill);
      cpu::max_pool2d_backward<float>(d, argmax.data(), dy.data(), dx_ref.data());

      Buffer<int32_t> ab(K::kGpu, argmax);
      Buffer<float> dyb(K::kGpu, dy), dxb(K::kGpu, std::vector<float>(in_size(d), kFill));
      K::max_backward(d, ab.get(), dyb.get(), dxb.get());
      ASSERT_EQ(K::finish(), "") << what;
      expect_same<K>(dxb.read(), dx_ref, what + " dx");
    }
  }
}

template <class K>
void check_avg_forward(uint32_t seed) {
  std::mt19937 rng(seed);
  for (const Pool2dDims& d : geometries()) {
    for (Kind kind : kKinds) {
      const std::string what =
          std::string(K::kName) + " avg_pool2d_forward " + name(d) + " " + kind_name(kind);
      const std::vector<float> x = make_input(in_size(d), kind, rng);
      std::vector<float> y_ref(out_size(d), kFill);
      cpu::avg_pool2d_forward<float>(d, x.data(), y_ref.data());

      Buffer<float> xb(K::kGpu, x), yb(K::kGpu, std::vector<float>(out_size(d), kFill));
      K::avg_forward(d, xb.get(), yb.get());
      ASSERT_EQ(K::finish(), "") << what;
      expect_same<K>(yb.read(), y_ref, what + " y");
    }
  }
}

template <class K>
void check_avg_backward(uint32_t seed) {
  std::mt19937 rng(seed);
  for (const Pool2dDims& d : geometries()) {
    for (Kind kind : kKinds) {
      const std::string what =
          std::string(K::kName) + " avg_pool2d_backward " + name(d) + " " + kind_name(kind);
      // dy of each kind (NaNs in dy propagate to every input its window covers).
      std::vector<float> dy = make_input(out_size(d), kind, rng);
      if (kind == Kind::kRandom) dy = make_grad(out_size(d), rng);
      std::vector<float> dx_ref(in_size(d), kFill);
      cpu::avg_pool2d_backward<float>(d, dy.data(), dx_ref.data());

      Buffer<float> dyb(K::kGpu, dy), dxb(K::kGpu, std::vector<float>(in_size(d), kFill));
      K::avg_backward(d, dyb.get(), dxb.get());
      ASSERT_EQ(K::finish(), "") << what;
      expect_same<K>(dxb.read(), dx_ref, what + " dx");
    }
  }
}

// Global pooling: plane sizes below, at and across the 32-element chunk of the kernel's warp,
// the reference CNN's 7×7 and a 28×28 plane, and an empty plane.
struct GapShape {
  int n, c, hw;
};
const GapShape kGapShapes[] = {{2, 3, 35}, {4, 32, 49}, {1, 5, 1},   {3, 2, 32},
                               {2, 2, 33}, {1, 3, 97},  {1, 2, 784}, {2, 3, 0}};

const Kind kGapKinds[] = {Kind::kRandom, Kind::kTies, Kind::kNan, Kind::kCancel};

// kRandom: values spread over many binades. kCancel: small values plus, in each plane, +2^50
// and −2^50 at random positions: the small values added between the two lose their low bits
// to the large partial sum, so the float mean depends on the exact summation order (a kernel
// that sums in any order other than the reference's sequential one fails this kind).
std::vector<float> make_gap_input(size_t planes, int hw, Kind kind, std::mt19937& rng) {
  const size_t size = static_cast<size_t>(hw);
  std::vector<float> v = make_input(planes * size, kind, rng);
  if (kind == Kind::kRandom) {
    std::uniform_int_distribution<int> exponent(-24, 24);
    for (float& x : v) x = std::ldexp(x, exponent(rng));
  }
  if (kind == Kind::kCancel && size >= 2) {
    std::uniform_int_distribution<size_t> position(0, size - 1);
    for (size_t plane = 0; plane < planes; ++plane) {
      const size_t a = position(rng);
      size_t b = position(rng);
      while (b == a) b = position(rng);
      v[plane * size + a] = 0x1p50f;
      v[plane * size + b] = -0x1p50f;
    }
  }
  return v;
}

template <class K>
void check_gap_forward(uint32_t seed) {
  std::mt19937 rng(seed);
  for (const GapShape& s : kGapShapes) {
    for (Kind kind : kGapKinds) {
      const std::string what = std::string(K::kName) + " global_avg_pool_forward [" +
                               std::to_string(s.n) + "," + std::to_string(s.c) + "," +
                               std::to_string(s.hw) + "] " + kind_name(kind);
      const size_t planes = static_cast<size_t>(s.n) * s.c;
      const std::vector<float> x = make_gap_input(planes, s.hw, kind, rng);
      std::vector<float> y_ref(planes, kFill);
      cpu::global_avg_pool_forward<float>(s.n, s.c, s.hw, x.data(), y_ref.data());

      Buffer<float> xb(K::kGpu, x), yb(K::kGpu, std::vector<float>(planes, kFill));
      K::gap_forward(s.n, s.c, s.hw, xb.get(), yb.get());
      ASSERT_EQ(K::finish(), "") << what;
      expect_same<K>(yb.read(), y_ref, what + " y");
    }
  }
}

template <class K>
void check_gap_backward(uint32_t seed) {
  std::mt19937 rng(seed);
  for (const GapShape& s : kGapShapes) {
    for (Kind kind : kGapKinds) {
      const std::string what = std::string(K::kName) + " global_avg_pool_backward [" +
                               std::to_string(s.n) + "," + std::to_string(s.c) + "," +
                               std::to_string(s.hw) + "] " + kind_name(kind);
      const size_t planes = static_cast<size_t>(s.n) * s.c;
      const std::vector<float> dy = make_gap_input(planes, 1, kind, rng);
      std::vector<float> dx_ref(planes * s.hw, kFill);
      cpu::global_avg_pool_backward<float>(s.n, s.c, s.hw, dy.data(), dx_ref.data());

      Buffer<float> dyb(K::kGpu, dy), dxb(K::kGpu, std::vector<float>(planes * s.hw, kFill));
      K::gap_backward(s.n, s.c, s.hw, dyb.get(), dxb.get());
      ASSERT_EQ(K::finish(), "") << what;
      expect_same<K>(dxb.read(), dx_ref, what + " dx");
    }
  }
}

// Each check under the emulator's three schedules (once on a GPU); the emu and cuda cases draw
// their own inputs.
TYPED_TEST(PoolKernels, MaxPoolForward) {
  testing::under_schedules<TypeParam>(29, [] {
    check_max_forward<TypeParam>(testing::device_seed<TypeParam>(101, 201));
  });
}
TYPED_TEST(PoolKernels, MaxPoolBackward) {
  testing::under_schedules<TypeParam>(29, [] {
    check_max_backward<TypeParam>(testing::device_seed<TypeParam>(102, 201));
  });
}
TYPED_TEST(PoolKernels, AvgPoolForward) {
  testing::under_schedules<TypeParam>(29, [] {
    check_avg_forward<TypeParam>(testing::device_seed<TypeParam>(103, 201));
  });
}
TYPED_TEST(PoolKernels, AvgPoolBackward) {
  testing::under_schedules<TypeParam>(29, [] {
    check_avg_backward<TypeParam>(testing::device_seed<TypeParam>(104, 201));
  });
}
TYPED_TEST(PoolKernels, GlobalAvgPoolForward) {
  testing::under_schedules<TypeParam>(29, [] {
    check_gap_forward<TypeParam>(testing::device_seed<TypeParam>(105, 201));
  });
}
TYPED_TEST(PoolKernels, GlobalAvgPoolBackward) {
  testing::under_schedules<TypeParam>(29, [] {
    check_gap_backward<TypeParam>(testing::device_seed<TypeParam>(106, 201));
  });
}

}  // namespace kernel_suite
#endif  // WREN_TEST_KERNEL_DEVICES

// --- Every device: the hand-computed cases ------------------------------------------------------

namespace device_suite {

using reference_suite::exact_values;
using reference_suite::kAtol;
using reference_suite::kRtol;
using reference_suite::plane4x4;
using testing::Buffer;
using testing::expect_all_close;

// The CPU reference behind the kernels' launcher signatures.
template <class T>
struct CpuPool : testing::CpuDevice<T> {
  static void max_forward(Pool2dDims d, const T* x, T* y, int32_t* a) {
    cpu::max_pool2d_forward<T>(d, x, y, a);
  }
  static void max_backward(Pool2dDims d, const int32_t* a, const T* dy, T* dx) {
    cpu::max_pool2d_backward<T>(d, a, dy, dx);
  }
  static void avg_forward(Pool2dDims d, const T* x, T* y) { cpu::avg_pool2d_forward<T>(d, x, y); }
  static void avg_backward(Pool2dDims d, const T* dy, T* dx) {
    cpu::avg_pool2d_backward<T>(d, dy, dx);
  }
  static void gap_forward(int n, int c, int hw, const T* x, T* y) {
    cpu::global_avg_pool_forward<T>(n, c, hw, x, y);
  }
  static void gap_backward(int n, int c, int hw, const T* dy, T* dx) {
    cpu::global_avg_pool_backward<T>(n, c, hw, dy, dx);
  }
};

template <class K>
class PoolDevices : public testing::DeviceTest<K> {};
TYPED_TEST_SUITE(PoolDevices,
                 WREN_ALL_DEVICES(CpuPool<double>, CpuPool<float>, kernel_suite::EmuPool,
                                  kernel_suite::CudaPool),
                 testing::DeviceNames);

// The ops on host arrays through device K: the outputs are copied to the device as they are
// (so that an op which accumulates into them instead of overwriting shows) and back.
template <class K, class T>
void max_forward_on(const Pool2dDims& d, const std::vector<T>& x, std::vector<T>& y,
                    std::vector<int32_t>& argmax) {
  Buffer<T> xb(K::kGpu, x), yb(K::kGpu, y);
  Buffer<int32_t> ab(K::kGpu, argmax);
  K::max_forward(d, xb.get(), yb.get(), ab.get());
  EXPECT_EQ(K::finish(), "");
  y = yb.read();
  argmax = ab.read();
}
template <class K, class T>
void max_backward_on(const Pool2dDims& d, const std::vector<int32_t>& argmax,
                     const std::vector<T>& dy, std::vector<T>& dx) {
  Buffer<int32_t> ab(K::kGpu, argmax);
  Buffer<T> dyb(K::kGpu, dy), dxb(K::kGpu, dx);
  K::max_backward(d, ab.get(), dyb.get(), dxb.get());
  EXPECT_EQ(K::finish(), "");
  dx = dxb.read();
}
template <class K, class T>
void avg_forward_on(const Pool2dDims& d, const std::vector<T>& x, std::vector<T>& y) {
  Buffer<T> xb(K::kGpu, x), yb(K::kGpu, y);
  K::avg_forward(d, xb.get(), yb.get());
  EXPECT_EQ(K::finish(), "");
  y = yb.read();
}
template <class K, class T>
void avg_backward_on(const Pool2dDims& d, const std::vector<T>& dy, std::vector<T>& dx) {
  Buffer<T> dyb(K::kGpu, dy), dxb(K::kGpu, dx);
  K::avg_backward(d, dyb.get(), dxb.get());
  EXPECT_EQ(K::finish(), "");
  dx = dxb.read();
}
template <class K, class T>
void gap_forward_on(int n, int c, int hw, const std::vector<T>& x, std::vector<T>& y) {
  Buffer<T> xb(K::kGpu, x), yb(K::kGpu, y);
  K::gap_forward(n, c, hw, xb.get(), yb.get());
  EXPECT_EQ(K::finish(), "");
  y = yb.read();
}
template <class K, class T>
void gap_backward_on(int n, int c, int hw, const std::vector<T>& dy, std::vector<T>& dx) {
  Buffer<T> dyb(K::kGpu, dy), dxb(K::kGpu, dx);
  K::gap_backward(n, c, hw, dyb.get(), dxb.get());
  EXPECT_EQ(K::finish(), "");
  dx = dxb.read();
}

TYPED_TEST(PoolDevices, MaxForwardHandComputedStride2) {
  using K = TypeParam;
  using T = typename K::Scalar;
  const Pool2dDims d = dims(1, 1, 4, 4, 2, 2, 2, 2, 0, 0);
  const std::vector<T> x = plane4x4<T>();
  std::vector<T> y(4);
  std::vector<int32_t> argmax(4);
  max_forward_on<K>(d, x, y, argmax);
  EXPECT_EQ(y, exact_values<T>({5, 8, 7, 11}));
  EXPECT_EQ(argmax, (std::vector<int32_t>{1, 7, 8, 14}));
}

// Negative inputs: a zero padding would win every window; −∞ padding never does.
TYPED_TEST(PoolDevices, MaxForwardHandComputedPaddingIsMinusInfinity) {
  using K = TypeParam;
  using T = typename K::Scalar;
  const Pool2dDims d = dims(1, 1, 3, 3, 2, 2, 2, 2, 1, 1);
  ASSERT_EQ(d.p(), 2);
  ASSERT_EQ(d.q(), 2);
  const std::vector<T> x = exact_values<T>({-1, -2, -3, -4, -5, -6, -7, -8, -9});
  std::vector<T> y(4);
  std::vector<int32_t> argmax(4);
  max_forward_on<K>(d, x, y, argmax);
  EXPECT_EQ(y, exact_values<T>({-1, -2, -4, -5}));
  EXPECT_EQ(argmax, (std::vector<int32_t>{0, 1, 3, 4}));
}

// Kernel 3, stride 1: windows overlap and the element 11 wins two of them, so its gradient is
// the sum of both windows' dy.
TYPED_TEST(PoolDevices, MaxOverlappingWindowsHandComputed) {
  using K = TypeParam;
  using T = typename K::Scalar;
  const Pool2dDims d = dims(1, 1, 4, 4, 3, 3, 1, 1, 0, 0);
  const std::vector<T> x = plane4x4<T>();
  std::vector<T> y(4);
  std::vector<int32_t> argmax(4);
  max_forward_on<K>(d, x, y, argmax);
  EXPECT_EQ(y, exact_values<T>({7, 9, 11, 11}));
  EXPECT_EQ(argmax, (std::vector<int32_t>{8, 11, 14, 14}));

  const std::vector<T> dy = exact_values<T>({1, 2, 3, 4});
  std::vector<T> dx(16, T(-99));  // overwritten, not accumulated into
  max_backward_on<K>(d, argmax, dy, dx);
  std::vector<T> expected(16, T(0));
  expected[8] = 1;
  expected[11] = 2;
  expected[14] = 7;
  EXPECT_EQ(dx, expected);
}

// Ties: the first maximum in row-major order wins, and only it receives the gradient.
//    3  3 | 1  4        window (0,0): all equal       -> (0,0), index 0
//    3  3 | 4  2        window (0,1): 4 at (0,3), (1,2) -> (0,3), index 3 (row-major first)
//   ------+------       window (1,0): 5 at (2,1), (3,0) -> (2,1), index 9
//    0  5 | 7  7        window (1,1): all equal       -> (2,2), index 10
//    5  0 | 7  7
TYPED_TEST(PoolDevices, MaxTiesPickFirstMaximumAndOnlyItGetsGradient) {
  using K = TypeParam;
  using T = typename K::Scalar;
  const Pool2dDims d = dims(1, 1, 4, 4, 2, 2, 2, 2, 0, 0);
  const std::vector<T> x = exact_values<T>({3, 3, 1, 4, 3, 3, 4, 2, 0, 5, 7, 7, 5, 0, 7, 7});
  std::vector<T> y(4);
  std::vector<int32_t> argmax(4);
  max_forward_on<K>(d, x, y, argmax);
  EXPECT_EQ(y, exact_values<T>({3, 4, 5, 7}));
  EXPECT_EQ(argmax, (std::vector<int32_t>{0, 3, 9, 10}));

  const std::vector<T> dy = exact_values<T>({1, 2, 3, 4});
  std::vector<T> dx(16, T(-99));
  max_backward_on<K>(d, argmax, dy, dx);
  std::vector<T> expected(16, T(0));
  expected[0] = 1;
  expected[3] = 2;
  expected[9] = 3;
  expected[10] = 4;
  EXPECT_EQ(dx, expected);
}

// A NaN in a window is the window's value: divergence is not hidden by the max.
TYPED_TEST(PoolDevices, MaxPropagatesNaN) {
  using K = TypeParam;
  using T = typename K::Scalar;
  const Pool2dDims d = dims(1, 1, 2, 4, 2, 2, 2, 2, 0, 0);
  const T nan = std::numeric_limits<T>::quiet_NaN();
  const std::vector<T> x = {1, nan, 5, 6, 2, 3, 7, 8};
  std::vector<T> y(2);
  std::vector<int32_t> argmax(2);
  max_forward_on<K>(d, x, y, argmax);
  EXPECT_TRUE(std::isnan(y[0]));
  EXPECT_EQ(argmax[0], 1);
  EXPECT_EQ(y[1], T(8));
  EXPECT_EQ(argmax[1], 7);
}

TYPED_TEST(PoolDevices, AvgForwardHandComputedStride2) {
  using K = TypeParam;
  using T = typename K::Scalar;
  const Pool2dDims d = dims(1, 1, 4, 4, 2, 2, 2, 2, 0, 0);
  const std::vector<T> x = plane4x4<T>();
  std::vector<T> y(4);
  avg_forward_on<K>(d, x, y);
  EXPECT_EQ(y, exact_values<T>({2, 3.5, 3, 7}));
}

// 3×3 kernel, stride 1, pad 1 over the plane 1..9 (row-major). Window sums:
//   12 21 16 / 27 45 33 / 24 39 28; in-image counts 4 6 4 / 6 9 6 / 4 6 4.
TYPED_TEST(PoolDevices, AvgForwardHandComputedWithAndWithoutPadCount) {
  using K = TypeParam;
  using T = typename K::Scalar;
  const std::vector<T> x = exact_values<T>({1, 2, 3, 4, 5, 6, 7, 8, 9});
  std::vector<T> y(9);
  avg_forward_on<K>(dims(1, 1, 3, 3, 3, 3, 1, 1, 1, 1, true), x, y);
  const std::vector<long double> incl = {12 / 9.0L, 21 / 9.0L, 16 / 9.0L, 27 / 9.0L, 45 / 9.0L,
                                         33 / 9.0L, 24 / 9.0L, 39 / 9.0L, 28 / 9.0L};
  expect_all_close(std::span<const T>(y), std::span<const long double>(incl), kAtol<T>, kRtol<T>,
                   "y (count_include_pad)");
  avg_forward_on<K>(dims(1, 1, 3, 3, 3, 3, 1, 1, 1, 1, false), x, y);
  EXPECT_EQ(y, exact_values<T>({3, 3.5, 4, 4.5, 5, 5.5, 6, 6.5, 7}));
}

// Same geometry, dy = 1: dx counts the covering windows over their divisors. With the pad
// counted every divisor is 9 (corner 4/9, edge 6/9, centre 1); without, the corner (0,0) gets
// 1/4 + 1/6 + 1/6 + 1/9 and the centre 4·(1/4) + 4·(1/6) + 1/9.
TYPED_TEST(PoolDevices, AvgBackwardHandComputed) {
  using K = TypeParam;
  using T = typename K::Scalar;
  const std::vector<T> dy(9, T(1));
  std::vector<T> dx(9, T(-99));
  avg_backward_on<K>(dims(1, 1, 3, 3, 3, 3, 1, 1, 1, 1, true), dy, dx);
  const long double c = 4 / 9.0L, e = 6 / 9.0L;
  const std::vector<long double> incl = {c, e, c, e, 1, e, c, e, c};
  expect_all_close(std::span<const T>(dx), std::span<const long double>(incl), kAtol<T>, kRtol<T>,
                   "dx (count_include_pad)");
  avg_backward_on<K>(dims(1, 1, 3, 3, 3, 3, 1, 1, 1, 1, false), dy, dx);
  const long double corner = 1 / 4.0L + 2 / 6.0L + 1 / 9.0L;
  const long double edge = 2 / 4.0L + 3 / 6.0L + 1 / 9.0L;  // e.g. (0,1): 2 corners, 3 edges
  const long double centre = 4 / 4.0L + 4 / 6.0L + 1 / 9.0L;
  const std::vector<long double> excl = {corner, edge,   corner, edge,  centre,
                                         edge,   corner, edge,   corner};
  expect_all_close(std::span<const T>(dx), std::span<const long double>(excl), kAtol<T>, kRtol<T>,
                   "dx (exclude pad)");
}

TYPED_TEST(PoolDevices, GlobalAvgHandComputed) {
  using K = TypeParam;
  using T = typename K::Scalar;
  const std::vector<T> x = exact_values<T>({1, 2, 3, 4, 5, 6, 7, 9});  // [1, 2, 2, 2]
  std::vector<T> y(2);
  gap_forward_on<K>(1, 2, 4, x, y);
  EXPECT_EQ(y, exact_values<T>({2.5, 6.75}));
  const std::vector<T> dy = exact_values<T>({2, -1});
  std::vector<T> dx(8, T(-99));
  gap_backward_on<K>(1, 2, 4, dy, dx);
  EXPECT_EQ(dx, exact_values<T>({0.5, 0.5, 0.5, 0.5, -0.25, -0.25, -0.25, -0.25}));
}

}  // namespace device_suite

}  // namespace
}  // namespace wren
