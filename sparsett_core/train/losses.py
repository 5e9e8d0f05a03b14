"""Losses of the double head: sigmoid focal loss and -log IoU loss (official video_analyst).

Both return *sums*; the caller divides by the number of positive grid points of the whole
(global) batch, ``max(#positives, 1)``, so that a batch split over ranks or accumulation steps
gives the same loss and gradients as one big batch.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

TINY = float(np.finfo(np.float32).tiny)


def upcast(t: torch.Tensor) -> torch.Tensor:
    """float16/bfloat16 -> float32 (losses are computed at least in float32); others unchanged."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def sigmoid_focal_loss_sum(logits: torch.Tensor, labels: torch.Tensor, alpha: float = 0.75,
                           gamma: float = 2.0, quality: torch.Tensor | None = None) -> torch.Tensor:
    """Summed sigmoid focal loss over non-ignored points.

    ``loss = alpha_t * |t - p| ** gamma * BCE(logit, t)`` with ``alpha_t = alpha`` on positives
    and ``1 - alpha`` on negatives; points labelled -1 are ignored. With hard targets ``t`` in
    {0, 1}, ``|t - p| = 1 - p_t``: the focal loss of the official code. ``quality`` replaces the
    positives' target 1 by a soft one (quality focal loss, Li et al. 2020).

    Args:
        logits: (B, N, 1) classification logits.
        labels: (B, N, 1) in {1, 0, -1}.
        quality: optional (B, N, 1) targets in [0, 1] for the positives (e.g. the IoU of the
            predicted box; no gradient flows into it).

    Returns:
        scalar tensor (sum, not normalised), float32 or the logits' wider dtype.
    """
    logits = upcast(logits)
    valid = (labels >= 0).to(logits.dtype)
    pos = labels.clamp(min=0).to(logits.dtype)
    t = pos if quality is None else pos * quality.detach().to(logits.dtype)
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, t, reduction="none")
    loss = ce * (t - p).abs() ** gamma
    alpha_t = alpha * pos + (1 - alpha) * (1 - pos)
    return (alpha_t * loss * valid).sum()


def box_iou_plus1(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """IoU of corner boxes with "+1" areas (``(x1 - x0 + 1) * (y1 - y0 + 1)``).

    Args:
        pred, gt: (..., 4) boxes x0, y0, x1, y1.

    Returns:
        (...) IoU, clamped at >= 0.
    """
    pred = upcast(pred)
    gt = gt.to(pred.dtype)
    area_g = (gt[..., 2] - gt[..., 0] + 1).abs() * (gt[..., 3] - gt[..., 1] + 1).abs()
    area_p = (pred[..., 2] - pred[..., 0] + 1).abs() * (pred[..., 3] - pred[..., 1] + 1).abs()
    iw = torch.minimum(pred[..., 2], gt[..., 2]) - torch.maximum(pred[..., 0], gt[..., 0]) + 1
    ih = torch.minimum(pred[..., 3], gt[..., 3]) - torch.maximum(pred[..., 1], gt[..., 1]) + 1
    inter = iw.clamp(min=0) * ih.clamp(min=0)
    return (inter / (area_g + area_p - inter)).clamp(min=0)


def iou_loss_sum(pred: torch.Tensor, gt: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed ``-log(max(IoU, tiny))`` over positive points (label 1).

    Args:
        pred, gt: (B, N, 4) corner boxes in crop pixels.
        labels: (B, N, 1) classification targets.

    Returns:
        (loss sum, IoU sum) over positives, scalar tensors.
    """
    iou = box_iou_plus1(pred, gt)
    mask = (labels[..., 0] == 1).to(iou.dtype)
    loss = -torch.log(iou.clamp(min=TINY))
    return (loss * mask).sum(), (iou.detach() * mask).sum()


@dataclass(frozen=True)
class LossWeights:
    """Weights of the four terms and focal parameters (official: 1.4 / 0.6 / 0.5 / 2.0)."""

    cls_fc: float = 1.4
    reg_fc: float = 0.6
    cls_conv: float = 0.5
    reg_conv: float = 2.0
    focal_alpha: float = 0.75
    focal_gamma: float = 2.0
    # IoU-aware score: the positives of cls_conv learn the IoU of bbox_conv's box at their point
    # instead of 1, so that the fused score ranks well-fitting boxes first (not in the paper).
    iou_aware: bool = False


def sparsett_loss(outputs: dict[str, torch.Tensor], cls_gt: torch.Tensor, box_gt: torch.Tensor,
                  normaliser: torch.Tensor | float, weights: LossWeights) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Weighted sum of the four losses of the double head.

    Args:
        outputs: model training outputs ``cls_fc`` (B,N,1), ``bbox_fc`` (B,N,4), ``cls_conv``
            (B,N,1), ``bbox_conv`` (B,N,4).
        cls_gt: (B, N, 1) targets in {1, 0, -1}; box_gt: (B, N, 4) corner boxes.
        normaliser: ``max(#positives, 1)`` over the global batch.
        weights: loss weights.

    Returns:
        total loss (scalar) and detached per-term values (weighted) plus mean IoUs.
    """
    a, g = weights.focal_alpha, weights.focal_gamma
    quality = box_iou_plus1(outputs["bbox_conv"], box_gt)[..., None] if weights.iou_aware else None
    cls_fc = sigmoid_focal_loss_sum(outputs["cls_fc"], cls_gt, a, g) / normaliser * weights.cls_fc
    cls_conv = sigmoid_focal_loss_sum(outputs["cls_conv"], cls_gt, a, g, quality) / normaliser * weights.cls_conv
    reg_fc, iou_fc = iou_loss_sum(outputs["bbox_fc"], box_gt, cls_gt)
    reg_conv, iou_conv = iou_loss_sum(outputs["bbox_conv"], box_gt, cls_gt)
    reg_fc = reg_fc / normaliser * weights.reg_fc
    reg_conv = reg_conv / normaliser * weights.reg_conv
    total = cls_fc + reg_fc + cls_conv + reg_conv
    stats = {"loss": total, "cls_fc": cls_fc, "reg_fc": reg_fc, "cls_conv": cls_conv, "reg_conv": reg_conv,
             "iou_fc": iou_fc / normaliser, "iou_conv": iou_conv / normaliser}
    return total, {k: v.detach() for k, v in stats.items()}
