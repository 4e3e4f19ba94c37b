// kernels/batch_norm/batch_norm.cu against the CPU reference (kernels/batch_norm/reference.cpp, float): on the
// emulator under the forward, reverse and random fiber schedules, and on a GPU when one is
// present.
//
// Shapes: N·H·W = 2 (1×1 planes; and N = 1 with 1×2 planes), odd C with 28×28 planes (float4
// units), 7×7 planes (single-float units), C = 300 with 2×2 planes (many channels, a single
// 32-thread block each), 48×1×28×28 (37 blocks per channel, so warp 0 of the apply kernels
// adds more than one partial per lane), affine off (gamma = beta = nullptr), a channel whose
// mean is 1e4 times its standard deviation, empty batches (N = 0, W = 0), and one channel of
// 266 240 values (the split count at its cap). Every shape runs the four launchers; the
// backward passes with every output, with dx = nullptr, and with dgamma alone.
//
// Tolerances, |kernel − reference| ≤ 2^-23·|reference| + atol:
//  - training forward (y, save_mean, save_invstd, running stats) and training backward (dx,
//    dgamma, dbeta), inference backward dgamma / dbeta: one fp32 ulp. The kernels sum in
//    double in another order than the reference (and form the variance from shifted sums
//    instead of a second pass); the doubles differ by ~1e-16 relative (bounded by
//    (M+1)·2^-53 for the variance), far below the fp32 rounding, so a result is the
//    reference's float or its neighbour. atol = 1e-12 covers values that are 0 up to double
//    rounding (y ≈ 0 where γ·x̂ ≈ −β, dx ≈ 0); for the sums it is 1e-9, for a Σ that nearly
//    cancels (the order difference is ~√M·2^-53·Σ|terms| ≲ 1e-11 here; the one-ulp term,
//    ≥ 2^-24·|Σ| with |Σ| ~ 1..1e3, dominates otherwise).
//  - inference forward y and inference dx: no sums, the reference's operations: bit for bit.
// Every schedule, a repeated run and unaligned pointers (scalar loads instead of float4) give
// the same bits; y = x and dx = dy in place give the out-of-place results.
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

#include "batch_norm/batch_norm.h"
#include "emu/emu.h"
#include "batch_norm/batch_norm.h"

#if defined(WREN_HAVE_CUDA)
#include <cuda_runtime.h>

#include "common/runtime.h"
#endif

