#include "wren/device.h"

#if defined(WREN_HAVE_CUDA)
#include "kernels_runtime.h"
#endif

namespace wren {

bool built_with_cuda() {
#if defined(WREN_HAVE_CUDA)
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

}  // namespace wren
