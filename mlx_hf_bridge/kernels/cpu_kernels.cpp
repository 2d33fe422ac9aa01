// Vectorised, multi-threaded CPU kernels for the row-wise ops that dominate an encoder step on
// MLX's CPU backend (softmax, exact-GELU GeGLU, LayerNorm), forward and backward.
//
// Why: MLX's x86 CPU backend evaluates transcendental elementwise ops one scalar at a time on one
// thread (mx.exp ~76 M elements/s here), so these ops cost more than the encoder's GEMMs. The
// loops below are written branch-free so the compiler vectorises them (-O3 -march=native), and
// rows are split over the CPU cores. Gradients are wired in Python (mx.custom_function), so each
// primitive only needs eval_cpu. float32 only; the Python side falls back to MLX ops otherwise.

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <stdexcept>
#include <thread>
#include <vector>

#include <nanobind/nanobind.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/variant.h>
#include <nanobind/stl/vector.h>
#include <sched.h>

#include "mlx/backend/cpu/encoder.h"
#include "mlx/mlx.h"
#include "mlx/primitives.h"

namespace mx = mlx::core;
namespace nb = nanobind;

namespace {

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

int usable_threads() {
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
void parallel_rows(int64_t rows, int64_t row_cost, const std::function<void(int, int64_t, int64_t)>& fn) {
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

void softmax_rows(const float* x, float* y, int64_t rows, int64_t n) {
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

void softmax_backward_rows(const float* y, const float* g, float* dx, int64_t rows, int64_t n) {
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
void geglu_rows(const float* hg, float* out, int64_t rows, int64_t n) {
  parallel_rows(rows, 2 * n, [=](int, int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* __restrict h = hg + r * 2 * n;
      const float* __restrict gate = h + n;
      float* __restrict o = out + r * n;
      for (int64_t i = 0; i < n; ++i) o[i] = 0.5f * h[i] * (1.0f + erf_vec(h[i] * kSqrt1_2)) * gate[i];
    }
  });
}

void geglu_backward_rows(const float* hg, const float* g, float* dhg, int64_t rows, int64_t n) {
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

void gelu_rows(const float* __restrict x, float* __restrict y, int64_t size) {
  parallel_rows(size / 4096 + (size % 4096 != 0), 4096, [=](int, int64_t r0, int64_t r1) {
    const int64_t end = std::min(size, r1 * 4096);
    for (int64_t i = r0 * 4096; i < end; ++i) y[i] = 0.5f * x[i] * (1.0f + erf_vec(x[i] * kSqrt1_2));
  });
}

void gelu_backward_rows(const float* __restrict x, const float* __restrict g, float* __restrict dx, int64_t size) {
  parallel_rows(size / 4096 + (size % 4096 != 0), 4096, [=](int, int64_t r0, int64_t r1) {
    const int64_t end = std::min(size, r1 * 4096);
    for (int64_t i = r0 * 4096; i < end; ++i) {
      const float cdf = 0.5f * (1.0f + erf_vec(x[i] * kSqrt1_2));
      dx[i] = g[i] * (cdf + x[i] * exp_vec(-0.5f * x[i] * x[i]) * kInvSqrt2Pi);
    }
  });
}

// y = (x - mean) * rstd * w (+ b); mean/rstd in float, two passes as torch does.
void layer_norm_rows(const float* x, const float* w, const float* b, float* y, int64_t rows, int64_t n, float eps) {
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
void layer_norm_backward_rows(const float* x, const float* w, const float* g, float* dx, float* dw, float* db,
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

// torch.optim.AdamW's single-tensor step, op for op (lerp for exp_avg, addcmul for exp_avg_sq,
// sqrt(v) / bc2_sqrt + eps, addcdiv), over flat parameter / gradient / moment buffers.
void adamw_flat(const float* __restrict p, const float* __restrict g, const float* __restrict m,
                const float* __restrict v, float* __restrict p_out, float* __restrict m_out, float* __restrict v_out,
                int64_t size, const std::vector<float>& k) {
  const float b1 = k[0], b2 = k[1], decay = k[2], step_size = k[3], bc2_sqrt = k[4], eps = k[5];
  const float one_minus_b1 = 1.0f - b1, one_minus_b2 = 1.0f - b2;
  parallel_rows(size / 4096 + (size % 4096 != 0), 4096, [=](int, int64_t r0, int64_t r1) {
    const int64_t end = std::min(size, r1 * 4096);
    for (int64_t i = r0 * 4096; i < end; ++i) {
      const float mi = m[i] + one_minus_b1 * (g[i] - m[i]);
      const float vi = b2 * v[i] + one_minus_b2 * (g[i] * g[i]);
      m_out[i] = mi;
      v_out[i] = vi;
      p_out[i] = p[i] * decay - step_size * (mi / (std::sqrt(vi) / bc2_sqrt + eps));
    }
  });
}

// ------------------------------------------------------------------------------------------
// One MLX primitive for all of them.

enum class Op : int {
  Softmax,
  SoftmaxBackward,
  Gelu,
  GeluBackward,
  Geglu,
  GegluBackward,
  LayerNorm,
  LayerNormBackward,
  AdamW
};

const char* op_name(Op op) {
  switch (op) {
    case Op::Softmax: return "BridgeSoftmax";
    case Op::SoftmaxBackward: return "BridgeSoftmaxBackward";
    case Op::Gelu: return "BridgeGelu";
    case Op::GeluBackward: return "BridgeGeluBackward";
    case Op::Geglu: return "BridgeGeglu";
    case Op::GegluBackward: return "BridgeGegluBackward";
    case Op::LayerNorm: return "BridgeLayerNorm";
    case Op::LayerNormBackward: return "BridgeLayerNormBackward";
    case Op::AdamW: return "BridgeAdamW";
  }
  return "BridgeKernel";
}

class RowKernel : public mx::Primitive {
 public:
  // params: eps for LayerNorm; b1, b2, decay, step_size, bc2_sqrt, eps for AdamW.
  RowKernel(mx::Stream stream, Op op, std::vector<float> params)
      : mx::Primitive(stream), op_(op), params_(std::move(params)) {}

  void eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) override {
    for (auto& in : inputs) {
      if (in.dtype() != mx::float32 || !in.flags().row_contiguous)
        throw std::invalid_argument(std::string(op_name(op_)) + ": inputs must be row-contiguous float32");
    }
    for (auto& out : outputs) out.set_data(mx::allocator::malloc(out.nbytes()));
    auto& encoder = mx::cpu::get_command_encoder(stream());
    for (auto& in : inputs) encoder.set_input_array(in);
    for (auto& out : outputs) encoder.set_output_array(out);

    std::vector<const float*> in;
    for (auto& a : inputs) in.push_back(a.data<float>());
    std::vector<float*> out;
    for (auto& a : outputs) out.push_back(a.data<float>());
    const int64_t n = inputs[0].shape(-1);
    const int64_t rows = n == 0 ? 0 : static_cast<int64_t>(inputs[0].size()) / n;
    const Op op = op_;
    const std::vector<float> k = params_;
    const float eps = k.empty() ? 0.0f : k[0];
    const size_t n_in = inputs.size();
    encoder.dispatch([in, out, n, rows, op, k, eps, n_in]() {
      switch (op) {
        case Op::Softmax: softmax_rows(in[0], out[0], rows, n); break;
        case Op::SoftmaxBackward: softmax_backward_rows(in[0], in[1], out[0], rows, n); break;
        case Op::Gelu: gelu_rows(in[0], out[0], rows * n); break;
        case Op::GeluBackward: gelu_backward_rows(in[0], in[1], out[0], rows * n); break;
        case Op::Geglu: geglu_rows(in[0], out[0], rows, n / 2); break;
        case Op::GegluBackward: geglu_backward_rows(in[0], in[1], out[0], rows, n / 2); break;
        case Op::LayerNorm:
          layer_norm_rows(in[0], in[1], n_in > 2 ? in[2] : nullptr, out[0], rows, n, eps);
          break;
        case Op::LayerNormBackward:
          layer_norm_backward_rows(in[0], in[1], in[2], out[0], out[1], out.size() > 2 ? out[2] : nullptr, rows, n,
                                   eps);
          break;
        case Op::AdamW: adamw_flat(in[0], in[1], in[2], in[3], out[0], out[1], out[2], rows * n, k); break;
      }
    });
  }

  void eval_gpu(const std::vector<mx::array>&, std::vector<mx::array>&) override {
    throw std::runtime_error(std::string(op_name(op_)) + " is a CPU kernel; use MLX ops on the GPU");
  }

  const char* name() const override { return op_name(op_); }

  bool is_equivalent(const mx::Primitive& other) const override {
    auto* o = dynamic_cast<const RowKernel*>(&other);
    return o != nullptr && o->op_ == op_ && o->params_ == params_;
  }

 private:
  Op op_;
  std::vector<float> params_;
};

mx::array row_contiguous(const mx::array& a, const mx::Stream& s) {
  return mx::contiguous(mx::astype(a, mx::float32, s), false, s);
}

std::vector<mx::array> make(Op op, std::vector<mx::array> inputs, std::vector<mx::Shape> shapes,
                            std::vector<float> params = {}) {
  if (inputs[0].ndim() == 0) throw std::invalid_argument(std::string(op_name(op)) + ": needs at least one axis");
  auto s = mx::to_stream(mx::Device::cpu);
  for (auto& a : inputs) a = row_contiguous(a, s);
  std::vector<mx::Dtype> dtypes(shapes.size(), mx::float32);
  return mx::array::make_arrays(std::move(shapes), dtypes, std::make_shared<RowKernel>(s, op, std::move(params)), inputs);
}

mx::Shape half_last(const mx::array& a) {
  auto shape = a.shape();
  if (shape.empty() || shape.back() % 2 != 0) throw std::invalid_argument("geglu: last axis must be even ([h | gate])");
  shape.back() /= 2;
  return shape;
}

}  // namespace

NB_MODULE(_cpu_kernels, m) {
  m.doc() = "mlx_hf_bridge vectorised CPU kernels (float32, last axis)";
  m.def("softmax", [](const mx::array& x) { return make(Op::Softmax, {x}, {x.shape()})[0]; }, nb::arg("x"));
  m.def(
      "softmax_backward",
      [](const mx::array& y, const mx::array& g) { return make(Op::SoftmaxBackward, {y, g}, {y.shape()})[0]; },
      nb::arg("y"), nb::arg("cotangent"));
  m.def("gelu", [](const mx::array& x) { return make(Op::Gelu, {x}, {x.shape()})[0]; }, nb::arg("x"));
  m.def(
      "gelu_backward",
      [](const mx::array& x, const mx::array& g) { return make(Op::GeluBackward, {x, g}, {x.shape()})[0]; },
      nb::arg("x"), nb::arg("cotangent"));
  m.def("geglu", [](const mx::array& hg) { return make(Op::Geglu, {hg}, {half_last(hg)})[0]; }, nb::arg("hg"));
  m.def(
      "geglu_backward",
      [](const mx::array& hg, const mx::array& g) { return make(Op::GegluBackward, {hg, g}, {hg.shape()})[0]; },
      nb::arg("hg"), nb::arg("cotangent"));
  m.def(
      "layer_norm",
      [](const mx::array& x, const mx::array& w, std::optional<mx::array> b, float eps) {
        std::vector<mx::array> in = {x, w};
        if (b) in.push_back(*b);
        return make(Op::LayerNorm, in, {x.shape()}, {eps})[0];
      },
      nb::arg("x"), nb::arg("weight"), nb::arg("bias").none(), nb::arg("eps"));
  m.def(
      "layer_norm_backward",
      [](const mx::array& x, const mx::array& w, const mx::array& g, bool with_bias, float eps) {
        std::vector<mx::Shape> shapes = {x.shape(), w.shape()};
        if (with_bias) shapes.push_back(w.shape());
        return make(Op::LayerNormBackward, {x, w, g}, shapes, {eps});
      },
      nb::arg("x"), nb::arg("weight"), nb::arg("cotangent"), nb::arg("with_bias"), nb::arg("eps"));
  m.def(
      "adamw",
      [](const mx::array& p, const mx::array& g, const mx::array& m, const mx::array& v, float b1, float b2,
         float decay, float step_size, float bc2_sqrt, float eps) {
        if (g.shape() != p.shape() || m.shape() != p.shape() || v.shape() != p.shape())
          throw std::invalid_argument("adamw: parameter, gradient and moments must have one shape");
        return make(Op::AdamW, {p, g, m, v}, {p.shape(), p.shape(), p.shape()}, {b1, b2, decay, step_size, bc2_sqrt, eps});
      },
      nb::arg("param"), nb::arg("grad"), nb::arg("exp_avg"), nb::arg("exp_avg_sq"), nb::arg("beta1"),
      nb::arg("beta2"), nb::arg("decay_factor"), nb::arg("step_size"), nb::arg("bias_correction2_sqrt"),
      nb::arg("eps"));
  m.def("threads", &usable_threads);
}
