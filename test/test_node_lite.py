"""tracker_node on the shipped default weights (sparsett_core/weights/default.pt), over real DDS, on real frames.

No allow_random_weights anywhere: weights that fail to load stop the node and fail these tests.
* the colcon-installed node, started by `ros2 launch`, tracks a bag made from a real shared
  sequence: mean IoU against its ground truth above a floor;
* newest-frame mode with the default QoS and a camera faster than the model: every processed frame
  was the newest received when the worker took it (`frames_behind` in the status), the others are
  counted as dropped, latency stays bounded;
* LOST and recovery: the camera looks elsewhere (frames of another sequence), the state is LOST
  after `lost_frames` weak frames with empty detections, the search is held at the last confident
  position, and when the target is back there the state is TRACKING with a box on it;
* a stamped init on a past frame with the default init_catchup_frames in newest-frame mode.

The tests use the model's own preset and crop sizes (nothing here assumes a crop size), so they
run with any SparseTT checkpoint shipped as default.pt. The floors below are the measured values
less a margin; re-measure them when the weights change (`scripts/test.sh test/test_node_lite.py -s`
prints every measured value).
"""
from __future__ import annotations

import json
import time

import numpy as np
import pytest

from node_graph import GraphClient, NodeProcess, node_command, stamp_ns

# vot_bag frames 1..BAG_FRAMES-1 after an init on frame 0, every frame tracked, through ros2 launch of the colcon
# install: measured 0.7686 on 2026-12-01 (SparseTT-Lite v2 default.pt of run H, AMD EPYC Zen 5, 1 inference thread;
# run E on the Zen 4: 0.7463); floor = measured - 0.05
BAG_MEAN_IOU_FLOOR = 0.719
# vot_bag frames 20..59 live at 30 Hz after a stamped init on frame 5 and the default catch-up, newest-frame mode:
# measured 0.721 on 2026-12-01 (same weights and machine; run E: 0.712); floor = measured - 0.1 (which frames get
# processed depends on the machine's speed)
CATCHUP_MEAN_IOU_FLOOR = 0.621
# A stream at CAMERA_HZ into a node that takes 15-40 ms per frame here (the shipped model's network
# step alone takes 10-15 ms on one Zen 4 core; 60 Hz was sometimes kept up with): queueing would
# push the latency of the last frames to seconds; the newest-frame policy keeps it near one inference.
CAMERA_HZ = 200.0
LATENCY_BOUND_MS = 1000.0
# LOST needs a score that separates "target in view" from "target gone"; the thresholds are set
# in the middle of this model's gap on the clip (measured: lowest score on the target 1.0, highest
# without it 0.656, SparseTT-Lite v2 of run H, 2026-12-01; run E: 0.621); a model without such a gap cannot signal a lost
# target by its score.
MIN_SCORE_GAP = 0.04

BAG_FRAMES = 100
LOST_CLIP = ("vot_bag", "otb_crossing", 30)  # target sequence, the "camera looks elsewhere" sequence, its first frame
PRESENT, ABSENT = 10, 10  # frames with the target (the first one is the init frame), then without it


def load_sequence(sequences_dir, name: str, count: int, skip: int = 0, size: tuple[int, int] | None = None):
    """Frames (H, W, 3) BGR uint8 (resized to `size` = (W, H) if given) and ground-truth boxes (x, y, w, h)."""
    import cv2

    from sparsett_core.eval.boxes import read_boxes

    files = sorted((sequences_dir / name / "img").iterdir())[skip:skip + count]
    frames = [cv2.imread(str(f)) for f in files]
    if size is not None:
        frames = [cv2.resize(f, size) for f in frames]
    gt = read_boxes(sequences_dir / name / "groundtruth_rect.txt")[skip:skip + count]
    return frames, np.asarray(gt, dtype=np.float64)


def box_of(det) -> tuple[float, float, float, float]:
    c, w, h = det.bbox.center.position, det.bbox.size_x, det.bbox.size_y
    return (c.x - w / 2.0, c.y - h / 2.0, w, h)


def mean_iou(boxes, gt) -> float:
    from sparsett_core.eval.metrics import iou

    return float(np.mean(iou(np.asarray(boxes, dtype=np.float64), np.asarray(gt, dtype=np.float64))))


