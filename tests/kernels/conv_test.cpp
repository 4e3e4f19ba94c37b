// Conv2d (kernels/conv/): the CPU reference in float and double, and the kernels on every
// device.
//
// The CPU reference (kernels/conv/reference.cpp, im2col + GEMM), in float and double
// (ConvTest): forward against a direct 7-loop convolution written here (accumulating in
// double); backward data, weights and bias against finite differences of L = Σ y·r
// (tests/support/gradcheck.h). Outputs and the workspace start as NaN, so an op that reads them
// instead of overwriting shows.
//
// The hand-computed forward and backward cases hold on every device: one typed body each over
// the CPU reference in double and float and the kernels on emu and cuda (ConvDevices/cpu_double,
// cpu_float, emu, cuda).
//
// The kernels (kernels/conv/conv.cu), one typed body per check on emu and cuda (ConvKernels/emu,
// ConvKernels/cuda; the cuda cases skip without a GPU): against the CPU reference (in float) and
// against a direct double-precision convolution computed here, for both math paths (fp32 FMAs
// and TF32 tensor cores), on the emulator under the forward, reverse and random fiber schedules.
// Also: two runs are bit-identical (split-K partials summed in a fixed order, no atomics), an
// empty batch, the workspace contract and the argument checks (ConvLaunchers: host-side, so the
// cuda launchers are checked in a CUDA build without a GPU too). The GEMM tile's host-side
// pieces (FastDivmod, the split plan) are in tests/kernels/gemm_tile_test.cpp.
//
// Kernel shapes: ref-cnn's two convolutions at a small batch (conv1: C=1, batch 2, its weight
// gradient split-K; conv2: C=32, K=64, batch 3, its backward passes split-K), stride 2 with C=3
// and K=5, a 5x3 kernel without padding, padding 2 with dilation 2, a 1x1 convolution, a 1x1
// output (7x7 kernel on 7x7), a strided 1x1 shortcut and a strided 3x3 downsampling (ResNet),
// C=64 to K=16, K=70 (two row tiles, not a multiple of a tile), unequal strides, paddings and
// dilations with a 2x4 kernel, windows entirely in the padding, stride > kernel (inputs no window
// covers: dx = 0). Between them every pass runs on all four tile shapes of gemm_tile.cuh. Inputs
// are fresh std::mt19937 normals, never zero. Tolerances: tests/support/gemm_bounds.h, with
// D = C·R·S forward, K·R·S backward data, N·P·Q backward weights.
#include "conv/conv.h"

#include <gtest/gtest.h>
#include <omp.h>

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

size_t x_elems(const Conv2dDims& d) {
  return size_t(d.n) * d.c * d.h * d.w;
}
size_t w_elems(const Conv2dDims& d) {
  return size_t(d.k) * d.c * d.r * d.s;
}
size_t y_elems(const Conv2dDims& d) {
  return size_t(d.n) * d.k * d.p() * d.q();
}

// --- The CPU reference ---------------------------------------------------------------------------

