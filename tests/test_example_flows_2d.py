"""Tiny end-to-end run of examples/flows_2d.py in a subprocess (about 30 s on 2 CPU cores)."""

import json
import math
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "examples", "flows_2d.py")
KINDS = ("planar", "realnvp", "iaf", "maf")


def _run(*args):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    return subprocess.run(
        [sys.executable, SCRIPT, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_help_lists_the_flags():
    # absl's --help prints the flags and exits with status 1.
    output = _run("--help").stdout
    for flag in ("kinds", "num_layers", "hidden_units", "steps", "batch_size", "learning_rate"):
        assert f"--{flag}" in output
    for flag in ("num_samples", "output_dir", "seed"):
        assert f"--{flag}" in output


def test_tiny_run_prints_finite_log_likelihoods_and_saves_the_figure(tmp_path):
    result = _run(
        "--steps=10",
        "--num_layers=2",
        "--hidden_units=8",
        "--num_data=200",
        "--batch_size=64",
        "--num_samples=100",
        "--grid_size=20",
        f"--output_dir={tmp_path}",
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    printed = {
        m.group(1): (float(m.group(2)), float(m.group(3)))
        for m in re.finditer(r"^(\w+)\s+(\S+)\s+(\S+)\s+\S+$", result.stdout, re.MULTILINE)
        if m.group(1) in KINDS
    }
    assert set(printed) == set(KINDS)
    with open(tmp_path / "flows_2d.json", encoding="utf-8") as f:
        saved = json.load(f)
    for kind, (train_ll, test_ll) in printed.items():
        assert math.isfinite(train_ll) and math.isfinite(test_ll)
        # Standardized 2-D data: N(0, I) alone scores about -2.84; far off means a bug.
        assert -6.0 < test_ll < 0.0
        assert abs(saved[kind]["test_log_lik"] - test_ll) < 1e-3
    with open(tmp_path / "flows_2d.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.path.getsize(tmp_path / "flows_2d.png") > 10_000
