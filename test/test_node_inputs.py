"""Every way to give (or stop) a target, reset, run-time thresholds, LOST/recovery and bad inputs,
against one live tracker_node (real rclpy over DDS) running the deterministic template tracker.

The scene (node_graph.scene) moves a 40x40 target by (6, 3) px per frame, so a box applied to the
wrong frame starts on background and the detections are visibly wrong.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from node_graph import TEMPLATE_FACTORY, GraphClient, NodeProcess, node_command, scene

PARAMS = {"tracker_factory": TEMPLATE_FACTORY, "image_qos": "reliable", "image_qos_depth": 50,
          "process_all_frames": True, "frame_buffer_size": 40, "init_catchup_frames": 40,
          "lost_score": 0.5, "lost_frames": 3, "recover_score": 0.8, "warn_throttle_s": 0.0}
FRAME_NS = 10_000_000  # stamps: base + i * 10 ms


@pytest.fixture(scope="module")
def tracker_node(tmp_path_factory):
    from conftest import ros_guard

    ros_guard()
    node = NodeProcess(node_command(PARAMS), tmp_path_factory.mktemp("node") / "node.log")
    yield node
    rc = node.stop()
    assert rc == 0, node.log()


class Stream:
    """Publishes scene frames with increasing stamps; each test starts a new stamp range."""

    base = 1_000_000_000

    def __init__(self, client: GraphClient) -> None:
        Stream.base += 1_000_000_000
        self.client = client
        self.stamps: dict[int, int] = {}

    def send(self, i: int, visible: bool = True, wait: bool = True):
        image, box = scene(i, visible=visible)
        ns = self.base + i * FRAME_NS
        self.stamps[i] = ns
        self.client.publish_image(image, ns)
        return self.client.wait_detection(ns) if wait else None

    def truth(self, i: int):
        return scene(i)[1]


@pytest.fixture
def live(ros_context, tracker_node):
    client = GraphClient(ros_context)
    try:
        client.wait_connected(tracker_node, names=("image", "init", "init_roi", "click_image", "click_debug",
                                                   "clicked_point", "camera_info"))
        client.call_reset()
        stream = Stream(client)
        client.handshake(scene(0)[0], stream.base - 1)
        yield client, stream
    finally:
        client.close()


def centre(det) -> tuple[float, float]:
    return det.bbox.center.position.x, det.bbox.center.position.y


def assert_on_target(msg, truth, tol: float = 1.0) -> None:
    assert len(msg.detections) == 1, f"expected one detection, got {msg.detections}"
    det = msg.detections[0]
    x, y, w, h = truth
    assert centre(det) == pytest.approx((x + w / 2, y + h / 2), abs=tol)
    assert (det.bbox.size_x, det.bbox.size_y) == pytest.approx((w, h), abs=tol)


def start_tracking(client: GraphClient, stream: Stream, i: int = 0) -> None:
    stream.send(i)
    mark = client.mark()
    client.publish_init(stream.truth(i))
    client.wait_status(lambda s: s.state_name == "TRACKING", "TRACKING", start=mark)


def test_init_detection_tracks_and_outputs_carry_the_frame_header(live):
    client, stream = live
    start_tracking(client, stream, 0)
    for i in range(1, 5):
        msg = stream.send(i)
        assert msg.header.frame_id == "camera_optical"
        assert msg.detections[0].header.stamp == msg.header.stamp
        assert_on_target(msg, stream.truth(i))
        det = msg.detections[0]
        assert det.results[0].hypothesis.class_id == "target"
        assert 0.99 <= det.results[0].hypothesis.score <= 1.0 and det.id != ""
    status = client.wait_status(lambda s: s.header.stamp == msg.header.stamp, "status of the last frame")
    assert status.state_name == "TRACKING" and status.track_id == det.id
    assert (status.x, status.y) == pytest.approx(stream.truth(4)[:2], abs=1.0)


def test_stamped_init_on_a_past_frame_catches_up(live):
    client, stream = live
    for i in range(10):
        stream.send(i)
    mark = client.mark()
    client.publish_init(stream.truth(2), ns=stream.stamps[2])  # the box was drawn on frame 2
    status = client.wait_status(lambda s: s.state_name == "TRACKING", "TRACKING", start=mark)
    assert status.header.stamp == client.detection_for(stream.stamps[2]).header.stamp  # initialised on frame 2
    assert (status.x, status.y, status.width, status.height) == pytest.approx(stream.truth(2))
    assert_on_target(stream.send(10), stream.truth(10))  # 8 frames (48 px) later: caught up
    # a stamp that is not buffered is rejected with a reason; tracking goes on
    mark = client.mark()
    client.publish_init(stream.truth(2), ns=stream.stamps[2] + 1)
    client.wait_status(lambda s: "no buffered frame has stamp" in s.last_rejection, "rejection", start=mark)
    assert_on_target(stream.send(11), stream.truth(11))


def test_same_box_on_the_newest_frame_would_miss(live):
    """Control for the test above: frame 2's box applied to frame 9 starts on background."""
    client, stream = live
    for i in range(10):
        stream.send(i)
    mark = client.mark()
    client.publish_init(stream.truth(2))  # stamp 0: newest frame (9)
    client.wait_status(lambda s: s.state_name == "TRACKING", "TRACKING", start=mark)
    msg = stream.send(10)
    assert not msg.detections or centre(msg.detections[0]) != pytest.approx(
        (stream.truth(10)[0] + 20, stream.truth(10)[1] + 20), abs=3.0)


