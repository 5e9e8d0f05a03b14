"""First real-graph tests: the generated messages import, tracker_node starts with the command line the
real launch file builds and answers an image, and the launch file hands the right things to the node.

These use the cheap template tracker (tracker_factory) so they check the ROS wiring, not the model;
test_node_model.py runs the real SparseTT model.
"""
from __future__ import annotations

import pytest

from node_graph import PARAMS_FILE, TEMPLATE_FACTORY, GraphClient, NodeProcess, node_command, scene

FAST = {"tracker_factory": TEMPLATE_FACTORY, "image_qos": "reliable", "image_qos_depth": 10,
        "process_all_frames": True, "warn_throttle_s": 0.0}


def test_generated_messages_import():
    from vision_msgs.msg import BoundingBox2D, Detection2D, Detection2DArray, ObjectHypothesisWithPose

    from sparsett_ros.msg import TrackerStatus

    status = TrackerStatus(state=TrackerStatus.LOST, state_name="LOST", frames_dropped=3)
    assert (TrackerStatus.IDLE, TrackerStatus.TRACKING, TrackerStatus.LOST) == (0, 1, 2)
    assert status.frames_dropped == 3 and status.last_rejection == ""
    det = Detection2D(bbox=BoundingBox2D(size_x=4.0), results=[ObjectHypothesisWithPose()])
    det.bbox.center.position.x = 1.5  # vision_msgs 4.x layout (Pose2D.position)
    det.results[0].hypothesis.score = 0.5
    assert Detection2DArray(detections=[det]).detections[0].bbox.center.position.x == 1.5


def test_real_launch_hands_params_file_and_arguments_to_node():
    """The node's command line as the real launch file and launch_ros build it (recorded by a launch prefix)."""
    import yaml

    from conftest import ros_guard
    from launch_tools import launch_argv

    ros_guard()
    argv = launch_argv(image="/cam/color/image_raw", checkpoint="/models/m.pkl", device="cuda", namespace="drone1",
                       params_file=str(PARAMS_FILE))
    assert argv[0].endswith("lib/sparsett_ros/tracker_node") and argv[1] == "--ros-args"
    pairs = list(zip(argv[2::2], argv[3::2]))
    assert ("-r", "__node:=tracker_node") in pairs and ("-r", "__ns:=/drone1") in pairs
    for remap in ("image:=/cam/color/image_raw", "image/compressed:=/cam/color/image_raw/compressed",
                  "camera_info:=/cam/color/camera_info"):
        assert ("-r", remap) in pairs
    files = [value for flag, value in pairs if flag == "--params-file"]
    assert files[0] == str(PARAMS_FILE) and len(files) == 2  # launch_ros: the overrides come as a second file
    overrides = yaml.safe_load(open(files[1]))
    assert overrides == {"/drone1/tracker_node": {"ros__parameters": {"checkpoint": "/models/m.pkl", "device": "cuda"}}}
    # empty checkpoint/device keep the params file's values: no second file
    plain = launch_argv(image="/im", params_file=str(PARAMS_FILE))
    assert plain.count("--params-file") == 1
    assert ("-r", "camera_info:=camera_info") in list(zip(plain[2::2], plain[3::2]))


def test_node_started_like_the_launch_file_answers_an_image(ros_context, tmp_path):
    """Issue 2's first ROS test, through the launch file's own description (namespace + remap)."""
    cmd = node_command(dict(FAST, lost_scor=0.3), image="/robot/cam/image_raw", namespace="robot")
    node = NodeProcess(cmd, tmp_path / "node.log")
    client = GraphClient(ros_context, node_ns="/robot/tracker_node", image_topic="/robot/cam/image_raw")
    try:
        client.wait_connected(node)
        image, _ = scene(0)
        msg = client.handshake(image, 1_000)
        assert msg.header.frame_id == "camera_optical" and msg.detections == []  # IDLE: empty, same header
        status = client.wait_status(lambda s: s.frames_processed >= 1, "a status after the frame")
        assert status.state_name == "IDLE" and not status.random_weights
    finally:
        client.close()
        rc = node.stop()
    assert rc == 0, node.log()
    assert "ready" in node.log()
    assert "unknown parameters ignored (misspelt?): lost_scor" in node.log()


