// CPU reference for the fully connected layer (see kernels/linear/linear.h), three GEMMs:
//   forward          y  [N, out] = x [N, in] · wᵀ [in, out]   (+ b on every row)
//   backward data    dx [N, in]  = dy [N, out] · w [out, in]
//   backward weights dw [out, in] = dyᵀ [out, N] · x [N, in],   db [out] = Σ_n dy[n, :]
#include "linear/linear.h"

#include <cstdint>

#include "common/cpu_gemm.h"

namespace wren::cpu {

template <class T>
void linear_forward(const LinearDims& d, const T* x, const T* w, const T* b, T* y) {
  gemm<T>(false, true, d.n, d.out, d.in, T(1), x, d.in, w, d.in, T(0), y, d.out);
  if (b == nullptr) return;
  for (int64_t i = 0; i < d.n; ++i) {
    T* row = y + i * d.out;
    for (int64_t o = 0; o < d.out; ++o) row[o] += b[o];
  }
}

template <class T>
void linear_backward_data(const LinearDims& d, const T* dy, const T* w, T* dx) {
  gemm<T>(false, false, d.n, d.in, d.out, T(1), dy, d.out, w, d.in, T(0), dx, d.in);
}

template <class T>
void linear_backward_weights(const LinearDims& d, const T* x, const T* dy, T* dw, T* db) {
  gemm<T>(true, false, d.out, d.in, d.n, T(1), dy, d.out, x, d.in, T(0), dw, d.in);
  if (db == nullptr) return;
  // Column sums of dy [N, out] in double, in a fixed order: deterministic, and accurate for
  // float over a large batch.
  for (int64_t o = 0; o < d.out; ++o) {
    double sum = 0.0;
    for (int64_t i = 0; i < d.n; ++i) sum += static_cast<double>(dy[i * d.out + o]);
    db[o] = static_cast<T>(sum);
  }
}

template void linear_forward<float>(const LinearDims&, const float*, const float*, const float*,
                                    float*);
template void linear_forward<double>(const LinearDims&, const double*, const double*, const double*,
                                     double*);
template void linear_backward_data<float>(const LinearDims&, const float*, const float*, float*);
template void linear_backward_data<double>(const LinearDims&, const double*, const double*,
                                           double*);
template void linear_backward_weights<float>(const LinearDims&, const float*, const float*, float*,
                                             float*);
template void linear_backward_weights<double>(const LinearDims&, const double*, const double*,
                                              double*, double*);

}  // namespace wren::cpu
