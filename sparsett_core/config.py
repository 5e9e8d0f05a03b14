"""Typed, frozen model configuration of SparseTT.

The defaults are the paper's model (Swin-T backbone cut after stage 2, 256-wide transformer neck
with top-k 32 sparse decoder self-attention, 1024-wide double head), i.e. what the official
checkpoints contain. Another backbone is added by registering a builder under a new ``variant``
name in :mod:`sparsett_core.model.backbones` and choosing the neck/head widths here.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

INPUT_FORMATS = ("imagenet_rgb", "bgr255")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a SparseTT network (all sizes in pixels / channels).

    Attributes:
        variant: backbone family, a key of the backbone factory ("swin_t" = the paper model).
        backbone_channels: channels of the backbone output map (384 for Swin-T stage 2).
        swin_embed_dim / swin_depths / swin_num_heads / swin_window: Swin-T hyper-parameters;
            ``swin_depths`` lists all four official stages so that the stochastic-depth schedule
            matches the official one, but only the first three stages are built.
        drop_path_rate: stochastic depth of the backbone (training only).
        neck_channels: transformer width (the adjusters map backbone_channels -> neck_channels).
        neck_heads, neck_ffn_channels: attention heads and FFN hidden width of the neck.
        num_encoder_layers, num_decoder_layers: transformer depth on the template / search tokens.
        top_k: keys kept per (head, query) in the decoder self-attention (None = dense).
        dropout: neck dropout probability (applies in train mode only).
        head_channels: width of the double head branches (1024 in the paper).
        head_num_convs: bottlenecks in the conv branch.
        z_size, x_size: template / search crop sides; z_feat, x_feat: their feature map sides.
        total_stride: backbone stride (pixels per feature cell).
        default_preset: tracker preset used when ``Tracker(model)`` gets none.
        input_format: what the backbone takes: "imagenet_rgb" (RGB normalised with ImageNet mean
            and std, the official models) or "bgr255" (BGR pixels as floats in [0, 255], the
            NanoTrack backbone of SparseTT-Lite v2; the tracker then has no normalisation step).
        score_offset: crop pixel of score-map point 0 (points at ``offset + total_stride * j``);
            None = centred on the crop, ``(x_size - 1 - (x_feat - 1) * total_stride) // 2`` (0 for
            289 / 19; SparseTT-Lite v2 uses -1, NanoTrack's grid, so that its teacher's maps align).
    """

    variant: str = "swin_t"
    backbone_channels: int = 384
    swin_embed_dim: int = 96
    swin_depths: tuple[int, ...] = (2, 2, 6, 2)
    swin_num_heads: tuple[int, ...] = (3, 6, 12, 24)
    swin_window: int = 7
    drop_path_rate: float = 0.2
    neck_channels: int = 256
    neck_heads: int = 8
    neck_ffn_channels: int = 2048
    num_encoder_layers: int = 2
    num_decoder_layers: int = 2
    top_k: int | None = 32
    dropout: float = 0.1
    head_channels: int = 1024
    head_num_convs: int = 7
    z_size: int = 127
    x_size: int = 289
    z_feat: int = 8
    x_feat: int = 19
    total_stride: int = 16
    default_preset: str = "got10k"
    input_format: str = "imagenet_rgb"
    score_offset: int | None = None

    def __post_init__(self) -> None:
        if self.input_format not in INPUT_FORMATS:
            raise ValueError(f"input_format must be one of {INPUT_FORMATS}, got {self.input_format!r}")
        if self.neck_channels % self.neck_heads:
            raise ValueError(
                f"neck_channels={self.neck_channels} must be divisible by neck_heads={self.neck_heads}"
            )
        if self.top_k is not None and not 0 < self.top_k <= self.x_feat**2:
            raise ValueError(f"top_k={self.top_k} must be in [1, {self.x_feat ** 2}] or None")
        if self.neck_channels % 4:
            raise ValueError("neck_channels must be divisible by 4 (2-D position encoding)")

    @property
    def grid_offset(self) -> int:
        """Crop pixel of score-map point 0 (``score_offset`` or the centred default)."""
        if self.score_offset is not None:
            return self.score_offset
        return (self.x_size - 1 - (self.x_feat - 1) * self.total_stride) // 2

    @property
    def score_size(self) -> int:
        """Side of the score map (= x_feat)."""
        return self.x_feat

    def to_dict(self) -> dict[str, Any]:
        """Plain-type dict (tuples become lists) for checkpoints and YAML."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "ModelConfig":
        """Build a config from a mapping; an unknown key is an error.

        Raises:
            ValueError: a key is not a ModelConfig field (the message lists the valid ones).
        """
        names = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise ValueError(f"unknown ModelConfig keys {unknown}; valid keys: {sorted(names)}")
        kw = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        return cls(**kw)

    def replace(self, **changes: Any) -> "ModelConfig":
        """A copy with some fields changed (strict: unknown names are an error)."""
        return ModelConfig.from_dict({**dataclasses.asdict(self), **changes})


__all__ = ["ModelConfig"]
