// kernels/elementwise/elementwise.cu against the CPU reference (kernels/elementwise/reference.cpp and
// kernels/dropout/reference.cpp), bit for bit: on the emulator under every fiber schedule, and on a GPU
// when one is present. Sizes cover the empty case, a scalar tail shorter than a float4, and a
// grid-stride loop over many blocks; offsets of one float exercise the scalar (unaligned) path.
// Inputs include ±0, ±Inf, NaN and denormals; GELU also gets values far in the tails (x·Φ(x)
// underflowing through the denormals to 0, and +large).
//
// GELU on a GPU: CUDA's double erfc and exp are not correctly rounded (5 and 1 ulp), so there a
// result may be one fp32 ulp off the reference; the CUDA test allows exactly that. NaN outputs
// on a GPU are its canonical NaN, so there any NaN matches a NaN.
//
// Dropout: the mask bytes and y / dx bit for bit for p = 0 (a copy), 0.1, 0.5 and 0.9, with a
// step above 2^32 (both counter words), every size and offset above (the mask's offset too, so
// its 4-byte path and its byte path both run), in place (y = x) as well.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "elementwise/elementwise.h"
#include "emu/emu.h"
#include "dropout/dropout.h"
#include "elementwise/elementwise.h"
#include "wren/rng.h"

#if defined(WREN_HAVE_CUDA)
#include <cuda_runtime.h>

#include "common/runtime.h"
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

// GELU inputs: test_values plus values in the tails: [−40, 10] and [−16, −10], where x·Φ(x)
// goes through the fp32 denormals to 0.
std::vector<float> gelu_values(size_t n, uint32_t seed) {
  std::vector<float> v = test_values(n, seed);
  std::mt19937 rng(seed + 1000);
  std::uniform_real_distribution<float> wide(-40.0f, 10.0f), tail(-16.0f, -10.0f);
  for (size_t i = 7; i < n; ++i) {
    if (i % 4 == 1) v[i] = wide(rng);
    if (i % 4 == 2) v[i] = tail(rng);
  }
  return v;
}

// Bit for bit, or (GPU GELU) within one fp32 ulp with any NaN matching a NaN.
void expect_within_ulps(const std::vector<float>& actual, const std::vector<float>& ref,
                        int ulps, const std::string& what) {
  ASSERT_EQ(actual.size(), ref.size());
  size_t bad = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const uint32_t a = std::bit_cast<uint32_t>(actual[i]), r = std::bit_cast<uint32_t>(ref[i]);
    bool ok = a == r;
    if (!ok && ulps > 0) {
      if (std::isnan(actual[i]) && std::isnan(ref[i])) {
        ok = true;
      } else if (!std::isnan(actual[i]) && !std::isnan(ref[i])) {
        // Distance in representable floats (sign-magnitude to a monotonic integer line).
        auto line = [](uint32_t b) {
          return (b & 0x80000000u) ? -static_cast<int64_t>(b & 0x7fffffffu)
                                   : static_cast<int64_t>(b);
        };
        ok = std::llabs(line(a) - line(r)) <= ulps;
      }
    }
    if (!ok && ++bad <= 5) {
      ADD_FAILURE() << what << "[" << i << "]: " << actual[i] << " vs " << ref[i];
    }
  }
  EXPECT_EQ(bad, 0u) << what;
}

