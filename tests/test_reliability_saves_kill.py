"""kill -9 in the middle of every kind of save: the previous state intact (or, once the save was
complete, rolled forward to exactly the new one), and resume bit-identical after a killed checkpoint.

Each save runs in a subprocess that SIGKILLs itself at a chosen point: ``io_utils._test_hook``
is called at "staged" (everything written, not yet marked complete), "complete" (marked, nothing
moved), "moved" (after each move / rename) and "committed".
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import mlx_hf_bridge  # noqa: F401
import mlx.core as mx
import numpy as np
import pytest
from test_engine_checkpoint import assert_same, make
from test_engine_standin import TinyEncoder, weights
from test_reliability_saves import assert_equal_outputs, assert_kept, hashes, no_temps, pylate_encode, user_files

from mlx_hf_bridge import io_utils
from mlx_hf_bridge.engine import checkpoint as ckpt

TESTS = Path(__file__).parent


@pytest.fixture(scope="module")
def colbert(tiny_bert_dir):
    from mlx_hf_bridge.pylate import models

    return models.ColBERT(str(tiny_bert_dir))


# --- kill -9 in the middle of a save -------------------------------------------------------------
KILL_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys, time
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
            if len(seen) == nth and os.environ.get("PAUSE_DIR"):  # pause instead: another save runs meanwhile
                pause = Path(os.environ["PAUSE_DIR"])
                (pause / "ready").write_text(str(path))
                for _ in range(6000):
                    if (pause / "go").exists():
                        return
                    time.sleep(0.05)
                raise SystemExit("never released")
            if len(seen) == nth:
                os.kill(os.getpid(), signal.SIGKILL)

    io_utils._test_hook = hook
    from test_reliability_saves_kill import build_and_save
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
    elif kind == "facade":  # transformers' AutoModel.save_pretrained spelling; ``source``: an HF folder
        from mlx.utils import tree_flatten, tree_unflatten

        from mlx_hf_bridge.transformers import AutoModel

        model = AutoModel.from_pretrained(str(source))
        model.update(tree_unflatten([(k, v * 1.5) for k, v in tree_flatten(model.parameters())]))
        model.save_pretrained(str(target))
    elif kind == "dense":
        perturbed_colbert(source).dense[0].save(str(target))
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


# each kill is a ~11 s subprocess: CI kills at the first stage; the others run with the slow tests
@pytest.mark.parametrize("stage,nth", [("staged", 1), pytest.param("complete", 1, marks=pytest.mark.slow),
                                       pytest.param("moved", 3, marks=pytest.mark.slow)])
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
            ref = tmp_path / "ref"
            build_and_save("model", ref, pylate_source, None)
            assert_equal_outputs(pylate_encode(folder), pylate_encode(ref))
    assert not staging_dirs(folder)


@pytest.mark.parametrize("stage,kind", [("staged", "facade"), ("complete", "dense"),
                                        pytest.param("complete", "facade", marks=pytest.mark.slow),
                                        pytest.param("staged", "dense", marks=pytest.mark.slow)])
def test_kill_during_facade_and_dense_saves(tmp_path, tiny_bert_dir, pylate_source, kind, stage):
    """The same guarantee for the encoder export and a Dense module folder: killed before the save is
    complete, the previous save and the user's files are untouched; after, recovery gives exactly the
    uninterrupted save."""
    from mlx_hf_bridge.pylate import models
    from mlx_hf_bridge.transformers import AutoModel

    source = tiny_bert_dir if kind == "facade" else pylate_source
    folder = tmp_path / "folder"
    user_files(folder)
    if kind == "facade":
        AutoModel.from_pretrained(str(source)).save_pretrained(str(folder))
    else:
        models.ColBERT(str(source)).dense[0].save(str(folder))
    before = hashes(folder)
    ref = tmp_path / "ref"
    shutil.copytree(folder, ref)
    build_and_save(kind, ref, source, None)
    assert hashes(ref) != before  # the new save really differs
    run_killed(tmp_path, kind, folder, stage, 1, source=source)
    assert len(staging_dirs(folder)) == 1
    io_utils.recover_folder(folder)
    assert hashes(folder) == (before if stage == "staged" else hashes(ref))
    no_temps(folder)


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


def test_killed_save_is_not_rolled_forward_over_a_newer_save_by_another_tool(tmp_path, saved_model_folder,
                                                                              pylate_source):
    """Killed mid-moves, then saved again by torch PyLate (which knows nothing of the staging folder):
    recovery must not put the killed save's remaining files over the newer ones."""
    from pylate import models as torch_models

    folder = tmp_path / "model"
    shutil.copytree(saved_model_folder, folder)
    run_killed(tmp_path, "model", folder, "moved", 3, source=pylate_source)
    torch_models.ColBERT(str(pylate_source), device="cpu").save(str(folder))
    newer = hashes(folder, skip_hidden_dirs=True)
    done = io_utils.recover_folder(folder)
    assert done["removed"] and not done["rolled_forward"]
    assert hashes(folder) == newer and not staging_dirs(folder)


def test_a_second_save_into_the_same_folder_never_deletes_a_save_in_progress(tmp_path, saved_model_folder,
                                                                            new_model_reference, pylate_source,
                                                                            colbert):
    """Process A is paused inside its save (staged, not yet moved); this process saves into the same
    folder meanwhile (its save recovers the folder first) and cleans it as a new train() would.
    A's staging folder survives both; A then finishes, and its save is the one in the folder."""
    import time

    folder = tmp_path / "model"
    shutil.copytree(saved_model_folder, folder)
    before = hashes(folder)
    pause = tmp_path / "pause"
    pause.mkdir()
    script = tmp_path / "kill_script.py"
    script.write_text(KILL_SCRIPT.format(tests=str(TESTS)))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PAUSE_DIR": str(pause)}
    a = subprocess.Popen([sys.executable, str(script), "model", str(folder), "staged", "1", str(pylate_source)],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(6000):  # wait (no time limit asserted) until A sits inside its save
            if (pause / "ready").exists() or a.poll() is not None:
                break
            time.sleep(0.05)
        assert (pause / "ready").exists(), a.communicate()[1][-2000:]
        staging = Path((pause / "ready").read_text())
        colbert.save(str(folder))  # B: a whole save into the same folder while A is mid-save
        ckpt.clean_stale_temps(folder)
        assert staging.is_dir() and io_utils.owner_alive(staging) is True
    finally:
        (pause / "go").write_text("")
        out, err = a.communicate(timeout=300)
    assert a.returncode == 0 and "finished without being killed" in out, err[-2000:]
    assert hashes(folder) == new_model_reference  # A saved last: its files, the user's files untouched
    assert_kept({k: v for k, v in before.items() if k in user_files_names()}, folder)
    no_temps(folder)


def user_files_names():
    return {"train.py", "data.csv", "notes.txt", "runs", "runs/log.txt"}
