"""Loading and saving by layout: sentence-transformers 6.2 multi-vector folders read exactly
(``MultiVectorEncoder`` vs real ST 6.2 on torch), saved in ST 6's layout, and every layout the bridge
cannot read exactly refused by name before weights are read.

The ST 6 side runs in a subprocess with an interpreter that has sentence-transformers >= 6 (this one,
or ``.venv-st6/bin/python``): the main environment pins ST 5.3 for PyLate 1.6, and the MLX process
never imports the torch libraries it is compared with.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from mlx_hf_bridge.modules.layout import LayoutError
from mlx_hf_bridge.modules.transformer import UnsupportedOption
from mlx_hf_bridge.pylate import models as pylate_models
from mlx_hf_bridge.sentence_transformers import MultiVectorEncoder
from mlx_hf_bridge.sentence_transformers.multi_vector_encoder import MultiVectorEncoder as NestedMultiVectorEncoder

TOL = 1e-5
REPO = Path(__file__).resolve().parents[1]
QUERIES = [
    "hello world",
    "what is a longer query, with many many words in it that runs past the expansion length?",
    "  spaced  query with a trailing dot. ",
    "x",
]
DOCUMENTS = [
    "a doc, here.",
    "another document with punctuation! and more; text? It is long enough to be cut at the document length, "
    "which the saved Transformer sets for some of the variants below.",
    "short",
]


def st6_python() -> str | None:
    """An interpreter with sentence-transformers >= 6: this one, else the reference venv."""
    try:
        import sentence_transformers

        if int(sentence_transformers.__version__.split(".")[0]) >= 6:
            return sys.executable
    except ImportError:
        pass
    candidate = REPO / ".venv-st6" / "bin" / "python"
    return str(candidate) if candidate.exists() else None


# The ST 6 side. ``build``: tiny BERT / ModernBERT folders written by transformers, one ST 6
# MultiVectorEncoder folder per variant (saved by ST 6 itself) and its outputs; ``encode``: load
# folders with ST 6 and write their outputs. Outputs: per-text arrays, similarity and pairwise scores.
MAXSIM_INPUTS = textwrap.dedent(
    """
    def maxsim_inputs():
        rng = np.random.default_rng(7)
        a = rng.normal(size=(3, 5, 4)).astype(np.float32)
        b = rng.normal(size=(4, 6, 4)).astype(np.float32)
        a_mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], dtype=np.float32)
        b_mask = np.array([[1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1], [0, 0, 0, 0, 0, 0], [1, 0, 1, 0, 1, 0]], dtype=bool)
        zero_rows = b.copy()
        zero_rows[0, 3:] = 0.0
        return {"masked": (a, b, a_mask, b_mask), "unmasked": (a, b, None, None), "zero-rows": (a, zero_rows, None, None)}
    """
)
REFERENCE = MAXSIM_INPUTS + textwrap.dedent(
    r'''
    import json, os, string, sys
    os.environ["HF_HUB_OFFLINE"] = "1"
    import numpy as np, torch
    from transformers import AutoModel, AutoTokenizer, BertConfig, ModernBertConfig
    from sentence_transformers import MultiVectorEncoder
    from sentence_transformers.base.modules import Dense, Normalize, Transformer
    from sentence_transformers.multi_vector_encoder.modules import MultiVectorMask

    spec = json.loads(sys.argv[1])
    out = spec["out"]

    def outputs(model, name):
        q = model.encode_query(spec["queries"], convert_to_numpy=True)
        d = model.encode_document(spec["documents"], convert_to_numpy=True)
        arrays = {f"q{i}": x for i, x in enumerate(q)} | {f"d{i}": x for i, x in enumerate(d)}
        arrays["scores"] = model.similarity(q, d).numpy()
        arrays["pairwise"] = model.similarity_pairwise(q[:3], d[:3]).numpy()
        np.savez(os.path.join(out, name + ".npz"), **arrays)

    def tiny(path, config, tokenizer_src):
        torch.manual_seed(0)
        AutoModel.from_config(config).eval().save_pretrained(path)
        AutoTokenizer.from_pretrained(tokenizer_src).save_pretrained(path)
        return path

    if spec["mode"] == "encode":
        for name, folder in spec["folders"].items():
            outputs(MultiVectorEncoder(folder, device="cpu"), name)
        sys.exit(0)

    bert = tiny(os.path.join(out, "tiny-bert"), BertConfig(
        vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        max_position_embeddings=512, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0), spec["bert_tokenizer"])
    modernbert = tiny(os.path.join(out, "tiny-modernbert"), ModernBertConfig(
        vocab_size=50368, hidden_size=32, intermediate_size=48, num_hidden_layers=4, num_attention_heads=2,
        local_attention=16, global_attn_every_n_layers=3, max_position_embeddings=1024, pad_token_id=50283,
        cls_token_id=50281, sep_token_id=50282, bos_token_id=50281, eos_token_id=50282), spec["modernbert_tokenizer"])
    punctuation = list(string.punctuation)

    def token_dense(n_in, n_out, **kw):
        return Dense(n_in, n_out, module_input_name="token_embeddings", **{"bias": False, "activation_function": None, **kw})

    VARIANTS = {
        # classic ColBERT: fixed 8-token expansion attended, prompts, punctuation skiplist
        "fixed-attend-prompts-skiplist": lambda: ([
            Transformer(bert, query_expansion={"strategy": "fixed", "attend": True, "length": 8}, document_length=24),
            token_dense(32, 16), MultiVectorMask(skiplist_words=punctuation),
            Normalize(module_input_name="token_embeddings")], {"query": "query: ", "document": "passage: "}, None),
        # expansion not attended, no prompts, no skiplist (ST 6's default MultiVectorMask)
        "fixed-noattend-no-skiplist": lambda: ([
            Transformer(bert, query_expansion={"strategy": "fixed", "length": 8}),
            token_dense(32, 16), MultiVectorMask(), Normalize(module_input_name="token_embeddings")], None, None),
        # 'min': long queries pass untruncated up to query_length; a second Dense; meanmaxsim saved
        "min-lengths-two-dense": lambda: ([
            Transformer(bert, query_expansion={"strategy": "min", "length": 8}, query_length=16, document_length=20),
            token_dense(32, 24, bias=True, activation_function=torch.nn.Tanh()), token_dense(24, 16),
            MultiVectorMask(skiplist_words=[",", "."]), Normalize(module_input_name="token_embeddings")],
            {"query": "q: ", "document": "d: ", "other": "x: "}, "meanmaxsim"),
        # no expansion, no Normalize (unnormalised vectors), skiplist on queries too, explicit expansion-free query cap
        "no-expansion-no-normalize": lambda: ([
            Transformer(bert, query_length=12),
            token_dense(32, 16), MultiVectorMask(skiplist_words=punctuation, skiplist_tasks=["query", "document"])],
            None, None),
        # an explicit expansion token, no Dense at all (vectors are the backbone's)
        "token-no-dense": lambda: ([
            Transformer(bert, query_expansion={"strategy": "fixed", "length": 10, "token": "[unused0]"}),
            MultiVectorMask(skiplist_words=punctuation), Normalize(module_input_name="token_embeddings")],
            {"query": "[Q] ", "document": "[D] "}, None),
        # ModernBERT (sliding window), 'min' expansion, residual Tanh Dense with bias
        "modernbert-min-residual": lambda: ([
            Transformer(modernbert, query_expansion={"strategy": "min", "attend": True, "length": 12}),
            token_dense(32, 16, bias=True, activation_function=torch.nn.Tanh(), use_residual=True),
            MultiVectorMask(skiplist_words=punctuation), Normalize(module_input_name="token_embeddings")],
            {"query": "search_query: ", "document": "search_document: "}, None),
    }
    for seed, (name, build) in enumerate(VARIANTS.items()):
        torch.manual_seed(seed)
        modules, prompts, similarity = build()
        model = MultiVectorEncoder(modules=modules, prompts=prompts, similarity_fn_name=similarity, device="cpu")
        model.save_pretrained(os.path.join(out, name))
        outputs(model, name)
    # ST 6's default pipeline for a plain HF folder (random projection): its layout, not its values
    MultiVectorEncoder(bert, device="cpu").save_pretrained(os.path.join(out, "plain-hf"))
    # ST 6's scoring functions on raw inputs: negative similarities, masks, an empty document, zero rows
    from sentence_transformers.util import similarity as sim
    cases = {}
    for name, (a, b, a_mask, b_mask) in maxsim_inputs().items():
        t = lambda x: None if x is None else torch.from_numpy(x)
        cases[name] = sim.maxsim(t(a), t(b), t(a_mask), t(b_mask)).numpy()
        cases[name + "-mean"] = sim.mean_maxsim(t(a), t(b), t(a_mask), t(b_mask)).numpy()
        n = min(len(a), len(b))
        cases[name + "-pairwise"] = sim.maxsim_pairwise(
            t(a[:n]), t(b[:n]), None if a_mask is None else t(a_mask[:n]), None if b_mask is None else t(b_mask[:n])).numpy()
    np.savez(os.path.join(out, "maxsim-cases.npz"), **cases)
    '''
)
VARIANTS = [
    "fixed-attend-prompts-skiplist",
    "fixed-noattend-no-skiplist",
    "min-lengths-two-dense",
    "no-expansion-no-normalize",
    "token-no-dense",
    "modernbert-min-residual",
]


def run_st6(spec: dict):
    python = st6_python()
    if python is None:
        pytest.skip("needs sentence-transformers >= 6: run scripts/setup.sh (it builds .venv-st6)")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("PYTHONPATH", None)  # the reference never sees the bridge
    spec = {"queries": QUERIES, "documents": DOCUMENTS, **spec}
    proc = subprocess.run([python, "-c", REFERENCE, json.dumps(spec)], capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, f"ST 6 reference failed:\n{proc.stderr[-4000:]}"


@pytest.fixture(scope="module")
def st6_dir(tmp_path_factory, minilm_dir, modernbert_tokenizer_dir):
    out = tmp_path_factory.mktemp("st6-reference")
    run_st6({"mode": "build", "out": str(out), "bert_tokenizer": str(minilm_dir),
             "modernbert_tokenizer": str(modernbert_tokenizer_dir)})
    return out


def bridge_outputs(model) -> dict:
    q = model.encode_query(QUERIES, convert_to_numpy=True)
    d = model.encode_document(DOCUMENTS, convert_to_numpy=True)
    arrays = {f"q{i}": x for i, x in enumerate(q)} | {f"d{i}": x for i, x in enumerate(d)}
    arrays["scores"] = np.array(model.similarity(q, d))
    arrays["pairwise"] = np.array(model.similarity_pairwise(q[:3], d[:3]))
    return arrays


def assert_same_outputs(got: dict, ref, label: str):
    ref = {k: ref[k] for k in ref.files} if hasattr(ref, "files") else ref
    assert sorted(got) == sorted(ref), label
    for key in sorted(got):
        assert got[key].shape == ref[key].shape, f"{label} {key}: shape {got[key].shape} vs ST 6 {ref[key].shape}"
        err = float(np.abs(got[key] - ref[key]).max()) if got[key].size else 0.0
        assert err <= TOL, f"{label} {key}: max|d| {err:.2e} > {TOL}"


def safetensors_files(folder: Path) -> dict:
    from safetensors.numpy import load_file

    return {str(p.relative_to(folder)): load_file(str(p)) for p in sorted(folder.rglob("*.safetensors"))}


# --- ST 6 folders read exactly ----------------------------------------------------------------------
@pytest.mark.parametrize("variant", VARIANTS)
def test_st6_saved_folder_encodes_as_st6(st6_dir, variant):
    model = MultiVectorEncoder(str(st6_dir / variant))
    assert_same_outputs(bridge_outputs(model), np.load(st6_dir / f"{variant}.npz"), variant)


def test_settings_read_from_the_folder(st6_dir):
    model = MultiVectorEncoder(str(st6_dir / "min-lengths-two-dense"))
    assert model.prompts == {"query": "q: ", "document": "d: ", "other": "x: "}
    assert model.similarity_fn_name == "meanmaxsim"
    assert model[0].query_expansion == {"strategy": "min", "attend": False, "token": None, "length": 8}
    assert (model[0].query_length, model[0].document_length) == (16, 20)
    assert [type(m).__name__ for m in model] == ["Transformer", "Dense", "Dense", "MultiVectorMask", "Normalize"]
    # the caller's settings win over the saved ones, as in ST 6
    override = MultiVectorEncoder(str(st6_dir / "min-lengths-two-dense"), prompts={"query": ""}, similarity_fn_name="maxsim")
    assert override.prompts["query"] == "" and override.prompts["document"] == "d: "
    assert override.similarity_fn_name == "maxsim"


def test_the_folder_that_loaded_silently_wrong(st6_dir):
    """Issue 12: PyLate's ColBERT read this ST 6 folder with [Q]/[D], 32-token expansion and the
    punctuation skiplist (32 query rows instead of 8, scores ~5x off). Now ColBERT refuses it and names
    MultiVectorEncoder, which reads ST 6's settings: 8 query rows and ST 6's scores."""
    folder = st6_dir / "fixed-noattend-no-skiplist"
    with pytest.raises(LayoutError, match="MultiVectorEncoder") as err:
        pylate_models.ColBERT(str(folder))
    assert "sentence-transformers 6" in str(err.value)
    ref = np.load(st6_dir / "fixed-noattend-no-skiplist.npz")
    model = MultiVectorEncoder(str(folder))
    queries = model.encode_query(QUERIES, convert_to_numpy=True)
    assert [q.shape[0] for q in queries] == [8, 8, 8, 8] == [ref[f"q{i}"].shape[0] for i in range(4)]
    scores = np.array(model.similarity(queries, model.encode_document(DOCUMENTS, convert_to_numpy=True)))
    assert np.abs(scores - ref["scores"]).max() <= TOL


def test_plain_hf_gets_st6_default_pipeline(st6_dir):
    model = MultiVectorEncoder(str(st6_dir / "tiny-bert"))
    assert [type(m).__name__ for m in model] == ["Transformer", "Dense", "MultiVectorMask", "Normalize"]
    assert model[0].query_expansion is None and model[2].skiplist_words == [] and model.prompts == {"query": "", "document": ""}
    assert (model[1].in_features, model[1].out_features, model[1].bias) == (32, 128, False)


# --- bridge saves load in real ST 6 ---------------------------------------------------------------
def test_saved_layout_files_match_st6(st6_dir, tmp_path):
    for variant in [*VARIANTS, "plain-hf"]:
        source = st6_dir / variant
        if variant == "plain-hf":
            MultiVectorEncoder(str(st6_dir / "tiny-bert")).save_pretrained(str(tmp_path / variant))
        else:
            MultiVectorEncoder(str(source)).save_pretrained(str(tmp_path / variant))
        saved = tmp_path / variant
        for name in ["modules.json", "sentence_bert_config.json"] + [
            str(p.relative_to(source)) for p in source.glob("[0-9]_*/config.json")
        ]:
            assert json.loads((saved / name).read_text()) == json.loads((source / name).read_text()), f"{variant}/{name}"
        ours = json.loads((saved / "config_sentence_transformers.json").read_text())
        theirs = json.loads((source / "config_sentence_transformers.json").read_text())
        assert {k: v for k, v in ours.items() if k != "__version__"} == {k: v for k, v in theirs.items() if k != "__version__"}
        if variant != "plain-hf":  # the plain-HF projection is random on both sides
            ref_tensors, got_tensors = safetensors_files(source), safetensors_files(saved)
            assert sorted(got_tensors) == sorted(ref_tensors)
            for file, tensors in ref_tensors.items():
                assert sorted(got_tensors[file]) == sorted(tensors), file
                for key, value in tensors.items():
                    assert got_tensors[file][key].dtype == value.dtype and np.array_equal(got_tensors[file][key], value), key


def test_bridge_saved_folders_load_in_st6(st6_dir, tmp_path, tiny_modernbert_dir):
    """Round trip (ST 6 folder -> bridge -> save -> ST 6) and a model built from modules in the bridge."""
    from mlx_hf_bridge.modules import Dense, MultiVectorMask, Normalize, Transformer

    folders, expected = {}, {}
    for variant in VARIANTS:
        folders[variant] = str(tmp_path / variant)
        MultiVectorEncoder(str(st6_dir / variant)).save_pretrained(folders[variant])
        expected[variant] = np.load(st6_dir / f"{variant}.npz")
    built = MultiVectorEncoder(
        modules=[
            Transformer(str(tiny_modernbert_dir), query_expansion={"strategy": "fixed", "length": 9}, document_length=30),
            Dense(32, 8, bias=False, activation_function=None, module_input_name="token_embeddings"),
            MultiVectorMask(skiplist_words=[".", ","]),
            Normalize(module_input_name="token_embeddings"),
        ],
        prompts={"query": "query: "},
    )
    folders["bridge-built"] = str(tmp_path / "bridge-built")
    built.save_pretrained(folders["bridge-built"])
    expected["bridge-built"] = bridge_outputs(built)
    out = tmp_path / "st6-outputs"
    out.mkdir()
    run_st6({"mode": "encode", "out": str(out), "folders": folders})
    for name, ref in expected.items():
        got = np.load(out / f"{name}.npz")
        assert_same_outputs({k: got[k] for k in got.files}, ref, name)


def test_save_leaves_other_files_and_facade_names(st6_dir, tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    MultiVectorEncoder(str(st6_dir / "token-no-dense")).save_pretrained(str(target))
    assert (target / "notes.txt").read_text() == "mine" and (target / "modules.json").exists()
    assert NestedMultiVectorEncoder is MultiVectorEncoder


def test_maxsim_functions_equal_st6(st6_dir):
    """ST 6's masking: masked document tokens are left out of the max (negative similarities
    survive), an empty document scores -1e9, 3D inputs without masks drop all-zero rows."""
    from mlx_hf_bridge.colbert import scores

    namespace = {"np": np}
    exec(MAXSIM_INPUTS, namespace)
    ref = np.load(st6_dir / "maxsim-cases.npz")
    for name, (a, b, a_mask, b_mask) in namespace["maxsim_inputs"]().items():
        n = min(len(a), len(b))
        got = {
            name: scores.maxsim(a, b, a_mask, b_mask),
            name + "-mean": scores.mean_maxsim(a, b, a_mask, b_mask),
            name + "-pairwise": scores.maxsim_pairwise(
                a[:n], b[:n], None if a_mask is None else a_mask[:n], None if b_mask is None else b_mask[:n]
            ),
        }
        for key, value in got.items():
            assert np.abs(np.array(value) - ref[key]).max() <= TOL, key
    assert ref["masked"][:, 2].max() == -1e9  # the empty document, as ST 6 scores it


# --- refused layouts ------------------------------------------------------------------------------
def _st6_copy(st6_dir, tmp_path, variant="fixed-attend-prompts-skiplist", break_weights=True):
    folder = tmp_path / "model"
    shutil.copytree(st6_dir / variant, folder)
    if break_weights:  # proves each refusal comes before any weights are read
        (folder / "model.safetensors").write_bytes(b"not read")
    return folder


def _edit_json(path: Path, edit):
    data = json.loads(path.read_text())
    data = edit(data) or data
    path.write_text(json.dumps(data))


def test_unknown_module_type_is_named(st6_dir, tmp_path):
    folder = _st6_copy(st6_dir, tmp_path)
    pooling = "sentence_transformers.multi_vector_encoder.modules.token_pooling.HierarchicalTokenPooling"
    _edit_json(folder / "modules.json", lambda m: m[2].update(type=pooling))
    for load in (MultiVectorEncoder, pylate_models.ColBERT):
        with pytest.raises(LayoutError, match="HierarchicalTokenPooling") as err:
            load(str(folder))
        assert "Supported module types" in str(err.value) and "MultiVectorMask" in str(err.value)


def test_mixed_layout_is_refused(st6_dir, tmp_path):
    folder = _st6_copy(st6_dir, tmp_path)
    _edit_json(folder / "modules.json", lambda m: m[1].update(type="sentence_transformers.models.Dense"))
    for load in (MultiVectorEncoder, pylate_models.ColBERT):
        with pytest.raises(LayoutError, match="mixes sentence-transformers 6 module types"):
            load(str(folder))


def test_listed_module_folder_missing(st6_dir, tmp_path):
    folder = _st6_copy(st6_dir, tmp_path)
    shutil.rmtree(folder / "1_Dense")
    with pytest.raises(LayoutError, match="1_Dense.*does not exist"):
        MultiVectorEncoder(str(folder))


def test_unlisted_module_folder_present_st6(st6_dir, tmp_path):
    folder = _st6_copy(st6_dir, tmp_path)
    _edit_json(folder / "modules.json", lambda m: [e for e in m if e["path"] != "1_Dense"])
    with pytest.raises(LayoutError, match="1_Dense.*does not list it"):
        MultiVectorEncoder(str(folder))


def test_pylate_folder_without_its_dense_entry(tmp_path, tiny_bert_dir):
    """Issue 19: the 1_Dense entry gone from modules.json loaded a fresh random projection."""
    folder = tmp_path / "pylate"
    pylate_models.ColBERT(str(tiny_bert_dir)).save(str(folder))
    pylate_models.ColBERT(str(folder))  # intact: loads
    _edit_json(folder / "modules.json", lambda m: [e for e in m if e["path"] != "1_Dense"])
    (folder / "model.safetensors").write_bytes(b"not read")
    with pytest.raises(LayoutError, match="1_Dense.*does not list it"):
        pylate_models.ColBERT(str(folder))


def test_pylate_listed_dense_missing(tmp_path, tiny_bert_dir):
    folder = tmp_path / "pylate"
    pylate_models.ColBERT(str(tiny_bert_dir)).save(str(folder))
    shutil.rmtree(folder / "1_Dense")
    with pytest.raises(LayoutError, match="1_Dense.*does not exist"):
        pylate_models.ColBERT(str(folder))


# --- older folders, converted as ST 6.2 converts them ---------------------------------------------
def _hand_written_st5_folder(folder: Path, tiny_bert_dir):
    """A dense sentence-transformers 5 folder (Transformer, Pooling, Dense Tanh + bias, Normalize) in
    ST 5's file format; ST 6 reads these same files on its side of the comparison."""
    from safetensors.numpy import save_file

    shutil.copytree(tiny_bert_dir, folder)
    rng = np.random.default_rng(3)
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 32, "pooling_mode_mean_tokens": True}))
    (folder / "2_Dense").mkdir()
    (folder / "2_Dense" / "config.json").write_text(json.dumps(
        {"in_features": 32, "out_features": 24, "bias": True, "activation_function": "torch.nn.modules.activation.Tanh"}))
    save_file({"linear.weight": rng.normal(0, 0.2, (24, 32)).astype(np.float32),
               "linear.bias": rng.normal(0, 0.1, (24,)).astype(np.float32)}, str(folder / "2_Dense" / "model.safetensors"))
    types = ["Transformer", "Pooling", "Dense", "Normalize"]
    paths = ["", "1_Pooling", "2_Dense", "3_Normalize"]
    (folder / "modules.json").write_text(json.dumps(
        [{"idx": i, "name": str(i), "path": p, "type": f"sentence_transformers.models.{t}"} for i, (t, p) in enumerate(zip(types, paths))]))
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 64, "do_lower_case": False}))
    (folder / "config_sentence_transformers.json").write_text(json.dumps(
        {"prompts": {"query": "query: ", "document": ""}, "default_prompt_name": None, "similarity_fn_name": "cosine"}))
    return folder