// Bit for bit, except that a NaN matches any NaN: IEEE 754 leaves the payload of a NaN result
// open, and GPUs return the canonical NaN (0x7fffffff) from arithmetic on a NaN (relu's
// max, leaky relu's slope·v, a + b) where x86 passes the operand's payload through (seen on an
// H200, 2026-11-26). Every non-NaN value, ±0 and ±inf included, must match to the bit.
void expect_bits_equal(const std::vector<float>& actual, const std::vector<float>& ref,
                       const std::string& what) {
  ASSERT_EQ(actual.size(), ref.size());
  size_t bad = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const bool both_nan = std::isnan(actual[i]) && std::isnan(ref[i]);
    if (!both_nan && std::bit_cast<uint32_t>(actual[i]) != std::bit_cast<uint32_t>(ref[i]) &&
        ++bad <= 5) {
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
    const std::vector<float> xg = gelu_values(n, 3);
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

    out.assign(n, 7.0f);
    ref.assign(n, 7.0f);
    launch({&xg}, out, [&](std::vector<const float*> in, float* y) {
      Kernels::gelu_forward(k, in[0] + o, y + o);
    });
    wren::cpu::gelu_forward<float>(k, xg.data() + o, ref.data() + o);
    expect_within_ulps(out, ref, Kernels::kGeluUlps, "gelu_forward " + where);

    launch({&xg, &dy}, out, [&](std::vector<const float*> in, float* y) {
      Kernels::gelu_backward(k, in[0] + o, in[1] + o, y + o);
    });
    wren::cpu::gelu_backward<float>(k, xg.data() + o, dy.data() + o, ref.data() + o);
    expect_within_ulps(out, ref, Kernels::kGeluUlps, "gelu_backward " + where);

    launch({&x}, out, [&](std::vector<const float*> in, float* y) {
      Kernels::copy(k, in[0] + o, y + o);
    });
    wren::cpu::copy<float>(k, x.data() + o, ref.data() + o);
    expect_bits_equal(out, ref, "copy " + where);
  }
}

struct EmuKernels {
  static constexpr int kGeluUlps = 0;  // the reference's libm: bit for bit
  static void gelu_forward(int64_t n, const float* x, float* y) {
    wren::emu_kernels::gelu_forward(n, x, y, nullptr);
  }
  static void gelu_backward(int64_t n, const float* x, const float* dy, float* dx) {
    wren::emu_kernels::gelu_backward(n, x, dy, dx, nullptr);
  }
  static void copy(int64_t n, const float* x, float* y) {
    wren::emu_kernels::copy(n, x, y, nullptr);
  }
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
  static constexpr int kGeluUlps = 1;  // CUDA's double erfc / exp (see the top of the file)
  static void gelu_forward(int64_t n, const float* x, float* y) {
    wren::cuda_kernels::gelu_forward(n, x, y, nullptr);
  }
  static void gelu_backward(int64_t n, const float* x, const float* dy, float* dx) {
    wren::cuda_kernels::gelu_backward(n, x, dy, dx, nullptr);
  }
  static void copy(int64_t n, const float* x, float* y) {
    wren::cuda_kernels::copy(n, x, y, nullptr);
  }
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

// --- Dropout -------------------------------------------------------------------------------------

// Device copies of host arrays for the dropout checks: host memory itself on the emulator,
// cudaMalloc'd memory on a GPU. `offset` elements past a 256-byte boundary.
template <class T>
class Dev {
 public:
  Dev(bool gpu, const std::vector<T>& host, size_t offset) : gpu_(gpu), host_(host), offset_(offset) {
    const size_t bytes = std::max<size_t>((host.size() + offset) * sizeof(T), 16);
#if defined(WREN_HAVE_CUDA)
    if (gpu_) {
      void* p = nullptr;
      EXPECT_EQ(cudaMalloc(&p, bytes), cudaSuccess);
      base_ = p;
      if (!host.empty()) {
        EXPECT_EQ(cudaMemcpy(get(), host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice),
                  cudaSuccess);
      }
      return;
    }
#endif
    base_ = wren::emu::malloc(bytes);
    if (!host.empty()) std::memcpy(get(), host.data(), host.size() * sizeof(T));
  }
  Dev(const Dev&) = delete;
  Dev& operator=(const Dev&) = delete;
  ~Dev() {
#if defined(WREN_HAVE_CUDA)
    if (gpu_) {
      cudaFree(base_);
      return;
    }
#endif
    wren::emu::free(base_);
  }
  T* get() { return static_cast<T*>(base_) + offset_; }
  std::vector<T> read() {
    std::vector<T> out(host_.size());
    if (out.empty()) return out;
#if defined(WREN_HAVE_CUDA)
    if (gpu_) {
      EXPECT_EQ(cudaMemcpy(out.data(), get(), out.size() * sizeof(T), cudaMemcpyDeviceToHost),
                cudaSuccess);
      return out;
    }
#endif
    std::memcpy(out.data(), get(), out.size() * sizeof(T));
    return out;
  }

