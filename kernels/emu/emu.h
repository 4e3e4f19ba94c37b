// The SIMT emulator's kernel-side header: what a kernel source sees when g++ (not nvcc)
// compiles it for the `emu` device. Kernel files do not include it directly; kernels/common/launch.h
// does, outside __CUDACC__. Rules for kernel authors: docs/EMULATOR.md.
//
// Model: a block runs on one worker OS thread; its CUDA threads are fibers on that worker.
// `__shared__` is `static thread_local` (one copy per worker = per running block); the index
// variables are thread_local values the scheduler sets before it resumes a fiber.
#pragma once

#if defined(__CUDACC__)
#error "kernels/emu/emu.h is for g++ builds of kernel sources; nvcc uses the real CUDA headers"
#endif

// --- Keywords: defined BEFORE any CUDA header, whose host_defines.h keeps existing ones. -----
#define __global__
#define __device__
#define __host__
#define __constant__ static
#if defined(WREN_EMU_ASAN)
// One worker thread in the ASan build; plain statics get ASan redzones, TLS does not.
#define __shared__ static
#else
// All static shared memory lives in one TLS section, which the scheduler fills with garbage
// at every block start (scheduler.cpp, static_smem()).
#define __shared__ __attribute__((section("wren_smem"))) static thread_local
#endif

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <vector_types.h>

// host_defines.h (pulled in above) redefines these for host compilers; pin ours.
#undef __forceinline__
#define __forceinline__ inline
#undef __noinline__
#define __noinline__ __attribute__((noinline))
#undef __launch_bounds__
#define __launch_bounds__(...)
#undef __restrict__
#define __restrict__ __restrict
#ifndef __align__
#define __align__(n) __attribute__((aligned(n)))
#endif

#include <algorithm>
#include <atomic>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <source_location>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

// --- Index variables: per worker OS thread, set by the scheduler before each resume. -------
inline thread_local uint3 threadIdx;
inline thread_local uint3 blockIdx;
inline thread_local dim3 blockDim;
inline thread_local dim3 gridDim;
inline constexpr int warpSize = 32;

namespace wren::emu {

// --- Runtime control (scheduler.cpp) ----------------------------------------------------------
// Order in which a block's fibers run between two barriers (and lanes after a warp exchange).
// kReverse and kRandom expose missing __syncthreads: results must not depend on the order.
enum class Schedule { kForward, kReverse, kRandom };
void set_schedule(Schedule schedule, uint64_t seed = 0);
Schedule schedule();

// Errors: the first emulator error (or exception thrown by a kernel) is recorded, the rest of
// that launch is skipped, and the message names the kernel, block and thread. Later launches
// run normally. last_error() peeks; take_error() returns the message and clears it. "" = ok.
std::string last_error();
std::string take_error();

// Warp-level gather for emulated PTX twins: every lane of the full warp calls it with its own
// `bytes` bytes at `mine`; on return `all` holds the 32 lanes' data in lane order (lane i at
// offset i*bytes), on every lane.
void warp_all_gather(const void* mine, size_t bytes, void* all);

namespace detail {

enum class WarpOp : uint8_t { kSync, kShflIdx, kShflUp, kShflDown, kShflXor, kBallot, kGather };

// Reports an emulator error from inside a kernel: throws, unwinds to the fiber's entry, and the
// scheduler records it with the kernel, block and thread and abandons the block.
[[noreturn]] void fail(const std::string& message);

// One warp collective: every lane posts `in` (bytes) and `out`; the last lane to arrive does
// the exchange for all. `arg` is the source lane, delta or xor mask; `width` the segment size.
void warp_exchange(WarpOp op, unsigned mask, const void* in, void* out, size_t bytes, int arg,
                   int width, const std::source_location& where);

// __syncthreads and its reducing variants; kind: 0 plain, 1 count, 2 and, 3 or.
int block_barrier(int kind, int predicate, const std::source_location& where);

// Dynamic shared memory of the running block (16-byte aligned, NaN-filled at block start).
void* dynamic_smem_base();

void check_aligned(const void* p, size_t alignment, const char* type);

// cp.async twins (kernels/common/ptx.cuh). A copy is deferred until the cp.async.wait that covers its
// group, so a kernel that reads the destination before waiting reads garbage.
void async_copy(void* dst, const void* src, unsigned bytes, unsigned src_bytes);
void async_commit();
void async_wait(int pending_groups);  // completes all but the `pending_groups` newest groups

}  // namespace detail
}  // namespace wren::emu

