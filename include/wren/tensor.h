// A tensor is a view: pointer, shape, device. It never owns memory; buffers are planned and
// owned by the Executor (activations, gradients) or by the parameter store (docs/ARCHITECTURE.md).
#pragma once

#include <cstdint>

#include "wren/shape.h"

namespace wren {

// Where a buffer lives and which implementation runs the ops on it.
//   cpu:  host memory, the reference ops (kernels/<family>/reference.cpp)
//   cuda: device memory, the kernels (kernels/) on a GPU
//   emu:  host memory, the same kernels run by the SIMT emulator
enum class Device { kCpu, kCuda, kEmu };

const char* to_string(Device device);

template <class T>
struct TensorView {
  T* data = nullptr;
  Shape shape;
  Device device = Device::kCpu;

  int64_t numel() const { return shape.numel(); }
  T* begin() const { return data; }
  T* end() const { return data + numel(); }
};

}  // namespace wren
