// Tensor-core and asynchronous-copy PTX, wrapped in device functions that have emulated twins.
//
// Kernels never write `asm` themselves (docs/EMULATOR.md): they call these wrappers, which are
// inline PTX under nvcc and C++ twins under the SIMT emulator (`emu`). The twins follow the PTX
// ISA definitions, so a kernel verified on `emu` uses the instructions the way the hardware
// defines them:
//   - mma.sync m16n8k16 (bf16, f16 inputs) and m16n8k8 (tf32) with fp32 accumulation: the warp's
//     fragments are gathered, the 16x8 product is computed, each lane keeps its fragment of D;
//   - ldmatrix m8n8 .b16 (x1, x2, x4, and .trans);
//   - cp.async (4, 8, 16 bytes, with a source size for zero fill), commit_group, wait_group:
//     the twin defers every copy to the wait that covers it, so reading the destination before
//     waiting reads the shared-memory garbage fill.
// WMMA is deliberately absent: its fragment layout is unspecified, so it cannot be emulated.
// ldmatrix and cp.async have no kernel caller yet: they (and the emulator's deferred-copy model
// behind cp.async) are the emulator-verified building blocks of the multi-stage GEMM pipeline
// that docs/KERNELS.md lists as the next step, kept so that its kernels start from tested parts.
//
// The fragment layouts (PTX ISA, "Matrix fragments for mma.m16n8k16 / mma.m16n8k8") are also
// exposed as pure functions, which the twins, the tests and the kernels share. In all of them
// groupID = lane / 4 and threadID_in_group = lane % 4.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#define WREN_PTX_HD __host__ __device__
#else
#include <bit>
#include <cstring>

#include "emu/emu.h"
#define WREN_PTX_HD
#endif

namespace wren::ptx {

// (row, column) of one fragment element in its matrix. For B, row is k and column is n.
struct FragCoord {
  int row = 0;
  int col = 0;
};

// m16n8k16 .bf16/.f16 A (16x16, row-major): element e in [0, 8) of a lane; register a[e / 2]
// holds elements e = 2r (low half) and 2r + 1 (high half).
WREN_PTX_HD constexpr FragCoord m16n8k16_a(int lane, int e) {
  return {lane / 4 + 8 * ((e >> 1) & 1), 2 * (lane % 4) + (e & 1) + 8 * (e >> 2)};
}
// m16n8k16 .bf16/.f16 B (16x8, k x n, "col"): element e in [0, 4); register b[e / 2].
WREN_PTX_HD constexpr FragCoord m16n8k16_b(int lane, int e) {
  return {2 * (lane % 4) + (e & 1) + 8 * (e >> 1), lane / 4};
}
// m16n8k8 .tf32 A (16x8, row-major): element e in [0, 4), one per register.
WREN_PTX_HD constexpr FragCoord m16n8k8_tf32_a(int lane, int e) {
  return {lane / 4 + 8 * (e & 1), lane % 4 + 4 * (e >> 1)};
}
// m16n8k8 .tf32 B (8x8, k x n): element e in [0, 2), one per register.
WREN_PTX_HD constexpr FragCoord m16n8k8_tf32_b(int lane, int e) {
  return {lane % 4 + 4 * e, lane / 4};
}
// C and D of both shapes (16x8 fp32): element e in [0, 4), one per register.
WREN_PTX_HD constexpr FragCoord m16n8_c(int lane, int e) {
  return {lane / 4 + 8 * (e >> 1), 2 * (lane % 4) + (e & 1)};
}

// Two 16-bit values in one register, `lo` in the low half (the lower-indexed element).
WREN_PTX_HD constexpr uint32_t pack_b16x2(uint16_t lo, uint16_t hi) {
  return static_cast<uint32_t>(lo) | (static_cast<uint32_t>(hi) << 16);
}

#if defined(__CUDACC__)

// --- nvcc: the instructions themselves (sm_80 and later) ---------------------------------------

// cvt.rna.tf32.f32: round to TF32 (10 mantissa bits), nearest, ties away from zero.
__device__ __forceinline__ uint32_t float_to_tf32(float x) {
  uint32_t r = 0;
#if defined(__CUDA_ARCH__)
  asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
#endif
  return r;
}

#define WREN_PTX_MMA(name, instruction)                                                       \
  __device__ __forceinline__ void name(float (&d)[4], const uint32_t (&a)[4],                 \
                                       const uint32_t (&b)[2], const float (&c)[4]) {         \
    WREN_PTX_MMA_ASM(instruction)                                                             \
  }
#if defined(__CUDA_ARCH__)
#define WREN_PTX_MMA_ASM(instruction)                                                         \
  asm volatile(instruction " {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%10,%11,%12,%13};"       \
               : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])                               \
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), \
                 "f"(c[1]), "f"(c[2]), "f"(c[3]));
#else
#define WREN_PTX_MMA_ASM(instruction) \
  (void)a;                            \
  (void)b;                            \
  for (int i = 0; i < 4; ++i) d[i] = c[i];
