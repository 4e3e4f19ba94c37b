// kernels/linear/linear.cu against the CPU reference (kernels/linear/reference.cpp, in float) and against a
// double-precision product computed here, for both math paths (fp32 FMAs and TF32 tensor
// cores), on the emulator under the forward, reverse and random fiber schedules, and on a GPU
// when one is present; plus bit-identical reruns and the argument checks.
//
// Shapes: ref-cnn's fc1 (3136 → 128; its forward at a small batch is split-K) and fc2 (128 →
// 10) at batch 3, a single sample, in = out = 1, sizes across tile edges (37 × 70 → 33 and
// 70 × 37 → 130), and a batch of 600 (the weight gradient's reduction split). Inputs are fresh
// std::mt19937 normals, never zero.
//
// Tolerances as in test_conv_kernels.cpp (u = 2^-24, D = the reduction length: in, out or N;
// M = Σ|products| (+ |bias|)): fp32 |got − exact| <= (D + D/64 + 4)·u·M =: acc(D)·M (an
// evaluation tree of depth <= D + splits + 1, splits <= D/256 + 1, one rounding per level),
// |got − cpu| <= 2·acc(D)·M; tf32 adds (2·2^-11 + 2^-22)·M for the operands' cvt.rna
// rounding, and must be within acc(D)·M of the double product of the TF32-rounded operands;
// db (double sum, one rounding) within u·|exact| + 2·D·2^-53·Σ|dy|.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "emu/emu.h"
#include "linear/linear.h"
#include "linear/linear.h"

#if defined(WREN_HAVE_CUDA)
#include <cuda_runtime.h>

#include "common/runtime.h"
#endif

