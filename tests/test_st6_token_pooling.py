"""ST 6.2's ``HierarchicalTokenPooling`` on MLX against real sentence-transformers 6.2: folders saved by
ST 6.2 with the module (each option) encode as ST 6.2 encodes them (same number of vectors per
document, values <= 1e-5), per-call ``token_pooling=`` and standalone ``pool`` equal ST 6.2's, bridge
saves load in ST 6.2 identically, bad options raise ST 6.2's errors and training through pooling is
refused by name. The ST 6.2 side runs in a subprocess (the MLX process never imports torch)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytest.importorskip("sentence_transformers", minversion="6")
pytest.importorskip("scipy")

from mlx_hf_bridge.modules.layout import LayoutError  # noqa: E402
from mlx_hf_bridge.sentence_transformers import MultiVectorEncoder  # noqa: E402
from mlx_hf_bridge.sentence_transformers.multi_vector_encoder.modules import (  # noqa: E402
    HierarchicalTokenPooling, LambdaTokenPooling,
)

pytestmark = pytest.mark.st6
TOL = 1e-5
QUERIES = ["hello world", "what is a longer query, with many many words in it that runs past the expansion length?"]
DOCUMENTS = [
    "a doc, here.",
    "another document with punctuation! and more; text? It is long enough to have many tokens to cluster, "
    "and the clustering merges some of them into their means while others stay alone.",
    "the the the the cat cat cat sat sat on on the mat mat mat",  # repeated tokens: near-identical vectors
    "short",
    "Ward linkage on cosine distance builds a tree of merges; cutting it at a fixed number of clusters gives "
    "each token a label, and the labels are then numbered densely in sorted order.",
]
# name -> (pooling kwargs or None, query expansion, Normalize module before the pooling, BERT init range or
# "modernbert"); per-call pooling (PER_CALL) is compared on PER_CALL_VARIANTS, compounding on a pooled one
VARIANTS = {
    "pool2-default": ({"pool_factor": 2}, None, True, 0.02),
    "pool1.5-noprotect-nonorm": ({"pool_factor": 1.5, "num_protected_tokens": 0, "normalize_embeddings": False}, None, False, 0.02),
    "pool3-protect2-queries": ({"pool_factor": 3, "num_protected_tokens": 2, "tasks": ["query", "document"]}, 8, True, 0.02),
    "pool1-normalize-only": ({"pool_factor": 1}, 8, False, 0.02),
    "pool4-large-init": ({"pool_factor": 4}, 8, True, 0.5),
    "modernbert-pool2": ({"pool_factor": 2}, 8, True, "modernbert"),  # documents run packed on the CPU
    "no-pool": (None, 8, True, 0.02),
}
REFERENCE = textwrap.dedent(
    r'''
    import json, os, string, sys
    import numpy as np, torch
    from transformers import AutoModel, AutoTokenizer, BertConfig
    from sentence_transformers import MultiVectorEncoder
    from sentence_transformers.base.modules import Dense, Normalize, Transformer
    from sentence_transformers.multi_vector_encoder.modules import HierarchicalTokenPooling, MultiVectorMask

    spec = json.loads(sys.argv[1])
    out, Q, D = spec["out"], spec["queries"], spec["documents"]

    def outputs(model, name, per_call=None):
        arrays = {}
        for key, pooling in [("", None)] + ([("pc", HierarchicalTokenPooling(**per_call))] if per_call else []):
            q = model.encode_query(Q, convert_to_numpy=True, batch_size=2, token_pooling=pooling)
            d = model.encode_document(D, convert_to_numpy=True, batch_size=2, token_pooling=pooling)
            e = model.encode(D, convert_to_numpy=True, batch_size=3, token_pooling=pooling)
            arrays |= {f"{key}q{i}": x for i, x in enumerate(q)} | {f"{key}d{i}": x for i, x in enumerate(d)}
            arrays |= {f"{key}e{i}": x for i, x in enumerate(e)}
            arrays[key + "scores"] = model.similarity(q, d).numpy()
            raw = model.encode_document(D[:3], output_value=None, token_pooling=pooling)
            for i, item in enumerate(raw):
                arrays[f"{key}raw{i}/attention_mask"] = item["attention_mask"].numpy()
                mask = item["attention_mask"].bool()
                arrays[f"{key}raw{i}/token_embeddings"] = item["token_embeddings"][mask].numpy()
        np.savez(os.path.join(out, name + ".npz"), **arrays)

    if spec["mode"] == "encode":
        for name, folder in spec["folders"].items():
            outputs(MultiVectorEncoder(folder, device="cpu"), name)
        sys.exit(0)

    if spec["mode"] == "pool":  # standalone pool() on fixed arrays
        cases = np.load(spec["cases"])
        results = {}
        for name, options in spec["pool_options"].items():
            pooling = HierarchicalTokenPooling(**options)
            for key in cases.files:
                x = torch.from_numpy(cases[key])
                if key.startswith("padded"):
                    mask = torch.from_numpy(cases["mask"]) if key == "padded-masked" else None
                    side = "left" if key == "padded-left" else "right"
                    results[f"{name}/{key}"] = pooling.pool(x, attention_mask=mask, padding_side=side).numpy()
                elif key != "mask":
                    results[f"{name}/{key}"] = pooling.pool([x])[0].float().numpy()
        np.savez(os.path.join(out, "pool.npz"), **results)
        sys.exit(0)

    torch.manual_seed(0)
    for name, (pooling, expansion, normalize, init) in spec["variants"].items():
        path = spec["modernbert"] if init == "modernbert" else os.path.join(out, "bert-" + str(init))
        if not os.path.exists(path):
            torch.manual_seed(0)
            AutoModel.from_config(BertConfig(
                vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                initializer_range=init, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)).eval().save_pretrained(path)
            AutoTokenizer.from_pretrained(spec["bert_tokenizer"]).save_pretrained(path)
        torch.manual_seed(1)
        query_expansion = {"strategy": "fixed", "length": expansion} if expansion else None
        modules = [Transformer(path, query_expansion=query_expansion),
                   Dense(32, 16, module_input_name="token_embeddings", bias=False, activation_function=None),
                   MultiVectorMask(skiplist_words=list(string.punctuation))]
        modules += [Normalize(module_input_name="token_embeddings")] if normalize else []
        modules += [HierarchicalTokenPooling(**pooling)] if pooling else []
        model = MultiVectorEncoder(modules=modules, device="cpu")
        model.save_pretrained(os.path.join(out, name))
        outputs(model, name, spec["per_call"] if name in spec["per_call_variants"] else None)
    # a config saved before normalize_embeddings existed: ST 6.2 loads it with normalize_embeddings=False
    legacy = os.path.join(out, "legacy-config")
    MultiVectorEncoder(os.path.join(out, "pool2-default"), device="cpu").save_pretrained(legacy)
    config_path = os.path.join(legacy, "4_HierarchicalTokenPooling", "config.json")
    config = json.load(open(config_path))
    del config["normalize_embeddings"]
    json.dump(config, open(config_path, "w"))
    outputs(MultiVectorEncoder(legacy, device="cpu"), "legacy-config")
    '''
)
PER_CALL = {"pool_factor": 2, "num_protected_tokens": 1, "tasks": ["query", "document"]}
PER_CALL_VARIANTS = ("no-pool", "pool2-default")
POOL_OPTIONS = {
    "f2": {"pool_factor": 2},
    "f1.5-p0": {"pool_factor": 1.5, "num_protected_tokens": 0},
    "f3-p2-raw": {"pool_factor": 3, "num_protected_tokens": 2, "normalize_embeddings": False},
    "f20": {"pool_factor": 20},
}


def run_st6(spec: dict):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("PYTHONPATH", None)
    spec = {"queries": QUERIES, "documents": DOCUMENTS, **spec}
    proc = subprocess.run([sys.executable, "-c", REFERENCE, json.dumps(spec)], capture_output=True, text=True,
                          env=env, timeout=900)
    assert proc.returncode == 0, f"ST 6.2 reference failed:\n{proc.stderr[-4000:]}"


def bridge_outputs(model, per_call=None) -> dict:
    arrays = {}
    for key, pooling in [("", None)] + ([("pc", HierarchicalTokenPooling(**per_call))] if per_call else []):
        q = model.encode_query(QUERIES, convert_to_numpy=True, batch_size=2, token_pooling=pooling)
        d = model.encode_document(DOCUMENTS, convert_to_numpy=True, batch_size=2, token_pooling=pooling)
        e = model.encode(DOCUMENTS, convert_to_numpy=True, batch_size=3, token_pooling=pooling)
        arrays |= {f"{key}q{i}": x for i, x in enumerate(q)} | {f"{key}d{i}": x for i, x in enumerate(d)}
        arrays |= {f"{key}e{i}": x for i, x in enumerate(e)}
        arrays[key + "scores"] = np.array(model.similarity(q, d))
        for i, item in enumerate(model.encode_document(DOCUMENTS[:3], output_value=None, token_pooling=pooling)):
            mask = np.array(item["attention_mask"]).astype(bool)
            arrays[f"{key}raw{i}/attention_mask"] = mask
            arrays[f"{key}raw{i}/token_embeddings"] = np.array(item["token_embeddings"])[mask]
    return arrays


def assert_same(got: dict, ref, label: str) -> float:
    ref = {k: ref[k] for k in ref.files} if hasattr(ref, "files") else ref
    assert sorted(got) == sorted(ref), label
    worst = 0.0
    for key in sorted(ref):
        assert got[key].shape == ref[key].shape, f"{label} {key}: shape {got[key].shape} vs ST 6.2 {ref[key].shape}"
        if ref[key].dtype == bool:
            assert np.array_equal(got[key], ref[key]), f"{label} {key}"
            continue
        err = float(np.abs(got[key] - ref[key]).max()) if ref[key].size else 0.0
        # a score sums a query's MaxSim over its (expanded, 32) tokens: float32 rounding grows with its size
        # (un-normalised vectors give scores ~10-30), so the bound is of the scores' scale; vectors stay absolute
        bound = TOL * max(1.0, float(np.abs(ref[key]).max())) if key.endswith("scores") and ref[key].size else TOL
        assert err <= bound, f"{label} {key}: max|d| {err:.2e} > {bound:.2e}"
        worst = max(worst, err)
    return worst


@pytest.fixture(scope="module")
def st6_dir(tmp_path_factory, minilm_dir, tiny_modernbert_dir):
    out = tmp_path_factory.mktemp("st6-token-pooling")
    run_st6({"mode": "build", "out": str(out), "bert_tokenizer": str(minilm_dir), "variants": VARIANTS,
             "per_call": PER_CALL, "per_call_variants": PER_CALL_VARIANTS, "modernbert": str(tiny_modernbert_dir)})
    return out


@pytest.mark.parametrize("variant", [*VARIANTS, "legacy-config"])
def test_st6_saved_folder_encodes_as_st6(st6_dir, variant):
    model = MultiVectorEncoder(str(st6_dir / variant))
    ref = np.load(st6_dir / f"{variant}.npz")
    got = bridge_outputs(model, PER_CALL if variant in PER_CALL_VARIANTS else None)
    worst = assert_same(got, ref, variant)
    vectors = max(float(np.abs(got[k] - ref[k]).max()) for k in ref.files if "scores" not in k and ref[k].size and ref[k].dtype != bool)
    print(f"{variant}: max|d| {worst:.2e} over {len(ref.files)} outputs (vectors {vectors:.2e})")
    unpooled = np.load(st6_dir / "no-pool.npz")
    if variant in ("pool2-default", "pool4-large-init"):  # the pooling really ran: fewer vectors
        assert ref["d1"].shape[0] < unpooled["d1"].shape[0]
    if variant == "pool2-default":  # per-call pooling compounds on the pipeline's
        assert ref["pcd1"].shape[0] < ref["d1"].shape[0]
    if variant == "pool3-protect2-queries":  # queries pooled too
        assert ref["q1"].shape[0] < unpooled["q1"].shape[0]


def test_settings_read_from_the_folder(st6_dir):
    pooling = MultiVectorEncoder(str(st6_dir / "pool3-protect2-queries"))[-1]
    assert isinstance(pooling, HierarchicalTokenPooling)
    assert (pooling.pool_factor, pooling.num_protected_tokens, pooling.normalize_embeddings, pooling.tasks) == (
        3, 2, True, ["query", "document"])
    assert MultiVectorEncoder(str(st6_dir / "legacy-config"))[-1].normalize_embeddings is False


def test_bridge_saves_load_in_st6(st6_dir, tmp_path, tiny_bert_dir):
    from mlx_hf_bridge.modules import Dense, MultiVectorMask, Normalize, Transformer

    folders, expected = {}, {}
    for variant in [v for v, (pooling, *_) in VARIANTS.items() if pooling] + ["legacy-config"]:
        folders[variant] = str(tmp_path / variant)
        MultiVectorEncoder(str(st6_dir / variant)).save_pretrained(folders[variant])
        source = st6_dir / variant
        pooling_config = next(source.glob("*_HierarchicalTokenPooling")).name + "/config.json"
        for name in ["modules.json", pooling_config]:
            theirs = json.loads((source / name).read_text())
            if variant == "legacy-config" and name == pooling_config:  # ST 6.2 re-saves the loaded False
                theirs = {**theirs, "normalize_embeddings": False}
            assert json.loads((tmp_path / variant / name).read_text()) == theirs, f"{variant}/{name}"
        own = np.load(st6_dir / f"{variant}.npz")
        expected[variant] = {k: own[k] for k in own.files if not k.startswith("pc")}  # without per-call pooling
    built = MultiVectorEncoder(modules=[
        Transformer(str(tiny_bert_dir)), Dense(32, 8, bias=False, activation_function=None, module_input_name="token_embeddings"),
        MultiVectorMask(), Normalize(module_input_name="token_embeddings"),
        HierarchicalTokenPooling(2.5, num_protected_tokens=0, tasks="document")])
    folders["bridge-built"] = str(tmp_path / "bridge-built")
    built.save_pretrained(folders["bridge-built"])
    assert json.loads((tmp_path / "bridge-built" / "4_HierarchicalTokenPooling" / "config.json").read_text()) == {
        "pool_factor": 2.5, "num_protected_tokens": 0, "normalize_embeddings": True, "tasks": ["document"]}
    out = tmp_path / "st6-outputs"
    out.mkdir()
    run_st6({"mode": "encode", "out": str(out), "folders": folders})
    for name, folder in folders.items():
        got = np.load(out / f"{name}.npz")
        ours = bridge_outputs(MultiVectorEncoder(folder))
        assert_same(ours, got, f"ST 6.2 on the bridge's save of {name}")
        if name in expected:  # and what ST 6.2 made of its own save
            assert_same({k: got[k] for k in got.files}, expected[name], name)


def test_standalone_pool_equals_st6(tmp_path):
    rng = np.random.default_rng(5)

    def normed(n):
        x = rng.normal(size=(n, 16)).astype(np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    dup = normed(12)
    dup[5:9] = dup[4]  # exact duplicates: distance 0 ties
    rows = [normed(9), normed(23)]
    padded = np.zeros((2, 23, 16), np.float32)
    left = np.zeros((2, 23, 16), np.float32)
    mask = np.zeros((2, 23), bool)
    for i, row in enumerate(rows):
        padded[i, : len(row)], left[i, 23 - len(row):], mask[i, : len(row)] = row, row, True
    cases = {"one-40": normed(40), "one-2": normed(2), "one-1": normed(1), "duplicates": dup, "unnormed": normed(17) * 3,
             "half": normed(30).astype(np.float16), "padded-masked": padded, "padded-right": padded,
             "padded-left": left, "mask": mask}
    np.savez(tmp_path / "cases.npz", **cases)
    run_st6({"mode": "pool", "out": str(tmp_path), "cases": str(tmp_path / "cases.npz"), "pool_options": POOL_OPTIONS})
    ref = np.load(tmp_path / "pool.npz")
    got = {}
    for name, options in POOL_OPTIONS.items():
        pooling = HierarchicalTokenPooling(**options)
        for key, x in cases.items():
            if key.startswith("padded"):
                got[f"{name}/{key}"] = pooling.pool(
                    x, attention_mask=mask if key == "padded-masked" else None,
                    padding_side="left" if key == "padded-left" else "right")
            elif key != "mask":
                got[f"{name}/{key}"] = pooling.pool([x])[0].astype(np.float32)
    print(f"pool(): max|d| {assert_same(got, ref, 'pool()'):.2e}")
    assert got["f2/half"].shape == (15, 16) and pooling.pool([cases["half"]])[0].dtype == np.float16


def test_bad_options_raise_st6_errors(tmp_path, tiny_bert_dir):
    for bad in (0, -1, 0.5):
        with pytest.raises(ValueError, match="pool_factor must be >= 1"):
            HierarchicalTokenPooling(pool_factor=bad)
    with pytest.raises(ValueError, match="num_protected_tokens must be >= 0"):
        HierarchicalTokenPooling(num_protected_tokens=-1)
    assert HierarchicalTokenPooling(tasks="query").tasks == ["query"]
    pooling = HierarchicalTokenPooling(pool_factor=2)
    with pytest.raises(ValueError, match="Tensor input must be 3D"):
        pooling.pool(np.zeros((5, 8), np.float32))
    with pytest.raises(ValueError, match="padding_side must be 'left' or 'right'"):
        pooling.pool(np.zeros((1, 5, 8), np.float32), padding_side="middle")
    with pytest.raises(ValueError, match="list entries must be 2D"):
        pooling.pool([np.zeros((1, 5, 8), np.float32)])
    assert pooling.pool([]) == [] and pooling.pool([np.ones((4, 2))], task="query")[0].shape == (4, 2)
    with pytest.raises(NotImplementedError, match="cannot be saved"):
        LambdaTokenPooling(pool_fn=lambda x: x).save(str(tmp_path / "lambda"))
    model = MultiVectorEncoder(str(tiny_bert_dir))
    with pytest.raises(TypeError, match="token_pooling must be a BaseTokenPooling"):
        model.encode_document(["a document"], token_pooling="hierarchical")
    kept = model.encode_document(["some longer text with multiple tokens"],
                                 token_pooling=LambdaTokenPooling(pool_fn=lambda emb: emb[:2]))[0]
    assert kept.shape[0] == 2
    # unknown config keys and a listed folder that is missing are named before any weights are read
    model.heads.append(HierarchicalTokenPooling(pool_factor=2))
    model.save_pretrained(str(tmp_path / "saved"))
    config = tmp_path / "saved" / "4_HierarchicalTokenPooling" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "pool_factr": 3}))
    with pytest.raises(ValueError, match=r"unknown HierarchicalTokenPooling setting\(s\) \['pool_factr'\]"):
        MultiVectorEncoder(str(tmp_path / "saved"))
    config.unlink()
    config.parent.rmdir()
    with pytest.raises(LayoutError, match="4_HierarchicalTokenPooling.*does not exist"):
        MultiVectorEncoder(str(tmp_path / "saved"))
    model.heads.append(LambdaTokenPooling(pool_fn=lambda x: x))
    with pytest.raises(NotImplementedError, match="cannot be saved"):
        model.save_pretrained(str(tmp_path / "lambda-model"))
    assert not (tmp_path / "lambda-model" / "modules.json").exists()


def test_without_scipy_the_error_names_it(monkeypatch):
    from mlx_hf_bridge.modules import token_pooling

    token_pooling._clustering.cache_clear()
    monkeypatch.setitem(sys.modules, "scipy.cluster.hierarchy", None)
    try:
        with pytest.raises(ImportError, match="pip install scipy"):
            HierarchicalTokenPooling(pool_factor=2).pool([np.eye(6, dtype=np.float32)])
        # nothing to cluster: no scipy needed (pool_factor 1, or too few tokens)
        assert HierarchicalTokenPooling(pool_factor=1).pool([np.eye(6, dtype=np.float32)])[0].shape == (6, 6)
        assert HierarchicalTokenPooling(pool_factor=2).pool([np.eye(2, dtype=np.float32)])[0].shape == (2, 2)
    finally:
        token_pooling._clustering.cache_clear()


def test_training_through_pooling_is_refused(tiny_bert_dir):
    import mlx.core as mx

    from mlx_hf_bridge.sentence_transformers.multi_vector_encoder.losses import MultiVectorMultipleNegativesRankingLoss

    model = MultiVectorEncoder(str(tiny_bert_dir))
    model.heads.append(HierarchicalTokenPooling(pool_factor=2))
    loss = MultiVectorMultipleNegativesRankingLoss(model)
    features = [model.preprocess(["a query", "another query"], task="query"),
                model.preprocess(["a fairly long document with tokens", "another document"], task="document")]
    with pytest.raises(NotImplementedError, match="Training .*through HierarchicalTokenPooling is not supported"):
        mx.eval(loss(features, None))
    model.heads.pop()
    assert np.isfinite(float(loss(features, None)))  # without it the same loss runs


def test_st6_import_forms_resolve_under_run(tmp_path):
    script = tmp_path / "script.py"
    script.write_text(
        "from sentence_transformers.multi_vector_encoder.modules import HierarchicalTokenPooling, BaseTokenPooling\n"
        "from sentence_transformers.multi_vector_encoder.modules.token_pooling import LambdaTokenPooling\n"
        "import mlx_hf_bridge.modules.token_pooling as ours\n"
        "assert (HierarchicalTokenPooling, BaseTokenPooling, LambdaTokenPooling) == (\n"
        "    ours.HierarchicalTokenPooling, ours.BaseTokenPooling, ours.LambdaTokenPooling)\n"
        "print('RESOLVED')\n"
    )
    proc = subprocess.run([sys.executable, "-m", "mlx_hf_bridge", "run", str(script)], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert "RESOLVED" in proc.stdout, proc.stderr[-3000:]


def test_append_adds_a_module_as_st6(st6_dir):
    """``model.append(pooling)`` (torch's nn.Sequential spelling ST 6 scripts use) gives the model ST 6.2
    saved with that module, and refuses a module kind MultiVectorEncoder does not run."""
    saved = MultiVectorEncoder(str(st6_dir / "pool2-default"))
    model = MultiVectorEncoder(modules=list(saved)[:-1])
    assert model.append(saved[-1]) is model and len(model) == len(saved)
    assert_same(bridge_outputs(model), {k: v for k, v in np.load(st6_dir / "pool2-default.npz").items()
                                        if not k.startswith("pc")}, "appended")
    with pytest.raises(TypeError, match="append: .*HierarchicalTokenPooling"):
        model.append(object())
