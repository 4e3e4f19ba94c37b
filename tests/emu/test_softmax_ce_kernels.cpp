// kernels/softmax_ce/softmax_ce.cu against the CPU reference (kernels/softmax_ce/reference.cpp, float): on the
// emulator under the forward, reverse and random fiber schedules, and on a GPU when one is
// present.
//
// Cases: C = 10 (a thread per position), C = 32 over two blocks, C = 33 / 999 (a warp per row,
// single classes), C = 1000 and C = 40 (a warp per row, 4-class chunks: float4), C = 1; the
// per-pixel form (S = 63; S = 2560 with the denominator pre-pass and a multi-block loss);
// 1000 rows of C = 40 (pre-pass with the warp path); label smoothing, class weights,
// ignore_index (−100, and one inside [0, C)), every position ignored, every remaining label of
// weight 0, N = 0. Each case runs with both outputs, the loss only and the gradient only
// (the output not asked for must stay untouched), with dloss = 0.37.
//
// Tolerance: |kernel − reference| ≤ 2^-23·|reference| (one fp32 ulp) + 1e-15. The kernel forms
// the per-position values with the reference's double expressions; only summation orders
// differ (tree sums for the denominator, Σ_c w_c and the loss, and Σ exp in the warp path),
// which changes the doubles by ~1e-16 relative, so after the single rounding to float a result
// is the reference's or a neighbour (the 1e-15 absolute term covers gradients that are 0 up
// to double rounding: |g| ~ 1e-2 here). Degenerate denominators must give exact zeros. Every
// schedule (three runs) must give the same bits; so must unaligned pointers (scalar loads) and
// aligned ones (float4).
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

#include "emu/emu.h"
#include "softmax_ce/softmax_ce.h"
#include "softmax_ce/softmax_ce.h"

#if defined(WREN_HAVE_CUDA)
#include <cuda_runtime.h>

#include "common/runtime.h"
#endif

