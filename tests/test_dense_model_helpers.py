"""Helpers (no tests) for the dense SentenceTransformer tests: folders written by the real sentence-transformers of
the running venv (ST 5.3 in .venv, ST 6.2 in .venv-st6), batches of texts, and the comparison."""

from __future__ import annotations

import random

import numpy as np
import sentence_transformers as st
from conftest import random_sentence

ST6 = int(st.__version__.split(".")[0]) >= 6
PUNCT = ".,;!?"


def st_module_classes():
    """(Transformer, Pooling, Dense, Normalize) of the installed sentence-transformers."""
    if ST6:
        from sentence_transformers.base.modules import Dense, Normalize, Transformer
        from sentence_transformers.sentence_transformer.modules import Pooling
    else:
        from sentence_transformers.models import Dense, Normalize, Pooling, Transformer
    return Transformer, Pooling, Dense, Normalize


def st_pooling(dim: int, modes):
    """A real Pooling over ``modes`` (one name, or several to concatenate), with each version's spelling."""
    _, Pooling, _, _ = st_module_classes()
    if isinstance(modes, str):
        return Pooling(dim, pooling_mode=modes)
    if ST6:
        return Pooling(dim, pooling_mode=tuple(modes))
    from mlx_hf_bridge.modules.pooling import LEGACY_MODE_KEYS

    flags = {key: mode in modes for key, mode in LEGACY_MODE_KEYS.items()}
    return Pooling(dim, **flags)


def write_st_folder(path, backbone_dir, modes="mean", dense=None, normalize=False, include_prompt=True, **st_kwargs):
    """Transformer + Pooling(modes) [+ Dense(out=dense, Tanh)] [+ Normalize], saved by the real ST."""
    import torch

    Transformer, _, Dense, Normalize = st_module_classes()
    torch.manual_seed(0)
    transformer = Transformer(str(backbone_dir))
    dim = transformer.get_embedding_dimension() if ST6 else transformer.get_word_embedding_dimension()
    pooling = st_pooling(dim, modes)
    pooling.include_prompt = include_prompt
    modules = [transformer, pooling]
    if dense:
        width = pooling.get_sentence_embedding_dimension() if not ST6 else pooling.get_embedding_dimension()
        modules.append(Dense(width, dense))
    if normalize:
        modules.append(Normalize())
    st.SentenceTransformer(modules=modules, device="cpu", **st_kwargs).save(str(path))
    return path


def texts(n: int = 11, seed: int = 0, n_min: int = 1, n_max: int = 30) -> list:
    rng = random.Random(seed)
    return [random_sentence(rng, n_min, n_max, PUNCT) for _ in range(n)]


def reference(folder, **kwargs):
    return st.SentenceTransformer(str(folder), device="cpu", **kwargs)


def max_diff(a, b) -> float:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b.detach().numpy() if hasattr(b, "detach") else b, dtype=np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a - b).max())
