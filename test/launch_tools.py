"""Helpers for tests that use the real ROS 2 launch system and `ros2` command line.

* `require_launch()`: skip (fail under CI) where launch / ros2cli are not installed.
* `colcon_install()`: one `colcon build` of this repository per pytest process (a session
  fixture in conftest.py and the launch_testing module both call it), and `install_env()`: the
  environment `source install/setup.bash` gives.
* `launch_argv()`: the tracker_node command line exactly as the real launch file and launch_ros
  build it (`ros2 launch --launch-prefix` with a prefix that records its arguments).
* `Launched`: `ros2 launch ...` in its own session (so the test can send a terminal's Ctrl-C to
  the whole group), its output in a log file, the node's pid and exit report read from it.
* `shm_files_of()` / `leftover_shm()`: the Fast DDS shared-memory files a process mapped, and
  which of them outlived it.

Not a test module.
"""
from __future__ import annotations

import atexit
import functools
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
VENV = Path(sys.prefix)
LAUNCH_FILE = REPO / "launch" / "tracker.launch.py"
# Every process a test starts carries this variable, so `processes_with_marker()` finds any that outlived it.
MARKER = "SPARSETT_TEST_PROCESS"

_CAPTURE = """import json, sys
with open(sys.argv[1], "w") as f:
    json.dump(sys.argv[2:], f)
"""


def _missing(what: str) -> None:
    msg = (f"{what} is not installed: scripts/setup.sh installs the ROS 2 launch system and ros2 CLI from "
           "../shared/ros2_tools where no ROS 2 distribution is sourced")
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(msg + "; under CI it must be present")
    pytest.skip(msg)


def require_launch() -> None:
    """Skip (user's clone without the launch system) or fail (CI) unless launch and ros2cli import."""
    if any(importlib.util.find_spec(name) is None for name in ("launch", "launch_ros", "ros2cli")):
        _missing("the ROS 2 launch system (launch, launch_ros, ros2cli)")


def ros2() -> str:
    """The `ros2` executable of this environment."""
    exe = shutil.which("ros2", path=f"{VENV / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}")
    if exe is None:
        _missing("the ros2 command line")
    return exe


def marked_env(env: dict[str, str] | None = None, tag: str = "1") -> dict[str, str]:
    """`env` (default: os.environ) with the test-process marker and unbuffered output."""
    return dict(env if env is not None else os.environ, **{MARKER: tag}, PYTHONUNBUFFERED="1",
                RCUTILS_LOGGING_BUFFERED_STREAM="0")


def processes_with_marker(tag: str) -> list[str]:
    """'pid cmdline' of every live process (other than this one) whose environment carries MARKER=tag."""
    wanted = f"{MARKER}={tag}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if wanted in (entry / "environ").read_bytes().split(b"\0"):
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if state != "Z":  # a zombie has exited; its parent just has not reaped it yet
                    cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                    found.append(f"{entry.name} {cmdline}")
        except OSError:
            continue
    return found


