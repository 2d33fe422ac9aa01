"""What the dense and multi-vector losses share outside their math: ST 6's config-dict naming of a
scoring callable, ST 6's scale and teacher-score checks, and the multi-process gather refusal."""

from __future__ import annotations

import functools
import logging

import numpy as np

logger = logging.getLogger(__name__)


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


def check_teacher_scores(loss, scores: np.ndarray, teacher_temperature: float) -> None:
    """ST 6's first-batch look at a distillation loss's teacher target: NaN raises; a float32 softmax
    that underflows some candidates to zero warns (those carry no gradient)."""
    scores = np.asarray(scores, dtype=np.float64)
    if np.isnan(scores).any():
        raise ValueError(
            f"{type(loss).__name__}: the teacher scores contain NaN, so the loss and every gradient would be "
            "NaN after the first backward. Check the column holding your teacher scores."
        )
    if np.isinf(scores).any():  # an infinite score marks a candidate excluded on purpose
        return
    # the float32 softmax the loss uses (log_softmax, then exp)
    shifted = (scores / teacher_temperature).astype(np.float32)
    shifted = shifted - shifted.max(axis=-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    collapsed = int((np.exp(log_probs) == 0).sum())
    if collapsed:
        spread = float((scores.max(axis=-1) - scores.min(axis=-1)).max())
        logger.warning(
            f"{type(loss).__name__}: teacher_temperature={teacher_temperature} underflows {collapsed} of "
            f"{scores.size} teacher scores to exactly zero, so those candidates carry no gradient. The widest "
            f"candidate row spans {spread:.1f}, and a float32 softmax underflows once a row's spread divided by "
            f"the temperature exceeds about 100. Raise teacher_temperature above {spread / 100:.3g}."
        )
