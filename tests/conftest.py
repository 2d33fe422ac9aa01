"""Shared fixtures: tiny random HF folders (BERT, ModernBERT) and the real MiniLM folder.

Folders are written by *transformers* (the torch reference), so every test starts from files the
real libraries produced. Torch and MLX share the process here for parity only, never for timing.
"""

from __future__ import annotations

import os
import shutil

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import mlx_hf_bridge  # noqa: E402,F401  (BLAS preload must precede mlx.core)
import pytest  # noqa: E402

from mlx_hf_bridge import assets  # noqa: E402


def _save_tiny(path, config, tokenizer_src, seed, init_scale=None):
    import torch
    from transformers import AutoModel, AutoTokenizer

    torch.manual_seed(seed)
    model = AutoModel.from_config(config).eval()
    if init_scale is not None:  # larger weights make the layers dominate (catches subtle bugs)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if p.dim() > 1 and "embeddings" not in name:
                    p.normal_(0.0, init_scale)
    model.save_pretrained(path)
    AutoTokenizer.from_pretrained(str(tokenizer_src)).save_pretrained(path)
    return path


def tiny_bert_config(**overrides):
    from transformers import BertConfig

    kw = dict(
        vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=512, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    kw.update(overrides)
    return BertConfig(**kw)


def tiny_modernbert_config(**overrides):
    from transformers import ModernBertConfig

    kw = dict(
        vocab_size=50368, hidden_size=32, intermediate_size=48, num_hidden_layers=4,
        # head_dim 16: the fused CPU attention runs (as for every real ModernBERT, head_dim 64)
        num_attention_heads=2, local_attention=16, global_attn_every_n_layers=3,
        max_position_embeddings=1024, pad_token_id=50283, cls_token_id=50281, sep_token_id=50282,
        bos_token_id=50281, eos_token_id=50282,
    )
    kw.update(overrides)
    return ModernBertConfig(**kw)


@pytest.fixture(scope="session")
def minilm_dir():
    return assets.minilm_path()


@pytest.fixture(scope="session")
def modernbert_tokenizer_dir():
    return assets.modernbert_tokenizer_dir()


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory, minilm_dir):
    return _save_tiny(tmp_path_factory.mktemp("tiny-bert"), tiny_bert_config(), minilm_dir, seed=0)


@pytest.fixture(scope="session")
def tiny_modernbert_dir(tmp_path_factory, modernbert_tokenizer_dir):
    return _save_tiny(
        tmp_path_factory.mktemp("tiny-modernbert"), tiny_modernbert_config(), modernbert_tokenizer_dir, seed=0
    )


@pytest.fixture
def copy_dir(tmp_path):
    """Copy a folder into the test's tmp dir (for tests that damage or mutate it)."""

    def _copy(src, name="copy"):
        dst = tmp_path / name
        shutil.copytree(src, dst)
        return dst

    return _copy


# --- two reference environments (./run tests runs the suite in both) ---------------------------
# .venv: PyLate 1.6 / ST 5.3 / transformers 5.3; .venv-st6: ST 6.2 / transformers 5.24, no PyLate.
# `@pytest.mark.st6` tests need ST 6, `@pytest.mark.st5` tests need ST 5; a test that needs PyLate
# where it is not installed is reported as skipped (its ModuleNotFoundError for 'pylate' becomes the
# skip reason), so test files need no per-test guards for the second venv.
def _major(dist):
    from importlib import metadata

    try:
        return int(metadata.version(dist).split(".")[0])
    except metadata.PackageNotFoundError:
        return None


ST_MAJOR = _major("sentence-transformers")
PYLATE_MISSING = _major("pylate") is None
_NO_PYLATE = "needs PyLate 1.6, which this environment (the ST 6 reference venv) does not have"


# Tests whose PyLate use happens in a verify subprocess and reaches the test only as a failed report
# (pytest truncates that assertion message, so the hook below cannot see why): they need PyLate.
NEEDS_PYLATE = {
    "tests/test_st_trainer.py::test_colbert_end_to_end_with_eval_evaluator_and_save",
    "tests/test_verify.py::test_colbert_export_passes_and_tampered_dense_fails",
    "tests/test_verify.py::test_relative_folder_reaches_the_torch_side",
    "tests/test_reasonir_example.py::test_end_to_end_on_mlx",
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if PYLATE_MISSING and item.nodeid in NEEDS_PYLATE:
            item.add_marker(pytest.mark.skip(reason=_NO_PYLATE + " (real PyLate verifies the saved folder)"))
        if item.get_closest_marker("st6") and not (ST_MAJOR or 0) >= 6:
            item.add_marker(pytest.mark.skip(reason="needs sentence-transformers 6 (runs in .venv-st6)"))
        if item.get_closest_marker("st5") and ST_MAJOR != 5:
            item.add_marker(pytest.mark.skip(reason="needs sentence-transformers 5 / PyLate 1.6 (runs in .venv)"))


def _needs_missing_pylate(exc) -> bool:
    """The import of PyLate failed here, or in a subprocess whose error the test re-raised (verify's torch side)."""
    if not PYLATE_MISSING:
        return False
    if isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] == "pylate":
        return True
    return "ModuleNotFoundError: No module named 'pylate'" in str(exc)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    report = (yield).get_result()
    if call.excinfo is not None and _needs_missing_pylate(call.excinfo.value):
        report.outcome, report.longrepr = "skipped", (str(item.path), item.location[1] or 0, f"Skipped: {_NO_PYLATE}")


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    report = (yield).get_result()
    if PYLATE_MISSING and report.failed and "No module named 'pylate" in str(report.longrepr):
        report.outcome, report.longrepr = "skipped", (str(collector.path), 0, f"Skipped: {_NO_PYLATE}")


@pytest.fixture
def tmpfs(tmp_path):
    """``mount(size, read_only=False)`` -> a fresh small tmpfs (root only: the disk-full and read-only
    faults need a small disk of their own); unmounted afterwards."""
    import subprocess

    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (the disk-full / read-only faults need a small disk)")
    mounts = []

    def mount(size: str, read_only: bool = False):
        point = tmp_path / f"disk{len(mounts)}"
        point.mkdir()
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)], capture_output=True)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
        mounts.append(point)
        if read_only:
            subprocess.run(["mount", "-o", "remount,ro", str(point)], check=True)
        return point

    yield mount
    for point in mounts:
        subprocess.run(["mount", "-o", "remount,rw", str(point)], capture_output=True)
        if subprocess.run(["umount", str(point)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(point)], capture_output=True)


# Random word soup for parity batches; punctuation makes documents hit the skiplist.
WORDS = (
    "apple river stone cloud music paper light green blue fast slow house tree ocean city train "
    "window garden orange silver market bridge winter summer number planet"
).split()


def random_sentence(rng, n_min: int, n_max: int, punct) -> str:
    words = []
    for _ in range(rng.randint(n_min, n_max)):
        words.append(rng.choice(WORDS))
        if rng.random() < 0.3:  # punctuation: skiplist ids in the documents
            words[-1] += rng.choice(punct)
    return " ".join(words)