namespace wren {
// Dynamic shared memory: the emulator's per-block buffer (nvcc: extern __shared__, launch.h).
template <class T>
inline T* dynamic_smem() {
  return static_cast<T*>(emu::detail::dynamic_smem_base());
}
}  // namespace wren

// --- Barriers ----------------------------------------------------------------------------------
inline void __syncthreads(std::source_location w = std::source_location::current()) {
  wren::emu::detail::block_barrier(0, 0, w);
}
inline int __syncthreads_count(int p, std::source_location w = std::source_location::current()) {
  return wren::emu::detail::block_barrier(1, p, w);
}
inline int __syncthreads_and(int p, std::source_location w = std::source_location::current()) {
  return wren::emu::detail::block_barrier(2, p, w);
}
inline int __syncthreads_or(int p, std::source_location w = std::source_location::current()) {
  return wren::emu::detail::block_barrier(3, p, w);
}
inline void __threadfence() {
  std::atomic_thread_fence(std::memory_order_seq_cst);
}
inline void __threadfence_block() {
  std::atomic_thread_fence(std::memory_order_seq_cst);
}

// --- Warp collectives (full mask only; anything else is reported as an error) ---------------
inline void __syncwarp(unsigned mask = 0xffffffffu,
                       std::source_location w = std::source_location::current()) {
  wren::emu::detail::warp_exchange(wren::emu::detail::WarpOp::kSync, mask, nullptr, nullptr, 0, 0,
                                   32, w);
}

#define WREN_EMU_SHFL(name, op)                                                                  \
  template <class T>                                                                             \
  inline T name(unsigned mask, T var, int arg, int width = 32,                                   \
                std::source_location w = std::source_location::current()) {                      \
    static_assert(std::is_trivially_destructible_v<T> && sizeof(T) <= 8, "8 bytes at most");     \
    T out;                                                                                       \
    wren::emu::detail::warp_exchange(wren::emu::detail::WarpOp::op, mask, &var, &out, sizeof(T), \
                                     arg, width, w);                                             \
    return out;                                                                                  \
  }
WREN_EMU_SHFL(__shfl_sync, kShflIdx)
WREN_EMU_SHFL(__shfl_up_sync, kShflUp)
WREN_EMU_SHFL(__shfl_down_sync, kShflDown)
WREN_EMU_SHFL(__shfl_xor_sync, kShflXor)
#undef WREN_EMU_SHFL

inline unsigned __ballot_sync(unsigned mask, int pred,
                              std::source_location w = std::source_location::current()) {
  unsigned out = 0;
  const int p = pred != 0;
  wren::emu::detail::warp_exchange(wren::emu::detail::WarpOp::kBallot, mask, &p, &out, sizeof(int),
                                   0, 32, w);
  return out;
}
inline int __any_sync(unsigned mask, int pred,
                      std::source_location w = std::source_location::current()) {
  return __ballot_sync(mask, pred, w) != 0;
}
inline int __all_sync(unsigned mask, int pred,
                      std::source_location w = std::source_location::current()) {
  // A full or partial warp: every lane that exists must vote true.
  const unsigned votes = __ballot_sync(mask, pred, w);
  const unsigned present = __ballot_sync(mask, 1, w);
  return votes == present;
}
inline unsigned __activemask() {
  return 0xffffffffu;
}

