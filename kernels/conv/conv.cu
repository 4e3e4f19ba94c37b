// Convolution kernels: see conv.h. Compiled by nvcc (wren::cuda_kernels) and by g++ for the
// emulator (wren::emu_kernels).
//
// Each pass is a gemm::Problem for kernels/common/gemm_tile.cuh: two operands that fetch GEMM
// elements straight from the tensors, and an epilogue that stores them. The operand a thread
// loads is fixed across the whole reduction (its "line": an output position, a filter tap or a
// channel), so the line's div/mod work is done once per block; per element the operands split
// the reduction index with FastDivmod (a multiply-high, no division).
//
//   pass              A [M, red]                  B [red, N]                    D
//   forward           w as [K, CRS]   (k-fast)    im2col(x) [CRS, NPQ] (i-fast)  y (+b)
//   backward data     w as [C, KRS]   (k-fast)    gather(dy) [KRS, NHW] (i-fast) dx
//   backward weights  dy as [K, NPQ]  (k-fast)    im2col(x)ᵀ [NPQ, CRS] (k-fast) dw
// "k-fast": the reduction index is the contiguous one; a line's 16 values of a chunk are loaded
// by 4 neighbouring threads, 4 each. "i-fast": consecutive threads load consecutive output
// positions (q or w: contiguous for stride 1). Backward data visits every (k, r, s) for every
// dx element and reads 0 where the tap has no output position (h + pad − r·dil not a multiple
// of the stride, or out of range): a gather, each dx element written once by the block that
// owns it. (With stride s only about 1/s² of the taps contribute, so a strided backward data
// does s² times the useful math; a stride-phase decomposition would avoid that.)
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>

#include "common/gemm_tile.cuh"
#include "common/launch.h"
#include "conv/conv.h"

