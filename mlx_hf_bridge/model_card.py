"""PyLate-style model card (README.md) for a saved ColBERT folder.

Follows the structure of PyLate 1.6's ``hf_hub/model_card_template.md``: YAML front-matter
(``library_name: PyLate``, ``pipeline_tag: sentence-similarity``, PyLate's tags, ``base_model``,
``datasets``), model description, PyLate usage snippets (index / retrieve / rerank) and, after
training, dataset / loss / hyperparameter / training-log / framework-version sections. Written in
plain Python (no Jinja, no torch); everything it cannot find is simply left out.
"""

from __future__ import annotations

import json
import os
import re
from importlib import metadata
from pathlib import Path
from platform import python_version

__all__ = ["write_model_card", "render_model_card", "PYLATE_TAGS"]

PYLATE_TAGS = ["ColBERT", "PyLate", "sentence-transformers", "sentence-similarity", "feature-extraction"]

# sentence-transformers' model card callback leaves these out of "All Hyperparameters"
IGNORED_HYPERPARAMETERS = {
    "output_dir", "logging_dir", "logging_strategy", "logging_first_step", "logging_steps",
    "evaluation_strategy", "eval_steps", "eval_delay", "save_strategy", "save_steps", "save_total_limit",
    "metric_for_best_model", "greater_is_better", "report_to", "samples_per_label", "show_progress_bar",
    "do_train", "do_eval", "do_test", "run_name", "hub_token", "push_to_hub_token",
}
EVAL_NOISE = ("_runtime", "_samples_per_second", "_steps_per_second")

PYLATE_CITATION = """@inproceedings{DBLP:conf/cikm/ChaffinS25,
  author       = {Antoine Chaffin and Rapha{\\"{e}}l Sourty},
  title        = {PyLate: Flexible Training and Retrieval for Late Interaction Models},
  booktitle    = {Proceedings of the 34th {ACM} International Conference on Information
                  and Knowledge Management, {CIKM} 2025, Seoul, Republic of Korea, November
                  10-14, 2025},
  pages        = {6334--6339},
  publisher    = {{ACM}},
  year         = {2025},
  url          = {https://github.com/lightonai/pylate},
  doi          = {10.1145/3746252.3761608},
}"""
ST_CITATION = """@inproceedings{reimers-2019-sentence-bert,
    title = "Sentence-BERT: Sentence Embeddings using Siamese BERT-Networks",
    author = "Reimers, Nils and Gurevych, Iryna",
    booktitle = "Proceedings of the 2019 Conference on Empirical Methods in Natural Language Processing",
    month = "11",
    year = "2019",
    publisher = "Association for Computational Linguistics",
    url = "https://arxiv.org/abs/1908.10084"
}"""


