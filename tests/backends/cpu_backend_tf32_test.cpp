// CpuBackendOptions::tf32_operands: the CPU reference with the matrix operands of conv and
// linear rounded to TF32 (what `wren check --math tf32` compares against). Checked against the
// plain CPU ops run on operands rounded by an independent rule (frexp / ldexp arithmetic).
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "conv/conv.h"
#include "linear/linear.h"
#include "support/compare.h"
#include "support/gemm_bounds.h"
#include "wren/backend.h"

namespace wren {
namespace {

// TF32 keeps 10 of float's 23 fraction bits, rounding to nearest with ties away from zero
// (tests/support/gemm_bounds.h: frexp's mantissa in [0.5, 1) has 11 significant bits after
// scaling by 2^11).
using testing::expect_bits_equal;
using testing::tf32_round;

std::vector<float> random_values(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-2.0f, 2.0f);
  std::vector<float> v(n);
  for (float& x : v) x = u(rng);
  return v;
}

std::vector<float> rounded(std::vector<float> v) {
  for (float& x : v) x = tf32_round(x);
  return v;
}

TEST(CpuBackendTf32, RoundingRuleIsNearestTiesAwayFromZero) {
  // 1 + 2^-11 is half-way between 1 and 1 + 2^-10: away from zero.
  EXPECT_EQ(tf32_round(1.0f + 0x1p-11f), 1.0f + 0x1p-10f);
  EXPECT_EQ(tf32_round(-(1.0f + 0x1p-11f)), -(1.0f + 0x1p-10f));
  EXPECT_EQ(tf32_round(1.0f + 0x1p-12f), 1.0f);
}

TEST(CpuBackendTf32, ConvOperandsAreRoundedAndTheBiasGradientIsNot) {
  Conv2dDims d{.n = 2, .c = 3, .h = 7, .w = 6, .k = 4, .r = 3, .s = 3, .pad_h = 1, .pad_w = 1};
  const size_t nx = size_t{2} * 3 * 7 * 6, nw = size_t{4} * 3 * 3 * 3;
  const size_t ny = size_t{2} * 4 * d.p() * d.q();
  const std::vector<float> x = random_values(nx, 1), w = random_values(nw, 2),
                           b = random_values(4, 3), dy = random_values(ny, 4);
  auto tf32 = make_cpu_backend<float>({.tf32_operands = true});
  std::vector<float> ws(cpu::conv2d_workspace_elems(d));

  std::vector<float> y(ny), y_ref(ny);
  tf32->conv2d_forward(d, x.data(), w.data(), b.data(), y.data(), ws.data());
  cpu::conv2d_forward(d, rounded(x).data(), rounded(w).data(), b.data(), y_ref.data(), ws.data());
  expect_bits_equal(y, y_ref, "forward");

  std::vector<float> dx(nx), dx_ref(nx);
  tf32->conv2d_backward_data(d, dy.data(), w.data(), dx.data(), ws.data());
  cpu::conv2d_backward_data(d, rounded(dy).data(), rounded(w).data(), dx_ref.data(), ws.data());
  expect_bits_equal(dx, dx_ref, "backward data");

  std::vector<float> dw(nw), db(4), dw_ref(nw), db_ref(4), dw_plain(nw);
  tf32->conv2d_backward_weights(d, x.data(), dy.data(), dw.data(), db.data(), ws.data());
  cpu::conv2d_backward_weights(d, rounded(x).data(), rounded(dy).data(), dw_ref.data(), static_cast<float*>(nullptr),
                               ws.data());
  cpu::conv2d_backward_weights(d, x.data(), dy.data(), dw_plain.data(), db_ref.data(), ws.data());
  expect_bits_equal(dw, dw_ref, "backward weights");
  expect_bits_equal(db, db_ref, "bias gradient (fp32 dy)");
  EXPECT_NE(dw, dw_plain) << "the rounding changed nothing: not exercised";
}

TEST(CpuBackendTf32, LinearOperandsAreRoundedAndTheBiasGradientIsNot) {
  const LinearDims d{.n = 5, .in = 37, .out = 9};
  const std::vector<float> x = random_values(5 * 37, 5), w = random_values(9 * 37, 6),
                           b = random_values(9, 7), dy = random_values(5 * 9, 8);
  auto tf32 = make_cpu_backend<float>({.tf32_operands = true});

  std::vector<float> y(5 * 9), y_ref(5 * 9);
  tf32->linear_forward(d, x.data(), w.data(), b.data(), y.data());
  cpu::linear_forward(d, rounded(x).data(), rounded(w).data(), b.data(), y_ref.data());
  expect_bits_equal(y, y_ref, "forward");

  std::vector<float> dx(5 * 37), dx_ref(5 * 37);
  tf32->linear_backward_data(d, dy.data(), w.data(), dx.data());
  cpu::linear_backward_data(d, rounded(dy).data(), rounded(w).data(), dx_ref.data());
  expect_bits_equal(dx, dx_ref, "backward data");

  std::vector<float> dw(9 * 37), db(9), dw_ref(9 * 37), db_ref(9), dw_plain(9 * 37);
  tf32->linear_backward_weights(d, x.data(), dy.data(), dw.data(), db.data());
  cpu::linear_backward_weights(d, rounded(x).data(), rounded(dy).data(), dw_ref.data(),
                               static_cast<float*>(nullptr));
  cpu::linear_backward_weights(d, x.data(), dy.data(), dw_plain.data(), db_ref.data());
  expect_bits_equal(dw, dw_ref, "backward weights");
  expect_bits_equal(db, db_ref, "bias gradient (fp32 dy)");
  EXPECT_NE(dw, dw_plain) << "the rounding changed nothing: not exercised";
}

TEST(CpuBackendTf32, OffByDefault) {
  const LinearDims d{.n = 3, .in = 11, .out = 4};
  const std::vector<float> x = random_values(33, 9), w = random_values(44, 10);
  std::vector<float> y(12), y_ref(12);
  make_cpu_backend<float>()->linear_forward(d, x.data(), w.data(), nullptr, y.data());
  cpu::linear_forward(d, x.data(), w.data(), static_cast<const float*>(nullptr), y_ref.data());
  expect_bits_equal(y, y_ref, "forward");
}

}  // namespace
}  // namespace wren
