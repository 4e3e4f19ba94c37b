// Softmax cross-entropy: see softmax_ce.h. Compiled by nvcc (wren::cuda_kernels) and by g++ for
// the emulator (wren::emu_kernels).
//
// Launches (all 256-thread blocks, P = N·S positions):
//   1. ce_denominator_kernel (only when P·main_blocks is large): per-block partial sums of
//      w[y_i] over contiguous ranges of labels, into the workspace. Otherwise every block of
//      the next kernels sums the denominator itself from the labels (cheap for small P).
//   2. ce_main_kernel, the fused forward + backward. Every block first forms the denominator D
//      (the same fixed-order sum in every block, so the same bits) and, with label smoothing,
//      Σ_c w[c]; then each position is handled by
//        - one thread (S > 1, or C ≤ 32): the C logits of a position are S apart, so
//          consecutive threads (consecutive s) read consecutive addresses;
//        - one warp (S == 1 and C > 32, rows of the [N, C] logits): lanes stride over the row
//          in 4-class chunks when C % 4 == 0 (one float4 when the pointers are 16-byte
//          aligned, 4 scalars otherwise: same partition, same bits), single classes
//          otherwise; max by a shuffle butterfly (exact), Σ exp and the smoothing sum in
//          double by a shuffle butterfly.
//      Per position: max, Σ exp(z − max) in double, lse = log Σ; the loss term and every
//      gradient entry with the reference's expressions:
//        l   = −(1 − ε)·w_y·lp_y − (ε/C)·Σ_k w_k·lp_k,   lp_k = z_k − max − lse
//        g_k = (dloss/D)·[((1 − ε)·w_y + (ε/C)·Σw)·exp(lp_k) − (ε/C)·w_k − [k = y]·(1 − ε)·w_y]
//      Each thread adds its positions' l in double; the block sums its threads in a fixed tree
//      (shuffle butterfly within warps, then the warp sums by one warp) and writes one partial
//      (a single block writes the loss itself).
//   3. ce_finish_kernel (one block, when the main grid has several blocks and loss != null):
//      the partials in a fixed order, divided by D.
// The grid sizes depend only on the dims, so the summation order — and the result — is the
// same on every run, under every emulator schedule.
//
// Against the CPU reference: in the thread-per-position path every per-position quantity is the
// reference's expression in the reference's order (so on the emulator, with the same libm, the
// same bits); the warp path sums Σ exp and the smoothing sum in a different order (relative
// difference ~1e-16). D (exact for unweighted counts; for weights, sums of floats in double,
// exact unless their exponents span more than ~29 bits), Σw and Σ l_i are tree sums. After the
// final rounding to float the results agree to one fp32 ulp. On a GPU, CUDA's double exp and
// log (1 ulp) add nothing visible at fp32.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "common/launch.h"
#include "common/rounded.cuh"
#include "common/vec.cuh"
#include "softmax_ce/softmax_ce.h"

