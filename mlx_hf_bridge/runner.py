"""``mlx-hf-bridge run script.py [args]``: run an unmodified PyLate / sentence-transformers / transformers
script on MLX.

While the script runs, a ``sys.meta_path`` finder resolves every import of ``pylate[.x]`` to
``mlx_hf_bridge.pylate[.x]`` and of ``sentence_transformers[.x]`` to
``mlx_hf_bridge.sentence_transformers[.x]``. These are aliases, not copies:
``sys.modules["pylate.models"] is mlx_hf_bridge.pylate.models``, so every import form works
(``import pylate``, ``from pylate import models``, ``from pylate.losses import CachedContrastive``,
``import sentence_transformers.evaluation``, ``from sentence_transformers.training_args import
BatchSamplers``...).

``transformers`` stays the real module (tokenizers, configs, utilities), but the names the script takes
from it for models, the Trainer and collators are the bridge's (``mlx_hf_bridge.transformers``), and a
torch-only name the bridge lacks fails naming it: see :mod:`mlx_hf_bridge.runner_transformers`.

Nothing falls back to torch. A submodule or name the bridge does not provide fails with an
``ImportError`` / ``AttributeError`` that names it, the module the script asked for, and the bridge
version.

torch: PyLate's examples call ``model = torch.compile(model)``. With torch installed, ``torch`` is
imported only if the script imports it, and then ``torch.compile`` returns MLX modules unchanged
(anything else goes to the real ``torch.compile``). Without torch, a script's ``import torch`` gets
a stub that computes nothing: the names PyLate / ST scripts and ``datasets`` touch (``compile``,
``manual_seed``, ``no_grad``, ``cuda.is_available``, ``backends.mps.is_available``, ``Tensor`` /
``Generator`` / ``nn.Module`` as types nothing is an instance of, ``utils.data.get_worker_info``; the
list is ``torch_stub.PROVIDED``); any other name, or making one of those types, fails and says so.
Libraries never see the stub unless the script imported it first, and ``datasets`` decides that
torch is absent before the stub can exist.

``fp16=True`` / ``bf16=True`` are handled by the bridge's ``SentenceTransformerTrainingArguments``.

Python API: ``main(argv) -> int`` (what the CLI calls) and ``redirect_imports()``, a context
manager that installs the redirection in the current process and removes it afterwards.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import re
import runpy
import sys
import types

from . import runner_transformers
from .torch_stub import (
    SCRIPT_DIRS,
    STUB_MODULES,
    TorchStubFinder,
    bridge_version,
    build_torch_stub,
    patch_torch_compile,
    torch_installed,
    unpatch_torch_compile,
)

REDIRECTS = {
    "pylate": "mlx_hf_bridge.pylate",
    "sentence_transformers": "mlx_hf_bridge.sentence_transformers",
}

USAGE = """\
usage: mlx-hf-bridge run [-h] script.py [args ...]
       mlx-hf-bridge run -m module [args ...]

