// ColBERT's MaxSim over precomputed similarities, with PyLate's multiplicative masks, and its
// gradient without the (queries x documents x query tokens x document tokens) similarity gradient.
//
// Why: the scoring pass of CachedContrastive materialises sims (A, S, B, T) per chunk (tens of MB);
// composed from MLX ops, the mask products, the max and its VJP (an equality mask, a division, a
// product) each make another pass and allocation of that size. Only one document token per
// (query, document, query token) receives gradient, so the backward is a gather / scatter of
// embedding rows: A * S * B * H multiply-adds instead of two GEMMs over sims.
#pragma once

#include <cmath>
#include <cstring>

#include "row_kernels.h"

namespace bridge {

// sims: (A, S, B, T) = q (A, S, H) . d (B, T, H); value of row (a, s, b) = max_t sims * qmask[a, s] *
// dmask[b, t] (0 where masked, as PyLate multiplies), argmax = the first t that reaches it.
inline void maxsim_rows(const float* sims, const float* qmask, const float* dmask, float* maxes, float* argmax,
                        int64_t A, int64_t S, int64_t B, int64_t T) {
  parallel_rows(A * S * B, T, [=](int, int64_t r0, int64_t r1) {
    std::vector<float> v(T);
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t as = r / B, b = r % B;
      const float qm = qmask[as];
      const float* x = sims + r * T;
      const float* dm = dmask + b * T;
      for (int64_t t = 0; t < T; ++t) v[t] = (x[t] * qm) * dm[t];
      const float best = row_max(v.data(), T);
      int64_t at = 0;
      while (at + 1 < T && !(v[at] == best)) ++at;
      maxes[r] = best;
      argmax[r] = static_cast<float>(at);
    }
  });
}

// g: (A, S, B) cotangent of the maxima. dq[a, s] = sum_b c * d[b, t*]; dd[b, t*] += c * q[a, s], with
// c = g * qmask[a, s] * dmask[b, t*] (the masks' factor in the chain rule).
inline void maxsim_backward(const float* q, const float* d, const float* argmax, const float* g, const float* qmask,
                            const float* dmask, float* dq, float* dd, int64_t A, int64_t S, int64_t B, int64_t T,
                            int64_t H) {
  parallel_rows(A * S, B * H, [=](int, int64_t r0, int64_t r1) {
    for (int64_t as = r0; as < r1; ++as) {
      float* out = dq + as * H;
      std::memset(out, 0, H * sizeof(float));
      for (int64_t b = 0; b < B; ++b) {
        const int64_t r = as * B + b, t = static_cast<int64_t>(argmax[r]);
        const float c = g[r] * qmask[as] * dmask[b * T + t];
        const float* row = d + (b * T + t) * H;
        for (int64_t h = 0; h < H; ++h) out[h] += c * row[h];
      }
    }
  });
  // each worker owns whole documents: no two write the same row (deterministic)
  parallel_rows(B, A * S * H, [=](int, int64_t b0, int64_t b1) {
    std::memset(dd + b0 * T * H, 0, (b1 - b0) * T * H * sizeof(float));
    for (int64_t b = b0; b < b1; ++b) {
      for (int64_t as = 0; as < A * S; ++as) {
        const int64_t r = as * B + b, t = static_cast<int64_t>(argmax[r]);
        const float c = g[r] * qmask[as] * dmask[b * T + t];
        const float* row = q + as * H;
        float* out = dd + (b * T + t) * H;
        for (int64_t h = 0; h < H; ++h) out[h] += c * row[h];
      }
    }
  });
}

}  // namespace bridge
