"""sentence-transformers' ``ParaphraseMiningEvaluator`` on MLX."""

from __future__ import annotations

import logging
from collections import defaultdict

from .base import SentenceEvaluator, append_csv_row, epoch_text, st6
from .mining import paraphrase_mining

logger = logging.getLogger(__name__)


class ParaphraseMiningEvaluator(SentenceEvaluator):
    """Mines the most similar pairs of ``sentences_map`` (id -> sentence) and scores them against
    the known duplicates (``duplicates_list`` of id pairs or ``duplicates_dict``): average precision,
    best F1 with its precision, recall and threshold. Keys ``{name}_average_precision`` (=
    ``primary_metric``), ``_f1``, ``_precision``, ``_recall``, ``_threshold``; CSV
    ``paraphrase_mining_evaluation[_{name}]_results.csv``.

    ST 6.2 counts pairs of equal score as one step (precision and AP weighted by the duplicates in
    it), follows only pairs marked True in the transitive closure and reports 0 when there are no
    duplicates; ST 5.3 steps pair by pair. Follows the installed release.
    """

    def __init__(
        self,
        sentences_map: dict[str, str],
        duplicates_list: list[tuple[str, str]] | None = None,
        duplicates_dict: dict[str, dict[str, bool]] | None = None,
        add_transitive_closure: bool = False,
        query_chunk_size: int = 5000,
        corpus_chunk_size: int = 100000,
        max_pairs: int = 500000,
        top_k: int = 100,
        show_progress_bar: bool = False,
        batch_size: int = 16,
        name: str = "",
        write_csv: bool = True,
        truncate_dim: int | None = None,
    ):
        super().__init__()
        self._st6 = st6()
        self.sentences = list(sentences_map.values())
        self.ids = list(sentences_map.keys())
        self.name = name
        self.show_progress_bar = show_progress_bar
        self.batch_size = batch_size
        self.query_chunk_size = query_chunk_size
        self.corpus_chunk_size = corpus_chunk_size
        self.max_pairs = max_pairs
        self.top_k = top_k
        self.truncate_dim = truncate_dim
        # the flag under a private name: `self.add_transitive_closure` is the static method (ST 6.2)
        self._add_transitive_closure = add_transitive_closure

        self.duplicates = duplicates_dict if duplicates_dict is not None else defaultdict(lambda: defaultdict(bool))
        if duplicates_list is not None:
            for id1, id2 in duplicates_list:
                if id1 in sentences_map and id2 in sentences_map:
                    self.duplicates[id1][id2] = True
                    self.duplicates[id2][id1] = True
        if add_transitive_closure:
            self.duplicates = self.add_transitive_closure(self.duplicates)

        positive_key_pairs = set()
        for key1 in self.duplicates:
            for key2 in self.duplicates[key1]:
                if (key1 in sentences_map and key2 in sentences_map
                        and (self.duplicates[key1][key2] or self.duplicates[key2][key1])):
                    positive_key_pairs.add(tuple(sorted([key1, key2])))
        self.total_num_duplicates = len(positive_key_pairs)

        if name:
            name = "_" + name
        self.csv_file: str = "paraphrase_mining_evaluation" + name + "_results.csv"
        self.csv_headers = ["epoch", "steps", "precision", "recall", "f1", "threshold", "average_precision"]
        self.write_csv = write_csv
        self.primary_metric = "average_precision"

    def __call__(self, model, output_path: str | None = None, epoch: int = -1, steps: int = -1) -> dict[str, float]:
        out_txt = epoch_text(epoch, steps, self.truncate_dim)
        logger.info(f"Paraphrase Mining Evaluation of the model on the {self.name} dataset{out_txt}:")
        pairs_list = paraphrase_mining(
            model, self.sentences, show_progress_bar=self.show_progress_bar, batch_size=self.batch_size,
            query_chunk_size=self.query_chunk_size, corpus_chunk_size=self.corpus_chunk_size,
            max_pairs=self.max_pairs, top_k=self.top_k, truncate_dim=self.truncate_dim,
        )
        logger.info("Number of candidate pairs: " + str(len(pairs_list)))
        best_f1, best_precision, best_recall, threshold, average_precision = self._score(pairs_list)

        logger.info(f"Average Precision: {average_precision * 100:.2f}")
        logger.info(f"Optimal threshold: {threshold:.4f}")
        logger.info(f"Precision: {best_precision * 100:.2f}")
        logger.info(f"Recall: {best_recall * 100:.2f}")
        logger.info(f"F1: {best_f1 * 100:.2f}\n")
        if output_path is not None and self.write_csv:
            row = [epoch, steps, best_precision, best_recall, best_f1, threshold, average_precision]
            append_csv_row(output_path, self.csv_file, self.csv_headers, row)

        metrics = {"average_precision": average_precision, "f1": best_f1, "precision": best_precision,
                   "recall": best_recall, "threshold": threshold}
        metrics = self.prefix_name_to_metrics(metrics, self.name)
        self.store_metrics_in_model_card_data(model, metrics, epoch, steps)
        return metrics

    def _score(self, pairs_list):
        n_extract = n_correct = previous_correct = 0
        threshold = 0
        best_f1 = best_recall = best_precision = 0
        average_precision = 0
        total = self.total_num_duplicates
        for idx, (score, i, j) in enumerate(pairs_list):
            id1, id2 = self.ids[i], self.ids[j]
            n_extract += 1
            if self.duplicates[id1][id2] or self.duplicates[id2][id1]:
                n_correct += 1
            if self._st6:
                if idx + 1 < len(pairs_list) and pairs_list[idx + 1][0] == score:
                    continue  # a threshold cannot split pairs of equal score
                found = n_correct > previous_correct
            else:
                found = self.duplicates[id1][id2] or self.duplicates[id2][id1]
            if found:
                precision = n_correct / n_extract
                recall = (n_correct / total if total > 0 else 0.0) if self._st6 else n_correct / total
                f1 = 2 * precision * recall / (precision + recall)
                average_precision += precision * (n_correct - previous_correct) if self._st6 else precision
                if f1 > best_f1:
                    best_f1, best_precision, best_recall = f1, precision, recall
                    threshold = (pairs_list[idx][0] + pairs_list[min(idx + 1, len(pairs_list) - 1)][0]) / 2
            previous_correct = n_correct
        if self._st6:
            average_precision = average_precision / total if total > 0 else 0
        else:
            average_precision = average_precision / total
        return best_f1, best_precision, best_recall, threshold, average_precision

    @staticmethod
    def add_transitive_closure(graph):
        only_true = st6()  # ST 6.2 follows only the pairs marked as duplicates
        nodes_visited = set()

        def neighbours(node):
            return [n for n, is_dup in graph[node].items() if is_dup] if only_true else list(graph[node])

        for a in list(graph.keys()):
            if a not in nodes_visited:
                connected = {a}
                queue = neighbours(a)
                while queue:
                    node = queue.pop(0)
                    if node not in connected:
                        connected.add(node)
                        queue.extend(neighbours(node))
                connected = list(connected)
                for i in range(len(connected) - 1):
                    for j in range(i + 1, len(connected)):
                        graph[connected[i]][connected[j]] = True
                        graph[connected[j]][connected[i]] = True
                        nodes_visited.add(connected[i])
                        nodes_visited.add(connected[j])
        return graph

    def get_config_dict(self):
        # ST 5.3 stores the static method here (its flag shares the name), reproduced; ST 6.2 the flag
        closure = self._add_transitive_closure if self._st6 else self.add_transitive_closure
        config_dict = {"add_transitive_closure": closure, "max_pairs": self.max_pairs,
                       "top_k": self.top_k}
        if self.truncate_dim is not None:
            config_dict["truncate_dim"] = self.truncate_dim
        return config_dict
