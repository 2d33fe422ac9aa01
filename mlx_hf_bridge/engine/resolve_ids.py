"""sentence-transformers 6.2's ``util.resolve_ids``: a batched ``datasets`` transform that joins ID
columns (``query_id``, ``document_ids``, ...) against lookup datasets, so IR / KD datasets that store
IDs next to separate text tables can train without materialising the texts.

Behaviour, names and error messages follow ST 6.2 (``util/dataset.py``); tests/test_st6_xtr.py
compares outputs and errors with it. Output columns: ``query_id`` -> ``query``; a list column
``document_ids`` -> ``document_1..N`` (``output_format="columns"``) or ``documents`` (``"lists"``).
Kept (label) columns pass through, string-encoded lists parsed and cut to ``max_list_length``.
A duplicated ID resolves to its last row, as a dict would.
"""

from __future__ import annotations

import ast
import logging
from collections.abc import Mapping
from functools import partial

import numpy as np

logger = logging.getLogger(__name__)

LABEL_COLUMNS = ("label", "labels", "score", "scores")


# --- names ---------------------------------------------------------------------------------------
def output_name(input_col: str, plural: bool = False) -> str:
    """``query_id`` -> ``query``; plural: ``document_ids`` -> ``documents``, ``query_ids`` -> ``queries``."""
    endings = (("y_ids", "ies"), ("_ids", "s"), ("_id", ""), ("_idx", "")) if plural else (
        ("_ids", ""), ("_id", ""), ("_idx", ""))
    for ending, replacement in endings:
        if input_col.endswith(ending):
            return input_col[: -len(ending)] + replacement
    return input_col


def _id_column(dataset, input_col: str) -> str:
    found = [c for c in dataset.column_names if c == "id" or c.endswith("_id")]
    if len(found) == 1:
        return found[0]
    raise ValueError(
        f"Cannot infer the ID column of lookups[{input_col!r}]: expected exactly one column named 'id' or "
        f"ending in '_id', found {found or 'none'} among {sorted(dataset.column_names)}. "
        "Pass an explicit (dataset, id_col) tuple."
    )


def _value_column(dataset, id_col: str, input_col: str) -> str:
    others = [c for c in dataset.column_names if c != id_col]
    if len(others) == 1:
        return others[0]
    raise ValueError(
        f"Cannot infer the value column of lookups[{input_col!r}]: expected exactly one column besides "
        f"{id_col!r}, found {others or 'none'}. Pass an explicit (dataset, id_col, value_col) tuple."
    )


# --- string-encoded lists (e.g. lightonai/ms-marco-en-bge-gemma stores "[1, 2, ...]") ------------
def _looks_like_list(value) -> bool:
    return isinstance(value, str) and value.lstrip().startswith("[")


def _parse_lists(column: list, name: str) -> list:
    parsed = []
    for text in column:
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError) as error:
            raise ValueError(f"Column {name!r} looks like it holds string-encoded lists, but a row failed to "
                             f"parse ({error}): {text[:100]!r}") from None
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"Column {name!r} looks like it holds string-encoded lists, but a row parsed to "
                             f"{type(value).__name__} instead of a list: {text[:100]!r}")
        parsed.append(list(value))
    return parsed


# --- the ID index --------------------------------------------------------------------------------
class IdIndex:
    """id -> row of the lookup dataset (last occurrence wins). ``kind`` is the numpy kind of the ids
    when they are homogeneous and narrow (ST keeps those in a sorted typed array, so an id of another
    kind, e.g. 3.0 for the int id 3, misses); None when any hashable key may match."""

    def __init__(self, ids: list, kind: str | None):
        self.rows = {value: row for row, value in enumerate(ids)}
        self.kind = kind

    def __len__(self) -> int:
        return len(self.rows)

    def rows_of(self, ids: list) -> list[int]:
        if self.kind is not None:
            asked = np.asarray(ids)
            if asked.dtype.kind != self.kind:  # mistyped or mixed ids: the first one is reported
                raise KeyError(ids[0])
            ids = asked.tolist()
        return [self.rows[key] for key in ids]


