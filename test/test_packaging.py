"""The package as ROS users build and run it: generated messages, colcon build, installed node."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, ros_guard

VENV = Path(sys.prefix)

# vision_msgs 4.1.1 (Humble/Jazzy/Kilted), the messages the node uses: our test-only copy must
# match field for field (type names, field names, types and order).
VISION_MSGS_4_1_1 = {
    "Point2D": [("x", "double"), ("y", "double")],
    "Pose2D": [("position", "vision_msgs/Point2D"), ("theta", "double")],
    "BoundingBox2D": [("center", "vision_msgs/Pose2D"), ("size_x", "double"), ("size_y", "double")],
    "ObjectHypothesis": [("class_id", "string"), ("score", "double")],
    "ObjectHypothesisWithPose": [("hypothesis", "vision_msgs/ObjectHypothesis"),
                                 ("pose", "geometry_msgs/PoseWithCovariance")],
    "Detection2D": [("header", "std_msgs/Header"), ("results", "sequence<vision_msgs/ObjectHypothesisWithPose>"),
                    ("bbox", "vision_msgs/BoundingBox2D"), ("id", "string")],
    "Detection2DArray": [("header", "std_msgs/Header"), ("detections", "sequence<vision_msgs/Detection2D>")],
}


@pytest.mark.parametrize("name", sorted(VISION_MSGS_4_1_1))
def test_vision_msgs_matches_4_1_1(name):
    import vision_msgs.msg

    fields = list(getattr(vision_msgs.msg, name).get_fields_and_field_types().items())
    assert fields == VISION_MSGS_4_1_1[name]


def test_tracker_status_is_generated_from_msg():
    from sparsett_ros.msg import TrackerStatus

    fields = TrackerStatus.get_fields_and_field_types()
    declared = [line.split("#")[0].split() for line in (REPO / "msg" / "TrackerStatus.msg").read_text().splitlines()]
    names = [f[1] for f in declared if len(f) == 2 and "=" not in f[1]]
    assert list(fields) == names
    assert {TrackerStatus.IDLE, TrackerStatus.TRACKING, TrackerStatus.LOST} == {0, 1, 2}
    msg = TrackerStatus(state=TrackerStatus.TRACKING, score=0.5)
    assert msg.state == 1 and msg.score == pytest.approx(0.5)


@pytest.fixture(scope="module")
def colcon_install(tmp_path_factory) -> Path:
    """`colcon build` of a workspace whose src/ holds this repository; returns the install base."""
    colcon = VENV / "bin" / "colcon"
    if not colcon.exists():
        pytest.skip(f"colcon is not installed in {VENV} (scripts/setup.sh installs it)")
    ws = tmp_path_factory.mktemp("ws")
    (ws / "src").mkdir()
    (ws / "src" / "sparsett_ros").symlink_to(REPO, target_is_directory=True)
    env = dict(os.environ, CMAKE_PREFIX_PATH=str(VENV), AMENT_PREFIX_PATH=str(VENV),
               PATH=f"{VENV / 'bin'}:{os.environ['PATH']}")
    proc = subprocess.run(
        [str(colcon), "build", "--base-paths", "src", "--event-handlers", "console_cohesion+",
         "--cmake-args", "-DBUILD_TESTING=OFF", f"-DPython3_EXECUTABLE={sys.executable}"],
        cwd=ws, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "1 package finished" in proc.stdout, proc.stdout[-2000:]  # one package, nothing else crawled
    return ws / "install" / "sparsett_ros"


def test_colcon_build_installs_one_package(colcon_install):
    site = colcon_install / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    node = colcon_install / "lib" / "sparsett_ros" / "tracker_node"
    assert node.exists() and os.access(node, os.X_OK)
    share = colcon_install / "share" / "sparsett_ros"
    for rel in ("package.xml", "launch/tracker.launch.py", "config/tracker.yaml", "msg/TrackerStatus.msg"):
        assert (share / rel).exists(), rel
    for rel in ("sparsett_ros/msg/_tracker_status.py", "sparsett_ros/tracker_node.py", "sparsett_core/__init__.py",
                "sparsett_core/weights/default.pt"):  # the default weights: the node tracks out of the box
        assert (site / rel).exists(), rel


def test_installed_tracker_node_starts(colcon_install, tmp_path):
    """The colcon-installed lib/sparsett_ros/tracker_node starts and advertises its topics."""
    ros_guard()
    import rclpy
    from rclpy.context import Context

    site = colcon_install / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    env = dict(os.environ,
               PYTHONPATH=str(site),
               AMENT_PREFIX_PATH=f"{colcon_install}:{VENV}",
               LD_LIBRARY_PATH=f"{colcon_install / 'lib'}:{VENV / 'lib'}:{os.environ.get('LD_LIBRARY_PATH', '')}",
               PATH=f"{VENV / 'bin'}:{os.environ['PATH']}", PYTHONUNBUFFERED="1")
    where = subprocess.run([sys.executable, "-c", "import sparsett_ros.tracker_node as m, sparsett_core as c; "
                            "print(m.__file__); print(c.__file__)"], env=env, capture_output=True, text=True,
                           cwd=tmp_path)  # not the checkout: the current directory comes first on sys.path
    assert where.returncode == 0, where.stderr
    assert all(line.startswith(str(site)) for line in where.stdout.split()), where.stdout  # the install, not the checkout
    params = colcon_install / "share" / "sparsett_ros" / "config" / "tracker.yaml"
    log = open(tmp_path / "node.log", "w")
    proc = subprocess.Popen(
        [str(colcon_install / "lib" / "sparsett_ros" / "tracker_node"), "--ros-args",
         "--params-file", str(params), "-p", "allow_random_weights:=true", "-p", "device:=cpu",
         "-r", "__node:=installed_tracker"],
        env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    ctx = Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node("packaging_probe", context=ctx)
    try:
        wanted = {"/installed_tracker/detections", "/installed_tracker/status"}
        deadline = time.monotonic() + 180
        seen = set()
        while time.monotonic() < deadline and not wanted <= seen and proc.poll() is None:
            seen = {name for name, _ in node.get_topic_names_and_types()}
            time.sleep(0.2)  # graph polling; the deadline, not the sleep, bounds the test
        assert proc.poll() is None, "node exited early:\n" + (tmp_path / "node.log").read_text()[-3000:]
        assert wanted <= seen, f"topics seen: {sorted(seen)}\n" + (tmp_path / "node.log").read_text()[-3000:]
    finally:
        node.destroy_node()
        rclpy.shutdown(context=ctx)
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
