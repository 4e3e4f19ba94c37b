// The optimizer step: SGD (momentum, dampening, Nesterov), Adam and AdamW, with coupled or
// decoupled L2 and L1 regularization, per-group multipliers and global-norm clipping. The
// rules are shared/reference/optimizers.md; docs/OPTIMIZERS.md says where the spec leaves a
// choice and which one Wren makes.
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
#pragma once

#include <cstdint>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "wren/error.h"
#include "wren/graph.h"

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

// The segment table of a graph's parameters (ParamInfo::lr_mult, wd_mult, offset), adjacent
// parameters with equal multipliers merged into one segment; parameters with no elements are
// left out. For ref-cnn: 8 segments, weights wd_mult 1 and biases wd_mult 0, alternating.
std::vector<ParamSegment> param_segments(const Graph& graph);

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
  //   SGD or Adam update with g (shared/reference/optimizers.md)
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
