// Fused encoder attention for the CPU: RoPE, scaled Q K^T, key-padding and sliding-window masks,
// softmax and P V in one pass per (batch, head), read straight from the fused QKV projection
// (B, L, 3, H, D) and written straight in the (B, L, H, D) layout the output projection reads.
// Rows may hold several sequences packed end to end (segment ids): each token then attends only
// within its own segment and RoPE positions restart at every segment's first token.
// The backward pass recomputes the probabilities from the saved log-sum-exp (FlashAttention-2
// style) and returns d(qkv) in the projection's layout, RoPE undone.
// Attention-probability dropout (BERT's 0.1 when training): P -> P * M / (1 - p) with M drawn from a
// counter-based hash of (seed, batch-head, query, key), so the backward regenerates the same mask
// instead of storing it; delta = rowsum(dO * O) stays the softmax correction with the dropped O.
//
// Why: composed from MLX ops the attention core costs ~2.3x torch's fused CPU SDPA (batched
// GEMMs issued one (batch, head) at a time, transposes, the mask add and the RoPE on MLX's
// one-thread elementwise path). Here every (batch, head) is one task on one core, with a
// register-blocked GEMM written with GCC/Clang vector extensions (AVX-512 / AVX2 / NEON).
#pragma once

#include <cmath>
#include <cstring>
#include <map>
#include <mutex>
#include <tuple>
#include <vector>

#include "row_kernels.h"

