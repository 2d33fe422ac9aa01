"""Hyperparameters and device flags of a run, with the derived run name and output folder.

Defaults are the Reason-ModernColBERT recipe (PyLate's ``examples/train/reason_moderncolbert.py``):
GTE-ModernColBERT-v1, 3 epochs, lr 1e-5, batch 256, GradCache mini-batch 32, queries 128 / documents
8192 tokens, bf16, 8 dataloader workers, seed 42, checkpoints every 500 steps, logging every step.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass
class TrainingConfig:
    # data
    dataset: str = "reasonir/reasonir-data"
    dataset_config: str | None = "hq"
    split: str = "train"
    documents: str | None = None  # BRIGHT documents, for raw ReasonIR rows (default: xlangai/BRIGHT for the hub id)
    documents_config: str | None = "documents"
    sample: bool = False
    sample_size: int = 1000
    holdout: float = 0.0  # < 1: fraction held out for evaluation; >= 1: number of rows
    seed: int = 42
    # model
    model: str = "lightonai/GTE-ModernColBERT-v1"
    query_length: int = 128
    document_length: int = 8192
    # optimisation
    epochs: float = 3.0
    lr: float = 1e-5
    batch_size: int = 256
    mini_batch_size: int = 32
    max_steps: int = -1
    # device / precision
    bf16: bool = True
    fp16: bool = False
    cpu: bool = False
    num_workers: int = 8
    # bookkeeping
    run_name: str | None = None
    output_root: str = "output"
    save_steps: int = 500
    logging_steps: int = 1
    eval_steps: int | None = None

    def __post_init__(self):
        if not self.run_name:
            self.run_name = f"{self.model_short}-ReasonIR"
        if self.bf16 and self.fp16:
            raise ValueError("choose one of bf16 and fp16")
        for name in ("batch_size", "mini_batch_size", "query_length", "document_length", "sample_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.holdout < 0:
            raise ValueError(f"holdout must be >= 0, got {self.holdout}")
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {self.num_workers}")

    @property
    def model_short(self) -> str:
        """``lightonai/GTE-ModernColBERT-v1`` -> ``GTE-ModernColBERT-v1`` (also for local folders)."""
        return str(self.model).rstrip("/\\").replace("\\", "/").split("/")[-1]

    @property
    def output_dir(self) -> str:
        """``output/<model_short>/<run_name>``."""
        return str(Path(self.output_root) / self.model_short / self.run_name)

    @property
    def final_dir(self) -> str:
        return str(Path(self.output_dir) / "final")

    def to_dict(self) -> dict:
        return {**asdict(self), "model_short": self.model_short, "output_dir": self.output_dir}
