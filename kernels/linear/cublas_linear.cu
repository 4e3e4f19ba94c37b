// Linear layers on cuBLAS (see cublas_linear.h). Compiled by nvcc only: in the emulator build
// this file is empty.
#if defined(__CUDACC__)

#include "common/launch.h"
#include "linear/cublas_linear.h"

namespace wren::cuda_kernels {
namespace {

constexpr size_t kWorkspaceBytes = size_t{32} << 20;  // cuBLAS's recommendation for sm_90

// y [N, out] += b (broadcast over rows), one thread per element.
__global__ void add_bias_kernel(int64_t total, int out, const float* __restrict__ b,
                                float* __restrict__ y) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total;
       i += int64_t{gridDim.x} * blockDim.x)
    y[i] += b[i % out];
}

// db[o] = Σ_n dy[n, o], in double in increasing n (the CPU reference's order), one thread per
// output column: deterministic.
__global__ void bias_grad_kernel(int n, int out, const float* __restrict__ dy,
                                 float* __restrict__ db) {
  const int o = blockIdx.x * blockDim.x + threadIdx.x;
  if (o >= out) return;
  double sum = 0.0;
  for (int r = 0; r < n; ++r) sum += static_cast<double>(dy[int64_t{r} * out + o]);
  db[o] = static_cast<float>(sum);
}

const char* status_name(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    default: return "cuBLAS error";
  }
}

}  // namespace

CublasLinear::~CublasLinear() {
  if (handle_) cublasDestroy(handle_);
  if (workspace_) cudaFree(workspace_);
}

std::string CublasLinear::init(cudaStream_t stream, MathMode math) {
  stream_ = stream;
  if (cublasStatus_t s = cublasCreate(&handle_); s != CUBLAS_STATUS_SUCCESS) {
    handle_ = nullptr;
    return std::string("cublasCreate: ") + status_name(s);
  }
  if (cudaMalloc(&workspace_, kWorkspaceBytes) != cudaSuccess) {
    cudaGetLastError();
    workspace_ = nullptr;
    return "cuBLAS: out of device memory for its 32 MiB workspace";
  }
  cublasSetStream(handle_, stream_);
  cublasSetWorkspace(handle_, workspace_, kWorkspaceBytes);
  cublasSetMathMode(handle_, math == MathMode::kTf32 ? CUBLAS_TF32_TENSOR_OP_MATH
                                                     : CUBLAS_PEDANTIC_MATH);
  return {};
}

void CublasLinear::check(cublasStatus_t status, const char* what) {
  if (status != CUBLAS_STATUS_SUCCESS && error_.empty())
    error_ = std::string(what) + ": " + status_name(status);
}

void CublasLinear::forward(const LinearDims& d, const float* x, const float* w, const float* b,
                           float* y) {
  const float one = 1.0f, zero = 0.0f;
  check(cublasSgemm(handle_, CUBLAS_OP_T, CUBLAS_OP_N, d.out, d.n, d.in, &one, w, d.in, x, d.in,
                    &zero, y, d.out),
        "cublasSgemm (linear forward)");
  if (b != nullptr && d.n > 0 && d.out > 0) {
    const int64_t total = int64_t{d.n} * d.out;
    const int blocks = static_cast<int>(std::min<int64_t>((total + 255) / 256, 4096));
    WREN_LAUNCH(blocks, 256, 0, stream_, add_bias_kernel)(total, d.out, b, y);
  }
}

void CublasLinear::backward_data(const LinearDims& d, const float* dy, const float* w,
                                 float* dx) {
  const float one = 1.0f, zero = 0.0f;
  check(cublasSgemm(handle_, CUBLAS_OP_N, CUBLAS_OP_N, d.in, d.n, d.out, &one, w, d.in, dy,
                    d.out, &zero, dx, d.in),
        "cublasSgemm (linear backward data)");
}

void CublasLinear::backward_weights(const LinearDims& d, const float* x, const float* dy,
                                    float* dw, float* db) {
  const float one = 1.0f, zero = 0.0f;
  check(cublasSgemm(handle_, CUBLAS_OP_N, CUBLAS_OP_T, d.in, d.out, d.n, &one, x, d.in, dy,
                    d.out, &zero, dw, d.in),
        "cublasSgemm (linear backward weights)");
  if (db != nullptr && d.out > 0)
    WREN_LAUNCH((d.out + 127) / 128, 128, 0, stream_, bias_grad_kernel)(d.n, d.out, dy, db);
}

}  // namespace wren::cuda_kernels

#endif