namespace bridge {

#if defined(__AVX512F__)
constexpr int kVec = 16;
constexpr int kMR = 6;  // 12 accumulators + 2 B vectors + 1 broadcast of 32 registers
#elif defined(__AVX__)
constexpr int kVec = 8;
constexpr int kMR = 4;  // 8 accumulators of 16 registers
#else
constexpr int kVec = 4;
constexpr int kMR = 4;
#endif
constexpr int kNR = 2 * kVec;
typedef float vecf __attribute__((vector_size(kVec * sizeof(float))));

__attribute__((always_inline)) inline vecf vload(const float* p) {
  vecf v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
__attribute__((always_inline)) inline void vstore(float* p, vecf v) { std::memcpy(p, &v, sizeof v); }

// C[M x N] (+)= A[M x K] B[K x N]. A(i, k) = a[i * ras + k * cas] (row-major or transposed);
// row k of B starts at b + k * ldb and is contiguous. N must be a multiple of kVec.
template <int R>
inline void gemm_rows(int64_t N, int64_t K, const float* a, int64_t ras, int64_t cas, const float* b, int64_t ldb,
                      float* c, int64_t ldc, bool accumulate) {
  int64_t j = 0;
  for (; j + kNR <= N; j += kNR) {
    vecf c0[R], c1[R];
    for (int r = 0; r < R; ++r) c0[r] = c1[r] = vecf{};
    for (int64_t k = 0; k < K; ++k) {
      const vecf b0 = vload(b + k * ldb + j), b1 = vload(b + k * ldb + j + kVec);
      for (int r = 0; r < R; ++r) {
        const float ar = a[r * ras + k * cas];
        c0[r] += ar * b0;
        c1[r] += ar * b1;
      }
    }
    for (int r = 0; r < R; ++r) {
      float* cr = c + r * ldc + j;
      if (accumulate) {
        c0[r] += vload(cr);
        c1[r] += vload(cr + kVec);
      }
      vstore(cr, c0[r]);
      vstore(cr + kVec, c1[r]);
    }
  }
  for (; j < N; j += kVec) {
    vecf c0[R];
    for (int r = 0; r < R; ++r) c0[r] = vecf{};
    for (int64_t k = 0; k < K; ++k) {
      const vecf b0 = vload(b + k * ldb + j);
      for (int r = 0; r < R; ++r) c0[r] += a[r * ras + k * cas] * b0;
    }
    for (int r = 0; r < R; ++r) {
      float* cr = c + r * ldc + j;
      vstore(cr, accumulate ? c0[r] + vload(cr) : c0[r]);
    }
  }
}

inline void gemm(int64_t M, int64_t N, int64_t K, const float* a, int64_t ras, int64_t cas, const float* b,
                 int64_t ldb, float* c, int64_t ldc, bool accumulate) {
  int64_t i = 0;
  for (; i + kMR <= M; i += kMR) gemm_rows<kMR>(N, K, a + i * ras, ras, cas, b, ldb, c + i * ldc, ldc, accumulate);
  // the last M % kMR rows in one block (one row at a time would leave the FMA units idle)
  const float* ai = a + i * ras;
  float* ci = c + i * ldc;
  switch (M - i) {
    case 5: gemm_rows<5>(N, K, ai, ras, cas, b, ldb, ci, ldc, accumulate); break;
    case 4: gemm_rows<4>(N, K, ai, ras, cas, b, ldb, ci, ldc, accumulate); break;
    case 3: gemm_rows<3>(N, K, ai, ras, cas, b, ldb, ci, ldc, accumulate); break;
    case 2: gemm_rows<2>(N, K, ai, ras, cas, b, ldb, ci, ldc, accumulate); break;
    case 1: gemm_rows<1>(N, K, ai, ras, cas, b, ldb, ci, ldc, accumulate); break;
    default: break;
  }
}

inline int64_t round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

// HF's RoPE tables (rotate_half form), computed in float32 as transformers does:
// inv_freq = 1 / theta^(2i / D), angle = pos * inv_freq. Row i holds [cos (D/2) | sin (D/2)] of
// position i, so a table serves every length up to its rows. Cached per (D, theta) at power-of-two
// row counts: few tables whatever the (packed) lengths, and a table is never changed once made, so a
// kernel still running on an older, shorter one is safe.
inline const float* rope_table(int64_t L, int64_t D, float theta) {
  static std::mutex lock;
  static std::map<std::tuple<int64_t, int64_t, float>, std::vector<float>> tables;
  int64_t rows = 64;
  while (rows < L) rows *= 2;
  std::lock_guard<std::mutex> guard(lock);
  auto& t = tables[{rows, D, theta}];
  if (t.empty()) {
    const int64_t half = D / 2;
    t.resize(static_cast<size_t>(rows * D));
    for (int64_t d = 0; d < half; ++d) {
      const float inv = 1.0f / std::pow(theta, static_cast<float>(2 * d) / static_cast<float>(D));
      for (int64_t i = 0; i < rows; ++i) {
        const float angle = static_cast<float>(i) * inv;
        t[i * D + d] = std::cos(angle);
        t[i * D + half + d] = std::sin(angle);
      }
    }
  }
  return t.data();
}

struct AttentionShape {
  int64_t B, L, H, D;
  int64_t window;  // a query sees keys with |i - j| <= window; < 0: every key
  float scale;
  const float* rope;  // rope_table(...) or nullptr (no rotary embedding)
  float dropout = 0.0f;  // attention-probability dropout p (0: none)
  uint32_t seed = 0;
};

// Chris Wellons' lowbias32 integer hash: well mixed, branch-free, vectorises.
__attribute__((always_inline)) inline uint32_t mix32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352dU;
  x ^= x >> 15;
  x *= 0x846ca68bU;
  x ^= x >> 16;
  return x;
}

// Multiplies p[0, n) (keys k0 .. k0 + n of query row i, batch-head t) by the dropout mask scaled by
// 1 / (1 - p): each element kept with probability 1 - p, the same draw in forward and backward.
inline void apply_dropout(float* p, int64_t n, int64_t t, int64_t i, int64_t k0, const AttentionShape& s) {
  const uint32_t row = mix32(s.seed ^ mix32(static_cast<uint32_t>(t) * 0x9e3779b1U + static_cast<uint32_t>(i)));
  const uint32_t threshold = static_cast<uint32_t>(static_cast<double>(s.dropout) * 16777216.0);  // of 2^24
  const float keep_scale = 1.0f / (1.0f - s.dropout);
  for (int64_t j = 0; j < n; ++j) {
    const uint32_t u = mix32(row + static_cast<uint32_t>(k0 + j) * 0x85ebca6bU) >> 8;
    p[j] = u >= threshold ? p[j] * keep_scale : 0.0f;
  }
}

// Row i of x (D values) rotated by position i, times `scale` (sign -1: the inverse rotation).
inline void rope_row(const float* x, float* out, int64_t i, const AttentionShape& s, float scale, float sign) {
  const int64_t half = s.D / 2;
  if (s.rope == nullptr) {
    for (int64_t d = 0; d < s.D; ++d) out[d] = x[d] * scale;
    return;
  }
  const float* cs = s.rope + i * s.D;
  const float* sn = cs + half;
  for (int64_t d = 0; d < half; ++d) {
    const float x1 = x[d], x2 = x[d + half], sd = sign * sn[d];
    out[d] = (x1 * cs[d] - x2 * sd) * scale;
    out[d + half] = (x2 * cs[d] + x1 * sd) * scale;
  }
}

// Buffers of one worker, kept across calls: fresh per-task vectors cost more in page faults and
// zero fills than the products themselves.
struct Scratch {
  std::vector<float> qr, kt, kr, v, vt, key_bias, scores, dropped, dp, dq, dk, dv, d_o, delta;
  std::vector<int64_t> seg_lo, seg_hi;  // each token's segment: [seg_lo, seg_hi)
};

inline float* room(std::vector<float>& buffer, int64_t n) {
  if (static_cast<int64_t>(buffer.size()) < n) buffer.resize(n);
  return buffer.data();
}

// One pool for every call (MLX runs a stream's kernels one at a time; the lock covers other streams).
inline std::vector<Scratch>& scratch_pool(std::unique_lock<std::mutex>& guard) {
  static std::mutex lock;
  static std::vector<Scratch> pool(usable_threads());
  guard = std::unique_lock<std::mutex>(lock);
  return pool;
}

// The (batch, head) views every pass shares.
struct HeadTask {
  const AttentionShape& s;
  Scratch& w;
  static constexpr int64_t block = 64;  // query rows per score block
  int64_t b, h, Lp;
  HeadTask(const AttentionShape& shape, Scratch& scratch, int64_t t)
      : s(shape), w(scratch), b(t / shape.H), h(t % shape.H), Lp(round_up(shape.L, kVec) + kNR) {}

