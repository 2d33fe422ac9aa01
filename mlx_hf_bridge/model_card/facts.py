"""What goes into a model card: facts read from the saved folder, the live model and ``info``."""

from __future__ import annotations

import json
import os
import re
from importlib import metadata
from pathlib import Path
from platform import python_version

PYLATE_TAGS = ["ColBERT", "PyLate", "sentence-transformers", "sentence-similarity", "feature-extraction"]

# sentence-transformers' model card callback leaves these out of "All Hyperparameters"
IGNORED_HYPERPARAMETERS = {
    "output_dir", "logging_dir", "logging_strategy", "logging_first_step", "logging_steps",
    "evaluation_strategy", "eval_steps", "eval_delay", "save_strategy", "save_steps", "save_total_limit",
    "metric_for_best_model", "greater_is_better", "report_to", "samples_per_label", "show_progress_bar",
    "do_train", "do_eval", "do_test", "run_name", "hub_token", "push_to_hub_token",
}
EVAL_NOISE = ("_runtime", "_samples_per_second", "_steps_per_second")


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
    from .. import __version__

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


def loss_entries(loss) -> list[dict]:
    """``loss`` as given in ``info`` -> ``[{"name", "fullname", "config"}]``."""
    if loss is None:
        return []
    if isinstance(loss, (list, tuple)):
        return [e for item in loss for e in loss_entries(item)]
    if type(loss) is not dict and hasattr(loss, "model"):  # a loss object (an mlx.nn.Module is a dict too)
        return _loss_object_entry(loss)
    if isinstance(loss, dict) and not any(k in loss for k in ("name", "fullname", "config")):
        return [e for item in loss.values() for e in loss_entries(item)]  # {dataset_name: loss}
    if isinstance(loss, str):
        return [{"name": loss.rsplit(".", 1)[-1], "fullname": loss, "config": None}]
    if isinstance(loss, dict):
        fullname = loss.get("fullname") or loss.get("name") or "Loss"
        return [{"name": loss.get("name") or fullname.rsplit(".", 1)[-1], "fullname": fullname, "config": loss.get("config")}]
    return _loss_object_entry(loss)


def _loss_object_entry(loss) -> list[dict]:
    cls = type(loss)
    config = None
    if hasattr(loss, "get_config_dict"):
        try:
            config = loss.get_config_dict()
        except Exception:
            config = None
    return [{"name": cls.__name__, "fullname": f"{cls.__module__}.{cls.__qualname__}", "config": config}]


def jsonable(value):
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
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
    # with the evaluators' results known (model_card_data), ST's card logs each one's primary metric only
    primary = {getattr(e, "primary_metric", None) for e in info["eval_results"]} if info.get("eval_results") else None
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
            if primary is not None and not key.endswith("_loss") and label not in primary:
                continue
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
    card["losses"] = loss_entries(info.get("loss"))
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