namespace reference_suite {

using testing::check_gradient;
using testing::dot_loss;
using testing::expect_all_close;
using testing::random_vector;

template <class T>
class ConvTest : public ::testing::Test {};
using Types = ::testing::Types<float, double>;
TYPED_TEST_SUITE(ConvTest, Types);

template <class T>
constexpr T kNaN = std::numeric_limits<T>::quiet_NaN();

struct ConvCase {
  std::string name;
  Conv2dDims d;
  int p, q;  // expected output size, worked out by hand
};

// Small shapes (the finite-difference checks run two forwards per input element) covering odd
// sizes, strides, padding and dilation that differ between the two axes (a swapped h/w shows),
// 1×1 kernels, windows that skip input rows and columns, and a kernel covering the whole padded
// input.
std::vector<ConvCase> cases() {
  // clang-format off
  return {
      {"odd_valid", {.n = 2, .c = 3, .h = 7, .w = 5, .k = 4, .r = 3, .s = 2}, 5, 4},
      {"stride2_pad1",
       {.n = 2, .c = 2, .h = 8, .w = 7, .k = 3, .r = 3, .s = 3, .stride_h = 2, .stride_w = 2,
        .pad_h = 1, .pad_w = 1},
       4, 4},
      {"dilation2_pad2",
       {.n = 2, .c = 2, .h = 7, .w = 6, .k = 2, .r = 3, .s = 3, .pad_h = 2, .pad_w = 2,
        .dil_h = 2, .dil_w = 2},
       7, 6},
      {"mixed_axes",
       {.n = 1, .c = 2, .h = 9, .w = 6, .k = 3, .r = 2, .s = 3, .stride_h = 2, .stride_w = 1,
        .pad_h = 1, .pad_w = 2, .dil_h = 2, .dil_w = 1},
       5, 8},
      {"mixed_axes_transposed",
       {.n = 2, .c = 1, .h = 6, .w = 9, .k = 2, .r = 3, .s = 2, .stride_h = 1, .stride_w = 3,
        .pad_h = 0, .pad_w = 1, .dil_h = 1, .dil_w = 3},
       4, 3},
      {"one_by_one", {.n = 2, .c = 5, .h = 4, .w = 3, .k = 3, .r = 1, .s = 1}, 4, 3},
      {"one_by_one_stride2",
       {.n = 1, .c = 3, .h = 5, .w = 6, .k = 2, .r = 1, .s = 1, .stride_h = 2, .stride_w = 2},
       3, 3},
      {"stride3_gaps",
       {.n = 2, .c = 2, .h = 7, .w = 8, .k = 2, .r = 2, .s = 2, .stride_h = 3, .stride_w = 3,
        .pad_h = 1, .pad_w = 1},
       3, 3},
      {"kernel_covers_padded_input",
       {.n = 2, .c = 2, .h = 4, .w = 3, .k = 3, .r = 6, .s = 5, .pad_h = 1, .pad_w = 1}, 1, 1},
      {"single_channel_in_out", {.n = 3, .c = 1, .h = 5, .w = 5, .k = 1, .r = 2, .s = 3}, 4, 3},
  };
  // clang-format on
}

// Direct convolution: y[n,k,p,q] = b[k] + Σ_{c,r,s} x[n,c,ih,iw]·w[k,c,r,s], in double.
template <class T>
std::vector<double> direct_conv(const Conv2dDims& d, const std::vector<T>& x,
                                const std::vector<T>& w, const T* b) {
  const int P = d.p(), Q = d.q();
  std::vector<double> y(y_elems(d));
  size_t out = 0;
  for (int n = 0; n < d.n; ++n)
    for (int k = 0; k < d.k; ++k)
      for (int p = 0; p < P; ++p)
        for (int q = 0; q < Q; ++q) {
          double acc = b ? static_cast<double>(b[k]) : 0.0;
          for (int c = 0; c < d.c; ++c)
            for (int r = 0; r < d.r; ++r)
              for (int s = 0; s < d.s; ++s) {
                const int ih = p * d.stride_h - d.pad_h + r * d.dil_h;
                const int iw = q * d.stride_w - d.pad_w + s * d.dil_w;
                if (ih < 0 || ih >= d.h || iw < 0 || iw >= d.w) continue;
                acc += static_cast<double>(x[((size_t(n) * d.c + c) * d.h + ih) * d.w + iw]) *
                       static_cast<double>(w[((size_t(k) * d.c + c) * d.r + r) * d.s + s]);
              }
          y[out++] = acc;
        }
  return y;
}

// The op under test with a NaN-filled workspace of exactly the advertised size (ASan then
// catches an overrun).
template <class T>
std::vector<T> forward(const Conv2dDims& d, const std::vector<T>& x, const std::vector<T>& w,
                       const T* b) {
  std::vector<T> y(y_elems(d), kNaN<T>), ws(cpu::conv2d_workspace_elems(d), kNaN<T>);
  cpu::conv2d_forward(d, x.data(), w.data(), b, y.data(), ws.data());
  return y;
}

TYPED_TEST(ConvTest, OutputSizeAndWorkspace) {
  for (const ConvCase& cc : cases()) {
    SCOPED_TRACE(cc.name);
    const Conv2dDims& d = cc.d;
    EXPECT_EQ(d.p(), cc.p);
    EXPECT_EQ(d.q(), cc.q);
    // One im2col buffer [CRS, PQ] per OpenMP thread, plus a weight-gradient partial sum
    // [K, CRS] per thread when there is more than one (kernels/conv/reference.cpp).
    const size_t threads = static_cast<size_t>(std::max(1, omp_get_max_threads()));
    const size_t crs = size_t(d.c) * d.r * d.s;
    EXPECT_EQ(cpu::conv2d_workspace_elems(d),
              threads * crs * cc.p * cc.q + (threads > 1 ? threads * size_t(d.k) * crs : 0));
  }
}

// Forward against the direct loops. Inputs lie in [−1, 1), so each output is a sum of
// C·R·S + 1 terms of magnitude ≤ 1; the float GEMM's rounding error grows with that length, a
// few ulps of 1 per term at worst in practice, hence atol ∝ length.
template <class T>
void check_forward(const Conv2dDims& d, bool bias, uint64_t seed) {
  SCOPED_TRACE(bias ? "with bias" : "without bias");
  const std::vector<T> x = random_vector<T>(x_elems(d), seed);
  const std::vector<T> w = random_vector<T>(w_elems(d), seed + 1);
  const std::vector<T> b = random_vector<T>(size_t(d.k), seed + 2);
  const T* bp = bias ? b.data() : nullptr;
  const std::vector<T> y = forward(d, x, w, bp);
  const std::vector<double> ref = direct_conv(d, x, w, bp);
  const double length = double(d.c) * d.r * d.s + 1.0;
  const double atol = 4.0 * std::numeric_limits<T>::epsilon() * length;
  const double rtol = std::is_same_v<T, float> ? 1e-5 : 1e-12;
  expect_all_close<T, double>(y, ref, atol, rtol, "y");
}

TYPED_TEST(ConvTest, ForwardMatchesDirectConvolution) {
  uint64_t seed = 1000;
  for (const ConvCase& cc : cases()) {
    SCOPED_TRACE(cc.name);
    for (const bool bias : {true, false}) check_forward<TypeParam>(cc.d, bias, seed += 10);
  }
}

// Larger than the finite-difference cases, so that OpenBLAS runs its blocked kernels.
TYPED_TEST(ConvTest, ForwardMatchesDirectConvolutionLarger) {
  // clang-format off
  const Conv2dDims padded{.n = 3, .c = 16, .h = 13, .w = 11, .k = 9, .r = 3, .s = 3,
                          .pad_h = 1, .pad_w = 1};
  const Conv2dDims strided{.n = 2, .c = 7, .h = 17, .w = 15, .k = 33, .r = 5, .s = 3,
                           .stride_h = 2, .stride_w = 3, .pad_h = 2, .pad_w = 0,
                           .dil_h = 1, .dil_w = 2};
  // clang-format on
  check_forward<TypeParam>(padded, true, 2000);
  check_forward<TypeParam>(strided, false, 2010);
}

// Random x, w, b and r for L = Σ y·r, and the forward as a function of them.
template <class T>
struct GradFixture {
  Conv2dDims d;
  bool bias;
  std::vector<T> x, w, b, r, y, ws;

