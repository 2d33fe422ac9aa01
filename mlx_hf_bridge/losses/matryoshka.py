"""``MatryoshkaLoss``: any loss, also on truncated embeddings (ST 5.3 / 6.2 on MLX)."""

from __future__ import annotations

import logging
import random
from typing import Any, Sequence

import mlx.core as mx

from ..colbert.loss_common import normalize

logger = logging.getLogger(__name__)


def shrink(embeddings: mx.array, dim: int) -> mx.array:
    """The first ``dim`` dimensions, L2-normalised again (ST's ``shrink``)."""
    if dim > embeddings.shape[-1]:
        raise ValueError(
            f"Dimension {dim} in matryoshka_dims cannot be greater than the model's embedding dimension: "
            f"{embeddings.shape[-1]}"
        )
    return normalize(embeddings[..., :dim])


def _embedding_dimension(model):
    for name in ("get_embedding_dimension", "get_sentence_embedding_dimension"):
        method = getattr(model, name, None)
        if callable(method):
            return method()
    return None


class _ShrinkingModel:
    """Stands in for ``model`` inside the wrapped loss (ST's ``ForwardDecorator``): the first
    dimension's pass runs the model and keeps every output; later dimensions reuse them (one forward
    per column and step, the same dropout masks for every dimension), each shrunk to the current dim."""

    def __init__(self, model):
        self._model, self.dim, self.cache, self.cache_dim, self.idx = model, None, [], None, 0

    def set_dim(self, dim: int) -> None:
        self.dim, self.idx = dim, 0

    def __call__(self, features, *args, **kwargs) -> dict:
        if self.cache_dim is None or self.cache_dim == self.dim:
            output = dict(self._model(features, *args, **kwargs))
            self.cache.append(output)
            self.cache_dim = self.dim
        else:
            output = self.cache[self.idx]
        output = dict(output)
        output["sentence_embedding"] = shrink(output["sentence_embedding"], self.dim)
        self.idx += 1
        return output

    def get_embedding_dimension(self):
        """The truncated width (a wrapped loss that checks label widths, e.g. MSELoss, sees it)."""
        return self.dim

    get_sentence_embedding_dimension = get_embedding_dimension

    def __getattr__(self, name):
        return getattr(self._model, name)

    def __getitem__(self, index):
        return self._model[index]


class _Swapped:
    """Within the block, ``loss.model`` is ``stand_in`` (an MLX Module may hold the model as a child:
    set and restore it as a plain attribute so the tree is untouched)."""

    def __init__(self, loss, stand_in):
        self.loss, self.stand_in = loss, stand_in

    def __enter__(self):
        self.had = "model" in vars(self.loss)
        self.original = vars(self.loss).get("model")
        object.__setattr__(self.loss, "model", self.stand_in)

    def __exit__(self, *exc):
        if self.had:
            object.__setattr__(self.loss, "model", self.original)
        else:
            object.__delattr__(self.loss, "model")


class CachedLossDecorator:
    """Wraps a cached loss's ``loss_and_column_grads`` (ST wraps ``calculate_loss``): the weighted
    sum over dimensions of the loss on shrunk cached embeddings, the gradients chained back through
    the shrink."""

    def __init__(self, fn, matryoshka_dims, matryoshka_weights, n_dims_per_step: int = -1) -> None:
        self.fn, self.matryoshka_dims, self.matryoshka_weights = fn, matryoshka_dims, matryoshka_weights
        self.n_dims_per_step = n_dims_per_step

    def __call__(self, columns: list[mx.array], labels=None, with_grad: bool = True):
        dim_indices = range(len(self.matryoshka_dims))
        if 0 < self.n_dims_per_step < len(dim_indices):
            dim_indices = random.sample(dim_indices, self.n_dims_per_step)
        total, grads = None, None
        for idx in dim_indices:
            dim, weight = self.matryoshka_dims[idx], self.matryoshka_weights[idx]
            truncated = [shrink(c, dim) for c in columns]
            loss, truncated_grads = self.fn(truncated, labels, with_grad=with_grad)
            total = weight * loss if total is None else total + weight * loss
            if with_grad:
                _, column_grads = mx.vjp(lambda *cs: [shrink(c, dim) for c in cs], columns,
                                         [weight * g for g in truncated_grads])
                grads = column_grads if grads is None else [a + b for a, b in zip(grads, column_grads)]
                mx.eval(total, grads)
        return total, grads


