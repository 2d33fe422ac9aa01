"""Rendering the card dict of :func:`facts.collect` as PyLate-style README.md text."""

from __future__ import annotations

import json

from .facts import PYLATE_TAGS, jsonable, loss_entries, collect
from .templates import PYLATE_CITATION, ST_CITATION, USAGE


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



def render_model_card(folder, info: dict | None = None) -> str:
    """The README.md text (see :func:`write_model_card` for the keys of ``info``)."""
    card = collect(folder, info)
    if card.get("family") in ("sentence-transformers", "multi-vector"):
        from .dense import render_dense_card

        return render_dense_card(card)
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
            losses = loss_entries(d["loss"]) if d.get("loss") is not None else (card["losses"] if kind == "Training" else [])
            for loss in losses:
                line = f"* Loss: <code>{loss['fullname']}</code>"
                if loss.get("config"):
                    line += " with these parameters:\n  ```json\n" + "\n".join(
                        "  " + l for l in json.dumps(jsonable(loss["config"]), indent=4).splitlines()
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