#endif
WREN_PTX_MMA(mma_m16n8k16_bf16, "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32")
WREN_PTX_MMA(mma_m16n8k16_f16, "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32")
WREN_PTX_MMA(mma_m16n8k8_tf32, "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32")
#undef WREN_PTX_MMA
#undef WREN_PTX_MMA_ASM

__device__ __forceinline__ uint32_t smem_address(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// ldmatrix: lanes 8j..8j+7 give the row addresses of matrix j (16-byte aligned rows of eight
// 16-bit elements); r[j] receives matrix j's fragment (see the emulated twin for the layout).
template <int kMatrices, bool kTrans>
__device__ __forceinline__ void ldmatrix(uint32_t (&r)[kMatrices], const void* row) {
  static_assert(kMatrices == 1 || kMatrices == 2 || kMatrices == 4, "x1, x2 or x4");
#if defined(__CUDA_ARCH__)
  const uint32_t addr = smem_address(row);
  if constexpr (kMatrices == 1 && !kTrans) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x1.shared.b16 {%0}, [%1];" : "=r"(r[0]) : "r"(addr));
  } else if constexpr (kMatrices == 1) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x1.trans.shared.b16 {%0}, [%1];"
                 : "=r"(r[0])
                 : "r"(addr));
  } else if constexpr (kMatrices == 2 && !kTrans) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];"
                 : "=r"(r[0]), "=r"(r[1])
                 : "r"(addr));
  } else if constexpr (kMatrices == 2) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];"
                 : "=r"(r[0]), "=r"(r[1])
                 : "r"(addr));
  } else if constexpr (!kTrans) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
  } else {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
  }
#else
  (void)row;
  for (int j = 0; j < kMatrices; ++j) r[j] = 0;
#endif
}

// cp.async of kBytes (4, 8 or 16) from global to shared memory; bytes past `src_bytes` are
// zero-filled (a copy that straddles the end of a tensor). 16-byte copies bypass L1 (.cg).
template <int kBytes>
__device__ __forceinline__ void cp_async(void* smem_dst, const void* gmem_src,
                                         unsigned src_bytes = kBytes) {
  static_assert(kBytes == 4 || kBytes == 8 || kBytes == 16, "cp.async copies 4, 8 or 16 bytes");
#if defined(__CUDA_ARCH__)
  if constexpr (kBytes == 16) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(smem_address(smem_dst)),
                 "l"(gmem_src), "r"(src_bytes));
  } else {
    asm volatile("cp.async.ca.shared.global [%0], [%1], %2, %3;" ::"r"(smem_address(smem_dst)),
                 "l"(gmem_src), "n"(kBytes), "r"(src_bytes));
  }
#else
  (void)smem_dst;
  (void)gmem_src;
  (void)src_bytes;
#endif
}

__device__ __forceinline__ void cp_async_commit() {
#if defined(__CUDA_ARCH__)
  asm volatile("cp.async.commit_group;");
#endif
}

// Waits until at most kPending of this thread's committed groups are still in flight.
template <int kPending>
__device__ __forceinline__ void cp_async_wait() {
#if defined(__CUDA_ARCH__)
  asm volatile("cp.async.wait_group %0;" ::"n"(kPending));
#endif
}

#else  // ---------------------------------------------------------------------------------------
// --- The SIMT emulator: the twins ---------------------------------------------------------------

