// kernels/elementwise.cu against the CPU reference (host/ops/elementwise.cpp), bit for bit: on
// the emulator under every fiber schedule, and on a GPU when one is present. Sizes cover the
// empty case, a scalar tail shorter than a float4, and a grid-stride loop over many blocks;
// offsets of one float exercise the scalar (unaligned) path. Inputs include ±0, ±Inf and NaN.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "elementwise.h"
#include "emu/emu.h"
#include "wren/ops/elementwise.h"

#if defined(WREN_HAVE_CUDA)
#include <cuda_runtime.h>

#include "kernels_runtime.h"
#endif

namespace {

std::vector<float> test_values(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  std::vector<float> v(n);
  for (float& x : v) x = normal(rng);
  const float specials[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 1e-40f, -1e-40f};
  for (size_t i = 0; i < n && i < 7; ++i) v[i * 7 % n] = specials[i];
  return v;
}

void expect_bits_equal(const std::vector<float>& actual, const std::vector<float>& ref,
                       const std::string& what) {
  ASSERT_EQ(actual.size(), ref.size());
  size_t bad = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    if (std::bit_cast<uint32_t>(actual[i]) != std::bit_cast<uint32_t>(ref[i]) && ++bad <= 5) {
      ADD_FAILURE() << what << "[" << i << "]: " << actual[i] << " vs " << ref[i];
    }
  }
  EXPECT_EQ(bad, 0u) << what;
}

// Runs each kernel with `run` (which maps host arrays to the device and back) and the CPU
// reference on the same inputs; `offset` shifts every array by that many floats.
struct Case {
  int64_t count;
  int64_t offset;
};
const Case kCases[] = {{0, 0}, {1, 0}, {3, 1}, {4, 0}, {1023, 1}, {1 << 20, 0}, {(1 << 20) + 3, 1}};

// A device: how to run a launcher on host vectors (copying where the device needs it).
using Launch = std::function<void(const std::vector<const std::vector<float>*>& inputs,
                                  std::vector<float>& output,
                                  const std::function<void(std::vector<const float*>, float*)>&)>;

template <class Kernels>
void check_all(const Launch& launch, const std::string& device) {
  for (const Case& c : kCases) {
    const size_t n = static_cast<size_t>(c.count + c.offset);
    const std::vector<float> x = test_values(n, 1), dy = test_values(n, 2);
    const int64_t k = c.count;
    const size_t o = static_cast<size_t>(c.offset);
    const std::string where = device + " count " + std::to_string(k);
    std::vector<float> out(n, 7.0f), ref(n, 7.0f);

    launch({&x}, out, [&](std::vector<const float*> in, float* y) {
      Kernels::relu_forward(k, in[0] + o, y + o);
    });
    wren::cpu::relu_forward<float>(k, x.data() + o, ref.data() + o);
    expect_bits_equal(out, ref, "relu_forward " + where);

    launch({&x, &dy}, out, [&](std::vector<const float*> in, float* y) {
      Kernels::relu_backward(k, in[0] + o, in[1] + o, y + o);
    });
    wren::cpu::relu_backward<float>(k, x.data() + o, dy.data() + o, ref.data() + o);
    expect_bits_equal(out, ref, "relu_backward " + where);

    launch({&x}, out, [&](std::vector<const float*> in, float* y) {
      Kernels::leaky_relu_forward(k, 0.01f, in[0] + o, y + o);
    });
    wren::cpu::leaky_relu_forward<float>(k, 0.01f, x.data() + o, ref.data() + o);
    expect_bits_equal(out, ref, "leaky_relu_forward " + where);

    launch({&x, &dy}, out, [&](std::vector<const float*> in, float* y) {
      Kernels::leaky_relu_backward(k, 0.2f, in[0] + o, in[1] + o, y + o);
    });
    wren::cpu::leaky_relu_backward<float>(k, 0.2f, x.data() + o, dy.data() + o, ref.data() + o);
    expect_bits_equal(out, ref, "leaky_relu_backward " + where);

    launch({&x, &dy}, out, [&](std::vector<const float*> in, float* y) {
      Kernels::add_forward(k, in[0] + o, in[1] + o, y + o);
    });
    wren::cpu::add_forward<float>(k, x.data() + o, dy.data() + o, ref.data() + o);
    expect_bits_equal(out, ref, "add_forward " + where);

    // accumulate: the output starts as dy (acc += x).
    out = dy;
    ref = dy;
    launch({&x}, out, [&](std::vector<const float*> in, float* y) {
      Kernels::accumulate(k, in[0] + o, y + o);
    });
    wren::cpu::accumulate<float>(k, x.data() + o, ref.data() + o);
    expect_bits_equal(out, ref, "accumulate " + where);
  }
}

