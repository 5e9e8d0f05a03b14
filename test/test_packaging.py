"""The package as ROS users build and run it: generated messages, colcon build, installed node."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, ros_guard
from launch_tools import install_env, marked_env, package_prefix, ros2, site_packages

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
def installed(colcon_install) -> Path:
    """The package prefix of the session's colcon install (install/sparsett_ros)."""
    return package_prefix(colcon_install)


def test_colcon_build_installs_one_package(installed):
    site = site_packages(installed.parent)
    node = installed / "lib" / "sparsett_ros" / "tracker_node"
    assert node.exists() and os.access(node, os.X_OK)
    share = installed / "share" / "sparsett_ros"
    for rel in ("package.xml", "launch/tracker.launch.py", "config/tracker.yaml", "msg/TrackerStatus.msg"):
        assert (share / rel).exists(), rel
    for rel in ("sparsett_ros/msg/_tracker_status.py", "sparsett_ros/tracker_node.py", "sparsett_core/__init__.py",
                "sparsett_core/weights/default.pt"):  # the default weights: the node tracks out of the box
        assert (site / rel).exists(), rel


def test_installed_tracker_node_starts_on_the_installed_default_weights(colcon_install, tmp_path):
    """`source install/setup.bash; ros2 run sparsett_ros tracker_node`: the install's code and default.pt.

    No allow_random_weights: a default.pt that does not load is a start-up error (exit 1), and the
    test fails on it instead of running on random weights.
    """
    ros_guard()
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSDurabilityPolicy, QoSProfile, QoSReliabilityPolicy

    from sparsett_ros.msg import TrackerStatus

    site = site_packages(colcon_install)
    env = marked_env(install_env(colcon_install))
    where = subprocess.run([sys.executable, "-c", "import sparsett_ros.tracker_node as m, sparsett_core as c; "
                            "print(m.__file__); print(c.__file__)"], env=env, capture_output=True, text=True,
                           cwd=tmp_path)  # not the checkout: the current directory comes first on sys.path
    assert where.returncode == 0, where.stderr
    # the install, not the checkout
    assert all(line.startswith(str(site)) for line in where.stdout.split()), where.stdout
    log = open(tmp_path / "node.log", "w")
    proc = subprocess.Popen([ros2(), "run", "sparsett_ros", "tracker_node", "--ros-args",
                             "-r", "__node:=installed_tracker", "-p", "warmup_iterations:=1"],
                            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path, start_new_session=True)
    ctx = Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node("packaging_probe", context=ctx)
    statuses = []
    latched = QoSProfile(depth=5, reliability=QoSReliabilityPolicy.RELIABLE,
                         durability=QoSDurabilityPolicy.TRANSIENT_LOCAL)
    node.create_subscription(TrackerStatus, "/installed_tracker/status", statuses.append, latched)
    executor = SingleThreadedExecutor(context=ctx)
    executor.add_node(node)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not statuses and proc.poll() is None:
            executor.spin_once(timeout_sec=0.2)
        text = (tmp_path / "node.log").read_text()
        assert proc.poll() is None, f"node exited with {proc.returncode}:\n{text[-3000:]}"
        assert statuses, "no status from the installed node\n" + text[-3000:]
        assert not statuses[0].random_weights and statuses[0].state_name == "IDLE"
        assert f"the default SparseTT-Lite weights ({site / 'sparsett_core' / 'weights' / 'default.pt'})" in text, text
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=ctx)
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in the terminal: ros2 run and the node both get it
        try:
            rc = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            rc = proc.wait()
        log.close()
    assert rc == 0, (tmp_path / "node.log").read_text()[-3000:]

