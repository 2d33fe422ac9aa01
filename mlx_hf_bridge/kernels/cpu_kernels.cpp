// Vectorised, multi-threaded CPU kernels for the row-wise ops that dominate an encoder step on
// MLX's CPU backend (softmax, exact GELU / GeGLU, LayerNorm; forward and backward) and AdamW.
//
// Why: MLX's x86 CPU backend evaluates transcendental elementwise ops one scalar at a time on one
// thread (mx.exp ~76 M elements/s here), so these ops cost more than the encoder's GEMMs. The
// loops (row_kernels.h) are written branch-free so the compiler vectorises them (-O3 -march=native), and
// rows are split over the CPU cores. Gradients are wired in Python (mx.custom_function), so each
// primitive only needs eval_cpu. float32 only; the Python side falls back to MLX ops otherwise.

#include <stdexcept>
#include <vector>

#include <nanobind/nanobind.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/variant.h>
#include <nanobind/stl/vector.h>

#include "mlx/backend/cpu/encoder.h"
#include "mlx/mlx.h"
#include "mlx/primitives.h"
#include "attention.h"
#include "maxsim.h"
#include "row_kernels.h"

namespace mx = mlx::core;
namespace nb = nanobind;

namespace {

using namespace bridge;

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
  SumSquares,
  AdamW,
  MaxSim,
  MaxSimBackward
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
    case Op::SumSquares: return "BridgeSumSquares";
    case Op::AdamW: return "BridgeAdamW";
    case Op::MaxSim: return "BridgeMaxSim";
    case Op::MaxSimBackward: return "BridgeMaxSimBackward";
  }
  return "BridgeKernel";
}

// What every primitive here does first in eval_cpu: check the inputs, allocate the outputs, register
// both with the CPU encoder, and hand back their float pointers for the dispatched loop.
struct BoundArrays {
  std::vector<const float*> in;
  std::vector<float*> out;
};

// donors[i] >= 0: output i may take over input donors[i]'s buffer when nothing else holds it (MLX's
// own donation rule), for kernels that read each element before writing it: an in-place update
// instead of a fresh allocation, whose first touch costs a page fault per 4 KiB.
BoundArrays bind_arrays(const std::string& name, const mx::Stream& stream, const std::vector<mx::array>& inputs,
                        std::vector<mx::array>& outputs, const std::vector<int>& donors = {}) {
  for (auto& in : inputs) {
    if (in.dtype() != mx::float32 || !in.flags().row_contiguous)
      throw std::invalid_argument(name + ": inputs must be row-contiguous float32");
  }
  if (!donors.empty() && !outputs[0].is_tracer()) {
    // Each output of a multi-output primitive holds its own copy of the inputs, so an input that
    // nothing else holds still has one reference per output and is_donatable() says no. MLX drops
    // all those copies right after eval (detach); the other outputs' copies go now instead.
    for (auto& out : outputs) {
      if (&out.inputs() != &inputs) out.inputs().clear();
    }
  }
  for (size_t i = 0; i < outputs.size(); ++i) {
    auto& out = outputs[i];
    const int donor = i < donors.size() ? donors[i] : -1;
    if (donor >= 0 && inputs[donor].is_donatable() && inputs[donor].nbytes() == out.nbytes()) {
      out.copy_shared_buffer(inputs[donor]);
    } else {
      out.set_data(mx::allocator::malloc(out.nbytes()));
    }
  }
  auto& encoder = mx::cpu::get_command_encoder(stream);
  for (auto& in : inputs) encoder.set_input_array(in);
  for (auto& out : outputs) encoder.set_output_array(out);
  BoundArrays bound;
  for (auto& a : inputs) bound.in.push_back(a.data<float>());
  for (auto& a : outputs) bound.out.push_back(a.data<float>());
  return bound;
}

class RowKernel : public mx::Primitive {
 public:
  // params: eps for LayerNorm; b1, b2, decay, step_size, bc2_sqrt, eps for AdamW; A, S, B, T (, H)
  // for MaxSim (and its backward).
  RowKernel(mx::Stream stream, Op op, std::vector<float> params)
      : mx::Primitive(stream), op_(op), params_(std::move(params)) {}