@pytest.fixture(scope="module")
def lite_node(tmp_path_factory):
    """The node as shipped (params file defaults: shipped weights, newest frame, sensor-data QoS), 1 thread."""
    from conftest import ros_guard

    ros_guard()
    # num_threads 1 (the default on 2 cores) everywhere, so that the offline calibration below sees the same scores
    node = NodeProcess(node_command({"num_threads": 1, "warn_throttle_s": 0.0}, image="/lite/image_raw",
                                    namespace="lite"), tmp_path_factory.mktemp("lite") / "node.log")
    yield node
    rc = node.stop()
    assert rc == 0, node.log()
    assert "RANDOM WEIGHTS" not in node.log() and "the default SparseTT-Lite weights" in node.log()


@pytest.fixture
def lite(ros_context, lite_node):
    client = GraphClient(ros_context, node_ns="/lite/tracker_node", image_topic="/lite/image_raw")
    try:
        client.wait_connected(lite_node, timeout=300)
        client.call_reset()
        yield client, lite_node
    finally:
        client.close()


class Stamps:
    """Increasing stamps, a new range per test (the node rejects stamps going backwards)."""

    base = 1_800_000_000_000_000_000

    def __init__(self) -> None:
        Stamps.base += 10 ** 12
        self.start = Stamps.base

    def __call__(self, i: int) -> int:
        return self.start + i * 33_333_333


def send(client: GraphClient, image, ns: int, timeout: float = 60.0):
    """Publish one frame and wait for its detections (republished if the best-effort hop lost it)."""
    deadline = time.monotonic() + timeout
    while True:
        client.publish_image(image, ns)
        try:
            return client.wait_detection(ns, timeout=10.0)
        except AssertionError:
            if time.monotonic() > deadline:
                raise


def start_on(client: GraphClient, image, box, ns: int) -> None:
    send(client, image, ns)
    mark = client.mark()
    client.publish_init(tuple(box), ns=ns)
    client.wait_status(lambda s: s.state_name == "TRACKING", "TRACKING", start=mark)


def test_newest_frame_mode_serves_only_the_newest_frame(lite, sequences_dir, record_property):
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    client, _ = lite
    frames, gt = load_sequence(sequences_dir, "vot_bag", 121)
    t = Stamps()
    start_on(client, frames[0], gt[0], t(0))
    camera = client.node.create_publisher(Image, client.image_topic, qos_profile_sensor_data)  # a camera driver's QoS
    before = client.statuses[-1]
    mark = client.mark()
    published = {}
    next_s = time.monotonic()
    for i in range(1, len(frames) - 1):  # paced like a camera at CAMERA_HZ
        next_s += 1.0 / CAMERA_HZ
        time.sleep(max(0.0, next_s - time.monotonic()))
        camera.publish(client.image_msg(frames[i], t(i)))
        published[t(i)] = time.monotonic()
    client.node.destroy_publisher(camera)
    # one more frame after the stream: as the newest it is processed, and its status settles the counts
    last = send(client, frames[-1], t(len(frames) - 1))
    final = client.wait_status(lambda s: s.header.stamp == last.header.stamp, "the last frame's status", start=mark)
    statuses = [s for s in client.statuses[mark:] if stamp_ns(s.header.stamp) in published]
    assert len(statuses) >= 10, f"only {len(statuses)} frames of the stream processed"
    behind = [(stamp_ns(s.header.stamp), s.frames_behind) for s in statuses if s.frames_behind]
    assert not behind, f"frames taken while newer ones were already received: {behind}"
    received = final.frames_received - before.frames_received
    processed = final.frames_processed - before.frames_processed
    dropped = final.frames_dropped - before.frames_dropped
    assert received == processed + dropped and final.inputs_rejected == before.inputs_rejected
    assert dropped > 0, "the camera was not faster than the model: nothing to drop"
    node_latency = [s.latency_ms for s in statuses]
    e2e = [(r - published[stamp_ns(m.header.stamp)]) * 1000.0 for m, r in client.detections
           if stamp_ns(m.header.stamp) in published]
    record_property("newest_frame_mode", json.dumps({
        "published": len(published), "received": received, "processed": processed, "dropped": dropped,
        "node_latency_ms_max": round(max(node_latency), 1),
        "e2e_latency_ms_p50_p90_max": [round(float(np.percentile(e2e, q)), 1) for q in (50, 90, 100)]}))
    assert max(node_latency) < LATENCY_BOUND_MS and max(e2e) < LATENCY_BOUND_MS, (node_latency, e2e)


