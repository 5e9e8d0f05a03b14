"""Running the installed command-line tools as a user does, and checking how they fail."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest

BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    """Path of an installed console script (sparsett-eval, sparsett-track, sparsett-train, torchrun)."""
    path = BIN / name
    if not path.is_file():
        pytest.fail(f"{path} is not installed: scripts/setup.sh installs the package and its commands")
    return str(path)


def tool_env(**extra: str) -> dict[str, str]:
    """The environment for a tool: one intra-op thread (on a shared 2-core machine two OpenMP
    threads are many times slower, and a fixed count keeps reruns bit-identical), loopback gloo."""
    env = dict(os.environ)
    env.update({"OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo", "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


def interrupt_when(cmd: list[str], ready: Callable[[], bool], what: str, timeout: float = 300) -> tuple[int, str]:
    """Run ``cmd`` and press Ctrl-C (SIGINT) once ``ready()`` holds; returns (exit status, stderr)."""
    proc = subprocess.Popen(cmd, env=tool_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(ready, timeout, what, proc)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, err


def run_tool(name: str, *args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
             timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``name args...`` and capture its output (text)."""
    return subprocess.run([tool(name), *map(str, args)], cwd=cwd, env=env or tool_env(), capture_output=True,
                          text=True, timeout=timeout)


def wait_for(condition: Callable[[], bool], timeout: float, what: str, proc: subprocess.Popen | None = None) -> None:
    """Poll `condition` every 20 ms until it holds; fail after `timeout` s or if `proc` ends first."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the process ended (status {proc.returncode}) before {what}:\n{err[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def assert_clean_error(proc: subprocess.CompletedProcess, prog: str, *fragments: str, status: int = 1) -> str:
    """The tool failed with `status` and a one-line ``<prog>: error: ...`` naming every fragment, no traceback.

    Returns:
        The error line.
    """
    assert proc.returncode == status, (proc.returncode, proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(f"{prog}: error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], proc.stderr
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])
    return errors[0]
