// The non-finite policy (--on-nonfinite, TrainConfig::on_nonfinite): finding where a NaN or an
// infinity first appeared, ending the run at that step (stop) or skipping the step
// (skip-step), and the test hook that injects one (TrainConfig::inject_nonfinite).
#include <algorithm>
#include <cmath>

#include "train/trainer.h"

namespace wren::train_internal {
namespace {

bool any_non_finite(const std::vector<float>& v) {
  return std::any_of(v.begin(), v.end(), [](float x) { return !std::isfinite(x); });
}

}  // namespace

// Reads every op output and then the parameters: the first op (forward order) whose output
// holds a NaN or an infinity is where a divergence started.
std::string first_non_finite_op(Executor<float>& ex) {
  const Graph& g = ex.graph();
  for (const Node& n : g.nodes()) {
    if (n.kind == OpKind::kInput || n.kind == OpKind::kLabels || n.output < 0) continue;
    const std::vector<float> v = ex.download(ex.value(Value{n.output}));
    for (float x : v) {
      if (!std::isfinite(x)) return "'" + n.name + "' (" + to_string(n.kind) + ")";
    }
  }
  const std::vector<float> p = ex.download(ex.params());
  for (const ParamInfo& info : g.params()) {
    for (int64_t i = 0; i < info.shape.numel(); ++i) {
      if (!std::isfinite(p[static_cast<size_t>(info.offset + i)])) {
        return "parameter '" + info.name + "'";
      }
    }
  }
  return "the loss op";
}

// The first op in backward order (the loss op first) whose parameter gradients or input
// gradients hold a NaN or an infinity, or else the first parameter (in offset order) whose
// gradient does (e.g. one written after the backward pass). Reads the gradients of the last
// backward pass, which the arena still holds.
std::string first_non_finite_gradient(Executor<float>& ex) {
  const Graph& g = ex.graph();
  const std::vector<float> grads = ex.download(ex.grads());
  auto param_bad = [&](int index) {
    const ParamInfo& info = g.params()[static_cast<size_t>(index)];
    for (int64_t i = 0; i < info.shape.numel(); ++i)
      if (!std::isfinite(grads[static_cast<size_t>(info.offset + i)])) return true;
    return false;
  };
  for (size_t k = g.nodes().size(); k-- > 0;) {
    const Node& n = g.nodes()[k];
    if (n.kind == OpKind::kInput || n.kind == OpKind::kLabels) continue;
    const std::string op = "'" + n.name + "' (" + to_string(n.kind) + ")";
    for (const int p : {n.weight, n.bias}) {
      if (p >= 0 && param_bad(p))
        return op + ", the gradient of parameter '" + g.params()[static_cast<size_t>(p)].name + "'";
    }
    for (const int in : n.inputs) {
      const TensorView<float> dx = ex.value_grad(Value{in});
      if (dx.data == nullptr || !any_non_finite(ex.download(dx))) continue;
      const int producer = g.values()[static_cast<size_t>(in)].producer;
      const std::string from = producer >= 0 ? g.nodes()[static_cast<size_t>(producer)].name
                                             : "value " + std::to_string(in);
      return op + ", the gradient of its input (the output of '" + from + "')";
    }
  }
  for (size_t p = 0; p < g.params().size(); ++p) {
    if (param_bad(static_cast<int>(p)))
      return "the gradient of parameter '" + g.params()[p].name + "'";
  }
  return "no gradient the trainer can read (a non-finite value inside the optimizer's input)";
}

// skip-step leaves the batch-norm running statistics as they were too: a copy of the buffers
// is taken on the device before each forward pass and put back when the step is skipped.
// The test hook with a parameter name adds a device scalar to that parameter's first gradient
// element: `value` at the injected step and 0 otherwise, so that a recorded step, which
// replays the same add every time, poisons only that step.
Status Trainer::set_up_nonfinite() {
  buffer_count_ = graph().buffer_count();
  if (config_.on_nonfinite == NonFinitePolicy::kSkipStep && buffer_count_ > 0) {
    buffer_backup_.emplace(executor().backend(), static_cast<size_t>(buffer_count_));
    if (!buffer_backup_->get())
      return unavailable("--on-nonfinite skip-step: no memory for a copy of the model's buffers");
  }
  const TrainConfig::NonFiniteInjection& inject = config_.inject_nonfinite;
  if (inject.step >= 0 && !inject.param.empty()) {
    auto target = executor().grad(inject.param);
    if (!target) return invalid_argument("inject_nonfinite: " + target.error().message());
    poison_target_ = target->data;
    poison_.emplace(executor().backend(), 1);
    if (!poison_->get()) return unavailable("inject_nonfinite: no device memory");
    const float zero = 0.0f;
    executor().backend().upload(poison_->get(), &zero, sizeof zero);
  }
  return {};
}

// A step whose loss or gradient norm is not finite; nothing of it was applied. stop: the run
// ends with an error naming the step and the first non-finite value. skip-step: the buffers
// are put back, a skipped_step record and a note are written, and the global step advances.
Status Trainer::on_nonfinite(int64_t epoch, int64_t b, const StepOutcome& outcome) {
  Executor<float>& ex = executor();
  const bool loss_finite = outcome.loss_finite;
  const std::string where = !loss_finite ? first_non_finite_op(ex) : first_non_finite_gradient(ex);
  const std::string at = "step " + std::to_string(state_.step) + " (epoch " +
                         std::to_string(epoch) + ", batch " + std::to_string(b) + ")";
  if (config_.on_nonfinite == NonFinitePolicy::kStop) {
    progress_->finish();
    if (!loss_finite)
      return Error(ErrorCode::kNumericError,
                   "the loss is " + std::string(std::isnan(outcome.loss) ? "NaN" : "infinite") +
                       " at " + at + "; first non-finite values in the output of " + where +
                       ". The last good checkpoint is " + result_.out_dir +
                       "/last.safetensors; try a lower --lr or --clip-norm");
    const std::string hint = ". The step was not applied; the last good checkpoint is " +
                             result_.out_dir +
                             "/last.safetensors; try a lower --lr or --clip-norm, or "
                             "--on-nonfinite skip-step";
    return Error(ErrorCode::kNumericError,
                 "the gradients are not finite at " + at + ", with a finite loss of " +
                     std::to_string(outcome.loss) +
                     "; first non-finite gradient in backward order: " + where + hint);
  }
  // skip-step: nothing was applied; the global step and the schedule go on.
  if (buffer_backup_) ex.backend().copy(buffer_count_, buffer_backup_->get(), ex.buffers().data);
  const char* reason = !loss_finite ? "non-finite loss" : "non-finite gradient";
  WREN_RETURN_IF_ERROR(metrics_.write(Json{{"kind", "skipped_step"},
                                           {"step", state_.step},
                                           {"epoch", epoch},
                                           {"reason", reason},
                                           {"where", where}}));
  progress_->pause();
  std::fprintf(log_, "note: skipped %s: %s in %s; parameters and optimizer state unchanged\n",
               at.c_str(), reason, where.c_str());
  progress_->resume();
  ++result_.skipped_steps;
  ++state_.step;
  state_.epoch_batch = b + 1;
  return {};
}

}  // namespace wren::train_internal