namespace {

using wren::LinearDims;
using wren::MathMode;

constexpr double kU = 0x1p-24;

struct Shape {
  const char* name;
  LinearDims d;
};

const std::vector<Shape>& shapes() {
  static const std::vector<Shape> all = {
      {"ref-cnn fc1", {3, 3136, 128}}, {"ref-cnn fc2", {3, 128, 10}},
      {"one sample", {1, 7, 3}},       {"in = out = 1", {5, 1, 1}},
      {"tile edges", {37, 70, 33}},    {"70 x 37 -> 130", {70, 37, 130}},
      {"batch 600", {600, 20, 12}},
  };
  return all;
}

std::string describe(const Shape& s, MathMode math) {
  return std::string(s.name) + " [N=" + std::to_string(s.d.n) + " in=" + std::to_string(s.d.in) +
         " out=" + std::to_string(s.d.out) + "] " + (math == MathMode::kTf32 ? "tf32" : "fp32");
}

size_t size_of(int a, int b) {
  return static_cast<size_t>(a) * static_cast<size_t>(b);
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

// cvt.rna.tf32.f32, independently: 11 significant bits, nearest, ties away from zero.
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

struct Exact {
  std::vector<double> value, magnitude;
};

// C[i][j] = Σ_l A(i, l)·B(l, j) (+ bias[j]) in double, with Σ|terms|; the accessors index the
// row-major arrays.
template <class A, class B>
Exact product(int rows, int cols, int depth, A a, B b, const float* bias) {
  Exact e{std::vector<double>(size_of(rows, cols)), std::vector<double>(size_of(rows, cols))};
  for (int i = 0; i < rows; ++i)
    for (int j = 0; j < cols; ++j) {
      double sum = bias ? bias[j] : 0.0, mag = bias ? std::fabs(bias[j]) : 0.0;
      for (int l = 0; l < depth; ++l) {
        const double t = a(i, l) * b(l, j);
        sum += t;
        mag += std::fabs(t);
      }
      e.value[size_of(i, cols) + static_cast<size_t>(j)] = sum;
      e.magnitude[size_of(i, cols) + static_cast<size_t>(j)] = mag;
    }
  return e;
}

double acc_bound(int64_t depth) {
  return static_cast<double>(depth + depth / 64 + 4) * kU;
}

void expect_close(const std::vector<float>& got, const Exact& exact, const Exact* rounded,
                  const std::vector<float>& cpu, MathMode math, int64_t depth,
                  const std::string& what) {
  ASSERT_EQ(got.size(), exact.value.size()) << what;
  const double acc = acc_bound(depth);
  const bool tf = math == MathMode::kTf32;
  const double operand = tf ? 0x1p-10 + 0x1p-22 : 0.0;
  size_t bad = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double g = got[i], m = exact.magnitude[i];
    const double tol_exact = (operand + acc) * m, tol_cpu = tol_exact + acc * m;
    bool ok = std::fabs(g - exact.value[i]) <= tol_exact && std::fabs(g - cpu[i]) <= tol_cpu;
    if (tf) ok = ok && std::fabs(g - rounded->value[i]) <= acc * rounded->magnitude[i];
    if (!ok && ++bad <= 5) {
      ADD_FAILURE() << what << " [" << i << "]: got " << g << ", exact " << exact.value[i]
                    << " (tol " << tol_exact << "), cpu " << cpu[i]
                    << (tf ? ", tf32-rounded exact " + std::to_string(rounded->value[i]) : "");
    }
  }
  EXPECT_EQ(bad, 0u) << what;
}

bool bits_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() &&
         (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

// --- Backends ------------------------------------------------------------------------------------

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

std::vector<float> workspace_fill(size_t bytes, float fill) {
  return std::vector<float>((bytes + sizeof(float) - 1) / sizeof(float), fill);
}

struct EmuKernels {
  static constexpr bool kGpu = false;
  static constexpr const char* kName = "emu";
  static size_t workspace(LinearDims d, MathMode m) {
    return wren::emu_kernels::linear_workspace_bytes(d, m);
  }
  static void forward(LinearDims d, MathMode m, const float* x, const float* w, const float* b,
                      float* y, void* ws) {
    wren::emu_kernels::linear_forward(d, m, x, w, b, y, ws, nullptr);
  }
  static void data(LinearDims d, MathMode m, const float* dy, const float* w, float* dx, void* ws) {
    wren::emu_kernels::linear_backward_data(d, m, dy, w, dx, ws, nullptr);
  }
  static void weights(LinearDims d, MathMode m, const float* x, const float* dy, float* dw,
                      float* db, void* ws) {
    wren::emu_kernels::linear_backward_weights(d, m, x, dy, dw, db, ws, nullptr);
  }
  static std::string finish() { return wren::emu::take_error(); }
};

#if defined(WREN_HAVE_CUDA)
struct CudaKernels {
  static constexpr bool kGpu = true;
  static constexpr const char* kName = "cuda";
  static size_t workspace(LinearDims d, MathMode m) {
    return wren::cuda_kernels::linear_workspace_bytes(d, m);
  }
  static void forward(LinearDims d, MathMode m, const float* x, const float* w, const float* b,
                      float* y, void* ws) {
    wren::cuda_kernels::linear_forward(d, m, x, w, b, y, ws, nullptr);
  }
  static void data(LinearDims d, MathMode m, const float* dy, const float* w, float* dx, void* ws) {
    wren::cuda_kernels::linear_backward_data(d, m, dy, w, dx, ws, nullptr);
  }
  static void weights(LinearDims d, MathMode m, const float* x, const float* dy, float* dw,
                      float* db, void* ws) {
    wren::cuda_kernels::linear_backward_weights(d, m, x, dy, dw, db, ws, nullptr);
  }
  static std::string finish() {
    const cudaError_t e = cudaDeviceSynchronize();
    return e == cudaSuccess ? "" : cudaGetErrorString(e);
  }
};
#endif

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
    wren::emu::set_schedule(schedule, 37);
    SCOPED_TRACE(
        schedule == wren::emu::Schedule::kForward
            ? "forward schedule"
            : (schedule == wren::emu::Schedule::kReverse ? "reverse schedule" : "random schedule"));
    check();
  }
}

