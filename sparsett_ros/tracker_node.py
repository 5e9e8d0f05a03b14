"""tracker_node: follows one target in a camera stream and publishes where it is.

Wiring only (parameters -> QoS -> subscriptions/publishers -> tracker); the logic lives in
small modules: params, image_conversion, init_sources, frame_buffer, tracking_state, overlay,
tracker_backend. The image callback converts and hands the frame over (`FrameSlot`); a worker
thread runs the tracker on the newest frame and publishes. See docs/node.md.

    python -m sparsett_ros.tracker_node --ros-args --params-file config/tracker.yaml \
        -r image:=/camera/color/image_raw -p checkpoint:=/path/to/model.pkl
"""
from __future__ import annotations

import math
import signal
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import rclpy
import rclpy.exceptions
from geometry_msgs.msg import Point, PointStamped
from rcl_interfaces.msg import SetParametersResult
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import (QoSDurabilityPolicy, QoSHistoryPolicy, QoSProfile, QoSReliabilityPolicy,
                       qos_profile_sensor_data)
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, RegionOfInterest
from std_msgs.msg import Header
from std_srvs.srv import Trigger
from vision_msgs.msg import Detection2D, Detection2DArray, ObjectHypothesisWithPose

from sparsett_ros.frame_buffer import Frame, FrameBuffer, FrameSlot
from sparsett_ros.image_conversion import ImageConversionError, array_to_image, compressed_to_bgr, image_to_bgr
from sparsett_ros.init_sources import (InitRejected, InitRequest, TwoClickBox, box_from_detection, box_from_roi,
                                       clip_box_to_image, intrinsics_from_k, project_to_pixel, tf2_missing_reason,
                                       transform_point)
from sparsett_ros.msg import TrackerStatus
from sparsett_ros.overlay import draw_overlay
from sparsett_ros.params import SPECS, TrackerParams, declare_parameters, validate_changes
from sparsett_ros.tracker_backend import Backend, SequentialMulti, StartupError, load_factory, warm_up
from sparsett_ros.tracking_state import LossThresholds, TrackingStateMachine, TrackState


@dataclass(frozen=True)
class MultiInitRequest:
    """Several initial boxes (x, y, w, h) on one frame (~/init_multi); stamp 0 = the newest frame."""

    boxes: tuple[tuple[float, float, float, float], ...]
    stamp_ns: int = 0
    source: str = "init_multi"
    is_stop: bool = False


def stamp_to_ns(stamp: Any) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def _thresholds(params: TrackerParams) -> LossThresholds:
    return LossThresholds(params.lost_score, params.lost_frames, params.recover_score)


def qos_profiles(p: TrackerParams) -> tuple[QoSProfile, QoSProfile, QoSProfile]:
    """(image, outputs, commands) QoS: sensor-data or reliable images, configurable outputs, reliable boxes."""
    if p.image_qos == "sensor_data":
        image_qos = QoSProfile(depth=p.image_qos_depth, reliability=qos_profile_sensor_data.reliability,
                               history=QoSHistoryPolicy.KEEP_LAST, durability=qos_profile_sensor_data.durability)
    else:
        image_qos = QoSProfile(depth=p.image_qos_depth, reliability=QoSReliabilityPolicy.RELIABLE)
    out_reliability = QoSReliabilityPolicy.RELIABLE if p.output_qos == "reliable" else QoSReliabilityPolicy.BEST_EFFORT
    output_qos = QoSProfile(depth=p.output_qos_depth, reliability=out_reliability)
    return image_qos, output_qos, QoSProfile(depth=10, reliability=QoSReliabilityPolicy.RELIABLE)


def _optional_tf(node: Node) -> tuple[Any, Any]:
    """(tf2_ros Buffer, TransformListener), or (None, None) where tf2_ros is not installed."""
    try:
        import tf2_ros
    except ImportError:
        return None, None
    buffer = tf2_ros.Buffer()
    return buffer, tf2_ros.TransformListener(buffer, node, spin_thread=True)