namespace {

using wren::BatchNormDims;

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

#define WREN_BN_KERNELS(Name, ns, gpu)                                                          \
  struct Name {                                                                                 \
    static constexpr bool kGpu = gpu;                                                           \
    static constexpr const char* kName = #ns;                                                   \
    static size_t ws_bytes(BatchNormDims d) { return wren::ns::batch_norm2d_workspace_bytes(d); } \
    static void forward_train(BatchNormDims d, float eps, float mom, const float* x,            \
                              const float* g, const float* b, float* y, float* sm, float* si,   \
                              float* rm, float* rv, void* ws) {                                 \
      wren::ns::batch_norm2d_forward_train(d, eps, mom, x, g, b, y, sm, si, rm, rv, ws,         \
                                           nullptr);                                            \
    }                                                                                           \
    static void forward_infer(BatchNormDims d, float eps, const float* x, const float* g,       \
                              const float* b, const float* rm, const float* rv, float* y) {     \
      wren::ns::batch_norm2d_forward_infer(d, eps, x, g, b, rm, rv, y, nullptr);                \
    }                                                                                           \
    static void backward_train(BatchNormDims d, const float* x, const float* dy, const float* g, \
                               const float* sm, const float* si, float* dx, float* dg,          \
                               float* db, void* ws) {                                           \
      wren::ns::batch_norm2d_backward_train(d, x, dy, g, sm, si, dx, dg, db, ws, nullptr);      \
    }                                                                                           \
    static void backward_infer(BatchNormDims d, float eps, const float* x, const float* dy,     \
                               const float* g, const float* rm, const float* rv, float* dx,     \
                               float* dg, float* db, void* ws) {                                \
      wren::ns::batch_norm2d_backward_infer(d, eps, x, dy, g, rm, rv, dx, dg, db, ws, nullptr); \
    }                                                                                           \
    static std::string finish();                                                                \
  };

WREN_BN_KERNELS(EmuBn, emu_kernels, false)
std::string EmuBn::finish() {
  return wren::emu::take_error();
}
#if defined(WREN_HAVE_CUDA)
WREN_BN_KERNELS(CudaBn, cuda_kernels, true)
std::string CudaBn::finish() {
  const cudaError_t e = cudaDeviceSynchronize();
  return e == cudaSuccess ? "" : cudaGetErrorString(e);
}
#endif
#undef WREN_BN_KERNELS

// --- Cases and inputs ------------------------------------------------------------------------------

struct BnCase {
  const char* name;
  int n, c, h, w;
  bool affine = true;
  float center = 0.5f;  // the inputs' mean (per channel: center·(1 + channel % 3))
  float spread = 2.0f;  // and standard deviation
};

const BnCase kCases[] = {
    {"nhw2_1x1", 2, 3, 1, 1},
    {"nhw2_n1", 1, 5, 1, 2},
    {"odd_c_28x28", 4, 5, 28, 28},
    {"7x7_scalar_units", 3, 7, 7, 7},
    {"c300_2x2", 2, 300, 2, 2},
    {"many_splits", 48, 1, 28, 28},
    {"affine_off_14x14", 4, 3, 14, 14, false},
    {"mean_1e4_std", 4, 2, 6, 6, true, 1000.0f, 0.1f},
    {"empty_n0", 0, 3, 5, 5},
    {"empty_w0", 2, 3, 4, 0},
};

std::string describe(const BnCase& c) {
  return std::string(c.name) + " [" + std::to_string(c.n) + "," + std::to_string(c.c) + "," +
         std::to_string(c.h) + "," + std::to_string(c.w) + "]";
}

float nonzero_normal(std::mt19937& rng, float mean, float scale) {
  std::normal_distribution<float> normal(mean, scale);
  float v = 0.0f;
  while (v == 0.0f) v = normal(rng);
  return v;
}

struct Inputs {
  BatchNormDims d;
  float eps = 1e-5f, momentum = 0.1f;
  std::vector<float> x, dy, gamma, beta, running_mean, running_var;  // gamma/beta empty: off
};

size_t elements(const BatchNormDims& d) {
  return static_cast<size_t>(d.n) * d.c * d.h * d.w;
}

Inputs make_inputs(const BnCase& bc, uint32_t seed) {
  std::mt19937 rng(seed);
  Inputs in;
  in.d.n = bc.n;
  in.d.c = bc.c;
  in.d.h = bc.h;
  in.d.w = bc.w;
  const size_t hw = static_cast<size_t>(bc.h) * bc.w;
  in.x.resize(elements(in.d));
  in.dy.resize(elements(in.d));
  for (size_t i = 0; i < in.x.size(); ++i) {
    const int channel = static_cast<int>((i / hw) % bc.c);
    in.x[i] = nonzero_normal(rng, bc.center * static_cast<float>(1 + channel % 3), bc.spread);
    in.dy[i] = nonzero_normal(rng, 0.0f, 1.0f);
  }
  std::uniform_real_distribution<float> positive(0.5f, 1.5f);
  if (bc.affine) {
    for (int k = 0; k < bc.c; ++k) {
      in.gamma.push_back(positive(rng));
      in.beta.push_back(nonzero_normal(rng, 0.0f, 1.0f));
    }
  }
  for (int k = 0; k < bc.c; ++k) {
    in.running_mean.push_back(nonzero_normal(rng, 0.0f, 1.0f));
    in.running_var.push_back(positive(rng) * 2.0f);
  }
  return in;
}

const float* or_null(const std::vector<float>& v) {
  return v.empty() ? nullptr : v.data();
}

// --- Comparisons ---------------------------------------------------------------------------------

constexpr float kFill = 7.25f;  // outputs start as this
constexpr double kRtol = 0x1p-23;
constexpr double kAtolValues = 1e-12;
constexpr double kAtolSums = 1e-9;

// tolerance < 0: bit for bit.
void expect_close(const std::vector<float>& actual, const std::vector<float>& ref,
                  double atol, const std::string& what) {
  ASSERT_EQ(actual.size(), ref.size()) << what;
  size_t bad = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double a = actual[i], r = ref[i];
    const bool ok = atol < 0 ? std::bit_cast<uint32_t>(actual[i]) == std::bit_cast<uint32_t>(ref[i])
                             : std::fabs(a - r) <= atol + kRtol * std::fabs(r);
    if (!ok && ++bad <= 5) {
      ADD_FAILURE() << what << " [" << i << "]: " << actual[i] << " vs reference " << ref[i]
                    << " (diff " << a - r << ")";
    }
  }
  EXPECT_EQ(bad, 0u) << what;
}
constexpr double kExact = -1.0;

