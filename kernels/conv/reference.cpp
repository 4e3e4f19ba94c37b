// CPU reference for 2-D convolution (see kernels/conv/conv.h), lowered per image to GEMM.
//
// For one image, with CRS = C·R·S and PQ = P·Q:
//   col [CRS, PQ]     im2col of x[n]: row (c, r, s), column (p, q) holds x[n, c, ih, iw] with
//                     ih = p·stride_h − pad_h + r·dil_h, iw = q·stride_w − pad_w + s·dil_w,
//                     and 0 where (ih, iw) falls in the padding
//   forward           y[n] [K, PQ] = w [K, CRS] · col   (+ b[k] on row k)
//   backward data     col [CRS, PQ] = wᵀ · dy[n], then col2im adds each entry back to the x
//                     element it was read from (padding entries are dropped)
//   backward weights  dw [K, CRS] = Σ_n dy[n] · col[n]ᵀ   (gemm with beta = 1 after image 0)
//                     db[k] = Σ_n Σ_pq dy[n, k, p, q]
// Rows ordered (c, r, s) match OIHW weights, so w is used in place as a [K, CRS] matrix.
//
// col2im and the bias sums run in a fixed sequential order, so results are deterministic for a
// given OpenBLAS thread count.
#include "conv/conv.h"

#include <omp.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "common/cpu_gemm.h"

