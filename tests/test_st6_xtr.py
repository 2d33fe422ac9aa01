"""ST 6.2's XTR scoring (``multi_vector_encoder.scoring``) and ``util.resolve_ids`` on MLX, against real
sentence-transformers 6.2 on torch.

XTR: scores and gradients of ``xtr_scores`` / ``xtr_kd_scores`` / ``xtr_scores_pairwise`` on random token
embeddings with masks, zero padding (no mask given) and empty documents, for top_k from 1 to past the
pooled token count; then 10 full-batch training steps of each multi-vector loss with an XTR
``similarity_fct`` and a selective top_k (losses within 1e-4 relative, first-step gradients within 1e-4,
the machinery of test_st6_training). resolve_ids: the same rows and the same errors as ST 6.2's on the
same datasets. Runs in the ST 6 reference venv.
"""

from __future__ import annotations

import functools

import pytest

pytest.importorskip("sentence_transformers", minversion="6")

from st6_training_helpers import *  # noqa: E402,F401,F403  (data, variants, step loops, assertions)

from mlx_hf_bridge.sentence_transformers.multi_vector_encoder import scoring as mlx_scoring  # noqa: E402

pytestmark = pytest.mark.st6
SCORE_TOL = 1e-5


def random_batch(seed, n_queries=4, q_tokens=6, groups=4, n_docs=2, d_tokens=9, dim=8, scale=1.0):
    rng = np.random.default_rng(seed)
    q = (rng.standard_normal((n_queries, q_tokens, dim)) * scale).astype(np.float32)
    d = (rng.standard_normal((groups, n_docs, d_tokens, dim)) * scale).astype(np.float32)
    q_mask = rng.random((n_queries, q_tokens)) > 0.25
    q_mask[:, 0] = True
    d_mask = rng.random((groups, n_docs, d_tokens)) > 0.3
    d_mask[1, n_docs - 1] = False  # an empty document: ST's -1e9 sentinel
    return q, d, q_mask, d_mask


def torch_and_mlx(fn_name, q, d, q_mask, d_mask, weights, **kwargs):
    """(torch scores, dq, dd), (mlx scores, dq, dd) of sum(scores * weights)."""
    import torch
    from sentence_transformers.multi_vector_encoder import scoring

    tq, td = torch.tensor(q, requires_grad=True), torch.tensor(d, requires_grad=True)
    masks = [None if m is None else torch.tensor(m) for m in (q_mask, d_mask)]
    t_scores = getattr(scoring, fn_name)(tq, td, *masks, **kwargs)
    (t_scores * torch.tensor(weights)).sum().backward()
    m_masks = [None if m is None else mx.array(m) for m in (q_mask, d_mask)]
    fn = getattr(mlx_scoring, fn_name)

    def objective(a, b):
        return (fn(a, b, *m_masks, **kwargs) * mx.array(weights)).sum()

    m_scores = fn(mx.array(q), mx.array(d), *m_masks, **kwargs)
    m_dq, m_dd = mx.grad(objective, argnums=(0, 1))(mx.array(q), mx.array(d))
    return ((t_scores.detach().numpy(), tq.grad.numpy(), td.grad.numpy()),
            (np.array(m_scores), np.array(m_dq), np.array(m_dd)))


def assert_close_runs(torch_run, mlx_run):
    for ours, theirs in zip(mlx_run, torch_run):
        assert ours.shape == theirs.shape
        scale = max(1.0, float(np.abs(theirs).max()))
        assert float(np.abs(ours - theirs).max()) <= SCORE_TOL * scale, float(np.abs(ours - theirs).max())