void expect_bits(const std::vector<float>& a, const std::vector<float>& b,
                 const std::string& what) {
  expect_close(a, b, kExact, what);
}

// --- One pass of all four launchers ----------------------------------------------------------------

struct Outputs {
  bool all = true;  // false: a Calls::kBarriers run (only the training outputs)
  // forward train
  std::vector<float> y, save_mean, save_invstd, running_mean, running_var;
  // forward infer
  std::vector<float> y_infer;
  // backward train / infer, every output requested
  std::vector<float> dx, dgamma, dbeta, dx_infer, dgamma_infer, dbeta_infer;
  // backward train with dx = nullptr; with dgamma only
  std::vector<float> dgamma_no_dx, dbeta_no_dx, dgamma_alone, dgamma_infer_no_dx;
};

// kAll: the four launchers, the backward passes also with partial outputs. kBarriers: only the
// training forward and backward with every output — the launches whose kernels have barriers
// and reductions (what other schedules can change), at a third of the emulator time.
enum class Calls { kAll, kBarriers };

template <class K>
Outputs run_all(const Inputs& in, size_t offset = 0, Calls calls = Calls::kAll) {
  const BatchNormDims& d = in.d;
  const size_t n = elements(d), c = static_cast<size_t>(d.c);
  const std::vector<float> fill_n(n, kFill), fill_c(c, kFill);
  const size_t ws_bytes = K::ws_bytes(d);
  Outputs out;
  out.all = calls == Calls::kAll;
  Buffer<unsigned char> ws(K::kGpu, std::vector<unsigned char>(std::max<size_t>(ws_bytes, 1), 0xff));
  Buffer<float> x(K::kGpu, in.x, offset), dy(K::kGpu, in.dy, offset);
  Buffer<float> gamma(K::kGpu, in.gamma), beta(K::kGpu, in.beta);
  const float* g = in.gamma.empty() ? nullptr : gamma.get();
  const float* b = in.beta.empty() ? nullptr : beta.get();
  {
    Buffer<float> y(K::kGpu, fill_n, offset), sm(K::kGpu, fill_c), si(K::kGpu, fill_c);
    Buffer<float> rm(K::kGpu, in.running_mean), rv(K::kGpu, in.running_var);
    K::forward_train(d, in.eps, in.momentum, x.get(), g, b, y.get(), sm.get(), si.get(), rm.get(),
                     rv.get(), ws.get());
    EXPECT_EQ(K::finish(), "");
    out.y = y.read();
    out.save_mean = sm.read();
    out.save_invstd = si.read();
    out.running_mean = rm.read();
    out.running_var = rv.read();
  }
  Buffer<float> rm(K::kGpu, in.running_mean), rv(K::kGpu, in.running_var);
  if (calls == Calls::kAll) {
    Buffer<float> y(K::kGpu, fill_n, offset);
    K::forward_infer(d, in.eps, x.get(), g, b, rm.get(), rv.get(), y.get());
    EXPECT_EQ(K::finish(), "");
    out.y_infer = y.read();
  }
  // The backward passes use the CPU's saved statistics, so that they are checked on their own.
  std::vector<float> save_mean(c), save_invstd(c), y_cpu(n), rm_cpu = in.running_mean,
                                                           rv_cpu = in.running_var;
  wren::cpu::batch_norm2d_forward_train<float>(d, in.eps, in.momentum, in.x.data(),
                                               or_null(in.gamma), or_null(in.beta), y_cpu.data(),
                                               save_mean.data(), save_invstd.data(),
                                               rm_cpu.data(), rv_cpu.data());
  Buffer<float> sm(K::kGpu, save_mean), si(K::kGpu, save_invstd);
  {
    Buffer<float> dx(K::kGpu, fill_n, offset), dg(K::kGpu, fill_c), db(K::kGpu, fill_c);
    K::backward_train(d, x.get(), dy.get(), g, sm.get(), si.get(), dx.get(), dg.get(), db.get(),
                      ws.get());
    EXPECT_EQ(K::finish(), "");
    out.dx = dx.read();
    out.dgamma = dg.read();
    out.dbeta = db.read();
  }
  if (calls == Calls::kBarriers) return out;
  {
    Buffer<float> dg(K::kGpu, fill_c), db(K::kGpu, fill_c);
    K::backward_train(d, x.get(), dy.get(), g, sm.get(), si.get(), nullptr, dg.get(), db.get(),
                      ws.get());
    EXPECT_EQ(K::finish(), "");
    out.dgamma_no_dx = dg.read();
    out.dbeta_no_dx = db.read();
  }
  {
    Buffer<float> dg(K::kGpu, fill_c);
    K::backward_train(d, x.get(), dy.get(), g, sm.get(), si.get(), nullptr, dg.get(), nullptr,
                      ws.get());
    EXPECT_EQ(K::finish(), "");
    out.dgamma_alone = dg.read();
  }
  {
    Buffer<float> dx(K::kGpu, fill_n, offset), dg(K::kGpu, fill_c), db(K::kGpu, fill_c);
    K::backward_infer(d, in.eps, x.get(), dy.get(), g, rm.get(), rv.get(), dx.get(), dg.get(),
                      db.get(), ws.get());
    EXPECT_EQ(K::finish(), "");
    out.dx_infer = dx.read();
    out.dgamma_infer = dg.read();
    out.dbeta_infer = db.read();
  }
  {
    Buffer<float> dg(K::kGpu, fill_c);
    K::backward_infer(d, in.eps, x.get(), dy.get(), g, rm.get(), rv.get(), nullptr, dg.get(),
                      nullptr, ws.get());
    EXPECT_EQ(K::finish(), "");
    out.dgamma_infer_no_dx = dg.read();
  }
  return out;
}

