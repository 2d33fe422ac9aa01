// The loops behind cpu_kernels.cpp: scalar maths written to vectorise, row-parallel threading,
// and the row kernels (forward and backward). Plain C++, no MLX types.
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <thread>
#include <vector>

#include <sched.h>

namespace bridge {

// ------------------------------------------------------------------------------------------
// Scalar maths written so that GCC/Clang vectorise the calling loops (plain selects: std::fmin /
// std::fmax / std::floor keep GCC from vectorising under strict FP).

__attribute__((always_inline)) inline float clamp(float x, float lo, float hi) {
  x = x < lo ? lo : x;
  return x > hi ? hi : x;
}

__attribute__((always_inline)) inline float exp_vec(float x) {
  // Cephes expf: range reduction by ln 2, degree-6 polynomial, exponent by bit assembly.
  // Inputs below -87.3 (e.g. the -1e9 of an attention mask) return exactly 0, as expf does.
  const float xc = clamp(x, -87.3f, 88.3f);
  // Round to nearest with the 1.5 * 2^23 trick: unlike floor() it vectorises under strict FP.
  const float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  const float r = xc - n * 0.693359375f - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const float scale = std::bit_cast<float>((static_cast<int32_t>(n) + 127) << 23);
  return x < -87.3f ? 0.0f : p * scale;
}

__attribute__((always_inline)) inline float erf_vec(float x) {
  // Odd/even rational approximation on [-4, 4] (|error| < 5e-7; erf is +-1 in float beyond).
  const float xc = clamp(x, -4.0f, 4.0f);
  const float x2 = xc * xc;
  float p = -2.72614225801306e-10f;
  p = p * x2 + 2.77068142495902e-08f;
  p = p * x2 + -2.10102402082508e-06f;
  p = p * x2 + -5.69250639462346e-05f;
  p = p * x2 + -7.34990630326855e-04f;
  p = p * x2 + -2.95459980854025e-03f;
  p = p * x2 + -1.60960333262415e-02f;
  float q = -1.45660718464996e-05f;
  q = q * x2 + -2.13374055278905e-04f;
  q = q * x2 + -1.68282697438203e-03f;
  q = q * x2 + -7.37332916720468e-03f;
  q = q * x2 + -1.42647390514189e-02f;
  return xc * p / q;
}

constexpr float kSqrt1_2 = 0.70710678118654752f;
constexpr float kInvSqrt2Pi = 0.39894228040143268f;

// ------------------------------------------------------------------------------------------
// Threading: split rows over the usable cores (affinity-aware; MLX_HF_BRIDGE_THREADS overrides).

inline int usable_threads() {
  static const int n = [] {
    if (const char* env = std::getenv("MLX_HF_BRIDGE_THREADS")) {
      int v = std::atoi(env);
      if (v > 0) return v;
    }
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
    return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  }();
  return n;
}

// fn(slot, begin, end) runs on `slot` < usable_threads(); the split depends only on the shape, so
// results (including per-slot partial sums) are deterministic.
inline void parallel_rows(int64_t rows, int64_t row_cost, const std::function<void(int, int64_t, int64_t)>& fn) {
  // Below ~64K elements a thread start costs more than it saves.
  int64_t threads = std::min<int64_t>(usable_threads(), std::max<int64_t>(1, rows * row_cost / 65536));
  threads = std::max<int64_t>(1, std::min(threads, rows));
  const int64_t chunk = (rows + threads - 1) / threads;
  std::vector<std::thread> pool;
  for (int64_t t = 1; t < threads; ++t) {
    const int64_t begin = t * chunk, end = std::min(rows, begin + chunk);
    if (begin < end) pool.emplace_back(fn, static_cast<int>(t), begin, end);
  }
  fn(0, 0, std::min(rows, chunk));
  for (auto& th : pool) th.join();
}

// Reductions with 16 independent accumulators: vectorised without -ffast-math (the order is
// fixed, so results stay deterministic).
constexpr int kLanes = 16;

inline float row_max(const float* x, int64_t n) {
  float acc[kLanes];
  for (int j = 0; j < kLanes; ++j) acc[j] = -INFINITY;
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int j = 0; j < kLanes; ++j) acc[j] = x[i + j] > acc[j] ? x[i + j] : acc[j];
  float m = -INFINITY;
  for (int j = 0; j < kLanes; ++j) m = acc[j] > m ? acc[j] : m;
  for (; i < n; ++i) m = x[i] > m ? x[i] : m;
  return m;
}

inline float row_dot(const float* a, const float* b, int64_t n) {
  float acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int j = 0; j < kLanes; ++j) acc[j] += a[i + j] * b[i + j];
  float s = 0.0f;
  for (int j = 0; j < kLanes; ++j) s += acc[j];
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

inline float row_sum(const float* a, int64_t n) {
  float acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int j = 0; j < kLanes; ++j) acc[j] += a[i + j];
  float s = 0.0f;
  for (int j = 0; j < kLanes; ++j) s += acc[j];
  for (; i < n; ++i) s += a[i];
  return s;
}