class MatryoshkaLoss:
    """Trains embeddings that stay useful when truncated: the wrapped ``loss`` is computed on the
    embeddings cut to each of ``matryoshka_dims`` (and normalised again), weighted by
    ``matryoshka_weights`` (default 1 each) and summed; ``n_dims_per_step > 0`` samples that many
    dimensions per step (Python's ``random``, as ST). Any loss of the bridge can be wrapped, the
    cached ones included (their GradCache pass 2 is wrapped, as ST does).

    Inputs:

    +------------------------------------+------------------------------------+
    | Texts (columns, in this order)     | Labels                             |
    +====================================+====================================+
    | those of the wrapped loss          | those of the wrapped loss          |
    +------------------------------------+------------------------------------+

    Labels shaped like the embeddings (MSELoss targets: last axis = the model's dimension) are cut
    with them (ST 6.2; ST 5.3 only cut 2-D labels).
    """

    def __init__(self, model, loss, matryoshka_dims: Sequence[int],
                 matryoshka_weights: Sequence[float] | Sequence[int] | None = None, n_dims_per_step: int = -1) -> None:
        self.model = model
        self.loss = loss
        if not matryoshka_dims:
            raise ValueError("You must provide at least one dimension in matryoshka_dims.")
        if any(dim <= 0 for dim in matryoshka_dims):
            raise ValueError("All dimensions passed to a matryoshka loss must be > 0.")
        if matryoshka_weights is None:
            matryoshka_weights = [1] * len(matryoshka_dims)
        elif len(matryoshka_weights) != len(matryoshka_dims):
            raise ValueError("matryoshka_weights must be the same length as matryoshka_dims.")
        model_dim = _embedding_dimension(model)
        if model_dim is not None:
            if any(d > model_dim for d in matryoshka_dims):
                raise ValueError(
                    f"Dimensions in matryoshka_dims cannot exceed the model's embedding dimension of {model_dim}.")
            if model_dim not in matryoshka_dims:
                logger.warning(
                    f"The model's embedding dimension {model_dim} is not included in matryoshka_dims: {matryoshka_dims}. "
                    "This means that the full model dimension won't be trained, which may lead to degraded performance "
                    "when using the model without specifying a lower truncation dimension. It is strongly recommended "
                    f"to include {model_dim} in matryoshka_dims."
                )
        pairs = sorted(zip(matryoshka_dims, matryoshka_weights), key=lambda x: x[0], reverse=True)
        self.matryoshka_dims, self.matryoshka_weights = (tuple(x) for x in zip(*pairs))
        self.n_dims_per_step = n_dims_per_step
        self.uses_gradient_cache = getattr(loss, "uses_gradient_cache", False)
        if self.uses_gradient_cache:
            loss.loss_and_column_grads = CachedLossDecorator(
                loss.loss_and_column_grads, self.matryoshka_dims, self.matryoshka_weights, self.n_dims_per_step)
            self.value_and_grad = loss.value_and_grad  # the engine's GradCache protocol

    @property
    def expected_inputs(self):
        return getattr(self.loss, "expected_inputs", None)

    def check_labels(self, labels, where: str = "batch") -> None:
        check = getattr(self.loss, "check_labels", None)
        if check is not None:
            check(labels, where)

    def __call__(self, sentence_features, labels=None) -> mx.array:
        if self.uses_gradient_cache:
            return self.loss(sentence_features, labels)
        sentence_features = list(sentence_features)
        stand_in = _ShrinkingModel(self.model)
        dim_indices = range(len(self.matryoshka_dims))
        if 0 < self.n_dims_per_step < len(dim_indices):
            dim_indices = sorted(random.sample(dim_indices, self.n_dims_per_step))
        model_dim = _embedding_dimension(self.model)
        loss = None
        with _Swapped(self.loss, stand_in):
            for idx in dim_indices:
                dim, weight = self.matryoshka_dims[idx], self.matryoshka_weights[idx]
                stand_in.set_dim(dim)
                dim_labels = labels
                if isinstance(labels, mx.array) and labels.ndim in (2, 3) and labels.shape[-1] == model_dim:
                    dim_labels = labels[..., :dim]
                term = weight * self.loss(sentence_features, dim_labels)
                loss = term if loss is None else loss + term
        return loss

    forward = __call__

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "loss": self.loss.__class__.__name__,
            "matryoshka_dims": self.matryoshka_dims,
            "matryoshka_weights": self.matryoshka_weights,
            "n_dims_per_step": self.n_dims_per_step,
        }

    @property
    def citation(self) -> str:
        return """
@misc{kusupati2024matryoshka,
    title={Matryoshka Representation Learning},
    author={Aditya Kusupati and Gantavya Bhatt and Aniket Rege and Matthew Wallingford and Aditya Sinha and Vivek Ramanujan and William Howard-Snyder and Kaifeng Chen and Sham Kakade and Prateek Jain and Ali Farhadi},
    year={2024},
    eprint={2205.13147},
    archivePrefix={arXiv},
    primaryClass={cs.LG}
}
"""