def _stanford_folder(folder: Path, tiny_bert_dir):
    from safetensors.numpy import load_file, save_file

    shutil.copytree(tiny_bert_dir, folder)
    state = {f"bert.{k}": v for k, v in load_file(str(tiny_bert_dir / "model.safetensors")).items()}
    state["linear.weight"] = np.random.default_rng(4).normal(0, 0.1, (24, 32)).astype(np.float32)
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    _edit_json(folder / "config.json", lambda c: c.update(architectures=["HF_ColBERT"]))
    (folder / "artifact.metadata").write_text(json.dumps({"query_maxlen": 20, "doc_maxlen": 24, "attend_to_mask_tokens": False}))
    return folder


@pytest.fixture(scope="module")
def legacy_dirs(tmp_path_factory, tiny_bert_dir, tiny_modernbert_dir):
    """PyLate folders (PyLate's layout, written by the bridge's ColBERT: equal to PyLate's own in
    test_colbert_parity), a sentence-transformers 5 folder and a Stanford checkpoint, with ST 6's outputs."""
    root = tmp_path_factory.mktemp("legacy")
    folders = {
        "pylate-default": (tiny_bert_dir, {}),
        "pylate-attend-lengths": (tiny_bert_dir, dict(query_length=12, document_length=20, attend_to_expansion_tokens=True)),
        "pylate-no-expansion": (tiny_bert_dir, dict(do_query_expansion=False, query_length=16, skiplist_words=["."])),
        "pylate-modernbert": (tiny_modernbert_dir, dict(query_length=12, document_length=40)),
    }
    paths = {}
    for name, (source, kwargs) in folders.items():
        pylate_models.ColBERT(str(source), **kwargs).save(str(root / name))
        paths[name] = str(root / name)
    paths["st5-dense-tanh"] = str(_hand_written_st5_folder(root / "st5-dense-tanh", tiny_bert_dir))
    paths["stanford"] = str(_stanford_folder(root / "stanford", tiny_bert_dir))
    out = root / "st6-outputs"
    out.mkdir()
    run_st6({"mode": "encode", "out": str(out), "folders": paths})
    return paths, out


