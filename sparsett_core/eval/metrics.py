"""Tracking metrics as pure functions over N x 4 box arrays, as the trusted toolkits compute them.

Box convention: rows ``(x, y, w, h)``, ``x, y`` the top-left corner, in pixels, float64.

* Success (OPE, pytracking ``extract_results`` / OTB / LaSOT toolkit): IoU per frame, a frame
  succeeds at threshold t when IoU > t; the success curve is taken at the 21 thresholds
  0, 0.05, ..., 1 and its mean is the AUC (area under the success curve).
* Precision: centre distance (centres ``x + (w - 1) / 2``) <= t pixels, curve over t = 0..50,
  the score is the value at 20 px.
* Normalised precision (pytracking / LaSOT definition): centres divided by the ground-truth
  ``w, h`` before the distance, curve over 0, 0.01, ..., 0.5, the score is the value at 0.2.
* GOT-10k AO / SR (got10k toolkit ``rect_iou`` + ``ExperimentGOT10k.report``): IoU of frames 2..N
  (first frame excluded) where the target is present, boxes clipped to the image when its size
  is known; AO = mean IoU, SR50 / SR75 = fraction with IoU > 0.5 / 0.75. Over a dataset the
  IoUs of all sequences are concatenated first (frame-weighted), as the toolkit does.

Absent-target ground-truth rows (NaN, or w <= 0 or h <= 0 as in LaSOT / GOT-10k) follow
pytracking's ``calc_seq_err_robust``:

* ``protocol="otb"`` (also GOT-10k, TrackingNet): absent frames are left out of the success and
  precision curves (numerator and denominator).
* ``protocol="uav"`` (UAV123): absent frames stay in the denominator; they count as failures for
  success and as hits for (normalised) precision (centre error -1), as pytracking and the UAV123
  toolkit do.
* ``protocol="lasot"``: absent frames (zero-size ground truth or ``target_visible`` false from
  ``full_occlusion.txt`` / ``out_of_view.txt``) stay in the denominator and count as failures for
  success and precision; for normalised precision frames flagged invisible fail, while zero-size
  rows on frames not flagged count as hits (pytracking's order of assignments).

Two deliberate differences from pytracking, both only on absent frames of the ``otb`` protocol:
pytracking raises on NaN ground truth outside UAV123 (here NaN rows are absent frames), and it
counts absent frames as normalised-precision hits while excluding them from the denominator
(which can push the score above 1); here they are left out of both.

Tracker result rows with w or h == 0 are replaced by the previous row (pytracking); NaN or
negative sizes are an error. The first frame's result is replaced by the ground truth for the
success/precision curves (all toolkits treat frame 1 as given).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Literal, Sequence

import numpy as np

Protocol = Literal["otb", "uav", "lasot", "got10k", "trackingnet"]
PROTOCOLS: tuple[str, ...] = ("otb", "uav", "lasot", "got10k", "trackingnet")

# pytracking: torch.arange(0.0, 1.0 + 0.05, 0.05, dtype=torch.float64); these are its exact values
# (they differ from numpy's 0.05 * i in the last bit at 0.65 and 0.75).
OVERLAP_THRESHOLDS = np.array([
    0.0, 0.05, 0.1, 0.15000000000000002, 0.2, 0.25, 0.30000000000000004, 0.35000000000000003, 0.4,
    0.45, 0.5, 0.55, 0.6000000000000001, 0.6500000000000001, 0.7000000000000001, 0.7500000000000001,
    0.8, 0.8500000000000001, 0.9, 0.9500000000000001, 1.0], dtype=np.float64)
CENTER_THRESHOLDS = np.arange(0, 51, dtype=np.float64)            # pixels, precision score at index 20
NORM_CENTER_THRESHOLDS = np.arange(0, 51, dtype=np.float64) / 100.0  # normalised, score at index 20 (0.2)
PRECISION_INDEX = 20


def _as_boxes(boxes: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"{name} must be an (N, 4) array of x,y,w,h rows, got shape {arr.shape}")
    return arr


def iou(boxes1: np.ndarray, boxes2: np.ndarray) -> np.ndarray:
    """Intersection over union of paired boxes (pytracking ``calc_iou_overlap``).

    Args:
        boxes1, boxes2: (N, 4) x,y,w,h.

    Returns:
        (N,) IoU; NaN where both boxes have zero area.
    """
    a, b = _as_boxes(boxes1, "boxes1"), _as_boxes(boxes2, "boxes2")
    tl = np.maximum(a[:, :2], b[:, :2])
    br = np.minimum(a[:, :2] + a[:, 2:], b[:, :2] + b[:, 2:])
    inter = np.clip(br - tl, 0.0, None).prod(axis=1)
    union = a[:, 2:].prod(axis=1) + b[:, 2:].prod(axis=1) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return inter / union


def iou_got10k(boxes1: np.ndarray, boxes2: np.ndarray, bound: tuple[float, float] | None = None) -> np.ndarray:
    """IoU as got10k's ``rect_iou``: optional clipping to the image, eps in the union, clip to [0, 1].

    Args:
        boxes1, boxes2: (N, 4) x,y,w,h (not modified).
        bound: image (width, height); both box sets are clipped to it first, in got10k's order
            (x, y to [0, bound], then w, h to [0, bound - x]).

    Returns:
        (N,) IoU in [0, 1].
    """
    a = _as_boxes(boxes1, "boxes1").copy()
    b = _as_boxes(boxes2, "boxes2").copy()
    if bound is not None:
        for r in (a, b):
            r[:, 0] = np.clip(r[:, 0], 0, bound[0])
            r[:, 1] = np.clip(r[:, 1], 0, bound[1])
            r[:, 2] = np.clip(r[:, 2], 0, bound[0] - r[:, 0])
            r[:, 3] = np.clip(r[:, 3], 0, bound[1] - r[:, 1])
    x1 = np.maximum(a[:, 0], b[:, 0])
    y1 = np.maximum(a[:, 1], b[:, 1])
    x2 = np.minimum(a[:, 0] + a[:, 2], b[:, 0] + b[:, 2])
    y2 = np.minimum(a[:, 1] + a[:, 3], b[:, 1] + b[:, 3])
    inter = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    union = a[:, 2] * a[:, 3] + b[:, 2] * b[:, 3] - inter
    return np.clip(inter / (union + np.finfo(float).eps), 0.0, 1.0)


def center_error(boxes1: np.ndarray, boxes2: np.ndarray, *, normalized: bool = False) -> np.ndarray:
    """Distance between box centres ``(x + (w - 1) / 2, y + (h - 1) / 2)``.

    Args:
        boxes1: (N, 4) results; boxes2: (N, 4) ground truth.
        normalized: divide both centres by the ground-truth ``w, h`` first (pytracking/LaSOT).

    Returns:
        (N,) distances (pixels, or ground-truth-size units when normalized).
    """
    a, b = _as_boxes(boxes1, "boxes1"), _as_boxes(boxes2, "boxes2")
    ca = a[:, :2] + 0.5 * (a[:, 2:] - 1.0)
    cb = b[:, :2] + 0.5 * (b[:, 2:] - 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):  # zero-size ground truth: inf/NaN, masked by callers
        if normalized:
            ca = ca / b[:, 2:]
            cb = cb / b[:, 2:]
        return np.sqrt(((ca - cb) ** 2).sum(axis=1))


def valid_groundtruth(groundtruth: np.ndarray) -> np.ndarray:
    """(N,) bool: rows with a present target (finite, w > 0 and h > 0)."""
    gt = _as_boxes(groundtruth, "groundtruth")
    with np.errstate(invalid="ignore"):
        return np.isfinite(gt).all(axis=1) & (gt[:, 2] > 0) & (gt[:, 3] > 0)


@dataclass(frozen=True, eq=False)
class SequenceScore:
    """Scores of one sequence.

    Attributes:
        success_curve: (21,) success rate at `OVERLAP_THRESHOLDS`.
        precision_curve: (51,) at `CENTER_THRESHOLDS` pixels.
        norm_precision_curve: (51,) at `NORM_CENTER_THRESHOLDS`.
        got10k_ious: (M,) IoUs of the frames GOT-10k AO/SR count (present, first frame excluded).
        num_frames: frames in the sequence.
    """

    success_curve: np.ndarray
    precision_curve: np.ndarray
    norm_precision_curve: np.ndarray
    got10k_ious: np.ndarray
    num_frames: int

    @property
    def success_auc(self) -> float:
        return float(self.success_curve.mean())

    @property
    def precision(self) -> float:
        return float(self.precision_curve[PRECISION_INDEX])

    @property
    def norm_precision(self) -> float:
        return float(self.norm_precision_curve[PRECISION_INDEX])

    @property
    def ao(self) -> float:
        return float(self.got10k_ious.mean()) if self.got10k_ious.size else float("nan")

    @property
    def sr50(self) -> float:
        return float((self.got10k_ious > 0.5).mean()) if self.got10k_ious.size else float("nan")

    @property
    def sr75(self) -> float:
        return float((self.got10k_ious > 0.75).mean()) if self.got10k_ious.size else float("nan")

    def metrics(self) -> dict[str, float]:
        """The fixed metric keys (fractions in [0, 1]; NaN where undefined)."""
        return {"success_auc": self.success_auc, "precision": self.precision,
                "norm_precision": self.norm_precision, "ao": self.ao, "sr50": self.sr50, "sr75": self.sr75}


def _fix_results(results: np.ndarray, groundtruth: np.ndarray) -> np.ndarray:
    """pytracking: reject NaN / negative sizes; zero-size rows repeat the previous row."""
    pred = results.copy()
    if np.isnan(pred).any():
        raise ValueError("tracker results contain NaN values; every frame needs a box")
    if (pred[:, 2:] < 0).any():
        row = int(np.nonzero((pred[:, 2:] < 0).any(axis=1))[0][0])
        raise ValueError(f"tracker results have a negative width/height in row {row + 1}")
    gt_nan = np.isnan(groundtruth).any(axis=1)
    for i in range(1, pred.shape[0]):
        if (pred[i, 2:] == 0).any() and not gt_nan[i]:
            pred[i] = pred[i - 1]
    return pred


def score_sequence(results: np.ndarray, groundtruth: np.ndarray, *, protocol: Protocol = "otb",
                   target_visible: np.ndarray | None = None, present: np.ndarray | None = None,
                   bound: tuple[float, float] | None = None) -> SequenceScore:
    """Score one sequence.

    Args:
        results: (N, 4) tracker boxes x,y,w,h.
        groundtruth: (N, 4) ground truth; absent-target rows may be NaN or have w/h <= 0.
        protocol: "otb" (OTB2015, GOT-10k, TrackingNet), "uav" (UAV123) or "lasot"; see the module
            docstring for how each treats absent frames.
        target_visible: (N,) bool, LaSOT's ``not (full_occlusion or out_of_view)``; optional.
        present: (N,) bool, frames GOT-10k AO/SR count (GOT-10k: ``cover.label > 0``); default:
            valid ground-truth rows (and `target_visible` when given).
        bound: image (width, height) for GOT-10k's clipped IoU; None: no clipping.

    Returns:
        The sequence's curves and GOT-10k IoUs.

    Raises:
        ValueError: shape mismatch, NaN / negative result boxes, or no frame with a target.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    gt = _as_boxes(groundtruth, "groundtruth")
    res = _as_boxes(results, "results")
    if res.shape != gt.shape:
        raise ValueError(f"results have {res.shape[0]} rows but the ground truth has {gt.shape[0]}")
    n = gt.shape[0]
    visible = None if target_visible is None else np.asarray(target_visible, dtype=bool).reshape(-1)
    if visible is not None and visible.shape[0] != n:
        raise ValueError(f"target_visible has {visible.shape[0]} entries for {n} frames")

    pred = _fix_results(res, gt)
    pred[0] = gt[0]
    valid = valid_groundtruth(gt)
    if visible is not None:
        valid &= visible

    overlap = iou(pred, gt)
    err = center_error(pred, gt)
    err_norm = center_error(pred, gt, normalized=True)
    overlap[~valid] = -1.0
    if protocol == "uav":
        err[~valid] = -1.0
        err_norm[~valid] = -1.0
    elif protocol == "lasot":
        err[~valid] = np.inf
        err_norm[~valid] = -1.0
        if visible is not None:
            err[~visible] = np.inf
            err_norm[~visible] = np.inf
    else:
        err[~valid] = np.inf
        err_norm[~valid] = np.inf
    if np.isnan(overlap).any():
        raise ValueError("IoU is undefined (zero-area result and ground truth in the same frame)")
    denominator = n if protocol in ("uav", "lasot") else int(valid.sum())
    if denominator <= 0:
        raise ValueError("no frame with a present target: nothing to score")

    success = (overlap[:, None] > OVERLAP_THRESHOLDS[None, :]).sum(axis=0) / denominator
    precision = (err[:, None] <= CENTER_THRESHOLDS[None, :]).sum(axis=0) / denominator
    norm_precision = (err_norm[:, None] <= NORM_CENTER_THRESHOLDS[None, :]).sum(axis=0) / denominator

    keep = valid if present is None else np.asarray(present, dtype=bool).reshape(-1) & valid_groundtruth(gt)
    ious = iou_got10k(res[1:], gt[1:], bound=bound)[keep[1:]] if n > 1 else np.zeros(0)
    return SequenceScore(success_curve=success, precision_curve=precision, norm_precision_curve=norm_precision,
                         got10k_ious=ious, num_frames=n)


