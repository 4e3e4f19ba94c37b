// CPU reference for softmax cross-entropy (see kernels/softmax_ce/softmax_ce.h).
//
// Layout: logits [N, C, S], so the C logits of position (n, s) are S apart; labels [N, S].
// Positions are visited in flat order i = n·S + s and classes in order, with every sum in
// double: the loss is reproducible and independent of T.
//
// The gradient of l_i with respect to the logits z of its position, p = softmax(z):
//   ∂l_i/∂z_j = p_j·((1 − ε)·w[y_i] + (ε/C)·Σ_c w[c]) − (1 − ε)·w[y_i]·[j = y_i] − (ε/C)·w[j]
// (the p_j term is the path through log Σ exp, the others the direct ones); the loss divides by
// D = Σ_i w[y_i], a constant of the labels, so dlogits = dloss·∂l_i/∂z / D.
//
// Degenerate denominator: if D == 0 (every position ignored, or, with class weights, every
// remaining label weighing 0) the loss and the gradient are 0 rather than PyTorch's NaN.
#include "softmax_ce/softmax_ce.h"

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace wren::cpu {
namespace {

struct Positions {
  int64_t n, c, s;
  int64_t count() const { return n * s; }
  // Offset of logit (class 0) of flat position i = n·S + s; class k is k·S further.
  int64_t first_logit(int64_t i) const { return (i / s) * c * s + i % s; }
};

Positions positions(const SoftmaxCeDims& d) { return {d.n, d.c, d.s}; }

template <class T>
double weight(const T* w, int64_t k) {
  return w ? static_cast<double>(w[k]) : 1.0;
}

// Σ_i w[y_i] over non-ignored positions: the mean's denominator.
template <class T>
double denominator(const Positions& p, const SoftmaxCeOptions& opt, const int32_t* labels,
                   const T* w) {
  double den = 0.0;
  for (int64_t i = 0; i < p.count(); ++i) {
    if (labels[i] != opt.ignore_index) den += weight(w, labels[i]);
  }
  return den;
}

// max_k z_k and log Σ_k exp(z_k − max) for the position whose class-0 logit is z[0].
template <class T>
void log_sum_exp(const T* z, int64_t classes, int64_t stride, double* max, double* log_sum) {
  double mx = static_cast<double>(z[0]);
  for (int64_t k = 1; k < classes; ++k) mx = std::max(mx, static_cast<double>(z[k * stride]));
  double sum = 0.0;
  for (int64_t k = 0; k < classes; ++k) sum += std::exp(static_cast<double>(z[k * stride]) - mx);
  *max = mx;
  *log_sum = std::log(sum);
}

}  // namespace

template <class T>
void softmax_cross_entropy_forward(const SoftmaxCeDims& d, const SoftmaxCeOptions& opt,
                                   const T* logits, const int32_t* labels,
                                   const T* class_weights, T* loss) {
  const Positions p = positions(d);
  const double eps = opt.label_smoothing;
  const double den = denominator(p, opt, labels, class_weights);
  if (den == 0.0) {
    *loss = T(0);
    return;
  }
  double total = 0.0;
  for (int64_t i = 0; i < p.count(); ++i) {
    const int32_t y = labels[i];
    if (y == opt.ignore_index) continue;
    const T* z = logits + p.first_logit(i);
    double mx = 0.0, lse = 0.0;
    log_sum_exp(z, p.c, p.s, &mx, &lse);
    // lp[k] = z_k − max − lse, so no exp of a large logit and no log of an underflowed p.
    const double lp_y = static_cast<double>(z[int64_t{y} * p.s]) - mx - lse;
    double l = -(1.0 - eps) * weight(class_weights, y) * lp_y;
    if (eps != 0.0) {
      double smooth = 0.0;
      for (int64_t k = 0; k < p.c; ++k) {
        smooth += weight(class_weights, k) * (static_cast<double>(z[k * p.s]) - mx - lse);
      }
      l -= eps / static_cast<double>(p.c) * smooth;
    }
    total += l;
  }
  *loss = static_cast<T>(total / den);
}

template <class T>
void softmax_cross_entropy_backward(const SoftmaxCeDims& d, const SoftmaxCeOptions& opt,
                                    const T* logits, const int32_t* labels,
                                    const T* class_weights, T dloss, T* dlogits) {
  const Positions p = positions(d);
  const double eps = opt.label_smoothing;
  const double den = denominator(p, opt, labels, class_weights);
  const double smooth_per_class = eps / static_cast<double>(p.c);
  double weight_sum = 0.0;  // Σ_c w[c]
  for (int64_t k = 0; k < p.c; ++k) weight_sum += weight(class_weights, k);
  const double scale = den == 0.0 ? 0.0 : static_cast<double>(dloss) / den;

  for (int64_t i = 0; i < p.count(); ++i) {
    const int32_t y = labels[i];
    const int64_t first = p.first_logit(i);
    T* g = dlogits + first;
    if (y == opt.ignore_index || den == 0.0) {
      for (int64_t k = 0; k < p.c; ++k) g[k * p.s] = T(0);
      continue;
    }
    const T* z = logits + first;
    double mx = 0.0, lse = 0.0;
    log_sum_exp(z, p.c, p.s, &mx, &lse);
    const double w_y = weight(class_weights, y);
    const double p_coeff = (1.0 - eps) * w_y + smooth_per_class * weight_sum;
    for (int64_t k = 0; k < p.c; ++k) {
      const double prob = std::exp(static_cast<double>(z[k * p.s]) - mx - lse);
      double grad = p_coeff * prob - smooth_per_class * weight(class_weights, k);
      if (k == y) grad -= (1.0 - eps) * w_y;
      g[k * p.s] = static_cast<T>(scale * grad);
    }
  }
}

#define WREN_INSTANTIATE_SOFTMAX_CE(T)                                                          \
  template void softmax_cross_entropy_forward<T>(const SoftmaxCeDims&, const SoftmaxCeOptions&, \
                                                 const T*, const int32_t*, const T*, T*);       \
  template void softmax_cross_entropy_backward<T>(const SoftmaxCeDims&,                         \
                                                  const SoftmaxCeOptions&, const T*,            \
                                                  const int32_t*, const T*, T, T*);

WREN_INSTANTIATE_SOFTMAX_CE(float)
WREN_INSTANTIATE_SOFTMAX_CE(double)

#undef WREN_INSTANTIATE_SOFTMAX_CE

}  // namespace wren::cpu
