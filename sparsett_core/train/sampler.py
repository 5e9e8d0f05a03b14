"""Training-pair sampling (official ``TrackPairSampler`` + ``TrackPairFilter``), with a bounded gap.

A pair is negative with probability ``negative_ratio``: two frames drawn independently (each
from a dataset chosen by ratio, a random sequence and a random visible frame). Otherwise it is
positive: one dataset by ratio, one sequence, a visible frame ``i1`` and a visible frame ``i2``
within the frame gap; still images (COCO, DET) use the same image and object for both. Both
frames must pass the box filter (area / image area in (min, max), aspect < max) or the whole
pair is drawn again.

Frame gap: the official sampler draws ``i2`` from ``range(i1 - max_diff, L)`` (a bug inherited
from video_analyst: no upper bound, so i2 can be any later frame). Here ``gap_mode="bounded"``
(default) uses ``|i2 - i1| <= max_gap``; ``gap_mode="official"`` reproduces the official range.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Sequence as Seq

import cv2
import numpy as np

from .datasets import Sequence
from .transforms import xywh_to_xyxy, xyxy_to_cxywh

MAX_DRAWS = 100


@dataclass(frozen=True)
class SamplerParams:
    """Sampling parameters (official values by default)."""

    negative_ratio: float = 0.33
    gap_mode: str = "bounded"
    min_area_rate: float = 0.001
    max_area_rate: float = 0.6
    max_aspect: float = 10.0


@dataclass(frozen=True)
class Source:
    """One dataset: its sequences (those with a visible frame), weight and frame gap."""

    name: str
    sequences: tuple[Sequence, ...]
    ratio: float
    max_gap: int


@dataclass
class Pair:
    """A sampled pair: frames (H, W, 3) uint8 BGR and corner boxes (4,) float64."""

    image_z: np.ndarray
    box_z: np.ndarray
    image_x: np.ndarray
    box_x: np.ndarray
    negative: bool


def load_image(path: str) -> np.ndarray:
    """BGR uint8 frame; a missing/corrupt file is an error naming the path."""
    im = cv2.imread(path, cv2.IMREAD_COLOR)
    if im is None:
        raise FileNotFoundError(f"cannot read frame {path}: the dataset is incomplete or the index is stale "
                                "(delete the index cache to rebuild it)")
    return im


def gap_candidates(valid_rows: np.ndarray, i1: int, max_gap: int, length: int, gap_mode: str) -> np.ndarray:
    """Visible rows allowed as the second frame of a positive pair.

    Args:
        valid_rows: sorted row indices with a visible target.
        i1: the first frame's row.
        max_gap: the dataset's frame gap.
        length: number of rows of the sequence.
        gap_mode: "bounded" -> [i1 - g, i1 + g]; "official" -> [i1 - g, length) (no upper bound).
    """
    hi = i1 + max_gap if gap_mode == "bounded" else length - 1
    lo = i1 - max_gap
    return valid_rows[(valid_rows >= lo) & (valid_rows <= hi)]


def box_passes(box_xywh: np.ndarray, image_shape: tuple[int, ...], p: SamplerParams) -> bool:
    """Official box filter (video_analyst ``filter_unreasonable_training_boxes``, x,y,w,h version).

    area rate ``w h / (H W)`` must be in (min_area_rate, max_area_rate) and the aspect
    ``max(h/w, w/h)`` (``h / (w + 1e-6)``) below max_aspect.
    """
    w, h = float(box_xywh[2]), float(box_xywh[3])
    area_rate = w * h / float(image_shape[0] * image_shape[1])
    ratio = h / (w + 1e-6)
    aspect = max(ratio, 1.0 / max(ratio, 1e-6))
    return p.min_area_rate < area_rate < p.max_area_rate and aspect < p.max_aspect


class PairSampler:
    """Draws training pairs from several sources with per-dataset ratios.

    Args:
        sources: the datasets; sequences without a visible frame are dropped.
        params: negative ratio, gap mode and box filter.
        loader: frame reader (path -> BGR uint8), ``load_image`` by default.
    """

    def __init__(self, sources: Seq[Source], params: SamplerParams,
                 loader: Callable[[str], np.ndarray] = load_image) -> None:
        self.sources = [Source(s.name, tuple(q for q in s.sequences if q.valid.any()), s.ratio, s.max_gap)
                        for s in sources]
        empty = [s.name for s in self.sources if not s.sequences]
        if empty:
            raise ValueError(f"datasets without any visible target: {empty}")
        ratios = np.asarray([s.ratio for s in self.sources], dtype=np.float64)
        self.probs = ratios / ratios.sum()
        self.params = params
        self.loader = loader
        self._valid_rows = [[np.flatnonzero(q.valid) for q in s.sequences] for s in self.sources]

    def _sequence(self, rng: np.random.Generator) -> tuple[int, int]:
        d = int(rng.choice(len(self.sources), p=self.probs))
        return d, int(rng.integers(len(self.sources[d].sequences)))

    def _frame(self, rng: np.random.Generator) -> tuple[Sequence, int]:
        d, s = self._sequence(rng)
        rows = self._valid_rows[d][s]
        return self.sources[d].sequences[s], int(rows[rng.integers(len(rows))])

    def _positive(self, rng: np.random.Generator) -> tuple[Sequence, int, Sequence, int]:
        d, s = self._sequence(rng)
        seq, rows = self.sources[d].sequences[s], self._valid_rows[d][s]
        i1 = int(rows[rng.integers(len(rows))])
        if seq.static:
            return seq, i1, seq, i1
        cand = gap_candidates(rows, i1, self.sources[d].max_gap, len(seq), self.params.gap_mode)
        return seq, i1, seq, int(cand[rng.integers(len(cand))])

    def sample(self, rng: np.random.Generator) -> Pair:
        """One pair passing the box filter.

        Raises:
            RuntimeError: no pair passed the filter in 100 draws (the data cannot train).
        """
        negative = bool(rng.random() < self.params.negative_ratio)
        for _ in range(MAX_DRAWS):
            if negative:
                (sz, iz), (sx, ix) = self._frame(rng), self._frame(rng)
            else:
                sz, iz, sx, ix = self._positive(rng)
            bz, bx = sz.boxes[iz], sx.boxes[ix]
            path_z, path_x = sz.frame_path(iz), sx.frame_path(ix)
            im_z = self.loader(path_z)
            im_x = im_z if path_x == path_z else self.loader(path_x)
            if box_passes(bz, im_z.shape, self.params) and box_passes(bx, im_x.shape, self.params):
                return Pair(im_z, xywh_to_xyxy(bz), im_x, xywh_to_xyxy(bx), negative)
        raise RuntimeError(
            f"no training pair passed the box filter in {MAX_DRAWS} draws (area rate in "
            f"({self.params.min_area_rate}, {self.params.max_area_rate}), aspect < {self.params.max_aspect}); "
            "check the boxes of the datasets or relax the filter in the config")


def free_region(pair: Pair, rng: np.random.Generator, params: SamplerParams, tries: int = 10) -> Pair | None:
    """An *unlabelled* pair: a random region of the template frame instead of the annotated target.

    The region has the target's size times ``U(0.6, 1.4)`` and an aspect ratio changed by up to
    1.5x, anywhere in the frame; the search box is the same frame rectangle (where the region is
    if nothing moved). Nobody knows where the region really went: such a pair is trained by the
    distillation teacher's targets only (``DataConfig.unlabelled_prob``), which teaches matching
    on whatever the frames show rather than on the annotated targets alone.

    Returns:
        the pair with both boxes replaced, or None if no region passed the box filter.
    """
    H, W = pair.image_z.shape[:2]
    gw, gh = xyxy_to_cxywh(pair.box_z)[2:]
    for _ in range(tries):
        s, a = rng.uniform(0.6, 1.4), np.exp(rng.uniform(-np.log(1.5), np.log(1.5)))
        w, h = min(gw * s * a, 0.9 * W), min(gh * s / a, 0.9 * H)
        x0, y0 = rng.uniform(0, W - w), rng.uniform(0, H - h)
        if w >= 8 and h >= 8 and box_passes(np.array([x0, y0, w, h]), pair.image_z.shape, params):
            box = xywh_to_xyxy(np.array([x0, y0, w, h]))
            return replace(pair, box_z=box, box_x=box.copy())
    return None