def test_init_before_any_image_is_rejected_and_node_serves_next_frame(ros_context, tmp_path):
    node = NodeProcess(node_command(FAST), tmp_path / "node.log")
    client = GraphClient(ros_context)
    try:
        client.wait_connected(node)
        client.publish_init((10, 10, 40, 40))
        client.wait_status(lambda s: "no image received yet" in s.last_rejection, "the init-before-image rejection")
        image, box = scene(0)
        client.handshake(image, 5_000)
        client.publish_init(box)
        client.wait_status(lambda s: s.state_name == "TRACKING", "TRACKING after a good init")
        image, truth = scene(1)
        client.publish_image(image, 6_000)
        det = client.wait_detection(6_000).detections
        assert len(det) == 1 and det[0].bbox.center.position.x == pytest.approx(truth[0] + 20, abs=1.0)
    finally:
        client.close()
        rc = node.stop()
    assert rc == 0, node.log()


def test_compressed_input(ros_context, tmp_path):
    from std_msgs.msg import Header

    from sparsett_ros.image_conversion import bgr_to_compressed

    node = NodeProcess(node_command(dict(FAST, use_compressed=True)), tmp_path / "node.log")
    client = GraphClient(ros_context)
    try:
        client.wait_connected(node, names=("compressed", "init"))
        image, box = scene(0)
        for i in range(3):
            header = Header(stamp=client_stamp(7_000 + i), frame_id="camera_optical")
            client.pub["compressed"].publish(bgr_to_compressed(scene(i)[0], header, fmt="png"))
            if i == 0:
                client.wait_detection(7_000)
                client.publish_init(box)
                client.wait_status(lambda s: s.state_name == "TRACKING", "TRACKING")
        det = client.wait_detection(7_002).detections
        assert len(det) == 1 and det[0].bbox.center.position.y == pytest.approx(scene(2)[1][1] + 20, abs=1.0)
        # a corrupt payload is rejected and the node goes on
        bad = bgr_to_compressed(image, Header(stamp=client_stamp(7_003)), fmt="png")
        bad.data = bytes(100)
        client.pub["compressed"].publish(bad)
        client.wait_status(lambda s: "could not be decoded" in s.last_rejection, "the corrupt-payload rejection")
        client.pub["compressed"].publish(bgr_to_compressed(scene(4)[0], Header(stamp=client_stamp(7_004)), fmt="png"))
        assert len(client.wait_detection(7_004).detections) == 1
    finally:
        client.close()
        rc = node.stop()
    assert rc == 0, node.log()


def client_stamp(ns: int):
    from node_graph import stamp

    return stamp(ns)


def test_missing_checkpoint_is_a_clear_error_and_nonzero_exit(tmp_path):
    import subprocess

    from conftest import ros_guard
    from node_graph import REPO

    ros_guard()  # the node creates a ROS context
    cmd = node_command({"warmup_iterations": 0, "checkpoint": "random"})
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert "random needs allow_random_weights" in out.stderr + out.stdout
    missing = tmp_path / "nope.pkl"
    out = subprocess.run(node_command({"checkpoint": str(missing)}), cwd=REPO, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode != 0 and "not found" in out.stderr + out.stdout and str(missing) in out.stderr + out.stdout


@pytest.mark.parametrize("failure", ["corrupt checkpoint", "warm-up"])
def test_model_failure_at_start_up_is_one_clear_line_and_exit_1(tmp_path, failure):
    """Loading or warming up the model fails: one `cannot start:` line and exit status 1, no traceback."""
    import subprocess

    from conftest import ros_guard
    from node_graph import REPO

    ros_guard()  # the node creates a ROS context
    if failure == "corrupt checkpoint":
        corrupt = tmp_path / "model.pt"
        corrupt.write_bytes(b"PK\x03\x04 truncated download " * 50)
        params, expected = {"checkpoint": str(corrupt)}, f"checkpoint '{corrupt}' could not be loaded"
    else:  # the real backend on the shipped weights, its first track step raising (as a failed CUDA-graph capture)
        params = {"tracker_factory": "sparsett_ros.testing:build_failing_warmup", "device": "cpu"}
        expected = "the model failed its warm-up on device cpu (RuntimeError: CUDA error"
    out = subprocess.run(node_command(params), cwd=REPO, capture_output=True, text=True, timeout=120)
    text = out.stdout + out.stderr
    assert out.returncode == 1, text
    fatal = [line for line in text.splitlines() if "cannot start:" in line]
    assert len(fatal) == 1 and expected in fatal[0], text
    assert "Traceback" not in text, text
    if failure == "warm-up":  # the exception's own line break is folded into the one line
        assert "(injected by sparsett_ros.testing:build_failing_warmup)" in fatal[0]
