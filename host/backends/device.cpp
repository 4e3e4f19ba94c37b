#include "wren/device.h"

#include "wren/backend.h"

#if defined(WREN_HAVE_CUDA)
#include "common/runtime.h"
#endif
#if defined(WREN_HAVE_CUDA) || defined(WREN_HAVE_EMU)
#include "backends/kernel_backend.h"
#endif

namespace wren {

bool built_with_cuda() {
#if defined(WREN_HAVE_CUDA)
  return true;
#else
  return false;
#endif
}

bool built_with_emu() {
#if defined(WREN_HAVE_EMU)
  return true;
#else
  return false;
#endif
}

int cuda_device_count() {
#if defined(WREN_HAVE_CUDA)
  return kernels::device_count();
#else
  return 0;
#endif
}

std::string cuda_device_name() {
#if defined(WREN_HAVE_CUDA)
  return kernels::device_name(0);
#else
  return {};
#endif
}

const char* to_string(MathMode mode) {
  return mode == MathMode::kTf32 ? "tf32" : "fp32";
}

const char* to_string(LinearImpl impl) {
  return impl == LinearImpl::kCublas ? "cublas" : "wren";
}

Expected<std::unique_ptr<Backend<float>>> make_backend(const BackendOptions& options) {
  switch (options.device) {
    case Device::kCpu:
      if (options.linear == LinearImpl::kCublas)
        return unavailable("--linear cublas: the cpu device runs its linear layers on OpenBLAS");
      return make_cpu_backend<float>();
    case Device::kEmu:
#if defined(WREN_HAVE_EMU)
      return emu_kernels::make_kernel_backend(options.math, options.linear);
#else
      return unavailable(
          "--device emu: this build has no SIMT emulator (the CUDA toolkit's headers were not "
          "found when it was configured); install the toolkit (scripts/setup-debian.sh) and "
          "rebuild");
#endif
    case Device::kCuda:
#if defined(WREN_HAVE_CUDA)
      if (cuda_device_count() == 0)
        return unavailable(
            "--device cuda: no CUDA device is visible (no GPU, no driver, or "
            "CUDA_VISIBLE_DEVICES hides it); use --device auto to fall back to the CPU, or "
            "--device emu to run the kernels in the emulator");
      // The kernels are compiled for sm_80 and sm_90 (mma.sync TF32, cp.async): an older GPU
      // would fail at its first launch.
      if (const int cc = kernels::compute_capability(0); cc < 80)
        return unavailable("--device cuda: " + cuda_device_name() +
                           " is older than sm_80; Wren's kernels are built for sm_80 and sm_90 "
                           "(A100, H100 and newer)");
      return cuda_kernels::make_kernel_backend(options.math, options.linear);
#else
      return unavailable(
          "--device cuda: this build has no CUDA backend (nvcc was not found when it was "
          "configured); install the CUDA toolkit and rebuild");
#endif
  }
  return invalid_argument("unknown device");
}

}  // namespace wren
