"""The data side of transformers' Trainer without torch: rows, unused-column removal, samplers in
torch's exact order, ``num_items_in_batch``, and the evaluation loop's padded concatenation.

Orders: transformers' training sampler is accelerate's ``SeedableRandomSampler``: epoch ``e`` is
``torch.randperm(n, generator=manual_seed(seed + e))`` (``seed`` = ``data_seed`` or ``seed``).
:func:`torch_randperm` reproduces torch's CPU ``randperm`` (mt19937, Fisher-Yates on 32-bit draws)
with NumPy, so the bridge visits rows in the same order as transformers for the same seed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

# Forward arguments of transformers' heads (their forward signatures in 5.3 and 5.24, checked by
# tests/test_transformers_trainer_args.py): what remove_unused_columns keeps.
_BERT = ["input_ids", "attention_mask", "token_type_ids", "position_ids", "inputs_embeds", "labels", "kwargs"]
_MODERNBERT = ["input_ids", "attention_mask", "position_ids", "inputs_embeds", "labels", "kwargs"]
FORWARD_ARGUMENTS = {
    "BertForSequenceClassification": _BERT,
    "BertForTokenClassification": _BERT,
    "BertForMaskedLM": _BERT[:5] + ["encoder_hidden_states", "encoder_attention_mask"] + _BERT[5:],
    "ModernBertForSequenceClassification": _MODERNBERT,
    "ModernBertForTokenClassification": _MODERNBERT,
    "ModernBertForMaskedLM": _MODERNBERT,
}
IGNORE_INDEX = -100


def forward_arguments(model) -> list[str]:
    """The columns transformers' ``_set_signature_columns_if_needed`` reads from ``model.forward``."""
    import inspect

    known = FORWARD_ARGUMENTS.get(getattr(model, "hf_architecture", ""))
    if known is not None:
        return list(known)
    forward = getattr(model, "forward", None) or model.__call__
    return list(inspect.signature(forward).parameters)


def signature_columns(model, label_names) -> list[str]:
    return forward_arguments(model) + sorted(set(["label", "label_ids", *label_names]))


def column_names(dataset) -> list[str] | None:
    names = getattr(dataset, "column_names", None)
    if isinstance(names, list):
        return names
    if isinstance(dataset, Sequence) and len(dataset) and isinstance(dataset[0], Mapping):
        return list(dataset[0])
    return None


def check_dataset(dataset, split: str):
    if type(dataset).__name__ in ("IterableDataset", "IterableDatasetDict") or not hasattr(dataset, "__len__"):
        raise TypeError(f"The {split} dataset has no length (an IterableDataset?); the MLX Trainer needs a map-style "
                        "dataset: datasets.Dataset.from_list(list(iterable.take(n))) or a list of dicts.")
    if len(dataset) == 0:
        raise ValueError(f"The {split} dataset is empty (0 rows). Check the split/filtering that produced it.")


def rows(dataset, indices, keep: set | None = None) -> list[dict]:
    """Rows at ``indices`` as dicts, restricted to ``keep`` (transformers' RemoveColumnsCollator)."""
    indices = [int(i) for i in indices]
    columns = dataset[indices] if hasattr(dataset, "column_names") and not isinstance(dataset, list) else None
    if isinstance(columns, Mapping):
        out = [{k: columns[k][j] for k in columns} for j in range(len(indices))]
    else:
        out = [dict(dataset[i]) for i in indices]
    if keep is not None:
        out = [{k: v for k, v in row.items() if k in keep} for row in out]
    return out


def to_numpy(batch) -> dict:
    """A collator's output as NumPy arrays (torch tensors from a torch collator converted, no torch import)."""
    out = {}
    for key, value in dict(batch).items():
        if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor
            value = value.detach().cpu().numpy()
        elif not isinstance(value, (str, type(None))) and not (isinstance(value, list) and value
                                                                and isinstance(value[0], str)):
            value = np.asarray(value)
        out[key] = value
    return out


# --- torch's sampling order ------------------------------------------------------------------------
class TorchGenerator:
    """torch's CPU generator (mt19937) as far as ``randperm`` and ``random_()`` read it."""

    def __init__(self, seed: int):
        self._bits = np.random.RandomState(int(seed) & 0xFFFFFFFF)._bit_generator

    def draws(self, n: int) -> np.ndarray:
        return self._bits.random_raw(n).astype(np.uint64) if n > 0 else np.zeros(0, np.uint64)

    def randperm(self, n: int) -> np.ndarray:
        if n >= 1 << 24:
            raise ValueError(f"reproducing torch.randperm for {n} >= 2**24 rows is not implemented")
        perm = np.arange(n, dtype=np.int64)
        raw = self.draws(n - 1)
        for i in range(n - 1):  # torch: z = generator->random() % (n - i); swap(r[i], r[i + z])
            z = i + int(raw[i] % np.uint64(n - i))
            perm[i], perm[z] = perm[z], perm[i]
        return perm


