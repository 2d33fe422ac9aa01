"""What the in-batch-negatives losses share: input checks, gathering, and the two losses' math
written once for a block of anchor rows — MultipleNegativesRankingLoss (ST 6.2's ``directions`` /
``partition_mode`` / ``hardness_mode``) and GISTEmbedLoss — so the uncached loss (one block: the
whole batch) and its GradCache twin (blocks of ``mini_batch_size`` rows) compute the same thing.
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np

from ..colbert import distributed
from ..colbert.loss_common import cross_entropy

DIRECTIONS = ("query_to_doc", "query_to_query", "doc_to_query", "doc_to_doc")
HARDNESS_MODES = (None, "in_batch_negatives", "hard_negatives", "all_negatives")


# --- input checks ---------------------------------------------------------------------------------
def check_columns(loss, sentence_features, low: int, high: int | None, roles: str) -> None:
    """A wrong number of text columns, or columns of different lengths, name the fix (before any forward)."""
    n = len(sentence_features)
    if n < low or (high is not None and n > high):
        want = f"{low}" if high == low else f"at least {low}" if high is None else f"{low} to {high}"
        raise ValueError(
            f"{type(loss).__name__} expects {want} text columns ({roles}), got {n}. Columns are used by "
            "position: select / reorder them with dataset.select_columns([...])."
        )
    # a StaticEmbedding's input_ids are one flat run of tokens: its offsets count the texts
    rows = [int((f["offsets"] if "offsets" in f else next(v for v in f.values() if hasattr(v, "shape"))).shape[0])
            for f in sentence_features]
    if any(r != rows[0] for r in rows[1:]):
        raise ValueError(
            f"{type(loss).__name__}: the text columns have {rows} rows; every column needs one text per "
            "example (the same number of rows)."
        )


def check_no_labels(loss, labels, where: str = "batch") -> None:
    """These losses take no labels (the positives are the pairs themselves). ST ignores a label column
    silently; the bridge refuses it, since such a column usually means another loss was intended."""
    if labels is None:
        return
    values = labels if isinstance(labels, mx.array) else np.asarray(labels)
    if values.size == 0:
        return
    kind = str(values.dtype).replace("mlx.core.", "")
    raise ValueError(
        f"{type(loss).__name__} takes no labels, but the {where} has a label column ({kind} values, e.g. "
        f"{np.asarray(values).reshape(-1)[:2].tolist()}): its positives are the (anchor, positive) pairs. "
        "Remove the column (dataset.remove_columns('label')) or use a loss that reads scores / classes "
        "(CoSENTLoss, CosineSimilarityLoss, ContrastiveLoss, SoftmaxLoss)."
    )


def check_mnrl_options(scale, directions, partition_mode, hardness_mode, hardness_strength, warn) -> tuple:
    """ST 6.2's constructor checks for MultipleNegativesRankingLoss, with its messages."""
    if not scale > 0:
        raise ValueError("Scale must be a positive value.")
    valid = set(DIRECTIONS)
    if not directions:
        raise ValueError("At least one direction must be specified.")
    if not set(directions).issubset(valid):
        raise ValueError(f"Invalid directions: {set(directions) - valid}. Valid: {valid}")
    if "query_to_doc" not in directions:
        raise ValueError("'query_to_doc' direction is required (contains the positive pair).")
    if partition_mode not in ("joint", "per_direction"):
        raise ValueError(f"partition_mode must be 'joint' or 'per_direction', got {partition_mode}")
    if partition_mode == "per_direction" and set(directions) & {"query_to_query", "doc_to_doc"}:
        raise ValueError(
            "partition_mode='per_direction' requires every direction's candidate pool to include the positive pair. "
            "'query_to_query' and 'doc_to_doc' only contain same-type similarities and never include the positive, "
            "making the per-direction loss ill-defined. Use partition_mode='joint' instead."
        )
    if hardness_mode not in HARDNESS_MODES:
        raise ValueError(f"hardness_mode must be one of {set(HARDNESS_MODES)}, got {hardness_mode!r}")
    if hardness_strength < 0.0:
        raise ValueError("hardness_strength must be non-negative.")
    if hardness_mode is not None and hardness_strength == 0.0:
        warn(
            f"hardness_mode={hardness_mode!r} is set but hardness_strength=0.0, so hardness weighting has no "
            "effect. Set hardness_strength to a positive value to enable hardness weighting."
        )
    return tuple(directions)


