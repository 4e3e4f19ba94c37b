// The fused optimizer step (the CUDA twin of host/optim/optimizer.cpp, float only): SGD
// (momentum, dampening, Nesterov), Adam and AdamW, coupled L2 / decoupled decay, coupled /
// decoupled L1, per-segment lr_mult / wd_mult and optional global gradient-norm clipping, with
// ONE launch over the flat parameter buffer for the update itself.
//
// API: everything that changes from step to step lives in device memory, so the whole step
// can be captured once in a CUDA graph and replayed:
//
//   FusedOptimScalars* scalars  (device)  lr: the scheduler's lr_t for the next step (written
//                                         by the host or by a schedule kernel before the
//                                         step); step_count: completed steps (0 at the start,
//                                         set it when resuming); the step increments it.
//                                         grad_norm / clip_scale / status are outputs;
//                                         status is also the non-finite flag the host reads
//                                         after the step (kFusedStatusBadNorm / BadLoss).
//   FusedSegment* segments      (device)  the segment table (wren::ParamSegment's layout,
//                                         validated on the host with validate_segments).
//   void* workspace             (device)  fused_optimizer_workspace_bytes(segment_count)
//                                         bytes, 16-byte aligned, owned by the caller.
//
//   fused_optimizer_step(args, stream) enqueues, in order:
//     1. with clipping (config.clip_norm > 0) or the non-finite check (config.check_finite):
//        grad_norm_partials (per-block sums of g² in double, fixed tree order) and
//        grad_norm_finish (one block summing the partials in order), which write
//        scalars->grad_norm = ‖g‖₂ and, with clipping, scalars->clip_scale = min(1, c/‖g‖₂)
//        (exactly as the CPU: c/‖g‖ when ‖g‖ > c, else 1). A NaN or an infinity anywhere in
//        the gradients makes the norm non-finite;
//     2. a 1-block prologue that forms the per-step scalars in double on the device, as the CPU
//        does on the host, and rounds them to float once: per segment lr·lr_mult, wd·wd_mult,
//        l1·wd_mult, (lr·lr_mult)·(wd·wd_mult), (lr·lr_mult)·(l1·wd_mult); the Adam bias
//        corrections 1 − β^t; the clip scale. It checks the step as the CPU does (lr finite and
//        >= 0, step_count >= 0, with clipping or check_finite a finite norm, with check_finite
//        and args.loss a finite *loss): on failure it writes a nonzero status, and the update
//        does nothing — parameters, momentum / m / v untouched — and the step count is
//        unchanged (the CPU returns an error and updates nothing). Otherwise status 0 and
//        step_count + 1. Every decision is on the device, so a step recorded in a CUDA graph
//        skips itself; the host learns of it by reading scalars->status after the step;
//     3. the update: one grid-stride launch over the flat buffers, per element the CPU loop's
//        operations in the CPU loop's order (clip → coupled terms → decoupled terms from the old
//        p → SGD / Adam), each fp32 operation rounded separately (the nvcc build uses the
//        __f*_rn intrinsics, so no FMA contraction), hence bit for bit the CPU result.
//   Only the launch configuration depends on the host arguments (sizes and pointer
//   alignment), and those do not change between steps.
//
// Segment lookup: the flat buffer is cut into 4-element chunks (element 4c..4c+3, relative to
// the start of the buffers); a thread walks its chunks in increasing order and keeps its
// current segment, moving forward by a binary search over the table when a chunk starts past
// that segment's end; inside a chunk each element advances the segment while it lies past its
// end, so a segment may start or end at any offset (a chunk can straddle segments). Chunks are
// loaded and stored as float4 when every buffer pointer is 16-byte aligned, as 4 scalars
// otherwise (and for the last partial chunk); the arithmetic is the same either way.
// Elements not covered by the table are left untouched (the table should cover [0, n)).
//
// Memory-bound: per element one read of p and g, one write of p, plus one read and write per
// state buffer (momentum; Adam m and v); the segment table and the per-step scalars stay in L1.
//
// Host-side argument errors (null pointers where the kind needs a buffer, a misaligned
// workspace, an invalid config) throw std::invalid_argument before anything is enqueued.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernel_api.h"

