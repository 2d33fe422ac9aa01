"""The supported range: the bridge's requirements hold in both test venvs (oldest and newest transformers),
and on the newest releases pip serves, installing the bridge downgrades nothing."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
STACK = ("transformers", "huggingface_hub", "datasets", "tokenizers")


def _setup_pins(array: str) -> dict[str, str]:
    """``name -> version`` of a pin array in scripts/setup.sh (``OLDEST_PINS`` / ``ST6_PINS``)."""
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    return dict(re.findall(r"([\w-]+)==([\d.]+)", re.search(rf"{array}=\((.*?)\)", setup).group(1)))


def _requirements():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in project["dependencies"]]


def test_no_upper_pins_and_the_licence_is_an_spdx_string():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    for req in _requirements():
        assert not any(s.operator in ("<", "<=", "==", "~=") for s in req.specifier), req
    assert project["project"]["license"] == "Apache-2.0"
    assert any(Requirement(r).name == "setuptools" and Requirement(r).specifier.contains("77")
               for r in project["build-system"]["requires"])


def test_the_installed_stack_satisfies_the_bridge_requirements():
    for req in _requirements():
        if req.marker is not None and not req.marker.evaluate():
            continue
        installed = metadata.version(req.name)
        assert req.specifier.contains(installed, prereleases=True), f"{req} but {installed} is installed"


def test_the_lower_bounds_are_what_the_oldest_venv_tests():
    """The main venv (PyLate 1.6 pins transformers 5.3.0) is the bottom of the range."""
    bounds = {r.name: min(Version(s.version) for s in r.specifier if s.operator == ">=")
              for r in _requirements() if r.name in STACK}
    assert bounds["transformers"] == Version("5.3.0")
    from mlx_hf_bridge.sentence_transformers.hf_fields import TESTED_RANGE

    assert TESTED_RANGE.split(" .. ")[0] == "5.3.0"
    assert TESTED_RANGE.split(" .. ")[1] == _setup_pins("ST6_PINS")["transformers"]
    # setup.sh pins the main venv at exactly those lower bounds (else pip would pick the newest)
    assert {name: Version(v) for name, v in _setup_pins("OLDEST_PINS").items()} == {name: bounds[name] for name in STACK}


def test_the_main_venv_runs_the_bottom_of_the_range():
    """What CI's fresh .venv gets: exactly the lower bounds (PyLate 1.6 needs transformers <= 5.3.0)."""
    pytest.importorskip("pylate")  # the main venv; .venv-st6 is the top of the range
    bounds = {r.name: min(Version(s.version) for s in r.specifier if s.operator == ">=")
              for r in _requirements() if r.name in STACK}
    assert {name: Version(metadata.version(name)) for name in STACK} == bounds


@pytest.mark.st6
def test_newest_releases_install_the_bridge_with_no_downgrade(tmp_path):
    """In the ST 6.2 venv: pip's resolver, asked for the bridge and the newest transformers / hub /
    datasets / tokenizers, installs only the bridge itself (everything else is already the newest)."""
    assert metadata.version("transformers") == _setup_pins("ST6_PINS")["transformers"]
    report = tmp_path / "report.json"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--disable-pip-version-check",
         "--report", str(report), "-e", str(ROOT), "--upgrade", *STACK],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    planned = {i["metadata"]["name"].lower().replace("_", "-"): i["metadata"]["version"]
               for i in json.loads(report.read_text())["install"]}
    for name, version in planned.items():
        if name != "mlx-hf-bridge":
            assert Version(version) > Version(metadata.version(name)), f"pip would downgrade {name} to {version}"
    assert set(planned) == {"mlx-hf-bridge"}, f"not the newest in this venv: {planned}"


@pytest.mark.st6
def test_a_fresh_install_resolves_to_the_newest_stack(tmp_path):
    """As in a fresh venv (``--ignore-installed``): pip resolves the bridge to the same transformers /
    hub / datasets / tokenizers as this venv holds, which the test above shows are the newest."""
    report = tmp_path / "report.json"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--disable-pip-version-check",
         "--ignore-installed", "--report", str(report), "-e", str(ROOT)],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    planned = {i["metadata"]["name"].lower().replace("_", "-"): i["metadata"]["version"]
               for i in json.loads(report.read_text())["install"]}
    for name in STACK:
        assert planned[name.replace("_", "-")] == metadata.version(name), (name, planned)