struct EmuKernels {
  static void relu_forward(int64_t n, const float* x, float* y) {
    wren::emu_kernels::relu_forward(n, x, y, nullptr);
  }
  static void relu_backward(int64_t n, const float* x, const float* dy, float* dx) {
    wren::emu_kernels::relu_backward(n, x, dy, dx, nullptr);
  }
  static void leaky_relu_forward(int64_t n, float s, const float* x, float* y) {
    wren::emu_kernels::leaky_relu_forward(n, s, x, y, nullptr);
  }
  static void leaky_relu_backward(int64_t n, float s, const float* x, const float* dy,
                                  float* dx) {
    wren::emu_kernels::leaky_relu_backward(n, s, x, dy, dx, nullptr);
  }
  static void add_forward(int64_t n, const float* a, const float* b, float* y) {
    wren::emu_kernels::add_forward(n, a, b, y, nullptr);
  }
  static void accumulate(int64_t n, const float* x, float* acc) {
    wren::emu_kernels::accumulate(n, x, acc, nullptr);
  }
};

// Emulator memory is host memory: kernels read and write the vectors directly.
void emu_launch(const std::vector<const std::vector<float>*>& inputs, std::vector<float>& output,
                const std::function<void(std::vector<const float*>, float*)>& body) {
  std::vector<const float*> in;
  for (const auto* v : inputs) in.push_back(v->data());
  body(in, output.data());
  const std::string error = wren::emu::take_error();
  ASSERT_EQ(error, "");
}

TEST(ElementwiseKernels, EmuMatchesCpuBitForBit) {
  for (auto schedule : {wren::emu::Schedule::kForward, wren::emu::Schedule::kReverse,
                        wren::emu::Schedule::kRandom}) {
    wren::emu::set_schedule(schedule, 11);
    check_all<EmuKernels>(emu_launch, "emu");
  }
  wren::emu::set_schedule(wren::emu::Schedule::kForward);
}

#if defined(WREN_HAVE_CUDA)
struct CudaKernels {
  static void relu_forward(int64_t n, const float* x, float* y) {
    wren::cuda_kernels::relu_forward(n, x, y, nullptr);
  }
  static void relu_backward(int64_t n, const float* x, const float* dy, float* dx) {
    wren::cuda_kernels::relu_backward(n, x, dy, dx, nullptr);
  }
  static void leaky_relu_forward(int64_t n, float s, const float* x, float* y) {
    wren::cuda_kernels::leaky_relu_forward(n, s, x, y, nullptr);
  }
  static void leaky_relu_backward(int64_t n, float s, const float* x, const float* dy,
                                  float* dx) {
    wren::cuda_kernels::leaky_relu_backward(n, s, x, dy, dx, nullptr);
  }
  static void add_forward(int64_t n, const float* a, const float* b, float* y) {
    wren::cuda_kernels::add_forward(n, a, b, y, nullptr);
  }
  static void accumulate(int64_t n, const float* x, float* acc) {
    wren::cuda_kernels::accumulate(n, x, acc, nullptr);
  }
};

// Copies the inputs and the output to the GPU, runs, copies the output back.
void cuda_launch(const std::vector<const std::vector<float>*>& inputs, std::vector<float>& output,
                 const std::function<void(std::vector<const float*>, float*)>& body) {
  std::vector<float*> buffers;
  auto upload = [&](const std::vector<float>& v) {
    float* d = nullptr;
    ASSERT_EQ(cudaMalloc(&d, std::max<size_t>(v.size(), 1) * sizeof(float)), cudaSuccess);
    ASSERT_EQ(cudaMemcpy(d, v.data(), v.size() * sizeof(float), cudaMemcpyHostToDevice),
              cudaSuccess);
    buffers.push_back(d);
  };
  for (const auto* v : inputs) upload(*v);
  upload(output);
  std::vector<const float*> in(buffers.begin(), buffers.end() - 1);
  body(in, buffers.back());
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(output.data(), buffers.back(), output.size() * sizeof(float),
                       cudaMemcpyDeviceToHost),
            cudaSuccess);
  for (float* d : buffers) cudaFree(d);
}
#endif

TEST(ElementwiseKernels, CudaMatchesCpuBitForBit) {
#if defined(WREN_HAVE_CUDA)
  if (wren::kernels::device_count() == 0) GTEST_SKIP() << "no CUDA device on this machine";
  check_all<CudaKernels>(cuda_launch, "cuda");
#else
  GTEST_SKIP() << "built without the CUDA backend (WREN_HAVE_CUDA off)";
#endif
}

}  // namespace
