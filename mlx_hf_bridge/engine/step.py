"""One optimizer step: micro-batch gradients, accumulation, clipping, AdamW, a non-finite guard.

Loss protocol: ``loss(sentence_features, labels) -> scalar`` differentiable w.r.t.
``loss.model``'s trainable parameters; if the loss has ``value_and_grad(features, labels) ->
(loss, grads)`` (e.g. GradCache), that is used instead. Master weights stay fp32; with a compute
dtype the model sees cast copies and the gradients come back as fp32.
"""

from __future__ import annotations

import math
import warnings

import mlx.core as mx
from mlx.utils import tree_flatten, tree_unflatten

from .optim import clip_coefficient, global_norm

_warned: set[str] = set()


class NonFiniteLossError(FloatingPointError):
    """A step's loss or gradient norm was NaN/inf (``cause`` "loss" / "grad_norm"): the update was not
    applied, so the weights are those the step started from. ``cause`` "weights": see the subclass."""

    def __init__(self, message, cause="loss", loss=None, grad_norm=None, applied=False):
        super().__init__(message)
        self.cause, self.loss, self.grad_norm, self.applied = cause, loss, grad_norm, applied


class NonFiniteWeightsError(NonFiniteLossError):
    """The loss and gradient norm were finite but the update made weights NaN/inf (e.g. a huge lr).

    The fused AdamW updates in place, so the previous weights are gone: the model in memory is
    damaged (``model_is_damaged(model)``) and must not be saved; resume from a checkpoint instead.
    """


_DAMAGED = "_mlx_hf_bridge_damaged"


def mark_damaged(model, reason: str):
    object.__setattr__(model, _DAMAGED, reason)  # not an MLX child: a plain attribute


def model_is_damaged(model) -> str | None:
    """Why ``model``'s weights are unusable (a non-finite update), or None. The mark is re-checked
    against the weights, so it goes away once finite weights were loaded back (by any means)."""
    reason = getattr(model, _DAMAGED, None)
    if reason is not None and not _non_finite_arrays(dict(tree_flatten(model.parameters()))):
        object.__delattr__(model, _DAMAGED)
        return None
    return reason


def refuse_if_damaged(model, path):
    """Saving non-finite weights would hand NaN to every later load (PyLate, ST, the Hub): refuse."""
    reason = model_is_damaged(model)
    if reason is not None:
        raise ValueError(
            f"Not saving to {path}: the model's weights are not finite ({reason}). Fix: load a good checkpoint "
            "(trainer.train(resume_from_checkpoint=True) picks the newest good one, or load checkpoint-N with "
            "the model class) and save that.")


def _sums_finite(params: dict):
    """Lazy flag: True when the sum of every floating array is finite. A NaN or inf anywhere makes its
    sum non-finite (IEEE), so True proves all weights finite; one plain sum per array, no temporaries
    (~4x cheaper than isfinite().all()). False may be a sum overflow: confirm with _non_finite_arrays."""
    sums = [v.sum() for v in params.values() if mx.issubdtype(v.dtype, mx.floating)]
    return mx.isfinite(mx.stack(sums).astype(mx.float32)).all() if sums else mx.array(True)


def _non_finite_arrays(params: dict) -> list[str]:
    """The names of the arrays holding a NaN or inf (exact, one isfinite pass per array)."""
    return [k for k, v in params.items() if mx.issubdtype(v.dtype, mx.floating) and not mx.isfinite(v).all().item()]


def warn_once(key: str, message: str):
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


def resolve_compute_dtype(bf16: bool, fp16: bool, device=None):
    """bf16/fp16 -> the dtype the forward/backward runs in (None = fp32), warning once when ignored."""
    if not (bf16 or fp16):
        return None
    device = device if device is not None else mx.default_device()
    if device == mx.cpu:
        warn_once(
            "cpu-half",
            f"{'bf16' if bf16 else 'fp16'}=True: MLX on the CPU has no fast half-precision matmul, so training "
            "computes in float32 (same results, no speed-up). Half precision is used on the GPU.",
        )
        return None
    if fp16 and not bf16:
        warn_once("fp16", "fp16=True: MLX trains in bfloat16 (fp32 master weights); bf16 needs no loss scaling.")
    return mx.bfloat16


def _cast(params: dict, dtype) -> dict:
    if dtype is None:
        return params
    return {k: v.astype(dtype) if mx.issubdtype(v.dtype, mx.floating) else v for k, v in params.items()}


def _set(model, flat: dict):
    model.update(tree_unflatten(list(flat.items())))