Outputs run_reference(const Inputs& in) {
  const BatchNormDims& d = in.d;
  const size_t n = elements(d), c = static_cast<size_t>(d.c);
  const float* g = or_null(in.gamma);
  const float* b = or_null(in.beta);
  Outputs out;
  out.y.assign(n, kFill);
  out.save_mean.assign(c, kFill);
  out.save_invstd.assign(c, kFill);
  out.running_mean = in.running_mean;
  out.running_var = in.running_var;
  wren::cpu::batch_norm2d_forward_train<float>(d, in.eps, in.momentum, in.x.data(), g, b,
                                               out.y.data(), out.save_mean.data(),
                                               out.save_invstd.data(), out.running_mean.data(),
                                               out.running_var.data());
  out.y_infer.assign(n, kFill);
  wren::cpu::batch_norm2d_forward_infer<float>(d, in.eps, in.x.data(), g, b,
                                               in.running_mean.data(), in.running_var.data(),
                                               out.y_infer.data());
  out.dx.assign(n, kFill);
  out.dgamma.assign(c, kFill);
  out.dbeta.assign(c, kFill);
  wren::cpu::batch_norm2d_backward_train<float>(d, in.x.data(), in.dy.data(), g,
                                                out.save_mean.data(), out.save_invstd.data(),
                                                out.dx.data(), out.dgamma.data(), out.dbeta.data());
  out.dx_infer.assign(n, kFill);
  out.dgamma_infer.assign(c, kFill);
  out.dbeta_infer.assign(c, kFill);
  wren::cpu::batch_norm2d_backward_infer<float>(d, in.eps, in.x.data(), in.dy.data(), g,
                                                in.running_mean.data(), in.running_var.data(),
                                                out.dx_infer.data(), out.dgamma_infer.data(),
                                                out.dbeta_infer.data());
  out.dgamma_no_dx = out.dgamma;
  out.dbeta_no_dx = out.dbeta;
  out.dgamma_alone = out.dgamma;
  out.dgamma_infer_no_dx = out.dgamma_infer;
  return out;
}

