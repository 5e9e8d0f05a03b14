"""Helpers for the real-graph node tests: start tracker_node with the command line the real launch file
builds, and a test-side client node that publishes inputs and waits (with timeouts) for the node's outputs.

Not a test module; imported by test/test_node_*.py.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

REPO = Path(__file__).resolve().parents[1]
PARAMS_FILE = REPO / "config" / "tracker.yaml"
TEMPLATE_FACTORY = "sparsett_ros.testing:build_template_tracker"
IMAGE_TOPIC = "/camera/image_raw"
WAIT_S = 60.0


def node_command(params: dict[str, Any], image: str = IMAGE_TOPIC, namespace: str = "", checkpoint: str = "",
                 device: str = "") -> list[str]:
    """tracker_node's command line as the real launch file builds it, run from the checkout, plus test parameters.

    `launch_argv` runs `ros2 launch launch/tracker.launch.py` (the real launch system and launch_ros)
    with a launch prefix that records the node's argv; the installed executable is replaced by
    `python -m sparsett_ros.tracker_node`, so the checkout's code runs with the same arguments.
    """
    from conftest import ros_guard
    from launch_tools import launch_argv

    ros_guard()  # ros2 launch creates a ROS context
    argv = launch_argv(image=image, checkpoint=checkpoint, device=device, namespace=namespace,
                       params_file=str(PARAMS_FILE))
    assert Path(argv[0]).name == "tracker_node" and argv[1] == "--ros-args", argv
    cmd = [sys.executable, "-m", "sparsett_ros.tracker_node", *argv[1:]]
    for name, value in params.items():
        cmd += ["-p", f"{name}:={_ros_value(value)}"]
    return cmd


def _ros_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class NodeProcess:
    """tracker_node as a subprocess; its output goes to a log file shown in failures."""

    def __init__(self, cmd: list[str], log_path: Path) -> None:
        self.cmd = cmd
        self.log_path = log_path
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
                   PYTHONUNBUFFERED="1", RCUTILS_LOGGING_BUFFERED_STREAM="0")
        self._log = open(log_path, "w")
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=self._log, stderr=subprocess.STDOUT)

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 30.0) -> int:
        if self.alive():
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
        return self.proc.returncode


def scene(i: int, size: tuple[int, int] = (320, 240), speed: tuple[int, int] = (6, 3), visible: bool = True,
          origin: tuple[int, int] = (60, 60)) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """Synthetic frame i: smooth noisy background and a 40x40 patterned target moving by `speed` px/frame.

    Returns:
        (H, W, 3) uint8 BGR, and the target box (x, y, w, h).
    """
    width, height = size
    rng = np.random.default_rng(123)
    yy, xx = np.mgrid[0:height, 0:width]
    background = 90 + 40 * np.sin(xx / 37.0) * np.cos(yy / 23.0) + rng.normal(0, 6, (height, width))
    image = np.repeat(np.clip(background, 0, 255)[:, :, None], 3, axis=2).astype(np.uint8)
    x, y = origin[0] + speed[0] * i, origin[1] + speed[1] * i
    if visible:
        tile = np.kron(np.array([[1, 0, 1, 1], [0, 1, 0, 1], [1, 1, 0, 0], [0, 1, 1, 0]]), np.ones((10, 10)))
        patch = np.stack([tile * 230 + 10, (1 - tile) * 200 + 30, tile * 60 + 100], axis=2).astype(np.uint8)
        image[y:y + 40, x:x + 40] = patch
    return image, (float(x), float(y), 40.0, 40.0)


def stamp(ns: int):
    from builtin_interfaces.msg import Time

    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def stamp_ns(msg_stamp: Any) -> int:
    return int(msg_stamp.sec) * 1_000_000_000 + int(msg_stamp.nanosec)


class GraphClient:
    """A test node: publishers for every node input, recorders for every output.

    The executor spins in a thread; `close()` shuts it down and joins it before the node is
    destroyed (otherwise the process aborts).
    """

    def __init__(self, context: Any, node_ns: str = "/tracker_node", image_topic: str = IMAGE_TOPIC) -> None:
        import rclpy
        from geometry_msgs.msg import Point, PointStamped
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, QoSReliabilityPolicy
        from sensor_msgs.msg import CameraInfo, CompressedImage, Image, RegionOfInterest
        from vision_msgs.msg import Detection2D, Detection2DArray

        from sparsett_ros.msg import TrackerStatus

        self.node_ns = node_ns
        self.image_topic = image_topic
        self.node = rclpy.create_node("sparsett_test_client", context=context)
        reliable = QoSProfile(depth=200, reliability=QoSReliabilityPolicy.RELIABLE)
        self.qos = reliable
        self.cond = threading.Condition()
        self.detections: list[tuple[Any, float]] = []
        self.statuses: list[Any] = []
        self.pub = {
            "image": self.node.create_publisher(Image, image_topic, reliable),
            "compressed": self.node.create_publisher(CompressedImage, image_topic + "/compressed", reliable),
            "camera_info": self.node.create_publisher(CameraInfo, image_topic.rsplit("/", 1)[0] + "/camera_info",
                                                      reliable),
            "init": self.node.create_publisher(Detection2D, f"{node_ns}/init", reliable),
            "init_roi": self.node.create_publisher(RegionOfInterest, f"{node_ns}/init_roi", reliable),
            "click_image": self.node.create_publisher(Point, image_topic + "_mouse_left", reliable),
            "click_debug": self.node.create_publisher(Point, f"{node_ns}/debug_image_mouse_left", reliable),
            "clicked_point": self.node.create_publisher(PointStamped, "/clicked_point", reliable),
        }
        self.node.create_subscription(Detection2DArray, f"{node_ns}/detections", self._on_detections, reliable)
        self.node.create_subscription(TrackerStatus, f"{node_ns}/status", self._on_status, reliable)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self.executor.spin, daemon=True)
        self._thread.start()

    # -- recorders ----------------------------------------------------------------------------
    def _on_detections(self, msg: Any) -> None:
        now = time.monotonic()
        with self.cond:
            self.detections.append((msg, now))
            self.cond.notify_all()

    def _on_status(self, msg: Any) -> None:
        with self.cond:
            self.statuses.append(msg)
            self.cond.notify_all()

    def wait_for(self, predicate: Callable[[], Any], what: str, timeout: float = WAIT_S) -> Any:
        """Wait until predicate() is truthy (checked on every new output); AssertionError on timeout."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                result = predicate()
                if result:
                    return result
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    last = self.statuses[-1] if self.statuses else None
                    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; last status: {last}")
                self.cond.wait(min(remaining, 0.5))

    def detection_for(self, ns: int) -> Any:
        """The Detection2DArray computed from the frame stamped `ns` (or None)."""
        for msg, _ in self.detections:
            if stamp_ns(msg.header.stamp) == ns:
                return msg
        return None

    def wait_detection(self, ns: int, timeout: float = WAIT_S) -> Any:
        return self.wait_for(lambda: self.detection_for(ns), f"detections of the frame stamped {ns}", timeout)

    def status_where(self, predicate: Callable[[Any], bool], start: int = 0) -> Any:
        for msg in self.statuses[start:]:
            if predicate(msg):
                return msg
        return None

    def wait_status(self, predicate: Callable[[Any], bool], what: str, start: int = 0, timeout: float = WAIT_S) -> Any:
        return self.wait_for(lambda: self.status_where(predicate, start), what, timeout)

    def mark(self) -> int:
        """Index of the next status message (to wait for statuses after an action)."""
        with self.cond:
            return len(self.statuses)

    # -- inputs -------------------------------------------------------------------------------
    def wait_connected(self, process: NodeProcess, names: tuple[str, ...] = ("image", "init"),
                       timeout: float = 180.0) -> None:
        """Wait until the node subscribes to our inputs and publishes its outputs (it is ready)."""
        deadline = time.monotonic() + timeout
        while True:
            if not process.alive():
                raise AssertionError(f"tracker_node exited with {process.proc.returncode}:\n{process.log()}")
            ready = all(self.pub[n].get_subscription_count() > 0 for n in names) and \
                self.node.count_publishers(f"{self.node_ns}/detections") > 0 and \
                self.node.count_publishers(f"{self.node_ns}/status") > 0
            if ready:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"tracker_node not ready after {timeout:.0f} s:\n{process.log()}")
            time.sleep(0.05)

    def image_msg(self, image: np.ndarray, ns: int, frame_id: str = "camera_optical", encoding: str = "bgr8") -> Any:
        from std_msgs.msg import Header

        from sparsett_ros.image_conversion import array_to_image

        if encoding == "rgb8":
            image = np.ascontiguousarray(image[:, :, ::-1])
        return array_to_image(image, encoding, Header(stamp=stamp(ns), frame_id=frame_id))

    def publish_image(self, image: np.ndarray, ns: int, frame_id: str = "camera_optical", encoding: str = "bgr8") -> float:
        self.pub["image"].publish(self.image_msg(image, ns, frame_id, encoding))
        return time.monotonic()

    def handshake(self, image: np.ndarray, ns: int, timeout: float = WAIT_S) -> Any:
        """Publish `image` (stamp ns) until its detections come back: the image path is connected."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.publish_image(image, ns)
            try:
                return self.wait_detection(ns, timeout=2.0)
            except AssertionError:
                continue
        raise AssertionError(f"no detections for a handshake frame within {timeout:.0f} s")

    def publish_init(self, box: tuple[float, float, float, float], ns: int = 0) -> None:
        from std_msgs.msg import Header
        from vision_msgs.msg import Detection2D

        x, y, w, h = box
        det = Detection2D(header=Header(stamp=stamp(ns), frame_id="camera_optical"))
        det.bbox.center.position.x, det.bbox.center.position.y = x + w / 2.0, y + h / 2.0
        det.bbox.size_x, det.bbox.size_y = float(w), float(h)
        self.pub["init"].publish(det)

    def call_reset(self, timeout: float = 30.0) -> Any:
        from std_srvs.srv import Trigger

        client = self.node.create_client(Trigger, f"{self.node_ns}/reset")
        if not client.wait_for_service(timeout_sec=timeout):
            raise AssertionError("~/reset service not available")
        future = client.call_async(Trigger.Request())
        done = threading.Event()
        future.add_done_callback(lambda _: done.set())
        if not done.wait(timeout):
            raise AssertionError("~/reset did not answer")
        self.node.destroy_client(client)
        return future.result()

    def set_parameters(self, values: dict[str, Any], atomically: bool = False, timeout: float = 30.0) -> list:
        """Set parameters on the node; returns the SetParametersResult list."""
        from rclpy.parameter import Parameter
        from rclpy.parameter_client import AsyncParameterClient

        if getattr(self, "_param_client", None) is None:
            self._param_client = AsyncParameterClient(self.node, self.node_ns)
        client = self._param_client
        if not client.wait_for_services(timeout_sec=timeout):
            raise AssertionError("parameter services of tracker_node not available")
        params = [Parameter(name, value=value) for name, value in values.items()]
        future = client.set_parameters_atomically(params) if atomically else client.set_parameters(params)
        done = threading.Event()
        future.add_done_callback(lambda _: done.set())
        if not done.wait(timeout):
            raise AssertionError("set_parameters did not answer")
        result = future.result()
        return [result.result] if atomically else list(result.results)

    def close(self) -> None:
        self.executor.shutdown()
        self._thread.join(timeout=10)
        self.node.destroy_node()