def test_init_roi(live):
    from sensor_msgs.msg import RegionOfInterest

    client, stream = live
    stream.send(0)
    x, y, w, h = (int(v) for v in stream.truth(0))
    client.pub["init_roi"].publish(RegionOfInterest(x_offset=x, y_offset=y, width=w, height=h))
    client.wait_status(lambda s: s.state_name == "TRACKING", "TRACKING")
    assert_on_target(stream.send(1), stream.truth(1))


@pytest.mark.parametrize("topic", ["click_image", "click_debug"])
def test_two_rqt_clicks(live, topic):
    from geometry_msgs.msg import Point

    client, stream = live
    stream.send(0)
    x, y, w, h = stream.truth(0)
    mark = client.mark()
    client.pub[topic].publish(Point(x=x + w, y=y + h, z=0.0))  # any corner order
    client.pub[topic].publish(Point(x=x, y=y, z=0.0))
    status = client.wait_status(lambda s: s.state_name == "TRACKING", "TRACKING", start=mark)
    assert (status.x, status.y, status.width, status.height) == pytest.approx((x, y, w, h))
    assert_on_target(stream.send(1), stream.truth(1))


def test_rviz_clicked_points_projected_with_camera_info(live):
    from geometry_msgs.msg import PointStamped
    from sensor_msgs.msg import CameraInfo
    from std_msgs.msg import Header

    client, stream = live
    fx, fy, cx, cy, z = 300.0, 250.0, 160.0, 120.0, 2.5
    info = CameraInfo(header=Header(frame_id="camera_optical"), width=320, height=240)
    info.k = [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0]
    client.pub["camera_info"].publish(info)
    stream.send(0)  # camera_info and the frame travel together, like a camera's
    x, y, w, h = stream.truth(0)

    def point(u, v, frame="camera_optical"):
        return PointStamped(header=Header(frame_id=frame), point=_xyz((u - cx) * z / fx, (v - cy) * z / fy, z))

    mark = client.mark()
    client.pub["clicked_point"].publish(point(x, y))
    client.pub["clicked_point"].publish(point(x + w, y + h))
    status = client.wait_status(lambda s: s.state_name == "TRACKING", "TRACKING", start=mark)
    assert (status.x, status.y, status.width, status.height) == pytest.approx((x, y, w, h), abs=1e-3)
    assert_on_target(stream.send(1), stream.truth(1))
    # a point in another frame needs tf2; without tf2_ros it is rejected with the reason
    try:
        import tf2_ros  # noqa: F401
    except ImportError:
        mark = client.mark()
        client.pub["clicked_point"].publish(point(x, y, frame="map"))
        status = client.wait_status(lambda s: s.inputs_rejected > 0 and "tf2_ros is not installed" in s.last_rejection,
                                    "the tf2 rejection", start=mark)
        assert "'map'" in status.last_rejection and status.state_name == "TRACKING"


