"""Compiles the CUDA kernels with nvcc (so a CUDA compile error cannot land) and, where a GPU
is present, runs the standalone harness that checks them against the CPU maths."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CSRC = ROOT / "csrc"
NVCC = shutil.which("nvcc")


def _gpu_present() -> bool:
    smi = shutil.which("nvidia-smi")
    return smi is not None and subprocess.run([smi, "-L"], capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    if NVCC is None:
        pytest.skip("nvcc not found: CUDA kernels cannot be compiled here")
    binary = tmp_path_factory.mktemp("cuda") / "harness"
    harness_dir = CSRC / "cuda_harness"
    kernels = sorted(str(p) for p in CSRC.rglob("*.cu.cc") if harness_dir not in p.parents)
    subprocess.run(
        [
            NVCC,
            "-std=c++17",
            "-O2",
            "-x",
            "cu",
            f"-I{CSRC}",
            "-arch=sm_80",
            str(harness_dir / "harness.cu.cc"),
            *kernels,
            "-o",
            str(binary),
        ],
        check=True,
    )
    return binary


def test_cuda_kernels_compile(harness):
    assert harness.exists()


@pytest.mark.skipif(not _gpu_present(), reason="no GPU present: CUDA harness not run")
def test_cuda_kernels_match_cpu(harness):
    result = subprocess.run([str(harness)], capture_output=True, text=True, timeout=120)
    print(result.stdout, result.stderr)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("OK") == 13