def calibrate(present, absent, back, gt0, lost_frames: int) -> tuple[float, dict]:
    """Thresholds between this model's scores with and without the target, from an offline Tracker run.

    Runs what the node runs (the model's own preset; the search held at the last confident state
    once LOST, i.e. after `lost_frames` weak frames) and returns the middle of the gap between the
    lowest score on the target and the highest without it.
    """
    import torch

    from sparsett_core import SparseTT, Tracker

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the node
    try:
        tracker = Tracker(SparseTT.from_checkpoint("default", device="cpu"), device="cpu")
        tracker.init(present[0], tuple(gt0))
        on = [tracker.update(f)[1] for f in present[1:]]
        anchor = tracker.state
        off = []
        for i, frame in enumerate(absent):
            off.append(tracker.update(frame)[1])
            if i >= lost_frames - 1:
                tracker.set_state(*anchor)
        back_score = tracker.update(back)[1]
    finally:
        torch.set_num_threads(threads)
    scores = {"target_min": round(min(on), 3), "absent_max": round(max(off), 3), "back": round(back_score, 3)}
    assert min(on) - max(off) >= MIN_SCORE_GAP, f"the model's score does not tell the target from its absence: {scores}"
    threshold = (min(on) + max(off)) / 2
    assert back_score > threshold, f"the target's return scores below the threshold: {scores}"
    return threshold, scores


def test_lost_and_recovery_with_the_real_model(lite, sequences_dir, record_property):
    client, _ = lite
    name, elsewhere, skip = LOST_CLIP
    frames, gt = load_sequence(sequences_dir, name, PRESENT + 1)
    height, width = frames[0].shape[:2]
    absent, _ = load_sequence(sequences_dir, elsewhere, ABSENT, skip=skip, size=(width, height))
    lost_frames = 5  # the default (config/tracker.yaml)
    threshold, scores = calibrate(frames[:PRESENT], absent, frames[PRESENT], gt[0], lost_frames)
    record_property("lost_calibration", json.dumps(dict(scores, threshold=round(threshold, 3))))
    result = client.set_parameters({"lost_score": threshold, "recover_score": threshold}, atomically=True)
    assert result[0].successful, result[0].reason
    try:
        t = Stamps()
        start_on(client, frames[0], gt[0], t(0))
        for i in range(1, PRESENT):
            msg = send(client, frames[i], t(i))
            assert len(msg.detections) == 1
        states = []
        for j, frame in enumerate(absent):  # the camera looks elsewhere
            ns = t(PRESENT + j)
            msg = send(client, frame, ns)
            status = client.wait_status(lambda s: stamp_ns(s.header.stamp) == ns, "status")
            states.append((status.state_name, len(msg.detections)))
        assert states[:lost_frames - 1] == [("TRACKING", 1)] * (lost_frames - 1), states  # weak, not yet lost
        assert states[lost_frames - 1:] == [("LOST", 0)] * (ABSENT - lost_frames + 1), states
        ns = t(PRESENT + ABSENT)
        msg = send(client, frames[PRESENT], ns)  # the target is back where it was last seen
        status = client.wait_status(lambda s: stamp_ns(s.header.stamp) == ns, "status")
        assert status.state_name == "TRACKING" and len(msg.detections) == 1, status
        iou = mean_iou([box_of(msg.detections[0])], [gt[PRESENT]])
        record_property("recovered_iou", round(iou, 3))
        assert iou > 0.5, f"recovered box {box_of(msg.detections[0])} vs ground truth {gt[PRESENT]}"
    finally:
        defaults = client.set_parameters({"lost_score": 0.25, "recover_score": 0.4}, atomically=True)
        assert defaults[0].successful


