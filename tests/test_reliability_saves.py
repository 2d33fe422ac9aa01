"""Saving never deletes a user's files, and a kill -9 mid-save leaves the previous state intact.

Every save path (ColBERT.save / save_pretrained, the transformers façade's save_pretrained,
Dense.save, trainer.save_model, checkpoints and their rotation, push_to_hub staging, the model
card) is run into a folder that already holds other files; the listing and sha256 of every file
the save does not own are compared before / after, and the result is loaded by the real torch
library and compared with a save into an empty folder. The kill -9 tests run the save in a
subprocess that SIGKILLs itself at a chosen point (``io_utils._test_hook``) and are in
``test_reliability_saves_kill.py``; disk-full and read-only faults in ``test_reliability_saves_disk.py``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import mlx_hf_bridge  # noqa: F401
import numpy as np
import pytest
from test_engine_checkpoint import make

from mlx_hf_bridge import io_utils
from mlx_hf_bridge.engine import checkpoint as ckpt
from mlx_hf_bridge.engine import checkpoint_files

TESTS = Path(__file__).parent
DOCS = ["a short passage about cats", "the second document is a little longer than the first one"]
QUERIES = ["cats?", "which document is longer"]


# --- helpers ----------------------------------------------------------------------------------
def hashes(folder, skip_hidden_dirs: bool = False) -> dict:
    """relative path -> sha256 for every file (hidden ones too); folders as 'dir'."""
    folder = Path(folder)
    out = {}
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder)
        if skip_hidden_dirs and any(part.startswith(".save.") for part in rel.parts):
            continue
        out[rel.as_posix()] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def user_files(folder):
    """What a user keeps next to a model: a script, data, a notes file and a sub-folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.py").write_text("print('my training script')\n")
    (folder / "data.csv").write_text("query,positive\nq,p\n")
    (folder / "notes.txt").write_text("run 3: lr 3e-5\n")
    (folder / "runs").mkdir(exist_ok=True)
    (folder / "runs" / "log.txt").write_text("epoch 1\n")
    return hashes(folder)


def assert_kept(before: dict, folder):
    """Every entry of ``before`` (the user's files) is still there, byte-identical."""
    after = hashes(folder)
    changed = [k for k, v in before.items() if after.get(k) != v]
    assert not changed, f"save touched files it does not own: {changed}"


def no_temps(folder):
    left = [p.name for p in Path(folder).rglob(".*") if ".tmp-" in p.name or ".old-" in p.name or ".del-" in p.name]
    assert not left, f"temp entries left behind: {left}"


@pytest.fixture(scope="module")
def colbert(tiny_bert_dir):
    from mlx_hf_bridge.pylate import models

    return models.ColBERT(str(tiny_bert_dir))


def pylate_encode(folder):
    from pylate import models as torch_models

    model = torch_models.ColBERT(str(folder), device="cpu")
    q = model.encode(QUERIES, is_query=True, convert_to_numpy=True)
    d = model.encode(DOCS, is_query=False, convert_to_numpy=True)
    return [np.asarray(x) for x in list(q) + list(d)]


