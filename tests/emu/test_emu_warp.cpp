// Warp collectives on the emulator, every lane checked against the PTX definition: shuffles
// (idx/up/down/xor, every width), ballot/any/all, __syncwarp, warp_all_gather; partial warps.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "common/launch.h"

namespace {

// out[(warp-local result kind k) * n + t] for thread t; values are lane-unique.
__global__ void shfl_kernel(int* out, int arg, int width) {
  const int t = static_cast<int>(threadIdx.x);
  const int n = static_cast<int>(blockDim.x);
  const int v = 1000 + t;
  out[0 * n + t] = __shfl_sync(0xffffffffu, v, arg, width);
  out[1 * n + t] = __shfl_up_sync(0xffffffffu, v, static_cast<unsigned>(arg), width);
  out[2 * n + t] = __shfl_down_sync(0xffffffffu, v, static_cast<unsigned>(arg), width);
  out[3 * n + t] = __shfl_xor_sync(0xffffffffu, v, arg, width);
}

int expect_idx(int t, int a, int w) {
  return 1000 + (t & ~31) + ((t & 31) & ~(w - 1)) + (a & (w - 1));
}
int expect_up(int t, int a, int w) {
  const int l = t & 31, lo = l & ~(w - 1);
  return 1000 + (l - a >= lo ? t - a : t);
}
int expect_down(int t, int a, int w) {
  const int l = t & 31, hi = (l & ~(w - 1)) + w - 1;
  return 1000 + (l + a <= hi ? t + a : t);
}
int expect_xor(int t, int a, int w) {
  const int l = t & 31, hi = (l & ~(w - 1)) + w - 1;
  return 1000 + ((l ^ a) <= hi ? (t & ~31) + (l ^ a) : t);
}

TEST(EmuWarp, ShufflesEveryLaneEveryWidth) {
  const int n = 64;
  std::vector<int> out(4 * n);
  for (int width : {1, 2, 4, 8, 16, 32}) {
    for (int arg : {0, 1, 3, 5, 16, 31}) {
      WREN_LAUNCH(1, n, 0, nullptr, shfl_kernel)(out.data(), arg, width);
      ASSERT_EQ(wren::emu::take_error(), "");
      for (int t = 0; t < n; ++t) {
        ASSERT_EQ(out[0 * n + t], expect_idx(t, arg, width))
            << "idx t=" << t << " a=" << arg << " w=" << width;
        ASSERT_EQ(out[1 * n + t], expect_up(t, arg, width))
            << "up t=" << t << " a=" << arg << " w=" << width;
        ASSERT_EQ(out[2 * n + t], expect_down(t, arg, width))
            << "down t=" << t << " a=" << arg << " w=" << width;
        ASSERT_EQ(out[3 * n + t], expect_xor(t, arg, width))
            << "xor t=" << t << " a=" << arg << " w=" << width;
      }
    }
  }
}

template <class T>
__global__ void shfl_type_kernel(const T* in, T* out) {
  const int t = static_cast<int>(threadIdx.x);
  out[t] = __shfl_sync(0xffffffffu, in[t], 31 - t);
}

template <class T>
void check_shfl_type(const std::vector<T>& in) {
  std::vector<T> out(32);
  WREN_LAUNCH(1, 32, 0, nullptr, shfl_type_kernel<T>)(in.data(), out.data());
  ASSERT_EQ(wren::emu::take_error(), "");
  for (int t = 0; t < 32; ++t) {
    EXPECT_EQ(std::memcmp(&out[t], &in[31 - t], sizeof(T)), 0) << "lane " << t;
  }
}

TEST(EmuWarp, ShuffleTypes) {
  std::vector<double> d(32);
  std::vector<float> f(32);
  std::vector<long long> ll(32);
  std::vector<__half> h(32);
  std::vector<__half2> h2(32);
  for (int i = 0; i < 32; ++i) {
    d[i] = i * 1.25 + 1e10;
    f[i] = static_cast<float>(i) * 0.5f;
    ll[i] = (1LL << 40) + i;
    h[i] = __float2half(static_cast<float>(i));
    h2[i] = __floats2half2_rn(static_cast<float>(i), -static_cast<float>(i));
  }
  check_shfl_type(d);
  check_shfl_type(f);
  check_shfl_type(ll);
  check_shfl_type(h);
  check_shfl_type(h2);
}

__global__ void vote_kernel(const int* pred, unsigned* ballot, int* any, int* all) {
  const int t = static_cast<int>(threadIdx.x);
  ballot[t] = __ballot_sync(0xffffffffu, pred[t]);
  any[t] = __any_sync(0xffffffffu, pred[t]);
  all[t] = __all_sync(0xffffffffu, pred[t]);
  __syncwarp();
}

TEST(EmuWarp, VotesEveryLane) {
  const int n = 96;  // three warps: mixed, all zero, all one
  std::vector<int> pred(n), any(n), all(n);
  std::vector<unsigned> ballot(n);
  for (int t = 0; t < 32; ++t) pred[t] = (t % 3 == 0) ? 7 : 0;
  for (int t = 64; t < 96; ++t) pred[t] = 1;
  WREN_LAUNCH(1, n, 0, nullptr, vote_kernel)(pred.data(), ballot.data(), any.data(), all.data());
  ASSERT_EQ(wren::emu::take_error(), "");
  unsigned mixed = 0;
  for (int l = 0; l < 32; ++l) mixed |= (l % 3 == 0 ? 1u : 0u) << l;
  for (int t = 0; t < n; ++t) {
    const int w = t / 32;
    EXPECT_EQ(ballot[t], w == 0 ? mixed : (w == 1 ? 0u : 0xffffffffu)) << t;
    EXPECT_EQ(any[t], w != 1) << t;
    EXPECT_EQ(all[t], w == 2) << t;
  }
}

// A partial last warp (block of 40): collectives over the lanes that exist.
TEST(EmuWarp, PartialWarp) {
  const int n = 40;
  std::vector<int> pred(n, 1), any(n), all(n);
  std::vector<unsigned> ballot(n);
  WREN_LAUNCH(1, n, 0, nullptr, vote_kernel)(pred.data(), ballot.data(), any.data(), all.data());
  ASSERT_EQ(wren::emu::take_error(), "");
  for (int t = 32; t < n; ++t) {
    EXPECT_EQ(ballot[t], 0xffu) << t;
    EXPECT_EQ(all[t], 1) << t;
  }
}

struct Frag {
  uint32_t a;
  uint16_t b;
  uint8_t c;
};

__global__ void gather_kernel(Frag* out) {
  const unsigned t = threadIdx.x;
  Frag mine{t * 7919u, static_cast<uint16_t>(t + 3), static_cast<uint8_t>(t * 5)};
  Frag all[32];
  wren::emu::warp_all_gather(&mine, sizeof mine, all);
  for (int i = 0; i < 32; ++i) out[t * 32 + static_cast<unsigned>(i)] = all[i];
}

TEST(EmuWarp, AllGatherEveryLane) {
  for (auto s : {wren::emu::Schedule::kForward, wren::emu::Schedule::kReverse,
                 wren::emu::Schedule::kRandom}) {
    wren::emu::set_schedule(s, 7);
    std::vector<Frag> out(64 * 32);
    WREN_LAUNCH(1, 64, 0, nullptr, gather_kernel)(out.data());
    ASSERT_EQ(wren::emu::take_error(), "");
    for (unsigned t = 0; t < 64; ++t) {
      for (unsigned i = 0; i < 32; ++i) {
        const unsigned src = (t & ~31u) + i;
        const Frag& f = out[t * 32 + i];
        ASSERT_EQ(f.a, src * 7919u) << t << " " << i;
        ASSERT_EQ(f.b, src + 3) << t << " " << i;
        ASSERT_EQ(f.c, static_cast<uint8_t>(src * 5)) << t << " " << i;
      }
    }
  }
  wren::emu::set_schedule(wren::emu::Schedule::kForward);
}

__global__ void bad_mask_kernel(int* out) {
  out[threadIdx.x] = __shfl_sync(0x0000ffffu, 1, 0);
}

TEST(EmuWarp, PartialMaskIsAnError) {
  std::vector<int> out(32);
  WREN_LAUNCH(1, 32, 0, nullptr, bad_mask_kernel)(out.data());
  const std::string e = wren::emu::take_error();
  EXPECT_NE(e.find("bad_mask_kernel"), std::string::npos) << e;
  EXPECT_NE(e.find("full-mask"), std::string::npos) << e;
}

__global__ void mixed_collective_kernel(int* out) {
  if (threadIdx.x == 3) {
    out[threadIdx.x] = static_cast<int>(__ballot_sync(0xffffffffu, 1));
  } else {
    out[threadIdx.x] = __shfl_sync(0xffffffffu, 1, 0);
  }
}

TEST(EmuWarp, DisagreeingCollectivesAreAnError) {
  std::vector<int> out(32);
  WREN_LAUNCH(1, 32, 0, nullptr, mixed_collective_kernel)(out.data());
  const std::string e = wren::emu::take_error();
  EXPECT_NE(e.find("mixed_collective_kernel"), std::string::npos) << e;
  EXPECT_NE(e.find("disagree"), std::string::npos) << e;
}

}  // namespace

