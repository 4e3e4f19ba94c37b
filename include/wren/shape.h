// Shape: the dimensions of a dense, contiguous, row-major tensor (NCHW for images).
// Rank is at most 4; every dimension is >= 0.
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <string>

namespace wren {

class Shape {
 public:
  static constexpr int kMaxRank = 4;

  Shape() = default;
  Shape(std::initializer_list<int64_t> dims);

  int rank() const { return rank_; }
  int64_t operator[](int i) const { return dims_[static_cast<size_t>(i)]; }
  int64_t& operator[](int i) { return dims_[static_cast<size_t>(i)]; }
  // Number of elements (1 for rank 0).
  int64_t numel() const;
  // Product of dims [from, rank).
  int64_t numel_from(int from) const;
  // This shape with `n` prepended as the new first dimension (the batch).
  Shape with_batch(int64_t n) const;
  // This shape without its first dimension.
  Shape without_batch() const;

  bool operator==(const Shape& other) const;
  bool operator!=(const Shape& other) const { return !(*this == other); }

  // "[2, 3, 28, 28]"
  std::string str() const;

 private:
  std::array<int64_t, kMaxRank> dims_{};
  int rank_ = 0;
};

}  // namespace wren
