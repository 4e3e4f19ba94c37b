// Pooling kernels: see pool.h. Compiled by nvcc (wren::cuda_kernels) and by g++ for the
// emulator (wren::emu_kernels).
//
// Bit-exact twins of kernels/pool/reference.cpp: every thread computes one output element (forward) or
// one input element (backward, a gather over the windows that cover it) with the reference's
// loop in the reference's order, so the double sums and their single rounding are the same.
// No atomics, no shared memory, and nothing depends on the schedule.
//
//   max / avg forward:   one thread per output (plane, p, q), reading its window row-major.
//   max / avg backward:  one thread per input (plane, h, w), summing dy over the covering
//                        windows in increasing (p, q) (max: only the windows whose argmax is
//                        (h, w)). For non-overlapping max-pool windows this equals the
//                        reference's scatter fast path (0.0 + dy in double, then rounded).
//   global avg forward:  one warp per plane. Lanes load 32 consecutive elements (coalesced);
//                        every lane then adds them to its double sum in index order via
//                        __shfl_sync broadcasts, so the sum is the reference's sequential sum
//                        (a tree reduction would round differently in the last double bits).
//                        A few very large planes would leave most of the GPU idle; CNN shapes
//                        have many small planes (N·C of them, 7×7 or so).
//   global avg backward: one thread per input element.
//
// Indices are int64_t throughout (N·C·H·W may exceed int); loops are grid-stride with the
// grid capped at kMaxBlocks blocks.
#include <cmath>
#include <cstdint>

#include "common/launch.h"
#include "pool/pool.h"