// --- Atomics (std::atomic_ref; blocks run in parallel on the worker threads) ----------------
#define WREN_EMU_ATOMIC_RMW(name, T, expr) \
  inline T name(T* address, T val) {       \
    std::atomic_ref<T> ref(*address);      \
    return expr;                           \
  }
#define WREN_EMU_ATOMIC_INT(T)                                                           \
  WREN_EMU_ATOMIC_RMW(atomicAdd, T, ref.fetch_add(val))                                  \
  WREN_EMU_ATOMIC_RMW(atomicSub, T, ref.fetch_sub(val))                                  \
  WREN_EMU_ATOMIC_RMW(atomicAnd, T, ref.fetch_and(val))                                  \
  WREN_EMU_ATOMIC_RMW(atomicOr, T, ref.fetch_or(val))                                    \
  WREN_EMU_ATOMIC_RMW(atomicXor, T, ref.fetch_xor(val))                                  \
  WREN_EMU_ATOMIC_RMW(atomicExch, T, ref.exchange(val))                                  \
  WREN_EMU_ATOMIC_RMW(atomicMax, T, wren::emu::detail::atomic_update(ref, [val](T old) { \
                        return old < val ? val : old;                                    \
                      }))                                                                \
  WREN_EMU_ATOMIC_RMW(atomicMin, T, wren::emu::detail::atomic_update(ref, [val](T old) { \
                        return val < old ? val : old;                                    \
                      }))                                                                \
  inline T atomicCAS(T* address, T compare, T val) {                                     \
    std::atomic_ref<T> ref(*address);                                                    \
    ref.compare_exchange_strong(compare, val);                                           \
    return compare;                                                                      \
  }

namespace wren::emu::detail {
template <class T, class F>
T atomic_update(std::atomic_ref<T>& ref, F f) {
  T old = ref.load();
  while (!ref.compare_exchange_weak(old, f(old))) {
  }
  return old;
}
}  // namespace wren::emu::detail

WREN_EMU_ATOMIC_INT(int)
WREN_EMU_ATOMIC_INT(unsigned)
WREN_EMU_ATOMIC_INT(long long)
WREN_EMU_ATOMIC_INT(unsigned long long)
WREN_EMU_ATOMIC_RMW(atomicAdd, float, ref.fetch_add(val))
WREN_EMU_ATOMIC_RMW(atomicAdd, double, ref.fetch_add(val))
WREN_EMU_ATOMIC_RMW(atomicExch, float, ref.exchange(val))
#undef WREN_EMU_ATOMIC_INT
#undef WREN_EMU_ATOMIC_RMW

// --- Math built-ins (the float ones from <cmath> are used as they are) ------------------------
inline float rsqrtf(float x) {
  return 1.0f / std::sqrt(x);
}
inline double rsqrt(double x) {
  return 1.0 / std::sqrt(x);
}
inline float __expf(float x) {
  return std::exp(x);
}
inline float __logf(float x) {
  return std::log(x);
}
inline float __log2f(float x) {
  return std::log2(x);
}
inline float __powf(float x, float y) {
  return std::pow(x, y);
}
inline float __sinf(float x) {
  return std::sin(x);
}
inline float __cosf(float x) {
  return std::cos(x);
}
inline float __tanf(float x) {
  return std::tan(x);
}
inline float __fdividef(float a, float b) {
  return a / b;
}
inline float __frcp_rn(float x) {
  return 1.0f / x;
}
inline float __fsqrt_rn(float x) {
  return std::sqrt(x);
}
inline float __fmaf_rn(float a, float b, float c) {
  return std::fma(a, b, c);
}
inline float __fadd_rn(float a, float b) {
  return a + b;
}
inline float __fmul_rn(float a, float b) {
  return a * b;
}
inline float __saturatef(float x) {
  return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x);
}
inline int __float2int_rn(float x) {
  return static_cast<int>(std::nearbyint(x));
}
inline int __float2int_rz(float x) {
  return static_cast<int>(std::trunc(x));
}
inline int __float2int_rd(float x) {
  return static_cast<int>(std::floor(x));
}
inline int __float2int_ru(float x) {
  return static_cast<int>(std::ceil(x));
}
inline float __int2float_rn(int x) {
  return static_cast<float>(x);
}
inline int __float_as_int(float x) {
  return std::bit_cast<int>(x);
}
inline unsigned __float_as_uint(float x) {
  return std::bit_cast<unsigned>(x);
}
inline float __int_as_float(int x) {
  return std::bit_cast<float>(x);
}
inline float __uint_as_float(unsigned x) {
  return std::bit_cast<float>(x);
}
inline int __popc(unsigned x) {
  return std::popcount(x);
}
inline int __popcll(unsigned long long x) {
  return std::popcount(x);
}
inline int __clz(int x) {
  return std::countl_zero(static_cast<unsigned>(x));
}
inline int __ffs(int x) {
  return x == 0 ? 0 : std::countr_zero(static_cast<unsigned>(x)) + 1;
}
inline unsigned __brev(unsigned x) {
  unsigned r = 0;
  for (int i = 0; i < 32; ++i) r |= ((x >> i) & 1u) << (31 - i);
  return r;
}
inline unsigned __umulhi(unsigned a, unsigned b) {
  return static_cast<unsigned>((static_cast<unsigned long long>(a) * b) >> 32);
}
template <class T>
inline T __ldg(const T* p) {
  return *p;
}

