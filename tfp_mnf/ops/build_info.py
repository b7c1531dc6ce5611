"""What the op library was built from and for, and whether this machine can use it.

`setup.py` records in `_mnf_ops.json`, next to the library:
- `sources_digest`: a SHA-256 of every file under `csrc/` (path and bytes);
- `build_flags`: the compiler flags of the build;
- `ops`: the op names that `csrc/` registers (`REGISTER_OP`);
- `isa_features`: the instruction-set features the compiler assumed (from the macros that
  `-march=...` defines), named as Linux's `/proc/cpuinfo` names them.

The loader (`tfp_mnf.ops._library`) compares the digest with the checked-out `csrc/` (an
editable install whose sources moved on is stale) and the features with this CPU's (a
library built for another CPU would die with SIGILL). This module imports only the
standard library, so that `setup.py` can load it by path before the package is installed.
"""

from __future__ import annotations

import hashlib
import json
import platform
import re
import subprocess
from collections.abc import Sequence
from pathlib import Path

# The checked-out sources of an editable install (absent in an installed wheel).
SOURCE_DIR = Path(__file__).resolve().parents[2] / "csrc"
SOURCE_SUFFIXES = (".cc", ".h")
CPUINFO = Path("/proc/cpuinfo")

# Compiler macro -> the /proc/cpuinfo flag of the same feature (x86).
_MACRO_FLAGS = {
    "__SSE3__": "pni",
    "__SSSE3__": "ssse3",
    "__SSE4_1__": "sse4_1",
    "__SSE4_2__": "sse4_2",
    "__POPCNT__": "popcnt",
    "__AVX__": "avx",
    "__AVX2__": "avx2",
    "__FMA__": "fma",
    "__F16C__": "f16c",
    "__BMI__": "bmi1",
    "__BMI2__": "bmi2",
    "__LZCNT__": "abm",
    "__MOVBE__": "movbe",
    "__AVXVNNI__": "avx_vnni",
    "__AVX512F__": "avx512f",
    "__AVX512CD__": "avx512cd",
    "__AVX512BW__": "avx512bw",
    "__AVX512DQ__": "avx512dq",
    "__AVX512VL__": "avx512vl",
    "__AVX512IFMA__": "avx512ifma",
    "__AVX512VBMI__": "avx512vbmi",
    "__AVX512VBMI2__": "avx512_vbmi2",
    "__AVX512VNNI__": "avx512_vnni",
    "__AVX512BITALG__": "avx512_bitalg",
    "__AVX512VPOPCNTDQ__": "avx512_vpopcntdq",
    "__AVX512BF16__": "avx512_bf16",
    "__AVX512FP16__": "avx512_fp16",
}
_REGISTER_OP = re.compile(r'REGISTER_OP\("(\w+)"\)')


def source_files(source_dir: Path = SOURCE_DIR) -> list[Path]:
    """The C++ and CUDA sources under `source_dir`, sorted by relative path."""
    return sorted(
        (p for p in source_dir.rglob("*") if p.is_file() and p.suffix in SOURCE_SUFFIXES),
        key=lambda p: p.relative_to(source_dir).as_posix(),
    )


def sources_digest(source_dir: Path = SOURCE_DIR) -> str:
    """SHA-256 over the relative path and the bytes of every source file."""
    digest = hashlib.sha256()
    for path in source_files(source_dir):
        digest.update(path.relative_to(source_dir).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def registered_ops(source_dir: Path = SOURCE_DIR) -> list[str]:
    """The op names that the sources register with `REGISTER_OP`, sorted."""
    names = set()
    for path in source_files(source_dir):
        names.update(_REGISTER_OP.findall(path.read_text(errors="replace")))
    return sorted(names)


def compiler_isa_features(compiler: str, flags: Sequence[str]) -> list[str]:
    """The instruction-set features `compiler` assumes under `flags` (cpuinfo names).

    Reads the macros the compiler predefines (`-dM -E`). Returns [] off x86 or when the
    compiler cannot be asked.
    """
    if platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686"):
        return []
    try:
        result = subprocess.run(
            [compiler, *flags, "-dM", "-E", "-x", "c++", "-"],
            input="",
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return []
    defined = {line.split()[1] for line in result.stdout.splitlines() if line.startswith("#define")}
    return sorted(flag for macro, flag in _MACRO_FLAGS.items() if macro in defined)


def cpu_flags(cpuinfo: Path | None = None) -> set[str] | None:
    """This CPU's feature flags from `/proc/cpuinfo`, or None where it has no flags line."""
    try:
        text = (cpuinfo or CPUINFO).read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return set(value.split())
    return None


def cpu_model(cpuinfo: Path | None = None) -> str:
    """This CPU's model name (`/proc/cpuinfo`), or `platform.processor()` elsewhere."""
    try:
        for line in (cpuinfo or CPUINFO).read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def missing_isa_features(recorded: Sequence[str], cpuinfo: Path | None = None) -> list[str]:
    """The recorded build features this CPU lacks ([] when this CPU's flags are unknown)."""
    flags = cpu_flags(cpuinfo)
    if flags is None:
        return []
    return sorted(set(recorded) - flags)


def describe(metadata_file: Path) -> str:
    """A few lines: this CPU, its SIMD flags, and what the library's metadata records."""
    flags = cpu_flags() or set()
    simd = sorted(f for f in flags if f in _MACRO_FLAGS.values())
    lines = [f"CPU: {cpu_model()} ({platform.machine()})", f"CPU ISA flags: {' '.join(simd)}"]
    if metadata_file.exists():
        meta = json.loads(metadata_file.read_text())
        lines.append(f"op library: {metadata_file.with_suffix('.so')}")
        lines.append(f"  built with: {' '.join(meta.get('build_flags', [])) or 'unrecorded'}")
        features = meta.get("isa_features")
        lines.append(
            "  ISA features assumed: "
            + (" ".join(features) if features is not None else "unrecorded")
        )
        lines.append(f"  TensorFlow {meta.get('tf_version')}, CUDA kernels: {meta.get('cuda')}")
    else:
        lines.append(f"op library metadata: {metadata_file} not found")
    return "\n".join(lines)
