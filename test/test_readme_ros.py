"""The README's ROS 2 commands, read from its code blocks and run as written.

"ROS 2 users": the install block (virtualenv, pip, colcon build, ros2 launch) on a stand-in for a
ROS installation whose system Python has no torch; the installed node must run on the venv's.

"The node" section: `ros2 launch ...` (the colcon install, the shipped weights), then in a
second terminal `ros2 topic echo` of the status, `ros2 topic pub --once` of an initial box,
`ros2 param set` of a threshold and `ros2 service call` of reset; finally Ctrl-C on the launch
while the real model tracks a stream. The ros2 daemon the CLI starts is stopped afterwards and no
process outlives the test (`shell` fixture).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

import readme_tools
from launch_tools import REPO, VENV, Launched, installed_config, run_ros2, wait_gone
from node_graph import GraphClient, scene

IMAGE_SIZE = (640, 480)  # the README's init box is centred at (320, 240)


def readme_node_commands() -> dict[str, str]:
    commands = readme_tools.bash_commands(readme_tools.section("The node"))
    return {verb: readme_tools.one(commands, f"ros2 {verb}")
            for verb in ("launch", "topic echo", "topic pub", "param set", "service call")}


class Camera:
    """Publishes 640x480 frames on the README's image topic at `rate_hz` until stopped."""

    def __init__(self, client: GraphClient, rate_hz: float = 10.0) -> None:
        self.client, self.period = client, 1.0 / rate_hz
        self.stop_event = threading.Event()
        self.count = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop_event.is_set():
            image, _ = scene(self.count % 20, size=IMAGE_SIZE, origin=(300, 220), speed=(1, 1))
            self.client.publish_image(image, 1_000_000_000 + self.count * 100_000_000)
            self.count += 1
            self.stop_event.wait(self.period)  # the camera's rate

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(10)


def test_readme_node_commands_run_as_written(shell, colcon_install, ros_context):
    env, cwd = shell
    cmd = readme_node_commands()
    launch = Launched(["bash", "-c", cmd["launch"]], env, cwd / "launch.log", cwd)
    echo = Launched(["bash", "-c", cmd["topic echo"]], env, cwd / "echo.log", cwd)
    image_topic = re.search(r"image:=(\S+)", cmd["launch"]).group(1)
    client = GraphClient(ros_context, image_topic=image_topic)
    camera = None
    try:
        pid = launch.node_pid()
        launch.wait_for_log(r"ready: image")
        assert "SparseTT from the default SparseTT-Lite weights" in launch.log()
        client.wait_for(lambda: client.pub["image"].get_subscription_count() > 0, "the node's image subscription")
        camera = Camera(client)
        echo.wait_for_log(r"state_name: IDLE")  # the latched status reaches the echo started with the launch
        # the launch file's default params_file: the package's config/tracker.yaml, as installed
        dump = run_ros2(["param", "dump", "/tracker_node"], env, cwd=cwd).stdout
        params = yaml.safe_load(dump)["/tracker_node"]["ros__parameters"]
        config = yaml.safe_load(installed_config(colcon_install).read_text())["/**"]["ros__parameters"]
        assert {k: params[k] for k in config} == config

        mark = client.mark()
        pub = subprocess.run(["bash", "-c", cmd["topic pub"]], env=env, cwd=cwd, capture_output=True, text=True,
                             timeout=120)
        assert pub.returncode == 0 and "publishing #1" in pub.stdout, pub.stdout + pub.stderr
        status = client.wait_status(lambda s: s.state_name == "TRACKING", "TRACKING after ros2 topic pub", start=mark)
        assert (status.x, status.y, status.width, status.height) == pytest.approx((280, 210, 80, 60))
        echo.wait_for_log(r"state_name: TRACKING")

        name, value = cmd["param set"].split()[-2:]
        out = subprocess.run(["bash", "-c", cmd["param set"]], env=env, cwd=cwd, capture_output=True, text=True,
                             timeout=120)
        assert out.returncode == 0 and "Set parameter successful" in out.stdout, out.stdout + out.stderr
        got = run_ros2(["param", "get", "/tracker_node", name], env, cwd=cwd).stdout
        assert float(got.split(":")[-1]) == pytest.approx(float(value)) and float(value) != config[name]

        mark = client.mark()
        out = subprocess.run(["bash", "-c", cmd["service call"]], env=env, cwd=cwd, capture_output=True, text=True,
                             timeout=120)
        assert out.returncode == 0 and "success=True" in out.stdout, out.stdout + out.stderr
        client.wait_status(lambda s: s.state_name == "IDLE", "IDLE after ros2 service call reset", start=mark)
        echo.wait_for_log(r"(?s)state_name: TRACKING.*state_name: IDLE")

        # track again, then Ctrl-C on the launch while the real model follows the stream
        mark = client.mark()
        assert subprocess.run(["bash", "-c", cmd["topic pub"]], env=env, cwd=cwd, capture_output=True,
                              timeout=120).returncode == 0
        client.wait_status(lambda s: s.state_name == "TRACKING" and s.frames_processed > 0, "tracking again",
                           start=mark)
        launch.interrupt()
        assert wait_gone(pid, 5.0), f"the node still runs 5 s after Ctrl-C:\n{launch.log()}"
        assert launch.wait(30) == 0, launch.log()
        echo.interrupt()
        echo.wait(30)
    finally:
        if camera is not None:
            camera.stop()
        client.close()
        launch.close()
        echo.close()
    log = launch.log()
    assert f"process has finished cleanly [pid {pid}]" in log, log
    assert "Traceback" not in log and "process has died" not in log, log


