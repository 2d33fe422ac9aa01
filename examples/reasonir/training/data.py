"""Step 2: load the training table, split, sample, flatten to ``query`` / ``pos`` / ``neg`` texts.

No PyLate / sentence-transformers import here (those live in ``build.py``); only ``datasets``.

Sources ``--dataset`` accepts:

- a ``save_to_disk`` folder (``prepare_dataset.py``'s default output),
- a ``.jsonl`` / ``.json`` / ``.parquet`` / ``.csv`` file,
- a Hub-shaped folder (README ``configs:`` or plain data files) or a Hub id, with ``--dataset_config``.

A prepared table has ``query`` text and ``pos`` / ``neg`` pairs ``[instruction, text]``. A raw ReasonIR
``hq`` table (``query`` still a list, positives still BRIGHT ids) is prepared on the fly when BRIGHT
documents are given (``--documents``; the default for the ``reasonir/reasonir-data`` Hub id).
"""

from __future__ import annotations

import logging
import math
import sys
from pathlib import Path

logger = logging.getLogger(__name__)

_HERE = Path(__file__).resolve().parent.parent
if str(_HERE) not in sys.path:  # prepare_dataset.py sits next to the training package
    sys.path.insert(0, str(_HERE))

from prepare_dataset import (  # noqa: E402
    BRIGHT_CONFIG,
    BRIGHT_HUB_ID,
    REASONIR_HUB_ID,
    as_text_query,
    first_pair,
    prepare,
)

COLUMNS = ("query", "pos", "neg")
_FILE_BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}


def load_table(spec: str, config: str | None = None, split: str | None = None):
    """A Dataset or DatasetDict from a Hub id, a ``save_to_disk`` folder, a data file or a data folder."""
    import datasets

    path = Path(spec)
    if path.is_dir() and ((path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists()
                          or (path / "state.json").exists()):
        table = datasets.load_from_disk(str(path))
    elif path.is_file():
        builder = _FILE_BUILDERS.get(path.suffix.lower())
        if builder is None:
            raise ValueError(f"unsupported data file {spec!r}: use .jsonl, .json, .parquet, .csv or a folder")
        table = datasets.load_dataset(builder, data_files={"train": str(path)})
    else:
        # A Hub id, or a folder shaped like a Hub dataset repository.
        table = datasets.load_dataset(str(spec), config) if config else datasets.load_dataset(str(spec))
    return pick_split(table, split) if split else table


def pick_split(table, split: str = "train"):
    """``table[split]`` for a DatasetDict (its only split when there is one), ``table`` otherwise."""
    if not isinstance(table, dict):  # a Dataset (DatasetDict is a dict)
        return table
    if split in table:
        return table[split]
    if len(table) == 1:
        return next(iter(table.values()))
    raise KeyError(f"split {split!r} not found; available: {', '.join(table)}")


def is_raw(table) -> bool:
    """True for a raw ReasonIR table (``query`` is still an ``[instruction, text]`` list)."""
    if "query" not in table.column_names or len(table) == 0:
        return False
    return not isinstance(table[0]["query"], str)


def pair_text(value) -> str:
    """``[instruction, text]`` -> ``"instruction text"`` (PyLate joins with one space); text stays text."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    pair = first_pair(value)
    return "" if pair is None else pair[0] + " " + pair[1]


def flatten(table):
    """Keep exactly ``query``, ``pos``, ``neg`` (in that order: the roles come from column order), as text."""
    missing = set(COLUMNS) - set(table.column_names)
    if missing:
        raise ValueError(f"the training table needs columns {', '.join(COLUMNS)}; missing {sorted(missing)} "
                         f"(has {table.column_names})")

    def to_text(batch):
        return {
            "query": [as_text_query(q) for q in batch["query"]],
            "pos": [pair_text(p) for p in batch["pos"]],
            "neg": [pair_text(n) for n in batch["neg"]],
        }

    extra = [c for c in table.column_names if c not in COLUMNS]
    out = table.map(to_text, batched=True, remove_columns=list(COLUMNS) + extra, desc="flatten")
    return out.select_columns(list(COLUMNS))


def drop_empty(table):
    """Drop rows whose query, positive or negative text is empty (e.g. an unresolved BRIGHT id)."""

    def keep(batch):
        return [all(batch[c][i] and batch[c][i].strip() for c in COLUMNS) for i in range(len(batch["query"]))]

    before = len(table)
    out = table.filter(keep, batched=True, desc="drop empty rows")
    if len(out) < before:
        logger.warning("dropped %d of %d rows with an empty query, positive or negative", before - len(out), before)
    return out


def sample(table, size: int, seed: int):
    """A random subset of ``size`` rows (all rows when there are fewer)."""
    if size >= len(table):
        return table
    return table.shuffle(seed=seed).select(range(size))


def split_holdout(table, holdout: float, seed: int):
    """``(train, eval)``: ``holdout`` < 1 is a fraction, >= 1 a row count; 0 gives ``eval=None``."""
    if not holdout:
        return table, None
    n_eval = math.ceil(holdout * len(table)) if holdout < 1 else int(holdout)
    if not 0 < n_eval < len(table):
        raise ValueError(f"--holdout {holdout} leaves no training or no held-out rows ({len(table)} rows)")
    splits = table.train_test_split(test_size=n_eval, seed=seed)
    return splits["train"], splits["test"]


def load_training_data(cfg):
    """``TrainingConfig`` -> ``(train_dataset, eval_dataset | None)`` with text columns query, pos, neg."""
    table = pick_split(load_table(cfg.dataset, cfg.dataset_config), cfg.split)
    if is_raw(table):
        documents = cfg.documents
        if documents is None and cfg.dataset == REASONIR_HUB_ID:
            documents = BRIGHT_HUB_ID
        if documents is None:
            raise ValueError(
                f"{cfg.dataset} holds raw ReasonIR rows (query lists, BRIGHT ids as positives): pass "
                "--documents (BRIGHT documents) or run prepare_dataset.py first."
            )
        table = prepare(table, load_table(documents, cfg.documents_config or BRIGHT_CONFIG))
    table = drop_empty(flatten(table))
    if cfg.sample:
        table = sample(table, cfg.sample_size, cfg.seed)
    train, evaluation = split_holdout(table, cfg.holdout, cfg.seed)
    if len(train) == 0:
        raise ValueError("no training rows left")
    return train, evaluation
