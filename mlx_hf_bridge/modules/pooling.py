"""sentence-transformers' ``Pooling`` on MLX: token embeddings -> one sentence embedding, every mode.

Two generations, one implementation (``flavour``):
- ``"st6"`` (ST 6.2's ``sentence_transformer.modules.Pooling``): ``pooling_mode`` str or tuple (the
  concatenation order), ``cls`` takes the first *attended* position (so ``include_prompt=False`` skips
  the prompt), ``max`` fills masked positions with -inf, ``weightedmean`` counts positions from the
  first non-pad token, the caller's mask is never modified; config ``{embedding_dimension,
  pooling_mode, include_prompt}``.
- ``"st5"`` (ST 5.3's ``models.Pooling``): ``pooling_mode_*`` booleans, ``cls`` is position 0 even with
  ``include_prompt=False``, ``max`` fills -1e9, and, as ST 5.3 does in place, the prompt-zeroed mask
  replaces ``attention_mask`` and ``max`` leaves -1e9 in ``token_embeddings`` (returned by
  ``encode(output_value=None)``) -- so with ``cls`` + ``max`` a masked position 0 (left padding, an
  excluded prompt) gives a cls vector of -1e9 (ST 5.3's quirk, reproduced); config: ST 5.3's booleans.
Which one a model runs is the installed sentence-transformers' (``installed_generation``; ST 6.2's when
none is installed), whoever wrote the folder: ST 6.2 loads ST 5 folders with its own semantics too.
For right-padded batches without excluded prompts both give the same vectors. Padding never reaches
the result (every mode masks it), so padding-free batches (packed rows, zeros at padded positions)
give ST's padded results.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from ..errors import read_json

def installed_generation() -> str:
    """"st5" when sentence-transformers 5 (or older) is installed, else "st6" (read from its metadata:
    nothing is imported)."""
    import importlib.metadata

    try:
        major = int(importlib.metadata.version("sentence-transformers").split(".")[0])
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return "st6"
    return "st5" if major <= 5 else "st6"


POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")
# ST 6.2's legacy keys, in the order ST 5.3 concatenates the modes
LEGACY_MODE_KEYS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}
# ST 5.3 writes its booleans in this order
ST5_CONFIG_ORDER = ("pooling_mode_cls_token", "pooling_mode_mean_tokens", "pooling_mode_max_tokens",
                    "pooling_mode_mean_sqrt_len_tokens", "pooling_mode_weightedmean_tokens", "pooling_mode_lasttoken")
CONFIG_KEYS = ("embedding_dimension", "word_embedding_dimension", "pooling_mode", "include_prompt", *LEGACY_MODE_KEYS)
FLAVOURS = ("st5", "st6")


def _check_mode(mode) -> str:
    if not isinstance(mode, str) or mode.lower() not in POOLING_MODES:
        raise ValueError(
            f"Invalid pooling mode: {mode!r}. Valid pooling modes are: {POOLING_MODES} "
            "(pass one of them, or a tuple of them to concatenate several)."
        )
    return mode.lower()


def resolve_modes(pooling_mode=None, legacy: dict | None = None) -> tuple:
    """The modes, in concatenation order: ``pooling_mode`` wins; else the ``pooling_mode_*`` booleans
    (ST 5.3's defaults: mean only); no active boolean means mean, as ST 6.2 converts them."""
    if pooling_mode is not None:
        modes = (pooling_mode,) if isinstance(pooling_mode, str) else tuple(pooling_mode)
        if not modes:
            raise ValueError(f"pooling_mode={pooling_mode!r} names no mode; valid modes: {POOLING_MODES}.")
        return tuple(_check_mode(m) for m in modes)
    flags = {"pooling_mode_mean_tokens": True, **(legacy or {})}
    modes = tuple(mode for key, mode in LEGACY_MODE_KEYS.items() if flags.get(key))
    return modes or ("mean",)


class Pooling(nn.Module):
    """``Pooling(embedding_dimension, pooling_mode="mean", include_prompt=True)`` (ST 6.2) or
    ``Pooling(word_embedding_dimension, pooling_mode=None, pooling_mode_cls_token=False, ...)`` (ST 5.3)."""

    POOLING_MODES = POOLING_MODES

    def __init__(self, embedding_dimension: int | None = None, pooling_mode=None, include_prompt: bool = True, *,
                 word_embedding_dimension: int | None = None, flavour: str | None = None, **legacy_modes):
        super().__init__()
        unknown = sorted(set(legacy_modes) - set(LEGACY_MODE_KEYS))
        if unknown:
            raise TypeError(f"Pooling got unknown argument(s) {unknown}; valid: {sorted(CONFIG_KEYS)}.")
        flavour = installed_generation() if flavour is None else flavour
        if flavour not in FLAVOURS:
            raise ValueError(f"flavour must be one of {FLAVOURS}, got {flavour!r}.")
        dim = embedding_dimension if embedding_dimension is not None else word_embedding_dimension
        if dim is None:
            raise TypeError("Pooling needs the token embedding dimension (embedding_dimension=...).")
        modes = resolve_modes(pooling_mode, legacy_modes)
        object.__setattr__(self, "modes", modes)  # a tuple of names, not a child of the parameter tree
        self.embedding_dimension = int(dim)
        self.include_prompt = bool(include_prompt)
        self.flavour = flavour
        self.pooling_output_dimension = len(modes) * self.embedding_dimension

    # --- ST's attribute names ------------------------------------------------------------------
    @property
    def word_embedding_dimension(self) -> int:
        return self.embedding_dimension

    @property
    def pooling_mode(self):
        return self.modes[0] if len(self.modes) == 1 else self.modes

    def get_pooling_mode_str(self) -> str:
        return "+".join(self.modes)

    def get_embedding_dimension(self) -> int:
        return self.pooling_output_dimension

    get_sentence_embedding_dimension = get_embedding_dimension

    def __getattr__(self, name):
        if name in LEGACY_MODE_KEYS:  # pooling_mode_cls_token, ...: ST 5.3's flags
            return LEGACY_MODE_KEYS[name] in self.modes
        return super().__getattr__(name)

    def __repr__(self) -> str:
        return f"Pooling({self.get_config_dict()})"

    # --- forward -------------------------------------------------------------------------------
    def __call__(self, features: dict, task=None, **_) -> dict:
        x = features["token_embeddings"]
        B, L = x.shape[0], x.shape[1]
        mask = features.get("attention_mask")
        if mask is None or mask.shape[-1] != L:
            mask = mx.ones((B, L), dtype=mx.int32)
        original = mask
        prompt_length = self._prompt_length(features)
        positions = mx.arange(L)[None, :]
        if prompt_length:
            # zero the (left pad +) prompt positions; with right padding that is the first prompt_length
            first = mx.argmax(mask.astype(mx.int32), axis=1)
            mask = mx.where(positions < (first[:, None] + prompt_length), 0, mask).astype(original.dtype)
        m = mask.astype(x.dtype)[..., None]
        out = dict(features)
        if self.flavour == "st5" and "max" in self.modes:
            # ST 5.3's max fills masked positions with -1e9 in place, before any mode reads them: its cls
            # (a view of position 0) sees the fill too, and so does the caller's token_embeddings
            x = mx.where(m > 0, x, mx.array(-1e9, dtype=x.dtype))
            out["token_embeddings"] = x
        vectors = []
        for mode in self.modes:
            if mode == "cls":
                if "cls_token_embeddings" in features:
                    vectors.append(features["cls_token_embeddings"])
                elif self.flavour == "st5":
                    vectors.append(x[:, 0])
                else:
                    first = mx.argmax(mask.astype(mx.int32), axis=1)
                    vectors.append(mx.take_along_axis(x, first[:, None, None], axis=1)[:, 0])
            elif mode == "max":
                filled = x if self.flavour == "st5" else mx.where(m > 0, x, mx.array(-mx.inf, dtype=x.dtype))
                vectors.append(filled.max(axis=1))
            elif mode in ("mean", "mean_sqrt_len_tokens"):
                total = (x * m).sum(axis=1)
                if "token_weights_sum" in features:
                    count = features["token_weights_sum"][:, None].astype(total.dtype)
                else:
                    count = m.sum(axis=1)
                count = mx.maximum(count, 1e-9)
                vectors.append(total / (count if mode == "mean" else mx.sqrt(count)))
            elif mode == "weightedmean":
                weights = mx.arange(1, L + 1, dtype=x.dtype)[None, :, None]
                if self.flavour == "st6":  # ST 6 counts positions from the first non-pad token
                    weights = weights - mx.argmax(original.astype(mx.int32), axis=1).astype(x.dtype)[:, None, None]
                weighted = m * weights
                total = (x * weighted).sum(axis=1)
                if "token_weights_sum" in features:
                    count = features["token_weights_sum"][:, None].astype(total.dtype)
                else:
                    count = weighted.sum(axis=1)
                vectors.append(total / mx.maximum(count, 1e-9))
            else:  # lasttoken: the last attended position (the last one when none is)
                flipped = mask[:, ::-1].astype(mx.int32)
                last = mx.argmax(flipped, axis=1)
                last = mx.where(flipped.max(axis=1) == 0, L - 1, last)
                index = (L - 1 - last)[:, None, None]
                vectors.append(mx.take_along_axis(x * m, index, axis=1)[:, 0])
        if prompt_length and self.flavour == "st5":  # ST 5.3 zeroes the prompt in the caller's mask
            out["attention_mask"] = mask
        out["sentence_embedding"] = vectors[0] if len(vectors) == 1 else mx.concatenate(vectors, axis=-1)
        return out

    forward = __call__

    def _prompt_length(self, features) -> int | None:
        if self.include_prompt or features.get("prompt_length") is None:
            return None
        # an int (encode), or an array of one repeated value (training batches)
        return int(np.asarray(features["prompt_length"]).reshape(-1)[0])

    # --- persistence ---------------------------------------------------------------------------
    def get_config_dict(self) -> dict:
        if self.flavour == "st5":
            config = {"word_embedding_dimension": self.embedding_dimension}
            config.update({key: LEGACY_MODE_KEYS[key] in self.modes for key in ST5_CONFIG_ORDER})
            config["include_prompt"] = self.include_prompt
            return config
        return {"embedding_dimension": self.embedding_dimension,
                "pooling_mode": self.modes[0] if len(self.modes) == 1 else list(self.modes),
                "include_prompt": self.include_prompt}

    def save(self, output_path, *args, safe_serialization: bool = True, **kwargs):
        Path(output_path).mkdir(parents=True, exist_ok=True)
        (Path(output_path) / "config.json").write_text(json.dumps(self.get_config_dict(), indent=4))

    @classmethod
    def load(cls, input_path, flavour: str | None = None) -> "Pooling":
        """A saved Pooling folder (ST 5.3 booleans or ST 6.2 ``pooling_mode``); unknown keys and modes
        are refused before any weights are read."""
        path = Path(input_path) / "config.json"
        if not path.exists():
            raise FileNotFoundError(
                f"{path} is missing: the Pooling module's settings (its mode) are not saved, so the bridge cannot "
                "know how the model pools. Restore 1_Pooling/config.json from the original model."
            )
        config = read_json(path, "the Pooling module's settings")
        if not isinstance(config, dict):
            raise ValueError(f"{path}: expected a JSON object of Pooling settings, got {type(config).__name__}.")
        unknown = sorted(set(config) - set(CONFIG_KEYS))
        if unknown:
            raise ValueError(f"{path}: unknown Pooling setting(s) {unknown}; sentence-transformers accepts {list(CONFIG_KEYS)}.")
        mode = config.get("pooling_mode")
        try:
            return cls(
                config.get("embedding_dimension", config.get("word_embedding_dimension")), mode,
                config.get("include_prompt", True), flavour=flavour,
                **{k: v for k, v in config.items() if k in LEGACY_MODE_KEYS},
            )
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{path}: {exc}") from None
