"""Debug overlay: the tracked box, score, state and FPS drawn on a frame (OpenCV)."""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

STATE_COLOURS = {  # BGR
    "IDLE": (200, 200, 200),
    "TRACKING": (0, 220, 0),
    "LOST": (0, 0, 255),
}


def draw_overlay(image: np.ndarray, box: Sequence[float] | None, score: float, state: str, fps: float,
                 note: str = "") -> np.ndarray:
    """Draw the tracker's result on a copy of `image`.

    Args:
        image: (H, W, 3) uint8 BGR (not modified).
        box: (x, y, w, h) pixels, or None (nothing drawn).
        score: tracker score shown next to the box.
        state: "IDLE", "TRACKING" or "LOST" (also picks the colour; LOST boxes are drawn thin).
        fps: processing rate shown in the corner.
        note: an extra line (e.g. "random weights").

    Returns:
        (H, W, 3) uint8 BGR, a new array.
    """
    out = np.array(image, dtype=np.uint8, copy=True)
    colour = STATE_COLOURS.get(state, (255, 255, 255))
    scale = max(0.4, min(out.shape[:2]) / 600.0)
    if box is not None and state != "IDLE":
        x, y, w, h = (float(v) for v in box)
        p0, p1 = (int(round(x)), int(round(y))), (int(round(x + w)), int(round(y + h)))
        cv2.rectangle(out, p0, p1, colour, 2 if state == "TRACKING" else 1)
        cv2.putText(out, f"{score:.2f}", (p0[0], max(p0[1] - 5, 12)), cv2.FONT_HERSHEY_SIMPLEX, scale, colour, 1,
                    cv2.LINE_AA)
    lines = [f"{state}  {fps:.1f} FPS"] + ([note] if note else [])
    for i, text in enumerate(lines):
        org = (8, int(20 * scale * (i + 1) + 6))
        cv2.putText(out, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(out, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, 1, cv2.LINE_AA)
    return out
