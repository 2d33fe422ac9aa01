"""sentence-transformers' ``Router`` (asymmetric query / document routes) against the installed ST
(ST 5.3's ``models.Router`` in .venv, ST 6.2's ``base.modules.Router`` in .venv-st6), on folders the
real library wrote: a StaticEmbedding query route beside a tiny BERT + Pooling + Dense document route,
two tiny BERT stacks (one with a larger init), and (ST 6.2) one BERT shared by both routes with
different Poolings. Tokenization per route equal; ``encode_query`` / ``encode_document`` / ``encode``
(default route) / ``task=`` / ``{task: text}`` rows within 1e-5; the bridge's saves have ST's files,
``router_config.json`` and load in real ST; the errors are ST's; MNRL training with ``router_mapping``
through both trainers: 10 full-batch logged losses within 1e-4 relative, the trained save loading in
ST; ST 6.2's ``route_mappings``."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
st = pytest.importorskip("sentence_transformers")
datasets = pytest.importorskip("datasets")

from conftest import ST_MAJOR, _save_tiny, tiny_bert_config  # noqa: E402
from test_dense_model_helpers import max_diff, st_module_classes, texts  # noqa: E402

if ST_MAJOR >= 6:
    from sentence_transformers.base.modules import Router as TorchRouter
    from sentence_transformers.sentence_transformer import losses as st_losses
    from sentence_transformers.sentence_transformer.modules import StaticEmbedding as TorchStatic
else:
    from sentence_transformers import losses as st_losses
    from sentence_transformers.models import Router as TorchRouter
    from sentence_transformers.models import StaticEmbedding as TorchStatic

DIM = 32
CASES = texts(11, seed=5) + ["", "  padded  text ", "a"]


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def rust_tokenizer(minilm_dir):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(minilm_dir / "tokenizer.json"))


def build_torch(kind, tmp_path_factory, minilm_dir):
    Transformer, Pooling, Dense, Normalize = st_module_classes()
    torch.manual_seed(0)
    if kind == "static-query":
        document = Transformer(str(_save_tiny(tmp_path_factory.mktemp("doc-bert"), tiny_bert_config(), minilm_dir, 0)))
        router = TorchRouter.for_query_document(
            query_modules=[TorchStatic(rust_tokenizer(minilm_dir), embedding_dim=DIM)],
            document_modules=[document, Pooling(DIM, "mean"), Dense(DIM, DIM)])
        return [router, Normalize()]
    query = Transformer(str(_save_tiny(tmp_path_factory.mktemp("q-bert"), tiny_bert_config(), minilm_dir, 1)))
    if kind == "two-berts":  # the document encoder with larger weights: its layers dominate; its prompt is
        big = _save_tiny(tmp_path_factory.mktemp("d-bert"), tiny_bert_config(), minilm_dir, 2, init_scale=0.2)
        excluding = Pooling(DIM, "mean")  # left out of its pooling (prompt_length through the route)
        excluding.include_prompt = False
        return [TorchRouter.for_query_document(query_modules=[query, Pooling(DIM, "cls")],
                                               document_modules=[Transformer(str(big)), excluding])]
    if kind == "middle-router":  # ST's Router after the input module: asymmetric heads on one backbone
        router = TorchRouter.for_query_document(query_modules=[Dense(DIM, 16)],
                                                document_modules=[Dense(DIM, 16), Dense(16, 16)])
        return [query, Pooling(DIM, "mean"), router, Normalize()]
    # one backbone, two Poolings (ST 6.2 saves the shared module once)
    return [TorchRouter.for_query_document(query_modules=[query, Pooling(DIM, "mean")],
                                           document_modules=[query, Pooling(DIM, "max")])]


KINDS = ["static-query", "two-berts", "middle-router"] + (["shared-bert"] if ST_MAJOR >= 6 else [])


def router_dir(folder):
    """Where the Router's files are: the root (first module) or its numbered folder."""
    return folder if (folder / "router_config.json").exists() else next(folder.glob("*_Router"))


@pytest.fixture(scope="module", params=KINDS)
def folder(request, tmp_path_factory, minilm_dir):
    path = tmp_path_factory.mktemp(request.param)
    prompts = {"query": "query: ", "document": "passage: "} if request.param == "two-berts" else None
    st.SentenceTransformer(modules=build_torch(request.param, tmp_path_factory, minilm_dir), device="cpu",
                           prompts=prompts).save(str(path))
    return path