// min/max as CUDA declares them: same-type overloads plus the mixed signed/unsigned and
// float/double ones (which promote like CUDA's: to unsigned, to double).
#define WREN_EMU_MINMAX(R, A, B)                                                          \
  inline R min(A a, B b) {                                                                \
    return static_cast<R>(a) < static_cast<R>(b) ? static_cast<R>(a) : static_cast<R>(b); \
  }                                                                                       \
  inline R max(A a, B b) {                                                                \
    return static_cast<R>(a) < static_cast<R>(b) ? static_cast<R>(b) : static_cast<R>(a); \
  }
WREN_EMU_MINMAX(int, int, int)
WREN_EMU_MINMAX(unsigned, unsigned, unsigned)
WREN_EMU_MINMAX(unsigned, int, unsigned)
WREN_EMU_MINMAX(unsigned, unsigned, int)
WREN_EMU_MINMAX(long, long, long)
WREN_EMU_MINMAX(unsigned long, unsigned long, unsigned long)
WREN_EMU_MINMAX(long long, long long, long long)
WREN_EMU_MINMAX(unsigned long long, unsigned long long, unsigned long long)
WREN_EMU_MINMAX(unsigned long long, long long, unsigned long long)
WREN_EMU_MINMAX(unsigned long long, unsigned long long, long long)
WREN_EMU_MINMAX(double, double, double)
WREN_EMU_MINMAX(double, float, double)
WREN_EMU_MINMAX(double, double, float)
#undef WREN_EMU_MINMAX
inline float min(float a, float b) {
  return std::fmin(a, b);
}
inline float max(float a, float b) {
  return std::fmax(a, b);
}

// --- Checked vector loads: what the hardware faults on, the emulator reports. ---------------
// Plain `*reinterpret_cast<const float4*>(p)` is checked by UBSan's alignment check in the
// asan build; these helpers check in every build.
namespace wren::emu {
template <class V>
inline V load_vec(const void* p) {
  detail::check_aligned(p, alignof(V), "vector load");
  V v;
  std::memcpy(&v, p, sizeof(V));
  return v;
}
}  // namespace wren::emu

