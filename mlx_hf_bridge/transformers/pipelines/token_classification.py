"""``pipeline("token-classification")`` (alias ``"ner"``): transformers' ``TokenClassificationPipeline``
outputs on the bridge's token-classification models.

    >>> ner = pipeline("ner", model=folder, aggregation_strategy="simple")   # doctest: +SKIP
    >>> ner("My name is Wolfgang and I live in Berlin")                       # doctest: +SKIP
    [{'entity_group': 'PER', 'score': 0.99, 'word': 'wolfgang', 'start': 11, 'end': 19}, ...]

transformers' rules, kept: special tokens skipped; ``aggregation_strategy`` "none" (one entry per
token, with ``index``), "simple" (adjacent tokens of one entity grouped, B-/I- tags), "first" /
"average" / "max" (sub-words forced to agree per word, then grouped; fast tokenizers only);
``ignore_labels`` (default ``["O"]``); ``start`` / ``end`` from the offsets; ``is_split_into_words``
with ``delimiter``; ``stride`` (long texts in overlapping chunks, overlapping entities resolved as
transformers does). The word aggregation lives in ``token_aggregation.py``.
"""

from __future__ import annotations

from .base import Pipeline
from .text_classification import _softmax
from .token_aggregation import STRATEGIES, WORD_STRATEGIES, Aggregator, resolve_overlaps


class TokenClassificationPipeline(Pipeline):
    task = "token-classification"
    per_token = True
    chunked = True

    def _sanitize_parameters(self, ignore_labels=None, aggregation_strategy=None, offset_mapping=None,
                             is_split_into_words: bool = False, stride: int | None = None, delimiter=None):
        pre = {"is_split_into_words": is_split_into_words}
        if is_split_into_words:
            pre["delimiter"] = " " if delimiter is None else delimiter
        if offset_mapping is not None:
            pre["offset_mapping"] = offset_mapping
        post = {}
        strategy = None
        if aggregation_strategy is not None:
            strategy = str(getattr(aggregation_strategy, "value", aggregation_strategy)).lower()
            if strategy not in STRATEGIES:
                raise ValueError(f"aggregation_strategy={aggregation_strategy!r} is not one of {', '.join(STRATEGIES)}.")
            if strategy in WORD_STRATEGIES and not self.tokenizer.is_fast:
                raise ValueError("Slow tokenizers cannot handle subwords. Please set the `aggregation_strategy` option"
                                 ' to `"simple"` or use a fast tokenizer.')
            post["aggregation_strategy"] = strategy
        if ignore_labels is not None:
            post["ignore_labels"] = ignore_labels
        if stride is not None:
            if stride >= self.tokenizer.model_max_length:
                raise ValueError("`stride` must be less than `tokenizer.model_max_length` (or even lower if the "
                                 "tokenizer adds special tokens)")
            if strategy == "none":
                raise ValueError("`stride` was provided to process all the text but `aggregation_strategy="
                                 f'"{aggregation_strategy}"`, please select another one instead.')
            if not self.tokenizer.is_fast:
                raise ValueError("`stride` was provided to process all the text but you're using a slow tokenizer."
                                 " Please use a fast tokenizer.")
            pre["tokenizer_params"] = {"return_overflowing_tokens": True, "padding": True, "stride": stride}
        return pre, {}, post

    def __call__(self, inputs, **kwargs):
        if inputs is None or (isinstance(inputs, (list, tuple)) and len(inputs) == 0):
            raise ValueError("At least one input is required.")
        offsets = kwargs.get("offset_mapping")
        if offsets:
            batch = len(inputs) if isinstance(inputs, (list, tuple)) else 1
            if isinstance(offsets, list) and isinstance(offsets[0], tuple):
                offsets = [offsets]
            if len(offsets) != batch:
                raise ValueError("offset_mapping should have the same batch size as the input")
            kwargs["offset_mapping"] = offsets
        split = kwargs.get("is_split_into_words", False)
        if isinstance(inputs, tuple):
            inputs = list(inputs)
        if split and not all(isinstance(x, list) for x in inputs):
            return super().__call__([inputs], **kwargs)  # one pre-split sentence
        return super().__call__(inputs, **kwargs)

    def preprocess(self, sentence, offset_mapping=None, is_split_into_words=False, delimiter=None,
                   tokenizer_params=None):
        params = dict(tokenizer_params or {})
        word_spans = None
        if is_split_into_words:
            if not isinstance(sentence, list):
                raise ValueError("When `is_split_into_words=True`, `sentence` must be a list of tokens.")
            if not self.tokenizer.is_fast:
                raise ValueError("is_split_into_words=True is only supported with fast tokenizers.")
            words, word_spans, start = sentence, [], 0
            for word in words:  # each word's characters in the sentence re-joined by the delimiter
                word_spans.append((start, start + len(word)))
                start += len(word) + len(delimiter)
            sentence = delimiter.join(words)
            text, params["is_split_into_words"] = words, True
        else:
            if not isinstance(sentence, str):
                raise ValueError("When `is_split_into_words=False`, `sentence` must be an untokenized string.")
            text = sentence
        truncation = bool(self.tokenizer.model_max_length and self.tokenizer.model_max_length > 0)
        encoded = self.tokenizer(text, truncation=truncation, return_special_tokens_mask=True,
                                 return_offsets_mapping=self.tokenizer.is_fast, **params)
        encoded.pop("overflow_to_sample_mapping", None)
        chunked = len(encoded["input_ids"]) > 0 and isinstance(encoded["input_ids"][0], list)
        rows = len(encoded["input_ids"]) if chunked else 1
        for i in range(rows):
            item = {k: (v[i] if chunked else v) for k, v in encoded.items()}
            # transformers reads offset_mapping[0]: its own offsets carry a batch axis of 1, and a user's
            # offset_mapping is the list given (for several texts, the first text's offsets serve them all)
            if "offset_mapping" in item:
                item["offset_mapping"] = [item["offset_mapping"]]
            if offset_mapping is not None:
                item["offset_mapping"] = offset_mapping
            item["sentence"] = sentence if i == 0 else None
            if word_spans is not None:
                item["word_ids"] = encoded.word_ids(i)
                item["word_to_chars_map"] = word_spans
            yield item

    def postprocess(self, chunks, aggregation_strategy="none", ignore_labels=None):
        ignore_labels = ["O"] if ignore_labels is None else ignore_labels
        aggregator = Aggregator(self.tokenizer, self.model.config.id2label)
        sentence = chunks[0]["sentence"]
        word_spans = chunks[0].get("word_to_chars_map")
        entities = []
        for chunk in chunks:
            scores = _softmax(chunk["logits"])
            offsets = chunk.get("offset_mapping")
            pre = aggregator.pre_entities(sentence, chunk["input_ids"], scores, offsets and offsets[0],
                                          chunk["special_tokens_mask"], aggregation_strategy,
                                          chunk.get("word_ids"), word_spans)
            for entity in aggregator.aggregate(pre, aggregation_strategy):
                if entity.get("entity") not in ignore_labels and entity.get("entity_group") not in ignore_labels:
                    entities.append(entity)
        return resolve_overlaps(entities) if len(chunks) > 1 else entities


NerPipeline = TokenClassificationPipeline
