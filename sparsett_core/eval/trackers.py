"""Build a tracker by name for the CLIs: SparseTT from a checkpoint, or a baseline (CSRT, NanoTrack v2).

Checkpoint resolution lives in `resolve_checkpoint` only: a path, or the name ``default`` (also
used when no checkpoint is given) for the model shipped in ``sparsett_core/weights/default.pt``.
`check_inputs` validates what a tracker needs (weights, ONNX files) before any data is read.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from sparsett_core.baselines import NanoTrackFiles
    from sparsett_core.tracker.fast import InferenceOptions

TRACKERS: tuple[str, ...] = ("sparsett", "csrt", "nanotrack")
BACKENDS: tuple[str, ...] = ("torch", "onnxruntime", "auto")


class TrackerLike(Protocol):
    """The contract every tracker follows (sparsett_core.Tracker, baselines.CSRTTracker / NanoTrackTracker)."""

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


def check_inputs(kind: str, checkpoint: str | os.PathLike | None = None,
                 nanotrack_backbone: str | os.PathLike | None = None,
                 nanotrack_head: str | os.PathLike | None = None) -> "NanoTrackFiles | None":
    """Fail early (before a dataset or camera is opened) when a tracker lacks its files.

    Returns:
        The checked NanoTrack ONNX pair for ``kind == "nanotrack"``, else None.

    Raises:
        FileNotFoundError / ValueError: with what to pass instead.
    """
    if kind not in TRACKERS:
        raise ValueError(f"unknown tracker {kind!r}; choose one of {', '.join(TRACKERS)}")
    if kind == "sparsett":
        resolve_checkpoint(checkpoint)
    if kind == "nanotrack":
        from sparsett_core.baselines import NanoTrackFiles

        return NanoTrackFiles.from_options(nanotrack_backbone, nanotrack_head)
    return None


def build_tracker(kind: str = "sparsett", *, checkpoint: str | os.PathLike | None = None,
                  preset: str | None = None, benchmark: str | None = None, device: str = "cpu",
                  nanotrack: "NanoTrackFiles | None" = None, backend: str = "torch",
                  options: "InferenceOptions | None" = None) -> TrackerLike:
    """Create a ready-to-init tracker.

    Args:
        kind: "sparsett", "csrt" or "nanotrack".
        checkpoint: SparseTT weights (see `resolve_checkpoint`); ignored by the baselines.
        preset: SparseTT hyper-parameter preset (got10k, lasot, trackingnet, uav123, otb2015, lite) or
            None for the default; ignored by the baselines.
        benchmark: the benchmark being run; with no `preset`, the paper model (Swin-T) uses that
            benchmark's preset, as the official per-benchmark test configs do, and any other model
            (e.g. the shipped SparseTT-Lite) its own default preset.
        device: torch device for SparseTT.
        nanotrack: the NanoTrack v2 ONNX pair (required for "nanotrack", see `check_inputs`).
        backend: SparseTT's inference backend: "torch", "onnxruntime" or "auto" (the fastest on
            this machine, chosen by rule and a short measurement: the tracker's ``selection``).
        options: resolved inference options (e.g. an earlier tracker's ``options``); given, they
            replace ``backend`` and nothing is measured again.
    """
    if kind == "csrt":
        from sparsett_core.baselines import CSRTTracker

        return CSRTTracker()
    if kind == "nanotrack":
        from sparsett_core.baselines import NanoTrackTracker

        if nanotrack is None:
            raise ValueError("the nanotrack tracker needs its ONNX files: NanoTrackFiles(backbone, head)")
        return NanoTrackTracker(nanotrack)
    if kind != "sparsett":
        raise ValueError(f"unknown tracker {kind!r}; choose one of {', '.join(TRACKERS)}")
    path = resolve_checkpoint(checkpoint)
    from sparsett_core import SparseTT, Tracker

    from sparsett_core import InferenceOptions

    model = SparseTT.from_checkpoint(str(path), device=device)
    if preset is None and benchmark is not None and model.config.variant == "swin_t":
        preset = benchmark
    return Tracker(model, preset=preset, options=options or InferenceOptions(backend=backend))