class TrackerNode(Node):
    """The tracker node. `tracker_factory` overrides the `tracker_factory` parameter (tests)."""

    def __init__(self, tracker_factory: Callable[..., Backend] | None = None, **kwargs: Any) -> None:
        super().__init__("tracker_node", **kwargs)
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        try:
            self._start(tracker_factory)
        except BaseException:  # failed or interrupted start-up: leave no worker thread or node handle behind
            self.close()
            self.destroy_node()
            raise

    def _start(self, tracker_factory: Callable[..., Backend] | None) -> None:
        """Parameters, model (loaded and warmed up), then the ROS interfaces and the worker thread.

        Raises:
            StartupError: invalid parameters, or the model cannot be built, loaded or warmed up.
        """
        try:
            self.params = declare_parameters(self)
        except (ValueError, rclpy.exceptions.ParameterException) as exc:
            raise StartupError(f"invalid parameter: {exc}") from exc
        p = self.params
        unknown = sorted(set(getattr(self, "_parameter_overrides", {})) - set(SPECS) - {"use_sim_time"})
        if unknown:  # rclpy ignores undeclared overrides silently: a misspelt name would go unnoticed
            self.get_logger().warning(f"unknown parameters ignored (misspelt?): {', '.join(unknown)}; "
                                      f"known: {', '.join(SPECS)}")
        factory = tracker_factory or load_factory(p.tracker_factory)
        try:
            backend = factory(p, self.get_logger())
        except StartupError:
            raise
        except Exception as exc:  # noqa: BLE001 (any loader failure becomes one clear start-up error)
            raise StartupError(f"the tracker could not be built ({p.tracker_factory}): "
                               f"{type(exc).__name__}: {exc}") from exc
        self._tracker = backend.tracker
        self._make_multi = backend.make_multi or (lambda: SequentialMulti(lambda: factory(p, self.get_logger()).tracker))
        self._multi: Any = None  # built on the first ~/init_multi
        self._multi_ids: list[int] | None = None  # ids of the targets while in multi-target mode
        self._multi_results: list[tuple[tuple[float, float, float, float], float]] = []
        self._random_weights = backend.random_weights
        self._inference = backend.inference or (lambda: "")
        self._inference_text = ""  # last reported, to log a change (a CUDA-graph fallback) once
        self.get_logger().info(f"loading done: {backend.description}; warming up")
        try:  # the first template/track steps: CUDA graphs are captured and kernels compiled here
            warm_up(self._tracker, p.warmup_iterations)
        except Exception as exc:  # noqa: BLE001
            raise StartupError(f"the model failed its warm-up on device {p.device} ({type(exc).__name__}: {exc}); "
                               "fast_path:=false cuda_graphs:=false precision:=fp32 runs the plain eager "
                               "model") from exc
        if self._random_weights:
            self.get_logger().warning("RUNNING ON RANDOM WEIGHTS (allow_random_weights): the boxes are meaningless; "
                                      "set checkpoint to a trained SparseTT model for real tracking")

        # State shared between the callbacks (executor thread) and the worker thread.
        self._lock = threading.Lock()
        self._state = TrackingStateMachine(_thresholds(p))
        self._buffer = FrameBuffer(p.frame_buffer_size)
        self._slot = FrameSlot(p.queue_size if p.process_all_frames else 1)
        self._commands: list[InitRequest] = []
        self._received = self._processed = self._rejected = self._superseded = 0
        self._behind = 0  # FrameSlot.behind of the last processed frame
        self._last_rejection = ""
        self._last_stamp_ns: int | None = None
        self._last_taken_seq = -1
        self._skip_until_seq = -1
        self._box: tuple[float, float, float, float] | None = None
        self._score = 0.0
        self._latency_ms = 0.0
        self._fps = 0.0
        self._last_done_s: float | None = None
        self._track_id = 0
        self._track_size: tuple[int, int] | None = None
        self._anchor: tuple[float, ...] | None = None  # last confident search centre (cx, cy, w, h)
        self._warned_at: dict[str, float] = {}
        self._camera_k: np.ndarray | None = None
        self._camera_frame = ""
        self._clicks = {key: TwoClickBox(p.click_timeout_s) for key in ("image", "debug", "rviz")}
        self._tf_buffer, self._tf_listener = _optional_tf(self)

        image_qos, output_qos, command_qos = qos_profiles(p)

        # Publishers and service
        self._det_pub = self.create_publisher(Detection2DArray, "~/detections", output_qos)
        # latched: a subscriber that matches late (rqt, a tool, a slow discovery) still gets the current state
        status_qos = QoSProfile(depth=output_qos.depth, reliability=output_qos.reliability,
                                durability=QoSDurabilityPolicy.TRANSIENT_LOCAL)
        self._status_pub = self.create_publisher(TrackerStatus, "~/status", status_qos)
        self._debug_pub = self.create_publisher(Image, "~/debug_image", output_qos)
        self.create_service(Trigger, "~/reset", self._on_reset)
        self.add_on_set_parameters_callback(self._on_set_parameters)

        # Subscriptions (created last: a matched subscription means the node is ready)
        self._image_topic = self.resolve_topic_name("image")
        if p.use_compressed:
            self.create_subscription(CompressedImage, "image/compressed", self._on_compressed, image_qos)
        else:
            self.create_subscription(Image, "image", self._on_image, image_qos)
        self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, qos_profile_sensor_data)
        self.create_subscription(Detection2D, "~/init", self._on_init, command_qos)
        self.create_subscription(RegionOfInterest, "~/init_roi", self._on_init_roi, command_qos)
        self.create_subscription(Detection2DArray, "~/init_multi", self._on_init_multi, command_qos)
        debug_topic = self.resolve_topic_name("~/debug_image")
        self.create_subscription(Point, self._image_topic + "_mouse_left",
                                 lambda msg: self._on_click("image", msg), command_qos)
        self.create_subscription(Point, debug_topic + "_mouse_left",
                                 lambda msg: self._on_click("debug", msg), command_qos)
        self.create_subscription(PointStamped, "/clicked_point", self._on_clicked_point, command_qos)

        self._worker = threading.Thread(target=self._work, name="sparsett_worker", daemon=True)
        self._worker.start()
        self.get_logger().info(
            f"ready: image {self._image_topic}{'/compressed' if p.use_compressed else ''} "
            f"({p.image_qos}, {'all frames' if p.process_all_frames else 'newest frame'}), "
            f"outputs {self.resolve_topic_name('~/detections')}, waiting for an initial box")
        self._publish_status(self._event_header())

    # ---- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the worker thread (before destroy_node); a frame being tracked is finished and published."""
        self._stop.set()
        if hasattr(self, "_slot"):
            self._slot.close()
        if self._worker is not None and self._worker.is_alive():
            self._worker.join(timeout=10.0)

    def flush(self, timeout_s: float = 1.0) -> None:
        """Wait (at most `timeout_s`) until reliable subscribers acknowledged the last detections and status.

        Called after `close()` at shutdown: the frame finished in flight reaches a recorder before the
        node's writers go away.
        """
        from rclpy.duration import Duration

        deadline = time.monotonic() + timeout_s
        for publisher in (self._det_pub, self._status_pub):
            remaining = max(0.0, deadline - time.monotonic())
            publisher.wait_for_all_acked(Duration(nanoseconds=int(remaining * 1e9)))

    # ---- bookkeeping -------------------------------------------------------------------------

    def _event_header(self) -> Header:
        return Header(stamp=self.get_clock().now().to_msg(), frame_id="")

    def _warn(self, kind: str, text: str) -> None:
        now = time.monotonic()
        if now - self._warned_at.get(kind, -math.inf) >= self.params.warn_throttle_s:
            self._warned_at[kind] = now
            self.get_logger().warning(text)

    def _reject(self, kind: str, reason: str, header: Header | None = None) -> None:
        """Count a bad input, warn (throttled per kind) and publish it in the status."""
        with self._lock:
            self._rejected += 1
            self._last_rejection = f"{kind}: {reason}"
        self._warn(kind, f"rejected {kind}: {reason}")
        self._publish_status(header or self._event_header())

    def _inference_now(self) -> str:
        """What runs the network (status field); a change after start-up (a CUDA-graph capture that
        fell back to eager) is logged once."""
        text = self._inference()
        if text != self._inference_text:
            if self._inference_text:
                self.get_logger().warning(f"inference changed: {text}")
            self._inference_text = text
        return text

    def _publish_status(self, header: Header) -> None:
        with self._lock:
            box = self._box if self._state.state != TrackState.IDLE else None
            idle = self._state.state == TrackState.IDLE
            ids = [str(i) for i in self._multi_ids] if self._multi_ids else [str(self._track_id)]
            msg = TrackerStatus(
                header=header, state=int(self._state.state), state_name=self._state.state.name,
                track_id="" if idle else ",".join(ids), num_targets=0 if idle else len(ids),
                score=float(self._score), latency_ms=float(self._latency_ms), fps=float(self._fps),
                frames_received=self._received, frames_processed=self._processed,
                frames_dropped=self._slot.dropped + self._superseded, frames_behind=self._behind,
                inputs_rejected=self._rejected,
                last_rejection=self._last_rejection, random_weights=self._random_weights,
                inference=self._inference_now())
            if box is not None:
                msg.x, msg.y, msg.width, msg.height = (float(v) for v in box)
            self._status_pub.publish(msg)

    # ---- callbacks (executor thread: never wait for inference) -------------------------------

    def _on_image(self, msg: Image) -> None:
        self._on_frame(msg, image_to_bgr)

    def _on_compressed(self, msg: CompressedImage) -> None:
        self._on_frame(msg, compressed_to_bgr)

    def _on_frame(self, msg: Image | CompressedImage, convert: Callable[[Any], np.ndarray]) -> None:
        received_s = time.monotonic()
        try:
            image = convert(msg)
        except ImageConversionError as exc:
            with self._lock:
                self._received += 1
            self._reject("image", str(exc), msg.header)
            return
        self._accept_frame(image, msg.header, received_s)

    def _accept_frame(self, image: np.ndarray, header: Header, received_s: float) -> None:
        stamp_ns = stamp_to_ns(header.stamp)
        with self._lock:
            self._received += 1
            seq = self._received - 1
            previous, self._last_stamp_ns = self._last_stamp_ns, stamp_ns
        if previous is not None and stamp_ns < previous:
            self._buffer.clear()  # stamps before the jump no longer name frames unambiguously
            self._reject("image", f"stamp went backwards ({previous} ns -> {stamp_ns} ns): frame skipped and the "
                                  "frame buffer cleared (a looping bag? use ~/reset)", header)
            return
        frame = Frame(image, stamp_ns, header, received_s, seq)
        self._buffer.add(frame)
        self._slot.put(frame)

    def _on_camera_info(self, msg: CameraInfo) -> None:
        try:
            self._camera_k = intrinsics_from_k(msg.k)
            self._camera_frame = msg.header.frame_id
        except InitRejected as exc:
            self._reject("camera_info", str(exc), msg.header)

    def _queue(self, request: InitRequest) -> None:
        with self._lock:
            self._commands.append(request)
        self._slot.wake()

    def _on_init(self, msg: Detection2D) -> None:
        try:
            request = box_from_detection(msg.bbox.center.position.x, msg.bbox.center.position.y,
                                         msg.bbox.size_x, msg.bbox.size_y, stamp_to_ns(msg.header.stamp), "init")
        except InitRejected as exc:
            self._reject("init", str(exc))
            return
        self._queue(request)

    def _on_init_multi(self, msg: Detection2DArray) -> None:
        """Several targets at once: one Detection2D per box; header.stamp names the frame (0: newest)."""
        if not msg.detections:
            self._queue(InitRequest(None, 0, "init_multi"))  # an empty array stops tracking
            return
        boxes = []
        try:
            for i, det in enumerate(msg.detections):
                request = box_from_detection(det.bbox.center.position.x, det.bbox.center.position.y,
                                             det.bbox.size_x, det.bbox.size_y, 0, "init_multi")
                if request.is_stop:
                    raise InitRejected(f"detection {i} has size 0 x 0 (send an empty array to stop tracking)")
                boxes.append(request.box)
        except InitRejected as exc:
            self._reject("init_multi", str(exc))
            return
        self._queue(MultiInitRequest(tuple(boxes), stamp_to_ns(msg.header.stamp)))

    def _on_init_roi(self, msg: RegionOfInterest) -> None:
        try:
            request = box_from_roi(msg.x_offset, msg.y_offset, msg.width, msg.height)
        except InitRejected as exc:
            self._reject("init_roi", str(exc))
            return
        self._queue(request)

    def _on_click(self, key: str, msg: Point) -> None:
        try:
            box = self._clicks[key].click(msg.x, msg.y, time.monotonic())
        except InitRejected as exc:
            self._reject("click", str(exc))
            return
        if box is None:
            self.get_logger().info(f"first corner ({msg.x:.0f}, {msg.y:.0f}) received; click the opposite corner")
        else:
            self._queue(InitRequest(box, 0, "click"))

    def _on_clicked_point(self, msg: PointStamped) -> None:
        try:
            if self._camera_k is None:
                raise InitRejected("no camera_info received yet: RViz clicks are projected with camera_info's K "
                                   f"(topic {self.resolve_topic_name('camera_info')})")
            xyz = (msg.point.x, msg.point.y, msg.point.z)
            frame = msg.header.frame_id
            if frame and self._camera_frame and frame != self._camera_frame:
                xyz = self._transform_to_camera(xyz, frame)
            u, v = project_to_pixel(xyz, self._camera_k)
            box = self._clicks["rviz"].click(u, v, time.monotonic())
        except InitRejected as exc:
            self._reject("clicked_point", str(exc))
            return
        if box is None:
            self.get_logger().info(f"RViz point -> pixel ({u:.0f}, {v:.0f}); click the opposite corner")
        else:
            self._queue(InitRequest(box, 0, "clicked_point"))

    def _transform_to_camera(self, xyz: tuple[float, float, float], frame: str) -> tuple[float, float, float]:
        if self._tf_buffer is None:
            raise InitRejected(tf2_missing_reason(frame, self._camera_frame))
        from rclpy.duration import Duration
        from rclpy.time import Time

        try:
            tf = self._tf_buffer.lookup_transform(self._camera_frame, frame, Time(),
                                                  timeout=Duration(seconds=self.params.tf_timeout_s))
        except Exception as exc:  # noqa: BLE001 (tf2 raises several unrelated exception types)
            raise InitRejected(f"no transform from {frame!r} to {self._camera_frame!r}: {exc}") from exc
        t, r = tf.transform.translation, tf.transform.rotation
        return transform_point(xyz, (t.x, t.y, t.z), (r.x, r.y, r.z, r.w))

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        self._queue(InitRequest(None, 0, "reset"))
        response.success, response.message = True, "tracking stops (state IDLE)"
        return response

    def _on_set_parameters(self, parameters: list) -> SetParametersResult:
        new, reason = validate_changes(self.params, {p.name: p.value for p in parameters})
        if new is None:
            self._warn("parameter", f"parameter change rejected: {reason}")
            return SetParametersResult(successful=False, reason=reason)
        with self._lock:
            self.params = new
            self._state.thresholds = _thresholds(new)
            for clicks in self._clicks.values():
                clicks.timeout_s = new.click_timeout_s
        self.get_logger().info("parameters set: " + ", ".join(f"{p.name}={p.value}" for p in parameters))
        return SetParametersResult(successful=True, reason="")

    # ---- worker thread -----------------------------------------------------------------------

    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                self._run_commands()
                frame = self._slot.take(timeout=0.1)
                behind = self._slot.behind
                self._run_commands()
                if frame is not None:
                    self._process(frame, behind)
            except Exception as exc:  # noqa: BLE001 (one failing frame or box must not end the node)
                if self._stop.is_set() or not self.context.ok():
                    return  # shutting down: nothing to report to
                self.get_logger().error(f"tracker failed: {exc!r}; tracking stops, send a new initial box")
                with self._lock:
                    self._state.stop()
                self._reject("tracker", f"tracker failed: {exc!r}")

    def _run_commands(self) -> None:
        with self._lock:
            commands, self._commands = self._commands, []
        for request in commands:
            if request.is_stop:
                with self._lock:
                    self._state.stop()
                    self._box, self._score, self._track_size = None, 0.0, None
                    self._multi_ids = None
                self.get_logger().info(f"tracking stopped ({request.source})")
                self._publish_status(self._event_header())
            elif isinstance(request, MultiInitRequest):
                self._start_multi(request)
            else:
                self._start_track(request)

    def _init_frame(self, kind: str, stamp_ns: int) -> Frame | None:
        """The frame an init request names (rejected with a reason when there is none)."""
        if stamp_ns == 0:
            frame = self._buffer.newest()
            if frame is None:
                self._reject(kind, f"no image received yet on {self._image_topic}: send the box after the first frame")
            return frame
        frame = self._buffer.get(stamp_ns)
        if frame is None:
            held = self._buffer.stamp_range()
            where = f"the buffer holds stamps {held[0]}..{held[1]} ns" if held else "no frame is buffered yet"
            self._reject(kind, f"no buffered frame has stamp {stamp_ns} ns ({where}; "
                               f"frame_buffer_size frames are kept); use stamp 0 for the newest frame")
        return frame

    def _start_multi(self, request: MultiInitRequest) -> None:
        """Start N targets in one batched tracker; ids are consecutive and kept until the next init."""
        frame = self._init_frame(request.source, request.stamp_ns)
        if frame is None:
            return
        try:
            boxes = [clip_box_to_image(box, *frame.size) for box in request.boxes]
        except InitRejected as exc:
            self._reject(request.source, str(exc), frame.header)
            return
        if self._multi is None:
            self._multi = self._make_multi()
        self._multi.init(frame.image, boxes)
        with self._lock:
            ids = list(range(self._track_id + 1, self._track_id + 1 + len(boxes)))
            self._track_id, self._multi_ids = ids[-1], ids
            self._multi_results = [(tuple(box), 1.0) for box in boxes]
            self._state.start()
            self._box, self._score, self._track_size = boxes[0], 1.0, frame.size
            catchup = self._buffer.after(frame, self._last_taken_seq)
            self._skip_until_seq = max(self._skip_until_seq, frame.seq)
        self.get_logger().info(f"tracks {ids}: {len(boxes)} targets from {request.source} on frame {frame.stamp_ns} ns "
                               f"({type(self._multi).__name__})")
        self._publish_status(frame.header)
        self._catch_up(catchup)

    def _catch_up(self, catchup: list[Frame]) -> None:
        """Track at most init_catchup_frames buffered newer frames (evenly spaced) after an init."""
        limit, buffered = self.params.init_catchup_frames, len(catchup)
        if len(catchup) > limit:
            keep = sorted({int(round(i)) for i in np.linspace(0, len(catchup) - 1, limit)}) if limit else []
            catchup = [catchup[i] for i in keep]
        catchup = [past for past in catchup if past.size == self._track_size]
        for past in catchup:  # follow the target from the past frame up to the live stream
            self._track(past)
        if buffered:
            self.get_logger().info(f"caught up: tracked {len(catchup)} of the {buffered} newer buffered frames "
                                   "(init_catchup_frames)")

    def _start_track(self, request: InitRequest) -> None:
        kind = request.source
        frame = self._init_frame(kind, request.stamp_ns)
        if frame is None:
            return
        try:
            box = clip_box_to_image(request.box, *frame.size)
        except InitRejected as exc:
            self._reject(kind, str(exc), frame.header)
            return
        self._tracker.init(frame.image, box)
        self._anchor = tuple(self._tracker.state) if hasattr(self._tracker, "state") else None
        with self._lock:
            self._multi_ids = None
            self._track_id += 1
            self._state.start()
            self._box, self._score, self._track_size = box, 1.0, frame.size
            catchup = self._buffer.after(frame, self._last_taken_seq)
            self._skip_until_seq = max(self._skip_until_seq, frame.seq)
        self.get_logger().info(f"track {self._track_id}: init from {kind} on frame {frame.stamp_ns} ns, box "
                               f"({box[0]:.0f}, {box[1]:.0f}, {box[2]:.0f}, {box[3]:.0f})")
        self._publish_status(frame.header)
        self._catch_up(catchup)

    def _track(self, frame: Frame) -> None:
        """One tracker update; in LOST the search stays centred on the last confident position."""
        if self._multi_ids:
            self._track_multi(frame)
            return
        box, score = self._tracker.update(frame.image)
        score = float(score) if math.isfinite(float(score)) else 0.0
        with self._lock:
            self._box, self._score = tuple(float(v) for v in box), score
            state = self._state.update(score)
            confident = state == TrackState.TRACKING and score >= self._state.thresholds.lost_score
        can_hold = hasattr(self._tracker, "set_state") and hasattr(self._tracker, "state")
        if can_hold and confident:
            self._anchor = tuple(self._tracker.state)
        elif can_hold and state == TrackState.LOST and self._anchor is not None:
            self._tracker.set_state(*self._anchor)

    def _track_multi(self, frame: Frame) -> None:
        """One batched update of every target; the state machine follows the best target's score."""
        results = [(tuple(float(v) for v in box), float(score) if math.isfinite(float(score)) else 0.0)
                   for box, score in self._multi.update(frame.image)]
        with self._lock:
            self._multi_results = results
            self._box, self._score = results[0][0], max(score for _, score in results)
            self._state.update(self._score)

    def _process(self, frame: Frame, behind: int = 0) -> None:
        """Track `frame` (taken from the slot with `behind` newer frames already received) and publish."""
        with self._lock:
            self._last_taken_seq = max(self._last_taken_seq, frame.seq)
            if frame.seq <= self._skip_until_seq:  # older than the frame a new track started on
                self._superseded += 1
                return
            tracking = self._state.state != TrackState.IDLE
            track_size = self._track_size
        if tracking and frame.size != track_size:
            self._reject("image", f"image size changed from {track_size[0]}x{track_size[1]} to "
                                  f"{frame.size[0]}x{frame.size[1]} mid-track: frame skipped; send a new initial "
                                  "box (or call ~/reset) to track at the new size", frame.header)
            return
        if tracking:
            self._track(frame)
        done_s = time.monotonic()
        with self._lock:
            self._processed += 1
            self._behind = behind
            self._latency_ms = (done_s - frame.received_s) * 1000.0
            if self._last_done_s is not None and done_s > self._last_done_s:
                rate = 1.0 / (done_s - self._last_done_s)
                self._fps = rate if self._fps == 0 else 0.9 * self._fps + 0.1 * rate
            self._last_done_s = done_s
            state, box, score, track_id = self._state.state, self._box, self._score, self._track_id
            multi = list(zip(self._multi_ids, self._multi_results)) if self._multi_ids else None
        if multi is not None:
            self._publish_multi(frame.header, state, multi)
        else:
            self._publish_detections(frame.header, state, box, score, track_id)
        self._publish_status(frame.header)
        if self.params.publish_debug_image and self._debug_pub.get_subscription_count() > 0:
            note = "RANDOM WEIGHTS" if self._random_weights else ""
            overlay = draw_overlay(frame.image, box, score, state.name, self._fps, note)
            self._debug_pub.publish(array_to_image(overlay, "bgr8", frame.header))

    def _detection(self, header: Header, box: Any, score: float, track_id: int) -> Detection2D:
        x, y, w, h = box
        det = Detection2D(header=header, id=str(track_id))
        det.bbox.center.position.x, det.bbox.center.position.y = x + w / 2.0, y + h / 2.0
        det.bbox.size_x, det.bbox.size_y = float(w), float(h)
        hypothesis = ObjectHypothesisWithPose()
        hypothesis.hypothesis.class_id = self.params.class_id
        hypothesis.hypothesis.score = float(score)
        det.results.append(hypothesis)
        return det

    def _publish_multi(self, header: Header, state: TrackState, targets: list) -> None:
        """One Detection2D per target (id = its track id, stable until the next init) while TRACKING."""
        msg = Detection2DArray(header=header)
        if state == TrackState.TRACKING:
            msg.detections = [self._detection(header, box, score, track_id) for track_id, (box, score) in targets]
        self._det_pub.publish(msg)

    def _publish_detections(self, header: Header, state: TrackState, box: Any, score: float, track_id: int) -> None:
        """One Detection2D while TRACKING, none while IDLE or LOST."""
        msg = Detection2DArray(header=header)
        if state == TrackState.TRACKING and box is not None:
            msg.detections.append(self._detection(header, box, score, track_id))
        self._det_pub.publish(msg)