def stand_in_ros(root: Path) -> Path:
    """A stand-in for /opt/ros/jazzy built from this venv: returns the folder holding its setup.bash.

    Like a ROS installation, its Python packages reach the interpreter through PYTHONPATH (every
    package of this venv except torch and this project, which the user's venv must bring), its
    libraries through LD_LIBRARY_PATH, and its `ros2` / `colcon` run with the system Python.
    """
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    site = VENV / "lib" / version / "site-packages"
    ros_site = root / "lib" / version / "site-packages"
    ros_site.mkdir(parents=True)
    for entry in site.iterdir():
        if entry.suffix == ".pth" or entry.name.lower().startswith(NOT_ROS):
            continue
        (ros_site / entry.name).symlink_to(entry)
    (root / "bin").mkdir()
    system_python = Path(sys._base_executable)
    for tool in ("ros2", "colcon"):
        script = (VENV / "bin" / tool).read_text().split("\n", 1)[1]
        (root / "bin" / tool).write_text(f"#!{system_python}\n{script}")
        (root / "bin" / tool).chmod(0o755)
    libs = [str(VENV / "lib")] + [str(p) for p in sorted(site.glob("ros_*.libs"))]
    (root / "setup.bash").write_text(
        f'export ROS_DISTRO=jazzy ROS_VERSION=2 ROS_PYTHON_VERSION=3\n'
        f'export PATH="{root / "bin"}:$PATH"\n'
        f'export PYTHONPATH="{ros_site}${{PYTHONPATH:+:$PYTHONPATH}}"\n'
        f'export LD_LIBRARY_PATH="{":".join(libs)}${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}}"\n'
        f'export AMENT_PREFIX_PATH="{VENV}" CMAKE_PREFIX_PATH="{VENV}"\n')
    return root


NOT_ROS = ("torch", "functorch", "sparsett", "__editable__", "_sparsett")


def local_wheel(name: str, version: str) -> Path:
    """This machine's wheel of name==version in pip's find-links (no download); skip (fail under CI) without one."""
    out = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True).stdout
    folders = os.environ.get("PIP_FIND_LINKS", "").split() + re.findall(r"find-links='([^']*)'", out)
    for folder in folders:
        for wheel in Path(folder).glob(f"{name}-{version}-*.whl") if Path(folder).is_dir() else []:
            return wheel
    msg = f"no local {name}=={version} wheel in pip's find-links ({folders}): the test does not download one"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(msg)
    pytest.skip(msg)


