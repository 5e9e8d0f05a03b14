"""Classical baseline trackers with the same ``init`` / ``update`` contract as `sparsett_core.Tracker`.

    tracker = CSRTTracker()
    tracker.init(frame_bgr, (x, y, w, h))   # HxWx3 uint8 BGR, top-left x,y,w,h pixels
    box, score = tracker.update(frame_bgr)  # box (x, y, w, h) floats; score 1.0 tracked / 0.0 lost

CSRT (Lukezic et al., CVPR 2017) comes from OpenCV's contrib build (opencv-contrib-python or
-headless; never install it beside plain opencv-python, they overwrite each other's cv2).
"""
from __future__ import annotations

import cv2
import numpy as np

Box = tuple[float, float, float, float]


def _create_csrt() -> "cv2.Tracker":
    factory = getattr(cv2, "TrackerCSRT_create", None) or getattr(getattr(cv2, "TrackerCSRT", None), "create", None)
    if factory is None:
        raise RuntimeError("this OpenCV build has no CSRT tracker: install opencv-contrib-python-headless "
                           "(and uninstall opencv-python, which shadows it)")
    return factory()


class CSRTTracker:
    """OpenCV's CSRT tracker behind the sparsett_core Tracker contract.

    CSRT works on integer pixel boxes; `update` returns the previous box with score 0.0 when
    OpenCV reports a tracking failure (the benchmark protocols need a box for every frame).
    """

    name = "csrt"

    def __init__(self) -> None:
        self._tracker: cv2.Tracker | None = None
        self._box: Box | None = None

    def init(self, frame_bgr: np.ndarray, box: Box) -> None:
        """Start tracking the target `box` (x, y, w, h) in `frame_bgr` (H, W, 3) uint8."""
        x, y, w, h = (float(v) for v in box)
        if not (w > 0 and h > 0):
            raise ValueError(f"initial box must have a positive size, got w={w}, h={h}")
        self._tracker = _create_csrt()
        rect = (int(round(x)), int(round(y)), max(1, int(round(w))), max(1, int(round(h))))
        self._tracker.init(frame_bgr, rect)
        self._box = (x, y, w, h)

    def update(self, frame_bgr: np.ndarray) -> tuple[Box, float]:
        """Track into `frame_bgr`; returns ((x, y, w, h), score)."""
        if self._tracker is None or self._box is None:
            raise RuntimeError("call init(frame, box) before update(frame)")
        ok, rect = self._tracker.update(frame_bgr)
        if not ok:
            return self._box, 0.0
        self._box = tuple(float(v) for v in rect)  # type: ignore[assignment]
        return self._box, 1.0
