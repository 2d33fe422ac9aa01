"""ST 6.2's multi-vector evaluators (``sentence_transformers.multi_vector_encoder.evaluation``) against real
sentence-transformers 6.2 on torch.

Both sides load the same tiny ``MultiVectorEncoder`` folder saved by ST 6.2 (tests/st6_training_helpers.py's
variants: fixed query expansion + prompts + skiplist on BERT, ModernBERT without expansion, raw projections)
and run the same evaluator on the same inputs, twice (CSV rows appended): metric dicts with the same keys in
the same order (IR / NanoBEIR / triplet metrics, all rank-derived, exactly; reranking's MAP / MRR exactly and
its nDCG exactly, since ``metrics.ndcg_score`` rounds as sklearn does; the distillation's KL
and Spearman within 1e-5 relative), the same primary metric and config dict, the same files with the same
headers (IR / NanoBEIR CSVs byte-for-byte, prediction files: same ranked ids, scores within 1e-5), and the
same errors for bad arguments. NanoBEIR runs on a local stand-in of NanoBEIR-en (as
tests/test_dense_evaluation_nanobeir.py builds it).

Runs in the ST 6 reference venv: ``.venv-st6/bin/python -m pytest -q tests/test_st6_evaluation.py``.
"""

from __future__ import annotations

from functools import partial

import random

import pytest

pytest.importorskip("sentence_transformers", minversion="6")

from st6_training_helpers import sentence, st6_folders  # noqa: E402,F401  (the ST 6-saved model folders)
from test_dense_evaluation_helpers import assert_csv_dirs_match, assert_metrics_match  # noqa: E402
from test_dense_evaluation_nanobeir import write_nanobeir  # noqa: E402

pytestmark = pytest.mark.st6

SCORE_TOL = 1e-5
CALLS = ((0, 5), (1, -1))


@pytest.fixture(scope="module")
def models(st6_folders):
    """variant -> (ST 6.2 torch model, bridge model), loaded once each."""
    from sentence_transformers import MultiVectorEncoder as TorchEncoder

    from mlx_hf_bridge.sentence_transformers import MultiVectorEncoder

    cache = {}

    def get(variant):
        if variant not in cache:
            cache[variant] = (TorchEncoder(str(st6_folders[variant]), device="cpu"),
                              MultiVectorEncoder(str(st6_folders[variant])))
        return cache[variant]

    return get


def modules():
    from sentence_transformers.multi_vector_encoder import evaluation as theirs

    from mlx_hf_bridge.sentence_transformers.multi_vector_encoder import evaluation as ours

    return theirs, ours


def run_both(models, variant, make, tmp_path, similarity_fn_name=None, exact=True, tol=SCORE_TOL):
    """``make(evaluation_module, side)`` on each side; both run on their model for each of CALLS."""
    theirs_model, ours_model = models(variant)
    results = {}
    for side, module, model in zip(("theirs", "ours"), modules(), (theirs_model, ours_model)):
        previous = model.similarity_fn_name
        if similarity_fn_name is not None:
            model.similarity_fn_name = similarity_fn_name
        try:
            evaluator = make(module, side)
            out = tmp_path / side
            runs = [evaluator(model, output_path=str(out), epoch=e, steps=s) for e, s in CALLS]
        finally:
            model.similarity_fn_name = previous
        results[side] = (runs, evaluator, out)
    (runs_t, ev_t, out_t), (runs_o, ev_o, out_o) = results["theirs"], results["ours"]
    for ours, theirs in zip(runs_o, runs_t):
        assert_metrics_match(ours, theirs, tol=tol, exact=exact)
    assert ev_o.primary_metric == ev_t.primary_metric and ev_o.primary_metric in runs_o[0]
    assert ev_o.get_config_dict() == ev_t.get_config_dict()
    assert ev_o.csv_headers == ev_t.csv_headers
    assert_csv_dirs_match(out_o, out_t, tol=SCORE_TOL)
    return runs_o, runs_t, out_o, out_t


