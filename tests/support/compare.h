// Comparisons the kernel and backend tests share: bit-for-bit equality of arrays (with a NaN rule
// for GPUs), closeness in fp32 ulps, and the std::invalid_argument a launcher throws for bad host
// arguments.
#pragma once

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

namespace wren::testing {

// Whether two float arrays hold the same bits (NaN payloads and the sign of 0 included).
inline bool bits_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() &&
         (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

// How NaNs compare in expect_bits_equal: kBits, the same bits (the CPU, the emulator); kAny, any
// NaN matches a NaN. IEEE 754 leaves the payload of a NaN result open, and GPUs return the
// canonical NaN (0x7fffffff) from arithmetic on a NaN where x86 passes the operand's payload
// through (seen on an H200, 2026-11-26). Every non-NaN value, ±0 and ±inf included, must match
// to the bit either way.
enum class NanMatch { kBits, kAny };

template <class T>
bool same_bits(T a, T b, NanMatch nan = NanMatch::kBits) {
  if constexpr (std::is_floating_point_v<T>) {
    if (nan == NanMatch::kAny && std::isnan(a) && std::isnan(b)) return true;
    return std::memcmp(&a, &b, sizeof(T)) == 0;
  } else {
    return a == b;
  }
}

// Expects `actual` to equal `ref` element by element, bit for bit (NaNs per `nan`); reports the
// first five differences and their count, each under `what`.
template <class T>
void expect_bits_equal(const std::vector<T>& actual, const std::vector<T>& ref,
                       const std::string& what, NanMatch nan = NanMatch::kBits) {
  ASSERT_EQ(actual.size(), ref.size()) << what;
  size_t bad = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    if (!same_bits(actual[i], ref[i], nan) && ++bad <= 5) {
      ADD_FAILURE() << what << " [" << i << "]: " << +actual[i] << " vs " << +ref[i];
    }
  }
  EXPECT_EQ(bad, 0u) << what << ": " << bad << " of " << ref.size() << " elements differ";
}

// Bit for bit (ulps = 0: NaN payloads too), or within `ulps` fp32 ulps with any NaN matching a
// NaN (a GPU's libm or NaN).
inline void expect_within_ulps(const std::vector<float>& actual, const std::vector<float>& ref,
                               int ulps, const std::string& what) {
  ASSERT_EQ(actual.size(), ref.size()) << what;
  size_t bad = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const uint32_t a = std::bit_cast<uint32_t>(actual[i]), r = std::bit_cast<uint32_t>(ref[i]);
    bool ok = a == r;
    if (!ok && ulps > 0) {
      if (std::isnan(actual[i]) && std::isnan(ref[i])) {
        ok = true;
      } else if (!std::isnan(actual[i]) && !std::isnan(ref[i])) {
        // Distance in representable floats (sign-magnitude to a monotonic integer line).
        auto line = [](uint32_t b) {
          return (b & 0x80000000u) ? -static_cast<int64_t>(b & 0x7fffffffu)
                                   : static_cast<int64_t>(b);
        };
        ok = std::llabs(line(a) - line(r)) <= ulps;
      }
    }
    if (!ok && ++bad <= 5) {
      ADD_FAILURE() << what << "[" << i << "]: " << actual[i] << " vs " << ref[i];
    }
  }
  EXPECT_EQ(bad, 0u) << what;
}

// Expects `fn()` to throw std::invalid_argument whose message contains `needle` (a launcher's
// host-side argument check, made before anything is enqueued).
template <class Fn>
void expect_invalid_argument(Fn&& fn, const std::string& needle) {
  try {
    fn();
    ADD_FAILURE() << "no exception; expected one mentioning '" << needle << "'";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

}  // namespace wren::testing