def _typed_kind(ids: list, feature) -> str | None:
    keys = np.asarray(ids)
    if (keys.ndim == 1 and keys.dtype.kind in "iufUS" and keys.itemsize <= 128
            and getattr(feature, "dtype", None) != "uint64"):
        return keys.dtype.kind
    return None


def _lookup(ids: list, values, index: IdIndex, value_col: str, input_col: str) -> list:
    if not ids:
        return []
    try:
        rows = index.rows_of(ids)
    except TypeError:
        raise TypeError(
            f"IDs from input column {input_col!r} are not hashable, which typically means the train dataset "
            "carries a format (e.g. with_format('numpy')). Call dataset.with_format(None) before applying the "
            "transform."
        ) from None
    except KeyError as error:
        missing = error.args[0]
        if isinstance(missing, np.generic):
            missing = missing.item()
        hint = (" The ID looks like a string-encoded list. Convert the column to native lists first."
                if _looks_like_list(missing) else "")
        raise KeyError(
            f"ID {missing!r} from input column {input_col!r} was not found in its lookup dataset.{hint}") from None
    return values[rows][value_col]


# --- the transform -------------------------------------------------------------------------------
def _put(out: dict, name: str, values: list) -> None:
    if name in out:
        raise ValueError(
            f"Output column {name!r} is produced more than once (e.g. two lookups entries resolving to the same "
            "name, or an expanded list column colliding with another entry). Rename the input columns to "
            "disambiguate."
        )
    out[name] = values


def _not_a_list(what: str, kind: str) -> TypeError:
    return TypeError(f"{what} holds a {kind} rather than a list, which means the train dataset carries a format "
                     "(e.g. with_format('numpy')). Call dataset.with_format(None) before applying the transform.")


def _resolve_list_column(out, column, input_col, spec, max_list_length, output_format):
    values, index, value_col, single, plural = spec
    if max_list_length is not None:
        column = [row[:max_list_length] for row in column]
    flat = _lookup([key for row in column for key in row], values, index, value_col, input_col)
    if output_format == "lists":
        nested, start = [], 0
        for row in column:
            nested.append(flat[start : start + len(row)])
            start += len(row)
        _put(out, plural, nested)
        return
    lengths = {len(row) for row in column}
    if len(lengths) != 1:
        raise ValueError(
            f"Rows of input column {input_col!r} hold lists of differing lengths {sorted(lengths)}. List columns "
            "expand into one output column per position, which requires the same length on every row. Set "
            'max_list_length to cap all rows to a common length, or output_format="lists" to keep nested lists '
            "(the CrossEncoder listwise shape, which allows ragged rows)."
        )
    width = lengths.pop()
    if width == 0:
        raise ValueError(f"Rows of input column {input_col!r} hold empty ID lists, so there are no positions to "
                         "expand into columns. Filter such rows out of the dataset.")
    for position in range(width):  # flat is row-major: every width-th value is one position
        _put(out, f"{single}_{position + 1}", flat[position::width])


def resolve_batch(batch, resolutions: dict, keep_columns: tuple, max_list_length, output_format) -> dict:
    """One batch of ID columns -> resolved columns (a module-level function: datasets pickle it)."""
    if not isinstance(batch, Mapping):
        raise TypeError(
            f"resolve_ids expects batches as plain column dicts, got {type(batch).__name__}: the train dataset "
            "carries a format (e.g. with_format('pandas')). Call dataset.with_format(None) before applying the "
            "transform."
        )
    out: dict = {}
    for input_col, spec in resolutions.items():
        column = batch[input_col]
        if not isinstance(column, list):
            raise _not_a_list(f"Input column {input_col!r}", type(column).__name__)
        if column and _looks_like_list(column[0]):
            column = _parse_lists(column, input_col)
        if column and isinstance(column[0], (list, tuple)):
            _resolve_list_column(out, column, input_col, spec, max_list_length, output_format)
        else:
            values, index, value_col, single, _ = spec
            _put(out, single, _lookup(list(column), values, index, value_col, input_col))
    for name in keep_columns:
        if name not in batch:
            continue
        values = batch[name]
        if len(values) and _looks_like_list(values[0]):
            values = _parse_lists(values, name)
        per_row_lists = len(values) > 0 and not isinstance(values[0], (str, bytes)) and hasattr(values[0], "__len__")
        if max_list_length is not None and per_row_lists:
            values = [row[:max_list_length] for row in values]
        _put(out, name, values)
    return out


