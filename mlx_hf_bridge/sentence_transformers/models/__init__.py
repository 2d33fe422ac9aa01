"""``sentence_transformers.models`` (ST 5.3's module names and signatures) on MLX.

Each is a thin spelling of the one implementation in :mod:`mlx_hf_bridge.modules`: ``Pooling`` runs
with the installed sentence-transformers' semantics (see ``modules.pooling``), as ST 6.2's deprecated alias
does, and ``Transformer`` takes ST 5.3's
``model_args`` / ``tokenizer_args`` / ``config_args``."""

from __future__ import annotations

from ...modules import Dense as _Dense
from ...modules import Normalize
from ...modules import Transformer as _Transformer
from ...modules.dense import TANH
from ...modules.pooling import Pooling as _Pooling
from ...modules.router import Router
from ...modules.static_embedding import StaticEmbedding

Asym = Router  # ST 5.3's alias

__all__ = ["Asym", "Dense", "Normalize", "Pooling", "Router", "StaticEmbedding", "Transformer"]


class Transformer(_Transformer):
    """``Transformer(model_name_or_path, max_seq_length=None, model_args=None, tokenizer_args=None,
    config_args=None, cache_dir=None, do_lower_case=False, tokenizer_name_or_path=None, backend="torch")``."""

    def __init__(self, model_name_or_path, max_seq_length=None, model_args=None, tokenizer_args=None, config_args=None,
                 cache_dir=None, do_lower_case: bool = False, tokenizer_name_or_path=None, backend: str = "torch"):
        super().__init__(model_name_or_path, model_kwargs=model_args, processor_kwargs=tokenizer_args,
                         config_kwargs=config_args, cache_dir=cache_dir, max_seq_length=max_seq_length,
                         do_lower_case=do_lower_case, tokenizer_name_or_path=tokenizer_name_or_path, backend=backend)


class Pooling(_Pooling):
    """``Pooling(word_embedding_dimension, pooling_mode=None, pooling_mode_cls_token=False,
    pooling_mode_max_tokens=False, pooling_mode_mean_tokens=True, pooling_mode_mean_sqrt_len_tokens=False,
    pooling_mode_weightedmean_tokens=False, pooling_mode_lasttoken=False, include_prompt=True)``."""

    def __init__(self, word_embedding_dimension: int, pooling_mode: str | None = None,
                 pooling_mode_cls_token: bool = False, pooling_mode_max_tokens: bool = False,
                 pooling_mode_mean_tokens: bool = True, pooling_mode_mean_sqrt_len_tokens: bool = False,
                 pooling_mode_weightedmean_tokens: bool = False, pooling_mode_lasttoken: bool = False,
                 include_prompt: bool = True):
        super().__init__(
            word_embedding_dimension, pooling_mode, include_prompt,
            pooling_mode_cls_token=pooling_mode_cls_token, pooling_mode_max_tokens=pooling_mode_max_tokens,
            pooling_mode_mean_tokens=pooling_mode_mean_tokens,
            pooling_mode_mean_sqrt_len_tokens=pooling_mode_mean_sqrt_len_tokens,
            pooling_mode_weightedmean_tokens=pooling_mode_weightedmean_tokens,
            pooling_mode_lasttoken=pooling_mode_lasttoken,
        )


class Dense(_Dense):
    """``Dense(in_features, out_features, bias=True, activation_function=Tanh(), init_weight=None,
    init_bias=None)``: on ``sentence_embedding``, as ST 5.3's."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, activation_function=TANH,
                 init_weight=None, init_bias=None):
        super().__init__(in_features, out_features, bias, activation_function, init_weight, init_bias)
