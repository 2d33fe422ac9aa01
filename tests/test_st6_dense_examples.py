"""sentence-transformers 6.2's dense training examples (our reconstructions in examples/st_scripts/) run
unmodified through ``mlx-hf-bridge run`` against a local Hub that serves tiny stand-ins under the ids the
scripts name: tiny BERT folders as ``distilbert/...``, ``microsoft/mpnet-base``, ..., the real
all-MiniLM-L6-v2 as ``sentence-transformers/all-MiniLM-L6-v2``, and Hub-shaped stand-ins of the datasets
(``make_local_data.py``). Each saved model must load in real ST 6.2 with encodings within 1e-5 of the
bridge's, and the push must reach the Hub. Runs in the ST 6 reference venv."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from slow_cases import split  # noqa: E402

pytest.importorskip("sentence_transformers", minversion="6")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from example_modules import load_script_module  # noqa: E402
from hub_server import LocalHub  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "examples" / "st_scripts"
pytestmark = pytest.mark.st6

PLAIN_BERT_IDS = ("distilbert/distilroberta-base", "distilbert/distilbert-base-uncased", "microsoft/mpnet-base",
                  "sentence-transformers/stsb-distilbert-base", "nreimers/TinyBERT_L-4_H-312_v2")
SENTENCES = ["what causes tides", "Vaccines train the immune system.", "a short one", "why is the sky blue at noon"]


@pytest.fixture(scope="module")
def hub(tmp_path_factory, tiny_bert_dir, minilm_dir):
    make_local_data = load_script_module(SCRIPTS / "make_local_data.py", "st_make_local_data")
    from huggingface_hub import HfApi

    data = tmp_path_factory.mktemp("st-local")
    make_local_data.write_all(data)
    with LocalHub() as server:
        home = tmp_path_factory.mktemp("hf-home")
        with server.patch_client(hf_home=home / "uploader"):
            api = HfApi(endpoint=server.url, token="hf_test_token")
            for folder in sorted(p.parent for p in data.glob("*/*/README.md")):
                repo = f"{folder.parent.name}/{folder.name}"
                api.create_repo(repo, repo_type="dataset", exist_ok=True)
                api.upload_folder(folder_path=str(folder), repo_id=repo, repo_type="dataset")
            for repo in PLAIN_BERT_IDS:
                api.create_repo(repo, exist_ok=True)
                api.upload_folder(folder_path=str(tiny_bert_dir), repo_id=repo)
            api.create_repo("sentence-transformers/all-MiniLM-L6-v2", exist_ok=True)
            api.upload_folder(folder_path=str(minilm_dir), repo_id="sentence-transformers/all-MiniLM-L6-v2")
        server.home = home
        yield server


def run_example(hub, tmp_path, script: str, *args, timeout=600):
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    for key, value in hub.env(hf_home=tmp_path / "hf-home").items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    env.pop("HF_DATASETS_OFFLINE", None)
    result = subprocess.run([sys.executable, "-m", "mlx_hf_bridge", "run", str(SCRIPTS / script), *args],
                            capture_output=True, text=True, cwd=tmp_path, env=env, timeout=timeout)
    assert result.returncode == 0, f"--- stdout\n{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-8000:]}"
    return result.stdout + result.stderr


def saved_dir(tmp_path, output: str) -> Path:
    line = next(ln for ln in output.splitlines() if ln.startswith("SAVED "))
    return tmp_path / line.split(" ", 1)[1].strip()


def assert_loads_in_st6(folder: Path):
    """The bridge's saved folder in real ST 6.2: the same encodings (≤ 1e-5) as the bridge's."""
    import sentence_transformers

    from mlx_hf_bridge.sentence_transformers import SentenceTransformer

    reference = sentence_transformers.SentenceTransformer(str(folder), device="cpu").encode(SENTENCES)
    ours = SentenceTransformer(str(folder)).encode(SENTENCES)
    assert ours.shape == reference.shape
    assert np.abs(ours - reference).max() <= 1e-5


def assert_pushed(hub, repo_suffix: str):
    pushed = [name for (kind, name) in hub.repos if kind == "model" and name.endswith(repo_suffix)]
    assert pushed, sorted(hub.repos)


@pytest.mark.parametrize("script, pushed", split([  # ~11 s each: CI runs one
    ("training_nli_v2.py", "-nli-v2"),
    ("matryoshka_nli.py", "-nli-matryoshka"),
    ("training_stsbenchmark.py", "-sts"),
    ("training_online_contrastive_loss.py", "-ocl"),
], fast=[("training_stsbenchmark.py", "-sts")]))
def test_example_with_a_model_argument_runs_unmodified(hub, tmp_path, script, pushed):
    out = run_example(hub, tmp_path, script)
    assert "'train_loss'" in out or "train_loss" in out
    assert "TEST" in out or "BEFORE" in out
    folder = saved_dir(tmp_path, out)
    assert (folder / "modules.json").exists() and list(folder.parent.glob("checkpoint-*"))
    assert_loads_in_st6(folder)
    assert_pushed(hub, pushed)
    card = (folder / "README.md").read_text()  # ST's card structure, with what the training run used
    assert "library_name: sentence-transformers" in card and "generated_from_trainer" in card
    assert "loss:" in card and "### Training Logs" in card


@pytest.mark.parametrize("script, pushed", [
    ("train_bi_encoder_margin_mse.py", "-msmarco-margin-mse"),
    ("train_kldiv.py", "-msmarco-kldiv"),
])
def test_msmarco_examples_with_nanobeir_run_unmodified(hub, tmp_path, script, pushed):
    out = run_example(hub, tmp_path, script)
    assert "NanoBEIR_mean_cosine_ndcg@10" in out or "NanoBEIR_mean_dot_ndcg@10" in out, out[-3000:]
    folder = saved_dir(tmp_path, out)
    assert_loads_in_st6(folder)
    assert_pushed(hub, pushed)
    card = (folder / "README.md").read_text()  # SentenceTransformerModelCardData(language=, license=, model_name=)
    assert "license: apache-2.0" in card and "- en" in card and "finetuned on MSMARCO" in card


def test_distillation_example_runs_unmodified(hub, tmp_path):
    # teacher: the real all-MiniLM-L6-v2 (384-d); student: a tiny BERT (32-d) with a Dense projection added
    out = run_example(hub, tmp_path, "model_distillation.py")
    folder = saved_dir(tmp_path, out)
    assert any(p.name.endswith("_Dense") for p in folder.iterdir())
    assert_loads_in_st6(folder)