  const float* qkv_row(const float* qkv, int64_t i, int part) const {
    return qkv + ((b * s.L + i) * 3 + part) * s.H * s.D + h * s.D;
  }
  int64_t qkv_ld() const { return 3 * s.H * s.D; }
  int64_t out_offset(int64_t i) const { return ((b * s.L + i) * s.H + h) * s.D; }

  // Segment bounds of every token from the (contiguous) segment ids of row b.
  void segment_bounds(const float* segments) {
    const int64_t L = s.L;
    const float* seg = segments + b * L;
    w.seg_lo.resize(L);
    w.seg_hi.resize(L);
    for (int64_t i = 0; i < L; ++i) w.seg_lo[i] = (i > 0 && seg[i] == seg[i - 1]) ? w.seg_lo[i - 1] : i;
    for (int64_t i = L - 1; i >= 0; --i)
      w.seg_hi[i] = (i + 1 < L && seg[i] == seg[i + 1]) ? w.seg_hi[i + 1] : i + 1;
  }
  int64_t position(int64_t i) const { return i - w.seg_lo[i]; }

  // Qr = rope(q) * scale and Kr = rope(k) (L x D each; the backward's dQ = dS K reads Kr),
  // Kt = Kr^T (D x Lp, zero past L), V (L x D) and the key bias (0 / -inf).
  void pack(const float* qkv, const float* mask, const float* segments) {
    const int64_t L = s.L, D = s.D;
    segment_bounds(segments);
    float *qr = room(w.qr, L * D), *kt = room(w.kt, D * Lp), *v = room(w.v, L * D);
    float* kr = room(w.kr, L * D);
    for (int64_t i = 0; i < L; ++i) {
      rope_row(qkv_row(qkv, i, 0), qr + i * D, position(i), s, s.scale, 1.0f);
      rope_row(qkv_row(qkv, i, 1), kr + i * D, position(i), s, 1.0f, 1.0f);
      std::memcpy(v + i * D, qkv_row(qkv, i, 2), D * sizeof(float));
    }
    transpose_rows(kr, kt);
    float* kb = room(w.key_bias, Lp);
    for (int64_t j = 0; j < Lp; ++j) kb[j] = (j < L && mask[b * L + j] != 0.0f) ? 0.0f : -INFINITY;
    room(w.scores, block * Lp);
  }

  // rows (L x D) -> columns (D x Lp), zero past L
  void transpose_rows(const float* rows, float* cols) const {
    const int64_t L = s.L, D = s.D;
    for (int64_t d = 0; d < D; ++d) {
      float* col = cols + d * Lp;
      for (int64_t i = 0; i < L; ++i) col[i] = rows[i * D + d];
      std::memset(col + L, 0, (Lp - L) * sizeof(float));
    }
  }

