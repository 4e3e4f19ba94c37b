#include "bench_timing.h"

#include <cblas.h>
#include <omp.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#if defined(WREN_HAVE_CUDA)
#include <cublas_v2.h>
#include <cuda_runtime.h>
#endif

#include "wren/device.h"

extern "C" {
int openblas_get_num_threads(void);
void openblas_set_num_threads(int num_threads);
}

namespace wren::bench {
namespace {

constexpr size_t kMiB = size_t{1} << 20;

double since_ms(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

// The host's last-level cache in bytes: sysconf, else sysfs, else 32 MiB.
size_t host_llc_bytes() {
  long s = sysconf(_SC_LEVEL3_CACHE_SIZE);
  if (s > 0) return static_cast<size_t>(s);
  for (int index = 3; index >= 2; --index) {
    std::ifstream f("/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(index) + "/size");
    std::string text;
    if (f >> text && !text.empty()) {
      size_t value = std::stoul(text);
      const char unit = text.back();
      if (unit == 'K') value *= 1024;
      if (unit == 'M') value *= kMiB;
      if (value > 0) return value;
    }
  }
  return 32 * kMiB;
}

// Writes `bytes` of `buffer` on every OpenMP thread (each core's private caches too).
void host_write(std::vector<unsigned char>& buffer, int value) {
  const size_t chunk = kMiB;
  const auto chunks = static_cast<int64_t>((buffer.size() + chunk - 1) / chunk);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < chunks; ++i) {
    const size_t begin = static_cast<size_t>(i) * chunk;
    std::memset(buffer.data() + begin, value, std::min(chunk, buffer.size() - begin));
  }
}

// --- cpu and emu: steady_clock around synchronize() ------------------------------------------
class HostTimer final : public Timer {
 public:
  HostTimer(Backend<float>& backend, const TimingOptions& options)
      : backend_(backend), options_(options) {
    if (options.flush)
      flush_.resize(std::min(std::max<size_t>(2 * host_llc_bytes(), 16 * kMiB),
                             std::max<size_t>(options.max_host_flush_bytes, kMiB)));
  }

  Expected<Stats> time(const std::function<void(int)>& op, void* /*stream*/) override {
    int rep = 0;
    for (int i = 0; i < options_.warmup; ++i, ++rep) {
      flush(rep);
      op(rep);
    }
    if (Status s = backend_.synchronize(); !s.ok()) return s.error();
    std::vector<double> ms;
    double total_ms = 0;
    while (static_cast<int>(ms.size()) < options_.max_reps &&
           (static_cast<int>(ms.size()) < options_.reps || total_ms < options_.min_time_s * 1e3)) {
      flush(rep);
      if (Status s = backend_.synchronize(); !s.ok()) return s.error();
      const auto t0 = std::chrono::steady_clock::now();
      op(rep);
      const Status s = backend_.synchronize();
      const double elapsed = since_ms(t0);
      if (!s.ok()) return s.error();
      ms.push_back(elapsed);
      total_ms += elapsed;
      ++rep;
    }
    return summarize(std::move(ms));
  }

  size_t flush_bytes() const override { return flush_.size(); }
  std::string method() const override {
    std::string m = "steady_clock around Backend::synchronize()";
    if (!flush_.empty())
      m += ", host caches flushed by a " + std::to_string(flush_.size() / kMiB) +
           " MiB write over every thread before each rep (2x the " +
           std::to_string(host_llc_bytes() / kMiB) + " MiB last-level cache, capped at " +
           std::to_string(options_.max_host_flush_bytes / kMiB) + " MiB)";
    return m;
  }

 private:
  void flush(int rep) {
    if (flush_.empty()) return;
    host_write(flush_, rep & 0xff);
    sink_ = flush_[static_cast<size_t>(rep) % flush_.size()];
  }

  Backend<float>& backend_;
  TimingOptions options_;
  std::vector<unsigned char> flush_;
  volatile unsigned char sink_ = 0;
};

#if defined(WREN_HAVE_CUDA)
std::string cuda_text(cudaError_t e) {
  return std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e);
}

// --- cuda: events on the op's stream, L2 flushed by a memset on the same stream -------------
class CudaTimer final : public Timer {
 public:
  CudaTimer(Backend<float>& backend, const TimingOptions& options)
      : backend_(backend), options_(options) {}
  ~CudaTimer() override {
    if (start_) cudaEventDestroy(start_);
    if (stop_) cudaEventDestroy(stop_);
    if (flush_) cudaFree(flush_);
  }
  CudaTimer(const CudaTimer&) = delete;
  CudaTimer& operator=(const CudaTimer&) = delete;