namespace wren::WREN_KERNELS_NS {
namespace {

using gemm::FastDivmod;
using gemm::ldg;

// Sizes of one convolution, with the divisors the operands need.
struct ConvGeometry {
  int n, c, h, w, k, r, s, p, q;
  int sh, sw, ph, pw, dh, dw;
  int hw, pq, rs, crs, chw, kpq;
  FastDivmod div_pq, div_q, div_rs, div_s, div_hw, div_w, div_sh, div_sw;
};

ConvGeometry geometry(const Conv2dDims& d) {
  ConvGeometry g{};
  g.n = d.n;
  g.c = d.c;
  g.h = d.h;
  g.w = d.w;
  g.k = d.k;
  g.r = d.r;
  g.s = d.s;
  g.p = d.p();
  g.q = d.q();
  g.sh = d.stride_h;
  g.sw = d.stride_w;
  g.ph = d.pad_h;
  g.pw = d.pad_w;
  g.dh = d.dil_h;
  g.dw = d.dil_w;
  g.hw = g.h * g.w;
  g.pq = g.p * g.q;
  g.rs = g.r * g.s;
  g.crs = g.c * g.rs;
  g.chw = g.c * g.hw;
  g.kpq = g.k * g.pq;
  g.div_pq = FastDivmod::make(g.pq);
  g.div_q = FastDivmod::make(g.q);
  g.div_rs = FastDivmod::make(g.rs);
  g.div_s = FastDivmod::make(g.s);
  g.div_hw = FastDivmod::make(g.hw);
  g.div_w = FastDivmod::make(g.w);
  g.div_sh = FastDivmod::make(g.sh);
  g.div_sw = FastDivmod::make(g.sw);
  return g;
}

// --- Forward -------------------------------------------------------------------------------------

// B[crs][npq] = x[n, c, p·sh − ph + r·dh, q·sw − pw + s·dw] (0 in the padding).
struct ImageOperand {
  static constexpr bool kKFast = false;
  struct Line {
    int offset;  // n·C·H·W, or −1 past the last output position
    int h0, w0;  // top-left corner of the window in the image
  };
  const float* x;
  ConvGeometry g;
  int positions;  // N·P·Q
  __device__ __forceinline__ Line line(int npq) const {
    if (npq >= positions) return {-1, 0, 0};
    int n = 0, pq = 0, p = 0, q = 0;
    g.div_pq.divmod(npq, n, pq);
    g.div_q.divmod(pq, p, q);
    return {n * g.chw, p * g.sh - g.ph, q * g.sw - g.pw};
  }
  __device__ __forceinline__ float load(const Line& l, int crs) const {
    int c = 0, rs = 0, r = 0, s = 0;
    g.div_rs.divmod(crs, c, rs);
    g.div_s.divmod(rs, r, s);
    const int ih = l.h0 + r * g.dh, iw = l.w0 + s * g.dw;
    const bool inside = l.offset >= 0 && static_cast<unsigned>(ih) < static_cast<unsigned>(g.h) &&
                        static_cast<unsigned>(iw) < static_cast<unsigned>(g.w);
    return inside ? ldg(x + l.offset + c * g.hw + ih * g.w + iw) : 0.0f;
  }
};

// out[n, m, j] for D[m][n·plane + j] (NCHW output of M channels with `plane` positions each),
// plus bias[m].
struct ChannelEpilogue {
  float* out;
  int channels;
  FastDivmod plane;
  const float* bias;
  __device__ __forceinline__ void store(int m, int col, float v) const {
    int n = 0, j = 0;
    plane.divmod(col, n, j);
    if (bias != nullptr) v += bias[m];
    out[(n * channels + m) * plane.divisor + j] = v;
  }
};

// --- Backward data -------------------------------------------------------------------------------

// A[c][krs] = w[k, c, r, s].
struct WeightsByChannelOperand {
  static constexpr bool kKFast = true;
  using Line = int;  // c·R·S, or −1 past the last channel
  const float* w;
  ConvGeometry g;
  __device__ __forceinline__ Line line(int c) const { return c < g.c ? c * g.rs : -1; }
  __device__ __forceinline__ float load(Line l, int krs) const {
    int k = 0, rs = 0;
    g.div_rs.divmod(krs, k, rs);
    return l >= 0 ? ldg(w + k * g.crs + l + rs) : 0.0f;
  }
};

// B[krs][nhw] = dy[n, k, p, q] where h + ph − r·dh = p·sh and w + pw − s·dw = q·sw (the
// output position whose window puts tap (r, s) on input (h, w)), 0 if there is none.
struct GradGatherOperand {
  static constexpr bool kKFast = false;
  struct Line {
    int offset;  // n·K·P·Q, or −1 past the last input position
    int hp, wp;  // h + ph, w + pw
  };
  const float* dy;
  ConvGeometry g;
  int positions;  // N·H·W
  __device__ __forceinline__ Line line(int nhw) const {
    if (nhw >= positions) return {-1, 0, 0};
    int n = 0, hw = 0, h = 0, w = 0;
    g.div_hw.divmod(nhw, n, hw);
    g.div_w.divmod(hw, h, w);
    return {n * g.kpq, h + g.ph, w + g.pw};
  }
  __device__ __forceinline__ float load(const Line& l, int krs) const {
    int k = 0, rs = 0, r = 0, s = 0;
    g.div_rs.divmod(krs, k, rs);
    g.div_s.divmod(rs, r, s);
    const int hh = l.hp - r * g.dh, ww = l.wp - s * g.dw;
    if (l.offset < 0 || hh < 0 || ww < 0) return 0.0f;
    int p = 0, rem_h = 0, q = 0, rem_w = 0;
    g.div_sh.divmod(hh, p, rem_h);
    g.div_sw.divmod(ww, q, rem_w);
    if ((rem_h | rem_w) != 0 || p >= g.p || q >= g.q) return 0.0f;
    return ldg(dy + l.offset + k * g.pq + p * g.q + q);
  }
};

// --- Backward weights ----------------------------------------------------------------------------

// A[k][npq] = dy[n, k, p, q].
struct GradRowsOperand {
  static constexpr bool kKFast = true;
  using Line = int;  // k·P·Q, or −1 past the last output channel
  const float* dy;
  ConvGeometry g;
  __device__ __forceinline__ Line line(int k) const { return k < g.k ? k * g.pq : -1; }
  __device__ __forceinline__ float load(Line l, int npq) const {
    int n = 0, pq = 0;
    g.div_pq.divmod(npq, n, pq);
    return l >= 0 ? ldg(dy + n * g.kpq + l + pq) : 0.0f;
  }
};

// B[npq][crs] = x[n, c, p·sh − ph + r·dh, q·sw − pw + s·dw] (0 in the padding).
struct ImageColumnsOperand {
  static constexpr bool kKFast = true;
  struct Line {
    int offset;    // c·H·W, or −1 past the last filter tap
    int dh0, dw0;  // r·dh − ph, s·dw − pw
  };
  const float* x;
  ConvGeometry g;
  __device__ __forceinline__ Line line(int crs) const {
    if (crs >= g.crs) return {-1, 0, 0};
    int c = 0, rs = 0, r = 0, s = 0;
    g.div_rs.divmod(crs, c, rs);
    g.div_s.divmod(rs, r, s);
    return {c * g.hw, r * g.dh - g.ph, s * g.dw - g.pw};
  }
  __device__ __forceinline__ float load(const Line& l, int npq) const {
    int n = 0, pq = 0, p = 0, q = 0;
    g.div_pq.divmod(npq, n, pq);
    g.div_q.divmod(pq, p, q);
    const int ih = p * g.sh + l.dh0, iw = q * g.sw + l.dw0;
    const bool inside = l.offset >= 0 && static_cast<unsigned>(ih) < static_cast<unsigned>(g.h) &&
                        static_cast<unsigned>(iw) < static_cast<unsigned>(g.w);
    return inside ? ldg(x + n * g.chw + l.offset + ih * g.w + iw) : 0.0f;
  }
};

// --- The three problems --------------------------------------------------------------------------

using ForwardProblem = gemm::Problem<gemm::RowMajorOperand, ImageOperand, ChannelEpilogue>;
using DataProblem = gemm::Problem<WeightsByChannelOperand, GradGatherOperand, ChannelEpilogue>;
using WeightsProblem = gemm::Problem<GradRowsOperand, ImageColumnsOperand, gemm::MatrixEpilogue>;

// --- Host-side checks ----------------------------------------------------------------------------

std::string describe(const Conv2dDims& d) {
  return "N=" + std::to_string(d.n) + " C=" + std::to_string(d.c) + " H=" + std::to_string(d.h) +
         " W=" + std::to_string(d.w) + " K=" + std::to_string(d.k) + " R=" + std::to_string(d.r) +
         " S=" + std::to_string(d.s) + " stride=" + std::to_string(d.stride_h) + "x" +
         std::to_string(d.stride_w) + " pad=" + std::to_string(d.pad_h) + "x" +
         std::to_string(d.pad_w) + " dil=" + std::to_string(d.dil_h) + "x" +
         std::to_string(d.dil_w);
}

[[noreturn]] void bad(const char* fn, const Conv2dDims& d, const std::string& why) {
  throw std::invalid_argument(std::string(fn) + ": " + why + " (" + describe(d) + ")");
}

// 32-bit indexing inside the kernels, with room for a tile's overhang past the end (k0 + BK,
// n0 + BN, ...).
constexpr int64_t kMaxIndex = int64_t{INT32_MAX} - 1024;
// Largest M (C or K): its tiles (16 rows at the least) go on grid.y.
constexpr int64_t kMaxChannels = int64_t{gemm::kMaxGridY} * 16;

// a·b·c·d > kMaxIndex, for non-negative factors, without overflowing.
bool too_large(std::initializer_list<int64_t> factors) {
  int64_t product = 1;
  for (int64_t f : factors) {
    if (f == 0) return false;
    if (product > kMaxIndex / f) return true;
    product *= f;
  }
  return false;
}

void check_dims(const char* fn, const Conv2dDims& d) {
  if (d.n < 0 || d.c < 1 || d.h < 1 || d.w < 1 || d.k < 1 || d.r < 1 || d.s < 1)
    bad(fn, d, "sizes must be positive (N >= 0)");
  if (d.stride_h < 1 || d.stride_w < 1 || d.dil_h < 1 || d.dil_w < 1)
    bad(fn, d, "stride and dilation must be >= 1");
  if (d.pad_h < 0 || d.pad_w < 0) bad(fn, d, "padding must be >= 0");
  const int64_t extent_h = int64_t{d.h} + 2 * int64_t{d.pad_h} - int64_t{d.dil_h} * (d.r - 1) - 1;
  const int64_t extent_w = int64_t{d.w} + 2 * int64_t{d.pad_w} - int64_t{d.dil_w} * (d.s - 1) - 1;
  if (extent_h < 0 || extent_w < 0)
    bad(fn, d, "the (dilated) kernel is larger than the padded input");
  const int64_t p = extent_h / d.stride_h + 1, q = extent_w / d.stride_w + 1;
  if (too_large({d.n, d.c, d.h, d.w}) || too_large({d.n, d.k, p, q}) ||
      too_large({d.k, d.c, d.r, d.s}) || d.h + 2 * int64_t{d.pad_h} > kMaxIndex ||
      d.w + 2 * int64_t{d.pad_w} > kMaxIndex)
    bad(fn, d, "a tensor exceeds 2^31 - 1024 elements (32-bit indexing)");
  if (d.c > kMaxChannels || d.k > kMaxChannels) bad(fn, d, "more than 1048560 channels");
}

void check_workspace(const char* fn, const Conv2dDims& d, size_t need, const void* ws) {
  if (need > 0 && ws == nullptr)
    bad(fn, d, "needs " + std::to_string(need) + " bytes of workspace, got null");
  if (reinterpret_cast<uintptr_t>(ws) % alignof(float) != 0)
    bad(fn, d, "workspace is not 4-byte aligned");
}

void check_pointer(const char* fn, const Conv2dDims& d, const void* p, const char* name) {
  if (p == nullptr) bad(fn, d, std::string(name) + " is null");
}

}  // namespace

size_t conv2d_workspace_bytes(Conv2dDims d, MathMode math) {
  (void)math;  // both math paths use the same tiles and splits
  check_dims("conv2d_workspace_bytes", d);
  const ConvGeometry g = geometry(d);
  const size_t forward = gemm::workspace_bytes(g.k, g.n * g.pq, g.crs);
  const size_t data = gemm::workspace_bytes(g.c, g.n * g.hw, g.k * g.rs);
  const size_t weights = gemm::workspace_bytes(g.k, g.crs, g.n * g.pq);
  size_t bytes = forward > data ? forward : data;
  return bytes > weights ? bytes : weights;
}

void conv2d_forward(Conv2dDims d, MathMode math, const float* x, const float* w, const float* b,
                    float* y, void* ws, StreamHandle stream) {
  constexpr const char* kFn = "conv2d_forward";
  check_dims(kFn, d);
  const ConvGeometry g = geometry(d);
  ForwardProblem pr{};
  pr.m = g.k;
  pr.n = g.n * g.pq;
  pr.kred = g.crs;
  if (pr.n == 0) return;
  check_pointer(kFn, d, x, "x");
  check_pointer(kFn, d, w, "w");
  check_pointer(kFn, d, y, "y");
  check_workspace(kFn, d, gemm::workspace_bytes(pr.m, pr.n, pr.kred), ws);
  pr.a = {w, g.k, g.crs};
  pr.b = {x, g, pr.n};
  pr.epi = {y, g.k, g.div_pq, b};
  gemm::run_gemm(pr, math == MathMode::kTf32, static_cast<float*>(ws), as_stream(stream));
}

void conv2d_backward_data(Conv2dDims d, MathMode math, const float* dy, const float* w, float* dx,
                          void* ws, StreamHandle stream) {
  constexpr const char* kFn = "conv2d_backward_data";
  check_dims(kFn, d);
  const ConvGeometry g = geometry(d);
  DataProblem pr{};
  pr.m = g.c;
  pr.n = g.n * g.hw;
  pr.kred = g.k * g.rs;
  if (pr.n == 0) return;
  check_pointer(kFn, d, dy, "dy");
  check_pointer(kFn, d, w, "w");
  check_pointer(kFn, d, dx, "dx");
  check_workspace(kFn, d, gemm::workspace_bytes(pr.m, pr.n, pr.kred), ws);
  pr.a = {w, g};
  pr.b = {dy, g, pr.n};
  pr.epi = {dx, g.c, g.div_hw, nullptr};
  gemm::run_gemm(pr, math == MathMode::kTf32, static_cast<float*>(ws), as_stream(stream));
}

void conv2d_backward_weights(Conv2dDims d, MathMode math, const float* x, const float* dy,
                             float* dw, float* db, void* ws, StreamHandle stream) {
  constexpr const char* kFn = "conv2d_backward_weights";
  check_dims(kFn, d);
  const ConvGeometry g = geometry(d);
  WeightsProblem pr{};
  pr.m = g.k;
  pr.n = g.crs;
  pr.kred = g.n * g.pq;
  check_pointer(kFn, d, dw, "dw");
  if (pr.kred > 0) {
    check_pointer(kFn, d, x, "x");
    check_pointer(kFn, d, dy, "dy");
  }
  check_workspace(kFn, d, gemm::workspace_bytes(pr.m, pr.n, pr.kred), ws);
  pr.a = {dy, g};
  pr.b = {x, g};
  pr.epi = {dw, g.crs, nullptr};
  const Stream s = as_stream(stream);
  gemm::run_gemm(pr, math == MathMode::kTf32, static_cast<float*>(ws), s);
  if (db != nullptr) gemm::run_bias_grad(dy, g.n, g.k, g.pq, db, s);
}

}  // namespace wren::WREN_KERNELS_NS