 private:
  bool gpu_;
  std::vector<T> host_;
  size_t offset_;
  void* base_ = nullptr;
};

struct EmuDropout {
  static constexpr bool kGpu = false;
  static void forward(int64_t n, float p, wren::RngKey key, uint64_t step, const float* x,
                      float* y, uint8_t* mask) {
    wren::emu_kernels::dropout_forward(n, p, key, step, x, y, mask, nullptr);
  }
  static void backward(int64_t n, float p, const uint8_t* mask, const float* dy, float* dx) {
    wren::emu_kernels::dropout_backward(n, p, mask, dy, dx, nullptr);
  }
  static std::string finish() { return wren::emu::take_error(); }
};

#if defined(WREN_HAVE_CUDA)
struct CudaDropout {
  static constexpr bool kGpu = true;
  static void forward(int64_t n, float p, wren::RngKey key, uint64_t step, const float* x,
                      float* y, uint8_t* mask) {
    wren::cuda_kernels::dropout_forward(n, p, key, step, x, y, mask, nullptr);
  }
  static void backward(int64_t n, float p, const uint8_t* mask, const float* dy, float* dx) {
    wren::cuda_kernels::dropout_backward(n, p, mask, dy, dx, nullptr);
  }
  static std::string finish() {
    const cudaError_t e = cudaDeviceSynchronize();
    return e == cudaSuccess ? "" : cudaGetErrorString(e);
  }
};
#endif

void expect_mask_equal(const std::vector<uint8_t>& actual, const std::vector<uint8_t>& ref,
                       const std::string& what) {
  ASSERT_EQ(actual.size(), ref.size());
  size_t bad = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    if (actual[i] != ref[i] && ++bad <= 5) {
      ADD_FAILURE() << what << "[" << i << "]: " << int{actual[i]} << " vs " << int{ref[i]};
    }
  }
  EXPECT_EQ(bad, 0u) << what;
}

// NaNs divided by (1 − p) become the device's NaN; on the emulator the reference's exactly.
template <class K>
void check_dropout(bool exact_nan) {
  const wren::RngKey key = wren::make_rng_key(0x1234567890ull, wren::RngStream::kDropout);
  const uint64_t step = (uint64_t{1} << 33) + 7;
  for (const Case& c : kCases) {
    for (size_t mask_offset : {size_t{0}, static_cast<size_t>(c.offset ? 1 : 3)}) {
      for (float p : {0.0f, 0.1f, 0.5f, 0.9f}) {
        // The large sizes (the grid-stride loop) once, to keep the test fast.
        if (c.count > 4096 && (p != 0.5f || mask_offset != 0)) continue;
        const size_t n = static_cast<size_t>(c.count + c.offset);
        const int64_t k = c.count;
        const size_t o = static_cast<size_t>(c.offset);
        const std::string where = "count " + std::to_string(k) + " offset " + std::to_string(o) +
                                  " mask offset " + std::to_string(mask_offset) + " p " +
                                  std::to_string(p);
        const std::vector<float> x = test_values(n, 5), dy = test_values(n, 6);
        std::vector<float> y_ref(n, 7.0f), dx_ref(n, 7.0f);
        std::vector<uint8_t> mask_ref(static_cast<size_t>(k), 9);
        wren::cpu::dropout_forward<float>(k, p, key, step, x.data() + o, y_ref.data() + o,
                                          mask_ref.data());
        wren::cpu::dropout_backward<float>(k, p, mask_ref.data(), dy.data() + o, dx_ref.data() + o);

        Dev<float> xd(K::kGpu, x, 0), yd(K::kGpu, std::vector<float>(n, 7.0f), 0);
        Dev<uint8_t> md(K::kGpu, std::vector<uint8_t>(static_cast<size_t>(k), 9), mask_offset);
        K::forward(k, p, key, step, xd.get() + o, yd.get() + o, md.get());
        ASSERT_EQ(K::finish(), "") << where;
        expect_mask_equal(md.read(), mask_ref, "dropout mask " + where);
        expect_within_ulps(yd.read(), y_ref, exact_nan ? 0 : 1, "dropout y " + where);

        Dev<float> dyd(K::kGpu, dy, 0), dxd(K::kGpu, std::vector<float>(n, 7.0f), 0);
        K::backward(k, p, md.get(), dyd.get() + o, dxd.get() + o);
        ASSERT_EQ(K::finish(), "") << where;
        expect_within_ulps(dxd.read(), dx_ref, exact_nan ? 0 : 1, "dropout dx " + where);

        // In place: y = x.
        Dev<float> inplace(K::kGpu, x, 0);
        K::forward(k, p, key, step, inplace.get() + o, inplace.get() + o, md.get());
        ASSERT_EQ(K::finish(), "") << where;
        std::vector<float> expect_inplace = y_ref;
        for (size_t i = 0; i < o; ++i) expect_inplace[i] = x[i];
        expect_within_ulps(inplace.read(), expect_inplace, exact_nan ? 0 : 1,
                           "dropout y in place " + where);
      }
    }
  }
}