namespace wren::WREN_KERNELS_NS {
namespace {

constexpr int kThreads = 256;  // every kernel of this file (a multiple of 32)
constexpr int kWarpsPerBlock = kThreads / 32;
constexpr int64_t kInlineDenReads = 65536;    // max main_blocks·P for the inline denominator
constexpr int64_t kDenLabelsPerBlock = 4096;  // labels per block of the denominator pre-pass
constexpr int kMaxDenBlocks = kThreads;       // one partial per thread of the final sum
constexpr int64_t kMaxMainBlocks = 512;       // loss partials; grid-stride beyond
constexpr int kMinRowClasses = 33;            // S == 1 and C ≥ this: a warp per position

struct CeArgs {
  const float* logits;
  const int32_t* labels;
  const float* weights;  // nullable: all 1
  float* loss;           // nullable
  float* dlogits;        // nullable
  double* den_partials;  // den_blocks of them; den_blocks == 0: every block sums the labels
  double* loss_partials;  // one per main block (unused when the main grid is one block)
  int64_t positions, c, s;
  int64_t den_per_block;
  int32_t den_blocks;
  int32_t ignore_index;
  double eps;    // label smoothing
  double dloss;  // the upstream gradient, as double
};

__device__ __forceinline__ int64_t min64(int64_t a, int64_t b) {
  return a < b ? a : b;
}
// std::max's rule (the reference's): b only when a < b.
__device__ __forceinline__ float fmax_ref(float a, float b) {
  return a < b ? b : a;
}

// Sum of v over the block, in a fixed order (a shuffle butterfly in each warp, then every warp
// reduces the warp sums the same way), returned to every thread. Bit-identical in all threads:
// each butterfly step adds the same two values in both partner lanes. Uniform control flow.
__device__ double block_sum(double v, double* scratch) {
  const int lane = static_cast<int>(threadIdx.x % 32), warp = static_cast<int>(threadIdx.x / 32);
  const int warps = static_cast<int>(blockDim.x / 32);
  for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  double t = lane < warps ? scratch[lane] : 0.0;
  for (int o = 16; o > 0; o /= 2) t += __shfl_xor_sync(0xffffffffu, t, o);
  __syncthreads();  // scratch may be reused
  return t;
}

// w[y] (1 without weights); NaN for a label outside [0, C), which is never read.
__device__ __forceinline__ double label_weight(const float* w, int32_t y, int64_t c) {
  if (y < 0 || y >= c) return static_cast<double>(NAN);
  return w != nullptr ? static_cast<double>(w[y]) : 1.0;
}
__device__ __forceinline__ double class_weight(const float* w, int64_t k) {
  return w != nullptr ? static_cast<double>(w[k]) : 1.0;
}

// D = Σ w[y_i] over the non-ignored positions: the same code and block size everywhere, so
// the same bits in every block of every kernel.
__device__ double denominator(const CeArgs& a, double* scratch) {
  double acc = 0.0;
  if (a.den_blocks > 0) {
    if (static_cast<int>(threadIdx.x) < a.den_blocks) acc = a.den_partials[threadIdx.x];
  } else {
    for (int64_t i = threadIdx.x; i < a.positions; i += blockDim.x) {
      const int32_t y = a.labels[i];
      if (y != a.ignore_index) acc += label_weight(a.weights, y, a.c);
    }
  }
  return block_sum(acc, scratch);
}

// Σ_c w[c] (exactly C without weights).
__device__ double class_weight_sum(const CeArgs& a, double* scratch) {
  if (a.weights == nullptr) return static_cast<double>(a.c);
  double acc = 0.0;
  for (int64_t k = threadIdx.x; k < a.c; k += blockDim.x) acc += static_cast<double>(a.weights[k]);
  return block_sum(acc, scratch);
}

__global__ void __launch_bounds__(kThreads) ce_denominator_kernel(CeArgs a) {
  __shared__ double scratch[32];
  const int64_t begin = static_cast<int64_t>(blockIdx.x) * a.den_per_block;
  const int64_t end = min64(begin + a.den_per_block, a.positions);
  double acc = 0.0;
  for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
    const int32_t y = a.labels[i];
    if (y != a.ignore_index) acc += label_weight(a.weights, y, a.c);
  }
  const double total = block_sum(acc, scratch);
  if (threadIdx.x == 0) a.den_partials[blockIdx.x] = total;
}

// Per-block constants of the main kernel.
struct Consts {
  double den;         // D
  double scale;       // dloss / D (0 when D == 0)
  double weight_sum;  // Σ_c w[c] (only with smoothing and a gradient)
};

// One position per thread: the reference's loops, with the class stride S. Returns the
// position's loss term (0 when ignored).
__device__ __forceinline__ double position_thread(const CeArgs& a, const Consts& k, int64_t i) {
  const int32_t y = a.labels[i];
  const int64_t c = a.c, s = a.s;
  const int64_t first = (i / s) * c * s + i % s;
  const float* z = a.logits + first;
  float* g = a.dlogits != nullptr ? a.dlogits + first : nullptr;
  if (y == a.ignore_index || k.den == 0.0) {
    if (g != nullptr) {
      for (int64_t j = 0; j < c; ++j) g[j * s] = 0.0f;
    }
    return 0.0;
  }
  if (y < 0 || y >= c) {  // a caller error: NaN, nothing read out of range
    if (g != nullptr) {
      for (int64_t j = 0; j < c; ++j) g[j * s] = NAN;
    }
    return static_cast<double>(NAN);
  }
  double mx = static_cast<double>(z[0]);
  for (int64_t j = 1; j < c; ++j) {
    const double v = static_cast<double>(z[j * s]);
    mx = mx < v ? v : mx;
  }
  double sum = 0.0;
  for (int64_t j = 0; j < c; ++j) sum += dexp(static_cast<double>(z[j * s]) - mx);
  const double lse = dlog(sum);
  const double w_y = label_weight(a.weights, y, c);
  const double eps = a.eps;
  const double per_class = eps / static_cast<double>(c);
  double l = -(1.0 - eps) * w_y * (static_cast<double>(z[int64_t{y} * s]) - mx - lse);
  double smooth = 0.0;
  if (g != nullptr) {
    const double p_coeff = (1.0 - eps) * w_y + per_class * k.weight_sum;
    for (int64_t j = 0; j < c; ++j) {
      const double lp = static_cast<double>(z[j * s]) - mx - lse;
      const double w_j = class_weight(a.weights, j);
      if (eps != 0.0) smooth += w_j * lp;
      double grad = p_coeff * dexp(lp) - per_class * w_j;
      if (j == y) grad -= (1.0 - eps) * w_y;
      g[j * s] = static_cast<float>(k.scale * grad);
    }
  } else if (eps != 0.0) {
    for (int64_t j = 0; j < c; ++j) {
      smooth += class_weight(a.weights, j) * (static_cast<double>(z[j * s]) - mx - lse);
    }
  }
  if (eps != 0.0) l -= per_class * smooth;
  return l;
}

// How a warp walks a row. kChunk (C % 4 == 0): lane l takes the 4-class chunks l, l + 32, …
// (classes 4q .. 4q+3), loaded as one float4 when kVec (the pointers are 16-byte aligned),
// as 4 scalars otherwise — the same partition, hence the same sums, either way. Otherwise
// lane l takes classes l, l + 32, … .
template <bool kChunk, bool kVec>
__device__ __forceinline__ float4 load_chunk(const float* p) {
  if constexpr (kVec) {
    return load4(p);
  } else {
    return make_float4(p[0], p[1], p[2], p[3]);
  }
}
template <bool kVec>
__device__ __forceinline__ void store_chunk(float* p, float4 v) {
  if constexpr (kVec) {
    store4(p, v);
  } else {
    p[0] = v.x;
    p[1] = v.y;
    p[2] = v.z;
    p[3] = v.w;
  }
}

// Calls f(j, z_j) for the classes of one lane, in the lane's order.
template <bool kChunk, bool kVec, class F>
__device__ __forceinline__ void for_lane_classes(const float* z, int64_t c, int lane, F f) {
  if constexpr (kChunk) {
    for (int64_t q = lane; q < c / 4; q += 32) {
      const float4 v = load_chunk<kChunk, kVec>(z + 4 * q);
      f(4 * q, v.x);
      f(4 * q + 1, v.y);
      f(4 * q + 2, v.z);
      f(4 * q + 3, v.w);
    }
  } else {
    for (int64_t j = lane; j < c; j += 32) f(j, z[j]);
  }
}

__device__ __forceinline__ double warp_sum(double v) {
  for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// One row (S == 1) per warp. Every branch below depends only on the row, so it is uniform
// across the warp and every lane reaches every shuffle. Returns the row's loss term (the same
// in every lane).
template <bool kChunk, bool kVec>
__device__ __forceinline__ double position_warp(const CeArgs& a, const Consts& k, int64_t r,
                                                int lane) {
  const int32_t y = a.labels[r];
  const int64_t c = a.c;
  const float* z = a.logits + r * c;
  float* g = a.dlogits != nullptr ? a.dlogits + r * c : nullptr;
  if (y == a.ignore_index || k.den == 0.0 || y < 0 || y >= c) {
    const bool bad = !(y == a.ignore_index || k.den == 0.0);
    if (g != nullptr) {
      for (int64_t j = lane; j < c; j += 32) g[j] = bad ? NAN : 0.0f;
    }
    return bad ? static_cast<double>(NAN) : 0.0;
  }
  float m = -INFINITY;
  for_lane_classes<kChunk, kVec>(z, c, lane, [&](int64_t, float v) { m = fmax_ref(m, v); });
  for (int o = 16; o > 0; o /= 2) m = fmax_ref(m, __shfl_xor_sync(0xffffffffu, m, o));
  const double mx = static_cast<double>(m);
  double sum = 0.0;
  for_lane_classes<kChunk, kVec>(z, c, lane,
                         [&](int64_t, float v) { sum += dexp(static_cast<double>(v) - mx); });
  const double lse = dlog(warp_sum(sum));
  const double w_y = label_weight(a.weights, y, c);
  const double eps = a.eps;
  const double per_class = eps / static_cast<double>(c);
  double l = -(1.0 - eps) * w_y * (static_cast<double>(z[y]) - mx - lse);
  double smooth = 0.0;
  if (g != nullptr) {
    const double p_coeff = (1.0 - eps) * w_y + per_class * k.weight_sum;
    const double y_term = (1.0 - eps) * w_y;
    auto grad_of = [&](int64_t j, float v) {
      const double lp = static_cast<double>(v) - mx - lse;
      const double w_j = class_weight(a.weights, j);
      if (eps != 0.0) smooth += w_j * lp;
      double grad = p_coeff * dexp(lp) - per_class * w_j;
      if (j == y) grad -= y_term;
      return static_cast<float>(k.scale * grad);
    };
    if constexpr (kChunk) {
      for (int64_t q = lane; q < c / 4; q += 32) {
        const float4 v = load_chunk<kChunk, kVec>(z + 4 * q);
        const float g0 = grad_of(4 * q, v.x);
        const float g1 = grad_of(4 * q + 1, v.y);
        const float g2 = grad_of(4 * q + 2, v.z);
        const float g3 = grad_of(4 * q + 3, v.w);
        store_chunk<kVec>(g + 4 * q, make_float4(g0, g1, g2, g3));
      }
    } else {
      for (int64_t j = lane; j < c; j += 32) g[j] = grad_of(j, z[j]);
    }
  } else if (eps != 0.0) {
    for_lane_classes<kChunk, kVec>(z, c, lane, [&](int64_t j, float v) {
      smooth += class_weight(a.weights, j) * (static_cast<double>(v) - mx - lse);
    });
  }
  if (eps != 0.0) l -= per_class * warp_sum(smooth);
  return l;
}

// (No __launch_bounds__: with it ptxas 12 spills the float4 variant at 80 registers; without,
// 90-105 registers and no spills.)
template <bool kRows, bool kChunk, bool kVec>
__global__ void ce_main_kernel(CeArgs a) {
  __shared__ double scratch[32];
  Consts k;
  k.den = denominator(a, scratch);
  k.scale = k.den == 0.0 ? 0.0 : a.dloss / k.den;
  k.weight_sum = (a.dlogits != nullptr && a.eps != 0.0) ? class_weight_sum(a, scratch) : 0.0;

  double acc = 0.0;  // Σ l_i over this thread's positions (warp path: in lane 0)
  if constexpr (kRows) {
    const int lane = static_cast<int>(threadIdx.x % 32);
    const int64_t warps = static_cast<int64_t>(gridDim.x) * kWarpsPerBlock;
    for (int64_t r = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
         r < a.positions; r += warps) {
      const double l = position_warp<kChunk, kVec>(a, k, r, lane);
      if (lane == 0) acc += l;
    }
  } else {
    const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
         i < a.positions; i += stride) {
      acc += position_thread(a, k, i);
    }
  }
  if (a.loss == nullptr) return;  // uniform
  const double total = block_sum(acc, scratch);
  if (threadIdx.x == 0) {
    if (gridDim.x == 1) {
      *a.loss = k.den == 0.0 ? 0.0f : static_cast<float>(total / k.den);
    } else {
      a.loss_partials[blockIdx.x] = total;
    }
  }
}

__global__ void __launch_bounds__(kThreads) ce_finish_kernel(CeArgs a, int partials) {
  __shared__ double scratch[32];
  const double den = denominator(a, scratch);
  double acc = 0.0;
  for (int b = static_cast<int>(threadIdx.x); b < partials; b += kThreads) {
    acc += a.loss_partials[b];
  }
  const double total = block_sum(acc, scratch);
  if (threadIdx.x == 0) *a.loss = den == 0.0 ? 0.0f : static_cast<float>(total / den);
}

// --- Host side ---------------------------------------------------------------------------------

int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

struct Plan {
  int64_t positions = 0;
  bool rows = false;       // a warp per position
  int den_blocks = 0;      // 0: the denominator is summed inline by every block
  int64_t den_per_block = 0;
  int main_blocks = 1;
};

Plan make_plan(const SoftmaxCeDims& d) {
  Plan p;
  p.positions = int64_t{d.n} * d.s;
  p.rows = d.s == 1 && d.c >= kMinRowClasses;
  const int64_t per_block = p.rows ? kWarpsPerBlock : kThreads;
  p.main_blocks = static_cast<int>(
      std::clamp<int64_t>(ceil_div(p.positions, per_block), 1, kMaxMainBlocks));
  if (p.positions * p.main_blocks > kInlineDenReads) {
    p.den_blocks = static_cast<int>(
        std::min<int64_t>(kMaxDenBlocks, ceil_div(p.positions, kDenLabelsPerBlock)));
    p.den_per_block = ceil_div(p.positions, p.den_blocks);
  }
  return p;
}

[[noreturn]] void bad(const std::string& what) {
  throw std::invalid_argument("softmax_cross_entropy: " + what);
}

void check_dims(const SoftmaxCeDims& d) {
  if (d.n < 0 || d.c < 1 || d.s < 1) {
    bad("bad dims N=" + std::to_string(d.n) + " C=" + std::to_string(d.c) +
        " S=" + std::to_string(d.s) + " (need N >= 0, C >= 1, S >= 1)");
  }
}

size_t workspace_bytes(const Plan& p) {
  return sizeof(double) *
         static_cast<size_t>(p.den_blocks + (p.main_blocks > 1 ? p.main_blocks : 0));
}

bool aligned(const void* p, uintptr_t bytes) {
  return reinterpret_cast<uintptr_t>(p) % bytes == 0;
}

}  // namespace

