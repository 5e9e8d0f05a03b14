"""Training crops: the tracker's crop maths plus the search-image scale/shift augmentation.

Boxes here are corners ``x0, y0, x1, y1`` in the "+1" convention of the official code
(``w = x1 - x0 + 1``; from ``x, y, w, h``: ``x1 = x + w - 1``). The crop of side ``s`` (frame
pixels, a float, not rounded, as the official training code) centred on ``(cx, cy)`` is resampled
to ``out x out`` by the tracker's own :func:`sparsett_core.tracker.crop.crop_square` (``cv2.warpAffine``
with the matrix ``[[(s-1)/(out-1), 0, cx-(s-1)/2], [0, (s-1)/(out-1), cy-(s-1)/2]]``, inverse map),
padding with the template frame's mean colour truncated to int.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sparsett_core.tracker.crop import crop_square

MAX_RETRY = 50


@dataclass(frozen=True)
class CropParams:
    """Crop geometry and augmentation ranges (official values by default)."""

    context_amount: float = 0.5
    z_size: int = 127
    x_size: int = 289
    max_scale: float = 0.3
    max_shift: float = 0.4


def xywh_to_xyxy(box: np.ndarray) -> np.ndarray:
    """``x, y, w, h`` -> ``x0, y0, x1, y1`` with ``x1 = x + w - 1`` ("+1" convention)."""
    x, y, w, h = (float(v) for v in box)
    return np.array([x, y, x + w - 1, y + h - 1], dtype=np.float64)


def xyxy_to_cxywh(box: np.ndarray) -> np.ndarray:
    """Corners -> centre and size (``w = x1 - x0 + 1``)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    return np.array([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0 + 1, y1 - y0 + 1], dtype=np.float64)


def cxywh_to_xyxy(box: np.ndarray) -> np.ndarray:
    """Centre and size -> corners (``x0 = cx - (w - 1) / 2``)."""
    cx, cy, w, h = (float(v) for v in box)
    return np.array([cx - (w - 1) / 2, cy - (h - 1) / 2, cx + (w - 1) / 2, cy + (h - 1) / 2], dtype=np.float64)


def context_side(w: float, h: float, context_amount: float) -> float:
    """Side of the context square of a ``w x h`` target: ``sqrt((w + c(w+h)) (h + c(w+h)))``."""
    p = context_amount * (w + h)
    return float(np.sqrt((w + p) * (h + p)))


def crop_pair(im_z: np.ndarray, box_z: np.ndarray, im_x: np.ndarray, box_x: np.ndarray,
              params: CropParams, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Template crop (no augmentation) and augmented search crop of a training pair.

    The search crop scale is multiplied by ``U(1/(1+max_scale), 1+max_scale)`` and its centre
    shifted by ``U(-max_shift, max_shift) * side / 2`` frame pixels in x and y; up to 50 draws are
    tried until both boxes lie inside their crops, then no augmentation is used.

    Args:
        im_z, im_x: (H, W, 3) uint8 BGR frames of the template and the search image.
        box_z, box_x: (4,) corner boxes (x0, y0, x1, y1) in their frames.
        params: crop geometry and augmentation ranges.
        rng: the pair's random generator.

    Returns:
        crop_z (z, z, 3) uint8, crop_x (x, x, 3) uint8, box_z_crop (4,) and box_x_crop (4,) float64
        corner boxes in crop pixels.
    """
    zs, xs = params.z_size, params.x_size
    avg_chans = np.mean(im_z, axis=(0, 1))
    cz, cx = xyxy_to_cxywh(box_z), xyxy_to_cxywh(box_x)
    scale_z = zs / context_side(cz[2], cz[3], params.context_amount)
    scale_x0 = zs / context_side(cx[2], cx[3], params.context_amount)
    s_z = zs / scale_z
    out_z = cxywh_to_xyxy(np.array([(zs - 1) / 2, (zs - 1) / 2, cz[2] * scale_z, cz[3] * scale_z]))
    z_inside = bool(np.all((out_z >= 0) & (out_z <= zs - 1)))
    # a template box outside its crop can never pass the check: go straight to no augmentation
    for attempt in range(0 if z_inside else MAX_RETRY, MAX_RETRY + 1):
        if attempt < MAX_RETRY:
            s_max = 1 + params.max_scale
            scale_x = scale_x0 / rng.uniform(1 / s_max, s_max)
            s_x = xs / scale_x
            dx = rng.uniform(-params.max_shift, params.max_shift) * s_x / 2
            dy = rng.uniform(-params.max_shift, params.max_shift) * s_x / 2
        else:
            scale_x, dx, dy = scale_x0, 0.0, 0.0
            s_x = xs / scale_x
        out_x = cxywh_to_xyxy(np.array([(xs - 1) / 2 + dx * scale_x, (xs - 1) / 2 + dy * scale_x,
                                        cx[2] * scale_x, cx[3] * scale_x]))
        if z_inside and np.all((out_x >= 0) & (out_x <= xs - 1)):
            break
    crop_z = crop_square(im_z, cz[0], cz[1], s_z, zs, avg_chans)
    crop_x = crop_square(im_x, cx[0] - dx, cx[1] - dy, s_x, xs, avg_chans)
    return crop_z, crop_x, out_z, out_x
