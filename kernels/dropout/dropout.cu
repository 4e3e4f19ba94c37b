// Dropout kernels: see dropout.h. Compiled by nvcc (wren::cuda_kernels) and by g++ for the
// emulator (wren::emu_kernels).
//
// Dropout walks 4-element chunks 4c..4c+3 of the element index (not of the address): one
// Philox4x32 call gives the four uniforms of a chunk (uniform_at uses counter i/4, lane i%4).
// A chunk is loaded and stored as a float4 and its mask as 4 bytes when the pointers allow,
// element by element otherwise; the values are the same either way.
#include <cstdint>
#include <cstring>
#include <string>

#include "common/flat_launch.h"
#include "common/launch.h"
#include "common/rounded.cuh"
#include "common/vec.cuh"
#include "dropout/dropout.h"

namespace wren::WREN_KERNELS_NS {
namespace {

constexpr int kThreads = 256;

// The 4 mask bytes of a chunk as one 4-byte access (the pointer is 4-byte aligned).
__device__ inline void store_mask4(uint8_t* p, uchar4 m) {
#if defined(__CUDACC__)
  *reinterpret_cast<uchar4*>(p) = m;
#else
  emu::detail::check_aligned(p, 4, "vector store");
  std::memcpy(p, &m, sizeof m);
#endif
}
__device__ inline uchar4 load_mask4(const uint8_t* p) {
#if defined(__CUDACC__)
  return *reinterpret_cast<const uchar4*>(p);
#else
  return emu::load_vec<uchar4>(p);
#endif
}

// One thread per 4-element chunk (grid-stride). `vector`: x and y 16-byte aligned and mask
// 4-byte aligned, so a full chunk moves as one float4 and one 4-byte mask word.
__global__ void dropout_forward_kernel(int64_t count, float p, float keep_prob, RngKey key,
                                       uint64_t step, const float* x, float* y, uint8_t* mask,
                                       bool vector) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t chunks = (count + 3) / 4;
  for (int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; c < chunks;
       c += stride) {
    // uniform_at(key, step, i) for i = 4c + e is lane e of this one Philox block.
    const Philox4x32 r =
        philox4x32_10(static_cast<uint32_t>(c), static_cast<uint32_t>(c >> 32),
                      static_cast<uint32_t>(step), static_cast<uint32_t>(step >> 32), key.k0,
                      key.k1);
    const int64_t i0 = 4 * c;
    bool keep[4];
    for (int e = 0; e < 4; ++e) keep[e] = uniform01(r.v[e]) >= p;
    if (vector && i0 + 4 <= count) {
      const float4 v = load4(x + i0);
      store4(y + i0, make_float4(keep[0] ? fdiv(v.x, keep_prob) : 0.0f,
                                 keep[1] ? fdiv(v.y, keep_prob) : 0.0f,
                                 keep[2] ? fdiv(v.z, keep_prob) : 0.0f,
                                 keep[3] ? fdiv(v.w, keep_prob) : 0.0f));
      store_mask4(mask + i0, make_uchar4(keep[0], keep[1], keep[2], keep[3]));
    } else {
      for (int e = 0; e < 4 && i0 + e < count; ++e) {
        const float v = x[i0 + e];  // read before the write: y may be x
        mask[i0 + e] = keep[e] ? 1 : 0;
        y[i0 + e] = keep[e] ? fdiv(v, keep_prob) : 0.0f;
      }
    }
  }
}

__global__ void dropout_backward_kernel(int64_t count, float keep_prob, const uint8_t* mask,
                                        const float* dy, float* dx, bool vector) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t chunks = (count + 3) / 4;
  for (int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; c < chunks;
       c += stride) {
    const int64_t i0 = 4 * c;
    if (vector && i0 + 4 <= count) {
      const uchar4 m = load_mask4(mask + i0);
      const float4 g = load4(dy + i0);
      store4(dx + i0, make_float4(m.x ? fdiv(g.x, keep_prob) : 0.0f,
                                  m.y ? fdiv(g.y, keep_prob) : 0.0f,
                                  m.z ? fdiv(g.z, keep_prob) : 0.0f,
                                  m.w ? fdiv(g.w, keep_prob) : 0.0f));
    } else {
      for (int e = 0; e < 4 && i0 + e < count; ++e) {
        dx[i0 + e] = mask[i0 + e] ? fdiv(dy[i0 + e], keep_prob) : 0.0f;
      }
    }
  }
}

void check_p(const char* fn, float p) {
  if (!(p >= 0.0f && p < 1.0f))
    throw_invalid_argument(fn, "p must be in [0, 1), got " + std::to_string(p));
}

}  // namespace

void dropout_forward(int64_t count, float p, RngKey key, uint64_t step, const float* x,
                     float* y, uint8_t* mask, StreamHandle stream) {
  check_arrays("dropout_forward", count, {x, y, mask});
  check_p("dropout_forward", p);
  if (count == 0) return;
  // 1 − p in float, as the reference computes it (T(1) − T(p)).
  const float keep_prob = 1.0f - p;
  const bool vector = is_aligned16(x) && is_aligned16(y) && is_aligned4(mask);
  WREN_LAUNCH(flat_blocks(count, kThreads), kThreads, 0, as_stream(stream), dropout_forward_kernel)
  (count, p, keep_prob, key, step, x, y, mask, vector);
}

void dropout_backward(int64_t count, float p, const uint8_t* mask, const float* dy, float* dx,
                      StreamHandle stream) {
  check_arrays("dropout_backward", count, {mask, dy, dx});
  check_p("dropout_backward", p);
  if (count == 0) return;
  const float keep_prob = 1.0f - p;
  const bool vector = is_aligned4(mask) && is_aligned16(dy) && is_aligned16(dx);
  WREN_LAUNCH(flat_blocks(count, kThreads), kThreads, 0, as_stream(stream), dropout_backward_kernel)
  (count, keep_prob, mask, dy, dx, vector);
}

}  // namespace wren::WREN_KERNELS_NS
