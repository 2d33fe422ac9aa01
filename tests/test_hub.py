"""push_to_hub against a local Hub server (tests/hub_server.py), reload with the real torch
libraries, error messages that keep the save, and the PyLate-style model card."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import yaml

from hub_server import LocalHub
from mlx_hf_bridge import hub as hub_mod
from mlx_hf_bridge import verify
from mlx_hf_bridge.hub import HubPushError, push_to_hub
from mlx_hf_bridge.model_card import PYLATE_TAGS, render_model_card, write_model_card

TOL = 1e-5
TOKEN = "hf_local_test_token"


@pytest.fixture(autouse=True)
def _temp_saves_in_tmp_path(monkeypatch, tmp_path):
    """Default push folders (kept after a failure) land in the test's tmp dir, not in /tmp."""
    monkeypatch.setattr(hub_mod.tempfile, "tempdir", str(tmp_path))


@pytest.fixture
def hub(tmp_path):
    """A fresh local Hub; this process's huggingface_hub points at it (online) for the test."""
    with LocalHub(lfs_threshold=1_000_000) as server:
        with server.patch_client(hf_home=tmp_path / "hf-cache"):
            yield server


@pytest.fixture(scope="module")
def mlx_hf_model(tiny_bert_dir):
    from mlx_hf_bridge.transformers import AutoModel

    return AutoModel.from_pretrained(str(tiny_bert_dir))


