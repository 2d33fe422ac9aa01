"""The pipeline loop of transformers' ``Pipeline`` on MLX: preprocess (the tokenizer) -> forward
(the bridge's task model, batched and padded as transformers' ``pad_collate_fn`` pads) ->
postprocess (numpy), with transformers' rules for single / list / generator inputs.

A model in training mode runs in eval mode for the forward (no dropout) and is put back after it.
"""

from __future__ import annotations

import types

import mlx.core as mx
import numpy as np

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class PipelineException(ValueError):
    """transformers' ``PipelineException``: the task, the model and what is wrong."""

    def __init__(self, task: str, model: str, reason: str):
        super().__init__(reason)
        self.task, self.model = task, model


class Pipeline:
    """Subclasses set ``task`` and ``per_token`` (logits per token rather than per sequence) and
    implement ``_sanitize_parameters``, ``preprocess`` (one model input, or several chunks where
    ``chunked``) and ``postprocess``."""

    task = ""
    per_token = False
    chunked = False  # transformers' ChunkPipeline: one input -> several model inputs -> one output

    def __init__(self, model, tokenizer, task: str = "", batch_size: int | None = None, num_workers=None, **kwargs):
        self.model, self.tokenizer = model, tokenizer
        self.task = task or self.task
        self._batch_size = batch_size
        self._preprocess_params, self._forward_params, self._postprocess_params = self._sanitize_parameters(**kwargs)

    # --- the loop ------------------------------------------------------------------------------
    def __call__(self, inputs, *args, num_workers=None, batch_size=None, **kwargs):
        pre, _, post = self._sanitize_parameters(**kwargs)
        pre = {**self._preprocess_params, **pre}
        post = {**self._postprocess_params, **post}
        batch_size = batch_size or self._batch_size or 1
        if isinstance(inputs, list):
            return list(self._run(inputs, batch_size, pre, post))
        if isinstance(inputs, types.GeneratorType) or _is_dataset(inputs):
            return self._run(inputs, batch_size, pre, post)  # lazily, as transformers streams them
        if self.chunked:
            return next(self._run([inputs], batch_size, pre, post))
        return self.postprocess(self._forward_items([self.preprocess(inputs, **pre)])[0], **post)

    def _run(self, inputs, batch_size: int, pre: dict, post: dict):
        """One output per input, in order; model inputs batched ``batch_size`` at a time."""
        pending = []  # (input index, model input)
        outputs: dict = {}
        emitted = 0
        counts: dict = {}

        def flush():
            if not pending:
                return
            for (index, _), out in zip(pending, self._forward_items([item for _, item in pending])):
                outputs.setdefault(index, []).append(out)
            pending.clear()

        def ready():
            nonlocal emitted
            while emitted in counts and len(outputs.get(emitted, [])) == counts[emitted]:
                outs = outputs.pop(emitted)
                yield self.postprocess(outs if self.chunked else outs[0], **post)
                emitted += 1

        for index, item in enumerate(inputs):
            chunks = list(self.preprocess(item, **pre)) if self.chunked else [self.preprocess(item, **pre)]
            counts[index] = len(chunks)
            for chunk in chunks:
                pending.append((index, chunk))
                if len(pending) >= batch_size:
                    flush()
                    yield from ready()
        flush()
        yield from ready()

    def _forward_items(self, items: list) -> list:
        """The model on ``items`` (dicts of one row each), padded into one batch; per-item outputs with
        the logits cut back to each row (every other key passed through)."""
        lengths = [len(item["input_ids"]) for item in items]
        width = max(lengths)
        left = getattr(self.tokenizer, "padding_side", "right") == "left"
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        batch = {}
        for key in MODEL_INPUTS:
            if key not in items[0]:
                continue
            fill = pad_id if key == "input_ids" else 0
            rows = np.full((len(items), width), fill, np.int32)
            for r, (item, n) in enumerate(zip(items, lengths)):
                if left:
                    rows[r, width - n:] = np.asarray(item[key])
                else:
                    rows[r, :n] = np.asarray(item[key])
            batch[key] = mx.array(rows)
        logits = self._logits(batch)
        out = []
        for r, (item, n) in enumerate(zip(items, lengths)):
            row = logits[r]
            if self.per_token:
                row = row[width - n:] if left else row[:n]
            out.append({**item, "logits": row})
        return out

    def _logits(self, batch: dict) -> np.ndarray:
        model = self.model
        was_training = getattr(model, "training", False)
        model.eval()
        try:
            logits = model(**batch).logits
        finally:
            if was_training:
                model.train()
        return np.array(logits.astype(mx.float32))

    # --- what subclasses define ---------------------------------------------------------------
    def _sanitize_parameters(self, **kwargs):
        raise NotImplementedError

    def preprocess(self, inputs, **params):
        raise NotImplementedError

    def postprocess(self, outputs, **params):
        raise NotImplementedError

    @property
    def _model_name(self) -> str:
        return getattr(self.model, "base_model_prefix", type(self.model).__name__)


def _is_dataset(inputs) -> bool:
    try:
        from datasets import Dataset
    except ImportError:
        return False
    return isinstance(inputs, Dataset)
