// The emulated PTX twins (kernels/common/ptx.cuh): fragment layouts against the PTX ISA's figures,
// mma.sync (bf16, f16, tf32) against a float64 product, cvt.rna.tf32 against an independent
// rounding, ldmatrix (x1/x2/x4, .trans) on every lane and register, and cp.async semantics
// (deferred until the wait, zero fill, wait_group counting) with its planted bugs.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "common/launch.h"
#include "common/ptx.cuh"

namespace {

using wren::ptx::FragCoord;

// --- Layouts ------------------------------------------------------------------------------------

// The 32 lanes' `elements` elements must tile a rows x cols matrix exactly once.
void expect_tiles(FragCoord (*layout)(int, int), int elements, int rows, int cols,
                  const char* name) {
  std::set<std::pair<int, int>> seen;
  for (int lane = 0; lane < 32; ++lane) {
    for (int e = 0; e < elements; ++e) {
      const FragCoord rc = layout(lane, e);
      ASSERT_TRUE(rc.row >= 0 && rc.row < rows && rc.col >= 0 && rc.col < cols)
          << name << " lane " << lane << " element " << e;
      EXPECT_TRUE(seen.insert({rc.row, rc.col}).second)
          << name << ": (" << rc.row << ", " << rc.col << ") twice";
    }
  }
  EXPECT_EQ(seen.size(), static_cast<size_t>(rows * cols)) << name;
}

TEST(PtxLayout, FragmentsTileTheirMatrices) {
  expect_tiles(wren::ptx::m16n8k16_a, 8, 16, 16, "m16n8k16 A");
  expect_tiles(wren::ptx::m16n8k16_b, 4, 16, 8, "m16n8k16 B");
  expect_tiles(wren::ptx::m16n8k8_tf32_a, 4, 16, 8, "m16n8k8 A");
  expect_tiles(wren::ptx::m16n8k8_tf32_b, 2, 8, 8, "m16n8k8 B");
  expect_tiles(wren::ptx::m16n8_c, 4, 16, 8, "m16n8 C");
}

// Entries read off the PTX ISA figures ("Matrix fragments for mma.m16n8k16 with floating point
// type" and "... mma.m16n8k8 ... .tf32"): T<lane> and a<i>/b<i>/c<i> at (row, col).
TEST(PtxLayout, MatchesThePtxIsaFigures) {
  struct Case {
    FragCoord (*layout)(int, int);
    int lane, e, row, col;
  };
  const Case cases[] = {
      {wren::ptx::m16n8k16_a, 0, 0, 0, 0},    {wren::ptx::m16n8k16_a, 0, 1, 0, 1},
      {wren::ptx::m16n8k16_a, 1, 0, 0, 2},    {wren::ptx::m16n8k16_a, 4, 0, 1, 0},
      {wren::ptx::m16n8k16_a, 0, 2, 8, 0},    {wren::ptx::m16n8k16_a, 0, 4, 0, 8},
      {wren::ptx::m16n8k16_a, 31, 7, 15, 15}, {wren::ptx::m16n8k16_a, 5, 6, 9, 10},
      {wren::ptx::m16n8k16_b, 0, 0, 0, 0},    {wren::ptx::m16n8k16_b, 0, 1, 1, 0},
      {wren::ptx::m16n8k16_b, 1, 0, 2, 0},    {wren::ptx::m16n8k16_b, 4, 0, 0, 1},
      {wren::ptx::m16n8k16_b, 0, 2, 8, 0},    {wren::ptx::m16n8k16_b, 31, 3, 15, 7},
      {wren::ptx::m16n8k8_tf32_a, 0, 0, 0, 0}, {wren::ptx::m16n8k8_tf32_a, 0, 1, 8, 0},
      {wren::ptx::m16n8k8_tf32_a, 0, 2, 0, 4}, {wren::ptx::m16n8k8_tf32_a, 1, 0, 0, 1},
      {wren::ptx::m16n8k8_tf32_a, 31, 3, 15, 7}, {wren::ptx::m16n8k8_tf32_b, 0, 1, 4, 0},
      {wren::ptx::m16n8k8_tf32_b, 4, 0, 0, 1}, {wren::ptx::m16n8k8_tf32_b, 31, 1, 7, 7},
      {wren::ptx::m16n8_c, 0, 0, 0, 0},       {wren::ptx::m16n8_c, 0, 1, 0, 1},
      {wren::ptx::m16n8_c, 1, 0, 0, 2},       {wren::ptx::m16n8_c, 0, 2, 8, 0},
      {wren::ptx::m16n8_c, 31, 3, 15, 7},
  };
  for (const Case& c : cases) {
    const FragCoord rc = c.layout(c.lane, c.e);
    EXPECT_EQ(rc.row, c.row) << "lane " << c.lane << " element " << c.e;
    EXPECT_EQ(rc.col, c.col) << "lane " << c.lane << " element " << c.e;
  }
}

// --- mma.sync -----------------------------------------------------------------------------------

enum class MmaType { kBf16, kF16, kTf32 };

// One warp: A [16][K] and B [K][8] row-major as 16-bit patterns (bf16/f16) or floats (tf32,
// rounded in the kernel with cvt.rna.tf32), C and D [16][8]. Fragments are loaded with the
// layout functions, so the test checks the twin's arithmetic and the layouts together.
template <MmaType kType>
__global__ void mma_kernel(const uint16_t* a16, const uint16_t* b16, const float* a32,
                           const float* b32, const float* c, float* d) {
  const int lane = static_cast<int>(threadIdx.x);
  uint32_t ra[4], rb[2];
  float rc[4], rd[4];
  if constexpr (kType == MmaType::kTf32) {
    for (int e = 0; e < 4; ++e) {
      const FragCoord x = wren::ptx::m16n8k8_tf32_a(lane, e);
      ra[e] = wren::ptx::float_to_tf32(a32[x.row * 8 + x.col]);
    }
    for (int e = 0; e < 2; ++e) {
      const FragCoord x = wren::ptx::m16n8k8_tf32_b(lane, e);
      rb[e] = wren::ptx::float_to_tf32(b32[x.row * 8 + x.col]);
    }
  } else {
    for (int r = 0; r < 4; ++r) {
      const FragCoord lo = wren::ptx::m16n8k16_a(lane, 2 * r);
      const FragCoord hi = wren::ptx::m16n8k16_a(lane, 2 * r + 1);
      ra[r] = wren::ptx::pack_b16x2(a16[lo.row * 16 + lo.col], a16[hi.row * 16 + hi.col]);
    }
    for (int r = 0; r < 2; ++r) {
      const FragCoord lo = wren::ptx::m16n8k16_b(lane, 2 * r);
      const FragCoord hi = wren::ptx::m16n8k16_b(lane, 2 * r + 1);
      rb[r] = wren::ptx::pack_b16x2(b16[lo.row * 8 + lo.col], b16[hi.row * 8 + hi.col]);
    }
  }
  for (int e = 0; e < 4; ++e) {
    const FragCoord x = wren::ptx::m16n8_c(lane, e);
    rc[e] = c[x.row * 8 + x.col];
  }
  if constexpr (kType == MmaType::kBf16) wren::ptx::mma_m16n8k16_bf16(rd, ra, rb, rc);
  if constexpr (kType == MmaType::kF16) wren::ptx::mma_m16n8k16_f16(rd, ra, rb, rc);
  if constexpr (kType == MmaType::kTf32) wren::ptx::mma_m16n8k8_tf32(rd, ra, rb, rc);
  for (int e = 0; e < 4; ++e) {
    const FragCoord x = wren::ptx::m16n8_c(lane, e);
    d[x.row * 8 + x.col] = rd[e];
  }
}

// bf16 is the top half of a float: truncating a float's bits gives a bf16 value exactly.
double bf16_value(uint16_t bits) {
  return std::bit_cast<float>(static_cast<uint32_t>(bits) << 16);
}
// IEEE half decoded from its fields (independent of cuda_fp16.h, which the twin uses).
double f16_value(uint16_t bits) {
  const int sign = bits >> 15, exponent = (bits >> 10) & 31, mantissa = bits & 1023;
  const double magnitude = exponent == 0 ? std::ldexp(mantissa, -24)
                                         : std::ldexp(1024 + mantissa, exponent - 25);
  return sign ? -magnitude : magnitude;
}
// Round to 11 significant bits, nearest, ties away from zero (cvt.rna.tf32.f32), for normal
// floats.
double tf32_value(float x) {
  int exponent = 0;
  const double m = std::frexp(static_cast<double>(x), &exponent);  // x = m·2^e, |m| in [0.5, 1)
  return std::ldexp(std::round(std::ldexp(m, 11)), exponent - 11);
}

template <MmaType kType>
void check_mma(uint32_t seed) {
  constexpr int K = kType == MmaType::kTf32 ? 8 : 16;
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<uint16_t> a16(16 * K), b16(K * 8);
  std::vector<float> a32(16 * K), b32(K * 8), c(16 * 8), d(16 * 8, 0.0f);
  std::vector<double> A(16 * K), B(K * 8);
  auto draw16 = [&](uint16_t* bits, double* value) {
    const float x = normal(rng);
    if constexpr (kType == MmaType::kBf16) {
      *bits = static_cast<uint16_t>(std::bit_cast<uint32_t>(x) >> 16);
      *value = bf16_value(*bits);
    } else {
      *bits = __half_as_ushort(__float2half_rn(x));
      *value = f16_value(*bits);
    }
  };
  for (int i = 0; i < 16 * K; ++i) {
    if constexpr (kType == MmaType::kTf32) {
      a32[static_cast<size_t>(i)] = normal(rng);
      A[static_cast<size_t>(i)] = tf32_value(a32[static_cast<size_t>(i)]);
    } else {
      draw16(&a16[static_cast<size_t>(i)], &A[static_cast<size_t>(i)]);
    }
  }
  for (int i = 0; i < K * 8; ++i) {
    if constexpr (kType == MmaType::kTf32) {
      b32[static_cast<size_t>(i)] = normal(rng);
      B[static_cast<size_t>(i)] = tf32_value(b32[static_cast<size_t>(i)]);
    } else {
      draw16(&b16[static_cast<size_t>(i)], &B[static_cast<size_t>(i)]);
    }
  }
  for (float& v : c) v = normal(rng);

  WREN_LAUNCH(1, 32, 0, nullptr, mma_kernel<kType>)
  (a16.data(), b16.data(), a32.data(), b32.data(), c.data(), d.data());
  ASSERT_EQ(wren::emu::take_error(), "");

  // D = A·B + C in float64; one fp32 rounding of the sum allows 2^-24 of its magnitude, and
  // |sum| <= Σ|a·b| + |c| bounds it (a wrong layout is off by O(1)).
  for (int i = 0; i < 16; ++i) {
    for (int j = 0; j < 8; ++j) {
      double ref = c[static_cast<size_t>(i * 8 + j)];
      double magnitude = std::fabs(ref);
      for (int k = 0; k < K; ++k) {
        const double p = A[static_cast<size_t>(i * K + k)] * B[static_cast<size_t>(k * 8 + j)];
        ref += p;
        magnitude += std::fabs(p);
      }
      EXPECT_LE(std::fabs(d[static_cast<size_t>(i * 8 + j)] - ref), 0x1p-24 * magnitude)
          << "D[" << i << "][" << j << "] = " << d[static_cast<size_t>(i * 8 + j)] << " vs "
          << ref;
    }
  }
}

TEST(PtxMma, Bf16MatchesFloat64) {
  for (uint32_t seed : {1u, 2u, 3u}) check_mma<MmaType::kBf16>(seed);
}
TEST(PtxMma, F16MatchesFloat64) {
  for (uint32_t seed : {1u, 2u, 3u}) check_mma<MmaType::kF16>(seed);
}
TEST(PtxMma, Tf32MatchesFloat64) {
  for (uint32_t seed : {1u, 2u, 3u}) check_mma<MmaType::kTf32>(seed);
}

TEST(PtxMma, FloatToTf32RoundsToNearestTiesAway) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> uniform(-1e4f, 1e4f);
  for (int i = 0; i < 100000; ++i) {
    const float x = uniform(rng);
    if (x == 0.0f) continue;
    const float y = std::bit_cast<float>(wren::ptx::float_to_tf32(x));
    ASSERT_EQ(static_cast<double>(y), tf32_value(x)) << x;
  }
  // Exact ties (the 13 dropped bits are 1000...0) round away from zero, both signs.
  for (uint32_t base : {0x3f800000u, 0x40490000u, 0xbf800000u, 0xc2c80000u}) {
    const float tie = std::bit_cast<float>(base | 0x1000u);
    EXPECT_EQ(wren::ptx::float_to_tf32(tie), base + 0x2000u) << tie;
    EXPECT_EQ(static_cast<double>(std::bit_cast<float>(wren::ptx::float_to_tf32(tie))),
              tf32_value(tie));
  }
  EXPECT_TRUE(std::isnan(std::bit_cast<float>(wren::ptx::float_to_tf32(NAN))));
  EXPECT_EQ(std::bit_cast<float>(wren::ptx::float_to_tf32(INFINITY)), INFINITY);
}