  Status init() {
    int device = 0, l2 = 0;
    if (cudaError_t e = cudaGetDevice(&device); e != cudaSuccess)
      return internal_error(cuda_text(e));
    cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, device);
    l2_bytes_ = static_cast<size_t>(std::max(l2, 0));
    if (options_.flush) {
      flush_bytes_ = std::max<size_t>(2 * l2_bytes_, 32 * kMiB);
      if (cudaError_t e = cudaMalloc(&flush_, flush_bytes_); e != cudaSuccess)
        return internal_error("flush buffer: " + cuda_text(e));
    }
    if (cudaError_t e = cudaEventCreate(&start_); e != cudaSuccess)
      return internal_error(cuda_text(e));
    if (cudaError_t e = cudaEventCreate(&stop_); e != cudaSuccess)
      return internal_error(cuda_text(e));
    return {};
  }

  Expected<Stats> time(const std::function<void(int)>& op, void* stream_handle) override {
    auto stream = static_cast<cudaStream_t>(stream_handle);
    int rep = 0;
    for (int i = 0; i < options_.warmup; ++i, ++rep) {
      flush(rep, stream);
      op(rep);
    }
    if (cudaError_t e = cudaStreamSynchronize(stream); e != cudaSuccess)
      return internal_error(cuda_text(e));
    std::vector<double> ms;
    double total_ms = 0;
    while (static_cast<int>(ms.size()) < options_.max_reps &&
           (static_cast<int>(ms.size()) < options_.reps || total_ms < options_.min_time_s * 1e3)) {
      flush(rep, stream);
      cudaEventRecord(start_, stream);
      op(rep);
      cudaEventRecord(stop_, stream);
      if (cudaError_t e = cudaEventSynchronize(stop_); e != cudaSuccess)
        return internal_error(cuda_text(e));
      float elapsed = 0;
      if (cudaError_t e = cudaEventElapsedTime(&elapsed, start_, stop_); e != cudaSuccess)
        return internal_error(cuda_text(e));
      ms.push_back(elapsed);
      total_ms += elapsed;
      ++rep;
    }
    if (cudaError_t e = cudaGetLastError(); e != cudaSuccess) return internal_error(cuda_text(e));
    if (Status s = backend_.synchronize(); !s.ok()) return s.error();
    return summarize(std::move(ms));
  }

  size_t flush_bytes() const override { return flush_bytes_; }
  std::string method() const override {
    std::string m = "CUDA events on the op's stream";
    if (flush_)
      m += ", L2 (" + std::to_string(l2_bytes_ / kMiB) + " MiB) flushed by a " +
           std::to_string(flush_bytes_ / kMiB) + " MiB cudaMemsetAsync before each rep";
    return m;
  }

 private:
  void flush(int rep, cudaStream_t stream) {
    if (flush_) cudaMemsetAsync(flush_, rep & 0xff, flush_bytes_, stream);
  }

  Backend<float>& backend_;
  TimingOptions options_;
  cudaEvent_t start_ = nullptr, stop_ = nullptr;
  void* flush_ = nullptr;
  size_t flush_bytes_ = 0, l2_bytes_ = 0;
};
#endif

double median_of(std::vector<double> v) {
  return summarize(std::move(v)).median_ms;
}

Expected<Ceilings> host_ceilings(bool quick) {
  Ceilings c;
  // Copy: memcpy split in 1 MiB chunks over the OpenMP threads.
  const size_t bytes = (quick ? 32 : 256) * kMiB;
  std::vector<unsigned char> src(bytes), dst(bytes);
  host_write(src, 1);
  host_write(dst, 2);
  const auto chunks = static_cast<int64_t>(bytes / kMiB);
  std::vector<double> ms;
  for (int rep = 0; rep < (quick ? 3 : 7); ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < chunks; ++i)
      std::memcpy(dst.data() + i * kMiB, src.data() + i * kMiB, kMiB);
    if (rep > 0) ms.push_back(since_ms(t0));  // rep 0 warms up
  }
  c.copy_gbs = 2.0 * static_cast<double>(bytes) / (median_of(ms) * 1e-3) / 1e9;
  c.copy_method = "memcpy of " + std::to_string(bytes / kMiB) + " MiB in 1 MiB chunks over " +
                  std::to_string(omp_get_max_threads()) + " OpenMP threads (read + write bytes)";

