"""`ros2 launch sparsett_ros tracker.launch.py` from a colcon install, as a user runs it.

The real launch system and ros2 CLI (upstream Jazzy; ../shared/ros2_tools where no ROS is
installed): `--show-args` against the README's table, every launch argument read back from the
running node through the ros2 CLI (node info, param dump), and stopping: a terminal's Ctrl-C
(SIGINT to the launch's process group), SIGINT or SIGTERM to the node alone, a second Ctrl-C
during the shutdown, each while a frame is being tracked. The node must exit with status 0
within STOP_S, print no traceback, finish and publish the frame in flight, and leave no Fast DDS
shared-memory files behind.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import time

import pytest
import yaml

import readme_tools
from launch_tools import (Launched, leftover_shm, params_file, retry_ros2, run_ros2, shm_files_of, site_packages,
                          wait_gone)
from node_graph import GraphClient, scene

STOP_S = 5.0  # a stopped node must be gone within this many seconds of the signal


def test_show_args_lists_the_readme_arguments_with_their_defaults(shell):
    env, cwd = shell
    out = run_ros2(["launch", "sparsett_ros", "tracker.launch.py", "--show-args"], env, cwd=cwd).stdout
    shown = {name: default for name, default in re.findall(r"'(\w+)':\n.*?\(default: '(.*?)'\)", out, flags=re.S)}
    documented = readme_tools.launch_arguments_table(readme_tools.section("ROS 2 users"))
    assert documented and shown == documented, out


def test_every_launch_argument_reaches_the_node(shell, colcon_install):
    """image, camera_info, checkpoint, device, namespace, params_file, read back from the running node."""
    env, cwd = shell
    # a checkpoint path of our own (the installed default weights, copied) and a params file whose
    # checkpoint/device the launch arguments must override (its device would not start here)
    checkpoint = shutil.copy(site_packages(colcon_install) / "sparsett_core" / "weights" / "default.pt",
                             cwd / "lite_copy.pt")
    custom = params_file(colcon_install, cwd / "custom.yaml", lost_score=0.33, class_id="robot1_target",
                         checkpoint="/nonexistent/overridden.pt", device="cuda", warmup_iterations=0)
    launch = Launched.ros2_launch(["sparsett_ros", "tracker.launch.py", "image:=/cam1/color/image_raw",
                                   "camera_info:=/cam1/info", f"checkpoint:={checkpoint}", "device:=cpu",
                                   "namespace:=robot1", f"params_file:={custom}"], env, cwd / "launch.log", cwd)
    try:
        launch.wait_for_log(r"ready: image")
        nodes = retry_ros2(["node", "list"], env, "/robot1/tracker_node", cwd=cwd)
        assert "/tracker_node" not in nodes.split()  # the namespace applies
        info = retry_ros2(["node", "info", "/robot1/tracker_node"], env, "/cam1/info", cwd=cwd)
        subscribers = info.split("Subscribers:")[1].split("Publishers:")[0]
        assert "/cam1/color/image_raw: sensor_msgs/msg/Image" in subscribers, info
        assert "/cam1/info: sensor_msgs/msg/CameraInfo" in subscribers, info
        assert "/robot1/tracker_node/init: vision_msgs/msg/Detection2D" in subscribers, info
        assert "/robot1/tracker_node/status: sparsett_ros/msg/TrackerStatus" in info.split("Publishers:")[1], info
        dump = retry_ros2(["param", "dump", "/robot1/tracker_node"], env, "ros__parameters", cwd=cwd)
        params = yaml.safe_load(dump)["/robot1/tracker_node"]["ros__parameters"]
        assert params["checkpoint"] == str(checkpoint) and params["device"] == "cpu"  # the arguments win
        assert params["lost_score"] == pytest.approx(0.33) and params["class_id"] == "robot1_target"  # params_file
        assert params["warmup_iterations"] == 0
        assert f"SparseTT from '{checkpoint}' on cpu" in launch.log()
        launch.interrupt()
        assert launch.wait(30) == 0, launch.log()
    finally:
        launch.close()
    assert "process has finished cleanly" in launch.log(), launch.log()


# ---- stopping -------------------------------------------------------------------------------

STOP_CASES = {
    "ctrl-c": "SIGINT to the launch's process group (a terminal's Ctrl-C)",
    "ctrl-c twice": "Ctrl-C, and another Ctrl-C while the node is shutting down",
    "SIGINT to the node": "SIGINT to the node alone (kill -INT)",
    "SIGTERM to the node": "SIGTERM to the node alone (kill, systemd, docker stop)",
}


@pytest.mark.parametrize("case", list(STOP_CASES))
def test_stop_while_a_frame_is_tracked_exits_cleanly(shell, colcon_install, ros_context, case):
    """The node exits 0 within STOP_S, the frame in flight is published, no traceback, no shm files left."""
    from sparsett_ros.testing import UPDATE_STARTED

    env, cwd = shell
    # every update takes SLOW_UPDATE_S, so the signal lands while a frame is being tracked
    slow = params_file(colcon_install, cwd / "slow.yaml", warmup_iterations=0, image_qos="reliable",
                       image_qos_depth=5, tracker_factory="sparsett_ros.testing:build_slow_template_tracker")
    launch = Launched.ros2_launch(["sparsett_ros", "tracker.launch.py", "image:=/stop/image_raw",
                                   f"params_file:={slow}"], env, cwd / "launch.log", cwd)
    client = GraphClient(ros_context, image_topic="/stop/image_raw")
    try:
        pid = launch.node_pid()
        client.wait_for(lambda: client.pub["image"].get_subscription_count() > 0
                        and client.pub["init"].get_subscription_count() > 0, "the node's subscriptions")
        image, box = scene(0)
        client.handshake(image, 1_000)  # IDLE frames are not tracked: quick
        mark = client.mark()
        client.publish_init(box)
        client.wait_status(lambda s: s.state_name == "TRACKING", "TRACKING", start=mark)
        client.publish_image(scene(1)[0], 2_000)
        launch.wait_for_log(re.escape(UPDATE_STARTED))  # the frame is being tracked now
        files = shm_files_of(pid)
        assert files, "the node maps no Fast DDS shared-memory files: nothing to check"
        start = time.monotonic()
        if case.startswith("ctrl-c"):
            launch.interrupt(signal.SIGINT)
            if case == "ctrl-c twice":
                # launch has forwarded its own SIGINT: the node got two already and is shutting down
                launch.wait_for_log(r"sending signal 'SIGINT' to process\[tracker_node-1\]", timeout=STOP_S)
                assert not wait_gone(pid, 0.0), "the node was gone before the second Ctrl-C"
                launch.interrupt(signal.SIGINT)
        else:
            os.kill(pid, signal.SIGINT if "SIGINT" in case else signal.SIGTERM)
        gone = wait_gone(pid, STOP_S)
        print(f"\n{case}: node gone {time.monotonic() - start:.2f} s after the signal")
        launch_rc = launch.wait(30)
        try:  # the frame in flight is finished and published before the node goes
            in_flight = client.wait_detection(2_000, timeout=5)
        except AssertionError:
            in_flight = None
    finally:
        client.close()
        launch.close()
    log = launch.log()
    assert gone, f"{case}: the node still ran {STOP_S} s after the signal:\n{log}"
    assert "Traceback" not in log and "process has died" not in log, log
    assert f"process has finished cleanly [pid {pid}]" in log and launch_rc == 0, log
    assert leftover_shm(files) == [], f"Fast DDS shared memory left behind: {leftover_shm(files)}"
    assert in_flight is not None and in_flight.detections, f"the frame in flight was not published:\n{log}"
