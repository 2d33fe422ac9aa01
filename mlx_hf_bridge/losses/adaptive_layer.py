"""``AdaptiveLayerLoss`` (ST 5.3 / 6.2 on MLX): the wrapped loss on the final layer and on earlier
layers' pooled outputs, plus a KL term pulling each earlier layer towards the final one.

As ST, the model runs once per column and step with every layer's output kept (the Transformer
module's ``all_layer_embeddings``, from the backbone's ``output_hidden_states``); each sampled layer
then re-runs only the modules after the Transformer (pooling, Dense, Normalize) on that layer's
token embeddings. Layers are sampled with Python's ``random.sample(range(n_layers), n_layers_per_step)``
after the final layer's loss, as ST does, so seeding ``random`` alike gives both the same layers.
Layer index 0 is the embeddings' output.

ST 6.2 and 5.3 differ in two places (``st_version`` picks; default: the installed release's):
ST 5.3 weights layer ``i``'s loss by ``1 / (1 + i)`` and lets the KL gradient flow into the final
layer; ST 6.2 adds ``layer_weighting`` (default ``"uniform"``) and detaches the final layer (its #3757).
"""

from __future__ import annotations

import math
import random
from typing import Any, Callable

import mlx.core as mx

from .matryoshka import _Swapped
from .triplet import _check_st_version

WEIGHTINGS = ("uniform", "log", "linear")


class _LayerModel:
    """Stands in for ``model`` inside the wrapped loss (ST's ``TransformerDecorator`` and
    ``ForwardDecorator``). Before a layer is set, each call runs the model with every hidden state
    kept; with ``layer_idx`` set, the ``k``-th call re-runs the modules after the Transformer on the
    ``k``-th cached call's layer ``layer_idx``. Every call's ``sentence_embedding`` is collected for
    the KL term."""

    def __init__(self, model):
        self._model, self.layer_idx, self.cache, self.calls, self.embeddings = model, None, [], 0, []

    def set_layer_idx(self, layer_idx: int) -> None:
        self.layer_idx, self.calls = layer_idx, 0

    @property
    def num_layers(self) -> int:
        if not self.cache:
            raise RuntimeError(
                "AdaptiveLayerLoss: the wrapped loss never called the model, so there are no layer outputs to "
                "train; wrap a loss that embeds its text columns with the model."
            )
        return len(self.cache[0]["all_layer_embeddings"])

    def __call__(self, features, *args, **kwargs) -> dict:
        if self.layer_idx is None:
            config = self._model[0].auto_model.config
            previous = getattr(config, "output_hidden_states", False)
            config.output_hidden_states = True
            try:
                output = self._model(features, *args, **kwargs)
            finally:
                config.output_hidden_states = previous
            self.cache.append(output)
        else:
            if self.calls >= len(self.cache):
                raise RuntimeError(
                    "AdaptiveLayerLoss: the wrapped loss embedded more columns for an earlier layer than for the "
                    f"final one ({self.calls + 1} > {len(self.cache)}); it must call the model the same way each time."
                )
            cached = self.cache[self.calls]
            output = {**cached, "token_embeddings": cached["all_layer_embeddings"][self.layer_idx]}
            for module in list(self._model)[1:]:
                output = module(output, **kwargs)
            self.calls += 1
        self.embeddings.append(output["sentence_embedding"])
        return output

    def take_embeddings(self) -> mx.array:
        embeddings = mx.concatenate(self.embeddings, axis=0)
        self.embeddings = []
        return embeddings

    def __getattr__(self, name):
        return getattr(self._model, name)

    def __getitem__(self, index):
        return self._model[index]


def _kl_div_batchmean(log_input: mx.array, target: mx.array) -> mx.array:
    """torch's ``F.kl_div(log_input, target, reduction="batchmean")``: sum of
    ``target * (log(target) - log_input)`` (0 where target is 0) over rows."""
    pointwise = mx.where(target > 0, target * (mx.log(mx.where(target > 0, target, 1.0)) - log_input), 0.0)
    return pointwise.sum() / log_input.shape[0]


