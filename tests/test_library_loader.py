"""The op loader falls back (one warning, no import failure) on missing, stale or foreign
libraries, judged by the build metadata that setup.py records next to the library."""

import json
import os
import shutil
import subprocess
import sys
import types
import warnings

import pytest
import tensorflow as tf

from tfp_mnf.ops import _library, build_info

INSTALLED = _library.DEFAULT_LIBRARY
INSTALLED_META = _library.metadata_path(INSTALLED)


@pytest.fixture
def fresh_loader(monkeypatch):
    _library.load.cache_clear()
    yield monkeypatch
    _library.load.cache_clear()


@pytest.fixture
def source_tree(fresh_loader, tmp_path):
    """A copy of csrc/ that the loader takes for the checked-out sources."""
    if not build_info.SOURCE_DIR.is_dir():
        pytest.skip("no checked-out csrc/ (not an editable install)")
    copy = tmp_path / "csrc"
    shutil.copytree(build_info.SOURCE_DIR, copy)
    fresh_loader.setattr(build_info, "SOURCE_DIR", copy)
    return copy


def _library_with_metadata(tmp_path, **metadata):
    """An empty stand-in library whose metadata is `metadata`."""
    library = tmp_path / "_mnf_ops.so"
    library.write_bytes(b"")
    _library.metadata_path(library).write_text(json.dumps(metadata))
    return library


def _use(monkeypatch, library):
    monkeypatch.setenv(_library.LIBRARY_ENV, str(library))


def test_missing_library_warns_and_falls_back(fresh_loader, tmp_path):
    _use(fresh_loader, tmp_path / "absent.so")
    with pytest.warns(RuntimeWarning, match="does not exist"):
        assert _library.load() is None


def test_library_built_for_another_tensorflow_is_not_loaded(fresh_loader, tmp_path):
    _use(fresh_loader, _library_with_metadata(tmp_path, tf_version="1.0.0"))
    with pytest.warns(RuntimeWarning, match="built for TensorFlow 1.0.0"):
        assert _library.load() is None


def test_unreadable_metadata_warns_and_falls_back(fresh_loader, tmp_path):
    library = _library_with_metadata(tmp_path)
    _library.metadata_path(library).write_text("{not json")
    _use(fresh_loader, library)
    with pytest.warns(RuntimeWarning, match="reading .* failed"):
        assert _library.load() is None


def test_library_lacking_recorded_ops_is_stale(fresh_loader, tmp_path):
    library = _library_with_metadata(
        tmp_path, ops=["MnfConvLocalReparamEpilogue", "MnfConv2DLocalReparam"]
    )
    _use(fresh_loader, library)
    old_build = types.SimpleNamespace(mnf_conv_local_reparam_epilogue=object())
    fresh_loader.setattr(_library.tf, "load_op_library", lambda path: old_build)
    with pytest.warns(RuntimeWarning, match=r"lacks the ops \['MnfConv2DLocalReparam'\]"):
        assert _library.load() is None


def test_library_without_metadata_must_register_the_sources_ops(
    fresh_loader, source_tree, tmp_path
):
    library = tmp_path / "_mnf_ops.so"
    library.write_bytes(b"")
    _use(fresh_loader, library)
    names = build_info.registered_ops(source_tree)
    assert "MnfStatelessNormal" in names and "MnfConv2DLocalReparam" in names
    wrappers = {"mnf_" + n[3:].lower(): object() for n in names if n != "MnfStatelessNormal"}
    fresh_loader.setattr(
        _library.tf, "load_op_library", lambda path: types.SimpleNamespace(**wrappers)
    )
    with pytest.warns(RuntimeWarning, match=r"lacks the ops \['MnfStatelessNormal'\]"):
        assert _library.load() is None


def test_unloadable_file_warns_and_falls_back(fresh_loader, tmp_path):
    library = tmp_path / "_mnf_ops.so"
    library.write_bytes(b"not an ELF file")
    _use(fresh_loader, library)
    with pytest.warns(RuntimeWarning, match="loading .* failed"):
        assert _library.load() is None


def test_sources_digest_follows_every_byte_and_name(tmp_path):
    tree = tmp_path / "csrc"
    (tree / "dense").mkdir(parents=True)
    (tree / "dense" / "a.cc").write_text("int a;")
    (tree / "b.h").write_text("int b;")
    (tree / "notes.txt").write_text("not a source")
    first = build_info.sources_digest(tree)
    (tree / "notes.txt").write_text("edited")
    assert build_info.sources_digest(tree) == first
    (tree / "b.h").write_text("int b; ")
    assert build_info.sources_digest(tree) != first
    (tree / "b.h").write_text("int b;")
    assert build_info.sources_digest(tree) == first
    (tree / "b.h").rename(tree / "c.h")
    assert build_info.sources_digest(tree) != first


