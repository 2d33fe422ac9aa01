"""``AdaptiveLayerLoss`` (ST 5.3 / 6.2): refused on MLX for now, with the reason and the alternatives.

ST's loss re-runs the wrapped loss on the pooled output of every earlier encoder layer: it sets the
backbone's ``config.output_hidden_states`` and reads ``all_layer_embeddings`` from the Transformer
module. The bridge's backbones (``mlx_hf_bridge/models``) return the last hidden state only, so the
per-layer outputs this loss needs do not exist; training with it would have to guess them.
"""

from __future__ import annotations

from typing import Callable

REASON = (
    "needs the output of every encoder layer (ST reads the Transformer module's 'all_layer_embeddings', "
    "from the backbone's output_hidden_states), and the bridge's MLX backbones return only the last hidden "
    "state. Train without it (the wrapped loss alone), or with MatryoshkaLoss for truncatable embeddings, "
    "or run this loss on real sentence-transformers (torch)."
)


def refuse(name: str):
    raise NotImplementedError(f"{name} is not supported on MLX: it {REASON}")


class AdaptiveLayerLoss:
    """ST's signature; construction raises ``NotImplementedError`` (see the module docstring).

    Inputs: those of the wrapped loss.

    +------------------------------------+------------------------------------+
    | Texts (columns, in this order)     | Labels                             |
    +====================================+====================================+
    | those of the wrapped loss          | those of the wrapped loss          |
    +------------------------------------+------------------------------------+
    """

    def __init__(self, model, loss, n_layers_per_step: int = 1, last_layer_weight: float = 1.0,
                 prior_layers_weight: float = 1.0, kl_div_weight: float = 1.0, kl_temperature: float = 0.3,
                 layer_weighting: str | Callable[[int], float] = "uniform") -> None:
        refuse(type(self).__name__)