  // A block of query rows ends at `block` rows or at its segment's end, whichever comes first: a block
  // straddling two packed sequences would score every row against both sequences' keys.
  int64_t block_end(int64_t i0) const { return std::min({s.L, i0 + block, w.seg_hi[i0]}); }

  // The keys row i sees: its segment, within the window; and the keys a block of rows sees.
  std::pair<int64_t, int64_t> row_range(int64_t i) const {
    if (s.window < 0) return {w.seg_lo[i], w.seg_hi[i]};
    return {std::max(w.seg_lo[i], i - s.window), std::min(w.seg_hi[i], i + s.window + 1)};
  }
  std::pair<int64_t, int64_t> key_range(int64_t i0, int64_t i1) const {
    int64_t k0 = s.L, k1 = 0;
    for (int64_t i = i0; i < i1; ++i) {
      const auto [lo, hi] = row_range(i);
      k0 = std::min(k0, lo);
      k1 = std::max(k1, hi);
    }
    return {k0, k1};
  }

  // scores[r, :] = Qr[i0 + r] . Kt[:, k0 : k0 + width]
  void block_scores(int64_t i0, int64_t i1, int64_t k0, int64_t width) {
    gemm(i1 - i0, width, s.D, w.qr.data() + i0 * s.D, s.D, 1, w.kt.data() + k0, Lp, w.scores.data(), Lp, false);
  }
};

inline void attention_forward(const float* qkv, const float* mask, const float* segments, float* out, float* lse,
                              const AttentionShape& s) {
  std::unique_lock<std::mutex> guard;
  auto& pool = scratch_pool(guard);
  parallel_rows(s.B * s.H, s.L * s.L * s.D, [&](int slot, int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      HeadTask task(s, pool[slot], t);
      task.pack(qkv, mask, segments);
      float* lse_bh = lse + t * s.L;
      const float* kb = task.w.key_bias.data();
      for (int64_t i0 = 0, i1; i0 < s.L; i0 = i1) {
        i1 = task.block_end(i0);
        const auto [k0, k1] = task.key_range(i0, i1);
        const int64_t width = round_up(k1 - k0, kVec);
        task.block_scores(i0, i1, k0, width);
        for (int64_t i = i0; i < i1; ++i) {
          float* p = task.w.scores.data() + (i - i0) * task.Lp;
          const auto [lo, hi] = task.row_range(i);
          float* row = p + (lo - k0);
          const int64_t n = hi - lo;
          for (int64_t j = 0; j < n; ++j) row[j] += kb[lo + j];
          const float m = row_max(row, n);
          std::memset(p, 0, (lo - k0) * sizeof(float));  // keys outside the row's range get exactly 0
          std::memset(p + (hi - k0), 0, (width - (hi - k0)) * sizeof(float));
          if (m == -INFINITY) {  // no key visible: output 0, as torch SDPA does
            std::memset(row, 0, n * sizeof(float));
            lse_bh[i] = INFINITY;
            continue;
          }
          for (int64_t j = 0; j < n; ++j) row[j] = exp_vec(row[j] - m);
          const float sum = row_sum(row, n);
          const float inv = 1.0f / sum;
          for (int64_t j = 0; j < n; ++j) row[j] *= inv;
          lse_bh[i] = m + std::log(sum);
          if (s.dropout > 0.0f) apply_dropout(row, n, t, i, lo, s);
        }
        gemm(i1 - i0, s.D, k1 - k0, task.w.scores.data(), task.Lp, 1, task.w.v.data() + k0 * s.D, s.D,
             out + task.out_offset(i0), s.H * s.D, false);
      }
    }
  });
}

