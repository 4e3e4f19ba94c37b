// The emulator's execution model: launch geometry and index variables, template kernels through
// WREN_LAUNCH, __syncthreads and its reducing variants, static and dynamic shared memory,
// atomics under contention, device memory / streams / events, math built-ins, schedules.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <numeric>
#include <thread>
#include <vector>

#include "common/launch.h"

namespace {

using wren::emu::Schedule;

// Every thread writes its linear global id and its (thread, block) coordinates.
__global__ void index_kernel(unsigned* out) {
  const unsigned bx = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
  const unsigned tx = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  const unsigned per = blockDim.x * blockDim.y * blockDim.z;
  const unsigned id = bx * per + tx;
  out[id * 2] = id;
  out[id * 2 + 1] = (threadIdx.z << 24) | (threadIdx.y << 16) | (blockIdx.z << 8) | blockIdx.y;
}

TEST(EmuLaunch, IndexVariables3d) {
  const dim3 grid(3, 2, 2), block(4, 3, 2);
  const unsigned total = 3 * 2 * 2 * 4 * 3 * 2;
  std::vector<unsigned> out(total * 2, 0xdeadu);
  WREN_LAUNCH(grid, block, 0, nullptr, index_kernel)(out.data());
  ASSERT_EQ(wren::emu::take_error(), "");
  for (unsigned i = 0; i < total; ++i) {
    ASSERT_EQ(out[i * 2], i);
    const unsigned b = i / 24, t = i % 24;
    const unsigned expect =
        ((t / 12) << 24) | (((t / 4) % 3) << 16) | ((b / 6) << 8) | ((b / 3) % 2);
    ASSERT_EQ(out[i * 2 + 1], expect) << i;
  }
}

template <class T, int kScale>
__global__ void scale_kernel(const T* in, T* out, int n) {
  const int i = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  if (i < n) out[i] = in[i] * static_cast<T>(kScale);
}

TEST(EmuLaunch, TemplateKernelWithCommasAndStream) {
  const int n = 1000;
  std::vector<double> in(n), out(n);
  std::iota(in.begin(), in.end(), 0.0);
  wren::Stream s = wren::emu::stream_create();
  WREN_LAUNCH((n + 127) / 128, 128, 0, s, scale_kernel<double, 3>)(in.data(), out.data(), n);
  EXPECT_EQ(wren::emu::stream_synchronize(s), "");
  wren::emu::stream_destroy(s);
  for (int i = 0; i < n; ++i) ASSERT_EQ(out[i], 3.0 * i);
}

// A template kernel with aligned static shared memory: a block-local transpose of 4x4 tiles
// read back as float4 (16-byte aligned shared memory).
template <class T, int kTile>
__global__ void transpose_kernel(const T* in, T* out) {
  __shared__ __align__(16) T tile[kTile][kTile];
  const unsigned r = threadIdx.y, c = threadIdx.x;
  tile[r][c] = in[r * kTile + c];
  __syncthreads();
  out[r * kTile + c] = tile[c][r];
  if (r == 0 && c == 0) {
    const float4 v = *reinterpret_cast<const float4*>(&tile[1][0]);
    out[kTile * kTile] = v.x + v.y + v.z + v.w;
  }
}

TEST(EmuLaunch, TemplateKernelWithAlignedSharedMemory) {
  std::vector<float> in(16), out(17);
  std::iota(in.begin(), in.end(), 0.0f);
  WREN_LAUNCH(1, dim3(4, 4), 0, nullptr, transpose_kernel<float, 4>)(in.data(), out.data());
  ASSERT_EQ(wren::emu::take_error(), "");
  for (int r = 0; r < 4; ++r) {
    for (int c = 0; c < 4; ++c) EXPECT_EQ(out[r * 4 + c], in[c * 4 + r]);
  }
  EXPECT_EQ(out[16], 4.0f + 5.0f + 6.0f + 7.0f);
}

TEST(EmuLaunch, InvalidConfigurationIsAnError) {
  std::vector<double> in(4), out(4);
  WREN_LAUNCH(1, 2048, 0, nullptr, scale_kernel<double, 3>)(in.data(), out.data(), 4);
  const std::string e = wren::emu::take_error();
  EXPECT_NE(e.find("scale_kernel<double, 3>"), std::string::npos) << e;
  EXPECT_NE(e.find("2048"), std::string::npos) << e;
}

// Block-wide tree reduction in static shared memory: needs every barrier.
__global__ void reduce_kernel(const float* in, float* out) {
  __shared__ float buf[256];
  const unsigned t = threadIdx.x;
  buf[t] = in[blockIdx.x * 256 + t];
  __syncthreads();
  for (unsigned s = 128; s > 0; s >>= 1) {
    if (t < s) buf[t] += buf[t + s];
    __syncthreads();
  }
  if (t == 0) out[blockIdx.x] = buf[0];
}

TEST(EmuBarrier, TreeReductionUnderEverySchedule) {
  const int blocks = 16;
  std::vector<float> in(blocks * 256), out(blocks);
  for (size_t i = 0; i < in.size(); ++i) in[i] = static_cast<float>(i % 97);
  for (auto s : {Schedule::kForward, Schedule::kReverse, Schedule::kRandom}) {
    wren::emu::set_schedule(s, 42);
    WREN_LAUNCH(blocks, 256, 0, nullptr, reduce_kernel)(in.data(), out.data());
    ASSERT_EQ(wren::emu::take_error(), "");
    for (int b = 0; b < blocks; ++b) {
      float expect = 0;
      for (int t = 0; t < 256; ++t) expect += in[b * 256 + t];
      ASSERT_EQ(out[b], expect) << "block " << b;
    }
  }
  wren::emu::set_schedule(Schedule::kForward);
}

TEST(EmuBarrier, SameResultsWithOneOrManyWorkers) {
  const int blocks = 32;
  std::vector<float> in(blocks * 256), one(blocks), many(blocks);
  for (size_t i = 0; i < in.size(); ++i) in[i] = static_cast<float>(i % 13);
  wren::emu::set_workers(1);
  WREN_LAUNCH(blocks, 256, 0, nullptr, reduce_kernel)(in.data(), one.data());
  wren::emu::set_workers(4);
  WREN_LAUNCH(blocks, 256, 0, nullptr, reduce_kernel)(in.data(), many.data());
  wren::emu::set_workers(static_cast<int>(std::thread::hardware_concurrency()));
  ASSERT_EQ(wren::emu::take_error(), "");
  EXPECT_EQ(one, many);
}

__global__ void sync_variants_kernel(const int* pred, int* out) {
  const unsigned t = threadIdx.x;
  out[t * 3] = __syncthreads_count(pred[t]);
  out[t * 3 + 1] = __syncthreads_and(pred[t]);
  out[t * 3 + 2] = __syncthreads_or(pred[t]);
}

TEST(EmuBarrier, ReducingVariants) {
  const int n = 100;
  std::vector<int> pred(n, 0), out(n * 3);
  for (int t = 0; t < n; t += 7) pred[t] = 5;
  WREN_LAUNCH(1, n, 0, nullptr, sync_variants_kernel)(pred.data(), out.data());
  ASSERT_EQ(wren::emu::take_error(), "");
  for (int t = 0; t < n; ++t) {
    EXPECT_EQ(out[t * 3], 15) << t;
    EXPECT_EQ(out[t * 3 + 1], 0) << t;
    EXPECT_EQ(out[t * 3 + 2], 1) << t;
  }
}

// Dynamic shared memory: reverse within the block through smem of n floats + n ints.
__global__ void dyn_smem_kernel(const float* in, float* out, int* seen) {
  const unsigned n = blockDim.x, t = threadIdx.x;
  float* f = wren::dynamic_smem<float>();
  int* tag = reinterpret_cast<int*>(f + n);
  seen[blockIdx.x * n + t] = tag[t];  // the fill pattern, before anyone writes
  __syncthreads();
  f[t] = in[blockIdx.x * n + t];
  tag[t] = static_cast<int>(t);
  __syncthreads();
  out[blockIdx.x * n + t] = f[n - 1 - t] + static_cast<float>(tag[n - 1 - t]);
}

TEST(EmuSharedMemory, DynamicIsAlignedPerBlockAndGarbageFilled) {
  const int blocks = 8, n = 64;
  std::vector<float> in(blocks * n), out(blocks * n);
  std::vector<int> seen(blocks * n);
  for (size_t i = 0; i < in.size(); ++i) in[i] = static_cast<float>(i);
  WREN_LAUNCH(blocks, n, n * (sizeof(float) + sizeof(int)), nullptr, dyn_smem_kernel)
  (in.data(), out.data(), seen.data());
  ASSERT_EQ(wren::emu::take_error(), "");
  for (int b = 0; b < blocks; ++b) {
    for (int t = 0; t < n; ++t) {
      EXPECT_EQ(out[b * n + t], in[b * n + n - 1 - t] + static_cast<float>(n - 1 - t));
      EXPECT_EQ(seen[b * n + t], -1) << "block " << b << " thread " << t;  // 0xffffffff fill
    }
  }
}

__global__ void atomics_kernel(int* counter, float* fsum, unsigned long long* usum, int* mx,
                               int* mn, unsigned* cas_winner) {
  const int id = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  atomicAdd(counter, 1);
  atomicAdd(fsum, 0.5f);
  atomicAdd(usum, static_cast<unsigned long long>(id));
  atomicMax(mx, id);
  atomicMin(mn, -id);
  atomicCAS(cas_winner, 0xffffffffu, static_cast<unsigned>(id));
}

TEST(EmuAtomics, ContentionAcrossWorkersAndFibers) {
  const int blocks = 64, n = 256, total = blocks * n;
  int counter = 0, mx = -1, mn = 1;
  float fsum = 0;
  unsigned long long usum = 0;
  unsigned winner = 0xffffffffu;
  WREN_LAUNCH(blocks, n, 0, nullptr, atomics_kernel)(&counter, &fsum, &usum, &mx, &mn, &winner);
  ASSERT_EQ(wren::emu::take_error(), "");
  EXPECT_EQ(counter, total);
  EXPECT_EQ(fsum, 0.5f * total);
  EXPECT_EQ(usum, static_cast<unsigned long long>(total) * (total - 1) / 2);
  EXPECT_EQ(mx, total - 1);
  EXPECT_EQ(mn, -(total - 1));
  EXPECT_LT(winner, static_cast<unsigned>(total));
}

__global__ void math_kernel(const float* x, float* out) {
  const unsigned t = threadIdx.x;
  const float v = x[t];
  out[t * 8 + 0] = __expf(v) - expf(v);
  out[t * 8 + 1] = rsqrtf(v + 4.0f) * sqrtf(v + 4.0f);
  out[t * 8 + 2] = fmaf(v, 2.0f, 1.0f) - (2.0f * v + 1.0f);
  out[t * 8 + 3] = __fdividef(v, 2.0f) - v / 2.0f;
  out[t * 8 + 4] = static_cast<float>(__float2int_rn(v));
  out[t * 8 + 5] = static_cast<float>(min(static_cast<int>(t), 3) + max(2u, t));
  out[t * 8 + 6] = fminf(v, 0.0f) + fmaxf(v, 0.0f) - v;
  out[t * 8 + 7] = __logf(v + 4.0f) - logf(v + 4.0f);
}

TEST(EmuBuiltins, Math) {
  std::vector<float> x = {-2.5f, -1.5f, -0.5f, 0.5f, 1.5f, 2.5f, 0.25f, 3.0f};
  std::vector<float> out(x.size() * 8);
  WREN_LAUNCH(1, static_cast<unsigned>(x.size()), 0, nullptr, math_kernel)(x.data(), out.data());
  ASSERT_EQ(wren::emu::take_error(), "");
  for (unsigned t = 0; t < x.size(); ++t) {
    EXPECT_EQ(out[t * 8 + 0], 0.0f);
    EXPECT_NEAR(out[t * 8 + 1], 1.0f, 1e-6f);
    EXPECT_NEAR(out[t * 8 + 2], 0.0f, 1e-6f);
    EXPECT_EQ(out[t * 8 + 3], 0.0f);
    EXPECT_EQ(out[t * 8 + 4], std::nearbyint(x[t]));  // round half to even
    EXPECT_EQ(out[t * 8 + 5], static_cast<float>(std::min<int>(t, 3) + std::max(2u, t)));
    EXPECT_EQ(out[t * 8 + 6], 0.0f);
    EXPECT_EQ(out[t * 8 + 7], 0.0f);
  }
  EXPECT_EQ(min(2.0f, 3.0), 2.0);       // float/double → double, as in CUDA
  EXPECT_EQ(max(-1, 1u), 0xffffffffu);  // int/unsigned → unsigned, as in CUDA
}

TEST(EmuMemory, MallocCopySetEvents) {
  const size_t n = 1000;
  auto* d = static_cast<float*>(wren::emu::malloc(n * sizeof(float)));
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(d) % 256, 0u);
  wren::Stream s = wren::emu::stream_create();
  wren::emu::Event a = wren::emu::event_create(), b = wren::emu::event_create();
  wren::emu::event_record(a, s);
  wren::emu::memset_async(d, 0, n * sizeof(float), s);
  std::vector<float> h(n, 1.0f), back(n, 7.0f);
  wren::emu::memcpy_async(d, h.data(), 10 * sizeof(float), s);
  wren::emu::memcpy(back.data(), d, n * sizeof(float));
  wren::emu::event_record(b, s);
  wren::emu::event_synchronize(b);
  EXPECT_GE(wren::emu::event_elapsed_ms(a, b), 0.0f);
  for (size_t i = 0; i < n; ++i) ASSERT_EQ(back[i], i < 10 ? 1.0f : 0.0f);
  wren::emu::event_destroy(a);
  wren::emu::event_destroy(b);
  wren::emu::stream_destroy(s);
  wren::emu::free(d);
  EXPECT_EQ(wren::emu::synchronize(), "");
}

