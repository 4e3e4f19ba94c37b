// Host-side helpers of the flat (one thread per 4-element chunk, grid-stride) launchers of the
// elementwise and dropout families.
#pragma once

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>

namespace wren {

// Blocks of `threads` for a grid-stride loop over the 4-element chunks of `count` elements,
// capped so that each thread handles several chunks (at least 1 block).
inline int flat_blocks(int64_t count, int threads, int64_t max_blocks = 4096) {
  const int64_t chunks = (count + 3) / 4;
  return static_cast<int>(std::clamp<int64_t>((chunks + threads - 1) / threads, 1, max_blocks));
}

inline bool is_aligned16(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}
inline bool is_aligned4(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % 4 == 0;
}

[[noreturn]] inline void throw_invalid_argument(const char* fn, const std::string& what) {
  throw std::invalid_argument(std::string(fn) + ": " + what);
}

// A count >= 0 and, when there is work, no null array (checked before anything is enqueued).
inline void check_arrays(const char* fn, int64_t count, std::initializer_list<const void*> arrays) {
  if (count < 0) throw_invalid_argument(fn, "count < 0 (" + std::to_string(count) + ")");
  if (count == 0) return;
  for (const void* a : arrays) {
    if (a == nullptr) throw_invalid_argument(fn, "null array with count " + std::to_string(count));
  }
}

}  // namespace wren
