// `wren check`: the user-facing CPU-vs-device check. One training step of a model — forward,
// backward and one optimizer step — runs on a kernel device (cuda or emu) and on the CPU
// reference from the same initial weights and the same random batch; every tensor of the step
// is compared: each op's output (activations), each buffer after the forward pass (batch-norm
// running statistics), each activation gradient, each parameter
// gradient, each parameter after the step and each optimizer state buffer after the step.
// The optimizer step is compared from identical inputs: the host optimizer is applied to the
// device's gradients (see run_check for why).
//
// A tensor passes when every element satisfies |device − cpu| ≤ atol + rtol·|cpu| with
// atol = atol_scale · max|cpu| over the tensor (a scale-aware floor: a conv output that
// cancels to near zero is compared at the precision of its larger neighbours). The defaults
// per math mode are in docs/CLI.md ("wren check") with their justification.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "wren/backend.h"
#include "wren/error.h"
#include "wren/models.h"
#include "wren/optimizer.h"

namespace wren {

struct CheckOptions {
  std::string model = "ref-cnn";  // zoo name or model file
  ModelInput input{};             // per-sample shape and classes of the random batch
  Device device = Device::kEmu;
  MathMode math = MathMode::kFp32;
  int batch = 8;
  uint64_t seed = 0;
  // The step: AdamW with decay and L1 on, so that every term of the fused kernel is exercised.
  OptimizerConfig optimizer{.kind = OptimizerKind::kAdamW, .weight_decay = 5e-4, .l1 = 1e-5};
  double lr = 1e-3;
  // < 0: the default for the math mode (fp32: rtol 1e-4, atol_scale 1e-5; tf32: 1e-2, 1e-3).
  double rtol = -1.0, atol_scale = -1.0;
};

enum class CheckTensorKind { kActivation, kActivationGrad, kParamGrad, kParamAfterStep,
                             kOptimizerState, kLoss, kBuffer };
const char* to_string(CheckTensorKind kind);

struct CheckRow {
  CheckTensorKind kind = CheckTensorKind::kActivation;
  std::string name;   // op name, parameter name, or "m.conv1.weight"
  std::string op;     // op kind ("conv2d") or "" for parameters
  int64_t count = 0;  // elements compared
  double max_abs = 0.0;        // max |device − cpu|
  double max_rel = 0.0;        // max |device − cpu| / |cpu| over elements with cpu ≠ 0
  double ref_max = 0.0;        // max |cpu|
  double atol = 0.0, rtol = 0.0;
  int64_t failures = 0;        // elements outside the tolerance
  bool pass() const { return failures == 0; }
};

struct CheckReport {
  std::string device;  // Backend::describe() of the checked device
  std::vector<CheckRow> rows;
  bool pass() const;
};

Expected<CheckReport> run_check(const CheckOptions& options);

// The table `wren check` prints.
std::string format_check(const CheckReport& report);

}  // namespace wren
