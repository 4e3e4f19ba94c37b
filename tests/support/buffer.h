// Device memory for the kernel tests: Buffer<T>, an array on a device initialised from a host
// vector and read back into one, and the raw allocation and copies under it.
//
// Memory: on a GPU cudaMalloc's; otherwise (emu) host memory from a 256-byte aligned operator
// new, as cudaMalloc's and wren::emu::malloc's memory is aligned, of exactly the bytes asked for
// (so that ASan sees an overrun; one byte for an empty array, whose address is then valid and
// not null, as a device allocator's would be). An array starts `offset` elements after the
// allocation's start (offset 1 of a float array: not 16-byte aligned, so a kernel takes its
// scalar path).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace wren::testing {

// `bytes` of device memory (gpu: cudaMalloc; else host memory, 256-byte aligned); null for 0.
void* device_alloc(bool gpu, size_t bytes);
void device_free(bool gpu, void* p);
// Copies between host memory and device memory (a plain memcpy when !gpu). 0 bytes: nothing.
void copy_to_device(bool gpu, void* device, const void* host, size_t bytes);
void copy_to_host(bool gpu, void* host, const void* device, size_t bytes);

template <class T = float>
class Buffer {
 public:
  // `host`'s elements on the device (GPU memory when `gpu`), `offset` elements into the
  // allocation.
  Buffer(bool gpu, const std::vector<T>& host, size_t offset = 0)
      : gpu_(gpu), count_(host.size()), offset_(offset) {
    base_ = device_alloc(gpu_, std::max<size_t>((count_ + offset_) * sizeof(T), 1));
    copy_to_device(gpu_, get(), host.data(), count_ * sizeof(T));
  }
  // `count` elements of `fill`.
  Buffer(bool gpu, size_t count, T fill, size_t offset = 0)
      : Buffer(gpu, std::vector<T>(count, fill), offset) {}
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer() { device_free(gpu_, base_); }

  size_t size() const { return count_; }
  // The device address of element 0.
  T* get() const { return static_cast<T*>(base_) + offset_; }
  // The elements, copied back to the host.
  std::vector<T> read() const {
    std::vector<T> host(count_);
    copy_to_host(gpu_, host.data(), get(), count_ * sizeof(T));
    return host;
  }
  // Overwrites the elements with `host` (of size() elements).
  void write(const std::vector<T>& host) {
    copy_to_device(gpu_, get(), host.data(), std::min(host.size(), count_) * sizeof(T));
  }

 private:
  bool gpu_;
  size_t count_, offset_;
  void* base_ = nullptr;
};

// A workspace of exactly `bytes` (rounded up to whole floats), filled with `fill`: NaN garbage,
// so that a kernel reading a partial it did not write fails the comparison.
inline std::vector<float> workspace_fill(size_t bytes, float fill) {
  return std::vector<float>((bytes + sizeof(float) - 1) / sizeof(float), fill);
}

}  // namespace wren::testing
