// The tiled-GEMM building block shared by the convolution and linear kernels (conv.cu,
// linear.cu): one block computes a BM × BN tile of
//
//   D[m, n] = Σ_{k < kred} A[m, k] · B[k, n]        (then an epilogue stores D somewhere)
//
// where A and B are never materialised: each is an *operand* object that says how to fetch
// element (i, k) from global memory (i = m for A, i = n for B), so an im2col matrix, a
// transposed weight tensor or the gather of backward-data are read straight from the tensors
// ("implicit GEMM"). The caller supplies two operands and an epilogue in a Problem:
//
//   struct Operand {
//     static constexpr bool kKFast;   // true: neighbouring k are adjacent in memory (threads
//                                     // of a line load its consecutive k); false: neighbouring
//                                     // i are (consecutive threads load consecutive i)
//     using Line = ...;               // per-thread state for one i (offsets precomputed once)
//     Line line(int i) const;         // i may be >= the operand's extent: a line reading zeros
//     float load(const Line&, int k) const;   // element (i, k); k < kred is guaranteed
//   };
//   struct Epilogue { void store(int m, int n, float value) const; };   // m < M, n < N
//
// Tiling (TileConfig below): a BM × BN output tile per block, BK = 16 reduction steps per
// shared-memory stage, two stages (double buffering: the global loads of chunk c + 1 are in
// registers while chunk c is computed from shared memory, then stored into the other stage),
// so ONE __syncthreads per 16-deep chunk. Shared memory holds both operands k-major,
// As[BK][BM + 8] and Bs[BK][BN + 8]; the padding of 8 floats makes the tensor-core fragment
// reads conflict-free (row stride ≡ 8 mod 32 banks) and keeps rows 16-byte aligned. Four
// shapes (choose_tile picks the one with the least weighted padding for M × N):
//   Large  64×128, 256 threads (fp32 8×4 per thread; tf32 8 warps of 32×32), 26 KB smem
//   Small  32×128, 128 threads (8×4; 4 warps of 32×32), 22 KB: M <= 32
//   Tiny   16×128, 128 threads (4×4; 4 warps of 16×32), 20 KB: M <= 16
//   Narrow  32×32,  32 threads (8×4; 1 warp of 32×32),  10 KB: N <= 32
// Per barrier every thread does 16·TM·TN FMAs (or 2·(WM/16)·(WN/8) mma per warp), which also
// keeps the emulator's fiber switches (one per thread per barrier) a small part of its time.
//
// Math paths (template flag kTf32):
//   fp32: each thread owns a TM × TN register tile (8×4 or 4×4) and does TM·TN FMAs per k
//         (__fmaf_rn under nvcc; a multiply and an add under the emulator, whose x86-64
//         baseline has no FMA). Per output element the k-sum is sequential within a split.
//   tf32: each warp owns a WM × WN tile of m16n8k8 tensor-core tiles (ptx.cuh's
//         mma_m16n8k8_tf32, fp32 accumulate). Operands are rounded with cvt.rna.tf32
//         (float_to_tf32) once, when stored into shared memory; fragments are read with the
//         layout functions of ptx.cuh.
//
// Split-K (deterministic, no atomics): when the output has few tiles and the reduction is
// long (the weight gradient: N·P·Q deep), blockIdx.z splits the chunks into `splits` equal
// contiguous ranges. Each split writes its partial tile to workspace[split][M][N]; a second
// kernel adds the partials in split order 0, 1, 2, ... and applies the epilogue. The plan
// (plan_splits) depends only on (M, N, kred), so reruns are bit-identical.
//
// Everything here lives in an anonymous namespace inside wren::WREN_KERNELS_NS: each kernel
// family's translation unit gets its own copy, and the nvcc and emulator builds never share
// a symbol.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "common/kernel_api.h"
#include "common/launch.h"
#include "common/ptx.cuh"

