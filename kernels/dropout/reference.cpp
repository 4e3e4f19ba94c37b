// CPU reference for inverted dropout (see kernels/dropout/dropout.h); x, y, mask, dy, dx are
// all [count].
//
// keep[i] = uniform_at(key, step, i) ≥ p: the float comparison every device makes, so masks
// are identical across devices and across T. Kept values are divided by (1 − p) computed in T:
// one IEEE subtraction and one division, both correctly rounded on any conforming device, so a
// GPU kernel (without fast-math) reproduces y bit for bit. With p = 0 every element is kept and
// divided by exactly 1: a copy.
#include "dropout/dropout.h"

#include <cstdint>

#include "wren/rng.h"

namespace wren::cpu {

template <class T>
void dropout_forward(int64_t count, float p, RngKey key, uint64_t step, const T* x, T* y,
                     uint8_t* mask) {
  const T keep_prob = T(1) - static_cast<T>(p);
  for (int64_t i = 0; i < count; ++i) {
    const bool keep = uniform_at(key, step, static_cast<uint64_t>(i)) >= p;
    mask[i] = keep ? 1 : 0;
    y[i] = keep ? x[i] / keep_prob : T(0);
  }
}

template <class T>
void dropout_backward(int64_t count, float p, const uint8_t* mask, const T* dy, T* dx) {
  const T keep_prob = T(1) - static_cast<T>(p);
  for (int64_t i = 0; i < count; ++i) dx[i] = mask[i] ? dy[i] / keep_prob : T(0);
}

#define WREN_INSTANTIATE_DROPOUT(T)                                                           \
  template void dropout_forward<T>(int64_t, float, RngKey, uint64_t, const T*, T*, uint8_t*); \
  template void dropout_backward<T>(int64_t, float, const uint8_t*, const T*, T*);

WREN_INSTANTIATE_DROPOUT(float)
WREN_INSTANTIATE_DROPOUT(double)

#undef WREN_INSTANTIATE_DROPOUT

}  // namespace wren::cpu
