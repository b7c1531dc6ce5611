"""The op loader falls back (one warning, no import failure) on missing or stale libraries."""

import json
import types

import pytest

from tfp_mnf.ops import _library


@pytest.fixture
def fresh_loader(monkeypatch):
    _library.load.cache_clear()
    yield monkeypatch
    _library.load.cache_clear()


def test_missing_library_warns_and_falls_back(fresh_loader, tmp_path):
    fresh_loader.setenv(_library.LIBRARY_ENV, str(tmp_path / "absent.so"))
    with pytest.warns(RuntimeWarning, match="does not exist"):
        assert _library.load() is None


def test_library_built_for_another_tensorflow_is_not_loaded(fresh_loader, tmp_path):
    library = tmp_path / "_mnf_ops.so"
    library.write_bytes(b"")
    _library.metadata_path(library).write_text(json.dumps({"tf_version": "1.0.0"}))
    fresh_loader.setenv(_library.LIBRARY_ENV, str(library))
    with pytest.warns(RuntimeWarning, match="built for TensorFlow 1.0.0"):
        assert _library.load() is None


def test_library_lacking_current_ops_is_stale(fresh_loader, tmp_path):
    library = tmp_path / "_mnf_ops.so"
    library.write_bytes(b"")
    fresh_loader.setenv(_library.LIBRARY_ENV, str(library))
    old_build = types.SimpleNamespace(mnf_conv_local_reparam_epilogue=object())
    fresh_loader.setattr(_library.tf, "load_op_library", lambda path: old_build)
    with pytest.warns(RuntimeWarning, match="lacks the ops"):
        assert _library.load() is None


def test_unloadable_file_warns_and_falls_back(fresh_loader, tmp_path):
    library = tmp_path / "_mnf_ops.so"
    library.write_bytes(b"not an ELF file")
    fresh_loader.setenv(_library.LIBRARY_ENV, str(library))
    with pytest.warns(RuntimeWarning, match="loading .* failed"):
        assert _library.load() is None