__global__ void mma_half_warp_kernel(float* d) {
  uint32_t a[4] = {0, 0, 0, 0}, b[2] = {0, 0};
  float c[4] = {0, 0, 0, 0}, out[4];
  wren::ptx::mma_m16n8k16_bf16(out, a, b, c);
  d[threadIdx.x] = out[0];
}

TEST(PtxMma, PartialWarpIsAnError) {
  std::vector<float> d(16);
  WREN_LAUNCH(1, 16, 0, nullptr, mma_half_warp_kernel)(d.data());
  const std::string e = wren::emu::take_error();
  EXPECT_NE(e.find("kernel 'mma_half_warp_kernel'"), std::string::npos) << e;
  EXPECT_NE(e.find("needs a full warp"), std::string::npos) << e;
}

// --- ldmatrix -----------------------------------------------------------------------------------

// Four 8x8 matrices of 16-bit values in shared memory, value = 1 + 64·matrix + 8·row + col.
// Lane l points at row_of[l] of matrix l/8 (a permutation, so the test sees that each lane's
// address is honoured). out[lane * 4 + j] = register j.
template <int kMatrices, bool kTrans>
__global__ void ldmatrix_kernel(const int* row_of, uint32_t* out) {
  __shared__ __align__(16) uint16_t tile[4 * 64];
  const int lane = static_cast<int>(threadIdx.x);
  for (int i = lane; i < 4 * 64; i += 32) tile[i] = static_cast<uint16_t>(1 + i);
  __syncthreads();
  uint32_t r[kMatrices];
  wren::ptx::ldmatrix<kMatrices, kTrans>(r, &tile[(lane / 8 % 4) * 64 + row_of[lane] * 8]);
  for (int j = 0; j < kMatrices; ++j) out[lane * 4 + j] = r[j];
}

