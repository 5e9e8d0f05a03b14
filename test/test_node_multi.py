"""tracker_node with several targets: ~/init_multi (vision_msgs/Detection2DArray) -> one detection per
target with stable ids, status listing the ids. Real DDS graph: with the cheap template tracker
(tracker_factory) for the node's multi-target logic, and with the node's default backend on the
shipped weights, where ~/init_multi runs sparsett_core's batched MultiTracker."""
from __future__ import annotations


import numpy as np
import pytest

from node_graph import TEMPLATE_FACTORY, GraphClient, NodeProcess, node_command, scene, stamp
from sparsett_ros.params import make_params
from sparsett_ros.tracker_backend import SequentialMulti, inference_options

FAST = {"tracker_factory": TEMPLATE_FACTORY, "image_qos": "reliable", "image_qos_depth": 10,
        "process_all_frames": True, "warn_throttle_s": 0.0}
SECOND = dict(origin=(220, 150), speed=(-4, -2))


def two_targets(i: int) -> tuple[np.ndarray, list[tuple[float, float, float, float]]]:
    """Frame i of scene() with a second target moving the other way; returns the frame and both boxes."""
    image, box1 = scene(i)
    other, box2 = scene(i, **SECOND)
    x, y, w, h = (int(v) for v in box2)
    image[y:y + h, x:x + w] = other[y:y + h, x:x + w]
    return image, [box1, box2]


def detection_array(boxes, ns: int = 0):
    from std_msgs.msg import Header
    from vision_msgs.msg import Detection2D, Detection2DArray

    header = Header(stamp=stamp(ns), frame_id="camera_optical")
    msg = Detection2DArray(header=header)
    for x, y, w, h in boxes:
        det = Detection2D(header=header)
        det.bbox.center.position.x, det.bbox.center.position.y = x + w / 2.0, y + h / 2.0
        det.bbox.size_x, det.bbox.size_y = float(w), float(h)
        msg.detections.append(det)
    return msg


def as_box(det) -> tuple[float, float, float, float]:
    c, w, h = det.bbox.center.position, det.bbox.size_x, det.bbox.size_y
    return (c.x - w / 2.0, c.y - h / 2.0, w, h)


def test_two_init_boxes_are_tracked_with_stable_ids(ros_context, tmp_path):
    from vision_msgs.msg import Detection2DArray

    node = NodeProcess(node_command(FAST), tmp_path / "node.log")
    client = GraphClient(ros_context)
    init_multi = client.node.create_publisher(Detection2DArray, "/tracker_node/init_multi", client.qos)
    try:
        client.wait_connected(node)
        client.wait_for(lambda: init_multi.get_subscription_count() > 0, "the ~/init_multi subscription")
        image, boxes = two_targets(0)
        client.handshake(image, 1_000)
        mark = client.mark()
        init_multi.publish(detection_array(boxes))
        status = client.wait_status(lambda s: s.state_name == "TRACKING" and "," in s.track_id,
                                    "TRACKING with two track ids", start=mark)
        ids = status.track_id.split(",")
        assert len(ids) == 2 and len(set(ids)) == 2 and status.num_targets == 2
        for i in range(1, 6):
            image, truth = two_targets(i)
            ns = 1_000 + i * 1_000
            client.publish_image(image, ns)
            msg = client.wait_detection(ns)
            assert [d.id for d in msg.detections] == ids  # one detection per target, same ids every frame
            for det, want in zip(msg.detections, truth):
                np.testing.assert_allclose(as_box(det), want, atol=1.0)
                assert det.results[0].hypothesis.class_id == "target"
                assert det.header.stamp == msg.header.stamp
        last = client.wait_status(lambda s: s.frames_processed >= 6, "status after the frames", start=mark)
        assert last.track_id.split(",") == ids
        # a single-target init leaves the multi-target mode: one detection with a new id
        mark = client.mark()
        client.publish_init(truth[0])
        single = client.wait_status(lambda s: s.state_name == "TRACKING" and s.track_id not in ("", *ids)
                                    and "," not in s.track_id, "a single new track id", start=mark)
        image, truth = two_targets(6)
        client.publish_image(image, 20_000)
        msg = client.wait_detection(20_000)
        assert [d.id for d in msg.detections] == [single.track_id] and single.num_targets == 1
        # a bad box rejects the whole array with a reason
        init_multi.publish(detection_array([truth[0], (5.0, 5.0, -3.0, 4.0)]))
        client.wait_status(lambda s: s.last_rejection.startswith("init_multi:"), "the bad init_multi rejection",
                           start=mark)
    finally:
        client.node.destroy_publisher(init_multi)
        client.close()
        rc = node.stop()
    assert rc == 0, node.log()
    assert "2 targets from init_multi" in node.log()


def test_sequential_multi_fallback_and_options_from_params():
    from sparsett_ros.testing import TemplateTracker

    multi = SequentialMulti(TemplateTracker)
    image, boxes = two_targets(0)
    multi.init(image, boxes)
    image, truth = two_targets(1)
    out = multi.update(image)
    assert len(out) == 2 and all(score > 0.9 for _, score in out)
    for (box, _), want in zip(out, truth):
        np.testing.assert_allclose(box, want, atol=1.0)
    assert inference_options(make_params({"fast_path": True, "precision": "bf16"})).backend == "auto"
    opts = inference_options(make_params({"precision": "bf16", "gpu_crop": True, "cuda_graphs": True}))
    assert (opts.precision, opts.gpu_crop, opts.cuda_graphs, opts.backend) == ("bf16", True, True, "torch")
    assert inference_options(make_params({"backend": "onnxruntime"})).backend == "onnxruntime"
    with pytest.raises(ValueError, match="backend"):
        make_params({"backend": "tensorflow"})