// Sum of squared deviations from `mean`.
inline float row_centered_sq(const float* a, float mean, int64_t n) {
  float acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int j = 0; j < kLanes; ++j) acc[j] += (a[i + j] - mean) * (a[i + j] - mean);
  float s = 0.0f;
  for (int j = 0; j < kLanes; ++j) s += acc[j];
  for (; i < n; ++i) s += (a[i] - mean) * (a[i] - mean);
  return s;
}

// ------------------------------------------------------------------------------------------
// Row kernels. n = length of the last axis.

inline void softmax_rows(const float* x, float* y, int64_t rows, int64_t n) {
  parallel_rows(rows, n, [=](int, int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* __restrict xr = x + r * n;
      float* __restrict yr = y + r * n;
      const float m = row_max(xr, n);
      for (int64_t i = 0; i < n; ++i) yr[i] = exp_vec(xr[i] - m);
      const float inv = 1.0f / row_sum(yr, n);
      for (int64_t i = 0; i < n; ++i) yr[i] *= inv;
    }
  });
}

inline void softmax_backward_rows(const float* y, const float* g, float* dx, int64_t rows, int64_t n) {
  parallel_rows(rows, n, [=](int, int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float *yr = y + r * n, *gr = g + r * n;
      const float dot = row_dot(yr, gr, n);
      float* dr = dx + r * n;
      for (int64_t i = 0; i < n; ++i) dr[i] = yr[i] * (gr[i] - dot);
    }
  });
}

// hg rows are [h | gate] (2n); out = gelu(h) * gate.
inline void geglu_rows(const float* hg, float* out, int64_t rows, int64_t n) {
  parallel_rows(rows, 2 * n, [=](int, int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* __restrict h = hg + r * 2 * n;
      const float* __restrict gate = h + n;
      float* __restrict o = out + r * n;
      for (int64_t i = 0; i < n; ++i) o[i] = 0.5f * h[i] * (1.0f + erf_vec(h[i] * kSqrt1_2)) * gate[i];
    }
  });
}

inline void geglu_backward_rows(const float* hg, const float* g, float* dhg, int64_t rows, int64_t n) {
  parallel_rows(rows, 4 * n, [=](int, int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* __restrict h = hg + r * 2 * n;
      const float* __restrict gate = h + n;
      const float* __restrict gr = g + r * n;
      float* __restrict dh = dhg + r * 2 * n;
      float* __restrict dgate = dh + n;
      for (int64_t i = 0; i < n; ++i) {
        const float cdf = 0.5f * (1.0f + erf_vec(h[i] * kSqrt1_2));
        const float pdf = exp_vec(-0.5f * h[i] * h[i]) * kInvSqrt2Pi;
        dh[i] = gr[i] * gate[i] * (cdf + h[i] * pdf);
        dgate[i] = gr[i] * h[i] * cdf;
      }
    }
  });
}

inline void gelu_rows(const float* __restrict x, float* __restrict y, int64_t size) {
  parallel_rows(size / 4096 + (size % 4096 != 0), 4096, [=](int, int64_t r0, int64_t r1) {
    const int64_t end = std::min(size, r1 * 4096);
    for (int64_t i = r0 * 4096; i < end; ++i) y[i] = 0.5f * x[i] * (1.0f + erf_vec(x[i] * kSqrt1_2));
  });
}

inline void gelu_backward_rows(const float* __restrict x, const float* __restrict g, float* __restrict dx, int64_t size) {
  parallel_rows(size / 4096 + (size % 4096 != 0), 4096, [=](int, int64_t r0, int64_t r1) {
    const int64_t end = std::min(size, r1 * 4096);
    for (int64_t i = r0 * 4096; i < end; ++i) {
      const float cdf = 0.5f * (1.0f + erf_vec(x[i] * kSqrt1_2));
      dx[i] = g[i] * (cdf + x[i] * exp_vec(-0.5f * x[i] * x[i]) * kInvSqrt2Pi);
    }
  });
}

// y = (x - mean) * rstd * w (+ b); mean/rstd in float, two passes as torch does.
inline void layer_norm_rows(const float* x, const float* w, const float* b, float* y, int64_t rows, int64_t n, float eps) {
  parallel_rows(rows, n, [=](int, int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = x + r * n;
      float* yr = y + r * n;
      const float mean = row_sum(xr, n) / n;
      const float rstd = 1.0f / std::sqrt(row_centered_sq(xr, mean, n) / n + eps);
      if (b != nullptr) {
        for (int64_t i = 0; i < n; ++i) yr[i] = (xr[i] - mean) * rstd * w[i] + b[i];
      } else {
        for (int64_t i = 0; i < n; ++i) yr[i] = (xr[i] - mean) * rstd * w[i];
      }
    }
  });
}

