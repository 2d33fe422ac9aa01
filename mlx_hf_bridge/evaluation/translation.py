"""sentence-transformers' ``TranslationEvaluator`` on MLX."""

from __future__ import annotations

import logging

import numpy as np

from ..dense.similarity import cos_sim
from .base import SentenceEvaluator, append_csv_row, as_numpy, check_same_length, epoch_text, st6

logger = logging.getLogger(__name__)


class TranslationEvaluator(SentenceEvaluator):
    """Translation matching accuracy: is ``target_sentences[i]`` the most cosine-similar target of
    ``source_sentences[i]`` (src2trg), and the reverse (trg2src)? Keys ``{name}_src2trg_accuracy``,
    ``_trg2src_accuracy``, ``_mean_accuracy`` (= ``primary_metric``); CSV
    ``translation_evaluation[_{name}]_results.csv``. ST 6.2 counts a match whose text equals the
    expected one (duplicate sentences), ST 5.3 only the same index: the installed release is followed.
    """

    def __init__(
        self,
        source_sentences: list[str],
        target_sentences: list[str],
        show_progress_bar: bool = False,
        batch_size: int = 16,
        name: str = "",
        print_wrong_matches: bool = False,
        write_csv: bool = True,
        truncate_dim: int | None = None,
    ):
        super().__init__()
        self.source_sentences = source_sentences
        self.target_sentences = target_sentences
        self.name = name
        self.batch_size = batch_size
        self.show_progress_bar = show_progress_bar
        self.print_wrong_matches = print_wrong_matches
        self.truncate_dim = truncate_dim
        check_same_length(type(self).__name__, source_sentences=source_sentences, target_sentences=target_sentences)
        if name:
            name = "_" + name
        self.csv_file = "translation_evaluation" + name + "_results.csv"
        self.csv_headers = ["epoch", "steps", "src2trg", "trg2src"]
        self.write_csv = write_csv
        self.primary_metric = "mean_accuracy"

    def _matches(self, i: int, max_idx: int, texts) -> bool:
        return texts[i] == texts[max_idx] if st6() else i == max_idx

    def __call__(self, model, output_path: str | None = None, epoch: int = -1, steps: int = -1) -> dict[str, float]:
        out_txt = epoch_text(epoch, steps, self.truncate_dim)
        logger.info(f"Evaluating translation matching Accuracy of the model on the {self.name} dataset{out_txt}:")
        embeddings1 = as_numpy(self.embed_inputs(model, self.source_sentences))
        embeddings2 = as_numpy(self.embed_inputs(model, self.target_sentences))
        cos_sims = as_numpy(cos_sim(embeddings1, embeddings2))

        correct_src2trg = correct_trg2src = 0
        for i in range(len(cos_sims)):
            max_idx = int(np.argmax(cos_sims[i]))
            if self._matches(i, max_idx, self.target_sentences):
                correct_src2trg += 1
            elif self.print_wrong_matches:
                print("\nIncorrect  : Source", i, "is most similar to target", max_idx, "instead of target", i)
                print("Source     :", self.source_sentences[i])
                print("Pred Target:", self.target_sentences[max_idx], f"(Score: {cos_sims[i][max_idx]:.4f})")
                print("True Target:", self.target_sentences[i], f"(Score: {cos_sims[i][i]:.4f})")
                for idx, score in sorted(enumerate(cos_sims[i]), key=lambda x: x[1], reverse=True)[:5]:
                    print("\t", idx, f"(Score: {score:.4f})", self.target_sentences[idx])
        cos_sims = cos_sims.T
        for i in range(len(cos_sims)):
            if self._matches(i, int(np.argmax(cos_sims[i])), self.source_sentences):
                correct_trg2src += 1

        acc_src2trg = correct_src2trg / len(cos_sims)
        acc_trg2src = correct_trg2src / len(cos_sims)
        logger.info(f"Accuracy src2trg: {acc_src2trg * 100:.2f}")
        logger.info(f"Accuracy trg2src: {acc_trg2src * 100:.2f}")
        if output_path is not None and self.write_csv:
            append_csv_row(output_path, self.csv_file, self.csv_headers, [epoch, steps, acc_src2trg, acc_trg2src])

        metrics = {"src2trg_accuracy": acc_src2trg, "trg2src_accuracy": acc_trg2src,
                   "mean_accuracy": (acc_src2trg + acc_trg2src) / 2}
        metrics = self.prefix_name_to_metrics(metrics, self.name)
        self.store_metrics_in_model_card_data(model, metrics, epoch, steps)
        return metrics

    def embed_inputs(self, model, sentences, **kwargs):
        return model.encode(
            sentences,
            batch_size=self.batch_size,
            show_progress_bar=self.show_progress_bar,
            convert_to_numpy=False,
            truncate_dim=self.truncate_dim,
            **kwargs,
        )

    def get_config_dict(self):
        return {"truncate_dim": self.truncate_dim} if self.truncate_dim is not None else {}
