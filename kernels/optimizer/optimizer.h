// The optimizer family: SGD (momentum, dampening, Nesterov), Adam and AdamW, with coupled or
// decoupled L2 and L1 regularization, per-group multipliers and global-norm clipping. The rules
// are docs/OPTIMIZERS.md, which also says where they leave a choice and which one Wren makes.
//
//   OptimizerConfig config{.kind = OptimizerKind::kAdamW, .weight_decay = 1e-2};
//   auto opt = Optimizer<float>::create(config, param_segments(graph), graph.param_count());
//   if (!opt) ... opt.error().message() names the bad option
//   Status s = opt->step(params, grads, lr);  // params, grads: [param_count], flat
//
// Parameters and gradients are the executor's flat buffers (include/wren/executor.h): one
// pass over [param_count] elements updates the whole model. Per-parameter multipliers reach
// the step through a segment table (ParamSegment), the same table the fused CUDA kernel reads,
// so both see the same groups.
//
// This is the CPU reference: arithmetic in T, except the global gradient norm and the Adam
// bias corrections, which are computed in double (a fixed-order sum, so the norm is
// reproducible bit for bit).
//
// Device launchers (the fused kernel, float; optimizer.cu):
//
// The fused optimizer step (the CUDA twin of kernels/optimizer/reference.cpp, float only): SGD
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
//   ParamSegment* segments      (device)  the segment table (one wren::ParamSegment each,
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
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/kernel_api.h"
#include "wren/error.h"

namespace wren {

enum class OptimizerKind { kSgd, kAdam, kAdamW };

// Coupled: the term is added to the gradient (g += wd·p), so it passes through momentum or
// Adam's adaptive scaling. Decoupled: it is applied to the parameter (p -= lr·wd·p), outside.
enum class DecayMode { kCoupled, kDecoupled };

const char* to_string(OptimizerKind kind);  // "sgd", "adam", "adamw"
const char* to_string(DecayMode mode);      // "coupled", "decoupled"

struct OptimizerConfig {
  OptimizerKind kind = OptimizerKind::kSgd;

  // SGD only (PyTorch convention); rejected for Adam/AdamW, where β1 plays momentum's role.
  double momentum = 0.0;   // μ in [0, 1)
  double dampening = 0.0;  // in [0, 1]
  bool nesterov = false;   // needs momentum > 0 and dampening 0

  // Adam/AdamW only (PyTorch's defaults).
  double beta1 = 0.9;    // in [0, 1)
  double beta2 = 0.999;  // in [0, 1)
  double eps = 1e-8;     // > 0, added to √v̂ after the bias correction

  // L2 / decoupled decay coefficient, in PyTorch's convention (decoupled decay is multiplied
  // by the scheduled lr). The caller chooses it: 0 is the default for SGD and Adam, and
  // kAdamWDefaultWeightDecay (1e-2, PyTorch's) is AdamW's conventional default.
  double weight_decay = 0.0;
  // Unset: decoupled for AdamW, coupled for SGD and Adam. SGD + decoupled is SGDW; Adam +
  // decoupled is AdamW; AdamW + coupled is rejected (it would be Adam under another name).
  std::optional<DecayMode> wd_mode{};

  double l1 = 0.0;                          // L1 coefficient; scaled by wd_mult like wd
  DecayMode l1_mode = DecayMode::kCoupled;  // sign(0) = 0 in both modes

  // Global gradient-norm clipping: g ← g·min(1, clip_norm/‖g‖₂) over all parameters; 0: off.
  double clip_norm = 0.0;

  // Non-finite check (the trainer's --on-nonfinite): every step computes ‖g‖₂ (one more pass
  // over the gradients, the one clipping makes) and a non-finite norm rejects the step: an
  // error of kind kNumericError, nothing updated, the step count unchanged. Finite steps are
  // bit for bit the unchecked ones. Set by the trainer, not by a CLI option of its own, and not
  // part of a run's saved optimizer config.
  bool check_finite = false;

  static constexpr double kAdamWDefaultWeightDecay = 1e-2;

  // wd_mode with the default resolved for this kind.
  DecayMode weight_decay_mode() const;
  // Every value finite, ranges as commented above; the message names the CLI option, e.g.
  // "--nesterov requires --momentum > 0 and --dampening 0".
  Status validate() const;
};

// A run of parameter elements [offset, offset + count) of the flat buffer sharing one pair of
// multipliers. A segment table lists its segments in order and covers [0, param_count)
// exactly, with no empty segment.
struct ParamSegment {
  int64_t offset = 0;
  int64_t count = 0;
  float lr_mult = 1.0f;  // effective lr = lr·lr_mult
  float wd_mult = 1.0f;  // effective wd = wd·wd_mult, effective l1 = l1·wd_mult
};

// Checks that `segments` covers [0, param_count) in order without gaps, overlaps or empty
// segments, and that every multiplier is finite and >= 0.
Status validate_segments(std::span<const ParamSegment> segments, int64_t param_count);

template <class T>
class Optimizer {
 public:
  // Validates the config and the segment table, and allocates the state the kind needs, once:
  // SGD with momentum "momentum" [param_count]; Adam and AdamW "m" and "v" [param_count]
  // (zero-initialised); plain SGD nothing.
  static Expected<Optimizer> create(const OptimizerConfig& config,
                                    std::vector<ParamSegment> segments, int64_t param_count);