void check_against_reference(const Outputs& k, const Outputs& r, const std::string& what) {
  if (!k.all) {  // Calls::kBarriers
    expect_close(k.y, r.y, kAtolValues, what + " train y");
    expect_close(k.save_mean, r.save_mean, kAtolValues, what + " save_mean");
    expect_close(k.save_invstd, r.save_invstd, kAtolValues, what + " save_invstd");
    expect_close(k.running_mean, r.running_mean, kAtolValues, what + " running_mean");
    expect_close(k.running_var, r.running_var, kAtolValues, what + " running_var");
    expect_close(k.dx, r.dx, kAtolValues, what + " train dx");
    expect_close(k.dgamma, r.dgamma, kAtolSums, what + " train dgamma");
    expect_close(k.dbeta, r.dbeta, kAtolSums, what + " train dbeta");
    return;
  }
  expect_close(k.y, r.y, kAtolValues, what + " train y");
  expect_close(k.save_mean, r.save_mean, kAtolValues, what + " save_mean");
  expect_close(k.save_invstd, r.save_invstd, kAtolValues, what + " save_invstd");
  expect_close(k.running_mean, r.running_mean, kAtolValues, what + " running_mean");
  expect_close(k.running_var, r.running_var, kAtolValues, what + " running_var");
  expect_close(k.y_infer, r.y_infer, kExact, what + " infer y");
  expect_close(k.dx, r.dx, kAtolValues, what + " train dx");
  expect_close(k.dgamma, r.dgamma, kAtolSums, what + " train dgamma");
  expect_close(k.dbeta, r.dbeta, kAtolSums, what + " train dbeta");
  expect_close(k.dgamma_no_dx, r.dgamma_no_dx, kAtolSums, what + " train dgamma (dx null)");
  expect_close(k.dbeta_no_dx, r.dbeta_no_dx, kAtolSums, what + " train dbeta (dx null)");
  expect_close(k.dgamma_alone, r.dgamma_alone, kAtolSums, what + " train dgamma alone");
  expect_close(k.dx_infer, r.dx_infer, kExact, what + " infer dx");
  expect_close(k.dgamma_infer, r.dgamma_infer, kAtolSums, what + " infer dgamma");
  expect_close(k.dbeta_infer, r.dbeta_infer, kAtolSums, what + " infer dbeta");
  expect_close(k.dgamma_infer_no_dx, r.dgamma_infer_no_dx, kAtolSums,
               what + " infer dgamma (dx null)");
}

// Compares what both ran (a Calls::kBarriers run leaves the other outputs empty).
void check_same_bits(const Outputs& a, const Outputs& b, const std::string& what) {
  if (!a.all || !b.all) {
    expect_bits(a.y, b.y, what + " train y");
    expect_bits(a.save_mean, b.save_mean, what + " save_mean");
    expect_bits(a.save_invstd, b.save_invstd, what + " save_invstd");
    expect_bits(a.running_mean, b.running_mean, what + " running_mean");
    expect_bits(a.running_var, b.running_var, what + " running_var");
    expect_bits(a.dx, b.dx, what + " train dx");
    expect_bits(a.dgamma, b.dgamma, what + " train dgamma");
    expect_bits(a.dbeta, b.dbeta, what + " train dbeta");
    return;
  }
  expect_bits(a.y, b.y, what + " train y");
  expect_bits(a.save_mean, b.save_mean, what + " save_mean");
  expect_bits(a.save_invstd, b.save_invstd, what + " save_invstd");
  expect_bits(a.running_mean, b.running_mean, what + " running_mean");
  expect_bits(a.running_var, b.running_var, what + " running_var");
  expect_bits(a.y_infer, b.y_infer, what + " infer y");
  expect_bits(a.dx, b.dx, what + " train dx");
  expect_bits(a.dgamma, b.dgamma, what + " train dgamma");
  expect_bits(a.dbeta, b.dbeta, what + " train dbeta");
  expect_bits(a.dx_infer, b.dx_infer, what + " infer dx");
  expect_bits(a.dgamma_infer, b.dgamma_infer, what + " infer dgamma");
  expect_bits(a.dbeta_infer, b.dbeta_infer, what + " infer dbeta");
  // The partial outputs equal the full ones.
  expect_bits(a.dgamma_no_dx, a.dgamma, what + " dgamma (dx null) vs with dx");
  expect_bits(a.dbeta_no_dx, a.dbeta, what + " dbeta (dx null) vs with dx");
  expect_bits(a.dgamma_alone, a.dgamma, what + " dgamma alone vs with dx");
  expect_bits(a.dgamma_infer_no_dx, a.dgamma_infer, what + " infer dgamma (dx null)");
}