// Each thread reads its left neighbour's shared slot without a barrier: correct only when
// threads happen to run in increasing order.
__global__ void missing_barrier_kernel(const int* in, int* out) {
  __shared__ int s[128];
  const unsigned t = threadIdx.x;
  s[t] = in[t];
  // BUG (planted): __syncthreads() missing here.
  out[t] = t == 0 ? 0 : s[t - 1];
}

TEST(EmuSchedule, MissingBarrierShowsUnderReverseAndRandom) {
  std::vector<int> in(128), out(128);
  int base = 10;
  auto wrong = [&] {
    std::iota(in.begin(), in.end(), base += 1000);  // stale smem from a previous run is wrong
    WREN_LAUNCH(1, 128, 0, nullptr, missing_barrier_kernel)(in.data(), out.data());
    EXPECT_EQ(wren::emu::take_error(), "");
    int bad = 0;
    for (int t = 1; t < 128; ++t) bad += out[t] != in[t - 1];
    return bad;
  };
  wren::emu::set_schedule(Schedule::kForward);
  EXPECT_EQ(wrong(), 0);  // the order that hides the bug
  wren::emu::set_schedule(Schedule::kReverse);
  EXPECT_GT(wrong(), 100);
  wren::emu::set_schedule(Schedule::kRandom, 1);
  EXPECT_GT(wrong(), 10);
  wren::emu::set_schedule(Schedule::kForward);
}

}  // namespace
