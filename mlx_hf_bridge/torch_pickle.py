"""Read ``pytorch_model.bin`` without torch, with ``torch.load(weights_only=True)`` semantics.

The unpickler only admits the handful of globals a plain state dict needs (tensor rebuild
functions, storages, ``OrderedDict``); anything else — the code-execution vector of pickle — is
refused with an error. Tensors become NumPy arrays read straight from the zip archive.
"""

from __future__ import annotations

import collections
import pickle
import zipfile

import numpy as np

_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "BFloat16Storage": "bfloat16",
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class _StorageType:
    def __init__(self, name):
        self.name = name


def _rebuild_tensor(storage, offset, size, stride, *_):
    array = storage
    if len(size) == 0:
        return array[offset : offset + 1].reshape(())
    itemsize = array.itemsize
    return np.lib.stride_tricks.as_strided(
        array[offset:], shape=tuple(size), strides=tuple(s * itemsize for s in stride)
    ).copy()


class _WeightsUnpickler(pickle.Unpickler):
    def __init__(self, file, archive: zipfile.ZipFile, prefix: str):
        super().__init__(file)
        self._archive = archive
        self._prefix = prefix

    def find_class(self, module, name):
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise pickle.UnpicklingError(
            f"refusing to unpickle {module}.{name}: only plain tensor state dicts are loaded "
            "(torch.load(weights_only=True) semantics). Convert the checkpoint to model.safetensors."
        )

    def persistent_load(self, pid):
        kind, storage_type, key, _location, _numel = pid
        if kind != "storage":
            raise pickle.UnpicklingError(f"unsupported persistent id {kind!r}")
        if isinstance(storage_type, _StorageType):
            name = storage_type.name
        else:  # torch >= 2 pickles the dtype rather than the storage class
            raise pickle.UnpicklingError(f"unsupported storage type {storage_type!r}")
        raw = self._archive.read(f"{self._prefix}/data/{key}")
        dtype = _STORAGE_DTYPES[name]
        if dtype == "bfloat16":
            # bfloat16 -> float32 by shifting the 16 stored bits into the high half
            bits = np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16
            return bits.view(np.float32)
        return np.frombuffer(raw, dtype=dtype)


def load_torch_bin(path) -> dict[str, np.ndarray]:
    """Load a zip-format ``pytorch_model.bin`` state dict as NumPy arrays."""
    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"{path} is a legacy (non-zip) torch pickle; it cannot be read safely. "
            "Re-save it with torch >= 1.6 or convert it to model.safetensors."
        )
    with zipfile.ZipFile(path) as archive:
        pkl = next(n for n in archive.namelist() if n.endswith("data.pkl"))
        prefix = pkl[: -len("/data.pkl")]
        with archive.open(pkl) as f:
            state = _WeightsUnpickler(f, archive, prefix).load()
    if not isinstance(state, dict):
        raise ValueError(f"{path} does not hold a state dict")
    return dict(state)
