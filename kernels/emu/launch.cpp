// The SIMT emulator's launcher: a persistent pool of worker OS threads (the launching thread
// is one of them) runs a grid's blocks, taken from an atomic counter (block.cpp runs each one).
// Launches run one at a time, synchronously, in call order. Also the settings (schedule,
// workers), the first recorded error, and a watchdog for kernels that never finish.
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "emu/emu.h"

namespace wren::emu {
namespace {

// --- Settings and the recorded error -----------------------------------------------------------
std::atomic<Schedule> g_schedule{Schedule::kForward};
std::atomic<uint64_t> g_seed{0};
std::mutex g_error_mutex;
std::string g_error;
std::atomic<uint64_t> g_progress{0};  // blocks finished over all launches (the watchdog's clock)

}  // namespace

void detail::record_error(const std::string& message) {
  std::lock_guard lock(g_error_mutex);
  if (g_error.empty()) g_error = message;
}

void detail::block_finished() {
  g_progress.fetch_add(1, std::memory_order_relaxed);
}

namespace {

class Pool {
 public:
  explicit Pool(int workers) { resize(workers); }
  ~Pool() { stop(); }

  void resize(int workers) {
    stop();
    stopping_ = false;
    // New threads start from the current generation: the last job is done and gone.
    for (int i = 1; i < workers; ++i) threads_.emplace_back([this, g = generation_] { loop(g); });
  }

  // Runs the job on the pool and on the calling thread; returns when every block is done.
  void run(detail::GridRun& job) {
    {
      std::lock_guard lock(mutex_);
      job_ = &job;
      ++generation_;
      busy_ = static_cast<int>(threads_.size());
    }
    wake_.notify_all();
    detail::run_blocks(job);
    std::unique_lock lock(mutex_);
    idle_.wait(lock, [this] { return busy_ == 0; });
    job_ = nullptr;
  }

 private:
  void loop(uint64_t seen) {
    for (;;) {
      detail::GridRun* job;
      {
        std::unique_lock lock(mutex_);
        wake_.wait(lock, [&] { return stopping_ || generation_ != seen; });
        if (stopping_) return;
        seen = generation_;
        job = job_;
      }
      detail::run_blocks(*job);
      std::lock_guard lock(mutex_);
      if (--busy_ == 0) idle_.notify_one();
    }
  }
  void stop() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    for (auto& t : threads_) t.join();
    threads_.clear();
  }

  std::mutex mutex_;
  std::condition_variable wake_, idle_;
  std::vector<std::thread> threads_;
  detail::GridRun* job_ = nullptr;
  uint64_t generation_ = 0;
  int busy_ = 0;
  bool stopping_ = false;
};

int default_workers() {
#if defined(WREN_EMU_ASAN)
  return 1;
#else
  return std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
#endif
}

std::mutex g_launch_mutex;  // launches run one at a time, in call order

// --- Watchdog: a block that never finishes (a spin-wait on another block or on a thread that
// is not scheduled, an infinite loop) cannot be interrupted on a fiber, so rather than hang CI
// silently, report the kernel and abort once no block has finished for WREN_EMU_WATCHDOG_S
// seconds (default 120; 0 disables).
std::atomic<const char*> g_running_kernel{nullptr};

void start_watchdog() {
  static const bool started = [] {
    const char* env = std::getenv("WREN_EMU_WATCHDOG_S");
    const long limit = env ? std::strtol(env, nullptr, 10) : 120;
    if (limit <= 0) return false;
    std::thread([limit] {
      uint64_t last = g_progress.load();
      long still = 0;
      for (;;) {
        std::this_thread::sleep_for(std::chrono::seconds(1));
        const uint64_t now = g_progress.load();
        const char* kernel = g_running_kernel.load();
        still = (kernel && now == last) ? still + 1 : 0;
        last = now;
        if (still >= limit) {
          std::fprintf(stderr,
                       "emu: kernel '%s': no block finished for %ld s: a spin-wait on another "
                       "block or thread, or an infinite loop (WREN_EMU_WATCHDOG_S); aborting\n",
                       kernel, limit);
          std::abort();
        }
      }
    }).detach();
    return true;
  }();
  (void)started;
}

Pool& pool() {
  static Pool p(default_workers());
  return p;
}

}  // namespace

// --- Public API --------------------------------------------------------------------------------
void set_schedule(Schedule s, uint64_t seed) {
  g_schedule = s;
  g_seed = seed;
}
Schedule schedule() {
  return g_schedule.load();
}

std::string last_error() {
  std::lock_guard lock(g_error_mutex);
  return g_error;
}
std::string take_error() {
  std::lock_guard lock(g_error_mutex);
  return std::exchange(g_error, std::string());
}

void set_workers(int workers) {
  std::lock_guard lock(g_launch_mutex);
#if defined(WREN_EMU_ASAN)
  (void)workers;
#else
  pool().resize(std::max(1, workers));
#endif
}

void detail::launch(const detail::LaunchSpec& spec, void (*body)(void*), void* ctx) {
  const unsigned long long threads =
      static_cast<unsigned long long>(spec.block.x) * spec.block.y * spec.block.z;
  const unsigned long long blocks =
      static_cast<unsigned long long>(spec.grid.x) * spec.grid.y * spec.grid.z;
  std::string bad;
  if (threads == 0 || threads > 1024) bad = "block of " + std::to_string(threads) + " threads";
  if (spec.block.z > 64) bad = "block.z " + std::to_string(spec.block.z) + " > 64";
  if (blocks == 0 || spec.grid.y > 65535 || spec.grid.z > 65535) bad = "empty or oversized grid";
  if (spec.smem_bytes > 227 * 1024) bad = std::to_string(spec.smem_bytes) + " B dynamic smem";
  if (!bad.empty()) {
    detail::record_error(std::string("emu: kernel '") + spec.kernel + "': invalid launch: " + bad);
    return;
  }
  detail::GridRun job;
  job.spec = &spec;
  job.body = body;
  job.ctx = ctx;
  job.blocks = blocks;
  job.schedule = g_schedule.load();
  job.seed = g_seed.load();
  std::lock_guard lock(g_launch_mutex);
  start_watchdog();
  g_running_kernel = spec.kernel;
  pool().run(job);
  g_running_kernel = nullptr;
}

}  // namespace wren::emu