class StepRunner:
    """Holds the fp32 master weights of ``model`` and applies HF-semantics optimizer steps."""

    def __init__(self, model, optimizer, max_grad_norm: float, compute_dtype=None, compile: bool = False,
                 clip_prefix: str | None = None):
        self.model, self.optimizer = model, optimizer
        # HF clips model.parameters() only: with a loss that trains its own parameters (SoftmaxLoss's
        # classifier), only names under this prefix enter the norm and are clipped
        self.clip_prefix = clip_prefix
        # ST 5.3's trainer (transformers' loop calls model.zero_grad()) never clears the gradients of a loss's
        # own parameters, so they add up over steps; reproduced when asked (accumulate_outside_prefix)
        self.accumulate_outside_prefix = False
        self._carried: dict | None = None
        self.max_grad_norm = max_grad_norm
        self.compute_dtype = compute_dtype
        self.compile = compile
        self.reducer = None  # a distributed.Reducer under data parallel: gradients averaged over ranks
        self.params = {
            k: v.astype(mx.float32) if mx.issubdtype(v.dtype, mx.floating) else v
            for k, v in tree_flatten(model.trainable_parameters())
        }
        _set(model, self.params)
        self._compiled = {}

    def _grad_fn(self, loss_obj):
        """value_and_grad over the flat master params; compiled per loss object when asked."""
        fn = self._compiled.get(id(loss_obj))
        if fn is not None:
            return fn
        model, dtype = self.model, self.compute_dtype

        def loss_of(params, features, labels):
            _set(model, _cast(params, dtype))
            loss = loss_obj(features, labels)
            return loss.astype(mx.float32) if loss.dtype != mx.float32 else loss

        fn = mx.value_and_grad(loss_of)
        if self.compile:  # the dropout key is state: thread it through the compiled graph
            fn = mx.compile(fn, inputs=[mx.random.state], outputs=[mx.random.state])
        self._compiled[id(loss_obj)] = fn
        return fn

    def micro_grads(self, loss_obj, features, labels):
        """Loss and fp32 gradients of one micro-batch (lazy)."""
        custom = getattr(loss_obj, "value_and_grad", None)
        if custom is not None:
            _set(self.model, _cast(self.params, self.compute_dtype))
            loss, grads = custom(features, labels)
            grads = dict(tree_flatten(grads))
        else:
            loss, grads = self._grad_fn(loss_obj)(self.params, features, labels)
        _set(self.model, self.params)  # back to the masters (drops casts and checkpoint tracers)
        if loss.ndim != 0:
            raise ValueError(f"The loss must return a scalar, got shape {loss.shape}. Reduce it (mean/sum) in the loss.")
        missing = self.params.keys() - grads.keys()
        if missing:
            raise ValueError(
                f"The loss returned no gradient for {sorted(missing)[:3]}...: its grads must match "
                "model.trainable_parameters()."
            )
        return loss.astype(mx.float32), {k: grads[k].astype(mx.float32) for k in self.params}

    def step(self, micro_batches, lr_factor: float, on_substep_end=None):
        """Accumulate over ``micro_batches`` (iterable of (loss_obj, features, labels)), clip, update.

        Each micro-batch loss is divided by the window size, as HF does (so the last, shorter
        window of an epoch is averaged over its own length). One ``mx.eval`` per micro-batch
        bounds memory. The loss and gradient norm are checked before the update, which then runs
        in place where the optimizer's kernel allows; the updated weights are checked after it (one
        boolean reduction). Returns (loss, grad_norm before clipping) as floats; raises
        NonFiniteLossError before updating, or NonFiniteWeightsError after an update that overflowed
        (the model is then marked damaged: the old weights were overwritten in place).
        """
        micro_batches = list(micro_batches)
        n = len(micro_batches)
        acc_loss = acc = None
        for i, (loss_obj, features, labels) in enumerate(micro_batches):
            loss, grads = self.micro_grads(loss_obj, features, labels)
            if n > 1:
                loss = loss / n
                grads = {k: g / n for k, g in grads.items()}
            acc_loss = loss if acc_loss is None else acc_loss + loss
            acc = grads if acc is None else {k: acc[k] + g for k, g in grads.items()}
            if i < n - 1:
                mx.eval(acc_loss, acc)
                if on_substep_end is not None:
                    on_substep_end()
        if self.reducer is not None:  # DDP: the mean over ranks of the loss and of every gradient
            acc_loss, acc = self.reducer.average(acc_loss, acc)
        if self.accumulate_outside_prefix and self.clip_prefix is not None:
            if self._carried is not None:
                acc = {k: g + self._carried[k] if k in self._carried else g for k, g in acc.items()}
            self._carried = {k: g for k, g in acc.items() if not k.startswith(self.clip_prefix)}
        clipped = acc if self.clip_prefix is None else {k: g for k, g in acc.items() if k.startswith(self.clip_prefix)}
        norm = global_norm(clipped)
        mx.eval(acc_loss, norm)
        loss_val, norm_val = acc_loss.item(), norm.item()
        if not (math.isfinite(loss_val) and math.isfinite(norm_val)):
            cause = "loss" if not math.isfinite(loss_val) else "grad_norm"
            raise NonFiniteLossError(f"loss={loss_val}, grad_norm={norm_val}", cause, loss_val, norm_val)
        coef = clip_coefficient(norm, self.max_grad_norm)  # applied inside the optimizer's update pass
        if self.clip_prefix is not None and coef is not None:  # undo the scale where HF does not clip
            acc = {k: g if k.startswith(self.clip_prefix) else g / coef for k, g in acc.items()}
        new_params, moments = self.optimizer.compute(self.params, acc, lr_factor, grad_scale=coef)
        # Only the lazy results are referenced when they are evaluated, so the fused AdamW updates
        # weights and moments in place (no fresh buffers, no page faults on ~3x the model size).
        self.optimizer.commit(moments)
        self.params = new_params
        _set(self.model, new_params)
        finite = _sums_finite(new_params)  # reads the results only: the in-place update is unaffected
        mx.eval(new_params, self.optimizer.arrays(), finite)
        bad = [] if finite.item() else _non_finite_arrays(new_params)
        if bad:
            message = (f"the update made {len(bad)} weight arrays non-finite (e.g. {bad[:3]}) although loss={loss_val} "
                       f"and grad_norm={norm_val} were finite")
            mark_damaged(self.model, message)
            raise NonFiniteWeightsError(message, "weights", loss_val, norm_val, applied=True)
        return loss_val, norm_val

    def reload_from_model(self):
        """Re-read the masters after the model's weights were replaced (resume / best model)."""
        self.params = {k: v.astype(mx.float32) if mx.issubdtype(v.dtype, mx.floating) else v
                       for k, v in tree_flatten(self.model.trainable_parameters())}
        _set(self.model, self.params)
