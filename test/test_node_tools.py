"""The node's tools: bag_from_video / bag_replay bags, select_target's message, the README demo."""
from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
import yaml

from node_graph import REPO

# scripts/demo.sh's scene, 15 frames, every frame tracked, shipped weights: measured 0.761 on 2026-12-01
# (SparseTT-Lite v2 default.pt of run H, AMD EPYC Zen 5, 1 inference thread; run E on the Zen 4: 0.592);
# floor = measured - 0.05
DEMO_MEAN_IOU_FLOOR = 0.711


def test_bag_from_video_writes_images_and_groundtruth_that_read_back(sequences_dir, tmp_path):
    from rosbags.highlevel import AnyReader

    from sparsett_ros.image_conversion import image_to_bgr
    from sparsett_core.eval.boxes import read_boxes
    from sparsett_ros.tools.bag_from_video import main

    seq = sequences_dir / "vot_bag"
    main([str(seq / "img"), str(tmp_path / "bag"), "--rate", "10", "--max-frames", "3", "--encoding", "rgb8",
          "--groundtruth", str(seq / "groundtruth_rect.txt"), "--frame-id", "cam"])
    gt = read_boxes(seq / "groundtruth_rect.txt")
    files = sorted((seq / "img").iterdir())[:3]
    with AnyReader([tmp_path / "bag"]) as reader:
        assert {c.topic: c.msgtype for c in reader.connections} == {
            "/camera/image_raw": "sensor_msgs/msg/Image", "/groundtruth": "vision_msgs/msg/Detection2D"}
        images, dets = [], []
        for conn, t, raw in reader.messages():
            msg = reader.deserialize(raw, conn.msgtype)
            assert msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec == t
            (images if conn.topic == "/camera/image_raw" else dets).append((t, msg))
    assert [t for t, _ in images] == [t for t, _ in dets] and np.diff([t for t, _ in images]).tolist() == [10 ** 8] * 2
    for (_, msg), path in zip(images, files):
        assert msg.encoding == "rgb8" and msg.header.frame_id == "cam"
        np.testing.assert_array_equal(image_to_bgr(msg), cv2.imread(str(path)))
    x, y, w, h = gt[1]
    assert (dets[1][1].bbox.center.position.x, dets[1][1].bbox.size_y) == pytest.approx((x + w / 2, h))


def test_bag_replay_reads_messages_in_order_with_skip_and_limit(sequences_dir, tmp_path):
    from sparsett_ros.tools.bag_from_video import read_frames, write_image_bag
    from sparsett_ros.tools.bag_replay import message_class, read_messages

    info = write_image_bag(tmp_path / "bag", read_frames(sequences_dir / "vot_bag" / "img", 4), rate=20.0)
    connections, messages = read_messages(tmp_path / "bag")
    assert [t for _, t, _ in messages] == list(info.stamps_ns)
    assert message_class(connections[0].msgtype).__name__ == "Image"
    with pytest.raises(ValueError, match="has none of the topics"):
        read_messages(tmp_path / "bag", ["/nope"])
    with pytest.raises(ImportError, match="not installed"):
        message_class("nonexistent_msgs/msg/Thing")
    with pytest.raises(FileExistsError, match="already exists"):
        write_image_bag(tmp_path / "bag", read_frames(sequences_dir / "vot_bag" / "img", 1))


def test_bag_replay_in_parts_reuses_one_matched_publisher(ros_context, sequences_dir, tmp_path):
    """The demo resends the first frame until it is received, then replays the rest: one publisher,
    so the rest reaches a best-effort subscriber that has already matched it (a fresh publisher's
    first messages can be lost)."""
    import time

    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, QoSReliabilityPolicy
    from sensor_msgs.msg import Image

    from sparsett_ros.tools.bag_from_video import read_frames, write_image_bag
    from sparsett_ros.tools.bag_replay import replay, resend_first

    info = write_image_bag(tmp_path / "bag", read_frames(sequences_dir / "vot_bag" / "img", 6), rate=50.0)
    node = rclpy.create_node("replay_parts", context=ros_context)
    got: list[int] = []
    node.create_subscription(Image, info.topic, lambda m: got.append(m.header.stamp.sec * 10**9 + m.header.stamp.nanosec),
                             QoSProfile(depth=10, reliability=QoSReliabilityPolicy.BEST_EFFORT))
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    publishers: dict = {}

    def spin_until(done, timeout=10.0) -> bool:
        end = time.monotonic() + timeout
        while not done() and time.monotonic() < end:
            executor.spin_once(timeout_sec=0.05)
        return bool(done())

    try:
        resend_first(node, tmp_path / "bag", lambda s: spin_until(lambda: bool(got), s), 25.0,
                     publishers=publishers, every_s=0.5)
        assert set(got) == {info.stamps_ns[0]}  # only the first frame, once or more
        first = list(publishers.values())
        assert replay(node, tmp_path / "bag", rate=0, skip=1, publishers=publishers) == 5
        assert list(publishers.values()) == first and len(first) == 1  # no new publisher for the rest
        rest = lambda: [t for t in got if t != info.stamps_ns[0]]  # noqa: E731
        spin_until(lambda: len(rest()) >= 5)
        assert rest() == list(info.stamps_ns[1:])
    finally:
        executor.shutdown()
        node.destroy_node()