@pytest.mark.parametrize("top_k", [1, 3, 12, 40, 10_000])
@pytest.mark.parametrize("seed, scale", [(0, 1.0), (1, 4.0)])
def test_xtr_scores_and_gradients_match_st6(top_k, seed, scale):
    q, d, q_mask, d_mask = random_batch(seed, scale=scale)
    weights = np.random.default_rng(seed + 10).standard_normal((4, 8)).astype(np.float32)
    weights[:, 1 * 2 + 1] = 0.0  # the empty document's sentinel carries no gradient on either side
    assert_close_runs(*torch_and_mlx("xtr_scores", q, d, q_mask, d_mask, weights, top_k=top_k))
    # the other entry points: (Q, N) own documents, and (B,) pairs with 3D documents and 2D masks
    kd_weights = weights[:, :2].copy()
    assert_close_runs(*torch_and_mlx("xtr_kd_scores", q, d, q_mask, d_mask, kd_weights, top_k=top_k))
    pair_d, pair_mask = d[:, 0], d_mask[:, 0]
    assert_close_runs(*torch_and_mlx("xtr_scores_pairwise", q, pair_d, q_mask, pair_mask, weights[:, 0], top_k=top_k))


def test_xtr_without_masks_treats_zero_rows_as_padding():
    q, d, q_mask, d_mask = random_batch(2)
    q, d = q * q_mask[..., None], d * d_mask[..., None]  # zero-padded, no masks given
    weights = np.ones((4, 8), dtype=np.float32)
    weights[:, 3] = 0.0
    for top_k in (2, 20, 500):
        assert_close_runs(*torch_and_mlx("xtr_scores", q, d, None, None, weights, top_k=top_k))


def test_xtr_gradient_of_tied_tokens_goes_to_the_first_as_in_torch():
    # a document repeating a token vector: its similarities tie inside the per-document max, where torch's
    # max(dim) sends the whole gradient to the first of them (MLX's plain max would split it)
    q, d, q_mask, d_mask = random_batch(5)
    d[0, 0, 4] = d[0, 0, 1]
    d[2, 1, 7] = d[2, 1, 3]
    d_mask[0, 0, [1, 4]] = True
    d_mask[2, 1, [3, 7]] = True
    weights = np.random.default_rng(6).standard_normal((4, 8)).astype(np.float32)
    weights[:, 3] = 0.0
    torch_run, mlx_run = torch_and_mlx("xtr_scores", q, d, q_mask, d_mask, weights, top_k=10_000)
    assert np.abs(torch_run[2][0, 0, 1]).max() > 0 and not torch_run[2][0, 0, 4].any()
    assert_close_runs(torch_run, mlx_run)


def test_xtr_scores_callables_and_errors():
    import torch
    from sentence_transformers.multi_vector_encoder import scoring
    from sentence_transformers.util import similarity_fct_name as torch_name

    from mlx_hf_bridge.sentence_transformers.multi_vector_encoder.losses._common import similarity_fct_name

    assert sorted(scoring.__all__) == sorted(mlx_scoring.__all__)
    q, d, q_mask, d_mask = random_batch(3)
    for cls in ("XTRScores", "XTRKDScores"):
        theirs, ours = getattr(scoring, cls)(top_k=5), getattr(mlx_scoring, cls)(top_k=5)
        assert ours.get_config_dict() == theirs.get_config_dict()
        assert similarity_fct_name(ours) == torch_name(theirs)
        expected = theirs(torch.tensor(q), torch.tensor(d), torch.tensor(q_mask), torch.tensor(d_mask)).numpy()
        got = np.array(ours(mx.array(q), mx.array(d), mx.array(q_mask), mx.array(d_mask)))
        assert np.abs(got - expected).max() <= SCORE_TOL * np.abs(expected[expected > -1e8]).max()
    partial_t = functools.partial(scoring.xtr_scores, top_k=7)
    partial_m = functools.partial(mlx_scoring.xtr_scores, top_k=7)
    assert similarity_fct_name(partial_m) == torch_name(partial_t)
    for bad in (0, -3, True):
        with pytest.raises(ValueError) as theirs:
            scoring.xtr_scores(torch.tensor(q), torch.tensor(d), top_k=bad)
        with pytest.raises(ValueError) as ours:
            mlx_scoring.xtr_scores(mx.array(q), mx.array(d), top_k=bad)
        assert str(ours.value) == str(theirs.value)


