// How a kernel family's host-side launchers are named for the two builds of its source.
//
// Every kernels/<family>/<family>.cu is compiled twice (CMakeLists.txt): by nvcc into
// wren_kernels_cuda and by g++ into wren_emu. Its launchers live in namespace
// wren::WREN_KERNELS_NS, which is wren::cuda_kernels in the nvcc build and wren::emu_kernels in
// the emulator build, so both objects link into one program (a test compares them). A family
// header declares its launchers once for both namespaces through its own macro,
// WREN_DECLARE_<FAMILY>_KERNELS(ns) (e.g. WREN_DECLARE_CONV_KERNELS in conv/conv.h), with the
// stream as an opaque handle (cudaStream_t and wren::emu::Stream are both pointers; nullptr is
// the default stream); as_stream (common/launch.h) turns it back into the build's stream type.
#pragma once

#if defined(__CUDACC__)
#define WREN_KERNELS_NS cuda_kernels
#else
#define WREN_KERNELS_NS emu_kernels
#endif

namespace wren {
using StreamHandle = void*;
}  // namespace wren
