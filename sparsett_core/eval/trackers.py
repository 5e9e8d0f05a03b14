"""Build a tracker by name for the CLIs: SparseTT from a checkpoint, or the CSRT baseline.

Checkpoint resolution lives in `resolve_checkpoint` only: a path, or the name ``default`` (also
used when no checkpoint is given) for the model shipped in ``sparsett_core/weights/default.pt``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import numpy as np

TRACKERS: tuple[str, ...] = ("sparsett", "csrt")


class TrackerLike(Protocol):
    """The contract every tracker follows (sparsett_core.Tracker, baselines.CSRTTracker)."""

    def init(self, frame_bgr: np.ndarray, box: tuple[float, float, float, float]) -> None: ...

    def update(self, frame_bgr: np.ndarray) -> tuple[tuple[float, float, float, float], float]: ...


def resolve_checkpoint(spec: str | os.PathLike | None) -> Path:
    """Turn the ``--checkpoint`` value into a file path.

    Args:
        spec: a checkpoint file (official ``.pkl``, Swin-T ``.pth``, or ours); ``default`` for the
            weights shipped in the package; None (option not given): the shipped weights if
            installed.

    Raises:
        FileNotFoundError: with what to pass instead.
    """
    from sparsett_core.weights import default_checkpoint_path, is_default

    if is_default(spec):
        try:
            return default_checkpoint_path()
        except FileNotFoundError as exc:
            if spec is None:
                raise FileNotFoundError("SparseTT needs weights: pass --checkpoint PATH (an official .pkl or "
                                        f"our checkpoint); no default model is installed ({exc})") from None
            raise
    path = Path(os.fspath(spec)).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    return path


def build_tracker(kind: str = "sparsett", *, checkpoint: str | os.PathLike | None = None,
                  preset: str | None = None, benchmark: str | None = None, device: str = "cpu") -> TrackerLike:
    """Create a ready-to-init tracker.

    Args:
        kind: "sparsett" or "csrt".
        checkpoint: SparseTT weights (see `resolve_checkpoint`); ignored for csrt.
        preset: SparseTT hyper-parameter preset (got10k, lasot, trackingnet, uav123, otb2015, lite) or
            None for the default; ignored for csrt.
        benchmark: the benchmark being run; with no `preset`, the paper model (Swin-T) uses that
            benchmark's preset, as the official per-benchmark test configs do, and any other model
            (e.g. the shipped SparseTT-Lite) its own default preset.
        device: torch device for SparseTT.
    """
    if kind == "csrt":
        from sparsett_core.baselines import CSRTTracker

        return CSRTTracker()
    if kind != "sparsett":
        raise ValueError(f"unknown tracker {kind!r}; choose one of {', '.join(TRACKERS)}")
    path = resolve_checkpoint(checkpoint)
    from sparsett_core import SparseTT, Tracker

    model = SparseTT.from_checkpoint(str(path), device=device)
    if preset is None and benchmark is not None and model.config.variant == "swin_t":
        preset = benchmark
    return Tracker(model, preset=preset)
