"""Repository rule exposing the pip-installed TensorFlow to Bazel.

`tf_configure` asks the Python interpreter named by `PYTHON_BIN_PATH` (else `python3` on
PATH) for `tf.sysconfig.get_include()`, `get_lib()`, `get_compile_flags()` and
`get_link_flags()`, links the headers and `libtensorflow_framework.so.2` into the
repository, and generates:

* `//:tf_headers`: a `cc_library` of the TensorFlow headers with TF's defines;
* `//:tensorflow_framework`: the framework shared library to link custom ops against;
* `//:python_toolchain`: a Python toolchain running that same interpreter, so `py_test`
  targets import the same TensorFlow the op library was built against;
* `//:defs.bzl`: `TF_COPTS`, the remaining compile flags (the C++ standard), and
  `TF_VERSION`, the version of that TensorFlow.

Re-run with `bazel sync --configure` after upgrading TensorFlow.
"""

_QUERY = """
import sys
import tensorflow as tf
print("python=" + sys.executable)
print("version=" + tf.__version__)
print("include=" + tf.sysconfig.get_include())
print("lib=" + tf.sysconfig.get_lib())
for flag in tf.sysconfig.get_link_flags():
    if flag.startswith("-l:"):
        print("framework=" + flag[3:])
for flag in tf.sysconfig.get_compile_flags():
    if flag.startswith("-D"):
        print("define=" + flag[2:])
    elif not flag.startswith("-I"):
        print("copt=" + flag)
"""

_BUILD = """\
load("@bazel_tools//tools/python:toolchain.bzl", "py_runtime_pair")

package(default_visibility = ["//visibility:public"])

cc_library(
    name = "tf_headers",
    hdrs = glob(["include/**"], exclude = ["include/**/*.py", "include/**/LICENSE"]),
    defines = {defines},
    includes = ["include"],
)

cc_import(
    name = "tensorflow_framework",
    shared_library = "{framework}",
)

py_runtime(
    name = "python3",
    interpreter_path = "{python}",
    python_version = "PY3",
)

py_runtime_pair(
    name = "python_runtimes",
    py3_runtime = ":python3",
)

toolchain(
    name = "python_toolchain",
    toolchain = ":python_runtimes",
    toolchain_type = "@bazel_tools//tools/python:toolchain_type",
)
"""

def _tf_configure_impl(ctx):
    python = ctx.os.environ.get("PYTHON_BIN_PATH") or ctx.which("python3")
    if not python:
        fail("tf_configure: set PYTHON_BIN_PATH or put python3 on PATH")
    result = ctx.execute([python, "-c", _QUERY], quiet = True)
    if result.return_code != 0:
        fail("tf_configure: %s could not import tensorflow:\n%s" % (python, result.stderr))
    keys = ["python", "version", "include", "lib", "framework", "define", "copt"]
    found = {key: [] for key in keys}
    for line in result.stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep and key in found:
            found[key].append(value)
    ctx.symlink(found["include"][0], "include")
    framework = found["framework"][0]
    ctx.symlink(found["lib"][0] + "/" + framework, framework)
    ctx.file("BUILD", _BUILD.format(
        defines = repr(found["define"]),
        framework = framework,
        python = found["python"][0],
    ))
    ctx.file("defs.bzl", "TF_COPTS = %s\nTF_VERSION = %s\n" % (
        repr(found["copt"]),
        repr(found["version"][0]),
    ))

tf_configure = repository_rule(
    implementation = _tf_configure_impl,
    environ = ["PYTHON_BIN_PATH"],
    configure = True,
)
