// The CUDA runtime as the host sees it: device discovery. Compiled only in CUDA builds
// (WREN_HAVE_CUDA); host code includes this header, never cuda_runtime.h.
#pragma once

#include <string>

namespace wren::kernels {

// cudaGetDeviceCount, with any error (no driver, no device) read as 0.
int device_count();

// Compute capability of device `index` as major·10 + minor (80 for sm_80), 0 if none.
int compute_capability(int index);

// Name and compute capability of device `index`, or "" if it does not exist.
std::string device_name(int index);

}  // namespace wren::kernels
