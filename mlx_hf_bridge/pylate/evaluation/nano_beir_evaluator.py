"""``pylate.evaluation.NanoBEIREvaluator`` on MLX: the dense NanoBEIR evaluator (same constructor, keys,
aggregate and CSVs) with PyLate 1.6's loading: each dataset from its own ``zeta-alpha-ai/Nano<Name>``
repository (``load_dataset(id, "corpus" | "queries" | "qrels", split="train")``, ``dataset_id`` unused,
as in PyLate) and scored by :class:`PyLateInformationRetrievalEvaluator` (MaxSim)."""

from __future__ import annotations

from ...evaluation.nano_beir import DATASET_NAME_TO_HUMAN_READABLE, DatasetNameType
from ...evaluation.nano_beir import NanoBEIREvaluator as _DenseNanoBEIREvaluator
from .pylate_information_retrieval_evaluator import PyLateInformationRetrievalEvaluator

MAPPING_DATASET_NAME_TO_ID = {name: f"zeta-alpha-ai/Nano{human}" for name, human in DATASET_NAME_TO_HUMAN_READABLE.items()}
MAPPING_DATASET_NAME_TO_HUMAN_READABLE = dict(DATASET_NAME_TO_HUMAN_READABLE)


class NanoBEIREvaluator(_DenseNanoBEIREvaluator):
    __doc__ = __doc__
    information_retrieval_class = PyLateInformationRetrievalEvaluator

    def _load_dataset(self, dataset_name: DatasetNameType, **ir_evaluator_kwargs) -> PyLateInformationRetrievalEvaluator:
        from datasets import load_dataset  # looked up at call time, so a patched datasets.load_dataset is used

        dataset_path = MAPPING_DATASET_NAME_TO_ID[dataset_name.lower()]
        corpus = load_dataset(dataset_path, "corpus", split="train")
        queries = load_dataset(dataset_path, "queries", split="train")
        qrels = load_dataset(dataset_path, "qrels", split="train")
        corpus_dict = {s["_id"]: s["text"] for s in corpus if len(s["text"]) > 0}
        queries_dict = {s["_id"]: s["text"] for s in queries if len(s["text"]) > 0}
        qrels_dict: dict[str, set] = {}
        for s in qrels:
            qrels_dict.setdefault(s["query-id"], set()).add(s["corpus-id"])
        if self.query_prompts is not None:
            ir_evaluator_kwargs["query_prompt"] = self.query_prompts.get(dataset_name, None)
        if self.corpus_prompts is not None:
            ir_evaluator_kwargs["corpus_prompt"] = self.corpus_prompts.get(dataset_name, None)
        return PyLateInformationRetrievalEvaluator(
            queries=queries_dict, corpus=corpus_dict, relevant_docs=qrels_dict,
            name=self._get_human_readable_name(dataset_name), **ir_evaluator_kwargs,
        )
