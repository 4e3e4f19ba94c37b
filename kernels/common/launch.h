// Kernel launch and dynamic shared memory, one spelling for nvcc and for the SIMT emulator.
//
//   WREN_LAUNCH(grid, block, smem_bytes, stream, kernel)(args...);
//
// The kernel comes LAST so that template arguments with commas survive the preprocessor:
//   WREN_LAUNCH(dim3(n / 256), 256, 0, stream, scale_kernel<float, 4>)(x, y, n);
// nvcc:     kernel<<<grid, block, smem_bytes, stream>>>(args...)
// emulator: wren::emu::launcher("kernel", grid, block, smem_bytes, stream, kernel)(args...),
//           which runs the grid synchronously (kernel name kept for error messages).
// `stream` is a wren::Stream (cudaStream_t under nvcc); 0 / nullptr is the default stream.
//
// Dynamic shared memory: `T* p = wren::dynamic_smem<T>();` (16-byte aligned), never
// `extern __shared__` (it cannot be emulated). Rules: docs/EMULATOR.md.
#pragma once

#include "common/kernel_api.h"

#if defined(__CUDACC__)

#include <cuda_runtime.h>

#define WREN_LAUNCH(grid, block, smem_bytes, stream, ...) \
  __VA_ARGS__<<<(grid), (block), (smem_bytes), (stream)>>>

namespace wren {
using Stream = cudaStream_t;

template <class T>
__device__ __forceinline__ T* dynamic_smem() {
  extern __shared__ __align__(16) unsigned char wren_dynamic_smem[];
  return reinterpret_cast<T*>(wren_dynamic_smem);
}
}  // namespace wren

#else  // g++: the SIMT emulator

#include "emu/emu.h"

#define WREN_LAUNCH(grid, block, smem_bytes, stream, ...) \
  ::wren::emu::launcher(#__VA_ARGS__, (grid), (block), (smem_bytes), (stream), __VA_ARGS__)

namespace wren {
using Stream = emu::Stream;
}  // namespace wren

#endif

namespace wren {
// A family launcher's opaque stream (StreamHandle, common/kernel_api.h) as this build's stream.
inline Stream as_stream(StreamHandle s) {
  return static_cast<Stream>(s);
}
}  // namespace wren