class StopSignals:
    """SIGINT / SIGTERM for main(): one orderly stop, whenever the signals arrive.

    rclpy's own handlers are not installed: they shut the context down under the running worker
    and then raise KeyboardInterrupt, so the second SIGINT of a Ctrl-C on `ros2 launch` (the
    terminal's, to the whole process group, then launch's own) landed inside the shutdown path
    as a traceback and exit code -2. Here the first signal during start-up aborts it
    (KeyboardInterrupt, once); while spinning a signal only sets `received`, which the spin loop
    polls; once stopping, further signals are ignored.
    """

    def __init__(self) -> None:
        self.received = ""  # name of the first signal
        self._spinning = False
        self._stopping = False
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, _frame: Any) -> None:
        if self.received:
            return
        self.received = signal.Signals(signum).name
        if not self._spinning and not self._stopping:
            self._stopping = True
            raise KeyboardInterrupt

    def spinning(self) -> None:
        self._spinning = True

    def stopping(self) -> None:
        self._stopping = True


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def main(args: list[str] | None = None) -> None:
    """Entry point (ros2 run sparsett_ros tracker_node / python -m sparsett_ros.tracker_node).

    Exit status 0 after SIGINT or SIGTERM (the last frame in flight is finished and published,
    then the worker, the node and the context are shut down in that order); 1 with one
    `cannot start: ...` line when the node cannot start.
    """
    signals = StopSignals()
    node: TrackerNode | None = None
    executor: SingleThreadedExecutor | None = None
    code = 0
    try:
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
        executor = SingleThreadedExecutor()
        node = TrackerNode()
        executor.add_node(node)
        signals.spinning()
        while not signals.received:
            executor.spin_once(timeout_sec=0.1)  # returns at least every 0.1 s to see a signal
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except StartupError as exc:
        rclpy.logging.get_logger("tracker_node").fatal(f"cannot start: {_one_line(exc)}")
        code = 1
    finally:
        signals.stopping()
        if node is not None:
            if signals.received:
                node.get_logger().info(f"{signals.received}: stopping")
            node.close()  # the worker finishes its frame while the context can still publish it
            node.flush()
        if executor is not None:
            executor.shutdown()
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    if code:
        sys.exit(code)


if __name__ == "__main__":
    main()
