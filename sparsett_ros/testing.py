"""A cheap deterministic tracker with the Tracker contract, for graph tests and demos without a model.

`TemplateTracker` matches the initial patch (normalised cross-correlation, OpenCV) in a window
around the last position; its score is the correlation peak, so it genuinely drops when the
target disappears and rises when it comes back (LOST / recovery tests). Selected with
`tracker_factory:=sparsett_ros.testing:build_template_tracker`.
"""
from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from sparsett_ros.params import TrackerParams
from sparsett_ros.tracker_backend import Backend


class TemplateTracker:
    """Template matching around the last position (search window = `search_scale` x the box)."""

    def __init__(self, search_scale: float = 3.0) -> None:
        self.search_scale = search_scale
        self.template: np.ndarray | None = None
        self.box = (0.0, 0.0, 0.0, 0.0)

    def init(self, frame_bgr: np.ndarray, box: tuple[float, float, float, float]) -> None:
        x, y, w, h = (int(round(v)) for v in box)
        gray = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2GRAY)
        self.template = gray[max(y, 0):y + max(h, 1), max(x, 0):x + max(w, 1)].copy()
        self.box = (float(x), float(y), float(self.template.shape[1]), float(self.template.shape[0]))

    def update(self, frame_bgr: np.ndarray) -> tuple[tuple[float, float, float, float], float]:
        if self.template is None:
            raise RuntimeError("TemplateTracker.update before init")
        gray = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2GRAY)
        x, y, w, h = self.box
        cx, cy = x + w / 2, y + h / 2
        sw, sh = w * self.search_scale, h * self.search_scale
        x0, y0 = int(max(cx - sw / 2, 0)), int(max(cy - sh / 2, 0))
        x1, y1 = int(min(cx + sw / 2, gray.shape[1])), int(min(cy + sh / 2, gray.shape[0]))
        th, tw = self.template.shape
        if x1 - x0 < tw or y1 - y0 < th:
            return self.box, 0.0
        result = cv2.matchTemplate(gray[y0:y1, x0:x1], self.template, cv2.TM_CCOEFF_NORMED)
        _, peak, _, loc = cv2.minMaxLoc(result)
        score = float(np.clip(peak, 0.0, 1.0)) if np.isfinite(peak) else 0.0
        if score > 0.5:  # follow only confident matches; otherwise keep searching around the last position
            self.box = (float(x0 + loc[0]), float(y0 + loc[1]), float(tw), float(th))
        return self.box, score


def build_template_tracker(params: TrackerParams, logger: Any = None) -> Backend:
    return Backend(TemplateTracker(), random_weights=False, description="TemplateTracker (OpenCV, test backend)")
