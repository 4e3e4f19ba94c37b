// The CPU GEMM (kernels/common/cpu_gemm.{h,cpp}, through CBLAS) against a naive triple loop in
// double, in float and double: every transpose combination, odd sizes, alpha/beta other than
// 1/0, and leading dimensions wider than the rows they hold (the padding is NaN in A and B, so
// reading it would show, and must be left alone in C).
#include "common/cpu_gemm.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "support/gradcheck.h"

namespace wren {
namespace {

using testing::expect_all_close;
using testing::random_vector;

template <class T>
class CpuGemmTest : public ::testing::Test {};
using Types = ::testing::Types<float, double>;
TYPED_TEST_SUITE(CpuGemmTest, Types);

struct GemmCase {
  bool trans_a, trans_b;
  int m, n, k;
  double alpha, beta;
  int pad_a = 0, pad_b = 0, pad_c = 0;  // extra elements per stored row beyond the width
};

std::string describe(const GemmCase& g) {
  return std::string(g.trans_a ? "At" : "A") + (g.trans_b ? "·Bt" : "·B") +
         " m=" + std::to_string(g.m) + " n=" + std::to_string(g.n) + " k=" + std::to_string(g.k) +
         " alpha=" + std::to_string(g.alpha) + " beta=" + std::to_string(g.beta) +
         " pads=" + std::to_string(g.pad_a) + "," + std::to_string(g.pad_b) + "," +
         std::to_string(g.pad_c);
}

// A rows × cols matrix stored with row stride cols + pad: random values, NaN in the padding.
template <class T>
std::vector<T> padded_matrix(int rows, int cols, int pad, uint64_t seed) {
  const size_t ld = static_cast<size_t>(cols + pad);
  const std::vector<T> values = random_vector<T>(static_cast<size_t>(rows) * cols, seed);
  std::vector<T> out(static_cast<size_t>(rows) * ld, std::numeric_limits<T>::quiet_NaN());
  for (size_t i = 0; i < static_cast<size_t>(rows); ++i)
    for (size_t j = 0; j < static_cast<size_t>(cols); ++j)
      out[i * ld + j] = values[i * static_cast<size_t>(cols) + j];
  return out;
}

// Runs one case and compares with the loop in double. With use_fill, every element of C's
// m×n block starts as c_fill_value (NaN: to show that beta = 0 does not read C).
template <class T>
void check_case(const GemmCase& g, uint64_t seed, T c_fill_value = T(0), bool use_fill = false) {
  SCOPED_TRACE(describe(g));
  const int a_rows = g.trans_a ? g.k : g.m, a_cols = g.trans_a ? g.m : g.k;
  const int b_rows = g.trans_b ? g.n : g.k, b_cols = g.trans_b ? g.k : g.n;
  const int lda = a_cols + g.pad_a, ldb = b_cols + g.pad_b, ldc = g.n + g.pad_c;
  const std::vector<T> a = padded_matrix<T>(a_rows, a_cols, g.pad_a, seed);
  const std::vector<T> b = padded_matrix<T>(b_rows, b_cols, g.pad_b, seed + 1);
  // C's padding holds a sentinel that must survive.
  const T sentinel = T(12345.5);
  std::vector<T> c = random_vector<T>(static_cast<size_t>(g.m) * ldc, seed + 2);
  for (size_t i = 0; i < static_cast<size_t>(g.m); ++i)
    for (size_t j = 0; j < static_cast<size_t>(ldc); ++j) {
      T& e = c[i * static_cast<size_t>(ldc) + j];
      if (j >= static_cast<size_t>(g.n))
        e = sentinel;
      else if (use_fill)
        e = c_fill_value;
    }
  const std::vector<T> c0 = c;

  auto at = [&](int i, int l) {  // op(A)(i, l)
    return static_cast<double>(g.trans_a ? a[static_cast<size_t>(l) * lda + i]
                                         : a[static_cast<size_t>(i) * lda + l]);
  };
  auto bt = [&](int l, int j) {  // op(B)(l, j)
    return static_cast<double>(g.trans_b ? b[static_cast<size_t>(j) * ldb + l]
                                         : b[static_cast<size_t>(l) * ldb + j]);
  };
  std::vector<double> ref(static_cast<size_t>(g.m) * g.n);
  for (int i = 0; i < g.m; ++i)
    for (int j = 0; j < g.n; ++j) {
      double sum = 0.0;
      for (int l = 0; l < g.k; ++l) sum += at(i, l) * bt(l, j);
      // beta = 0: C is not read (BLAS convention), so a NaN there must not propagate.
      const double old = g.beta == 0.0 ? 0.0 : g.beta * c0[static_cast<size_t>(i) * ldc + j];
      ref[static_cast<size_t>(i) * g.n + j] = g.alpha * sum + old;
    }

  cpu::gemm<T>(g.trans_a, g.trans_b, g.m, g.n, g.k, static_cast<T>(g.alpha), a.data(), lda,
               b.data(), ldb, static_cast<T>(g.beta), c.data(), ldc);

  std::vector<T> got(static_cast<size_t>(g.m) * g.n);
  size_t padding_changed = 0;
  for (size_t i = 0; i < static_cast<size_t>(g.m); ++i)
    for (size_t j = 0; j < static_cast<size_t>(ldc); ++j) {
      const T e = c[i * static_cast<size_t>(ldc) + j];
      if (j < static_cast<size_t>(g.n))
        got[i * static_cast<size_t>(g.n) + j] = e;
      else if (e != sentinel)
        ++padding_changed;
    }
  EXPECT_EQ(padding_changed, 0u) << "gemm wrote outside the m×n block of C";
  // Each output is a length-k sum of terms bounded by |alpha| ≤ 2 plus |beta·c| ≤ 1: its
  // rounding error stays within a few ulps of 1 per term.
  const double eps = std::numeric_limits<T>::epsilon();
  const double atol = 4.0 * eps * (g.k + 2);
  const double rtol = std::is_same_v<T, float> ? 1e-5 : 1e-12;
  expect_all_close<T, double>(got, ref, atol, rtol, "C");
}

TYPED_TEST(CpuGemmTest, AllTransposesOddSizesWithPaddedLeadingDims) {
  using T = TypeParam;
  uint64_t seed = 100;
  for (const bool ta : {false, true})
    for (const bool tb : {false, true}) {
      check_case<T>({ta, tb, 5, 7, 3, 1.5, -0.75, 3, 2, 4}, seed += 10);
      check_case<T>({ta, tb, 13, 11, 17, -0.5, 0.25, 1, 5, 2}, seed += 10);
      check_case<T>({ta, tb, 9, 4, 6, 1.0, 1.0, 0, 0, 0}, seed += 10);
    }
}

// Sizes beyond OpenBLAS's register tiles, so the packed inner kernels and their ragged edges run.
TYPED_TEST(CpuGemmTest, AllTransposesLargerOddSizes) {
  using T = TypeParam;
  uint64_t seed = 200;
  for (const bool ta : {false, true})
    for (const bool tb : {false, true})
      check_case<T>({ta, tb, 67, 45, 131, 0.75, -1.25, 3, 1, 7}, seed += 10);
}

// Vector-like and scalar products (m, n or k equal to 1), which BLAS may route differently.
TYPED_TEST(CpuGemmTest, ThinShapes) {
  using T = TypeParam;
  uint64_t seed = 300;
  for (const bool ta : {false, true})
    for (const bool tb : {false, true}) {
      check_case<T>({ta, tb, 1, 9, 5, 2.0, 0.5, 2, 1, 3}, seed += 10);
      check_case<T>({ta, tb, 7, 1, 5, -1.0, 0.5, 1, 2, 1}, seed += 10);
      check_case<T>({ta, tb, 6, 5, 1, 1.0, 0.0, 1, 1, 1}, seed += 10);
      check_case<T>({ta, tb, 1, 1, 1, 0.5, 2.0, 0, 0, 0}, seed += 10);
    }
}

TYPED_TEST(CpuGemmTest, BetaZeroDoesNotReadC) {
  using T = TypeParam;
  const T nan = std::numeric_limits<T>::quiet_NaN();
  uint64_t seed = 400;
  for (const bool ta : {false, true})
    for (const bool tb : {false, true})
      check_case<T>({ta, tb, 5, 6, 7, 1.25, 0.0, 1, 2, 3}, seed += 10, nan, true);
}

// k = 0: the product is an empty sum, so C = beta·C (and zeros for beta = 0, even over NaN).
TYPED_TEST(CpuGemmTest, EmptyInnerDimensionScalesC) {
  using T = TypeParam;
  check_case<T>({false, false, 4, 3, 0, 1.0, -2.0, 0, 0, 1}, 500);
  check_case<T>({true, true, 4, 3, 0, 1.0, 0.5, 0, 0, 2}, 510);
  check_case<T>({false, true, 4, 3, 0, 1.0, 0.0, 0, 0, 0}, 520, std::numeric_limits<T>::quiet_NaN(),
                true);
}

}  // namespace
}  // namespace wren