#if defined(__CUDACC__)
#define WREN_GEMM_UNROLL _Pragma("unroll")
#else
#define WREN_GEMM_UNROLL _Pragma("GCC unroll 32")
#endif

namespace wren::WREN_KERNELS_NS::gemm {
namespace {

// --- Device helpers ------------------------------------------------------------------------------

// Read-only global load (through the texture path on the GPU).
__device__ __forceinline__ float ldg(const float* p) {
#if defined(__CUDACC__)
  return __ldg(p);
#else
  return *p;
#endif
}

__device__ __forceinline__ float mul_add(float a, float b, float c) {
#if defined(__CUDACC__)
  return __fmaf_rn(a, b, c);
#else
  return c + a * b;  // std::fma would be a libm call on baseline x86-64
#endif
}

__device__ __forceinline__ float bits_to_float(uint32_t u) {
#if defined(__CUDACC__)
  return __uint_as_float(u);
#else
  return std::bit_cast<float>(u);
#endif
}
__device__ __forceinline__ uint32_t float_to_bits(float f) {
#if defined(__CUDACC__)
  return __float_as_uint(f);
#else
  return std::bit_cast<uint32_t>(f);
#endif
}

__device__ __forceinline__ uint32_t umulhi(uint32_t a, uint32_t b) {
#if defined(__CUDACC__)
  return __umulhi(a, b);
#else
  return static_cast<uint32_t>((static_cast<uint64_t>(a) * b) >> 32);
#endif
}

__device__ __forceinline__ int imin(int a, int b) {
  return a < b ? a : b;
}

inline int ceil_div(int a, int b) {
  return static_cast<int>((int64_t{a} + b - 1) / b);
}

// Division by a run-time constant d >= 1 with a multiply-high and a shift (Granlund and
// Montgomery; the CUTLASS FastDivmod construction): valid for dividends in [0, 2^31).
// With l = ceil(log2 d), multiplier = ceil(2^(31 + l) / d) < 2^32 and
// x / d = umulhi(x, multiplier) >> (l − 1) for d >= 2; d == 1 is the identity.
struct FastDivmod {
  int divisor = 1;
  uint32_t multiplier = 0;
  int shift = 0;

