"""transformers' token-classification post-processing on numpy: tokens -> pre-entities (word,
scores, character span, sub-word flag) -> entities per ``aggregation_strategy`` -> B-/I- groups."""

from __future__ import annotations

import warnings

import numpy as np

STRATEGIES = ("none", "simple", "first", "average", "max")
WORD_STRATEGIES = ("first", "average", "max")


class Aggregator:
    def __init__(self, tokenizer, id2label: dict):
        self.tokenizer, self.id2label = tokenizer, id2label

    def _has_subword_prefix(self) -> bool:
        backend = getattr(self.tokenizer, "_tokenizer", None)
        return bool(backend and getattr(backend.model, "continuing_subword_prefix", None))

    def pre_entities(self, sentence, input_ids, scores, offsets, special_tokens_mask, strategy,
                     word_ids=None, word_spans=None) -> list[dict]:
        out = []
        for idx, token_scores in enumerate(scores):
            if special_tokens_mask[idx]:
                continue
            token_id = int(input_ids[idx])
            word = self.tokenizer.convert_ids_to_tokens(token_id)
            start = end = None
            is_subword = False
            if offsets is not None:
                start, end = (int(x) for x in offsets[idx])
                if word_ids is not None and word_spans is not None and word_ids[idx] is not None:
                    shift = word_spans[word_ids[idx]][0]  # offsets are within the word: move to the sentence
                    start, end = start + shift, end + shift
                word_ref = sentence[start:end]
                if self._has_subword_prefix():  # WordPiece "##": a sub-word's token is longer than its text
                    is_subword = len(word) != len(word_ref)
                else:
                    if strategy in WORD_STRATEGIES:
                        warnings.warn("Tokenizer does not support real words, using fallback heuristic", UserWarning)
                    is_subword = start > 0 and " " not in sentence[start - 1:start + 1]
                if token_id == self.tokenizer.unk_token_id:
                    word, is_subword = word_ref, False
            out.append({"word": word, "scores": token_scores, "start": start, "end": end, "index": idx,
                        "is_subword": is_subword})
        return out

    def aggregate(self, pre: list[dict], strategy: str) -> list[dict]:
        if strategy in ("none", "simple"):
            entities = []
            for p in pre:
                best = p["scores"].argmax()
                entities.append({"entity": self.id2label[best], "score": p["scores"][best], "index": p["index"],
                                 "word": p["word"], "start": p["start"], "end": p["end"]})
        else:
            entities = self._words(pre, strategy)
        return entities if strategy == "none" else self._groups(entities)

    def _word(self, tokens: list[dict], strategy: str) -> dict:
        word = self.tokenizer.convert_tokens_to_string([t["word"] for t in tokens])
        if strategy == "first":
            scores = tokens[0]["scores"]
        elif strategy == "max":
            scores = max(tokens, key=lambda t: t["scores"].max())["scores"]
        elif strategy == "average":
            scores = np.nanmean(np.stack([t["scores"] for t in tokens]), axis=0)
        else:
            raise ValueError("Invalid aggregation_strategy")
        best = scores.argmax()
        return {"entity": self.id2label[best], "score": scores[best], "word": word,
                "start": tokens[0]["start"], "end": tokens[-1]["end"]}

    def _words(self, pre: list[dict], strategy: str) -> list[dict]:
        """One entity per word: a token not marked as a sub-word starts a new word."""
        words, group = [], None
        for p in pre:
            if group is None:
                group = [p]
            elif p["is_subword"]:
                group.append(p)
            else:
                words.append(self._word(group, strategy))
                group = [p]
        if group is not None:
            words.append(self._word(group, strategy))
        return words

    def _group(self, entities: list[dict]) -> dict:
        score = np.nanmean([e["score"] for e in entities])
        return {"entity_group": entities[0]["entity"].split("-", 1)[-1], "score": np.mean(score),
                "word": self.tokenizer.convert_tokens_to_string([e["word"] for e in entities]),
                "start": entities[0]["start"], "end": entities[-1]["end"]}

    def _groups(self, entities: list[dict]) -> list[dict]:
        """Adjacent entities of one tag grouped; a B- tag always starts a group."""
        groups, current = [], []
        for entity in entities:
            if current:
                bi, tag = _tag(entity["entity"])
                _, last_tag = _tag(current[-1]["entity"])
                if not (tag == last_tag and bi != "B"):
                    groups.append(self._group(current))
                    current = []
            current.append(entity)
        if current:
            groups.append(self._group(current))
        return groups


def _tag(name: str) -> tuple[str, str]:
    if name.startswith("B-"):
        return "B", name[2:]
    if name.startswith("I-"):
        return "I", name[2:]
    return "I", name  # not in B-/I- form: a continuation


def resolve_overlaps(entities: list[dict]) -> list[dict]:
    """Entities from overlapping chunks (``stride``): of two that overlap, the longer one (then the
    higher score) is kept."""
    if not entities:
        return entities
    entities = sorted(entities, key=lambda e: e["start"])
    kept, previous = [], entities[0]
    for entity in entities:
        if previous["start"] <= entity["start"] < previous["end"]:
            length, previous_length = entity["end"] - entity["start"], previous["end"] - previous["start"]
            if length > previous_length or (length == previous_length and entity["score"] > previous["score"]):
                previous = entity
        else:
            kept.append(previous)
            previous = entity
    kept.append(previous)
    return kept
