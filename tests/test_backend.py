"""The backend preloads an optimized BLAS before mlx.core and says when it cannot."""

import subprocess
import sys
from pathlib import Path

import pytest

HAS_OPENBLAS = any(Path("/usr/lib").glob("*-linux-gnu/openblas-pthread/libopenblas.so.0"))


def run(code, env=None):
    import os

    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-W", "always", "-c", code], capture_output=True, text=True, env=full_env, timeout=120)


@pytest.mark.skipif(not sys.platform.startswith("linux") or not HAS_OPENBLAS, reason="Linux with OpenBLAS")
def test_openblas_preloaded_and_reported():
    result = run("import mlx_hf_bridge; from mlx_hf_bridge import backend; print(backend.blas_info())")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("OpenBLAS")
    maps = run("import mlx_hf_bridge, mlx.core; print(open('/proc/self/maps').read())").stdout
    assert "libopenblas" in maps


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the preload only exists on Linux")
def test_late_import_warns_once():
    result = run("import mlx.core; import mlx_hf_bridge; from mlx_hf_bridge import backend; print(backend.blas_info())")
    assert result.returncode == 0, result.stderr
    assert "imported before mlx_hf_bridge" in result.stdout
    assert result.stderr.count("no optimized BLAS loaded") == 1
    assert "import mlx_hf_bridge before mlx" in result.stderr


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the preload only exists on Linux")
def test_explicit_reference_blas_is_reported_not_warned():
    result = run("import mlx_hf_bridge; from mlx_hf_bridge import backend; print(backend.blas_info())",
                 env={"MLX_HF_BRIDGE_BLAS": "reference"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("reference (MLX_HF_BRIDGE_BLAS=reference)")
    assert "BLAS" not in result.stderr


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the preload only exists on Linux")
def test_unloadable_forced_blas_names_the_variable():
    result = run("import mlx_hf_bridge", env={"MLX_HF_BRIDGE_BLAS": "/no/such/libblas.so"})
    assert result.returncode == 0, result.stderr
    assert "MLX_HF_BRIDGE_BLAS=/no/such/libblas.so is not a loadable BLAS" in result.stderr


def test_env_command_reports_blas_and_device():
    result = subprocess.run(
        [sys.executable, "-m", "mlx_hf_bridge", "env"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    for key in ("mlx_hf_bridge", "mlx ", "device", "BLAS", "malloc"):
        assert key in result.stdout


def test_seed_everything_reproducible():
    import mlx.core as mx
    import numpy as np

    from mlx_hf_bridge import backend

    backend.seed_everything(7)
    a = (np.random.rand(3), np.array(mx.random.normal((3,))))
    backend.seed_everything(7)
    b = (np.random.rand(3), np.array(mx.random.normal((3,))))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


@pytest.mark.parametrize(
    "vendor, flags, env, expected",
    [
        ("GenuineIntel", {"avx2", "fma", "avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"}, {}, "SkylakeX"),
        ("GenuineIntel", {"avx2", "fma"}, {}, "Haswell"),
        ("GenuineIntel", {"sse4_2"}, {}, None),  # nothing better to name: OpenBLAS decides
        ("AuthenticAMD", {"avx2", "fma", "avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"}, {}, None),
        ("GenuineIntel", {"avx2", "fma"}, {"OPENBLAS_CORETYPE": "Prescott"}, None),  # the user's choice wins
    ],
)
def test_openblas_kernel_set_named_from_the_cpu_on_intel(monkeypatch, vendor, flags, env, expected):
    from mlx_hf_bridge import backend

    monkeypatch.setattr(backend, "_cpu_flags", lambda: (vendor, flags))
    monkeypatch.delenv("OPENBLAS_CORETYPE", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert backend._openblas_coretype("/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0") == expected
    assert backend._openblas_coretype("/opt/intel/lib/libmkl_rt.so.2") is None


@pytest.mark.skipif(not sys.platform.startswith("linux") or not HAS_OPENBLAS, reason="Linux with OpenBLAS")
def test_openblas_core_reported_and_environment_left_as_found():
    code = ("import os, mlx_hf_bridge; from mlx_hf_bridge import backend; "
            "print(backend.blas_info()); print(repr(os.environ.get('OPENBLAS_CORETYPE')))")
    result = run(code, env={"OPENBLAS_CORETYPE": ""})
    assert result.returncode == 0, result.stderr
    info, left = result.stdout.strip().splitlines()
    assert " kernels" in info  # openblas_get_corename(), e.g. "SkylakeX kernels"
    assert left == "''"  # set only while OpenBLAS loads: numpy and children detect for themselves
    forced = run(code, env={"OPENBLAS_CORETYPE": "Haswell"})
    assert "Haswell kernels" in forced.stdout and "set for this" not in forced.stdout, forced.stdout


_REUSE_FAULTS = """
import resource, numpy as np, mlx_hf_bridge, mlx.core as mx
from mlx_hf_bridge import backend
mx.set_default_device(mx.cpu)
sizes = [int(n) for n in np.random.default_rng(0).integers(1 << 16, 3 << 20, 48)]  # 256 KiB .. 12 MiB
def round_trip():  # like a mini-batch's activations: allocated, written, freed
    xs = [mx.full((n,), 1.0) for n in sizes]
    mx.eval(xs)
for _ in range(2):
    round_trip()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
round_trip()
print(backend.malloc_info()); print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(sum(sizes) * 4 // 4096)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_freed_memory_is_reused_without_page_faults():
    kept = run(_REUSE_FAULTS)
    assert kept.returncode == 0, kept.stderr
    info, faults, pages = kept.stdout.strip().splitlines()
    pages = int(pages)
    assert info.startswith("glibc keeps freed memory"), info
    assert int(faults) < pages // 20, faults  # the third round reuses the memory of the first two
    default = run(_REUSE_FAULTS, env={"MLX_HF_BRIDGE_MALLOC": "default"})
    info, faults, _ = default.stdout.strip().splitlines()
    assert info.startswith("glibc defaults"), info
    assert int(faults) > pages // 2, faults  # glibc trims the freed heap: every round faults again


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_users_own_malloc_settings_win():
    result = run("import mlx_hf_bridge; from mlx_hf_bridge import backend; print(backend.malloc_info())",
                 env={"MALLOC_TRIM_THRESHOLD_": "131072"})
    assert result.stdout.strip() == "the user's MALLOC_* / GLIBC_TUNABLES settings", result.stdout


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_unknown_malloc_choice_is_named():
    result = run("import mlx_hf_bridge; from mlx_hf_bridge import backend; print(backend.malloc_info())",
                 env={"MLX_HF_BRIDGE_MALLOC": "off"})
    assert result.returncode == 0, result.stderr
    assert "MLX_HF_BRIDGE_MALLOC='off' is not understood" in result.stderr and "'default'" in result.stderr
    assert result.stdout.startswith("glibc keeps freed memory"), result.stdout
