// kernels/pool/pool.cu against the CPU reference (kernels/pool/reference.cpp), bit for bit, argmax included:
// on the emulator under the forward, reverse and random fiber schedules, and on a GPU when one
// is present. Geometries are tests/ops/test_pool.cpp's random_geometries (non-overlapping,
// overlapping with padding, rectangular kernels with unequal strides, stride > kernel, 7×5
// planes) with and without count_include_pad, the reference CNN's N=4, C=32, 28×28 k2 s2, a
// window entirely in the padding, and a kernel larger than the image. Inputs are fresh random
// values from std::mt19937 (never zero), values with many ties (floor of random values), and
// values with NaNs and −∞; gradients include −0.
//
// NaN outputs: the emulator runs on the reference's CPU and must match its NaN bits exactly;
// a GPU produces its canonical NaN from arithmetic on NaNs, so there a NaN matches any NaN.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "emu/emu.h"
#include "pool/pool.h"
#include "pool/pool.h"

#if defined(WREN_HAVE_CUDA)
#include <cuda_runtime.h>

#include "common/runtime.h"
#endif

namespace {

using wren::Pool2dDims;

Pool2dDims dims(int n, int c, int h, int w, int kh, int kw, int sh, int sw, int ph, int pw,
                bool include_pad = true) {
  Pool2dDims d;
  d.n = n;
  d.c = c;
  d.h = h;
  d.w = w;
  d.kernel_h = kh;
  d.kernel_w = kw;
  d.stride_h = sh;
  d.stride_w = sw;
  d.pad_h = ph;
  d.pad_w = pw;
  d.count_include_pad = include_pad;
  return d;
}

size_t in_size(const Pool2dDims& d) {
  return static_cast<size_t>(d.n) * d.c * d.h * d.w;
}
size_t out_size(const Pool2dDims& d) {
  return static_cast<size_t>(d.n) * d.c * std::max(d.p(), 0) * std::max(d.q(), 0);
}

std::string name(const Pool2dDims& d) {
  return "x[" + std::to_string(d.n) + "," + std::to_string(d.c) + "," + std::to_string(d.h) + "," +
         std::to_string(d.w) + "] k" + std::to_string(d.kernel_h) + "x" +
         std::to_string(d.kernel_w) + " s" + std::to_string(d.stride_h) + "," +
         std::to_string(d.stride_w) + " p" + std::to_string(d.pad_h) + "," +
         std::to_string(d.pad_w) + (d.count_include_pad ? " incl" : " excl");
}

std::vector<Pool2dDims> geometries() {
  std::vector<Pool2dDims> out;
  for (bool include_pad : {true, false}) {
    // tests/ops/test_pool.cpp's random_geometries.
    out.push_back(dims(2, 3, 7, 5, 2, 2, 2, 2, 0, 0, include_pad));
    out.push_back(dims(2, 3, 7, 5, 3, 3, 2, 2, 1, 1, include_pad));
    out.push_back(dims(2, 2, 6, 7, 3, 3, 1, 1, 1, 1, include_pad));
    out.push_back(dims(1, 3, 7, 9, 2, 3, 1, 2, 1, 0, include_pad));
    out.push_back(dims(2, 2, 7, 8, 2, 2, 3, 3, 0, 1, include_pad));
    // Padding ≥ kernel: the first row and column of windows lie entirely in the padding
    // (max: −∞ and argmax −1; average without count_include_pad: 0).
    out.push_back(dims(1, 2, 5, 6, 2, 2, 2, 2, 2, 2, include_pad));
    // Kernel larger than the image: P = Q = 1, the window clipped.
    out.push_back(dims(2, 2, 3, 3, 4, 4, 2, 2, 0, 0, include_pad));
  }
  out.push_back(dims(4, 32, 28, 28, 2, 2, 2, 2, 0, 0));  // the reference CNN's max-pool
  return out;
}

// Input kinds: continuous values; ties (floor of random values, + 0.5 so never zero); NaNs
// (and −∞) sprinkled over continuous values; for global pooling also kCancel (below).
enum class Kind { kRandom, kTies, kNan, kCancel };
const Kind kKinds[] = {Kind::kRandom, Kind::kTies, Kind::kNan};
const char* kind_name(Kind k) {
  switch (k) {
    case Kind::kRandom:
      return "random";
    case Kind::kTies:
      return "ties";
    case Kind::kNan:
      return "nan";
    case Kind::kCancel:
      return "cancel";
  }
  return "?";
}

float nonzero_normal(std::mt19937& rng, float scale) {
  std::normal_distribution<float> normal(0.0f, scale);
  float v = 0.0f;
  while (v == 0.0f) v = normal(rng);
  return v;
}

std::vector<float> make_input(size_t n, Kind kind, std::mt19937& rng) {
  std::vector<float> v(n);
  std::uniform_real_distribution<float> uniform(-3.0f, 3.0f);
  std::uniform_int_distribution<int> percent(0, 99);
  for (float& x : v) {
    switch (kind) {
      case Kind::kRandom:
      case Kind::kCancel:
        x = nonzero_normal(rng, 2.0f);
        break;
      case Kind::kTies:
        x = std::floor(uniform(rng)) + 0.5f;
        break;
      case Kind::kNan: {
        const int r = percent(rng);
        x = r < 8 ? NAN : (r < 12 ? -INFINITY : nonzero_normal(rng, 2.0f));
        break;
      }
    }
  }
  return v;
}

// Gradients: random, with some −0 (the double sum turns −0 into +0; the kernels must too).
std::vector<float> make_grad(size_t n, std::mt19937& rng) {
  std::vector<float> v(n);
  std::uniform_int_distribution<int> percent(0, 99);
  for (float& x : v) x = percent(rng) < 10 ? -0.0f : nonzero_normal(rng, 1.0f);
  return v;
}

bool same(float a, float b, bool exact_nan) {
  if (!exact_nan && std::isnan(a) && std::isnan(b)) return true;
  return std::bit_cast<uint32_t>(a) == std::bit_cast<uint32_t>(b);
}
bool same(int32_t a, int32_t b, bool) {
  return a == b;
}

template <class T>
void expect_same(const std::vector<T>& actual, const std::vector<T>& ref, bool exact_nan,
                 const std::string& what) {
  ASSERT_EQ(actual.size(), ref.size()) << what;
  size_t bad = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    if (!same(actual[i], ref[i], exact_nan) && ++bad <= 5) {
      ADD_FAILURE() << what << " [" << i << "]: " << actual[i] << " vs reference " << ref[i];
    }
  }
  EXPECT_EQ(bad, 0u) << what;
}