# --- small helpers --------------------------------------------------------------------------
def _read_json(path: Path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None
    except Exception:
        return None


def framework_versions(extra: dict | None = None) -> dict:
    """Versions of the stack that trained / wrote the model (read from metadata: no imports).

    The torch stack (torch, sentence-transformers, PyLate) is not listed: it took no part.
    """
    from . import __version__

    versions = {"Python": python_version(), "MLX": _version("mlx"), "mlx_hf_bridge": __version__}
    for label, dist in (
        ("Transformers", "transformers"),
        ("Tokenizers", "tokenizers"),
        ("Datasets", "datasets"),
        ("huggingface_hub", "huggingface_hub"),
    ):
        versions[label] = _version(dist)
    versions.update(extra or {})
    return {k: v for k, v in versions.items() if v}


_SNAPSHOT = re.compile(r"(models|datasets)--(?P<ns>[^/\\]+?)--(?P<name>[^/\\]+)[/\\]snapshots[/\\](?P<rev>[0-9a-f]{40})")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")


def hub_id_and_revision(name_or_path) -> tuple[str | None, str | None]:
    """``"org/name"`` -> itself; a hub-cache snapshot path -> its repo id and commit; a plain
    local path -> ``(None, None)`` (local paths never go into a public card)."""
    if not name_or_path:
        return None, None
    text = str(name_or_path)
    match = _SNAPSHOT.search(text)
    if match:
        return f"{match['ns']}/{match['name']}", match["rev"]
    if text.startswith((".", "/", "~")) or "\\" in text or os.path.exists(os.path.expanduser(text)):
        return None, None
    return (text, None) if _HUB_ID.match(text) else (None, None)


def _format_value(value):
    if isinstance(value, float):
        return round(value, 4)
    return value


def markdown_table(rows: list[dict]) -> str:
    """transformers' ``make_markdown_table`` layout (floats rounded to 4 decimals)."""
    if not rows:
        return ""
    keys = list(rows[0])
    for row in rows[1:]:
        keys += [k for k in row if k not in keys]

    def cell(v):  # transformers' _maybe_round
        if isinstance(v, float) and len(str(v).split(".")) > 1 and len(str(v).split(".")[1]) > 4:
            return f"{v:.4f}"
        return str(v)

    widths = {k: max(len(str(k)), *(len(cell(r.get(k, "-"))) for r in rows)) for k in keys}
    out = "| " + " | ".join(f"{k:<{widths[k]}}" for k in keys) + " |\n"
    out += "|" + "|".join(":" + "-" * (widths[k] + 1) for k in keys) + "|\n"
    for row in rows:
        out += "| " + " | ".join(f"{cell(row.get(k, '-')):<{widths[k]}}" for k in keys) + " |\n"
    return out


# --- gathering information ------------------------------------------------------------------
def _folder_facts(folder: Path) -> dict:
    """What the saved files say: lengths, prefixes, output dim, architecture string."""
    facts: dict = {}
    st_config = _read_json(folder / "config_sentence_transformers.json") or {}
    for key in ("query_length", "document_length", "query_prefix", "document_prefix", "do_query_expansion",
                "attend_to_expansion_tokens", "similarity_fn_name"):
        if key in st_config:
            facts[key] = st_config[key]
    modules = _read_json(folder / "modules.json") or []
    hf_config = _read_json(folder / "config.json") or {}
    lines = []
    for entry in sorted(modules, key=lambda e: int(e.get("idx", 0))):
        kind = entry.get("type", "")
        path = folder / entry.get("path", "")
        idx = entry.get("idx", len(lines))
        if kind.endswith("Transformer"):
            sb = _read_json(path / "sentence_bert_config.json") or {}
            cfg = _read_json(path / "config.json") or hf_config
            arch = (cfg.get("architectures") or [None])[0] or cfg.get("model_type", "?")
            conf = {"max_seq_length": sb.get("max_seq_length"), "do_lower_case": sb.get("do_lower_case", False)}
            lines.append(f"  ({idx}): Transformer({conf}) with Transformer model: {arch}")
        elif kind.endswith("Dense"):
            dense = _read_json(path / "config.json") or {}
            if "out_features" in dense:
                facts["output_dimensionality"] = dense["out_features"]
            lines.append(f"  ({idx}): Dense({dense})")
        else:
            lines.append(f"  ({idx}): {kind.rsplit('.', 1)[-1]}()")
    if lines:
        facts["model_string"] = "ColBERT(\n" + "\n".join(lines) + "\n)"
    if hf_config.get("_name_or_path"):
        facts["base_model_guess"] = hf_config["_name_or_path"]
    return facts


def _model_facts(model) -> dict:
    """Attributes of a live model object (``mlx_hf_bridge`` or PyLate ColBERT)."""
    facts: dict = {}
    if model is None:
        return facts
    for key in ("query_length", "document_length", "query_prefix", "document_prefix", "do_query_expansion",
                "attend_to_expansion_tokens"):
        value = getattr(model, key, None)
        if value is not None:
            facts[key] = value
    try:
        facts["output_dimensionality"] = int(model.get_sentence_embedding_dimension())
    except Exception:
        pass
    name = getattr(model, "model_name_or_path", None)
    if name:
        facts["base_model_guess"] = name
    return facts


def _loss_entries(loss) -> list[dict]:
    """``loss`` as given in ``info`` -> ``[{"name", "fullname", "config"}]``."""
    if loss is None:
        return []
    if isinstance(loss, (list, tuple)):
        return [e for item in loss for e in _loss_entries(item)]
    if isinstance(loss, dict) and not any(k in loss for k in ("name", "fullname", "config")):
        return [e for item in loss.values() for e in _loss_entries(item)]  # {dataset_name: loss}
    if isinstance(loss, str):
        return [{"name": loss.rsplit(".", 1)[-1], "fullname": loss, "config": None}]
    if isinstance(loss, dict):
        fullname = loss.get("fullname") or loss.get("name") or "Loss"
        return [{"name": loss.get("name") or fullname.rsplit(".", 1)[-1], "fullname": fullname, "config": loss.get("config")}]
    cls = type(loss)
    config = None
    if hasattr(loss, "get_config_dict"):
        try:
            config = loss.get_config_dict()
        except Exception:
            config = None
    return [{"name": cls.__name__, "fullname": f"{cls.__module__}.{cls.__qualname__}", "config": config}]


def _jsonable(value):
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if callable(value) and hasattr(value, "__name__"):
        return f"{getattr(value, '__module__', '')}.{value.__name__}".lstrip(".")
    return type(value).__name__ if hasattr(value, "__dict__") else str(value)


def _datasets(value) -> list[dict]:
    out = []
    for item in value or []:
        if isinstance(item, str):
            hub_id, _ = hub_id_and_revision(item)
            out.append({"name": item, **({"id": hub_id} if hub_id and "/" in item else {})})
        elif isinstance(item, dict):
            out.append(dict(item))
    return out


def _training_rows(info: dict) -> list[dict]:
    """Rows of the training-log table: ``training_logs`` (ST rows) or ``log_history`` (HF Trainer)."""
    if info.get("training_logs"):
        return [dict(r) for r in info["training_logs"]]
    rows: dict = {}
    for entry in info.get("log_history") or []:
        if not isinstance(entry, dict) or "step" not in entry or "train_runtime" in entry:
            continue
        row = rows.setdefault(entry["step"], {"Epoch": entry.get("epoch", "-"), "Step": entry["step"]})
        if "loss" in entry:
            row["Training Loss"] = entry["loss"]
        for key, value in entry.items():
            if not key.startswith("eval_") or key.endswith(EVAL_NOISE) or not isinstance(value, (int, float)):
                continue
            label = "Validation Loss" if key == "eval_loss" else key[len("eval_"):]
            row[label] = value
    ordered = sorted(rows.values(), key=lambda r: r["Step"])

    def rank(key):
        return {"Epoch": 0, "Step": 1, "Training Loss": 2, "Validation Loss": 3}.get(key, 4)

    keys = []
    for row in ordered:
        keys += [k for k in row if k not in keys]
    keys.sort(key=rank)
    return [{k: row.get(k, "-") for k in keys} for row in ordered]


def collect(folder, info: dict | None) -> dict:
    """Merge ``info`` > saved files > live model into one flat dict of card fields."""
    info = dict(info or {})
    folder = Path(folder)
    facts = {**_model_facts(info.get("model")), **_folder_facts(folder)}
    card = {**facts, **{k: v for k, v in info.items() if v is not None}}
    base_id, base_rev = hub_id_and_revision(info.get("base_model") or facts.get("base_model_guess"))
    if info.get("base_model") and base_id is None:
        card["base_model_local"] = Path(str(info["base_model"])).name  # named, never the full path
    card["base_model"] = base_id
    card["base_model_revision"] = info.get("base_model_revision") or base_rev
    card["train_datasets"] = _datasets(info.get("train_datasets"))
    card["eval_datasets"] = _datasets(info.get("eval_datasets"))
    card["losses"] = _loss_entries(info.get("loss"))
    card["training_rows"] = _training_rows(info)
    size = info.get("dataset_size")
    if size is None:
        sizes = [d.get("size") for d in card["train_datasets"] if isinstance(d.get("size"), int)]
        size = sum(sizes) if sizes else None
    card["dataset_size"] = size
    all_hp = {k: v for k, v in (info.get("hyperparameters") or {}).items()
              if k not in IGNORED_HYPERPARAMETERS and not k.endswith("_token")}
    card["all_hyperparameters"] = all_hp
    non_default = info.get("non_default_hyperparameters")
    if non_default is None and info.get("default_hyperparameters") is not None:
        defaults = info["default_hyperparameters"]
        non_default = {k: v for k, v in all_hp.items() if k in defaults and defaults[k] != v}
    card["non_default_hyperparameters"] = {
        k: v for k, v in (non_default or {}).items() if k not in IGNORED_HYPERPARAMETERS and not k.endswith("_token")
    }
    trained = info.get("trained")
    if trained is None:
        trained = bool(card["losses"] or card["training_rows"] or all_hp or size)
    card["trained"] = trained
    card["similarity_fn_name"] = card.get("similarity_fn_name") or "MaxSim"
    card["versions"] = framework_versions(info.get("versions"))
    if not card.get("model_id") and info.get("model_name") and "/" in str(info["model_name"]):
        hub_id, _ = hub_id_and_revision(info["model_name"])  # ST's save(model_name=repo_id) meaning
        card["model_id"] = hub_id
    if not card.get("model_name"):
        card["model_name"] = f"PyLate model based on {base_id}" if base_id else "PyLate model"
    return card


# --- rendering ------------------------------------------------------------------------------
def front_matter(card: dict) -> dict:
    tags = list(PYLATE_TAGS)
    if card["trained"]:
        tags.append("generated_from_trainer")
        if card.get("dataset_size"):
            tags.append(f"dataset_size:{card['dataset_size']}")
        for loss in card["losses"]:
            tag = f"loss:{loss['name']}"
            if tag not in tags:
                tags.append(tag)
    for tag in card.get("tags") or []:
        if tag not in tags:
            tags.append(tag)
    yaml_dict: dict = {}
    if card.get("language"):
        yaml_dict["language"] = card["language"]
    if card.get("license"):
        yaml_dict["license"] = card["license"]
    yaml_dict["library_name"] = "PyLate"
    yaml_dict["tags"] = tags
    datasets = [d["id"] for d in card["train_datasets"] + card["eval_datasets"] if d.get("id")]
    if datasets:
        yaml_dict["datasets"] = list(dict.fromkeys(datasets))
    yaml_dict["pipeline_tag"] = "sentence-similarity"
    if card.get("base_model"):
        yaml_dict["base_model"] = card["base_model"]
    return yaml_dict


def _yaml(data: dict) -> str:
    try:
        import yaml

        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=1000).strip()
    except ImportError:  # JSON values are valid YAML
        return "\n".join(f"{k}: {json.dumps(v)}" for k, v in data.items())