def _xyz(x, y, z):
    from geometry_msgs.msg import Point

    return Point(x=float(x), y=float(y), z=float(z))


def test_reset_service_and_zero_size_init_stop_tracking(live):
    client, stream = live
    start_tracking(client, stream, 0)
    mark = client.mark()
    assert client.call_reset().success
    client.wait_status(lambda s: s.state_name == "IDLE", "IDLE after ~/reset", start=mark)
    msg = stream.send(1)
    assert msg.detections == []
    start_tracking(client, stream, 2)
    mark = client.mark()
    client.publish_init((0.0, 0.0, 0.0, 0.0))  # documented stop value: size 0 x 0
    client.wait_status(lambda s: s.state_name == "IDLE", "IDLE after a 0x0 init", start=mark)
    assert stream.send(3).detections == []


def test_thresholds_change_at_run_time_and_invalid_values_are_rejected(live):
    client, _ = live
    assert [r.successful for r in client.set_parameters({"lost_frames": 4, "class_id": "drone"})] == [True, True]
    bad = client.set_parameters({"recover_score": 0.1})
    assert not bad[0].successful and "recover_score" in bad[0].reason and "lost_score" in bad[0].reason
    assert not client.set_parameters({"lost_score": 1.5})[0].successful
    assert not client.set_parameters({"checkpoint": "/tmp/x.pkl"})[0].successful  # read-only
    both = client.set_parameters({"lost_score": 0.6, "recover_score": 0.9}, atomically=True)
    assert both[0].successful
    restore = client.set_parameters({"lost_score": 0.5, "recover_score": 0.8, "lost_frames": 3,
                                     "class_id": "target"}, atomically=True)
    assert restore[0].successful


def test_class_id_change_shows_in_detections(live):
    client, stream = live
    start_tracking(client, stream, 0)
    assert client.set_parameters({"class_id": "drone"})[0].successful
    try:
        assert stream.send(1).detections[0].results[0].hypothesis.class_id == "drone"
    finally:
        client.set_parameters({"class_id": "target"})


def test_lost_and_recovery(live):
    client, stream = live
    start_tracking(client, stream, 0)
    assert_on_target(stream.send(1), stream.truth(1))
    # target hidden: score drops below lost_score; LOST after lost_frames (3) weak frames
    states = []
    for i in range(2, 6):
        msg = stream.send(i, visible=False)
        status = client.wait_status(lambda s: s.header.stamp == msg.header.stamp, "status")
        states.append(status.state_name)
        assert status.score < 0.5
    assert states == ["TRACKING", "TRACKING", "LOST", "LOST"]
    assert msg.detections == []  # empty while LOST
    # target back near the last position: score above recover_score -> TRACKING
    image, _ = scene(1)
    ns = stream.base + 50 * FRAME_NS
    client.publish_image(image, ns)
    msg = client.wait_detection(ns)
    status = client.wait_status(lambda s: s.header.stamp == msg.header.stamp, "status")
    assert status.state_name == "TRACKING" and status.score > 0.8
    assert_on_target(msg, stream.truth(1))


