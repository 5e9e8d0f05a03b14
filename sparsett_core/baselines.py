"""Baseline trackers with the same ``init`` / ``update`` contract as `sparsett_core.Tracker`.

    tracker = CSRTTracker()                 # or NanoTrackTracker(NanoTrackFiles(backbone, head))
    tracker.init(frame_bgr, (x, y, w, h))   # HxWx3 uint8 BGR, top-left x,y,w,h pixels
    box, score = tracker.update(frame_bgr)  # box (x, y, w, h) floats; score in [0, 1]

CSRT (Lukezic et al., CVPR 2017) comes from OpenCV's contrib build (opencv-contrib-python or
-headless; never install it beside plain opencv-python, they overwrite each other's cv2).
NanoTrack v2 (a small Siamese tracker trained on GOT-10k, LaSOT, VID/DET, YouTube-BB and COCO) is
OpenCV's ``cv2.TrackerNano`` (OpenCV >= 4.7) running the authors' two ONNX files, which the user
provides (nothing is bundled): ``nanotrack_backbone_sim.onnx`` and ``nanotrack_head_sim.onnx``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

Box = tuple[float, float, float, float]


def _create_csrt() -> "cv2.Tracker":
    factory = getattr(cv2, "TrackerCSRT_create", None) or getattr(getattr(cv2, "TrackerCSRT", None), "create", None)
    if factory is None:
        raise RuntimeError("this OpenCV build has no CSRT tracker: install opencv-contrib-python-headless "
                           "(and uninstall opencv-python, which shadows it)")
    return factory()


class _OpenCVTracker:
    """The Tracker contract over an OpenCV tracker: integer pixel boxes in, float boxes out, and the
    previous box with score 0.0 when OpenCV reports a failure (benchmark protocols need a box for
    every frame). Subclasses create the OpenCV tracker and give its confidence."""

    name = ""

    def __init__(self) -> None:
        self._tracker: cv2.Tracker | None = None
        self._box: Box | None = None

    def _create(self) -> "cv2.Tracker":
        raise NotImplementedError

    def _confidence(self) -> float:
        return 1.0

    def init(self, frame_bgr: np.ndarray, box: Box) -> None:
        """Start tracking the target `box` (x, y, w, h) in `frame_bgr` (H, W, 3) uint8.

        Raises:
            ValueError: a box without a positive size.
        """
        x, y, w, h = (float(v) for v in box)
        if not (w > 0 and h > 0):
            raise ValueError(f"initial box must have a positive size, got w={w}, h={h}")
        rect = (int(round(x)), int(round(y)), max(1, int(round(w))), max(1, int(round(h))))
        self._tracker = self._create()
        self._tracker.init(frame_bgr, rect)
        self._box = (x, y, w, h)

    def update(self, frame_bgr: np.ndarray) -> tuple[Box, float]:
        """Track into `frame_bgr`; returns ((x, y, w, h), score)."""
        if self._tracker is None or self._box is None:
            raise RuntimeError("call init(frame, box) before update(frame)")
        ok, rect = self._tracker.update(frame_bgr)
        if not ok:
            return self._box, 0.0
        self._box = tuple(float(v) for v in rect)  # type: ignore[assignment]
        return self._box, self._confidence()


class CSRTTracker(_OpenCVTracker):
    """OpenCV's CSRT tracker behind the sparsett_core Tracker contract (score 1.0 while OpenCV
    reports success, 0.0 with the previous box on a failure)."""

    name = "csrt"

    def _create(self) -> "cv2.Tracker":
        return _create_csrt()


@dataclass(frozen=True)
class NanoTrackFiles:
    """The NanoTrack v2 ONNX pair that ``cv2.TrackerNano`` runs.

    Attributes:
        backbone: ``nanotrack_backbone_sim.onnx`` (1x3x255x255 -> 1x48x16x16).
        head: ``nanotrack_head_sim.onnx`` (the neck and head: cls 1x2x16x16, loc 1x4x16x16).
    """

    backbone: Path
    head: Path

    @classmethod
    def from_options(cls, backbone: str | os.PathLike | None, head: str | os.PathLike | None) -> "NanoTrackFiles":
        """Check the two paths given on a command line.

        Raises:
            ValueError: a path was not given (the message names the options).
            FileNotFoundError: a file does not exist.
        """
        missing = [opt for opt, value in (("--nanotrack-backbone", backbone), ("--nanotrack-head", head)) if not value]
        if missing:
            raise ValueError(f"--tracker nanotrack needs {' and '.join(missing)} PATH: the NanoTrack v2 ONNX files "
                             "nanotrack_backbone_sim.onnx and nanotrack_head_sim.onnx (not bundled; see "
                             "docs/evaluation.md)")
        files = cls(Path(os.fspath(backbone)).expanduser(), Path(os.fspath(head)).expanduser())
        for opt, path in (("--nanotrack-backbone", files.backbone), ("--nanotrack-head", files.head)):
            if not path.is_file():
                raise FileNotFoundError(f"{opt} {path}: file not found")
        return files


def _cv2_message(exc: cv2.error) -> str:
    """OpenCV's own one-line reason (``exc.err``), without the source location."""
    return (getattr(exc, "err", "") or str(exc)).strip().splitlines()[0]


class NanoTrackTracker(_OpenCVTracker):
    """NanoTrack v2 (``cv2.TrackerNano``) behind the sparsett_core Tracker contract.

    `update` returns NanoTrack's own score (it stays high even when the target is lost) and, when
    OpenCV reports a failure, the previous box with score 0.0.
    """

    name = "nanotrack"

    def __init__(self, files: NanoTrackFiles) -> None:
        if not hasattr(cv2, "TrackerNano_create") and not hasattr(cv2, "TrackerNano"):
            raise RuntimeError(f"this OpenCV ({cv2.__version__}) has no TrackerNano: NanoTrack needs OpenCV >= 4.7")
        super().__init__()
        self.files = files

    def _create(self) -> "cv2.Tracker":
        params = cv2.TrackerNano_Params()
        params.backbone = str(self.files.backbone)
        params.neckhead = str(self.files.head)
        factory = getattr(cv2, "TrackerNano_create", None) or cv2.TrackerNano.create
        return factory(params)

    def _confidence(self) -> float:
        return float(self._tracker.getTrackingScore())

    def init(self, frame_bgr: np.ndarray, box: Box) -> None:
        """As the base class; also raises RuntimeError where OpenCV cannot use the ONNX files (not
        the NanoTrack v2 pair, or swapped)."""
        try:
            super().init(frame_bgr, box)
        except cv2.error as exc:
            raise RuntimeError(f"NanoTrack cannot run the ONNX files {self.files.backbone} (backbone) and "
                               f"{self.files.head} (head): {_cv2_message(exc)}; pass the NanoTrack v2 pair "
                               "nanotrack_backbone_sim.onnx / nanotrack_head_sim.onnx") from None
