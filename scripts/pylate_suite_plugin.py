"""pytest plugin (``-p pylate_suite_plugin``) for PyLate's own tests run against local stand-ins.

Set by scripts/pylate_suite.py through the environment:
  PYLATE_SUITE_STORE  folder with ``hub.json`` (repo id -> {commit, files, refs}) and ``datasets.json``
                      (dataset id -> local Hub-style folder).
  HF_HOME / HF_HUB_OFFLINE=1  so every ``from_pretrained(<hub id>)`` reads the stand-in cache.

The test bodies stay unchanged: before each test's fixtures the Hub cache is (re)laid out exactly as
huggingface_hub writes it (``models--org--name/snapshots/<commit>/...``; ``refs/main`` only for repos
the tests load without a revision) because PyLate's ``cleanup_hf_cache`` fixture deletes it, and
``datasets.load_dataset(<hub id>, ...)`` reads the matching local folder.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

STORE = Path(os.environ["PYLATE_SUITE_STORE"])


def layout_hub_cache(cache: Path) -> None:
    """Write the stand-in repos in huggingface_hub's cache layout (snapshot files link to the store)."""
    repos = json.loads((STORE / "hub.json").read_text())
    for repo_id, entry in repos.items():
        repo = cache / ("models--" + repo_id.replace("/", "--"))
        snapshot = repo / "snapshots" / entry["commit"]
        if snapshot.is_dir():
            continue
        for rel, src in entry["files"].items():
            dst = snapshot / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(src, dst)
        if entry["refs"]:
            (repo / "refs").mkdir(parents=True, exist_ok=True)
            (repo / "refs" / "main").write_text(entry["commit"])


def _patch_load_dataset() -> None:
    import datasets

    folders = json.loads((STORE / "datasets.json").read_text())
    original = datasets.load_dataset
    if getattr(original, "_pylate_suite", False):
        return

    def load_dataset(path, *args, **kwargs):
        return original(folders.get(path, path), *args, **kwargs)

    load_dataset._pylate_suite = True
    datasets.load_dataset = load_dataset


_patch_load_dataset()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """Before any fixture of the test (module-scoped ones included) is set up."""
    from huggingface_hub.constants import HF_HUB_CACHE

    layout_hub_cache(Path(HF_HUB_CACHE))