// --- Host side: launch, streams, events, device memory (runtime.cpp, memory.cpp) ------------
// All device memory is host memory; every operation runs synchronously, in call order, so
// streams are trivially ordered. The API mirrors what the CUDA backend uses.
namespace wren::emu {

struct StreamImpl;
using Stream = StreamImpl*;  // nullptr: the default stream
struct EventImpl;
using Event = EventImpl*;

Stream stream_create();
void stream_destroy(Stream stream);
// Waits for the stream (a no-op: execution is synchronous) and returns take_error().
std::string stream_synchronize(Stream stream);
std::string synchronize();

Event event_create();
void event_destroy(Event event);
void event_record(Event event, Stream stream = nullptr);
void event_synchronize(Event event);
float event_elapsed_ms(Event start, Event stop);

// 256-byte aligned like cudaMalloc; nullptr when out of memory (or bytes == 0).
void* malloc(size_t bytes);
void free(void* p);
void memcpy(void* dst, const void* src, size_t bytes);
void memset(void* dst, int value, size_t bytes);
void memcpy_async(void* dst, const void* src, size_t bytes, Stream stream);
void memset_async(void* dst, int value, size_t bytes, Stream stream);

// `__constant__` variables are plain statics under the emulation: cudaMemcpyToSymbol's twin.
template <class T>
void memcpy_to_symbol(T& symbol, const void* src, size_t bytes, size_t offset = 0) {
  std::memcpy(reinterpret_cast<unsigned char*>(&symbol) + offset, src, bytes);
}
template <class T>
void memcpy_from_symbol(void* dst, const T& symbol, size_t bytes, size_t offset = 0) {
  std::memcpy(dst, reinterpret_cast<const unsigned char*>(&symbol) + offset, bytes);
}

// Number of worker threads that run blocks (the launching thread is one of them). Default:
// hardware concurrency; always 1 in the ASan build (shared memory is plain statics there).
void set_workers(int workers);

namespace detail {
struct LaunchSpec {
  const char* kernel;  // name for messages
  dim3 grid;
  dim3 block;
  size_t smem_bytes;
  Stream stream;
};
// Runs the grid: body(ctx) is called once per CUDA thread, on that thread's fiber.
void launch(const LaunchSpec& spec, void (*body)(void*), void* ctx);

// Between the runtime's files: one launch being run. launch.cpp fills it and every worker
// calls run_blocks (block.cpp), which takes blocks until none are left or one has failed.
struct GridRun {
  const LaunchSpec* spec = nullptr;
  void (*body)(void*) = nullptr;
  void* ctx = nullptr;
  unsigned long long blocks = 0;
  Schedule schedule = Schedule::kForward;
  uint64_t seed = 0;
  std::atomic<unsigned long long> next{0};
  std::atomic<bool> failed{false};
};
void run_blocks(GridRun& run);
void record_error(const std::string& message);  // keeps the first
void block_finished();                          // progress, for the watchdog
}  // namespace detail

// The emulated `kernel<<<grid, block, smem, stream>>>(args...)`: arguments are converted to the
// kernel's parameter types and copied once, like CUDA's parameter buffer.
template <class... P, class... A>
void launch(const char* name, dim3 grid, dim3 block, size_t smem_bytes, Stream stream,
            void (*kernel)(P...), A&&... args) {
  struct Closure {
    void (*kernel)(P...);
    std::tuple<std::decay_t<P>...> args;
  } closure{kernel, std::tuple<std::decay_t<P>...>(std::forward<A>(args)...)};
  const detail::LaunchSpec spec{name, grid, block, smem_bytes, stream};
  detail::launch(
      spec,
      [](void* ctx) {
        auto* c = static_cast<Closure*>(ctx);
        std::apply(c->kernel, c->args);
      },
      &closure);
}

// What WREN_LAUNCH(...) expands to: holds the configuration, takes the arguments.
template <class... P>
struct Launcher {
  const char* name;
  dim3 grid;
  dim3 block;
  size_t smem_bytes;
  Stream stream;
  void (*kernel)(P...);
  template <class... A>
  void operator()(A&&... args) const {
    launch(name, grid, block, smem_bytes, stream, kernel, std::forward<A>(args)...);
  }
};
template <class... P>
Launcher<P...> launcher(const char* name, dim3 grid, dim3 block, size_t smem_bytes, Stream stream,
                        void (*kernel)(P...)) {
  return {name, grid, block, smem_bytes, stream, kernel};
}

}  // namespace wren::emu