  // One step at learning rate `lr` (the scheduler's lr_t, before lr_mult), in one pass over
  // the flat buffers, per element:
  //   g ← grad·clip_scale                          clip_scale = min(1, c/‖grad‖₂), or 1
  //   g ← g + wd·p,  g ← g + l1·sign(p)            coupled terms
  //   p ← p − lr·wd·p − lr·l1·sign(p)              decoupled terms (both from p before step)
  //   SGD or Adam update with g (docs/OPTIMIZERS.md)
  // with lr, wd and l1 scaled by the element's segment multipliers. `grads` is not modified.
  // Errors (nothing is updated, the step count is unchanged): sizes other than param_count, a
  // non-finite or negative lr (kInvalidArgument); with clipping or check_finite on, a
  // non-finite gradient norm (kNumericError naming the step: the step is skipped, and the
  // caller decides whether that ends the run).
  Status step(std::span<T> params, std::span<const T> grads, double lr);

  // Completed steps. The next step is t = step_count() + 1: it sets SGD's momentum buffer to g
  // when t = 1 and enters Adam's bias corrections. Set it with the state when resuming.
  int64_t step_count() const { return step_count_; }
  void set_step_count(int64_t steps) { step_count_ = steps; }  // step() rejects steps < 0

  // A state buffer by name ("momentum", "m", "v"), [param_count]; empty if this kind has none.
  std::span<T> state(std::string_view name);
  std::span<const T> state(std::string_view name) const;
  // The names of the buffers this optimizer holds, in a fixed order (for checkpoints).
  std::vector<std::string> state_names() const;

  const OptimizerConfig& config() const { return config_; }
  const std::vector<ParamSegment>& segments() const { return segments_; }
  int64_t param_count() const { return param_count_; }
  // ‖grad‖₂ (before clipping) of the last step when clipping or check_finite is on (non-finite
  // when that step was rejected for it); NaN when both are off (the norm would cost a second
  // pass over the gradients) or before the first step.
  double last_grad_norm() const { return last_grad_norm_; }

 private:
  Optimizer() = default;

  OptimizerConfig config_;
  DecayMode wd_mode_ = DecayMode::kCoupled;  // config_.weight_decay_mode(), resolved once
  std::vector<ParamSegment> segments_;
  int64_t param_count_ = 0;
  int64_t step_count_ = 0;
  double last_grad_norm_ = std::numeric_limits<double>::quiet_NaN();
  std::vector<T> momentum_, m_, v_;
};

extern template class Optimizer<float>;
extern template class Optimizer<double>;

}  // namespace wren

namespace wren {

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

// The optimizer's constants as the kernel reads them: wren::OptimizerConfig with its decay modes
// resolved to flags, trivially copyable (it travels in the kernel's arguments). Made only by
// fused_optim_config (below), the one mapping; fixed for a run.
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
  const ParamSegment* segments = nullptr;  // device, [segment_count]
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

// The device form of `config` (its decay modes resolved): the one mapping from the CPU
// reference's configuration to the kernel's.
inline FusedOptimConfig fused_optim_config(const OptimizerConfig& config) {
  FusedOptimConfig f;
  f.kind = config.kind == OptimizerKind::kSgd    ? FusedOptimKind::kSgd
           : config.kind == OptimizerKind::kAdam ? FusedOptimKind::kAdam
                                                 : FusedOptimKind::kAdamW;
  f.momentum = config.momentum;
  f.dampening = config.dampening;
  f.nesterov = config.nesterov;
  f.beta1 = config.beta1;
  f.beta2 = config.beta2;
  f.eps = config.eps;
  f.weight_decay = config.weight_decay;
  f.wd_decoupled = config.weight_decay_mode() == DecayMode::kDecoupled;
  f.l1 = config.l1;
  f.l1_decoupled = config.l1_mode == DecayMode::kDecoupled;
  f.clip_norm = config.clip_norm;
  f.check_finite = config.check_finite;
  return f;
}

}  // namespace wren

#define WREN_DECLARE_OPTIMIZER_KERNELS(ns)                                                        \
  namespace wren::ns {                                                                        \
  /* One optimizer step (see above): norm + clip scale when clipping, prologue, update. */    \
  void fused_optimizer_step(const FusedOptimizerArgs& args, StreamHandle stream);             \
  /* *norm = ‖grads‖₂ in double, deterministic (two passes, fixed order); `workspace`: at */  \
  /* least sizeof(double)·kFusedNormMaxBlocks bytes of device memory, 8-byte aligned. */      \
  void global_grad_norm(const float* grads, int64_t count, void* workspace, double* norm,      \
                        StreamHandle stream);                                                 \
  }

WREN_DECLARE_OPTIMIZER_KERNELS(cuda_kernels)
WREN_DECLARE_OPTIMIZER_KERNELS(emu_kernels)
