// Philox4x32-10 against Random123's known-answer vectors (kat_vectors, philox4x32_10 lines),
// and the conversions built on it: uniform01's range and resolution, uniform_at's counter
// layout, and a rough uniformity check of the stream.
#include "wren/rng.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <set>
#include <vector>

namespace wren {
namespace {

struct Kat {
  uint32_t ctr[4];
  uint32_t key[2];
  uint32_t expected[4];
};

void expect_kat(const Kat& k) {
  const Philox4x32 r = philox4x32_10(k.ctr[0], k.ctr[1], k.ctr[2], k.ctr[3], k.key[0], k.key[1]);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(r.v[i], k.expected[i])
        << "word " << i << std::hex << ": got 0x" << r.v[i] << ", expected 0x" << k.expected[i];
  }
}

TEST(RngTest, Philox4x32x10KnownAnswerZeros) {
  expect_kat({{0, 0, 0, 0}, {0, 0}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}});
}

TEST(RngTest, Philox4x32x10KnownAnswerAllOnes) {
  expect_kat({{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
              {0xffffffff, 0xffffffff},
              {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}});
}

TEST(RngTest, Philox4x32x10KnownAnswerPiDigits) {
  expect_kat({{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344},
              {0xa4093822, 0x299f31d0},
              {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}});
}

// 24 bits: 0 -> 0, the top bit alone -> 1/2, all ones -> 1 − 2⁻²⁴ (never 1), and the low 8
// bits are dropped.
TEST(RngTest, Uniform01RangeAndResolution) {
  EXPECT_EQ(uniform01(0u), 0.0f);
  EXPECT_EQ(uniform01(0xffu), 0.0f);
  EXPECT_EQ(uniform01(0x100u), 1.0f / 16777216.0f);
  EXPECT_EQ(uniform01(0x80000000u), 0.5f);
  EXPECT_EQ(uniform01(0xffffffffu), 1.0f - 1.0f / 16777216.0f);
  EXPECT_LT(uniform01(0xffffffffu), 1.0f);
}

// uniform_at(key, step, i) is lane i % 4 of the block at counter (i/4, i >> 34, step, step >> 32):
// the layout every device must reproduce. Indices and steps past 2³² exercise the high words.
TEST(RngTest, UniformAtCounterLayout) {
  const RngKey key = make_rng_key(42, RngStream::kDropout);
  for (uint64_t step : {uint64_t{0}, uint64_t{7}, (uint64_t{3} << 32) + 1}) {
    for (uint64_t i : {uint64_t{0}, uint64_t{1}, uint64_t{2}, uint64_t{3}, uint64_t{4},
                       uint64_t{1000003}, (uint64_t{5} << 34) + 6}) {
      const Philox4x32 block = philox4x32_10(
          static_cast<uint32_t>(i / 4), static_cast<uint32_t>(i / 4 >> 32),
          static_cast<uint32_t>(step), static_cast<uint32_t>(step >> 32), key.k0, key.k1);
      EXPECT_EQ(uniform_at(key, step, i), uniform01(block.v[i % 4])) << step << " " << i;
    }
  }
}

// Keys differ across streams and across both halves of the seed.
TEST(RngTest, KeysDifferAcrossSeedsAndStreams) {
  std::set<std::pair<uint32_t, uint32_t>> keys;
  for (uint64_t seed : {uint64_t{0}, uint64_t{1}, uint64_t{1} << 32}) {
    for (RngStream s : {RngStream::kInit, RngStream::kShuffle, RngStream::kAugment,
                        RngStream::kDropout, RngStream::kSplit, RngStream::kTest}) {
      const RngKey k = make_rng_key(seed, s);
      keys.insert({k.k0, k.k1});
    }
  }
  EXPECT_EQ(keys.size(), 18u);
}

// 200k draws: all in [0, 1), mean within 5σ of 1/2, and a 20-bin histogram whose χ² (19
// degrees of freedom) is below 50 (p ≈ 1e-4 for a uniform source).
TEST(RngTest, UniformAtIsRoughlyUniform) {
  const RngKey key = make_rng_key(7, RngStream::kTest);
  const int n = 200000, bins = 20;
  std::vector<int> hist(bins, 0);
  double sum = 0.0;
  for (int i = 0; i < n; ++i) {
    const float u = uniform_at(key, 3, static_cast<uint64_t>(i));
    ASSERT_GE(u, 0.0f);
    ASSERT_LT(u, 1.0f);
    sum += u;
    ++hist[static_cast<size_t>(u * bins)];
  }
  const double sigma = std::sqrt(1.0 / 12.0 / n);
  EXPECT_NEAR(sum / n, 0.5, 5 * sigma);
  const double expected = static_cast<double>(n) / bins;
  double chi2 = 0.0;
  for (int h : hist) chi2 += (h - expected) * (h - expected) / expected;
  EXPECT_LT(chi2, 50.0);
}

}  // namespace
}  // namespace wren