def _dataset_phrase(datasets: list[dict]) -> str:
    named = [d for d in datasets if d.get("name") or d.get("id")]
    if not named:
        return ""
    links = [f"[{d.get('name') or d['id']}](https://huggingface.co/datasets/{d['id']})" if d.get("id") else d["name"] for d in named]
    joined = links[0] if len(links) == 1 else ", ".join(links[:-1]) + " and " + links[-1]
    return f" on the {joined} dataset{'s' if len(links) > 1 else ''}"


USAGE = '''## Usage
First install the PyLate library:

```bash
pip install -U pylate
```

### Retrieval

Use this model with PyLate to index and retrieve documents. The index uses [FastPLAID](https://github.com/lightonai/fast-plaid) for efficient similarity search.

#### Indexing documents

Load the ColBERT model and initialize the PLAID index, then encode and index your documents:

```python
from pylate import indexes, models, retrieve

# Step 1: Load the ColBERT model
model = models.ColBERT(
    model_name_or_path="{model_id}",
)

# Step 2: Initialize the PLAID index
index = indexes.PLAID(
    index_folder="pylate-index",
    index_name="index",
    override=True,  # This overwrites the existing index if any
)

# Step 3: Encode the documents
documents_ids = ["1", "2", "3"]
documents = ["document 1 text", "document 2 text", "document 3 text"]

documents_embeddings = model.encode(
    documents,
    batch_size=32,
    is_query=False,  # Ensure that it is set to False to indicate that these are documents, not queries
    show_progress_bar=True,
)

# Step 4: Add document embeddings to the index by providing embeddings and corresponding ids
index.add_documents(
    documents_ids=documents_ids,
    documents_embeddings=documents_embeddings,
)
```

Note that you do not have to recreate the index and encode the documents every time. Once you have created an index and added the documents, you can re-use the index later by loading it:

```python
# To load an index, simply instantiate it with the correct folder/name and without overriding it
index = indexes.PLAID(
    index_folder="pylate-index",
    index_name="index",
)
```

#### Retrieving top-k documents for queries

Once the documents are indexed, you can retrieve the top-k most relevant documents for a given set of queries.
To do so, initialize the ColBERT retriever with the index you want to search in, encode the queries and then retrieve the top-k documents to get the top matches ids and relevance scores:

```python
# Step 1: Initialize the ColBERT retriever
retriever = retrieve.ColBERT(index=index)

# Step 2: Encode the queries
queries_embeddings = model.encode(
    ["query for document 3", "query for document 1"],
    batch_size=32,
    is_query=True,  # Ensure that it is set to True to indicate that these are queries
    show_progress_bar=True,
)

# Step 3: Retrieve top-k documents
scores = retriever.retrieve(
    queries_embeddings=queries_embeddings,
    k=10,  # Retrieve the top 10 matches for each query
)
```

### Reranking
If you only want to use the ColBERT model to perform reranking on top of your first-stage retrieval pipeline without building an index, you can simply use rank function and pass the queries and documents to rerank:

```python
from pylate import rank, models

queries = [
    "query A",
    "query B",
]

documents = [
    ["document A", "document B"],
    ["document 1", "document C", "document B"],
]

documents_ids = [
    [1, 2],
    [1, 3, 2],
]

model = models.ColBERT(
    model_name_or_path="{model_id}",
)

queries_embeddings = model.encode(
    queries,
    is_query=True,
)

documents_embeddings = model.encode(
    documents,
    is_query=False,
)

reranked_documents = rank.rerank(
    documents_ids=documents_ids,
    queries_embeddings=queries_embeddings,
    documents_embeddings=documents_embeddings,
)
```

### On Apple MLX

The same code runs on [MLX](https://github.com/ml-explore/mlx) with [mlx_hf_bridge](https://pypi.org/project/mlx-hf-bridge/): replace `from pylate import ...` with `from mlx_hf_bridge.pylate import ...`.
'''


