"""Distillation from NanoTrack v2: dense soft targets for every training pair.

NanoTrack v2 (a small Siamese tracker trained on GOT-10k, LaSOT, VID, DET, YouTube-BB and COCO)
scores every point of the search crop and regresses a box there. Run on the very crops of a
training pair, those maps are targets for *every* grid point, learnt from far more videos than
this project's training sequences: where the target is, where a distractor scores high, and how
far each box edge lies. :class:`NanoTrackTeacher` runs NanoTrack v2 in the data workers: its
backbone in torch (:class:`~sparsett_core.model.mobilenetv3.MobileNetV3S16` from the state dict;
the ONNX backbone only takes 255-pixel inputs) and its head from the ONNX file that
``cv2.TrackerNano`` runs, with ONNX Runtime (``../shared/weights/nanotrack``, not bundled);
:func:`distill_loss` adds the two terms to the double head's loss.

The teacher's grid (OpenCV's ``generateGrids``): point ``(i, j)`` of its 16x16 map sits at crop
pixel ``(16 j - 1, 16 i - 1)`` for the 255 crop, and its boxes are ``point -+ (l, t, r, b)``; they
are converted to corner boxes in crop pixels, so the grid offset of the student's own map (``7 +
16 j``) does not matter. The score is the softmax of its two class logits.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .losses import iou_loss_sum, upcast


@dataclass(frozen=True)
class DistillConfig:
    """Distillation from NanoTrack v2 (off unless both ONNX paths are set).

    Attributes:
        backbone: ``nanotrackv2_state_dict.pt`` (its ``backbone.*`` tensors are used).
        head: ``nanotrack_head_sim.onnx`` (template and search features -> cls, loc).
        cls_weight: weight of the score term (BCE of the fused score against the teacher's).
        box_weight: weight of the box term (-log IoU against the teacher's box).
        box_min_score: teacher score above which a point's box is a target.
    """

    backbone: str = ""
    head: str = ""
    cls_weight: float = 1.0
    box_weight: float = 1.0
    box_min_score: float = 0.5

    @property
    def enabled(self) -> bool:
        return bool(self.backbone and self.head)

    def __post_init__(self) -> None:
        if bool(self.backbone) != bool(self.head):
            raise ValueError("distill.backbone and distill.head must be given together (NanoTrack v2's state dict "
                             "and head ONNX)")
        if self.cls_weight < 0 or self.box_weight < 0:
            raise ValueError("distill weights must be >= 0")


class NanoTrackTeacher:
    """NanoTrack v2 on uint8 BGR crops -> (score (L, 1), corner boxes (L, 4)) on its 16x16 grid.

    Args:
        config: the ONNX paths.
        x_size: the search crop side (255: NanoTrack's own; the student must use the same).
    Sessions are created lazily in the process that calls it (a DataLoader worker), one thread.
    """

    def __init__(self, config: DistillConfig, x_size: int = 255, stride: int = 16) -> None:
        for path in (config.backbone, config.head):
            if not Path(path).is_file():
                raise FileNotFoundError(f"distillation teacher file {path} not found (../shared/weights/nanotrack/onnx_v2)")
        if x_size != 255:
            raise ValueError(f"the NanoTrack teacher needs 255-pixel search crops, got x_size={x_size}")
        self.config, self.x_size, self.stride = config, x_size, stride
        self._sessions = None
        size = 16
        r = (np.arange(size) - size // 2) * stride + x_size // 2  # OpenCV generateGrids: 16 j - 1
        yy, xx = np.meshgrid(r, r, indexing="ij")
        self.points = np.stack([xx.reshape(-1), yy.reshape(-1)], axis=1).astype(np.float32)  # (256, 2)

    def _open(self):
        import onnxruntime as ort

        from sparsett_core.model.mobilenetv3 import MobileNetV3S16, load_nanotrack_backbone

        backbone = MobileNetV3S16().eval()
        load_nanotrack_backbone(backbone, self.config.backbone)
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        return backbone, ort.InferenceSession(self.config.head, so, providers=["CPUExecutionProvider"])

    def __call__(self, crop_z: np.ndarray, crop_x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """crop_z (127, 127, 3), crop_x (255, 255, 3) uint8 BGR -> score (256, 1), boxes (256, 4) float32."""
        if self._sessions is None:
            self._sessions = self._open()
        backbone, head = self._sessions
        with torch.inference_mode():
            fz, fx = (backbone(torch.from_numpy(np.ascontiguousarray(c.transpose(2, 0, 1)[None])).float()).numpy()
                      for c in (crop_z, crop_x))
        cls, loc = head.run(None, {"input1": fz, "input2": fx})
        logits = cls[0].reshape(2, -1)
        score = 1.0 / (1.0 + np.exp(logits[0] - logits[1]))  # softmax, channel 1
        ltrb = loc[0].reshape(4, -1).T
        p = self.points
        boxes = np.concatenate([p - ltrb[:, :2], p + ltrb[:, 2:]], axis=1)
        return score[:, None].astype(np.float32), boxes.astype(np.float32)


def _log_fused(l_fc: torch.Tensor, l_conv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """log s and log(1 - s) of the fused score ``s = 1 - (1 - p_fc)(1 - p_conv)`` from the two logits."""
    log_not = -F.softplus(l_fc) - F.softplus(l_conv)  # log (1 - p_fc)(1 - p_conv)
    log_s = torch.log(-torch.expm1(log_not.clamp(max=-1e-7)))
    return log_s, log_not


def distill_loss(outputs: dict[str, torch.Tensor], t_score: torch.Tensor, t_box: torch.Tensor,
                 normaliser: torch.Tensor | float, config: DistillConfig) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Teacher terms of the loss (summed like the GT terms, divided by the positives' count).

    Args:
        outputs: model training outputs (``cls_fc``, ``cls_conv`` (B, L, 1) logits; ``bbox_fc``,
            ``bbox_conv`` (B, L, 4) corner boxes in crop pixels).
        t_score: (B, L, 1) teacher scores; t_box: (B, L, 4) teacher corner boxes (crop pixels).
        normaliser: ``max(#positives, 1)`` of the global batch (as the GT terms).
    Returns:
        the weighted sum and detached parts ``dist_cls``, ``dist_box``.
    """
    log_s, log_not = _log_fused(upcast(outputs["cls_fc"]), upcast(outputs["cls_conv"]))
    t = t_score.to(log_s.dtype)
    cls = -(t * log_s + (1 - t) * log_not).sum() / normaliser * config.cls_weight
    mask = (t_score >= config.box_min_score).to(t.dtype)
    box = 0.0
    for key in ("bbox_fc", "bbox_conv"):
        loss, _ = iou_loss_sum(outputs[key], t_box, mask)  # positives: label == 1
        box = box + loss
    box = box / normaliser * config.box_weight
    total = cls + box
    return total, {"dist_cls": cls.detach(), "dist_box": torch.as_tensor(box).detach()}


__all__ = ["DistillConfig", "NanoTrackTeacher", "distill_loss"]
