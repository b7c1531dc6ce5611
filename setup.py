"""Installs tfp_mnf and compiles its custom TensorFlow ops against the installed TensorFlow.

The fused local-reparameterization ops of `csrc/` (one folder per op family, `csrc/common/`
shared) are built into `tfp_mnf/ops/_mnf_ops.so` with the compile and link flags of
`tf.sysconfig` (C++17, -D_GLIBCXX_USE_CXX11_ABI=1): every `.cc` file but the GPU ones. When
`nvcc` is on the PATH and TensorFlow is a CUDA build, the CUDA kernels (`*.cu.cc`) are
compiled with nvcc and the GPU functors (`*_gpu.cc`) with `-DGOOGLE_CUDA=1`, and linked in
(CUDA runtime linked statically, so the library still loads on machines without a GPU);
otherwise they are skipped with a message. `csrc/cuda_harness/` is a standalone test program
(tests/test_cuda_harness.py), not part of the library. The TensorFlow version, whether CUDA
kernels are in, a digest of the sources, the build flags, the op names and the
instruction-set features the compiler assumed are written to `_mnf_ops.json` next to the
library (`tfp_mnf/ops/build_info.py`), so that a stale library, or one built for another CPU,
is detected at import. Set TFP_MNF_CXXFLAGS to override `-O3 -march=native` (e.g.
`-O3 -march=x86-64-v2` for a library that loads on any x86-64 CPU of the last decade).
"""

import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
CSRC = ROOT / "csrc"
HARNESS = CSRC / "cuda_harness"
OPS_LIBRARY = "tfp_mnf.ops._mnf_ops"
CUDA_ARCHS = ["sm_75", "sm_80", "sm_90"]
CUDA_HOME = Path(os.environ.get("CUDA_HOME", "/usr/local/cuda"))


