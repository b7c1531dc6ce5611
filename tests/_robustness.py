"""Runs `robustness_worker.py` commands in fresh Python processes for the robustness tests."""

import os
import subprocess
import sys
from pathlib import Path

WORKER = Path(__file__).with_name("robustness_worker.py")
REPO = WORKER.parent.parent
MISSING_LIBRARY = {
    "TFP_MNF_OPS_LIBRARY": "/nonexistent/_mnf_ops.so",
    "TFP_MNF_FORCE_COMPOSITE": "1",
}


def start(
    command: str,
    out_dir: Path,
    *args: str,
    env: dict | None = None,
    frontend: str = "tf_keras",
) -> subprocess.Popen:
    """Starts `robustness_worker.py command out_dir *args` with the repo on PYTHONPATH, for
    the front-end named `frontend` ("tf_keras" or "keras3")."""
    full_env = {**os.environ, **(env or {}), "TFP_MNF_TEST_FRONTEND": frontend}
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), full_env.get("PYTHONPATH")]))
    full_env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return subprocess.Popen(
        [sys.executable, str(WORKER), command, str(out_dir), *args],
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(*procs: subprocess.Popen, timeout: float = 300) -> None:
    """Waits for the processes; fails with the tail of a failed one's output."""
    for proc in procs:
        output, _ = proc.communicate(timeout=timeout)
        assert proc.returncode == 0, f"{proc.args[2:]} failed:\n{output[-4000:]}"


def run(
    command: str, out_dir: Path, *args: str, env: dict | None = None, frontend: str = "tf_keras"
) -> None:
    """Runs one worker command to completion."""
    finish(start(command, out_dir, *args, env=env, frontend=frontend))
