"""Step 1: raw ReasonIR ``hq`` rows -> training rows, resolving positives through BRIGHT.

Per row (what PyLate's ``examples/train/reason_moderncolbert.py`` does, kept as pairs until training):

- ``query``: a list ``[instruction, text]`` becomes one string, its parts joined with a space;
  a string stays as it is.
- ``pos``: the first positive, kept as a two-element ``[instruction, doc_text]``; its second element
  is a BRIGHT document id, replaced by that document's text from the BRIGHT ``documents`` table
  (``id`` -> ``content``, every split). An id missing from the table leaves ``doc_text`` empty and the
  row is dropped at training time (see ``training/data.py``); the count is reported.
- ``neg``: the first negative, kept as ``[instruction, text]``. Its second element is already text and
  is never looked up, even when it happens to equal a document id.

    # offline (see make_synthetic.py)
    python prepare_dataset.py --data data/synthetic/reasonir-data --documents data/synthetic/BRIGHT \\
        --out data/reasonir-hq-prepared
    # with network: the defaults are the Hub ids
    python prepare_dataset.py --out data/reasonir-hq-prepared

``--out`` ending in ``.jsonl`` / ``.parquet`` writes one file; anything else is a ``save_to_disk`` folder.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

logger = logging.getLogger(__name__)

REASONIR_HUB_ID, REASONIR_CONFIG = "reasonir/reasonir-data", "hq"
BRIGHT_HUB_ID, BRIGHT_CONFIG = "xlangai/BRIGHT", "documents"


def as_text_query(query) -> str:
    """``[instruction, text]`` -> ``"instruction text"`` (PyLate: ``" ".join(query)``); a string is kept."""
    if query is None:
        return ""
    if isinstance(query, str):
        return query
    return " ".join("" if part is None else str(part) for part in query)


def first_pair(value, column: str = "pos") -> list[str] | None:
    """The first ``[instruction, x]`` of a ReasonIR ``pos`` / ``neg`` cell.

    Accepts a list of pairs (the Hub shape), a single pair, or a bare string (``["", string]``).
    Returns None for an empty cell.
    """
    if value is None:
        return None
    if isinstance(value, str):
        return ["", value]
    value = list(value)
    if not value:
        return None
    pair = [value[0], value[1]] if isinstance(value[0], str) and len(value) == 2 else value[0]
    if isinstance(pair, str):
        return ["", pair]
    pair = list(pair)
    if len(pair) == 1:
        pair = ["", pair[0]]
    if len(pair) != 2:
        raise ValueError(f"{column}: expected [instruction, value] pairs, got {value[0]!r}")
    return ["" if pair[0] is None else str(pair[0]), "" if pair[1] is None else str(pair[1])]


def positive_ids(rows) -> set[str]:
    """The BRIGHT ids the rows' first positives refer to."""
    ids = set()
    for pos in rows:
        pair = first_pair(pos, "pos")
        if pair is not None:
            ids.add(pair[1])
    return ids


def build_id2doc(documents, keep: set[str] | None = None) -> dict[str, str]:
    """``id`` -> ``content`` over every split of a BRIGHT ``documents`` table (a Dataset or DatasetDict).

    ``keep`` limits the map to the ids actually needed (BRIGHT holds ~1.3M documents).
    """
    tables = documents.values() if isinstance(documents, dict) else [documents]  # DatasetDict is a dict
    id2doc: dict[str, str] = {}
    for table in tables:
        missing = {"id", "content"} - set(table.column_names)
        if missing:
            raise ValueError(f"a BRIGHT documents table needs columns 'id' and 'content'; missing {sorted(missing)}")
        for doc_id, content in zip(table["id"], table["content"]):
            doc_id = str(doc_id)
            if keep is None or doc_id in keep:
                id2doc[doc_id] = content
    return id2doc


def prepare_row(row: dict, id2doc: dict[str, str] | None, stats: dict | None = None) -> dict:
    """One raw row -> ``{"query": str, "pos": [instruction, doc_text], "neg": [instruction, text]}``.

    With ``id2doc=None`` the positive's second element is taken as text already.
    """
    stats = stats if stats is not None else {}
    pos = first_pair(row.get("pos"), "pos") or ["", ""]
    if id2doc is not None:
        text = id2doc.get(pos[1])
        if text is None:
            stats["missing_positive"] = stats.get("missing_positive", 0) + 1
            text = ""
        pos = [pos[0], text]
    neg = first_pair(row.get("neg"), "neg") or ["", ""]
    return {"query": as_text_query(row.get("query")), "pos": pos, "neg": neg}


def prepare(raw, documents=None):
    """A raw ``hq`` Dataset (+ BRIGHT ``documents``) -> a Dataset with ``query``, ``pos``, ``neg``."""
    from datasets import Dataset, Features, Sequence, Value

    missing = {"query", "pos", "neg"} - set(raw.column_names)
    if missing:
        raise ValueError(f"a ReasonIR hq table needs columns query, pos, neg; missing {sorted(missing)}")
    id2doc = None
    if documents is not None:
        id2doc = build_id2doc(documents, keep=positive_ids(raw["pos"]))
    stats: dict = {}
    rows = [prepare_row(row, id2doc, stats) for row in raw]
    if stats.get("missing_positive"):
        logger.warning(
            "%d of %d positives have an id missing from the BRIGHT documents table; their rows will be "
            "dropped at training time.", stats["missing_positive"], len(rows),
        )
    features = Features({"query": Value("string"), "pos": Sequence(Value("string")), "neg": Sequence(Value("string"))})
    return Dataset.from_dict({k: [r[k] for r in rows] for k in ("query", "pos", "neg")}, features=features)


def save(dataset, out) -> Path:
    out = Path(out)
    if out.suffix == ".jsonl":
        out.parent.mkdir(parents=True, exist_ok=True)
        dataset.to_json(str(out), lines=True)
    elif out.suffix == ".parquet":
        out.parent.mkdir(parents=True, exist_ok=True)
        dataset.to_parquet(str(out))
    else:
        dataset.save_to_disk(str(out))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=REASONIR_HUB_ID, help="hub id, save_to_disk folder, Hub-shaped folder or file")
    parser.add_argument("--config", default=REASONIR_CONFIG, help="dataset config (ignored for files)")
    parser.add_argument("--split", default="train")
    parser.add_argument("--documents", default=BRIGHT_HUB_ID, help="BRIGHT documents: hub id, folder or file; "
                        "'none' when positives already hold text")
    parser.add_argument("--documents_config", default=BRIGHT_CONFIG)
    parser.add_argument("--out", default="data/reasonir-hq-prepared")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from training.data import load_table, pick_split

    raw = pick_split(load_table(args.data, args.config), args.split)
    documents = None
    if args.documents.lower() != "none":
        documents = load_table(args.documents, args.documents_config)
    prepared = prepare(raw, documents)
    out = save(prepared, args.out)
    print(f"wrote {len(prepared)} rows to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
