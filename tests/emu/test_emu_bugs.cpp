// Planted bugs: each must be reported with a message that names the kernel (and the block):
// divergent barriers, threads exiting while others wait, deadlocked warp collectives,
// uninitialised shared memory (garbage fill), misaligned vector loads, exceptions in kernels,
// and (ASan build) out-of-bounds global reads. After an error the next launch runs normally.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

#include "common/launch.h"

namespace {

void expect_error(const std::string& kernel, const std::string& what) {
  const std::string e = wren::emu::take_error();
  EXPECT_NE(e.find("kernel '" + kernel + "'"), std::string::npos) << e;
  EXPECT_NE(e.find("block ("), std::string::npos) << e;
  EXPECT_NE(e.find(what), std::string::npos) << e;
}

__global__ void good_kernel(int* out) {
  out[blockIdx.x * blockDim.x + threadIdx.x] = 1;
}

void expect_next_launch_works() {
  std::vector<int> out(4 * 64, 0);
  WREN_LAUNCH(4, 64, 0, nullptr, good_kernel)(out.data());
  EXPECT_EQ(wren::emu::take_error(), "");
  for (int v : out) ASSERT_EQ(v, 1);
}

__global__ void divergent_barrier_kernel(int* out) {
  if (threadIdx.x < 16) {
    out[threadIdx.x] = 1;
    __syncthreads();
  } else {
    out[threadIdx.x] = 2;
    __syncthreads();  // BUG: a different barrier
  }
}

TEST(EmuBugs, DivergentBarrier) {
  std::vector<int> out(64);
  WREN_LAUNCH(2, 64, 0, nullptr, divergent_barrier_kernel)(out.data());
  expect_error("divergent_barrier_kernel", "divergent barrier");
  expect_next_launch_works();
}

__global__ void early_exit_kernel(const int* in, int* out) {
  __shared__ int s[64];
  if (in[threadIdx.x] < 0) return;  // BUG: leaves the others waiting below
  s[threadIdx.x] = in[threadIdx.x];
  __syncthreads();
  out[threadIdx.x] = s[63 - threadIdx.x];
}

TEST(EmuBugs, ExitWhileOthersWaitAtBarrier) {
  std::vector<int> in(64, 1), out(64);
  in[5] = -1;
  WREN_LAUNCH(1, 64, 0, nullptr, early_exit_kernel)(in.data(), out.data());
  expect_error("early_exit_kernel", "has exited");
  expect_next_launch_works();
}

__global__ void deadlock_kernel(int* out) {
  int v = static_cast<int>(threadIdx.x);
  if (threadIdx.x % 32 != 7) v = __shfl_down_sync(0xffffffffu, v, 1);  // BUG: lane 7 skips
  out[threadIdx.x] = v;
}

TEST(EmuBugs, DeadlockInWarpCollective) {
  std::vector<int> out(64);
  WREN_LAUNCH(3, 64, 0, nullptr, deadlock_kernel)(out.data());
  expect_error("deadlock_kernel", "deadlock");
  expect_next_launch_works();
}

__global__ void warp_vs_block_kernel(int* out) {
  if (threadIdx.x < 32) {
    out[threadIdx.x] = __shfl_sync(0xffffffffu, 1, 0);
  } else {
    __syncthreads();  // BUG: the first warp never gets here
  }
}

TEST(EmuBugs, DeadlockBetweenWarpAndBlockBarrier) {
  std::vector<int> out(64);
  WREN_LAUNCH(1, 64, 0, nullptr, warp_vs_block_kernel)(out.data());
  const std::string e = wren::emu::last_error();
  expect_error("warp_vs_block_kernel", "__syncthreads");
  EXPECT_TRUE(e.find("has exited") != std::string::npos || e.find("deadlock") != std::string::npos)
      << e;
}

__global__ void uninit_static_smem_kernel(float* out) {
  __shared__ float tile[128];
  if (threadIdx.x < 64) tile[threadIdx.x] = 1.0f;  // BUG: the upper half is never written
  __syncthreads();
  out[threadIdx.x] = tile[threadIdx.x];
}

TEST(EmuBugs, UninitialisedStaticSharedReadIsGarbage) {
#if defined(WREN_EMU_ASAN)
  GTEST_SKIP() << "static __shared__ is plain statics (ASan redzones) in this build, not filled";
#endif
  std::vector<float> out(128);
  for (int run = 0; run < 2; ++run) {  // also when a previous block left good values behind
    WREN_LAUNCH(3, 128, 0, nullptr, uninit_static_smem_kernel)(out.data());
    ASSERT_EQ(wren::emu::take_error(), "");
    for (int t = 0; t < 128; ++t) {
      if (t < 64)
        EXPECT_EQ(out[t], 1.0f);
      else
        EXPECT_TRUE(std::isnan(out[t])) << "thread " << t << " read " << out[t];
    }
  }
}

__global__ void uninit_dynamic_smem_kernel(float* out) {
  float* tile = wren::dynamic_smem<float>();
  if (threadIdx.x % 2 == 0) tile[threadIdx.x] = 2.0f;  // BUG: odd slots never written
  __syncthreads();
  out[blockIdx.x * blockDim.x + threadIdx.x] = tile[threadIdx.x];
}

TEST(EmuBugs, UninitialisedDynamicSharedReadIsGarbage) {
  std::vector<float> out(4 * 32);
  WREN_LAUNCH(4, 32, 32 * sizeof(float), nullptr, uninit_dynamic_smem_kernel)(out.data());
  ASSERT_EQ(wren::emu::take_error(), "");
  for (int i = 0; i < 4 * 32; ++i) {
    if (i % 2 == 0)
      EXPECT_EQ(out[i], 2.0f);
    else
      EXPECT_TRUE(std::isnan(out[i])) << i;
  }
}

__global__ void misaligned_kernel(const float* in, float* out) {
  const float4 v = wren::emu::load_vec<float4>(in + 1 + 4 * threadIdx.x);  // BUG: in + 1
  out[threadIdx.x] = v.x + v.y + v.z + v.w;
}

TEST(EmuBugs, MisalignedVectorLoad) {
  std::vector<float> in(4 * 32 + 8, 1.0f), out(32);
  WREN_LAUNCH(1, 32, 0, nullptr, misaligned_kernel)(in.data(), out.data());
  expect_error("misaligned_kernel", "misaligned");
  expect_next_launch_works();
}

__global__ void throwing_kernel(int* out) {
  if (blockIdx.x == 2 && threadIdx.x == 9) wren::emu::detail::fail("planted failure");
  __syncthreads();
  out[threadIdx.x] = 1;
}

TEST(EmuBugs, ErrorNamesKernelBlockAndThread) {
  std::vector<int> out(32);
  WREN_LAUNCH(4, 32, 0, nullptr, throwing_kernel)(out.data());
  const std::string e = wren::emu::take_error();
  EXPECT_NE(e.find("kernel 'throwing_kernel', block (2,0,0)"), std::string::npos) << e;
  EXPECT_NE(e.find("thread (9,0,0): planted failure"), std::string::npos) << e;
  expect_next_launch_works();
}

__global__ void spin_wait_kernel(int* out) {
  __shared__ int flag;
  if (threadIdx.x == 1) flag = 1;
  // BUG: waits for another thread without a barrier; on the emulator thread 1 never runs.
  while (threadIdx.x == 0 && *static_cast<volatile int*>(&flag) != 1) {
  }
  out[threadIdx.x] = 1;
}

void launch_spin_wait() {
  setenv("WREN_EMU_WATCHDOG_S", "1", 1);
  std::vector<int> out(2);
  WREN_LAUNCH(1, 2, 0, nullptr, spin_wait_kernel)(out.data());
}

TEST(EmuBugsDeathTest, SpinWaitIsReportedByTheWatchdog) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(launch_spin_wait(), "kernel 'spin_wait_kernel': no block finished");
}

