// Emulator speed (issue 3 targets on the 2-core dev machine):
//   barriers:    64 blocks x 256 threads, 4 __syncthreads each   target <= 10 ms
//   elementwise: 1M floats, y = a*x + y, no barrier              target <= 20 ms
// Prints the median of 21 runs (after 3 warm-ups) of each, in milliseconds.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

#include "common/launch.h"

namespace {

__global__ void barrier_kernel(const float* in, float* out) {
  __shared__ float s[256];
  const unsigned t = threadIdx.x, i = blockIdx.x * 256 + t;
  s[t] = in[i];
  __syncthreads();
  float v = s[255 - t];
  __syncthreads();
  s[t] = v * 2.0f;
  __syncthreads();
  v = s[(t + 1) % 256];
  __syncthreads();
  out[i] = v;
}

__global__ void axpy_kernel(int n, float a, const float* x, float* y) {
  const int i = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  if (i < n) y[i] = a * x[i] + y[i];
}

template <class F>
double median_ms(F f) {
  for (int i = 0; i < 3; ++i) f();
  std::vector<double> ms;
  for (int i = 0; i < 21; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    ms.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

}  // namespace

int main() {
  std::vector<float> in(64 * 256, 1.0f), out(64 * 256);
  const double barrier_ms =
      median_ms([&] { WREN_LAUNCH(64, 256, 0, nullptr, barrier_kernel)
                      (in.data(), out.data()); });
  const int n = 1 << 20;
  std::vector<float> x(n, 1.0f), y(n, 0.0f);
  const double axpy_ms = median_ms([&] {
    WREN_LAUNCH((n + 255) / 256, 256, 0, nullptr, axpy_kernel)(n, 2.0f, x.data(), y.data());
  });
  const std::string error = wren::emu::take_error();
  if (!error.empty()) {
    std::fprintf(stderr, "%s\n", error.c_str());
    return 1;
  }
  std::printf("emu barriers    64 blocks x 256 threads, 4 __syncthreads: %7.2f ms (target 10)\n",
              barrier_ms);
  std::printf("emu elementwise 1M floats, no barrier:                   %7.2f ms (target 20)\n",
              axpy_ms);
  return 0;
}
