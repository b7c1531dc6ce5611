"""Loads the compiled fused-op library, or explains once why the composite path is used.

The library is `tfp_mnf/ops/_mnf_ops.so` (built by `pip install`), or the file named by the
environment variable `TFP_MNF_OPS_LIBRARY`. `_mnf_ops.json` next to it records what it was
built from and for (`build_info`). The library is not loaded, and the composite path is used
after one `RuntimeWarning`, when:
- it was built for another TensorFlow version;
- it was built for instruction-set features this CPU lacks (loading it could end the process
  with SIGILL);
- it was built from other sources than the checked-out `csrc/` (an editable install after a
  `git pull`);
- it does not register every op that its sources (or, without metadata, the checked-out
  sources) register;
- it does not exist or fails to load.
"""

import functools
import json
import os
import warnings
from pathlib import Path
from types import ModuleType

import tensorflow as tf

from tfp_mnf.ops import build_info

LIBRARY_ENV = "TFP_MNF_OPS_LIBRARY"
DEFAULT_LIBRARY = Path(__file__).with_name("_mnf_ops.so")
REBUILD = "rebuild it with `pip install -e .`"


def metadata_path(library: Path) -> Path:
    """Returns the build-metadata file that sits next to `library`."""
    return library.with_suffix(".json")


def _library_path() -> Path:
    return Path(os.environ.get(LIBRARY_ENV) or DEFAULT_LIBRARY)


def _metadata(library: Path) -> dict:
    meta = metadata_path(library)
    return json.loads(meta.read_text()) if meta.exists() else {}


def _refusal(library: Path, meta: dict) -> str | None:
    """Why `library` must not be loaded, judged before loading it; None when it may be."""
    if not library.exists():
        return f"{library} does not exist ({REBUILD})"
    built_for = meta.get("tf_version", tf.__version__)
    if built_for != tf.__version__:
        return (
            f"{library} was built for TensorFlow {built_for}, this is {tf.__version__} ({REBUILD})"
        )
    missing = build_info.missing_isa_features(meta.get("isa_features", []))
    if missing:
        return (
            f"{library} was built for a CPU with {', '.join(missing)}, which this CPU "
            f"({build_info.cpu_model()}) lacks; {REBUILD} on this machine, or with "
            "TFP_MNF_CXXFLAGS='-O3 -march=x86-64-v2' for a library that runs on any recent x86-64"
        )
    digest = meta.get("sources_digest")
    if digest is not None and build_info.SOURCE_DIR.is_dir():
        if build_info.sources_digest(build_info.SOURCE_DIR) != digest:
            return (
                f"{library} was built from other sources than the checked-out "
                f"{build_info.SOURCE_DIR} ({REBUILD})"
            )
    return None


def _expected_ops(meta: dict) -> list[str]:
    """The op names the library must register: as recorded, else as the sources register."""
    if "ops" in meta:
        return meta["ops"]
    if build_info.SOURCE_DIR.is_dir():
        return build_info.registered_ops(build_info.SOURCE_DIR)
    return []


def _lacking_ops(module: ModuleType, expected: list[str]) -> list[str]:
    """The expected op names whose Python wrapper (snake_case) the module lacks."""
    wrappers = {name.replace("_", "") for name in dir(module)}
    return [name for name in expected if name.lower() not in wrappers]


@functools.cache
def load() -> ModuleType | None:
    """Loads the op library once; returns None (after one warning) when it is unusable."""
    library = _library_path()
    try:
        meta = _metadata(library)
    except (OSError, ValueError) as err:
        meta, reason = {}, f"reading {metadata_path(library)} failed: {err} ({REBUILD})"
    else:
        reason = _refusal(library, meta)
    if reason is None:
        try:
            module = tf.load_op_library(str(library))
        except (tf.errors.NotFoundError, OSError) as err:
            reason = f"loading {library} failed: {err}"
        else:
            missing = _lacking_ops(module, _expected_ops(meta))
            if not missing:
                return module
            reason = f"{library} is stale: it lacks the ops {missing} ({REBUILD})"
    warnings.warn(
        f"tfp_mnf fused ops unavailable, using the composite TensorFlow path: {reason}",
        RuntimeWarning,
        stacklevel=2,
    )
    return None


def describe() -> str:
    """This CPU and what the op library's metadata records (CI prints it before the tests)."""
    return build_info.describe(metadata_path(_library_path()))


@functools.cache
def has_gpu_kernels() -> bool:
    """Whether the loaded library was built with its CUDA kernels (as its metadata says)."""
    return load() is not None and bool(_metadata(_library_path()).get("cuda"))
