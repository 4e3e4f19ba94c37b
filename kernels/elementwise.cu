// Elementwise kernels: see elementwise.h. Compiled by nvcc (wren::cuda_kernels) and by g++ for
// the emulator (wren::emu_kernels).
//
// Memory-bound: one read (two for the binary ops) and one write per element. Grid-stride loops
// over 16-byte float4 chunks when every pointer is 16-byte aligned, then a scalar tail; the
// grid is capped so that each thread handles several chunks.
//
// Dropout walks 4-element chunks 4c..4c+3 of the element index (not of the address): one
// Philox4x32 call gives the four uniforms of a chunk (uniform_at uses counter i/4, lane i%4).
// A chunk is loaded and stored as a float4 and its mask as 4 bytes when the pointers allow,
// element by element otherwise; the values are the same either way.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <stdexcept>
#include <string>

#include "elementwise.h"
#include "launch.h"
#include "rounded.cuh"
#include "vec.cuh"

namespace wren::WREN_KERNELS_NS {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 4096;

// The per-element operations, shared by the vector and scalar paths. NaN rules as in the CPU
// reference: relu passes a NaN through; the backward passes use `x > 0`, false for NaN.
struct Relu {
  __device__ float operator()(float v) const { return (v > 0.0f || v != v) ? v : 0.0f; }
};
struct ReluGrad {
  __device__ float operator()(float x, float dy) const { return x > 0.0f ? dy : 0.0f; }
};
struct LeakyRelu {
  float slope;
  __device__ float operator()(float v) const { return v > 0.0f ? v : slope * v; }
};
struct LeakyReluGrad {
  float slope;
  __device__ float operator()(float x, float dy) const { return x > 0.0f ? dy : slope * dy; }
};
struct Add {
  __device__ float operator()(float a, float b) const { return a + b; }
};
struct Copy {
  __device__ float operator()(float v) const { return v; }
};

// GELU as host/ops/elementwise.cpp evaluates it, expression by expression:
//   Φ(v) = 0.5·erfc(−v·(1/√2)),  φ(v) = (1/√(2π))·exp(−0.5·v·v)
constexpr double kInvSqrt2 = 0.70710678118654752440;    // 1/√2
constexpr double kInvSqrt2Pi = 0.39894228040143267794;  // 1/√(2π)
__device__ __forceinline__ double normal_cdf(double v) {
  return dmul(0.5, derfc(dmul(-v, kInvSqrt2)));
}
__device__ __forceinline__ double normal_pdf(double v) {
  return dmul(kInvSqrt2Pi, dexp(dmul(dmul(-0.5, v), v)));
}
struct Gelu {
  __device__ float operator()(float x) const {
    const double v = static_cast<double>(x);
    return static_cast<float>(dmul(v, normal_cdf(v)));
  }
};
struct GeluGrad {
  __device__ float operator()(float x, float dy) const {
    const double v = static_cast<double>(x);
    const double derivative = dadd(normal_cdf(v), dmul(v, normal_pdf(v)));
    return static_cast<float>(dmul(static_cast<double>(dy), derivative));
  }
};

template <class F>
__device__ inline float4 apply(F f, float4 v) {
  return make_float4(f(v.x), f(v.y), f(v.z), f(v.w));
}
template <class F>
__device__ inline float4 apply(F f, float4 a, float4 b) {
  return make_float4(f(a.x, b.x), f(a.y, b.y), f(a.z, b.z), f(a.w, b.w));
}

// y[i] = f(x[i]); `vector` says every pointer is 16-byte aligned.
template <class F>
__global__ void unary_kernel(F f, int64_t count, const float* x, float* y, bool vector) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  int64_t done = 0;
  if (vector) {
    const int64_t chunks = count / 4;
    for (int64_t c = i; c < chunks; c += stride) store4(y + 4 * c, apply(f, load4(x + 4 * c)));
    done = 4 * chunks;
  }
  for (int64_t j = done + i; j < count; j += stride) y[j] = f(x[j]);
}

// out[i] = f(a[i], b[i]), or out[i] = f(out[i], a[i]) when `in_place` (then b is unused).
template <class F>
__global__ void binary_kernel(F f, int64_t count, const float* a, const float* b, float* out,
                              bool vector) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  int64_t done = 0;
  if (vector) {
    const int64_t chunks = count / 4;
    for (int64_t c = i; c < chunks; c += stride) {
      store4(out + 4 * c, apply(f, load4(a + 4 * c), load4(b + 4 * c)));
    }
    done = 4 * chunks;
  }
  for (int64_t j = done + i; j < count; j += stride) out[j] = f(a[j], b[j]);
}

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