def test_edited_source_makes_the_library_stale(fresh_loader, source_tree, tmp_path):
    library = _library_with_metadata(
        tmp_path, sources_digest=build_info.sources_digest(source_tree), ops=[]
    )
    loaded = types.SimpleNamespace()
    _use(fresh_loader, library)
    fresh_loader.setattr(_library.tf, "load_op_library", lambda path: loaded)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _library.load() is loaded  # the digest matches: loaded, no warning
    _library.load.cache_clear()
    source = build_info.source_files(source_tree)[0]
    source.write_text(source.read_text() + "\n// edited after the build\n")
    with pytest.warns(RuntimeWarning, match="other sources .*pip install -e ."):
        assert _library.load() is None


def test_library_built_for_missing_cpu_features_is_not_loaded(fresh_loader, tmp_path):
    lacking = "tfp_mnf_test_isa_feature"
    assert lacking not in (build_info.cpu_flags() or {lacking})
    library = _library_with_metadata(tmp_path, isa_features=["sse2", lacking])
    _use(fresh_loader, library)

    def must_not_load(path):
        raise AssertionError("a library built for another CPU must not be loaded")

    fresh_loader.setattr(_library.tf, "load_op_library", must_not_load)
    if build_info.cpu_flags() is None:
        pytest.skip("this platform reports no CPU flags")
    with pytest.warns(RuntimeWarning, match=f"built for a CPU with {lacking}"):
        assert _library.load() is None


def test_avx512_library_on_an_avx2_cpu(fresh_loader, tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("model name\t: Test CPU\nflags\t\t: fpu sse2 avx avx2 fma\n")
    fresh_loader.setattr(build_info, "CPUINFO", cpuinfo)
    library = _library_with_metadata(tmp_path, isa_features=["avx2", "avx512bw", "avx512f"])
    _use(fresh_loader, library)
    with pytest.warns(RuntimeWarning, match=r"avx512bw, avx512f, which this CPU \(Test CPU\)"):
        assert _library.load() is None


def test_compiler_features_follow_march():
    compiler = shutil.which("g++") or shutil.which("c++")
    if compiler is None or build_info.cpu_flags() is None:
        pytest.skip("no C++ compiler or no CPU flags here")
    assert "avx2" not in build_info.compiler_isa_features(compiler, ["-march=x86-64"])
    assert {"avx2", "fma"} <= set(build_info.compiler_isa_features(compiler, ["-march=haswell"]))
    assert "avx512f" in build_info.compiler_isa_features(compiler, ["-march=skylake-avx512"])


def test_installed_library_records_what_it_was_built_from():
    if not INSTALLED_META.exists():
        pytest.skip("op library not built (pip install -e .)")
    meta = json.loads(INSTALLED_META.read_text())
    assert meta["tf_version"] == tf.__version__
    if build_info.SOURCE_DIR.is_dir():
        assert meta["sources_digest"] == build_info.sources_digest()
        assert meta["ops"] == build_info.registered_ops()
    assert isinstance(meta["isa_features"], list) and isinstance(meta["build_flags"], list)
    assert build_info.missing_isa_features(meta["isa_features"]) == []


def test_describe_names_the_cpu_and_the_build():
    text = _library.describe()
    assert text.startswith("CPU: ") and "ISA flags" in text


def test_import_survives_a_foreign_cpu_library(tmp_path):
    """A fresh process with a library recorded for a CPU feature nobody has: a warning, the
    composite path, and a working layer."""
    library = tmp_path / "_mnf_ops.so"
    library.write_bytes(b"\x7fELF garbage that would crash if loaded")
    _library.metadata_path(library).write_text(
        json.dumps({"isa_features": ["tfp_mnf_test_isa_feature"]})
    )
    code = (
        "import warnings, tensorflow as tf\n"
        "from tfp_mnf.layers import DenseMNF\n"
        "from tfp_mnf import ops\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    assert not ops.fused_available()\n"
        "print(sum(issubclass(w.category, RuntimeWarning) for w in caught))\n"
        "print(DenseMNF(3)(tf.ones([2, 4])).shape)\n"
    )
    env = {**os.environ, _library.LIBRARY_ENV: str(library)}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["1", "(2,", "3)"]
