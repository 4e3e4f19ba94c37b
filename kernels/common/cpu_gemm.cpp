// CPU GEMM through OpenBLAS's CBLAS, row-major (see kernels/common/cpu_gemm.h).
//
// Empty products are settled here rather than passed to CBLAS: with m, n or k equal to 0 the
// callers' leading dimensions may legitimately be 0, which CBLAS rejects (xerbla prints and
// the call does nothing), and k == 0 must still leave C = beta·C.
#include "common/cpu_gemm.h"

#include <cblas.h>

#include <cstdint>

namespace wren::cpu {
namespace {

void blas_gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m, int n, int k, float alpha,
               const float* a, int lda, const float* b, int ldb, float beta, float* c, int ldc) {
  cblas_sgemm(CblasRowMajor, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void blas_gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m, int n, int k, double alpha,
               const double* a, int lda, const double* b, int ldb, double beta, double* c,
               int ldc) {
  cblas_dgemm(CblasRowMajor, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

// C (m×n, row stride ldc) = beta·C. beta == 0 writes zeros without reading C, as BLAS does, so
// an uninitialised (even NaN) C is fine.
template <class T>
void scale(int m, int n, T beta, T* c, int ldc) {
  for (int64_t i = 0; i < m; ++i) {
    T* row = c + i * ldc;
    for (int64_t j = 0; j < n; ++j) row[j] = beta == T(0) ? T(0) : beta * row[j];
  }
}

}  // namespace

template <class T>
void gemm(bool trans_a, bool trans_b, int m, int n, int k, T alpha, const T* a, int lda, const T* b,
          int ldb, T beta, T* c, int ldc) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0) {
    scale(m, n, beta, c, ldc);
    return;
  }
  blas_gemm(trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, m, n, k,
            alpha, a, lda, b, ldb, beta, c, ldc);
}

template void gemm<float>(bool, bool, int, int, int, float, const float*, int, const float*, int,
                          float, float*, int);
template void gemm<double>(bool, bool, int, int, int, double, const double*, int, const double*,
                           int, double, double*, int);

}  // namespace wren::cpu