def ir_data(seed=0, n_queries=10, n_docs=37):
    rng = random.Random(seed)
    queries = {f"q{i}": sentence(rng, 2, 9) for i in range(n_queries)}
    corpus = {f"d{i:02d}": sentence(rng, 3, 22) for i in range(n_docs)}
    relevant = {f"q{i}": {f"d{rng.randrange(n_docs):02d}" for _ in range(rng.randint(1, 3))}
                for i in range(n_queries - 1)}
    relevant[f"q{n_queries - 1}"] = set()  # dropped by both (no relevant document)
    return queries, corpus, relevant


IR_CASES = {
    "bert-fixed": ("bert-fixed", None, dict(corpus_chunk_size=7, write_predictions=True, name="tiny")),
    "modernbert-k": ("modernbert", None, dict(mrr_at_k=[3, 10], ndcg_at_k=[5, 10], accuracy_at_k=[1, 2],
                                              precision_recall_at_k=[2], map_at_k=[20], corpus_chunk_size=16)),
    "meanmaxsim-prompts": ("bert-fixed", "meanmaxsim", dict(query_prompt="q: ", corpus_prompt="passage: ",
                                                            chunk_elements=5000)),
    "raw-main-score": ("bert-raw", None, dict(main_score_function="maxsim", corpus_chunk_size=10)),
}


@pytest.mark.parametrize("case", list(IR_CASES))
def test_information_retrieval_matches_st(models, tmp_path, case):
    variant, similarity_fn_name, kwargs = IR_CASES[case]
    queries, corpus, relevant = ir_data()

    def make(module, side):
        return module.MultiVectorInformationRetrievalEvaluator(queries, corpus, relevant, **kwargs)

    runs, _, out_o, out_t = run_both(models, variant, make, tmp_path, similarity_fn_name)
    assert any(0 < v < 1 for v in runs[0].values())  # not a degenerate ranking
    for name in (p.name for p in out_t.iterdir() if p.name.endswith(".csv")):
        assert (out_o / name).read_bytes() == (out_t / name).read_bytes(), name


def test_information_retrieval_explicit_score_functions(models, tmp_path):
    from sentence_transformers.util.similarity import maxsim as torch_maxsim

    from mlx_hf_bridge.sentence_transformers.multi_vector_encoder import maxsim as mlx_maxsim

    queries, corpus, relevant = ir_data(seed=3)

    def make(module, side):
        fn = torch_maxsim if side == "theirs" else mlx_maxsim
        return module.MultiVectorInformationRetrievalEvaluator(queries, corpus, relevant,
                                                               score_functions={"colbert": fn}, corpus_chunk_size=9)

    runs, *_ = run_both(models, "bert-min", make, tmp_path)
    assert "colbert_ndcg@10" in runs[0]


def test_nanobeir_matches_st(models, tmp_path_factory, tmp_path):
    dataset_id = str(write_nanobeir(tmp_path_factory.mktemp("NanoBEIR-en")))

    def make(module, side):
        return module.MultiVectorNanoBEIREvaluator(dataset_names=["scifact", "arguana"], dataset_id=dataset_id,
                                                   corpus_chunk_size=11, query_prompts="query: ")

    runs, *_ = run_both(models, "bert-fixed", make, tmp_path)
    assert "NanoBEIR_mean_maxsim_ndcg@10" in runs[0] and "NanoSciFact_maxsim_ndcg@10" in runs[0]


def triplets(seed=4, n=24):
    rng = random.Random(seed)
    return [[sentence(rng, lo, hi) for _ in range(n)] for lo, hi in ((2, 9), (3, 22), (3, 22))]


TRIPLET_CASES = {
    "default": ("bert-fixed", {}),
    "both-margin": ("modernbert", dict(similarity_fn_names=["maxsim", "meanmaxsim"], margin={"maxsim": 0.05},
                                       name="dev")),
    "main-float-margin": ("bert-raw", dict(main_similarity_function="meanmaxsim", margin=0.01)),
}


@pytest.mark.parametrize("case", list(TRIPLET_CASES))
def test_triplet_matches_st(models, tmp_path, case):
    variant, kwargs = TRIPLET_CASES[case]
    anchors, positives, negatives = triplets()

    def make(module, side):
        return module.MultiVectorTripletEvaluator(anchors, positives, negatives, **kwargs)

    runs, *_ = run_both(models, variant, make, tmp_path)
    assert all(0 < v < 1 for v in runs[0].values())


