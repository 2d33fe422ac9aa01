"""Bad input named, not absorbed: one JSON reader and one text check for every place the bridge
reads a file or a batch of texts, so each failure names the file (or column / row) and the fix."""

from __future__ import annotations

import json
import math
from pathlib import Path

RESTORE = "Restore it from the original model (re-download it or re-save the model)"


class InvalidFileError(OSError, ValueError):
    """A file the bridge reads is unreadable or malformed. Both an ``OSError`` (what transformers raises
    for a bad config.json) and a ``ValueError`` (what ``json`` / tokenizers raise), so either ``except`` works."""


def read_json(path, what: str, fix: str = RESTORE):
    """``json.loads`` of ``path``; a file that is not valid JSON raises :class:`InvalidFileError`
    naming the file, its role (``what``), the parser's position and ``fix``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidFileError(f"{path} ({what}) is not UTF-8 text ({exc.reason} at byte {exc.start}). {fix}.") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        where = "it is empty" if not text.strip() else f"{exc.msg} at line {exc.lineno} column {exc.colno}"
        raise InvalidFileError(f"{path} ({what}) is not valid JSON: {where}. {fix}.") from None


def require_key(data, key: str, path, what: str, fix: str = RESTORE):
    """``data[key]`` of a parsed JSON object; a missing key (or a non-object file) names both."""
    if not isinstance(data, dict) or key not in data:
        found = f"keys {sorted(data)[:8]}" if isinstance(data, dict) else f"a JSON {type(data).__name__}"
        raise InvalidFileError(f"{path} ({what}) has no {key!r} entry (found {found}). {fix}.")
    return data[key]


def describe(value) -> str:
    if value is None:
        return "None (a missing value)"
    if isinstance(value, float) and math.isnan(value):
        return "float NaN (a missing value, as pandas writes an empty cell)"
    shown = repr(value)
    return f"{type(value).__name__} {shown if len(shown) <= 40 else shown[:37] + '...'}"


def check_texts(texts, where: str = "texts", unit: str = "row") -> list:
    """Refuse any text that is not a ``str``. ST / PyLate raise for one in the first row and
    ``str()``-convert later ones (training on "3", "None", "nan"). ``where`` names the input, e.g.
    ``"column 'query'"``; ``unit`` its elements."""
    texts = list(texts)
    for row, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(
                f"{where}, {unit} {row}: expected a string, got {describe(text)}. Every text must be a str: "
                "drop or fill those rows first (e.g. dataset.filter(...) or df.dropna()), or convert them "
                "explicitly with str() if that text is really meant."
            )
    return texts