namespace wren::cpu {
namespace {

// Sizes in int64_t: per-batch offsets such as N·K·P·Q can exceed int. P and Q are clamped at 0
// so that a kernel larger than the padded input means "no output" rather than a negative count.
struct Geometry {
  int64_t n, c, h, w, k, r, s, p, q;
  int64_t hw() const { return h * w; }
  int64_t pq() const { return p * q; }
  int64_t crs() const { return c * r * s; }
};

Geometry geometry(const Conv2dDims& d) {
  return {d.n, d.c, d.h, d.w, d.k, d.r, d.s, std::max(d.p(), 0), std::max(d.q(), 0)};
}

// col [CRS, PQ] = im2col(x) for one image x [C, H, W].
template <class T>
void im2col(const Conv2dDims& d, const Geometry& g, const T* x, T* col) {
  for (int64_t c = 0; c < g.c; ++c) {
    for (int64_t r = 0; r < g.r; ++r) {
      for (int64_t s = 0; s < g.s; ++s) {
        T* out = col + ((c * g.r + r) * g.s + s) * g.pq();
        for (int64_t p = 0; p < g.p; ++p) {
          T* out_row = out + p * g.q;
          const int64_t ih = p * d.stride_h - d.pad_h + r * d.dil_h;
          if (ih < 0 || ih >= g.h) {
            std::fill(out_row, out_row + g.q, T(0));
            continue;
          }
          const T* in_row = x + (c * g.h + ih) * g.w;
          if (d.stride_w == 1) {
            // iw = q + offset: zeros left of the image, one contiguous copy, zeros right.
            const int64_t offset = s * d.dil_w - d.pad_w;
            const int64_t lo = std::clamp<int64_t>(-offset, 0, g.q);
            const int64_t hi = std::clamp<int64_t>(g.w - offset, lo, g.q);
            std::fill(out_row, out_row + lo, T(0));
            std::copy(in_row + lo + offset, in_row + hi + offset, out_row + lo);
            std::fill(out_row + hi, out_row + g.q, T(0));
            continue;
          }
          for (int64_t q = 0; q < g.q; ++q) {
            const int64_t iw = q * d.stride_w - d.pad_w + s * d.dil_w;
            out_row[q] = (iw >= 0 && iw < g.w) ? in_row[iw] : T(0);
          }
        }
      }
    }
  }
}

// x [C, H, W] += col2im(col): the adjoint of im2col. The caller zeroes x first. Several col
// entries map to one x element when windows overlap; they are added in (c, r, s, p, q) order.
template <class T>
void col2im_add(const Conv2dDims& d, const Geometry& g, const T* col, T* x) {
  for (int64_t c = 0; c < g.c; ++c) {
    for (int64_t r = 0; r < g.r; ++r) {
      for (int64_t s = 0; s < g.s; ++s) {
        const T* in = col + ((c * g.r + r) * g.s + s) * g.pq();
        for (int64_t p = 0; p < g.p; ++p) {
          const int64_t ih = p * d.stride_h - d.pad_h + r * d.dil_h;
          if (ih < 0 || ih >= g.h) continue;
          const T* in_row = in + p * g.q;
          T* out_row = x + (c * g.h + ih) * g.w;
          if (d.stride_w == 1) {
            const int64_t offset = s * d.dil_w - d.pad_w;
            const int64_t lo = std::clamp<int64_t>(-offset, 0, g.q);
            const int64_t hi = std::clamp<int64_t>(g.w - offset, lo, g.q);
            for (int64_t q = lo; q < hi; ++q) out_row[q + offset] += in_row[q];
            continue;
          }
          for (int64_t q = 0; q < g.q; ++q) {
            const int64_t iw = q * d.stride_w - d.pad_w + s * d.dil_w;
            if (iw >= 0 && iw < g.w) out_row[iw] += in_row[q];
          }
        }
      }
    }
  }
}

// Images are processed in parallel on OpenMP's threads, each with its own im2col buffer; the
// weight gradient is summed per thread (its images in order) and the partial sums are added
// in thread order, so a run is deterministic for a given thread count. The count is fixed at
// the first call (the executor sizes the workspace with it).
int conv_threads() {
  static const int threads = std::max(1, omp_get_max_threads());
  return threads;
}

// Workspace: conv_threads() im2col buffers [CRS, PQ], then (with more than one thread) as many
// weight-gradient partial sums [K, CRS].
template <class T>
T* col_buffer(const Geometry& g, T* ws, int thread) {
  return ws + static_cast<int64_t>(thread) * g.crs() * g.pq();
}
template <class T>
T* dw_partial(const Geometry& g, T* ws, int thread) {
  return ws + conv_threads() * g.crs() * g.pq() + static_cast<int64_t>(thread) * g.k * g.crs();
}

}  // namespace

size_t conv2d_workspace_elems(const Conv2dDims& d) {
  const Geometry g = geometry(d);
  const int threads = conv_threads();
  return static_cast<size_t>(threads * g.crs() * g.pq() +
                             (threads > 1 ? threads * g.k * g.crs() : 0));
}

template <class T>
void conv2d_forward(const Conv2dDims& d, const T* x, const T* w, const T* b, T* y, T* ws) {
  const Geometry g = geometry(d);
  const int pq = static_cast<int>(g.pq()), crs = static_cast<int>(g.crs());
#pragma omp parallel for schedule(static) num_threads(conv_threads()) if (g.n > 1)
  for (int64_t n = 0; n < g.n; ++n) {
    T* col = col_buffer(g, ws, omp_get_thread_num());
    T* y_n = y + n * g.k * g.pq();
    im2col(d, g, x + n * g.c * g.hw(), col);
    gemm<T>(false, false, d.k, pq, crs, T(1), w, crs, col, pq, T(0), y_n, pq);
    if (b == nullptr) continue;
    for (int64_t k = 0; k < g.k; ++k) {
      T* row = y_n + k * g.pq();
      for (int64_t j = 0; j < g.pq(); ++j) row[j] += b[k];
    }
  }
}

template <class T>
void conv2d_backward_data(const Conv2dDims& d, const T* dy, const T* w, T* dx, T* ws) {
  const Geometry g = geometry(d);
  const int pq = static_cast<int>(g.pq()), crs = static_cast<int>(g.crs());
#pragma omp parallel for schedule(static) num_threads(conv_threads()) if (g.n > 1)
  for (int64_t n = 0; n < g.n; ++n) {
    T* col = col_buffer(g, ws, omp_get_thread_num());
    T* dx_n = dx + n * g.c * g.hw();
    std::fill(dx_n, dx_n + g.c * g.hw(), T(0));
    // col [CRS, PQ] = wᵀ [CRS, K] · dy[n] [K, PQ]
    gemm<T>(true, false, crs, pq, d.k, T(1), w, crs, dy + n * g.k * g.pq(), pq, T(0), col, pq);
    col2im_add(d, g, col, dx_n);
  }
}

template <class T>
void conv2d_backward_weights(const Conv2dDims& d, const T* x, const T* dy, T* dw, T* db, T* ws) {
  const Geometry g = geometry(d);
  const int pq = static_cast<int>(g.pq()), crs = static_cast<int>(g.crs());
  const int threads = g.n > 1 ? conv_threads() : 1;
  const int64_t dw_size = g.k * g.crs();
  if (g.n == 0) std::fill(dw, dw + dw_size, T(0));
  // Thread t sums images [first_t, last_t) (OpenMP's static schedule: contiguous, in order)
  // into its partial (or straight into dw with one thread); beta 0 on its first image.
  int used = 1;
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
#pragma omp single
    used = nt;
    const int64_t first = g.n * t / nt, last = g.n * (t + 1) / nt;
    T* col = col_buffer(g, ws, t);
    T* acc = nt > 1 ? dw_partial(g, ws, t) : dw;
    if (first == last) std::fill(acc, acc + dw_size, T(0));
    for (int64_t n = first; n < last; ++n) {
      im2col(d, g, x + n * g.c * g.hw(), col);
      // acc [K, CRS] (+)= dy[n] [K, PQ] · colᵀ [PQ, CRS]
      gemm<T>(false, true, d.k, crs, pq, T(1), dy + n * g.k * g.pq(), pq, col, pq,
              n == first ? T(0) : T(1), acc, crs);
    }
  }
  if (used > 1) {
    std::copy(dw_partial(g, ws, 0), dw_partial(g, ws, 0) + dw_size, dw);
    for (int t = 1; t < used; ++t) {
      const T* part = dw_partial(g, ws, t);
      for (int64_t i = 0; i < dw_size; ++i) dw[i] += part[i];
    }
  }
  if (db == nullptr) return;
  // Summed in double: one bias sees N·P·Q terms, a long sum for float.
  // Eight independent partial sums (fixed order, so deterministic): one chain of dependent
  // double additions was the slowest part of this function.
  constexpr int kLanes = 8;
  for (int64_t k = 0; k < g.k; ++k) {
    double lanes[kLanes] = {};
    for (int64_t n = 0; n < g.n; ++n) {
      const T* row = dy + (n * g.k + k) * g.pq();
      int64_t j = 0;
      for (; j + kLanes <= g.pq(); j += kLanes) {
        for (int l = 0; l < kLanes; ++l) lanes[l] += static_cast<double>(row[j + l]);
      }
      for (; j < g.pq(); ++j) lanes[j % kLanes] += static_cast<double>(row[j]);
    }
    double sum = 0.0;
    for (double v : lanes) sum += v;
    db[k] = static_cast<T>(sum);
  }
}

template void conv2d_forward<float>(const Conv2dDims&, const float*, const float*, const float*,
                                    float*, float*);
template void conv2d_forward<double>(const Conv2dDims&, const double*, const double*, const double*,
                                     double*, double*);
template void conv2d_backward_data<float>(const Conv2dDims&, const float*, const float*, float*,
                                          float*);
template void conv2d_backward_data<double>(const Conv2dDims&, const double*, const double*, double*,
                                           double*);
template void conv2d_backward_weights<float>(const Conv2dDims&, const float*, const float*, float*,
                                             float*, float*);
template void conv2d_backward_weights<double>(const Conv2dDims&, const double*, const double*,
                                              double*, double*, double*);

}  // namespace wren::cpu
