"""torch under ``mlx-hf-bridge run``: ``torch.compile`` passes MLX modules through, and a stub
``torch`` serves scripts when torch is not installed (see :mod:`mlx_hf_bridge.runner`)."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import types


def bridge_version() -> str:
    from . import __version__

    return __version__


def is_mlx_module(obj) -> bool:
    if type(obj).__module__.startswith("mlx_hf_bridge"):
        return True
    nn = sys.modules.get("mlx.nn")
    return nn is not None and isinstance(obj, nn.Module)


def patch_torch_compile(torch_module):
    original = torch_module.compile
    if getattr(original, "_mlx_hf_bridge_passthrough", False):
        return

    def compile(model=None, *args, **kwargs):  # noqa: A001 - same name as torch.compile
        """``torch.compile`` under ``mlx-hf-bridge run``: MLX modules come back unchanged."""
        if model is not None and is_mlx_module(model):
            return model
        return original(model, *args, **kwargs)

    compile._mlx_hf_bridge_passthrough = True
    compile._mlx_hf_bridge_original = original
    torch_module.compile = compile


def unpatch_torch_compile():
    torch_module = sys.modules.get("torch")
    patched = getattr(torch_module, "compile", None)
    if getattr(patched, "_mlx_hf_bridge_passthrough", False) and hasattr(patched, "_mlx_hf_bridge_original"):
        torch_module.compile = patched._mlx_hf_bridge_original


SCRIPT_DIRS: list[str] = []


def _script_is_importing() -> bool:
    """True when the import being served comes from the script (``__main__``) or a module next to it."""
    frame = sys._getframe(1)
    here = os.path.abspath(__file__)
    while frame is not None:
        filename = frame.f_code.co_filename
        if not (filename.startswith("<frozen importlib") or os.path.abspath(filename) == here
                or filename.endswith(os.sep + "importlib" + os.sep + "__init__.py")):
            if frame.f_globals.get("__name__") == "__main__":
                return True
            path = os.path.abspath(filename)
            return any(path.startswith(d + os.sep) for d in SCRIPT_DIRS)
        frame = frame.f_back
    return False


class _StubModule(types.ModuleType):
    """A stub torch (sub)module: any name it does not define fails and says why."""

    def __getattr__(self, name):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")
        raise AttributeError(
            f"`{self.__name__}.{name}` is not available: torch is not installed, and `mlx-hf-bridge run` "
            f"(mlx_hf_bridge {bridge_version()}) only provides a stub `torch` with "
            "compile, manual_seed, cuda.is_available/device_count, backends.mps.is_available/is_built, "
            "set_float32_matmul_precision and Tensor. Install torch, or remove this use from the script.",
            name=name,
            obj=self,
        )


def _mlx_gpu_available() -> bool:
    import mlx.core as mx

    try:
        return bool(mx.is_available(mx.gpu))
    except Exception:  # older mlx
        return bool(getattr(mx, "metal", None) and mx.metal.is_available())


def build_torch_stub() -> dict[str, types.ModuleType]:
    """The stub ``torch`` (plus ``torch.cuda``, ``torch.backends[.mps|.cuda]``) used when torch is absent."""

    def make(name):
        module = _StubModule(name, f"Stub of `{name}` provided by `mlx-hf-bridge run` (torch is not installed).")
        module.__spec__ = importlib.machinery.ModuleSpec(name, _STUB_LOADER, is_package=True)
        module.__loader__ = _STUB_LOADER
        module.__path__ = []
        module.__file__ = None
        return module

    torch = make("torch")
    # Not a PEP 440 version on purpose: transformers' is_torch_available() then says False quietly.
    torch.__version__ = "mlx_hf_bridge-stub"

    def compile(model=None, *args, **kwargs):  # noqa: A001
        """Returns the model unchanged (MLX compiles its own graphs); as a decorator, the function."""
        if model is None:
            return lambda fn: fn
        return model

    def manual_seed(seed):
        """Seeds MLX's generator (what torch.manual_seed means for an MLX run)."""
        import mlx.core as mx

        mx.random.seed(int(seed))

    class Tensor:  # nothing is ever an instance: libraries' isinstance(x, torch.Tensor) checks stay False
        pass

    torch.compile = compile
    torch.manual_seed = manual_seed
    torch.set_float32_matmul_precision = lambda precision: None
    torch.Tensor = Tensor

    cuda = make("torch.cuda")
    cuda.is_available = lambda: False
    cuda.device_count = lambda: 0
    cuda.is_bf16_supported = lambda *a, **k: False
    cuda.manual_seed = cuda.manual_seed_all = lambda seed: None

    backends = make("torch.backends")
    mps = make("torch.backends.mps")
    mps.is_available = _mlx_gpu_available
    mps.is_built = _mlx_gpu_available
    backends_cuda = make("torch.backends.cuda")
    backends_cuda.is_built = lambda: False
    backends.mps, backends.cuda = mps, backends_cuda
    torch.cuda, torch.backends = cuda, backends
    return {"torch": torch, "torch.cuda": cuda, "torch.backends": backends, "torch.backends.mps": mps,
            "torch.backends.cuda": backends_cuda}


class _StubLoader(importlib.abc.Loader):
    def create_module(self, spec):
        return STUB_MODULES[spec.name]

    def exec_module(self, module):
        pass


_STUB_LOADER = _StubLoader()
STUB_MODULES: dict[str, types.ModuleType] = {}


class TorchStubFinder(importlib.abc.MetaPathFinder):
    """torch is not installed: serve the stub to the script's own ``import torch`` only."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "torch" and not fullname.startswith("torch."):
            return None
        if fullname == "torch" and "torch" not in sys.modules and not _script_is_importing():
            return None  # libraries probing for torch keep seeing "not installed"
        if fullname in STUB_MODULES:
            return importlib.machinery.ModuleSpec(fullname, _STUB_LOADER, is_package=True)
        raise ModuleNotFoundError(
            f"`{fullname}` is not available: torch is not installed, and `mlx-hf-bridge run` "
            f"(mlx_hf_bridge {bridge_version()}) only stubs torch, torch.cuda and torch.backends.mps.",
            name=fullname,
        )


def torch_installed() -> bool:
    if isinstance(sys.modules.get("torch"), _StubModule):
        return False
    if "torch" in sys.modules:
        return True
    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):
        return False
