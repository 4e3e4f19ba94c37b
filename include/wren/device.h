// What this build and this machine offer: used by `--device auto` to pick cuda when a GPU is
// present and cpu otherwise.
#pragma once

#include <string>

namespace wren {

// True when Wren was built with the CUDA backend (a toolkit was found at configure time).
bool built_with_cuda();

// True when Wren was built with the SIMT emulator (the emu device).
bool built_with_emu();

// Number of CUDA devices the runtime sees (0 without a driver, a GPU, or the CUDA build).
int cuda_device_count();

// "NVIDIA H100 80GB HBM3 (sm_90)" for device 0, or "" when there is none.
std::string cuda_device_name();

}  // namespace wren
