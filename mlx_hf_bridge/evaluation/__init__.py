"""sentence-transformers' dense evaluators on MLX (ST 5.3 and 6.2 names, metrics, keys and CSV files).

Embeddings come from the model's ``encode`` / ``encode_query`` / ``encode_document`` (called with
ST's arguments), similarities from :mod:`mlx_hf_bridge.dense.similarity`, the IR math from
:mod:`mlx_hf_bridge.colbert.ir_metrics` and the scipy / scikit-learn statistics ST uses from
:mod:`.metrics` (numpy). Where ST 5.3 and 6.2 differ observably, the installed release is followed
(ST 6.2 when none is installed); each class's docstring lists the differences.
"""

from ..dense.similarity import SimilarityFunction
from .base import BaseEvaluator, SentenceEvaluator
from .binary_classification import BinaryClassificationEvaluator
from .embedding_similarity import EmbeddingSimilarityEvaluator
from .information_retrieval import InformationRetrievalEvaluator
from .label_accuracy import LabelAccuracyEvaluator
from .mining import paraphrase_mining, paraphrase_mining_embeddings
from .mse import MSEEvaluator
from .nano_beir import NanoBEIREvaluator
from .paraphrase_mining import ParaphraseMiningEvaluator
from .reranking import RerankingEvaluator
from .sequential import SequentialEvaluator
from .translation import TranslationEvaluator
from .triplet import TripletEvaluator

__all__ = [
    "BaseEvaluator", "SentenceEvaluator", "SequentialEvaluator", "SimilarityFunction",
    "BinaryClassificationEvaluator", "EmbeddingSimilarityEvaluator", "InformationRetrievalEvaluator",
    "LabelAccuracyEvaluator", "MSEEvaluator", "NanoBEIREvaluator", "ParaphraseMiningEvaluator", "RerankingEvaluator", "TranslationEvaluator", "TripletEvaluator",
    "paraphrase_mining", "paraphrase_mining_embeddings",
]
