// kernels/conv/conv.cu against the CPU reference (kernels/conv/reference.cpp, in float) and against a
// direct double-precision convolution computed here, for both math paths (fp32 FMAs and TF32
// tensor cores), on the emulator under the forward, reverse and random fiber schedules, and
// on a GPU when one is present. Also: the fused ReLU equals relu(conv) bit for bit, two runs
// are bit-identical (split-K partials summed in a fixed order, no atomics), the split plan,
// the workspace contract, FastDivmod, and the argument checks.
//
// Shapes: ref-cnn's two convolutions at a small batch (conv1: C=1, batch 2, its weight
// gradient split-K; conv2: C=32, K=64, batch 3, its backward passes split-K), stride 2 with
// C=3 and K=5, a 5x3 kernel without padding, padding 2 with dilation 2, a 1x1 convolution, a
// 1x1 output (7x7 kernel on 7x7), a strided 1x1 shortcut and a strided 3x3 downsampling
// (ResNet), C=64 to K=16, K=70 (two row tiles, not a multiple of a tile), unequal strides,
// paddings and dilations with a 2x4 kernel, windows entirely in the padding, stride > kernel
// (inputs no window covers: dx = 0). Between them every pass runs on all four tile shapes of
// gemm_tile.cuh. Inputs are fresh std::mt19937 normals, never zero.
//
// Tolerances (u = 2^-24; per output element, D = the GEMM's reduction length: C·R·S forward,
// K·R·S backward data, N·P·Q backward weights; M = Σ|products| (+ |bias|)):
//  - fp32: the kernel sums D products and the bias along an evaluation tree whose depth is at
//    most D + splits + 1 with splits <= D/256 + 1 (each step one rounding; an FMA rounds once,
//    a multiply-add twice but the product's rounding is bounded by the same u·|p|), so by the
//    standard inner-product bound |got − exact| <= (D + D/64 + 4)·u·M =: acc(D)·M. The CPU
//    float op obeys the same bound (OpenBLAS GEMM, then col2im's R·S additions or the
//    per-thread partial sums), so |got − cpu| <= 2·acc(D)·M.
//  - tf32: cvt.rna rounds each operand to 11 significant bits (relative error <= 2^-11), so
//    each product is off by at most (2·2^-11 + 2^-22)·|p|; the fp32 accumulation adds
//    acc(D)·M. Against the exact result: (2^-10 + 2^-22 + acc(D))·M. Against a double
//    convolution of the TF32-ROUNDED operands (rounded here independently, ties away from
//    zero) the bound is acc(D)·M again: that checks the rounding itself, not just its size.
//  - db: summed in double and rounded once: |got − exact| <= u·|exact| + 2·D·2^-53·Σ|dy|.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "conv/conv.h"
#include "emu/emu.h"
#include "common/gemm_tile.cuh"
#include "conv/conv.h"

#if defined(WREN_HAVE_CUDA)
#include <cuda_runtime.h>

#include "common/runtime.h"
#endif