def render_model_card(folder, info: dict | None = None) -> str:
    """The README.md text (see :func:`write_model_card` for the keys of ``info``)."""
    card = collect(folder, info)
    out = ["---", "# For reference on model card metadata, see the spec: https://github.com/huggingface/hub-docs/blob/main/modelcard.md?plain=1",
           "# Doc / guide: https://huggingface.co/docs/hub/model-cards", _yaml(front_matter(card)), "---", ""]
    out.append(f"# {card['model_name']}\n")
    base = card.get("base_model")
    if base:
        origin = f" finetuned from [{base}](https://huggingface.co/{base})"
    elif card.get("base_model_local"):
        origin = f" finetuned from a local model (`{card['base_model_local']}`)"
    else:
        origin = " trained" if card["trained"] else ""
    dim = card.get("output_dimensionality", "?")
    out.append(
        f"This is a [PyLate](https://github.com/lightonai/pylate) model{origin}{_dataset_phrase(card['train_datasets'])}. "
        f"It maps sentences & paragraphs to sequences of {dim}-dimensional dense vectors and can be used for "
        f"semantic textual similarity using the MaxSim operator."
        + (" It was trained on [Apple MLX](https://github.com/ml-explore/mlx) with `mlx_hf_bridge`." if card["trained"] else "")
        + "\n"
    )
    out.append("## Model Details\n\n### Model Description")
    details = ["- **Model Type:** PyLate model"]
    if base:
        rev = f" <!-- at revision {card['base_model_revision']} -->" if card.get("base_model_revision") else ""
        details.append(f"- **Base model:** [{base}](https://huggingface.co/{base}){rev}")
    elif card.get("base_model_local"):
        details.append(f"- **Base model:** local model `{card['base_model_local']}`")
    else:
        details.append("<!-- - **Base model:** [Unknown](https://huggingface.co/unknown) -->")
    for label, key, unit in (("Document Length", "document_length", " tokens"), ("Query Length", "query_length", " tokens"),
                             ("Output Dimensionality", "output_dimensionality", " dimensions")):
        if card.get(key) is not None:
            details.append(f"- **{label}:** {card[key]}{unit}")
    details.append(f"- **Similarity Function:** {card['similarity_fn_name']}")
    if card.get("query_prefix") is not None or card.get("document_prefix") is not None:
        details.append(f"- **Query / Document Prefix:** `{card.get('query_prefix')!r}` / `{card.get('document_prefix')!r}`")
    if card.get("do_query_expansion") is not None:
        details.append(f"- **Query Expansion:** {card['do_query_expansion']}"
                       + (f" (attend to expansion tokens: {card['attend_to_expansion_tokens']})" if card.get("attend_to_expansion_tokens") is not None else ""))
    named = [d for d in card["train_datasets"] if d.get("name") or d.get("id")]
    if named:
        details.append(f"- **Training Dataset{'s' if len(named) > 1 else ''}:**")
        for d in named:
            details.append(f"    - [{d.get('name') or d['id']}](https://huggingface.co/datasets/{d['id']})" if d.get("id") else f"    - {d['name']}")
    language = card.get("language")
    if language:
        langs = language if isinstance(language, str) else ", ".join(language)
        details.append(f"- **Language{'s' if not isinstance(language, str) and len(language) > 1 else ''}:** {langs}")
    if card.get("license"):
        details.append(f"- **License:** {card['license']}")
    out.append("\n".join(details) + "\n")
    out.append(
        "### Model Sources\n\n- **Documentation:** [PyLate Documentation](https://lightonai.github.io/pylate/)\n"
        "- **Repository:** [PyLate on GitHub](https://github.com/lightonai/pylate)\n"
        "- **Hugging Face:** [PyLate models on Hugging Face](https://huggingface.co/models?library=PyLate)\n"
    )
    if card.get("model_string"):
        out.append(f"### Full Model Architecture\n\n```\n{card['model_string']}\n```\n")
    out.append(USAGE.replace("{model_id}", card.get("model_id") or "pylate_model_id"))
    metrics = card.get("eval_metrics")
    if metrics:
        out.append("## Evaluation\n\n### Metrics\n")
        rows = [{"Metric": k, "Value": v} for k, v in metrics.items()]
        out.append(markdown_table(rows))
    if card["trained"]:
        out.append(_training_section(card))
    out.append("### Framework Versions\n" + "\n".join(f"- {k}: {v}" for k, v in card["versions"].items()) + "\n")
    out.append("## Citation\n\n### BibTeX\n")
    out.append(f"#### Sentence Transformers\n```bibtex\n{ST_CITATION}\n```\n")
    out.append(f"#### PyLate\n```bibtex\n{PYLATE_CITATION}\n```\n")
    return "\n".join(out)


