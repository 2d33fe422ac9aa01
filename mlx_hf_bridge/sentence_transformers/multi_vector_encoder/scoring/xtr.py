"""``sentence_transformers.multi_vector_encoder.scoring.xtr`` (ST 6.2): XTR scoring, on ``colbert.xtr``."""

from ....colbert.xtr import XTRKDScores, XTRScores, xtr_kd_scores, xtr_scores, xtr_scores_pairwise  # noqa: F401