  static FastDivmod make(int d) {
    FastDivmod f;
    f.divisor = d;
    if (d != 1) {
      int l = 0;
      while ((1LL << l) < d) ++l;  // ceil(log2 d)
      const int p = 31 + l;
      f.multiplier = static_cast<uint32_t>(((uint64_t{1} << p) + static_cast<uint64_t>(d) - 1) /
                                           static_cast<uint64_t>(d));
      f.shift = p - 32;
    }
    return f;
  }
  __device__ __forceinline__ int div(int x) const {
    return divisor == 1 ? x
                        : static_cast<int>(umulhi(static_cast<uint32_t>(x), multiplier) >> shift);
  }
  // q = x / d, r = x % d.
  __device__ __forceinline__ void divmod(int x, int& q, int& r) const {
    q = div(x);
    r = x - q * divisor;
  }
};

// --- Tile configurations -------------------------------------------------------------------------

// BM × BN outputs per block, kThreads threads; fp32: TM × TN outputs per thread; tf32: WM × WN
// per warp (a grid of m16n8 mma tiles).
template <int kBM_, int kBN_, int kThreads_, int kTM_, int kTN_, int kWM_, int kWN_>
struct TileConfig {
  static constexpr int kBM = kBM_, kBN = kBN_, kBK = 16, kThreads = kThreads_;
  static constexpr int kTM = kTM_, kTN = kTN_, kWM = kWM_, kWN = kWN_;
  static constexpr int kPad = 8;
  static constexpr int kAStride = kBM + kPad, kBStride = kBN + kPad;
  static constexpr int kStageFloats = kBK * (kAStride + kBStride);
  static constexpr size_t kSmemBytes = 2 * kStageFloats * sizeof(float);  // two stages
  static_assert((kBM / kTM) * (kBN / kTN) == kThreads, "fp32: one register tile per thread");
  static_assert((kBM / kWM) * (kBN / kWN) * 32 == kThreads, "tf32: one warp tile per warp");
  static_assert(kWM % 16 == 0 && kWN % 8 == 0 && kBK % 8 == 0, "m16n8k8 tiles");
  static_assert(kSmemBytes <= 48 * 1024, "static launch limit of dynamic shared memory");
};

// The four shapes the launchers choose from (choose_tile): the general case; M <= 32 (32 or
// fewer output channels); M <= 16 (a handful of channels, a small batch); N <= 32 (the weight
// gradient of a first layer, C·R·S = 9 or 27; the logits of a classifier), one warp per block.
using TileLarge = TileConfig<64, 128, 256, 8, 4, 32, 32>;
using TileSmall = TileConfig<32, 128, 128, 8, 4, 32, 32>;
using TileTiny = TileConfig<16, 128, 128, 4, 4, 16, 32>;
using TileNarrow = TileConfig<32, 32, 32, 8, 4, 32, 32>;

enum class TileShape { kLarge, kSmall, kTiny, kNarrow };

// The shape with the least padded work, weighted by a per-shape inefficiency (smaller tiles
// reuse less data per load); depends only on (M, N).
inline TileShape choose_tile(int m, int n) {
  struct Option {
    TileShape shape;
    int bm, bn;
    double weight;
  };
  constexpr Option kOptions[] = {{TileShape::kLarge, TileLarge::kBM, TileLarge::kBN, 1.0},
                                 {TileShape::kSmall, TileSmall::kBM, TileSmall::kBN, 1.15},
                                 {TileShape::kTiny, TileTiny::kBM, TileTiny::kBN, 1.5},
                                 {TileShape::kNarrow, TileNarrow::kBM, TileNarrow::kBN, 2.0}};
  TileShape best = TileShape::kLarge;
  double best_cost = 0.0;
  bool first = true;
  for (const Option& o : kOptions) {
    const double cost = o.weight * static_cast<double>(ceil_div(m, o.bm)) * o.bm *
                        static_cast<double>(ceil_div(n, o.bn)) * o.bn;
    if (first || cost < best_cost) {
      best = o.shape;
      best_cost = cost;
      first = false;
    }
  }
  return best;
}

// --- Split-K plan --------------------------------------------------------------------------------

struct SplitPlan {
  int chunks = 0;            // ceil(kred / BK)
  int chunks_per_split = 0;  // every split but the last has exactly this many
  int splits = 1;
};

constexpr int kTargetBlocks = 256;      // about two blocks per SM on an A100 (108) / H100 (132)
constexpr int kMinChunksPerSplit = 16;  // >= 256 reduction steps per split
constexpr int kMaxSplits = 64;

template <class Cfg>
SplitPlan plan_splits(int m, int n, int kred) {
  SplitPlan plan;
  plan.chunks = ceil_div(kred, Cfg::kBK);
  const int64_t tiles = int64_t{ceil_div(m, Cfg::kBM)} * ceil_div(n, Cfg::kBN);
  int splits = 1;
  if (tiles < kTargetBlocks / 2 && plan.chunks >= 2 * kMinChunksPerSplit) {
    splits = ceil_div(kTargetBlocks, static_cast<int>(tiles));
    if (splits > plan.chunks / kMinChunksPerSplit) splits = plan.chunks / kMinChunksPerSplit;
    if (splits > kMaxSplits) splits = kMaxSplits;
  }
  plan.chunks_per_split = ceil_div(plan.chunks, splits);
  // No empty split: as many as the rounded-up chunk count needs.
  plan.splits = plan.chunks_per_split > 0 ? ceil_div(plan.chunks, plan.chunks_per_split) : 1;
  return plan;
}

// --- Loading a tile: global -> registers -> shared memory ----------------------------------------

// Which elements of a kI × BK operand tile thread t loads (kPer of them, j < kPer):
//   i-fast (Op::kKFast false): element e = t + j·kThreads is (i = e % kI, k = e / kI), so a
//     thread always loads the same i: one line, kPer values of k; a warp reads 32 consecutive
//     i (coalesced when i is contiguous in memory).
//   k-fast: kVec consecutive k of a line per thread, kGroup = BK / kVec threads per line:
//     element j is (i = t / kGroup + (j / kVec)·(kThreads / kGroup), k = (t % kGroup)·kVec +
//     j % kVec); kPer / kVec lines per thread (few lines: their state stays in registers), and
//     the kGroup threads of a line cover its BK contiguous values.
template <class Op, int kI, int kBK, int kThreads>
struct Stager {
  static constexpr bool kKFast = Op::kKFast;
  static constexpr int kPer = kI * kBK / kThreads;
  static constexpr int kVec = kKFast ? (kPer < 4 ? kPer : 4) : 1;
  static constexpr int kGroup = kBK / kVec;
  static constexpr int kLines = kKFast ? kPer / kVec : 1;
  static_assert(kI * kBK % kThreads == 0, "whole tile per pass");
  static_assert(kKFast ? (kPer % kVec == 0 && kBK % kVec == 0 && kThreads % kGroup == 0 &&
                          kI % (kThreads / kGroup) == 0)
                       : kThreads % kI == 0,
                "fixed lines per thread");

