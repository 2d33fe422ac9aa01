"""``Matryoshka2dLoss`` (ST 5.3 / 6.2): ``AdaptiveLayerLoss`` around ``MatryoshkaLoss``, so it needs
the per-layer outputs the bridge's MLX backbones do not expose: refused (see adaptive_layer.py)."""

from __future__ import annotations

from typing import Callable

from .adaptive_layer import AdaptiveLayerLoss


class Matryoshka2dLoss(AdaptiveLayerLoss):
    """ST's signature; construction raises ``NotImplementedError``. For the dimension half alone use
    :class:`MatryoshkaLoss`.

    Inputs: those of the wrapped loss.

    +------------------------------------+------------------------------------+
    | Texts (columns, in this order)     | Labels                             |
    +====================================+====================================+
    | those of the wrapped loss          | those of the wrapped loss          |
    +------------------------------------+------------------------------------+
    """

    def __init__(self, model, loss, matryoshka_dims: list[int], matryoshka_weights: list[float | int] | None = None,
                 n_layers_per_step: int = 1, n_dims_per_step: int = 1, last_layer_weight: float = 1.0,
                 prior_layers_weight: float = 1.0, kl_div_weight: float = 1.0, kl_temperature: float = 0.3,
                 layer_weighting: str | Callable[[int], float] = "uniform") -> None:
        super().__init__(model, loss)