namespace {

using wren::SoftmaxCeDims;
using wren::SoftmaxCeOptions;

// --- Device memory for both backends -------------------------------------------------------------

// `count` elements starting `offset` elements after a 256-byte aligned allocation.
template <class T>
class Buffer {
 public:
  Buffer(bool gpu, const std::vector<T>& host, size_t offset = 0)
      : gpu_(gpu), count_(host.size()), offset_(offset) {
    const size_t bytes = std::max<size_t>((count_ + offset_) * sizeof(T), 16);
#if defined(WREN_HAVE_CUDA)
    if (gpu_) {
      void* p = nullptr;
      EXPECT_EQ(cudaMalloc(&p, bytes), cudaSuccess);
      base_ = p;
      if (count_ > 0) {
        EXPECT_EQ(cudaMemcpy(get(), host.data(), count_ * sizeof(T), cudaMemcpyHostToDevice),
                  cudaSuccess);
      }
      return;
    }
#endif
    base_ = wren::emu::malloc(bytes);
    if (count_ > 0) std::memcpy(get(), host.data(), count_ * sizeof(T));
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer() {
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
    std::vector<T> out(count_);
    if (count_ == 0) return out;
#if defined(WREN_HAVE_CUDA)
    if (gpu_) {
      EXPECT_EQ(cudaMemcpy(out.data(), get(), count_ * sizeof(T), cudaMemcpyDeviceToHost),
                cudaSuccess);
      return out;
    }
#endif
    std::memcpy(out.data(), get(), count_ * sizeof(T));
    return out;
  }

 private:
  bool gpu_;
  size_t count_, offset_;
  void* base_ = nullptr;
};

struct EmuCe {
  static constexpr bool kGpu = false;
  static constexpr const char* kName = "emu";
  static size_t ws_bytes(SoftmaxCeDims d) { return wren::emu_kernels::softmax_ce_workspace_bytes(d); }
  static void run(SoftmaxCeDims d, SoftmaxCeOptions o, const float* z, const int32_t* y,
                  const float* w, float dloss, float* loss, float* g, void* ws) {
    wren::emu_kernels::softmax_cross_entropy(d, o, z, y, w, dloss, loss, g, ws, nullptr);
  }
  static std::string finish() { return wren::emu::take_error(); }
};

#if defined(WREN_HAVE_CUDA)
struct CudaCe {
  static constexpr bool kGpu = true;
  static constexpr const char* kName = "cuda";
  static size_t ws_bytes(SoftmaxCeDims d) {
    return wren::cuda_kernels::softmax_ce_workspace_bytes(d);
  }
  static void run(SoftmaxCeDims d, SoftmaxCeOptions o, const float* z, const int32_t* y,
                  const float* w, float dloss, float* loss, float* g, void* ws) {
    wren::cuda_kernels::softmax_cross_entropy(d, o, z, y, w, dloss, loss, g, ws, nullptr);
  }
  static std::string finish() {
    const cudaError_t e = cudaDeviceSynchronize();
    return e == cudaSuccess ? "" : cudaGetErrorString(e);
  }
};
#endif

// --- Cases ---------------------------------------------------------------------------------------

enum class Labels { kRandom, kAllIgnored, kZeroWeight };

struct CeCase {
  const char* name;
  int n, c, s;
  double smoothing;
  bool weights;
  int ignore_percent;
  int32_t ignore_index = -100;
  Labels labels = Labels::kRandom;
};

const CeCase kCases[] = {
    {"c10", 37, 10, 1, 0.0, false, 10},
    {"c10_smooth_weights", 37, 10, 1, 0.1, true, 10},
    {"c32_two_blocks", 300, 32, 1, 0.05, false, 5},
    {"c33_rows", 20, 33, 1, 0.1, true, 10},
    {"c40_rows_prepass", 1000, 40, 1, 0.1, true, 10},
    {"c999_rows", 11, 999, 1, 0.2, true, 10},
    {"c1000_rows_float4", 19, 1000, 1, 0.1, true, 10},
    {"c1000_plain", 19, 1000, 1, 0.0, false, 0},
    {"c1", 9, 1, 1, 0.1, true, 0},
    {"pixel_s63", 3, 5, 63, 0.1, true, 20},
    {"pixel_s2560_prepass", 2, 3, 2560, 0.0, true, 15},
    {"ignore_index_in_range", 40, 10, 1, 0.1, false, 0, 2},
    {"all_ignored", 12, 10, 1, 0.1, true, 0, -100, Labels::kAllIgnored},
    {"all_ignored_pixel", 2, 4, 30, 0.0, false, 0, -100, Labels::kAllIgnored},
    {"zero_weights", 25, 10, 1, 0.1, true, 10, -100, Labels::kZeroWeight},
    {"zero_weights_rows", 9, 64, 1, 0.0, true, 0, -100, Labels::kZeroWeight},
    {"empty_batch", 0, 10, 1, 0.1, true, 0},
};

std::string describe(const CeCase& c) {
  return std::string(c.name) + " [N=" + std::to_string(c.n) + ", C=" + std::to_string(c.c) +
         ", S=" + std::to_string(c.s) + "]";
}

float nonzero_normal(std::mt19937& rng, float scale) {
  std::normal_distribution<float> normal(0.0f, scale);
  float v = 0.0f;
  while (v == 0.0f) v = normal(rng);
  return v;
}

struct Inputs {
  SoftmaxCeDims d;
  SoftmaxCeOptions o;
  std::vector<float> logits;
  std::vector<int32_t> labels;
  std::vector<float> weights;  // empty: none
};

Inputs make_inputs(const CeCase& cc, uint32_t seed) {
  std::mt19937 rng(seed);
  Inputs in;
  in.d.n = cc.n;
  in.d.c = cc.c;
  in.d.s = cc.s;
  in.o.label_smoothing = cc.smoothing;
  in.o.ignore_index = cc.ignore_index;
  const size_t positions = static_cast<size_t>(cc.n) * cc.s;
  in.logits.resize(positions * cc.c);
  for (float& z : in.logits) z = nonzero_normal(rng, 2.0f);
  std::uniform_int_distribution<int> percent(0, 99);
  // kZeroWeight: labels only from the first half of the classes, whose weights are 0.
  const int label_classes = cc.labels == Labels::kZeroWeight ? std::max(cc.c / 2, 1) : cc.c;
  std::uniform_int_distribution<int32_t> label(0, label_classes - 1);
  in.labels.resize(positions);
  for (int32_t& y : in.labels) {
    y = label(rng);
    if (cc.labels == Labels::kAllIgnored || percent(rng) < cc.ignore_percent) y = cc.ignore_index;
  }
  if (cc.weights) {
    std::uniform_real_distribution<float> weight(0.25f, 2.0f);
    in.weights.resize(cc.c);
    for (int k = 0; k < cc.c; ++k) {
      in.weights[k] = cc.labels == Labels::kZeroWeight && k < label_classes ? 0.0f : weight(rng);
    }
  }
  return in;
}

struct Reference {
  float loss;
  std::vector<float> dlogits;
  bool degenerate;  // denominator 0: exact zeros expected
};

constexpr float kDloss = 0.37f;

Reference reference(const Inputs& in) {
  Reference r;
  const float* w = in.weights.empty() ? nullptr : in.weights.data();
  wren::cpu::softmax_cross_entropy_forward<float>(in.d, in.o, in.logits.data(), in.labels.data(),
                                                  w, &r.loss);
  r.dlogits.assign(in.logits.size(), 0.0f);
  wren::cpu::softmax_cross_entropy_backward<float>(in.d, in.o, in.logits.data(), in.labels.data(),
                                                   w, kDloss, r.dlogits.data());
  double den = 0.0;
  for (int32_t y : in.labels) {
    if (y != in.o.ignore_index) den += w ? w[y] : 1.0;
  }
  r.degenerate = den == 0.0;
  return r;
}

// --- Running and comparing -----------------------------------------------------------------------

constexpr float kSentinel = 7.25f;  // outputs start as this, never a correct result
constexpr double kRtol = 0x1p-23;   // one fp32 ulp
constexpr double kAtol = 1e-15;

enum class Want { kBoth, kLoss, kGrad, kNone };
const char* want_name(Want w) {
  switch (w) {
    case Want::kBoth:
      return "loss+grad";
    case Want::kLoss:
      return "loss only";
    case Want::kGrad:
      return "grad only";
    case Want::kNone:
      return "nothing";
  }
  return "?";
}

struct Output {
  float loss = kSentinel;
  std::vector<float> dlogits;
};

template <class K>
Output run(const Inputs& in, Want want, size_t offset = 0) {
  Buffer<float> z(K::kGpu, in.logits, offset);
  Buffer<int32_t> y(K::kGpu, in.labels);
  Buffer<float> w(K::kGpu, in.weights);
  Buffer<float> loss(K::kGpu, std::vector<float>{kSentinel});
  Buffer<float> g(K::kGpu, std::vector<float>(in.logits.size(), kSentinel), offset);
  const size_t ws_bytes = K::ws_bytes(in.d);
  Buffer<unsigned char> ws(K::kGpu, std::vector<unsigned char>(ws_bytes, 0xff));
  const bool want_loss = want == Want::kBoth || want == Want::kLoss;
  const bool want_grad = want == Want::kBoth || want == Want::kGrad;
  K::run(in.d, in.o, z.get(), y.get(), in.weights.empty() ? nullptr : w.get(), kDloss,
         want_loss ? loss.get() : nullptr, want_grad ? g.get() : nullptr,
         ws_bytes > 0 ? ws.get() : nullptr);
  EXPECT_EQ(K::finish(), "");
  Output out;
  out.loss = loss.read()[0];
  out.dlogits = g.read();
  return out;
}

::testing::AssertionResult close(float actual, float ref) {
  if (std::fabs(static_cast<double>(actual) - ref) <= kAtol + kRtol * std::fabs(ref)) {
    return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure() << actual << " vs reference " << ref << " (diff "
                                       << static_cast<double>(actual) - ref << ")";
}

void expect_bits(const std::vector<float>& a, const std::vector<float>& b,
                 const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  size_t bad = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::bit_cast<uint32_t>(a[i]) != std::bit_cast<uint32_t>(b[i]) && ++bad <= 5) {
      ADD_FAILURE() << what << " [" << i << "]: " << a[i] << " vs " << b[i];
    }
  }
  EXPECT_EQ(bad, 0u) << what;
}

// Checks one run's outputs against the reference (and the outputs not asked for untouched).
void check_output(const Output& out, const Reference& ref, Want want, const std::string& what) {
  const bool want_loss = want == Want::kBoth || want == Want::kLoss;
  const bool want_grad = want == Want::kBoth || want == Want::kGrad;
  if (!want_loss) {
    EXPECT_EQ(out.loss, kSentinel) << what << ": loss written";
  } else if (ref.degenerate) {
    EXPECT_EQ(std::bit_cast<uint32_t>(out.loss), 0u) << what << ": loss " << out.loss;
  } else {
    EXPECT_TRUE(close(out.loss, ref.loss)) << what << ": loss";
  }
  size_t bad = 0;
  for (size_t i = 0; i < out.dlogits.size(); ++i) {
    const float a = out.dlogits[i];
    ::testing::AssertionResult ok = ::testing::AssertionSuccess();
    if (!want_grad) {
      if (a != kSentinel) ok = ::testing::AssertionFailure() << "written: " << a;
    } else if (ref.degenerate) {
      if (std::bit_cast<uint32_t>(a) != 0u) ok = ::testing::AssertionFailure() << a << " not +0";
    } else {
      ok = close(a, ref.dlogits[i]);
    }
    if (!ok && ++bad <= 5) ADD_FAILURE() << what << ": dlogits[" << i << "] " << ok.message();
  }
  EXPECT_EQ(bad, 0u) << what << ": dlogits";
}

template <class F>
void under_all_schedules(F check) {
  for (auto schedule : {wren::emu::Schedule::kForward, wren::emu::Schedule::kReverse,
                        wren::emu::Schedule::kRandom}) {
    wren::emu::set_schedule(schedule, 31);
    const char* name = schedule == wren::emu::Schedule::kForward
                           ? "forward"
                           : (schedule == wren::emu::Schedule::kReverse ? "reverse" : "random");
    check(std::string(name) + " schedule");
  }
  wren::emu::set_schedule(wren::emu::Schedule::kForward);
}

TEST(SoftmaxCeKernels, EmuMatchesCpu) {
  uint32_t seed = 100;
  for (const CeCase& cc : kCases) {
    const Inputs in = make_inputs(cc, ++seed);
    const Reference ref = reference(in);
    for (Want want : {Want::kBoth, Want::kLoss, Want::kGrad}) {
      const std::string what = "emu " + describe(cc) + " " + want_name(want);
      Output first;
      bool have_first = false;
      under_all_schedules([&](const std::string& schedule) {
        // The partial requests take the same barriers: the forward schedule is enough (this
        // keeps the ASan build's run short).
        if (want != Want::kBoth && have_first) return;
        const Output out = run<EmuCe>(in, want);
        check_output(out, ref, want, what + ", " + schedule);
        if (!have_first) {
          first = out;
          have_first = true;
          return;
        }
        // The same bits under every schedule.
        EXPECT_EQ(std::bit_cast<uint32_t>(out.loss), std::bit_cast<uint32_t>(first.loss))
            << what << ", " << schedule;
        expect_bits(out.dlogits, first.dlogits, what + ", " + schedule + " vs forward");
      });
    }
  }
}

TEST(SoftmaxCeKernels, EmuNothingAskedWritesNothing) {
  const Inputs in = make_inputs(kCases[1], 7);
  const Output out = run<EmuCe>(in, Want::kNone);
  EXPECT_EQ(out.loss, kSentinel);
  for (float g : out.dlogits) ASSERT_EQ(g, kSentinel);
}

// Float4 against scalar loads (logits and dlogits one float off a 16-byte boundary) give the
// same bits, under another random schedule (repeated runs are compared in EmuMatchesCpu).
TEST(SoftmaxCeKernels, EmuAlignmentIndependent) {
  wren::emu::set_schedule(wren::emu::Schedule::kRandom, 5);
  for (const CeCase& cc : {kCases[6], kCases[4], kCases[10]}) {
    const Inputs in = make_inputs(cc, 77);
    const Output a = run<EmuCe>(in, Want::kBoth);
    const Output shifted = run<EmuCe>(in, Want::kBoth, 1);
    const std::string what = "emu " + describe(cc);
    EXPECT_EQ(std::bit_cast<uint32_t>(a.loss), std::bit_cast<uint32_t>(shifted.loss)) << what;
    expect_bits(a.dlogits, shifted.dlogits, what + " unaligned");
  }
  wren::emu::set_schedule(wren::emu::Schedule::kForward);
}

// A grid larger than the kernel's cap: 4200 rows (a warp each, 8 per block) exceed the 512
// main blocks, so warps loop over rows (grid-stride) and the loss has 512 partials. One
// schedule (the kernel has the same barriers as above).
TEST(SoftmaxCeKernels, EmuGridStrideBeyondTheCap) {
  const CeCase cc{"rows_grid_stride", 4200, 36, 1, 0.1, true, 5};
  const Inputs in = make_inputs(cc, 99);
  check_output(run<EmuCe>(in, Want::kBoth), reference(in), Want::kBoth, "emu " + describe(cc));
}

// A label outside [0, C) (a caller error) is not read past: the loss and the gradient are NaN.
TEST(SoftmaxCeKernels, EmuLabelOutOfRangeGivesNan) {
  for (const CeCase& cc : {kCases[0], kCases[6], kCases[9]}) {
    Inputs in = make_inputs(cc, 3);
    in.labels[in.labels.size() / 2] = cc.c;  // one past the last class
    const Output out = run<EmuCe>(in, Want::kBoth);
    EXPECT_TRUE(std::isnan(out.loss)) << describe(cc);
    EXPECT_TRUE(std::isnan(out.dlogits[0])) << describe(cc);
  }
}

template <class Fn>
void expect_invalid(Fn fn, const std::string& needle) {
  try {
    fn();
    ADD_FAILURE() << "no exception; expected one mentioning '" << needle << "'";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

// Host-side validation happens before anything is enqueued, so the CUDA launchers can be
// checked without a GPU.
template <class K>
void check_rejects() {
  std::vector<float> z(40, 1.0f), ws(64, 0.0f);
  std::vector<int32_t> y(4, 1);
  float loss = 0.0f;
  SoftmaxCeDims d;
  d.n = 4;
  d.c = 10;
  SoftmaxCeOptions o;
  expect_invalid([&] { K::run({-1, 10, 1}, o, z.data(), y.data(), nullptr, 1, &loss, nullptr, ws.data()); },
                 "dims");
  expect_invalid([&] { K::run({4, 0, 1}, o, z.data(), y.data(), nullptr, 1, &loss, nullptr, ws.data()); },
                 "C >= 1");
  expect_invalid([&] { K::run({4, 10, 0}, o, z.data(), y.data(), nullptr, 1, &loss, nullptr, ws.data()); },
                 "S >= 1");
  expect_invalid([&] { (void)K::ws_bytes({4, 0, 1}); }, "dims");
  SoftmaxCeOptions smooth;
  smooth.label_smoothing = 1.5;
  expect_invalid([&] { K::run(d, smooth, z.data(), y.data(), nullptr, 1, &loss, nullptr, ws.data()); },
                 "label_smoothing");
  smooth.label_smoothing = std::nan("");
  expect_invalid([&] { K::run(d, smooth, z.data(), y.data(), nullptr, 1, &loss, nullptr, ws.data()); },
                 "label_smoothing");
  expect_invalid([&] { K::run(d, o, nullptr, y.data(), nullptr, 1, &loss, nullptr, ws.data()); },
                 "logits");
  expect_invalid([&] { K::run(d, o, z.data(), nullptr, nullptr, 1, &loss, nullptr, ws.data()); },
                 "labels");
  // A size whose plan needs a workspace.
  SoftmaxCeDims big;
  big.n = 5000;
  big.c = 10;
  ASSERT_GT(K::ws_bytes(big), 0u);
  std::vector<float> zb(50000, 1.0f);
  std::vector<int32_t> yb(5000, 1);
  expect_invalid([&] { K::run(big, o, zb.data(), yb.data(), nullptr, 1, &loss, nullptr, nullptr); },
                 "workspace");
  expect_invalid(
      [&] {
        K::run(big, o, zb.data(), yb.data(), nullptr, 1, &loss, nullptr,
               reinterpret_cast<unsigned char*>(ws.data()) + 4);
      },
      "workspace");
}

TEST(SoftmaxCeKernels, RejectsBadArguments) {
  check_rejects<EmuCe>();
#if defined(WREN_HAVE_CUDA)
  check_rejects<CudaCe>();
#endif
}

TEST(SoftmaxCeKernels, CudaMatchesCpu) {
#if defined(WREN_HAVE_CUDA)
  if (wren::kernels::device_count() == 0) GTEST_SKIP() << "no CUDA device on this machine";
  uint32_t seed = 100;
  for (const CeCase& cc : kCases) {
    const Inputs in = make_inputs(cc, ++seed);
    const Reference ref = reference(in);
    for (Want want : {Want::kBoth, Want::kLoss, Want::kGrad}) {
      const std::string what = "cuda " + describe(cc) + " " + want_name(want);
      const Output out = run<CudaCe>(in, want);
      check_output(out, ref, want, what);
      const Output again = run<CudaCe>(in, want);
      EXPECT_EQ(std::bit_cast<uint32_t>(out.loss), std::bit_cast<uint32_t>(again.loss)) << what;
      expect_bits(out.dlogits, again.dlogits, what + " second run");
    }
  }
#else
  GTEST_SKIP() << "built without the CUDA backend (WREN_HAVE_CUDA off)";
#endif
}

}  // namespace
