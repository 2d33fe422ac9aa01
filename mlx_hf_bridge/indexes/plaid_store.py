"""PLAID index folder: numpy arrays memory-mapped on load, rewritten as a whole folder on change.

Every change (create, add, remove) writes a complete new folder beside the old one and swaps it in
with one rename (:func:`mlx_hf_bridge.io_utils.new_folder`), so a crash leaves the previous index
intact and the files are never half-written. ``metadata.json`` records every array's shape and
dtype; :func:`load` checks them and names a damaged folder instead of returning wrong results.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..io_utils import new_folder, owner_alive
from .plaid_codec import ResidualCodec

FORMAT = "mlx_hf_bridge.plaid/1"
_ARRAYS = ("centroids", "bucket_cutoffs", "bucket_weights", "codes", "residuals", "doc_offsets",
           "ivf", "ivf_offsets")


class IndexCorruptedError(ValueError):
    """The index folder exists but cannot be read back as the index that was written."""


@dataclass
class PlaidData:
    codec: ResidualCodec
    codes: np.ndarray  # (n_tokens,) int32 centroid of each token
    residuals: np.ndarray  # (n_tokens, dim * nbits / 8) uint8
    doc_offsets: np.ndarray  # (n_docs + 1,) int64: tokens of document i are [offsets[i], offsets[i+1])
    ids: list = field(default_factory=list)  # the user's document ids, in storage order
    embeddings: np.ndarray | None = None  # (n_tokens, dim) float32, only with store_embeddings
    ivf: np.ndarray | None = None  # documents of each centroid, grouped by centroid
    ivf_offsets: np.ndarray | None = None  # (n_centroids + 1,)

    @property
    def n_docs(self) -> int:
        return len(self.doc_offsets) - 1

    def build_ivf(self) -> None:
        """Inverted lists: for every centroid, the (unique, sorted) documents with a token there."""
        doc_of_token = np.repeat(np.arange(self.n_docs, dtype=np.int64), np.diff(self.doc_offsets))
        pairs = np.unique(self.codes.astype(np.int64) * max(self.n_docs, 1) + doc_of_token)
        n_docs = max(self.n_docs, 1)
        centroid, doc = pairs // n_docs, pairs % n_docs
        self.ivf = doc.astype(np.int32)
        counts = np.bincount(centroid, minlength=len(self.codec.centroids))
        self.ivf_offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

    def doc_tokens(self, doc_indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Token rows of the given documents, concatenated, and the start of each document in them."""
        starts, ends = self.doc_offsets[doc_indices], self.doc_offsets[doc_indices + 1]
        lengths = ends - starts
        rows = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths) + np.arange(lengths.sum())
        return rows, np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)


def write(folder: Path, data: PlaidData, config: dict) -> None:
    """Write ``data`` as a new folder and swap it in at ``folder`` in one rename."""
    arrays = {"centroids": data.codec.centroids, "bucket_cutoffs": data.codec.bucket_cutoffs,
              "bucket_weights": data.codec.bucket_weights, "codes": data.codes,
              "residuals": data.residuals, "doc_offsets": data.doc_offsets, "ivf": data.ivf,
              "ivf_offsets": data.ivf_offsets}
    if data.embeddings is not None:
        arrays["embeddings"] = data.embeddings
    meta = {"format": FORMAT, "nbits": data.codec.nbits, "normalized": data.codec.normalized,
            "dim": data.codec.dim, "n_documents": data.n_docs, "config": config,
            "arrays": {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in arrays.items()}}
    size = sum(int(v.nbytes) for v in arrays.values())
    with new_folder(folder, replace_existing=True, size_hint=size) as tmp:
        for name, array in arrays.items():
            np.save(tmp / f"{name}.npy", np.ascontiguousarray(array))
        (tmp / "documents_ids.json").write_text(json.dumps(list(data.ids)))
        (tmp / "metadata.json").write_text(json.dumps(meta, indent=1))  # last: marks the folder complete


def _restore_swapped_aside(folder: Path) -> None:
    """A kill between new_folder's two renames leaves the previous index aside: put it back."""
    if folder.exists():
        return
    for old in sorted(folder.parent.glob(f".{folder.name}.old-*")):
        if owner_alive(old) is False:
            os.replace(old, folder)
            return


def exists(folder: Path) -> bool:
    _restore_swapped_aside(folder)
    return folder.exists()


def load(folder: Path) -> tuple[PlaidData, dict]:
    """Memory-map the index at ``folder``; any inconsistency raises :class:`IndexCorruptedError`."""
    _restore_swapped_aside(folder)
    fix = "Rebuild it: create the index with override=True and add the documents again."
    try:
        meta = json.loads((folder / "metadata.json").read_text())
        if meta.get("format") != FORMAT:
            raise IndexCorruptedError(f"{folder} is not a PLAID index written by mlx_hf_bridge "
                                      f"(format {meta.get('format')!r}, expected {FORMAT!r}). {fix}")
        arrays = {}
        for name, spec in meta["arrays"].items():
            arrays[name] = np.load(folder / f"{name}.npy", mmap_mode="r")
            if list(arrays[name].shape) != spec["shape"] or str(arrays[name].dtype) != spec["dtype"]:
                raise IndexCorruptedError(
                    f"{folder / (name + '.npy')} has shape {list(arrays[name].shape)} {arrays[name].dtype}, "
                    f"metadata.json says {spec['shape']} {spec['dtype']}. {fix}")
        ids = json.loads((folder / "documents_ids.json").read_text())
    except IndexCorruptedError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise IndexCorruptedError(f"The PLAID index at {folder} is damaged or incomplete "
                                  f"({type(error).__name__}: {error}). {fix}") from error
    n_docs = meta["n_documents"]
    if len(ids) != n_docs or len(arrays["doc_offsets"]) != n_docs + 1 \
            or int(arrays["doc_offsets"][-1]) != len(arrays["codes"]) \
            or len(arrays["ivf_offsets"]) != len(arrays["centroids"]) + 1:
        raise IndexCorruptedError(f"The PLAID index at {folder} is inconsistent: {len(ids)} ids, "
                                  f"{n_docs} documents in metadata, {len(arrays['codes'])} tokens. {fix}")
    codec = ResidualCodec(np.asarray(arrays["centroids"]), np.asarray(arrays["bucket_cutoffs"]),
                          np.asarray(arrays["bucket_weights"]), meta["nbits"], meta["normalized"])
    data = PlaidData(codec, arrays["codes"], arrays["residuals"], arrays["doc_offsets"], ids,
                     arrays.get("embeddings"), arrays["ivf"], arrays["ivf_offsets"])
    return data, meta
