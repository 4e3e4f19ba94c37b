// The SIMT emulator's block runner: a worker runs one block at a time, the block's CUDA threads
// as fibers on that worker; barriers, warp collectives and the checks live here.
//
// Fibers: one makecontext per fiber stack, then _setjmp/_longjmp for every switch (~25 ns;
// swapcontext costs a signal-mask syscall). A fiber whose CUDA thread finishes takes the next
// unstarted thread on the same stack without switching, so barrier-free kernels cost a call per
// thread. A thread that waits (barrier, warp collective) keeps its fiber until released.
//
// Checks: threads waiting at different __syncthreads, or exiting while others wait, are a
// divergent barrier; nothing runnable while threads still wait is a deadlock; warp collectives
// must be full-mask and agree on the operation. The first error ends the block and the launch.
//
// Over 700 lines on purpose: fibers, barriers, warp collectives and cp.async share the worker's
// per-thread state (this file's Worker), whose invariants are easier to keep in one file.
#include <signal.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <algorithm>
#include <csetjmp>
#include <cstdio>
#include <memory>
#include <new>
#include <random>
#include <stdexcept>
#include <vector>

#include "emu/emu.h"

#if !defined(WREN_EMU_ASAN)
#include <link.h>
extern "C" {
// Bounds of the wren_smem section, from the linker; null when no kernel has __shared__.
extern char __start_wren_smem[] __attribute__((weak));
extern char __stop_wren_smem[] __attribute__((weak));
}
#endif

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define WREN_EMU_FIBER_ASAN 1
#endif

namespace wren::emu {
namespace {

struct EmuError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

std::string where(const std::source_location& w) {
  std::string file = w.file_name();
  const auto slash = file.find_last_of('/');
  if (slash != std::string::npos) file = file.substr(slash + 1);
  return file + ":" + std::to_string(w.line());
}

std::string xyz(unsigned x, unsigned y, unsigned z) {
  return "(" + std::to_string(x) + "," + std::to_string(y) + "," + std::to_string(z) + ")";
}

// --- Fibers ------------------------------------------------------------------------------------
#if defined(WREN_EMU_FIBER_ASAN)
constexpr size_t kStackBytes = 256 * 1024;  // ASan frames are larger
#else
constexpr size_t kStackBytes = 64 * 1024;
#endif

struct Fiber {
  std::jmp_buf ctx;
  char* stack = nullptr;  // mmap'd; the lowest page is a guard page
  void* fake_stack = nullptr;
  Fiber() {
    void* p = mmap(nullptr, kStackBytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    stack = static_cast<char*>(p);
    mprotect(stack, 4096, PROT_NONE);
  }
  ~Fiber() {
#if defined(WREN_EMU_FIBER_ASAN)
    // Frames abandoned on this stack stay poisoned; clear them before the pages are reused.
    __asan_unpoison_memory_region(stack + 4096, kStackBytes - 4096);
#endif
    munmap(stack, kStackBytes);
  }
  Fiber(const Fiber&) = delete;
  Fiber& operator=(const Fiber&) = delete;
};

enum class State : uint8_t { kUnstarted, kRunning, kReady, kBarrier, kWarp, kDone };

// One cp.async in flight: the source is read when the copy is issued, the destination written
// only by the cp.async.wait that covers its group (ptx.cuh), so a read before the wait sees the
// shared-memory garbage fill instead of data that happened to arrive.
struct AsyncCopy {
  void* dst = nullptr;
  unsigned char data[16] = {};
  unsigned bytes = 0;
  int group = 0;  // commits issued by this thread before the copy
};

struct ThreadRec {
  Fiber* fiber = nullptr;
  State state = State::kUnstarted;
  int predicate = 0;
  std::source_location site;  // barrier or collective it waits at
  std::vector<AsyncCopy> async_copies;
  int async_commits = 0;
};

struct WarpBox {
  int arrived = 0;
  detail::WarpOp op{};
  size_t bytes = 0;
  int width = 32;
  int first_lane = 0;
  std::source_location site;
  const void* in[32];
  void* out[32];
  int arg[32];
};

const char* op_name(detail::WarpOp op) {
  switch (op) {
    case detail::WarpOp::kSync:
      return "__syncwarp";
    case detail::WarpOp::kShflIdx:
      return "__shfl_sync";
    case detail::WarpOp::kShflUp:
      return "__shfl_up_sync";
    case detail::WarpOp::kShflDown:
      return "__shfl_down_sync";
    case detail::WarpOp::kShflXor:
      return "__shfl_xor_sync";
    case detail::WarpOp::kBallot:
      return "__ballot_sync";
    case detail::WarpOp::kGather:
      return "warp_all_gather";
  }
  return "?";
}

// Per worker OS thread: its fibers and the state of the block it runs.
struct Worker {
  std::jmp_buf sched_ctx;
  void* sched_fake_stack = nullptr;
  const void* main_bottom = nullptr;  // this OS thread's own stack, for the ASan annotations
  size_t main_size = 0;

