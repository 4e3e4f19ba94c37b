// Random inputs the kernel tests share, from std::mt19937 (fixed seeds: reproducible).
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

namespace wren::testing {

// A normal value of mean `mean` and standard deviation `scale`, never exactly 0.
inline float nonzero_normal(std::mt19937& rng, float scale, float mean = 0.0f) {
  std::normal_distribution<float> normal(mean, scale);
  float v = 0.0f;
  while (v == 0.0f) v = normal(rng);
  return v;
}

// n standard normal values, none exactly 0 (a product with 0 would hide a wrong operand).
inline std::vector<float> nonzero_normals(size_t n, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) {
    do x = normal(rng);
    while (x == 0.0f);
  }
  return v;
}

// n normal values (σ = 2) with the specials ±0, ±Inf, NaN and ±1e-40 (denormals) spread over
// the first elements, for the element-wise kernels.
inline std::vector<float> values_with_specials(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  std::vector<float> v(n);
  for (float& x : v) x = normal(rng);
  const float specials[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 1e-40f, -1e-40f};
  for (size_t i = 0; i < n && i < 7; ++i) v[i * 7 % n] = specials[i];
  return v;
}

// Sizes of the flat (element-wise) kernels' tests: the empty case, a scalar tail shorter than a
// float4, and a grid-stride loop over many blocks; an offset of one float shifts every array off
// 16-byte alignment (the scalar path).
struct FlatCase {
  int64_t count;
  int64_t offset;
};
inline constexpr FlatCase kFlatCases[] = {{0, 0},    {1, 0},       {3, 1},
                                          {4, 0},    {1023, 1},    {1 << 20, 0},
                                          {(1 << 20) + 3, 1}};

}  // namespace wren::testing
