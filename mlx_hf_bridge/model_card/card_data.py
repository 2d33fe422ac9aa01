"""sentence-transformers' ``*ModelCardData``: what a user tells the model card (language, licence, name,
datasets, ...). ST fills a Jinja template from it; here it becomes the ``info`` of :func:`write_model_card`."""

from __future__ import annotations

from dataclasses import dataclass, field, fields


@dataclass
class SentenceTransformerModelCardData:
    """``SentenceTransformerModelCardData(language=[], license=None, model_name=None, model_id=None,
    train_datasets=[], eval_datasets=[], task_name=..., tags=[...], local_files_only=False,
    generate_widget_examples=True)``: ST 6.2's user-set fields and defaults."""

    language: str | list[str] | None = field(default_factory=list)
    license: str | None = None
    model_name: str | None = None
    model_id: str | None = None
    train_datasets: list[dict[str, str]] = field(default_factory=list)
    eval_datasets: list[dict[str, str]] = field(default_factory=list)
    task_name: str = (
        "semantic textual similarity, semantic search, paraphrase mining, classification, clustering, and more"
    )
    tags: list[str] = field(
        default_factory=lambda: ["sentence-transformers", "sentence-similarity", "feature-extraction", "dense"]
    )
    local_files_only: bool = False
    generate_widget_examples: bool = True

    def __post_init__(self):
        if isinstance(self.language, str):
            self.language = [self.language]
        # evaluator -> its latest metrics (ST's eval_results_dict, not a constructor argument there either)
        self.eval_results_dict: dict = {}

    def set_evaluation_metrics(self, evaluator, metrics: dict, epoch: int = 0, step: int = 0) -> None:
        """ST's hook, called by every evaluator: the card's Evaluation section shows the latest metrics of
        each evaluator (the training-log table already carries them, from the trainer's log history)."""
        self.eval_results_dict[evaluator] = dict(metrics)

    def to_info(self) -> dict:
        """The fields a card renders (empty ones left out, so saved facts and defaults fill them)."""
        info = {f.name: getattr(self, f.name) for f in fields(self)}
        for key in ("local_files_only", "generate_widget_examples"):
            info.pop(key)
        if self.eval_results_dict:
            info["eval_results"] = dict(self.eval_results_dict)
        return {k: v for k, v in info.items() if v not in (None, [], "")}


@dataclass
class MultiVectorEncoderModelCardData(SentenceTransformerModelCardData):
    """``MultiVectorEncoderModelCardData(...)``: ST 6.2's fields; the task and tags of a multi-vector model."""

    task_name: str | None = None  # as ST 6.2: the card says "semantic search with late interaction"
    tags: list[str] = field(
        default_factory=lambda: ["sentence-transformers", "multi-vector", "colbert", "late-interaction"]
    )


def card_info(model, family: str, model_name=None, train_datasets=None, model_id=None, **facts) -> dict:
    """The ``info`` a sentence-transformers-family model's README is written from: its model card data,
    the trainer's facts (``model.card_info``, set after training), the model itself and ``facts``."""
    card_data = getattr(model, "model_card_data", None)
    info = {**(card_data.to_info() if hasattr(card_data, "to_info") else {}), **(getattr(model, "card_info", {}) or {})}
    info.update(family=family, model=model, **facts)
    info.setdefault("base_model", getattr(model, "model_name_or_path", None))
    if model_name:
        info.setdefault("model_name", model_name)
    if train_datasets:
        info["train_datasets"] = train_datasets
    if model_id:
        info["model_id"] = model_id
    return info