def torch_randperm(n: int, seed: int) -> np.ndarray:
    return TorchGenerator(seed).randperm(n)


class EpochSampler:
    """Index batches of one epoch: ``order(epoch)`` chunked by ``batch_size`` (the last one may be short)."""

    def __init__(self, n: int, batch_size: int, drop_last: bool, order):
        self.n, self.batch_size, self.drop_last, self._order = n, int(batch_size), bool(drop_last), order
        self.epoch = 0

    def set_epoch(self, epoch: int):
        self.epoch = int(epoch)

    def __iter__(self):
        order = self._order(self.epoch)
        stop = self.n - self.n % self.batch_size if self.drop_last else self.n
        for i in range(0, stop, self.batch_size):
            yield [int(j) for j in order[i : i + self.batch_size]]

    def __len__(self):
        return self.n // self.batch_size if self.drop_last else -(-self.n // self.batch_size)


def length_grouped_indices(lengths, batch_size: int, perm: np.ndarray, mega_batch_mult=None) -> list[int]:
    """transformers' ``get_length_grouped_indices`` on a given permutation (its megabatch rule)."""
    if mega_batch_mult is None:
        mega_batch_mult = max(min(len(lengths) // (batch_size * 4), 50), 1)
    size = mega_batch_mult * batch_size
    perm = [int(i) for i in perm]
    megabatches = [sorted(perm[i : i + size], key=lambda i: lengths[i], reverse=True)
                   for i in range(0, len(lengths), size)]
    maxima = [lengths[m[0]] for m in megabatches]
    best = int(np.argmax(maxima))  # the first maximum, as torch.argmax
    megabatches[0][0], megabatches[best][0] = megabatches[best][0], megabatches[0][0]
    return [i for m in megabatches for i in m]


def dataset_lengths(dataset, length_column_name: str, model_input_name: str | None) -> list[int]:
    """LengthGroupedSampler's lengths: the length column of a datasets.Dataset, else len(row[input])."""
    names = column_names(dataset) or []
    if hasattr(dataset, "column_names") and length_column_name in names:
        return [int(x) for x in dataset[length_column_name]]
    name = model_input_name or "input_ids"
    first = dataset[0]
    if not isinstance(first, Mapping) or name not in first:
        raise ValueError("Can only automatically infer lengths for datasets whose items are dictionaries with an "
                         f"'{name}' key.")
    column = dataset[name] if hasattr(dataset, "column_names") else [row[name] for row in dataset]
    return [len(x) for x in column]


# --- num_items_in_batch -----------------------------------------------------------------------------
def count_items(batches: list[dict]):
    """transformers' ``_get_num_items_in_batch``: labels != -100 summed over the accumulation window,
    when the batches carry ``labels`` (else None)."""
    if not batches or "labels" not in batches[0]:
        return None
    try:
        return int(sum(int((np.asarray(b["labels"]) != IGNORE_INDEX).sum()) for b in batches))
    except (TypeError, ValueError):
        return None


# --- evaluation containers ----------------------------------------------------------------------------
def pad_and_concatenate(a: np.ndarray, b: np.ndarray, padding_index=IGNORE_INDEX) -> np.ndarray:
    """transformers' ``numpy_pad_and_concatenate``: along axis 0, padding axis 1 to the longer one."""
    if a.ndim == 1 or a.shape[1] == b.shape[1]:
        return np.concatenate((a, b), axis=0)
    shape = (a.shape[0] + b.shape[0], max(a.shape[1], b.shape[1])) + a.shape[2:]
    out = np.full(shape, padding_index, dtype=np.result_type(a.dtype, b.dtype))
    out[: a.shape[0], : a.shape[1]] = a
    out[a.shape[0] :, : b.shape[1]] = b
    return out


def nested_concat(a, b, padding_index=IGNORE_INDEX):
    if a is None:
        return b
    if isinstance(a, (list, tuple)):
        return type(a)(nested_concat(x, y, padding_index) for x, y in zip(a, b))
    if isinstance(a, Mapping):
        return type(a)({k: nested_concat(v, b[k], padding_index) for k, v in a.items()})
    return pad_and_concatenate(a, b, padding_index)