  typename Op::Line line[kLines];
  float reg[kPer];

  __device__ __forceinline__ static int tile_i(int t, int j) {
    if constexpr (kKFast) return t / kGroup + (j / kVec) * (kThreads / kGroup);
    return (t + j * kThreads) % kI;
  }
  __device__ __forceinline__ static int tile_k(int t, int j) {
    if constexpr (kKFast) return (t % kGroup) * kVec + j % kVec;
    return (t + j * kThreads) / kI;
  }

  __device__ __forceinline__ void init(const Op& op, int i0, int t) {
    WREN_GEMM_UNROLL
    for (int l = 0; l < kLines; ++l) line[l] = op.line(i0 + tile_i(t, l * kVec));
  }
  __device__ __forceinline__ void fetch(const Op& op, int k0, int kred, int t) {
    WREN_GEMM_UNROLL
    for (int j = 0; j < kPer; ++j) {
      const int k = k0 + tile_k(t, j);
      reg[j] = k < kred ? op.load(line[kKFast ? j / kVec : 0], k) : 0.0f;
    }
  }
  // Into a k-major tile [BK][stride]; tf32: rounded (cvt.rna) once here.
  template <bool kTf32>
  __device__ __forceinline__ void store(float* tile, int stride, int t) const {
    WREN_GEMM_UNROLL
    for (int j = 0; j < kPer; ++j) {
      const float v = kTf32 ? bits_to_float(ptx::float_to_tf32(reg[j])) : reg[j];
      tile[tile_k(t, j) * stride + tile_i(t, j)] = v;
    }
  }
};

// --- Computing a stage ---------------------------------------------------------------------------

// fp32: thread t owns rows tm·TM + [0, TM) and columns tn·TN + [0, TN) of the tile, with tn
// fastest across threads (a warp reads one A row segment as a broadcast and a contiguous
// B segment).
template <class Cfg>
struct FmaTile {
  static constexpr int kTM = Cfg::kTM, kTN = Cfg::kTN, kThreadsN = Cfg::kBN / Cfg::kTN;
  float acc[kTM][kTN];
  int row0 = 0, col0 = 0;