size_t softmax_ce_workspace_bytes(SoftmaxCeDims d) {
  check_dims(d);
  return workspace_bytes(make_plan(d));
}

void softmax_cross_entropy(SoftmaxCeDims d, SoftmaxCeOptions o, const float* logits,
                           const int32_t* labels, const float* class_weights, float dloss,
                           float* loss, float* dlogits, void* ws, StreamHandle stream) {
  check_dims(d);
  if (!(o.label_smoothing >= 0.0 && o.label_smoothing <= 1.0)) {
    bad("label_smoothing must be in [0, 1], got " + std::to_string(o.label_smoothing));
  }
  const Plan p = make_plan(d);
  if (loss == nullptr && dlogits == nullptr) return;
  if (p.positions > 0 && (logits == nullptr || labels == nullptr)) {
    bad("logits and labels must not be null");
  }
  if (workspace_bytes(p) > 0 && (ws == nullptr || !aligned(ws, 8))) {
    bad("workspace missing or not 8-byte aligned (" + std::to_string(workspace_bytes(p)) +
        " bytes needed)");
  }

  CeArgs a{};
  a.logits = logits;
  a.labels = labels;
  a.weights = class_weights;
  a.loss = loss;
  a.dlogits = dlogits;
  a.den_partials = static_cast<double*>(ws);
  a.loss_partials = static_cast<double*>(ws) + p.den_blocks;
  a.positions = p.positions;
  a.c = d.c;
  a.s = d.s;
  a.den_per_block = p.den_per_block;
  a.den_blocks = p.den_blocks;
  a.ignore_index = o.ignore_index;
  a.eps = o.label_smoothing;
  a.dloss = static_cast<double>(dloss);

  const Stream s = as_stream(stream);
  if (p.den_blocks > 0) {
    WREN_LAUNCH(p.den_blocks, kThreads, 0, s, ce_denominator_kernel)(a);
  }
  if (p.rows && d.c % 4 == 0) {
    if (aligned(logits, 16) && (dlogits == nullptr || aligned(dlogits, 16))) {
      WREN_LAUNCH(p.main_blocks, kThreads, 0, s, ce_main_kernel<true, true, true>)(a);
    } else {
      WREN_LAUNCH(p.main_blocks, kThreads, 0, s, ce_main_kernel<true, true, false>)(a);
    }
  } else if (p.rows) {
    WREN_LAUNCH(p.main_blocks, kThreads, 0, s, ce_main_kernel<true, false, false>)(a);
  } else {
    WREN_LAUNCH(p.main_blocks, kThreads, 0, s, ce_main_kernel<false, false, false>)(a);
  }
  if (loss != nullptr && p.main_blocks > 1) {
    WREN_LAUNCH(1, kThreads, 0, s, ce_finish_kernel)(a, p.main_blocks);
  }
}

}  // namespace wren::WREN_KERNELS_NS