def test_routes_tokenize_and_encode_as_sentence_transformers(folder):
    from mlx_hf_bridge.dense import SentenceTransformer

    ref, ours = st.SentenceTransformer(str(folder), device="cpu"), SentenceTransformer(str(folder))
    tokenize = getattr(ref, "preprocess", None) or ref.tokenize
    for task in ("query", "document"):
        theirs, mine = tokenize(CASES, task=task), ours.tokenize(CASES, task=task)
        arrays = {k for k, v in theirs.items() if isinstance(v, torch.Tensor)}
        assert arrays == {k for k, v in mine.items() if hasattr(v, "shape")}
        for key in arrays:
            np.testing.assert_array_equal(theirs[key].numpy(), np.array(mine[key]), err_msg=f"{task} {key}")
        if router_dir(folder) == folder:  # the Router tokenizes: task (and ST 6's modality) ride along
            assert ({k: v for k, v in theirs.items() if k not in arrays}
                    == {k: v for k, v in mine.items() if k not in arrays})
    worst = 0.0
    calls = [("encode_query", (CASES,), {}), ("encode_document", (CASES,), {}), ("encode", (CASES,), {}),
             ("encode", (CASES,), {"task": "query"}),
             ("encode_query", (CASES,), {"normalize_embeddings": True, "batch_size": 3})]
    if router_dir(folder) == folder:  # {task: text} rows are read by a Router that tokenizes
        calls.append(("encode", ([{"query": t} for t in CASES],), {}))
    for call, args, kwargs in calls:
        worst = max(worst, max_diff(getattr(ours, call)(*args, **kwargs), getattr(ref, call)(*args, **kwargs)))
    print(f"{folder.name} (ST {ST_MAJOR}): encode max|d| {worst:.2e}")
    assert worst <= 1e-5
    theirs_dim = (ref.get_embedding_dimension if ST_MAJOR >= 6 else ref.get_sentence_embedding_dimension)()
    assert ours.get_embedding_dimension() == theirs_dim == ref.encode(["x"]).shape[1]


def _listing(path):
    return sorted(str(f.relative_to(path)) for f in path.rglob("*") if f.is_file() and f.name != "README.md")


def test_save_has_sentence_transformers_layout_and_loads_in_it(folder, tmp_path):
    from mlx_hf_bridge.dense import SentenceTransformer

    ours = SentenceTransformer(str(folder))
    ours.save(str(tmp_path / "saved"))
    saved = tmp_path / "saved"
    assert _listing(saved) == _listing(folder)
    inner = router_dir(folder).relative_to(folder)
    for name in (inner / "router_config.json", "modules.json"):
        assert json.loads((saved / name).read_text()) == json.loads((folder / name).read_text()), name
    for sub in folder.iterdir():  # each module's settings as ST wrote them
        for config in ("config.json", "sentence_bert_config.json"):
            if (sub / config).is_file() and sub.name != "." and sub.is_dir():
                theirs, mine = json.loads((sub / config).read_text()), json.loads((saved / sub.name / config).read_text())
                if config == "config.json" and "architectures" in theirs:  # the HF backbone config
                    theirs, mine = ({k: v for k, v in c.items() if k not in ("transformers_version", "dtype", "torch_dtype")}
                                    for c in (theirs, mine))
                assert mine == theirs, (sub.name, config)
    back = st.SentenceTransformer(str(saved), device="cpu")
    for call in ("encode_query", "encode_document"):
        assert max_diff(getattr(ours, call)(CASES), getattr(back, call)(CASES)) <= 1e-5, call


