"""Dense evaluators against real sentence-transformers (ST 5.3 in .venv, ST 6.2 in .venv-st6) on a
deterministic stand-in model (same vectors on both sides): metric keys and order, values,
``primary_metric``, encode calls, model-card calls and CSV files (byte-equal where the metrics are
ranks or counts)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from conftest import ST_MAJOR
from test_dense_evaluation_helpers import (
    StandIn,
    assert_csv_dirs_match,
    assert_metrics_match,
    run_pair,
    sentences,
)

TOL = 1e-6


def check(ours, theirs, exact_csv: bool, exact_metrics: bool = False):
    (runs_o, ev_o, out_o, model_o), (runs_t, ev_t, out_t, model_t) = ours, theirs
    for r_o, r_t in zip(runs_o, runs_t):
        assert_metrics_match(r_o, r_t, TOL, exact=exact_metrics)
    assert ev_o.primary_metric == ev_t.primary_metric
    # (ST 5.3's TripletEvaluator can name a metric it did not compute: reproduced)
    assert (ev_o.primary_metric in runs_o[0]) == (ev_t.primary_metric in runs_t[0])
    assert ev_o.csv_headers == ev_t.csv_headers
    config_o, config_t = ev_o.get_config_dict(), ev_t.get_config_dict()
    if callable(config_t.get("add_transitive_closure")):  # ST 5.3 stores its static method there: so do we
        assert config_o.pop("add_transitive_closure").__name__ == config_t.pop("add_transitive_closure").__name__
    assert config_o == config_t
    assert ev_o.description == ev_t.description
    assert [c[0] for c in model_o.calls] == [c[0] for c in model_t.calls]  # encode / query / document order
    assert [c[1:] for c in model_o.calls] == [c[1:] for c in model_t.calls]  # sizes, prompts, truncate_dim
    assert [(c[0], c[2], c[3]) for c in model_o.model_card_data.calls] == [
        (c[0], c[2], c[3]) for c in model_t.model_card_data.calls
    ]
    assert_csv_dirs_match(out_o, out_t, TOL, exact=exact_csv)


@pytest.fixture(scope="module")
def ir_data():
    rng = random.Random(5)
    corpus = {f"doc{i}": s for i, s in enumerate(sentences(1, 40))}
    queries = {f"q{i}": s for i, s in enumerate(sentences(2, 12, 1, 5))}
    relevant = {f"q{i}": set(rng.sample(sorted(corpus), rng.randint(1, 4))) for i in range(11)}  # q11: no qrels
    relevant["q10"] = set()
    return queries, corpus, relevant


@pytest.mark.parametrize("variant", ["default", "named-chunked-prompts", "two-score-fns", "truncate-dot"])
def test_information_retrieval(tmp_path, ir_data, variant):
    queries, corpus, relevant = ir_data
    kwargs, model_kwargs = {}, {}
    if variant == "named-chunked-prompts":
        kwargs = dict(name="dev", corpus_chunk_size=7, query_prompt="query: ", corpus_prompt_name="doc",
                      accuracy_at_k=[1, 2], precision_recall_at_k=[2, 50], mrr_at_k=[3, 10], ndcg_at_k=[5, 10],
                      map_at_k=[4, 100], write_predictions=True)
        model_kwargs = dict(prompts={"doc": "passage: ", "query": "q: "})
    elif variant == "truncate-dot":
        kwargs = dict(truncate_dim=8, name="t")
        model_kwargs = dict(similarity_fn_name="dot")

    def make(module, **kw):
        if variant == "two-score-fns":
            util = module.__name__.startswith("mlx_hf_bridge")
            if util:
                from mlx_hf_bridge.sentence_transformers import util as u
            else:
                from sentence_transformers import util as u
            kw["score_functions"] = {"dot": u.dot_score, "cosine": u.cos_sim}
            kw["main_score_function"] = "dot"
        return module.InformationRetrievalEvaluator(queries, corpus, relevant, **kw)

    ours, theirs = run_pair(make, tmp_path, model_kwargs=model_kwargs, **kwargs)
    check(ours, theirs, exact_csv=True, exact_metrics=True)  # ranks and counts: exactly ST's numbers


@pytest.mark.st6
def test_information_retrieval_ties_follow_corpus_id_in_st6(tmp_path):
    """ST 6.2 breaks exact score ties by corpus_id whatever the chunking (one-hot stand-in: 3 vectors)."""
    corpus = {f"d{i:02d}": f"doc {i}" for i in range(30)}
    queries = {f"q{i}": f"query {i}" for i in range(6)}
    relevant = {f"q{i}": {f"d{(7 * i + j) % 30:02d}" for j in range(3)} for i in range(6)}
    for chunk in (50000, 4):
        ours, theirs = run_pair(
            lambda m, **kw: m.InformationRetrievalEvaluator(queries, corpus, relevant, corpus_chunk_size=chunk,
                                                            write_predictions=True),
            tmp_path / str(chunk), model_kwargs=dict(coarse=True),
        )
        check(ours, theirs, exact_csv=True, exact_metrics=True)


@pytest.fixture(scope="module")
def pair_data():
    rng = random.Random(7)
    s1, s2 = sentences(11, 30), sentences(12, 30)
    s2[3] = s1[5]  # a sentence on both sides (the binary evaluator embeds it once)
    return s1, s2, [rng.random() * 5 for _ in s1], [rng.randint(0, 1) for _ in s1]


@pytest.mark.parametrize("variant", ["default", "all-fns", "main-euclidean-named"])
def test_embedding_similarity(tmp_path, pair_data, variant):
    s1, s2, gold, _ = pair_data
    kwargs = {
        "default": {},
        "all-fns": dict(similarity_fn_names=["cosine", "euclidean", "manhattan", "dot"], truncate_dim=12),
        "main-euclidean-named": dict(main_similarity="euclidean", name="sts-dev"),
    }[variant]
    ours, theirs = run_pair(lambda m, **kw: m.EmbeddingSimilarityEvaluator(s1, s2, gold, **kw), tmp_path, **kwargs)
    check(ours, theirs, exact_csv=False)


@pytest.mark.st6
@pytest.mark.parametrize("precision", ["float32", "int8", "uint8", "binary", "ubinary"])
def test_embedding_similarity_quantized(tmp_path, pair_data, precision):
    """ST 6.2's quantized path (int8 / uint8 calibrated over both sides, unpacked bits, float32 scores);
    ST 5.3 fails on every quantized precision (its int8 norm / int8 + 128), so the bridge follows ST 6.2."""
    s1, s2, gold, _ = pair_data
    ours, theirs = run_pair(
        lambda m, **kw: m.EmbeddingSimilarityEvaluator(s1, s2, gold, precision=precision, name="q",
                                                       similarity_fn_names=["cosine", "euclidean", "dot"]),
        tmp_path,
    )
    check(ours, theirs, exact_csv=False)


@pytest.mark.parametrize("variant", ["default", "all-fns-margin", "main-dot-named-prompts"])
def test_triplet(tmp_path, variant):
    a, p, n = sentences(21, 25), sentences(22, 25), sentences(23, 25)
    kwargs, model_kwargs = {
        "default": ({}, {}),
        "all-fns-margin": (dict(similarity_fn_names=["cosine", "dot", "euclidean", "manhattan"],
                                margin={"cosine": 0.05, "euclidean": 0.5}), {}),
        "main-dot-named-prompts": (dict(main_similarity_function="dot", name="trip", truncate_dim=10),
                                   dict(prompts={"query": "q: ", "document": "d: "})),
    }[variant]
    ours, theirs = run_pair(lambda m, **kw: m.TripletEvaluator(a, p, n, **kw), tmp_path, model_kwargs=model_kwargs,
                            **kwargs)
    check(ours, theirs, exact_csv=True, exact_metrics=True)  # accuracies are counts / n in float32


@pytest.mark.parametrize("variant", ["default", "all-fns", "named"])
def test_binary_classification(tmp_path, pair_data, variant):
    s1, s2, _, labels = pair_data
    fns = ["cosine", "dot", "euclidean", "manhattan"]
    kwargs = {"default": {}, "all-fns": dict(similarity_fn_names=fns), "named": dict(name="quora", truncate_dim=9)}
    ours, theirs = run_pair(lambda m, **kw: m.BinaryClassificationEvaluator(s1, s2, labels, **kw), tmp_path,
                            **kwargs[variant])
    check(ours, theirs, exact_csv=False)


def test_binary_classification_tied_scores(tmp_path):
    """Tied similarities (one-hot stand-in): ST 6.2's threshold search skips inside ties, ST 5.3's does not."""
    s1, s2 = [f"left {i}" for i in range(24)], [f"right {i}" for i in range(24)]
    labels = [i % 2 for i in range(24)]
    ours, theirs = run_pair(
        lambda m, **kw: m.BinaryClassificationEvaluator(s1, s2, labels, similarity_fn_names=["cosine", "euclidean"]),
        tmp_path, model_kwargs=dict(coarse=True),
    )
    check(ours, theirs, exact_csv=False)


def test_mse(tmp_path):
    src, tgt = sentences(31, 20), sentences(32, 20)
    teacher = {"torch": StandIn("torch", scale=1.3), "mlx": StandIn("mlx", scale=1.3)}

    def make(module, **kw):
        side = "mlx" if module.__name__.startswith("mlx_hf_bridge") else "torch"
        return module.MSEEvaluator(src, tgt, teacher_model=teacher[side], name="distill", **kw)

    ours, theirs = run_pair(make, tmp_path)
    check(ours, theirs, exact_csv=True, exact_metrics=True)  # numpy on equal float32 arrays on both sides


@pytest.mark.parametrize("variant", ["default", "closure-chunks-maxpairs"])
def test_paraphrase_mining(tmp_path, variant):
    texts = sentences(41, 36)
    sentences_map = {f"s{i}": t for i, t in enumerate(texts)}
    rng = random.Random(4)
    dups = [(f"s{rng.randrange(36)}", f"s{rng.randrange(36)}") for _ in range(14)] + [("s0", "missing")]
    kwargs = {} if variant == "default" else dict(
        add_transitive_closure=True, query_chunk_size=5, corpus_chunk_size=7, max_pairs=40, top_k=6, name="pm"
    )
    ours, theirs = run_pair(lambda m, **kw: m.ParaphraseMiningEvaluator(sentences_map, dups, **kw), tmp_path, **kwargs)
    check(ours, theirs, exact_csv=False)


@pytest.mark.parametrize("variant", ["default", "duplicates-named-truncated"])
def test_translation(tmp_path, variant):
    src, trg = sentences(61, 20), sentences(62, 20)
    kwargs = {}
    if variant != "default":  # a repeated target: ST 6.2 counts a match of equal text, ST 5.3 only its index
        trg[7] = trg[3]
        src[9] = src[2]
        kwargs = dict(name="en-de", truncate_dim=6)
    ours, theirs = run_pair(lambda m, **kw: m.TranslationEvaluator(src, trg, **kw), tmp_path, **kwargs)
    check(ours, theirs, exact_csv=True, exact_metrics=True)


@pytest.mark.parametrize("variant", ["batched", "individual-named-at5"])
def test_reranking(tmp_path, variant):
    rng = random.Random(9)
    docs = sentences(51, 80)
    samples = []
    for i in range(10):
        picks = rng.sample(docs, 8)
        k = rng.randint(0, 3)
        samples.append({"query": f"query {i} {picks[0]}", "positive": picks[:k], "negative": picks[k:]})
    kwargs = {} if variant == "batched" else dict(use_batched_encoding=False, name="rr", at_k=5)
    ours, theirs = run_pair(lambda m, **kw: m.RerankingEvaluator(samples, **kw), tmp_path,
                            model_kwargs=dict(prompts={"query": "q: "}), **kwargs)
    check(ours, theirs, exact_csv=False)
    # MRR and nDCG depend on ranks only: equal exactly
    for r_o, r_t in zip(ours[0], theirs[0]):
        assert {k: v for k, v in r_o.items() if "map" not in k} == {k: v for k, v in r_t.items() if "map" not in k}


def test_sequential(tmp_path, pair_data, ir_data):
    s1, s2, gold, labels = pair_data
    queries, corpus, relevant = ir_data

    def make(module, **kw):
        return module.SequentialEvaluator(
            [module.EmbeddingSimilarityEvaluator(s1, s2, gold, name="sts"),
             module.InformationRetrievalEvaluator(queries, corpus, relevant, name="ir"),
             module.BinaryClassificationEvaluator(s1, s2, labels)],
            main_score_function=lambda scores: float(np.mean(scores)),
        )

    ours, theirs = run_pair(make, tmp_path)
    (runs_o, ev_o, *_), (runs_t, ev_t, *_) = ours, theirs
    for r_o, r_t in zip(runs_o, runs_t):
        assert_metrics_match(r_o, r_t, TOL)
    assert ev_o.primary_metric == ev_t.primary_metric == "sequential_score"
    assert [e.primary_metric for e in ev_o.evaluators] == [e.primary_metric for e in ev_t.evaluators]


def test_base_class_and_import_paths():
    from mlx_hf_bridge.sentence_transformers import evaluation
    from mlx_hf_bridge.sentence_transformers.base import evaluation as base_evaluation
    from mlx_hf_bridge.sentence_transformers.sentence_transformer import evaluation as st6_evaluation
    from test_dense_evaluation_helpers import st_evaluation

    theirs = st_evaluation()
    for name in ["SentenceEvaluator", "SequentialEvaluator", "InformationRetrievalEvaluator", "NanoBEIREvaluator",
                 "EmbeddingSimilarityEvaluator", "TripletEvaluator", "BinaryClassificationEvaluator", "MSEEvaluator",
                 "ParaphraseMiningEvaluator", "RerankingEvaluator", "SimilarityFunction"]:
        assert hasattr(theirs, name) and getattr(evaluation, name) is getattr(st6_evaluation, name)
    assert base_evaluation.BaseEvaluator is base_evaluation.SentenceEvaluator is evaluation.SentenceEvaluator

    def body(self, model, output_path=None, epoch=-1, steps=-1):
        return self.prefix_name_to_metrics({"score": np.float32(0.5), "text": "x"}, "mine")

    class MyEvaluator(evaluation.SentenceEvaluator):
        __call__ = body

    class TheirEvaluator(theirs.SentenceEvaluator):
        __call__ = body

    ev_o, ev_t = MyEvaluator(), TheirEvaluator()
    assert ev_o.primary_metric is None and ev_o.greater_is_better is True
    ev_o.primary_metric = ev_t.primary_metric = "score"
    assert ev_o(None) == ev_t(None) == {"mine_score": 0.5, "mine_text": "x"}
    assert ev_o.primary_metric == ev_t.primary_metric == "mine_score"
    assert ev_o.description == "My" and ev_t.description == "Their"
    assert ev_o.get_config_dict() == ev_t.get_config_dict() == {}
    if ST_MAJOR >= 6:
        assert evaluation.SequentialEvaluator([])(None) == theirs.SequentialEvaluator([])(None)


@pytest.mark.parametrize("case", ["sts-lengths", "triplet-lengths", "binary-lengths", "binary-labels", "mse-lengths"])
def test_bad_input_refused_before_encoding(case):
    """Refused at construction as ST refuses it (an AssertionError; ours is a ValueError too) and named."""
    from mlx_hf_bridge.sentence_transformers import evaluation as ours
    from test_dense_evaluation_helpers import st_evaluation

    a, b = ["x", "y", "z"], ["u", "v"]
    make = {
        "sts-lengths": (lambda m: m.EmbeddingSimilarityEvaluator(a, b, [0.1, 0.2]), "sentences1: 3, sentences2: 2"),
        "triplet-lengths": (lambda m: m.TripletEvaluator(a, a, b), "negatives: 2"),
        "binary-lengths": (lambda m: m.BinaryClassificationEvaluator(a, a, [0, 1]), "labels: 2"),
        "binary-labels": (lambda m: m.BinaryClassificationEvaluator(a, a, [0, 2, 1]), "labels[1] is 2"),
        "mse-lengths": (lambda m: m.MSEEvaluator(a, b, teacher_model=StandIn("mlx")), "must have the same length"),
    }
    build, message = make[case]
    model = StandIn("mlx")
    with pytest.raises(AssertionError, match=message.replace("[", r"\[").replace("]", r"\]")) as info:
        build(ours)
    assert isinstance(info.value, ValueError) and model.calls == []
    if case != "mse-lengths" or ST_MAJOR >= 6:  # ST 5.3's MSEEvaluator accepts them (fails in numpy later)
        with pytest.raises((AssertionError, ValueError)):
            build(st_evaluation()) if case != "mse-lengths" else st_evaluation().MSEEvaluator(
                a, b, teacher_model=StandIn("torch"))


def test_reranking_sample_without_negatives_key_is_named():
    from mlx_hf_bridge.sentence_transformers import evaluation as ours

    with pytest.raises(ValueError, match=r"samples\[1\] has no \['negative'\] entry"):
        ours.RerankingEvaluator([{"query": "q", "positive": ["a"], "negative": ["b"]}, {"query": "q", "positive": ["a"]}])


def test_st_module_paths_under_run():
    """Every import form of an ST 5.3 / 6.2 evaluator script resolves to the bridge's classes under ``run``."""
    import importlib

    from mlx_hf_bridge import runner
    from mlx_hf_bridge.evaluation import InformationRetrievalEvaluator, NanoBEIREvaluator, SentenceEvaluator
    from mlx_hf_bridge.evaluation import SimilarityFunction, TripletEvaluator

    paths = [("sentence_transformers.evaluation", "InformationRetrievalEvaluator", InformationRetrievalEvaluator),
             ("sentence_transformers.evaluation.InformationRetrievalEvaluator", "InformationRetrievalEvaluator",
              InformationRetrievalEvaluator),
             ("sentence_transformers.evaluation.SentenceEvaluator", "SentenceEvaluator", SentenceEvaluator),
             ("sentence_transformers.evaluation.SimilarityFunction", "SimilarityFunction", SimilarityFunction),
             ("sentence_transformers.evaluation.TripletEvaluator", "TripletEvaluator", TripletEvaluator),
             ("sentence_transformers.sentence_transformer.evaluation.nano_beir", "NanoBEIREvaluator", NanoBEIREvaluator),
             ("sentence_transformers.sentence_transformer.evaluation.triplet", "TripletEvaluator", TripletEvaluator),
             ("sentence_transformers.base.evaluation.evaluator", "BaseEvaluator", SentenceEvaluator),
             ("sentence_transformers.base.evaluation", "SequentialEvaluator", None)]
    with runner.redirect_imports():
        for module, name, expected in paths:
            value = getattr(importlib.import_module(module), name)
            assert value.__module__.startswith(("mlx_hf_bridge.evaluation", "mlx_hf_bridge.dense")), (module, name)
            assert expected is None or value is expected
    # importing a module named after its class (ST 5.3's layout) leaves the class on the package
    from mlx_hf_bridge.sentence_transformers import evaluation

    assert evaluation.InformationRetrievalEvaluator is InformationRetrievalEvaluator
    assert evaluation.SimilarityFunction is SimilarityFunction and evaluation.TripletEvaluator is TripletEvaluator
