// Softmax cross-entropy kernels (the CUDA twin of host/ops/softmax_ce.cpp, float only): the
// forward loss and the backward gradient fused into one pass over the logits. Semantics are
// exactly wren::cpu::softmax_cross_entropy_{forward,backward} (include/wren/ops/softmax_ce.h):
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

#include "kernel_api.h"
#include "wren/ops/softmax_ce.h"

#define WREN_DECLARE_SOFTMAX_CE_KERNELS(ns)                                                    \
  namespace wren::ns {                                                                         \
  size_t softmax_ce_workspace_bytes(SoftmaxCeDims d);                                          \
  void softmax_cross_entropy(SoftmaxCeDims d, SoftmaxCeOptions o, const float* logits,         \
                             const int32_t* labels, const float* class_weights, float dloss,   \
                             float* loss, float* dlogits, void* ws, StreamHandle stream);      \
  }

WREN_DECLARE_SOFTMAX_CE_KERNELS(cuda_kernels)
WREN_DECLARE_SOFTMAX_CE_KERNELS(emu_kernels)