@pytest.mark.parametrize(
    "name", ["pylate-default", "pylate-attend-lengths", "pylate-no-expansion", "pylate-modernbert", "st5-dense-tanh", "stanford"]
)
def test_older_folders_convert_as_st6_does(legacy_dirs, name):
    paths, out = legacy_dirs
    model = MultiVectorEncoder(paths[name])
    assert_same_outputs(bridge_outputs(model), np.load(out / f"{name}.npz"), name)


def test_pylate_conversion_settings(legacy_dirs):
    paths, _ = legacy_dirs
    model = MultiVectorEncoder(paths["pylate-attend-lengths"])
    assert model.prompts == {"query": "[Q] ", "document": "[D] "}
    assert model[0].query_expansion == {"strategy": "fixed", "attend": True, "token": None, "length": 12}
    assert model[0].document_length == 20 and model[0].query_length is None
    assert [type(m).__name__ for m in model] == ["Transformer", "Dense", "MultiVectorMask", "Normalize"]
    assert model[2].skiplist_words == list(__import__("string").punctuation)
    assert MultiVectorEncoder(paths["pylate-no-expansion"])[0].query_expansion is None


@pytest.mark.parametrize(
    "file, edit, match",
    [
        ("sentence_bert_config.json", lambda c: c.update(processing_kwargs={"text": {"max_length": 5}}), "processing_kwargs"),
        ("sentence_bert_config.json", lambda c: c.update(transformer_task="text-generation"), "transformer_task"),
        ("sentence_bert_config.json", lambda c: c.update(unknown_knob=1), "unknown_knob"),
        ("sentence_bert_config.json", lambda c: c.update(query_expansion={"strategy": "max", "length": 8}), "strategy"),
        ("1_Dense/config.json", lambda c: c.update(module_input_name="sentence_embedding"), "sentence_embedding"),
        ("1_Dense/config.json", lambda c: c.update(activation_function="my.custom.Act"), "my.custom.Act"),
        ("2_MultiVectorMask/config.json", lambda c: c.update(pool_factor=2), "pool_factor"),
        ("config_sentence_transformers.json", lambda c: c.update(model_type="SentenceTransformer"), "SentenceTransformer"),
    ],
)
def test_st6_options_the_bridge_cannot_reproduce(st6_dir, tmp_path, file, edit, match):
    folder = _st6_copy(st6_dir, tmp_path, break_weights=False)
    _edit_json(folder / file, edit)
    with pytest.raises(ValueError, match=match):
        MultiVectorEncoder(str(folder))


def test_constructor_checks_like_st6(tiny_bert_dir):
    from mlx_hf_bridge.modules import Transformer

    with pytest.raises(ValueError, match="query_length=4 is smaller"):
        Transformer(str(tiny_bert_dir), query_length=4, query_expansion={"strategy": "fixed", "length": 8})
    with pytest.raises(UnsupportedOption, match="transformer_task"):
        Transformer(str(tiny_bert_dir), transformer_task="sequence-classification")
    model = MultiVectorEncoder(str(tiny_bert_dir))
    with pytest.raises(ValueError, match="convert_to_tensor"):
        model.encode_query(["a"], convert_to_tensor=True)
    with pytest.raises(ValueError, match="only supports"):
        model.similarity_fn_name = "cosine"
    with pytest.raises(TypeError, match="expected a string"):
        model.encode_document(["ok", 3])