def _check_model(model) -> None:
    try:
        first = model[0]
    except (TypeError, IndexError, KeyError):
        first = None
    if first is None or not hasattr(first, "auto_model") or not hasattr(getattr(first, "auto_model"), "config"):
        raise ValueError(
            f"AdaptiveLayerLoss needs a SentenceTransformer whose first module is a Transformer (it reads every "
            f"layer's output from it); got {type(model).__name__} with first module {type(first).__name__}."
        )


def _refuse_own_parameters(name: str, loss) -> None:
    """A wrapped loss that trains parameters of its own (SoftmaxLoss's classifier, MSELoss's projection):
    ST's optimizer reaches them through the wrapper module; the bridge's trainer trains such a loss only
    when it is the trainer's loss itself, so through this wrapper they would silently stay untrained."""
    import mlx.nn as nn
    from mlx.utils import tree_flatten

    inner = getattr(loss, "loss", None) if type(loss).__name__ == "MatryoshkaLoss" else loss
    if not isinstance(inner, nn.Module):
        return
    own = [k for k, _ in tree_flatten(inner.trainable_parameters()) if not k.startswith("model.")]
    if own:
        raise ValueError(
            f"{name} around {type(inner).__name__}: that loss trains parameters of its own ({own[0]}, ...), which the "
            f"bridge cannot train through {name} (they would stay at their initial values, while sentence-transformers "
            f"trains them). Train with {type(inner).__name__} directly, or wrap a loss without parameters."
        )