def test_model_similarity_fn_name_xtr_refused_as_st6(st6_folders):
    from sentence_transformers import MultiVectorEncoder as TorchEncoder

    messages = []
    for model in (TorchEncoder(str(st6_folders["bert-fixed"]), device="cpu"),
                  MultiVectorEncoder(str(st6_folders["bert-fixed"]))):
        with pytest.raises(ValueError) as error:
            model.similarity_fn_name = "xtr"
        messages.append(str(error.value))
    assert messages[0] == messages[1] and "similarity_fct" in messages[1]


def test_xtr_tie_at_the_boundary_is_deterministic_and_warned(caplog):
    # two identical documents: every similarity of one ties with the other's
    q, d, _, _ = random_batch(4, groups=2, n_docs=1)
    d[1] = d[0]
    from mlx_hf_bridge.colbert import xtr

    xtr._warned_ties = False
    with caplog.at_level("WARNING"):
        scores = np.array(mlx_scoring.xtr_scores(mx.array(q), mx.array(d), top_k=1))
    assert "lowest (document, token) index" in caplog.text
    # each query token's single retrieval ties between the two copies: the first document gets it
    best = np.einsum("qsh,th->qst", q, d[0, 0]).max(axis=-1).mean(axis=-1)
    np.testing.assert_allclose(scores[:, 0], best, rtol=1e-5)
    assert (scores[:, 1] == 0).all()


# --- the losses with XTR scoring, 10 full-batch steps against ST 6.2 -----------------------------
# XTR's top-k is discontinuous: where the k-th and (k+1)-th similarity of a query token are closer than
# float32 rounding, the two libraries (whose embeddings differ at ~1e-7) may retrieve different tokens,
# exactly as torch on two backends may. The cases below are chosen selective (top_k below the pooled
# token count) and well-conditioned; GapRecorder checks on the torch side that every step's smallest
# k-th / (k+1)-th gap stayed above MIN_GAP, so a failure of parity cannot hide behind a near-tie.
MIN_GAP = 1e-6


class GapRecorder:
    """Wraps ST's XTR scorer; records the smallest top-k boundary gap over unmasked query tokens."""

    def __init__(self, scorer, top_k):
        self.scorer, self.top_k, self.gaps, self.pools = scorer, top_k, [], []

    def __call__(self, queries, documents, queries_mask=None, documents_mask=None):
        import torch

        with torch.no_grad():
            width, dim = documents.shape[-2:]
            docs, masks = documents.reshape(-1, width, dim), documents_mask.reshape(-1, width)
            sims = torch.einsum("qsh,dth->qsdt", queries, docs).masked_fill(~masks[None, None], -1e30)
            sims = sims.reshape(*queries.shape[:2], -1)
            self.pools.append(int(masks.sum()))
            top = sims.topk(self.top_k + 1, dim=-1).values
            gap = (top[..., self.top_k - 1] - top[..., self.top_k])[queries_mask]
            self.gaps.append(float(gap.min()))
        return self.scorer(queries, documents, queries_mask=queries_mask, documents_mask=documents_mask)


