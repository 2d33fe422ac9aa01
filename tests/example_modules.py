"""Example folders' helper scripts, loaded by path under unique names.

Several ``examples/*_scripts`` folders ship a ``make_local_data.py``; importing one through ``sys.path``
caches it as ``make_local_data`` and every later import in the same pytest process gets that one.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType


def load_script_module(path: Path, name: str) -> ModuleType:
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