namespace {

// Lanes exchange through shared memory across __syncwarp: correct under every schedule.
__global__ void syncwarp_exchange_kernel(const int* in, int* out) {
  __shared__ int s[64];
  const unsigned t = threadIdx.x;
  s[t] = in[t];
  __syncwarp();
  out[t] = s[(t & ~31u) + ((t + 1) & 31u)];
}

TEST(EmuWarp, SyncwarpOrdersSharedMemoryUnderEverySchedule) {
  std::vector<int> in(64), out(64);
  for (int t = 0; t < 64; ++t) in[t] = 100 + t * 3;
  for (auto s : {wren::emu::Schedule::kForward, wren::emu::Schedule::kReverse,
                 wren::emu::Schedule::kRandom}) {
    wren::emu::set_schedule(s, 3);
    WREN_LAUNCH(1, 64, 0, nullptr, syncwarp_exchange_kernel)(in.data(), out.data());
    ASSERT_EQ(wren::emu::take_error(), "");
    for (int t = 0; t < 64; ++t) ASSERT_EQ(out[t], in[(t & ~31) + ((t + 1) & 31)]) << t;
  }
  wren::emu::set_schedule(wren::emu::Schedule::kForward);
}

// half / bfloat16 from CUDA's own headers, used in a kernel: conversions and arithmetic.
__global__ void half_kernel(const float* in, float* out) {
  const unsigned t = threadIdx.x;
  const __half h = __float2half(in[t]);
  const __half2 h2 = __floats2half2_rn(in[t], 2.0f);
  const __half2 p = __hmul2(h2, h2);
  const __nv_bfloat16 b = __float2bfloat16(in[t]);
  out[t * 3 + 0] = __half2float(__hadd(h, h));
  out[t * 3 + 1] = __low2float(p) + __high2float(p);
  out[t * 3 + 2] = __bfloat162float(b);
}

TEST(EmuBuiltinsHalf, HalfAndBfloat16InKernels) {
  std::vector<float> in = {0.5f, -1.25f, 3.0f, 64.0f};
  std::vector<float> out(in.size() * 3);
  WREN_LAUNCH(1, static_cast<unsigned>(in.size()), 0, nullptr, half_kernel)(in.data(), out.data());
  ASSERT_EQ(wren::emu::take_error(), "");
  for (size_t t = 0; t < in.size(); ++t) {
    EXPECT_EQ(out[t * 3 + 0], 2.0f * in[t]);  // exact in half for these values
    EXPECT_EQ(out[t * 3 + 1], in[t] * in[t] + 4.0f);
    EXPECT_EQ(out[t * 3 + 2], in[t]);
  }
}

TEST(EmuBuiltinsHalf, EveryHalfBitPatternRoundTrips) {
  for (unsigned bits = 0; bits < 65536; ++bits) {
    __half_raw raw;
    raw.x = static_cast<unsigned short>(bits);
    const float f = __half2float(__half(raw));
    const __half_raw back = __half_raw(__float2half(f));
    if (std::isnan(f)) continue;  // NaN payloads need not survive
    ASSERT_EQ(back.x, bits) << std::hex << bits;
  }
}

}  // namespace
