"""Build the vectorised CPU kernels in place: ``python -m mlx_hf_bridge.kernels.build``.

Compiles ``cpu_kernels.cpp`` against the installed ``mlx`` (headers and ``libmlx`` ship in the
wheel) with CMake and nanobind, for this machine's CPU (``-march=native``), and writes the module
next to this file with a stamp naming the mlx version it was built for: an extension built for
another ``libmlx`` is never imported (that could crash), the package falls back to MLX ops and
says how to rebuild. ``scripts/setup.sh`` runs this on Linux.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from . import HERE, STAMP, module_path

# The mlx wheels are built with nanobind 3.x (internals ABI v22); ours must share that registry.
NANOBIND_REQUIREMENT = "nanobind>=3.0,<4"


def _fingerprint() -> str:
    """What the module depends on: the mlx it links and our sources (first line = mlx version)."""
    import mlx.core as mx

    digest = hashlib.sha1()
    for name in ("cpu_kernels.cpp", "row_kernels.h", "attention.h", "maxsim.h", "CMakeLists.txt"):
        digest.update((HERE / name).read_bytes())
    return f"{mx.__version__}\nsources {digest.hexdigest()[:16]}\n"


def is_stale() -> bool:
    return not module_path().exists() or not STAMP.exists() or STAMP.read_text() != _fingerprint()


def _missing_tools() -> list[str]:
    missing = [tool for tool in ("cmake", "c++") if shutil.which(tool) is None]
    try:
        import nanobind  # noqa: F401
    except ImportError:
        missing.append(f"the Python package {NANOBIND_REQUIREMENT!r}")
    return missing


def build(verbose: bool = False) -> Path:
    """Compile and install the module; raises RuntimeError naming what is missing or failed."""
    missing = _missing_tools()
    if missing:
        raise RuntimeError(
            f"cannot build the CPU kernels: missing {', '.join(missing)} "
            f"(Debian: apt-get install cmake g++; then pip install '{NANOBIND_REQUIREMENT}')."
        )
    out = subprocess.DEVNULL if not verbose else None
    with tempfile.TemporaryDirectory(prefix="mlx-hf-bridge-kernels-") as build_dir:
        for cmd in (
            ["cmake", "-S", str(HERE), "-B", build_dir, f"-DPython_EXECUTABLE={sys.executable}"],
            ["cmake", "--build", build_dir, "-j", str(os.cpu_count() or 1)],
        ):
            proc = subprocess.run(cmd, stdout=out, stderr=subprocess.PIPE, text=True)
            if proc.returncode != 0:
                raise RuntimeError(f"`{' '.join(cmd)}` failed:\n{proc.stderr[-4000:]}")
        built = next(Path(build_dir).glob("_cpu_kernels*.so"), None)
        if built is None:
            raise RuntimeError(f"the build produced no _cpu_kernels module in {build_dir}")
        target = module_path()
        STAMP.unlink(missing_ok=True)  # no stamp while the module is being replaced
        tmp = target.with_suffix(".so.tmp")
        shutil.copy2(built, tmp)
        os.replace(tmp, target)
    STAMP.write_text(_fingerprint())
    _check()
    return target


def _check():
    """Import the fresh module in a child process and run one op through it: a nanobind ABI
    mismatch with mlx.core (mx.array not accepted) must fail here, not in a user's training run."""
    code = (
        "import mlx_hf_bridge.kernels as k, mlx.core as mx\n"
        "assert k.available(), k.status()\n"
        "y = k.softmax(mx.array([[0.0, 1.0]]))\n"
        "assert abs(y[0, 1].item() - 0.7310586) < 1e-6, y\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if proc.returncode != 0:
        STAMP.unlink(missing_ok=True)
        raise RuntimeError(f"the built CPU kernels do not work with this mlx:\n{proc.stderr[-3000:]}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--verbose", action="store_true", help="show the compiler output")
    parser.add_argument("--if-stale", action="store_true", help="only build when mlx or the sources changed")
    args = parser.parse_args(argv)
    if args.if_stale and not is_stale():
        print(f"up to date: {module_path()}")
        return 0
    try:
        path = build(args.verbose)
    except RuntimeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"built {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