XTR_LOSS_CASES = [
    # (loss, variant, n_negatives / documents, rows, optimizer, lr, kwargs, top_k, scorer(scoring module, top_k))
    ("MultiVectorMultipleNegativesRankingLoss", "bert-fixed", 1, 8, "sgd", 0.2, {}, 16,
     lambda s, k: s.XTRScores(top_k=k)),
    ("MultiVectorMultipleNegativesRankingLoss", "bert-raw", 1, 6, "adamw", 1e-3,
     {"score_mini_batch_size": 3, "scale": 0.5}, 16,
     lambda s, k: s.XTRScores(top_k=k)),
    ("CachedMultiVectorMultipleNegativesRankingLoss", "bert-min", 1, 5, "adamw", 1e-3, {"mini_batch_size": 3}, 24,
     lambda s, k: s.XTRScores(top_k=k)),
    ("MultiVectorDistillKLDivLoss", "bert-fixed", 3, 4, "sgd", 0.1, {"temperature": 0.5}, 18,
     lambda s, k: s.XTRKDScores(top_k=k)),
    ("MultiVectorMarginMSELoss", "bert-min", 3, 4, "adamw", 1e-3, {}, 12,
     lambda s, k: functools.partial(s.xtr_scores_pairwise, top_k=k)),
]


@pytest.mark.parametrize("loss_name,variant,n,n_rows,optimizer,lr,kwargs,top_k,scorer", XTR_LOSS_CASES)
def test_losses_with_xtr_scoring_match_st6(st6_folders, loss_name, variant, n, n_rows, optimizer, lr, kwargs, top_k,
                                           scorer):
    from sentence_transformers.multi_vector_encoder import scoring

    torch_model, mlx_model = load_pair(st6_folders[variant])
    rows = contrastive_rows(n_rows, n) if "Ranking" in loss_name else scored_rows(n_rows, n)
    t_features, t_labels, m_features, m_labels = collate_both(torch_model, mlx_model, rows)
    if t_labels is not None:
        t_labels = t_labels.float()
    m_loss = getattr(mlx_losses, loss_name)(mlx_model, **kwargs, similarity_fct=scorer(mlx_scoring, top_k))
    assert m_loss.get_config_dict() == torch_loss(
        loss_name, torch_model, {**kwargs, "similarity_fct": scorer(scoring, top_k)}).get_config_dict()
    recorder = GapRecorder(scorer(scoring, top_k), top_k)
    t_loss = torch_loss(loss_name, torch_model, {**kwargs, "similarity_fct": recorder})
    torch_run = run_torch(torch_model, t_loss, (t_features, t_labels), optimizer, lr)
    print(f"{loss_name}: pooled real tokens {min(recorder.pools)}-{max(recorder.pools)}, top_k {top_k}, "
          f"smallest boundary gap {min(recorder.gaps):.1e}")
    assert min(recorder.pools) > top_k  # the selection is exercised
    assert min(recorder.gaps) > MIN_GAP  # and well-conditioned (see above)
    assert_parity(torch_run, run_mlx(mlx_model, m_loss, (m_features, m_labels), optimizer, lr),
                  f"{loss_name} {variant} XTR top_k={top_k} {kwargs}")


@pytest.fixture(scope="module")
def large_init_folder(tmp_path_factory, minilm_dir):
    """An ST 6-saved ColBERT stack on a tiny BERT with larger weights (the layers dominate the output)."""
    import torch
    from sentence_transformers import MultiVectorEncoder as TorchEncoder
    from sentence_transformers.base.modules import Dense, Normalize, Transformer
    from sentence_transformers.multi_vector_encoder.modules import MultiVectorMask

    from conftest import _save_tiny, tiny_bert_config

    bert = _save_tiny(tmp_path_factory.mktemp("bert-large-init"), tiny_bert_config(), minilm_dir, seed=3,
                      init_scale=0.1)
    transformer = Transformer(str(bert), query_expansion={"strategy": "min", "length": 6}, document_length=24)
    torch.manual_seed(0)
    dense = Dense(32, 16, bias=False, activation_function=None, module_input_name="token_embeddings")
    model = TorchEncoder(modules=[transformer, dense, MultiVectorMask(), Normalize(module_input_name="token_embeddings")],
                         device="cpu")
    folder = tmp_path_factory.mktemp("st6-large-init")
    model.save_pretrained(str(folder))
    return folder


