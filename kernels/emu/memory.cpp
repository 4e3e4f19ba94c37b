// The emulator's device memory, streams and events. Device memory is host memory (256-byte
// aligned like cudaMalloc, so ASan sees overflows past an allocation); every operation runs
// synchronously in call order, so streams need no queue and events are host timestamps.
#include <chrono>
#include <cstdlib>
#include <new>

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

void* malloc(size_t bytes) {
  if (bytes == 0) return nullptr;
  return ::operator new(bytes, std::align_val_t(256), std::nothrow);
}
void free(void* p) {
  if (p) ::operator delete(p, std::align_val_t(256));
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