def user_shell_env(env: dict[str, str], home: Path) -> dict[str, str]:
    """A login shell's environment: no venv, no ROS sourced, the system Python first on PATH, HOME=home."""
    clean = {k: v for k, v in env.items()
             if k not in ("VIRTUAL_ENV", "PYTHONPATH", "AMENT_PREFIX_PATH", "CMAKE_PREFIX_PATH", "LD_LIBRARY_PATH",
                          "COLCON_PREFIX_PATH", "_ROS_WHEELS_BOOTSTRAP_COMPLETE")}
    path = [p for p in env["PATH"].split(os.pathsep) if p and Path(p).resolve() != (VENV / "bin").resolve()]
    clean["PATH"] = os.pathsep.join([str(Path(sys._base_executable).parent)] + path)
    clean["HOME"] = str(home)
    return clean


@pytest.mark.slow
def test_readme_ros_install_block_builds_and_runs_from_a_venv(shell, tmp_path):
    """The README's "ROS 2 users" block on a ROS whose system Python refuses pip (PEP 668): a venv with
    --system-site-packages and COLCON_IGNORE, pip inside it, colcon build and ros2 launch from the shell
    where it is active. The installed tracker_node must start with the venv's Python and its torch.

    Run as written except: the stand-in for /opt/ros/jazzy (stand_in_ros), the clone (a link to this
    checkout), rosdep (the stand-in has the dependencies) and pip (torch from this machine's wheel, no
    index: the README's plain `pip install torch` would download a CUDA build).
    """
    import torch

    env, _ = shell
    wheel = local_wheel("torch", torch.__version__)
    home = tmp_path / "home"
    home.mkdir()
    ros = stand_in_ros(tmp_path / "opt_ros_jazzy")
    block = readme_tools.bash_commands(readme_tools.section("ROS 2 users"))
    replaced = {
        "source /opt/ros/jazzy/setup.bash": f"source {ros / 'setup.bash'}",
        "git clone <this repository> sparsett_ros": f"ln -s {REPO} sparsett_ros",
        "rosdep install --from-paths src -y --ignore-src": "true",
        "pip install torch rosbags": f"pip install --no-index --no-deps {wheel}",
    }
    assert all(any(old in c for c in block) for old in replaced), f"the README block changed: {block}"
    for step in ("python3 -m venv --system-site-packages ~/ws/venv", "touch ~/ws/venv/COLCON_IGNORE",
                 "source ~/ws/venv/bin/activate"):
        assert step in block, f"README block lacks {step!r}"
    script = []
    for command in block:
        for old, new in replaced.items():
            command = command.replace(old, new)
        if not command.startswith("ros2 launch"):  # as typed in a terminal, stopping at the first failure
            script.append(f"{command} || {{ echo 'README step failed: {command}'; exit 1; }}")
    script.append("exec " + next(c for c in block if c.startswith("ros2 launch")))  # the shipped weights
    user = user_shell_env(env, home)
    assert subprocess.run(["python3", "-c", "import torch"], env=user, capture_output=True).returncode != 0, \
        "the system Python already has torch: the test could not tell where torch comes from"
    run = Launched(["bash", "-c", "\n".join(script)], user, tmp_path / "install.log", home)
    try:
        run.wait_for_log(r"1 package finished", timeout=600)
        pid = run.node_pid(timeout=120)
        ready = run.wait_for_log(r"torch (\S+) from (\S+), Python (\S+)", timeout=300)
        run.wait_for_log(r"ready: image /camera/color/image_raw", timeout=120)
        run.interrupt()
        assert wait_gone(pid, 5.0) and run.wait(30) == 0, run.log()
    finally:
        run.close()
        log = run.log()
        shutil.rmtree(home / "ws" / "venv", ignore_errors=True)  # torch: about 1 GB
    venv = home / "ws" / "venv"
    version, torch_dir, python = ready.groups()
    assert python == str(venv / "bin" / "python3"), log
    assert Path(torch_dir).is_relative_to(venv) and version == torch.__version__, log
    node = home / "ws" / "install" / "sparsett_ros" / "lib" / "sparsett_ros" / "tracker_node"
    assert node.read_text().startswith("#!/usr/bin/env python3")
    assert "process has finished cleanly" in log and "Traceback" not in log, log
