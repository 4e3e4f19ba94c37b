// Inverted dropout: in training, y = x · keep / (1 − p) with keep = [u ≥ p] where
// u = uniform_at(key, step, i) (wren/rng.h), so the mask is a pure function of
// (seed, step, element index) and any device reproduces it bit for bit. The mask is saved as
// bytes [count] for the backward pass. In evaluation dropout is the identity (not called).
// p must be in [0, 1) (the graph builder checks); p = 0 copies. Kept values are computed as
// x / (T(1) − T(p)), a division, not a multiplication by a reciprocal, so that a kernel doing
// the same is bit-identical. A dropped NaN becomes 0.
#pragma once

#include <cstdint>

#include "common/kernel_api.h"
#include "wren/rng.h"

namespace wren::cpu {

template <class T>
void dropout_forward(int64_t count, float p, RngKey key, uint64_t step, const T* x, T* y,
                     uint8_t* mask);

// dx = dy · mask / (1 − p). Overwrites dx.
template <class T>
void dropout_backward(int64_t count, float p, const uint8_t* mask, const T* dy, T* dx);

}  // namespace wren::cpu

// Device launchers (float; kernels/dropout/dropout.cu, compiled by nvcc for cuda and by g++ for
// emu): bit for bit the reference above. Every pointer is a device pointer; p outside [0, 1)
// throws std::invalid_argument before anything is enqueued.
#define WREN_DECLARE_DROPOUT_KERNELS(ns)                                                       \
  namespace wren::ns {                                                                         \
  /* mask[i] = uniform_at(key, step, i) >= p; y[i] = mask[i] ? x[i] / (1 - p) : 0 */           \
  void dropout_forward(int64_t count, float p, RngKey key, uint64_t step, const float* x,      \
                       float* y, uint8_t* mask, StreamHandle stream);                          \
  /* dx[i] = mask[i] ? dy[i] / (1 - p) : 0 */                                                  \
  void dropout_backward(int64_t count, float p, const uint8_t* mask, const float* dy,          \
                        float* dx, StreamHandle stream);                                       \
  }

WREN_DECLARE_DROPOUT_KERNELS(cuda_kernels)
WREN_DECLARE_DROPOUT_KERNELS(emu_kernels)