def test_xtr_loss_on_a_larger_init_model_matches_st6(large_init_folder):
    from sentence_transformers.multi_vector_encoder import scoring

    torch_model, mlx_model = load_pair(large_init_folder)
    t_features, t_labels, m_features, m_labels = collate_both(torch_model, mlx_model, contrastive_rows(6, 1, seed=0))
    recorder = GapRecorder(scoring.XTRScores(top_k=12), 12)
    kwargs = {"scale": 2.0}
    torch_run = run_torch(torch_model, torch_loss("MultiVectorMultipleNegativesRankingLoss", torch_model,
                                                  {**kwargs, "similarity_fct": recorder}), (t_features, t_labels),
                          "adamw", 1e-3)
    print(f"larger init: pooled {min(recorder.pools)}, smallest boundary gap {min(recorder.gaps):.1e}")
    assert min(recorder.pools) > 12 and min(recorder.gaps) > MIN_GAP
    m_loss = mlx_losses.MultiVectorMultipleNegativesRankingLoss(mlx_model, **kwargs,
                                                                similarity_fct=mlx_scoring.XTRScores(top_k=12))
    assert_parity(torch_run, run_mlx(mlx_model, m_loss, (m_features, m_labels), "adamw", 1e-3), "larger init XTR")


# --- util.resolve_ids ----------------------------------------------------------------------------
def lookup_datasets():
    from datasets import Dataset

    queries = Dataset.from_dict({"query_id": [10, 11, 12, 13], "text": ["q a", "q b", "q c", "q d"]})
    documents = Dataset.from_dict({"document_id": ["d0", "d1", "d2", "d3", "d1"],
                                   "passage": ["p zero", "p one", "p two", "p three", "p one again"]})
    return queries, documents


def train_datasets():
    from datasets import Dataset

    return {
        "lists": Dataset.from_dict({"query_id": [10, 12, 13], "document_ids": [["d0", "d1", "d2"], ["d3", "d2", "d0"],
                                                                             ["d1", "d0", "d3"]],
                                    "scores": [[0.9, 0.5, 0.1], [0.7, 0.2, 0.3], [0.4, 0.8, 0.6]], "extra": [1, 2, 3]}),
        "encoded": Dataset.from_dict({"query_id": [11, 10],
                                      "document_ids": ['["d2", "d3", "d1"]', "['d0', 'd1', 'd2']"],
                                      "scores": ["[1.0, 2.0, 3.0]", "[3.5, 0.5, 1.5]"]}),
        "triplets": Dataset.from_dict({"query_id": [13, 11], "positive_id": ["d1", "d3"], "negative_id": ["d2", "d0"],
                                       "label": [1.0, 0.5]}),
        "ragged": Dataset.from_dict({"query_id": [10, 11], "document_ids": [["d0", "d1"], ["d2", "d3", "d0"]]}),
        "missing": Dataset.from_dict({"query_id": [10, 99], "document_ids": [["d0"], ["d1"]]}),
    }


def resolve_both(name, kwargs_fn, how="set_transform"):
    """Apply ST 6.2's and the bridge's resolve_ids the same way; return (rows or error, rows or error)."""
    from sentence_transformers.util import resolve_ids as torch_resolve

    from mlx_hf_bridge.sentence_transformers.util import resolve_ids as mlx_resolve

    outcomes = []
    for resolve in (torch_resolve, mlx_resolve):
        train = train_datasets()[name]
        queries, documents = lookup_datasets()
        try:
            args, kwargs = kwargs_fn(queries, documents)
            transform = resolve(*args, **kwargs)
            if how == "map":
                train = train.map(transform, batched=True, remove_columns=list(args[0]))
            else:
                train.set_transform(transform)
            outcomes.append(("rows", train[:], train[1:2]))
        except Exception as error:  # compared below: the same type and message
            outcomes.append(("error", type(error).__name__, str(error)))
    return outcomes