template <int kMatrices, bool kTrans>
void check_ldmatrix() {
  std::vector<int> row_of(32);
  for (int l = 0; l < 32; ++l) row_of[static_cast<size_t>(l)] = (5 * l + 3) % 8;
  std::vector<uint32_t> out(32 * 4, 0);
  WREN_LAUNCH(1, 32, 0, nullptr, ldmatrix_kernel<kMatrices, kTrans>)(row_of.data(), out.data());
  ASSERT_EQ(wren::emu::take_error(), "");
  // Row r of matrix j is the one lane 8j + r points at.
  auto value = [&](int j, int r, int col) {
    return static_cast<uint32_t>(1 + 64 * j + 8 * row_of[static_cast<size_t>(8 * j + r)] + col);
  };
  for (int lane = 0; lane < 32; ++lane) {
    for (int j = 0; j < kMatrices; ++j) {
      const int quad = lane % 4, group = lane / 4;
      const uint32_t lo = kTrans ? value(j, 2 * quad, group) : value(j, group, 2 * quad);
      const uint32_t hi = kTrans ? value(j, 2 * quad + 1, group) : value(j, group, 2 * quad + 1);
      EXPECT_EQ(out[static_cast<size_t>(lane * 4 + j)], lo | (hi << 16))
          << "x" << kMatrices << (kTrans ? ".trans" : "") << " lane " << lane << " reg " << j;
    }
  }
}

