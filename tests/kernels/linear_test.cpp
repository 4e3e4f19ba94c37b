// Linear (kernels/linear/): the CPU reference in float and double, and the kernels on every
// device.
//
// The CPU reference (kernels/linear/reference.cpp), in float and double (LinearTest): forward
// against a naive loop in double; backward for x, w and b against finite differences of
// L = Σ y·r (tests/support/gradcheck.h). Outputs start as NaN, so an op that accumulates into
// them instead of overwriting shows.
//
// The hand-computed forward and backward and the empty batch hold on every device: one typed
// body each over the CPU reference in double and float and the kernels on emu and cuda
// (LinearDevices/cpu_double, cpu_float, emu, cuda).
//
// The kernels (kernels/linear/linear.cu), one typed body per check on emu and cuda
// (LinearKernels/emu, LinearKernels/cuda; the cuda cases skip without a GPU): against the CPU
// reference (in float) and against a double-precision product computed here, for both math paths
// (fp32 FMAs and TF32 tensor cores), on the emulator under the forward, reverse and random fiber
// schedules; plus bit-identical reruns, and the workspace and argument checks (LinearLaunchers:
// host-side, so the cuda launchers are checked without a GPU too).
//
// Kernel shapes: ref-cnn's fc1 (3136 → 128; its forward at a small batch is split-K) and fc2
// (128 → 10) at batch 3, a single sample, in = out = 1, sizes across tile edges (37 × 70 → 33
// and 70 × 37 → 130), and a batch of 600 (the weight gradient's reduction split). Inputs are
// fresh std::mt19937 normals, never zero. Tolerances: tests/support/gemm_bounds.h, with D = the
// reduction length (in, out or N).
#include "linear/linear.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <random>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "support/buffer.h"
#include "support/compare.h"
#include "support/device.h"
#include "support/gemm_bounds.h"
#include "support/gradcheck.h"
#include "support/inputs.h"