def test_errors_are_sentence_transformers(minilm_dir):
    from mlx_hf_bridge.sentence_transformers import SentenceTransformer
    from mlx_hf_bridge.sentence_transformers.models import Router, StaticEmbedding

    def pair(side):
        if side == "torch":
            return TorchStatic(rust_tokenizer(minilm_dir), embedding_dim=4), TorchStatic(rust_tokenizer(minilm_dir), embedding_dim=4)
        return StaticEmbedding(rust_tokenizer(minilm_dir), embedding_dim=4), StaticEmbedding(rust_tokenizer(minilm_dir), embedding_dim=4)

    def message(side, build, call=None):
        router_cls, model_cls = (TorchRouter, st.SentenceTransformer) if side == "torch" else (Router, SentenceTransformer)
        kwargs = {"device": "cpu"} if side == "torch" else {}
        with pytest.raises(ValueError) as err:
            router = build(router_cls, pair(side))
            model = model_cls(modules=[router], **kwargs)
            model.eval()
            call(model)
        return str(err.value)

    cases = [
        (lambda R, m: R({}), None),
        (lambda R, m: R({"query": [m[0]], "document": [m[1]]}, default_route="passage"), None),
        (lambda R, m: R.for_query_document([m[0]], [m[1]]), lambda model: model.encode(["x"], task="passage")),
        (lambda R, m: R({"query": [m[0]], "document": [m[1]]}, allow_empty_key=False), lambda model: model.encode(["x"])),
    ]
    if ST_MAJOR >= 6:
        cases.append((lambda R, m: R({"q": [m[0]], "d": [m[1]]}, route_mappings={("query", None): "passage"}), None))
    for build, call in cases:
        assert message("mlx", build, call) == message("torch", build, call)


def test_router_mapping_is_required_for_training_as_in_sentence_transformers(folder, tmp_path):
    from mlx_hf_bridge import losses as mlx_losses
    from mlx_hf_bridge.dense import SentenceTransformer
    from mlx_hf_bridge.sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments

    model = SentenceTransformer(str(folder))
    with pytest.raises(ValueError, match="you did not provide a `router_mapping`"):
        SentenceTransformerTrainer(model=model, train_dataset=pairs(), loss=mlx_losses.MultipleNegativesRankingLoss(model),
                                   args=SentenceTransformerTrainingArguments(output_dir=str(tmp_path), report_to="none"))


ROWS, STEPS = 8, 10
RECIPE = dict(per_device_train_batch_size=ROWS, max_steps=STEPS, learning_rate=5e-3, logging_steps=1, seed=0,
              save_strategy="no", weight_decay=0.01, lr_scheduler_type="linear",
              router_mapping={"question": "query", "answer": "document"})


def pairs():
    rows = texts(2 * ROWS, seed=13, n_min=2, n_max=12)
    return datasets.Dataset.from_dict({"question": rows[:ROWS], "answer": rows[ROWS:]})


def trainer_losses(folder, tmp_path, loss_name, train=pairs, recipe=None, **loss_kwargs):
    """Logged losses of the installed ST's trainer and the bridge's on ``folder`` (the dataset ``train()``
    builds, ``RECIPE`` updated by ``recipe``), and both trained models."""
    recipe = {**RECIPE, **(recipe or {})}
    from sentence_transformers import SentenceTransformerTrainer as TorchTrainer
    from sentence_transformers import SentenceTransformerTrainingArguments as TorchArgs

    from mlx_hf_bridge import losses as mlx_losses
    from mlx_hf_bridge.dense import SentenceTransformer
    from mlx_hf_bridge.sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments

    ref = st.SentenceTransformer(str(folder), device="cpu")
    trainer = TorchTrainer(model=ref, train_dataset=train(), loss=getattr(st_losses, loss_name)(ref, **loss_kwargs),
                           args=TorchArgs(output_dir=str(tmp_path / "torch"), report_to="none", disable_tqdm=True,
                                          use_cpu=True, **recipe))
    trainer.train()
    model = SentenceTransformer(str(folder))
    ours = SentenceTransformerTrainer(
        model=model, train_dataset=train(), loss=getattr(mlx_losses, loss_name)(model, **loss_kwargs),
        args=SentenceTransformerTrainingArguments(output_dir=str(tmp_path / "mlx"), disable_tqdm=True, **recipe))
    ours.train()
    logged = [[h["loss"] for h in t.state.log_history if "loss" in h] for t in (trainer, ours)]
    return logged, ref, model


def _relative(theirs, ours):
    assert len(ours) == len(theirs) == STEPS
    return max(abs(a - b) / max(abs(a), 1e-6) for a, b in zip(theirs, ours))