  __device__ __forceinline__ void init(int t) {
    row0 = (t / kThreadsN) * kTM;
    col0 = (t % kThreadsN) * kTN;
    WREN_GEMM_UNROLL
    for (int i = 0; i < kTM; ++i) {
      WREN_GEMM_UNROLL
      for (int j = 0; j < kTN; ++j) acc[i][j] = 0.0f;
    }
  }
  __device__ __forceinline__ void compute(const float* as, const float* bs) {
    WREN_GEMM_UNROLL
    for (int k = 0; k < Cfg::kBK; ++k) {
      float a[kTM], b[kTN];
      WREN_GEMM_UNROLL
      for (int i = 0; i < kTM; ++i) a[i] = as[k * Cfg::kAStride + row0 + i];
      WREN_GEMM_UNROLL
      for (int j = 0; j < kTN; ++j) b[j] = bs[k * Cfg::kBStride + col0 + j];
      WREN_GEMM_UNROLL
      for (int i = 0; i < kTM; ++i) {
        WREN_GEMM_UNROLL
        for (int j = 0; j < kTN; ++j) acc[i][j] = mul_add(a[i], b[j], acc[i][j]);
      }
    }
  }
  // f(row, col, value) for every owned element (tile coordinates).
  template <class F>
  __device__ __forceinline__ void for_each(F f) const {
    WREN_GEMM_UNROLL
    for (int i = 0; i < kTM; ++i) {
      WREN_GEMM_UNROLL
      for (int j = 0; j < kTN; ++j) f(row0 + i, col0 + j, acc[i][j]);
    }
  }
};

// tf32: warp w owns a WM × WN tile at (wm·WM, wn·WN), as (WM/16) × (WN/8) mma tiles; lane
// fragments follow ptx.cuh's m16n8k8 layouts.
template <class Cfg>
struct MmaTile {
  static constexpr int kMI = Cfg::kWM / 16, kNI = Cfg::kWN / 8, kWarpsN = Cfg::kBN / Cfg::kWN;
  float acc[kMI][kNI][4];
  int lane = 0, row0 = 0, col0 = 0;