  // GEMM: OpenBLAS sgemm on every core (the cpu device itself runs one BLAS thread per OpenMP
  // thread; this is the machine's rate).
  const int n = quick ? 512 : 2048;
  std::vector<float> a(static_cast<size_t>(n) * n), b(a.size()), out(a.size(), 0.0f);
  for (size_t i = 0; i < a.size(); ++i) {
    a[i] = static_cast<float>((i * 2654435761u) % 1000) * 1e-3f - 0.5f;
    b[i] = static_cast<float>((i * 40503u) % 1000) * 1e-3f - 0.5f;
  }
  const int previous = openblas_get_num_threads();
  openblas_set_num_threads(omp_get_max_threads());
  ms.clear();
  for (int rep = 0; rep < (quick ? 3 : 5); ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a.data(), n, b.data(), n,
                0.0f, out.data(), n);
    if (rep > 0) ms.push_back(since_ms(t0));
  }
  openblas_set_num_threads(previous);
  c.gemm_fp32_gflops = 2.0 * n * double(n) * n / (median_of(ms) * 1e-3) / 1e9;
  c.gemm_method = "OpenBLAS cblas_sgemm " + std::to_string(n) + "^3 on " +
                  std::to_string(omp_get_max_threads()) + " threads";
  c.gemm_tf32_gflops = -1;
  return c;
}

#if defined(WREN_HAVE_CUDA)
Expected<Ceilings> cuda_ceilings(bool quick) {
  Ceilings c;
  cudaStream_t stream = nullptr;
  cudaEvent_t start = nullptr, stop = nullptr;
  void *src = nullptr, *dst = nullptr;
  float *a = nullptr, *b = nullptr, *out = nullptr;
  cublasHandle_t handle = nullptr;
  std::string error;
  auto check = [&](cudaError_t e, const char* what) {
    if (e != cudaSuccess && error.empty()) error = std::string(what) + ": " + cuda_text(e);
    return e == cudaSuccess;
  };
  auto time_ms = [&](const std::function<void()>& body, int reps) {
    std::vector<double> ms;
    for (int rep = -2; rep < reps; ++rep) {  // two warm-ups
      cudaEventRecord(start, stream);
      body();
      cudaEventRecord(stop, stream);
      cudaEventSynchronize(stop);
      float elapsed = 0;
      cudaEventElapsedTime(&elapsed, start, stop);
      if (rep >= 0) ms.push_back(elapsed);
    }
    return median_of(ms);
  };

  const size_t bytes = 256 * kMiB;
  const int n = 4096;
  const size_t matrix = static_cast<size_t>(n) * n * sizeof(float);
  if (check(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreate") &&
      check(cudaEventCreate(&start), "cudaEventCreate") &&
      check(cudaEventCreate(&stop), "cudaEventCreate") &&
      check(cudaMalloc(&src, bytes), "cudaMalloc") &&
      check(cudaMalloc(&dst, bytes), "cudaMalloc")) {
    cudaMemsetAsync(src, 1, bytes, stream);
    const double copy_ms =
        time_ms([&] { cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream); },
                quick ? 3 : 10);
    c.copy_gbs = 2.0 * static_cast<double>(bytes) / (copy_ms * 1e-3) / 1e9;
    c.copy_method = "cudaMemcpyAsync device to device, 256 MiB (read + write bytes)";
  }
  cudaFree(src);
  cudaFree(dst);
  if (error.empty() && check(cudaMalloc(&a, matrix), "cudaMalloc") &&
      check(cudaMalloc(&b, matrix), "cudaMalloc") &&
      check(cudaMalloc(&out, matrix), "cudaMalloc")) {
    std::vector<float> host(static_cast<size_t>(n) * n);
    for (size_t i = 0; i < host.size(); ++i)
      host[i] = static_cast<float>((i * 2654435761u) % 1000) * 1e-3f - 0.5f;
    check(cudaMemcpy(a, host.data(), matrix, cudaMemcpyHostToDevice), "cudaMemcpy");
    check(cudaMemcpy(b, host.data(), matrix, cudaMemcpyHostToDevice), "cudaMemcpy");
    if (cublasCreate(&handle) != CUBLAS_STATUS_SUCCESS) {
      if (error.empty()) error = "cublasCreate failed";
    } else {
      cublasSetStream(handle, stream);
      const float one = 1.0f, zero = 0.0f;
      auto sgemm = [&] {
        cublasSgemm(handle, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &one, a, n, b, n, &zero, out, n);
      };
      const double flops = 2.0 * n * double(n) * n;
      cublasSetMathMode(handle, CUBLAS_DEFAULT_MATH);
      c.gemm_fp32_gflops = flops / (time_ms(sgemm, quick ? 3 : 10) * 1e-3) / 1e9;
      int device = 0, major = 0;
      cudaGetDevice(&device);
      cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device);
      if (major >= 8) {
        cublasSetMathMode(handle, CUBLAS_TF32_TENSOR_OP_MATH);
        c.gemm_tf32_gflops = flops / (time_ms(sgemm, quick ? 3 : 10) * 1e-3) / 1e9;
      }
      c.gemm_method =
          "cublasSgemm 4096^3, CUBLAS_DEFAULT_MATH (fp32) and "
          "CUBLAS_TF32_TENSOR_OP_MATH (tf32)";
      cublasDestroy(handle);
    }
  }
  check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
  check(cudaGetLastError(), "ceilings");
  cudaFree(a);
  cudaFree(b);
  cudaFree(out);
  if (start) cudaEventDestroy(start);
  if (stop) cudaEventDestroy(stop);
  if (stream) cudaStreamDestroy(stream);
  if (!error.empty()) return internal_error("measuring the GPU's ceilings: " + error);
  return c;
}
#endif

}  // namespace