def test_cached_mnrl_through_a_router(folder, tmp_path):
    """GradCache over routed columns (the task rides in each mini-batch); a StaticEmbedding route is
    refused, as ST 6.2 refuses it (ST 5.3 fails inside its mini-batching instead)."""
    from mlx_hf_bridge import losses as mlx_losses
    from mlx_hf_bridge.dense import SentenceTransformer

    if folder.name.startswith("static-query"):
        with pytest.raises(ValueError, match="not compatible with a SentenceTransformer model based on a StaticEmbedding"):
            mlx_losses.CachedMultipleNegativesRankingLoss(SentenceTransformer(str(folder)))
        if ST_MAJOR >= 6:
            with pytest.raises(ValueError, match="not compatible with a SentenceTransformer model based on a StaticEmbedding"):
                st_losses.CachedMultipleNegativesRankingLoss(st.SentenceTransformer(str(folder), device="cpu"))
        return
    (theirs, ours), _, _ = trainer_losses(folder, tmp_path, "CachedMultipleNegativesRankingLoss", mini_batch_size=3)
    rel = _relative(theirs, ours)
    print(f"{folder.name} (ST {ST_MAJOR}): cached MNRL with router_mapping {theirs[0]:.5g} -> {theirs[-1]:.5g}, max rel {rel:.1e}")
    assert rel < 1e-4, (theirs, ours)


def test_mnrl_training_with_router_mapping_equals_sentence_transformers(folder, tmp_path):
    (theirs, ours), ref, model = trainer_losses(folder, tmp_path, "MultipleNegativesRankingLoss")
    rel = _relative(theirs, ours)
    print(f"{folder.name} (ST {ST_MAJOR}): MNRL with router_mapping {theirs[0]:.5g} -> {theirs[-1]:.5g}, max rel {rel:.1e}")
    assert rel < 1e-4, (theirs, ours)
    assert abs(theirs[0] - theirs[-1]) > 1e-2 * abs(theirs[0])  # training moved

    model.save(str(tmp_path / "trained"))
    back = st.SentenceTransformer(str(tmp_path / "trained"), device="cpu")
    model.eval()
    ref.eval()
    for call in ("encode_query", "encode_document"):
        assert max_diff(getattr(model, call)(CASES), getattr(back, call)(CASES)) <= 1e-5, call
        assert max_diff(getattr(model, call)(CASES), getattr(ref, call)(CASES)) <= 1e-4, call  # trained alike


@pytest.mark.skipif(ST_MAJOR < 6, reason="route_mappings are ST 6's")
def test_route_mappings_resolve_as_sentence_transformers_6(tmp_path, minilm_dir):
    Transformer, Pooling, _, _ = st_module_classes()
    torch.manual_seed(3)
    bert = Transformer(str(_save_tiny(tmp_path / "bert", tiny_bert_config(), minilm_dir, 4)))
    router = TorchRouter({"fast": [TorchStatic(rust_tokenizer(minilm_dir), embedding_dim=DIM)],
                          "deep": [bert, Pooling(DIM, "mean")]},
                         route_mappings={("query", None): "fast", (None, "text"): "deep"})
    st.SentenceTransformer(modules=[router], device="cpu").save(str(tmp_path / "mapped"))
    from mlx_hf_bridge.dense import SentenceTransformer

    ref, ours = st.SentenceTransformer(str(tmp_path / "mapped"), device="cpu"), SentenceTransformer(str(tmp_path / "mapped"))
    assert ours[0].route_mappings == ref[0].route_mappings
    for call, kwargs in (("encode_query", {}), ("encode_document", {}), ("encode", {}), ("encode", {"task": "fast"})):
        assert max_diff(getattr(ours, call)(CASES, **kwargs), getattr(ref, call)(CASES, **kwargs)) <= 1e-5, (call, kwargs)
    ours.save(str(tmp_path / "again"))
    assert (json.loads((tmp_path / "again" / "router_config.json").read_text())
            == json.loads((tmp_path / "mapped" / "router_config.json").read_text()))


