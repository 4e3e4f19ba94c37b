// The devices the op families' tests (tests/kernels/) run one test body on: the CPU reference in
// double and float (CpuDevice<T>), emu (the SIMT emulator, kernels/emu/) and cuda (a GPU); the
// bases of each family's device adaptors, the typed suites' fixtures and type lists, and the
// emulator's fiber schedules. Device memory: tests/support/buffer.h.
//
// A family's test file writes its launchers once for both builds of its kernels (the family's
// WREN_<FAMILY>_LAUNCHERS(ns) macro: static members calling wren::ns::<launcher>) and derives one
// adaptor per device:
//
//   struct EmuConv : testing::EmuDevice { WREN_CONV_LAUNCHERS(emu_kernels) };
//   struct CudaConv : testing::CudaDevice { WREN_CONV_LAUNCHERS(WREN_TEST_CUDA_KERNELS) };
//   template <class K> class ConvKernels : public testing::DeviceTest<K> {};
//   TYPED_TEST_SUITE(ConvKernels, WREN_KERNEL_DEVICES(EmuConv, CudaConv), testing::DeviceNames);
//   TYPED_TEST(ConvKernels, ForwardFp32) { check_forward<TypeParam>(...); }
//
// which gives ConvKernels/emu.ForwardFp32 and ConvKernels/cuda.ForwardFp32 from one body. The
// cuda cases skip with the reason on a machine without a GPU and in a build without the CUDA
// backend (DeviceTest); LauncherTest is the fixture for host-side checks of the launchers
// (argument validation, workspace sizes), which need the launcher compiled but no device.
//
// The cases whose expected values hold on every device (the hand-computed ones) are typed over
// all four, WREN_ALL_DEVICES(CpuX<double>, CpuX<float>, EmuX, CudaX), where the family's CPU
// adaptor CpuX<T> : CpuDevice<T> calls its wren::cpu functions in T behind the same static
// members as the launchers (Scalar: the element type, float for the kernels). Suite/cpu_double,
// Suite/cpu_float, Suite/emu, Suite/cuda.
//
// Which devices exist in a build: emu when the emulator is built (WREN_HAVE_EMU), cuda when the
// CUDA backend is (WREN_HAVE_CUDA). In an emu build without CUDA the cuda cases are still listed,
// and skipped, as on a machine without a GPU: their adaptors then name the emulator's launchers
// (WREN_TEST_CUDA_KERNELS) only so that the typed suites link; they never run. A build with
// neither (the nocuda preset) has no kernel cases (WREN_TEST_KERNEL_DEVICES is 0): the CPU
// reference suites and the cpu_double / cpu_float cases of the all-device suites.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <type_traits>
#include <utility>

#if defined(WREN_HAVE_EMU)
#include "emu/emu.h"
#endif

#if defined(WREN_HAVE_EMU) || defined(WREN_HAVE_CUDA)
#define WREN_TEST_KERNEL_DEVICES 1
#else
#define WREN_TEST_KERNEL_DEVICES 0
#endif

// The namespace the cuda adaptors call (see the top of the file).
#if defined(WREN_HAVE_CUDA)
#define WREN_TEST_CUDA_KERNELS cuda_kernels
#else
#define WREN_TEST_CUDA_KERNELS emu_kernels
#endif

// The type list of a family's typed device suites: its emu and cuda adaptors, where they exist.
#if defined(WREN_HAVE_EMU)
#define WREN_KERNEL_DEVICES(Emu, Cuda) ::testing::Types<Emu, Cuda>
#else
#define WREN_KERNEL_DEVICES(Emu, Cuda) ::testing::Types<Cuda>
#endif

// The type list of a family's suites typed over every device: the CPU reference in double and
// float, and the kernels on emu and cuda where they exist.
#if defined(WREN_HAVE_EMU)
#define WREN_ALL_DEVICES(CpuDouble, CpuFloat, Emu, Cuda) \
  ::testing::Types<CpuDouble, CpuFloat, Emu, Cuda>
#elif defined(WREN_HAVE_CUDA)
#define WREN_ALL_DEVICES(CpuDouble, CpuFloat, Emu, Cuda) ::testing::Types<CpuDouble, CpuFloat, Cuda>
#else
#define WREN_ALL_DEVICES(CpuDouble, CpuFloat, Emu, Cuda) ::testing::Types<CpuDouble, CpuFloat>
#endif