// dx, and per-thread partial dw / db summed at the end (deterministic: fixed chunking).
inline void layer_norm_backward_rows(const float* x, const float* w, const float* g, float* dx, float* dw, float* db,
                              int64_t rows, int64_t n, float eps) {
  const int threads = usable_threads();
  std::vector<float> partial(static_cast<size_t>(threads) * 2 * n, 0.0f);
  parallel_rows(rows, 3 * n, [&](int slot, int64_t r0, int64_t r1) {
    std::vector<float> xhat(n), gw(n);
    float* pw = partial.data() + static_cast<size_t>(slot) * 2 * n;
    float* pb = pw + n;
    for (int64_t r = r0; r < r1; ++r) {
      const float *xr = x + r * n, *gr = g + r * n;
      const float mean = row_sum(xr, n) / n;
      const float rstd = 1.0f / std::sqrt(row_centered_sq(xr, mean, n) / n + eps);
      for (int64_t i = 0; i < n; ++i) {
        xhat[i] = (xr[i] - mean) * rstd;
        gw[i] = gr[i] * w[i];
        pw[i] += gr[i] * xhat[i];
        pb[i] += gr[i];
      }
      const float sum_gw = row_sum(gw.data(), n), sum_gw_xhat = row_dot(gw.data(), xhat.data(), n);
      float* dr = dx + r * n;
      const float a = sum_gw / n, c = sum_gw_xhat / n;
      for (int64_t i = 0; i < n; ++i) dr[i] = rstd * (gw[i] - a - xhat[i] * c);
    }
  });
  for (int64_t i = 0; i < n; ++i) {
    float sw = 0.0f, sb = 0.0f;
    for (int t = 0; t < threads; ++t) {
      sw += partial[static_cast<size_t>(t) * 2 * n + i];
      sb += partial[static_cast<size_t>(t) * 2 * n + n + i];
    }
    dw[i] = sw;
    if (db != nullptr) db[i] = sb;
  }
}

// sum(x^2) over a flat buffer, accumulated in double (16 lanes per thread, then the threads'
// partials in slot order: deterministic), for clip_grad_norm_'s per-tensor norms.
inline void sum_squares_flat(const float* __restrict x, float* out, int64_t size) {
  std::vector<double> partial(usable_threads(), 0.0);
  parallel_rows(size / 4096 + (size % 4096 != 0), 4096, [&](int slot, int64_t r0, int64_t r1) {
    const int64_t begin = r0 * 4096, end = std::min(size, r1 * 4096);
    double acc[kLanes] = {};
    int64_t i = begin;
    for (; i + kLanes <= end; i += kLanes)
      for (int j = 0; j < kLanes; ++j) acc[j] += static_cast<double>(x[i + j]) * x[i + j];
    double s = 0.0;
    for (int j = 0; j < kLanes; ++j) s += acc[j];
    for (; i < end; ++i) s += static_cast<double>(x[i]) * x[i];
    partial[slot] = s;
  });
  double total = 0.0;
  for (double s : partial) total += s;
  out[0] = static_cast<float>(total);
}

// torch.optim.AdamW's single-tensor step, op for op (lerp for exp_avg, addcmul for exp_avg_sq,
// sqrt(v) / bc2_sqrt + eps, addcdiv), over flat parameter / gradient / moment buffers. The
// gradient is first multiplied by grad_scale[0] (clip_grad_norm_'s coefficient; 1 without clipping),
// as torch's in-place clipping does, without a separate pass. The outputs may be the inputs' own
// buffers (the primitive donates p, m, v): every index is read before it is written, and no pointer is
// __restrict.
inline void adamw_flat(const float* p, const float* grad, const float* m, const float* v, const float* grad_scale,
                       float* p_out, float* m_out, float* v_out, int64_t size, const std::vector<float>& k) {
  const float b1 = k[0], b2 = k[1], decay = k[2], step_size = k[3], bc2_sqrt = k[4], eps = k[5];
  const float one_minus_b1 = 1.0f - b1, one_minus_b2 = 1.0f - b2, scale = grad_scale[0];
  parallel_rows(size / 4096 + (size % 4096 != 0), 4096, [=](int, int64_t r0, int64_t r1) {
    const int64_t end = std::min(size, r1 * 4096);
    // 16-wide chunks through locals: GCC vectorises this form; the plain loop over the seven
    // buffers compiled to scalar code (1.78 vs 0.97 ns per element in cache)
    constexpr int W = 16;
    int64_t i = r0 * 4096;
    for (; i + W <= end; i += W) {
      float pi[W], mi[W], vi[W];
      for (int j = 0; j < W; ++j) {
        const float gj = grad[i + j] * scale;
        mi[j] = m[i + j] + one_minus_b1 * (gj - m[i + j]);
        vi[j] = b2 * v[i + j] + one_minus_b2 * (gj * gj);
        pi[j] = p[i + j] * decay - step_size * (mi[j] / (std::sqrt(vi[j]) / bc2_sqrt + eps));
      }
      for (int j = 0; j < W; ++j) {
        m_out[i + j] = mi[j];
        v_out[i + j] = vi[j];
        p_out[i + j] = pi[j];
      }
    }
    for (; i < end; ++i) {
      const float gi = grad[i] * scale;
      const float mi = m[i] + one_minus_b1 * (gi - m[i]);
      const float vi = b2 * v[i] + one_minus_b2 * (gi * gi);
      m_out[i] = mi;
      v_out[i] = vi;
      p_out[i] = p[i] * decay - step_size * (mi / (std::sqrt(vi) / bc2_sqrt + eps));
    }
  });
}

}  // namespace bridge
