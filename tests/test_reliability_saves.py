"""Saving never deletes a user's files, and a kill -9 mid-save leaves the previous state intact.

Every save path (ColBERT.save / save_pretrained, the transformers façade's save_pretrained,
Dense.save, trainer.save_model, checkpoints and their rotation, push_to_hub staging, the model
card) is run into a folder that already holds other files; the listing and sha256 of every file
the save does not own are compared before / after, and the result is loaded by the real torch
library and compared with a save into an empty folder. The kill -9 tests run the save in a
subprocess that SIGKILLs itself at a chosen point (``io_utils._test_hook``). Disk-full and
read-only faults are in ``test_reliability_saves_disk.py``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import mlx_hf_bridge  # noqa: F401
import mlx.core as mx
import numpy as np
import pytest
from test_engine_checkpoint import assert_same, make
from test_engine_standin import TinyEncoder, weights

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


def assert_kept(before: dict, folder, owned=()):
    """Every entry of ``before`` not in ``owned`` (the layout's names) is still there, byte-identical."""
    after = hashes(folder)
    changed = [k for k, v in before.items() if k not in owned and after.get(k) != v]
    assert not changed, f"save touched files it does not own: {changed}"


def layout_names(save, tmp_path) -> set:
    """The relative paths a save writes, from a save into an empty folder."""
    empty = tmp_path / "layout-probe"
    save(empty)
    names = set(hashes(empty))
    shutil.rmtree(empty)
    return names


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


# --- kill -9 in the middle of a save -------------------------------------------------------------
KILL_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    sys.path.insert(0, {tests!r})
    os.environ["HF_HUB_OFFLINE"] = "1"
    from pathlib import Path
    import mlx_hf_bridge
    from mlx_hf_bridge import io_utils

    kind, target, stage, nth, source = sys.argv[1], Path(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5]
    seen = []

    def hook(at, path):
        # count only the save of ``target`` itself (ColBERT.save nests a save into the staging folder);
        # push_to_hub saves into a new folder inside ``target`` (the temp dir)
        ours = path.parent.parent == target if kind == "hub" else path.parent == target
        if at == stage and ours:
            seen.append(path)
            if len(seen) == nth:
                os.kill(os.getpid(), signal.SIGKILL)

    io_utils._test_hook = hook
    from test_reliability_saves import build_and_save
    build_and_save(kind, target, source, target)
    print("finished without being killed")
    """
)


def perturbed_colbert(source):
    """A ColBERT whose weights differ from the saved one (the 'new' save)."""
    from mlx.utils import tree_flatten, tree_unflatten

    from mlx_hf_bridge.pylate import models

    model = models.ColBERT(str(source))
    model.update(tree_unflatten([(k, v * 1.5) for k, v in tree_flatten(model.parameters())]))
    mx.eval(model.parameters())
    return model


def build_and_save(kind, target, source, output_dir):
    """What the subprocess (and the reference, in-process) saves; ``output_dir``: the trainer's."""
    if kind == "model":
        perturbed_colbert(source).save(str(target))
    elif kind == "final":
        trainer = make(output_dir, max_steps=1)
        trainer.model = TinyEncoder(seed=7)
        trainer.save_model(str(target))
    elif kind == "hub":
        from mlx_hf_bridge.hub import push_to_hub

        push_to_hub(perturbed_colbert(source).save, "tester/killed")
    else:
        raise ValueError(kind)


def run_killed(tmp_path, kind, target, stage, nth=1, source="", env=None):
    script = tmp_path / "kill_script.py"
    script.write_text(KILL_SCRIPT.format(tests=str(TESTS)))
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", **(env or {})}
    r = subprocess.run([sys.executable, str(script), kind, str(target), stage, str(nth), str(source)],
                       env=full_env, capture_output=True, text=True, timeout=300)
    assert r.returncode == -signal.SIGKILL, (r.returncode, r.stdout[-1000:], r.stderr[-3000:])


def staging_dirs(folder):
    return [p for p in Path(folder).iterdir() if p.name.startswith(io_utils.STAGING_PREFIX)]


@pytest.fixture(scope="module")
def pylate_source(tmp_path_factory, colbert):
    """A saved PyLate folder: loading it twice gives the same weights (a plain HF folder gets a random Dense)."""
    folder = tmp_path_factory.mktemp("src") / "model"
    colbert.save(str(folder))
    return folder


@pytest.fixture(scope="module")
def saved_model_folder(tmp_path_factory, tiny_bert_dir, colbert):
    """A folder with a previous save and the user's files."""
    folder = tmp_path_factory.mktemp("prev") / "model"
    user_files(folder)
    colbert.save(str(folder))
    return folder


@pytest.fixture(scope="module")
def new_model_reference(tmp_path_factory, saved_model_folder, pylate_source):
    """The folder after an uninterrupted new save over ``saved_model_folder``."""
    ref = tmp_path_factory.mktemp("ref") / "model"
    shutil.copytree(saved_model_folder, ref)
    build_and_save("model", ref, pylate_source, None)
    return hashes(ref)


@pytest.mark.parametrize("stage,nth", [("staged", 1), ("complete", 1), ("moved", 3)])
def test_kill_during_model_save(tmp_path, saved_model_folder, new_model_reference, pylate_source, stage, nth):
    folder = tmp_path / "model"
    shutil.copytree(saved_model_folder, folder)
    before = hashes(folder)
    run_killed(tmp_path, "model", folder, stage, nth, source=pylate_source)
    assert len(staging_dirs(folder)) == 1  # the killed save's staging folder, owner now dead
    if stage == "staged":  # killed before the save was complete: the previous state is untouched
        assert hashes(folder, skip_hidden_dirs=True) == before
        io_utils.recover_folder(folder)
        assert hashes(folder) == before
    else:  # complete: the next save / recover rolls the moves forward to the new state exactly
        io_utils.recover_folder(folder)
        assert hashes(folder) == new_model_reference
        if stage == "moved":
            from pylate import models as torch_models  # noqa: F401

            ref = tmp_path / "ref"
            build_and_save("model", ref, pylate_source, None)
            assert_equal_outputs(pylate_encode(folder), pylate_encode(ref))
    assert not staging_dirs(folder)


@pytest.mark.parametrize("stage", ["staged", "moved"])
def test_kill_during_trainer_final_save(tmp_path, stage):
    out = tmp_path / "out"
    (out).mkdir()
    (out / "notes.txt").write_text("keep me\n")
    trainer = make(out, max_steps=4)
    trainer.train()
    trainer.save_model()
    before = hashes(out)
    ref = tmp_path / "ref"
    shutil.copytree(out, ref)
    build_and_save("final", ref, "", out)
    run_killed(tmp_path, "final", out, stage, 1 if stage == "staged" else 2)
    ckpt.clean_stale_temps(out)  # what the next train() does (a save_model recovers the same way)
    assert hashes(out) == (before if stage == "staged" else hashes(ref))
    assert ckpt.latest_checkpoint(out).name == "checkpoint-4"


def test_kill_during_hub_staging_then_next_push_removes_the_dead_temp(tmp_path, monkeypatch, pylate_source):
    from mlx_hf_bridge import hub
    from mlx_hf_bridge.hub import HubPushError, push_to_hub

    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    before = user_files(tmpdir / "user")
    run_killed(tmp_path, "hub", tmpdir, "staged", 1, source=pylate_source, env={"TMPDIR": str(tmpdir)})
    left = [p for p in tmpdir.iterdir() if p.name.startswith(hub.STAGING_STEM)]
    assert len(left) == 1 and io_utils.owner_alive(left[0]) is False
    monkeypatch.setattr(hub.tempfile, "tempdir", str(tmpdir))
    with pytest.raises(HubPushError) as info:
        push_to_hub(TinyEncoder(seed=7).save, "tester/again")
    assert not left[0].exists()
    assert [p for p in tmpdir.iterdir() if p.name.startswith(hub.STAGING_STEM)] == [info.value.local_path]
    assert_kept(before, tmpdir / "user")


# --- kill -9 in a checkpoint save: the previous checkpoints intact, resume bit-identical ---------
CKPT_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    sys.path.insert(0, {tests!r})
    os.environ["HF_HUB_OFFLINE"] = "1"
    import numpy as np
    from mlx_hf_bridge import io_utils
    from test_engine_checkpoint import StopAt, make
    from test_engine_standin import weights

    out, mode, step = sys.argv[1], sys.argv[2], int(sys.argv[3])
    name = f"checkpoint-{{step}}"

    def hook(at, path):
        if mode == "kill_staged" and at == "staged" and path.name.startswith(f".{{name}}.tmp-"):
            os.kill(os.getpid(), signal.SIGKILL)
        if mode == "kill_swap" and at == "moved" and path.name.startswith(f".{{name}}.old-"):
            os.kill(os.getpid(), signal.SIGKILL)

    io_utils._test_hook = hook
    resume = {{"resume": True, "kill_swap": os.path.join(out, "checkpoint-2")}}.get(mode)
    trainer = make(out, callbacks=[StopAt(4)] if mode == "first4" else None)
    trainer.train(resume_from_checkpoint=resume)
    np.savez(os.path.join(out, "final.npz"), **weights(trainer.model))
    """
)


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    trainer = make(tmp_path_factory.mktemp("ref") / "out")
    trainer.train()
    return weights(trainer.model)


def _ckpt_run(tmp_path, out, mode, step=0):
    script = tmp_path / "ckpt_script.py"
    script.write_text(CKPT_SCRIPT.format(tests=str(TESTS)))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run([sys.executable, str(script), str(out), mode, str(step)], env=env, capture_output=True,
                          text=True, timeout=300)


def without_health(h: dict) -> dict:
    """The health record is rewritten once the step after a checkpoint has run (by design)."""
    return {k: v for k, v in h.items() if k != "checkpoint_health.json"}


def _checkpoint_hashes(out):
    return {p.name: hashes(p) for p in sorted(Path(out).iterdir()) if p.name.startswith("checkpoint-")}


def test_kill_after_checkpoint_is_written_but_before_its_rename_then_resume_is_bit_identical(tmp_path, reference_run):
    out = tmp_path / "out"
    killed = _ckpt_run(tmp_path, out, "kill_staged", 4)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert [p.name for p in out.iterdir() if p.name.startswith("checkpoint-")] == ["checkpoint-2"]
    before = _checkpoint_hashes(out)
    assert ckpt.latest_checkpoint(out).name == "checkpoint-2"
    resumed = _ckpt_run(tmp_path, out, "resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert_same(dict(np.load(out / "final.npz")), reference_run)
    assert without_health(_checkpoint_hashes(out)["checkpoint-2"]) == without_health(before["checkpoint-2"])
    no_temps(out)


def test_kill_while_replacing_an_existing_checkpoint_restores_it_and_resume_is_bit_identical(tmp_path, reference_run):
    out = tmp_path / "out"
    first = _ckpt_run(tmp_path, out, "first4")
    assert first.returncode == 0, first.stderr[-2000:]
    before = _checkpoint_hashes(out)
    assert set(before) == {"checkpoint-2", "checkpoint-4"}
    # resume from checkpoint-2 explicitly: checkpoint-4 is saved again, replacing the old one (a swap)
    killed = _ckpt_run(tmp_path, out, "kill_swap", 4)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert not (out / "checkpoint-4").exists()
    assert [p for p in out.iterdir() if p.name.startswith(".checkpoint-4.old-")]
    ckpt.clean_stale_temps(out)
    after = _checkpoint_hashes(out)
    assert after["checkpoint-4"] == before["checkpoint-4"]  # the previous checkpoint-4 is back, byte for byte
    assert without_health(after["checkpoint-2"]) == without_health(before["checkpoint-2"])
    no_temps(out)
    resumed = _ckpt_run(tmp_path, out, "resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert_same(dict(np.load(out / "final.npz")), reference_run)