namespace wren {
namespace {

// --- The CPU reference ---------------------------------------------------------------------------

namespace reference_suite {

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

}  // namespace reference_suite

// --- The kernels on emu and cuda -----------------------------------------------------------------

#if WREN_TEST_KERNEL_DEVICES
namespace kernel_suite {

using testing::bits_equal;
using testing::Buffer;
using testing::Exact;
using testing::expect_bias_close;
using testing::expect_gemm_close;
using testing::nonzero_normals;
using testing::widen;
using testing::workspace_fill;

struct Shape {
  const char* name;
  LinearDims d;
};

const std::vector<Shape>& shapes() {
  static const std::vector<Shape> all = {
      {"ref-cnn fc1", {3, 3136, 128}}, {"ref-cnn fc2", {3, 128, 10}},
      {"one sample", {1, 7, 3}},       {"in = out = 1", {5, 1, 1}},
      {"tile edges", {37, 70, 33}},    {"70 x 37 -> 130", {70, 37, 130}},
      {"batch 600", {600, 20, 12}},
  };
  return all;
}

std::string describe(const Shape& s, MathMode math) {
  return std::string(s.name) + " [N=" + std::to_string(s.d.n) + " in=" + std::to_string(s.d.in) +
         " out=" + std::to_string(s.d.out) + "] " + (math == MathMode::kTf32 ? "tf32" : "fp32");
}

size_t size_of(int a, int b) {
  return static_cast<size_t>(a) * static_cast<size_t>(b);
}

// C[i][j] = Σ_l A(i, l)·B(l, j) (+ bias[j]) in double, with Σ|terms|; the accessors index the
// row-major arrays.
template <class A, class B>
Exact product(int rows, int cols, int depth, A a, B b, const float* bias) {
  Exact e{std::vector<double>(size_of(rows, cols)), std::vector<double>(size_of(rows, cols))};
  for (int i = 0; i < rows; ++i)
    for (int j = 0; j < cols; ++j) {
      double sum = bias ? bias[j] : 0.0, mag = bias ? std::fabs(bias[j]) : 0.0;
      for (int l = 0; l < depth; ++l) {
        const double t = a(i, l) * b(l, j);
        sum += t;
        mag += std::fabs(t);
      }
      e.value[size_of(i, cols) + static_cast<size_t>(j)] = sum;
      e.magnitude[size_of(i, cols) + static_cast<size_t>(j)] = mag;
    }
  return e;
}

// --- The devices ---------------------------------------------------------------------------------

#define WREN_LINEAR_LAUNCHERS(ns)                                                                 \
  static size_t workspace(LinearDims d, MathMode m) {                                            \
    return wren::ns::linear_workspace_bytes(d, m);                                               \
  }                                                                                               \
  static void forward(LinearDims d, MathMode m, const float* x, const float* w, const float* b,  \
                      float* y, void* ws) {                                                       \
    wren::ns::linear_forward(d, m, x, w, b, y, ws, nullptr);                                     \
  }                                                                                               \
  static void data(LinearDims d, MathMode m, const float* dy, const float* w, float* dx,         \
                   void* ws) {                                                                    \
    wren::ns::linear_backward_data(d, m, dy, w, dx, ws, nullptr);                                \
  }                                                                                               \
  static void weights(LinearDims d, MathMode m, const float* x, const float* dy, float* dw,      \
                      float* db, void* ws) {                                                      \
    wren::ns::linear_backward_weights(d, m, x, dy, dw, db, ws, nullptr);                         \
  }

#if defined(WREN_HAVE_EMU)
struct EmuLinear : testing::EmuDevice {
  WREN_LINEAR_LAUNCHERS(emu_kernels)
};
#endif
struct CudaLinear : testing::CudaDevice {
  WREN_LINEAR_LAUNCHERS(WREN_TEST_CUDA_KERNELS)
};
#undef WREN_LINEAR_LAUNCHERS

using Devices = WREN_KERNEL_DEVICES(EmuLinear, CudaLinear);

template <class K>
class LinearKernels : public testing::DeviceTest<K> {};
TYPED_TEST_SUITE(LinearKernels, Devices, testing::DeviceNames);

template <class K>
class LinearLaunchers : public testing::LauncherTest<K> {};
TYPED_TEST_SUITE(LinearLaunchers, Devices, testing::DeviceNames);

// All three passes of one shape and math path; forward with a bias on even shapes.
template <class K>
void check_linear(uint32_t seed, MathMode math) {
  std::mt19937 rng(seed);
  for (const Shape& shape : shapes()) {
    const LinearDims d = shape.d;
    const std::string what = std::string(K::kName) + " " + describe(shape, math);
    const bool with_bias = (&shape - shapes().data()) % 2 == 0;
    const std::vector<float> x = nonzero_normals(size_of(d.n, d.in), rng),
                             w = nonzero_normals(size_of(d.out, d.in), rng),
                             b = nonzero_normals(static_cast<size_t>(d.out), rng),
                             dy = nonzero_normals(size_of(d.n, d.out), rng);
    const float* bias = with_bias ? b.data() : nullptr;

    std::vector<float> cpu_y(size_of(d.n, d.out)), cpu_dx(size_of(d.n, d.in)),
        cpu_dw(size_of(d.out, d.in)), cpu_db(static_cast<size_t>(d.out));
    cpu::linear_forward<float>(d, x.data(), w.data(), bias, cpu_y.data());
    cpu::linear_backward_data<float>(d, dy.data(), w.data(), cpu_dx.data());
    cpu::linear_backward_weights<float>(d, x.data(), dy.data(), cpu_dw.data(), cpu_db.data());

    // Exact products (and of the TF32-rounded operands).
    Exact exact[3], rounded[3];
    for (bool round : {false, true}) {
      if (round && math != MathMode::kTf32) break;
      const std::vector<double> X = widen(x, round), W = widen(w, round), DY = widen(dy, round);
      Exact* e = round ? rounded : exact;
      e[0] = product(
          d.n, d.out, d.in, [&](int i, int l) { return X[size_of(i, d.in) + l]; },
          [&](int l, int j) { return W[size_of(j, d.in) + l]; }, bias);
      e[1] = product(
          d.n, d.in, d.out, [&](int i, int l) { return DY[size_of(i, d.out) + l]; },
          [&](int l, int j) { return W[size_of(l, d.in) + j]; }, nullptr);
      e[2] = product(
          d.out, d.in, d.n, [&](int i, int l) { return DY[size_of(l, d.out) + i]; },
          [&](int l, int j) { return X[size_of(l, d.in) + j]; }, nullptr);
    }
    Exact db_exact{std::vector<double>(static_cast<size_t>(d.out), 0.0),
                   std::vector<double>(static_cast<size_t>(d.out), 0.0)};
    for (int i = 0; i < d.n; ++i)
      for (int o = 0; o < d.out; ++o) {
        db_exact.value[static_cast<size_t>(o)] += dy[size_of(i, d.out) + o];
        db_exact.magnitude[static_cast<size_t>(o)] += std::fabs(dy[size_of(i, d.out) + o]);
      }

    testing::under_schedules<K>(37, [&] {
      Buffer xb(K::kGpu, x), wb(K::kGpu, w), bb(K::kGpu, b), dyb(K::kGpu, dy),
          yb(K::kGpu, size_of(d.n, d.out), NAN), dxb(K::kGpu, size_of(d.n, d.in), NAN),
          dwb(K::kGpu, size_of(d.out, d.in), NAN), dbb(K::kGpu, static_cast<size_t>(d.out), NAN);
      Buffer ws(K::kGpu, workspace_fill(K::workspace(d, math), NAN));
      K::forward(d, math, xb.get(), wb.get(), with_bias ? bb.get() : nullptr, yb.get(), ws.get());
      K::data(d, math, dyb.get(), wb.get(), dxb.get(), ws.get());
      K::weights(d, math, xb.get(), dyb.get(), dwb.get(), with_bias ? dbb.get() : nullptr,
                 ws.get());
      ASSERT_EQ(K::finish(), "") << what;
      expect_gemm_close(yb.read(), exact[0], &rounded[0], cpu_y, math, d.in, what + " forward");
      expect_gemm_close(dxb.read(), exact[1], &rounded[1], cpu_dx, math, d.out, what + " dx");
      expect_gemm_close(dwb.read(), exact[2], &rounded[2], cpu_dw, math, d.n, what + " dw");
      if (with_bias) {
        expect_bias_close(dbb.read(), db_exact, cpu_db, d.n, what + " db");
      } else {
        for (float v : dbb.read()) ASSERT_TRUE(std::isnan(v)) << what << ": db written";
      }
    });
  }
}

// Two runs (fresh buffers, other workspace garbage, the second under the random schedule on
// the emulator) give the same bits: fc1 (split-K forward), the batch of 600 (split-K weight
// gradient) and the tile edges.
template <class K>
void check_deterministic(uint32_t seed) {
  std::mt19937 rng(seed);
  const std::vector<std::string> chosen = {"ref-cnn fc1", "batch 600", "tile edges"};
  for (MathMode math : {MathMode::kFp32, MathMode::kTf32}) {
    for (const Shape& shape : shapes()) {
      if (std::find(chosen.begin(), chosen.end(), shape.name) == chosen.end()) continue;
      const LinearDims d = shape.d;
      const std::string what = std::string(K::kName) + " rerun " + describe(shape, math);
      const std::vector<float> x = nonzero_normals(size_of(d.n, d.in), rng),
                               w = nonzero_normals(size_of(d.out, d.in), rng),
                               b = nonzero_normals(static_cast<size_t>(d.out), rng),
                               dy = nonzero_normals(size_of(d.n, d.out), rng);
      std::vector<std::vector<float>> runs[2];
      auto run = [&](int r) {
        Buffer xb(K::kGpu, x), wb(K::kGpu, w), bb(K::kGpu, b), dyb(K::kGpu, dy),
            yb(K::kGpu, size_of(d.n, d.out), NAN), dxb(K::kGpu, size_of(d.n, d.in), NAN),
            dwb(K::kGpu, size_of(d.out, d.in), NAN), dbb(K::kGpu, static_cast<size_t>(d.out), NAN);
        Buffer ws(K::kGpu, workspace_fill(K::workspace(d, math), r == 0 ? NAN : 1e30f));
        K::forward(d, math, xb.get(), wb.get(), bb.get(), yb.get(), ws.get());
        K::data(d, math, dyb.get(), wb.get(), dxb.get(), ws.get());
        K::weights(d, math, xb.get(), dyb.get(), dwb.get(), dbb.get(), ws.get());
        ASSERT_EQ(K::finish(), "") << what;
        runs[r] = {yb.read(), dxb.read(), dwb.read(), dbb.read()};
      };
      run(0);
      testing::under_random_schedule<K>(78, [&] { run(1); });
      if (::testing::Test::HasFatalFailure()) return;
      const char* names[] = {"y", "dx", "dw", "db"};
      for (size_t i = 0; i < 4; ++i) {
        EXPECT_TRUE(bits_equal(runs[0][i], runs[1][i]))
            << what << ": " << names[i] << " differs between two runs";
      }
    }
  }
}

TYPED_TEST(LinearKernels, Fp32) {
  check_linear<TypeParam>(testing::device_seed<TypeParam>(501, 601), MathMode::kFp32);
}
TYPED_TEST(LinearKernels, Tf32) {
  check_linear<TypeParam>(testing::device_seed<TypeParam>(502, 602), MathMode::kTf32);
}
TYPED_TEST(LinearKernels, RerunsAreBitIdentical) {
  check_deterministic<TypeParam>(testing::device_seed<TypeParam>(503, 603));
}

// The split-K forward of fc1 at a small batch needs workspace; fc2 none.
TYPED_TEST(LinearLaunchers, Workspace) {
  using K = TypeParam;
  EXPECT_GT(K::workspace({3, 3136, 128}, MathMode::kFp32), 0u);
  EXPECT_EQ(K::workspace({3, 128, 10}, MathMode::kFp32), 0u);
}

TYPED_TEST(LinearLaunchers, RejectsBadArguments) {
  using K = TypeParam;
  using testing::expect_invalid_argument;
  std::vector<float> buf(64, 1.0f);
  float* p = buf.data();
  expect_invalid_argument([&] { K::forward({2, 0, 3}, MathMode::kFp32, p, p, p, p, nullptr); },
                          "linear_forward: in and out must be positive (N >= 0) (N=2 in=0 out=3)");
  expect_invalid_argument(
      [&] { K::data({-1, 2, 3}, MathMode::kTf32, p, p, p, nullptr); },
      "linear_backward_data: in and out must be positive (N >= 0) (N=-1 in=2 out=3)");
  expect_invalid_argument(
      [&] { K::weights({100000, 100000, 3}, MathMode::kFp32, p, p, p, p, nullptr); },
      "exceeds 2^31 - 1024 elements (32-bit indexing) (N=100000 in=100000 out=3)");
  expect_invalid_argument([&] { K::forward({2, 3, 4}, MathMode::kFp32, nullptr, p, p, p, nullptr); },
                          "linear_forward: x is null (N=2 in=3 out=4)");
  std::vector<float> big(3 * 3136 + 3136 * 128, 1.0f);
  expect_invalid_argument(
      [&] {
        K::forward({3, 3136, 128}, MathMode::kFp32, big.data(), big.data(), nullptr, big.data(),
                   nullptr);
      },
      "bytes of workspace, got null (N=3 in=3136 out=128)");
  // Nothing was enqueued (the emulator records a kernel's fault; a GPU may be absent here).
  if constexpr (!K::kGpu) {
    ASSERT_EQ(K::finish(), "");
  }
}

}  // namespace kernel_suite
#endif  // WREN_TEST_KERNEL_DEVICES

// --- Every device: the hand-computed cases and the empty batch ----------------------------------

namespace device_suite {

using testing::Buffer;

// The CPU reference behind the kernels' launcher signatures (no workspace; the math mode does
// not apply).
template <class T>
struct CpuLinear : testing::CpuDevice<T> {
  static size_t workspace(LinearDims, MathMode) { return 0; }
  static void forward(LinearDims d, MathMode, const T* x, const T* w, const T* b, T* y, void*) {
    cpu::linear_forward<T>(d, x, w, b, y);
  }
  static void data(LinearDims d, MathMode, const T* dy, const T* w, T* dx, void*) {
    cpu::linear_backward_data<T>(d, dy, w, dx);
  }
  static void weights(LinearDims d, MathMode, const T* x, const T* dy, T* dw, T* db, void*) {
    cpu::linear_backward_weights<T>(d, x, dy, dw, db);
  }
};

template <class K>
class LinearDevices : public testing::DeviceTest<K> {};
TYPED_TEST_SUITE(LinearDevices,
                 WREN_ALL_DEVICES(CpuLinear<double>, CpuLinear<float>, kernel_suite::EmuLinear,
                                  kernel_suite::CudaLinear),
                 testing::DeviceNames);

TYPED_TEST(LinearDevices, HandComputed) {
  using K = TypeParam;
  using T = typename K::Scalar;
  constexpr T kNaN = std::numeric_limits<T>::quiet_NaN();
  const MathMode m = MathMode::kFp32;
  // x = [1 2 3], w = [[1 0 −1], [2 1 0]], b = [0.5 −1]: y = [1 − 3 + 0.5, 2 + 2 − 1].
  const LinearDims d{1, 3, 2};
  Buffer<T> x(K::kGpu, std::vector<T>{1, 2, 3}), w(K::kGpu, std::vector<T>{1, 0, -1, 2, 1, 0}),
      b(K::kGpu, std::vector<T>{0.5, -1});
  Buffer<unsigned char> ws(K::kGpu, K::workspace(d, m), 0xff);
  Buffer<T> y(K::kGpu, 2, kNaN), y_no_bias(K::kGpu, 2, kNaN);
  K::forward(d, m, x.get(), w.get(), b.get(), y.get(), ws.get());
  K::forward(d, m, x.get(), w.get(), nullptr, y_no_bias.get(), ws.get());
  // dy = [1 −2]: dx = dy·w = [1 − 4, −2, −1], dw = dyᵀ·x = [[1 2 3], [−2 −4 −6]], db = dy.
  const std::vector<T> dy_host = {1, -2};
  Buffer<T> dy(K::kGpu, dy_host), dx(K::kGpu, 3, kNaN), dw(K::kGpu, 6, kNaN), db(K::kGpu, 2, kNaN);
  K::data(d, m, dy.get(), w.get(), dx.get(), ws.get());
  K::weights(d, m, x.get(), dy.get(), dw.get(), db.get(), ws.get());
  ASSERT_EQ(K::finish(), "");
  EXPECT_EQ(y.read(), (std::vector<T>{-1.5, 3}));
  EXPECT_EQ(y_no_bias.read(), (std::vector<T>{-2, 4}));
  EXPECT_EQ(dx.read(), (std::vector<T>{-3, -2, -1}));
  EXPECT_EQ(dw.read(), (std::vector<T>{1, 2, 3, -2, -4, -6}));
  EXPECT_EQ(db.read(), dy_host);
}

// A batch of 0 has no contributions: the forward and the data gradient do nothing, the
// parameter gradients become zero, not left as they were.
TYPED_TEST(LinearDevices, EmptyBatchZeroesParameterGradients) {
  using K = TypeParam;
  using T = typename K::Scalar;
  const LinearDims d{0, 5, 3};
  Buffer<T> dw(K::kGpu, 15, std::numeric_limits<T>::quiet_NaN()),
      db(K::kGpu, 3, std::numeric_limits<T>::quiet_NaN());
  K::forward(d, MathMode::kFp32, nullptr, nullptr, nullptr, nullptr, nullptr);
  K::data(d, MathMode::kFp32, nullptr, nullptr, nullptr, nullptr);
  K::weights(d, MathMode::kFp32, nullptr, nullptr, dw.get(), db.get(), nullptr);
  ASSERT_EQ(K::finish(), "");
  EXPECT_EQ(dw.read(), std::vector<T>(15, T(0)));
  EXPECT_EQ(db.read(), std::vector<T>(3, T(0)));
}

}  // namespace device_suite

}  // namespace
}  // namespace wren