// All three passes of one shape and math path; forward with a bias on even shapes.
template <class K>
void check_linear(uint32_t seed, MathMode math) {
  std::mt19937 rng(seed);
  for (const Shape& shape : shapes()) {
    const LinearDims d = shape.d;
    const std::string what = std::string(K::kName) + " " + describe(shape, math);
    const bool with_bias = (&shape - shapes().data()) % 2 == 0;
    const std::vector<float> x = random_values(size_of(d.n, d.in), rng),
                             w = random_values(size_of(d.out, d.in), rng),
                             b = random_values(static_cast<size_t>(d.out), rng),
                             dy = random_values(size_of(d.n, d.out), rng);
    const float* bias = with_bias ? b.data() : nullptr;

    std::vector<float> cpu_y(size_of(d.n, d.out)), cpu_dx(size_of(d.n, d.in)),
        cpu_dw(size_of(d.out, d.in)), cpu_db(static_cast<size_t>(d.out));
    wren::cpu::linear_forward<float>(d, x.data(), w.data(), bias, cpu_y.data());
    wren::cpu::linear_backward_data<float>(d, dy.data(), w.data(), cpu_dx.data());
    wren::cpu::linear_backward_weights<float>(d, x.data(), dy.data(), cpu_dw.data(), cpu_db.data());

    // Exact products (and of the TF32-rounded operands).
    Exact exact[3], rounded[3];
    for (bool round : {false, true}) {
      if (round && math != MathMode::kTf32) break;
      const std::vector<double> X = widen(x, round), W = widen(w, round), DY = widen(dy, round);
      Exact* e = round ? rounded : exact;
      e[0] = product(
          d.n, d.out, d.in, [&](int i, int l) { return X[size_of(i, d.in) + l]; },
          [&](int l, int j) { return W[size_of(j, d.in) + l]; }, bias);
      e[1] = product(
          d.n, d.in, d.out, [&](int i, int l) { return DY[size_of(i, d.out) + l]; },
          [&](int l, int j) { return W[size_of(l, d.in) + j]; }, nullptr);
      e[2] = product(
          d.out, d.in, d.n, [&](int i, int l) { return DY[size_of(l, d.out) + i]; },
          [&](int l, int j) { return X[size_of(l, d.in) + j]; }, nullptr);
    }
    std::vector<double> db_exact(static_cast<size_t>(d.out), 0.0),
        db_mag(static_cast<size_t>(d.out), 0.0);
    for (int i = 0; i < d.n; ++i)
      for (int o = 0; o < d.out; ++o) {
        db_exact[static_cast<size_t>(o)] += dy[size_of(i, d.out) + o];
        db_mag[static_cast<size_t>(o)] += std::fabs(dy[size_of(i, d.out) + o]);
      }

    under_schedules<K>([&] {
      Buffer xb(K::kGpu, x), wb(K::kGpu, w), bb(K::kGpu, b), dyb(K::kGpu, dy),
          yb(K::kGpu, size_of(d.n, d.out), NAN), dxb(K::kGpu, size_of(d.n, d.in), NAN),
          dwb(K::kGpu, size_of(d.out, d.in), NAN), dbb(K::kGpu, static_cast<size_t>(d.out), NAN);
      Buffer ws(K::kGpu, workspace_fill(K::workspace(d, math), NAN));
      K::forward(d, math, xb.get(), wb.get(), with_bias ? bb.get() : nullptr, yb.get(), ws.get());
      K::data(d, math, dyb.get(), wb.get(), dxb.get(), ws.get());
      K::weights(d, math, xb.get(), dyb.get(), dwb.get(), with_bias ? dbb.get() : nullptr,
                 ws.get());
      ASSERT_EQ(K::finish(), "") << what;
      expect_close(yb.read(), exact[0], &rounded[0], cpu_y, math, d.in, what + " forward");
      expect_close(dxb.read(), exact[1], &rounded[1], cpu_dx, math, d.out, what + " dx");
      expect_close(dwb.read(), exact[2], &rounded[2], cpu_dw, math, d.n, what + " dw");
      const std::vector<float> db = dbb.read();
      for (size_t o = 0; o < db.size(); ++o) {
        if (!with_bias) {
          ASSERT_TRUE(std::isnan(db[o])) << what << ": db written";
          continue;
        }
        const double tol = kU * std::fabs(db_exact[o]) + 2.0 * d.n * 0x1p-53 * db_mag[o];
        EXPECT_LE(std::fabs(db[o] - db_exact[o]), tol) << what << " db[" << o << "]";
        EXPECT_LE(std::fabs(db[o] - cpu_db[o]), 2.0 * tol) << what << " db[" << o << "] vs cpu";
      }
    });
  }
}