namespace wren {

// Same layout as wren::ParamSegment (include/wren/optimizer.h).
struct FusedSegment {
  int64_t offset = 0;
  int64_t count = 0;
  float lr_mult = 1.0f;
  float wd_mult = 1.0f;
};

// The per-step scalar block, in device memory.
struct FusedOptimScalars {
  double lr = 0.0;         // in: lr_t of the next step (before lr_mult)
  int64_t step_count = 0;  // in/out: completed steps; the next step is t = step_count + 1
  double grad_norm = 0.0;  // out (clipping only): ‖grad‖₂ before clipping, of the last step
  double clip_scale = 1.0; // out (clipping only): min(1, clip_norm/‖grad‖₂)
  int32_t status = 0;      // out: 0 applied; else a kFusedStatus* code (nothing updated)
  int32_t reserved = 0;
};
inline constexpr int32_t kFusedStatusBadLr = 1;        // lr not finite or < 0
inline constexpr int32_t kFusedStatusBadNorm = 2;      // clipping or check: non-finite ‖g‖₂
inline constexpr int32_t kFusedStatusBadStepCount = 3; // step_count < 0
inline constexpr int32_t kFusedStatusBadLoss = 4;      // check: non-finite *args.loss

enum class FusedOptimKind : int32_t { kSgd, kAdam, kAdamW };

// The optimizer's constants (wren::OptimizerConfig with wd_mode resolved); fixed for a run.
struct FusedOptimConfig {
  FusedOptimKind kind = FusedOptimKind::kSgd;
  double momentum = 0.0;
  double dampening = 0.0;
  bool nesterov = false;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
  bool wd_decoupled = false;  // false: g += wd·p; true: p -= lr·wd·p
  double l1 = 0.0;
  bool l1_decoupled = false;  // false: g += l1·sign(p); true: p -= lr·l1·sign(p)
  double clip_norm = 0.0;     // 0: no clipping
  // Non-finite check (wren::OptimizerConfig::check_finite): the norm every step; a
  // non-finite norm or loss skips the step (status kFusedStatusBadNorm / BadLoss).
  bool check_finite = false;
};

struct FusedOptimizerArgs {
  float* params = nullptr;       // [param_count]
  const float* grads = nullptr;  // [param_count], not modified
  float* momentum = nullptr;     // SGD with momentum > 0: [param_count], else unused
  float* m = nullptr;            // Adam / AdamW: [param_count] (zero at the start)
  float* v = nullptr;            // Adam / AdamW: [param_count] (zero at the start)
  int64_t param_count = 0;
  const FusedSegment* segments = nullptr;  // device, [segment_count]
  int32_t segment_count = 0;
  FusedOptimScalars* scalars = nullptr;  // device
  void* workspace = nullptr;             // device, fused_optimizer_workspace_bytes()
  // With config.check_finite: a device scalar (the training loss) that must be finite too;
  // nullptr: the gradients only. Read by the prologue when the step runs (graph replay).
  const float* loss = nullptr;
  FusedOptimConfig config{};
};

inline constexpr int kFusedNormMaxBlocks = 1024;  // partial sums of the norm's first pass

// Bytes of workspace: a 64-byte step header, 32 bytes per segment, the norm's partial sums.
constexpr size_t fused_optimizer_workspace_bytes(int32_t segment_count) {
  return 64 + 32 * static_cast<size_t>(segment_count < 0 ? 0 : segment_count) +
         sizeof(double) * kFusedNormMaxBlocks;
}

}  // namespace wren

#define WREN_DECLARE_OPTIM_KERNELS(ns)                                                        \
  namespace wren::ns {                                                                        \
  /* One optimizer step (see above): norm + clip scale when clipping, prologue, update. */    \
  void fused_optimizer_step(const FusedOptimizerArgs& args, StreamHandle stream);             \
  /* *norm = ‖grads‖₂ in double, deterministic (two passes, fixed order); `workspace`: at */  \
  /* least sizeof(double)·kFusedNormMaxBlocks bytes of device memory, 8-byte aligned. */      \
  void global_grad_norm(const float* grads, int64_t count, void* workspace, double* norm,      \
                        StreamHandle stream);                                                 \
  }

WREN_DECLARE_OPTIM_KERNELS(cuda_kernels)
WREN_DECLARE_OPTIM_KERNELS(emu_kernels)