def _training_section(card: dict) -> str:
    out = ["## Training Details"]
    for kind, datasets in (("Training", card["train_datasets"]), ("Evaluation", card["eval_datasets"])):
        if not datasets and not (kind == "Training" and (card.get("dataset_size") or card["losses"])):
            continue
        datasets = datasets or [{"size": card.get("dataset_size")}]
        out.append(f"\n### {kind} Dataset{'s' if len(datasets) > 1 else ''}\n")
        for d in datasets:
            out.append(f"#### {d.get('name') or d.get('id') or 'Unnamed Dataset'}\n")
            if d.get("name") or d.get("id"):
                link = f"[{d.get('name') or d['id']}](https://huggingface.co/datasets/{d['id']})" if d.get("id") else d["name"]
                rev = f" at [{d['revision'][:7]}](https://huggingface.co/datasets/{d['id']}/tree/{d['revision']})" if d.get("revision") and d.get("id") else ""
                out.append(f"* Dataset: {link}{rev}")
            size = d.get("size") if d.get("size") is not None else (card.get("dataset_size") if kind == "Training" and len(datasets) == 1 else None)
            if isinstance(size, int):
                out.append(f"* Size: {size:,} {kind.lower()} samples")
            columns = d.get("columns")
            if columns:
                cols = [f"<code>{c}</code>" for c in columns]
                out.append("* Columns: " + (cols[0] if len(cols) == 1 else ", ".join(cols[:-1]) + " and " + cols[-1]))
            losses = _loss_entries(d["loss"]) if d.get("loss") is not None else (card["losses"] if kind == "Training" else [])
            for loss in losses:
                line = f"* Loss: <code>{loss['fullname']}</code>"
                if loss.get("config"):
                    line += " with these parameters:\n  ```json\n" + "\n".join(
                        "  " + l for l in json.dumps(_jsonable(loss["config"]), indent=4).splitlines()
                    ) + "\n  ```"
                out.append(line)
            out.append("")
    if card["all_hyperparameters"]:
        out.append("### Training Hyperparameters")
        if card["non_default_hyperparameters"]:
            out.append("#### Non-Default Hyperparameters\n")
            out += [f"- `{k}`: {v}" for k, v in card["non_default_hyperparameters"].items()]
            out.append("")
        out.append("#### All Hyperparameters\n<details><summary>Click to expand</summary>\n")
        out += [f"- `{k}`: {v}" for k, v in card["all_hyperparameters"].items()]
        out.append("\n</details>\n")
    rows = card["training_rows"]
    if rows:
        best = card.get("best_model_step")
        if best is not None:
            rows = [{k: f"**{_format_value(v)}**" for k, v in r.items()} if r.get("Step") == best else r for r in rows]
        hide = len(rows) > 100
        out.append("### Training Logs")
        if hide:
            out.append("<details><summary>Click to expand</summary>\n")
        out.append(markdown_table(rows))
        if best is not None:
            out.append("* The bold row denotes the saved checkpoint.")
        if hide:
            out.append("</details>")
        out.append("")
    return "\n".join(out) + "\n"