TEST(PtxLdmatrix, EveryLaneAndRegister) {
  check_ldmatrix<1, false>();
  check_ldmatrix<2, false>();
  check_ldmatrix<4, false>();
  check_ldmatrix<1, true>();
  check_ldmatrix<2, true>();
  check_ldmatrix<4, true>();
}

__global__ void ldmatrix_misaligned_kernel(uint32_t* out) {
  __shared__ __align__(16) uint16_t tile[72];
  for (int i = static_cast<int>(threadIdx.x); i < 72; i += 32) tile[i] = 0;
  __syncthreads();
  uint32_t r[1];
  wren::ptx::ldmatrix<1, false>(r, &tile[1 + (threadIdx.x % 8) * 8]);  // BUG: 2-byte offset
  out[threadIdx.x] = r[0];
}

TEST(PtxLdmatrix, MisalignedRowIsAnError) {
  std::vector<uint32_t> out(32);
  WREN_LAUNCH(1, 32, 0, nullptr, ldmatrix_misaligned_kernel)(out.data());
  const std::string e = wren::emu::take_error();
  EXPECT_NE(e.find("kernel 'ldmatrix_misaligned_kernel'"), std::string::npos) << e;
  EXPECT_NE(e.find("misaligned ldmatrix row"), std::string::npos) << e;
}