def test_information_retrieval_evaluator_routes_queries_and_documents_as_sentence_transformers(folder):
    """The evaluator encodes queries with ``encode_query`` and the corpus with ``encode_document``: each
    through its route; metrics equal ST's."""
    from mlx_hf_bridge.dense import SentenceTransformer
    from mlx_hf_bridge.evaluation import InformationRetrievalEvaluator

    st_eval = pytest.importorskip("sentence_transformers.evaluation")
    queries = {f"q{i}": t for i, t in enumerate(texts(6, seed=21, n_min=2, n_max=6))}
    corpus = {f"d{i}": t for i, t in enumerate(texts(15, seed=22, n_min=4, n_max=20))}
    relevant = {f"q{i}": {f"d{i}", f"d{i + 6}"} for i in range(6)}
    theirs = st_eval.InformationRetrievalEvaluator(queries, corpus, relevant, name="r", show_progress_bar=False)(
        st.SentenceTransformer(str(folder), device="cpu"))
    ours = InformationRetrievalEvaluator(queries, corpus, relevant, name="r")(SentenceTransformer(str(folder)))
    assert ours.keys() == theirs.keys()
    for key, value in theirs.items():
        assert ours[key] == pytest.approx(value, abs=1e-6), key


def test_a_router_built_on_mlx_saves_for_sentence_transformers(tmp_path, minilm_dir, tiny_bert_dir):
    """``Router.for_query_document`` from the bridge's modules: encodes, trains-ready, and its save loads in
    real ST with the same query / document embeddings."""
    from mlx_hf_bridge.sentence_transformers import SentenceTransformer
    from mlx_hf_bridge.sentence_transformers.models import Router, StaticEmbedding

    Transformer, Pooling, Dense, Normalize = _bridge_modules()
    document = Transformer(str(tiny_bert_dir))
    router = Router.for_query_document(
        query_modules=[StaticEmbedding(rust_tokenizer(minilm_dir), embedding_dim=DIM)],
        document_modules=[document, Pooling(DIM, "mean"), Dense(DIM, DIM)])
    model = SentenceTransformer(modules=[router, Normalize()])
    assert [type(m).__name__ for m in model[0].sub_modules["document"]] == ["Transformer", "Pooling", "Dense"]
    model.save(str(tmp_path / "built"))
    back = st.SentenceTransformer(str(tmp_path / "built"), device="cpu")
    assert type(back[0]).__name__ == "Router" and back[0].default_route == "document"
    for call in ("encode_query", "encode_document", "encode"):
        assert max_diff(getattr(model, call)(CASES), getattr(back, call)(CASES)) <= 1e-5, call


def _bridge_modules():
    if ST_MAJOR >= 6:
        from mlx_hf_bridge.sentence_transformers.sentence_transformer.modules import Dense, Normalize, Pooling, Transformer
    else:
        from mlx_hf_bridge.sentence_transformers.models import Dense, Normalize, Pooling, Transformer
    return Transformer, Pooling, Dense, Normalize


def test_damaged_router_folders_are_named_before_weights(folder, copy_dir):
    import shutil

    from mlx_hf_bridge.dense import SentenceTransformer
    from mlx_hf_bridge.modules.layout import LayoutError

    def damaged(edit):
        path = copy_dir(folder, f"damaged-{len(list(folder.parent.iterdir()))}-{edit.__name__}")
        edit(path)
        return path

    inner = router_dir(folder).relative_to(folder)

    def rewrite(path, change):
        config = json.loads((path / inner / "router_config.json").read_text())
        change(config)
        (path / inner / "router_config.json").write_text(json.dumps(config))

    first = json.loads((folder / inner / "router_config.json").read_text())["structure"]["query"][0]

    def no_config(path):
        (path / inner / "router_config.json").unlink()

    def unknown_type(path):
        rewrite(path, lambda c: c["types"].update({first: "sentence_transformers.models.CNN"}))

    def missing_folder(path):
        shutil.rmtree(path / inner / first)

    def unlisted_id(path):
        rewrite(path, lambda c: c["structure"]["query"].append("query_9_Dense"))

    for edit, pattern in ((no_config, "router_config.json does not exist"),
                          (unknown_type, "sentence_transformers.models.CNN.*Router route on MLX does not run"),
                          (missing_folder, f"lists '{first}'.*does not exist"),
                          (unlisted_id, "route 'query' uses \\['query_9_Dense'\\]")):
        with pytest.raises(LayoutError, match=pattern):
            SentenceTransformer(str(damaged(edit)))