TEST(ElementwiseKernels, EmuDropoutMatchesCpuBitForBit) {
  for (auto schedule : {wren::emu::Schedule::kForward, wren::emu::Schedule::kReverse,
                        wren::emu::Schedule::kRandom}) {
    wren::emu::set_schedule(schedule, 13);
    check_dropout<EmuDropout>(true);
  }
  wren::emu::set_schedule(wren::emu::Schedule::kForward);
}

TEST(ElementwiseKernels, CudaDropoutMatchesCpuBitForBit) {
#if defined(WREN_HAVE_CUDA)
  if (wren::kernels::device_count() == 0) GTEST_SKIP() << "no CUDA device on this machine";
  check_dropout<CudaDropout>(false);
#else
  GTEST_SKIP() << "built without the CUDA backend (WREN_HAVE_CUDA off)";
#endif
}

// --- Host-side argument checks (made before any launch, so also without a GPU) ------------------

template <class Fn>
void expect_invalid(Fn fn, const std::string& needle) {
  try {
    fn();
    ADD_FAILURE() << "no exception; expected one mentioning '" << needle << "'";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

template <class D, class E>
void check_rejects() {
  std::vector<float> v(8, 1.0f);
  std::vector<uint8_t> m(8, 1);
  const wren::RngKey key{};
  expect_invalid([&] { D::forward(8, 1.0f, key, 0, v.data(), v.data(), m.data()); }, "p must be");
  expect_invalid([&] { D::forward(8, -0.5f, key, 0, v.data(), v.data(), m.data()); }, "p must be");
  expect_invalid([&] { D::forward(8, NAN, key, 0, v.data(), v.data(), m.data()); }, "p must be");
  expect_invalid([&] { D::backward(8, 1.5f, m.data(), v.data(), v.data()); }, "p must be");
  expect_invalid([&] { D::forward(8, 0.5f, key, 0, v.data(), v.data(), nullptr); }, "null");
  expect_invalid([&] { D::backward(-1, 0.5f, m.data(), v.data(), v.data()); }, "count < 0");
  expect_invalid([&] { E::gelu_forward(8, nullptr, v.data()); }, "gelu_forward: null");
  expect_invalid([&] { E::gelu_backward(8, v.data(), nullptr, v.data()); }, "null");
  expect_invalid([&] { E::copy(-2, v.data(), v.data()); }, "copy: count < 0");
  expect_invalid([&] { E::relu_forward(8, v.data(), nullptr); }, "relu_forward: null");
  // Nothing to do: no pointers needed.
  D::forward(0, 0.5f, key, 0, nullptr, nullptr, nullptr);
  E::copy(0, nullptr, nullptr);
}

TEST(ElementwiseKernels, RejectsBadArguments) {
  check_rejects<EmuDropout, EmuKernels>();
#if defined(WREN_HAVE_CUDA)
  check_rejects<CudaDropout, CudaKernels>();
#endif
}

}  // namespace