// --- cp.async -----------------------------------------------------------------------------------

// Dynamic shared memory (NaN/0xff-filled at block start in every build): group 0 copies
// src[0..n) into s[0..n), group 1 copies src[n..2n) into s[n..2n) with thread 0's second copy
// short by `short_by` bytes (zero fill). Snapshots: before any wait, after wait_group 1, after
// wait_group 0. Each thread copies 16 bytes (4 floats) per group.
__global__ void cp_async_kernel(const float* src, int n, unsigned short_by, uint32_t* before,
                                uint32_t* after1, uint32_t* after0) {
  float* s = wren::dynamic_smem<float>();
  const int t = static_cast<int>(threadIdx.x);
  wren::ptx::cp_async<16>(&s[4 * t], &src[4 * t]);
  wren::ptx::cp_async_commit();
  wren::ptx::cp_async<16>(&s[n + 4 * t], &src[n + 4 * t], t == 0 ? 16 - short_by : 16);
  wren::ptx::cp_async_commit();
  auto snapshot = [&](uint32_t* out) {
    for (int i = 0; i < 4; ++i) {
      out[4 * t + i] = __float_as_uint(s[4 * t + i]);
      out[n + 4 * t + i] = __float_as_uint(s[n + 4 * t + i]);
    }
  };
  snapshot(before);  // BUG on purpose: reads before waiting
  wren::ptx::cp_async_wait<1>();
  snapshot(after1);
  wren::ptx::cp_async_wait<0>();
  snapshot(after0);
}

TEST(PtxCpAsync, CopiesLandAtTheWaitThatCoversThem) {
  const int threads = 64, n = 4 * threads;
  std::vector<float> src(2 * static_cast<size_t>(n));
  for (size_t i = 0; i < src.size(); ++i) src[i] = 0.5f + static_cast<float>(i);
  std::vector<uint32_t> before(src.size()), after1(src.size()), after0(src.size());
  const unsigned short_by = 8;
  WREN_LAUNCH(1, threads, src.size() * sizeof(float), nullptr, cp_async_kernel)
  (src.data(), n, short_by, before.data(), after1.data(), after0.data());
  ASSERT_EQ(wren::emu::take_error(), "");
  const uint32_t garbage = 0xffffffffu;
  for (size_t i = 0; i < src.size(); ++i) {
    const bool group0 = i < static_cast<size_t>(n);
    const bool zero_filled = i == static_cast<size_t>(n) + 2 || i == static_cast<size_t>(n) + 3;
    const uint32_t data = zero_filled ? 0u : std::bit_cast<uint32_t>(src[i]);
    EXPECT_EQ(before[i], garbage) << i;  // a read before the wait sees no data
    EXPECT_EQ(after1[i], group0 ? data : garbage) << i;
    EXPECT_EQ(after0[i], data) << i;
  }
}

__global__ void cp_async_misaligned_kernel(const float* src) {
  float* s = wren::dynamic_smem<float>();
  wren::ptx::cp_async<16>(&s[1 + 4 * threadIdx.x], &src[4 * threadIdx.x]);  // BUG: 4-byte offset
  wren::ptx::cp_async_commit();
  wren::ptx::cp_async_wait<0>();
}

TEST(PtxCpAsync, MisalignedDestinationIsAnError) {
  std::vector<float> src(4 * 32, 1.0f);
  WREN_LAUNCH(1, 32, 4 * 33 * sizeof(float), nullptr, cp_async_misaligned_kernel)(src.data());
  const std::string e = wren::emu::take_error();
  EXPECT_NE(e.find("kernel 'cp_async_misaligned_kernel'"), std::string::npos) << e;
  EXPECT_NE(e.find("misaligned cp.async destination"), std::string::npos) << e;
}

}  // namespace
