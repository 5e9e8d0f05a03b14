"""Crop + normalisation as torch ops on the model's device, bit-exact with the reference cv2 crop.

:func:`crop_plan` computes on the host, from N target states, where each output pixel samples the
frame (a few hundred integers); :func:`crop_batch` gathers and blends those taps on the device
(OpenCV's 1/32-px fixed-point bilinear ``warpAffine``, constant border) and
:func:`normalise_batch` applies the reference lookup table. :class:`FrameUploader` and
:func:`upload` move host data to the device (pinned and non-blocking on CUDA).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from sparsett_core.tracker.crop import context_scale

# OpenCV warpAffine fixed point (imgwarp.cpp): AB_BITS = 10, INTER_BITS = 5, INTER_REMAP_COEF_BITS = 15.
_AB_SCALE = 1 << 10
_INTER_TAB = 1 << 5
_COEF_BITS = 15


def _axis_taps(c: float, side: int, out_size: int, row: bool) -> tuple[np.ndarray, np.ndarray]:
    """Source index and 1/32 fraction of each output pixel along one axis, as cv2.warpAffine computes them.

    The crop matrix of :func:`sparsett_core.tracker.crop.crop_square` is diagonal, so the sampling
    is separable. OpenCV rounds differently per axis: columns
    ``X = (round(M0 * x * 1024) + round(M2 * 1024) + 16) >> 5``, rows
    ``Y = (round((M4 * y + M5) * 1024) + 16) >> 5``.
    Returns:
        index (out_size,) int64 (``X >> 5``), fraction (out_size,) int64 (``X & 31``).
    """
    c32 = np.float32(c)
    half = (np.float32(side) - np.float32(1)) / np.float32(2)
    lo, hi = c32 - half, c32 + half
    m0 = float(hi - lo) / (out_size - 1)
    m2 = float(lo)
    x = np.arange(out_size, dtype=np.float64)
    round_delta = _AB_SCALE // _INTER_TAB // 2
    if row:
        X = (np.rint((m0 * x + m2) * _AB_SCALE).astype(np.int64) + round_delta) >> 5
    else:
        X = (int(np.rint(m2 * _AB_SCALE)) + round_delta + np.rint(m0 * x * _AB_SCALE).astype(np.int64)) >> 5
    return X >> 5, X & (_INTER_TAB - 1)


def crop_plan(
    targets: Sequence[tuple[float, float, float, float]], z_size: int, out_size: int, context_amount: float = 0.5
) -> tuple[np.ndarray, list[float]]:
    """Host-side sampling plan of N crops (cheap, no device access).

    Args:
        targets: N ``(cx, cy, w, h)`` in frame pixels.
    Returns:
        taps: (4, N, out_size) int64: ix, fx, iy, fy, the source indices and 1/32 fractions along
            x and y (one array, so that it is one upload);
        scales: N crop scales (as :func:`sparsett_core.tracker.crop.get_crop`).
    """
    taps = np.empty((4, len(targets), out_size), dtype=np.int64)
    scales = []
    for n, (cx, cy, w, h) in enumerate(targets):
        scale = context_scale(w, h, z_size, context_amount)
        side = round(out_size / scale)
        taps[0, n], taps[1, n] = _axis_taps(cx, side, out_size, row=False)
        taps[2, n], taps[3, n] = _axis_taps(cy, side, out_size, row=True)
        scales.append(scale)
    return taps, scales


def crop_batch(
    frame: torch.Tensor,
    ix: torch.Tensor,
    fx: torch.Tensor,
    iy: torch.Tensor,
    fy: torch.Tensor,
    border: torch.Tensor,
) -> torch.Tensor:
    """N square crops of one frame, bit-exact with ``cv2.warpAffine`` (bilinear, constant border).

    Args:
        frame: (H, W, 3) uint8 BGR on any device.
        ix, fx, iy, fy: (N, S) int64, the rows of :func:`crop_plan`'s taps, on the frame's device.
        border: (3,) or (N, 3) int32 border colour(s) (int-truncated ``avg_chans``), on the frame's device.
    Returns:
        (N, S, S, 3) uint8 BGR crops.
    """
    H, W = frame.shape[:2]
    border = border.view(-1, 1, 1, 3)
    acc = None
    for dy in (0, 1):
        wy = fy if dy else _INTER_TAB - fy  # (N, S)
        yy = iy + dy
        vy = (yy >= 0) & (yy < H)
        for dx in (0, 1):
            wx = fx if dx else _INTER_TAB - fx
            xx = ix + dx
            vx = (xx >= 0) & (xx < W)
            # gather from the uint8 frame and widen only the (N, S, S, 3) taps, not the whole frame
            tap = frame[yy.clamp(0, H - 1)[:, :, None], xx.clamp(0, W - 1)[:, None, :]].to(torch.int32)
            inside = (vy[:, :, None] & vx[:, None, :])[..., None]
            tap = torch.where(inside, tap, border)
            weight = (wy[:, :, None] * wx[:, None, :] * (1 << (_COEF_BITS - 10)))[..., None].to(torch.int32)
            term = tap * weight
            acc = term if acc is None else acc + term
    return ((acc + (1 << (_COEF_BITS - 1))) >> _COEF_BITS).clamp_(0, 255).to(torch.uint8)


def normalise_batch(crops_bgr: torch.Tensor, table: torch.Tensor, flip: bool = True) -> torch.Tensor:
    """(N, S, S, 3) uint8 BGR -> (N, 3, S, S) float32 network input (a lookup table per channel).

    Args:
        table: (256, 3) float32 :func:`sparsett_core.tracker.crop.input_table` on the same device.
        flip: BGR -> RGB first (the "imagenet_rgb" input format).
    """
    idx = (crops_bgr.flip(-1) if flip else crops_bgr).long()
    out = torch.stack([table[idx[..., c], c] for c in range(3)], dim=1)
    return out.contiguous()


class FrameUploader:
    """numpy (H, W, 3) uint8 frame -> tensor on the device (pinned, non-blocking on CUDA).

    The pinned staging buffer is reused per frame size; before it is overwritten the previous
    copy out of it is waited for (a CUDA event; normally long done, as the tracker has read the
    previous frame's result).
    """

    def __init__(self, device: torch.device, pinned: bool) -> None:
        self.device = device
        self.pinned = pinned and device.type == "cuda"
        self._staging: torch.Tensor | None = None
        self._copied: torch.cuda.Event | None = None  # the last copy out of the staging buffer

    def __call__(self, frame: np.ndarray) -> torch.Tensor:
        host = torch.from_numpy(np.ascontiguousarray(frame))
        if self.device.type == "cpu":
            return host
        if not self.pinned:
            return host.to(self.device)
        if self._copied is not None:
            self._copied.synchronize()  # the previous non-blocking copy may still read the buffer
        if self._staging is None or self._staging.shape != host.shape:
            self._staging = torch.empty(host.shape, dtype=torch.uint8, pin_memory=True)
        self._staging.copy_(host)
        out = self._staging.to(self.device, non_blocking=True)
        self._copied = torch.cuda.Event()
        self._copied.record()
        return out


def upload(a: np.ndarray, device: torch.device) -> torch.Tensor:
    """Small host array -> device tensor (non-blocking where the device is CUDA)."""
    t = torch.from_numpy(np.ascontiguousarray(a))
    return t if device.type == "cpu" else t.to(device, non_blocking=True)