// Two runs (fresh buffers, other workspace garbage, the second under the random schedule on
// the emulator) give the same bits: fc1 (split-K forward), the batch of 600 (split-K weight
// gradient) and the tile edges.
template <class K>
void check_deterministic(uint32_t seed) {
  std::mt19937 rng(seed);
  const std::vector<std::string> chosen = {"ref-cnn fc1", "batch 600", "tile edges"};
  for (MathMode math : {MathMode::kFp32, MathMode::kTf32}) {
    for (const Shape& shape : shapes()) {
      if (std::find(chosen.begin(), chosen.end(), shape.name) == chosen.end()) continue;
      const LinearDims d = shape.d;
      const std::string what = std::string(K::kName) + " rerun " + describe(shape, math);
      const std::vector<float> x = random_values(size_of(d.n, d.in), rng),
                               w = random_values(size_of(d.out, d.in), rng),
                               b = random_values(static_cast<size_t>(d.out), rng),
                               dy = random_values(size_of(d.n, d.out), rng);
      std::vector<std::vector<float>> runs[2];
      const DefaultScheduleOnExit restore;
      for (int run = 0; run < 2; ++run) {
        if (!K::kGpu && run == 1) wren::emu::set_schedule(wren::emu::Schedule::kRandom, 78);
        Buffer xb(K::kGpu, x), wb(K::kGpu, w), bb(K::kGpu, b), dyb(K::kGpu, dy),
            yb(K::kGpu, size_of(d.n, d.out), NAN), dxb(K::kGpu, size_of(d.n, d.in), NAN),
            dwb(K::kGpu, size_of(d.out, d.in), NAN), dbb(K::kGpu, static_cast<size_t>(d.out), NAN);
        Buffer ws(K::kGpu, workspace_fill(K::workspace(d, math), run == 0 ? NAN : 1e30f));
        K::forward(d, math, xb.get(), wb.get(), bb.get(), yb.get(), ws.get());
        K::data(d, math, dyb.get(), wb.get(), dxb.get(), ws.get());
        K::weights(d, math, xb.get(), dyb.get(), dwb.get(), dbb.get(), ws.get());
        ASSERT_EQ(K::finish(), "") << what;
        runs[run] = {yb.read(), dxb.read(), dwb.read(), dbb.read()};
      }
      const char* names[] = {"y", "dx", "dw", "db"};
      for (size_t i = 0; i < 4; ++i) {
        EXPECT_TRUE(bits_equal(runs[0][i], runs[1][i]))
            << what << ": " << names[i] << " differs between two runs";
      }
    }
  }
}

TEST(LinearKernels, EmuFp32) {
  check_linear<EmuKernels>(501, MathMode::kFp32);
}
TEST(LinearKernels, EmuTf32) {
  check_linear<EmuKernels>(502, MathMode::kTf32);
}
TEST(LinearKernels, EmuRerunsAreBitIdentical) {
  check_deterministic<EmuKernels>(503);
}

#if defined(WREN_HAVE_CUDA)
#define WREN_LINEAR_CUDA_TEST(test, body)                                                     \
  TEST(LinearKernels, test) {                                                                 \
    if (wren::kernels::device_count() == 0) GTEST_SKIP() << "no CUDA device on this machine"; \
    body;                                                                                     \
  }