def _bad_image(kind: str, ns: int):
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header

    from node_graph import stamp

    header = Header(stamp=stamp(ns), frame_id="camera_optical")
    image, _ = scene(0)
    if kind == "encoding":
        return Image(header=header, height=240, width=320, encoding="32FC1", step=320 * 4, data=bytes(320 * 240 * 4))
    if kind == "empty":
        return Image(header=header, height=0, width=0, encoding="bgr8", step=0, data=b"")
    if kind == "size":
        return Image(header=header, height=240, width=320, encoding="bgr8", step=960, data=image.tobytes()[:-7])
    raise ValueError(kind)


BAD_INPUTS = {
    "unsupported encoding": ("encoding", "unsupported image encoding '32FC1'"),
    "0x0 image": ("empty", "empty image (0x0)"),
    "data size mismatch": ("size", "data has 230393 bytes but step*height"),
    "init outside the image": ("init_outside", "lies outside the 320x240 image"),
    "init zero area": ("init_zero", "zero or negative area"),
    "init NaN": ("init_nan", "non-finite"),
    "image size change": ("resize", "image size changed from 320x240 to 160x120 mid-track"),
    "stamp backwards": ("backwards", "stamp went backwards"),
}


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_input_is_rejected_and_tracking_continues(live, name):
    client, stream = live
    kind, reason = BAD_INPUTS[name]
    start_tracking(client, stream, 0)
    with client.cond:
        before = client.statuses[-1]
    mark = client.mark()
    if kind in ("encoding", "empty", "size"):
        client.pub["image"].publish(_bad_image(kind, stream.base + 500))
    elif kind == "init_outside":
        client.publish_init((1000.0, 1000.0, 40.0, 40.0))
    elif kind == "init_zero":
        client.publish_init((10.0, 10.0, 40.0, 0.0))
    elif kind == "init_nan":
        client.publish_init((math.nan, 10.0, 40.0, 40.0))
    elif kind == "resize":
        small = np.ascontiguousarray(scene(1)[0][::2, ::2])
        client.publish_image(small, stream.base + 500)
    elif kind == "backwards":
        stream.send(1)
        client.publish_image(scene(2)[0], stream.base - 5 * FRAME_NS)
    status = client.wait_status(lambda s: reason in s.last_rejection, f"the rejection {reason!r}", start=mark)
    assert status.inputs_rejected > before.inputs_rejected
    # the next good frame is served and the target is still followed
    i = 3
    msg = stream.send(i)
    assert_on_target(msg, stream.truth(i), tol=1.5)
    after = client.wait_status(lambda s: s.header.stamp == msg.header.stamp, "status of the good frame")
    assert after.state_name == "TRACKING"


def test_debug_image_rendered_for_a_subscriber_with_the_frame_header(live):
    import threading

    from sensor_msgs.msg import Image

    from sparsett_ros.image_conversion import image_to_bgr

    client, stream = live
    got: dict[int, Image] = {}
    arrived = threading.Condition()

    def on_debug(msg):
        with arrived:
            got[msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec] = msg
            arrived.notify_all()

    sub = client.node.create_subscription(Image, "/tracker_node/debug_image", on_debug, client.qos)
    try:
        start_tracking(client, stream, 0)
        client.wait_for(lambda: client.node.count_publishers("/tracker_node/debug_image") > 0, "debug publisher")
        for i in range(1, 20):  # the node renders once it has matched this subscriber
            stream.send(i)
            with arrived:
                if arrived.wait_for(lambda: stream.stamps[i] in got, timeout=2.0):
                    break
        msg = got[stream.stamps[i]]
        assert msg.header.frame_id == "camera_optical" and (msg.width, msg.height, msg.encoding) == (320, 240, "bgr8")
        overlay = image_to_bgr(msg)
        x, y, w, h = (int(v) for v in stream.truth(i))
        assert (overlay[y, x:x + w] == (0, 220, 0)).all(axis=1).sum() > w // 2  # the TRACKING box is drawn
        assert not np.array_equal(overlay, scene(i)[0])
    finally:
        client.node.destroy_subscription(sub)