# --- the MultipleNegativesRankingLoss pair's shared options ------------------------------------------
class MNRLOptions:
    """The options, label check, config and block loss that MultipleNegativesRankingLoss and its
    GradCache twin share (each keeps its own signature, as ST's two classes do)."""

    def _set_mnrl_options(self, scale, similarity_fct, gather_across_devices, directions, partition_mode,
                          hardness_mode, hardness_strength, warn) -> None:
        self.directions = check_mnrl_options(scale, directions, partition_mode, hardness_mode, hardness_strength, warn)
        self.scale = scale
        self.similarity_fct = similarity_fct
        self.gather_across_devices = gather_across_devices
        self.partition_mode = partition_mode
        self.hardness_mode = hardness_mode
        self.hardness_strength = hardness_strength

    def check_labels(self, labels, where: str = "batch") -> None:
        check_no_labels(self, labels, where)

    def mnrl_loss(self, columns, begin: int, end: int) -> mx.array:
        """The mean loss's share of anchor rows ``[begin, end)`` (the whole batch: the loss itself)."""
        batch_size = columns[0].shape[0]
        queries, offset = gather(columns[0], self.gather_across_devices)
        docs = [gather(d, self.gather_across_devices)[0] for d in columns[1:]]
        return mnrl_block(self, queries, docs, begin, end, offset) / batch_size

    def mnrl_config(self, similarity_fct_name, **between) -> dict:
        """ST's ``get_config_dict`` order: scale, similarity_fct, ``between`` (the cached loss's
        mini-batch keys), then the rest."""
        return {
            "scale": self.scale,
            "similarity_fct": similarity_fct_name(self.similarity_fct),
            **between,
            "gather_across_devices": self.gather_across_devices,
            "directions": self.directions,
            "partition_mode": self.partition_mode,
            "hardness_mode": self.hardness_mode,
            "hardness_strength": self.hardness_strength,
        }

    @property
    def temperature(self) -> float:
        return 1.0 / self.scale


# --- gathering -----------------------------------------------------------------------------------------
def gather(embeddings: mx.array, enabled: bool) -> tuple[mx.array, int]:
    """``(all ranks' rows, this rank's row offset)``; gradients flow back to each rank's rows (ST's
    ``all_gather_with_grad``). Without a distributed group: the input, offset 0, and ST's one warning."""
    if not enabled:
        return embeddings, 0
    world = distributed.group()
    if world is None:
        distributed._warn_once()
        return embeddings, 0
    return distributed.gather_with_gradients(embeddings, world), world.rank() * embeddings.shape[0]