class AdaptiveLayerLoss:
    """The wrapped ``loss`` on the final layer (times ``last_layer_weight``) plus, on
    ``n_layers_per_step`` randomly chosen earlier layers (-1: all), the layer's loss times its
    weight / the number of layers sampled * ``prior_layers_weight``, and the KL divergence of the
    layer's softmax(embedding / ``kl_temperature``) from the final layer's times ``kl_temperature *
    kl_div_weight`` (``kl_temperature=0``: no KL term).

    Inputs:

    +------------------------------------+------------------------------------+
    | Texts (columns, in this order)     | Labels                             |
    +====================================+====================================+
    | those of the wrapped loss          | those of the wrapped loss          |
    +------------------------------------+------------------------------------+

    ``layer_weighting``: ``"uniform"`` (1), ``"log"`` (``1 / (1 + ln(1 + i))``), ``"linear"``
    (``1 / (1 + i)``) or a callable of the layer index; None (default): the release's default,
    ``"uniform"`` under ST 6.2, ST 5.3's fixed ``1 / (1 + i)`` under ``st_version="5.3"``.
    ``st_version`` (bridge option, keyword only): ``"5.3"`` or ``"6.2"`` semantics (see the module
    docstring); default: the installed sentence-transformers' release.

    The cached losses (GradCache) are refused: ST warns that they are not compatible (their backward
    pass runs after ST's decorators are gone), and the bridge does not train a combination it cannot
    reproduce. So is a wrapped loss with parameters of its own (SoftmaxLoss's classifier): ST trains them
    through this wrapper, the bridge's trainer would not.
    """

    def __init__(self, model, loss, n_layers_per_step: int = 1, last_layer_weight: float = 1.0,
                 prior_layers_weight: float = 1.0, kl_div_weight: float = 1.0, kl_temperature: float = 0.3,
                 layer_weighting: str | Callable[[int], float] | None = None, *, st_version: str | None = None) -> None:
        self.model = model
        self.loss = loss
        self.n_layers_per_step = n_layers_per_step
        self.last_layer_weight = last_layer_weight
        self.prior_layers_weight = prior_layers_weight
        self.kl_div_weight = kl_div_weight
        self.kl_temperature = kl_temperature
        self.st_version = _check_st_version(st_version)
        self._explicit_weighting = layer_weighting is not None
        if layer_weighting is None:
            layer_weighting = "linear" if self.st_version == "5.3" else "uniform"
        if not callable(layer_weighting) and layer_weighting not in WEIGHTINGS:
            raise ValueError(
                f'layer_weighting must be "uniform", "log", "linear", or a callable, but got {layer_weighting!r}.'
            )
        self.layer_weighting = layer_weighting
        _check_model(model)
        _refuse_own_parameters(type(self).__name__, loss)
        if getattr(loss, "uses_gradient_cache", False):
            inner = getattr(loss, "loss", loss) if type(loss).__name__ == "MatryoshkaLoss" else loss
            around = f" around {type(inner).__name__}" if inner is not loss else ""
            raise ValueError(
                f"{type(self).__name__} is not compatible with {type(loss).__name__}{around} (sentence-transformers "
                "warns so: a cached loss back-propagates each mini-batch after the per-layer decorators are removed, "
                "so its result is not the adaptive-layer loss). Use the uncached twin, "
                f"{type(inner).__name__.replace('Cached', '', 1)}, with a batch size that fits in memory."
            )

    @property
    def expected_inputs(self):
        return getattr(self.loss, "expected_inputs", None)

    def check_labels(self, labels, where: str = "batch") -> None:
        check = getattr(self.loss, "check_labels", None)
        if check is not None:
            check(labels, where)

    def get_layer_weight(self, layer_idx: int) -> float:
        if not isinstance(self.layer_weighting, str):
            return self.layer_weighting(layer_idx)
        if self.layer_weighting == "log":
            return 1.0 / (1.0 + math.log(1 + layer_idx))
        if self.layer_weighting == "linear":
            return 1.0 / (1 + layer_idx)
        return 1.0

    def __call__(self, sentence_features, labels=None) -> mx.array:
        sentence_features = list(sentence_features)
        stand_in = _LayerModel(self.model)
        with _Swapped(self.loss, stand_in):
            loss = self.loss(sentence_features, labels) * self.last_layer_weight
            num_layers = stand_in.num_layers
            if self.kl_temperature > 0:
                final = mx.softmax(stand_in.take_embeddings() / self.kl_temperature, axis=-1)
                if self.st_version == "6.2":  # the final layer is the teacher: no KL gradient into it
                    final = mx.stop_gradient(final)
            layer_indices = range(num_layers - 1)
            if 0 < self.n_layers_per_step < num_layers - 1:
                layer_indices = random.sample(layer_indices, self.n_layers_per_step)
            for layer_idx in layer_indices:
                stand_in.set_layer_idx(layer_idx)
                layer_loss = self.loss(sentence_features, labels)
                loss = loss + layer_loss * self.get_layer_weight(layer_idx) / len(layer_indices) * self.prior_layers_weight
                if self.kl_temperature > 0:
                    embeddings = stand_in.take_embeddings() / self.kl_temperature
                    log_input = embeddings - mx.logsumexp(embeddings, axis=-1, keepdims=True)
                    kl = _kl_div_batchmean(log_input, final)
                    loss = loss + kl * self.kl_temperature * self.kl_div_weight
        return loss

    forward = __call__

    def get_config_dict(self) -> dict[str, Any]:
        config = {
            "loss": self.loss.__class__.__name__,
            "n_layers_per_step": self.n_layers_per_step,
            "last_layer_weight": self.last_layer_weight,
            "prior_layers_weight": self.prior_layers_weight,
            "kl_div_weight": self.kl_div_weight,
            "kl_temperature": self.kl_temperature,
        }
        if self.st_version == "6.2" or self._explicit_weighting:
            weighting = self.layer_weighting
            config["layer_weighting"] = weighting if isinstance(weighting, str) else getattr(weighting, "__name__", "custom")
        return config

    @property
    def citation(self) -> str:
        return """
@misc{li20242d,
    title={2D Matryoshka Sentence Embeddings},
    author={Xianming Li and Zongxi Li and Jing Li and Haoran Xie and Qing Li},
    year={2024},
    eprint={2402.14776},
    archivePrefix={arXiv},
    primaryClass={cs.CL}
}
"""
