// The emulator's device memory, streams and events. Device memory is host memory (256-byte
// aligned like cudaMalloc, so ASan sees overflows past an allocation); every operation runs
// synchronously in call order, so streams need no queue and events are host timestamps.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <new>
#include <string>
#include <unordered_map>

#include "emu/emu.h"

namespace wren::emu {

struct StreamImpl {
  int unused = 0;
};
struct EventImpl {
  std::chrono::steady_clock::time_point when{};
};

Stream stream_create() {
  return new StreamImpl;
}
void stream_destroy(Stream stream) {
  delete stream;
}
std::string stream_synchronize(Stream /*stream*/) {
  return take_error();
}
std::string synchronize() {
  return take_error();
}

Event event_create() {
  return new EventImpl;
}
void event_destroy(Event event) {
  delete event;
}
void event_record(Event event, Stream /*stream*/) {
  event->when = std::chrono::steady_clock::now();
}
void event_synchronize(Event /*event*/) {}
float event_elapsed_ms(Event start, Event stop) {
  return std::chrono::duration<float, std::milli>(stop->when - start->when).count();
}

namespace {

// WREN_EMU_MEMORY_LIMIT: the emulated device's memory in bytes (a K, M or G suffix multiplies
// by 2^10, 2^20, 2^30); unset, the host's. Lets tests and users see how a model, batch or
// dataset that does not fit a GPU is reported, without one. Read at every allocation, so a
// test can set and clear it.
size_t memory_limit() {
  const char* text = std::getenv("WREN_EMU_MEMORY_LIMIT");
  if (text == nullptr || *text == '\0') return SIZE_MAX;
  char* end = nullptr;
  const unsigned long long n = std::strtoull(text, &end, 10);
  const std::string suffix(end);
  const int shift = suffix == "K" ? 10 : suffix == "M" ? 20 : suffix == "G" ? 30 : 0;
  return static_cast<size_t>(n) << shift;
}

std::mutex g_memory_mutex;
std::unordered_map<void*, size_t> g_allocations;  // what is allocated now, for the limit
size_t g_allocated = 0;

}  // namespace

void* malloc(size_t bytes) {
  if (bytes == 0) return nullptr;
  std::lock_guard<std::mutex> lock(g_memory_mutex);
  if (bytes > memory_limit() - std::min(g_allocated, memory_limit())) return nullptr;
  void* p = ::operator new(bytes, std::align_val_t(256), std::nothrow);
  if (p) {
    g_allocations[p] = bytes;
    g_allocated += bytes;
  }
  return p;
}
void free(void* p) {
  if (!p) return;
  {
    std::lock_guard<std::mutex> lock(g_memory_mutex);
    if (auto it = g_allocations.find(p); it != g_allocations.end()) {
      g_allocated -= it->second;
      g_allocations.erase(it);
    }
  }
  ::operator delete(p, std::align_val_t(256));
}
void memcpy(void* dst, const void* src, size_t bytes) {
  if (bytes) std::memcpy(dst, src, bytes);
}
void memset(void* dst, int value, size_t bytes) {
  if (bytes) std::memset(dst, value, bytes);
}
void memcpy_async(void* dst, const void* src, size_t bytes, Stream /*stream*/) {
  memcpy(dst, src, bytes);
}
void memset_async(void* dst, int value, size_t bytes, Stream /*stream*/) {
  memset(dst, value, bytes);
}

}  // namespace wren::emu
