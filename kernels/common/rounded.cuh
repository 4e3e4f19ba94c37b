// Scalar arithmetic with the same rounding in both builds of a kernel.
//
// Correctly rounded operations (fadd … dsqrt): nvcc contracts a·b + c into an FMA unless each
// operation is an `_rn` intrinsic; the CPU reference (baseline x86-64) rounds every operation
// on its own. Kernels that must match the reference bit for bit (optimizer, batch norm,
// dropout, GELU, the data path) use these. Under g++ (the emulator) they are the plain
// operators, which round each operation already.
//
// libm functions (dexp … dpow): CUDA's ::exp etc. under nvcc, std:: under g++.
#pragma once

#include <cmath>

#include "common/launch.h"

namespace wren {

#if defined(__CUDACC__)
#define WREN_ROUNDED(cuda, host) return cuda
#else
#define WREN_ROUNDED(cuda, host) return host
#endif

__device__ __forceinline__ float fadd(float a, float b) { WREN_ROUNDED(__fadd_rn(a, b), a + b); }
__device__ __forceinline__ float fsub(float a, float b) { WREN_ROUNDED(__fsub_rn(a, b), a - b); }
__device__ __forceinline__ float fmul(float a, float b) { WREN_ROUNDED(__fmul_rn(a, b), a * b); }
__device__ __forceinline__ float fdiv(float a, float b) { WREN_ROUNDED(__fdiv_rn(a, b), a / b); }
__device__ __forceinline__ float fsqrt(float a) { WREN_ROUNDED(__fsqrt_rn(a), std::sqrt(a)); }
__device__ __forceinline__ double dadd(double a, double b) { WREN_ROUNDED(__dadd_rn(a, b), a + b); }
__device__ __forceinline__ double dsub(double a, double b) { WREN_ROUNDED(__dsub_rn(a, b), a - b); }
__device__ __forceinline__ double dmul(double a, double b) { WREN_ROUNDED(__dmul_rn(a, b), a * b); }
__device__ __forceinline__ double ddiv(double a, double b) { WREN_ROUNDED(__ddiv_rn(a, b), a / b); }
__device__ __forceinline__ double dsqrt(double a) { WREN_ROUNDED(__dsqrt_rn(a), std::sqrt(a)); }

__device__ __forceinline__ double dexp(double a) { WREN_ROUNDED(::exp(a), std::exp(a)); }
__device__ __forceinline__ double dlog(double a) { WREN_ROUNDED(::log(a), std::log(a)); }
__device__ __forceinline__ double derfc(double a) { WREN_ROUNDED(::erfc(a), std::erfc(a)); }
__device__ __forceinline__ double dpow(double a, double b) { WREN_ROUNDED(::pow(a, b), std::pow(a, b)); }

#undef WREN_ROUNDED

}  // namespace wren
