// CPU reference for pooling (see kernels/pool/pool.h).
//
// Per plane (n, c): x [H, W] -> y [P, Q]; the window of output (p, q) covers input rows
// p·stride_h − pad_h + [0, kernel_h) and columns q·stride_w − pad_w + [0, kernel_w).
//
// Both backward passes are gathers over input elements: dx[h, w] sums dy over the output
// windows that cover (h, w), visited in increasing (p, q). Each dx element is written once by
// one loop iteration, so a GPU kernel with one thread per input element computes the same sums
// in the same order, with no atomics and no dependence on scheduling.
//
// Every sum runs in double and is rounded once to T, so float results are the double ones
// rounded (and with stride ≥ kernel a max-pool gradient is a dy value, exactly).
#include "pool/pool.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

namespace wren::cpu {
namespace {

// Sizes in int64_t (N·C·H·W can exceed int). P and Q are clamped at 0 so that a kernel larger
// than the padded input means "no output" rather than a negative count.
struct Geometry {
  int64_t planes, h, w, p, q;
  int64_t kh, kw, sh, sw, ph, pw;
  int64_t hw() const { return h * w; }
  int64_t pq() const { return p * q; }
};

Geometry geometry(const Pool2dDims& d) {
  Geometry g;
  g.planes = int64_t{d.n} * d.c;
  g.h = d.h;
  g.w = d.w;
  g.p = std::max(d.p(), 0);
  g.q = std::max(d.q(), 0);
  g.kh = d.kernel_h;
  g.kw = d.kernel_w;
  g.sh = d.stride_h;
  g.sw = d.stride_w;
  g.ph = d.pad_h;
  g.pw = d.pad_w;
  return g;
}

// The output indices [first, last) along one axis whose windows cover input index i:
// o·stride − pad ≤ i < o·stride − pad + kernel, clipped to [0, out).
struct Range {
  int64_t first, last;
};

Range covering(int64_t i, int64_t kernel, int64_t stride, int64_t pad, int64_t out) {
  const int64_t shifted = i + pad;  // ≥ 0: i ≥ 0 and pad ≥ 0
  // Smallest o with o·stride > shifted − kernel; written without dividing a negative number.
  const int64_t first = shifted < kernel ? 0 : (shifted - kernel) / stride + 1;
  const int64_t last = std::min(shifted / stride + 1, out);
  return {first, std::max(first, last)};
}

// covering() for every input column: the same for every plane and row, so computed once per
// call (two integer divisions per element were most of the backward's time). A few hundred
// bytes, the only allocation in these ops.
std::vector<Range> column_ranges(const Geometry& g) {
  std::vector<Range> ranges(static_cast<size_t>(g.w));
  for (int64_t w = 0; w < g.w; ++w) ranges[static_cast<size_t>(w)] = covering(w, g.kw, g.sw, g.pw, g.q);
  return ranges;
}

// Number of in-image rows (or columns) of a window that starts at `start` (may be < 0).
int64_t inside(int64_t start, int64_t kernel, int64_t size) {
  return std::max<int64_t>(0, std::min(start + kernel, size) - std::max<int64_t>(start, 0));
}

// Divisor of average-pooling window (p, q).
double avg_divisor(const Pool2dDims& d, const Geometry& g, int64_t p, int64_t q) {
  if (d.count_include_pad) {
    // With floor-mode output sizes a window never leaves the padded image, so this is the
    // whole kernel (PyTorch's divisor, which clips to the padded image).
    return static_cast<double>(g.kh * g.kw);
  }
  return static_cast<double>(inside(p * g.sh - g.ph, g.kh, g.h) *
                             inside(q * g.sw - g.pw, g.kw, g.w));
}

}  // namespace

// The first maximum in row-major order wins; a NaN wins over any number (see below).
template <class T>
inline bool takes(T v, T best) {
  return v > best || (v != v && best == best);
}

// 2x2 windows, stride 2, no padding (every max-pool of the zoo): the same rules as the general
// loop below, without its per-element bounds checks and index arithmetic.
template <class T>
void max_pool2x2_forward(const Geometry& g, const T* x, T* y, int32_t* argmax) {
#pragma omp parallel for schedule(static) if (g.planes * g.hw() > 65536)
  for (int64_t plane = 0; plane < g.planes; ++plane) {
    const T* xp = x + plane * g.hw();
    T* yp = y + plane * g.pq();
    int32_t* ap = argmax + plane * g.pq();
    for (int64_t p = 0; p < g.p; ++p) {
      const T* r0 = xp + 2 * p * g.w;
      const T* r1 = r0 + g.w;
      for (int64_t q = 0; q < g.q; ++q) {
        // Branch-free (selects, not jumps: on real data the comparisons are unpredictable).
        T best = r0[2 * q];
        int64_t k = 0;  // window position: 0 1 / 2 3
        const T v1 = r0[2 * q + 1], v2 = r1[2 * q], v3 = r1[2 * q + 1];
        bool t = takes(v1, best);
        best = t ? v1 : best;
        k = t ? 1 : k;
        t = takes(v2, best);
        best = t ? v2 : best;
        k = t ? 2 : k;
        t = takes(v3, best);
        best = t ? v3 : best;
        k = t ? 3 : k;
        yp[p * g.q + q] = best;
        ap[p * g.q + q] = static_cast<int32_t>((2 * p + (k >> 1)) * g.w + 2 * q + (k & 1));
      }
    }
  }
}

template <class T>
void max_pool2d_forward(const Pool2dDims& d, const T* x, T* y, int32_t* argmax) {
  const Geometry g = geometry(d);
  if (g.kh == 2 && g.kw == 2 && g.sh == 2 && g.sw == 2 && g.ph == 0 && g.pw == 0) {
    max_pool2x2_forward(g, x, y, argmax);
    return;
  }
  for (int64_t plane = 0; plane < g.planes; ++plane) {
    const T* xp = x + plane * g.hw();
    T* yp = y + plane * g.pq();
    int32_t* ap = argmax + plane * g.pq();
    for (int64_t p = 0; p < g.p; ++p) {
      for (int64_t q = 0; q < g.q; ++q) {
        // Padding is −∞, so it never wins; a window entirely in the padding (only possible
        // when pad ≥ kernel) gives −∞ and index −1, which the backward pass never matches.
        T best = -std::numeric_limits<T>::infinity();
        int64_t best_index = -1;
        for (int64_t r = 0; r < g.kh; ++r) {
          const int64_t ih = p * g.sh - g.ph + r;
          if (ih < 0 || ih >= g.h) continue;
          for (int64_t s = 0; s < g.kw; ++s) {
            const int64_t iw = q * g.sw - g.pw + s;
            if (iw < 0 || iw >= g.w) continue;
            const T v = xp[ih * g.w + iw];
            // Strictly greater: the first maximum in row-major order wins ties. A NaN wins
            // over any number (the first NaN over later ones), so divergence propagates as in
            // PyTorch instead of being hidden by the max.
            const bool take = best_index < 0 || v > best || (std::isnan(v) && !std::isnan(best));
            if (take) {
              best = v;
              best_index = ih * g.w + iw;
            }
          }
        }
        yp[p * g.q + q] = best;
        ap[p * g.q + q] = static_cast<int32_t>(best_index);
      }
    }
  }
}

template <class T>
void max_pool2d_backward(const Pool2dDims& d, const int32_t* argmax, const T* dy, T* dx) {
  const Geometry g = geometry(d);
  if (g.sh >= g.kh && g.sw >= g.kw) {
    // Windows do not overlap: each input element is covered by at most one window, so the
    // gather below reduces to writing each window's dy at its argmax (0.0 + dy, as the double
    // sum gives: −0 becomes +0). The same values, without the per-element window search.
#pragma omp parallel for schedule(static) if (g.planes * g.hw() > 65536)
    for (int64_t plane = 0; plane < g.planes; ++plane) {
      const int32_t* ap = argmax + plane * g.pq();
      const T* dyp = dy + plane * g.pq();
      T* dxp = dx + plane * g.hw();
      std::fill(dxp, dxp + g.hw(), T(0));
      for (int64_t o = 0; o < g.pq(); ++o) {
        if (ap[o] >= 0) dxp[ap[o]] = static_cast<T>(0.0 + static_cast<double>(dyp[o]));
      }
    }
    return;
  }
  const std::vector<Range> columns = column_ranges(g);
  for (int64_t plane = 0; plane < g.planes; ++plane) {
    const int32_t* ap = argmax + plane * g.pq();
    const T* dyp = dy + plane * g.pq();
    T* dxp = dx + plane * g.hw();
    for (int64_t h = 0; h < g.h; ++h) {
      const Range rp = covering(h, g.kh, g.sh, g.ph, g.p);
      for (int64_t w = 0; w < g.w; ++w) {
        const Range rq = columns[static_cast<size_t>(w)];
        const int64_t index = h * g.w + w;
        double sum = 0.0;
        for (int64_t p = rp.first; p < rp.last; ++p) {
          for (int64_t q = rq.first; q < rq.last; ++q) {
            if (ap[p * g.q + q] == index) sum += static_cast<double>(dyp[p * g.q + q]);
          }
        }
        dxp[index] = static_cast<T>(sum);
      }
    }
  }
}

template <class T>
void avg_pool2d_forward(const Pool2dDims& d, const T* x, T* y) {
  const Geometry g = geometry(d);
  for (int64_t plane = 0; plane < g.planes; ++plane) {
    const T* xp = x + plane * g.hw();
    T* yp = y + plane * g.pq();
    for (int64_t p = 0; p < g.p; ++p) {
      for (int64_t q = 0; q < g.q; ++q) {
        double sum = 0.0;  // padding contributes 0
        for (int64_t r = 0; r < g.kh; ++r) {
          const int64_t ih = p * g.sh - g.ph + r;
          if (ih < 0 || ih >= g.h) continue;
          for (int64_t s = 0; s < g.kw; ++s) {
            const int64_t iw = q * g.sw - g.pw + s;
            if (iw >= 0 && iw < g.w) sum += static_cast<double>(xp[ih * g.w + iw]);
          }
        }
        const double divisor = avg_divisor(d, g, p, q);
        // A window with no in-image element (pad ≥ kernel, without count_include_pad) is 0.
        yp[p * g.q + q] = divisor > 0 ? static_cast<T>(sum / divisor) : T(0);
      }
    }
  }
}

template <class T>
void avg_pool2d_backward(const Pool2dDims& d, const T* dy, T* dx) {
  const Geometry g = geometry(d);
  const std::vector<Range> columns = column_ranges(g);
  for (int64_t plane = 0; plane < g.planes; ++plane) {
    const T* dyp = dy + plane * g.pq();
    T* dxp = dx + plane * g.hw();
    for (int64_t h = 0; h < g.h; ++h) {
      const Range rp = covering(h, g.kh, g.sh, g.ph, g.p);
      for (int64_t w = 0; w < g.w; ++w) {
        const Range rq = columns[static_cast<size_t>(w)];
        double sum = 0.0;
        for (int64_t p = rp.first; p < rp.last; ++p) {
          for (int64_t q = rq.first; q < rq.last; ++q) {
            // A window covering (h, w) has an in-image element, so the divisor is > 0.
            sum += static_cast<double>(dyp[p * g.q + q]) / avg_divisor(d, g, p, q);
          }
        }
        dxp[h * g.w + w] = static_cast<T>(sum);
      }
    }
  }
}

template <class T>
void global_avg_pool_forward(int n, int c, int hw, const T* x, T* y) {
  const int64_t planes = int64_t{n} * c, size = hw;
  for (int64_t plane = 0; plane < planes; ++plane) {
    const T* xp = x + plane * size;
    double sum = 0.0;
    for (int64_t i = 0; i < size; ++i) sum += static_cast<double>(xp[i]);
    y[plane] = size > 0 ? static_cast<T>(sum / static_cast<double>(size)) : T(0);
  }
}

template <class T>
void global_avg_pool_backward(int n, int c, int hw, const T* dy, T* dx) {
  const int64_t planes = int64_t{n} * c, size = hw;
  for (int64_t plane = 0; plane < planes; ++plane) {
    const T g = static_cast<T>(static_cast<double>(dy[plane]) / static_cast<double>(size));
    std::fill(dx + plane * size, dx + (plane + 1) * size, g);
  }
}

#define WREN_INSTANTIATE_POOL(T)                                                         \
  template void max_pool2d_forward<T>(const Pool2dDims&, const T*, T*, int32_t*);        \
  template void max_pool2d_backward<T>(const Pool2dDims&, const int32_t*, const T*, T*); \
  template void avg_pool2d_forward<T>(const Pool2dDims&, const T*, T*);                  \
  template void avg_pool2d_backward<T>(const Pool2dDims&, const T*, T*);                 \
  template void global_avg_pool_forward<T>(int, int, int, const T*, T*);                 \
  template void global_avg_pool_backward<T>(int, int, int, const T*, T*);

WREN_INSTANTIATE_POOL(float)
WREN_INSTANTIATE_POOL(double)

#undef WREN_INSTANTIATE_POOL

}  // namespace wren::cpu
