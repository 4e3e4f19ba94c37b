// Counter-based random numbers (Philox4x32-10, Salmon et al., SC'11 "Parallel random numbers:
// as easy as 1, 2, 3"). A random value is a pure function of (key, counter), so any element of
// any stream can be drawn independently, in any order, on any device: the CPU reference, a CUDA
// kernel and the emulator produce the same bits for the same (seed, stream, step, index).
//
// Streams (docs/ARCHITECTURE.md, design decision 5: deterministic by construction): every purpose draws from its own key,
// derived from the run seed and a stream id, so changing e.g. the dropout rate does not change
// the initial weights.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define WREN_HD __host__ __device__
#else
#define WREN_HD
#endif

namespace wren {

enum class RngStream : uint32_t {
  kInit = 1,       // parameter initialisation
  kShuffle = 2,    // per-epoch order of the training set
  kAugment = 3,    // data augmentation
  kDropout = 4,    // dropout masks
  kSplit = 5,      // the validation split
  kTest = 100,     // test inputs
};

struct Philox4x32 {
  uint32_t v[4];
};

WREN_HD inline uint32_t mulhilo32(uint32_t a, uint32_t b, uint32_t* hi) {
  const uint64_t product = static_cast<uint64_t>(a) * static_cast<uint64_t>(b);
  *hi = static_cast<uint32_t>(product >> 32);
  return static_cast<uint32_t>(product);
}

// Philox4x32 with 10 rounds: counter (c0..c3) and key (k0, k1) -> four random 32-bit words.
WREN_HD inline Philox4x32 philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3,
                                         uint32_t k0, uint32_t k1) {
  constexpr uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;
  constexpr uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0, hi1;
    const uint32_t lo0 = mulhilo32(kMul0, c0, &hi0);
    const uint32_t lo1 = mulhilo32(kMul1, c2, &hi1);
    const uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
    c0 = n0;
    c1 = n1;
    c2 = n2;
    c3 = n3;
    k0 += kWeyl0;
    k1 += kWeyl1;
  }
  return Philox4x32{{c0, c1, c2, c3}};
}

// Converts 32 random bits to a float uniform in [0, 1) with 24 bits of resolution.
WREN_HD inline float uniform01(uint32_t bits) {
  return static_cast<float>(bits >> 8) * (1.0f / 16777216.0f);
}

// A (seed, stream) pair: the key of one stream.
struct RngKey {
  uint32_t k0 = 0, k1 = 0;
};

WREN_HD inline RngKey make_rng_key(uint64_t seed, RngStream stream) {
  // Mix the stream id into the high word so that seeds 0,1,2,... give unrelated keys per stream.
  return RngKey{static_cast<uint32_t>(seed),
                static_cast<uint32_t>(seed >> 32) ^ (static_cast<uint32_t>(stream) * 0x85EBCA6Bu)};
}

// The i-th uniform float of step `step` in the stream `key`: the 128-bit counter is
// (lo32(i/4), hi32(i/4), lo32(step), hi32(step)) and the value is lane i%4 of the output.
// Every consumer that draws one number per element uses this indexing.
WREN_HD inline float uniform_at(RngKey key, uint64_t step, uint64_t i) {
  const Philox4x32 r = philox4x32_10(static_cast<uint32_t>(i >> 2), static_cast<uint32_t>(i >> 34),
                                     static_cast<uint32_t>(step),
                                     static_cast<uint32_t>(step >> 32), key.k0, key.k1);
  return uniform01(r.v[i & 3]);
}

}  // namespace wren