def wait_no_processes(tag: str, timeout: float) -> list[str]:
    """Wait until no process carries MARKER=tag (a stopped ros2 daemon takes a moment); those left after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        left = processes_with_marker(tag)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


# ---- colcon install -------------------------------------------------------------------------

_INSTALL: Path | None = None


def colcon_install() -> Path:
    """`colcon build` of a workspace whose src/ holds this repository; the install base (once per process)."""
    global _INSTALL
    if _INSTALL is not None:
        return _INSTALL
    colcon = VENV / "bin" / "colcon"
    if not colcon.exists():
        colcon = Path(shutil.which("colcon") or "/nonexistent")
        if not colcon.exists():
            _missing("colcon")
    ws = Path(tempfile.mkdtemp(prefix="sparsett_colcon_"))
    atexit.register(shutil.rmtree, ws, ignore_errors=True)
    (ws / "src").mkdir()
    (ws / "src" / "sparsett_ros").symlink_to(REPO, target_is_directory=True)
    env = dict(os.environ, CMAKE_PREFIX_PATH=os.environ.get("AMENT_PREFIX_PATH", str(VENV)),
               PATH=f"{VENV / 'bin'}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.run(
        [str(colcon), "build", "--base-paths", "src", "--event-handlers", "console_cohesion+",
         "--cmake-args", "-DBUILD_TESTING=OFF", f"-DPython3_EXECUTABLE={sys.executable}"],
        cwd=ws, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "1 package finished" in proc.stdout, proc.stdout[-2000:]  # one package, nothing else crawled
    _INSTALL = ws / "install"
    return _INSTALL


def package_prefix(install: Path) -> Path:
    return install / "sparsett_ros"


def site_packages(install: Path) -> Path:
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    return package_prefix(install) / "lib" / version / "site-packages"


@functools.lru_cache(maxsize=None)
def _sourced(install: str) -> tuple[tuple[str, str], ...]:
    out = subprocess.run(["bash", "-c", 'source "$1/setup.bash" && env -0', "bash", install],
                         env=dict(os.environ, PATH=f"{VENV / 'bin'}{os.pathsep}{os.environ['PATH']}"),
                         capture_output=True, check=True, timeout=60)
    pairs = (item.split(b"=", 1) for item in out.stdout.split(b"\0") if b"=" in item)
    return tuple((k.decode(), v.decode()) for k, v in pairs)


def install_env(install: Path) -> dict[str, str]:
    """The environment of a shell that sourced `install/setup.bash` (on top of this one)."""
    return dict(_sourced(str(install)))


# ---- the node's command line from the real launch description ------------------------------

@functools.lru_cache(maxsize=None)
def _launch_argv(args: tuple[tuple[str, str], ...]) -> tuple[str, ...]:
    require_launch()
    work = Path(tempfile.mkdtemp(prefix="sparsett_argv_"))
    try:
        capture = work / "capture.py"
        capture.write_text(_CAPTURE)
        out = work / "argv.json"
        cmd = [ros2(), "launch", str(LAUNCH_FILE), *(f"{k}:={v}" for k, v in args),
               "--launch-prefix", f"{sys.executable} {capture} {out}"]
        proc = subprocess.run(cmd, cwd=work, env=marked_env(), capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0 and out.exists(), f"{' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}"
        argv = tuple(json.loads(out.read_text()))
        for arg in argv:  # launch_ros's parameter files for the overrides: kept for the node, removed at exit
            if Path(arg).name.startswith("launch_params_") and Path(arg).is_file():
                atexit.register(Path(arg).unlink, missing_ok=True)
        return argv
    finally:
        shutil.rmtree(work, ignore_errors=True)


def launch_argv(**arguments: str) -> list[str]:
    """argv of the tracker_node process that `ros2 launch <checkout>/launch/tracker.launch.py` starts.

    Arguments with an empty value are left out (their defaults are empty). argv[0] is the
    executable the launch resolved (lib/sparsett_ros/tracker_node of the package prefix).
    """
    return list(_launch_argv(tuple(sorted((k, v) for k, v in arguments.items() if v))))


# ---- ros2 launch as a terminal runs it ------------------------------------------------------

class Launched:
    """A command (`ros2 launch ...`) in a new session, as a terminal runs it; output in `log_path`.

    `Launched.ros2_launch(ARGS, ...)` starts `ros2 launch ARGS`; `Launched(["bash", "-c", line], ...)`
    runs a README line as written.
    """

    def __init__(self, cmd: list[str], env: dict[str, str], log_path: Path, cwd: Path) -> None:
        self.log_path = log_path
        self._log = open(log_path, "w")
        self.proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    @classmethod
    def ros2_launch(cls, args: list[str], env: dict[str, str], log_path: Path, cwd: Path) -> "Launched":
        return cls([ros2(), "launch", *args], env, log_path, cwd)

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, pattern: str, timeout: float = 120.0) -> re.Match:
        """Wait until `pattern` (a regex) appears in the output; AssertionError on timeout or exit."""
        deadline = time.monotonic() + timeout
        while True:
            match = re.search(pattern, self.log())
            if match:
                return match
            if self.proc.poll() is not None:
                raise AssertionError(f"ros2 launch exited ({self.proc.returncode}) before {pattern!r}:\n{self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:.0f} s waiting for {pattern!r}:\n{self.log()}")
            time.sleep(0.1)  # polls a log file; the deadline bounds the wait

    def node_pid(self, timeout: float = 120.0) -> int:
        return int(self.wait_for_log(r"\[tracker_node-1\]: process started with pid \[(\d+)\]", timeout).group(1))

    def interrupt(self, sig: int = signal.SIGINT) -> None:
        """A terminal's Ctrl-C: the signal to the whole process group (launch and the node)."""
        os.killpg(self.proc.pid, sig)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    def close(self) -> None:
        """Kill what is left (a failed test), then close the log."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(10)
        self._log.close()


def wait_gone(pid: int, timeout: float) -> bool:
    """True once process `pid` no longer runs (or is a zombie), False after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state == "Z":
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)


