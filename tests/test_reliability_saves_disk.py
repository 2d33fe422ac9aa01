"""A full, read-only or forbidden disk during every kind of save: one SaveError naming the file, the
cause and the fix; the previous save intact; no temp left; resume bit-identical afterwards.

The disk is a small tmpfs the test mounts (root only; skipped with the reason otherwise), filled
with a filler file. Root bypasses file permissions, so EACCES runs only for a non-root user.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
from pathlib import Path

import mlx_hf_bridge  # noqa: F401
import pytest
from test_engine_checkpoint import assert_same, make
from test_engine_standin import TinyEncoder, weights
from test_reliability_saves import hashes, user_files

from mlx_hf_bridge import io_utils
from mlx_hf_bridge.io_utils import SaveError


def fill(disk: Path, leave: int = 0) -> Path:
    """Fill ``disk`` up to ``leave`` free bytes with one filler file."""
    filler = disk / "filler.bin"
    target = shutil.disk_usage(disk).free - leave
    chunk = b"\0" * (1 << 20)
    with open(filler, "wb") as f:
        with contextlib.suppress(OSError):
            while target > 0:
                f.write(chunk[: min(len(chunk), target)])
                target -= len(chunk)
    return filler


def temps(root) -> list[str]:
    return [str(p) for p in Path(root).rglob(".*") if any(t in p.name for t in (".tmp-", ".old-", ".del-", ".save."))]


def assert_disk_full_error(err: SaveError, folder: Path):
    assert isinstance(err, SaveError) and isinstance(err, OSError)
    assert err.errno == errno.ENOSPC
    text = str(err)
    assert "No space left on device while writing " + str(folder) in text, text
    assert "MB free" in text and "needs" in text and "choose another output_dir" in text, text
    assert ".save.tmp-" not in text and ".tmp-" not in text, "the message names a temp path: " + text
    assert Path(err.filename).parent == folder or folder in Path(err.filename).parents


@pytest.fixture(scope="module")
def colbert(tiny_bert_dir):
    from mlx_hf_bridge.pylate import models

    return models.ColBERT(str(tiny_bert_dir))


# --- disk full --------------------------------------------------------------------------------
@pytest.mark.parametrize("leave", [0, 300_000], ids=["nothing-free", "room-for-the-small-files"])
def test_disk_full_during_colbert_save_names_the_file_and_keeps_the_previous_save(tmpfs, colbert, leave):
    disk = tmpfs("24m")
    folder = disk / "model"
    user_files(folder)
    colbert.save(str(folder))
    before = hashes(folder)
    filler = fill(disk, leave)
    new = perturbed_colbert_from(colbert)
    with pytest.raises(SaveError) as info:
        new.save(str(folder))
    assert_disk_full_error(info.value, folder)
    if leave:  # MLX's errno-less "[write] Unable to write" on the weights, named as a full disk
        assert info.value.filename == str(folder / "model.safetensors") and "MLX" in str(info.value)
    assert "needs ~" in str(info.value)  # the model's size is known
    assert hashes(folder) == before
    assert temps(disk) == []
    filler.unlink()
    new.save(str(folder))  # with space again the save goes through
    assert hashes(folder) != before and temps(disk) == []


def perturbed_colbert_from(colbert):
    from mlx.utils import tree_flatten, tree_unflatten

    import copy

    new = copy.deepcopy(colbert)
    new.update(tree_unflatten([(k, v * 1.5) for k, v in tree_flatten(colbert.parameters())]))
    return new


def test_disk_full_during_transformers_facade_save_pretrained(tmpfs, tiny_bert_dir):
    from mlx_hf_bridge.transformers import AutoModel

    disk = tmpfs("24m")
    folder = disk / "encoder"
    model = AutoModel.from_pretrained(str(tiny_bert_dir))
    model.save_pretrained(str(folder))
    before = hashes(folder)
    fill(disk, 100_000)
    with pytest.raises(SaveError) as info:
        model.save_pretrained(str(folder))
    assert_disk_full_error(info.value, folder)
    assert hashes(folder) == before and temps(disk) == []


class FillDiskAt:
    """Fill the disk after a step (before that step's checkpoint is saved)."""

    def __init__(self, disk, step):
        self.disk, self.step, self.filler, self.before = disk, step, None, None

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            self.before = {p.name: hashes(p) for p in Path(args.output_dir).iterdir() if p.name.startswith("checkpoint-")}
            self.filler = fill(self.disk, 0)


def test_disk_full_during_checkpoint_save_keeps_the_last_checkpoint_and_resume_is_bit_identical(tmpfs, tmp_path):
    reference = make(tmp_path / "ref")
    reference.train()
    disk = tmpfs("4m")
    out = disk / "out"
    full = FillDiskAt(disk, 4)
    with pytest.raises(SaveError) as info:
        make(out, callbacks=[full]).train()
    assert_disk_full_error(info.value, out / "checkpoint-4")
    assert {p.name: hashes(p) for p in out.iterdir() if p.name.startswith("checkpoint-")} == full.before
    assert list(full.before) == ["checkpoint-2"] and temps(disk) == []
    full.filler.unlink()
    resumed = make(out)
    resumed.train(resume_from_checkpoint=True)
    assert_same(weights(resumed.model), weights(reference.model))


def test_disk_full_during_trainer_final_save_keeps_checkpoints_and_notes(tmpfs):
    disk = tmpfs("4m")
    out = disk / "out"
    out.mkdir()
    (out / "notes.txt").write_text("keep me\n")
    trainer = make(out, max_steps=4)
    trainer.train()
    before = hashes(out)
    fill(disk, 0)
    with pytest.raises(SaveError) as info:
        trainer.save_model()
    assert_disk_full_error(info.value, out)
    assert hashes(out) == before and temps(disk) == []


def test_disk_full_during_push_to_hub_staging_names_tmpdir(tmpfs, colbert, monkeypatch):
    from mlx_hf_bridge import hub
    from mlx_hf_bridge.hub import push_to_hub

    disk = tmpfs("24m")
    monkeypatch.setattr(hub.tempfile, "tempdir", str(disk))
    fill(disk, 200_000)
    with pytest.raises(SaveError) as info:
        push_to_hub(colbert.save, "tester/full")
    err = info.value
    assert err.errno == errno.ENOSPC and "No space left on device while writing " + str(disk) in str(err)
    assert "set TMPDIR" in str(err)
    assert [p.name for p in disk.iterdir()] == ["filler.bin"]  # the staging folder is gone


def test_disk_full_writing_the_model_card_keeps_the_old_card(tmpfs, colbert):
    from mlx_hf_bridge.model_card import write_model_card

    disk = tmpfs("1m")
    folder = disk / "card"
    folder.mkdir()
    (folder / "README.md").write_text("my own card\n")
    fill(disk, 0)
    with pytest.raises(SaveError) as info:
        write_model_card(folder, {"model": colbert, "model_name": "x" * 50_000})
    assert info.value.errno == errno.ENOSPC
    assert f"No space left on device while writing {folder / 'README.md'}" in str(info.value)
    assert (folder / "README.md").read_text() == "my own card\n" and temps(disk) == []


# --- read-only file system and permissions ---------------------------------------------------------
def test_read_only_file_system_during_model_save_and_trainer_save(tmpfs, colbert):
    disk = tmpfs("24m")
    folder = disk / "model"
    colbert.save(str(folder))
    out = disk / "out"
    trainer = make(out, max_steps=2)
    trainer.train()
    before = hashes(disk)
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
    for save, where in ((lambda: colbert.save(str(folder)), folder), (trainer.save_model, out),
                        (lambda: io_utils.save_folder(disk / "new", TinyEncoder().save), disk / "new")):
        with pytest.raises(SaveError) as info:
            save()
        assert info.value.errno == errno.EROFS
        assert f"Read-only file system: cannot write {where}." in str(info.value)  # the folder, not a temp
        assert "Remount it read-write or choose another output_dir" in str(info.value)
    assert hashes(disk) == before


def test_permission_denied_names_the_folder(tmp_path, colbert):
    if os.geteuid() == 0:
        pytest.skip("root bypasses file permissions, so a chmod 0o555 folder is still writable (EACCES cannot "
                    "happen); the read-only tmpfs test covers the refusal path as root")
    folder = tmp_path / "locked"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine\n")
    folder.chmod(0o555)
    try:
        with pytest.raises(SaveError) as info:
            colbert.save(str(folder))
        assert info.value.errno == errno.EACCES
        assert f"Permission denied while writing {folder}" in str(info.value) and "chmod" in str(info.value)
        assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]
    finally:
        folder.chmod(0o755)