// --- Backends: the emulator (device memory is host memory) and CUDA --------------------------

// A device array initialised from a host vector (a sentinel fill for outputs).
template <class T>
class Buffer {
 public:
  Buffer(bool gpu, const std::vector<T>& host) : gpu_(gpu), host_(host) {
#if defined(WREN_HAVE_CUDA)
    if (gpu_) {
      const size_t bytes = std::max<size_t>(host.size(), 1) * sizeof(T);
      EXPECT_EQ(cudaMalloc(&device_, bytes), cudaSuccess);
      EXPECT_EQ(cudaMemcpy(device_, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice),
                cudaSuccess);
    }
#endif
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer() {
#if defined(WREN_HAVE_CUDA)
    if (device_ != nullptr) cudaFree(device_);
#endif
  }
  T* get() {
    return gpu_ ? device_ : host_.data();
  }
  std::vector<T> read() {
#if defined(WREN_HAVE_CUDA)
    if (gpu_) {
      EXPECT_EQ(cudaMemcpy(host_.data(), device_, host_.size() * sizeof(T), cudaMemcpyDeviceToHost),
                cudaSuccess);
    }
#endif
    return host_;
  }

 private:
  bool gpu_;
  std::vector<T> host_;
  T* device_ = nullptr;
};

struct EmuKernels {
  static constexpr bool kGpu = false;
  static constexpr bool kExactNan = true;
  static constexpr const char* kName = "emu";
  static void max_forward(Pool2dDims d, const float* x, float* y, int32_t* a) {
    wren::emu_kernels::max_pool2d_forward(d, x, y, a, nullptr);
  }
  static void max_backward(Pool2dDims d, const int32_t* a, const float* dy, float* dx) {
    wren::emu_kernels::max_pool2d_backward(d, a, dy, dx, nullptr);
  }
  static void avg_forward(Pool2dDims d, const float* x, float* y) {
    wren::emu_kernels::avg_pool2d_forward(d, x, y, nullptr);
  }
  static void avg_backward(Pool2dDims d, const float* dy, float* dx) {
    wren::emu_kernels::avg_pool2d_backward(d, dy, dx, nullptr);
  }
  static void gap_forward(int n, int c, int hw, const float* x, float* y) {
    wren::emu_kernels::global_avg_pool_forward(n, c, hw, x, y, nullptr);
  }
  static void gap_backward(int n, int c, int hw, const float* dy, float* dx) {
    wren::emu_kernels::global_avg_pool_backward(n, c, hw, dy, dx, nullptr);
  }
  static std::string finish() { return wren::emu::take_error(); }
};

#if defined(WREN_HAVE_CUDA)
struct CudaKernels {
  static constexpr bool kGpu = true;
  static constexpr bool kExactNan = false;
  static constexpr const char* kName = "cuda";
  static void max_forward(Pool2dDims d, const float* x, float* y, int32_t* a) {
    wren::cuda_kernels::max_pool2d_forward(d, x, y, a, nullptr);
  }
  static void max_backward(Pool2dDims d, const int32_t* a, const float* dy, float* dx) {
    wren::cuda_kernels::max_pool2d_backward(d, a, dy, dx, nullptr);
  }
  static void avg_forward(Pool2dDims d, const float* x, float* y) {
    wren::cuda_kernels::avg_pool2d_forward(d, x, y, nullptr);
  }
  static void avg_backward(Pool2dDims d, const float* dy, float* dx) {
    wren::cuda_kernels::avg_pool2d_backward(d, dy, dx, nullptr);
  }
  static void gap_forward(int n, int c, int hw, const float* x, float* y) {
    wren::cuda_kernels::global_avg_pool_forward(n, c, hw, x, y, nullptr);
  }
  static void gap_backward(int n, int c, int hw, const float* dy, float* dx) {
    wren::cuda_kernels::global_avg_pool_backward(n, c, hw, dy, dx, nullptr);
  }
  static std::string finish() {
    const cudaError_t e = cudaDeviceSynchronize();
    return e == cudaSuccess ? "" : cudaGetErrorString(e);
  }
};
#endif

// --- Checks, one per kernel, over every geometry and input kind ------------------------------

constexpr float kFill = 7.25f;          // outputs start as this, never a correct result
constexpr int32_t kIndexFill = -12345;  // argmax likewise

template <class K>
void check_max_forward(uint32_t seed) {
  std::mt19937 rng(seed);
  for (const Pool2dDims& d : geometries()) {
    for (Kind kind : kKinds) {
      const std::string what =
          std::string(K::kName) + " max_pool2d_forward " + name(d) + " " + kind_name(kind);
      const std::vector<float> x = make_input(in_size(d), kind, rng);
      std::vector<float> y_ref(out_size(d), kFill);
      std::vector<int32_t> a_ref(out_size(d), kIndexFill);
      wren::cpu::max_pool2d_forward<float>(d, x.data(), y_ref.data(), a_ref.data());

      Buffer<float> xb(K::kGpu, x), yb(K::kGpu, std::vector<float>(out_size(d), kFill));
      Buffer<int32_t> ab(K::kGpu, std::vector<int32_t>(out_size(d), kIndexFill));
      K::max_forward(d, xb.get(), yb.get(), ab.get());
      ASSERT_EQ(K::finish(), "") << what;
      expect_same(yb.read(), y_ref, K::kExactNan, what + " y");
      expect_same(ab.read(), a_ref, true, what + " argmax");
    }
  }
}

template <class K>
void check_max_backward(uint32_t seed) {
  std::mt19937 rng(seed);
  for (const Pool2dDims& d : geometries()) {
    for (Kind kind : kKinds) {
      const std::string what =
          std::string(K::kName) + " max_pool2d_backward " + name(d) + " " + kind_name(kind);
      // The argmax of a real forward pass (ties and NaNs decide which element wins).
      const std::vector<float> x = make_input(in_size(d), kind, rng);
      std::vector<float> y(out_size(d));
      std::vector<int32_t> argmax(out_size(d));
      wren::cpu::max_pool2d_forward<float>(d, x.data(), y.data(), argmax.data());
      const std::vector<float> dy = make_grad(out_size(d), rng);
      std::vector<float> dx_ref(in_size(d), kFill);
      wren::cpu::max_pool2d_backward<float>(d, argmax.data(), dy.data(), dx_ref.data());

      Buffer<int32_t> ab(K::kGpu, argmax);
      Buffer<float> dyb(K::kGpu, dy), dxb(K::kGpu, std::vector<float>(in_size(d), kFill));
      K::max_backward(d, ab.get(), dyb.get(), dxb.get());
      ASSERT_EQ(K::finish(), "") << what;
      expect_same(dxb.read(), dx_ref, K::kExactNan, what + " dx");
    }
  }
}

template <class K>
void check_avg_forward(uint32_t seed) {
  std::mt19937 rng(seed);
  for (const Pool2dDims& d : geometries()) {
    for (Kind kind : kKinds) {
      const std::string what =
          std::string(K::kName) + " avg_pool2d_forward " + name(d) + " " + kind_name(kind);
      const std::vector<float> x = make_input(in_size(d), kind, rng);
      std::vector<float> y_ref(out_size(d), kFill);
      wren::cpu::avg_pool2d_forward<float>(d, x.data(), y_ref.data());

      Buffer<float> xb(K::kGpu, x), yb(K::kGpu, std::vector<float>(out_size(d), kFill));
      K::avg_forward(d, xb.get(), yb.get());
      ASSERT_EQ(K::finish(), "") << what;
      expect_same(yb.read(), y_ref, K::kExactNan, what + " y");
    }
  }
}

template <class K>
void check_avg_backward(uint32_t seed) {
  std::mt19937 rng(seed);
  for (const Pool2dDims& d : geometries()) {
    for (Kind kind : kKinds) {
      const std::string what =
          std::string(K::kName) + " avg_pool2d_backward " + name(d) + " " + kind_name(kind);
      // dy of each kind (NaNs in dy propagate to every input its window covers).
      std::vector<float> dy = make_input(out_size(d), kind, rng);
      if (kind == Kind::kRandom) dy = make_grad(out_size(d), rng);
      std::vector<float> dx_ref(in_size(d), kFill);
      wren::cpu::avg_pool2d_backward<float>(d, dy.data(), dx_ref.data());

      Buffer<float> dyb(K::kGpu, dy), dxb(K::kGpu, std::vector<float>(in_size(d), kFill));
      K::avg_backward(d, dyb.get(), dxb.get());
      ASSERT_EQ(K::finish(), "") << what;
      expect_same(dxb.read(), dx_ref, K::kExactNan, what + " dx");
    }
  }
}

// Global pooling: plane sizes below, at and across the 32-element chunk of the kernel's warp,
// the reference CNN's 7×7 and a 28×28 plane, and an empty plane.
struct GapShape {
  int n, c, hw;
};
const GapShape kGapShapes[] = {{2, 3, 35}, {4, 32, 49}, {1, 5, 1},   {3, 2, 32},
                               {2, 2, 33}, {1, 3, 97},  {1, 2, 784}, {2, 3, 0}};

const Kind kGapKinds[] = {Kind::kRandom, Kind::kTies, Kind::kNan, Kind::kCancel};

// kRandom: values spread over many binades. kCancel: small values plus, in each plane, +2^50
// and −2^50 at random positions: the small values added between the two lose their low bits
// to the large partial sum, so the float mean depends on the exact summation order (a kernel
// that sums in any order other than the reference's sequential one fails this kind).
std::vector<float> make_gap_input(size_t planes, int hw, Kind kind, std::mt19937& rng) {
  const size_t size = static_cast<size_t>(hw);
  std::vector<float> v = make_input(planes * size, kind, rng);
  if (kind == Kind::kRandom) {
    std::uniform_int_distribution<int> exponent(-24, 24);
    for (float& x : v) x = std::ldexp(x, exponent(rng));
  }
  if (kind == Kind::kCancel && size >= 2) {
    std::uniform_int_distribution<size_t> position(0, size - 1);
    for (size_t plane = 0; plane < planes; ++plane) {
      const size_t a = position(rng);
      size_t b = position(rng);
      while (b == a) b = position(rng);
      v[plane * size + a] = 0x1p50f;
      v[plane * size + b] = -0x1p50f;
    }
  }
  return v;
}

template <class K>
void check_gap_forward(uint32_t seed) {
  std::mt19937 rng(seed);
  for (const GapShape& s : kGapShapes) {
    for (Kind kind : kGapKinds) {
      const std::string what = std::string(K::kName) + " global_avg_pool_forward [" +
                               std::to_string(s.n) + "," + std::to_string(s.c) + "," +
                               std::to_string(s.hw) + "] " + kind_name(kind);
      const size_t planes = static_cast<size_t>(s.n) * s.c;
      const std::vector<float> x = make_gap_input(planes, s.hw, kind, rng);
      std::vector<float> y_ref(planes, kFill);
      wren::cpu::global_avg_pool_forward<float>(s.n, s.c, s.hw, x.data(), y_ref.data());

      Buffer<float> xb(K::kGpu, x), yb(K::kGpu, std::vector<float>(planes, kFill));
      K::gap_forward(s.n, s.c, s.hw, xb.get(), yb.get());
      ASSERT_EQ(K::finish(), "") << what;
      expect_same(yb.read(), y_ref, K::kExactNan, what + " y");
    }
  }
}

template <class K>
void check_gap_backward(uint32_t seed) {
  std::mt19937 rng(seed);
  for (const GapShape& s : kGapShapes) {
    for (Kind kind : kGapKinds) {
      const std::string what = std::string(K::kName) + " global_avg_pool_backward [" +
                               std::to_string(s.n) + "," + std::to_string(s.c) + "," +
                               std::to_string(s.hw) + "] " + kind_name(kind);
      const size_t planes = static_cast<size_t>(s.n) * s.c;
      const std::vector<float> dy = make_gap_input(planes, 1, kind, rng);
      std::vector<float> dx_ref(planes * s.hw, kFill);
      wren::cpu::global_avg_pool_backward<float>(s.n, s.c, s.hw, dy.data(), dx_ref.data());

      Buffer<float> dyb(K::kGpu, dy), dxb(K::kGpu, std::vector<float>(planes * s.hw, kFill));
      K::gap_backward(s.n, s.c, s.hw, dyb.get(), dxb.get());
      ASSERT_EQ(K::finish(), "") << what;
      expect_same(dxb.read(), dx_ref, K::kExactNan, what + " dx");
    }
  }
}

// Runs `check` under the three fiber schedules, then restores the default.
template <class F>
void under_all_schedules(F check) {
  for (auto schedule : {wren::emu::Schedule::kForward, wren::emu::Schedule::kReverse,
                        wren::emu::Schedule::kRandom}) {
    wren::emu::set_schedule(schedule, 29);
    SCOPED_TRACE(
        schedule == wren::emu::Schedule::kForward
            ? "forward schedule"
            : (schedule == wren::emu::Schedule::kReverse ? "reverse schedule" : "random schedule"));
    check();
  }
  wren::emu::set_schedule(wren::emu::Schedule::kForward);
}

TEST(PoolKernels, EmuMaxPoolForward) {
  under_all_schedules([] { check_max_forward<EmuKernels>(101); });
}
TEST(PoolKernels, EmuMaxPoolBackward) {
  under_all_schedules([] { check_max_backward<EmuKernels>(102); });
}
TEST(PoolKernels, EmuAvgPoolForward) {
  under_all_schedules([] { check_avg_forward<EmuKernels>(103); });
}
TEST(PoolKernels, EmuAvgPoolBackward) {
  under_all_schedules([] { check_avg_backward<EmuKernels>(104); });
}
TEST(PoolKernels, EmuGlobalAvgPoolForward) {
  under_all_schedules([] { check_gap_forward<EmuKernels>(105); });
}
TEST(PoolKernels, EmuGlobalAvgPoolBackward) {
  under_all_schedules([] { check_gap_backward<EmuKernels>(106); });
}

// The CUDA cases: skipped without a GPU (or without the CUDA backend).
#if defined(WREN_HAVE_CUDA)
#define WREN_POOL_CUDA_TEST(test, check)                                                      \
  TEST(PoolKernels, test) {                                                                   \
    if (wren::kernels::device_count() == 0) GTEST_SKIP() << "no CUDA device on this machine"; \
    check<CudaKernels>(201);                                                                  \
  }
#else
#define WREN_POOL_CUDA_TEST(test, check)                                   \
  TEST(PoolKernels, test) {                                                \
    GTEST_SKIP() << "built without the CUDA backend (WREN_HAVE_CUDA off)"; \
  }
#endif

WREN_POOL_CUDA_TEST(CudaMaxPoolForward, check_max_forward)
WREN_POOL_CUDA_TEST(CudaMaxPoolBackward, check_max_backward)
WREN_POOL_CUDA_TEST(CudaAvgPoolForward, check_avg_forward)
WREN_POOL_CUDA_TEST(CudaAvgPoolBackward, check_avg_backward)
WREN_POOL_CUDA_TEST(CudaGlobalAvgPoolForward, check_gap_forward)
WREN_POOL_CUDA_TEST(CudaGlobalAvgPoolBackward, check_gap_backward)

#undef WREN_POOL_CUDA_TEST

}  // namespace