def test_custom_routes_train_checkpoint_and_resume_exactly(tmp_path, minilm_dir):
    """Custom route names (and ST's refusal of a dotted one, torch's ModuleDict rule); the Router's
    parameters round-trip through checkpoints: a resume from checkpoint-2 continues with the same losses."""
    import mlx.core as mx

    from mlx_hf_bridge import losses as mlx_losses
    from mlx_hf_bridge.sentence_transformers import (SentenceTransformer, SentenceTransformerTrainer,
                                                     SentenceTransformerTrainingArguments)
    from mlx_hf_bridge.sentence_transformers.models import Router, StaticEmbedding

    refusals = []
    for side in (TorchRouter, Router):
        static = (TorchStatic if side is TorchRouter else StaticEmbedding)(rust_tokenizer(minilm_dir), embedding_dim=4)
        with pytest.raises(KeyError) as err:
            side({"q.v1": [static]})
        refusals.append(err.value.args)
    assert refusals[0] == refusals[1]

    def run(out, resume=None):
        mx.random.seed(0)
        router = Router({"q_v1": [StaticEmbedding(rust_tokenizer(minilm_dir), embedding_dim=8)],
                         "d_v1": [StaticEmbedding(rust_tokenizer(minilm_dir), embedding_dim=8)]})
        model = SentenceTransformer(modules=[router])
        args = SentenceTransformerTrainingArguments(
            output_dir=str(out), per_device_train_batch_size=4, max_steps=4, learning_rate=5e-2, logging_steps=1,
            save_strategy="steps", save_steps=2, seed=0, disable_tqdm=True, report_to="none",
            router_mapping={"question": "q_v1", "answer": "d_v1"})
        trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=pairs(),
                                             loss=mlx_losses.MultipleNegativesRankingLoss(model))
        trainer.train(resume_from_checkpoint=resume)
        return [h["loss"] for h in trainer.state.log_history if "loss" in h], model

    full, model = run(tmp_path / "full")
    again, resumed = run(tmp_path / "resumed", resume=str(tmp_path / "full" / "checkpoint-2"))
    np.testing.assert_allclose(again[-2:], full[-2:], rtol=1e-6)
    np.testing.assert_array_equal(model.encode(CASES, task="q_v1"), resumed.encode(CASES, task="q_v1"))
    model.save(str(tmp_path / "saved"))
    back = st.SentenceTransformer(str(tmp_path / "saved"), device="cpu")
    assert sorted(json.loads((tmp_path / "saved" / "router_config.json").read_text())["types"]) == [
        "d_v1_0_StaticEmbedding", "q_v1_0_StaticEmbedding"]
    for task in ("q_v1", "d_v1"):
        assert max_diff(model.encode(CASES, task=task), back.encode(CASES, task=task)) <= 1e-5


def test_per_dataset_router_mapping_equals_sentence_transformers(folder, tmp_path):
    """``router_mapping`` keyed by dataset name (a DatasetDict; columns named differently per dataset),
    round-robin over the datasets: the logged losses of both trainers agree."""
    if not folder.name.startswith("static-query"):
        pytest.skip("one folder suffices for the data flow")
    rows = texts(4 * ROWS, seed=17, n_min=2, n_max=10)
    data = datasets.DatasetDict({
        "qa": datasets.Dataset.from_dict({"question": rows[:ROWS], "answer": rows[ROWS:2 * ROWS]}),
        "search": datasets.Dataset.from_dict({"passage": rows[2 * ROWS:3 * ROWS], "query": rows[3 * ROWS:]}),
    })
    recipe = {"multi_dataset_batch_sampler": "round_robin",
              "router_mapping": {"qa": {"question": "query", "answer": "document"},
                                 "search": {"query": "query", "passage": "document"}}}
    (theirs, ours), _, _ = trainer_losses(folder, tmp_path, "MultipleNegativesRankingLoss", train=lambda: data,
                                          recipe=recipe)
    rel = _relative(theirs, ours)
    print(f"{folder.name} (ST {ST_MAJOR}): per-dataset router_mapping {theirs[0]:.5g} -> {theirs[-1]:.5g}, max rel {rel:.1e}")
    assert rel < 1e-4, (theirs, ours)
