"""Initial boxes from the ways operators give them; pure logic, no ROS graph.

Sources (see docs/node.md):

* `~/init` (vision_msgs/Detection2D): centre + size in pixels, `header.stamp` names the frame
  the box was drawn on (zero: the newest frame). Size 0 x 0 means "stop tracking".
* `~/init_roi` (sensor_msgs/RegionOfInterest): top-left + size on the newest frame; an all-zero
  ROI means "stop tracking" (as in sensor_msgs, zero is "no region").
* two left clicks in rqt_image_view (`geometry_msgs/Point`, pixels): `TwoClickBox`.
* RViz's Publish Point (`geometry_msgs/PointStamped`): a 3-D point in the camera's optical frame
  projected with camera_info's K (`project_to_pixel`), two clicks make a box; a point in another
  frame needs tf2 (`transform_point` applies a looked-up transform).

Every check raises `InitRejected` with a reason meant for the operator.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

MIN_BOX_SIZE = 2.0  # pixels; a smaller side after clipping to the image is rejected


class InitRejected(ValueError):
    """An initial box (or click) the node cannot use; str() is the reason."""


@dataclass(frozen=True)
class InitRequest:
    """A request to start (or stop) tracking.

    Attributes:
        box: (x, y, w, h) top-left and size in pixels; None means stop tracking.
        stamp_ns: stamp of the frame the box was drawn on; 0 means the newest frame.
        source: where it came from ("init", "init_roi", "click", "clicked_point").
    """

    box: tuple[float, float, float, float] | None
    stamp_ns: int = 0
    source: str = "init"

    @property
    def is_stop(self) -> bool:
        return self.box is None


def _finite(*values: float) -> bool:
    return all(math.isfinite(v) for v in values)


def box_from_detection(cx: float, cy: float, size_x: float, size_y: float, stamp_ns: int = 0,
                       source: str = "init") -> InitRequest:
    """Detection2D bbox (centre, size, pixels) -> InitRequest; size 0 x 0 -> stop."""
    if not _finite(cx, cy, size_x, size_y):
        raise InitRejected(f"init box has a non-finite value (centre {cx}, {cy}, size {size_x} x {size_y})")
    if size_x == 0 and size_y == 0:
        return InitRequest(None, stamp_ns, source)
    if size_x <= 0 or size_y <= 0:
        raise InitRejected(
            f"init box has zero or negative area (size {size_x} x {size_y}); send size 0 x 0 to stop tracking")
    return InitRequest((cx - size_x / 2.0, cy - size_y / 2.0, float(size_x), float(size_y)), stamp_ns, source)


def box_from_roi(x_offset: int, y_offset: int, width: int, height: int) -> InitRequest:
    """RegionOfInterest -> InitRequest on the newest frame; an all-zero ROI -> stop."""
    if x_offset == 0 and y_offset == 0 and width == 0 and height == 0:
        return InitRequest(None, 0, "init_roi")
    if width <= 0 or height <= 0:
        raise InitRejected(f"init ROI has zero area ({width} x {height}); send an all-zero ROI to stop tracking")
    return InitRequest((float(x_offset), float(y_offset), float(width), float(height)), 0, "init_roi")


def clip_box_to_image(box: Sequence[float], width: int, height: int) -> tuple[float, float, float, float]:
    """Clip an (x, y, w, h) box to a width x height image.

    Returns:
        The clipped box.

    Raises:
        InitRejected: non-finite values, zero area, or (almost) nothing of the box inside the image.
    """
    x, y, w, h = (float(v) for v in box)
    if not _finite(x, y, w, h):
        raise InitRejected(f"init box ({x}, {y}, {w}, {h}) has a non-finite value")
    if w <= 0 or h <= 0:
        raise InitRejected(f"init box ({x:.1f}, {y:.1f}, {w:.1f}, {h:.1f}) has zero area")
    x0, y0 = max(x, 0.0), max(y, 0.0)
    x1, y1 = min(x + w, float(width)), min(y + h, float(height))
    if x1 - x0 < MIN_BOX_SIZE or y1 - y0 < MIN_BOX_SIZE:
        raise InitRejected(
            f"init box ({x:.1f}, {y:.1f}, {w:.1f}, {h:.1f}) lies outside the {width}x{height} image "
            f"(less than {MIN_BOX_SIZE:g} px inside)")
    return (x0, y0, x1 - x0, y1 - y0)


class TwoClickBox:
    """Two clicks (first corner, opposite corner) -> a box.

    Clicks from different sources must not be mixed: keep one TwoClickBox per source. A first
    click older than `timeout_s` is forgotten (the next click starts a new box).
    """

    def __init__(self, timeout_s: float = 20.0) -> None:
        self.timeout_s = timeout_s
        self._first: tuple[float, float, float] | None = None  # u, v, time_s

    @property
    def pending(self) -> bool:
        return self._first is not None

    def clear(self) -> None:
        self._first = None

    def click(self, u: float, v: float, now_s: float) -> tuple[float, float, float, float] | None:
        """Register a click at pixel (u, v). Returns the (x, y, w, h) box on the second click.

        Raises:
            InitRejected: non-finite click, or a second click that makes a box thinner than
                MIN_BOX_SIZE (the first click stays, so the operator can click again).
        """
        if not _finite(u, v):
            raise InitRejected(f"click at non-finite position ({u}, {v})")
        if self._first is None or now_s - self._first[2] > self.timeout_s:
            self._first = (u, v, now_s)
            return None
        u0, v0, _ = self._first
        w, h = abs(u - u0), abs(v - v0)
        if w < MIN_BOX_SIZE or h < MIN_BOX_SIZE:
            raise InitRejected(
                f"second click ({u:.1f}, {v:.1f}) is too close to the first ({u0:.1f}, {v0:.1f}): click the "
                "opposite corner of the target")
        self._first = None
        return (min(u, u0), min(v, v0), w, h)


def intrinsics_from_k(k: Sequence[float]) -> np.ndarray:
    """camera_info K (9 values, row-major) -> 3x3 matrix; rejects an uncalibrated (zero) K."""
    kmat = np.asarray(k, dtype=np.float64).reshape(3, 3)
    if not np.all(np.isfinite(kmat)) or kmat[0, 0] <= 0 or kmat[1, 1] <= 0:
        raise InitRejected("camera_info has no valid intrinsics (K[0] and K[4] must be positive): calibrate the camera")
    return kmat


def project_to_pixel(point_xyz: Sequence[float], kmat: np.ndarray) -> tuple[float, float]:
    """Project a 3-D point in the camera's optical frame (z forward) to pixels.

    Args:
        point_xyz: (x, y, z) metres in the optical frame (x right, y down, z forward).
        kmat: 3x3 intrinsics from camera_info K.

    Returns:
        (u, v) pixel coordinates.
    """
    x, y, z = (float(v) for v in point_xyz)
    if not _finite(x, y, z):
        raise InitRejected(f"clicked point ({x}, {y}, {z}) has a non-finite value")
    if z <= 1e-6:
        raise InitRejected(
            f"clicked point ({x:.3f}, {y:.3f}, {z:.3f}) is not in front of the camera (z <= 0 in the optical frame)")
    u = kmat[0, 0] * x / z + kmat[0, 1] * y / z + kmat[0, 2]
    v = kmat[1, 1] * y / z + kmat[1, 2]
    return float(u), float(v)


def transform_point(point_xyz: Sequence[float], translation: Sequence[float],
                    rotation_xyzw: Sequence[float]) -> tuple[float, float, float]:
    """Apply a rigid transform (as in geometry_msgs/Transform) to a point: R p + t."""
    qx, qy, qz, qw = (float(v) for v in rotation_xyzw)
    norm = math.sqrt(qx * qx + qy * qy + qz * qz + qw * qw)
    if norm == 0 or not math.isfinite(norm):
        raise InitRejected("transform has an invalid rotation quaternion")
    qx, qy, qz, qw = qx / norm, qy / norm, qz / norm, qw / norm
    rot = np.array([
        [1 - 2 * (qy * qy + qz * qz), 2 * (qx * qy - qz * qw), 2 * (qx * qz + qy * qw)],
        [2 * (qx * qy + qz * qw), 1 - 2 * (qx * qx + qz * qz), 2 * (qy * qz - qx * qw)],
        [2 * (qx * qz - qy * qw), 2 * (qy * qz + qx * qw), 1 - 2 * (qx * qx + qy * qy)],
    ])
    out = rot @ np.asarray(point_xyz, dtype=np.float64) + np.asarray(translation, dtype=np.float64)
    return float(out[0]), float(out[1]), float(out[2])


def tf2_missing_reason(point_frame: str, camera_frame: str) -> str:
    """The warning for a click in another frame when tf2_ros is not installed."""
    return (f"clicked point is in frame {point_frame!r} but the camera's optical frame is {camera_frame!r}, and "
            "tf2_ros is not installed, so it cannot be transformed: install ros-<distro>-tf2-ros or publish "
            "the point in the camera frame")