  std::vector<std::unique_ptr<Fiber>> fibers;
  std::vector<Fiber*> idle;
  Fiber* starting = nullptr;

  // The block being run.
  const detail::LaunchSpec* spec = nullptr;
  void (*body)(void*) = nullptr;
  void* ctx = nullptr;
  int n = 0;  // threads in the block
  int current = -1;
  std::vector<ThreadRec> threads;
  std::vector<int> order;  // start order of the threads (the schedule)
  int next_unstarted = 0;
  int done = 0;
  std::vector<int> ready;
  size_t ready_head = 0;
  std::vector<WarpBox> warps;
  int barrier_result = 0;
  bool failed = false;
  std::string error;
  std::mt19937_64 rng;
  Schedule schedule = Schedule::kForward;

  unsigned char* smem = nullptr;
  size_t smem_bytes = 0;

  ~Worker() { release_smem(); }
  void release_smem() {
    if (smem) ::operator delete(smem, std::align_val_t(16));
    smem = nullptr;
    smem_bytes = 0;
  }
};

thread_local Worker* tl_worker = nullptr;

// --- Static shared memory: the wren_smem TLS section (see __shared__ in emu.h) ---------------
// Release builds: every `__shared__` variable of every kernel lives in that section, which is
// part of the executable's static TLS block, so this thread's copy is at a fixed offset from
// the thread pointer (x86-64 TLS variant II, as glibc lays out the executable's block). The
// scheduler fills it with 0xff (NaN / -1) at each block start. If the layout cannot be found
// (kernels in a shared library, another ABI) the fill is skipped.
struct StaticSmem {
  std::ptrdiff_t offset = 0;  // from the thread pointer
  size_t bytes = 0;
};

#if !defined(WREN_EMU_ASAN) && defined(__x86_64__) && defined(__linux__)
#define WREN_EMU_STATIC_FILL 1
__attribute__((section("wren_smem"))) thread_local unsigned char g_smem_marker;

uintptr_t thread_pointer() {
  uintptr_t tp;
  asm("mov %%fs:0, %0" : "=r"(tp));
  return tp;
}

int find_tls_segment(dl_phdr_info* info, size_t, void* data) {
  if (info->dlpi_tls_modid != 1) return 0;  // the executable's own TLS block
  auto* out = static_cast<StaticSmem*>(data);
  const auto start = reinterpret_cast<uintptr_t>(__start_wren_smem);
  const auto stop = reinterpret_cast<uintptr_t>(__stop_wren_smem);
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    if (ph.p_type != PT_TLS) continue;
    const uintptr_t image = info->dlpi_addr + ph.p_vaddr;
    if (start < image || stop > image + ph.p_memsz) return 1;
    const uintptr_t align = ph.p_align ? ph.p_align : 1;
    const uintptr_t firstbyte = (0 - (ph.p_vaddr & (align - 1))) & (align - 1);
    const uintptr_t block = (ph.p_memsz - firstbyte + align - 1) / align * align + firstbyte;
    out->offset = -static_cast<std::ptrdiff_t>(block) + static_cast<std::ptrdiff_t>(start - image);
    out->bytes = stop - start;
    return 1;
  }
  return 1;
}

const StaticSmem& static_smem() {
  static const StaticSmem region = [] {
    StaticSmem r;
    if (__start_wren_smem == nullptr) return r;
    dl_iterate_phdr(find_tls_segment, &r);
    // Check the computed place with a variable known to be in the section.
    const uintptr_t lo = thread_pointer() + static_cast<uintptr_t>(r.offset);
    const auto marker = reinterpret_cast<uintptr_t>(&g_smem_marker);
    if (r.bytes == 0 || marker < lo || marker >= lo + r.bytes) r = StaticSmem{};
    return r;
  }();
  return region;
}

void fill_static_smem() {
  const StaticSmem& r = static_smem();
  if (r.bytes) {
    std::memset(reinterpret_cast<void*>(thread_pointer() + static_cast<uintptr_t>(r.offset)), 0xff,
                r.bytes);
  }
}
#else
void fill_static_smem() {}
#endif

// --- Crashes: a segfault in a kernel (bad pointer, fiber stack overflow) names the kernel,
// block and thread before the default action (core dump) runs. Not under ASan, which reports
// these itself. Each worker gets an alternate signal stack, since the fiber's may be exhausted.
#if !defined(WREN_EMU_FIBER_ASAN)
void crash_handler(int sig, siginfo_t* info, void*) {
  const Worker* w = tl_worker;
  if (w && w->spec && w->current >= 0) {
    const unsigned u = static_cast<unsigned>(w->current);
    const unsigned bx = w->spec->block.x, by = w->spec->block.y;
    char msg[512];
    const int len = std::snprintf(
        msg, sizeof msg,
        "emu: kernel '%s', block (%u,%u,%u), thread (%u,%u,%u): %s at address %p (a bad "
        "pointer, or locals over the %zu KiB fiber stack)\n",
        w->spec->kernel, blockIdx.x, blockIdx.y, blockIdx.z, u % bx, (u / bx) % by, u / (bx * by),
        sig == SIGSEGV ? "SIGSEGV" : "SIGBUS", info->si_addr, kStackBytes / 1024);
    if (len > 0) (void)!write(2, msg, static_cast<size_t>(std::min<int>(len, sizeof msg - 1)));
  }
  signal(sig, SIG_DFL);  // returning re-runs the access, which now takes the default action
}

void install_crash_handler() {
  static const bool installed = [] {
    struct sigaction sa {};
    sa.sa_sigaction = crash_handler;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, nullptr);
    sigaction(SIGBUS, &sa, nullptr);
    return true;
  }();
  (void)installed;
  struct AltStack {
    std::unique_ptr<char[]> mem = std::make_unique<char[]>(64 * 1024);
    AltStack() {
      stack_t ss{};
      ss.ss_sp = mem.get();
      ss.ss_size = 64 * 1024;
      sigaltstack(&ss, nullptr);
    }
    ~AltStack() {
      stack_t ss{};
      ss.ss_flags = SS_DISABLE;
      sigaltstack(&ss, nullptr);
    }
  };
  thread_local AltStack alt_stack;
  (void)alt_stack;
}
#else
void install_crash_handler() {}
#endif

Worker& worker() {
  thread_local Worker w;
  tl_worker = &w;
  install_crash_handler();
  return w;
}

void set_current(Worker& w, int t) {
  w.current = t;
  const unsigned bx = w.spec->block.x, by = w.spec->block.y;
  const unsigned u = static_cast<unsigned>(t);
  if (bx == static_cast<unsigned>(w.n)) {  // 1-D blocks: no divisions
    threadIdx = uint3{u, 0, 0};
  } else {
    threadIdx = uint3{u % bx, (u / bx) % by, u / (bx * by)};
  }
}

std::string thread_name(const Worker& w, int t) {
  const unsigned bx = w.spec->block.x, by = w.spec->block.y;
  const unsigned u = static_cast<unsigned>(t);
  return xyz(u % bx, (u / bx) % by, u / (bx * by));
}

std::string block_prefix(const Worker& w) {
  return std::string("kernel '") + w.spec->kernel + "', block " +
         xyz(blockIdx.x, blockIdx.y, blockIdx.z);
}

void fail_block(Worker& w, const std::string& message) {
  if (w.failed) return;
  w.failed = true;
  w.error = "emu: " + block_prefix(w) + ": " + message;
}

// Switch from the worker's own stack into fiber f, and back when it yields.
void resume(Worker& w, Fiber* f) {
  if (!_setjmp(w.sched_ctx)) {
#if defined(WREN_EMU_FIBER_ASAN)
    __sanitizer_start_switch_fiber(&w.sched_fake_stack, f->stack + 4096, kStackBytes - 4096);
#endif
    _longjmp(f->ctx, 1);
  }
#if defined(WREN_EMU_FIBER_ASAN)
  __sanitizer_finish_switch_fiber(w.sched_fake_stack, nullptr, nullptr);
#endif
}

// From inside fiber f back to the scheduler; returns when the scheduler resumes f.
void yield(Worker& w, Fiber* f) {
  if (!_setjmp(f->ctx)) {
#if defined(WREN_EMU_FIBER_ASAN)
    __sanitizer_start_switch_fiber(&f->fake_stack, w.main_bottom, w.main_size);
#endif
    _longjmp(w.sched_ctx, 1);
  }
#if defined(WREN_EMU_FIBER_ASAN)
  __sanitizer_finish_switch_fiber(f->fake_stack, nullptr, nullptr);
#endif
}

// A fiber's whole life: run unstarted CUDA threads one after another on this stack; park when
// none are left (or the block failed) until the scheduler hands it the next block.
[[noreturn]] void fiber_loop(Worker& w, Fiber* f) {
  for (;;) {
    while (!w.failed && w.next_unstarted < w.n) {
      const int t = w.order[static_cast<size_t>(w.next_unstarted++)];
      ThreadRec& rec = w.threads[static_cast<size_t>(t)];
      rec.fiber = f;
      rec.state = State::kRunning;
      set_current(w, t);
      try {
        w.body(w.ctx);
      } catch (const std::exception& e) {
        fail_block(w, std::string("thread ") + thread_name(w, t) + ": " + e.what());
      } catch (...) {
        fail_block(w, "thread " + thread_name(w, t) + ": unknown exception");
      }
      rec.state = State::kDone;
      rec.fiber = nullptr;
      ++w.done;
    }
    w.idle.push_back(f);
    yield(w, f);
  }
}

void fiber_entry() {
  Worker& w = *tl_worker;
  Fiber* f = w.starting;
#if defined(WREN_EMU_FIBER_ASAN)
  __sanitizer_finish_switch_fiber(nullptr, &w.main_bottom, &w.main_size);
#endif
  yield(w, f);  // hand-shake: creation returns; the first real resume continues here
  fiber_loop(w, f);
}

Fiber* new_fiber(Worker& w) {
  auto owned = std::make_unique<Fiber>();
  Fiber* f = owned.get();
  w.fibers.push_back(std::move(owned));
  ucontext_t uc;
  getcontext(&uc);
  uc.uc_stack.ss_sp = f->stack + 4096;
  uc.uc_stack.ss_size = kStackBytes - 4096;
  uc.uc_link = nullptr;
  makecontext(&uc, fiber_entry, 0);
  w.starting = f;
  if (!_setjmp(w.sched_ctx)) {
#if defined(WREN_EMU_FIBER_ASAN)
    __sanitizer_start_switch_fiber(&w.sched_fake_stack, f->stack + 4096, kStackBytes - 4096);
#endif
    setcontext(&uc);
  }
#if defined(WREN_EMU_FIBER_ASAN)
  __sanitizer_finish_switch_fiber(w.sched_fake_stack, nullptr, nullptr);
#endif
  return f;
}

void order_lanes(Worker& w, int* ids, int count) {
  if (w.schedule == Schedule::kReverse) std::reverse(ids, ids + count);
  if (w.schedule == Schedule::kRandom) std::shuffle(ids, ids + count, w.rng);
}

void push_ready(Worker& w, int t) {
  w.threads[static_cast<size_t>(t)].state = State::kReady;
  w.ready.push_back(t);
}

// Nothing can run: either every live thread waits at the same barrier (release it) or the
// block is stuck (divergent barrier or deadlock).
bool release_or_diagnose(Worker& w) {
  int at_barrier = -1, waiting_warp = -1, exited = -1, n_barrier = 0;
  for (int t = 0; t < w.n; ++t) {
    const ThreadRec& r = w.threads[static_cast<size_t>(t)];
    if (r.state == State::kBarrier) {
      ++n_barrier;
      if (at_barrier < 0) at_barrier = t;
      const ThreadRec& a = w.threads[static_cast<size_t>(at_barrier)];
      if (r.site.line() != a.site.line() ||
          std::string_view(r.site.file_name()) != a.site.file_name()) {
        fail_block(w, "divergent barrier: thread " + thread_name(w, at_barrier) +
                          " waits at __syncthreads " + where(a.site) + ", thread " +
                          thread_name(w, t) + " at " + where(r.site));
        return false;
      }
    } else if (r.state == State::kWarp && waiting_warp < 0) {
      waiting_warp = t;
    } else if (r.state == State::kDone && exited < 0) {
      exited = t;
    }
  }
  if (waiting_warp >= 0) {
    const ThreadRec& r = w.threads[static_cast<size_t>(waiting_warp)];
    const WarpBox& b = w.warps[static_cast<size_t>(waiting_warp / 32)];
    std::string others = at_barrier >= 0
                             ? "thread " + thread_name(w, at_barrier) + " waits at __syncthreads " +
                                   where(w.threads[static_cast<size_t>(at_barrier)].site)
                         : exited >= 0 ? "thread " + thread_name(w, exited) + " has exited"
                                       : std::string("other lanes never arrive");
    fail_block(w, "deadlock: thread " + thread_name(w, waiting_warp) + " waits in " +
                      op_name(b.op) + " at " + where(r.site) + " (" + std::to_string(b.arrived) +
                      " of the warp's lanes arrived); " + others);
    return false;
  }
  if (n_barrier > 0 && exited >= 0) {
    fail_block(w, "divergent barrier: thread " + thread_name(w, at_barrier) +
                      " waits at __syncthreads " +
                      where(w.threads[static_cast<size_t>(at_barrier)].site) + " but thread " +
                      thread_name(w, exited) + " has exited");
    return false;
  }
  // Release: every thread is at the same barrier.
  int count = 0;
  for (const ThreadRec& r : w.threads) count += r.predicate != 0;
  w.barrier_result = count;
  std::vector<int> ids(static_cast<size_t>(w.n));
  for (int t = 0; t < w.n; ++t) ids[static_cast<size_t>(t)] = t;
  order_lanes(w, ids.data(), w.n);
  w.ready.clear();
  w.ready_head = 0;
  for (int t : ids) push_ready(w, t);
  return true;
}

void run_block(Worker& w) {
  const int n = w.n;
  w.threads.assign(static_cast<size_t>(n), ThreadRec{});
  w.order.resize(static_cast<size_t>(n));
  for (int t = 0; t < n; ++t) w.order[static_cast<size_t>(t)] = t;
  order_lanes(w, w.order.data(), n);
  w.next_unstarted = 0;
  w.done = 0;
  w.ready.clear();
  w.ready_head = 0;
  w.warps.resize(static_cast<size_t>((n + 31) / 32));
  for (WarpBox& b : w.warps) b.arrived = 0;  // the rest is written before it is read
  w.failed = false;
  if (w.smem_bytes) std::memset(w.smem, 0xff, w.smem_bytes);  // NaN / -1 garbage
  fill_static_smem();

  while (!w.failed) {
    if (w.ready_head < w.ready.size()) {
      const int t = w.ready[w.ready_head++];
      ThreadRec& r = w.threads[static_cast<size_t>(t)];
      r.state = State::kRunning;
      set_current(w, t);
      resume(w, r.fiber);
      continue;
    }
    w.ready.clear();
    w.ready_head = 0;
    if (w.next_unstarted < n) {
      Fiber* f;
      if (!w.idle.empty()) {
        f = w.idle.back();
        w.idle.pop_back();
      } else {
        f = new_fiber(w);
      }
      resume(w, f);
      continue;
    }
    if (w.done == n) break;
    if (!release_or_diagnose(w)) break;
  }
  if (w.failed) {
    // Threads of the abandoned block still sit on their fibers: drop them all.
    w.idle.clear();
    w.fibers.clear();
  }
}

}  // namespace