namespace wren::testing {

// The CPU reference in T: calls run to completion on the calling thread, memory is host memory.
template <class T>
struct CpuDevice {
  using Scalar = T;
  static constexpr bool kGpu = false;
  static constexpr bool kCpu = true;
  static constexpr const char* kName = std::is_same_v<T, float> ? "cpu_float" : "cpu_double";
  static constexpr bool kExactNan = true;
  static std::string not_built() { return ""; }
  static std::string unavailable() { return ""; }
  static std::string finish() { return ""; }
};

#if defined(WREN_HAVE_EMU)
// The emulator: device memory is host memory, launches run to completion before they return,
// and a kernel's fault is recorded for take_error().
struct EmuDevice {
  using Scalar = float;  // the kernels are float only
  static constexpr bool kGpu = false;
  static constexpr bool kCpu = false;
  static constexpr const char* kName = "emu";
  // NaN results carry the reference's payload: the emulator runs the kernels on the CPU.
  static constexpr bool kExactNan = true;
  // Why the launchers cannot be called here ("" = they can), and why no kernel can run.
  static std::string not_built() { return ""; }
  static std::string unavailable() { return ""; }
  // "" when every launch since the last call succeeded, else the first error.
  static std::string finish() { return wren::emu::take_error(); }
};
#endif

// A GPU through the CUDA runtime (tests/support/device.cpp).
struct CudaDevice {
  using Scalar = float;
  static constexpr bool kGpu = true;
  static constexpr bool kCpu = false;
  static constexpr const char* kName = "cuda";
  // A GPU returns its canonical NaN from arithmetic on a NaN: any NaN matches a NaN.
  static constexpr bool kExactNan = false;
  static std::string not_built();    // "built without the CUDA backend ..." or ""
  static std::string unavailable();  // not_built(), "no CUDA device on this machine" or ""
  static std::string finish();       // cudaDeviceSynchronize's error, or ""
};

// The fixture of a typed suite whose cases run kernels: skipped where the device is missing.
template <class K>
class DeviceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (const std::string why = K::unavailable(); !why.empty()) GTEST_SKIP() << why;
  }
};

// The fixture of a typed suite of host-side launcher checks (argument validation, workspace
// sizes; nothing is enqueued): those need the launchers compiled, not a device.
template <class K>
class LauncherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (const std::string why = K::not_built(); !why.empty()) GTEST_SKIP() << why;
  }
};

// Names the typed cases after the device: Suite/emu.Test, Suite/cuda.Test.
struct DeviceNames {
  template <class K>
  static std::string GetName(int) {
    return K::kName;
  }
};

// The seed of a check on device K: the emu and cuda cases draw their own inputs.
template <class K>
constexpr uint32_t device_seed(uint32_t emu, uint32_t cuda) {
  return K::kGpu ? cuda : emu;
}

// One run of a check under one schedule: its name ("forward schedule", ...; "gpu" on a GPU)
// and whether it is the first run (the emulator's forward schedule, or the GPU's only run).
struct ScheduleRun {
  std::string name;
  bool first;
};

#if defined(WREN_HAVE_EMU)
// Puts the emulator back on its default schedule when a check returns (an ASSERT included).
struct DefaultScheduleOnExit {
  DefaultScheduleOnExit() = default;
  DefaultScheduleOnExit(const DefaultScheduleOnExit&) = delete;
  DefaultScheduleOnExit& operator=(const DefaultScheduleOnExit&) = delete;
  ~DefaultScheduleOnExit() { wren::emu::set_schedule(wren::emu::Schedule::kForward); }
};
#endif

// Runs `check` under the emulator's three fiber schedules (forward, reverse, random with
// `seed`; each under a SCOPED_TRACE naming it), then restores the default; or once on a GPU
// (or the CPU). `check` takes no argument or a const ScheduleRun&.
template <class K, class F>
void under_schedules(uint64_t seed, F&& check) {
  auto call = [&check](const ScheduleRun& run) {
    if constexpr (std::is_invocable_v<F&, const ScheduleRun&>) {
      check(run);
    } else {
      check();
    }
  };
  if constexpr (K::kGpu || K::kCpu) {
    (void)seed;
    call(ScheduleRun{K::kGpu ? "gpu" : "cpu", true});
  } else {
#if defined(WREN_HAVE_EMU)
    const DefaultScheduleOnExit restore;
    for (auto schedule : {wren::emu::Schedule::kForward, wren::emu::Schedule::kReverse,
                          wren::emu::Schedule::kRandom}) {
      wren::emu::set_schedule(schedule, seed);
      const ScheduleRun run{schedule == wren::emu::Schedule::kForward
                                ? "forward schedule"
                                : (schedule == wren::emu::Schedule::kReverse ? "reverse schedule"
                                                                             : "random schedule"),
                            schedule == wren::emu::Schedule::kForward};
      SCOPED_TRACE(run.name);
      call(run);
    }
#endif
  }
}

// Runs `check` once under the emulator's random schedule with `seed` (then restores the
// default), or once on a GPU (or the CPU).
template <class K, class F>
void under_random_schedule(uint64_t seed, F&& check) {
  if constexpr (K::kGpu || K::kCpu) {
    (void)seed;
    check();
  } else {
#if defined(WREN_HAVE_EMU)
    const DefaultScheduleOnExit restore;
    wren::emu::set_schedule(wren::emu::Schedule::kRandom, seed);
    check();
#endif
  }
}

}  // namespace wren::testing