TEST(BatchNormKernels, EmuMatchesCpu) {
  uint32_t seed = 300;
  for (const BnCase& bc : kCases) {
    const Inputs in = make_inputs(bc, ++seed);
    const Outputs ref = run_reference(in);
    Outputs first;
    bool have_first = false;
    for (auto schedule : {wren::emu::Schedule::kForward, wren::emu::Schedule::kReverse,
                          wren::emu::Schedule::kRandom}) {
      wren::emu::set_schedule(schedule, 41);
      const std::string what =
          "emu " + describe(bc) +
          (schedule == wren::emu::Schedule::kForward
               ? " forward"
               : (schedule == wren::emu::Schedule::kReverse ? " reverse" : " random"));
      // Every launcher under the forward schedule; the ones with barriers under all three.
      const Outputs out = run_all<EmuBn>(
          in, 0, schedule == wren::emu::Schedule::kForward ? Calls::kAll : Calls::kBarriers);
      check_against_reference(out, ref, what);
      if (have_first) {
        check_same_bits(out, first, what + " vs forward schedule");
      } else {
        first = out;
        have_first = true;
      }
    }
    wren::emu::set_schedule(wren::emu::Schedule::kForward);
  }
}

// A second run and pointers one float off a 16-byte boundary (scalar loads of the same 4-float
// units) give the same bits.
TEST(BatchNormKernels, EmuDeterministicAndAlignmentIndependent) {
  for (const BnCase& bc : {kCases[2], kCases[5], kCases[3]}) {
    const Inputs in = make_inputs(bc, 17);
    const Outputs a = run_all<EmuBn>(in);
    const Outputs again = run_all<EmuBn>(in, 0, Calls::kBarriers);
    const Outputs shifted = run_all<EmuBn>(in, 1);
    check_same_bits(again, a, "emu " + describe(bc) + " second run");
    check_same_bits(shifted, a, "emu " + describe(bc) + " unaligned");
  }
}

// One channel of 266 240 values (66 560 float4 units): the split count reaches its cap (256),
// so some threads take two units. One schedule (the kernels' barriers are covered above).
TEST(BatchNormKernels, EmuSplitCap) {
  const BnCase bc{"split_cap", 1, 1, 520, 512};
  const Inputs in = make_inputs(bc, 51);
  check_against_reference(run_all<EmuBn>(in, 0, Calls::kBarriers), run_reference(in),
                          "emu " + describe(bc));
}

