// Elementwise kernels: see elementwise.h. Compiled by nvcc (wren::cuda_kernels) and by g++ for
// the emulator (wren::emu_kernels).
//
// Memory-bound: one read (two for the binary ops) and one write per element. Grid-stride loops
// over 16-byte float4 chunks when every pointer is 16-byte aligned, then a scalar tail; the
// grid is capped so that each thread handles several chunks.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <stdexcept>
#include <string>

#include "common/flat_launch.h"
#include "common/launch.h"
#include "common/rounded.cuh"
#include "common/vec.cuh"
#include "elementwise/elementwise.h"

namespace wren::WREN_KERNELS_NS {
namespace {

constexpr int kThreads = 256;

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

// GELU as kernels/elementwise/reference.cpp evaluates it, expression by expression:
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

int blocks_for(int64_t count) {
  return flat_blocks(count, kThreads);
}

template <class F>
void launch_unary(F f, int64_t count, const float* x, float* y, StreamHandle s) {
  if (count <= 0) return;
  const bool vector = is_aligned16(x) && is_aligned16(y);
  WREN_LAUNCH(blocks_for(count), kThreads, 0, as_stream(s), unary_kernel<F>)
  (f, count, x, y, vector);
}

template <class F>
void launch_binary(F f, int64_t count, const float* a, const float* b, float* out,
                   StreamHandle s) {
  if (count <= 0) return;
  const bool vector = is_aligned16(a) && is_aligned16(b) && is_aligned16(out);
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

}  // namespace wren::WREN_KERNELS_NS
