"""sentence-transformers 6's ``MultiVectorMask``: the scoring mask of a late-interaction model."""

from __future__ import annotations

import logging
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn

from ..errors import read_json
from .normalize import write_module_config

logger = logging.getLogger(__name__)
CONFIG_KEYS = ("skiplist_words", "skiplist_tasks", "keep_only_token_ids")


class MultiVectorMask(nn.Module):
    """Overwrites ``attention_mask`` with the rows MaxSim scores: real tokens, plus the query's
    expansion positions; skiplist tokens dropped for ``skiplist_tasks`` (no task counts as
    "document"); ``keep_only_token_ids`` restricts every non-query task. Same rules as ST 6."""

    def __init__(self, skiplist_words=None, *, skiplist_tasks=None, keep_only_token_ids=None):
        super().__init__()
        if isinstance(skiplist_tasks, str):
            skiplist_tasks = [skiplist_tasks]
        self.skiplist_words = list(skiplist_words) if skiplist_words is not None else []
        self.skiplist_tasks = list(skiplist_tasks) if skiplist_tasks is not None else ["document"]
        self.keep_only_token_ids = list(keep_only_token_ids) if keep_only_token_ids is not None else None
        self.skiplist_ids = None

    def __setattr__(self, key, value):
        # plain settings, not children: nn.Module would file a list under its parameter tree
        object.__setattr__(self, key, value)

    def resolve_with_tokenizer(self, tokenizer):
        """Skiplist words -> ids; words that are not single vocab tokens are dropped (ST 6 warns)."""
        unk_id, unk = getattr(tokenizer, "unk_token_id", None), getattr(tokenizer, "unk_token", None)
        resolved, unresolved = [], []
        for word in self.skiplist_words:
            token_id = tokenizer.convert_tokens_to_ids(word)
            (unresolved if unk_id is not None and token_id == unk_id and word != unk else resolved).append(token_id)
        if unresolved:
            logger.warning("Skiplist words %s are not single vocab tokens for this tokenizer; dropping them.", unresolved)
        self.skiplist_ids = resolved or None

    def __call__(self, features: dict, task=None) -> dict:
        if "input_ids" not in features:
            return features
        ids = features["input_ids"]
        mask = features["attention_mask"].astype(mx.bool_)
        if task == "query" and features.get("query_expansion_positions") is not None:
            mask = mask | features["query_expansion_positions"].astype(mx.bool_)
        if (task or "document") in self.skiplist_tasks and self.skiplist_ids:
            for token_id in set(self.skiplist_ids):
                mask = mask & (ids != token_id)
        if task != "query" and self.keep_only_token_ids:
            keep = mx.zeros(ids.shape, dtype=mx.bool_)
            for token_id in self.keep_only_token_ids:
                keep = keep | (ids == token_id)
            mask = mask & keep
        return {**features, "attention_mask": mask}

    def get_config_dict(self) -> dict:
        return {"skiplist_words": self.skiplist_words, "skiplist_tasks": self.skiplist_tasks,
                "keep_only_token_ids": self.keep_only_token_ids}

    def save(self, output_path):
        write_module_config(output_path, self.get_config_dict())

    @staticmethod
    def load(input_path) -> "MultiVectorMask":
        path = Path(input_path) / "config.json"
        config = read_json(path, "the MultiVectorMask module's settings")
        unknown = sorted(set(config) - set(CONFIG_KEYS))
        if unknown:
            raise ValueError(f"{path}: unknown MultiVectorMask setting(s) {unknown}; ST 6 accepts {list(CONFIG_KEYS)}.")
        return MultiVectorMask(**config)