// y = x (forward) and dx = dy (backward) in place.
TEST(BatchNormKernels, EmuInPlace) {
  const Inputs in = make_inputs(kCases[2], 23);
  const Outputs ref = run_all<EmuBn>(in);
  const BatchNormDims& d = in.d;
  const size_t c = static_cast<size_t>(d.c);
  Buffer<unsigned char> ws(false, std::vector<unsigned char>(EmuBn::ws_bytes(d), 0xff));
  Buffer<float> gamma(false, in.gamma), beta(false, in.beta);
  {
    Buffer<float> xy(false, in.x), sm(false, std::vector<float>(c, kFill)),
        si(false, std::vector<float>(c, kFill));
    Buffer<float> rm(false, in.running_mean), rv(false, in.running_var);
    EmuBn::forward_train(d, in.eps, in.momentum, xy.get(), gamma.get(), beta.get(), xy.get(),
                         sm.get(), si.get(), rm.get(), rv.get(), ws.get());
    ASSERT_EQ(EmuBn::finish(), "");
    expect_bits(xy.read(), ref.y, "train forward in place");
    expect_bits(sm.read(), ref.save_mean, "train forward in place: save_mean");
  }
  {
    std::vector<float> save_mean(c), save_invstd(c), y(in.x.size()), rm = in.running_mean,
                                                                     rv = in.running_var;
    wren::cpu::batch_norm2d_forward_train<float>(d, in.eps, in.momentum, in.x.data(),
                                                 in.gamma.data(), in.beta.data(), y.data(),
                                                 save_mean.data(), save_invstd.data(), rm.data(),
                                                 rv.data());
    Buffer<float> x(false, in.x), gdx(false, in.dy), sm(false, save_mean), si(false, save_invstd);
    Buffer<float> dg(false, std::vector<float>(c, kFill)), db(false, std::vector<float>(c, kFill));
    EmuBn::backward_train(d, x.get(), gdx.get(), gamma.get(), sm.get(), si.get(), gdx.get(),
                          dg.get(), db.get(), ws.get());
    ASSERT_EQ(EmuBn::finish(), "");
    expect_bits(gdx.read(), ref.dx, "train backward in place");
    expect_bits(dg.read(), ref.dgamma, "train backward in place: dgamma");
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

// Host-side validation happens before anything is enqueued (so also without a GPU).
template <class K>
void check_rejects() {
  const BatchNormDims d{2, 3, 4, 4};
  std::vector<float> v(96, 1.0f), c3(3, 1.0f);
  std::vector<double> ws(1024);
  float* p = v.data();
  float* c = c3.data();
  expect_invalid([&] { (void)K::ws_bytes({2, -3, 4, 4}); }, "negative dims");
  expect_invalid([&] { K::forward_train({-1, 3, 4, 4}, 1e-5f, 0.1f, p, c, c, p, c, c, c, c, ws.data()); },
                 "negative dims");
  expect_invalid([&] { K::forward_train({65536, 1, 256, 256}, 1e-5f, 0.1f, p, c, c, p, c, c, c, c, ws.data()); },
                 "2^31");
  expect_invalid([&] { K::forward_train(d, -1.0f, 0.1f, p, c, c, p, c, c, c, c, ws.data()); }, "eps");
  expect_invalid([&] { K::forward_train(d, NAN, 0.1f, p, c, c, p, c, c, c, c, ws.data()); }, "eps");
  expect_invalid([&] { K::forward_train(d, 1e-5f, INFINITY, p, c, c, p, c, c, c, c, ws.data()); },
                 "momentum");
  expect_invalid([&] { K::forward_train(d, 1e-5f, 0.1f, nullptr, c, c, p, c, c, c, c, ws.data()); },
                 "x must not be null");
  expect_invalid([&] { K::forward_train(d, 1e-5f, 0.1f, p, c, c, p, c, c, nullptr, c, ws.data()); },
                 "running_mean");
  expect_invalid([&] { K::forward_train(d, 1e-5f, 0.1f, p, c, c, p, c, nullptr, c, c, ws.data()); },
                 "save_invstd");
  expect_invalid([&] { K::forward_train(d, 1e-5f, 0.1f, p, c, c, p, c, c, c, c, nullptr); }, "workspace");
  expect_invalid(
      [&] {
        K::forward_train(d, 1e-5f, 0.1f, p, c, c, p, c, c, c, c,
                         reinterpret_cast<unsigned char*>(ws.data()) + 4);
      },
      "workspace");
  expect_invalid([&] { K::forward_infer(d, 1e-5f, p, c, c, c, nullptr, p); }, "running_var");
  expect_invalid([&] { K::backward_train(d, p, nullptr, c, c, c, p, c, c, ws.data()); }, "dy");
  expect_invalid([&] { K::backward_train(d, p, p, c, nullptr, c, p, c, c, ws.data()); }, "save_mean");
  expect_invalid([&] { K::backward_train(d, p, p, c, c, c, p, c, c, nullptr); }, "workspace");
  expect_invalid([&] { K::backward_infer(d, 1e-5f, nullptr, p, c, c, c, p, c, c, ws.data()); },
                 "x must not be null");
  expect_invalid([&] { K::backward_infer(d, 1e-5f, p, p, c, c, c, nullptr, c, nullptr, nullptr); },
                 "workspace");
}

TEST(BatchNormKernels, RejectsBadArguments) {
  check_rejects<EmuBn>();
#if defined(WREN_HAVE_CUDA)
  check_rejects<CudaBn>();
#endif
}

TEST(BatchNormKernels, CudaMatchesCpu) {
#if defined(WREN_HAVE_CUDA)
  if (wren::kernels::device_count() == 0) GTEST_SKIP() << "no CUDA device on this machine";
  uint32_t seed = 300;
  for (const BnCase& bc : kCases) {
    const Inputs in = make_inputs(bc, ++seed);
    const Outputs ref = run_reference(in);
    const Outputs out = run_all<CudaBn>(in);
    check_against_reference(out, ref, "cuda " + describe(bc));
    check_same_bits(run_all<CudaBn>(in), out, "cuda " + describe(bc) + " second run");
    // The CUDA build performs the emulator's double operations in the same order.
    check_same_bits(out, run_all<EmuBn>(in), "cuda " + describe(bc) + " vs emu");
  }
#else
  GTEST_SKIP() << "built without the CUDA backend (WREN_HAVE_CUDA off)";
#endif
}

}  // namespace
