"""Loads the compiled fused-op library, or explains once why the composite path is used.

The library is `tfp_mnf/ops/_mnf_ops.so` (built by `pip install`), or the file named by the
environment variable `TFP_MNF_OPS_LIBRARY`. Next to the default library, `_mnf_ops.json`
records the TensorFlow version it was compiled against (and whether CUDA kernels are in it);
a library built for another TensorFlow is stale and is not loaded.
"""

import functools
import json
import os
import warnings
from pathlib import Path
from types import ModuleType

import tensorflow as tf

LIBRARY_ENV = "TFP_MNF_OPS_LIBRARY"
DEFAULT_LIBRARY = Path(__file__).with_name("_mnf_ops.so")


def metadata_path(library: Path) -> Path:
    """Returns the build-metadata file that sits next to `library`."""
    return library.with_suffix(".json")


def _stale_reason(library: Path) -> str | None:
    """Returns why `library` must not be loaded, or None when it looks usable."""
    if not library.exists():
        return f"{library} does not exist (build it with `pip install -e .`)"
    meta = metadata_path(library)
    if not meta.exists():
        return None
    built_for = json.loads(meta.read_text()).get("tf_version")
    if built_for != tf.__version__:
        return (
            f"{library} was built for TensorFlow {built_for}, this is {tf.__version__} "
            "(rebuild it with `pip install -e .`)"
        )
    return None


# The op wrappers the Python side calls: a library built from older sources lacks some.
REQUIRED_OPS = (
    "mnf_dense_scaled_inputs",
    "mnf_clipped_variance",
    "mnf_dense_epilogue",
    "mnf_conv_local_reparam_epilogue",
    "mnf_kernel_moments",
)


@functools.cache
def load() -> ModuleType | None:
    """Loads the op library once; returns None (after one warning) when it is unusable."""
    library = Path(os.environ.get(LIBRARY_ENV) or DEFAULT_LIBRARY)
    reason = _stale_reason(library)
    if reason is None:
        try:
            module = tf.load_op_library(str(library))
        except (tf.errors.NotFoundError, OSError) as err:
            reason = f"loading {library} failed: {err}"
        else:
            missing = [name for name in REQUIRED_OPS if not hasattr(module, name)]
            if not missing:
                return module
            reason = (
                f"{library} is stale: it lacks the ops {missing} "
                "(rebuild it with `pip install -e .`)"
            )
    warnings.warn(
        f"tfp_mnf fused ops unavailable, using the composite TensorFlow path: {reason}",
        RuntimeWarning,
        stacklevel=2,
    )
    return None


@functools.cache
def has_gpu_kernels() -> bool:
    """Whether the loaded library was built with its CUDA kernels (as its metadata says)."""
    library = Path(os.environ.get(LIBRARY_ENV) or DEFAULT_LIBRARY)
    meta = metadata_path(library)
    return load() is not None and meta.exists() and bool(json.loads(meta.read_text()).get("cuda"))
