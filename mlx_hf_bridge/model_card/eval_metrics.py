"""The evaluation part of a sentence-transformers card: the metrics ``model_card_data.set_evaluation_metrics``
collects during training (``card_data.py``), rendered as ST renders them (``format_eval_metrics``, the
same in ST 5.3 and 6.2, and their templates' Evaluation section): one block per evaluator, blocks of one
class with the same metrics and parameters on different datasets merged into one table, the primary
metric in bold; the YAML ``metrics`` list and ``model-index``."""

from __future__ import annotations

import json
from textwrap import indent

from .render import markdown_table

# card family -> (documentation page, anchor module) of the templates' "Evaluated with" link
_DOC_LINKS = {
    ("sentence-transformers", "st6"): ("sentence_transformer", "sentence_transformers.sentence_transformer.evaluation"),
    ("sentence-transformers", "st5"): ("sentence_transformer", "sentence_transformers.evaluation"),
    ("multi-vector", "st6"): ("multi_vector_encoder", "sentence_transformers.multi_vector_encoder.evaluation"),
}


def st_fullname(evaluator) -> str:
    """ST's ``fullname`` of the evaluator it stands for: the bridge's own evaluators are ST's classes
    (``sentence_transformers.…``), PyLate's ``pylate.…``; anything else keeps its module."""
    cls = type(evaluator)
    module = cls.__module__ or ""
    if module.startswith("mlx_hf_bridge.pylate"):
        return "pylate" + module[len("mlx_hf_bridge.pylate"):] + "." + cls.__name__
    if module.startswith("mlx_hf_bridge."):
        return f"sentence_transformers.evaluation.{cls.__name__}"
    return f"{module}.{cls.__name__}" if module and module != "builtins" else cls.__name__


def _format_log(value):
    return round(value, 4) if isinstance(value, float) else value


def _pure_python(value):
    try:
        if hasattr(value, "dtype"):
            return value.item()
    except Exception:  # noqa: BLE001 - ST's try_to_pure_python
        pass
    return value


def _to_float(value):
    try:
        return float(value)
    except Exception:  # noqa: BLE001
        pass
    if isinstance(value, str) and " " in value:
        return _to_float(value.split()[0])
    return None


def format_eval_metrics(eval_results: dict) -> tuple[list[dict], list[str], list[dict]]:
    """(grouped blocks, all metric names, flat eval results for the model-index), as ST computes them."""
    blocks, all_metrics, results = [], {}, []
    for evaluator, metrics in eval_results.items():
        name = getattr(evaluator, "name", None)
        primary = getattr(evaluator, "primary_metric", None)
        if name and all(key.startswith(name + "_") for key in metrics):
            metrics = {key[len(name) + 1:]: value for key, value in metrics.items()}
            if primary and primary.startswith(name + "_"):
                primary = primary[len(name) + 1:]
        metrics = {key: _pure_python(value) for key, value in metrics.items()}
        lines = [{"Metric": f"**{key}**" if key == primary else key,
                  "Value": f"**{_format_log(value)}**" if key == primary else _format_log(value)}
                 for key, value in metrics.items()]
        config_code = ""
        config = evaluator.get_config_dict() if hasattr(evaluator, "get_config_dict") else None
        if config:
            try:
                text = json.dumps(config, indent=4)
            except TypeError:
                text = str(config)
            config_code = indent(f"```json\n{text}\n```", "  ")
        description = evaluator.description
        blocks.append({"class_name": st_fullname(evaluator), "description": description, "dataset_name": name,
                       "table_lines": lines, "config_code": config_code})
        for key, value in metrics.items():
            number = _to_float(value)
            if number is not None:
                results.append({"task_name": description, "task_type": description.lower().replace(" ", "-"),
                                "dataset_type": name or "unknown",
                                "dataset_name": name.replace("_", " ").replace("-", " ") if name else "Unknown",
                                "metric_name": key.replace("_", " ").title(), "metric_type": key,
                                "metric_value": number})
        all_metrics.update(metrics)
    return _grouped(blocks), list(all_metrics), results


def _grouped(blocks: list[dict]) -> list[dict]:
    grouped = []
    for block in blocks:
        mapping = {line["Metric"]: line["Value"] for line in block["table_lines"]}
        for group in grouped:
            if (block["class_name"] == group["class_name"]
                    and set(mapping) == {line["Metric"] for line in group["table_lines"]}
                    and block["dataset_name"] != group["dataset_name"]
                    and block["config_code"] == group["config_code"]):
                for line in group["table_lines"]:
                    if "Value" in line:
                        line[group["dataset_name"]] = line.pop("Value")
                    line[block["dataset_name"]] = mapping[line["Metric"]]
                if not isinstance(group["dataset_name"], list):
                    group["dataset_name"] = [group["dataset_name"]]
                group["dataset_name"].append(block["dataset_name"])
                break
        else:
            grouped.append(block)
    for group in grouped:
        group["table"] = markdown_table(group.pop("table_lines")).replace("-:|", "--|")
    return grouped


def _datasets_line(names) -> str:
    if isinstance(names, str):
        return f"* Dataset: `{names}`"
    quoted = [f"`{n}`" for n in names]
    joined = quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]
    return f"* Dataset{'s' if len(names) > 1 else ''}: {joined}"


def render_section(eval_results: dict, family: str = "sentence-transformers", generation: str = "st6") -> str:
    """The card's ``## Evaluation`` section, as ST's template writes it (ends before the next comment)."""
    blocks, _, _ = format_eval_metrics(eval_results)
    page, anchor = _DOC_LINKS.get((family, generation), _DOC_LINKS[("sentence-transformers", "st6")])
    out = "## Evaluation\n\n### Metrics\n"
    for block in blocks:
        out += f"\n#### {block['description']}\n"
        if block["dataset_name"]:
            out += "\n" + _datasets_line(block["dataset_name"])
        cls = block["class_name"]
        if cls.startswith("sentence_transformers."):
            short = cls.split(".")[-1]
            tool = (f"[<code>{short}</code>](https://sbert.net/docs/package_reference/{page}/evaluation.html"
                    f"#{anchor}.{short})")
        else:
            tool = f"<code>{cls}</code>"
        out += f"\n* Evaluated with {tool}"
        if block["config_code"]:
            out += " with these parameters:\n" + block["config_code"]
        out += "\n\n" + block["table"]
    return out


def front_matter_entries(eval_results: dict, model_name: str) -> dict:
    """The YAML ``metrics`` and ``model-index`` (huggingface_hub's ``eval_results_to_model_index``)."""
    from huggingface_hub.repocard_data import EvalResult, eval_results_to_model_index

    _, names, results = format_eval_metrics(eval_results)
    return {"metrics": names,
            "model-index": eval_results_to_model_index(model_name, [EvalResult(**r) for r in results])}