def test_stamped_init_on_a_past_frame_with_the_default_catchup(lite, sequences_dir, record_property):
    client, node = lite
    frames, gt = load_sequence(sequences_dir, "vot_bag", 60)
    t = Stamps()
    for i in range(20):  # the operator watches; the node is IDLE (frames are not tracked, only buffered)
        send(client, frames[i], t(i))
    mark = client.mark()
    client.publish_init(tuple(gt[5]), ns=t(5))  # the box was drawn on frame 5, 14 frames ago
    status = client.wait_status(lambda s: s.state_name == "TRACKING", "TRACKING", start=mark)
    assert stamp_ns(status.header.stamp) == t(5)  # initialised on the frame the box was drawn on
    assert status.inference == "torch fp32"  # what runs the network (default parameters)
    assert (status.x, status.y, status.width, status.height) == pytest.approx(tuple(gt[5]), abs=0.5)
    published = []
    next_s = time.monotonic()
    for i in range(20, len(frames)):  # live at 30 Hz, newest-frame mode
        next_s += 1.0 / 30.0
        time.sleep(max(0.0, next_s - time.monotonic()))
        client.publish_image(frames[i], t(i))
        published.append(i)
    client.wait_for(lambda: client.status_where(lambda s: s.frames_received == s.frames_processed + s.frames_dropped
                                                + s.inputs_rejected and stamp_ns(s.header.stamp) >= t(20), mark),
                    "the live frames settled")
    tracked = [(i, client.detection_for(t(i))) for i in published]
    tracked = [(i, msg) for i, msg in tracked if msg is not None]
    assert len(tracked) >= 5 and all(len(msg.detections) == 1 for _, msg in tracked)
    iou = mean_iou([box_of(msg.detections[0]) for _, msg in tracked], [gt[i] for i, _ in tracked])
    record_property("catchup_mean_iou", json.dumps({"frames": len(tracked), "mean_iou": round(iou, 3)}))
    assert "caught up: tracked 5 of the 14 newer buffered frames" in node.log()
    assert iou >= CATCHUP_MEAN_IOU_FLOOR


def test_installed_node_tracks_a_real_bag_above_the_iou_floor(shell, colcon_install, ros_context, sequences_dir,
                                                             record_property):
    """ros2 launch of the colcon install, default weights (installed default.pt), every frame tracked."""
    from launch_tools import Launched, params_file, site_packages
    from sparsett_ros.tools.bag_from_video import write_image_bag
    from sparsett_ros.tools.bag_replay import replay

    env, cwd = shell
    frames, gt = load_sequence(sequences_dir, "vot_bag", BAG_FRAMES)
    topic = "/bag/camera/image_raw"
    bag = write_image_bag(cwd / "vot_bag_mcap", frames, topic, rate=30.0, frame_id="camera", groundtruth=gt)
    every_frame = params_file(colcon_install, cwd / "every_frame.yaml", process_all_frames=True,
                              queue_size=BAG_FRAMES, image_qos="reliable", image_qos_depth=BAG_FRAMES, num_threads=1)
    launch = Launched.ros2_launch(["sparsett_ros", "tracker.launch.py", f"image:={topic}",
                                   f"params_file:={every_frame}"], env, cwd / "launch.log", cwd)
    client = GraphClient(ros_context, image_topic=topic)
    try:
        launch.wait_for_log(r"ready: image", timeout=300)
        installed = site_packages(colcon_install) / "sparsett_core" / "weights" / "default.pt"
        assert f"the default SparseTT-Lite weights ({installed})" in launch.log() and "RANDOM" not in launch.log()
        client.wait_for(lambda: client.pub["image"].get_subscription_count() > 0, "the node's image subscription")
        (first, _), = replay_frames(client, bag.path, topic, replay, rate=0, limit=1)
        client.wait_detection(first)
        mark = client.mark()
        client.publish_init(tuple(gt[0]), ns=first)
        client.wait_status(lambda s: s.state_name == "TRACKING", "TRACKING", start=mark)
        published = replay_frames(client, bag.path, topic, replay, rate=1.0, skip=1)
        client.wait_detection(published[-1][0], timeout=300)
        boxes = []
        for ns, _ in published:
            msg = client.detection_for(ns)
            assert msg is not None and len(msg.detections) == 1, f"frame {ns}: {msg}"
            boxes.append(box_of(msg.detections[0]))
        launch.interrupt()
        assert launch.wait(30) == 0, launch.log()
    finally:
        client.close()
        launch.close()
    iou = mean_iou(boxes, gt[1:len(boxes) + 1])
    record_property("bag_mean_iou", json.dumps({"frames": len(boxes), "mean_iou": round(iou, 4)}))
    print(f"\nvot_bag, {len(boxes)} frames, shipped weights through ros2 launch: mean IoU {iou:.4f}")
    assert iou >= BAG_MEAN_IOU_FLOOR


def replay_frames(client: GraphClient, bag, topic: str, replay, **kwargs) -> list[tuple[int, float]]:
    published: list[tuple[int, float]] = []
    replay(client.node, bag, topics=[topic], qos=client.qos,
           on_publish=lambda _, t, wall: published.append((t, wall)), **kwargs)
    return published
