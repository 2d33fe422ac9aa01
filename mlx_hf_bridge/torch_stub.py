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


def script_is_caller(own_file: str, depth: int = 1) -> bool:
    """True when the call ``depth`` frames up (past frames of ``own_file`` and importlib) comes from the script
    (``__main__``) or a module next to it."""
    frame = sys._getframe(depth + 1)
    here = os.path.abspath(own_file)
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


def _script_is_importing() -> bool:
    """True when the import being served comes from the script (``__main__``) or a module next to it."""
    return script_is_caller(__file__, 1)


def _needs_torch(what: str) -> str:
    return (
        f"`{what}` is not available: torch is not installed, and `mlx-hf-bridge run` (mlx_hf_bridge "
        f"{bridge_version()}) only provides a stub `torch` that computes nothing ({', '.join(PROVIDED)}). "
        "Install torch, or remove this use from the script."
    )


class _StubModule(types.ModuleType):
    """A stub torch (sub)module: any name it does not define fails and says why."""

    def __getattr__(self, name):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")
        raise AttributeError(_needs_torch(f"{self.__name__}.{name}"), name=name, obj=self)


class _TypeOnly:
    """A torch type libraries test against (``isinstance(x, torch.Tensor)``, ``obj_type is torch.Generator``,
    ``issubclass(t, torch.nn.Module)``): nothing is ever an instance, and making one needs real torch."""

    _torch_name = "torch.?"

    def __init__(self, *args, **kwargs):
        raise RuntimeError(_needs_torch(f"{self._torch_name}(...)"))


def _type_only(qualified: str) -> type:
    return type(qualified.rsplit(".", 1)[1], (_TypeOnly,), {"_torch_name": qualified, "__module__": "torch"})


# What the stub provides (named in every error); everything else raises, naming the attribute.
PROVIDED = (
    "compile", "manual_seed", "random.manual_seed", "no_grad", "inference_mode", "set_float32_matmul_precision",
    "Tensor / Generator / nn.Module / utils.data.Dataset / IterableDataset as types only",
    "utils.data.get_worker_info", "cuda.is_available/device_count/manual_seed(_all)/empty_cache",
    "backends.mps.is_available/is_built", "float32 / float16 / bfloat16 / ... dtype names", "device(type)",
    "autocast (no effect: MLX runs in the model's dtype)",
)
DTYPE_NAMES = ("float32", "float", "float16", "half", "bfloat16", "float64", "double", "int8", "uint8",
               "int16", "int32", "int64", "long", "bool")


class _DType:
    """A torch dtype's name only (``torch.float32``): enough for ``model_kwargs={"torch_dtype": torch.float32}``
    and comparisons; the bridge reads ``str(dtype)`` (``"torch.float32"``) as a dtype name."""

    def __init__(self, name: str):
        self.name = name

    def __repr__(self):
        return f"torch.{self.name}"

    __str__ = __repr__

    def __eq__(self, other):
        return isinstance(other, _DType) and other.name == self.name

    def __hash__(self):
        return hash(("torch-dtype", self.name))


class _Device:
    """``torch.device("cpu")`` / ``torch.device("mps", 0)``: ``.type`` and ``.index``."""

    def __init__(self, type="cpu", index=None):  # noqa: A002 - torch's parameter name
        if isinstance(type, _Device):
            type, index = type.type, type.index
        type, _, idx = str(type).partition(":")
        self.type, self.index = type, int(idx) if idx else index

    def __repr__(self):
        return f"device(type={self.type!r}" + (f", index={self.index})" if self.index is not None else ")")

    def __str__(self):
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __eq__(self, other):
        return str(self) == str(other)

    def __hash__(self):
        return hash(str(self))


class _Autocast(object):
    """``torch.autocast(device_type, dtype=...)``: no effect on MLX, which runs in the model's dtype
    (float32 unless the training arguments ask for bf16); said once per run."""

    _told = False

    def __init__(self, device_type="cpu", dtype=None, enabled=True, cache_enabled=None):
        if enabled and not _Autocast._told:
            import logging

            _Autocast._told = True
            logging.getLogger("mlx_hf_bridge").info(
                "torch.autocast(%s, dtype=%s) has no effect under mlx-hf-bridge run: MLX computes in the model's "
                "dtype.", device_type, dtype)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def __call__(self, fn):
        return fn


def _mlx_gpu_available() -> bool:
    import mlx.core as mx

    try:
        return bool(mx.is_available(mx.gpu))
    except Exception:  # older mlx
        return bool(getattr(mx, "metal", None) and mx.metal.is_available())


class _NoGrad:
    """``torch.no_grad()`` / ``torch.inference_mode()``: MLX computes gradients only when asked, so a no-op
    (usable as ``with torch.no_grad():`` and as ``@torch.no_grad()``)."""

    def __init__(self, mode=True):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def __call__(self, fn):
        return fn


def build_torch_stub() -> dict[str, types.ModuleType]:
    """The stub ``torch`` and the submodules scripts and ``datasets`` touch, used when torch is absent."""

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

    torch.compile = compile
    torch.manual_seed = manual_seed
    torch.set_float32_matmul_precision = lambda precision: None
    torch.no_grad, torch.inference_mode = _NoGrad, _NoGrad
    torch.Tensor, torch.Generator = _type_only("torch.Tensor"), _type_only("torch.Generator")
    for name in DTYPE_NAMES:
        setattr(torch, name, _DType(name))
    torch.device, torch.autocast = _Device, _Autocast

    random = make("torch.random")
    random.manual_seed = manual_seed
    nn = make("torch.nn")
    nn.Module = _type_only("torch.nn.Module")
    utils = make("torch.utils")
    data = make("torch.utils.data")
    data.Dataset, data.IterableDataset = _type_only("torch.utils.data.Dataset"), _type_only("torch.utils.data.IterableDataset")
    data.get_worker_info = lambda: None  # no torch DataLoader workers: every caller is the main process
    utils.data = data

    cuda = make("torch.cuda")
    cuda.is_available = lambda: False
    cuda.device_count = lambda: 0
    cuda.is_bf16_supported = lambda *a, **k: False
    cuda.manual_seed = cuda.manual_seed_all = lambda seed: None
    cuda.empty_cache = lambda: None

    backends = make("torch.backends")
    mps = make("torch.backends.mps")
    mps.is_available = _mlx_gpu_available
    mps.is_built = _mlx_gpu_available
    backends_cuda = make("torch.backends.cuda")
    backends_cuda.is_built = lambda: False
    backends.mps, backends.cuda = mps, backends_cuda
    torch.cuda, torch.backends, torch.random, torch.nn, torch.utils = cuda, backends, random, nn, utils
    return {m.__name__: m for m in (torch, cuda, backends, mps, backends_cuda, random, nn, utils, data)}


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
        if fullname == "torch" and "torch" not in sys.modules:
            if not _script_is_importing():
                return None  # libraries probing for torch keep seeing "not installed"
        if fullname in STUB_MODULES:
            return importlib.machinery.ModuleSpec(fullname, _STUB_LOADER, is_package=True)
        raise ModuleNotFoundError(
            f"`{fullname}` is not available: torch is not installed, and `mlx-hf-bridge run` "
            f"(mlx_hf_bridge {bridge_version()}) only stubs {', '.join(sorted(STUB_MODULES))}.",
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