namespace {

using wren::Conv2dDims;
using wren::MathMode;

constexpr double kU = 0x1p-24;

Conv2dDims dims(int n, int c, int h, int w, int k, int r, int s, int sh = 1, int sw = 1, int ph = 0,
                int pw = 0, int dh = 1, int dw = 1) {
  Conv2dDims d;
  d.n = n;
  d.c = c;
  d.h = h;
  d.w = w;
  d.k = k;
  d.r = r;
  d.s = s;
  d.stride_h = sh;
  d.stride_w = sw;
  d.pad_h = ph;
  d.pad_w = pw;
  d.dil_h = dh;
  d.dil_w = dw;
  return d;
}

struct Shape {
  const char* name;
  Conv2dDims d;
};

const std::vector<Shape>& shapes() {
  static const std::vector<Shape> all = {
      {"ref-cnn conv1", dims(2, 1, 28, 28, 32, 3, 3, 1, 1, 1, 1)},
      {"ref-cnn conv2", dims(3, 32, 14, 14, 64, 3, 3, 1, 1, 1, 1)},
      {"stride 2, C=3, K=5", dims(2, 3, 9, 11, 5, 3, 3, 2, 2, 1, 1)},
      {"5x3 kernel, pad 0", dims(1, 3, 7, 7, 5, 5, 3)},
      {"pad 2, dilation 2", dims(2, 4, 10, 9, 6, 3, 3, 1, 1, 2, 2, 2, 2)},
      {"1x1", dims(3, 7, 5, 6, 9, 1, 1)},
      {"1x1 output", dims(2, 3, 7, 7, 5, 7, 7)},
      {"1x1 stride 2 shortcut", dims(2, 16, 8, 8, 32, 1, 1, 2, 2)},
      {"3x3 stride 2 downsample", dims(2, 16, 8, 8, 32, 3, 3, 2, 2, 1, 1)},
      {"C=64 to K=16", dims(1, 64, 8, 10, 16, 3, 3, 1, 1, 1, 1)},
      {"K=70, C=5", dims(1, 5, 6, 6, 70, 3, 3, 1, 1, 1, 1)},
      {"2x4, stride 2x1, pad 0x1, dil 1x2", dims(2, 2, 9, 10, 3, 2, 4, 2, 1, 0, 1, 1, 2)},
      {"windows in the padding", dims(1, 2, 4, 4, 3, 2, 2, 1, 1, 2, 2)},
      {"stride 3 > kernel 2", dims(1, 2, 9, 9, 4, 2, 2, 3, 3)},
  };
  return all;
}

std::string describe(const Shape& s, MathMode math) {
  const Conv2dDims& d = s.d;
  return std::string(s.name) + " [N=" + std::to_string(d.n) + " C=" + std::to_string(d.c) + " " +
         std::to_string(d.h) + "x" + std::to_string(d.w) + " K=" + std::to_string(d.k) + " " +
         std::to_string(d.r) + "x" + std::to_string(d.s) + "] " +
         (math == MathMode::kTf32 ? "tf32" : "fp32");
}

size_t x_size(const Conv2dDims& d) {
  return static_cast<size_t>(d.n) * d.c * d.h * d.w;
}
size_t y_size(const Conv2dDims& d) {
  return static_cast<size_t>(d.n) * d.k * d.p() * d.q();
}
size_t w_size(const Conv2dDims& d) {
  return static_cast<size_t>(d.k) * d.c * d.r * d.s;
}

std::vector<float> random_values(size_t n, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) {
    do x = normal(rng);
    while (x == 0.0f);
  }
  return v;
}

// cvt.rna.tf32.f32 computed independently of ptx.cuh: 11 significant bits, nearest, ties away
// from zero (std::round), for the normal floats the tests draw.
double tf32(float x) {
  int e = 0;
  const double m = std::frexp(static_cast<double>(x), &e);
  return std::ldexp(std::round(std::ldexp(m, 11)), e - 11);
}

std::vector<double> widen(const std::vector<float>& v, bool round_tf32) {
  std::vector<double> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = round_tf32 ? tf32(v[i]) : v[i];
  return out;
}

// An exact (double) result and, per element, Σ|terms| (the tolerance's scale).
struct Exact {
  std::vector<double> value, magnitude;
};

// The direct 7-loop convolution and its two adjoints, in double.
Exact forward_exact(const Conv2dDims& d, const std::vector<double>& x, const std::vector<double>& w,
                    const float* b) {
  const int P = d.p(), Q = d.q();
  Exact e{std::vector<double>(y_size(d)), std::vector<double>(y_size(d))};
  for (int n = 0; n < d.n; ++n)
    for (int k = 0; k < d.k; ++k)
      for (int p = 0; p < P; ++p)
        for (int q = 0; q < Q; ++q) {
          double sum = b ? b[k] : 0.0, mag = b ? std::fabs(b[k]) : 0.0;
          for (int c = 0; c < d.c; ++c)
            for (int r = 0; r < d.r; ++r) {
              const int h = p * d.stride_h - d.pad_h + r * d.dil_h;
              if (h < 0 || h >= d.h) continue;
              for (int s = 0; s < d.s; ++s) {
                const int iw = q * d.stride_w - d.pad_w + s * d.dil_w;
                if (iw < 0 || iw >= d.w) continue;
                const double t = x[((static_cast<size_t>(n) * d.c + c) * d.h + h) * d.w + iw] *
                                 w[((static_cast<size_t>(k) * d.c + c) * d.r + r) * d.s + s];
                sum += t;
                mag += std::fabs(t);
              }
            }
          const size_t i = ((static_cast<size_t>(n) * d.k + k) * P + p) * Q + q;
          e.value[i] = sum;
          e.magnitude[i] = mag;
        }
  return e;
}

