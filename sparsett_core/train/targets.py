"""Dense training targets on the score grid (official ``DenseboxTarget``).

Grid point (i, j) (row-major, index ``i * score_size + j``) sits at crop pixel
``(offset + stride * j, offset + stride * i)``; with the paper's sizes (289 crop, 19 grid, stride
16) ``offset = (289 - 1 - 18 * 16) // 2 = 0``, so points are 0, 16, ..., 288 -- the same grid as
the head's ``fm_ctr``.
"""
from __future__ import annotations

import numpy as np


def grid_points(score_size: int = 19, stride: int = 16, x_size: int = 289, offset: int | None = None) -> np.ndarray:
    """(score_size**2, 2) float32 grid point coordinates (x, y) in crop pixels, row-major.

    ``offset``: crop pixel of point 0 (``ModelConfig.grid_offset``); None = centred on the crop.
    """
    offset = offset if offset is not None else (x_size - 1 - (score_size - 1) * stride) // 2
    ii, jj = np.meshgrid(np.arange(score_size), np.arange(score_size), indexing="ij")
    return np.stack([offset + stride * jj.reshape(-1), offset + stride * ii.reshape(-1)], axis=1).astype(np.float32)


def dense_target(box: np.ndarray, negative: bool, score_size: int = 19, stride: int = 16,
                 x_size: int = 289, offset: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Classification and box targets of one search crop.

    A grid point is positive iff it lies strictly inside the box (``x - x0 > 0``, ``y - y0 > 0``,
    ``x1 - x > 0``, ``y1 - y > 0``). For a negative pair (the box belongs to an unrelated target)
    the points inside the box become background (0) and every other point is ignored (-1): only
    the distractor is trained as background, as in the official code.

    Args:
        box: (4,) search box corners x0, y0, x1, y1 in crop pixels.
        negative: whether the pair is negative.
        offset: crop pixel of grid point 0 (None: centred).

    Returns:
        cls_gt (N, 1) float32 in {1, 0, -1} and box_gt (N, 4) float32 (the box at points inside
        it, 0 elsewhere), N = score_size ** 2.
    """
    pts = grid_points(score_size, stride, x_size, offset)
    b = np.asarray(box, dtype=np.float32)
    x, y = pts[:, 0], pts[:, 1]
    inside = (x - b[0] > 0) & (y - b[1] > 0) & (b[2] - x > 0) & (b[3] - y > 0)
    cls_gt = inside.astype(np.float32)
    if negative:
        cls_gt = np.where(inside, 0.0, -1.0).astype(np.float32)
    box_gt = np.where(inside[:, None], b[None, :], 0.0).astype(np.float32)
    return cls_gt[:, None], box_gt
