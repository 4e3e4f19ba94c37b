// BatchNorm2d kernels: see batch_norm.h. Compiled by nvcc (wren::cuda_kernels) and by g++ for
// the emulator (wren::emu_kernels).
//
// Work split: a channel's M = N·H·W values are N planes of H·W contiguous floats. They are cut
// into units — 4 consecutive floats of a plane when H·W % 4 == 0 (loaded as one float4 when the
// pointers are 16-byte aligned, as 4 scalars otherwise: the partition, hence the summation
// order, does not depend on alignment), else single floats — and the channel's units into
// `splits` contiguous ranges. Every kernel runs on a grid (C, splits): block (c, s) walks
// range s of channel c, thread t taking units begin + t, begin + t + blockDim, … . `splits`
// and the block size depend only on the dims: about 512 blocks in all (~4 per SM of a
// 132-SM H100), at least one unit per thread, at most 256 splits; the block size is the
// power of two ≥ the units of a split, within [32, 256]. For N = 128, C = 32, 28×28: 16 splits
// of 1568 float4 units, 512 blocks; for 14×14, C = 64: 8 splits of 784 units.
//
// Training forward (2 launches, x read twice, y written once):
//   bn_stats_kernel:   per block Σ d and Σ d² in double, d = x − K with K the channel's first
//                      value (shifted sums: the variance Σd²/M − (Σd/M)² loses no precision to
//                      cancellation beyond a factor M+1 of the double epsilon, since
//                      (mean − K)² ≤ M·var), reduced in the block by a shuffle butterfly per
//                      warp and warp 0 over the warp sums; one partial pair per block.
//   bn_forward_train_apply_kernel: warp 0 of every block sums its channel's partials in a
//                      fixed order (lane l: splits l, l + 32, …; then a butterfly), so every
//                      block of the channel gets the same mean and invstd; block (c, 0) writes
//                      save_mean, save_invstd and the running statistics; all blocks write
//                      y = γ·(x − mean)·invstd + β (double, rounded once).
// Training backward (2 launches): bn_backward_sums_kernel (Σ dy and Σ dy·x̂ per block, as
//   above), then bn_backward_apply_kernel (the partials summed by warp 0 of every block; block
//   (c, 0) writes dgamma / dbeta; all blocks write dx, if requested — otherwise the grid is
//   (C, 1)).
// Inference forward: one launch, no reduction. Inference backward: the sums kernel only when
//   dgamma or dbeta is wanted, then the apply kernel (dx = γ·invstd·dy).
//
// No FMA contraction (the __d*_rn intrinsics under nvcc), IEEE division and square root: the
// CUDA build computes what the emulator build computes, bit for bit.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>

#include "batch_norm/batch_norm.h"
#include "common/launch.h"
#include "common/rounded.cuh"
#include "common/vec.cuh"

