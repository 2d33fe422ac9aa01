"""sentence-transformers 6.2's multi-vector evaluators (``sentence_transformers.multi_vector_encoder.evaluation``)
on MLX: the dense IR / NanoBEIR / triplet / reranking evaluators, scored with the model's MaxSim
(``colbert.scores.maxsim``) on ragged per-token embeddings, queries through ``encode_query`` and
documents through ``encode_document``. These classes exist only in ST 6, so they always follow ST
6.2's semantics (IR ties by ascending corpus id...), whichever sentence-transformers is installed.
"""

from __future__ import annotations

import logging
from functools import partial

import mlx.core as mx
import numpy as np

from ..dense.similarity import SimilarityFunction
from .base import append_csv_row, as_numpy, encode_fn, epoch_text
from .information_retrieval import InformationRetrievalEvaluator
from .nano_beir import NanoBEIREvaluator
from .reranking import RerankingEvaluator
from .triplet import TripletEvaluator

logger = logging.getLogger(__name__)

SUPPORTED_SIMILARITY_FN_NAMES = ("maxsim", "meanmaxsim")  # MultiVectorEncoder.SUPPORTED_SIMILARITY_FN_NAMES
_warned: set[str] = set()


def _refuse_truncate_dim(truncate_dim) -> None:
    if truncate_dim is not None:
        raise ValueError(
            "truncate_dim is not supported by MultiVectorEncoder evaluators: multi-vector token "
            "embeddings have no Matryoshka-style truncation. Remove truncate_dim to evaluate at "
            "the full dimension."
        )


def _refuse_xtr(score_functions: dict) -> None:
    from ..colbert.xtr import XTRScores, xtr_scores

    for name, fn in score_functions.items():
        target = fn.func if isinstance(fn, partial) else fn
        if target is xtr_scores or isinstance(target, XTRScores):
            raise ValueError(
                f"score_functions[{name!r}] uses XTR scoring, which is incompatible with this "
                "evaluator's per-chunk corpus scoring (top-k would be per-chunk). Use MaxSim instead."
            )


def _warning_once(message: str) -> None:
    # ST logs through transformers' warning_once
    if message not in _warned:
        _warned.add(message)
        logger.warning(message)


def _pad_queries(embeddings) -> mx.array:
    """ST's ``pad_sequence(batch_first=True)`` of the query token matrices: maxsim then masks the
    all-zero rows, as in ST."""
    width = max((int(e.shape[0]) for e in embeddings), default=0)
    return mx.stack([mx.pad(e, [(0, width - int(e.shape[0])), (0, 0)]) for e in embeddings])


class MultiVectorInformationRetrievalEvaluator(InformationRetrievalEvaluator):
    """``InformationRetrievalEvaluator`` for a ``MultiVectorEncoder``: the corpus scored per chunk of
    ``corpus_chunk_size`` (default 5000) with the model's ``similarity_fn_name`` (resolved on every
    call) or ``score_functions``. ``chunk_elements`` is ST's memory budget for MaxSim's 4D
    intermediate; it is accepted (and refused beside ``score_functions``, as ST does), and does not
    change a score: the bridge's maxsim scores each corpus chunk at once. XTR scoring in
    ``score_functions`` is refused, as ST does (its top-k would be taken per corpus chunk).
    ``truncate_dim`` is refused.
    """

    def __init__(self, queries: dict[str, str], corpus: dict[str, str], relevant_docs: dict[str, set[str]], *,
                 corpus_chunk_size: int = 5000, chunk_elements: int | None = None, score_functions: dict | None = None,
                 **kwargs) -> None:
        _refuse_truncate_dim(kwargs.get("truncate_dim"))
        if score_functions is not None and chunk_elements is not None:
            raise ValueError(
                "chunk_elements only configures the default model-resolved scoring, so it "
                "would be silently ignored alongside score_functions. Bind the budget into your own "
                "callable instead, e.g. functools.partial(maxsim, chunk_elements=...)."
            )
        if score_functions is not None:
            _refuse_xtr(score_functions)
        self.chunk_elements = chunk_elements
        super().__init__(queries=queries, corpus=corpus, relevant_docs=relevant_docs,
                         corpus_chunk_size=corpus_chunk_size, score_functions=score_functions, **kwargs)
        self._st6 = True

    def __call__(self, model, output_path: str | None = None, epoch: int = -1, steps: int = -1, *args, **kwargs):
        for explicit_prompt, param_name, role_keys in (
            (self.query_prompt, "query_prompt", ("query",)),
            (self.corpus_prompt, "corpus_prompt", ("document", "passage", "corpus")),
        ):
            if explicit_prompt is None:
                continue
            # the prompt encode_query / encode_document would have used
            role = next((key for key in role_keys if key in model.prompts), None)
            registered = model.prompts.get(role) if role is not None else None
            if registered and not explicit_prompt.startswith(registered):
                _warning_once(
                    f"The explicit {param_name} replaces the model's registered {role!r} prompt "
                    f"({registered!r}) rather than composing with it. Include the model's "
                    f"marker prompt in {param_name} if the trained prompt should be kept."
                )
        return super().__call__(model, output_path, epoch, steps, *args, **kwargs)

    def _model_score_functions(self, model) -> dict:
        scoring_fn = SimilarityFunction.to_similarity_fn(model.similarity_fn_name)
        if self.chunk_elements is not None:
            scoring_fn = partial(scoring_fn, chunk_elements=self.chunk_elements)
        return {model.similarity_fn_name: scoring_fn}

    def embed_inputs(self, model, sentences, encode_fn_name: str | None = None, prompt_name: str | None = None,
                     prompt: str | None = None, **kwargs):
        kwargs.pop("truncate_dim", None)
        embeddings = encode_fn(model, encode_fn_name)(
            sentences, prompt_name=prompt_name, prompt=prompt, batch_size=self.batch_size,
            show_progress_bar=self.show_progress_bar, **kwargs,
        )
        return _pad_queries(embeddings) if encode_fn_name == "query" else embeddings