def rerank_samples(seed=5):
    rng = random.Random(seed)
    samples = [{"query": sentence(rng, 2, 9), "positive": [sentence(rng, 3, 22) for _ in range(rng.randint(1, 3))],
                "negative": [sentence(rng, 3, 22) for _ in range(rng.randint(2, 6))]} for _ in range(9)]
    samples[2]["positive"] = sentence(rng, 3, 22)  # a lone string: one document (ST 6.2)
    samples[4]["negative"] = []  # dropped by both
    return samples


@pytest.mark.parametrize("batched", [True, False])
def test_reranking_matches_st(models, tmp_path, batched):
    samples = rerank_samples()

    def make(module, side):
        return module.MultiVectorRerankingEvaluator(samples, at_k=3, name="rr", use_batched_encoding=batched,
                                                    batch_size=4)

    runs, *_ = run_both(models, "bert-fixed" if batched else "modernbert", make, tmp_path,
                        similarity_fn_name=None if batched else "meanmaxsim", exact=True)
    assert list(runs[0]) == ["rr_map", "rr_mrr@3", "rr_ndcg@3"]


def distillation_data(nested: bool, seed=6, n=10):
    rng = random.Random(seed)
    queries = [sentence(rng, 2, 9) for _ in range(n)]
    if nested:
        documents = [[sentence(rng, 3, 22) for _ in range(4)] for _ in range(n)]
        scores = [[rng.uniform(-2, 12) for _ in range(4)] for _ in range(n)]
        scores[n // 2] = [1.0] * 4  # a constant teacher row: skipped from the Spearman mean by both
    else:
        documents = [sentence(rng, 3, 22) for _ in range(n)]
        scores = [rng.uniform(-2, 12) for _ in range(n)]
    return queries, documents, scores


@pytest.mark.parametrize("nested,kwargs", [
    (True, dict(temperature=0.5, name="kd")),
    (True, dict(teacher_temperature=2.0, student_temperature=0.25)),
    (False, dict(temperature=2.0)),
])
def test_distillation_matches_st(models, tmp_path, nested, kwargs):
    queries, documents, scores = distillation_data(nested)

    def make(module, side):
        return module.MultiVectorDistillationEvaluator(queries, documents, scores, batch_size=3, **kwargs)

    runs, *_ = run_both(models, "bert-fixed", make, tmp_path, exact=False)
    assert runs[0][("kd_" if "name" in kwargs else "") + "kl_divergence"] > 0


def test_bad_arguments_refused_as_st():
    """The same exception type and message on both sides, at construction."""
    queries, corpus, relevant = ir_data()
    anchors, positives, negatives = triplets(n=3)
    qs, docs, scores = distillation_data(True, n=3)

    def maxsim_of(side):
        if side == "theirs":
            from sentence_transformers.util.similarity import maxsim
        else:
            from mlx_hf_bridge.sentence_transformers.multi_vector_encoder import maxsim
        return maxsim

    def xtr_of(side, configured):
        if side == "theirs":
            from sentence_transformers.multi_vector_encoder.scoring import XTRScores, xtr_scores
        else:
            from mlx_hf_bridge.sentence_transformers.multi_vector_encoder.scoring import XTRScores, xtr_scores
        return XTRScores(top_k=4) if configured else partial(xtr_scores, top_k=4)

    cases = [
        lambda m, s: m.MultiVectorInformationRetrievalEvaluator(queries, corpus, relevant, truncate_dim=8),
        lambda m, s: m.MultiVectorInformationRetrievalEvaluator(queries, corpus, relevant,
                                                                score_functions={"xtr": xtr_of(s, False)}),
        lambda m, s: m.MultiVectorInformationRetrievalEvaluator(queries, corpus, relevant,
                                                                score_functions={"xtr": xtr_of(s, True)}),
        lambda m, s: m.MultiVectorInformationRetrievalEvaluator(queries, corpus, relevant, chunk_elements=10,
                                                                score_functions={"maxsim": maxsim_of(s)}),
        lambda m, s: m.MultiVectorNanoBEIREvaluator(dataset_names=["scifact"], truncate_dim=4),
        lambda m, s: m.MultiVectorTripletEvaluator(anchors, positives, negatives, truncate_dim=4),
        lambda m, s: m.MultiVectorTripletEvaluator(anchors, positives, negatives, similarity_fn_names=["cosine"]),
        lambda m, s: m.MultiVectorTripletEvaluator(anchors, positives, negatives, margin={"dot": 1.0}),
        lambda m, s: m.MultiVectorTripletEvaluator(anchors, positives, negatives, margin="big"),
        lambda m, s: m.MultiVectorDistillationEvaluator(qs, docs, scores[:2]),
        lambda m, s: m.MultiVectorDistillationEvaluator(qs, docs, [row[:3] for row in scores]),
        lambda m, s: m.MultiVectorDistillationEvaluator(qs, [d[0] for d in docs], scores),
        lambda m, s: m.MultiVectorDistillationEvaluator(qs, [docs[0], docs[1][:2], docs[2]], scores),
        lambda m, s: m.MultiVectorDistillationEvaluator(qs, docs, scores, student_temperature=0.0),
    ]
    for i, case in enumerate(cases):
        errors = []
        for side, module in zip(("theirs", "ours"), modules()):
            with pytest.raises(Exception) as info:
                case(module, side)
            errors.append((type(info.value).__name__, str(info.value)))
        assert errors[0] == errors[1], i


def test_trainer_runs_the_evaluator_as_st(st6_folders, tmp_path):
    """An evaluator handed to MultiVectorEncoderTrainer runs at each evaluation: the same eval_* keys in
    the log history and the same CSV files under output_dir/eval as ST 6.2's trainer (the values follow
    each side's training, compared in test_st6_training)."""
    import importlib

    from datasets import Dataset

    queries, corpus, relevant = ir_data(seed=8)
    rows = [{"query": queries[f"q{i}"], "positive": corpus[f"d{i:02d}"]} for i in range(8)]
    logged = {}
    for side, st_name in (("theirs", "sentence_transformers"), ("ours", "mlx_hf_bridge.sentence_transformers")):
        st = importlib.import_module(st_name)
        losses = importlib.import_module(st_name + ".multi_vector_encoder.losses")
        evaluation = importlib.import_module(st_name + ".multi_vector_encoder.evaluation")
        model = st.MultiVectorEncoder(str(st6_folders["bert-min"]), **({"device": "cpu"} if side == "theirs" else {}))
        args = st.MultiVectorEncoderTrainingArguments(
            output_dir=str(tmp_path / side), max_steps=2, per_device_train_batch_size=4, learning_rate=1e-3,
            eval_strategy="steps", eval_steps=1, save_strategy="no", report_to="none", seed=0)
        evaluator = evaluation.MultiVectorInformationRetrievalEvaluator(queries, corpus, relevant, name="dev")
        trainer = st.MultiVectorEncoderTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows),
                                               loss=losses.MultiVectorMultipleNegativesRankingLoss(model),
                                               evaluator=evaluator)
        trainer.train()
        logged[side] = [sorted(k for k in e if k.startswith("eval_") and k not in ("eval_runtime",))
                        for e in trainer.state.log_history if "eval_dev_maxsim_ndcg@10" in e]
        logged[side + "-csv"] = [p.read_text().splitlines()[0] for p in sorted((tmp_path / side / "eval").iterdir())]
    assert len(logged["ours"]) == 2
    timing = {"eval_samples_per_second", "eval_steps_per_second"}
    assert [[k for k in e if k not in timing] for e in logged["ours"]] == \
        [[k for k in e if k not in timing] for e in logged["theirs"]]
    assert logged["ours-csv"] == logged["theirs-csv"] and logged["ours-csv"][0].startswith("epoch,steps,maxsim-")


def test_signatures_match_st():
    """ST 6.2's parameter names, kinds and defaults (the triplet evaluator spells out the parameters ST's
    forwards with ``*args, **kwargs`` to the dense ``TripletEvaluator``: compared with those)."""
    import inspect

    from sentence_transformers.sentence_transformer.evaluation import TripletEvaluator

    def params(fn):
        return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]

    theirs, ours = modules()
    for name in theirs.__all__:
        expected = TripletEvaluator.__init__ if name == "MultiVectorTripletEvaluator" else getattr(theirs, name).__init__
        assert params(getattr(ours, name).__init__) == params(expected), name
    assert sorted(theirs.__all__) == sorted(ours.__all__)
