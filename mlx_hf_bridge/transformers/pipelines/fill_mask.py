"""``pipeline("fill-mask")``: transformers' ``FillMaskPipeline`` outputs on the bridge's masked-LM models.

    >>> unmasker = pipeline("fill-mask", model=folder)                    # doctest: +SKIP
    >>> unmasker("Paris is the [MASK] of France.", top_k=2)               # doctest: +SKIP
    [{'score': 0.9, 'token': 3007, 'token_str': 'capital', 'sequence': 'paris is the capital of france.'}, ...]

transformers' rules, kept: ``top_k`` (default 5), ``targets`` (a token or list; a word outside the
vocabulary is replaced by its first sub-token, with a warning); with several masks each gets its own
list of propositions, and each proposition's ``sequence`` fills only that mask and keeps the special
tokens (transformers decodes it without skipping them); a list of one text gives that text's result.
"""

from __future__ import annotations

import logging

import numpy as np

from .base import Pipeline, PipelineException
from .text_classification import _softmax

logger = logging.getLogger(__name__)


class FillMaskPipeline(Pipeline):
    task = "fill-mask"
    per_token = True

    def _sanitize_parameters(self, top_k=None, targets=None, tokenizer_kwargs=None):
        pre = {} if tokenizer_kwargs is None else {"tokenizer_kwargs": tokenizer_kwargs}
        post = {}
        if targets is not None:
            post["target_ids"] = self.target_ids(targets)
        if top_k is not None:
            post["top_k"] = top_k
        if self.tokenizer.mask_token_id is None:
            raise PipelineException(self.task, self._model_name, "The tokenizer does not define a `mask_token`.")
        return pre, {}, post

    def __call__(self, inputs, **kwargs):
        outputs = super().__call__(inputs, **kwargs)
        if isinstance(inputs, list) and len(inputs) == 1:
            return outputs[0]
        return outputs

    def preprocess(self, inputs, tokenizer_kwargs=None):
        encoded = dict(self.tokenizer(inputs, **(tokenizer_kwargs or {})))
        if self.tokenizer.mask_token_id not in encoded["input_ids"]:
            raise PipelineException(self.task, self._model_name,
                                    f"No mask_token ({self.tokenizer.mask_token}) found on the input")
        return encoded

    def target_ids(self, targets) -> np.ndarray:
        targets = [targets] if isinstance(targets, str) else targets
        try:
            vocab = self.tokenizer.get_vocab()
        except Exception:
            vocab = {}
        ids = []
        for target in targets:
            id_ = vocab.get(target)
            if id_ is None:
                pieces = self.tokenizer(target, add_special_tokens=False, return_attention_mask=False,
                                        return_token_type_ids=False, max_length=1, truncation=True)["input_ids"]
                if len(pieces) == 0:
                    logger.warning(f"The specified target token `{target}` does not exist in the model vocabulary. "
                                   "We cannot replace it with anything meaningful, ignoring it")
                    continue
                id_ = pieces[0]
                logger.warning(f"The specified target token `{target}` does not exist in the model vocabulary. "
                               f"Replacing with `{self.tokenizer.convert_ids_to_tokens(id_)}`.")
            ids.append(id_)
        ids = list(set(ids))  # transformers' order (a set of ints)
        if not ids:
            raise ValueError("At least one target must be provided when passed.")
        return np.array(ids)

    def postprocess(self, outputs, top_k=5, target_ids=None):
        if target_ids is not None and target_ids.shape[0] < top_k:
            top_k = target_ids.shape[0]
        input_ids = np.asarray(outputs["input_ids"])
        masked = np.flatnonzero(input_ids == self.tokenizer.mask_token_id)
        probs = _softmax(outputs["logits"][masked])
        if target_ids is not None:
            probs = probs[..., target_ids]
        single_mask = len(masked) == 1
        result = []
        for i, row in enumerate(probs):
            order = _top_k(row, top_k)
            propositions = []
            for p in order:
                token = int(target_ids[p]) if target_ids is not None else int(p)
                tokens = input_ids.copy()
                tokens[masked[i]] = token
                tokens = tokens[tokens != self.tokenizer.pad_token_id]
                propositions.append({"score": float(row[p]), "token": token,
                                     "token_str": self.tokenizer.decode([token]),
                                     "sequence": self.tokenizer.decode(tokens, skip_special_tokens=single_mask)})
            result.append(propositions)
        return result[0] if single_mask else result


def _top_k(row: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest, largest first; ties by the lower index (torch.topk's order on CPU)."""
    return np.argsort(-row, kind="stable")[:k]