namespace detail {

// Takes blocks of the launch until none are left or one has failed.
void run_blocks(GridRun& job) {
  Worker& w = worker();
  const detail::LaunchSpec& s = *job.spec;
  w.spec = &s;
  w.body = job.body;
  w.ctx = job.ctx;
  w.n = static_cast<int>(s.block.x * s.block.y * s.block.z);
  w.schedule = job.schedule;
  if (w.smem_bytes != s.smem_bytes) {
    w.release_smem();
    if (s.smem_bytes) {
      w.smem = static_cast<unsigned char*>(::operator new(s.smem_bytes, std::align_val_t(16)));
      w.smem_bytes = s.smem_bytes;
    }
  }
  blockDim = s.block;
  gridDim = s.grid;
  const uint64_t seed = job.seed;
  for (;;) {
    if (job.failed.load(std::memory_order_relaxed)) break;
    const unsigned long long b = job.next.fetch_add(1);
    if (b >= job.blocks) break;
    blockIdx =
        uint3{static_cast<unsigned>(b % s.grid.x), static_cast<unsigned>(b / s.grid.x % s.grid.y),
              static_cast<unsigned>(b / s.grid.x / s.grid.y)};
    w.rng.seed(seed * 0x9e3779b97f4a7c15ull + b);
    run_block(w);
    block_finished();
    if (w.failed) {
      job.failed = true;
      record_error(w.error);
    }
  }
  w.spec = nullptr;
}

}  // namespace detail