@dataclass(frozen=True, eq=False)
class OverallScore:
    """Dataset-level scores: curves averaged over sequences, GOT-10k IoUs concatenated."""

    success_curve: np.ndarray
    precision_curve: np.ndarray
    norm_precision_curve: np.ndarray
    got10k_ious: np.ndarray
    num_sequences: int
    num_frames: int

    def metrics(self) -> dict[str, float]:
        """The fixed metric keys (fractions in [0, 1]; NaN where undefined)."""
        ious = self.got10k_ious
        return {
            "success_auc": float(self.success_curve.mean()),
            "precision": float(self.precision_curve[PRECISION_INDEX]),
            "norm_precision": float(self.norm_precision_curve[PRECISION_INDEX]),
            "ao": float(ious.mean()) if ious.size else float("nan"),
            "sr50": float((ious > 0.5).mean()) if ious.size else float("nan"),
            "sr75": float((ious > 0.75).mean()) if ious.size else float("nan"),
        }


def aggregate(scores: Iterable[SequenceScore]) -> OverallScore:
    """Combine sequence scores: mean curves over sequences (pytracking, OTB, LaSOT toolkits) and
    concatenated GOT-10k IoUs (got10k toolkit)."""
    scores = list(scores)
    if not scores:
        raise ValueError("no sequences to aggregate")
    return OverallScore(
        success_curve=np.mean([s.success_curve for s in scores], axis=0),
        precision_curve=np.mean([s.precision_curve for s in scores], axis=0),
        norm_precision_curve=np.mean([s.norm_precision_curve for s in scores], axis=0),
        got10k_ious=np.concatenate([s.got10k_ious for s in scores]),
        num_sequences=len(scores),
        num_frames=int(sum(s.num_frames for s in scores)),
    )


METRIC_KEYS: Sequence[str] = ("success_auc", "precision", "norm_precision", "ao", "sr50", "sr75")
