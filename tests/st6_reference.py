"""The sentence-transformers 6.2 side of tests/test_st6_layout*.py: the reference script (run in a
subprocess, so the MLX process never imports the torch library it is compared with), shared texts,
output comparison and the builders of older-format folders."""

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

TOL = 1e-5
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
        e = model.encode(spec["documents"], convert_to_numpy=True)  # no task: no task length, document mask
        arrays = {f"q{i}": x for i, x in enumerate(q)} | {f"d{i}": x for i, x in enumerate(d)} | {f"e{i}": x for i, x in enumerate(e)}
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
        # keep_only_token_ids (documents scored on a few ids; one document keeps none: ST 6's -1e9),
        # a skiplist word that is not one vocab token (dropped)
        "keep-only-ids": lambda: ([
            Transformer(bert, query_expansion={"strategy": "fixed", "length": 8}),
            token_dense(32, 16), MultiVectorMask(
                skiplist_words=[".", "notonevocabtoken"],
                keep_only_token_ids=AutoTokenizer.from_pretrained(bert).convert_tokens_to_ids(["a", "doc", "another", "document"])),
            Normalize(module_input_name="token_embeddings")], None, None),
    }
    for seed, (name, build) in enumerate(VARIANTS.items()):
        torch.manual_seed(seed)
        modules, prompts, similarity = build()
        model = MultiVectorEncoder(modules=modules, prompts=prompts, similarity_fn_name=similarity, device="cpu")
        model.save_pretrained(os.path.join(out, name))
        outputs(model, name)
        if name == "fixed-attend-prompts-skiplist":  # encode(output_value=None): each text's raw features
            raw = model.encode_query(spec["queries"][:2], output_value=None)
            np.savez(os.path.join(out, "raw-features.npz"),
                     **{f"{i}/{k}": v.numpy() for i, item in enumerate(raw) for k, v in item.items() if torch.is_tensor(v)})
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
    "keep-only-ids",
]


def run_st6(spec: dict):
    import sentence_transformers

    if int(sentence_transformers.__version__.split(".")[0]) < 6:  # the st6 marker skips these elsewhere
        pytest.skip("needs sentence-transformers 6 (runs in .venv-st6)")
    python = sys.executable
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("PYTHONPATH", None)  # the reference never sees the bridge
    spec = {"queries": QUERIES, "documents": DOCUMENTS, **spec}
    proc = subprocess.run([python, "-c", REFERENCE, json.dumps(spec)], capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, f"ST 6 reference failed:\n{proc.stderr[-4000:]}"


def bridge_outputs(model) -> dict:
    q = model.encode_query(QUERIES, convert_to_numpy=True)
    d = model.encode_document(DOCUMENTS, convert_to_numpy=True)
    e = model.encode(DOCUMENTS, convert_to_numpy=True)
    arrays = {f"q{i}": x for i, x in enumerate(q)} | {f"d{i}": x for i, x in enumerate(d)} | {f"e{i}": x for i, x in enumerate(e)}
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


def edit_json(path: Path, edit):
    data = json.loads(path.read_text())
    data = edit(data) or data
    path.write_text(json.dumps(data))



def hand_written_st5_folder(folder: Path, tiny_bert_dir):
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


def stanford_folder(folder: Path, tiny_bert_dir):
    from safetensors.numpy import load_file, save_file

    shutil.copytree(tiny_bert_dir, folder)
    state = {f"bert.{k}": v for k, v in load_file(str(tiny_bert_dir / "model.safetensors")).items()}
    state["linear.weight"] = np.random.default_rng(4).normal(0, 0.1, (24, 32)).astype(np.float32)
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    edit_json(folder / "config.json", lambda c: c.update(architectures=["HF_ColBERT"]))
    (folder / "artifact.metadata").write_text(json.dumps({"query_maxlen": 20, "doc_maxlen": 24, "attend_to_mask_tokens": False}))
    return folder
