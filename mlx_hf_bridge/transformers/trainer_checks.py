"""Label checks the Trainer runs on the whole training set before any forward pass.

transformers fails on these mid-training (torch's "Target out of bounds", a tensor of strings, a shape
mismatch in BCE) or, worse, trains on misaligned token labels; here each is named with its fix first.
"""

from __future__ import annotations

import numbers

import numpy as np

from . import trainer_data as TD

IGNORE = TD.IGNORE_INDEX
_ALIGN_FIX = ("Align word labels to tokens with the tokenizer's word_ids() (label the first sub-token, -100 for "
              "special tokens and the other sub-tokens), as transformers' token-classification examples do.")


def _label_column(dataset, names):
    cols = TD.column_names(dataset) or []
    for name in ("labels", "label", "label_ids"):
        if name in cols:
            return name
    return next((n for n in names if n in cols), None)


def _values(dataset, column):
    if hasattr(dataset, "column_names") and not isinstance(dataset, list):
        return list(dataset[column])
    return [row[column] for row in dataset]


def _label2id_hint(config) -> str:
    label2id = getattr(config, "label2id", None) or {}
    custom = {k: v for k, v in label2id.items() if not str(k).startswith("LABEL_")}
    if custom:
        return (f" The model's label2id is {dict(list(custom.items())[:5])}: map the column with it, e.g. "
                "dataset.map(lambda row: {'label': model.config.label2id[row['label']]}).")
    return (" Map them to class ids first (dataset.class_encode_column('label'), or a dict label2id) and load the "
            "model with num_labels, id2label and label2id.")


def check_training_labels(model, dataset, label_names, split="train"):
    """Labels outside num_labels, string labels, a problem_type the labels contradict, token labels not
    aligned to input_ids: a ValueError naming the first bad row and the fix."""
    task = getattr(model, "task", None)
    config = getattr(model, "config", None)
    if task not in ("sequence-classification", "token-classification") or config is None:
        return
    column = _label_column(dataset, label_names)
    if column is None:
        return
    values = _values(dataset, column)
    num_labels = int(config.num_labels)
    where = f"The {split} dataset's {column!r} column"
    strings = [i for i, v in enumerate(values) if isinstance(v, str) or
               (isinstance(v, (list, tuple)) and v and isinstance(v[0], str))]
    if strings:
        raise ValueError(f"{where} holds strings (row {strings[0]}: {values[strings[0]]!r}); the model needs class "
                         f"ids 0..{num_labels - 1}." + _label2id_hint(config))
    if task == "token-classification":
        return _check_token_labels(dataset, values, num_labels, where)
    _check_sequence_labels(config, values, num_labels, where)


def _check_sequence_labels(config, values, num_labels, where):
    first = values[0]
    multi_valued = isinstance(first, (list, tuple, np.ndarray))
    all_int = all(isinstance(v, numbers.Integral) for v in values) if not multi_valued else False
    problem = config.problem_type
    if problem is None:  # transformers infers it from the first batch; say now what it will infer
        problem = ("regression" if num_labels == 1 else "single_label_classification" if all_int
                   else "multi_label_classification")
    if problem == "single_label_classification":
        if multi_valued or not all_int:
            raise ValueError(
                f"{where} holds {'lists' if multi_valued else 'floats'} (row 0: {first!r}) but problem_type="
                "'single_label_classification' needs one integer class id per row. For multi-hot targets set "
                "problem_type='multi_label_classification' (float lists of length num_labels); for scores, "
                "problem_type='regression'.")
        bad = [i for i, v in enumerate(values) if not (0 <= v < num_labels or v == IGNORE)]
        if bad:
            found = sorted({values[i] for i in bad})[:5]
            raise ValueError(f"{where} has labels {found} outside 0..{num_labels - 1} (num_labels={num_labels}; "
                             f"first at row {bad[0]}). Fix the labels, or load the model with num_labels=<number of "
                             "classes> (and id2label / label2id).")
    elif problem == "multi_label_classification":
        bad = [i for i, v in enumerate(values) if not isinstance(v, (list, tuple, np.ndarray)) or len(v) != num_labels]
        if bad:
            raise ValueError(f"{where}: problem_type='multi_label_classification' needs a multi-hot list of "
                             f"{num_labels} floats per row (num_labels={num_labels}); row {bad[0]} is "
                             f"{values[bad[0]]!r}. For one class id per row use problem_type="
                             "'single_label_classification' (integer labels).")
        if any(isinstance(x, numbers.Integral) and not isinstance(x, bool) for x in values[0]):
            raise ValueError(f"{where}: multi_label_classification needs float multi-hot labels (torch's "
                             f"BCEWithLogitsLoss refuses integers); row 0 is {values[0]!r}. Cast them to float.")
    elif problem == "regression":
        width = 1 if not multi_valued else len(first)
        if (num_labels > 1 and width != num_labels) or (num_labels == 1 and width != 1):
            raise ValueError(f"{where}: problem_type='regression' with num_labels={num_labels} needs "
                             f"{num_labels} value(s) per row; row 0 is {first!r}.")


def _check_token_labels(dataset, values, num_labels, where):
    ids = _values(dataset, "input_ids") if "input_ids" in (TD.column_names(dataset) or []) else None
    for i, row in enumerate(values):
        if not isinstance(row, (list, tuple, np.ndarray)):
            raise ValueError(f"{where}: token classification needs one label per token (a list); row {i} is "
                             f"{row!r}. {_ALIGN_FIX}")
        if ids is not None and len(row) != len(ids[i]):
            raise ValueError(f"{where}: row {i} has {len(row)} labels for {len(ids[i])} input_ids; token labels "
                             f"must be aligned to the tokens. {_ALIGN_FIX}")
        bad = [v for v in row if not (0 <= v < num_labels or v == IGNORE)]
        if bad:
            raise ValueError(f"{where}: row {i} has labels {sorted(set(bad))[:5]} outside 0..{num_labels - 1} "
                             f"(num_labels={num_labels}; -100 marks ignored tokens). Fix the labels or load the "
                             "model with num_labels=<number of tags>.")


def refuse_save_on_each_node(args):
    """save_on_each_node=True on several hosts: transformers writes every checkpoint on each host's first
    process; the engine writes on rank 0 alone, so the other hosts would have nothing to resume from.
    Refused on every rank alike (the ranks compare their local indices first)."""
    if not getattr(args, "save_on_each_node", False) or args.world_size == 1:
        return
    from ..engine import distributed

    world = distributed.group()
    seen = distributed.agree(world, [float(args.local_process_index)], "comparing the ranks' hosts", args._timeout())
    hosts = sum(int(row[0]) == 0 for row in seen)
    if hosts > 1:
        raise ValueError(f"save_on_each_node=True with {hosts} hosts is not supported on MLX: checkpoints and the "
                         "final model are written by rank 0 alone. Set save_on_each_node=False and put output_dir "
                         "on a folder every host sees (a shared disk), or copy rank 0's checkpoint to each host "
                         "before resuming.")
