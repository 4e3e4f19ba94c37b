// Conv2d reference (im2col + GEMM): forward against hand-computed values and a direct 7-loop
// convolution written here (accumulating in double); backward data, weights and bias against
// finite differences of L = Σ y·r (tests/gradcheck.h). Outputs and the workspace start as NaN,
// so an op that reads them instead of overwriting shows.
#include "conv/conv.h"

#include <gtest/gtest.h>
#include <omp.h>

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
class Conv2dTest : public ::testing::Test {};
using Types = ::testing::Types<float, double>;
TYPED_TEST_SUITE(Conv2dTest, Types);

template <class T>
constexpr T kNaN = std::numeric_limits<T>::quiet_NaN();


size_t x_elems(const Conv2dDims& d) {
  return size_t(d.n) * d.c * d.h * d.w;
}
size_t w_elems(const Conv2dDims& d) {
  return size_t(d.k) * d.c * d.r * d.s;
}
size_t y_elems(const Conv2dDims& d) {
  return size_t(d.n) * d.k * d.p() * d.q();
}

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

TYPED_TEST(Conv2dTest, ForwardHandComputed) {
  using T = TypeParam;
  // x = 1..9 as a 3×3 image, w = [[1, 2], [3, 4]].
  const std::vector<T> x = {1, 2, 3, 4, 5, 6, 7, 8, 9}, w = {1, 2, 3, 4};
  {
    // Valid, stride 1: y[0,0] = 1·1 + 2·2 + 4·3 + 5·4 = 37, and so on; bias 0.5.
    const Conv2dDims d{.n = 1, .c = 1, .h = 3, .w = 3, .k = 1, .r = 2, .s = 2};
    const T b = T(0.5);
    const std::vector<T> y = forward(d, x, w, &b);
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
    const std::vector<T> y = forward<T>(d, x, w, nullptr);
    const std::vector<T> want = {4, 18, 36, 77};
    EXPECT_EQ(y, want);
  }
}

TYPED_TEST(Conv2dTest, BackwardHandComputed) {
  using T = TypeParam;
  // The valid 3×3 ⊛ 2×2 case above with dy = 1 everywhere: dx[i,j] sums the weights whose
  // window covers (i, j), dw[r,s] sums the input under each kernel tap, db counts outputs.
  const Conv2dDims d{.n = 1, .c = 1, .h = 3, .w = 3, .k = 1, .r = 2, .s = 2};
  const std::vector<T> x = {1, 2, 3, 4, 5, 6, 7, 8, 9}, w = {1, 2, 3, 4}, dy = {1, 1, 1, 1};
  std::vector<T> ws(cpu::conv2d_workspace_elems(d), kNaN<T>);
  std::vector<T> dx(9, kNaN<T>), dw(4, kNaN<T>), db(1, kNaN<T>);
  cpu::conv2d_backward_data(d, dy.data(), w.data(), dx.data(), ws.data());
  cpu::conv2d_backward_weights(d, x.data(), dy.data(), dw.data(), db.data(), ws.data());
  EXPECT_EQ(dx, (std::vector<T>{1, 3, 2, 4, 10, 6, 3, 7, 4}));
  EXPECT_EQ(dw, (std::vector<T>{12, 16, 24, 28}));
  EXPECT_EQ(db, (std::vector<T>{4}));
}

TYPED_TEST(Conv2dTest, OutputSizeAndWorkspace) {
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

TYPED_TEST(Conv2dTest, ForwardMatchesDirectConvolution) {
  uint64_t seed = 1000;
  for (const ConvCase& cc : cases()) {
    SCOPED_TRACE(cc.name);
    for (const bool bias : {true, false}) check_forward<TypeParam>(cc.d, bias, seed += 10);
  }
}

// Larger than the finite-difference cases, so that OpenBLAS runs its blocked kernels.
TYPED_TEST(Conv2dTest, ForwardMatchesDirectConvolutionLarger) {
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

TYPED_TEST(Conv2dTest, BackwardDataMatchesFiniteDifferences) {
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

TYPED_TEST(Conv2dTest, BackwardWeightsMatchesFiniteDifferences) {
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

TYPED_TEST(Conv2dTest, BiasGradientMatchesFiniteDifferences) {
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
TYPED_TEST(Conv2dTest, BackwardDeterministicAndEmptyBatch) {
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

}  // namespace
}  // namespace wren