namespace wren::WREN_KERNELS_NS {
namespace {

constexpr int kThreads = 256;  // a multiple of 32: the global-pool kernel works per warp
constexpr int64_t kMaxBlocks = 4096;

// The reference's Geometry (kernels/pool/reference.cpp): sizes in int64_t, P and Q clamped at 0.
struct Geometry {
  int64_t planes, h, w, p, q;
  int64_t kh, kw, sh, sw, ph, pw;
  bool include_pad;
};

Geometry geometry(const Pool2dDims& d) {
  Geometry g{};
  g.planes = int64_t{d.n} * d.c;
  g.h = d.h;
  g.w = d.w;
  g.p = d.p() > 0 ? d.p() : 0;
  g.q = d.q() > 0 ? d.q() : 0;
  g.kh = d.kernel_h;
  g.kw = d.kernel_w;
  g.sh = d.stride_h;
  g.sw = d.stride_w;
  g.ph = d.pad_h;
  g.pw = d.pad_w;
  g.include_pad = d.count_include_pad;
  return g;
}

__device__ __forceinline__ int64_t min64(int64_t a, int64_t b) {
  return a < b ? a : b;
}
__device__ __forceinline__ int64_t max64(int64_t a, int64_t b) {
  return a > b ? a : b;
}

// The output indices [first, last) along one axis whose windows cover input index i (the
// reference's covering()).
struct Range {
  int64_t first, last;
};
__device__ __forceinline__ Range covering(int64_t i, int64_t kernel, int64_t stride, int64_t pad,
                                          int64_t out) {
  const int64_t shifted = i + pad;
  const int64_t first = shifted < kernel ? 0 : (shifted - kernel) / stride + 1;
  const int64_t last = min64(shifted / stride + 1, out);
  return {first, max64(first, last)};
}

// Number of in-image rows (or columns) of a window that starts at `start` (may be < 0).
__device__ __forceinline__ int64_t inside(int64_t start, int64_t kernel, int64_t size) {
  return max64(0, min64(start + kernel, size) - max64(start, 0));
}

// Divisor of average-pooling window (p, q), as the reference computes it.
__device__ __forceinline__ double avg_divisor(const Geometry& g, int64_t p, int64_t q) {
  if (g.include_pad) return static_cast<double>(g.kh * g.kw);
  return static_cast<double>(inside(p * g.sh - g.ph, g.kh, g.h) *
                             inside(q * g.sw - g.pw, g.kw, g.w));
}

__device__ __forceinline__ int64_t first_index() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t grid_stride() {
  return static_cast<int64_t>(gridDim.x) * blockDim.x;
}

__global__ void max_pool_forward_kernel(Geometry g, const float* __restrict__ x,
                                        float* __restrict__ y, int32_t* __restrict__ argmax) {
  const int64_t total = g.planes * g.p * g.q;
  for (int64_t i = first_index(); i < total; i += grid_stride()) {
    const int64_t q = i % g.q, pq = i / g.q;
    const int64_t p = pq % g.p, plane = pq / g.p;
    const float* xp = x + plane * g.h * g.w;
    const int64_t h0 = p * g.sh - g.ph, w0 = q * g.sw - g.pw;
    // The in-image part of the window, row-major; padding is −∞ and never wins, a window
    // entirely in the padding gives −∞ and index −1.
    const int64_t r0 = max64(0, -h0), r1 = min64(g.kh, g.h - h0);
    const int64_t s0 = max64(0, -w0), s1 = min64(g.kw, g.w - w0);
    float best = -INFINITY;
    int64_t best_index = -1;
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t row = (h0 + r) * g.w;
      for (int64_t s = s0; s < s1; ++s) {
        const int64_t at = row + w0 + s;
        const float v = xp[at];
        // Strictly greater: the first maximum wins ties; a NaN wins over any number (the
        // first NaN over later ones).
        if (best_index < 0 || v > best || (v != v && best == best)) {
          best = v;
          best_index = at;
        }
      }
    }
    y[i] = best;
    argmax[i] = static_cast<int32_t>(best_index);
  }
}

__global__ void max_pool_backward_kernel(Geometry g, const int32_t* __restrict__ argmax,
                                         const float* __restrict__ dy, float* __restrict__ dx) {
  const int64_t hw = g.h * g.w, total = g.planes * hw;
  for (int64_t i = first_index(); i < total; i += grid_stride()) {
    const int64_t plane = i / hw, index = i % hw;
    const int64_t h = index / g.w, w = index % g.w;
    const int32_t* ap = argmax + plane * g.p * g.q;
    const float* dyp = dy + plane * g.p * g.q;
    const Range rp = covering(h, g.kh, g.sh, g.ph, g.p);
    const Range rq = covering(w, g.kw, g.sw, g.pw, g.q);
    double sum = 0.0;
    for (int64_t p = rp.first; p < rp.last; ++p) {
      for (int64_t q = rq.first; q < rq.last; ++q) {
        if (ap[p * g.q + q] == index) sum += static_cast<double>(dyp[p * g.q + q]);
      }
    }
    dx[i] = static_cast<float>(sum);
  }
}

__global__ void avg_pool_forward_kernel(Geometry g, const float* __restrict__ x,
                                        float* __restrict__ y) {
  const int64_t total = g.planes * g.p * g.q;
  for (int64_t i = first_index(); i < total; i += grid_stride()) {
    const int64_t q = i % g.q, pq = i / g.q;
    const int64_t p = pq % g.p, plane = pq / g.p;
    const float* xp = x + plane * g.h * g.w;
    const int64_t h0 = p * g.sh - g.ph, w0 = q * g.sw - g.pw;
    const int64_t r0 = max64(0, -h0), r1 = min64(g.kh, g.h - h0);
    const int64_t s0 = max64(0, -w0), s1 = min64(g.kw, g.w - w0);
    double sum = 0.0;  // padding contributes 0
    for (int64_t r = r0; r < r1; ++r) {
      const float* row = xp + (h0 + r) * g.w + w0;
      for (int64_t s = s0; s < s1; ++s) sum += static_cast<double>(row[s]);
    }
    const double divisor = avg_divisor(g, p, q);
    // A window with no in-image element (pad ≥ kernel, without count_include_pad) is 0.
    y[i] = divisor > 0 ? static_cast<float>(sum / divisor) : 0.0f;
  }
}

__global__ void avg_pool_backward_kernel(Geometry g, const float* __restrict__ dy,
                                         float* __restrict__ dx) {
  const int64_t hw = g.h * g.w, total = g.planes * hw;
  for (int64_t i = first_index(); i < total; i += grid_stride()) {
    const int64_t plane = i / hw, index = i % hw;
    const int64_t h = index / g.w, w = index % g.w;
    const float* dyp = dy + plane * g.p * g.q;
    const Range rp = covering(h, g.kh, g.sh, g.ph, g.p);
    const Range rq = covering(w, g.kw, g.sw, g.pw, g.q);
    double sum = 0.0;
    for (int64_t p = rp.first; p < rp.last; ++p) {
      for (int64_t q = rq.first; q < rq.last; ++q) {
        // A window covering (h, w) has an in-image element, so the divisor is > 0.
        sum += static_cast<double>(dyp[p * g.q + q]) / avg_divisor(g, p, q);
      }
    }
    dx[i] = static_cast<float>(sum);
  }
}

// One warp per plane. The plane loop and the chunk loop are uniform across the warp (they
// depend only on the warp's plane), so every lane reaches every __shfl_sync with the full mask.
__global__ void global_avg_pool_forward_kernel(int64_t planes, int64_t size,
                                               const float* __restrict__ x, float* __restrict__ y) {
  const int lane = static_cast<int>(threadIdx.x % 32);
  const int64_t warps = grid_stride() / 32;
  for (int64_t plane = first_index() / 32; plane < planes; plane += warps) {
    const float* xp = x + plane * size;
    double sum = 0.0;
    for (int64_t base = 0; base < size; base += 32) {
      const int n = static_cast<int>(min64(32, size - base));
      const float v = lane < n ? xp[base + lane] : 0.0f;
      // Every lane accumulates the chunk in index order: the reference's sequential sum.
      for (int j = 0; j < n; ++j) sum += static_cast<double>(__shfl_sync(0xffffffffu, v, j));
    }
    if (lane == 0) y[plane] = size > 0 ? static_cast<float>(sum / static_cast<double>(size)) : 0.0f;
  }
}

__global__ void global_avg_pool_backward_kernel(int64_t planes, int64_t size,
                                                const float* __restrict__ dy,
                                                float* __restrict__ dx) {
  const int64_t total = planes * size;
  for (int64_t i = first_index(); i < total; i += grid_stride()) {
    dx[i] = static_cast<float>(static_cast<double>(dy[i / size]) / static_cast<double>(size));
  }
}

int blocks_for(int64_t threads) {
  const int64_t blocks = (threads + kThreads - 1) / kThreads;
  return static_cast<int>(blocks < 1 ? 1 : (blocks > kMaxBlocks ? kMaxBlocks : blocks));
}

}  // namespace