inline void attention_backward(const float* qkv, const float* mask, const float* segments, const float* out,
                               const float* lse, const float* d_out, float* d_qkv, const AttentionShape& s) {
  std::unique_lock<std::mutex> guard;
  auto& pool = scratch_pool(guard);
  parallel_rows(s.B * s.H, 3 * s.L * s.L * s.D, [&](int slot, int64_t t0, int64_t t1) {
    const int64_t L = s.L, D = s.D;
    for (int64_t t = t0; t < t1; ++t) {
      HeadTask task(s, pool[slot], t);
      Scratch& w = task.w;
      task.pack(qkv, mask, segments);
      float *vt = room(w.vt, D * task.Lp), *dp = room(w.dp, task.block * task.Lp);
      float *dq = room(w.dq, L * D), *dk = room(w.dk, L * D), *dv = room(w.dv, L * D);
      float *d_o = room(w.d_o, L * D), *delta = room(w.delta, L);
      task.transpose_rows(w.v.data(), vt);
      std::memset(dk, 0, L * D * sizeof(float));
      std::memset(dv, 0, L * D * sizeof(float));
      for (int64_t i = 0; i < L; ++i) {  // this head's output gradient, contiguous; delta = rowsum(dO * O)
        std::memcpy(d_o + i * D, d_out + task.out_offset(i), D * sizeof(float));
        delta[i] = row_dot(d_o + i * D, out + task.out_offset(i), D);
      }
      const float* lse_bh = lse + t * L;
      for (int64_t i0 = 0, i1; i0 < L; i0 = i1) {
        i1 = task.block_end(i0);
        const int64_t rows = i1 - i0;
        const auto [k0, k1] = task.key_range(i0, i1);
        const int64_t width = round_up(k1 - k0, kVec), keys = k1 - k0;
        task.block_scores(i0, i1, k0, width);
        float* scores = w.scores.data();
        for (int64_t i = i0; i < i1; ++i) {  // P = exp(S + key bias - lse), 0 outside the row's keys
          float* p = scores + (i - i0) * task.Lp;
          const auto [lo, hi] = task.row_range(i);
          const float* kb = w.key_bias.data() + k0;
          const float l = lse_bh[i];
          for (int64_t j = 0; j < width; ++j)
            p[j] = (k0 + j >= lo && k0 + j < hi) ? exp_vec(p[j] + kb[j] - l) : 0.0f;
        }
        // dV[k0:k1] += Pd^T dO ; dPd = dO V^T ; dP = dPd M ; dS = P (dP - delta) ; dQ = dS K ; dK += dS^T Qr
        // (Pd = P M: the dropped probabilities the forward multiplied V by; M = 1 without dropout)
        const float* pd = scores;
        if (s.dropout > 0.0f) {
          float* dropped = room(w.dropped, task.block * task.Lp);
          std::memcpy(dropped, scores, rows * task.Lp * sizeof(float));
          for (int64_t i = i0; i < i1; ++i) apply_dropout(dropped + (i - i0) * task.Lp, width, t, i, k0, s);
          pd = dropped;
        }
        gemm(keys, D, rows, pd, 1, task.Lp, d_o + i0 * D, D, dv + k0 * D, D, true);
        gemm(rows, width, D, d_o + i0 * D, D, 1, vt + k0, task.Lp, dp, task.Lp, false);
        const float keep_scale = 1.0f / (1.0f - s.dropout);
        for (int64_t i = i0; i < i1; ++i) {
          const float* p = scores + (i - i0) * task.Lp;
          float* g = dp + (i - i0) * task.Lp;
          const float di = delta[i];
          if (s.dropout > 0.0f) {
            // dP = dPd M / (1 - p), M read off Pd (no second hash): where P = 0, dS is 0 either way
            const float* kept = pd + (i - i0) * task.Lp;
            for (int64_t j = 0; j < width; ++j) g[j] = p[j] * ((kept[j] != 0.0f ? g[j] * keep_scale : 0.0f) - di);
          } else {
            for (int64_t j = 0; j < width; ++j) g[j] = p[j] * (g[j] - di);
          }
        }
        gemm(rows, D, keys, dp, task.Lp, 1, w.kr.data() + k0 * D, D, dq + i0 * D, D, false);
        gemm(keys, D, rows, dp, 1, task.Lp, w.qr.data() + i0 * D, D, dk + k0 * D, D, true);
      }
      const int64_t ld = task.qkv_ld();
      float* dq_out = d_qkv + (task.qkv_row(qkv, 0, 0) - qkv);
      for (int64_t i = 0; i < L; ++i) {  // undo RoPE (rotate by -angle); q carried the scale
        rope_row(dq + i * D, dq_out + i * ld, task.position(i), s, s.scale, -1.0f);
        rope_row(dk + i * D, dq_out + i * ld + s.H * D, task.position(i), s, 1.0f, -1.0f);
        std::memcpy(dq_out + i * ld + 2 * s.H * D, dv + i * D, D * sizeof(float));
      }
    }
  });
}

}  // namespace bridge
