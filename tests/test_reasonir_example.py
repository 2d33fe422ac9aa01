"""examples/reasonir: data preparation, config, loading, and end-to-end runs on real PyLate (torch), on MLX
(the same build.py with the other import block), and the torch file under ``mlx-hf-bridge run``.

The end-to-end runs use a tiny ModernBERT (hidden 32, 2 layers, 4 heads) with the real ModernBERT tokenizer,
the synthetic ReasonIR/BRIGHT folders from ``make_synthetic.py``, a few steps and tiny lengths.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "reasonir"
sys.path.insert(0, str(EXAMPLE))

import make_synthetic  # noqa: E402
import prepare_dataset as prep  # noqa: E402
from training import data as D  # noqa: E402
from training.config import TrainingConfig  # noqa: E402


def _env(tmp_path, **extra):
    env = dict(os.environ)
    env.update({"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
                "HF_DATASETS_CACHE": str(tmp_path / "hf-cache"),
                "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))})
    env.update(extra)
    return env


def _run(cmd, tmp_path, timeout=300, **env):
    result = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, cwd=tmp_path,
                            env=_env(tmp_path, **env), timeout=timeout)
    assert result.returncode == 0, f"rc={result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    return result


# --- prepare_dataset ---------------------------------------------------------------------------------
def test_query_lists_become_one_string():
    assert prep.as_text_query(["Instruct: find docs.", "why is the sky blue"]) == "Instruct: find docs. why is the sky blue"
    assert prep.as_text_query("already text") == "already text"
    assert prep.as_text_query(["", "no instruction"]) == " no instruction"  # PyLate: " ".join(query)


def test_first_pair_shapes():
    assert prep.first_pair([["i", "a"], ["j", "b"]]) == ["i", "a"]
    assert prep.first_pair(["i", "a"]) == ["i", "a"]
    assert prep.first_pair("text") == ["", "text"]
    assert prep.first_pair([]) is None and prep.first_pair(None) is None
    with pytest.raises(ValueError, match="pairs"):
        prep.first_pair([["a", "b", "c"]], "pos")


def test_positive_ids_are_resolved_and_negatives_never_are():
    id2doc = {"bio/1.txt": "Mitochondria make ATP.", "bio/2.txt": "Other text."}
    row = {"query": ["Find passages.", "what makes ATP"], "pos": [["", "bio/1.txt"], ["", "bio/2.txt"]],
           "neg": [["neg instr", "bio/2.txt"]], "extra": 1}
    out = prep.prepare_row(row, id2doc)
    assert out == {"query": "Find passages. what makes ATP", "pos": ["", "Mitochondria make ATP."],
                   "neg": ["neg instr", "bio/2.txt"]}  # the negative equals an id and stays text


def test_missing_positive_id_leaves_empty_text_and_is_counted():
    stats = {}
    out = prep.prepare_row({"query": "q", "pos": [["i", "nope"]], "neg": [["", "n"]]}, {"x": "y"}, stats)
    assert out["pos"] == ["i", ""] and stats == {"missing_positive": 1}
    # without a documents table, the positive is taken as text already
    assert prep.prepare_row({"query": "q", "pos": [["i", "doc text"]], "neg": "n"}, None)["pos"] == ["i", "doc text"]


def test_id2doc_spans_every_bright_split_and_can_be_restricted():
    from datasets import Dataset, DatasetDict

    docs = DatasetDict({
        "biology": Dataset.from_dict({"id": ["b1", "b2"], "content": ["B1", "B2"]}),
        "robotics": Dataset.from_dict({"id": [3], "content": ["R3"]}),
    })
    assert prep.build_id2doc(docs) == {"b1": "B1", "b2": "B2", "3": "R3"}
    assert prep.build_id2doc(docs, keep={"b2"}) == {"b2": "B2"}
    with pytest.raises(ValueError, match="'id' and 'content'"):
        prep.build_id2doc(Dataset.from_dict({"doc": ["x"]}))


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    return make_synthetic.write(out, n_queries=24, docs_per_task=8)


def test_synthetic_data_has_the_raw_hub_shapes(synthetic):
    raw = D.load_table(str(synthetic["reasonir"]), "hq", "train")
    row = raw[0]
    assert isinstance(row["query"], list) and len(row["query"]) == 2
    assert isinstance(row["pos"], list) and len(row["pos"][0]) == 2 and row["pos"][0][1].endswith(".txt")
    assert isinstance(row["neg"][0][1], str)
    docs = D.load_table(str(synthetic["bright"]), "documents")
    assert set(docs) == {"biology", "earth_science", "economics"}
    assert docs["biology"].column_names == ["id", "content"]
    assert row["neg"][0][1] in set(docs["biology"]["id"])  # the trap row: a negative text equal to an id


def test_prepare_resolves_the_synthetic_set(synthetic, tmp_path):
    raw = D.load_table(str(synthetic["reasonir"]), "hq", "train")
    docs = D.load_table(str(synthetic["bright"]), "documents")
    prepared = prep.prepare(raw, docs)
    assert prepared.column_names == ["query", "pos", "neg"] and len(prepared) == 24
    id2doc = prep.build_id2doc(docs)
    for r, p in zip(raw, prepared):
        assert p["query"] == " ".join(r["query"])
        assert p["pos"] == [r["pos"][0][0], id2doc[r["pos"][0][1]]]
        assert p["neg"] == r["neg"][0]
    # the CLI writes save_to_disk / jsonl / parquet
    for out in (tmp_path / "disk", tmp_path / "p.jsonl", tmp_path / "p.parquet"):
        prep.main(["--data", str(synthetic["reasonir"]), "--documents", str(synthetic["bright"]), "--out", str(out)])
        back = D.load_table(str(out), split="train")
        assert back.column_names == ["query", "pos", "neg"] and back[0] == prepared[0]


# --- config ----------------------------------------------------------------------------------------
def test_config_defaults_are_the_recipe_and_derive_names():
    cfg = TrainingConfig()
    assert (cfg.model, cfg.epochs, cfg.lr, cfg.batch_size, cfg.mini_batch_size) == (
        "lightonai/GTE-ModernColBERT-v1", 3.0, 1e-5, 256, 32)
    assert (cfg.query_length, cfg.document_length, cfg.bf16, cfg.fp16, cfg.num_workers, cfg.seed) == (
        128, 8192, True, False, 8, 42)
    assert cfg.run_name == "GTE-ModernColBERT-v1-ReasonIR"
    assert Path(cfg.output_dir) == Path("output/GTE-ModernColBERT-v1/GTE-ModernColBERT-v1-ReasonIR")
    assert Path(cfg.final_dir) == Path(cfg.output_dir) / "final"
    local = TrainingConfig(model="/models/tiny-mb/", run_name="r1", output_root="/runs")
    assert local.model_short == "tiny-mb" and Path(local.output_dir) == Path("/runs/tiny-mb/r1")
    with pytest.raises(ValueError, match="bf16 and fp16"):
        TrainingConfig(bf16=True, fp16=True)
    with pytest.raises(ValueError, match="mini_batch_size"):
        TrainingConfig(mini_batch_size=0)


def test_cli_flags():
    import train

    cfg, backend = train.parse_args([])
    assert cfg == TrainingConfig() and backend is None
    cfg, _ = train.parse_args(["--fp16"])
    assert cfg.fp16 and not cfg.bf16
    cfg, backend = train.parse_args(["--no-bf16", "--cpu", "--sample", "--sample_size", "5", "--holdout", "0.1",
                                     "--run_name", "x", "--backend", "mlx", "--num_workers", "0"])
    assert (cfg.bf16, cfg.cpu, cfg.sample, cfg.sample_size, cfg.holdout, cfg.run_name, backend, cfg.num_workers) == (
        False, True, True, 5, 0.1, "x", "mlx", 0)
    with pytest.raises(SystemExit):
        train.parse_args(["--bf16", "--fp16"])


# --- data ------------------------------------------------------------------------------------------
def test_load_table_sources(tmp_path):
    from datasets import Dataset

    ds = Dataset.from_dict({"query": ["q"], "pos": [["", "p"]], "neg": [["", "n"]]})
    ds.save_to_disk(str(tmp_path / "disk"))
    ds.to_json(str(tmp_path / "d.jsonl"))
    ds.to_parquet(str(tmp_path / "d.parquet"))
    for spec in ("disk", "d.jsonl", "d.parquet"):
        assert D.load_table(str(tmp_path / spec), split="train")[0] == ds[0]
    with pytest.raises(ValueError, match="unsupported data file"):
        (tmp_path / "d.txt").write_text("x")
        D.load_table(str(tmp_path / "d.txt"))


def test_flatten_orders_columns_and_joins_pairs():
    from datasets import Dataset

    ds = Dataset.from_dict({"id": [1], "neg": [["ni", "nt"]], "query": ["q"], "pos": [["pi", "pt"]]})
    flat = D.flatten(ds)
    assert flat.column_names == ["query", "pos", "neg"]
    assert flat[0] == {"query": "q", "pos": "pi pt", "neg": "ni nt"}
    text = Dataset.from_dict({"query": ["q"], "pos": ["already"], "neg": ["text"]})
    assert D.flatten(text)[0] == {"query": "q", "pos": "already", "neg": "text"}
    with pytest.raises(ValueError, match="missing"):
        D.flatten(Dataset.from_dict({"query": ["q"]}))


def test_drop_empty_sample_and_holdout():
    from datasets import Dataset

    ds = Dataset.from_dict({"query": ["a", "b", "", "d"], "pos": ["p", " ", "p", "p"], "neg": ["n"] * 4})
    kept = D.drop_empty(ds)
    assert kept["query"] == ["a", "d"]
    big = Dataset.from_dict({"query": [f"q{i}" for i in range(20)], "pos": ["p"] * 20, "neg": ["n"] * 20})
    assert len(D.sample(big, 5, seed=1)) == 5 and D.sample(big, 5, 1)["query"] == D.sample(big, 5, 1)["query"]
    assert len(D.sample(big, 50, seed=1)) == 20
    train, held = D.split_holdout(big, 0.25, seed=0)
    assert (len(train), len(held)) == (15, 5)
    train, held = D.split_holdout(big, 3, seed=0)
    assert (len(train), len(held)) == (17, 3) and not set(train["query"]) & set(held["query"])
    assert D.split_holdout(big, 0, seed=0) == (big, None)
    with pytest.raises(ValueError, match="holdout"):
        D.split_holdout(big, 20, seed=0)


def test_load_training_data_prepares_raw_rows_on_the_fly(synthetic):
    cfg = TrainingConfig(dataset=str(synthetic["reasonir"]), documents=str(synthetic["bright"]), holdout=4,
                         sample=True, sample_size=20)
    train, held = D.load_training_data(cfg)
    assert (len(train), len(held)) == (16, 4)
    assert train.column_names == ["query", "pos", "neg"] and all(isinstance(v, str) for v in train[0].values())
    with pytest.raises(ValueError, match="--documents"):
        D.load_training_data(TrainingConfig(dataset=str(synthetic["reasonir"])))


# --- build.py: the two import blocks differ only in their module paths ------------------------------
def _import_blocks():
    source = (EXAMPLE / "training" / "build.py").read_text()
    torch_block = re.search(r'if BACKEND == "torch":\n((?:    .*\n)+)', source).group(1)
    mlx_block = re.search(r'elif BACKEND == "mlx":\n((?:    .*\n)+)', source).group(1)
    return torch_block.strip().splitlines(), mlx_block.strip().splitlines()


def test_mlx_block_is_the_torch_block_with_swapped_module_paths():
    torch_lines, mlx_lines = _import_blocks()
    assert len(torch_lines) == len(mlx_lines) == 2
    swapped = [line.replace("from pylate", "from mlx_hf_bridge.pylate")
               .replace("from sentence_transformers", "from mlx_hf_bridge.sentence_transformers") for line in torch_lines]
    assert swapped == mlx_lines
    readme = (EXAMPLE / "README.md").read_text()
    for line in torch_lines:
        assert "-" + line.strip() in readme
    for line in mlx_lines:
        assert "+" + line.strip() in readme
    # no other file of the example imports PyLate or sentence-transformers
    for path in EXAMPLE.rglob("*.py"):
        if path.name != "build.py":
            text = path.read_text()
            assert not re.search(r"^\s*(from|import) (pylate|sentence_transformers)\b", text, re.M), path


# --- end to end --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_modernbert(tmp_path_factory):
    import torch
    from transformers import AutoModel, AutoTokenizer, ModernBertConfig

    from mlx_hf_bridge import assets

    torch.manual_seed(0)
    config = ModernBertConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48, vocab_size=50368,
        max_position_embeddings=512, local_attention=16, global_attn_every_n_layers=3,
        pad_token_id=50283, cls_token_id=50281, sep_token_id=50282, bos_token_id=50281, eos_token_id=50282,
    )
    path = tmp_path_factory.mktemp("tiny-modernbert")
    AutoModel.from_config(config).save_pretrained(path)
    AutoTokenizer.from_pretrained(str(assets.modernbert_tokenizer_dir())).save_pretrained(path)
    return path


TINY = ["--epochs", "1", "--max_steps", "3", "--batch_size", "4", "--mini_batch_size", "2", "--query_length", "16",
        "--document_length", "32", "--num_workers", "0", "--no-bf16", "--cpu", "--save_steps", "2", "--lr", "1e-4"]


def _pipeline(tmp_path, backend_cmd, tiny_modernbert, extra=()):
    """make_synthetic -> prepare_dataset -> train; returns (summary, final folder)."""
    _run([sys.executable, EXAMPLE / "make_synthetic.py", "--out", "syn", "--queries", "24"], tmp_path)
    _run([sys.executable, EXAMPLE / "prepare_dataset.py", "--data", "syn/reasonir-data", "--documents",
          "syn/BRIGHT", "--out", "prepared"], tmp_path)
    result = _run([*backend_cmd, "--dataset", "prepared", "--model", tiny_modernbert, *TINY, *extra], tmp_path)
    line = [ln for ln in result.stdout.splitlines() if ln.startswith("[reasonir] {")][-1]
    summary = json.loads(line[len("[reasonir] "):])
    final = tmp_path / summary["final"]
    for name in ("modules.json", "config_sentence_transformers.json", "model.safetensors", "tokenizer.json"):
        assert (final / name).exists(), name
    assert (final / "1_Dense").is_dir()
    config = json.loads((final / "config_sentence_transformers.json").read_text())
    assert (config["query_length"], config["document_length"], config["skiplist_words"]) == (16, 32, [])
    short = Path(tiny_modernbert).name
    assert final == tmp_path / "output" / short / f"{short}-ReasonIR" / "final"
    assert summary["global_step"] == 3 and summary["training_loss"] > 0
    return summary, final


def _encode_with_real_pylate(final: Path):
    """The saved folder loads in real PyLate (torch, in a subprocess) and its query and document
    embeddings equal the bridge's on the same folder: max|Δ| <= 1e-5 (``mlx-hf-bridge verify``)."""
    from mlx_hf_bridge.verify import verify_folder

    report = verify_folder(final, tolerance=1e-5, timeout=300)
    assert report["kind"] == "colbert" and report["passed"], report
    assert all(r["max_abs_diff"] <= 1e-5 for r in report["results"].values()), report["results"]