RESOLVE_CASES = [
    ("lists", lambda q, d: (({"query_id": q, "document_ids": d},), {})),
    ("lists", lambda q, d: (({"query_id": q, "document_ids": d},), {"max_list_length": 2})),
    ("lists", lambda q, d: (({"query_id": q, "document_ids": d},),
                            {"output_format": "lists", "keep_columns": ["extra"]})),
    ("lists", lambda q, d: (({"query_id": (q, "query_id"), "document_ids": (d, "document_id", "passage")},), {})),
    ("encoded", lambda q, d: (({"query_id": q, "document_ids": d},), {"max_list_length": 2})),
    ("triplets", lambda q, d: (({"query_id": q, "positive_id": d, "negative_id": d},), {})),
    ("ragged", lambda q, d: (({"query_id": q, "document_ids": d},), {})),
    ("ragged", lambda q, d: (({"query_id": q, "document_ids": d},), {"output_format": "lists"})),
    ("missing", lambda q, d: (({"query_id": q, "document_ids": d},), {})),
    ("lists", lambda q, d: (({"query_id": q, "document_ids": (d, "nope")},), {})),
    ("lists", lambda q, d: (({"query_id": q, "document_ids": (d,)},), {})),
    ("lists", lambda q, d: (({"query_id": q.add_column("other_id", [1, 2, 3, 4])},), {})),
    ("lists", lambda q, d: (({"query_id": q.add_column("more", [1, 2, 3, 4])},), {})),
    ("lists", lambda q, d: (({"query_id": {"train": q}},), {})),
    ("lists", lambda q, d: (({"query_id": q},), {"keep_columns": "scores"})),
    ("lists", lambda q, d: (({"query_id": q},), {"max_list_length": 0})),
    ("lists", lambda q, d: (({"query_id": q},), {"output_format": "rows"})),
    ("triplets", lambda q, d: (({"positive_id": d, "query_id": q, "negative_id": (d, "document_id")},),
                               {"keep_columns": ["label", "positive"]})),
]


@pytest.mark.parametrize("case", range(len(RESOLVE_CASES)))
def test_resolve_ids_matches_st6(case):
    name, kwargs_fn = RESOLVE_CASES[case]
    theirs, ours = resolve_both(name, kwargs_fn)
    assert ours == theirs


def test_resolve_ids_with_map_and_a_dataset_dict_matches_st6():
    from datasets import DatasetDict

    theirs, ours = resolve_both("lists", lambda q, d: (({"query_id": q, "document_ids": d},), {}), how="map")
    assert ours == theirs and ours[0] == "rows"
    theirs, ours = resolve_both("lists", lambda q, d: (({"query_id": DatasetDict({"train": q})},), {}))
    assert ours == theirs and ours[0] == "error"


def test_st6_import_paths_resolve_under_run():
    """ST 6.2's module paths for these names resolve to the bridge under ``run``'s import redirection."""
    import importlib

    from mlx_hf_bridge.runner import redirect_imports

    paths = {"sentence_transformers.multi_vector_encoder.scoring": ["XTRScores", "XTRKDScores", "colbert_scores"],
             "sentence_transformers.multi_vector_encoder.scoring.xtr": ["xtr_scores", "xtr_kd_scores",
                                                                        "xtr_scores_pairwise", "XTRScores"],
             "sentence_transformers.multi_vector_encoder.scoring.colbert": ["colbert_kd_scores", "mean_colbert_scores"],
             "sentence_transformers.util": ["resolve_ids"], "sentence_transformers.util.dataset": ["resolve_ids"]}
    for path, names in paths.items():
        real = importlib.import_module(path)
        with redirect_imports():
            ours = importlib.import_module(path)
        assert ours.__name__.startswith("mlx_hf_bridge."), path
        for name in names:
            assert hasattr(real, name) and getattr(ours, name).__module__.startswith("mlx_hf_bridge."), (path, name)
