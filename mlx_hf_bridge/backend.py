"""Prepare MLX before anything imports it: optimized BLAS on Linux, default device, seeds.

Why a BLAS preload: the Linux ``mlx[cpu]`` wheel links its bundled *reference* BLAS (~5 GFLOP/s).
``libmlx.so`` resolves ``cblas_sgemm`` at load time through the global symbol scope, so a library
loaded earlier with ``RTLD_GLOBAL`` that exports the standard CBLAS symbols wins, and fp32 matmul
runs 20-30x faster. We prefer Debian's pthread OpenBLAS (``libopenblas0-pthread``): it measured
as fast as MKL here (see ../shared/reference/perf-baseline.md), is BSD-licensed, ~7 MB instead of
MKL's 687 MB, and exports the unprefixed CBLAS symbols (PyPI's scipy-openblas32 prefixes them).
BLIS and MKL are accepted as fallbacks. On macOS MLX uses Accelerate and nothing is done.

Set ``MLX_HF_BRIDGE_BLAS`` to a library path to force one, or to ``reference`` to skip the preload.
"""

from __future__ import annotations

import ctypes
import glob
import os
import platform
import sys
import warnings

_BLAS_CANDIDATES = (
    # Debian/Ubuntu pthread OpenBLAS (our default: `apt-get install libopenblas0-pthread`)
    "/usr/lib/{arch}-linux-gnu/openblas-pthread/libopenblas.so.0",
    "/usr/lib/{arch}-linux-gnu/libopenblas.so.0",
    "/usr/lib64/libopenblas.so.0",
    "/usr/lib/libopenblas.so.0",
    # BLIS (Debian libblis4-pthread)
    "/usr/lib/{arch}-linux-gnu/blis-pthread/libblis.so.4",
    # MKL from the `mkl` wheel
    "{prefix}/lib/libmkl_rt.so.2",
    "{prefix}/lib/libmkl_rt.so.3",
)

# OpenBLAS kernel sets for the GEMMs we run: every Intel AVX-512 CPU uses the SkylakeX sgemm, every
# AVX2 + FMA one the Haswell sgemm, in any OpenBLAS since 0.3.
_AVX512 = {"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"}

_state = {"blas": None, "blas_name": "not loaded", "warned": False, "prepared": False, "malloc": "not set"}

# glibc mallopt parameters (malloc.h) and the values we set; see _retain_freed_memory.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD = 32 << 20  # glibc's own ceiling for its dynamic threshold
_TRIM_THRESHOLD = 2**31 - 1  # the largest value mallopt takes (an int)


def _blas_name(path: str) -> str:
    base = os.path.basename(path).lower()
    for key, name in (("openblas", "OpenBLAS"), ("blis", "BLIS"), ("mkl", "MKL")):
        if key in base:
            return name
    return base


def _candidate_paths():
    forced = os.environ.get("MLX_HF_BRIDGE_BLAS")
    if forced:
        return [forced]
    arch = platform.machine()
    paths = []
    for pattern in _BLAS_CANDIDATES:
        paths.extend(sorted(glob.glob(pattern.format(arch=arch, prefix=sys.prefix))))
    return paths


def _cpu_flags() -> tuple[str, set]:
    """(vendor, flags) of the first CPU in /proc/cpuinfo; ("", set()) where unreadable."""
    vendor, flags = "", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "vendor_id" and not vendor:
                    vendor = value.strip()
                elif key == "flags":
                    flags = set(value.split())
                    break
    except OSError:
        pass
    return vendor, flags


def _openblas_coretype(path: str) -> str | None:
    """The OPENBLAS_CORETYPE to load ``path`` with, or None to let OpenBLAS detect the CPU.

    An OpenBLAS older than the CPU does not know its model number and falls back to a generic
    SSE3 core ("Prescott"): Debian 12's 0.3.21 on an Intel Xeon of model 207 runs fp32 GEMM at
    67 GFLOP/s instead of 166. On Intel CPUs we name the kernel set from the CPU's flags instead,
    which is what OpenBLAS picks for every Intel model it knows. AMD CPUs are left to OpenBLAS
    (it maps unknown Zen generations to its Zen kernels); a user's OPENBLAS_CORETYPE always wins.
    """
    if "openblas" not in os.path.basename(path).lower() or os.environ.get("OPENBLAS_CORETYPE"):
        return None
    vendor, flags = _cpu_flags()
    if vendor != "GenuineIntel":
        return None
    if _AVX512 <= flags:
        return "SkylakeX"
    if {"avx2", "fma"} <= flags:
        return "Haswell"
    return None


