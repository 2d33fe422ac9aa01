"""``pipeline("text-classification")`` (alias ``"sentiment-analysis"``): transformers'
``TextClassificationPipeline`` outputs on the bridge's sequence-classification models.

    >>> classifier = pipeline("text-classification", model=folder)      # doctest: +SKIP
    >>> classifier("This movie is disgustingly good !")                   # doctest: +SKIP
    [{'label': 'POSITIVE', 'score': 0.98}]

transformers' shape rules, kept: a string without ``top_k`` in the call gives ``[best]``; ``top_k``
(an int, or None for every label) in the call gives the sorted list (a list of lists for a list of
texts); text pairs as ``{"text": ..., "text_pair": ...}``. ``function_to_apply`` ("sigmoid",
"softmax", "none"; default by ``problem_type`` / ``num_labels`` as transformers decides).
"""

from __future__ import annotations

import numpy as np

from .base import Pipeline

FUNCTIONS = ("sigmoid", "softmax", "none")


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _softmax(x):
    shifted = np.exp(x - np.max(x, axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


class TextClassificationPipeline(Pipeline):
    task = "text-classification"

    def _sanitize_parameters(self, function_to_apply=None, top_k="", **tokenizer_kwargs):
        post = {}
        if isinstance(top_k, int) or top_k is None:  # "" (the default) means: not given
            post["top_k"] = top_k
            post["_legacy"] = False
        if function_to_apply is not None:
            name = str(getattr(function_to_apply, "value", function_to_apply)).lower()
            if name not in FUNCTIONS:
                raise ValueError(f"function_to_apply={function_to_apply!r} is not one of {', '.join(FUNCTIONS)}.")
            post["function_to_apply"] = name
        return tokenizer_kwargs, {}, post

    def __call__(self, inputs, **kwargs):
        result = super().__call__(inputs, **kwargs)
        # transformers: a single string without top_k in the call comes back wrapped in a list
        if isinstance(inputs, str) and "top_k" not in kwargs:
            return [result]
        return result

    def preprocess(self, inputs, **tokenizer_kwargs):
        if isinstance(inputs, dict):
            return dict(self.tokenizer(**inputs, **tokenizer_kwargs))
        if isinstance(inputs, list) and len(inputs) == 1 and isinstance(inputs[0], list) and len(inputs[0]) == 2:
            return dict(self.tokenizer(text=inputs[0][0], text_pair=inputs[0][1], **tokenizer_kwargs))
        if isinstance(inputs, list):
            raise ValueError(
                "The pipeline received invalid inputs, if you are trying to send text pairs, you can try to send a"
                ' dictionary `{"text": "My text", "text_pair": "My pair"}` in order to send a text pair.')
        return dict(self.tokenizer(inputs, **tokenizer_kwargs))

    def default_function(self) -> str:
        config = self.model.config
        if config.problem_type == "regression":
            return "none"
        if config.problem_type == "multi_label_classification" or config.num_labels == 1:
            return "sigmoid"
        if config.problem_type == "single_label_classification" or config.num_labels > 1:
            return "softmax"
        return str(getattr(config, "function_to_apply", "none")).lower()

    def postprocess(self, outputs, function_to_apply=None, top_k=1, _legacy=True):
        function = function_to_apply or self.default_function()
        logits = outputs["logits"]
        scores = {"sigmoid": _sigmoid, "softmax": _softmax, "none": lambda x: x}[function](logits)
        id2label = self.model.config.id2label
        if top_k == 1 and _legacy:
            return {"label": id2label[int(scores.argmax())], "score": float(scores.max())}
        ranked = [{"label": id2label[i], "score": float(s)} for i, s in enumerate(scores)]
        if not _legacy:
            ranked.sort(key=lambda x: x["score"], reverse=True)
            if top_k is not None:
                ranked = ranked[:top_k]
        return ranked
