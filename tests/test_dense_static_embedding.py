"""``StaticEmbedding`` (the mean of per-token rows, torch's EmbeddingBag) against the installed
sentence-transformers (ST 5.3 in .venv, ST 6.2 in .venv-st6) on folders the real library wrote:
token ids / offsets equal, ``encode`` / ``encode_query`` / prompts / empty texts / truncate_dim within 1e-5;
the bridge's saves have ST's files and load in real ST (bit-identical weights); model2vec folders read
as each version reads them; MNRL training through both trainers from one init: 10 full-batch logged
losses within 1e-4 relative, and the trained save encodes in real ST as in the bridge; cached losses
refused as ST refuses them."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
st = pytest.importorskip("sentence_transformers")
datasets = pytest.importorskip("datasets")

from conftest import ST_MAJOR  # noqa: E402
from test_dense_model_helpers import max_diff, texts  # noqa: E402

if ST_MAJOR >= 6:
    from sentence_transformers.base.modules import Dense as TorchDense, Normalize as TorchNormalize
    from sentence_transformers.sentence_transformer.modules import StaticEmbedding as TorchStatic
else:
    from sentence_transformers.models import Dense as TorchDense, Normalize as TorchNormalize
    from sentence_transformers.models import StaticEmbedding as TorchStatic

DIM = 32


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def rust_tokenizer(minilm_dir):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(minilm_dir / "tokenizer.json"))


def torch_static_model(minilm_dir, heads: bool, seed: int = 0, **kwargs):
    torch.manual_seed(seed)
    modules = [TorchStatic(rust_tokenizer(minilm_dir), embedding_dim=DIM)]
    if heads:  # a larger head: the Dense (Tanh) dominates what the mean gives
        dense = TorchDense(DIM, DIM)
        with torch.no_grad():
            dense.linear.weight.normal_(0.0, 0.5)
        modules += [dense, TorchNormalize()]
    return st.SentenceTransformer(modules=modules, device="cpu", **kwargs)


@pytest.fixture(scope="module", params=["static", "static+dense+normalize"])
def folder(request, tmp_path_factory, minilm_dir):
    path = tmp_path_factory.mktemp(request.param.replace("+", "-"))
    torch_static_model(minilm_dir, heads="+" in request.param,
                       prompts={"query": "query: ", "document": "passage: "}).save(str(path))
    return path


CASES = texts(13, seed=3) + ["", "  leading and trailing  ", "UPPER case Ünïcode 東京", "a"]


def test_tokenization_and_encode_equal_sentence_transformers(folder):
    from mlx_hf_bridge.dense import SentenceTransformer

    ref, ours = st.SentenceTransformer(str(folder), device="cpu"), SentenceTransformer(str(folder))
    tokenize = getattr(ref, "preprocess", None) or ref.tokenize
    theirs, mine = tokenize(CASES), ours.tokenize(CASES)
    for key in ("input_ids", "offsets"):
        np.testing.assert_array_equal(theirs[key].numpy(), np.array(mine[key]), err_msg=key)
    worst = 0.0
    for call, kwargs in (("encode", {}), ("encode", {"normalize_embeddings": True, "batch_size": 4}),
                         ("encode_query", {}), ("encode_document", {}), ("encode", {"prompt": "Represent: "}),
                         ("encode", {"truncate_dim": 8})):
        a, b = getattr(ref, call)(CASES, **kwargs), getattr(ours, call)(CASES, **kwargs)
        worst = max(worst, max_diff(b, a))
    print(f"{folder.name}: encode max|d| {worst:.2e}")
    assert worst <= 1e-5
    assert ours.get_embedding_dimension() == ref.get_sentence_embedding_dimension() == DIM
    empty = ours[0](ours.tokenize(["", "a"]))["sentence_embedding"]
    assert np.abs(np.array(empty[0])).max() == 0.0 < np.abs(np.array(empty[1])).max()  # torch's empty bag: zeros


def test_save_has_sentence_transformers_files_and_loads_in_it(folder, tmp_path):
    from safetensors.numpy import load_file

    from mlx_hf_bridge.dense import SentenceTransformer

    ours = SentenceTransformer(str(folder))
    ours.save(str(tmp_path / "saved"))
    listing = lambda p: sorted(str(f.relative_to(p)) for f in p.rglob("*") if f.is_file())  # noqa: E731
    assert listing(tmp_path / "saved") == listing(folder)
    for name in ("model.safetensors",):
        a, b = load_file(str(folder / name)), load_file(str(tmp_path / "saved" / name))
        assert a.keys() == b.keys() == {"embedding.weight"}
        np.testing.assert_array_equal(a["embedding.weight"], b["embedding.weight"])
    back = st.SentenceTransformer(str(tmp_path / "saved"), device="cpu")
    assert max_diff(ours.encode_query(CASES), back.encode_query(CASES)) <= 1e-5
    assert back.prompts["query"] == "query: "


@pytest.mark.parametrize("lengths", [[3, 0, 5, 1, 0, 7, 0], [0, 0, 2], [4], [0]])
def test_bag_means_equal_torch_embedding_bag(lengths):
    """Values and the table's gradient = torch's EmbeddingBag(mode="mean") (empty bags included), also
    under mx.compile; memory stays linear in the tokens (a batch of 2048 x 30 tokens)."""
    import mlx.core as mx

    from mlx_hf_bridge.modules.static_embedding import bag_means

    rng = np.random.default_rng(len(lengths))
    weights = rng.normal(size=(500, 16)).astype(np.float32)
    ids = rng.integers(0, 500, size=sum(lengths))
    offsets = np.cumsum([0] + lengths[:-1])
    upstream = rng.normal(size=(len(lengths), 16)).astype(np.float32)
    bag = torch.nn.EmbeddingBag.from_pretrained(torch.tensor(weights), freeze=False)
    theirs = bag(torch.tensor(ids), torch.tensor(offsets))
    (theirs * torch.tensor(upstream)).sum().backward()
    table, m_ids, m_offsets = mx.array(weights), mx.array(ids.astype(np.int32)), mx.array(offsets.astype(np.int32))
    ours = bag_means(table, m_ids, m_offsets)
    grad = mx.grad(lambda t: (bag_means(t, m_ids, m_offsets) * mx.array(upstream)).sum())(table)
    assert max_diff(ours, theirs) <= 1e-6
    assert max_diff(grad, bag.weight.grad) <= 1e-6
    assert max_diff(mx.compile(bag_means)(table, m_ids, m_offsets), theirs) <= 1e-6
    ids = mx.array(rng.integers(0, 500, size=2048 * 30).astype(np.int32))
    offsets = mx.array((np.arange(2048) * 30).astype(np.int32))
    mx.eval(table, ids, offsets)
    mx.reset_peak_memory()
    base = mx.get_active_memory()
    mx.eval(mx.grad(lambda t: bag_means(t, ids, offsets).sum())(table))
    assert mx.get_peak_memory() - base < 64 * 2**20  # a (bags, tokens) averaging matrix would be 500 MB


def test_construction_from_a_tokenizer(minilm_dir):
    import mlx.core as mx
    from transformers import AutoTokenizer

    from mlx_hf_bridge.sentence_transformers import SentenceTransformer
    from mlx_hf_bridge.sentence_transformers.models import StaticEmbedding

    module = StaticEmbedding(AutoTokenizer.from_pretrained(str(minilm_dir)), embedding_dim=12)
    ref = TorchStatic(rust_tokenizer(minilm_dir), embedding_dim=12)
    assert (module.num_embeddings, module.embedding_dim) == (ref.num_embeddings, ref.embedding_dim)
    weights = np.random.default_rng(0).normal(size=(ref.num_embeddings, 12)).astype(np.float32)
    ours = SentenceTransformer(modules=[StaticEmbedding(rust_tokenizer(minilm_dir), embedding_weights=weights)])
    theirs = st.SentenceTransformer(modules=[TorchStatic(rust_tokenizer(minilm_dir), embedding_weights=weights)],
                                    device="cpu")
    assert max_diff(ours.encode(CASES), theirs.encode(CASES)) <= 1e-5
    assert float(mx.std(module.embedding.weight).item()) == pytest.approx(1.0, abs=0.02)  # N(0, 1), as torch
    for args, kwargs in (((rust_tokenizer(minilm_dir),), {}), (("not a tokenizer",), {"embedding_dim": 4})):
        with pytest.raises(ValueError) as theirs_error:
            TorchStatic(*args, **kwargs)
        with pytest.raises(ValueError) as ours_error:
            StaticEmbedding(*args, **kwargs)
        assert str(ours_error.value) == str(theirs_error.value)
    with pytest.raises(NotImplementedError, match="does not run on MLX"):
        StaticEmbedding.from_distillation("BAAI/bge-base-en-v1.5")


def test_model2vec_folder_reads_as_the_installed_version(tmp_path, minilm_dir):
    """model2vec saves ``embeddings`` (+ ``mapping`` / per-token ``weights`` for vocabulary-quantised
    models): ST 6.2 folds them into one row per token id; ST 5.3 reads ``embeddings`` alone."""
    import shutil

    from safetensors.numpy import save_file

    from mlx_hf_bridge.dense import SentenceTransformer
    from mlx_hf_bridge.sentence_transformers.models import StaticEmbedding

    vocab = rust_tokenizer(minilm_dir).get_vocab_size()
    rng = np.random.default_rng(1)
    variants = {"plain": {"embeddings": rng.normal(size=(vocab, 16)).astype(np.float32)}}
    if ST_MAJOR >= 6:
        variants["quantised"] = {"embeddings": rng.normal(size=(50, 16)).astype(np.float16),
                                 "mapping": rng.integers(0, 50, size=vocab).astype(np.int64),
                                 "weights": rng.uniform(0.5, 2.0, size=vocab).astype(np.float32)}
    for name, tensors in variants.items():
        path = tmp_path / name
        path.mkdir()
        save_file(tensors, str(path / "model.safetensors"))
        shutil.copy(minilm_dir / "tokenizer.json", path / "tokenizer.json")
        ref = st.SentenceTransformer(modules=[TorchStatic.load(str(path))], device="cpu")
        ours = SentenceTransformer(modules=[StaticEmbedding.from_model2vec(str(path))])
        assert max_diff(ours.encode(CASES), ref.encode(CASES)) <= 1e-5, name


def test_cached_losses_are_refused_as_sentence_transformers_refuses_them(folder):
    from mlx_hf_bridge import losses as mlx_losses
    from mlx_hf_bridge.dense import SentenceTransformer

    st_losses = pytest.importorskip("sentence_transformers.sentence_transformer.losses" if ST_MAJOR >= 6
                                    else "sentence_transformers.losses")
    ref, ours = st.SentenceTransformer(str(folder), device="cpu"), SentenceTransformer(str(folder))
    for name in ("CachedMultipleNegativesRankingLoss", "CachedMultipleNegativesSymmetricRankingLoss"):
        with pytest.raises(ValueError, match="StaticEmbedding"):
            getattr(st_losses, name)(ref)
        with pytest.raises(ValueError, match="StaticEmbedding"):
            getattr(mlx_losses, name)(ours)


ROWS, STEPS = 8, 10
RECIPE = dict(per_device_train_batch_size=ROWS, max_steps=STEPS, learning_rate=5e-2, logging_steps=1, seed=0,
              save_strategy="no", weight_decay=0.01, lr_scheduler_type="linear")


def pairs():
    rows = texts(2 * ROWS, seed=9, n_min=2, n_max=12)
    return datasets.Dataset.from_dict({"anchor": rows[:ROWS], "positive": rows[ROWS:]})


def test_mnrl_training_equals_sentence_transformers_trainer(folder, tmp_path):
    from sentence_transformers import SentenceTransformerTrainer as TorchTrainer
    from sentence_transformers import SentenceTransformerTrainingArguments as TorchArgs

    from mlx_hf_bridge import losses as mlx_losses
    from mlx_hf_bridge.dense import SentenceTransformer
    from mlx_hf_bridge.sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments

    st_losses = pytest.importorskip("sentence_transformers.sentence_transformer.losses" if ST_MAJOR >= 6
                                    else "sentence_transformers.losses")
    ref = st.SentenceTransformer(str(folder), device="cpu")
    trainer = TorchTrainer(model=ref, train_dataset=pairs(), loss=st_losses.MultipleNegativesRankingLoss(ref),
                           args=TorchArgs(output_dir=str(tmp_path / "torch"), report_to="none", disable_tqdm=True,
                                          use_cpu=True, **RECIPE))
    trainer.train()
    theirs = [h["loss"] for h in trainer.state.log_history if "loss" in h]

    ours_model = SentenceTransformer(str(folder))
    ours_trainer = SentenceTransformerTrainer(
        model=ours_model, train_dataset=pairs(), loss=mlx_losses.MultipleNegativesRankingLoss(ours_model),
        args=SentenceTransformerTrainingArguments(output_dir=str(tmp_path / "mlx"), disable_tqdm=True, **RECIPE))
    ours_trainer.train()
    ours = [h["loss"] for h in ours_trainer.state.log_history if "loss" in h]
    assert len(ours) == len(theirs) == STEPS
    rel = max(abs(a - b) / max(abs(a), 1e-6) for a, b in zip(theirs, ours))
    print(f"{folder.name} (ST {ST_MAJOR}): MNRL logged losses {theirs[0]:.5g} -> {theirs[-1]:.5g}, max rel {rel:.1e}")
    assert rel < 1e-4, (theirs, ours)
    assert abs(theirs[0] - theirs[-1]) > 1e-2 * abs(theirs[0])  # training moved

    ours_model.save(str(tmp_path / "trained"))
    back = st.SentenceTransformer(str(tmp_path / "trained"), device="cpu")
    ours_model.eval()
    assert max_diff(ours_model.encode(CASES), back.encode(CASES)) <= 1e-5
    ref.eval()  # both trained the same: the two trained models encode alike
    assert max_diff(ours_model.encode(CASES), ref.encode(CASES)) <= 1e-4