# OpenBLAS's idle workers spin on sched_yield for 2^28 cycles (~0.1 s) after each GEMM. Between
# GEMMs the encoder runs the bridge's own threaded kernels on the same cores, which those spinning
# workers slow down (~13% of a training step's CPU time here); 2^4 cycles lets them sleep at once.
# Waking them costs microseconds against GEMMs of milliseconds (matmul GFLOP/s unchanged).
_OPENBLAS_THREAD_TIMEOUT = "4"


def _open_blas_library(path: str) -> tuple[ctypes.CDLL, str]:
    """dlopen ``path`` RTLD_GLOBAL; for OpenBLAS also return the kernel set it runs."""
    coretype = _openblas_coretype(path)
    settings = {}  # read once by OpenBLAS while it loads; a user's own values always win
    if coretype is not None:
        settings["OPENBLAS_CORETYPE"] = coretype
    if "openblas" in os.path.basename(path).lower() and not os.environ.get("OPENBLAS_THREAD_TIMEOUT"):
        settings["OPENBLAS_THREAD_TIMEOUT"] = _OPENBLAS_THREAD_TIMEOUT
    # the environment is restored after, so other BLAS copies (numpy's) and children are unaffected
    previous = {key: os.environ.get(key) for key in settings}
    os.environ.update(settings)
    try:
        lib = ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
    finally:
        for key, value in previous.items():
            if value is None:
                del os.environ[key]
            else:
                os.environ[key] = value
    core = ""
    corename = getattr(lib, "openblas_get_corename", None)
    if corename is not None:
        corename.restype = ctypes.c_char_p
        core = f"{corename().decode(errors='replace')} kernels"
        if coretype is not None:
            core += f", OPENBLAS_CORETYPE={coretype} set for this Intel CPU"
    return lib, core


def _load_blas():
    """Load the first usable optimized BLAS with RTLD_GLOBAL. Returns None when it did, else the
    fix to suggest (an empty string when the reference BLAS was chosen explicitly)."""
    if os.environ.get("MLX_HF_BRIDGE_BLAS", "").lower() == "reference":
        _state["blas_name"] = "reference (MLX_HF_BRIDGE_BLAS=reference)"
        return ""
    if "mlx.core" in sys.modules:
        # Too late: libmlx has already bound its BLAS symbols.
        _state["blas_name"] = "reference (mlx.core was imported before mlx_hf_bridge)"
        return "import mlx_hf_bridge before mlx (mlx.core binds its BLAS when first imported)."
    if sys.platform.startswith("linux") and "MKL_THREADING_LAYER" not in os.environ:
        os.environ["MKL_THREADING_LAYER"] = "GNU"
    for path in _candidate_paths():
        try:
            lib, core = _open_blas_library(path)
            lib.cblas_sgemm  # noqa: B018 - raises AttributeError when the symbol is prefixed/missing
        except (OSError, AttributeError):
            continue
        _state["blas"] = path
        _state["blas_name"] = f"{_blas_name(path)} ({path}" + (f"; {core})" if core else ")")
        return None
    _state["blas_name"] = "reference (bundled with the mlx wheel)"
    forced = os.environ.get("MLX_HF_BRIDGE_BLAS")
    if forced:
        return f"MLX_HF_BRIDGE_BLAS={forced} is not a loadable BLAS with CBLAS symbols: point it to one (e.g. libopenblas.so.0) or unset it."
    return "Install one with `apt-get install libopenblas0-pthread` (or set MLX_HF_BRIDGE_BLAS=/path/to/libopenblas.so)."


