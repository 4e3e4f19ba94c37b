// 2-D convolution (cross-correlation, as PyTorch's Conv2d), NCHW activations, OIHW weights.
//
//   x  [N, C, H, W]     input
//   w  [K, C, R, S]     weights (K output channels, R×S kernel)
//   b  [K]              bias, optional (nullptr: no bias)
//   y  [N, K, P, Q]     output, P = (H + 2·pad_h − dil_h·(R−1) − 1) / stride_h + 1, Q likewise
//
// The CPU reference lowers each image to a column matrix (im2col, [C·R·S, P·Q]) and multiplies
// with OpenBLAS; it is the specification the CUDA kernels are measured against.
#pragma once

#include <cstddef>

namespace wren {

struct Conv2dDims {
  int n = 0, c = 0, h = 0, w = 0;  // input
  int k = 0, r = 0, s = 0;         // output channels, kernel height, kernel width
  int stride_h = 1, stride_w = 1;
  int pad_h = 0, pad_w = 0;
  int dil_h = 1, dil_w = 1;

  int p() const { return (h + 2 * pad_h - dil_h * (r - 1) - 1) / stride_h + 1; }  // out height
  int q() const { return (w + 2 * pad_w - dil_w * (s - 1) - 1) / stride_w + 1; }  // out width
};

namespace cpu {

// Scratch elements of T needed by every conv2d_* call below (the im2col matrix of one image).
size_t conv2d_workspace_elems(const Conv2dDims& d);

// y = conv(x, w) + b. `ws` holds conv2d_workspace_elems(d) elements.
template <class T>
void conv2d_forward(const Conv2dDims& d, const T* x, const T* w, const T* b, T* y, T* ws);

// dx = ∂L/∂x given dy = ∂L/∂y. Overwrites dx.
template <class T>
void conv2d_backward_data(const Conv2dDims& d, const T* dy, const T* w, T* dx, T* ws);

// dw = ∂L/∂w, db = ∂L/∂b (db may be nullptr). Overwrites dw and db.
template <class T>
void conv2d_backward_weights(const Conv2dDims& d, const T* x, const T* dy, T* dw, T* db, T* ws);

}  // namespace cpu
}  // namespace wren