def test_sparsett_backend_tracks_several_targets_in_one_batch(official_checkpoint):
    """The node's default backend: make_multi() is sparsett_core's MultiTracker; target 0 = the single tracker."""
    from sparsett_ros.tracker_backend import build_sparsett_tracker

    backend = build_sparsett_tracker(make_params({"checkpoint": str(official_checkpoint), "device": "cpu"}))
    multi = backend.make_multi()
    frames = [two_targets(i) for i in range(2)]
    multi.init(frames[0][0], frames[0][1])
    backend.tracker.init(frames[0][0], frames[0][1][0])
    results = multi.update(frames[1][0])
    single, score = backend.tracker.update(frames[1][0])
    assert len(results) == 2 and type(multi.multi).__name__ == "MultiTracker"
    np.testing.assert_allclose(results[0][0], single, atol=1e-2)
    assert abs(results[0][1] - score) <= 1e-4
    assert backend.inference() == "torch fp32"


def test_fast_path_backend_says_what_it_chose(official_checkpoint):
    """fast_path:=true resolves once at start-up (rule + measurement) and the status names the choice;
    the multi-target tracker reuses it."""
    from sparsett_ros.tracker_backend import build_sparsett_tracker

    logs = []

    class Logger:
        def info(self, text):
            logs.append(text)

        warning = info

    backend = build_sparsett_tracker(make_params({"checkpoint": str(official_checkpoint), "device": "cpu",
                                                  "fast_path": True}), Logger())
    chosen = backend.tracker.tracker.options
    assert chosen.backend in ("torch", "onnxruntime") and any(t.startswith("fast path: ") for t in logs)
    assert backend.inference().startswith(chosen.backend)
    multi = backend.make_multi()
    assert multi.multi._proto.options == chosen


def test_init_multi_runs_the_batched_multitracker_of_the_shipped_model(ros_context, sequences_dir, tmp_path):
    """~/init_multi with the node's default backend (the shipped weights): the batched MultiTracker inside the node.

    Every frame tracked (queue mode, 1 thread): the node's boxes equal sparsett_core's MultiTracker on the
    same frames, the ids stay the same on every frame, and the real target is followed.
    """
    import cv2
    import torch

    from sparsett_core import MultiTracker, SparseTT
    from sparsett_core.eval.boxes import read_boxes
    from sparsett_core.eval.metrics import iou

    files = sorted((sequences_dir / "vot_bag" / "img").iterdir())[:8]
    frames = [cv2.imread(str(f)) for f in files]
    bag = tuple(float(v) for v in read_boxes(sequences_dir / "vot_bag" / "groundtruth_rect.txt")[0])
    boxes = [bag, (20.0, 20.0, 60.0, 50.0)]  # the bag, and a patch of the background
    node = NodeProcess(node_command({"image_qos": "reliable", "image_qos_depth": 20, "process_all_frames": True,
                                     "num_threads": 1}, image="/multi/image_raw"), tmp_path / "node.log")
    client = GraphClient(ros_context, image_topic="/multi/image_raw")
    from vision_msgs.msg import Detection2DArray

    init_multi = client.node.create_publisher(Detection2DArray, "/tracker_node/init_multi", client.qos)
    got = []
    try:
        client.wait_connected(node, timeout=300)
        client.wait_for(lambda: init_multi.get_subscription_count() > 0, "the ~/init_multi subscription")
        client.handshake(frames[0], 1_000)
        mark = client.mark()
        init_multi.publish(detection_array(boxes, ns=1_000))
        status = client.wait_status(lambda s: s.state_name == "TRACKING" and s.num_targets == 2, "two targets",
                                    start=mark)
        ids = status.track_id.split(",")
        for i in range(1, len(frames)):
            client.publish_image(frames[i], 1_000 + i)
        for i in range(1, len(frames)):
            msg = client.wait_detection(1_000 + i, timeout=120)
            assert [d.id for d in msg.detections] == ids  # stable ids, one detection per target, in init order
            got.append([(as_box(d), d.results[0].hypothesis.score) for d in msg.detections])
    finally:
        client.node.destroy_publisher(init_multi)
        client.close()
        rc = node.stop()
    assert rc == 0, node.log()
    assert "2 targets from init_multi" in node.log() and "(InferenceMultiTracker)" in node.log()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the node
    try:
        multi = MultiTracker(SparseTT.from_checkpoint("default", device="cpu"), device="cpu")
        multi.init(frames[0], boxes)
        expected = [multi.update(frame) for frame in frames[1:]]
    finally:
        torch.set_num_threads(threads)
    for i, (node_out, want) in enumerate(zip(got, expected), start=1):
        for (box, score), (want_box, want_score) in zip(node_out, want):
            np.testing.assert_allclose(box, want_box, atol=1e-3, err_msg=f"frame {i}")
            assert abs(score - want_score) <= 1e-4, f"frame {i}"
    truth = read_boxes(sequences_dir / "vot_bag" / "groundtruth_rect.txt")[1:len(frames)]
    assert float(np.mean(iou(np.array([out[0][0] for out in got]), np.asarray(truth)))) > 0.5  # the bag is followed

