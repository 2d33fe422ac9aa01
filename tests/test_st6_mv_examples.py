"""sentence-transformers 6's multi-vector training examples (our reconstructions in
examples/st6_mv_scripts/: msmarco contrastive / cached contrastive / KD with ``util.resolve_ids``, XTR,
MIRIAD) run against a local Hub that serves a tiny ModernBERT under the model ids the scripts name and
the stand-in datasets of ``make_local_data.py`` under their dataset ids. Each script runs twice:
unmodified through ``python -m mlx_hf_bridge run``, and as a copy whose ``sentence_transformers``
imports are swapped for ``mlx_hf_bridge.sentence_transformers`` under plain ``python``. Each final save
must load in real ST 6.2 with ``encode_query`` / ``encode_document`` within 1e-5 of the bridge's, and the
push must reach the Hub. Runs in the ST 6 reference venv.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sentence_transformers", minversion="6")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from example_modules import load_script_module  # noqa: E402
from hub_server import LocalHub  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "examples" / "st6_mv_scripts"
pytestmark = pytest.mark.st6

MODEL_IDS = ("answerdotai/ModernBERT-base", "Alibaba-NLP/gte-modernbert-base")
QUERIES = ["why do tides matter", "what is a black hole?", "bees", "how do vaccines train the immune system"]
DOCUMENTS = ["Tides are driven by the pull of the moon.", "Black holes trap light, with gravity; nothing escapes!",
             "Honey bees turn nectar into honey.", "short"]


@pytest.fixture(scope="module")
def hub(tmp_path_factory, tiny_modernbert_dir):
    make_local_data = load_script_module(SCRIPTS / "make_local_data.py", "st6_mv_make_local_data")
    from huggingface_hub import HfApi

    data = tmp_path_factory.mktemp("st6-mv-local")
    make_local_data.write_all(data)
    with LocalHub() as server:
        home = tmp_path_factory.mktemp("hf-home")
        with server.patch_client(hf_home=home / "uploader"):
            api = HfApi(endpoint=server.url, token="hf_test_token")
            for folder in sorted(p.parent for p in data.glob("*/*/README.md")):
                repo = f"{folder.parent.name}/{folder.name}"
                api.create_repo(repo, repo_type="dataset", exist_ok=True)
                api.upload_folder(folder_path=str(folder), repo_id=repo, repo_type="dataset")
            for repo in MODEL_IDS:
                api.create_repo(repo, exist_ok=True)
                api.upload_folder(folder_path=str(tiny_modernbert_dir), repo_id=repo)
        server.cache = tmp_path_factory.mktemp("hf-cache")
        yield server


def swapped_copy(script: Path, folder: Path) -> Path:
    """The script with its imports swapped by hand, as a user without ``run`` would write it."""
    text = re.sub(r"\b(from|import) sentence_transformers\b", r"\1 mlx_hf_bridge.sentence_transformers",
                  script.read_text())
    assert "mlx_hf_bridge.sentence_transformers" in text and "from sentence_transformers" not in text
    copy = folder / script.name
    copy.write_text(text)
    return copy


def run_example(hub, tmp_path, script: str, swapped: bool, timeout=600):
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    # one HF cache for the module's runs (downloads once; every load still asks the local Hub)
    for key, value in hub.env(hf_home=hub.cache).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    env.pop("HF_DATASETS_OFFLINE", None)
    if swapped:
        command = [sys.executable, str(swapped_copy(SCRIPTS / script, tmp_path))]
    else:
        command = [sys.executable, "-m", "mlx_hf_bridge", "run", str(SCRIPTS / script)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=timeout)
    assert result.returncode == 0, f"--- stdout\n{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-8000:]}"
    return result.stdout + result.stderr


def saved_dir(tmp_path, output: str) -> Path:
    line = next(ln for ln in output.splitlines() if ln.startswith("SAVED "))
    return tmp_path / line.split(" ", 1)[1].strip()


def assert_loads_in_st6(folder: Path):
    """The bridge's final save in real ST 6.2: the same token embeddings (<= 1e-5) as the bridge's."""
    from sentence_transformers import MultiVectorEncoder as TorchEncoder

    from mlx_hf_bridge.sentence_transformers import MultiVectorEncoder

    theirs, ours = TorchEncoder(str(folder), device="cpu"), MultiVectorEncoder(str(folder))
    for encode in ("encode_query", "encode_document"):
        texts = QUERIES if encode == "encode_query" else DOCUMENTS
        reference = getattr(theirs, encode)(texts, convert_to_numpy=True)
        got = getattr(ours, encode)(texts, convert_to_numpy=True)
        assert [a.shape for a in got] == [b.shape for b in reference]
        assert max(float(np.abs(a - b).max()) for a, b in zip(got, reference)) <= 1e-5
    return theirs


def pushed_repos(hub, repo_suffix: str) -> list:
    return [key for key in hub.repos if key[0] == "model" and key[1].endswith(repo_suffix)]


EXAMPLES = [
    # (script, pushed repo suffix, metric the script's evaluator logs)
    ("training_contrastive.py", "multivector-ModernBERT-base-msmarco-contrastive", "NanoBEIR_mean_maxsim_ndcg@10"),
    ("training_cached_contrastive.py", "multivector-ModernBERT-base-msmarco-cached-contrastive",
     "NanoBEIR_mean_maxsim_ndcg@10"),
    ("training_kd.py", "multivector-gte-modernbert-base-msmarco-kd", "NanoBEIR_mean_maxsim_ndcg@10"),
    ("xtr_training_contrastive.py", "xtr-ModernBERT-base-msmarco", "NanoBEIR_mean_maxsim_ndcg@10"),
    ("miriad_training_contrastive.py", "multivector-gte-modernbert-base-miriad", "miriad_test_maxsim_ndcg@10"),
]


# ~20 s each: CI runs one example unmodified through `run` and another with swapped imports
FAST_EXAMPLES = {("training_contrastive.py", False), ("training_kd.py", True)}


@pytest.mark.parametrize("script, pushed, metric, swapped", [
    pytest.param(*example, swapped, id="-".join([*example, "swapped-imports" if swapped else "run"]),
                 marks=() if (example[0], swapped) in FAST_EXAMPLES else pytest.mark.slow)
    for example in EXAMPLES for swapped in (False, True)])
def test_mv_example_runs(hub, tmp_path, script, pushed, metric, swapped):
    with hub.lock:  # drop the other mode's push: push_to_hub (exist_ok=False) refuses an existing repo, as ST's
        for key in pushed_repos(hub, pushed):
            del hub.repos[key]
    out = run_example(hub, tmp_path, script, swapped)
    assert metric in out and "train_loss" in out
    folder = saved_dir(tmp_path, out)
    assert list(folder.parent.glob("checkpoint-*"))
    reloaded = assert_loads_in_st6(folder)
    # the module stack the script built (XTR: the default stack of a plain backbone, no expansion)
    expected = None if script.startswith("xtr") else {"strategy": "min", "attend": False, "token": None, "length": 32}
    assert reloaded[0].query_expansion == expected
    assert "PUSHED" in out and pushed_repos(hub, pushed), out[-3000:]  # this run's push reached the Hub
    card = (folder / "README.md").read_text()
    assert "license: apache-2.0" in card and "generated_from_trainer" in card