namespace {

Worker& running_worker(const char* what) {
  Worker* w = tl_worker;
  if (!w || !w->spec || w->current < 0) {
    throw std::logic_error(std::string("emu: ") + what + " called outside a kernel");
  }
  return *w;
}

}  // namespace

void warp_all_gather(const void* mine, size_t bytes, void* all) {
  detail::warp_exchange(detail::WarpOp::kGather, 0xffffffffu, mine, all, bytes, 0, 32,
                        std::source_location::current());
}

namespace detail {

void fail(const std::string& message) {
  throw EmuError(message);
}

void* dynamic_smem_base() {
  return running_worker("dynamic_smem").smem;
}

void check_aligned(const void* p, size_t alignment, const char* type) {
  if (reinterpret_cast<uintptr_t>(p) % alignment != 0) {
    fail(std::string("misaligned ") + type + ": address " +
         std::to_string(reinterpret_cast<uintptr_t>(p)) + " is not " + std::to_string(alignment) +
         "-byte aligned");
  }
}

void async_copy(void* dst, const void* src, unsigned bytes, unsigned src_bytes) {
  Worker& w = running_worker("cp.async");
  ThreadRec& r = w.threads[static_cast<size_t>(w.current)];
  if (bytes != 4 && bytes != 8 && bytes != 16) {
    fail("cp.async of " + std::to_string(bytes) + " bytes (must be 4, 8 or 16)");
  }
  if (src_bytes > bytes) {
    fail("cp.async source size " + std::to_string(src_bytes) + " exceeds the copy size " +
         std::to_string(bytes));
  }
  check_aligned(dst, bytes, "cp.async destination");
  check_aligned(src, bytes, "cp.async source");
  AsyncCopy c;
  c.dst = dst;
  c.bytes = bytes;
  c.group = r.async_commits;
  if (src_bytes > 0) std::memcpy(c.data, src, src_bytes);  // the rest stays zero, as in PTX
  r.async_copies.push_back(c);
}

void async_commit() {
  Worker& w = running_worker("cp.async.commit_group");
  ++w.threads[static_cast<size_t>(w.current)].async_commits;
}

void async_wait(int pending_groups) {
  Worker& w = running_worker("cp.async.wait_group");
  ThreadRec& r = w.threads[static_cast<size_t>(w.current)];
  // Complete every copy of a committed group older than the `pending_groups` newest ones.
  const int complete_below = r.async_commits - pending_groups;
  auto kept = r.async_copies.begin();
  for (auto it = r.async_copies.begin(); it != r.async_copies.end(); ++it) {
    if (it->group < complete_below) {
      std::memcpy(it->dst, it->data, it->bytes);
    } else {
      *kept++ = *it;
    }
  }
  r.async_copies.erase(kept, r.async_copies.end());
}

int block_barrier(int kind, int predicate, const std::source_location& site) {
  Worker& w = running_worker("__syncthreads");
  const int t = w.current;
  ThreadRec& r = w.threads[static_cast<size_t>(t)];
  r.state = State::kBarrier;
  r.site = site;
  r.predicate = predicate;
  yield(w, r.fiber);
  const int count = w.barrier_result;
  switch (kind) {
    case 1:
      return count;
    case 2:
      return count == w.n;
    case 3:
      return count > 0;
    default:
      return 0;
  }
}

void warp_exchange(WarpOp op, unsigned mask, const void* in, void* out, size_t bytes, int arg,
                   int width, const std::source_location& site) {
  Worker& w = running_worker(op_name(op));
  const int t = w.current;
  const int warp = t / 32, lane = t % 32;
  const int lanes = std::clamp(w.n - warp * 32, 1, 32);
  const unsigned present = lanes == 32 ? 0xffffffffu : (1u << lanes) - 1;
  if (mask != 0xffffffffu && mask != present) {
    fail(std::string(op_name(op)) + " at " + where(site) + ": mask 0x" + [&] {
      char b[16];
      std::snprintf(b, sizeof b, "%08x", mask);
      return std::string(b);
    }() + " is not the full warp (the emulator supports full-mask collectives only)");
  }
  if (width < 1 || width > 32 || (width & (width - 1)) != 0) {
    fail(std::string(op_name(op)) + " at " + where(site) + ": width " + std::to_string(width) +
         " is not a power of two <= 32");
  }
  WarpBox& b = w.warps[static_cast<size_t>(warp)];
  if (b.arrived == 0) {
    b.op = op;
    b.bytes = bytes;
    b.width = width;
    b.site = site;
    b.first_lane = lane;
  } else if (b.op != op || b.bytes != bytes || b.width != width) {
    fail(std::string("warp collectives disagree: lane ") + std::to_string(lane) + " calls " +
         op_name(op) + " at " + where(site) + ", lane " + std::to_string(b.first_lane) +
         " called " + op_name(b.op) + " at " + where(b.site));
  }
  b.in[lane] = in;
  b.out[lane] = out;
  b.arg[lane] = arg;
  ThreadRec& r = w.threads[static_cast<size_t>(t)];
  if (++b.arrived < lanes) {
    r.state = State::kWarp;
    r.site = site;
    yield(w, r.fiber);
    return;  // the last lane wrote our result
  }
  // Last lane: compute every lane's result from the posted inputs, then write them out.
  b.arrived = 0;
  unsigned char results[32][8];
  if (op == WarpOp::kGather) {
    std::vector<unsigned char> all(bytes * 32, 0);
    for (int l = 0; l < lanes && l < 32; ++l) {
      std::memcpy(&all[bytes * static_cast<size_t>(l)], b.in[l], bytes);
    }
    for (int l = 0; l < lanes && l < 32; ++l) std::memcpy(b.out[l], all.data(), all.size());
  } else if (op == WarpOp::kBallot) {
    unsigned votes = 0;
    for (int l = 0; l < lanes && l < 32; ++l) {
      if (*static_cast<const int*>(b.in[l]) != 0) votes |= 1u << l;
    }
    for (int l = 0; l < lanes && l < 32; ++l) std::memcpy(b.out[l], &votes, sizeof votes);
  } else if (op != WarpOp::kSync) {
    // PTX shfl: segment [lo, hi] of `width` lanes; out-of-range sources give the own value.
    for (int l = 0; l < lanes && l < 32; ++l) {
      const int lo = l & ~(width - 1), hi = lo + width - 1, a = b.arg[l];
      int src = l;
      bool ok = true;
      switch (op) {
        case WarpOp::kShflIdx:
          src = lo + (a & (width - 1));
          break;
        case WarpOp::kShflUp:
          src = l - a;
          ok = src >= lo;
          break;
        case WarpOp::kShflDown:
          src = l + a;
          ok = src <= hi;
          break;
        case WarpOp::kShflXor:
          src = l ^ a;
          ok = src <= hi;
          break;
        default:
          break;
      }
      if (!ok || src < 0 || src >= lanes) src = l;
      std::memcpy(results[l], b.in[src], bytes);
    }
    for (int l = 0; l < lanes && l < 32; ++l) std::memcpy(b.out[l], results[l], bytes);
  }
  int ids[32];
  int count = 0;
  for (int l = 0; l < lanes && l < 32; ++l) {
    if (l != lane) ids[count++] = warp * 32 + l;
  }
  order_lanes(w, ids, count);
  for (int i = 0; i < count; ++i) push_ready(w, ids[i]);
}

}  // namespace detail
}  // namespace wren::emu