@pytest.mark.slow  # ~30 s: the example on real PyLate (torch); the bridge run and its verify stay in CI
def test_end_to_end_on_real_pylate_torch(tmp_path, tiny_modernbert):
    summary, final = _pipeline(tmp_path, [sys.executable, EXAMPLE / "train.py", "--backend", "torch"],
                               tiny_modernbert, extra=["--holdout", "4", "--eval_steps", "2"])
    assert summary["backend"] == "torch"
    assert "eval_reasonir-holdout_accuracy" in summary["eval"] or "eval_accuracy" in summary["eval"]
    _encode_with_real_pylate(final)


def test_end_to_end_on_mlx(tmp_path, tiny_modernbert):
    summary, final = _pipeline(tmp_path, [sys.executable, EXAMPLE / "train.py", "--backend", "mlx"],
                               tiny_modernbert, extra=["--holdout", "4", "--eval_steps", "2"])
    assert summary["backend"] == "mlx"
    assert any(k.endswith("accuracy") for k in summary["eval"]) and "eval_loss" in summary["eval"]
    assert (final.parent / "checkpoint-2").is_dir()
    _encode_with_real_pylate(final)


def test_torch_file_runs_on_mlx_under_mlx_hf_bridge_run(tmp_path, tiny_modernbert):
    # REASONIR_BACKEND=torch: build.py's torch block, resolved to the bridge by the runner
    summary, _ = _pipeline(tmp_path, [sys.executable, "-m", "mlx_hf_bridge", "run", EXAMPLE / "train.py"],
                           tiny_modernbert)
    assert summary["backend"] == "mlx"


def test_train_prepares_raw_hub_shaped_data_itself(tmp_path, tiny_modernbert):
    make_synthetic.write(tmp_path / "syn", n_queries=12, docs_per_task=4)
    result = _run([sys.executable, EXAMPLE / "train.py", "--backend", "mlx", "--dataset", "syn/reasonir-data",
                   "--documents", "syn/BRIGHT", "--model", tiny_modernbert, *TINY, "--max_steps", "1",
                   "--run_name", "raw"], tmp_path)
    assert "train=12" in result.stdout
    assert (tmp_path / "output" / Path(tiny_modernbert).name / "raw" / "final" / "modules.json").exists()