Exact data_exact(const Conv2dDims& d, const std::vector<double>& dy, const std::vector<double>& w) {
  const int P = d.p(), Q = d.q();
  Exact e{std::vector<double>(x_size(d), 0.0), std::vector<double>(x_size(d), 0.0)};
  for (int n = 0; n < d.n; ++n)
    for (int k = 0; k < d.k; ++k)
      for (int p = 0; p < P; ++p)
        for (int q = 0; q < Q; ++q) {
          const double g = dy[((static_cast<size_t>(n) * d.k + k) * P + p) * Q + q];
          for (int c = 0; c < d.c; ++c)
            for (int r = 0; r < d.r; ++r) {
              const int h = p * d.stride_h - d.pad_h + r * d.dil_h;
              if (h < 0 || h >= d.h) continue;
              for (int s = 0; s < d.s; ++s) {
                const int iw = q * d.stride_w - d.pad_w + s * d.dil_w;
                if (iw < 0 || iw >= d.w) continue;
                const double t = g * w[((static_cast<size_t>(k) * d.c + c) * d.r + r) * d.s + s];
                const size_t i = ((static_cast<size_t>(n) * d.c + c) * d.h + h) * d.w + iw;
                e.value[i] += t;
                e.magnitude[i] += std::fabs(t);
              }
            }
        }
  return e;
}

Exact weights_exact(const Conv2dDims& d, const std::vector<double>& x,
                    const std::vector<double>& dy) {
  const int P = d.p(), Q = d.q();
  Exact e{std::vector<double>(w_size(d), 0.0), std::vector<double>(w_size(d), 0.0)};
  for (int k = 0; k < d.k; ++k)
    for (int c = 0; c < d.c; ++c)
      for (int r = 0; r < d.r; ++r)
        for (int s = 0; s < d.s; ++s) {
          double sum = 0.0, mag = 0.0;
          for (int n = 0; n < d.n; ++n)
            for (int p = 0; p < P; ++p) {
              const int h = p * d.stride_h - d.pad_h + r * d.dil_h;
              if (h < 0 || h >= d.h) continue;
              for (int q = 0; q < Q; ++q) {
                const int iw = q * d.stride_w - d.pad_w + s * d.dil_w;
                if (iw < 0 || iw >= d.w) continue;
                const double t = dy[((static_cast<size_t>(n) * d.k + k) * P + p) * Q + q] *
                                 x[((static_cast<size_t>(n) * d.c + c) * d.h + h) * d.w + iw];
                sum += t;
                mag += std::fabs(t);
              }
            }
          const size_t i = ((static_cast<size_t>(k) * d.c + c) * d.r + r) * d.s + s;
          e.value[i] = sum;
          e.magnitude[i] = mag;
        }
  return e;
}

Exact bias_exact(const Conv2dDims& d, const std::vector<float>& dy) {
  const size_t pq = static_cast<size_t>(d.p()) * d.q();
  Exact e{std::vector<double>(static_cast<size_t>(d.k), 0.0),
          std::vector<double>(static_cast<size_t>(d.k), 0.0)};
  for (int n = 0; n < d.n; ++n)
    for (int k = 0; k < d.k; ++k)
      for (size_t j = 0; j < pq; ++j) {
        const double g = dy[(static_cast<size_t>(n) * d.k + k) * pq + j];
        e.value[static_cast<size_t>(k)] += g;
        e.magnitude[static_cast<size_t>(k)] += std::fabs(g);
      }
  return e;
}

// acc(D) of the header comment.
double acc_bound(int64_t depth) {
  return static_cast<double>(depth + depth / 64 + 4) * kU;
}

