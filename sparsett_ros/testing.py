"""A cheap deterministic tracker with the Tracker contract, for graph tests and demos without a model.

`TemplateTracker` matches the initial patch (normalised cross-correlation, OpenCV) in a window
around the last position; its score is the correlation peak, so it genuinely drops when the
target disappears and rises when it comes back (LOST / recovery tests). Selected with
`tracker_factory:=sparsett_ros.testing:build_template_tracker`.

Two more factories make start-up and shutdown paths testable: `build_slow_template_tracker` (every
update takes SLOW_UPDATE_S, so a signal reliably lands while a frame is being tracked) and
`build_failing_warmup` (the real SparseTT tracker whose first update raises, as a failed CUDA-graph
capture or kernel would).
"""
from __future__ import annotations

import sys
import time
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


SLOW_UPDATE_S = 1.0
UPDATE_STARTED = "SlowTracker: update started"


class SlowTracker(TemplateTracker):
    """TemplateTracker whose update takes SLOW_UPDATE_S (a model much slower than the camera)."""

    def update(self, frame_bgr: np.ndarray) -> tuple[tuple[float, float, float, float], float]:
        print(UPDATE_STARTED, file=sys.stderr, flush=True)  # tests wait for it: a frame is being tracked now
        time.sleep(SLOW_UPDATE_S)
        return super().update(frame_bgr)


def build_slow_template_tracker(params: TrackerParams, logger: Any = None) -> Backend:
    return Backend(SlowTracker(), random_weights=False,
                   description=f"SlowTracker (TemplateTracker + {SLOW_UPDATE_S} s per update, test backend)")


class _FailingUpdate:
    """Wraps a tracker; update raises (an injected failure of the first track step)."""

    def __init__(self, tracker: Any) -> None:
        self.tracker = tracker

    def init(self, frame_bgr: np.ndarray, box: tuple[float, float, float, float]) -> None:
        self.tracker.init(frame_bgr, box)

    def update(self, frame_bgr: np.ndarray) -> tuple[tuple[float, float, float, float], float]:
        raise RuntimeError("CUDA error: operation not permitted when stream is capturing\n(injected by "
                           "sparsett_ros.testing:build_failing_warmup)")


def build_failing_warmup(params: TrackerParams, logger: Any = None) -> Backend:
    """The node's real SparseTT backend, with the first track step (warm-up) failing."""
    from sparsett_ros.tracker_backend import build_sparsett_tracker

    backend = build_sparsett_tracker(params, logger)
    backend.tracker = _FailingUpdate(backend.tracker)
    return backend
