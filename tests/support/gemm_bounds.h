// The error bounds of the GEMM-based kernels (conv, linear on kernels/common/gemm_tile.cuh),
// shared by their tests (tests/kernels/conv_test.cpp, linear_test.cpp).
//
// u = 2^-24; per output element, D = the GEMM's reduction length, M = Σ|products| (+ |bias|):
//  - fp32: the kernel sums D products (and the bias) along an evaluation tree whose depth is at
//    most D + splits + 1 with splits <= D/256 + 1 (each step one rounding; an FMA rounds once, a
//    multiply-add twice but the product's rounding is bounded by the same u·|p|), so by the
//    standard inner-product bound |got − exact| <= (D + D/64 + 4)·u·M =: acc(D)·M. The CPU float
//    op obeys the same bound (OpenBLAS GEMM, then col2im's additions or per-thread partial
//    sums), so |got − cpu| <= 2·acc(D)·M.
//  - tf32: cvt.rna rounds each operand to 11 significant bits (relative error <= 2^-11), so each
//    product is off by at most (2·2^-11 + 2^-22)·|p|; the fp32 accumulation adds acc(D)·M.
//    Against the exact result: (2^-10 + 2^-22 + acc(D))·M. Against the exact product of the
//    TF32-ROUNDED operands (rounded here independently, tf32_round) the bound is acc(D)·M
//    again: that checks the rounding itself, not just its size.
//  - a bias gradient summed in double and rounded once: |got − exact| <= u·|exact| +
//    2·D·2^-53·Σ|dy|.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "wren/math_mode.h"

namespace wren::testing {

inline constexpr double kU = 0x1p-24;

// cvt.rna.tf32.f32 computed independently of ptx.cuh and of the CPU backend: 11 significant
// bits, nearest, ties away from zero (std::round on frexp's mantissa scaled by 2^11). The
// result is a float (11 significant bits fit); non-finite values and zeros pass through.
inline float tf32_round(float v) {
  if (!std::isfinite(v) || v == 0.0f) return v;
  int e = 0;
  const double m = std::frexp(static_cast<double>(v), &e);
  return static_cast<float>(std::ldexp(std::round(std::ldexp(m, 11)), e - 11));
}

// `v` in double, TF32-rounded first when `round_tf32`.
inline std::vector<double> widen(const std::vector<float>& v, bool round_tf32) {
  std::vector<double> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = round_tf32 ? tf32_round(v[i]) : v[i];
  return out;
}

// An exact (double) result and, per element, Σ|terms| (the tolerance's scale).
struct Exact {
  std::vector<double> value, magnitude;
};

// acc(D) of the header comment.
inline double acc_bound(int64_t depth) {
  return static_cast<double>(depth + depth / 64 + 4) * kU;
}

// Checks `got` against the exact result, the TF32-rounded exact result (tf32 only; `rounded`)
// and the CPU float op `cpu`, with the bounds of the header comment for reduction length
// `depth`.
inline void expect_gemm_close(const std::vector<float>& got, const Exact& exact,
                              const Exact* rounded, const std::vector<float>& cpu, MathMode math,
                              int64_t depth, const std::string& what) {
  ASSERT_EQ(got.size(), exact.value.size()) << what;
  const double acc = acc_bound(depth);
  const bool tf = math == MathMode::kTf32;
  const double operand = tf ? 0x1p-10 + 0x1p-22 : 0.0;
  size_t bad = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double g = got[i], m = exact.magnitude[i];
    const double ref = exact.value[i];
    const double tol_exact = (operand + acc) * m;
    const double tol_cpu = tol_exact + acc * m;
    bool ok = std::fabs(g - ref) <= tol_exact && std::fabs(g - cpu[i]) <= tol_cpu;
    double ref_rounded = 0.0, tol_rounded = 0.0;
    if (tf) {
      ref_rounded = rounded->value[i];
      tol_rounded = acc * rounded->magnitude[i];
      ok = ok && std::fabs(g - ref_rounded) <= tol_rounded;
    }
    if (!ok && ++bad <= 5) {
      ADD_FAILURE() << what << " [" << i << "]: got " << g << ", exact " << ref << " (tol "
                    << tol_exact << "), cpu " << cpu[i] << " (tol " << tol_cpu << ")"
                    << (tf ? ", tf32-rounded exact " + std::to_string(ref_rounded) + " (tol " +
                                 std::to_string(tol_rounded) + ")"
                           : std::string());
    }
  }
  EXPECT_EQ(bad, 0u) << what;
}

// A bias gradient (double sum, one rounding) against its exact value and the CPU op's.
inline void expect_bias_close(const std::vector<float>& got, const Exact& exact,
                              const std::vector<float>& cpu, int64_t depth,
                              const std::string& what) {
  ASSERT_EQ(got.size(), exact.value.size()) << what;
  size_t bad = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double tol = kU * std::fabs(exact.value[i]) +
                       2.0 * static_cast<double>(depth) * 0x1p-53 * exact.magnitude[i];
    const bool ok = std::fabs(got[i] - exact.value[i]) <= tol &&
                    std::fabs(got[i] - static_cast<double>(cpu[i])) <= 2.0 * tol;
    if (!ok && ++bad <= 5) {
      ADD_FAILURE() << what << " [" << i << "]: got " << got[i] << ", exact " << exact.value[i]
                    << ", cpu " << cpu[i] << " (tol " << tol << ")";
    }
  }
  EXPECT_EQ(bad, 0u) << what;
}

}  // namespace wren::testing
