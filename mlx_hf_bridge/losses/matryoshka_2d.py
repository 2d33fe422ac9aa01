"""``Matryoshka2dLoss`` (ST 5.3 / 6.2 on MLX): :class:`AdaptiveLayerLoss` around :class:`MatryoshkaLoss`,
so both the number of layers and the embedding dimensions can be cut at inference."""

from __future__ import annotations

from typing import Any, Callable

from .adaptive_layer import AdaptiveLayerLoss
from .matryoshka import MatryoshkaLoss


class Matryoshka2dLoss(AdaptiveLayerLoss):
    """``AdaptiveLayerLoss(model, MatryoshkaLoss(model, loss, matryoshka_dims, matryoshka_weights,
    n_dims_per_step), ...)``; the defaults ``n_layers_per_step=1`` and ``n_dims_per_step=1`` follow 2DMSE.
    Layers and dimensions are sampled with Python's ``random`` in ST's order.

    Inputs:

    +------------------------------------+------------------------------------+
    | Texts (columns, in this order)     | Labels                             |
    +====================================+====================================+
    | those of the wrapped loss          | those of the wrapped loss          |
    +------------------------------------+------------------------------------+
    """

    def __init__(self, model, loss, matryoshka_dims: list[int], matryoshka_weights: list[float | int] | None = None,
                 n_layers_per_step: int = 1, n_dims_per_step: int = 1, last_layer_weight: float = 1.0,
                 prior_layers_weight: float = 1.0, kl_div_weight: float = 1.0, kl_temperature: float = 0.3,
                 layer_weighting: str | Callable[[int], float] | None = None, *, st_version: str | None = None) -> None:
        matryoshka_loss = MatryoshkaLoss(model, loss, matryoshka_dims, matryoshka_weights=matryoshka_weights,
                                         n_dims_per_step=n_dims_per_step)
        super().__init__(model, matryoshka_loss, n_layers_per_step=n_layers_per_step,
                         last_layer_weight=last_layer_weight, prior_layers_weight=prior_layers_weight,
                         kl_div_weight=kl_div_weight, kl_temperature=kl_temperature,
                         layer_weighting=layer_weighting, st_version=st_version)

    def get_config_dict(self) -> dict[str, Any]:
        return {**super().get_config_dict(), **self.loss.get_config_dict()}
