#!/usr/bin/env bash
# Builds the MNF custom-op library with Bazel against the pip-installed TensorFlow, runs the
# Bazel test target, then the op tests against the Bazel-built library (issue 7).
#
# Usage: scripts/bazel_build.sh            (PYTHON=/path/to/python3 to pick the interpreter)
#
# Installs Debian's Bazel 4.2 (`bazel-bootstrap`) with apt-get when `bazel` is missing. The
# build itself downloads nothing: see WORKSPACE and bazel/ for the offline stand-ins.
set -euo pipefail

cd "$(dirname "$0")/.."
python="${PYTHON:-python3}"

if ! command -v bazel >/dev/null 2>&1; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
  fi
  echo "== installing bazel-bootstrap (Debian's Bazel 4.2)"
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bazel-bootstrap
fi

echo "== configuring against the TensorFlow of ${python}"
python_bin="$("$python" -c 'import sys; print(sys.executable)')"
"$python_bin" -c 'import tensorflow as tf; print("tensorflow", tf.__version__,
  "\n  headers:", tf.sysconfig.get_include(), "\n  library:", tf.sysconfig.get_lib())' \
  2>/dev/null || { echo "error: ${python_bin} cannot import tensorflow" >&2; exit 1; }
for command in build fetch query sync; do
  printf '%s --repo_env=PYTHON_BIN_PATH=%s\n' "$command" "$python_bin"
done > .tf_configure.bazelrc
bazel sync --configure

echo "== building and testing with Bazel"
bazel build //:mnf_ops
bazel test //:mnf_ops_load_test

library="$(pwd)/bazel-bin/_mnf_ops.so"
if [ -f tests/test_ops.py ] && [ -f tests/test_kernel_moments.py ]; then
  echo "== op tests against ${library}"
  TFP_MNF_OPS_LIBRARY="$library" "$python_bin" -m pytest tests/test_ops.py \
    tests/test_kernel_moments.py -q
else
  echo "== tests/test_ops.py or tests/test_kernel_moments.py not found: op tests against the" \
    "Bazel library skipped"
fi
echo "== OK: ${library}"
