"""tracker_node with the Swin-T SparseTT model over real DDS, fed from a rosbag2 bag.

A bag made from ../shared/data/sequences/vot_bag (bag_from_video) is replayed (bag_replay) into
tracker_node started with the command line of the real launch file, with the official-format
checkpoint built from the fixture recipe (random but fixed weights: the boxes are meaningless, but
they must equal sparsett_core's Tracker on the same frames). Kept short: the model runs ~0.3-1 s
per frame here. The shipped weights (accuracy, newest-frame mode, LOST and recovery, stamped init)
are tested in test_node_lite.py.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sparsett_core import SparseTT, Tracker

from node_graph import GraphClient, NodeProcess, node_command, stamp_ns

N_FRAMES = 10
TOPIC = "/camera/image_raw"
MODEL = {"device": "cpu", "warmup_iterations": 1, "image_qos": "reliable", "image_qos_depth": 50}


@pytest.fixture(scope="module")
def vot_bag(sequences_dir, tmp_path_factory):
    from sparsett_core.eval.boxes import read_boxes
    from sparsett_ros.tools.bag_from_video import read_frames, write_image_bag

    seq = sequences_dir / "vot_bag"
    frames = list(read_frames(seq / "img", max_frames=2 * N_FRAMES))
    gt = read_boxes(seq / "groundtruth_rect.txt")[: len(frames)]
    info = write_image_bag(tmp_path_factory.mktemp("bag") / "vot_bag_mcap", frames, TOPIC, rate=30.0,
                           frame_id="camera", groundtruth=gt)
    return info, frames, gt


@pytest.fixture(scope="module")
def model_node(official_checkpoint, tmp_path_factory):
    """Every frame processed (queue mode), never LOST (lost_score 0): comparable with Tracker."""
    from conftest import ros_guard

    ros_guard()
    # one inference thread in the node and in the comparison below: other thread counts reorder float sums
    params = dict(MODEL, process_all_frames=True, init_catchup_frames=100, lost_score=0.0, recover_score=0.0,
                  num_threads=1)
    node = NodeProcess(node_command(params, checkpoint=str(official_checkpoint)),
                       tmp_path_factory.mktemp("node") / "node.log")
    yield node
    rc = node.stop()
    assert rc == 0, node.log()


def replay(client: GraphClient, bag, **kwargs) -> list[tuple[int, float]]:
    """Replay the bag's image topic (to the client's image topic); returns (stamp ns, publish time s)."""
    from sparsett_ros.tools.bag_replay import replay as bag_replay

    published: list[tuple[int, float]] = []
    bag_replay(client.node, bag, topics=[TOPIC], remap={TOPIC: client.image_topic}, qos=client.qos,
               on_publish=lambda _, t, wall: published.append((t, wall)), **kwargs)
    return published


def percentiles(values_ms) -> dict[str, float]:
    return {f"p{q}": round(float(np.percentile(values_ms, q)), 1) for q in (50, 90, 99)} | {"n": len(values_ms)}


def init_from_bag(client: GraphClient, bag_path, gt) -> int:
    """Replay frame 0, then a stamped init with its ground-truth box; returns frame 0's stamp."""
    (stamp0, _), = replay(client, bag_path, rate=0, limit=1)
    client.wait_detection(stamp0, timeout=120)
    mark = client.mark()
    client.publish_init(tuple(gt[0]), ns=stamp0)
    client.wait_status(lambda s: s.state_name == "TRACKING", "TRACKING", start=mark, timeout=120)
    return stamp0


def test_bag_replay_matches_tracker_with_frame_headers_and_latency(ros_context, model_node, vot_bag,
                                                                 official_checkpoint, record_property):
    info, frames, gt = vot_bag
    client = GraphClient(ros_context)
    try:
        client.wait_connected(model_node, timeout=300)
        init_from_bag(client, info.path, gt)
        published = replay(client, info.path, rate=1.0, skip=1, limit=N_FRAMES - 1)  # recorded 30 Hz timing
        assert [t for t, _ in published] == list(info.stamps_ns[1:N_FRAMES])
        client.wait_detection(published[-1][0], timeout=60 + 30 * N_FRAMES)
        results = {}
        for t, wall in published:
            msg = client.detection_for(t)
            assert msg is not None, f"no detections for frame stamped {t}"
            assert msg.header.frame_id == "camera" and stamp_ns(msg.header.stamp) == t
            assert len(msg.detections) == 1 and msg.detections[0].header == msg.header
            received = next(r for m, r in client.detections if m is msg)
            results[t] = (msg.detections[0], (received - wall) * 1000.0)
        final = client.wait_status(lambda s: stamp_ns(s.header.stamp) == published[-1][0], "last status")
    finally:
        client.close()

    tracker = Tracker(SparseTT.from_checkpoint(str(official_checkpoint), device="cpu"), preset="got10k")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the node (model_node)
    try:
        tracker.init(frames[0], tuple(gt[0]))
        expected = [tracker.update(frames[i]) for i in range(1, len(published) + 1)]
    finally:
        torch.set_num_threads(threads)
    for i, ((t, _), ((x, y, w, h), score)) in enumerate(zip(published, expected), start=1):
        det = results[t][0]
        got = (det.bbox.center.position.x, det.bbox.center.position.y, det.bbox.size_x, det.bbox.size_y)
        assert got == pytest.approx((x + w / 2, y + h / 2, w, h), abs=1e-3), f"frame {i}"
        assert det.results[0].hypothesis.score == pytest.approx(score, abs=1e-5)
    latency = percentiles([lat for _, lat in results.values()])
    record_property("end_to_end_latency_ms", json.dumps(latency))
    record_property("node_latency_ms_last", round(final.latency_ms, 1))
    print(f"\nend-to-end latency (publish -> detections received), queue mode, ms: {latency}; "
          f"node-side last {final.latency_ms:.1f} ms; frames processed {final.frames_processed}")
    assert final.frames_dropped == 0 and final.inputs_rejected == 0  # queue mode: nothing dropped


def test_random_weights_flag_themselves_in_log_and_status(ros_context, tmp_path):
    """checkpoint:=random with allow_random_weights: a warning at start and random_weights in every status."""
    params = dict(MODEL, checkpoint="random", allow_random_weights=True, warmup_iterations=0)
    # its own namespace and camera topic: the module's other node may still be running
    node = NodeProcess(node_command(params, image="/cam2/image_raw", namespace="b"), tmp_path / "node.log")
    client = GraphClient(ros_context, node_ns="/b/tracker_node", image_topic="/cam2/image_raw")
    try:
        client.wait_connected(node, timeout=300)
        status = client.wait_status(lambda s: True, "the latched status")
        assert status.random_weights and status.state_name == "IDLE"
    finally:
        client.close()
        rc = node.stop()
    assert rc == 0, node.log()
    assert "RUNNING ON RANDOM WEIGHTS" in node.log()