// Checks `got` against the exact result, the TF32-rounded exact result (tf32 only) and the
// CPU float op; `relu` applies ReLU to the exact values (1-Lipschitz: bounds unchanged).
void expect_close(const std::vector<float>& got, const Exact& exact, const Exact* rounded,
                  const std::vector<float>& cpu, MathMode math, int64_t depth, bool relu,
                  const std::string& what) {
  ASSERT_EQ(got.size(), exact.value.size()) << what;
  const double acc = acc_bound(depth);
  const bool tf = math == MathMode::kTf32;
  const double operand = tf ? 0x1p-10 + 0x1p-22 : 0.0;
  auto act = [relu](double v) { return relu ? std::max(v, 0.0) : v; };
  size_t bad = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double g = got[i], m = exact.magnitude[i];
    const double ref = act(exact.value[i]);
    const double tol_exact = (operand + acc) * m;
    const double tol_cpu = tol_exact + acc * m;
    bool ok = std::fabs(g - ref) <= tol_exact && std::fabs(g - act(cpu[i])) <= tol_cpu;
    double ref_rounded = 0.0, tol_rounded = 0.0;
    if (tf) {
      ref_rounded = act(rounded->value[i]);
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

void expect_bias_close(const std::vector<float>& got, const Exact& exact,
                       const std::vector<float>& cpu, int64_t depth, const std::string& what) {
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

bool bits_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() &&
         (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

// --- Backends: the emulator (device memory is host memory) and CUDA ------------------------------

// A device array initialised from a host vector.
class Buffer {
 public:
  Buffer(bool gpu, const std::vector<float>& host) : gpu_(gpu), host_(host) {
#if defined(WREN_HAVE_CUDA)
    if (gpu_) {
      EXPECT_EQ(cudaMalloc(&device_, std::max<size_t>(host.size(), 1) * sizeof(float)),
                cudaSuccess);
      EXPECT_EQ(
          cudaMemcpy(device_, host.data(), host.size() * sizeof(float), cudaMemcpyHostToDevice),
          cudaSuccess);
    }
#endif
  }
  Buffer(bool gpu, size_t n, float fill) : Buffer(gpu, std::vector<float>(n, fill)) {}
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer() {
#if defined(WREN_HAVE_CUDA)
    if (device_ != nullptr) cudaFree(device_);
#endif
  }
  float* get() {
    return host_.empty() ? nullptr : (gpu_ ? device_ : host_.data());
  }
  std::vector<float> read() {
#if defined(WREN_HAVE_CUDA)
    if (gpu_) {
      EXPECT_EQ(
          cudaMemcpy(host_.data(), device_, host_.size() * sizeof(float), cudaMemcpyDeviceToHost),
          cudaSuccess);
    }
#endif
    return host_;
  }

 private:
  bool gpu_;
  std::vector<float> host_;
  float* device_ = nullptr;
};

// Workspace: its exact size, filled with NaN garbage (a kernel reading a partial it did not
// write fails the comparison).
std::vector<float> workspace_fill(size_t bytes, float fill) {
  return std::vector<float>((bytes + sizeof(float) - 1) / sizeof(float), fill);
}

struct EmuKernels {
  static constexpr bool kGpu = false;
  static constexpr const char* kName = "emu";
  static size_t workspace(Conv2dDims d, MathMode m) {
    return wren::emu_kernels::conv2d_workspace_bytes(d, m);
  }
  static void forward(Conv2dDims d, MathMode m, const float* x, const float* w,
                      const float* b, float* y, void* ws) {
    wren::emu_kernels::conv2d_forward(d, m, x, w, b, y, ws, nullptr);
  }
  static void data(Conv2dDims d, MathMode m, const float* dy, const float* w, float* dx, void* ws) {
    wren::emu_kernels::conv2d_backward_data(d, m, dy, w, dx, ws, nullptr);
  }
  static void weights(Conv2dDims d, MathMode m, const float* x, const float* dy, float* dw,
                      float* db, void* ws) {
    wren::emu_kernels::conv2d_backward_weights(d, m, x, dy, dw, db, ws, nullptr);
  }
  static std::string finish() { return wren::emu::take_error(); }
};

#if defined(WREN_HAVE_CUDA)
struct CudaKernels {
  static constexpr bool kGpu = true;
  static constexpr const char* kName = "cuda";
  static size_t workspace(Conv2dDims d, MathMode m) {
    return wren::cuda_kernels::conv2d_workspace_bytes(d, m);
  }
  static void forward(Conv2dDims d, MathMode m, const float* x, const float* w,
                      const float* b, float* y, void* ws) {
    wren::cuda_kernels::conv2d_forward(d, m, x, w, b, y, ws, nullptr);
  }
  static void data(Conv2dDims d, MathMode m, const float* dy, const float* w, float* dx, void* ws) {
    wren::cuda_kernels::conv2d_backward_data(d, m, dy, w, dx, ws, nullptr);
  }
  static void weights(Conv2dDims d, MathMode m, const float* x, const float* dy, float* dw,
                      float* db, void* ws) {
    wren::cuda_kernels::conv2d_backward_weights(d, m, x, dy, dw, db, ws, nullptr);
  }
  static std::string finish() {
    const cudaError_t e = cudaDeviceSynchronize();
    return e == cudaSuccess ? "" : cudaGetErrorString(e);
  }
};
#endif

// --- The three passes: inputs and references once per shape, then every math path and
// schedule --------------------------------------------------------------------------------------

constexpr MathMode kMaths[] = {MathMode::kFp32, MathMode::kTf32};

// Runs `check` under the three fiber schedules (the emulator), or once (a GPU).
// Puts the emulator back on its default schedule when a check returns (an ASSERT included).
struct DefaultScheduleOnExit {
  DefaultScheduleOnExit() = default;
  DefaultScheduleOnExit(const DefaultScheduleOnExit&) = delete;
  DefaultScheduleOnExit& operator=(const DefaultScheduleOnExit&) = delete;
  ~DefaultScheduleOnExit() { wren::emu::set_schedule(wren::emu::Schedule::kForward); }
};

template <class K, class F>
void under_schedules(F check) {
  if (K::kGpu) {
    check();
    return;
  }
  const DefaultScheduleOnExit restore;
  for (auto schedule : {wren::emu::Schedule::kForward, wren::emu::Schedule::kReverse,
                        wren::emu::Schedule::kRandom}) {
    wren::emu::set_schedule(schedule, 31);
    SCOPED_TRACE(
        schedule == wren::emu::Schedule::kForward
            ? "forward schedule"
            : (schedule == wren::emu::Schedule::kReverse ? "reverse schedule" : "random schedule"));
    check();
  }
}

template <class K>
void check_forward(uint32_t seed, MathMode math) {
  std::mt19937 rng(seed);
  for (const Shape& shape : shapes()) {
    const Conv2dDims& d = shape.d;
    const std::string what = std::string(K::kName) + " conv2d_forward " + describe(shape, math);
    const std::vector<float> x = random_values(x_size(d), rng), w = random_values(w_size(d), rng),
                             b = random_values(static_cast<size_t>(d.k), rng);
    // Half the shapes without a bias (b is optional).
    const bool with_bias = (&shape - shapes().data()) % 2 == 0;
    const float* bias = with_bias ? b.data() : nullptr;
    std::vector<float> cpu(y_size(d)), cpu_ws(wren::cpu::conv2d_workspace_elems(d));
    wren::cpu::conv2d_forward<float>(d, x.data(), w.data(), bias, cpu.data(), cpu_ws.data());
    const Exact exact = forward_exact(d, widen(x, false), widen(w, false), bias);
    Exact rounded;
    if (math == MathMode::kTf32) rounded = forward_exact(d, widen(x, true), widen(w, true), bias);

    under_schedules<K>([&] {
      Buffer xb(K::kGpu, x), wb(K::kGpu, w), bb(K::kGpu, b), yb(K::kGpu, y_size(d), NAN);
      Buffer ws(K::kGpu, workspace_fill(K::workspace(d, math), NAN));
      K::forward(d, math, xb.get(), wb.get(), with_bias ? bb.get() : nullptr,
                 yb.get(), ws.get());
      ASSERT_EQ(K::finish(), "") << what;
      expect_close(yb.read(), exact, &rounded, cpu, math, int64_t{d.c} * d.r * d.s, false, what);
    });
  }
}

template <class K>
void check_backward_data(uint32_t seed, MathMode math) {
  std::mt19937 rng(seed);
  for (const Shape& shape : shapes()) {
    const Conv2dDims& d = shape.d;
    const std::string what =
        std::string(K::kName) + " conv2d_backward_data " + describe(shape, math);
    const std::vector<float> dy = random_values(y_size(d), rng), w = random_values(w_size(d), rng);
    std::vector<float> cpu(x_size(d)), cpu_ws(wren::cpu::conv2d_workspace_elems(d));
    wren::cpu::conv2d_backward_data<float>(d, dy.data(), w.data(), cpu.data(), cpu_ws.data());
    const Exact exact = data_exact(d, widen(dy, false), widen(w, false));
    Exact rounded;
    if (math == MathMode::kTf32) rounded = data_exact(d, widen(dy, true), widen(w, true));

    under_schedules<K>([&] {
      Buffer dyb(K::kGpu, dy), wb(K::kGpu, w), dxb(K::kGpu, x_size(d), NAN);
      Buffer ws(K::kGpu, workspace_fill(K::workspace(d, math), NAN));
      K::data(d, math, dyb.get(), wb.get(), dxb.get(), ws.get());
      ASSERT_EQ(K::finish(), "") << what;
      expect_close(dxb.read(), exact, &rounded, cpu, math, int64_t{d.k} * d.r * d.s, false, what);
    });
  }
}

template <class K>
void check_backward_weights(uint32_t seed, MathMode math) {
  std::mt19937 rng(seed);
  for (const Shape& shape : shapes()) {
    const Conv2dDims& d = shape.d;
    const std::string what =
        std::string(K::kName) + " conv2d_backward_weights " + describe(shape, math);
    const std::vector<float> x = random_values(x_size(d), rng), dy = random_values(y_size(d), rng);
    const bool with_bias = (&shape - shapes().data()) % 2 == 1;  // db is optional
    std::vector<float> cpu_dw(w_size(d)), cpu_db(static_cast<size_t>(d.k)),
        cpu_ws(wren::cpu::conv2d_workspace_elems(d));
    wren::cpu::conv2d_backward_weights<float>(d, x.data(), dy.data(), cpu_dw.data(), cpu_db.data(),
                                              cpu_ws.data());
    const Exact exact = weights_exact(d, widen(x, false), widen(dy, false));
    Exact rounded;
    if (math == MathMode::kTf32) rounded = weights_exact(d, widen(x, true), widen(dy, true));
    const Exact bias = bias_exact(d, dy);
    const int64_t depth = int64_t{d.n} * d.p() * d.q();

    under_schedules<K>([&] {
      Buffer xb(K::kGpu, x), dyb(K::kGpu, dy), dwb(K::kGpu, w_size(d), NAN),
          dbb(K::kGpu, static_cast<size_t>(d.k), NAN);
      Buffer ws(K::kGpu, workspace_fill(K::workspace(d, math), NAN));
      K::weights(d, math, xb.get(), dyb.get(), dwb.get(), with_bias ? dbb.get() : nullptr,
                 ws.get());
      ASSERT_EQ(K::finish(), "") << what;
      expect_close(dwb.read(), exact, &rounded, cpu_dw, math, depth, false, what + " dw");
      if (with_bias) {
        expect_bias_close(dbb.read(), bias, cpu_db, depth, what + " db");
      } else {
        for (float v : dbb.read()) ASSERT_TRUE(std::isnan(v)) << what << ": db written";
      }
    });
  }
}

// Two runs of every launcher on fresh buffers (different workspace garbage, the second run
// under the random schedule on the emulator) give the same bits, on the shapes whose passes
// split the reduction (ref-cnn conv1 and conv2: weight gradient and backward data; C = 64:
// forward; K = 70: backward data) and a strided one.
template <class K>
void check_deterministic(uint32_t seed) {
  std::mt19937 rng(seed);
  const std::vector<std::string> split = {"ref-cnn conv1", "ref-cnn conv2", "C=64 to K=16",
                                          "K=70, C=5", "stride 2, C=3, K=5"};
  for (MathMode math : kMaths) {
    for (const Shape& shape : shapes()) {
      if (std::find(split.begin(), split.end(), shape.name) == split.end()) continue;
      const Conv2dDims& d = shape.d;
      const std::string what = std::string(K::kName) + " rerun " + describe(shape, math);
      const std::vector<float> x = random_values(x_size(d), rng), w = random_values(w_size(d), rng),
                               b = random_values(static_cast<size_t>(d.k), rng),
                               dy = random_values(y_size(d), rng);
      std::vector<std::vector<float>> runs[2];
      const DefaultScheduleOnExit restore;
      for (int run = 0; run < 2; ++run) {
        if (!K::kGpu && run == 1) wren::emu::set_schedule(wren::emu::Schedule::kRandom, 77);
        Buffer xb(K::kGpu, x), wb(K::kGpu, w), bb(K::kGpu, b), dyb(K::kGpu, dy),
            yb(K::kGpu, y_size(d), NAN), dxb(K::kGpu, x_size(d), NAN), dwb(K::kGpu, w_size(d), NAN),
            dbb(K::kGpu, static_cast<size_t>(d.k), NAN);
        Buffer ws(K::kGpu, workspace_fill(K::workspace(d, math), run == 0 ? NAN : 1e30f));
        K::forward(d, math, xb.get(), wb.get(), bb.get(), yb.get(), ws.get());
        K::data(d, math, dyb.get(), wb.get(), dxb.get(), ws.get());
        K::weights(d, math, xb.get(), dyb.get(), dwb.get(), dbb.get(), ws.get());
        ASSERT_EQ(K::finish(), "") << what;
        runs[run] = {yb.read(), dxb.read(), dwb.read(), dbb.read()};
      }
      const char* names[] = {"y", "dx", "dw", "db"};
      for (int i = 0; i < 4; ++i) {
        EXPECT_TRUE(bits_equal(runs[0][static_cast<size_t>(i)], runs[1][static_cast<size_t>(i)]))
            << what << ": " << names[i] << " differs between two runs";
      }
    }
  }
}

TEST(ConvKernels, EmuForwardFp32) {
  check_forward<EmuKernels>(301, MathMode::kFp32);
}
TEST(ConvKernels, EmuForwardTf32) {
  check_forward<EmuKernels>(302, MathMode::kTf32);
}
TEST(ConvKernels, EmuBackwardDataFp32) {
  check_backward_data<EmuKernels>(303, MathMode::kFp32);
}
TEST(ConvKernels, EmuBackwardDataTf32) {
  check_backward_data<EmuKernels>(304, MathMode::kTf32);
}
TEST(ConvKernels, EmuBackwardWeightsFp32) {
  check_backward_weights<EmuKernels>(305, MathMode::kFp32);
}
TEST(ConvKernels, EmuBackwardWeightsTf32) {
  check_backward_weights<EmuKernels>(306, MathMode::kTf32);
}
TEST(ConvKernels, EmuRerunsAreBitIdentical) {
  check_deterministic<EmuKernels>(308);
}

// The CUDA cases: skipped without a GPU (or without the CUDA backend).
#if defined(WREN_HAVE_CUDA)
#define WREN_CONV_CUDA_TEST(test, body)                                                       \
  TEST(ConvKernels, test) {                                                                   \
    if (wren::kernels::device_count() == 0) GTEST_SKIP() << "no CUDA device on this machine"; \
    body;                                                                                     \
  }
#else
#define WREN_CONV_CUDA_TEST(test, body)                                    \
  TEST(ConvKernels, test) {                                                \
    GTEST_SKIP() << "built without the CUDA backend (WREN_HAVE_CUDA off)"; \
  }
#endif

WREN_CONV_CUDA_TEST(CudaForwardFp32, check_forward<CudaKernels>(401, MathMode::kFp32))
WREN_CONV_CUDA_TEST(CudaForwardTf32, check_forward<CudaKernels>(402, MathMode::kTf32))
WREN_CONV_CUDA_TEST(CudaBackwardDataFp32, check_backward_data<CudaKernels>(403, MathMode::kFp32))
WREN_CONV_CUDA_TEST(CudaBackwardDataTf32, check_backward_data<CudaKernels>(404, MathMode::kTf32))
WREN_CONV_CUDA_TEST(CudaBackwardWeightsFp32,
                    check_backward_weights<CudaKernels>(405, MathMode::kFp32))
WREN_CONV_CUDA_TEST(CudaBackwardWeightsTf32,
                    check_backward_weights<CudaKernels>(406, MathMode::kTf32))
WREN_CONV_CUDA_TEST(CudaRerunsAreBitIdentical, check_deterministic<CudaKernels>(408))

#undef WREN_CONV_CUDA_TEST

// --- The building block's host-side pieces -------------------------------------------------------

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

TEST(ConvKernels, WorkspaceCoversTheSplitWeightGradient) {
  const Conv2dDims conv1 = dims(64, 1, 28, 28, 32, 3, 3, 1, 1, 1, 1);
  const size_t bytes = wren::emu_kernels::conv2d_workspace_bytes(conv1, MathMode::kFp32);
  EXPECT_GT(bytes, 0u);
  EXPECT_EQ(bytes, wren::emu_kernels::conv2d_workspace_bytes(conv1, MathMode::kTf32));
  // A problem without splits needs none.
  EXPECT_EQ(wren::emu_kernels::conv2d_workspace_bytes(dims(1, 3, 5, 5, 4, 3, 3), MathMode::kFp32),
            0u);
}

// N = 0: forward and backward data do nothing; the weight gradient is zero.
TEST(ConvKernels, EmuEmptyBatchZeroesTheWeightGradient) {
  const Conv2dDims d = dims(0, 3, 5, 5, 4, 3, 3);
  std::vector<float> dw(w_size(d), NAN), db(4, NAN);
  wren::emu_kernels::conv2d_forward(d, MathMode::kFp32, nullptr, nullptr,
                                    nullptr, nullptr, nullptr, nullptr);
  wren::emu_kernels::conv2d_backward_data(d, MathMode::kFp32, nullptr, nullptr, nullptr, nullptr,
                                          nullptr);
  wren::emu_kernels::conv2d_backward_weights(d, MathMode::kTf32, nullptr, nullptr, dw.data(),
                                             db.data(), nullptr, nullptr);
  ASSERT_EQ(wren::emu::take_error(), "");
  for (float v : dw) EXPECT_EQ(v, 0.0f);
  for (float v : db) EXPECT_EQ(v, 0.0f);
}

// Bad host arguments throw std::invalid_argument naming the function and the dims, before
// anything runs.
TEST(ConvKernels, RejectsBadArguments) {
  std::vector<float> buf(4096, 1.0f);
  float* p = buf.data();
  auto expect_bad = [](auto call, const std::string& needle) {
    try {
      call();
      ADD_FAILURE() << "no exception; expected one mentioning '" << needle << "'";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  const Conv2dDims good = dims(1, 3, 5, 5, 4, 3, 3);
  auto forward = [p](Conv2dDims d) {
    return [p, d] {
      wren::emu_kernels::conv2d_forward(d, MathMode::kFp32, p, p, p, p,
                                        nullptr, nullptr);
    };
  };
  Conv2dDims d = good;
  d.c = 0;
  expect_bad(forward(d), "conv2d_forward: sizes must be positive (N >= 0) (N=1 C=0 H=5 W=5 K=4");
  d = good;
  d.n = -1;
  expect_bad(forward(d), "N=-1");
  d = good;
  d.stride_w = 0;
  expect_bad(forward(d), "stride=1x0");
  d = good;
  d.dil_h = 0;
  expect_bad(forward(d), "dil=0x1");
  d = good;
  d.pad_h = -1;
  expect_bad(forward(d), "pad=-1x0");
  d = good;
  d.r = 7;  // 7 rows of kernel on 5 rows of input without padding
  expect_bad(forward(d), "larger than the padded input");
  d = good;
  d.h = d.w = 50000;
  d.c = 1000;
  expect_bad(forward(d), "exceeds 2^31 - 1024 elements");
  expect_bad(forward(d), "H=50000 W=50000");
  d.n = d.c = d.h = d.w = INT32_MAX;  // a product that would overflow 64 bits
  d.pad_h = d.pad_w = 1;
  expect_bad(forward(d), "exceeds 2^31 - 1024 elements");
  expect_bad(
      [&] {
        wren::emu_kernels::conv2d_backward_data(good, MathMode::kFp32, nullptr, p, p, nullptr,
                                                nullptr);
      },
      "conv2d_backward_data: dy is null");
  expect_bad(
      [&] {
        wren::emu_kernels::conv2d_backward_weights(good, MathMode::kFp32, p, p, nullptr, p, nullptr,
                                                   nullptr);
      },
      "conv2d_backward_weights: dw is null");
  // A split weight gradient without its workspace.
  const Conv2dDims conv1 = dims(8, 1, 28, 28, 32, 3, 3, 1, 1, 1, 1);
  std::vector<float> big(x_size(conv1) + y_size(conv1), 1.0f);
  expect_bad(
      [&] {
        wren::emu_kernels::conv2d_backward_weights(conv1, MathMode::kFp32, big.data(), big.data(),
                                                   p, nullptr, nullptr, nullptr);
      },
      "bytes of workspace, got null");
  expect_bad([] { wren::emu_kernels::conv2d_workspace_bytes(Conv2dDims{}, MathMode::kFp32); },
             "conv2d_workspace_bytes");
  ASSERT_EQ(wren::emu::take_error(), "");
}

}  // namespace