def _retain_freed_memory() -> str:
    """Let glibc keep freed memory for reuse instead of handing it back to the kernel at once.

    MLX's GPU allocators cache freed buffers; on the CPU it allocates straight from malloc. A
    training step allocates and frees every mini-batch's activations (hundreds of MB), glibc trims
    the freed top of its heap each time, and the next mini-batch faults the same memory back in a
    page (4 KiB) at a time: ~300k faults, ~10 % of a step here. Keeping freed memory (a trim
    threshold of 2 GiB, a fixed 32 MiB mmap threshold) makes the step fault-free after the first,
    as a caching allocator would. The cost is memory held between uses: the demo trains at 1.64 GB
    RSS instead of 1.40 (peak 4.6 GB instead of 4.4). The user's own MALLOC_* / GLIBC_TUNABLES
    settings win; MLX_HF_BRIDGE_MALLOC=default opts out.
    """
    choice = os.environ.get("MLX_HF_BRIDGE_MALLOC", "")
    if choice.lower() == "default":
        return "glibc defaults (MLX_HF_BRIDGE_MALLOC=default)"
    if choice:
        warnings.warn(f"MLX_HF_BRIDGE_MALLOC={choice!r} is not understood: set it to 'default' to keep glibc's "
                      "malloc settings, or unset it. Keeping freed memory for reuse.", RuntimeWarning, stacklevel=4)
    if "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", "") or any(
        key in os.environ for key in ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_")
    ):
        return "the user's MALLOC_* / GLIBC_TUNABLES settings"
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return "not glibc: allocator unchanged"
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    if mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD) and mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD):
        return "glibc keeps freed memory for reuse (trim threshold 2 GiB, mmap threshold 32 MiB)"
    return "glibc refused mallopt: allocator unchanged"


def prepare():
    """Idempotent: preload BLAS (Linux only), import mlx.core and pick the default device."""
    if _state["prepared"]:
        return
    _state["prepared"] = True
    if sys.platform.startswith("linux"):
        _state["malloc"] = _retain_freed_memory()
        fix = _load_blas()
        if fix and not _state["warned"]:  # fix == "": the reference BLAS was chosen, nothing to warn about
            _state["warned"] = True
            warnings.warn(
                "mlx_hf_bridge: no optimized BLAS loaded; MLX will use its slow reference BLAS "
                f"({_state['blas_name']}). {fix}",
                RuntimeWarning,
                stacklevel=3,
            )
    else:
        _state["blas_name"] = "Accelerate (macOS)" if sys.platform == "darwin" else "MLX default"
    import mlx.core as mx

    mx.set_default_device(mx.gpu if mx.is_available(mx.gpu) else mx.cpu)


def blas_info() -> str:
    return _state["blas_name"]


def malloc_info() -> str:
    return _state["malloc"]


def use_cpu():
    """Force the CPU device (what ``use_cpu=True`` / ``--cpu`` means on MLX)."""
    import mlx.core as mx

    mx.set_default_device(mx.cpu)


class DeviceName(str):
    """``model.device``: ``"cpu"`` / ``"gpu"`` (MLX's names), with torch.device's ``.type`` / ``.index`` for
    scripts that write ``torch.autocast(device_type=model.device.type, ...)``: ``cpu``, or for the GPU the torch
    name of the same hardware (``mps`` on macOS, ``cuda`` elsewhere)."""

    @property
    def type(self) -> str:
        if self == "cpu":
            return "cpu"
        return "mps" if sys.platform == "darwin" else "cuda"

    @property
    def index(self):
        return None if self == "cpu" else 0


def device_name() -> DeviceName:
    import mlx.core as mx

    dev = mx.default_device()
    return DeviceName("gpu" if dev == mx.gpu else "cpu")


def seed_everything(seed: int):
    """Seed Python, NumPy and MLX so that a run is reproducible."""
    import random

    import mlx.core as mx
    import numpy as np

    random.seed(seed)
    np.random.seed(seed % (2**32))
    mx.random.seed(seed)


def matmul_gflops(n: int = 1024, repeats: int = 5) -> float:
    """Best-of-``repeats`` fp32 ``n x n`` matmul throughput on the default device."""
    import time

    import mlx.core as mx

    a = mx.random.normal((n, n))
    b = mx.random.normal((n, n))
    mx.eval(a, b, a @ b)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        mx.eval(a @ b)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9