  __device__ __forceinline__ void init(int t) {
    const int warp = t / 32;
    lane = t % 32;
    row0 = (warp / kWarpsN) * Cfg::kWM;
    col0 = (warp % kWarpsN) * Cfg::kWN;
    WREN_GEMM_UNROLL
    for (int mi = 0; mi < kMI; ++mi) {
      WREN_GEMM_UNROLL
      for (int ni = 0; ni < kNI; ++ni) {
        WREN_GEMM_UNROLL
        for (int e = 0; e < 4; ++e) acc[mi][ni][e] = 0.0f;
      }
    }
  }
  // The shared tiles already hold tf32 values (Stager::store<true>).
  __device__ __forceinline__ void compute(const float* as, const float* bs) {
    WREN_GEMM_UNROLL
    for (int k8 = 0; k8 < Cfg::kBK; k8 += 8) {
      uint32_t a[kMI][4], b[kNI][2];
      WREN_GEMM_UNROLL
      for (int mi = 0; mi < kMI; ++mi) {
        WREN_GEMM_UNROLL
        for (int e = 0; e < 4; ++e) {
          const ptx::FragCoord rc = ptx::m16n8k8_tf32_a(lane, e);
          a[mi][e] = float_to_bits(as[(k8 + rc.col) * Cfg::kAStride + row0 + mi * 16 + rc.row]);
        }
      }
      WREN_GEMM_UNROLL
      for (int ni = 0; ni < kNI; ++ni) {
        WREN_GEMM_UNROLL
        for (int e = 0; e < 2; ++e) {
          const ptx::FragCoord rc = ptx::m16n8k8_tf32_b(lane, e);
          b[ni][e] = float_to_bits(bs[(k8 + rc.row) * Cfg::kBStride + col0 + ni * 8 + rc.col]);
        }
      }
      WREN_GEMM_UNROLL
      for (int mi = 0; mi < kMI; ++mi) {
        WREN_GEMM_UNROLL
        for (int ni = 0; ni < kNI; ++ni) {
          const float c[4] = {acc[mi][ni][0], acc[mi][ni][1], acc[mi][ni][2], acc[mi][ni][3]};
          ptx::mma_m16n8k8_tf32(acc[mi][ni], a[mi], b[ni], c);
        }
      }
    }
  }
  template <class F>
  __device__ __forceinline__ void for_each(F f) const {
    WREN_GEMM_UNROLL
    for (int mi = 0; mi < kMI; ++mi) {
      WREN_GEMM_UNROLL
      for (int ni = 0; ni < kNI; ++ni) {
        WREN_GEMM_UNROLL
        for (int e = 0; e < 4; ++e) {
          const ptx::FragCoord rc = ptx::m16n8_c(lane, e);
          f(row0 + mi * 16 + rc.row, col0 + ni * 8 + rc.col, acc[mi][ni][e]);
        }
      }
    }
  }
};

// --- The kernels ---------------------------------------------------------------------------------

template <class AOp_, class BOp_, class Epi_>
struct Problem {
  using AOp = AOp_;
  using BOp = BOp_;
  using Epi = Epi_;
  int m = 0, n = 0, kred = 0;
  AOp a;
  BOp b;
  Epi epi;
};

// Grid: (N tiles, M tiles, splits). `partials` null: the epilogue stores the tile; otherwise
// split z writes its raw partial tile to partials[z][M][N] (splitk_reduce_kernel finishes).
template <class Cfg, bool kTf32, class P>
__global__ void __launch_bounds__(Cfg::kThreads)
    gemm_kernel(const P p, const SplitPlan plan, float* __restrict__ partials) {
  using SA = Stager<typename P::AOp, Cfg::kBM, Cfg::kBK, Cfg::kThreads>;
  using SB = Stager<typename P::BOp, Cfg::kBN, Cfg::kBK, Cfg::kThreads>;
  using Tile = std::conditional_t<kTf32, MmaTile<Cfg>, FmaTile<Cfg>>;

  float* smem = dynamic_smem<float>();
  const int t = static_cast<int>(threadIdx.x);
  const int m0 = static_cast<int>(blockIdx.y) * Cfg::kBM;
  const int n0 = static_cast<int>(blockIdx.x) * Cfg::kBN;
  const int split = static_cast<int>(blockIdx.z);
  const int c_begin = split * plan.chunks_per_split;
  const int c_end = imin(c_begin + plan.chunks_per_split, plan.chunks);
  // Stage s: As at smem + s·kStageFloats, Bs right after it.
  auto as_of = [smem](int s) { return smem + s * Cfg::kStageFloats; };
  auto bs_of = [smem](int s) { return smem + s * Cfg::kStageFloats + Cfg::kBK * Cfg::kAStride; };

  SA sa;
  SB sb;
  sa.init(p.a, m0, t);
  sb.init(p.b, n0, t);
  Tile tile;
  tile.init(t);

  if (c_begin < c_end) {
    sa.fetch(p.a, c_begin * Cfg::kBK, p.kred, t);
    sb.fetch(p.b, c_begin * Cfg::kBK, p.kred, t);
    sa.template store<kTf32>(as_of(0), Cfg::kAStride, t);
    sb.template store<kTf32>(bs_of(0), Cfg::kBStride, t);
  }
  __syncthreads();
  for (int c = c_begin; c < c_end; ++c) {
    const int stage = (c - c_begin) & 1;
    const bool more = c + 1 < c_end;
    if (more) {  // the next chunk's global loads overlap this chunk's math
      sa.fetch(p.a, (c + 1) * Cfg::kBK, p.kred, t);
      sb.fetch(p.b, (c + 1) * Cfg::kBK, p.kred, t);
    }
    tile.compute(as_of(stage), bs_of(stage));
    if (more) {  // the other stage was last read before the previous barrier
      sa.template store<kTf32>(as_of(stage ^ 1), Cfg::kAStride, t);
      sb.template store<kTf32>(bs_of(stage ^ 1), Cfg::kBStride, t);
    }
    __syncthreads();
  }

  const int m_size = p.m, n_size = p.n;
  if (partials == nullptr) {
    tile.for_each([&](int r, int col, float v) {
      const int m = m0 + r, n = n0 + col;
      if (m < m_size && n < n_size) p.epi.store(m, n, v);
    });
  } else {
    float* out = partials + static_cast<size_t>(split) * static_cast<size_t>(m_size) * n_size;
    tile.for_each([&](int r, int col, float v) {
      const int m = m0 + r, n = n0 + col;
      if (m < m_size && n < n_size) out[static_cast<size_t>(m) * n_size + n] = v;
    });
  }
}

// D[m, n] = Σ_{s < splits} partials[s][m][n], added in split order; then the epilogue.
template <class Epi>
__global__ void splitk_reduce_kernel(const float* __restrict__ partials, int splits, int m_size,
                                     int n_size, const Epi epi) {
  const int total = m_size * n_size;
  const int stride = static_cast<int>(gridDim.x * blockDim.x);
  for (int i = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x); i < total; i += stride) {
    float v = partials[i];
    for (int s = 1; s < splits; ++s) v += partials[static_cast<size_t>(s) * total + i];
    const int m = i / n_size;
    epi.store(m, i - m * n_size, v);
  }
}

constexpr int kReduceThreads = 256;
constexpr int kBiasThreads = 128;

// Bias gradient: db[c] = Σ_{o < outer} Σ_{j < inner} dy[(o·channels + c)·inner + j], one block
// of kThreads (a power of two) per channel; each thread sums its strided share in double, then
// a fixed tree in shared memory (deterministic). `inner_div` divides by `inner`.
template <int kThreads>
__global__ void __launch_bounds__(kThreads)
    bias_grad_kernel(const float* __restrict__ dy, int outer, int channels, FastDivmod inner_div,
                     float* __restrict__ db) {
  static_assert((kThreads & (kThreads - 1)) == 0, "a power of two");
  double* red = dynamic_smem<double>();
  const int c = static_cast<int>(blockIdx.x), t = static_cast<int>(threadIdx.x);
  const int inner = inner_div.divisor;
  const int total = outer * inner;
  double sum = 0.0;
  for (int j = t; j < total; j += kThreads) {
    int o = 0, i = 0;
    inner_div.divmod(j, o, i);
    sum += static_cast<double>(ldg(dy + (o * channels + c) * inner + i));
  }
  red[t] = sum;
  for (int width = kThreads / 2; width > 0; width /= 2) {
    __syncthreads();
    if (t < width) red[t] += red[t + width];
  }
  if (t == 0) db[c] = static_cast<float>(red[0]);
}

// --- Host side -----------------------------------------------------------------------------------

template <class Cfg>
size_t workspace_bytes_for(int m, int n, int kred) {
  const SplitPlan plan = plan_splits<Cfg>(m, n, kred);
  return plan.splits > 1
             ? static_cast<size_t>(plan.splits) * static_cast<size_t>(m) * n * sizeof(float)
             : 0;
}

// Workspace bytes run_gemm needs for an M × N × kred problem (0 when it does not split).
inline size_t workspace_bytes(int m, int n, int kred) {
  switch (choose_tile(m, n)) {
    case TileShape::kLarge:
      return workspace_bytes_for<TileLarge>(m, n, kred);
    case TileShape::kSmall:
      return workspace_bytes_for<TileSmall>(m, n, kred);
    case TileShape::kTiny:
      return workspace_bytes_for<TileTiny>(m, n, kred);
    case TileShape::kNarrow:
      return workspace_bytes_for<TileNarrow>(m, n, kred);
  }
  return 0;
}

// Largest grid.y / grid.z the launchers may need (checked by the callers' validation).
constexpr int kMaxGridY = 65535;

template <class Cfg, class P>
void launch_with(const P& p, bool tf32, float* workspace, Stream stream) {
  const SplitPlan plan = plan_splits<Cfg>(p.m, p.n, p.kred);
  const dim3 grid(static_cast<unsigned>(ceil_div(p.n, Cfg::kBN)),
                  static_cast<unsigned>(ceil_div(p.m, Cfg::kBM)),
                  static_cast<unsigned>(plan.splits));
  float* partials = plan.splits > 1 ? workspace : nullptr;
  if (tf32) {
    WREN_LAUNCH(grid, Cfg::kThreads, Cfg::kSmemBytes, stream, gemm_kernel<Cfg, true, P>)
    (p, plan, partials);
  } else {
    WREN_LAUNCH(grid, Cfg::kThreads, Cfg::kSmemBytes, stream, gemm_kernel<Cfg, false, P>)
    (p, plan, partials);
  }
  if (plan.splits > 1) {
    const int total = p.m * p.n;
    int blocks = ceil_div(total, kReduceThreads);
    if (blocks > 4096) blocks = 4096;
    WREN_LAUNCH(blocks, kReduceThreads, 0, stream, splitk_reduce_kernel<typename P::Epi>)
    (workspace, plan.splits, p.m, p.n, p.epi);
  }
}

// Runs problem p (M, N >= 1; kred >= 0) on the tile shape choose_tile picks. `workspace`:
// workspace_bytes(M, N, kred) bytes of device memory (may be null when that is 0).
template <class P>
void run_gemm(const P& p, bool tf32, float* workspace, Stream stream) {
  switch (choose_tile(p.m, p.n)) {
    case TileShape::kLarge:
      return launch_with<TileLarge>(p, tf32, workspace, stream);
    case TileShape::kSmall:
      return launch_with<TileSmall>(p, tf32, workspace, stream);
    case TileShape::kTiny:
      return launch_with<TileTiny>(p, tf32, workspace, stream);
    case TileShape::kNarrow:
      return launch_with<TileNarrow>(p, tf32, workspace, stream);
  }
}

// db[c] for c < channels (see bias_grad_kernel).
inline void run_bias_grad(const float* dy, int outer, int channels, int inner, float* db,
                          Stream stream) {
  WREN_LAUNCH(channels, kBiasThreads, kBiasThreads * sizeof(double), stream,
              bias_grad_kernel<kBiasThreads>)
  (dy, outer, channels, FastDivmod::make(inner), db);
}

// --- Operands and epilogues shared by the families -----------------------------------------------

// X[i][k] = p[i·ld + k] for i < rows (k contiguous).
struct RowMajorOperand {
  static constexpr bool kKFast = true;
  using Line = int;  // offset of row i, or −1 past the last row
  const float* p = nullptr;
  int rows = 0, ld = 0;
  __device__ __forceinline__ Line line(int i) const { return i < rows ? i * ld : -1; }
  __device__ __forceinline__ float load(Line l, int k) const {
    return l >= 0 ? ldg(p + l + k) : 0.0f;
  }
};

// X[i][k] = p[k·ld + i] for i < rows (i contiguous).
struct ColMajorOperand {
  static constexpr bool kKFast = false;
  using Line = int;  // i, or −1 past the last row
  const float* p = nullptr;
  int rows = 0, ld = 0;
  __device__ __forceinline__ Line line(int i) const { return i < rows ? i : -1; }
  __device__ __forceinline__ float load(Line l, int k) const {
    return l >= 0 ? ldg(p + k * ld + l) : 0.0f;
  }
};

// out[m·ld + n] = v + bias[n] (bias may be null).
struct MatrixEpilogue {
  float* out = nullptr;
  int ld = 0;
  const float* bias = nullptr;
  __device__ __forceinline__ void store(int m, int n, float v) const {
    if (bias != nullptr) v += bias[n];
    out[m * ld + n] = v;
  }
};

}  // namespace
}  // namespace wren::WREN_KERNELS_NS::gemm
