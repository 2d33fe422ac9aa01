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
    change a score: the bridge's maxsim scores each corpus chunk at once. XTR scoring does not exist
    on MLX. ``truncate_dim`` is refused.
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

    def __init__(self, anchors: list[str], positives: list[str], negatives: list[str],
                 main_similarity_function: str | SimilarityFunction | None = None,
                 margin: float | dict[str, float] | None = None, name: str = "", batch_size: int = 16,
                 show_progress_bar: bool = False, write_csv: bool = True, truncate_dim: int | None = None,
                 similarity_fn_names: list[str] | None = None,
                 main_distance_function: str | SimilarityFunction | None = "deprecated") -> None:
        _refuse_truncate_dim(truncate_dim)
        # the dense base checks names and margins against the dense functions: set ours after it
        super().__init__(anchors, positives, negatives, name=name, batch_size=batch_size,
                         show_progress_bar=show_progress_bar, write_csv=write_csv)
        self._st6 = True
        if main_distance_function != "deprecated" and main_similarity_function is None:
            main_similarity_function = main_distance_function
            logger.warning(
                "The 'main_distance_function' parameter is deprecated. Please use 'main_similarity_function' instead. "
                "'main_distance_function' will be removed in a future release."
            )
        self.main_similarity_function = (
            SimilarityFunction(getattr(main_similarity_function, "value", main_similarity_function))
            if main_similarity_function else None
        )
        self.similarity_fn_names = similarity_fn_names or []
        if not self.similarity_fn_names and self.main_similarity_function is not None:
            self.similarity_fn_names = [self.main_similarity_function.value]
        fn_keys = list(self._get_similarity_functions())
        if unknown_names := sorted(set(self.similarity_fn_names) - set(fn_keys)):
            raise ValueError(
                f"`similarity_fn_names` got unexpected names {unknown_names}, expected names in {fn_keys}."
            )
        if margin is None:
            self.margin = {k: 0 for k in fn_keys}
        elif isinstance(margin, (float, int)):
            self.margin = {k: margin for k in fn_keys}
        elif isinstance(margin, dict):
            if unknown_keys := sorted(set(margin) - set(fn_keys)):
                raise ValueError(f"`margin` got unexpected keys {unknown_keys}, expected keys in {fn_keys}.")
            self.margin = {**{k: 0 for k in fn_keys}, **margin}
        else:
            raise ValueError(f"`margin` should be a float or a dictionary with keys in {fn_keys}.")
        self.csv_headers = ["epoch", "steps"]
        self._append_csv_headers(self.similarity_fn_names)

    def _get_similarity_functions(self) -> dict:
        functions = {}
        for fn_name in SUPPORTED_SIMILARITY_FN_NAMES:
            pairwise = SimilarityFunction.to_similarity_pairwise_fn(fn_name)
            functions[fn_name] = lambda a, p, n, pairwise=pairwise: (pairwise(a, p), pairwise(a, n))
        return functions

    def __call__(self, model, output_path: str | None = None, epoch: int = -1, steps: int = -1) -> dict[str, float]:
        logger.info(f"TripletEvaluator: Evaluating the model on the {self.name} dataset{epoch_text(epoch, steps)}:")
        embeddings_anchors = self.embed_inputs(model, self.anchors, encode_fn_name="query")
        embeddings_positives = self.embed_inputs(model, self.positives, encode_fn_name="document")
        embeddings_negatives = self.embed_inputs(model, self.negatives, encode_fn_name="document")
        if not self.similarity_fn_names:
            self.similarity_fn_names = [model.similarity_fn_name]
            self._append_csv_headers(self.similarity_fn_names)

        similarity_functions = self._get_similarity_functions()
        metrics = {}
        for fn_name in self.similarity_fn_names:
            if fn_name in similarity_functions:
                positive_scores, negative_scores = similarity_functions[fn_name](
                    embeddings_anchors, embeddings_positives, embeddings_negatives
                )
                # ST compares float32 tensors: the margin is added in float32 too
                hits = as_numpy(positive_scores) > as_numpy(negative_scores) + np.float32(self.margin[fn_name])
                accuracy = float(np.float32(hits.astype(np.float32).mean()))
                metrics[f"{fn_name}_accuracy"] = accuracy
                logger.info(f"Accuracy {fn_name.capitalize()} Similarity:\t{accuracy:.2%}")

        if output_path is not None and self.write_csv:
            append_csv_row(output_path, self.csv_file, self.csv_headers, [epoch, steps] + list(metrics.values()))
        if len(self.similarity_fn_names) > 1:
            metrics["max_accuracy"] = max(metrics.values())
        if self.main_similarity_function:
            self.primary_metric = f"{self.main_similarity_function.value}_accuracy"
        elif len(self.similarity_fn_names) > 1:
            self.primary_metric = "max_accuracy"
        else:
            self.primary_metric = f"{self.similarity_fn_names[0]}_accuracy"
        metrics = self.prefix_name_to_metrics(metrics, self.name)
        self.store_metrics_in_model_card_data(model, metrics, epoch, steps)
        return metrics

    def embed_inputs(self, model, sentences, encode_fn_name: str | None = None, **kwargs):
        return encode_fn(model, encode_fn_name)(
            sentences, batch_size=self.batch_size, show_progress_bar=self.show_progress_bar, **kwargs
        )

    def get_config_dict(self):
        config_dict = {}
        if self.margin != {k: 0 for k in self._get_similarity_functions()}:
            config_dict["margin"] = self.margin
        return config_dict


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
