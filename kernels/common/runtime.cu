#include <cuda_runtime.h>

#include "common/runtime.h"

namespace wren::kernels {

int device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky error so later calls start clean
    return 0;
  }
  return count;
}

int compute_capability(int index) {
  cudaDeviceProp prop{};
  if (index >= device_count() || cudaGetDeviceProperties(&prop, index) != cudaSuccess) return 0;
  return prop.major * 10 + prop.minor;
}

std::string device_name(int index) {
  cudaDeviceProp prop{};
  if (index >= device_count() || cudaGetDeviceProperties(&prop, index) != cudaSuccess) return {};
  return std::string(prop.name) + " (sm_" + std::to_string(prop.major) +
         std::to_string(prop.minor) + ")";
}

}  // namespace wren::kernels
