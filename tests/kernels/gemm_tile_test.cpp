// The GEMM tile's host-side pieces (kernels/common/gemm_tile.cuh, as compiled for the emulator):
// FastDivmod against / and %, and the split-K plan. The tile itself is checked through the conv
// and linear kernels (tests/kernels/conv_test.cpp, linear_test.cpp) on every tile shape.
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <vector>

#if defined(WREN_HAVE_EMU)
#include "emu/emu.h"
#include "common/gemm_tile.cuh"
#endif

namespace {

#if defined(WREN_HAVE_EMU)
namespace gemm = wren::emu_kernels::gemm;

// FastDivmod against / and % over divisors 1 .. 2^31 − 1 (small, powers of two and their
// neighbours, random) and dividends at the edges of [0, 2^31) and random.
TEST(GemmTile, FastDivmodMatchesDivision) {
  std::mt19937 rng(309);
  std::vector<int> divisors;
  for (int d = 1; d <= 300; ++d) divisors.push_back(d);
  for (int b = 2; b < 31; ++b) {
    for (int delta : {-1, 0, 1}) divisors.push_back((1 << b) + delta);
  }
  divisors.push_back(INT32_MAX);
  std::uniform_int_distribution<int> any(1, INT32_MAX);
  for (int i = 0; i < 200; ++i) divisors.push_back(any(rng));
  std::uniform_int_distribution<int> dividend(0, INT32_MAX);
  for (int d : divisors) {
    const gemm::FastDivmod f = gemm::FastDivmod::make(d);
    std::vector<int> xs = {0, 1, d - 1, d, INT32_MAX, INT32_MAX - 1, INT32_MAX - d + 1};
    for (int m : {2, 3, 7, 1000}) {
      if (int64_t{d} * m <= INT32_MAX) {
        xs.push_back(d * m - 1);
        xs.push_back(d * m);
      }
    }
    for (int i = 0; i < 200; ++i) xs.push_back(dividend(rng));
    for (int x : xs) {
      if (x < 0) continue;
      int q = 0, r = 0;
      f.divmod(x, q, r);
      ASSERT_EQ(q, x / d) << x << " / " << d;
      ASSERT_EQ(r, x % d) << x << " % " << d;
    }
  }
}

// The split plan: no empty split, every chunk covered once, splits only for few output tiles
// with a long reduction, and a function of (M, N, kred) alone.
TEST(GemmTile, SplitPlanCoversTheReduction) {
  for (int m : {1, 10, 32, 64, 200}) {
    for (int n : {1, 9, 288, 3136}) {
      for (int kred : {0, 1, 15, 16, 255, 256, 1568, 50176}) {
        const gemm::SplitPlan p = gemm::plan_splits<gemm::TileLarge>(m, n, kred);
        ASSERT_EQ(p.chunks, (kred + 15) / 16);
        ASSERT_GE(p.splits, 1);
        ASSERT_LE(p.splits, gemm::kMaxSplits);
        if (p.chunks > 0) {
          ASSERT_LT((p.splits - 1) * p.chunks_per_split, p.chunks);  // the last split has work
          ASSERT_GE(p.splits * p.chunks_per_split, p.chunks);        // all chunks covered
        }
      }
    }
  }
  // ref-cnn's weight gradients at batch 64 split; its forward passes do not.
  EXPECT_GT(gemm::plan_splits<gemm::TileLarge>(64, 288, 64 * 14 * 14).splits, 1);
  EXPECT_GT(gemm::plan_splits<gemm::TileNarrow>(32, 9, 64 * 28 * 28).splits, 1);
  EXPECT_EQ(gemm::plan_splits<gemm::TileLarge>(64, 64 * 14 * 14, 288).splits, 1);
}

#endif  // WREN_HAVE_EMU

}  // namespace