def run_ros2(args: list[str], env: dict[str, str], timeout: float = 60.0, cwd: Path | None = None,
             check: bool = True) -> subprocess.CompletedProcess:
    """`ros2 ARGS` to completion; AssertionError with its output when it fails (check)."""
    proc = subprocess.run([ros2(), *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    if check:
        assert proc.returncode == 0, f"ros2 {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def retry_ros2(args: list[str], env: dict[str, str], until: str, timeout: float = 60.0,
               cwd: Path | None = None) -> str:
    """Run `ros2 ARGS` until it succeeds with `until` in its output (discovery takes a moment)."""
    deadline = time.monotonic() + timeout
    while True:
        proc = run_ros2(args, env, timeout=timeout, cwd=cwd, check=False)
        if proc.returncode == 0 and until in proc.stdout:
            return proc.stdout
        if time.monotonic() > deadline:
            raise AssertionError(f"ros2 {' '.join(args)} never printed {until!r}:\n{proc.stdout}\n{proc.stderr}")


# ---- Fast DDS shared memory -----------------------------------------------------------------

_DDS_PREFIXES = ("fastrtps_", "fastdds_")


def _shm_in_use(pid: int) -> set[str]:
    """/dev/shm paths process `pid` maps or holds open."""
    paths = set()
    try:
        for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
            fields = line.split(maxsplit=5)
            if len(fields) == 6 and fields[5].startswith("/dev/shm/"):
                paths.add(fields[5])
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            target = os.readlink(fd)
            if target.startswith("/dev/shm/"):
                paths.add(target)
    except OSError:
        pass
    return paths


def _segment(path: str) -> str:
    """The Fast DDS segment a /dev/shm file belongs to (its lock file and semaphore share its name)."""
    name = Path(path).name.removeprefix("sem.")
    return re.sub(r"(_el|_mutex)$", "", name)


def shm_files_of(pid: int) -> set[str]:
    """The Fast DDS shared-memory segments process `pid` owns now (with their lock files).

    Port queues (`fastrtps_port<N>`) are left out: every participant that sends to a port maps it,
    and Fast DDS leaves removing one to whoever closes it last (or reclaims it at the next start).
    """
    used = {p for p in _shm_in_use(pid) if Path(p).name.startswith(_DDS_PREFIXES) and "_port" not in p}
    segments = {_segment(p) for p in used}
    return {str(f) for f in Path("/dev/shm").iterdir() if _segment(str(f)) in segments}


def leftover_shm(files: set[str]) -> list[str]:
    """Those of `files` that still exist although no live process uses their segment (leaked by a dead one)."""
    existing = {f for f in files if Path(f).exists()}
    if not existing:
        return []
    in_use: set[str] = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            in_use |= {_segment(p) for p in _shm_in_use(int(entry.name))}
    return sorted(f for f in existing if _segment(f) not in in_use)


def params_file(install: Path, path: Path, **changes) -> Path:
    """A copy of the installed config/tracker.yaml with `changes` (written to `path`)."""
    import yaml

    config = yaml.safe_load(installed_config(install).read_text())
    config["/**"]["ros__parameters"].update(changes)
    path.write_text(yaml.safe_dump(config))
    return path


def installed_config(install: Path) -> Path:
    return package_prefix(install) / "share" / "sparsett_ros" / "config" / "tracker.yaml"