def assert_equal_outputs(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


# --- every save path leaves foreign files alone ------------------------------------------------
def test_colbert_save_into_cwd_keeps_train_py_and_data_csv_and_loads_in_pylate(tmp_path, colbert, monkeypatch):
    work = tmp_path / "work"
    before = user_files(work)
    monkeypatch.chdir(work)
    colbert.save_pretrained(os.getcwd())
    assert_kept(before, work)
    no_temps(work)
    colbert.save(str(tmp_path / "empty"))
    # the same layout, byte for byte, as a save into an empty folder
    saved = {k: v for k, v in hashes(work).items() if k not in before}
    assert saved == hashes(tmp_path / "empty")
    assert_equal_outputs(pylate_encode(work), pylate_encode(tmp_path / "empty"))


def test_colbert_save_over_another_models_folder_matches_pylate(tmp_path, colbert, tiny_bert_dir, tiny_modernbert_dir):
    """A folder holding another model: the bridge and real PyLate overwrite the same names and keep
    the same others; the result loads in PyLate like a save into an empty folder."""
    from pylate import models as torch_models

    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    for target in (ours, theirs):
        shutil.copytree(tiny_modernbert_dir, target)
        user_files(target)
    before = hashes(ours)
    colbert.save(str(ours))
    torch_models.ColBERT(str(tiny_bert_dir), device="cpu").save(str(theirs))
    ours_after, theirs_after = hashes(ours), hashes(theirs)
    kept_by_us = {k for k, v in before.items() if ours_after.get(k) == v}
    kept_by_pylate = {k for k, v in before.items() if theirs_after.get(k) == v}
    assert kept_by_us == kept_by_pylate  # PyLate's semantics: nothing deleted, the layout's names overwritten
    assert set(ours_after) == set(theirs_after)
    assert {"train.py", "data.csv", "notes.txt", "runs/log.txt"} <= kept_by_us
    no_temps(ours)
    colbert.save(str(tmp_path / "empty"))
    assert_equal_outputs(pylate_encode(ours), pylate_encode(tmp_path / "empty"))


def test_transformers_facade_save_pretrained_keeps_foreign_files_and_loads_in_transformers(tmp_path, tiny_bert_dir):
    import torch
    import transformers

    from mlx_hf_bridge.transformers import AutoModel

    model = AutoModel.from_pretrained(str(tiny_bert_dir))
    target = tmp_path / "target"
    before = user_files(target)
    model.save_pretrained(str(target))
    assert_kept(before, target)
    no_temps(target)
    model.save_pretrained(str(tmp_path / "empty"))
    assert {k: v for k, v in hashes(target).items() if k not in before} == hashes(tmp_path / "empty")
    ids = torch.tensor([[101, 2023, 2003, 1037, 3231, 102]])
    outs = []
    for folder in (target, tmp_path / "empty"):
        with torch.no_grad():
            outs.append(transformers.AutoModel.from_pretrained(str(folder)).eval()(input_ids=ids).last_hidden_state)
    assert torch.equal(outs[0], outs[1])


def test_save_into_a_path_that_is_a_file_is_refused_naming_it(tmp_path, colbert):
    target = tmp_path / "model"
    target.write_text("not a folder\n")
    with pytest.raises(FileExistsError, match=f"Cannot save into {target}: it is a file, not a folder"):
        colbert.save(str(target))
    assert target.read_text() == "not a folder\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_dense_save_keeps_foreign_files(tmp_path, colbert):
    from mlx_hf_bridge.colbert.modules import Dense

    dense = colbert.dense[0]
    target = tmp_path / "1_Dense"
    before = user_files(target)
    dense.save(str(target))
    assert_kept(before, target)
    no_temps(target)
    loaded = Dense.load(str(target))
    np.testing.assert_array_equal(np.array(loaded.linear.weight), np.array(dense.linear.weight))
    import torch
    from pylate.models import Dense as TorchDense

    dense.save(str(tmp_path / "empty"))
    ours, ref = TorchDense.load(str(target)), TorchDense.load(str(tmp_path / "empty"))  # PyLate on torch
    x = torch.randn(2, 5, dense.in_features)
    with torch.no_grad():
        assert torch.equal(ours({"token_embeddings": x})["token_embeddings"], ref({"token_embeddings": x})["token_embeddings"])


def test_model_card_writer_keeps_foreign_files_and_leaves_no_temp(tmp_path, colbert):
    from mlx_hf_bridge.model_card import write_model_card

    target = tmp_path / "card"
    before = user_files(target)
    write_model_card(target, {"model": colbert})
    assert_kept(before, target)
    no_temps(target)
    assert (target / "README.md").read_text().startswith("---\n")


def _train_colbert(out, colbert_dir, steps=4):
    from datasets import Dataset

    from mlx_hf_bridge.pylate import losses, models, utils
    from mlx_hf_bridge.sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments

    model = models.ColBERT(str(colbert_dir), document_length=16, query_length=8)
    data = Dataset.from_dict({"query": [f"query {i}" for i in range(8)], "positive": [f"doc {i} text" for i in range(8)]})
    args = SentenceTransformerTrainingArguments(output_dir=str(out), per_device_train_batch_size=4, max_steps=steps,
                                                save_steps=2, logging_steps=1, disable_tqdm=True, learning_rate=1e-3)
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=data,
                                         loss=losses.Contrastive(model), data_collator=utils.ColBERTCollator(model.tokenize))
    trainer.train()
    return trainer


def test_trainer_save_model_into_output_dir_keeps_checkpoints_and_notes(tmp_path, tiny_bert_dir):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("keep me\n")
    trainer = _train_colbert(out, tiny_bert_dir)
    assert {"checkpoint-2", "checkpoint-4"} <= {p.name for p in out.iterdir()}
    before = hashes(out)
    trainer.save_model(str(out))  # the user's call: save_model(args.output_dir)
    assert_kept(before, out)
    no_temps(out)
    assert all(k in hashes(out) for k in before)
    trainer.save_model(str(tmp_path / "empty"))
    assert_equal_outputs(pylate_encode(out), pylate_encode(tmp_path / "empty"))


