"""NanoBEIREvaluator against real sentence-transformers on a local stand-in of NanoBEIR-en: a dataset
folder of the same shape (configs corpus / queries / qrels, one split ``Nano<Name>`` per dataset),
loaded through ``datasets.load_dataset`` by both. Per-dataset and aggregate metrics, keys, primary
metric and CSV files equal (byte-for-byte: ranks and counts); bad names / prompts / columns refused
with ST's errors before anything is loaded or encoded."""

from __future__ import annotations

import random

import pytest

from test_dense_evaluation_helpers import StandIn, assert_csv_dirs_match, assert_metrics_match, run_pair, sentences

DATASETS = {"scifact": "NanoSciFact", "nfcorpus": "NanoNFCorpus", "arguana": "NanoArguAna"}


def write_nanobeir(folder, drop_column=None, list_qrels=False):
    from datasets import Dataset

    rng = random.Random(0)
    yaml = ["---", "configs:"]
    for subset in ("corpus", "queries", "qrels"):
        yaml += [f"- config_name: {subset}", "  data_files:"]
        for split in DATASETS.values():
            yaml += [f"  - split: {split}", f"    path: {subset}/{split}.parquet"]
    yaml.append("---")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "README.md").write_text("\n".join(yaml) + "\n", encoding="utf-8")
    for n, split in enumerate(DATASETS.values()):
        docs = sentences(200 + n, 30)
        docs[4] = ""  # empty texts are dropped, as ST does
        corpus = {"_id": [f"{split}-d{i}" for i in range(30)], "text": docs}
        queries = {"_id": [f"{split}-q{i}" for i in range(8)], "text": sentences(300 + n, 8, 1, 5)}
        if list_qrels:  # corpus-id as a list (one row per query), the other form ST accepts
            qrels = {"query-id": queries["_id"], "corpus-id": [[f"{split}-d{rng.randrange(30)}" for _ in range(2)]
                                                               for _ in range(8)]}
        else:
            pairs = [(q, f"{split}-d{rng.randrange(30)}") for q in queries["_id"] for _ in range(rng.randint(1, 3))]
            qrels = {"query-id": [q for q, _ in pairs], "corpus-id": [d for _, d in pairs]}
        for subset, data in (("corpus", corpus), ("queries", queries), ("qrels", qrels)):
            if drop_column and drop_column[0] == subset:
                data = {k: v for k, v in data.items() if k != drop_column[1]}
            (folder / subset).mkdir(exist_ok=True)
            Dataset.from_dict(data).to_parquet(str(folder / subset / f"{split}.parquet"))
    return folder


@pytest.fixture(scope="module")
def nanobeir(tmp_path_factory):
    return write_nanobeir(tmp_path_factory.mktemp("NanoBEIR-en"))


@pytest.fixture(scope="module")
def nanobeir_list_qrels(tmp_path_factory):
    return write_nanobeir(tmp_path_factory.mktemp("NanoBEIR-lists"), list_qrels=True)