#else
#define WREN_LINEAR_CUDA_TEST(test, body)                                  \
  TEST(LinearKernels, test) {                                              \
    GTEST_SKIP() << "built without the CUDA backend (WREN_HAVE_CUDA off)"; \
  }
#endif

WREN_LINEAR_CUDA_TEST(CudaFp32, check_linear<CudaKernels>(601, MathMode::kFp32))
WREN_LINEAR_CUDA_TEST(CudaTf32, check_linear<CudaKernels>(602, MathMode::kTf32))
WREN_LINEAR_CUDA_TEST(CudaRerunsAreBitIdentical, check_deterministic<CudaKernels>(603))

#undef WREN_LINEAR_CUDA_TEST

// The split-K forward of fc1 at a small batch needs workspace; N = 0 is a no-op except for
// the weight gradient, which becomes 0.
TEST(LinearKernels, WorkspaceAndEmptyBatch) {
  EXPECT_GT(wren::emu_kernels::linear_workspace_bytes({3, 3136, 128}, MathMode::kFp32), 0u);
  EXPECT_EQ(wren::emu_kernels::linear_workspace_bytes({3, 128, 10}, MathMode::kFp32), 0u);
  const LinearDims d{0, 5, 4};
  std::vector<float> dw(20, NAN), db(4, NAN);
  wren::emu_kernels::linear_forward(d, MathMode::kFp32, nullptr, nullptr, nullptr, nullptr, nullptr,
                                    nullptr);
  wren::emu_kernels::linear_backward_data(d, MathMode::kFp32, nullptr, nullptr, nullptr, nullptr,
                                          nullptr);
  wren::emu_kernels::linear_backward_weights(d, MathMode::kFp32, nullptr, nullptr, dw.data(),
                                             db.data(), nullptr, nullptr);
  ASSERT_EQ(wren::emu::take_error(), "");
  for (float v : dw) EXPECT_EQ(v, 0.0f);
  for (float v : db) EXPECT_EQ(v, 0.0f);
}

TEST(LinearKernels, RejectsBadArguments) {
  std::vector<float> buf(64, 1.0f);
  float* p = buf.data();
  auto expect_bad = [](auto call, const std::string& needle) {
    try {
      call();
      ADD_FAILURE() << "no exception; expected one mentioning '" << needle << "'";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_bad(
      [&] {
        wren::emu_kernels::linear_forward({2, 0, 3}, MathMode::kFp32, p, p, p, p, nullptr, nullptr);
      },
      "linear_forward: in and out must be positive (N >= 0) (N=2 in=0 out=3)");
  expect_bad(
      [&] {
        wren::emu_kernels::linear_backward_data({-1, 2, 3}, MathMode::kTf32, p, p, p, nullptr,
                                                nullptr);
      },
      "linear_backward_data: in and out must be positive (N >= 0) (N=-1 in=2 out=3)");
  expect_bad(
      [&] {
        wren::emu_kernels::linear_backward_weights({100000, 100000, 3}, MathMode::kFp32, p, p, p, p,
                                                   nullptr, nullptr);
      },
      "exceeds 2^31 - 1024 elements (32-bit indexing) (N=100000 in=100000 out=3)");
  expect_bad(
      [&] {
        wren::emu_kernels::linear_forward({2, 3, 4}, MathMode::kFp32, nullptr, p, p, p, nullptr,
                                          nullptr);
      },
      "linear_forward: x is null (N=2 in=3 out=4)");
  std::vector<float> big(3 * 3136 + 3136 * 128, 1.0f);
  expect_bad(
      [&] {
        wren::emu_kernels::linear_forward({3, 3136, 128}, MathMode::kFp32, big.data(), big.data(),
                                          nullptr, big.data(), nullptr, nullptr);
      },
      "bytes of workspace, got null (N=3 in=3136 out=128)");
  ASSERT_EQ(wren::emu::take_error(), "");
}

}  // namespace
