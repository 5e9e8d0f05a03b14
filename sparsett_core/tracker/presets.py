"""Tracker hyper-parameter presets of the official SparseTT test configs.

Values from ``experiments/sparsett/test/<benchmark>/sparsett_swin_<benchmark>.yaml`` of the official
repository (docs/sparsett_reference.md section 3). UAV123 / OTB2015 values come from the official
random-search HPO.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping


@dataclass(frozen=True)
class TrackerPreset:
    """SiamFC++ post-processing parameters (frozen: a misspelt field is an error).

    Attributes:
        name: preset name (informational).
        test_lr: size update rate, multiplied by penalty * score of the chosen location.
        window_influence: weight of the cosine window in the penalised score.
        penalty_k: scale / aspect-ratio change penalty.
        context_amount: context added around the target for the crops (0.5).
        z_size / x_size: template / search crop sides (127 / 289).
        score_size / total_stride: score map side and its stride (19 / 16).
        min_w / min_h: smallest box size after clipping (pixels).
    """

    name: str = "custom"
    # --- post-processing (tuned per benchmark)
    test_lr: float = 0.95
    window_influence: float = 0.21
    penalty_k: float = 0.04
    # --- cropping (fixed by the model)
    context_amount: float = 0.5
    z_size: int = 127
    x_size: int = 289
    score_size: int = 19
    total_stride: int = 16
    # --- clipping
    min_w: float = 10.0
    min_h: float = 10.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.window_influence <= 1.0:
            raise ValueError(f"window_influence must be in [0, 1], got {self.window_influence}")
        if not 0.0 <= self.test_lr <= 1.0:
            raise ValueError(f"test_lr must be in [0, 1], got {self.test_lr}")
        if self.penalty_k < 0:
            raise ValueError(f"penalty_k must be >= 0, got {self.penalty_k}")

    def replace(self, **changes: Any) -> "TrackerPreset":
        """A copy with some fields changed (unknown names are an error)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "TrackerPreset":
        """Strict construction from a mapping (unknown keys raise ValueError)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown TrackerPreset keys {unknown}; valid keys: {sorted(names)}")
        return cls(**values)


def _presets() -> dict[str, TrackerPreset]:
    return {
        # GOT-10k model (GOT-10k-only training)
        "got10k": TrackerPreset("got10k", test_lr=0.95, window_influence=0.21, penalty_k=0.04),
        # fulldata model
        "lasot": TrackerPreset("lasot", test_lr=0.95, window_influence=0.21, penalty_k=0.04),
        "trackingnet": TrackerPreset("trackingnet", test_lr=0.95, window_influence=0.21, penalty_k=0.04),
        # fulldata model, HPO-tuned values
        "uav123": TrackerPreset("uav123", test_lr=0.7364, window_influence=0.2398, penalty_k=0.0734),
        "otb2015": TrackerPreset("otb2015", test_lr=0.626, window_influence=0.2549, penalty_k=0.053),
        # SparseTT-Lite (the shipped default weights): the centre of a 27-point grid on the four dev
        # sequences (docs/lite.md). A strong size penalty and a slow size update keep the box's
        # aspect ratio, which the small model estimates poorly for thin targets.
        "lite": TrackerPreset("lite", test_lr=0.25, window_influence=0.3, penalty_k=0.25),
        # SparseTT-Lite v2 (255 search crop, 16x16 map): tuned on the held-out validation (docs/lite.md)
        "lite_v2": TrackerPreset("lite_v2", test_lr=0.5, window_influence=0.3, penalty_k=0.05, x_size=255,
                                 score_size=16),
    }


def preset_names() -> list[str]:
    """Names accepted by :func:`get_preset`."""
    return sorted(_presets())


def get_preset(preset: str | TrackerPreset) -> TrackerPreset:
    """A preset by name (or the given TrackerPreset itself).

    Raises:
        ValueError: unknown name (the message lists the known ones).
    """
    if isinstance(preset, TrackerPreset):
        return preset
    presets = _presets()
    if preset not in presets:
        raise ValueError(f"unknown tracker preset {preset!r}; known presets: {sorted(presets)}")
    return presets[preset]
