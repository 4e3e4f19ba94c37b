// Element-wise ops over `count` contiguous elements: activations, the residual add, copies.
//
// Backward functions overwrite dx. Activation backward passes take the forward input x.
//   relu(x)        = max(x, 0);                       relu'(0) = 0
//   leaky_relu(x)  = x > 0 ? x : slope·x;             derivative at 0 is slope
//   gelu(x)        = x·Φ(x), Φ the standard normal CDF (PyTorch approximate='none'),
//                    evaluated in double through erfc (1 + erf cancels for very negative x)
// NaN inputs propagate (relu(NaN) = NaN, as in PyTorch).
#pragma once

#include <cstdint>

namespace wren::cpu {

template <class T>
void relu_forward(int64_t count, const T* x, T* y);
template <class T>
void relu_backward(int64_t count, const T* x, const T* dy, T* dx);

template <class T>
void leaky_relu_forward(int64_t count, T slope, const T* x, T* y);
template <class T>
void leaky_relu_backward(int64_t count, T slope, const T* x, const T* dy, T* dx);

template <class T>
void gelu_forward(int64_t count, const T* x, T* y);
template <class T>
void gelu_backward(int64_t count, const T* x, const T* dy, T* dx);

// y = a + b (the residual add). Its backward is da = db = dy: two copies.
template <class T>
void add_forward(int64_t count, const T* a, const T* b, T* y);

// y += x: gradient accumulation where a value feeds several ops.
template <class T>
void accumulate(int64_t count, const T* x, T* y);

// y = x (flatten is a copy of contiguous memory; its backward is a copy too).
template <class T>
void copy(int64_t count, const T* x, T* y);

}  // namespace wren::cpu
