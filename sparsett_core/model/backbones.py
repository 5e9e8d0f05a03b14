"""Backbone factory keyed by ``ModelConfig.variant``.

A backbone is an ``nn.Module`` mapping a normalised RGB image (B, 3, H, W) to a stride-16 map
(B, config.backbone_channels, ceil(H/16), ceil(W/16)) (8x8 for the 127 template, 19x19 for the 289
search crop). To add a variant (e.g. an EfficientNet-Lite0 "lite" model), write its builder and add
it to the table in :func:`backbone_builders`; :class:`~sparsett_core.model.sparsett.SparseTT` and the
checkpoint loader need no change (our checkpoints store the config, hence the variant).
"""
from __future__ import annotations

from typing import Callable

from torch import nn

from sparsett_core.config import ModelConfig
from sparsett_core.model.swin import SwinBackbone


def build_swin_t(config: ModelConfig) -> nn.Module:
    """Swin-T stages 0-2 + LayerNorm, 384 output channels (the paper model)."""
    net = SwinBackbone(
        embed_dim=config.swin_embed_dim,
        depths=config.swin_depths,
        num_heads=config.swin_num_heads,
        window=config.swin_window,
        drop_path_rate=config.drop_path_rate,
        num_stages=3,
    )
    if net.out_channels != config.backbone_channels:
        raise ValueError(
            f"swin_t gives {net.out_channels} channels but backbone_channels={config.backbone_channels}"
        )
    return net


def backbone_builders() -> dict[str, Callable[[ModelConfig], nn.Module]]:
    """Known variants -> builder (a fresh dict: callers may not mutate a shared table)."""
    from sparsett_core.model.lite import build_lite, build_lite_v2  # the SparseTT-Lite variants (model/lite.py)

    return {"swin_t": build_swin_t, "lite": build_lite, "lite_v2": build_lite_v2}


def build_backbone(config: ModelConfig) -> nn.Module:
    """Build the backbone named by ``config.variant``.

    Raises:
        ValueError: unknown variant (the message lists the known ones).
    """
    builders = backbone_builders()
    if config.variant not in builders:
        raise ValueError(f"unknown model variant {config.variant!r}; known variants: {sorted(builders)}")
    return builders[config.variant](config)