class MultiVectorNanoBEIREvaluator(NanoBEIREvaluator):
    """``NanoBEIREvaluator`` running a :class:`MultiVectorInformationRetrievalEvaluator` per NanoBEIR
    dataset (``corpus_chunk_size`` default 5000, ``chunk_elements`` passed on); ``truncate_dim`` refused."""

    information_retrieval_class = MultiVectorInformationRetrievalEvaluator

    def __init__(self, *args, corpus_chunk_size: int = 5000, chunk_elements: int | None = None, **kwargs) -> None:
        _refuse_truncate_dim(kwargs.get("truncate_dim"))
        # read by _load_dataset, which the base initializer calls
        self._ir_extra_kwargs = {"corpus_chunk_size": corpus_chunk_size, "chunk_elements": chunk_elements}
        super().__init__(*args, **kwargs)
        self._st6 = True

    def _load_dataset(self, dataset_name: str, **ir_evaluator_kwargs):
        return super()._load_dataset(dataset_name, **{**ir_evaluator_kwargs, **self._ir_extra_kwargs})


class MultiVectorTripletEvaluator(TripletEvaluator):
    """Accuracy of ``MaxSim(anchor, positive) > MaxSim(anchor, negative) + margin``: anchors through
    ``encode_query``, positives / negatives through ``encode_document``, scored pairwise with each of
    ``similarity_fn_names`` (``maxsim`` / ``meanmaxsim``; default: the model's). A ``margin`` dict is
    keyed by those names. Keys, primary metric and the CSV are the dense evaluator's
    (``{name}_maxsim_accuracy``, ``triplet_evaluation[_{name}]_results.csv``). ``truncate_dim`` refused.
    """

    always_st6 = True

    def __init__(self, anchors: list[str], positives: list[str], negatives: list[str],
                 main_similarity_function: str | SimilarityFunction | None = None,
                 margin: float | dict[str, float] | None = None, name: str = "", batch_size: int = 16,
                 show_progress_bar: bool = False, write_csv: bool = True, truncate_dim: int | None = None,
                 similarity_fn_names: list[str] | None = None,
                 main_distance_function: str | SimilarityFunction | None = "deprecated") -> None:
        _refuse_truncate_dim(truncate_dim)
        super().__init__(anchors, positives, negatives, main_similarity_function=main_similarity_function,
                         margin=margin, name=name, batch_size=batch_size, show_progress_bar=show_progress_bar,
                         write_csv=write_csv, similarity_fn_names=similarity_fn_names,
                         main_distance_function=main_distance_function)

    def _get_similarity_functions(self) -> dict:
        functions = {}
        for fn_name in SUPPORTED_SIMILARITY_FN_NAMES:
            pairwise = SimilarityFunction.to_similarity_pairwise_fn(fn_name)
            functions[fn_name] = lambda a, p, n, pairwise=pairwise: (pairwise(a, p), pairwise(a, n))
        return functions

    def embed_inputs(self, model, sentences, encode_fn_name: str | None = None, **kwargs):
        kwargs.pop("truncate_dim", None)
        return encode_fn(model, encode_fn_name)(
            sentences, batch_size=self.batch_size, show_progress_bar=self.show_progress_bar, **kwargs
        )


class MultiVectorRerankingEvaluator(RerankingEvaluator):
    """``RerankingEvaluator`` for a ``MultiVectorEncoder``: each query's candidates scored with the
    model's ``similarity`` (MaxSim; resolved on every call) unless ``similarity_fct`` is given, queries
    through ``encode_query``, documents through ``encode_document``. MAP, MRR@k, nDCG@k, keys and CSV
    as the dense evaluator."""

    def __init__(self, samples: list[dict], *, at_k: int = 10, name: str = "", write_csv: bool = True,
                 similarity_fct=None, batch_size: int = 16, show_progress_bar: bool = False,
                 use_batched_encoding: bool = True) -> None:
        self._user_similarity_fct = similarity_fct
        if isinstance(samples, dict):
            samples = list(samples.values())
        # ST 6.2 takes a lone string as one document (the dense base does so only under ST 6)
        samples = [
            {**s, **{k: [s[k]] for k in ("positive", "negative") if isinstance(s.get(k), str)}}
            if isinstance(s, dict) else s
            for s in samples
        ]
        super().__init__(samples=samples, at_k=at_k, name=name, write_csv=write_csv, similarity_fct=similarity_fct,
                         batch_size=batch_size, show_progress_bar=show_progress_bar,
                         use_batched_encoding=use_batched_encoding)

    def __call__(self, model, *args, **kwargs) -> dict[str, float]:
        if self._user_similarity_fct is None:
            # the query comes as one token matrix (batched) or a one-item list (per sample)
            def one_to_many(query_embeddings, document_embeddings):
                queries = query_embeddings if isinstance(query_embeddings, list) else [query_embeddings]
                return model.similarity(queries, document_embeddings)

            self.similarity_fct = one_to_many
        return super().__call__(model, *args, **kwargs)

    def embed_inputs(self, model, sentences, encode_fn_name: str | None = None, show_progress_bar: bool | None = None,
                     **kwargs):
        kwargs.pop("truncate_dim", None)
        return encode_fn(model, encode_fn_name)(
            sentences, batch_size=self.batch_size, show_progress_bar=show_progress_bar, **kwargs
        )
