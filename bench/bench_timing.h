// Timing, cache flushing, memory figures and the machine's ceilings for wren-bench
// (docs/BENCHMARKS.md describes the method).
//
//   cuda: every rep is bracketed by two CUDA events recorded on the stream the op runs on
//         (Backend::native_stream()), after a write of a flush buffer of at least twice the
//         GPU's L2 size on the same stream, so no rep finds its inputs in L2;
//   cpu, emu: steady_clock around the op, with Backend::synchronize() before and after, after
//         a write of a flush buffer of twice the host's last-level cache.
// Each op is run `warmup` times untimed, then at least `reps` times and until `min_time`
// seconds of timed work have passed (at most `max_reps`), rotating over the input sets
// (the op is called with the rep's index and picks its set as rep % sets).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "wren/backend.h"
#include "wren/error.h"

namespace wren::bench {

struct TimingOptions {
  int warmup = 3;
  int reps = 20;
  int max_reps = 1000;
  double min_time_s = 0.2;
  bool flush = true;
  // Cap on the host flush buffer (cpu, emu): 2x the last-level cache can be far more than a VM
  // slice owns (480 MiB L3 on the 2-core dev VM); --quick lowers it to keep CI fast.
  size_t max_host_flush_bytes = size_t{256} << 20;
};

// Order statistics of the timed reps, in milliseconds.
struct Stats {
  int reps = 0;
  double median_ms = 0, min_ms = 0, p90_ms = 0, mean_ms = 0;
};
Stats summarize(std::vector<double> ms);

// Times one op on a device. `op(rep)` enqueues one run (rep counts warm-ups and timed runs
// from 0); `stream` is where the op's work is queued on cuda (ignored on cpu and emu).
class Timer {
 public:
  virtual ~Timer() = default;
  virtual Expected<Stats> time(const std::function<void(int rep)>& op, void* stream) = 0;
  // The bytes written between reps to flush the cache (0 when flushing is off).
  virtual size_t flush_bytes() const = 0;
  // One line: "CUDA events, L2 (50 MiB) flushed by a 100 MiB write" or the host equivalent.
  virtual std::string method() const = 0;
};

// The timer for `backend`'s device. `backend` must outlive the timer (cpu and emu
// synchronize through it).
Expected<std::unique_ptr<Timer>> make_timer(Backend<float>& backend, const TimingOptions& options);

// --- memory ---------------------------------------------------------------------------------
// Host memory. Linux keeps the process's peak resident set (VmHWM); reset_peak_rss() sets it
// back to the current RSS (/proc/self/clear_refs, "5"), so peak_rss_mib() read after a row is
// that row's peak (process baseline and flush buffer included). Without /proc, the reset does
// nothing and the peak is getrusage's, since the start of the process.
bool reset_peak_rss();
double peak_rss_mib();          // VmHWM from /proc/self/status, else getrusage's ru_maxrss
double process_peak_rss_mib();  // getrusage's ru_maxrss: the whole run
// Device memory in use on GPU 0 (cudaMemGetInfo: total − free, every process on the GPU), MiB;
// negative when there is no GPU (cpu, emu).
double device_used_mib();

// --- the machine ------------------------------------------------------------------------------
struct Ceilings {
  double copy_gbs = 0;           // bytes read + written per second / 1e9
  double gemm_fp32_gflops = 0;   // sgemm, fp32 arithmetic
  double gemm_tf32_gflops = -1;  // sgemm on TF32 tensor cores; < 0 where there are none
  std::string copy_method, gemm_method;
};
// cuda: cudaMemcpyAsync device to device of 256 MiB, and cublasSgemm 4096³ with
// CUBLAS_DEFAULT_MATH (fp32) and CUBLAS_TF32_TENSOR_OP_MATH (TF32), timed with CUDA events.
// cpu and emu (the emulator runs on the host, so its ceilings are the host's): memcpy of
// 256 MiB split over the OpenMP threads, and OpenBLAS cblas_sgemm 2048³ on every core.
// `quick`: smaller sizes and fewer reps (CI).
Expected<Ceilings> measure_ceilings(Device device, bool quick);

std::string host_cpu_name();  // /proc/cpuinfo's model name
int host_cores();

// --- shared by the wren-bench commands --------------------------------------------------------
// --device auto|cpu|emu|cuda: auto is cuda when this build has it and a GPU is visible.
Device resolve_device(const std::string& flag);
// "NVIDIA H200", "SIMT emulator on <cpu> (N cores)", "<cpu> (N cores)".
std::string device_display_name(Device device);
// The line that says what kind of figures these are (emulator figures are not GPU figures).
std::string device_label(Device device);
std::string iso_date();                        // now, UTC: 2026-11-26T00:20:16Z
std::string fmt(double v, int precision);      // printf("%.*f")
std::string pad(std::string s, size_t width, bool right = false);
std::string csv_field(const std::string& s);  // quoted when it holds , " or a newline
// Writes `text` to `path` (a --json / --csv output); false, with a line on stderr, if it cannot.
bool write_output(const std::string& path, const std::string& text);

}  // namespace wren::bench
