// The kernel devices as wren::Backend<float>: one implementation (kernel_backend.cu) of the
// executor's interface on top of the kernel families' launchers, compiled twice like every
// kernels/<family>/<family>.cu — by nvcc into wren::cuda_kernels (the cuda device: device memory, one CUDA
// stream) and by g++ into wren::emu_kernels (the emu device: host memory, kernels run by the
// SIMT emulator). The two devices therefore share every line above the launches; only memory
// and error reporting differ (cudaMalloc/cudaMemcpyAsync vs wren::emu::malloc/memcpy).
//
// Host code reaches these through wren::make_backend (host/backends/device.cpp), never directly.
#pragma once

#include <memory>

#include "common/kernel_api.h"
#include "wren/backend.h"

#define WREN_DECLARE_KERNEL_BACKEND(ns)                                 \
  namespace wren::ns {                                                  \
  Expected<std::unique_ptr<Backend<float>>> make_kernel_backend(MathMode math,   \
                                                                LinearImpl linear); \
  }

WREN_DECLARE_KERNEL_BACKEND(cuda_kernels)
WREN_DECLARE_KERNEL_BACKEND(emu_kernels)
