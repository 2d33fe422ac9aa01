"""What the ST 6 loss façades share: ST 6's config-dict naming of a scoring callable."""

from __future__ import annotations

import functools


def similarity_fct_name(similarity_fct) -> str:
    """ST 6's ``util.similarity_fct_name``: the function's name, with a partial's keywords or a
    configured scorer's ``get_config_dict()``."""
    if isinstance(similarity_fct, functools.partial):
        name = getattr(similarity_fct.func, "__name__", type(similarity_fct.func).__name__)
        args = ", ".join(f"{key}={value!r}" for key, value in similarity_fct.keywords.items())
        return f"{name}({args})" if args else name
    name = getattr(similarity_fct, "__name__", type(similarity_fct).__name__)
    config = getattr(similarity_fct, "get_config_dict", None)
    if config is not None:
        return f"{name}({', '.join(f'{k}={v!r}' for k, v in config().items())})"
    return name


def check_scale(scale):
    if not scale > 0:
        raise ValueError("Scale must be a positive value.")


def refuse_multi_process_gather(loss):
    """On one process gather is the identity (the loss runs). Across processes ST 6 first pads every
    rank's document columns to the widest rank's width; the bridge does not reproduce that yet."""
    from ....colbert import distributed

    if loss.gather_across_devices and distributed.group() is not None:
        raise NotImplementedError(
            f"{type(loss).__name__}(gather_across_devices=True) across {distributed.group().size()} processes is "
            "not supported on MLX yet: ST 6 pads each rank's document columns to the widest rank before "
            "gathering, which the bridge does not reproduce. Set gather_across_devices=False, or use PyLate's "
            "spelling (mlx_hf_bridge.pylate.losses.Contrastive / CachedContrastive), which gathers at the "
            "collator's fixed width."
        )