# --- how errno-less and rare causes are classified ---------------------------------------------
def test_mlx_write_failure_with_free_space_is_not_called_a_full_disk(tmp_path):
    from mlx_hf_bridge.save_errors import map_save_error

    target = tmp_path / "model.safetensors"
    err = map_save_error(RuntimeError("[write] Unable to write 8 bytes to file."), target, needed=8)
    assert isinstance(err, SaveError) and err.errno == errno.EIO
    assert f"Could not write {target}" in str(err) and "quota" in str(err) and "MB free" in str(err)


def test_quota_and_permission_errors_are_named(tmp_path):
    from mlx_hf_bridge.save_errors import map_save_error

    path = tmp_path / "out" / "model.safetensors"
    quota = map_save_error(OSError(errno.EDQUOT, "Disk quota exceeded", str(path)), path.parent, needed=5_000_000)
    assert quota.errno == errno.EDQUOT and f"Disk quota exceeded while writing {path}" in str(quota)
    assert "needs ~5.0 MB" in str(quota) and "within your quota" in str(quota)
    denied = map_save_error(PermissionError(errno.EACCES, "Permission denied", str(path)), path.parent)
    assert denied.errno == errno.EACCES and f"Permission denied while writing {path}" in str(denied)
    assert map_save_error(ValueError("not a disk problem"), path) is None
    assert map_save_error(OSError(errno.EIO, "I/O error"), path) is None  # not a refusal this maps