  GradFixture(const Conv2dDims& dims, bool with_bias, uint64_t seed)
      : d(dims),
        bias(with_bias),
        x(random_vector<T>(x_elems(d), seed)),
        w(random_vector<T>(w_elems(d), seed + 1)),
        b(random_vector<T>(size_t(d.k), seed + 2)),
        r(random_vector<T>(y_elems(d), seed + 3)),
        y(y_elems(d)),
        ws(cpu::conv2d_workspace_elems(d)) {}

  double loss() {
    std::fill(y.begin(), y.end(), kNaN<T>);
    std::fill(ws.begin(), ws.end(), kNaN<T>);
    cpu::conv2d_forward(d, x.data(), w.data(), bias ? b.data() : nullptr, y.data(), ws.data());
    return dot_loss<T>(y, r);
  }
  std::function<double()> loss_fn() {
    return [this] { return loss(); };
  }

  // dw and db with dy = r, from NaN-filled outputs. db is left NaN when bias is off.
  void backward_weights(std::vector<T>& dw, std::vector<T>& db) {
    dw.assign(w.size(), kNaN<T>);
    db.assign(b.size(), kNaN<T>);
    std::fill(ws.begin(), ws.end(), kNaN<T>);
    cpu::conv2d_backward_weights(d, x.data(), r.data(), dw.data(), bias ? db.data() : nullptr,
                                 ws.data());
  }
};

TYPED_TEST(ConvTest, BackwardDataMatchesFiniteDifferences) {
  using T = TypeParam;
  uint64_t seed = 3000;
  for (const ConvCase& cc : cases()) {
    SCOPED_TRACE(cc.name);
    GradFixture<T> f(cc.d, true, seed += 10);
    std::vector<T> dx(f.x.size(), kNaN<T>);
    std::fill(f.ws.begin(), f.ws.end(), kNaN<T>);
    cpu::conv2d_backward_data(f.d, f.r.data(), f.w.data(), dx.data(), f.ws.data());
    check_gradient<T>(f.x, dx, f.loss_fn(), "dx");
  }
}

TYPED_TEST(ConvTest, BackwardWeightsMatchesFiniteDifferences) {
  using T = TypeParam;
  uint64_t seed = 4000;
  for (const ConvCase& cc : cases()) {
    SCOPED_TRACE(cc.name);
    for (const bool bias : {true, false}) {
      SCOPED_TRACE(bias ? "with bias" : "without bias (db = nullptr)");
      GradFixture<T> f(cc.d, bias, seed += 10);
      std::vector<T> dw, db;
      f.backward_weights(dw, db);
      check_gradient<T>(f.w, dw, f.loss_fn(), "dw");
    }
  }
}

TYPED_TEST(ConvTest, BiasGradientMatchesFiniteDifferences) {
  using T = TypeParam;
  uint64_t seed = 5000;
  for (const ConvCase& cc : cases()) {
    SCOPED_TRACE(cc.name);
    GradFixture<T> f(cc.d, true, seed += 10);
    std::vector<T> dw, db;
    f.backward_weights(dw, db);
    check_gradient<T>(f.b, db, f.loss_fn(), "db");
  }
}

// Backward twice on the same inputs gives bit-identical gradients (col2im and the bias sums
// run in a fixed order), and a batch of 0 zeroes the parameter gradients.
TYPED_TEST(ConvTest, BackwardDeterministicAndEmptyBatch) {
  using T = TypeParam;
  GradFixture<T> f(cases()[1].d, true, 6000);
  std::vector<T> dw1, db1, dw2, db2;
  f.backward_weights(dw1, db1);
  f.backward_weights(dw2, db2);
  EXPECT_EQ(dw1, dw2);
  EXPECT_EQ(db1, db2);
  std::vector<T> dx1(f.x.size()), dx2(f.x.size());
  cpu::conv2d_backward_data(f.d, f.r.data(), f.w.data(), dx1.data(), f.ws.data());
  cpu::conv2d_backward_data(f.d, f.r.data(), f.w.data(), dx2.data(), f.ws.data());
  EXPECT_EQ(dx1, dx2);

  Conv2dDims empty = f.d;
  empty.n = 0;
  std::vector<T> dw(w_elems(empty), kNaN<T>), db(size_t(empty.k), kNaN<T>);
  cpu::conv2d_backward_weights(empty, f.x.data(), f.r.data(), dw.data(), db.data(), f.ws.data());
  EXPECT_EQ(dw, std::vector<T>(dw.size(), T(0)));
  EXPECT_EQ(db, std::vector<T>(db.size(), T(0)));
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

Conv2dDims dims(int n, int c, int h, int w, int k, int r, int s, int sh = 1, int sw = 1, int ph = 0,
                int pw = 0, int dh = 1, int dw = 1) {
  Conv2dDims d;
  d.n = n;
  d.c = c;
  d.h = h;
  d.w = w;
  d.k = k;
  d.r = r;
  d.s = s;
  d.stride_h = sh;
  d.stride_w = sw;
  d.pad_h = ph;
  d.pad_w = pw;
  d.dil_h = dh;
  d.dil_w = dw;
  return d;
}

struct Shape {
  const char* name;
  Conv2dDims d;
};

const std::vector<Shape>& shapes() {
  static const std::vector<Shape> all = {
      {"ref-cnn conv1", dims(2, 1, 28, 28, 32, 3, 3, 1, 1, 1, 1)},
      {"ref-cnn conv2", dims(3, 32, 14, 14, 64, 3, 3, 1, 1, 1, 1)},
      {"stride 2, C=3, K=5", dims(2, 3, 9, 11, 5, 3, 3, 2, 2, 1, 1)},
      {"5x3 kernel, pad 0", dims(1, 3, 7, 7, 5, 5, 3)},
      {"pad 2, dilation 2", dims(2, 4, 10, 9, 6, 3, 3, 1, 1, 2, 2, 2, 2)},
      {"1x1", dims(3, 7, 5, 6, 9, 1, 1)},
      {"1x1 output", dims(2, 3, 7, 7, 5, 7, 7)},
      {"1x1 stride 2 shortcut", dims(2, 16, 8, 8, 32, 1, 1, 2, 2)},
      {"3x3 stride 2 downsample", dims(2, 16, 8, 8, 32, 3, 3, 2, 2, 1, 1)},
      {"C=64 to K=16", dims(1, 64, 8, 10, 16, 3, 3, 1, 1, 1, 1)},
      {"K=70, C=5", dims(1, 5, 6, 6, 70, 3, 3, 1, 1, 1, 1)},
      {"2x4, stride 2x1, pad 0x1, dil 1x2", dims(2, 2, 9, 10, 3, 2, 4, 2, 1, 0, 1, 1, 2)},
      {"windows in the padding", dims(1, 2, 4, 4, 3, 2, 2, 1, 1, 2, 2)},
      {"stride 3 > kernel 2", dims(1, 2, 9, 9, 4, 2, 2, 3, 3)},
  };
  return all;
}

std::string describe(const Shape& s, MathMode math) {
  const Conv2dDims& d = s.d;
  return std::string(s.name) + " [N=" + std::to_string(d.n) + " C=" + std::to_string(d.c) + " " +
         std::to_string(d.h) + "x" + std::to_string(d.w) + " K=" + std::to_string(d.k) + " " +
         std::to_string(d.r) + "x" + std::to_string(d.s) + "] " +
         (math == MathMode::kTf32 ? "tf32" : "fp32");
}

// The direct 7-loop convolution and its two adjoints in double, with Σ|terms| per element.
Exact forward_exact(const Conv2dDims& d, const std::vector<double>& x, const std::vector<double>& w,
                    const float* b) {
  const int P = d.p(), Q = d.q();
  Exact e{std::vector<double>(y_elems(d)), std::vector<double>(y_elems(d))};
  for (int n = 0; n < d.n; ++n)
    for (int k = 0; k < d.k; ++k)
      for (int p = 0; p < P; ++p)
        for (int q = 0; q < Q; ++q) {
          double sum = b ? b[k] : 0.0, mag = b ? std::fabs(b[k]) : 0.0;
          for (int c = 0; c < d.c; ++c)
            for (int r = 0; r < d.r; ++r) {
              const int h = p * d.stride_h - d.pad_h + r * d.dil_h;
              if (h < 0 || h >= d.h) continue;
              for (int s = 0; s < d.s; ++s) {
                const int iw = q * d.stride_w - d.pad_w + s * d.dil_w;
                if (iw < 0 || iw >= d.w) continue;
                const double t = x[((static_cast<size_t>(n) * d.c + c) * d.h + h) * d.w + iw] *
                                 w[((static_cast<size_t>(k) * d.c + c) * d.r + r) * d.s + s];
                sum += t;
                mag += std::fabs(t);
              }
            }
          const size_t i = ((static_cast<size_t>(n) * d.k + k) * P + p) * Q + q;
          e.value[i] = sum;
          e.magnitude[i] = mag;
        }
  return e;
}

Exact data_exact(const Conv2dDims& d, const std::vector<double>& dy, const std::vector<double>& w) {
  const int P = d.p(), Q = d.q();
  Exact e{std::vector<double>(x_elems(d), 0.0), std::vector<double>(x_elems(d), 0.0)};
  for (int n = 0; n < d.n; ++n)
    for (int k = 0; k < d.k; ++k)
      for (int p = 0; p < P; ++p)
        for (int q = 0; q < Q; ++q) {
          const double g = dy[((static_cast<size_t>(n) * d.k + k) * P + p) * Q + q];
          for (int c = 0; c < d.c; ++c)
            for (int r = 0; r < d.r; ++r) {
              const int h = p * d.stride_h - d.pad_h + r * d.dil_h;
              if (h < 0 || h >= d.h) continue;
              for (int s = 0; s < d.s; ++s) {
                const int iw = q * d.stride_w - d.pad_w + s * d.dil_w;
                if (iw < 0 || iw >= d.w) continue;
                const double t = g * w[((static_cast<size_t>(k) * d.c + c) * d.r + r) * d.s + s];
                const size_t i = ((static_cast<size_t>(n) * d.c + c) * d.h + h) * d.w + iw;
                e.value[i] += t;
                e.magnitude[i] += std::fabs(t);
              }
            }
        }
  return e;
}

Exact weights_exact(const Conv2dDims& d, const std::vector<double>& x,
                    const std::vector<double>& dy) {
  const int P = d.p(), Q = d.q();
  Exact e{std::vector<double>(w_elems(d), 0.0), std::vector<double>(w_elems(d), 0.0)};
  for (int k = 0; k < d.k; ++k)
    for (int c = 0; c < d.c; ++c)
      for (int r = 0; r < d.r; ++r)
        for (int s = 0; s < d.s; ++s) {
          double sum = 0.0, mag = 0.0;
          for (int n = 0; n < d.n; ++n)
            for (int p = 0; p < P; ++p) {
              const int h = p * d.stride_h - d.pad_h + r * d.dil_h;
              if (h < 0 || h >= d.h) continue;
              for (int q = 0; q < Q; ++q) {
                const int iw = q * d.stride_w - d.pad_w + s * d.dil_w;
                if (iw < 0 || iw >= d.w) continue;
                const double t = dy[((static_cast<size_t>(n) * d.k + k) * P + p) * Q + q] *
                                 x[((static_cast<size_t>(n) * d.c + c) * d.h + h) * d.w + iw];
                sum += t;
                mag += std::fabs(t);
              }
            }
          const size_t i = ((static_cast<size_t>(k) * d.c + c) * d.r + r) * d.s + s;
          e.value[i] = sum;
          e.magnitude[i] = mag;
        }
  return e;
}

Exact bias_exact(const Conv2dDims& d, const std::vector<float>& dy) {
  const size_t pq = static_cast<size_t>(d.p()) * d.q();
  Exact e{std::vector<double>(static_cast<size_t>(d.k), 0.0),
          std::vector<double>(static_cast<size_t>(d.k), 0.0)};
  for (int n = 0; n < d.n; ++n)
    for (int k = 0; k < d.k; ++k)
      for (size_t j = 0; j < pq; ++j) {
        const double g = dy[(static_cast<size_t>(n) * d.k + k) * pq + j];
        e.value[static_cast<size_t>(k)] += g;
        e.magnitude[static_cast<size_t>(k)] += std::fabs(g);
      }
  return e;
}

// --- The devices ---------------------------------------------------------------------------------

#define WREN_CONV_LAUNCHERS(ns)                                                                   \
  static size_t workspace(Conv2dDims d, MathMode m) {                                            \
    return wren::ns::conv2d_workspace_bytes(d, m);                                               \
  }                                                                                               \
  static void forward(Conv2dDims d, MathMode m, const float* x, const float* w, const float* b,  \
                      float* y, void* ws) {                                                       \
    wren::ns::conv2d_forward(d, m, x, w, b, y, ws, nullptr);                                     \
  }                                                                                               \
  static void data(Conv2dDims d, MathMode m, const float* dy, const float* w, float* dx,         \
                   void* ws) {                                                                    \
    wren::ns::conv2d_backward_data(d, m, dy, w, dx, ws, nullptr);                                \
  }                                                                                               \
  static void weights(Conv2dDims d, MathMode m, const float* x, const float* dy, float* dw,      \
                      float* db, void* ws) {                                                      \
    wren::ns::conv2d_backward_weights(d, m, x, dy, dw, db, ws, nullptr);                         \
  }

#if defined(WREN_HAVE_EMU)
struct EmuConv : testing::EmuDevice {
  WREN_CONV_LAUNCHERS(emu_kernels)
};
#endif
struct CudaConv : testing::CudaDevice {
  WREN_CONV_LAUNCHERS(WREN_TEST_CUDA_KERNELS)
};
#undef WREN_CONV_LAUNCHERS

using Devices = WREN_KERNEL_DEVICES(EmuConv, CudaConv);

template <class K>
class ConvKernels : public testing::DeviceTest<K> {};
TYPED_TEST_SUITE(ConvKernels, Devices, testing::DeviceNames);

template <class K>
class ConvLaunchers : public testing::LauncherTest<K> {};
TYPED_TEST_SUITE(ConvLaunchers, Devices, testing::DeviceNames);

// --- The three passes: inputs and references once per shape, then every schedule --------------

constexpr MathMode kMaths[] = {MathMode::kFp32, MathMode::kTf32};

template <class K>
void check_forward(uint32_t seed, MathMode math) {
  std::mt19937 rng(seed);
  for (const Shape& shape : shapes()) {
    const Conv2dDims& d = shape.d;
    const std::string what = std::string(K::kName) + " conv2d_forward " + describe(shape, math);
    const std::vector<float> x = nonzero_normals(x_elems(d), rng),
                             w = nonzero_normals(w_elems(d), rng),
                             b = nonzero_normals(static_cast<size_t>(d.k), rng);
    // Half the shapes without a bias (b is optional).
    const bool with_bias = (&shape - shapes().data()) % 2 == 0;
    const float* bias = with_bias ? b.data() : nullptr;
    std::vector<float> cpu(y_elems(d)), cpu_ws(cpu::conv2d_workspace_elems(d));
    cpu::conv2d_forward<float>(d, x.data(), w.data(), bias, cpu.data(), cpu_ws.data());
    const Exact exact = forward_exact(d, widen(x, false), widen(w, false), bias);
    Exact rounded;
    if (math == MathMode::kTf32) rounded = forward_exact(d, widen(x, true), widen(w, true), bias);

    testing::under_schedules<K>(31, [&] {
      Buffer xb(K::kGpu, x), wb(K::kGpu, w), bb(K::kGpu, b), yb(K::kGpu, y_elems(d), NAN);
      Buffer ws(K::kGpu, workspace_fill(K::workspace(d, math), NAN));
      K::forward(d, math, xb.get(), wb.get(), with_bias ? bb.get() : nullptr, yb.get(), ws.get());
      ASSERT_EQ(K::finish(), "") << what;
      expect_gemm_close(yb.read(), exact, &rounded, cpu, math, int64_t{d.c} * d.r * d.s, what);
    });
  }
}

template <class K>
void check_backward_data(uint32_t seed, MathMode math) {
  std::mt19937 rng(seed);
  for (const Shape& shape : shapes()) {
    const Conv2dDims& d = shape.d;
    const std::string what =
        std::string(K::kName) + " conv2d_backward_data " + describe(shape, math);
    const std::vector<float> dy = nonzero_normals(y_elems(d), rng),
                             w = nonzero_normals(w_elems(d), rng);
    std::vector<float> cpu(x_elems(d)), cpu_ws(cpu::conv2d_workspace_elems(d));
    cpu::conv2d_backward_data<float>(d, dy.data(), w.data(), cpu.data(), cpu_ws.data());
    const Exact exact = data_exact(d, widen(dy, false), widen(w, false));
    Exact rounded;
    if (math == MathMode::kTf32) rounded = data_exact(d, widen(dy, true), widen(w, true));

    testing::under_schedules<K>(31, [&] {
      Buffer dyb(K::kGpu, dy), wb(K::kGpu, w), dxb(K::kGpu, x_elems(d), NAN);
      Buffer ws(K::kGpu, workspace_fill(K::workspace(d, math), NAN));
      K::data(d, math, dyb.get(), wb.get(), dxb.get(), ws.get());
      ASSERT_EQ(K::finish(), "") << what;
      expect_gemm_close(dxb.read(), exact, &rounded, cpu, math, int64_t{d.k} * d.r * d.s, what);
    });
  }
}

template <class K>
void check_backward_weights(uint32_t seed, MathMode math) {
  std::mt19937 rng(seed);
  for (const Shape& shape : shapes()) {
    const Conv2dDims& d = shape.d;
    const std::string what =
        std::string(K::kName) + " conv2d_backward_weights " + describe(shape, math);
    const std::vector<float> x = nonzero_normals(x_elems(d), rng),
                             dy = nonzero_normals(y_elems(d), rng);
    const bool with_bias = (&shape - shapes().data()) % 2 == 1;  // db is optional
    std::vector<float> cpu_dw(w_elems(d)), cpu_db(static_cast<size_t>(d.k)),
        cpu_ws(cpu::conv2d_workspace_elems(d));
    cpu::conv2d_backward_weights<float>(d, x.data(), dy.data(), cpu_dw.data(), cpu_db.data(),
                                        cpu_ws.data());
    const Exact exact = weights_exact(d, widen(x, false), widen(dy, false));
    Exact rounded;
    if (math == MathMode::kTf32) rounded = weights_exact(d, widen(x, true), widen(dy, true));
    const Exact bias = bias_exact(d, dy);
    const int64_t depth = int64_t{d.n} * d.p() * d.q();

    testing::under_schedules<K>(31, [&] {
      Buffer xb(K::kGpu, x), dyb(K::kGpu, dy), dwb(K::kGpu, w_elems(d), NAN),
          dbb(K::kGpu, static_cast<size_t>(d.k), NAN);
      Buffer ws(K::kGpu, workspace_fill(K::workspace(d, math), NAN));
      K::weights(d, math, xb.get(), dyb.get(), dwb.get(), with_bias ? dbb.get() : nullptr,
                 ws.get());
      ASSERT_EQ(K::finish(), "") << what;
      expect_gemm_close(dwb.read(), exact, &rounded, cpu_dw, math, depth, what + " dw");
      if (with_bias) {
        expect_bias_close(dbb.read(), bias, cpu_db, depth, what + " db");
      } else {
        for (float v : dbb.read()) ASSERT_TRUE(std::isnan(v)) << what << ": db written";
      }
    });
  }
}

// Two runs of every launcher on fresh buffers (different workspace garbage, the second run
// under the random schedule on the emulator) give the same bits, on the shapes whose passes
// split the reduction (ref-cnn conv1 and conv2: weight gradient and backward data; C = 64:
// forward; K = 70: backward data) and a strided one.
template <class K>
void check_deterministic(uint32_t seed) {
  std::mt19937 rng(seed);
  const std::vector<std::string> split = {"ref-cnn conv1", "ref-cnn conv2", "C=64 to K=16",
                                          "K=70, C=5", "stride 2, C=3, K=5"};
  for (MathMode math : kMaths) {
    for (const Shape& shape : shapes()) {
      if (std::find(split.begin(), split.end(), shape.name) == split.end()) continue;
      const Conv2dDims& d = shape.d;
      const std::string what = std::string(K::kName) + " rerun " + describe(shape, math);
      const std::vector<float> x = nonzero_normals(x_elems(d), rng),
                               w = nonzero_normals(w_elems(d), rng),
                               b = nonzero_normals(static_cast<size_t>(d.k), rng),
                               dy = nonzero_normals(y_elems(d), rng);
      std::vector<std::vector<float>> runs[2];
      auto run = [&](int r) {
        Buffer xb(K::kGpu, x), wb(K::kGpu, w), bb(K::kGpu, b), dyb(K::kGpu, dy),
            yb(K::kGpu, y_elems(d), NAN), dxb(K::kGpu, x_elems(d), NAN),
            dwb(K::kGpu, w_elems(d), NAN), dbb(K::kGpu, static_cast<size_t>(d.k), NAN);
        Buffer ws(K::kGpu, workspace_fill(K::workspace(d, math), r == 0 ? NAN : 1e30f));
        K::forward(d, math, xb.get(), wb.get(), bb.get(), yb.get(), ws.get());
        K::data(d, math, dyb.get(), wb.get(), dxb.get(), ws.get());
        K::weights(d, math, xb.get(), dyb.get(), dwb.get(), dbb.get(), ws.get());
        ASSERT_EQ(K::finish(), "") << what;
        runs[r] = {yb.read(), dxb.read(), dwb.read(), dbb.read()};
      };
      run(0);
      testing::under_random_schedule<K>(77, [&] { run(1); });
      if (::testing::Test::HasFatalFailure()) return;
      const char* names[] = {"y", "dx", "dw", "db"};
      for (size_t i = 0; i < 4; ++i) {
        EXPECT_TRUE(bits_equal(runs[0][i], runs[1][i]))
            << what << ": " << names[i] << " differs between two runs";
      }
    }
  }
}

TYPED_TEST(ConvKernels, ForwardFp32) {
  check_forward<TypeParam>(testing::device_seed<TypeParam>(301, 401), MathMode::kFp32);
}
TYPED_TEST(ConvKernels, ForwardTf32) {
  check_forward<TypeParam>(testing::device_seed<TypeParam>(302, 402), MathMode::kTf32);
}
TYPED_TEST(ConvKernels, BackwardDataFp32) {
  check_backward_data<TypeParam>(testing::device_seed<TypeParam>(303, 403), MathMode::kFp32);
}
TYPED_TEST(ConvKernels, BackwardDataTf32) {
  check_backward_data<TypeParam>(testing::device_seed<TypeParam>(304, 404), MathMode::kTf32);
}
TYPED_TEST(ConvKernels, BackwardWeightsFp32) {
  check_backward_weights<TypeParam>(testing::device_seed<TypeParam>(305, 405), MathMode::kFp32);
}
TYPED_TEST(ConvKernels, BackwardWeightsTf32) {
  check_backward_weights<TypeParam>(testing::device_seed<TypeParam>(306, 406), MathMode::kTf32);
}
TYPED_TEST(ConvKernels, RerunsAreBitIdentical) {
  check_deterministic<TypeParam>(testing::device_seed<TypeParam>(308, 408));
}

// N = 0: forward and backward data do nothing; the weight gradient is zero.
TYPED_TEST(ConvKernels, EmptyBatchZeroesTheWeightGradient) {
  using K = TypeParam;
  const Conv2dDims d = dims(0, 3, 5, 5, 4, 3, 3);
  Buffer dw(K::kGpu, w_elems(d), NAN), db(K::kGpu, 4, NAN);
  K::forward(d, MathMode::kFp32, nullptr, nullptr, nullptr, nullptr, nullptr);
  K::data(d, MathMode::kFp32, nullptr, nullptr, nullptr, nullptr);
  K::weights(d, MathMode::kTf32, nullptr, nullptr, dw.get(), db.get(), nullptr);
  ASSERT_EQ(K::finish(), "");
  for (float v : dw.read()) EXPECT_EQ(v, 0.0f);
  for (float v : db.read()) EXPECT_EQ(v, 0.0f);
}

TYPED_TEST(ConvLaunchers, WorkspaceCoversTheSplitWeightGradient) {
  using K = TypeParam;
  const Conv2dDims conv1 = dims(64, 1, 28, 28, 32, 3, 3, 1, 1, 1, 1);
  const size_t bytes = K::workspace(conv1, MathMode::kFp32);
  EXPECT_GT(bytes, 0u);
  EXPECT_EQ(bytes, K::workspace(conv1, MathMode::kTf32));
  // A problem without splits needs none.
  EXPECT_EQ(K::workspace(dims(1, 3, 5, 5, 4, 3, 3), MathMode::kFp32), 0u);
}

// Bad host arguments throw std::invalid_argument naming the function and the dims, before
// anything runs (host pointers suffice: nothing is read).
TYPED_TEST(ConvLaunchers, RejectsBadArguments) {
  using K = TypeParam;
  using testing::expect_invalid_argument;
  std::vector<float> buf(4096, 1.0f);
  float* p = buf.data();
  const Conv2dDims good = dims(1, 3, 5, 5, 4, 3, 3);
  auto forward = [p](Conv2dDims d) {
    return [p, d] { K::forward(d, MathMode::kFp32, p, p, p, p, nullptr); };
  };
  Conv2dDims d = good;
  d.c = 0;
  expect_invalid_argument(forward(d),
                          "conv2d_forward: sizes must be positive (N >= 0) (N=1 C=0 H=5 W=5 K=4");
  d = good;
  d.n = -1;
  expect_invalid_argument(forward(d), "N=-1");
  d = good;
  d.stride_w = 0;
  expect_invalid_argument(forward(d), "stride=1x0");
  d = good;
  d.dil_h = 0;
  expect_invalid_argument(forward(d), "dil=0x1");
  d = good;
  d.pad_h = -1;
  expect_invalid_argument(forward(d), "pad=-1x0");
  d = good;
  d.r = 7;  // 7 rows of kernel on 5 rows of input without padding
  expect_invalid_argument(forward(d), "larger than the padded input");
  d = good;
  d.h = d.w = 50000;
  d.c = 1000;
  expect_invalid_argument(forward(d), "exceeds 2^31 - 1024 elements");
  expect_invalid_argument(forward(d), "H=50000 W=50000");
  d.n = d.c = d.h = d.w = INT32_MAX;  // a product that would overflow 64 bits
  d.pad_h = d.pad_w = 1;
  expect_invalid_argument(forward(d), "exceeds 2^31 - 1024 elements");
  expect_invalid_argument([&] { K::data(good, MathMode::kFp32, nullptr, p, p, nullptr); },
                          "conv2d_backward_data: dy is null");
  expect_invalid_argument(
      [&] { K::weights(good, MathMode::kFp32, p, p, nullptr, p, nullptr); },
      "conv2d_backward_weights: dw is null");
  // A split weight gradient without its workspace.
  const Conv2dDims conv1 = dims(8, 1, 28, 28, 32, 3, 3, 1, 1, 1, 1);
  std::vector<float> big(x_elems(conv1) + y_elems(conv1), 1.0f);
  expect_invalid_argument(
      [&] { K::weights(conv1, MathMode::kFp32, big.data(), big.data(), p, nullptr, nullptr); },
      "bytes of workspace, got null");
  expect_invalid_argument([] { K::workspace(Conv2dDims{}, MathMode::kFp32); },
                          "conv2d_workspace_bytes");
  // Nothing was enqueued (the emulator records a kernel's fault; a GPU may be absent here).
  if constexpr (!K::kGpu) {
    ASSERT_EQ(K::finish(), "");
  }
}

}  // namespace kernel_suite
#endif  // WREN_TEST_KERNEL_DEVICES

// --- Every device: the hand-computed cases ------------------------------------------------------

namespace device_suite {

using testing::Buffer;

// The CPU reference behind the kernels' launcher signatures (the math mode does not apply).
template <class T>
struct CpuConv : testing::CpuDevice<T> {
  static size_t workspace(Conv2dDims d, MathMode) {
    return cpu::conv2d_workspace_elems(d) * sizeof(T);
  }
  static void forward(Conv2dDims d, MathMode, const T* x, const T* w, const T* b, T* y, void* ws) {
    cpu::conv2d_forward<T>(d, x, w, b, y, static_cast<T*>(ws));
  }
  static void data(Conv2dDims d, MathMode, const T* dy, const T* w, T* dx, void* ws) {
    cpu::conv2d_backward_data<T>(d, dy, w, dx, static_cast<T*>(ws));
  }
  static void weights(Conv2dDims d, MathMode, const T* x, const T* dy, T* dw, T* db, void* ws) {
    cpu::conv2d_backward_weights<T>(d, x, dy, dw, db, static_cast<T*>(ws));
  }
};

template <class K>
class ConvDevices : public testing::DeviceTest<K> {};
TYPED_TEST_SUITE(ConvDevices,
                 WREN_ALL_DEVICES(CpuConv<double>, CpuConv<float>, kernel_suite::EmuConv,
                                  kernel_suite::CudaConv),
                 testing::DeviceNames);

// Outputs start as NaN and the workspace as NaN garbage (0xff bytes), so that an op reading
// them instead of overwriting shows.
template <class K, class T = typename K::Scalar>
std::vector<T> forward_on(const Conv2dDims& d, const std::vector<T>& x, const std::vector<T>& w,
                          const std::vector<T>& b) {
  Buffer<T> xb(K::kGpu, x), wb(K::kGpu, w), bb(K::kGpu, b),
      yb(K::kGpu, y_elems(d), std::numeric_limits<T>::quiet_NaN());
  Buffer<unsigned char> ws(K::kGpu, K::workspace(d, MathMode::kFp32), 0xff);
  K::forward(d, MathMode::kFp32, xb.get(), wb.get(), b.empty() ? nullptr : bb.get(), yb.get(),
             ws.get());
  EXPECT_EQ(K::finish(), "");
  return yb.read();
}

TYPED_TEST(ConvDevices, ForwardHandComputed) {
  using K = TypeParam;
  using T = typename K::Scalar;
  // x = 1..9 as a 3×3 image, w = [[1, 2], [3, 4]].
  const std::vector<T> x = {1, 2, 3, 4, 5, 6, 7, 8, 9}, w = {1, 2, 3, 4};
  {
    // Valid, stride 1: y[0,0] = 1·1 + 2·2 + 4·3 + 5·4 = 37, and so on; bias 0.5.
    const Conv2dDims d{.n = 1, .c = 1, .h = 3, .w = 3, .k = 1, .r = 2, .s = 2};
    const std::vector<T> y = forward_on<K>(d, x, w, {T(0.5)});
    const std::vector<T> want = {37.5, 47.5, 67.5, 77.5};
    EXPECT_EQ(y, want);
  }
  {
    // Padding 1, stride 2, no bias: P = Q = 2; the four windows are
    //   rows −1..0 × cols −1..0 → 1·4                   =  4
    //   rows −1..0 × cols  1..2 → 2·3 + 3·4             = 18
    //   rows  1..2 × cols −1..0 → 4·2 + 7·4             = 36
    //   rows  1..2 × cols  1..2 → 5·1 + 6·2 + 8·3 + 9·4 = 77
    const Conv2dDims d{.n = 1,
                       .c = 1,
                       .h = 3,
                       .w = 3,
                       .k = 1,
                       .r = 2,
                       .s = 2,
                       .stride_h = 2,
                       .stride_w = 2,
                       .pad_h = 1,
                       .pad_w = 1};
    const std::vector<T> y = forward_on<K>(d, x, w, {});
    const std::vector<T> want = {4, 18, 36, 77};
    EXPECT_EQ(y, want);
  }
}

TYPED_TEST(ConvDevices, BackwardHandComputed) {
  using K = TypeParam;
  using T = typename K::Scalar;
  constexpr T kNaN = std::numeric_limits<T>::quiet_NaN();
  // The valid 3×3 ⊛ 2×2 case above with dy = 1 everywhere: dx[i,j] sums the weights whose
  // window covers (i, j), dw[r,s] sums the input under each kernel tap, db counts outputs.
  const Conv2dDims d{.n = 1, .c = 1, .h = 3, .w = 3, .k = 1, .r = 2, .s = 2};
  const std::vector<T> x = {1, 2, 3, 4, 5, 6, 7, 8, 9}, w = {1, 2, 3, 4}, dy = {1, 1, 1, 1};
  Buffer<T> xb(K::kGpu, x), wb(K::kGpu, w), dyb(K::kGpu, dy);
  Buffer<T> dx(K::kGpu, 9, kNaN), dw(K::kGpu, 4, kNaN), db(K::kGpu, 1, kNaN);
  Buffer<unsigned char> ws(K::kGpu, K::workspace(d, MathMode::kFp32), 0xff);
  K::data(d, MathMode::kFp32, dyb.get(), wb.get(), dx.get(), ws.get());
  K::weights(d, MathMode::kFp32, xb.get(), dyb.get(), dw.get(), db.get(), ws.get());
  ASSERT_EQ(K::finish(), "");
  EXPECT_EQ(dx.read(), (std::vector<T>{1, 3, 2, 4, 10, 6, 3, 7, 4}));
  EXPECT_EQ(dw.read(), (std::vector<T>{12, 16, 24, 28}));
  EXPECT_EQ(db.read(), (std::vector<T>{4}));
}

}  // namespace device_suite

}  // namespace
}  // namespace wren