def test_select_target_builds_a_stamped_init_and_explains_a_missing_gui():
    from std_msgs.msg import Header

    from node_graph import stamp
    from sparsett_ros.tools.select_target import gui_available, make_init_msg

    msg = make_init_msg((10, 20, 30, 40), Header(stamp=stamp(123), frame_id="cam"))
    assert (msg.bbox.center.position.x, msg.bbox.center.position.y, msg.bbox.size_x, msg.bbox.size_y) == (
        25.0, 40.0, 30.0, 40.0)
    assert msg.header.stamp.nanosec == 123
    ok, why = gui_available()
    assert ok or "no GUI" in why


def test_rviz_config_shows_the_debug_image():
    rviz = yaml.safe_load((REPO / "config" / "tracker.rviz").read_text())
    displays = rviz["Visualization Manager"]["Displays"]
    assert any(d["Class"] == "rviz_default_plugins/Image" and d["Topic"]["Value"] == "/tracker_node/debug_image"
               for d in displays)
    tools = rviz["Visualization Manager"]["Tools"]
    assert any(t["Class"] == "rviz_default_plugins/PublishPoint" and t["Topic"]["Value"] == "/clicked_point"
               for t in tools)


def test_readme_demo_writes_mp4_and_numbers(tmp_path, record_property):
    """The demo end to end (short): own scene -> bag -> ros2 launch of tracker_node -> detections, MP4, numbers.

    --all-frames tracks every frame, so the mean IoU does not depend on the machine's speed.
    """
    from conftest import ros_guard
    from launch_tools import require_launch

    ros_guard()
    require_launch()
    out = tmp_path / "demo"
    # the demo's own timeout (per wait) is below the test's, so a stall is reported with its phase
    run = subprocess.run([sys.executable, "-m", "sparsett_ros.tools.demo", "--frames", "15", "--out", str(out),
                          "--timeout", "120", "--all-frames"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SparseTT-Lite" in run.stdout and "latency" in run.stdout and "throughput" in run.stdout
    assert "started tracker_node with ros2 launch" in run.stdout  # the real launch file
    video = cv2.VideoCapture(str(out / "overlay.mp4"))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 15
    video.release()
    summary = json.loads((out / "detections.json").read_text())["summary"]
    assert summary["frames"] == 15 and summary["processed"] == 15 and summary["dropped"] == 0
    assert not summary["random_weights"] and summary["checkpoint"] == "default" and (out / "detections_bag").is_dir()
    log = (out / "tracker_node.log").read_text()
    assert "process has finished cleanly" in log and "Traceback" not in log, log
    record_property("demo_mean_iou", summary["mean_iou_processed_frames"])
    assert summary["mean_iou_processed_frames"] >= DEMO_MEAN_IOU_FLOOR  # against the scene's ground truth


def test_fastdds_robot_profile_uses_large_shared_memory_segments():
    import xml.etree.ElementTree as ET

    ns = {"d": "http://www.eprosima.com"}
    root = ET.parse(REPO / "config" / "fastdds_robot.xml").getroot()
    shm = [t for t in root.iterfind(".//d:transport_descriptor", ns) if t.findtext("d:type", namespaces=ns) == "SHM"]
    assert shm and int(shm[0].findtext("d:segment_size", namespaces=ns)) >= 16 * 1024 * 1024
    participant = root.find(".//d:participant", ns)
    assert participant.get("is_default_profile") == "true"
    used = [e.text for e in participant.iterfind(".//d:userTransports/d:transport_id", ns)]
    assert shm[0].findtext("d:transport_id", namespaces=ns) in used
