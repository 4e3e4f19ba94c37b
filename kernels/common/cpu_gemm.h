// Row-major GEMM on the CPU through OpenBLAS's CBLAS (sgemm / dgemm):
//   C (m×n) = alpha · op(A) · op(B) + beta · C
// op(A) is m×k (A is k×m when trans_a), op(B) is k×n (B is n×k when trans_b).
// lda/ldb/ldc are the row strides of A, B, C as stored.
#pragma once

namespace wren::cpu {

template <class T>
void gemm(bool trans_a, bool trans_b, int m, int n, int k, T alpha, const T* a, int lda,
          const T* b, int ldb, T beta, T* c, int ldc);

}  // namespace wren::cpu