def _load_build_info() -> object:
    """tfp_mnf/ops/build_info.py, loaded by path (it needs only the standard library)."""
    spec = importlib.util.spec_from_file_location(
        "tfp_mnf_build_info", ROOT / "tfp_mnf" / "ops" / "build_info.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _sources(pattern: str) -> list[Path]:
    """The files under csrc/ whose name matches `pattern`, outside the CUDA harness, sorted."""
    return sorted(p for p in CSRC.rglob(pattern) if HARNESS not in p.parents)


def _object(tmp: str, src: Path) -> str:
    """The object file of `src` in `tmp`, named after its path under csrc/ (unique)."""
    return f"{tmp}/{'.'.join(src.relative_to(CSRC).parts)}.o"


def _run(cmd: list[str]) -> None:
    print(" ".join(shlex.quote(c) for c in cmd), flush=True)
    subprocess.run(cmd, check=True)


class BuildOps(build_ext):
    """Compiles the op library with the installed TensorFlow's flags (no Python extension)."""

    def get_ext_filename(self, ext_name: str) -> str:
        # Called with the full dotted name and with its last component alone.
        if OPS_LIBRARY.endswith(ext_name):
            return os.path.join(*ext_name.split(".")) + ".so"
        return super().get_ext_filename(ext_name)

    def copy_extensions_to_source(self) -> None:
        """Editable installs: also copies the library's metadata next to the in-tree .so."""
        super().copy_extensions_to_source()
        package_dir = self.get_finalized_command("build_py").get_package_dir("tfp_mnf.ops")
        built = Path(self.build_lib, "tfp_mnf", "ops", "_mnf_ops.json")
        self.copy_file(str(built), str(Path(package_dir, built.name)))

    def build_extension(self, ext: Extension) -> None:
        if ext.name != OPS_LIBRARY:
            super().build_extension(ext)
            return
        import tensorflow as tf

        start = time.perf_counter()
        target = Path(self.get_ext_fullpath(ext.name))
        target.parent.mkdir(parents=True, exist_ok=True)
        cxx = os.environ.get("CXX", "g++")
        opt = shlex.split(os.environ.get("TFP_MNF_CXXFLAGS", "-O3 -march=native"))
        cflags = [
            *tf.sysconfig.get_compile_flags(),
            "-fPIC",
            "-Wno-deprecated-declarations",
            # The noise and kernel loops vectorize only when math calls and float compares need
            # not keep errno / floating-point exception semantics (csrc/common/cpu_noise.h).
            "-fno-math-errno",
            "-fno-trapping-math",
            f"-I{CSRC}",
            *opt,
        ]
        with tempfile.TemporaryDirectory() as tmp:
            jobs = [
                [cxx, "-c", str(src), "-o", _object(tmp, src), *cflags]
                for src in _sources("*.cc")
                if not src.name.endswith(("_gpu.cc", ".cu.cc"))
            ]
            cuda = self._cuda_jobs(tf, tmp, cflags)
            jobs += cuda
            with ThreadPoolExecutor(max(1, os.cpu_count() or 1)) as pool:
                list(pool.map(_run, jobs))
            objects = [job[job.index("-o") + 1] for job in jobs]
            cuda_libs = [f"-L{CUDA_HOME}/lib64", "-lcudart_static", "-ldl", "-lrt"] if cuda else []
            _run(
                [
                    cxx,
                    "-shared",
                    *objects,
                    "-o",
                    str(target),
                    *tf.sysconfig.get_link_flags(),
                    *cuda_libs,
                ]
            )
        build_info = _load_build_info()
        metadata = {
            "tf_version": tf.__version__,
            "cuda": bool(cuda),
            "sources_digest": build_info.sources_digest(CSRC),
            "build_flags": cflags,
            "ops": build_info.registered_ops(CSRC),
            "isa_features": build_info.compiler_isa_features(cxx, cflags),
        }
        target.with_suffix(".json").write_text(json.dumps(metadata, indent=1))
        print(f"tfp_mnf: built {target} in {time.perf_counter() - start:.1f} s", flush=True)

    @staticmethod
    def _cuda_jobs(tf: object, tmp: str, cflags: list[str]) -> list[list[str]]:
        """nvcc jobs for the CUDA kernels (*.cu.cc) plus the GPU functors (*_gpu.cc), or []."""
        nvcc = shutil.which("nvcc")
        if nvcc is None or not tf.test.is_built_with_cuda():
            print(
                "tfp_mnf: nvcc or a CUDA build of TensorFlow not found, CUDA kernels skipped",
                flush=True,
            )
            return []
        gencode = [f"-gencode=arch=compute_{a[3:]},code={a}" for a in CUDA_ARCHS]
        jobs = [
            [
                nvcc,
                "-c",
                str(src),
                "-o",
                _object(tmp, src),
                "-x",
                "cu",
                "-std=c++17",
                "-O3",
                "-Xcompiler",
                "-fPIC",
                f"-I{CSRC}",
                *gencode,
            ]
            for src in _sources("*.cu.cc")
        ]
        jobs += [
            [
                os.environ.get("CXX", "g++"),
                "-c",
                str(src),
                "-o",
                _object(tmp, src),
                *cflags,
                "-DGOOGLE_CUDA=1",
                f"-I{CUDA_HOME}/include",
            ]
            for src in _sources("*_gpu.cc")
        ]
        return jobs


setup(
    name="tfp-mnf",
    version="0.2.0",
    description="Multiplicative Normalizing Flows (MNF) Bayesian layers for TensorFlow Probability",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(include=["tfp_mnf", "tfp_mnf.*"]),
    ext_modules=[Extension(OPS_LIBRARY, sources=[])],
    cmdclass={"build_ext": BuildOps},
    install_requires=[
        "tensorflow~=2.21.0",
        "tensorflow-probability~=0.25.0",
        "tf-keras~=2.21.0",
        "numpy",
        "absl-py",
        "matplotlib",
    ],
    extras_require={"test": ["pytest", "scikit-learn", "ruff"]},
)