def small_save(folder):
    """A stand-in save_fn for the error tests (no model needed)."""
    folder = Path(folder)
    (folder / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (folder / "model.safetensors").write_bytes(b"\0" * 2048)


def front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n", 2)[1])


def snapshot_files(path) -> dict:
    path = Path(path)
    return {str(p.relative_to(path)): p.read_bytes() for p in path.rglob("*") if p.is_file()}


# --- round trips ----------------------------------------------------------------------------
def test_push_hf_folder_roundtrip_reload_with_transformers(hub, tmp_path, mlx_hf_model):
    """MLX save -> local Hub (safetensors through LFS) -> snapshot_download -> transformers."""
    from huggingface_hub import snapshot_download

    save_dir = tmp_path / "save"
    url = push_to_hub(mlx_hf_model.save_pretrained, "tester/tiny-bert", token=TOKEN, save_dir=save_dir)
    assert url.startswith(f"{hub.url}/tester/tiny-bert/commit/")
    local = snapshot_files(save_dir)
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(local)
    # the LFS path: model.safetensors (~4 MB) is above the 1 MB threshold, config.json is not
    assert hub.is_lfs("tester/tiny-bert", "model.safetensors")
    assert not hub.is_lfs("tester/tiny-bert", "config.json")
    assert {"preupload", "lfs-batch", "lfs-put", "lfs-verify", "commit"} <= set(hub.endpoints_called())
    # download: byte-identical files
    downloaded = snapshot_files(snapshot_download("tester/tiny-bert"))
    for name, data in local.items():
        assert downloaded[name] == data, name
    # reload from the hub id with the real torch library (separate, online process)
    queries, documents = verify.DEFAULT_QUERIES[:2], verify.DEFAULT_DOCUMENTS[:2]
    ref, _ = verify.run_torch_side(verify.HF, "tester/tiny-bert", queries, documents,
                                   env=hub.env(TOKEN, hf_home=tmp_path / "child-hf"))
    got = verify.mlx_side(verify.HF, save_dir, queries, documents, ref)
    result = verify.compare(verify.HF, ref, got, len(queries) + len(documents))
    assert result["last_hidden_state"]["max_abs_diff"] <= TOL


def test_push_colbert_roundtrip_reload_with_pylate(hub, tmp_path, tiny_bert_dir):
    """Bridge ColBERT -> local Hub -> real PyLate ``models.ColBERT("tester/colbert")``."""
    from mlx_hf_bridge.pylate.models import ColBERT

    model = ColBERT(str(tiny_bert_dir), query_length=16, document_length=40)
    save_dir = tmp_path / "colbert-save"

    def card(folder, repo_id):
        write_model_card(folder, {"model": model, "model_id": repo_id, "base_model": str(tiny_bert_dir)})

    url = push_to_hub(model.save, "colbert", token=TOKEN, save_dir=save_dir, card_fn=card)
    assert "/tester/colbert/commit/" in url  # "colbert" resolved to the token's namespace
    files = hub.list_files("tester/colbert")
    assert {"modules.json", "config_sentence_transformers.json", "1_Dense/config.json",
            "1_Dense/model.safetensors", "model.safetensors", "README.md"} <= set(files)
    readme = hub.file_bytes("tester/colbert", "README.md").decode()
    meta = front_matter(readme)
    assert meta["library_name"] == "PyLate" and 'model_name_or_path="tester/colbert"' in readme
    assert "base_model" not in meta  # a local path never goes into the card's metadata

    queries, documents = verify.DEFAULT_QUERIES[:2], verify.DEFAULT_DOCUMENTS[:2]
    ref, _ = verify.run_torch_side(verify.COLBERT, "tester/colbert", queries, documents,
                                   env=hub.env(TOKEN, hf_home=tmp_path / "child-hf"))
    got = verify.mlx_side(verify.COLBERT, save_dir, queries, documents, ref)
    for name, result in verify.compare(verify.COLBERT, ref, got, len(queries) + len(documents)).items():
        assert not result["shape_mismatches"], name
        assert result["max_abs_diff"] <= TOL, name


def test_local_model_path_is_uploaded_as_is_and_options(hub, tmp_path):
    folder = tmp_path / "saved"
    folder.mkdir()
    small_save(folder)
    (folder / "README.md").write_text("---\nlibrary_name: PyLate\n---\nfirst card\n")
    push_to_hub(None, "tester/m", token=TOKEN, local_model_path=folder)
    assert hub.list_files("tester/m") == [".gitattributes", "README.md", "config.json", "model.safetensors"]

    # an existing card on the Hub is kept unless replace_model_card=True (sentence-transformers' meaning)
    (folder / "README.md").write_text("---\nlibrary_name: PyLate\n---\nsecond card\n")
    push_to_hub(None, "tester/m", token=TOKEN, local_model_path=folder, exist_ok=True)
    assert b"first card" in hub.file_bytes("tester/m", "README.md")
    push_to_hub(None, "tester/m", token=TOKEN, local_model_path=folder, exist_ok=True, replace_model_card=True)
    assert b"second card" in hub.file_bytes("tester/m", "README.md")

    # revision -> a branch; create_pr -> a pull request URL (create_pr implies exist_ok, like ST)
    push_to_hub(None, "tester/m", token=TOKEN, local_model_path=folder, exist_ok=True, revision="dev")
    assert "dev" in hub.repo("tester/m").refs
    pr_url = push_to_hub(None, "tester/m", token=TOKEN, local_model_path=folder, create_pr=True)
    assert pr_url == f"{hub.url}/tester/m/discussions/1"
    assert "refs/pr/1" in hub.repo("tester/m").refs


def test_default_save_dir_removed_after_success(hub, tmp_path):
    push_to_hub(small_save, "tester/tmpdir", token=TOKEN)
    assert not list(tmp_path.glob("mlx-hf-bridge-push-*"))


# --- errors: clear message, local save intact ---------------------------------------------
def assert_kept(err: HubPushError, *phrases):
    message = str(err)
    for phrase in phrases:
        assert phrase.lower() in message.lower(), (phrase, message)
    assert err.local_path is not None and str(err.local_path) in message
    assert (err.local_path / "config.json").exists() and (err.local_path / "model.safetensors").stat().st_size == 2048


def test_401_bad_token(tmp_path):
    with LocalHub(tokens={"good-token"}) as server, server.patch_client(hf_home=tmp_path / "hf"):
        with pytest.raises(HubPushError) as info:
            push_to_hub(small_save, "tester/auth", token="wrong-token")
        assert info.value.status_code == 401
        assert_kept(info.value, "authentication failed", "huggingface-cli login", "token=")
        assert push_to_hub(None, "tester/auth", token="good-token", local_model_path=info.value.local_path)


def test_409_repo_exists_without_exist_ok(hub, tmp_path):
    push_to_hub(small_save, "tester/dup", token=TOKEN, save_dir=tmp_path / "first")
    with pytest.raises(HubPushError) as info:
        push_to_hub(small_save, "tester/dup", token=TOKEN, save_dir=tmp_path / "second")
    assert info.value.status_code == 409
    assert_kept(info.value, "already exists", "exist_ok=True")
    assert info.value.local_path == tmp_path / "second"
    assert push_to_hub(small_save, "tester/dup", token=TOKEN, exist_ok=True)


@pytest.mark.parametrize("on, status", [("create", 503), ("commit", 500)])
def test_5xx_server_error(hub, on, status):
    hub.fail(status, on=on)
    with pytest.raises(HubPushError) as info:
        push_to_hub(small_save, "tester/flaky", token=TOKEN)
    assert info.value.status_code == status
    assert_kept(info.value, "Hub server error", "retry", "local_model_path=")
    hub.clear_faults()  # the Hub recovers: retry from the kept folder, no new save
    url = push_to_hub(None, "tester/flaky", token=TOKEN, local_model_path=info.value.local_path, exist_ok=True)
    assert "/tester/flaky/commit/" in url and "model.safetensors" in hub.list_files("tester/flaky")


def test_connection_refused(tmp_path):
    from huggingface_hub import constants

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    saved = constants.ENDPOINT, constants.HF_HUB_OFFLINE
    constants.ENDPOINT, constants.HF_HUB_OFFLINE = endpoint, False
    try:
        with pytest.raises(HubPushError) as info:
            push_to_hub(small_save, "tester/nowhere", token=TOKEN, save_dir=tmp_path / "kept")
    finally:
        constants.ENDPOINT, constants.HF_HUB_OFFLINE = saved
    assert_kept(info.value, f"could not reach {endpoint}")


def test_offline_mode_is_explained(tmp_path):
    from huggingface_hub import constants

    saved = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        with pytest.raises(HubPushError) as info:
            push_to_hub(small_save, "tester/offline", token=TOKEN, save_dir=tmp_path / "kept")
    finally:
        constants.HF_HUB_OFFLINE = saved
    assert_kept(info.value, "HF_HUB_OFFLINE")


def test_bad_arguments_fail_before_saving(tmp_path):
    calls = []
    with pytest.raises(ValueError, match="create_pr"):
        push_to_hub(calls.append, "tester/x", create_pr=True, revision="dev")
    with pytest.raises(FileNotFoundError):
        push_to_hub(None, "tester/x", local_model_path=tmp_path / "missing")
    assert calls == []


# --- model card -----------------------------------------------------------------------------
REQUIRED_TAGS = set(PYLATE_TAGS)


@pytest.fixture(scope="module")
def pylate_folder(tmp_path_factory, tiny_bert_dir):
    """A folder saved by the real PyLate (the layout the card reads its facts from)."""
    import torch
    from pylate import models

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("pylate-saved")
    models.ColBERT(str(tiny_bert_dir), device="cpu", document_length=64).save(str(out))
    return out


def test_card_untrained_from_folder_only(pylate_folder, tmp_path):
    import shutil

    folder = tmp_path / "f"
    shutil.copytree(pylate_folder, folder)
    path = write_model_card(folder, {})
    text = path.read_text()
    meta = front_matter(text)
    assert meta["library_name"] == "PyLate" and meta["pipeline_tag"] == "sentence-similarity"
    assert set(meta["tags"]) == REQUIRED_TAGS  # no training tags before training
    assert "- **Document Length:** 64 tokens" in text and "- **Query Length:** 32 tokens" in text
    assert "- **Output Dimensionality:** 128 dimensions" in text and "MaxSim" in text
    assert "Dense({'in_features': 32, 'out_features': 128" in text
    assert "rank.rerank(" in text and "indexes.PLAID(" in text and "## Training Details" not in text
    from huggingface_hub import ModelCard

    assert ModelCard(text).data.to_dict()["library_name"] == "PyLate"  # the Hub client parses it


def test_card_after_training(tmp_path):
    class Contrastive:  # any object with get_config_dict, like PyLate's losses
        def get_config_dict(self):
            return {"score_metric": "colbert_scores", "temperature": 1.0}

    info = {
        "model_id": "tester/trained", "base_model": "sentence-transformers/all-MiniLM-L6-v2",
        "language": "en", "license": "apache-2.0",
        "train_datasets": [{"name": "BoolQ", "id": "google/boolq", "size": 128, "columns": ["query", "positive"]}],
        "loss": Contrastive(),
        "hyperparameters": {"learning_rate": 3e-05, "per_device_train_batch_size": 16, "hub_token": "hf_SECRET", "output_dir": "out"},
        "default_hyperparameters": {"learning_rate": 5e-05, "per_device_train_batch_size": 16},
        "log_history": [
            {"loss": 2.5, "grad_norm": 1.0, "learning_rate": 1e-5, "epoch": 0.5, "step": 4},
            {"eval_loss": 2.0, "eval_runtime": 0.1, "eval_ndcg@10": 0.43, "epoch": 0.5, "step": 4},
            {"loss": 1.75, "epoch": 1.0, "step": 8},
            {"train_runtime": 3.0, "train_loss": 2.1, "epoch": 1.0, "step": 8},
        ],
        "query_length": 32, "document_length": 180, "output_dimensionality": 128,
    }
    text = write_model_card(tmp_path, info).read_text()
    meta = front_matter(text)
    assert REQUIRED_TAGS | {"generated_from_trainer", "dataset_size:128", "loss:Contrastive"} <= set(meta["tags"])
    assert meta["base_model"] == "sentence-transformers/all-MiniLM-L6-v2" and meta["datasets"] == ["google/boolq"]
    assert meta["language"] == "en" and meta["license"] == "apache-2.0"
    assert "hf_SECRET" not in text and "output_dir" not in text
    assert "#### Non-Default Hyperparameters" in text and "- `learning_rate`: 3e-05" in text
    assert '"temperature": 1.0' in text and "Size: 128 training samples" in text
    assert "| Epoch | Step | Training Loss | Validation Loss | ndcg@10 |" in text
    assert "| 0.5   | 4    | 2.5           | 2.0             | 0.43    |" in text
    for name in ("Python", "MLX", "mlx_hf_bridge", "Transformers", "Tokenizers", "Datasets"):
        assert f"- {name}: " in text


def test_card_is_robust_to_missing_everything(tmp_path):
    text = render_model_card(tmp_path / "empty", {"loss": "Distillation", "hyperparameters": None, "log_history": [{"oops": 1}]})
    meta = front_matter(text)
    assert meta["library_name"] == "PyLate" and "loss:Distillation" in meta["tags"]
    assert "base_model" not in meta
    # a hub-cache snapshot path gives the base model id and revision
    snap = tmp_path / "models--org--base/snapshots" / ("a" * 40)
    meta = front_matter(render_model_card(tmp_path, {"base_model": str(snap)}))
    assert meta["base_model"] == "org/base"


def test_bridge_colbert_save_writes_pylate_card(tmp_path, tiny_bert_dir):
    from mlx_hf_bridge.pylate.models import ColBERT

    model = ColBERT(str(tiny_bert_dir))
    model.save(str(tmp_path / "saved"))
    meta = front_matter((tmp_path / "saved" / "README.md").read_text())
    assert meta["library_name"] == "PyLate" and REQUIRED_TAGS <= set(meta["tags"])


def test_colbert_push_to_hub_method(hub, tmp_path, tiny_bert_dir):
    """``model.push_to_hub(repo_id)`` (ST's signature) uploads the PyLate layout + card; PyLate reloads it."""
    from mlx_hf_bridge.pylate.models import ColBERT

    model = ColBERT(str(tiny_bert_dir), query_length=16, document_length=40)
    url = model.push_to_hub("tester/colbert-method", token=TOKEN, exist_ok=True)
    assert "/tester/colbert-method/commit/" in url
    files = set(hub.list_files("tester/colbert-method"))
    assert {"modules.json", "config_sentence_transformers.json", "1_Dense/model.safetensors", "README.md"} <= files
    assert front_matter(hub.file_bytes("tester/colbert-method", "README.md").decode())["library_name"] == "PyLate"
    local = tmp_path / "local"
    model.save(local)
    queries, documents = verify.DEFAULT_QUERIES[:2], verify.DEFAULT_DOCUMENTS[:2]
    ref, _ = verify.run_torch_side(verify.COLBERT, "tester/colbert-method", queries, documents,
                                   env=hub.env(TOKEN, hf_home=tmp_path / "child-hf"))
    got = verify.mlx_side(verify.COLBERT, local, queries, documents, ref)
    for name, result in verify.compare(verify.COLBERT, ref, got, len(queries) + len(documents)).items():
        assert result["max_abs_diff"] <= TOL, name


def test_trainer_push_to_hub_card_has_training_facts(hub, tmp_path, tiny_bert_dir):
    """``trainer.push_to_hub()``: PyLate layout + a card with loss, dataset size and training log."""
    from datasets import Dataset

    from mlx_hf_bridge.pylate import losses, models, utils
    from mlx_hf_bridge.sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments

    model = models.ColBERT(str(tiny_bert_dir), query_length=8, document_length=16)
    data = Dataset.from_dict({"query": [f"question {i}" for i in range(8)], "positive": [f"answer number {i}" for i in range(8)]})
    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path / "trained-colbert"), per_device_train_batch_size=4, num_train_epochs=1,
        logging_steps=1, save_strategy="no", hub_model_id="tester/trained-colbert", hub_token=TOKEN,
    )
    trainer = SentenceTransformerTrainer(
        model=model, args=args, train_dataset=data, loss=losses.CachedContrastive(model, mini_batch_size=2),
        data_collator=utils.ColBERTCollator(model.tokenize),
    )
    trainer.train()
    url = trainer.push_to_hub()
    assert "/tester/trained-colbert/commit/" in url
    readme = hub.file_bytes("tester/trained-colbert", "README.md").decode()
    meta = front_matter(readme)
    assert {"generated_from_trainer", "dataset_size:8", "loss:CachedContrastive"} <= set(meta["tags"])
    assert "Training Logs" in readme or "training log" in readme.lower()
    local = tmp_path / "local"
    model.save(local)
    ref, _ = verify.run_torch_side(verify.COLBERT, "tester/trained-colbert", verify.DEFAULT_QUERIES[:2],
                                   verify.DEFAULT_DOCUMENTS[:2], env=hub.env(TOKEN, hf_home=tmp_path / "child-hf"))
    got = verify.mlx_side(verify.COLBERT, local, verify.DEFAULT_QUERIES[:2], verify.DEFAULT_DOCUMENTS[:2], ref)
    for name, result in verify.compare(verify.COLBERT, ref, got, 4).items():
        assert result["max_abs_diff"] <= TOL, name
