"""Exact crops and normalisation of the official SparseTT pipeline (bit-exact with the official code).

Conventions: frames are H x W x 3 BGR uint8; a target is ``(cx, cy, w, h)`` in frame pixels with the
"+1" convention (``cx = x + (w - 1) / 2``). The official code mixes float32 and float64 as NumPy 1.x
did; the casts below reproduce it under NumPy 2 (docs/sparsett_reference.md section 3).
"""
from __future__ import annotations

import math

import cv2
import numpy as np

IMAGENET_MEAN_RGB = (123.675, 116.28, 103.53)
IMAGENET_STD_RGB = (58.395, 57.12, 57.375)


def context_scale(w: float, h: float, out_size: int, context_amount: float = 0.5) -> float:
    """Crop scale ``out_size / sqrt((w + c(w+h)) (h + c(w+h)))`` (float64), output pixels per frame pixel.

    Args:
        w, h: target size in frame pixels (float32 or float64 values).
        out_size: the template side (127): the scale maps the context square to it.
        context_amount: context fraction (0.5).
    """
    w, h = float(w), float(h)
    wc = w + context_amount * (w + h)
    hc = h + context_amount * (w + h)
    return out_size / math.sqrt(wc * hc)


def crop_square(
    frame: np.ndarray,
    cx: float,
    cy: float,
    side: int,
    out_size: int,
    avg_chans: np.ndarray,
) -> np.ndarray:
    """Square crop of ``side`` frame pixels centred at (cx, cy), resized to ``out_size``.

    Exactly the official ``get_subwindow_tracking``: corners computed in float32, affine matrix
    ``[[(x1 - x0) / (out - 1), 0, x0], [0, (y1 - y0) / (out - 1), y0]]``, bilinear
    ``cv2.warpAffine`` with ``WARP_INVERSE_MAP``, constant border = int-truncated ``avg_chans``.

    Args:
        frame: (H, W, 3) uint8 BGR.
        cx, cy: crop centre in frame pixels.
        side: crop side in frame pixels (already rounded).
        out_size: output side (127 or 289).
        avg_chans: (3,) per-channel BGR mean of the first frame (border colour).
    Returns:
        (out_size, out_size, 3) uint8 BGR.
    """
    c = np.array([cx, cy], dtype=np.float32)
    half = (np.float32(side) - np.float32(1)) / np.float32(2)
    x0, y0 = c - half
    x1, y1 = c + half
    m = np.array(
        [[float(x1 - x0) / (out_size - 1), 0.0, float(x0)], [0.0, float(y1 - y0) / (out_size - 1), float(y0)]],
        dtype=np.float64,
    )
    border = tuple(int(v) for v in avg_chans)
    return cv2.warpAffine(
        frame,
        m,
        (out_size, out_size),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=border,
    )


def get_crop(
    frame: np.ndarray,
    cx: float,
    cy: float,
    w: float,
    h: float,
    z_size: int,
    out_size: int,
    avg_chans: np.ndarray,
    context_amount: float = 0.5,
) -> tuple[np.ndarray, float]:
    """Template (out_size = z_size) or search (out_size = x_size) crop around a target.

    Returns:
        crop (out_size, out_size, 3) uint8 BGR, and the scale (crop pixels per frame pixel,
        float64, ``z_size / sqrt(wc * hc)``).
    """
    scale = context_scale(w, h, z_size, context_amount)
    side = round(out_size / scale)  # Python round: half to even, as the official code
    return crop_square(frame, cx, cy, side, out_size, avg_chans), scale


def normalisation_table(
    mean_rgb: tuple[float, float, float] = IMAGENET_MEAN_RGB,
    std_rgb: tuple[float, float, float] = IMAGENET_STD_RGB,
) -> np.ndarray:
    """Lookup table of the official normalisation (mmcv ``imnormalize``, to_rgb=True).

    Returns:
        (256, 3) float32, ``[v, c] = ((v - mean[c]) * (1 / std[c]))`` computed in float64 from the
        float32 mean/std, then cast; ``c`` indexes RGB.
    """
    mean = np.asarray(mean_rgb, np.float32).astype(np.float64)
    inv_std = 1.0 / np.asarray(std_rgb, np.float32).astype(np.float64)
    v = np.arange(256, dtype=np.float64)[:, None]
    return ((v - mean) * inv_std).astype(np.float32)


def normalise(crop_bgr: np.ndarray, table: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 BGR -> (H, W, 3) float32 normalised RGB (bit-exact with the official code)."""
    return table[crop_bgr[..., ::-1], np.arange(3)]


def input_table(input_format: str) -> np.ndarray:
    """(256, 3) float32 lookup table from a uint8 crop to the network input (``ModelConfig.input_format``).

    "imagenet_rgb": :func:`normalisation_table` (columns RGB: the crop's channels are flipped first);
    "bgr255": the identity (columns BGR, no flip).
    """
    if input_format == "bgr255":
        return np.repeat(np.arange(256, dtype=np.float32)[:, None], 3, axis=1)
    return normalisation_table()


def to_input(crop_bgr: np.ndarray, input_format: str, table: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 BGR crop -> (H, W, 3) float32 network input in ``input_format``."""
    if input_format == "bgr255":
        return crop_bgr.astype(np.float32)  # no table needed: 10x cheaper than the lookup
    return normalise(crop_bgr, table)
