// How the kernel devices (cuda, emu) do their matrix products (conv, linear):
//   kFp32  plain fp32 FMA: within ordinary fp32 GEMM rounding of the CPU reference
//   kTf32  TF32 tensor cores (mma.sync m16n8k8 through kernels/common/ptx.cuh): inputs rounded to 10
//          mantissa bits (relative error 2^-11 per product), fp32 accumulation
// The cpu device always computes in T (float or double) with OpenBLAS.
#pragma once

namespace wren {

enum class MathMode { kFp32, kTf32 };

}  // namespace wren
