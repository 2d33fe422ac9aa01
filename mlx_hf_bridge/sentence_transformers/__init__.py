"""Drop-in for the training side of ``sentence_transformers`` on MLX.

``from mlx_hf_bridge.sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments``
and ``from mlx_hf_bridge.sentence_transformers.training_args import BatchSamplers``.
"""

from ..engine.callbacks import TrainerCallback
from ..engine.state import TrainerControl, TrainerState, TrainOutput
from ..dense.model import SentenceTransformer
from ..dense.quantization import quantize_embeddings
from ..dense.similarity import SimilarityFunction
from ..model_card.card_data import MultiVectorEncoderModelCardData, SentenceTransformerModelCardData
from ..multi_vector import MultiVectorEncoder
from .multi_vector_encoder import MultiVectorEncoderTrainer, MultiVectorEncoderTrainingArguments
from .readers import InputExample, LoggingHandler
from .trainer import SentenceTransformerTrainer
from .util.dataset import resolve_ids
from .training_args import BatchSamplers, MultiDatasetBatchSamplers, SentenceTransformerTrainingArguments

__all__ = [
    "SentenceTransformer", "SentenceTransformerModelCardData", "SimilarityFunction", "quantize_embeddings",
    "MultiVectorEncoder", "MultiVectorEncoderModelCardData", "MultiVectorEncoderTrainer", "MultiVectorEncoderTrainingArguments",
    "BatchSamplers", "MultiDatasetBatchSamplers", "SentenceTransformerTrainer", "SentenceTransformerTrainingArguments",
    "TrainOutput", "TrainerCallback", "TrainerControl", "TrainerState", "InputExample", "LoggingHandler", "resolve_ids",
]
