// The CUDA side of tests/support/device.h and tests/support/buffer.h: device checks, the
// synchronisation that reports a kernel's error, and device memory. Without the CUDA backend the
// cuda device is "not built" and GPU memory is a logic error (no cuda case runs there).
#include "support/device.h"

#include <gtest/gtest.h>

#include <cstring>
#include <new>
#include <stdexcept>
#include <string>

#include "support/buffer.h"

#if defined(WREN_HAVE_CUDA)
#include <cuda_runtime.h>

#include "common/runtime.h"
#endif

namespace wren::testing {

std::string CudaDevice::not_built() {
#if defined(WREN_HAVE_CUDA)
  return "";
#else
  return "built without the CUDA backend (WREN_HAVE_CUDA off)";
#endif
}

std::string CudaDevice::unavailable() {
#if defined(WREN_HAVE_CUDA)
  return wren::kernels::device_count() == 0 ? "no CUDA device on this machine" : "";
#else
  return not_built();
#endif
}

std::string CudaDevice::finish() {
#if defined(WREN_HAVE_CUDA)
  const cudaError_t e = cudaDeviceSynchronize();
  return e == cudaSuccess ? "" : cudaGetErrorString(e);
#else
  return not_built();
#endif
}

namespace {

constexpr std::align_val_t kHostAlignment{256};

#if !defined(WREN_HAVE_CUDA)
[[noreturn]] void no_gpu_memory() {
  throw std::logic_error("GPU memory in a build without the CUDA backend");
}
#endif

}  // namespace

void* device_alloc(bool gpu, size_t bytes) {
  if (bytes == 0) return nullptr;
  if (!gpu) return ::operator new(bytes, kHostAlignment);
#if defined(WREN_HAVE_CUDA)
  void* p = nullptr;
  const cudaError_t e = cudaMalloc(&p, bytes);
  EXPECT_EQ(e, cudaSuccess) << "cudaMalloc(" << bytes << "): " << cudaGetErrorString(e);
  return e == cudaSuccess ? p : nullptr;
#else
  no_gpu_memory();
#endif
}

void device_free(bool gpu, void* p) {
  if (p == nullptr) return;
  if (!gpu) {
    ::operator delete(p, kHostAlignment);
    return;
  }
#if defined(WREN_HAVE_CUDA)
  cudaFree(p);
#else
  no_gpu_memory();
#endif
}

void copy_to_device(bool gpu, void* device, const void* host, size_t bytes) {
  if (bytes == 0) return;
  if (!gpu) {
    std::memcpy(device, host, bytes);
    return;
  }
#if defined(WREN_HAVE_CUDA)
  EXPECT_EQ(cudaMemcpy(device, host, bytes, cudaMemcpyHostToDevice), cudaSuccess);
#else
  no_gpu_memory();
#endif
}

void copy_to_host(bool gpu, void* host, const void* device, size_t bytes) {
  if (bytes == 0) return;
  if (!gpu) {
    std::memcpy(host, device, bytes);
    return;
  }
#if defined(WREN_HAVE_CUDA)
  EXPECT_EQ(cudaMemcpy(host, device, bytes, cudaMemcpyDeviceToHost), cudaSuccess);
#else
  no_gpu_memory();
#endif
}

}  // namespace wren::testing
