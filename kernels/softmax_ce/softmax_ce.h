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
//
// Device launchers (the kernels compiled by nvcc for cuda and by g++ for emu):
//
// Softmax cross-entropy kernels (the CUDA twin of kernels/softmax_ce/reference.cpp, float only): the
// forward loss and the backward gradient fused into one pass over the logits. Semantics are
// exactly wren::cpu::softmax_cross_entropy_{forward,backward} (kernels/softmax_ce/softmax_ce.h):
// mean reduction over the non-ignored positions weighted by class_weights[label], label
// smoothing, the per-pixel form (S > 1), ignore_index, and a zero denominator giving a 0 loss
// and a 0 gradient.
//
//   logits [N, C, S], labels [N, S] (int32), class_weights [C] or nullptr, all device memory.
//   loss     device scalar, written when non-null
//   dlogits  [N, C, S], overwritten with dloss · ∂loss/∂logits when non-null
//   ws       softmax_ce_workspace_bytes(d) bytes of device memory, 8-byte aligned (may be
//            nullptr when that is 0)
//
// Deterministic: no atomics. The denominator Σ w[y_i] and the loss Σ l_i are summed in double
// in a fixed order (per-thread, then a fixed shuffle/shared-memory tree per block, then the
// per-block partials in a fixed tree), so results are bit-identical from run to run and
// independent of scheduling; they may differ from the CPU's sequential sums in the last bits
// of the double (at most one fp32 ulp after rounding).
//
// Labels must be in [0, C) or equal ignore_index (the executor validates them); a label
// outside that range is not read past: it makes the loss and the gradient NaN.
//
// Host-side argument errors (negative sizes, C < 1, label_smoothing outside [0, 1], missing
// arrays or workspace) throw std::invalid_argument before anything is enqueued.
#pragma once

#include <cstddef>
#include <cstdint>

#include "common/kernel_api.h"

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

#define WREN_DECLARE_SOFTMAX_CE_KERNELS(ns)                                                    \
  namespace wren::ns {                                                                         \
  size_t softmax_ce_workspace_bytes(SoftmaxCeDims d);                                          \
  void softmax_cross_entropy(SoftmaxCeDims d, SoftmaxCeOptions o, const float* logits,         \
                             const int32_t* labels, const float* class_weights, float dloss,   \
                             float* loss, float* dlogits, void* ws, StreamHandle stream);      \
  }

WREN_DECLARE_SOFTMAX_CE_KERNELS(cuda_kernels)
WREN_DECLARE_SOFTMAX_CE_KERNELS(emu_kernels)