@pytest.mark.parametrize("variant", ["two-datasets", "truncate-prompts-dot", "one-dataset-median"])
def test_nanobeir_matches_st(tmp_path, nanobeir, nanobeir_list_qrels, variant):
    import numpy as np

    kwargs, model_kwargs = {
        "two-datasets": (dict(dataset_names=["scifact", "ArguAna"]), {}),
        "truncate-prompts-dot": (dict(dataset_names=["scifact", "nfcorpus", "arguana"], truncate_dim=8,
                                      query_prompts={"scifact": "q: ", "nfcorpus": "query: ", "arguana": ""},
                                      corpus_prompts="passage: ", ndcg_at_k=[3, 10], accuracy_at_k=[1]),
                                 dict(similarity_fn_name="dot")),
        "one-dataset-median": (dict(dataset_names=["nfcorpus"], aggregate_fn=np.median, aggregate_key="median"), {}),
    }[variant]
    if variant == "one-dataset-median":  # the enum: ST 5.3 fails on a string here (`.value`)
        kwargs["main_score_function"] = lambda module: module.SimilarityFunction.COSINE
    dataset_id = str(nanobeir_list_qrels if variant == "one-dataset-median" else nanobeir)
    def make(module, **kw):
        if callable(kw.get("main_score_function")):
            kw["main_score_function"] = kw["main_score_function"](module)
        return module.NanoBEIREvaluator(dataset_id=dataset_id, **kw)

    ours, theirs = run_pair(make, tmp_path,
                            model_kwargs=model_kwargs, **kwargs)
    (runs_o, ev_o, out_o, model_o), (runs_t, ev_t, out_t, model_t) = ours, theirs
    for r_o, r_t in zip(runs_o, runs_t):
        assert_metrics_match(r_o, r_t, exact=True)
    assert ev_o.primary_metric == ev_t.primary_metric and ev_o.primary_metric in runs_o[0]
    assert ev_o.name == ev_t.name and ev_o.csv_file == ev_t.csv_file and ev_o.csv_headers == ev_t.csv_headers
    assert [e.name for e in ev_o.evaluators] == [e.name for e in ev_t.evaluators]
    assert ev_o.get_config_dict() == ev_t.get_config_dict()
    assert model_o.calls == model_t.calls  # the same encode calls: texts, prompts, truncate_dim
    assert len(model_o.model_card_data.calls) == len(model_t.model_card_data.calls)
    assert_csv_dirs_match(out_o, out_t, exact=True)


@pytest.mark.parametrize("case", ["bad-name", "empty-names", "missing-prompt", "missing-column", "missing-split"])
def test_nanobeir_bad_input_refused_like_st(tmp_path, nanobeir, case):
    from mlx_hf_bridge.sentence_transformers import evaluation as ours_module
    from test_dense_evaluation_helpers import st_evaluation

    dataset_id = str(nanobeir)
    kwargs = {"bad-name": dict(dataset_names=["scifact", "nanoquora"]), "empty-names": dict(dataset_names=[]),
              "missing-prompt": dict(dataset_names=["scifact", "nfcorpus"], query_prompts={"scifact": "q: "}),
              "missing-column": dict(dataset_names=["scifact"]), "missing-split": dict(dataset_names=["msmarco"])}[case]
    if case == "missing-column":
        dataset_id = str(write_nanobeir(tmp_path / "broken", drop_column=("queries", "text")))
    errors = []
    for module in (ours_module, st_evaluation()):
        with pytest.raises(ValueError) as info:
            module.NanoBEIREvaluator(dataset_id=dataset_id, **kwargs)
        errors.append(str(info.value))
    assert errors[0] == errors[1]
    expected = {"bad-name": "['nanoquora'] are not valid NanoBEIR datasets", "empty-names": "cannot be empty",
                "missing-prompt": "missing query prompts: ['nfcorpus']", "missing-column": "missing required columns",
                "missing-split": "Could not load subset 'corpus' split 'NanoMSMARCO'"}[case]
    assert expected in errors[0]


def test_model_default_similarity_resolves_per_call(tmp_path, nanobeir):
    """A reused evaluator and a second model with another similarity: ST 6.2 re-resolves (new columns),
    ST 5.3 keeps the first model's function; the bridge does what the installed release does."""
    from mlx_hf_bridge.sentence_transformers import evaluation as ours_module
    from test_dense_evaluation_helpers import st_evaluation

    results = {}
    for side, module, backend in (("ours", ours_module, "mlx"), ("theirs", st_evaluation(), "torch")):
        evaluator = module.NanoBEIREvaluator(dataset_names=["scifact"], dataset_id=str(nanobeir))
        first = evaluator(StandIn(backend), output_path=str(tmp_path / side))
        second = evaluator(StandIn(backend, similarity_fn_name="dot"), output_path=str(tmp_path / side))
        results[side] = (first, second, evaluator.primary_metric, evaluator.csv_headers)
    for o, t in zip(results["ours"], results["theirs"]):
        assert o == t
    assert_csv_dirs_match(tmp_path / "ours", tmp_path / "theirs", exact=True)