Stats summarize(std::vector<double> ms) {
  Stats s;
  if (ms.empty()) return s;
  std::sort(ms.begin(), ms.end());
  const size_t n = ms.size();
  s.reps = static_cast<int>(n);
  s.median_ms = n % 2 ? ms[n / 2] : 0.5 * (ms[n / 2 - 1] + ms[n / 2]);
  s.min_ms = ms.front();
  // Nearest-rank 90th percentile.
  const auto rank = static_cast<size_t>(std::ceil(0.9 * static_cast<double>(n)));
  s.p90_ms = ms[std::max<size_t>(rank, 1) - 1];
  s.mean_ms = std::accumulate(ms.begin(), ms.end(), 0.0) / static_cast<double>(n);
  return s;
}

Expected<std::unique_ptr<Timer>> make_timer(Backend<float>& backend, const TimingOptions& options) {
  if (backend.device() == Device::kCuda) {
#if defined(WREN_HAVE_CUDA)
    auto timer = std::make_unique<CudaTimer>(backend, options);
    if (Status s = timer->init(); !s.ok()) return s.error();
    return std::unique_ptr<Timer>(std::move(timer));
#else
    return unavailable("a cuda backend in a build without CUDA");
#endif
  }
  return std::unique_ptr<Timer>(std::make_unique<HostTimer>(backend, options));
}

bool reset_peak_rss() {
  std::ofstream f("/proc/self/clear_refs");
  f << "5";
  f.flush();
  return static_cast<bool>(f);
}

double peak_rss_mib() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;  // kB
  return process_peak_rss_mib();
}

double process_peak_rss_mib() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;  // KiB on Linux
}

double device_used_mib() {
#if defined(WREN_HAVE_CUDA)
  size_t free_bytes = 0, total_bytes = 0;
  if (cudaMemGetInfo(&free_bytes, &total_bytes) != cudaSuccess) {
    cudaGetLastError();
    return -1;
  }
  return static_cast<double>(total_bytes - free_bytes) / static_cast<double>(kMiB);
#else
  return -1;
#endif
}

Expected<Ceilings> measure_ceilings(Device device, bool quick) {
  if (device == Device::kCuda) {
#if defined(WREN_HAVE_CUDA)
    return cuda_ceilings(quick);
#else
    return unavailable("a cuda device in a build without CUDA");
#endif
  }
  return host_ceilings(quick);
}

std::string host_cpu_name() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("model name", 0) == 0) {
      const size_t colon = line.find(':');
      if (colon != std::string::npos) {
        size_t begin = colon + 1;
        while (begin < line.size() && line[begin] == ' ') ++begin;
        return line.substr(begin);
      }
    }
  }
  return "unknown CPU";
}

int host_cores() {
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

// --- shared by the wren-bench commands --------------------------------------------------------
Device resolve_device(const std::string& flag) {
  if (flag == "cpu") return Device::kCpu;
  if (flag == "emu") return Device::kEmu;
  if (flag == "cuda") return Device::kCuda;
  return built_with_cuda() && cuda_device_count() > 0 ? Device::kCuda : Device::kCpu;
}

std::string device_display_name(Device device) {
  const std::string host = host_cpu_name() + " (" + std::to_string(host_cores()) + " cores)";
  if (device == Device::kCuda) return cuda_device_name();
  if (device == Device::kEmu) return "SIMT emulator on " + host;
  return host;
}

std::string device_label(Device device) {
  if (device == Device::kCuda) return "GPU";
  if (device == Device::kEmu)
    return "EMULATOR: Wren's CUDA kernels run on the host CPU by the SIMT emulator; these are "
           "emulator figures, not GPU figures";
  return "CPU: the cpu device's reference ops (OpenBLAS + OpenMP)";
}

std::string iso_date() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string fmt(double v, int precision) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", precision, v);
  return buf;
}

std::string pad(std::string s, size_t width, bool right) {
  if (s.size() >= width) return s;
  return right ? std::string(width - s.size(), ' ') + s : s + std::string(width - s.size(), ' ');
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char ch : s) {
    if (ch == '"') out += '"';
    out += ch;
  }
  return out + "\"";
}

bool write_output(const std::string& path, const std::string& text) {
  std::ofstream f(path);
  f << text;
  f.close();
  if (f) return true;
  std::fprintf(stderr, "wren-bench: cannot write %s\n", path.c_str());
  return false;
}

}  // namespace wren::bench
