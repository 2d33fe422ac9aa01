"""PyLate-style model card (README.md) for a saved ColBERT folder.

Follows the structure of PyLate 1.6's ``hf_hub/model_card_template.md``: YAML front-matter
(``library_name: PyLate``, ``pipeline_tag: sentence-similarity``, PyLate's tags, ``base_model``,
``datasets``), model description, PyLate usage snippets (index / retrieve / rerank) and, after
training, dataset / loss / hyperparameter / training-log / framework-version sections. Written in
plain Python (no Jinja, no torch); everything it cannot find is simply left out.
"""

from __future__ import annotations

from pathlib import Path

from .facts import PYLATE_TAGS, framework_versions, hub_id_and_revision
from .render import markdown_table, render_model_card

__all__ = ["write_model_card", "render_model_card", "PYLATE_TAGS", "framework_versions", "hub_id_and_revision", "markdown_table"]


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
    from ..io_utils import atomic_file

    folder = Path(folder)
    text = render_model_card(folder, info)
    path = folder / "README.md"
    with atomic_file(path) as tmp:  # a temp named for this process, renamed over README.md
        tmp.write_text(text, encoding="utf-8")
    return path
