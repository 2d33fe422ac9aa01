"""``pylate.evaluation`` on MLX: ``ColBERTTripletEvaluator``, ``NanoBEIREvaluator``, ``PyLateInformationRetrievalEvaluator``
and ``ColBERTDistillationEvaluator``.

Same constructors, metric keys, ``primary_metric`` and CSV files as PyLate 1.6 / sentence-transformers
5.3; embeddings come from the MLX model's ``encode`` and MaxSim runs in MLX over zero-padded
embeddings (padding scores 0, as PyLate's ``pad_sequence`` does). The IR metric math lives in
:mod:`mlx_hf_bridge.colbert.ir_metrics`.
"""

from .base import csv_writer
from .beir import evaluate, get_beir_triples, load_beir
from .colbert_distillation import ColBERTDistillationEvaluator
from .colbert_triplet import ColBERTTripletEvaluator
from .nano_beir_evaluator import NanoBEIREvaluator
from .pylate_information_retrieval_evaluator import PyLateInformationRetrievalEvaluator

__all__ = [
    "ColBERTDistillationEvaluator",
    "ColBERTTripletEvaluator",
    "NanoBEIREvaluator",
    "PyLateInformationRetrievalEvaluator",
    "csv_writer",
    "evaluate",
    "get_beir_triples",
    "load_beir",
]

