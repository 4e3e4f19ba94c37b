// Fully connected layer, PyTorch's nn.Linear layout:
//   x [N, in]   w [out, in]   b [out] (optional)   y [N, out] = x · wᵀ + b
// An input of higher rank is read as [N, prod(rest)]: NCHW memory is already flat per sample.
#pragma once

namespace wren {

struct LinearDims {
  int n = 0, in = 0, out = 0;
};

namespace cpu {

template <class T>
void linear_forward(const LinearDims& d, const T* x, const T* w, const T* b, T* y);

// dx = dy · w. Overwrites dx.
template <class T>
void linear_backward_data(const LinearDims& d, const T* dy, const T* w, T* dx);

// dw = dyᵀ · x, db = Σ_n dy (db may be nullptr). Overwrites dw and db.
template <class T>
void linear_backward_weights(const LinearDims& d, const T* x, const T* dy, T* dw, T* db);

}  // namespace cpu
}  // namespace wren