__global__ void null_write_kernel(int* out) {
  if (threadIdx.x == 3) out = nullptr;  // BUG
  out[threadIdx.x] = 1;
}

void launch_null_write() {
  std::vector<int> out(32);
  WREN_LAUNCH(1, 32, 0, nullptr, null_write_kernel)(out.data());
}

// The crash handler (release) or ASan's SEGV report (asan build) names the kernel.
TEST(EmuBugsDeathTest, SegfaultNamesTheKernel) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(launch_null_write(), "null_write_kernel");
}

#if defined(__SANITIZE_ADDRESS__)
__global__ void oob_read_kernel(const float* in, float* out, int n) {
  const int i = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  out[i] = in[i + 1];  // BUG: reads one past the end on the last thread
  (void)n;
}

void launch_oob_read() {
  const int n = 64;
  auto* in = static_cast<float*>(wren::emu::malloc(n * sizeof(float)));
  auto* out = static_cast<float*>(wren::emu::malloc(n * sizeof(float)));
  WREN_LAUNCH(2, 32, 0, nullptr, oob_read_kernel)(in, out, n);
}

TEST(EmuBugsDeathTest, OutOfBoundsGlobalReadCaughtByAsan) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(launch_oob_read(), "heap-buffer-overflow.*oob_read_kernel");
}

__global__ void misaligned_plain_kernel(const float* in, float* out) {
  // BUG: in + 1 is not 16-byte aligned; UBSan's alignment check reports it.
  const float4 v = *reinterpret_cast<const float4*>(in + 1 + 4 * threadIdx.x);
  out[threadIdx.x] = v.x + v.y + v.z + v.w;
}

void launch_misaligned_plain() {
  std::vector<float> in(4 * 32 + 8, 1.0f);
  std::vector<float> out(32);
  WREN_LAUNCH(1, 32, 0, nullptr, misaligned_plain_kernel)(in.data(), out.data());
}

TEST(EmuBugsDeathTest, MisalignedPlainVectorLoadCaughtByUbsan) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(launch_misaligned_plain(), "misaligned address.*float4");
}
#endif

}  // namespace