Run a PyLate / sentence-transformers / transformers training script unchanged on MLX: its `pylate`
and `sentence_transformers` imports resolve to mlx_hf_bridge, so do its `transformers` models, Trainer,
TrainingArguments and collators (tokenizers and configs stay transformers'), `torch.compile(model)`
returns the MLX model unchanged. Everything after the script belongs to the script (it sees sys.argv = [script, *args]).
"""


def _original_name(bridge_name: str) -> str:
    """``mlx_hf_bridge.pylate.models`` -> ``pylate.models`` (unchanged when not a redirect target)."""
    for original, target in REDIRECTS.items():
        if bridge_name == target or bridge_name.startswith(target + "."):
            return original + bridge_name[len(target):]
    return bridge_name


def _missing_message(fullname: str, bridge_name: str) -> str:
    return (
        f"mlx_hf_bridge {bridge_version()} does not provide `{fullname}`: under `mlx-hf-bridge run` the script's "
        f"`{fullname}` is `{bridge_name}`, which does not exist. Nothing falls back to torch: remove that "
        "use from the script, or run it with the torch libraries (plain `python`)."
    )


class BridgeImportError(ModuleNotFoundError):
    """A ``pylate`` / ``sentence_transformers`` name the bridge does not provide."""


# --- pylate / sentence_transformers aliasing -----------------------------------------------------
class _AliasLoader(importlib.abc.Loader):
    """Returns the already-imported bridge module itself, leaving its identity and spec intact."""

    def __init__(self, target: str):
        self.target = target
        self._saved_spec = None

    def create_module(self, spec):
        module = importlib.import_module(self.target)
        # importlib overwrites __spec__ of the module we return; keep the bridge's own spec so that
        # its lazy relative imports (``__package__`` vs ``__spec__.parent``) stay consistent.
        self._saved_spec = module.__spec__
        return module

    def exec_module(self, module):
        module.__spec__ = self._saved_spec
        _add_missing_attribute_hook(module)


def _add_missing_attribute_hook(module):
    """Give a bridge module without a module ``__getattr__`` one that names the missing attribute,
    the original module and the bridge version (only while ``run`` is active; removed afterwards)."""
    if "__getattr__" in vars(module):
        return
    original = _original_name(module.__name__)

    def __getattr__(name):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(f"module {module.__name__!r} has no attribute {name!r}")
        raise AttributeError(
            f"mlx_hf_bridge {bridge_version()} does not provide `{original}.{name}` "
            f"(`{original}` is `{module.__name__}` under `mlx-hf-bridge run`); nothing falls back to torch.",
            name=name,
            obj=module,
        )

    __getattr__._mlx_hf_bridge_hook = True
    module.__getattr__ = __getattr__
    _HOOKED.append(module)


_HOOKED: list = []


class BridgeFinder(importlib.abc.MetaPathFinder):
    """Maps ``pylate[.x]`` / ``sentence_transformers[.x]`` onto the bridge's modules."""

    def find_spec(self, fullname, path=None, target=None):
        top = fullname.partition(".")[0]
        if top not in REDIRECTS:
            if _original_name(fullname) != fullname:  # a bridge module loaded directly (lazy __getattr__)
                return _hooked_spec(self, fullname, path, target)
            return None
        bridge_name = REDIRECTS[top] + fullname[len(top):]
        try:
            bridge_spec = importlib.util.find_spec(bridge_name)
        except ModuleNotFoundError:
            bridge_spec = None
        if bridge_spec is None:
            # ``name`` is the bridge's name, not ``fullname``: importlib's from-list handling would
            # otherwise swallow this message and raise a generic "cannot import name".
            raise BridgeImportError(_missing_message(fullname, bridge_name), name=bridge_name)
        is_package = bridge_spec.submodule_search_locations is not None
        return importlib.util.spec_from_loader(fullname, _AliasLoader(bridge_name), is_package=is_package)


def _find_with_others(skip, fullname, path, target):
    """The spec the remaining meta path finders give ``fullname`` (ours skipped)."""
    for finder in sys.meta_path:
        if finder is skip or isinstance(finder, (BridgeFinder, TorchCompileFinder, TorchStubFinder,
                                                 runner_transformers.TransformersFinder)):
            continue
        find = getattr(finder, "find_spec", None)
        if find is not None and (spec := find(fullname, path, target)) is not None:
            return spec
    return None


def _after_exec(spec, callback):
    """Run ``callback(module)`` right after ``spec``'s loader executes the module."""
    if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
        return spec
    loader_exec = spec.loader.exec_module

    def exec_module(module):
        loader_exec(module)
        callback(module)

    spec.loader.exec_module = exec_module  # a path-based loader instance serves this one spec
    return spec


def _hooked_spec(finder, fullname, path, target):
    return _after_exec(_find_with_others(finder, fullname, path, target), _add_missing_attribute_hook)


# --- torch ---------------------------------------------------------------------------------------
class TorchCompileFinder(importlib.abc.MetaPathFinder):
    """When the real torch gets imported (by anyone), patch ``torch.compile`` right after it loads."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "torch":
            return None
        return _after_exec(_find_with_others(self, fullname, path, target), patch_torch_compile)


# --- install / uninstall -------------------------------------------------------------------------
def _redirected(name: str) -> bool:
    return any(name == top or name.startswith(top + ".") for top in REDIRECTS)


@contextlib.contextmanager
def redirect_imports():
    """Install the pylate / sentence_transformers aliasing and the torch handling; undo on exit."""
    import mlx_hf_bridge  # noqa: F401  (BLAS preload before anything imports mlx.core)

    saved = {name: sys.modules.pop(name) for name in list(sys.modules) if _redirected(name)}
    finders: list = [BridgeFinder()]
    stubbed = False
    if torch_installed():
        if "torch" in sys.modules:
            patch_torch_compile(sys.modules["torch"])
        else:
            finders.append(TorchCompileFinder())
    else:
        # datasets decides once, at import, whether torch exists (find_spec). Settle that now, while
        # torch is still absent, so a later script `import torch` (the stub) cannot change its mind.
        with contextlib.suppress(ImportError):
            import datasets.config  # noqa: F401
        STUB_MODULES.update(build_torch_stub())
        finders.append(TorchStubFinder())
        stubbed = True
    transformers_finder, transformers_names = runner_transformers.install(_find_with_others, _after_exec)
    finders.append(transformers_finder)
    sys.meta_path[:0] = finders
    for name, module in list(sys.modules.items()):
        if _original_name(name) != name and isinstance(module, types.ModuleType):
            _add_missing_attribute_hook(module)
    try:
        yield
    finally:
        for finder in finders:
            with contextlib.suppress(ValueError):
                sys.meta_path.remove(finder)
        transformers_names.unwrap_all()
        for name in [n for n in sys.modules if _redirected(n)]:
            del sys.modules[name]
        sys.modules.update(saved)
        while _HOOKED:
            module = _HOOKED.pop()
            if getattr(vars(module).get("__getattr__"), "_mlx_hf_bridge_hook", False):
                del module.__getattr__
        unpatch_torch_compile()
        if stubbed:
            for name in list(STUB_MODULES):
                if sys.modules.get(name) is STUB_MODULES[name]:
                    del sys.modules[name]
            STUB_MODULES.clear()


_CANNOT_IMPORT = re.compile(r"cannot import name '([^']+)' from '([^']+)'")


def _explain(exc: BaseException) -> BaseException | None:
    """A clearer error for a name missing from a bridge module, or None to keep ``exc`` as is."""
    if isinstance(exc, BridgeImportError) or type(exc) is not ImportError:
        return None
    match = _CANNOT_IMPORT.search(str(exc))
    if not match or not match.group(2).startswith("mlx_hf_bridge."):
        return None
    name, bridge_module = match.groups()
    original = _original_name(bridge_module)
    if original == bridge_module:
        return None
    return BridgeImportError(
        f"mlx_hf_bridge {bridge_version()} does not provide `{original}.{name}` (the script ran "
        f"`from {original} import {name}`; `{original}` is `{bridge_module}` under `mlx-hf-bridge run`). "
        "Nothing falls back to torch: remove that use from the script, or run it with the torch libraries.",
        name=f"{bridge_module}.{name}",
    )


def run_script(script: str, args: list[str], module: bool = False) -> None:
    """Run ``script`` (a path, or a module name when ``module``) as ``__main__`` with the redirection."""
    saved_argv = sys.argv
    script_dir = None
    if module:
        sys.argv = [script, *args]
    else:
        if not os.path.exists(script):
            raise FileNotFoundError(f"mlx-hf-bridge run: no such script: {script}")
        sys.argv = [script, *args]
        script_dir = os.path.dirname(os.path.abspath(script))
        sys.path.insert(0, script_dir)  # as `python script.py` does: the script's folder is importable
        SCRIPT_DIRS.append(script_dir)
    try:
        with redirect_imports():
            try:
                if module:
                    runpy.run_module(script, run_name="__main__", alter_sys=True)
                else:
                    runpy.run_path(script, run_name="__main__")
            except ImportError as exc:
                clearer = _explain(exc)
                if clearer is None:
                    raise
                raise clearer from exc
    finally:
        sys.argv = saved_argv
        if script_dir is not None:
            SCRIPT_DIRS.pop()
            with contextlib.suppress(ValueError):
                sys.path.remove(script_dir)


def main(argv: list[str] | None = None) -> int:
    """``mlx-hf-bridge run [-m] script [args...]``; returns the script's exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE, end="", file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    module = argv[0] == "-m"
    if module:
        if len(argv) < 2:
            print(USAGE, end="", file=sys.stderr)
            return 2
        script, args = argv[1], argv[2:]
    else:
        script, args = argv[0], argv[1:]
    try:
        run_script(script, args, module=module)
    except SystemExit as exc:
        code = exc.code
        if code is None:
            return 0
        if isinstance(code, int):
            return code
        print(code, file=sys.stderr)
        return 1
    except FileNotFoundError as exc:
        if str(exc).startswith("mlx-hf-bridge run:"):
            print(exc, file=sys.stderr)
            return 2
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
