// Softmax cross-entropy with mean reduction, PyTorch's F.cross_entropy semantics.
//
//   logits [N, C, S]   S = H·W for the per-pixel (segmentation) form, S = 1 for classification
//   labels [N, S]      int32 class indices in [0, C), or ignore_index (contributes nothing)
//   class_weights [C]  optional (nullptr: all 1)
//   loss               scalar
//
// For each non-ignored position i with label y_i and log-probabilities lp = log_softmax(logits_i):
//   l_i = −(1 − ε)·w[y_i]·lp[y_i] − (ε/C)·Σ_c w[c]·lp[c]          (ε = label_smoothing)
//   loss = Σ_i l_i / Σ_i w[y_i]
// (the denominator is the count of non-ignored positions when unweighted). If the denominator
// is 0 (every position ignored, or every remaining label has weight 0) the loss is 0 and so is
// the gradient (PyTorch gives NaN; we prefer a defined value).
// Softmax is computed with the max subtracted; sums accumulate in double.
//
// Labels must be validated by the caller (the executor does, naming the bad index).
#pragma once

#include <cstdint>

namespace wren {

struct SoftmaxCeDims {
  int n = 0, c = 0, s = 1;
};

struct SoftmaxCeOptions {
  double label_smoothing = 0.0;
  int32_t ignore_index = -100;
};

namespace cpu {

template <class T>
void softmax_cross_entropy_forward(const SoftmaxCeDims& d, const SoftmaxCeOptions& opt,
                                   const T* logits, const int32_t* labels,
                                   const T* class_weights, T* loss);

// dlogits = dloss · ∂loss/∂logits (dloss: the upstream gradient of the scalar, 1 for a loss).
// Overwrites dlogits [N, C, S].
template <class T>
void softmax_cross_entropy_backward(const SoftmaxCeDims& d, const SoftmaxCeOptions& opt,
                                    const T* logits, const int32_t* labels,
                                    const T* class_weights, T dloss, T* dlogits);

}  // namespace cpu
}  // namespace wren