def write_model_card(folder, info: dict | None = None) -> Path:
    """Write ``<folder>/README.md``: a PyLate-style model card. Returns its path.

    ``folder`` is the saved model folder; lengths, prefixes, output dimension and the module
    architecture are read from its files (``config_sentence_transformers.json``,
    ``modules.json``, ``*_Dense/config.json``, ``sentence_bert_config.json``) when present.
    ``info`` (plain dict) overrides them; every key is optional, missing ones are left out:

    - ``model``: the live model; fallback for ``query_length``, ``document_length``,
      ``output_dimensionality`` (``get_sentence_embedding_dimension()``) and the base model
      (``model_name_or_path``).
    - ``model_name`` (card title), ``model_id`` (hub repo id used in the usage snippets; defaults
      to ``model_name`` when that is an ``org/name`` hub id, as ``save(model_name=...)`` in ST),
      ``language`` (str or list), ``license``, ``tags`` (extra tags).
    - ``base_model``: hub id (or a hub-cache snapshot path, from which id and revision are read);
      a plain local path is shown only by its folder name and kept out of the YAML.
      ``base_model_revision``.
    - ``query_length``, ``document_length``, ``output_dimensionality``, ``similarity_fn_name``
      (default ``"MaxSim"``), ``query_prefix``, ``document_prefix``, ``do_query_expansion``,
      ``attend_to_expansion_tokens``, ``model_string`` (architecture block).
    - ``train_datasets`` / ``eval_datasets``: list of names or dicts with ``name``, ``id`` (hub
      dataset id, goes to the YAML ``datasets``), ``revision``, ``size``, ``columns``, ``loss``.
    - ``dataset_size``: number of training samples (``dataset_size:N`` tag); default: sum of
      the train datasets' ``size``.
    - ``loss``: a loss object (class name + ``get_config_dict()``), a dotted name string, a dict
      ``{"name", "fullname", "config"}``, a list of these or ``{dataset_name: loss}``.
    - ``hyperparameters``: all training arguments (dict, e.g. ``args.to_dict()``);
      ``default_hyperparameters`` (to derive the non-default ones) or
      ``non_default_hyperparameters``. Token-like keys (``*_token``) are never written.
    - ``log_history``: ``trainer.state.log_history`` (list of dicts), or ``training_logs``:
      ready rows (``{"Epoch", "Step", "Training Loss", ...}``); ``best_model_step`` is bolded.
    - ``eval_metrics``: ``{metric_name: value}``, shown as an Evaluation table.
    - ``versions``: extra or overriding framework versions.
    - ``trained``: force the training sections on/off (default: on when any of loss, logs,
      hyperparameters or dataset size is known). When on, the tags gain
      ``generated_from_trainer``, ``dataset_size:N`` and ``loss:<Name>``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    text = render_model_card(folder, info)
    path = folder / "README.md"
    tmp = folder / ".README.md.tmp"
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path
