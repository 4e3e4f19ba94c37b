// CPU reference of the fused optimizer step (optimizer.h). The loop below is the
// specification the CUDA kernel is measured against: per element, clip → coupled terms →
// decoupled terms → SGD or Adam, with the segment's multipliers, in T. Per-step scalars (the
// effective lr, decay and L1 step of each segment, the Adam bias corrections) are formed in
// double and rounded once to T, so float and double runs differ only by the element-wise
// rounding.
#include "optimizer/optimizer.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <utility>

namespace wren {
namespace {

// Enough digits to tell a rejected value from a nearby valid one ("got 1" vs "got 0.99999").
std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

template <class T>
T sign_of(T x) {
  return static_cast<T>((x > T(0)) - (x < T(0)));  // sign(0) = 0; NaN gives 0 too
}

}  // namespace

const char* to_string(OptimizerKind kind) {
  switch (kind) {
    case OptimizerKind::kSgd:
      return "sgd";
    case OptimizerKind::kAdam:
      return "adam";
    case OptimizerKind::kAdamW:
      return "adamw";
  }
  return "?";
}

const char* to_string(DecayMode mode) {
  switch (mode) {
    case DecayMode::kCoupled:
      return "coupled";
    case DecayMode::kDecoupled:
      return "decoupled";
  }
  return "?";
}

DecayMode OptimizerConfig::weight_decay_mode() const {
  if (wd_mode) return *wd_mode;
  return kind == OptimizerKind::kAdamW ? DecayMode::kDecoupled : DecayMode::kCoupled;
}

Status OptimizerConfig::validate() const {
  const std::pair<const char*, double> values[] = {
      {"--momentum", momentum},
      {"--dampening", dampening},
      {"--beta1", beta1},
      {"--beta2", beta2},
      {"--eps", eps},
      {"--wd", weight_decay},
      {"--l1", l1},
      {"--clip-norm", clip_norm},
  };
  for (const auto& [option, value] : values)
    if (!std::isfinite(value))
      return invalid_argument(std::string(option) + " must be a finite number, got " + num(value));

  if (!(momentum >= 0.0 && momentum < 1.0))
    return invalid_argument("--momentum must be in [0, 1), got " + num(momentum));
  if (!(dampening >= 0.0 && dampening <= 1.0))
    return invalid_argument("--dampening must be in [0, 1], got " + num(dampening));
  if (nesterov && !(momentum > 0.0 && dampening == 0.0))
    return invalid_argument("--nesterov requires --momentum > 0 and --dampening 0 (got momentum " +
                            num(momentum) + ", dampening " + num(dampening) + ")");
  if (kind != OptimizerKind::kSgd && (momentum != 0.0 || dampening != 0.0 || nesterov))
    return invalid_argument(std::string("--momentum, --dampening and --nesterov apply to ") +
                            "--opt sgd only, not " + to_string(kind) +
                            " (Adam's momentum is --beta1)");
  if (!(beta1 >= 0.0 && beta1 < 1.0))
    return invalid_argument("--beta1 must be in [0, 1), got " + num(beta1));
  if (!(beta2 >= 0.0 && beta2 < 1.0))
    return invalid_argument("--beta2 must be in [0, 1), got " + num(beta2));
  if (!(eps > 0.0)) return invalid_argument("--eps must be > 0, got " + num(eps));
  if (!(weight_decay >= 0.0))
    return invalid_argument("--wd must be >= 0, got " + num(weight_decay));
  if (!(l1 >= 0.0)) return invalid_argument("--l1 must be >= 0, got " + num(l1));
  if (!(clip_norm >= 0.0))
    return invalid_argument("--clip-norm must be >= 0 (0: off), got " + num(clip_norm));
  if (kind == OptimizerKind::kAdamW && wd_mode == DecayMode::kCoupled)
    return invalid_argument(
        "--opt adamw decays decoupled by definition; --wd-mode coupled with Adam is "
        "--opt adam");
  return {};
}

Status validate_segments(std::span<const ParamSegment> segments, int64_t param_count) {
  if (param_count < 0)
    return invalid_argument("parameter count must be >= 0, got " + std::to_string(param_count));
  int64_t end = 0;  // where the previous segment ended
  for (size_t k = 0; k < segments.size(); ++k) {
    const ParamSegment& s = segments[k];
    const std::string label = "parameter segment " + std::to_string(k) + " [offset " +
                              std::to_string(s.offset) + ", count " + std::to_string(s.count) + "]";
    if (s.count <= 0) return invalid_argument(label + ": count must be > 0");
    if (s.offset != end)
      return invalid_argument(label + ": starts at " + std::to_string(s.offset) +
                              " but the previous segment ends at " + std::to_string(end) +
                              " (segments must be in order, without gaps or overlaps)");
    if (!(std::isfinite(s.lr_mult) && s.lr_mult >= 0.0f && std::isfinite(s.wd_mult) &&
          s.wd_mult >= 0.0f))
      return invalid_argument(label + ": lr_mult " + num(s.lr_mult) + " and wd_mult " +
                              num(s.wd_mult) + " must be finite and >= 0");
    if (s.count > param_count - end)
      return invalid_argument(label + ": ends past the parameter count " +
                              std::to_string(param_count));
    end += s.count;
  }
  if (end != param_count)
    return invalid_argument("parameter segments cover [0, " + std::to_string(end) +
                            ") but the model has " + std::to_string(param_count) + " parameters");
  return {};
}

template <class T>
Expected<Optimizer<T>> Optimizer<T>::create(const OptimizerConfig& config,
                                            std::vector<ParamSegment> segments,
                                            int64_t param_count) {
  WREN_RETURN_IF_ERROR(config.validate());
  WREN_RETURN_IF_ERROR(validate_segments(segments, param_count));
  Optimizer opt;
  opt.config_ = config;
  opt.wd_mode_ = config.weight_decay_mode();
  opt.segments_ = std::move(segments);
  opt.param_count_ = param_count;
  const size_t n = static_cast<size_t>(param_count);
  if (config.kind == OptimizerKind::kSgd) {
    if (config.momentum > 0.0) opt.momentum_.assign(n, T(0));
  } else {
    opt.m_.assign(n, T(0));
    opt.v_.assign(n, T(0));
  }
  return opt;
}

template <class T>
Status Optimizer<T>::step(std::span<T> params, std::span<const T> grads, double lr) {
  if (step_count_ < 0)
    return invalid_argument("optimizer: the step count is " + std::to_string(step_count_) +
                            ", it must be >= 0");
  const int64_t t = step_count_ + 1;  // this step, counted from 1
  const std::string where = "optimizer step " + std::to_string(t);
  if (static_cast<int64_t>(params.size()) != param_count_ ||
      static_cast<int64_t>(grads.size()) != param_count_)
    return invalid_argument(where + ": parameters [" + std::to_string(params.size()) +
                            "] and gradients [" + std::to_string(grads.size()) +
                            "] must both have the optimizer's " + std::to_string(param_count_) +
                            " elements");
  if (!(std::isfinite(lr) && lr >= 0.0))
    return invalid_argument(where + ": the learning rate must be finite and >= 0, got " + num(lr));

  // Global norm, in double and in index order: the same value on every run and device. A NaN
  // or an infinity anywhere in the gradients makes it non-finite (g² of a huge finite float
  // cannot overflow a double).
  const bool clipping = config_.clip_norm > 0.0;
  double clip_scale = 1.0;
  if (clipping || config_.check_finite) {
    double sum_sq = 0.0;
    for (const T g : grads) sum_sq += static_cast<double>(g) * static_cast<double>(g);
    const double norm = std::sqrt(sum_sq);
    last_grad_norm_ = norm;
    if (!std::isfinite(norm))
      return Error(ErrorCode::kNumericError,
                   where + ": the gradient norm is " + num(norm) +
                       " (a non-finite gradient); the step was not applied");
    if (clipping && norm > config_.clip_norm) clip_scale = config_.clip_norm / norm;
  }
  const T scale = static_cast<T>(clip_scale);

  const bool sgd = config_.kind == OptimizerKind::kSgd;
  const bool coupled_wd = wd_mode_ == DecayMode::kCoupled;
  const bool coupled_l1 = config_.l1_mode == DecayMode::kCoupled;
  const bool use_momentum = sgd && config_.momentum > 0.0;
  const bool first = step_count_ == 0;  // PyTorch: the momentum buffer starts as g
  const bool nesterov = config_.nesterov;
  const T mu = static_cast<T>(config_.momentum);
  const T one_minus_dampening = static_cast<T>(1.0 - config_.dampening);
  const T beta1 = static_cast<T>(config_.beta1);
  const T beta2 = static_cast<T>(config_.beta2);
  const T one_minus_beta1 = static_cast<T>(1.0 - config_.beta1);
  const T one_minus_beta2 = static_cast<T>(1.0 - config_.beta2);
  const T eps = static_cast<T>(config_.eps);
  const double t_d = static_cast<double>(t);
  const T bias_correction1 = static_cast<T>(1.0 - std::pow(config_.beta1, t_d));
  const T bias_correction2 = static_cast<T>(1.0 - std::pow(config_.beta2, t_d));

  T* const p_all = params.data();
  const T* const g_all = grads.data();
  for (const ParamSegment& seg : segments_) {
    const double seg_lr = lr * seg.lr_mult;
    const double seg_wd = config_.weight_decay * seg.wd_mult;
    const double seg_l1 = config_.l1 * seg.wd_mult;
    const T lr_e = static_cast<T>(seg_lr);
    const T wd_e = static_cast<T>(seg_wd);
    const T l1_e = static_cast<T>(seg_l1);
    const T decay_step = static_cast<T>(seg_lr * seg_wd);  // decoupled: p -= decay_step·p
    const T l1_step = static_cast<T>(seg_lr * seg_l1);     // decoupled: p -= l1_step·sign(p)
    const int64_t end = seg.offset + seg.count;
    for (int64_t i = seg.offset; i < end; ++i) {
      const T p = p_all[i];
      const T sign_p = sign_of(p);
      T g = g_all[i];
      if (clipping) g *= scale;
      if (coupled_wd) g += wd_e * p;
      if (coupled_l1) g += l1_e * sign_p;
      // Both decoupled terms read p before this step, like the coupled ones.
      T p_new = p;
      if (!coupled_wd) p_new -= decay_step * p;
      if (!coupled_l1) p_new -= l1_step * sign_p;

      if (sgd) {
        if (use_momentum) {
          T& b = momentum_[static_cast<size_t>(i)];
          b = first ? g : mu * b + one_minus_dampening * g;
          g = nesterov ? g + mu * b : b;
        }
        p_new -= lr_e * g;
      } else {
        T& m = m_[static_cast<size_t>(i)];
        T& v = v_[static_cast<size_t>(i)];
        m = beta1 * m + one_minus_beta1 * g;
        v = beta2 * v + one_minus_beta2 * g * g;
        const T m_hat = m / bias_correction1;
        const T v_hat = v / bias_correction2;
        p_new -= lr_e * m_hat / (std::sqrt(v_hat) + eps);  // ε after the bias correction
      }
      p_all[i] = p_new;
    }
  }
  step_count_ = t;
  return {};
}

template <class T>
std::span<T> Optimizer<T>::state(std::string_view name) {
  if (name == "momentum") return momentum_;
  if (name == "m") return m_;
  if (name == "v") return v_;
  return {};
}

template <class T>
std::span<const T> Optimizer<T>::state(std::string_view name) const {
  if (name == "momentum") return momentum_;
  if (name == "m") return m_;
  if (name == "v") return v_;
  return {};
}

template <class T>
std::vector<std::string> Optimizer<T>::state_names() const {
  if (config_.kind != OptimizerKind::kSgd) return {"m", "v"};
  if (config_.momentum > 0.0) return {"momentum"};
  return {};
}

template class Optimizer<float>;
template class Optimizer<double>;

}  // namespace wren