# --- MultipleNegativesRankingLoss for anchor rows [begin, end) -----------------------------------------
def mnrl_block(loss, queries, docs, begin: int, end: int, offset: int = 0) -> mx.array:
    """Summed per-anchor losses of local anchors ``begin:end`` (ST 6.2's ``compute_loss_from_embeddings``
    / cached ``calculate_loss`` for one block). ``queries`` / ``docs[i]``: every rank's rows; the local
    rows start at ``offset``."""
    world_rows, n_docs = queries.shape[0], len(docs)
    local = mx.arange(offset + begin, offset + end)
    local_queries, local_docs = queries[offset + begin : offset + end], docs[0][offset + begin : offset + end]
    docs_all = mx.concatenate(docs, axis=0)
    own = mx.arange(world_rows)[None, :] == local[:, None]  # (rows, world_rows): each row's own column
    own_docs = mx.tile(own, (1, n_docs))
    sim = loss.similarity_fct
    sims = {"query_to_doc": sim(local_queries, docs_all)}
    if "query_to_query" in loss.directions:  # without q_i -> q_i
        sims["query_to_query"] = mx.where(own, -mx.inf, sim(local_queries, queries))
    if "doc_to_query" in loss.directions:
        sims["doc_to_query"] = sim(queries, local_docs).T
    if "doc_to_doc" in loss.directions:  # without the documents of the same query
        sims["doc_to_doc"] = mx.where(own_docs, -mx.inf, sim(docs_all, local_docs).T)
    penalty = None
    if loss.hardness_mode is not None and loss.hardness_strength > 0.0:
        # on the raw similarities, not temperature-scaled (Lan et al. 2025, Eq. 5)
        penalty = loss.hardness_strength * mx.stop_gradient(sims["query_to_doc"])
        hard = mx.arange(world_rows * n_docs)[None, :] >= world_rows  # explicit negative columns
        keep = {"hard_negatives": own_docs & hard, "in_batch_negatives": ~own_docs,
                "all_negatives": ~(own_docs & ~hard)}[loss.hardness_mode]
        penalty = mx.where(keep, penalty, 0.0)
    sims = {key: value * loss.scale for key, value in sims.items()}
    if penalty is not None:
        sims["query_to_doc"] = sims["query_to_doc"] + penalty
    positive = mx.take_along_axis(sims["query_to_doc"], local[:, None], axis=1)[:, 0]
    if loss.partition_mode == "joint":
        log_z = mx.logsumexp(mx.concatenate(list(sims.values()), axis=1), axis=1)
    else:
        log_z = sum(mx.logsumexp(s, axis=1) for s in sims.values()) / len(sims)
    return (log_z - positive).sum()


# --- GISTEmbedLoss for anchor rows [begin, end) ----------------------------------------------------------
def gist_block(loss, anchors, candidates, anchors_guide, candidates_guide, begin: int, end: int,
               offset: int = 0) -> mx.array:
    """Summed cross-entropy of local anchors ``begin:end`` (ST 6.2's GISTEmbedLoss / CachedGISTEmbedLoss
    block). Candidates hold every rank's rows; anchors are local. A candidate the guide scores above the
    anchor's own positive (``margin_strategy``) is a presumed false negative: masked to -inf."""
    from ..dense.similarity import cos_sim

    local_anchors, local_guide = anchors[begin:end], anchors_guide[begin:end]
    positives, positives_guide = candidates[0], candidates_guide[0]
    rows = end - begin
    guided_ap = cos_sim(local_guide, positives_guide)
    local = mx.arange(offset + begin, offset + end)
    guided_sim = mx.take_along_axis(guided_ap, local[:, None], axis=1)  # (rows, 1)
    if loss.margin_strategy == "absolute":
        threshold = guided_sim - loss.margin
    else:  # ST 6.2; ST 5.3 wrote guided_sim * (1 - margin), equal unless the guide's positive score is < 0
        threshold = guided_sim - mx.abs(guided_sim) * loss.margin

    def masked(guided, scores, keep=None):
        mask = guided > threshold
        if keep is not None:
            mask = mask & ~keep
        return mx.where(mask, -mx.inf, scores)

    positive_mask = mx.arange(positives.shape[0])[None, :] == local[:, None]
    scores = [masked(guided_ap, cos_sim(local_anchors, positives), positive_mask)]
    if loss.contrast_anchors:
        scores.append(masked(cos_sim(local_guide, anchors_guide), cos_sim(local_anchors, anchors)))
    if loss.contrast_positives:
        own = slice(offset + begin, offset + begin + rows)
        scores.append(masked(cos_sim(positives_guide[own], positives_guide), cos_sim(positives[own], positives)))
    for negative, negative_guide in zip(candidates[1:], candidates_guide[1:]):
        scores.append(masked(cos_sim(local_guide, negative_guide), cos_sim(local_anchors, negative)))
    logits = mx.concatenate(scores, axis=1) / loss.temperature
    return cross_entropy(logits, local, "sum")