void max_pool2d_forward(Pool2dDims d, const float* x, float* y, int32_t* argmax,
                        StreamHandle stream) {
  const Geometry g = geometry(d);
  const int64_t total = g.planes * g.p * g.q;
  if (total <= 0) return;
  WREN_LAUNCH(blocks_for(total), kThreads, 0, as_stream(stream), max_pool_forward_kernel)
  (g, x, y, argmax);
}

void max_pool2d_backward(Pool2dDims d, const int32_t* argmax, const float* dy, float* dx,
                         StreamHandle stream) {
  const Geometry g = geometry(d);
  const int64_t total = g.planes * g.h * g.w;
  if (total <= 0) return;
  WREN_LAUNCH(blocks_for(total), kThreads, 0, as_stream(stream), max_pool_backward_kernel)
  (g, argmax, dy, dx);
}

void avg_pool2d_forward(Pool2dDims d, const float* x, float* y, StreamHandle stream) {
  const Geometry g = geometry(d);
  const int64_t total = g.planes * g.p * g.q;
  if (total <= 0) return;
  WREN_LAUNCH(blocks_for(total), kThreads, 0, as_stream(stream), avg_pool_forward_kernel)
  (g, x, y);
}

void avg_pool2d_backward(Pool2dDims d, const float* dy, float* dx, StreamHandle stream) {
  const Geometry g = geometry(d);
  const int64_t total = g.planes * g.h * g.w;
  if (total <= 0) return;
  WREN_LAUNCH(blocks_for(total), kThreads, 0, as_stream(stream), avg_pool_backward_kernel)
  (g, dy, dx);
}

void global_avg_pool_forward(int n, int c, int hw, const float* x, float* y, StreamHandle stream) {
  const int64_t planes = int64_t{n} * c;
  if (planes <= 0) return;
  WREN_LAUNCH(blocks_for(planes * 32), kThreads, 0, as_stream(stream),
              global_avg_pool_forward_kernel)
  (planes, int64_t{hw}, x, y);
}

void global_avg_pool_backward(int n, int c, int hw, const float* dy, float* dx,
                              StreamHandle stream) {
  const int64_t planes = int64_t{n} * c, total = planes * hw;
  if (total <= 0) return;
  WREN_LAUNCH(blocks_for(total), kThreads, 0, as_stream(stream), global_avg_pool_backward_kernel)
  (planes, int64_t{hw}, dy, dx);
}

}  // namespace wren::WREN_KERNELS_NS
