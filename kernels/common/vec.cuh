// 16-byte float4 loads and stores for kernels, one spelling for both compilers: a plain
// float4 access under nvcc; under the emulator the same access with its alignment checked
// (a misaligned vector access is an error there, as docs/EMULATOR.md promises).
#pragma once

#include <cstring>

#include "common/launch.h"

namespace wren {

__device__ inline float4 load4(const float* p) {
#if defined(__CUDACC__)
  return *reinterpret_cast<const float4*>(p);
#else
  return emu::load_vec<float4>(p);
#endif
}

__device__ inline void store4(float* p, float4 v) {
#if defined(__CUDACC__)
  *reinterpret_cast<float4*>(p) = v;
#else
  emu::detail::check_aligned(p, 16, "vector store");
  std::memcpy(p, &v, sizeof v);
#endif
}

}  // namespace wren
