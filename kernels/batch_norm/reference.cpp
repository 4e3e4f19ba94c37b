// CPU reference for BatchNorm2d (see kernels/batch_norm/batch_norm.h).
//
// Layout: x, y, dy, dx are [N, C, H, W]; a channel c is N strided runs of H·W contiguous values.
// Every reduction walks a channel in the same order (n outer, then h·w) and accumulates in
// double, so results are reproducible and independent of T. Element-wise outputs are computed
// in double as well and rounded once to T.
//
// Each element-wise loop reads x[i] / dy[i] before writing y[i] / dx[i] at the same index and
// reads no other element afterwards, so y may alias x and dx may alias dy.
#include "batch_norm/batch_norm.h"

#include <cmath>
#include <cstdint>

namespace wren::cpu {
namespace {

struct ChannelGeometry {
  int64_t n, c, hw;
  int64_t count() const { return n * hw; }  // m: values per channel
  // Offset of the first of the H·W values of (sample, channel).
  int64_t base(int64_t sample, int64_t channel) const { return (sample * c + channel) * hw; }
};

ChannelGeometry geometry(const BatchNormDims& d) {
  return {d.n, d.c, static_cast<int64_t>(d.h) * d.w};
}

// Sum over one channel of f(i), i the flat index, in the fixed order.
template <class F>
double channel_sum(const ChannelGeometry& g, int64_t channel, F f) {
  double sum = 0.0;
  for (int64_t s = 0; s < g.n; ++s) {
    const int64_t base = g.base(s, channel);
    for (int64_t j = 0; j < g.hw; ++j) sum += f(base + j);
  }
  return sum;
}

template <class T>
double value_or(const T* p, int64_t i, double fallback) {
  return p ? static_cast<double>(p[i]) : fallback;
}

}  // namespace

template <class T>
void batch_norm2d_forward_train(const BatchNormDims& d, T eps, T momentum, const T* x,
                                const T* gamma, const T* beta, T* y, T* save_mean,
                                T* save_invstd, T* running_mean, T* running_var) {
  const ChannelGeometry g = geometry(d);
  const int64_t m = g.count();
  const double mom = static_cast<double>(momentum);
  for (int64_t c = 0; c < g.c; ++c) {
    // Two passes (mean, then squared deviations): no cancellation when |mean| >> std.
    const double mean =
        m > 0 ? channel_sum(g, c, [x](int64_t i) { return static_cast<double>(x[i]); }) /
                    static_cast<double>(m)
              : 0.0;
    const double var = m > 0 ? channel_sum(g, c,
                                           [x, mean](int64_t i) {
                                             const double dev = static_cast<double>(x[i]) - mean;
                                             return dev * dev;
                                           }) /
                                   static_cast<double>(m)
                             : 0.0;
    const double invstd = 1.0 / std::sqrt(var + static_cast<double>(eps));
    save_mean[c] = static_cast<T>(mean);
    save_invstd[c] = static_cast<T>(invstd);

    const double scale = value_or(gamma, c, 1.0);
    const double shift = value_or(beta, c, 0.0);
    for (int64_t s = 0; s < g.n; ++s) {
      const int64_t base = g.base(s, c);
      for (int64_t j = 0; j < g.hw; ++j) {
        const double xhat = (static_cast<double>(x[base + j]) - mean) * invstd;
        y[base + j] = static_cast<T>(scale * xhat + shift);
      }
    }

    // PyTorch refuses to train with m == 1 (the unbiased variance is 0/0); a void function
    // cannot refuse, so there the running variance moves towards the biased variance (0), a
    // defined value rather than NaN. m == 0 (an empty batch) leaves the running statistics alone.
    if (m == 0) continue;
    const double unbiased =
        m > 1 ? var * static_cast<double>(m) / static_cast<double>(m - 1) : var;
    running_mean[c] =
        static_cast<T>((1.0 - mom) * static_cast<double>(running_mean[c]) + mom * mean);
    running_var[c] =
        static_cast<T>((1.0 - mom) * static_cast<double>(running_var[c]) + mom * unbiased);
  }
}

template <class T>
void batch_norm2d_forward_infer(const BatchNormDims& d, T eps, const T* x, const T* gamma,
                                const T* beta, const T* running_mean, const T* running_var,
                                T* y) {
  const ChannelGeometry g = geometry(d);
  for (int64_t c = 0; c < g.c; ++c) {
    const double mean = static_cast<double>(running_mean[c]);
    const double invstd =
        1.0 / std::sqrt(static_cast<double>(running_var[c]) + static_cast<double>(eps));
    const double scale = value_or(gamma, c, 1.0);
    const double shift = value_or(beta, c, 0.0);
    for (int64_t s = 0; s < g.n; ++s) {
      const int64_t base = g.base(s, c);
      for (int64_t j = 0; j < g.hw; ++j) {
        const double xhat = (static_cast<double>(x[base + j]) - mean) * invstd;
        y[base + j] = static_cast<T>(scale * xhat + shift);
      }
    }
  }
}

// With xhat = (x − mean)·invstd and both statistics functions of the whole channel:
//   dbeta  = Σ dy,   dgamma = Σ dy·xhat
//   dx     = gamma·invstd·(dy − dbeta/m − xhat·dgamma/m)
// (the two subtracted terms are the paths through the mean and through the variance).
// dx may be nullptr: the executor asks only for the parameter gradients when x needs none.
template <class T>
void batch_norm2d_backward_train(const BatchNormDims& d, const T* x, const T* dy, const T* gamma,
                                 const T* save_mean, const T* save_invstd, T* dx, T* dgamma,
                                 T* dbeta) {
  const ChannelGeometry g = geometry(d);
  const int64_t m = g.count();
  for (int64_t c = 0; c < g.c; ++c) {
    const double mean = static_cast<double>(save_mean[c]);
    const double invstd = static_cast<double>(save_invstd[c]);
    const double sum_dy = channel_sum(g, c, [dy](int64_t i) { return static_cast<double>(dy[i]); });
    const double sum_dy_xhat = channel_sum(g, c, [=](int64_t i) {
      return static_cast<double>(dy[i]) * (static_cast<double>(x[i]) - mean) * invstd;
    });
    if (dbeta) dbeta[c] = static_cast<T>(sum_dy);
    if (dgamma) dgamma[c] = static_cast<T>(sum_dy_xhat);
    if (!dx || m == 0) continue;

    const double k = value_or(gamma, c, 1.0) * invstd;
    const double mean_dy = sum_dy / static_cast<double>(m);
    const double mean_dy_xhat = sum_dy_xhat / static_cast<double>(m);
    for (int64_t s = 0; s < g.n; ++s) {
      const int64_t base = g.base(s, c);
      for (int64_t j = 0; j < g.hw; ++j) {
        const double xhat = (static_cast<double>(x[base + j]) - mean) * invstd;
        const double grad = static_cast<double>(dy[base + j]) - mean_dy - xhat * mean_dy_xhat;
        dx[base + j] = static_cast<T>(k * grad);
      }
    }
  }
}

// The statistics are constants: y is affine in x per channel, dx = gamma·invstd·dy.
// dx may be nullptr, as in the training backward.
template <class T>
void batch_norm2d_backward_infer(const BatchNormDims& d, T eps, const T* x, const T* dy,
                                 const T* gamma, const T* running_mean, const T* running_var,
                                 T* dx, T* dgamma, T* dbeta) {
  const ChannelGeometry g = geometry(d);
  for (int64_t c = 0; c < g.c; ++c) {
    const double mean = static_cast<double>(running_mean[c]);
    const double invstd =
        1.0 / std::sqrt(static_cast<double>(running_var[c]) + static_cast<double>(eps));
    if (dbeta) {
      dbeta[c] =
          static_cast<T>(channel_sum(g, c, [dy](int64_t i) { return static_cast<double>(dy[i]); }));
    }
    if (dgamma) {
      dgamma[c] = static_cast<T>(channel_sum(g, c, [=](int64_t i) {
        return static_cast<double>(dy[i]) * (static_cast<double>(x[i]) - mean) * invstd;
      }));
    }
    if (!dx) continue;
    const double k = value_or(gamma, c, 1.0) * invstd;
    for (int64_t s = 0; s < g.n; ++s) {
      const int64_t base = g.base(s, c);
      for (int64_t j = 0; j < g.hw; ++j) dx[base + j] = static_cast<T>(k * dy[base + j]);
    }
  }
}

#define WREN_INSTANTIATE_BATCH_NORM(T)                                                          \
  template void batch_norm2d_forward_train<T>(const BatchNormDims&, T, T, const T*, const T*,   \
                                              const T*, T*, T*, T*, T*, T*);                    \
  template void batch_norm2d_forward_infer<T>(const BatchNormDims&, T, const T*, const T*,      \
                                              const T*, const T*, const T*, T*);                \
  template void batch_norm2d_backward_train<T>(const BatchNormDims&, const T*, const T*,        \
                                               const T*, const T*, const T*, T*, T*, T*);       \
  template void batch_norm2d_backward_infer<T>(const BatchNormDims&, T, const T*, const T*,     \
                                               const T*, const T*, const T*, T*, T*, T*);

WREN_INSTANTIATE_BATCH_NORM(float)
WREN_INSTANTIATE_BATCH_NORM(double)

#undef WREN_INSTANTIATE_BATCH_NORM

}  // namespace wren::cpu