def test_checkpoint_save_into_a_users_checkpoint_folder_keeps_its_files(tmp_path):
    out = tmp_path / "out"
    (out / "checkpoint-2").mkdir(parents=True)
    (out / "checkpoint-2" / "my_notes.md").write_text("mine\n")
    before = hashes(out)
    trainer = make(out, max_steps=2)
    trainer.train()
    assert_kept(before, out)
    assert (out / "checkpoint-2" / checkpoint_files.MANIFEST).exists()
    assert "my_notes.md" not in checkpoint_files.manifest(out / "checkpoint-2")
    assert ckpt.latest_checkpoint(out).name == "checkpoint-2"  # resumable


def test_rotation_deletes_only_checkpoints_the_bridge_wrote(tmp_path):
    out = tmp_path / "out"
    # a user's folder that merely has the name (even with a trainer_state.json), and a torch Trainer's
    user_ckpt = out / "checkpoint-0"
    user_ckpt.mkdir(parents=True)
    (user_ckpt / "trainer_state.json").write_text("{}")
    (user_ckpt / "thesis.tex").write_text("\\documentclass{article}\n")
    torch_ckpt = out / "checkpoint-100"
    torch_ckpt.mkdir()
    for name in ("trainer_state.json", "optimizer.pt", "rng_state.pth", "model.safetensors"):
        (torch_ckpt / name).write_bytes(b"torch trainer file")
    before = hashes(out)
    trainer = make(out, save_steps=1, save_total_limit=2, callbacks=[AddUserFileTo("checkpoint-3")])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.train()
    assert_kept(before, out)
    names = sorted(p.name for p in out.iterdir() if p.name.startswith("checkpoint"))
    # checkpoint-3 had a user's file added: only the bridge's files went, the folder and that file stay
    assert names == ["checkpoint-0", "checkpoint-100", "checkpoint-3", "checkpoint-5", "checkpoint-6"]
    assert sorted(p.name for p in (out / "checkpoint-3").rglob("*")) == ["review.txt"]
    assert any("kept 1 other file(s) (review.txt)" in str(w.message) for w in caught)
    no_temps(out)


class AddUserFileTo:
    def __init__(self, name):
        self.name = name

    def on_step_end(self, args, state, control, **kwargs):
        folder = Path(args.output_dir) / self.name
        if folder.is_dir() and not (folder / "review.txt").exists():
            (folder / "review.txt").write_text("looked at this one\n")


def test_push_to_hub_staging_into_save_dir_keeps_foreign_files(tmp_path, colbert):
    from mlx_hf_bridge.hub import HubPushError, push_to_hub

    target = tmp_path / "staging"
    before = user_files(target)
    with pytest.raises(HubPushError) as info:  # tests run offline: the push fails after the save
        push_to_hub(colbert.save, "tester/m", save_dir=target)
    assert info.value.local_path == target
    assert_kept(before, target)
    no_temps(target)
    assert (target / "model.safetensors").exists() and (target / "modules.json").exists()


# --- temp ownership: a live process's temps are never removed ----------------------------------
def _pid_of_finished_process() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _temp(folder: Path, stem: str, pid: int, is_dir=True) -> Path:
    name = f"{stem}tmp-{io_utils._host()}-{pid}-abcd1234"
    path = folder / name
    if is_dir:
        path.mkdir(parents=True)
        (path / "model.safetensors").write_bytes(b"in progress")
    else:
        path.write_bytes(b"partial")
    return path


def test_stale_temp_cleanup_removes_only_temps_of_dead_processes(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead = _pid_of_finished_process()
        ours_in_flight = _temp(out, ".checkpoint-5.", os.getpid())  # a save this process is writing now
        keep = [_temp(out, ".checkpoint-4.", live.pid), _temp(out, ".save.", live.pid),
                _temp(out, ".README.md.", live.pid, is_dir=False), ours_in_flight]
        # dead owners, and this process's own temps of saves that already ended (failed)
        gone = [_temp(out, ".checkpoint-4.", dead), _temp(out, ".save.", dead),
                _temp(out, ".README.md.", dead, is_dir=False), _temp(out, ".checkpoint-6.", os.getpid())]
        foreign = out / ".checkpoint-9.tmp-something-else"  # not a name the bridge makes
        foreign.mkdir()
        other_host = out / f".checkpoint-7.tmp-otherhost-{dead}-abcd1234"
        other_host.mkdir()
        with io_utils._in_flight(ours_in_flight):
            ckpt.clean_stale_temps(out)
        assert [p.name for p in keep + [foreign, other_host] if not p.exists()] == []
        assert [p.name for p in gone if p.exists()] == []
    finally:
        live.kill()
        live.wait()