def _parse_spec(input_col: str, spec):
    if not isinstance(spec, tuple):
        return spec, None, None
    if len(spec) not in (2, 3):
        raise ValueError(f"lookups[{input_col!r}] must be a Dataset, (dataset, id_col), or "
                         f"(dataset, id_col, value_col), got a tuple of length {len(spec)}.")
    return spec[0], spec[1], spec[2] if len(spec) == 3 else None


def resolve_ids(lookups: dict, keep_columns=LABEL_COLUMNS, max_list_length: int | None = None,
                output_format: str = "columns"):
    """Build the batched transform for ``Dataset.set_transform`` (or ``map(batched=True)``).

    ``lookups``: ``{input_col: Dataset | (Dataset, id_col) | (Dataset, id_col, value_col)}``; the ID
    column (the one named ``id`` or ending in ``_id``) and the value column (the other one) are
    inferred when not given. Only the resolved columns and ``keep_columns`` come out, in ``lookups``
    order (list the query first: losses read columns by position)."""
    try:
        from datasets import Dataset, DatasetDict
    except ImportError as error:
        raise ImportError(
            "resolve_ids requires the `datasets` library. Install it with `pip install datasets`.") from error
    if isinstance(keep_columns, str):
        raise TypeError(f"keep_columns must be a list or tuple of column names, got the string {keep_columns!r}.")
    if max_list_length is not None and max_list_length < 1:
        raise ValueError(f"max_list_length must be a positive integer or None, got {max_list_length}.")
    if output_format not in ("columns", "lists"):
        raise ValueError(f'output_format must be "columns" or "lists", got {output_format!r}.')

    resolutions, shared = {}, {}
    for input_col, spec in lookups.items():
        dataset, id_col, value_col = _parse_spec(input_col, spec)
        if isinstance(dataset, DatasetDict):
            raise TypeError(
                f"lookups[{input_col!r}] holds a `DatasetDict`, expected a `Dataset`. Pass a specific split "
                "(e.g. `dataset_dict['train']`), or load with `load_dataset(..., split='...')`."
            )
        if not isinstance(dataset, Dataset):
            raise TypeError(f"lookups[{input_col!r}] must hold a `Dataset`, got {type(dataset).__name__}.")
        key = id(dataset)  # entries naming the same dataset object share one index
        dataset = dataset.with_format(None)
        for given, label in ((id_col, "ID"), (value_col, "value")):
            if given is not None and given not in dataset.column_names:
                raise ValueError(f"lookups[{input_col!r}]: {label} column {given!r} is not a column of the lookup "
                                 f"dataset (columns: {sorted(dataset.column_names)}).")
        id_col = id_col or _id_column(dataset, input_col)
        value_col = value_col or _value_column(dataset, id_col, input_col)
        if (key, id_col) not in shared:
            ids = list(dataset.select_columns([id_col])[id_col])
            index = IdIndex(ids, _typed_kind(ids, dataset.features[id_col]))
            if len(index) != dataset.num_rows:
                logger.warning(f"lookups[{input_col!r}] contains duplicate {id_col!r} values "
                               f"({dataset.num_rows - len(index)} rows shadowed). Each duplicated ID resolves to "
                               "its last occurrence.")
            shared[(key, id_col)] = index
        resolutions[input_col] = (dataset.select_columns([value_col]), shared[(key, id_col)], value_col,
                                  output_name(input_col), output_name(input_col, plural=True))
    return partial(resolve_batch, resolutions=resolutions, keep_columns=tuple(keep_columns),
                   max_list_length=max_list_length, output_format=output_format)