namespace detail {

inline float bf16_bits_to_float(uint16_t bits) {
  return std::bit_cast<float>(static_cast<uint32_t>(bits) << 16);
}
inline float f16_bits_to_float(uint16_t bits) {
  __half_raw raw;
  raw.x = bits;
  return __half2float(__half(raw));
}
// The tensor cores read a .tf32 operand's sign, exponent and top 10 mantissa bits.
inline float tf32_bits_to_float(uint32_t bits) {
  return std::bit_cast<float>(bits & 0xffffe000u);
}

// The calling lane's index in its warp; fails unless the whole warp exists (mma, ldmatrix).
inline int full_warp_lane(const char* what) {
  const unsigned n = blockDim.x * blockDim.y * blockDim.z;
  const unsigned t = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  if ((t / 32 + 1) * 32 > n) {
    emu::detail::fail(std::string(what) + " needs a full warp of 32 threads (block of " +
                      std::to_string(n) + ")");
  }
  return static_cast<int>(t % 32);
}

struct MmaOperands {
  uint32_t a[4];
  uint32_t b[2];
  float c[4];
};

// D = A·B + C for the lane's four D elements. The products of bf16/f16/tf32 values are exact in
// double and the 16 (or 8) of them are summed in double and rounded once: the hardware's
// accumulation order and intermediate rounding are unspecified, so results on a GPU may differ
// by a few fp32 ulps of the sum of |products| (tests use that bound).
template <int kK, class ElementA, class ElementB>
inline void mma_twin(const char* name, float (&d)[4], const uint32_t (&a)[4],
                     const uint32_t (&b)[2], const float (&c)[4], ElementA element_a,
                     ElementB element_b) {
  const int lane = full_warp_lane(name);
  MmaOperands mine;
  std::memcpy(mine.a, a, sizeof mine.a);
  std::memcpy(mine.b, b, sizeof mine.b);
  std::memcpy(mine.c, c, sizeof mine.c);
  MmaOperands all[32];
  emu::warp_all_gather(&mine, sizeof mine, all);
  double A[16][kK], B[kK][8];
  for (int l = 0; l < 32; ++l) {
    for (int e = 0; e < kK / 2; ++e) {
      const auto [row, col, value] = element_a(all[l].a, l, e);
      A[row][col] = value;
    }
    for (int e = 0; e < kK / 4; ++e) {
      const auto [row, col, value] = element_b(all[l].b, l, e);
      B[row][col] = value;
    }
  }
  for (int e = 0; e < 4; ++e) {
    const FragCoord rc = m16n8_c(lane, e);
    double sum = 0.0;
    for (int k = 0; k < kK; ++k) sum += A[rc.row][k] * B[k][rc.col];
    d[e] = static_cast<float>(sum + static_cast<double>(c[e]));
  }
}

struct Element {
  int row;
  int col;
  double value;
};

template <float (*kConvert)(uint16_t)>
inline Element b16_a(const uint32_t* regs, int lane, int e) {
  const FragCoord rc = m16n8k16_a(lane, e);
  const auto half = static_cast<uint16_t>(regs[e / 2] >> (16 * (e & 1)));
  return {rc.row, rc.col, kConvert(half)};
}
template <float (*kConvert)(uint16_t)>
inline Element b16_b(const uint32_t* regs, int lane, int e) {
  const FragCoord rc = m16n8k16_b(lane, e);
  const auto half = static_cast<uint16_t>(regs[e / 2] >> (16 * (e & 1)));
  return {rc.row, rc.col, kConvert(half)};
}
inline Element tf32_a(const uint32_t* regs, int lane, int e) {
  const FragCoord rc = m16n8k8_tf32_a(lane, e);
  return {rc.row, rc.col, tf32_bits_to_float(regs[e])};
}
inline Element tf32_b(const uint32_t* regs, int lane, int e) {
  const FragCoord rc = m16n8k8_tf32_b(lane, e);
  return {rc.row, rc.col, tf32_bits_to_float(regs[e])};
}

}  // namespace detail

inline uint32_t float_to_tf32(float x) {
  const uint32_t bits = std::bit_cast<uint32_t>(x);
  if ((bits & 0x7f800000u) == 0x7f800000u) return bits;  // Inf and NaN pass through
  // Adding half of the dropped range to the magnitude and truncating rounds ties away from 0.
  return (bits + 0x1000u) & 0xffffe000u;
}

inline void mma_m16n8k16_bf16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2],
                              const float (&c)[4]) {
  detail::mma_twin<16>("mma.m16n8k16.bf16", d, a, b, c,
                       detail::b16_a<detail::bf16_bits_to_float>,
                       detail::b16_b<detail::bf16_bits_to_float>);
}
inline void mma_m16n8k16_f16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2],
                             const float (&c)[4]) {
  detail::mma_twin<16>("mma.m16n8k16.f16", d, a, b, c, detail::b16_a<detail::f16_bits_to_float>,
                       detail::b16_b<detail::f16_bits_to_float>);
}
inline void mma_m16n8k8_tf32(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2],
                             const float (&c)[4]) {
  detail::mma_twin<8>("mma.m16n8k8.tf32", d, a, b, c, detail::tf32_a, detail::tf32_b);
}

// Lane l receives, for matrix j: without .trans, row l/4, elements 2(l%4) (low half) and
// 2(l%4)+1; with .trans, column l/4 of rows 2(l%4) (low half) and 2(l%4)+1.
template <int kMatrices, bool kTrans>
inline void ldmatrix(uint32_t (&r)[kMatrices], const void* row) {
  static_assert(kMatrices == 1 || kMatrices == 2 || kMatrices == 4, "x1, x2 or x4");
  const int lane = detail::full_warp_lane("ldmatrix");
  uint16_t mine[8] = {};
  if (lane < 8 * kMatrices) {  // the other lanes' addresses are not used
    emu::detail::check_aligned(row, 16, "ldmatrix row");
    std::memcpy(mine, row, sizeof mine);
  }
  uint16_t rows[32][8];
  emu::warp_all_gather(mine, sizeof mine, rows);
  const int quad = lane % 4, group = lane / 4;
  for (int j = 0; j < kMatrices; ++j) {
    const uint16_t(*m)[8] = rows + 8 * j;
    r[j] = kTrans ? pack_b16x2(m[2 * quad][group], m[2 * quad + 1][group])
                  : pack_b16x2(m[group][2 * quad], m[group][2 * quad + 1]);
  }
}

template <int kBytes>
inline void cp_async(void* smem_dst, const void* gmem_src, unsigned src_bytes = kBytes) {
  static_assert(kBytes == 4 || kBytes == 8 || kBytes == 16, "cp.async copies 4, 8 or 16 bytes");
  emu::detail::async_copy(smem_dst, gmem_src, kBytes, src_bytes);
}

inline void cp_async_commit() {
  emu::detail::async_commit();
}

template <int kPending>
inline void cp_async_wait() {
  emu::detail::async_wait(kPending);
}

#endif

}  // namespace wren::ptx
