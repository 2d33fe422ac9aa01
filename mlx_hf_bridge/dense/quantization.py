"""sentence-transformers' ``quantize_embeddings`` (numpy, as ST computes it), in both generations.

ST 5.3 and ST 6.2 differ, and each is reproduced:
- int8 / uint8: ST 6.2 floors and clips the bucket index to [0, 255] (steps of 0 become 1); ST 5.3
  truncates ``(x - start) / step`` toward zero without clipping (a value outside the calibration
  range wraps around in the integer cast, a 0 step gives inf / nan casts);
- binary / ubinary: ST 6.2 packs each row (``np.packbits(axis=-1)``); ST 5.3 packs the flattened
  matrix and reshapes, so a width that is not a multiple of 8 mixes bits of neighbouring rows;
- ST 6.2 refuses int8 ranges inferred from a single embedding, and quantizes a list of 2-D
  (multi-vector) matrices with one shared calibration.
``quantize_embeddings`` is ST 6.2's (``sentence_transformers.quantize_embeddings`` / ``util``);
``quantize_embeddings_st5`` is ST 5.3's (``sentence_transformers.quantization``).
"""

from __future__ import annotations

import logging

import numpy as np

logger = logging.getLogger(__name__)

PRECISIONS = ("float32", "int8", "uint8", "binary", "ubinary")


def _as_numpy(embeddings):
    import mlx.core as mx

    if isinstance(embeddings, mx.array):
        return np.array(embeddings.astype(mx.float32) if embeddings.dtype == mx.bfloat16 else embeddings)
    if hasattr(embeddings, "detach") and hasattr(embeddings, "cpu"):  # a torch tensor from a script
        return embeddings.detach().cpu().float().numpy()
    return embeddings


def _few_warning(precision, n: int, plural_single: bool = False):
    if n < 100:
        noun = "embedding" if plural_single and n == 1 else "embeddings"
        logger.warning(
            f"Computing {precision} quantization buckets based on {n} {noun}. {precision} quantization is more stable "
            "with `ranges` calculated from more embeddings or a `calibration_embeddings` that can be used to "
            "calculate the buckets."
        )


def _ranges(embeddings, precision, calibration_embeddings):
    if calibration_embeddings is None:
        if embeddings.ndim == 1 or embeddings.shape[0] == 1:
            raise ValueError(
                f"Cannot compute {precision} quantization ranges from a single embedding. Call `quantize_embeddings` "
                "with `ranges` or `calibration_embeddings` from a representative set of embeddings instead."
            )
        _few_warning(precision, len(embeddings))
        calibration_embeddings = embeddings
    calibration_embeddings = _as_numpy(calibration_embeddings)
    return np.vstack((np.min(calibration_embeddings, axis=0), np.max(calibration_embeddings, axis=0)))


def quantize_embeddings(embeddings, precision: str, ranges=None, calibration_embeddings=None):
    """ST 6.2's ``util.quantize_embeddings``: numpy int8 / uint8 / binary (int8) / ubinary (uint8)."""
    embeddings = _as_numpy(embeddings)
    if isinstance(embeddings, list):
        if not embeddings:
            return []
        embeddings = [_as_numpy(e) for e in embeddings]
        if isinstance(embeddings[0], np.ndarray) and embeddings[0].ndim == 2:  # multi-vector: one calibration
            if precision.endswith("int8") and ranges is None:
                data = np.concatenate(embeddings, axis=0) if calibration_embeddings is None else calibration_embeddings
                if len(data):
                    ranges = _ranges(data, precision, calibration_embeddings)
            return [quantize_embeddings(m, precision, ranges, calibration_embeddings) for m in embeddings]
        embeddings = np.array(embeddings)
    embeddings = np.asarray(embeddings)
    if embeddings.dtype in (np.uint8, np.int8):
        raise Exception("Embeddings to quantize must be float rather than int8 or uint8.")
    if embeddings.ndim == 2 and embeddings.shape[0] == 0:
        dim = embeddings.shape[1]
        if precision.endswith("int8"):
            return np.zeros((0, dim), dtype=np.int8 if precision == "int8" else np.uint8)
        if precision.endswith("binary"):
            return np.zeros((0, (dim + 7) // 8), dtype=np.int8 if precision == "binary" else np.uint8)
    if precision == "float32":
        return embeddings.astype(np.float32)
    if precision.endswith("int8"):
        if ranges is None:
            ranges = _ranges(embeddings, precision, calibration_embeddings)
        ranges = np.asarray(_as_numpy(ranges)).astype(np.float32, copy=False)
        starts = ranges[0, :]
        steps = (ranges[1, :] - starts) / 255
        steps = np.where(steps == 0, 1, steps)
        buckets = np.clip(np.floor((embeddings - starts) / steps), 0, 255)
        if precision == "uint8":
            return buckets.astype(np.uint8)
        if precision == "int8":
            return (buckets - 128).astype(np.int8)
    if precision == "binary":
        return (np.packbits(embeddings > 0, axis=-1) - 128).astype(np.int8)
    if precision == "ubinary":
        return np.packbits(embeddings > 0, axis=-1)
    raise ValueError(f"Precision {precision!r} is not supported")


def quantize_embeddings_st5(embeddings, precision: str, ranges=None, calibration_embeddings=None):
    """ST 5.3's ``quantization.quantize_embeddings`` (its casts and packing, see the module docstring)."""
    embeddings = _as_numpy(embeddings)
    if isinstance(embeddings, list):
        embeddings = np.array([_as_numpy(e) for e in embeddings])
    embeddings = np.asarray(embeddings)
    if embeddings.dtype in (np.uint8, np.int8):
        raise Exception("Embeddings to quantize must be float rather than int8 or uint8.")
    if precision == "float32":
        return embeddings.astype(np.float32)
    if precision.endswith("int8"):
        if ranges is None:
            if calibration_embeddings is not None:
                calibration_embeddings = _as_numpy(calibration_embeddings)
                ranges = np.vstack((np.min(calibration_embeddings, axis=0), np.max(calibration_embeddings, axis=0)))
            else:
                _few_warning(precision, len(embeddings), plural_single=True)
                ranges = np.vstack((np.min(embeddings, axis=0), np.max(embeddings, axis=0)))
        ranges = np.asarray(_as_numpy(ranges))
        starts = ranges[0, :]
        steps = (ranges[1, :] - ranges[0, :]) / 255
        with np.errstate(divide="ignore", invalid="ignore"):  # ST 5.3 divides by a 0 step as numpy does
            if precision == "uint8":
                return ((embeddings - starts) / steps).astype(np.uint8)
            if precision == "int8":
                return ((embeddings - starts) / steps - 128).astype(np.int8)
    if precision == "binary":
        return (np.packbits(embeddings > 0).reshape(embeddings.shape[0], -1) - 128).astype(np.int8)
    if precision == "ubinary":
        return np.packbits(embeddings > 0).reshape(embeddings.shape[0], -1)
    raise ValueError(f"Precision {precision!r} is not supported")


def quantizer(generation: str):
    """The ``quantize_embeddings`` of the generation a model reproduces ("st5" | "st6")."""
    return quantize_embeddings_st5 if generation == "st5" else quantize_embeddings