namespace wren::WREN_KERNELS_NS {
namespace {

constexpr int kMaxThreads = 256;
constexpr int64_t kUnitsPerBlock = 2048;  // ~8 units per thread at 256 threads
constexpr int64_t kTargetBlocks = 512;
constexpr int64_t kMaxSplits = 256;

#if defined(__CUDACC__)
#define WREN_BN_UNROLL _Pragma("unroll")
#else
#define WREN_BN_UNROLL _Pragma("GCC unroll 4")
#endif

// 1/√(var + eps), as the reference forms it.
__device__ __forceinline__ double inv_std(double var, double eps) {
  return ddiv(1.0, dsqrt(dadd(var, eps)));
}

// The channel-slice geometry (see the top of the file).
struct Geo {
  int64_t c;           // channels
  int64_t hw;          // H·W
  int64_t m;           // N·H·W, values per channel
  uint32_t per_plane;  // units per plane: H·W / unit
  uint32_t units;      // units per channel
  uint32_t per_split;  // units per block (the last blocks may have fewer, or none)
  int32_t splits;
};

// Offset of unit u of channel ch.
template <int kUnit>
__device__ __forceinline__ int64_t unit_offset(const Geo& g, int64_t ch, uint32_t u) {
  const uint32_t n = u / g.per_plane, j = u % g.per_plane;
  return (static_cast<int64_t>(n) * g.c + ch) * g.hw + static_cast<int64_t>(j) * kUnit;
}

template <int kUnit, bool kVec>
__device__ __forceinline__ void load_unit(const float* p, float (&v)[kUnit]) {
  if constexpr (kVec) {
    const float4 q = load4(p);
    v[0] = q.x;
    v[1] = q.y;
    v[2] = q.z;
    v[3] = q.w;
  } else {
    WREN_BN_UNROLL
    for (int e = 0; e < kUnit; ++e) v[e] = p[e];
  }
}
template <int kUnit, bool kVec>
__device__ __forceinline__ void store_unit(float* p, const float (&v)[kUnit]) {
  if constexpr (kVec) {
    store4(p, make_float4(v[0], v[1], v[2], v[3]));
  } else {
    WREN_BN_UNROLL
    for (int e = 0; e < kUnit; ++e) p[e] = v[e];
  }
}

// Block range [begin, end) of units for block (c, blockIdx.y).
struct Range {
  uint32_t begin, end;
};
__device__ __forceinline__ Range split_range(const Geo& g) {
  const uint32_t begin = blockIdx.y * g.per_split;
  const uint32_t end = begin + g.per_split < g.units ? begin + g.per_split : g.units;
  return {begin, begin < end ? end : begin};
}

__device__ __forceinline__ double warp_sum(double v) {
  for (int o = 16; o > 0; o /= 2) v = dadd(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Block sums of a and b in a fixed order; the totals are valid in warp 0. `scratch`: 64
// doubles of shared memory. Uniform control flow.
__device__ void block_sum2(double& a, double& b, double* scratch) {
  const int lane = static_cast<int>(threadIdx.x % 32), warp = static_cast<int>(threadIdx.x / 32);
  const int warps = static_cast<int>(blockDim.x / 32);
  a = warp_sum(a);
  b = warp_sum(b);
  if (lane == 0) {
    scratch[warp] = a;
    scratch[32 + warp] = b;
  }
  __syncthreads();
  if (warp == 0) {
    a = warp_sum(lane < warps ? scratch[lane] : 0.0);
    b = warp_sum(lane < warps ? scratch[32 + lane] : 0.0);
  }
}

// Called by the 32 lanes of warp 0: the channel's two partial sums over all splits, in a fixed
// order (lane l adds splits l, l + 32, …, then a butterfly), the same in every block.
__device__ void channel_sums(const Geo& g, const double* partials, int64_t ch, double* s0,
                             double* s1) {
  const int lane = static_cast<int>(threadIdx.x);
  double a = 0.0, b = 0.0;
  const double* p = partials + ch * g.splits * 2;
  for (int k = lane; k < g.splits; k += 32) {
    a = dadd(a, p[2 * k]);
    b = dadd(b, p[2 * k + 1]);
  }
  *s0 = warp_sum(a);
  *s1 = warp_sum(b);
}

// --- Training forward ----------------------------------------------------------------------------

struct FwdArgs {
  const float* x;
  const float* gamma;  // nullable
  const float* beta;   // nullable
  float* y;
  float* save_mean;
  float* save_invstd;
  float* running_mean;
  float* running_var;
  double* shift;     // [C]: K, the channel's first value
  double* partials;  // [C][splits][2]: Σ (x − K), Σ (x − K)²
  double eps;
  double momentum;
};

template <int kUnit, bool kVec>
__global__ void __launch_bounds__(kMaxThreads) bn_stats_kernel(Geo g, FwdArgs a) {
  __shared__ double scratch[64];
  const int64_t ch = blockIdx.x;
  const double k0 = static_cast<double>(a.x[ch * g.hw]);  // m > 0 when this runs
  if (blockIdx.y == 0 && threadIdx.x == 0) a.shift[ch] = k0;
  const Range r = split_range(g);
  double s1 = 0.0, s2 = 0.0;
  for (uint32_t u = r.begin + threadIdx.x; u < r.end; u += blockDim.x) {
    float v[kUnit];
    load_unit<kUnit, kVec>(a.x + unit_offset<kUnit>(g, ch, u), v);
    WREN_BN_UNROLL
    for (int e = 0; e < kUnit; ++e) {
      const double d = dsub(static_cast<double>(v[e]), k0);
      s1 = dadd(s1, d);
      s2 = dadd(s2, dmul(d, d));
    }
  }
  block_sum2(s1, s2, scratch);
  if (threadIdx.x == 0) {
    double* p = a.partials + (ch * g.splits + blockIdx.y) * 2;
    p[0] = s1;
    p[1] = s2;
  }
}

template <int kUnit, bool kVec>
__global__ void __launch_bounds__(kMaxThreads) bn_forward_train_apply_kernel(Geo g, FwdArgs a) {
  __shared__ double coef[4];  // mean, invstd, scale, shift
  const int64_t ch = blockIdx.x;
  if (threadIdx.x < 32) {
    double s1 = 0.0, s2 = 0.0;
    if (g.m > 0) channel_sums(g, a.partials, ch, &s1, &s2);
    if (threadIdx.x == 0) {
      double mean = 0.0, var = 0.0;
      if (g.m > 0) {
        const double m = static_cast<double>(g.m);
        const double dm = ddiv(s1, m);
        mean = dadd(a.shift[ch], dm);
        var = dsub(ddiv(s2, m), dmul(dm, dm));
        if (var < 0.0) var = 0.0;  // rounding; NaN stays NaN
      }
      const double invstd = inv_std(var, a.eps);
      if (blockIdx.y == 0) {
        a.save_mean[ch] = static_cast<float>(mean);
        a.save_invstd[ch] = static_cast<float>(invstd);
        // As the reference: an empty batch leaves the running statistics alone; M == 1 moves
        // the running variance towards the biased variance (0).
        if (g.m > 0) {
          const double m = static_cast<double>(g.m);
          const double unbiased = g.m > 1 ? ddiv(dmul(var, m), m - 1.0) : var;
          const double keep = 1.0 - a.momentum;
          a.running_mean[ch] = static_cast<float>(
              dadd(dmul(keep, static_cast<double>(a.running_mean[ch])), dmul(a.momentum, mean)));
          a.running_var[ch] = static_cast<float>(dadd(
              dmul(keep, static_cast<double>(a.running_var[ch])), dmul(a.momentum, unbiased)));
        }
      }
      coef[0] = mean;
      coef[1] = invstd;
      coef[2] = a.gamma != nullptr ? static_cast<double>(a.gamma[ch]) : 1.0;
      coef[3] = a.beta != nullptr ? static_cast<double>(a.beta[ch]) : 0.0;
    }
  }
  __syncthreads();
  const double mean = coef[0], invstd = coef[1], scale = coef[2], shift = coef[3];
  const Range r = split_range(g);
  for (uint32_t u = r.begin + threadIdx.x; u < r.end; u += blockDim.x) {
    const int64_t off = unit_offset<kUnit>(g, ch, u);
    float v[kUnit];
    load_unit<kUnit, kVec>(a.x + off, v);
    WREN_BN_UNROLL
    for (int e = 0; e < kUnit; ++e) {
      const double xhat = dmul(dsub(static_cast<double>(v[e]), mean), invstd);
      v[e] = static_cast<float>(dadd(dmul(scale, xhat), shift));
    }
    store_unit<kUnit, kVec>(a.y + off, v);
  }
}

// --- Inference forward -----------------------------------------------------------------------------

struct InferArgs {
  const float* x;
  const float* gamma;
  const float* beta;
  const float* running_mean;
  const float* running_var;
  float* y;
  double eps;
};

template <int kUnit, bool kVec>
__global__ void __launch_bounds__(kMaxThreads) bn_forward_infer_kernel(Geo g, InferArgs a) {
  const int64_t ch = blockIdx.x;
  const double mean = static_cast<double>(a.running_mean[ch]);
  const double invstd = inv_std(static_cast<double>(a.running_var[ch]), a.eps);
  const double scale = a.gamma != nullptr ? static_cast<double>(a.gamma[ch]) : 1.0;
  const double shift = a.beta != nullptr ? static_cast<double>(a.beta[ch]) : 0.0;
  const Range r = split_range(g);
  for (uint32_t u = r.begin + threadIdx.x; u < r.end; u += blockDim.x) {
    const int64_t off = unit_offset<kUnit>(g, ch, u);
    float v[kUnit];
    load_unit<kUnit, kVec>(a.x + off, v);
    WREN_BN_UNROLL
    for (int e = 0; e < kUnit; ++e) {
      const double xhat = dmul(dsub(static_cast<double>(v[e]), mean), invstd);
      v[e] = static_cast<float>(dadd(dmul(scale, xhat), shift));
    }
    store_unit<kUnit, kVec>(a.y + off, v);
  }
}

// --- Backward (training and inference) -------------------------------------------------------------

struct BwdArgs {
  const float* x;
  const float* dy;
  const float* gamma;  // nullable
  const float* mean;   // training: save_mean; inference: running_mean
  const float* var;    // training: save_invstd; inference: running_var
  float* dx;           // nullable
  float* dgamma;       // nullable
  float* dbeta;        // nullable
  double* partials;    // [C][splits][2]: Σ dy, Σ dy·x̂
  double eps;          // inference only
  bool infer;
  bool have_sums;      // the sums kernel ran (else the sums are 0 or unused)
};

// The channel's mean and invstd as the reference reads them: training the saved float values,
// inference 1/√(running_var + eps) in double.
__device__ __forceinline__ void backward_stats(const BwdArgs& a, int64_t ch, double* mean,
                                               double* invstd) {
  *mean = static_cast<double>(a.mean[ch]);
  *invstd = a.infer ? inv_std(static_cast<double>(a.var[ch]), a.eps)
                    : static_cast<double>(a.var[ch]);
}

template <int kUnit, bool kVec>
__global__ void __launch_bounds__(kMaxThreads) bn_backward_sums_kernel(Geo g, BwdArgs a) {
  __shared__ double scratch[64];
  const int64_t ch = blockIdx.x;
  double mean, invstd;
  backward_stats(a, ch, &mean, &invstd);
  const Range r = split_range(g);
  double t1 = 0.0, t2 = 0.0;
  for (uint32_t u = r.begin + threadIdx.x; u < r.end; u += blockDim.x) {
    const int64_t off = unit_offset<kUnit>(g, ch, u);
    float xv[kUnit], gv[kUnit];
    load_unit<kUnit, kVec>(a.x + off, xv);
    load_unit<kUnit, kVec>(a.dy + off, gv);
    WREN_BN_UNROLL
    for (int e = 0; e < kUnit; ++e) {
      const double d = static_cast<double>(gv[e]);
      t1 = dadd(t1, d);
      // dy·(x − mean)·invstd, the reference's product order
      t2 = dadd(t2, dmul(dmul(d, dsub(static_cast<double>(xv[e]), mean)), invstd));
    }
  }
  block_sum2(t1, t2, scratch);
  if (threadIdx.x == 0) {
    double* p = a.partials + (ch * g.splits + blockIdx.y) * 2;
    p[0] = t1;
    p[1] = t2;
  }
}

template <int kUnit, bool kVec>
__global__ void __launch_bounds__(kMaxThreads) bn_backward_apply_kernel(Geo g, BwdArgs a) {
  __shared__ double coef[5];  // mean, invstd, k = γ·invstd, mean(dy), mean(dy·x̂)
  const int64_t ch = blockIdx.x;
  if (threadIdx.x < 32) {
    double sum_dy = 0.0, sum_dy_xhat = 0.0;
    if (a.have_sums) channel_sums(g, a.partials, ch, &sum_dy, &sum_dy_xhat);
    if (threadIdx.x == 0) {
      double mean, invstd;
      backward_stats(a, ch, &mean, &invstd);
      if (blockIdx.y == 0) {
        if (a.dbeta != nullptr) a.dbeta[ch] = static_cast<float>(sum_dy);
        if (a.dgamma != nullptr) a.dgamma[ch] = static_cast<float>(sum_dy_xhat);
      }
      const double gamma = a.gamma != nullptr ? static_cast<double>(a.gamma[ch]) : 1.0;
      const double m = static_cast<double>(g.m);
      coef[0] = mean;
      coef[1] = invstd;
      coef[2] = dmul(gamma, invstd);
      coef[3] = g.m > 0 ? ddiv(sum_dy, m) : 0.0;
      coef[4] = g.m > 0 ? ddiv(sum_dy_xhat, m) : 0.0;
    }
  }
  __syncthreads();
  if (a.dx == nullptr) return;  // uniform; the grid is (C, 1) then
  const double mean = coef[0], invstd = coef[1], k = coef[2];
  const double mean_dy = coef[3], mean_dy_xhat = coef[4];
  const Range r = split_range(g);
  for (uint32_t u = r.begin + threadIdx.x; u < r.end; u += blockDim.x) {
    const int64_t off = unit_offset<kUnit>(g, ch, u);
    float gv[kUnit];
    load_unit<kUnit, kVec>(a.dy + off, gv);
    if (a.infer) {
      // The statistics are constants: dx = γ·invstd·dy.
      WREN_BN_UNROLL
      for (int e = 0; e < kUnit; ++e) {
        gv[e] = static_cast<float>(dmul(k, static_cast<double>(gv[e])));
      }
    } else {
      float xv[kUnit];
      load_unit<kUnit, kVec>(a.x + off, xv);
      WREN_BN_UNROLL
      for (int e = 0; e < kUnit; ++e) {
        const double xhat = dmul(dsub(static_cast<double>(xv[e]), mean), invstd);
        const double grad =
            dsub(dsub(static_cast<double>(gv[e]), mean_dy), dmul(xhat, mean_dy_xhat));
        gv[e] = static_cast<float>(dmul(k, grad));
      }
    }
    store_unit<kUnit, kVec>(a.dx + off, gv);
  }
}

// --- Host side ----------------------------------------------------------------------------------

enum class Path { kScalar1, kScalar4, kVector4 };

struct Plan {
  Geo g{};
  int threads = 32;
  bool unit4 = false;
};

int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

[[noreturn]] void bad(const char* fn, const std::string& what) {
  throw std::invalid_argument(std::string(fn) + ": " + what);
}

Plan make_plan(const char* fn, const BatchNormDims& d) {
  if (d.n < 0 || d.c < 0 || d.h < 0 || d.w < 0) {
    bad(fn, "negative dims N=" + std::to_string(d.n) + " C=" + std::to_string(d.c) +
                " H=" + std::to_string(d.h) + " W=" + std::to_string(d.w));
  }
  Plan p;
  Geo& g = p.g;
  g.c = d.c;
  g.hw = int64_t{d.h} * d.w;
  g.m = int64_t{d.n} * g.hw;
  if (g.m > std::numeric_limits<int32_t>::max()) {
    bad(fn, "N·H·W = " + std::to_string(g.m) + " values per channel (at most 2^31 - 1)");
  }
  p.unit4 = g.hw > 0 && g.hw % 4 == 0;
  const int64_t unit = p.unit4 ? 4 : 1;
  const int64_t units = g.m / unit;
  g.per_plane = static_cast<uint32_t>(std::max<int64_t>(g.hw / unit, 1));
  g.units = static_cast<uint32_t>(units);
  const int64_t max_useful = std::max<int64_t>(ceil_div(units, kMaxThreads), 1);
  const int64_t want = std::max(ceil_div(units, kUnitsPerBlock),
                                ceil_div(kTargetBlocks, std::max<int64_t>(g.c, 1)));
  const int64_t splits = std::clamp<int64_t>(std::min(want, max_useful), 1, kMaxSplits);
  g.splits = static_cast<int32_t>(splits);
  g.per_split = static_cast<uint32_t>(ceil_div(units, splits));
  int threads = 32;
  while (threads < kMaxThreads && threads < static_cast<int64_t>(g.per_split)) threads *= 2;
  p.threads = threads;
  return p;
}

size_t workspace_bytes(const Plan& p) {
  return sizeof(double) * static_cast<size_t>(p.g.c) * (1 + 2 * static_cast<size_t>(p.g.splits));
}

bool aligned(const void* p, uintptr_t bytes) {
  return reinterpret_cast<uintptr_t>(p) % bytes == 0;
}

Path path(const Plan& p, std::initializer_list<const void*> arrays) {
  if (!p.unit4) return Path::kScalar1;
  for (const void* a : arrays) {
    if (a != nullptr && !aligned(a, 16)) return Path::kScalar4;
  }
  return Path::kVector4;
}

void require(const char* fn, std::initializer_list<std::pair<const void*, const char*>> arrays) {
  for (const auto& [ptr, name] : arrays) {
    if (ptr == nullptr) bad(fn, std::string(name) + " must not be null");
  }
}

void require_workspace(const char* fn, const Plan& p, const void* ws) {
  if (ws == nullptr || !aligned(ws, 8)) {
    bad(fn, "workspace missing or not 8-byte aligned (" + std::to_string(workspace_bytes(p)) +
                " bytes needed)");
  }
}

void check_eps(const char* fn, float eps) {
  if (!(eps >= 0.0f && eps <= std::numeric_limits<float>::max())) {
    bad(fn, "eps must be finite and >= 0, got " + std::to_string(eps));
  }
}

// Launches name<unit, vector> for the path.
#define WREN_BN_LAUNCH(path, grid, threads, stream, name, ...)                            \
  do {                                                                                  \
    switch (path) {                                                                     \
      case Path::kScalar1:                                                              \
        WREN_LAUNCH(grid, threads, 0, stream, name<1, false>)(__VA_ARGS__);             \
        break;                                                                          \
      case Path::kScalar4:                                                              \
        WREN_LAUNCH(grid, threads, 0, stream, name<4, false>)(__VA_ARGS__);             \
        break;                                                                          \
      case Path::kVector4:                                                              \
        WREN_LAUNCH(grid, threads, 0, stream, name<4, true>)(__VA_ARGS__);              \
        break;                                                                          \
    }                                                                                   \
  } while (0)

// The backward passes of both modes: sums when needed, then the apply kernel.
void backward(const char* fn, const Plan& p, BwdArgs a, void* ws, StreamHandle stream) {
  const Geo& g = p.g;
  if (g.c == 0 || (a.dx == nullptr && a.dgamma == nullptr && a.dbeta == nullptr)) return;
  const bool need_sums = a.dgamma != nullptr || (!a.infer && a.dx != nullptr) ||
                         a.dbeta != nullptr;
  a.have_sums = need_sums && g.m > 0;
  require(fn, {{a.mean, a.infer ? "running_mean" : "save_mean"},
               {a.var, a.infer ? "running_var" : "save_invstd"}});
  if (g.m > 0) {
    require(fn, {{a.dy, "dy"}});
    if (!a.infer || a.dgamma != nullptr) require(fn, {{a.x, "x"}});
  }
  if (a.have_sums) require_workspace(fn, p, ws);
  a.partials = static_cast<double*>(ws) + (ws != nullptr ? g.c : 0);
  const Stream s = as_stream(stream);
  const Path pa = path(p, {a.x, a.dy, a.dx});
  if (a.have_sums) {
    WREN_BN_LAUNCH(pa, dim3(static_cast<unsigned>(g.c), g.splits), p.threads, s,
                   bn_backward_sums_kernel, g, a);
  }
  const int splits = a.dx != nullptr ? g.splits : 1;
  WREN_BN_LAUNCH(pa, dim3(static_cast<unsigned>(g.c), splits), p.threads, s,
                 bn_backward_apply_kernel, g, a);
}

}  // namespace

size_t batch_norm2d_workspace_bytes(BatchNormDims d) {
  return workspace_bytes(make_plan("batch_norm2d_workspace_bytes", d));
}

void batch_norm2d_forward_train(BatchNormDims d, float eps, float momentum, const float* x,
                                const float* gamma, const float* beta, float* y,
                                float* save_mean, float* save_invstd, float* running_mean,
                                float* running_var, void* ws, StreamHandle stream) {
  const char* fn = "batch_norm2d_forward_train";
  const Plan p = make_plan(fn, d);
  check_eps(fn, eps);
  if (!std::isfinite(momentum)) bad(fn, "momentum must be finite");
  const Geo& g = p.g;
  if (g.c == 0) return;
  require(fn, {{save_mean, "save_mean"}, {save_invstd, "save_invstd"}});
  if (g.m > 0) {
    require(fn, {{x, "x"}, {y, "y"}, {running_mean, "running_mean"}, {running_var, "running_var"}});
    require_workspace(fn, p, ws);
  }
  FwdArgs a{};
  a.x = x;
  a.gamma = gamma;
  a.beta = beta;
  a.y = y;
  a.save_mean = save_mean;
  a.save_invstd = save_invstd;
  a.running_mean = running_mean;
  a.running_var = running_var;
  a.shift = static_cast<double*>(ws);
  a.partials = static_cast<double*>(ws) + (ws != nullptr ? g.c : 0);
  a.eps = static_cast<double>(eps);
  a.momentum = static_cast<double>(momentum);
  const Stream s = as_stream(stream);
  const Path pa = path(p, {x, y});
  if (g.m > 0) {
    WREN_BN_LAUNCH(pa, dim3(static_cast<unsigned>(g.c), g.splits), p.threads, s, bn_stats_kernel,
                   g, a);
  }
  // An empty batch still writes save_mean = 0 and save_invstd = 1/√eps (one block per channel).
  const int splits = g.m > 0 ? g.splits : 1;
  WREN_BN_LAUNCH(pa, dim3(static_cast<unsigned>(g.c), splits), p.threads, s,
                 bn_forward_train_apply_kernel, g, a);
}

void batch_norm2d_forward_infer(BatchNormDims d, float eps, const float* x, const float* gamma,
                                const float* beta, const float* running_mean,
                                const float* running_var, float* y, StreamHandle stream) {
  const char* fn = "batch_norm2d_forward_infer";
  const Plan p = make_plan(fn, d);
  check_eps(fn, eps);
  const Geo& g = p.g;
  if (g.c == 0 || g.m == 0) return;
  require(fn, {{x, "x"}, {y, "y"}, {running_mean, "running_mean"}, {running_var, "running_var"}});
  InferArgs a{};
  a.x = x;
  a.gamma = gamma;
  a.beta = beta;
  a.running_mean = running_mean;
  a.running_var = running_var;
  a.y = y;
  a.eps = static_cast<double>(eps);
  WREN_BN_LAUNCH(path(p, {x, y}), dim3(static_cast<unsigned>(g.c), g.splits), p.threads,
                 as_stream(stream), bn_forward_infer_kernel, g, a);
}

void batch_norm2d_backward_train(BatchNormDims d, const float* x, const float* dy,
                                 const float* gamma, const float* save_mean,
                                 const float* save_invstd, float* dx, float* dgamma,
                                 float* dbeta, void* ws, StreamHandle stream) {
  const char* fn = "batch_norm2d_backward_train";
  const Plan p = make_plan(fn, d);
  BwdArgs a{};
  a.x = x;
  a.dy = dy;
  a.gamma = gamma;
  a.mean = save_mean;
  a.var = save_invstd;
  a.dx = dx;
  a.dgamma = dgamma;
  a.dbeta = dbeta;
  a.eps = 0.0;
  a.infer = false;
  backward(fn, p, a, ws, stream);
}

void batch_norm2d_backward_infer(BatchNormDims d, float eps, const float* x, const float* dy,
                                 const float* gamma, const float* running_mean,
                                 const float* running_var, float* dx, float* dgamma,
                                 float* dbeta, void* ws, StreamHandle stream) {
  const char* fn = "batch_norm2d_backward_infer";
  const Plan p = make_plan(fn, d);
  check_eps(fn, eps);
  BwdArgs a{};
  a.x = x;
  a.dy = dy;
  a.gamma = gamma;
  a.mean = running_mean;
  a.var = running_var;
  a.dx = dx;
  a.dgamma = dgamma;
  a.dbeta = dbeta;
  a.eps = static_cast<double>(eps);
  a.infer = true;
  backward(fn, p, a, ws, stream);
}

}  // namespace wren::WREN_KERNELS_NS
