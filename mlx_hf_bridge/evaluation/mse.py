"""sentence-transformers' ``MSEEvaluator`` on MLX."""

from __future__ import annotations

import logging

import numpy as np

from .base import EvaluatorInputError, SentenceEvaluator, append_csv_row, epoch_text, st6

logger = logging.getLogger(__name__)


class MSEEvaluator(SentenceEvaluator):
    """Mean squared error (×100) between the teacher's embeddings of ``source_sentences`` (computed
    once, at construction) and the student's of ``target_sentences``. Returns
    ``{name}_negative_mse`` (= ``primary_metric``: greater is better); CSV
    ``mse_evaluation_{name}_results.csv`` (ST's name, with the underscore even when ``name`` is empty).

    Lists of different lengths are refused (ST 6.2's error; ST 5.3 fails later, in numpy). ST 6.2
    writes the MSE as a Python float, ST 5.3 the float32 value (its shorter ``str``): the installed
    release is followed.
    """

    def __init__(
        self,
        source_sentences: list[str],
        target_sentences: list[str],
        teacher_model=None,
        show_progress_bar: bool = False,
        batch_size: int = 32,
        name: str = "",
        write_csv: bool = True,
        truncate_dim: int | None = None,
    ):
        super().__init__()
        # ST 6.2's check; ST 5.3 has none and fails in numpy after encoding both sides: refused here too
        if len(source_sentences) != len(target_sentences):
            raise EvaluatorInputError(
                f"source_sentences ({len(source_sentences)}) and target_sentences ({len(target_sentences)}) "
                "must have the same length."
            )
        self.truncate_dim = truncate_dim
        self.target_sentences = target_sentences
        self.show_progress_bar = show_progress_bar
        self.batch_size = batch_size
        self.name = name
        self.csv_file = "mse_evaluation_" + name + "_results.csv"
        self.csv_headers = ["epoch", "steps", "MSE"]
        self.write_csv = write_csv
        self.primary_metric = "negative_mse"
        self.source_embeddings = np.asarray(self.embed_inputs(teacher_model, source_sentences))

    def __call__(self, model, output_path: str | None = None, epoch=-1, steps=-1) -> dict[str, float]:
        out_txt = epoch_text(epoch, steps, self.truncate_dim)
        target_embeddings = np.asarray(self.embed_inputs(model, self.target_sentences))
        mse = ((self.source_embeddings - target_embeddings) ** 2).mean() * 100
        if st6():
            mse = mse.item()
        logger.info(f"MSE evaluation (lower = better) on the {self.name} dataset{out_txt}:")
        logger.info(f"MSE (*100):\t{mse:4f}")
        if output_path is not None and self.write_csv:
            append_csv_row(output_path, self.csv_file, self.csv_headers, [epoch, steps, mse])
        # Negative, as sentence-transformers maximises the score
        metrics = self.prefix_name_to_metrics({"negative_mse": -mse}, self.name)
        self.store_metrics_in_model_card_data(model, metrics, epoch, steps)
        return metrics

    def embed_inputs(self, model, sentences, **kwargs):
        return model.encode(
            sentences,
            batch_size=self.batch_size,
            show_progress_bar=self.show_progress_bar,
            convert_to_numpy=True,
            truncate_dim=self.truncate_dim,
            **kwargs,
        )

    @property
    def description(self) -> str:
        return "Knowledge Distillation"

    def get_config_dict(self):
        return {"truncate_dim": self.truncate_dim} if self.truncate_dim is not None else {}