  void eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) override {
    // AdamW reads p, m, v at an index before it writes p', m', v' there: it may update in place
    const std::vector<int> donors = op_ == Op::AdamW ? std::vector<int>{0, 2, 3} : std::vector<int>{};
    const BoundArrays bound = bind_arrays(op_name(op_), stream(), inputs, outputs, donors);
    const std::vector<const float*>& in = bound.in;
    const std::vector<float*>& out = bound.out;
    const int64_t n = inputs[0].shape(-1);
    const int64_t rows = n == 0 ? 0 : static_cast<int64_t>(inputs[0].size()) / n;
    const Op op = op_;
    const std::vector<float> k = params_;
    const float eps = k.empty() ? 0.0f : k[0];
    const size_t n_in = inputs.size();
    mx::cpu::get_command_encoder(stream()).dispatch([in, out, n, rows, op, k, eps, n_in]() {
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
        case Op::SumSquares: sum_squares_flat(in[0], out[0], rows * n); break;
        case Op::AdamW: adamw_flat(in[0], in[1], in[2], in[3], in[4], out[0], out[1], out[2], rows * n, k); break;
        case Op::MaxSim: maxsim_rows(in[0], in[1], in[2], out[0], out[1], k[0], k[1], k[2], k[3]); break;
        case Op::MaxSimBackward:
          maxsim_backward(in[0], in[1], in[2], in[3], in[4], in[5], out[0], out[1], k[0], k[1], k[2], k[3], k[4]);
          break;
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
  // An evaluated, row-contiguous float32 input is used as it is (no copy node in the graph).
  if (a.is_available() && a.dtype() == mx::float32 && a.flags().row_contiguous) return a;
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

// Fused attention (attention.h): forward (qkv, key mask, segment ids, seed) -> (out, lse); backward
// (qkv, key mask, segment ids, seed, out, lse, d_out) -> d_qkv. seed: two float32 values < 2^16, the
// dropout mask's key (read when the kernel runs, so one compiled graph serves every step).
class AttentionKernel : public mx::Primitive {
 public:
  AttentionKernel(mx::Stream stream, bool backward, int heads, int window, float theta, float dropout)
      : mx::Primitive(stream), backward_(backward), heads_(heads), window_(window), theta_(theta),
        dropout_(dropout) {}

  void eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) override {
    const BoundArrays bound = bind_arrays(name(), stream(), inputs, outputs);
    const std::vector<const float*>& in = bound.in;
    const std::vector<float*>& out = bound.out;
    const auto& qkv = inputs[0];
    const int64_t B = qkv.shape(0), L = qkv.shape(1), H = heads_, D = qkv.shape(2) / (3 * H);
    const float* rope = theta_ > 0 ? rope_table(L, D, theta_) : nullptr;
    const AttentionShape base{B, L, H, D, window_, 1.0f / std::sqrt(static_cast<float>(D)), rope, dropout_, 0};
    const bool backward = backward_;
    mx::cpu::get_command_encoder(stream()).dispatch([in, out, base, backward]() {
      AttentionShape shape = base;
      shape.seed = static_cast<uint32_t>(in[3][0]) | (static_cast<uint32_t>(in[3][1]) << 16);
      if (backward) {
        attention_backward(in[0], in[1], in[2], in[4], in[5], in[6], out[0], shape);
      } else {
        attention_forward(in[0], in[1], in[2], out[0], out[1], shape);
      }
    });
  }

  void eval_gpu(const std::vector<mx::array>&, std::vector<mx::array>&) override {
    throw std::runtime_error("BridgeAttention is a CPU kernel; use MLX ops on the GPU");
  }

  const char* name() const override { return backward_ ? "BridgeAttentionBackward" : "BridgeAttention"; }

  bool is_equivalent(const mx::Primitive& other) const override {
    auto* o = dynamic_cast<const AttentionKernel*>(&other);
    return o != nullptr && o->backward_ == backward_ && o->heads_ == heads_ && o->window_ == window_ &&
           o->theta_ == theta_ && o->dropout_ == dropout_;
  }

 private:
  bool backward_;
  int heads_, window_;
  float theta_, dropout_;
};

std::vector<mx::array> make_attention(bool backward, std::vector<mx::array> inputs, int heads, int window, float theta,
                                      float dropout) {
  const auto& qkv = inputs[0];
  if (qkv.ndim() != 3 || heads <= 0 || qkv.shape(2) % (3 * heads) != 0 || (qkv.shape(2) / (3 * heads)) % kVec != 0)
    throw std::invalid_argument("attention: qkv must be (B, L, 3 * heads * head_dim), head_dim a multiple of " +
                                std::to_string(kVec));
  if (inputs[1].shape() != mx::Shape{qkv.shape(0), qkv.shape(1)} || inputs[2].shape() != inputs[1].shape())
    throw std::invalid_argument("attention: key mask and segment ids must be (B, L)");
  if (inputs[3].shape() != mx::Shape{2}) throw std::invalid_argument("attention: seed must hold 2 values");
  if (!(dropout >= 0.0f && dropout < 1.0f)) throw std::invalid_argument("attention: dropout must be in [0, 1)");
  auto s = mx::to_stream(mx::Device::cpu);
  for (auto& a : inputs) a = row_contiguous(a, s);
  const int B = qkv.shape(0), L = qkv.shape(1), HD = qkv.shape(2) / 3;
  std::vector<mx::Shape> shapes = backward ? std::vector<mx::Shape>{qkv.shape()}
                                           : std::vector<mx::Shape>{{B, L, HD}, {B, heads, L}};
  std::vector<mx::Dtype> dtypes(shapes.size(), mx::float32);
  return mx::array::make_arrays(std::move(shapes), dtypes,
                                std::make_shared<AttentionKernel>(s, backward, heads, window, theta, dropout), inputs);
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
      "maxsim",
      [](const mx::array& sims, const mx::array& qmask, const mx::array& dmask) {
        if (sims.ndim() != 4 || qmask.shape() != mx::Shape{sims.shape(0), sims.shape(1)} ||
            dmask.shape() != mx::Shape{sims.shape(2), sims.shape(3)} || sims.shape(3) == 0)
          throw std::invalid_argument("maxsim: sims (A, S, B, T) with masks (A, S) and (B, T)");
        const mx::Shape out = {sims.shape(0), sims.shape(1), sims.shape(2)};
        std::vector<float> k = {float(sims.shape(0)), float(sims.shape(1)), float(sims.shape(2)), float(sims.shape(3))};
        return make(Op::MaxSim, {sims, qmask, dmask}, {out, out}, k);
      },
      nb::arg("sims"), nb::arg("query_mask"), nb::arg("document_mask"));
  m.def(
      "maxsim_backward",
      [](const mx::array& q, const mx::array& d, const mx::array& argmax, const mx::array& g, const mx::array& qmask,
         const mx::array& dmask) {
        const int A = q.shape(0), S = q.shape(1), H = q.shape(2), B = d.shape(0), T = d.shape(1);
        std::vector<float> k = {float(A), float(S), float(B), float(T), float(H)};
        return make(Op::MaxSimBackward, {q, d, argmax, g, qmask, dmask}, {q.shape(), d.shape()}, k);
      },
      nb::arg("q"), nb::arg("d"), nb::arg("argmax"), nb::arg("cotangent"), nb::arg("query_mask"),
      nb::arg("document_mask"));
  m.def(
      "sum_squares", [](const mx::array& x) { return make(Op::SumSquares, {mx::flatten(x)}, {mx::Shape{}})[0]; },
      nb::arg("x"));
  m.def(
      "adamw",
      [](const mx::array& p, const mx::array& g, const mx::array& m, const mx::array& v, const mx::array& grad_scale,
         float b1, float b2, float decay, float step_size, float bc2_sqrt, float eps) {
        if (g.shape() != p.shape() || m.shape() != p.shape() || v.shape() != p.shape())
          throw std::invalid_argument("adamw: parameter, gradient and moments must have one shape");
        if (grad_scale.size() != 1) throw std::invalid_argument("adamw: grad_scale must hold one value");
        return make(Op::AdamW, {p, g, m, v, mx::reshape(grad_scale, {1})}, {p.shape(), p.shape(), p.shape()},
                    {b1, b2, decay, step_size, bc2_sqrt, eps});
      },
      nb::arg("param"), nb::arg("grad"), nb::arg("exp_avg"), nb::arg("exp_avg_sq"), nb::arg("grad_scale"),
      nb::arg("beta1"), nb::arg("beta2"), nb::arg("decay_factor"), nb::arg("step_size"),
      nb::arg("bias_correction2_sqrt"), nb::arg("eps"));
  m.def(
      "attention",
      [](const mx::array& qkv, const mx::array& mask, const mx::array& segments, const mx::array& seed, int heads,
         int window, float theta, float dropout) {
        return make_attention(false, {qkv, mask, segments, seed}, heads, window, theta, dropout);
      },
      nb::arg("qkv"), nb::arg("key_mask"), nb::arg("segments"), nb::arg("seed"), nb::arg("heads"), nb::arg("window"),
      nb::arg("rope_theta"), nb::arg("dropout"));
  m.def(
      "attention_backward",
      [](const mx::array& qkv, const mx::array& mask, const mx::array& segments, const mx::array& seed,
         const mx::array& out, const mx::array& lse, const mx::array& d_out, int heads, int window, float theta,
         float dropout) {
        return make_attention(true, {qkv, mask, segments, seed, out, lse, d_out}, heads, window, theta, dropout)[0];
      },
      nb::arg("qkv"), nb::arg("key_mask"), nb::arg("segments"), nb::arg("seed"), nb::arg("out"), nb::arg("lse"),
      nb::arg("cotangent"), nb::arg("heads"), nb::arg("window"), nb::arg("rope_theta"), nb::arg("dropout"));
  m.def("threads", &usable_threads);
}
