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

    def to_info(self) -> dict:
        """The fields a card renders (empty ones left out, so saved facts and defaults fill them)."""
        info = {f.name: getattr(self, f.name) for f in fields(self)}
        for key in ("local_files_only", "generate_widget_examples"):
            info.pop(key)
        return {k: v for k, v in info.items() if v not in (None, [], "")}
