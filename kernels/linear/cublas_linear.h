// Linear layers on cuBLAS: the alternative to kernels/linear/linear.cu that `--linear cublas` selects
// at run time on the cuda device (a second reference for our GEMM, and a fallback). CUDA only:
// the emulator has no cuBLAS, so this header declares nothing outside nvcc builds and the emu
// device refuses the option.
//
// Row-major PyTorch layouts (x [N, in], w [out, in], y [N, out]) map onto column-major cuBLAS
// without copies, reading each row-major matrix as its column-major transpose:
//   y  = x·wᵀ  →  yᵀ (out×N)  = wᵀᵀ·xᵀ : Sgemm(T, N, m=out, n=N, k=in)
//   dx = dy·w  →  dxᵀ (in×N)  = wᵀ·dyᵀ : Sgemm(N, N, m=in,  n=N, k=out)
//   dw = dyᵀ·x →  dwᵀ (in×out) = xᵀ·dy  : Sgemm(N, T, m=in,  n=out, k=N)
// The bias is added, and its gradient Σ_n dy reduced (in double, fixed order), by two small
// kernels here. Math mode: fp32 → CUBLAS_PEDANTIC_MATH (no TF32 even if the environment asks),
// tf32 → CUBLAS_TF32_TENSOR_OP_MATH. A fixed workspace is set once, so cuBLAS allocates
// nothing inside a captured step (CUDA graphs).
#pragma once

#if defined(__CUDACC__)

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <string>

#include "linear/linear.h"
#include "wren/math_mode.h"

namespace wren::cuda_kernels {

class CublasLinear {
 public:
  CublasLinear() = default;
  ~CublasLinear();
  CublasLinear(const CublasLinear&) = delete;
  CublasLinear& operator=(const CublasLinear&) = delete;

  // Creates the handle on `stream` with the math mode; "" or the error.
  std::string init(cudaStream_t stream, MathMode math);

  void forward(const LinearDims& d, const float* x, const float* w, const float* b, float* y);
  void backward_data(const LinearDims& d, const float* dy, const float* w, float* dx);
  void backward_weights(const LinearDims& d, const float* x, const float* dy, float* dw,
                        float* db);
  // The first cuBLAS error since init (cuBLAS reports synchronously), "" if none.
  const std::string& error() const { return error_; }

 private:
  void check(cublasStatus_t status, const char* what);

  cublasHandle_t handle_ = nullptr;
  cudaStream_t stream_ = nullptr;
  void* workspace_ = nullptr;
  std::string error_;
};

}  // namespace wren::cuda_kernels

#endif
