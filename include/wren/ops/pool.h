// Pooling over NCHW activations.
//
//   x [N, C, H, W] -> y [N, C, P, Q],  P = (H + 2·pad_h − kernel_h) / stride_h + 1, Q likewise
//
// Max pooling treats padding as −∞ (PyTorch); the window's first maximum in row-major order
// wins ties, and its flat index into the input plane (h·W + w) is saved in `argmax` [N, C, P, Q]
// so the backward pass is a gather: each input element sums dy over the windows that chose it.
// That makes the backward free of scatter races, so a GPU kernel can do the same
// deterministically. A NaN wins its window (the first one), so it propagates as in PyTorch.
// Sums are accumulated in double and rounded once. Average pooling divides by the whole window including padding when
// count_include_pad (PyTorch's default), else by the number of in-image elements.
#pragma once

#include <cstdint>

namespace wren {

struct Pool2dDims {
  int n = 0, c = 0, h = 0, w = 0;
  int kernel_h = 2, kernel_w = 2;
  int stride_h = 2, stride_w = 2;
  int pad_h = 0, pad_w = 0;
  bool count_include_pad = true;  // average pooling only

  int p() const { return (h + 2 * pad_h - kernel_h) / stride_h + 1; }
  int q() const { return (w + 2 * pad_w - kernel_w) / stride_w + 1; }
};

namespace cpu {

template <class T>
void max_pool2d_forward(const Pool2dDims& d, const T* x, T* y, int32_t* argmax);

// Overwrites dx [N, C, H, W].
template <class T>
void max_pool2d_backward(const Pool2dDims& d, const int32_t* argmax, const T* dy, T* dx);

template <class T>
void avg_pool2d_forward(const Pool2dDims& d, const T* x, T* y);

// Overwrites dx.
template <class T>
void avg_pool2d_backward(const Pool2dDims& d, const T* dy, T* dx);

// Global average pool: x [N, C, H, W] -> y [N, C] (mean over H·W).
template <class T>
void global_avg_pool_forward(int n, int c, int hw, const T* x, T* y);

// Overwrites dx.
template <class T>
void global_avg_pool_backward(int n, int c, int hw, const T* dy, T* dx);

}  // namespace cpu
}  // namespace wren