bool aligned16(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

int blocks_for(int64_t count) {
  const int64_t chunks = (count + 3) / 4;
  return static_cast<int>(std::clamp<int64_t>((chunks + kThreads - 1) / kThreads, 1, kMaxBlocks));
}

Stream as_stream(StreamHandle s) {
  return static_cast<Stream>(s);
}

bool aligned4(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % 4 == 0;
}

[[noreturn]] void bad(const char* fn, const std::string& what) {
  throw std::invalid_argument(std::string(fn) + ": " + what);
}

// Host-side checks shared by every launcher: a count >= 0 and, when there is work, the arrays.
void check_arrays(const char* fn, int64_t count, std::initializer_list<const void*> arrays) {
  if (count < 0) bad(fn, "count < 0 (" + std::to_string(count) + ")");
  if (count == 0) return;
  for (const void* a : arrays) {
    if (a == nullptr) bad(fn, "null array with count " + std::to_string(count));
  }
}

void check_p(const char* fn, float p) {
  if (!(p >= 0.0f && p < 1.0f)) bad(fn, "p must be in [0, 1), got " + std::to_string(p));
}

template <class F>
void launch_unary(F f, int64_t count, const float* x, float* y, StreamHandle s) {
  if (count <= 0) return;
  const bool vector = aligned16(x) && aligned16(y);
  WREN_LAUNCH(blocks_for(count), kThreads, 0, as_stream(s), unary_kernel<F>)
  (f, count, x, y, vector);
}

template <class F>
void launch_binary(F f, int64_t count, const float* a, const float* b, float* out,
                   StreamHandle s) {
  if (count <= 0) return;
  const bool vector = aligned16(a) && aligned16(b) && aligned16(out);
  WREN_LAUNCH(blocks_for(count), kThreads, 0, as_stream(s), binary_kernel<F>)
  (f, count, a, b, out, vector);
}

}  // namespace

void relu_forward(int64_t count, const float* x, float* y, StreamHandle stream) {
  check_arrays("relu_forward", count, {x, y});
  launch_unary(Relu{}, count, x, y, stream);
}
void relu_backward(int64_t count, const float* x, const float* dy, float* dx,
                   StreamHandle stream) {
  check_arrays("relu_backward", count, {x, dy, dx});
  launch_binary(ReluGrad{}, count, x, dy, dx, stream);
}
void leaky_relu_forward(int64_t count, float slope, const float* x, float* y,
                        StreamHandle stream) {
  check_arrays("leaky_relu_forward", count, {x, y});
  launch_unary(LeakyRelu{slope}, count, x, y, stream);
}
void leaky_relu_backward(int64_t count, float slope, const float* x, const float* dy, float* dx,
                         StreamHandle stream) {
  check_arrays("leaky_relu_backward", count, {x, dy, dx});
  launch_binary(LeakyReluGrad{slope}, count, x, dy, dx, stream);
}
void add_forward(int64_t count, const float* a, const float* b, float* y, StreamHandle stream) {
  check_arrays("add_forward", count, {a, b, y});
  launch_binary(Add{}, count, a, b, y, stream);
}
void accumulate(int64_t count, const float* x, float* acc, StreamHandle stream) {
  check_arrays("accumulate", count, {x, acc});
  launch_binary(Add{}, count, acc, x, acc, stream);
}
void gelu_forward(int64_t count, const float* x, float* y, StreamHandle stream) {
  check_arrays("gelu_forward", count, {x, y});
  launch_unary(Gelu{}, count, x, y, stream);
}
void gelu_backward(int64_t count, const float* x, const float* dy, float* dx,
                   StreamHandle stream) {
  check_arrays("gelu_backward", count, {x, dy, dx});
  launch_binary(GeluGrad{}, count, x, dy, dx, stream);
}
void copy(int64_t count, const float* x, float* y, StreamHandle stream) {
  check_arrays("copy", count, {x, y});
  if (x == y) return;  // nothing to move
  launch_unary(Copy{}, count, x, y, stream);
}

void dropout_forward(int64_t count, float p, RngKey key, uint64_t step, const float* x,
                     float* y, uint8_t* mask, StreamHandle stream) {
  check_arrays("dropout_forward", count, {x, y, mask});
  check_p("dropout_forward", p);
  if (count == 0) return;
  // 1 − p in float, as the reference computes it (T(1) − T(p)).
  const float keep_prob = 1.0f - p;
  const bool vector = aligned16(x) && aligned16(y) && aligned4(mask);
  WREN_LAUNCH(blocks_for(count), kThreads, 0, as_stream(stream), dropout_forward_kernel)
  (count, p, keep_prob, key, step, x, y, mask, vector);
}

void dropout_backward(int64_t count, float p, const uint8_t* mask, const float* dy, float* dx,
                      StreamHandle stream) {
  check_arrays("dropout_backward", count, {mask, dy, dx});
  check_p("dropout_backward", p);
  if (count == 0) return;
  const float keep_prob = 1.0f - p;
  const bool vector = aligned4(mask) && aligned16(dy) && aligned16(dx);
  WREN_LAUNCH(blocks_for(count), kThreads, 0, as_stream(stream), dropout_backward_kernel)
  (count, keep_prob, mask, dy, dx, vector);
}

}  // namespace wren::WREN_KERNELS_NS
