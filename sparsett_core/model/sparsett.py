"""The SparseTT network: backbone -> feature adjusters -> transformer neck -> double head.

Inference API (both run under ``torch.inference_mode``)::

    feats = model.template(z)              # z (B, 3, 127, 127) normalised RGB -> TemplateFeatures
    score, boxes = model.track(x, feats)   # x (B, 3, 289, 289) -> (B, 361) fused prob, (B, 361, 4) xyxy

Training: ``model(z, x)`` / ``model.forward_train(z, x)`` -> dict of logits and boxes.
Stages for debugging / checks: ``model.backbone``, ``model.adjust_z``, ``model.adjust_x``,
``model.neck.encode``, ``model.neck.decode``, ``model.neck`` (decode + concat), ``model.head``;
:meth:`SparseTT.forward_debug` returns every intermediate of one pair.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

import torch
from torch import nn

from sparsett_core.config import ModelConfig
from sparsett_core.model.backbones import build_backbone
from sparsett_core.model.head import ConvBN, DoubleHead, fuse_scores
from sparsett_core.model.neck import MultiheadAttention, TemplateFeatures, TransformerNeck


class SparseTT(nn.Module):
    """SparseTT tracker network.

    Args:
        config: architecture; the default is the paper model (Swin-T, k=32, 1024-wide head).
    """

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__()
        self.config = config = config if config is not None else ModelConfig()
        self.backbone = build_backbone(config)
        c_in, c = config.backbone_channels, config.neck_channels
        self.adjust_z = ConvBN(c_in, c, 1, conv_bias=True, bn_eps=1e-3)
        self.adjust_x = ConvBN(c_in, c, 1, conv_bias=True, bn_eps=1e-3)
        self.neck = TransformerNeck(
            dim=c,
            heads=config.neck_heads,
            ffn=config.neck_ffn_channels,
            num_encoder_layers=config.num_encoder_layers,
            num_decoder_layers=config.num_decoder_layers,
            z_feat=config.z_feat,
            x_feat=config.x_feat,
            top_k=config.top_k,
            dropout=config.dropout,
        )
        self.head = DoubleHead(
            in_channels=2 * c,
            mid_channels=config.head_channels,
            num_convs=config.head_num_convs,
            score_size=config.x_feat,
            stride=config.total_stride,
            x_size=config.x_size,
            offset=config.grid_offset,
        )

    # ------------------------------------------------------------------ properties
    @property
    def device(self) -> torch.device:
        """Device of the parameters."""
        return next(self.parameters()).device

    @property
    def default_preset(self) -> str:
        """Name of the tracker preset used by ``Tracker(model)`` without a preset (from the config)."""
        return self.config.default_preset

    def use_partition_topk(self, on: bool) -> None:
        """Allow (True, the default) or forbid the CPU-only ``numpy.partition`` top-k of the sparse
        attention (:func:`sparsett_core.model.neck.topk_softmax`); False runs ``torch.topk`` as on CUDA."""
        for m in self.neck.modules():
            if isinstance(m, MultiheadAttention):
                m.partition_topk = on

    @contextlib.contextmanager
    def torch_topk(self) -> Iterator[None]:
        """Within: the sparse attention uses ``torch.topk`` (the code path of CUDA and of an ONNX
        export); the previous setting of every attention module is restored afterwards."""
        modules = [m for m in self.neck.modules() if isinstance(m, MultiheadAttention)]
        before = [m.partition_topk for m in modules]
        self.use_partition_topk(False)
        try:
            yield
        finally:
            for m, on in zip(modules, before):
                m.partition_topk = on

    # ------------------------------------------------------------------ inference
    def _check(self, img: torch.Tensor, size: int, name: str) -> None:
        if img.ndim != 4 or img.shape[1] != 3 or img.shape[2] != size or img.shape[3] != size:
            raise ValueError(f"{name} must have shape (B, 3, {size}, {size}), got {tuple(img.shape)}")

    @torch.inference_mode()
    def template(self, z: torch.Tensor) -> TemplateFeatures:
        """Encode the template once per target.

        Args:
            z: (B, 3, 127, 127) float32 normalised RGB.
        Returns:
            TemplateFeatures: ``enc`` (B, 64, 256) and the decoder's cross-attention K/V.
        """
        self._check(z, self.config.z_size, "z")
        return self.neck.encode_template(self.adjust_z(self.backbone(z)))

    @torch.inference_mode()
    def track(self, x: torch.Tensor, feats: TemplateFeatures) -> tuple[torch.Tensor, torch.Tensor]:
        """One track step against a cached template.

        Args:
            x: (B, 3, 289, 289) float32 normalised RGB search crop.
            feats: :meth:`template` output (same batch size).
        Returns:
            score (B, 361) fused probability, boxes (B, 361, 4) xyxy in crop pixels
            (index ``i * 19 + j`` = grid point ``(16 j, 16 i)``).
        """
        self._check(x, self.config.x_size, "x")
        f_x = self.adjust_x(self.backbone(x))
        out = self.head(self.neck(f_x, feats), with_bbox_fc=False)
        return fuse_scores(out["cls_fc"].float(), out["cls_conv"].float())[..., 0], out["bbox_conv"]

    # ------------------------------------------------------------------ training / debugging
    def forward_train(self, z: torch.Tensor, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Training forward (autograd on).

        Args:
            z: (B, 3, 127, 127); x: (B, 3, 289, 289) normalised RGB.
        Returns:
            dict ``cls_fc`` (B, 361, 1) logits, ``bbox_fc`` (B, 361, 4), ``cls_conv`` (B, 361, 1)
            logits, ``bbox_conv`` (B, 361, 4); boxes xyxy crop pixels.
        """
        feats = self.neck.encode_template(self.adjust_z(self.backbone(z)))
        return self.head(self.neck(self.adjust_x(self.backbone(x)), feats))

    def forward(self, z: torch.Tensor, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Same as :meth:`forward_train`."""
        return self.forward_train(z, x)

    @torch.no_grad()
    def forward_debug(self, z: torch.Tensor, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every intermediate of one template/search pair, named as in the reference fixture.

        Returns:
            dict f_z_backbone (B,384,8,8), f_x_backbone (B,384,19,19), f_z_adj, f_x_adj (B,256,..),
            enc_output (64,B,256) (sequence-first as the official code), dec_output (B,256,19,19),
            neck_output (B,512,19,19), cls_fc, bbox_fc, cls_conv, bbox_conv, score (B,361,1), box.
        """
        out = {"f_z_backbone": self.backbone(z), "f_x_backbone": self.backbone(x)}
        out["f_z_adj"] = self.adjust_z(out["f_z_backbone"])
        out["f_x_adj"] = self.adjust_x(out["f_x_backbone"])
        feats = self.neck.encode_template(out["f_z_adj"])
        out["enc_output"] = feats.enc.transpose(0, 1)
        out["dec_output"] = self.neck.decode(out["f_x_adj"], feats)
        out["neck_output"] = torch.cat([out["dec_output"], out["f_x_adj"]], dim=1)
        out.update(self.head(out["neck_output"]))
        out["score"] = fuse_scores(out["cls_fc"], out["cls_conv"])
        out["box"] = out["bbox_conv"]
        return out

    # ------------------------------------------------------------------ checkpoints
    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "cpu") -> "SparseTT":
        """Load any supported checkpoint, in eval mode on ``device``.

        Accepts the official SparseTT checkpoints (``{'model_state_dict': ...}``), our own
        checkpoints (``save_checkpoint``; the stored config picks the variant) and the Microsoft
        Swin-T ImageNet file (backbone only; the rest keeps its random init, for training).

        Raises:
            CheckpointError: missing, truncated or foreign file, or keys that do not match.
        """
        from sparsett_core.model.checkpoint import load_model

        return load_model(path, device=device)
