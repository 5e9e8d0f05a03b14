"""Frame sources: a video file, an image folder or a camera, all yielding BGR uint8 frames.

    with open_source("clip.mp4") as src:          # or "frames/", or "0" / 0 for camera 0
        for frame in src:                         # (H, W, 3) uint8 BGR
            ...

Used by sparsett-track and by the ROS tools (bag_from_video). Missing or unreadable input is a
`FrameSourceError` (a `ValueError`) or `FileNotFoundError` whose message says what to pass instead.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


class FrameSourceError(ValueError):
    """Input that exists but cannot be read as frames."""


def _natural_key(path: Path) -> tuple:
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name))


def list_image_files(folder: str | os.PathLike) -> list[Path]:
    """Image files of `folder` in frame order (natural sort: 2.jpg before 10.jpg).

    Raises:
        FileNotFoundError: the folder does not exist.
        FrameSourceError: it holds no image files.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder}")
    files = sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS), key=_natural_key)
    if not files:
        raise FrameSourceError(f"no image files ({', '.join(IMAGE_EXTS)}) in {folder}")
    return files


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read one image as (H, W, 3) uint8 BGR (grayscale files are expanded to 3 channels).

    Raises:
        FileNotFoundError / FrameSourceError: missing or undecodable file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise FrameSourceError(f"cannot decode image {path} (corrupt or not an image)")
    return image


class FrameSource:
    """Base class: iterate BGR frames; `num_frames` (None when unknown) and `fps` (None when unknown)."""

    description: str = ""
    num_frames: int | None = None
    fps: float | None = None

    def __iter__(self) -> Iterator[np.ndarray]:
        raise NotImplementedError

    def close(self) -> None:
        """Release the underlying device or file."""

    def __enter__(self) -> "FrameSource":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ImageFolderSource(FrameSource):
    """Frames from the image files of a folder, in natural-sort order."""

    def __init__(self, folder: str | os.PathLike, fps: float | None = None) -> None:
        self.files = list_image_files(folder)
        self.num_frames = len(self.files)
        self.fps = fps
        self.description = f"image folder {folder} ({self.num_frames} images)"

    def __iter__(self) -> Iterator[np.ndarray]:
        for path in self.files:
            yield read_image(path)


class _CaptureSource(FrameSource):
    def __init__(self, capture: cv2.VideoCapture) -> None:
        self._cap = capture
        fps = capture.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and fps > 0 and np.isfinite(fps) else None

    def __iter__(self) -> Iterator[np.ndarray]:
        while True:
            ok, frame = self._cap.read()
            if not ok or frame is None:
                return
            if frame.ndim == 2:
                frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
            yield frame

    def close(self) -> None:
        self._cap.release()


class VideoFileSource(_CaptureSource):
    """Frames decoded from a video file (anything OpenCV's FFmpeg backend reads)."""

    def __init__(self, path: str | os.PathLike) -> None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"video file not found: {path}")
        cap = cv2.VideoCapture(str(path))
        if not cap.isOpened():
            cap.release()
            raise FrameSourceError(f"cannot open video {path}: not a video OpenCV can decode")
        super().__init__(cap)
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        self.num_frames = count if count > 0 else None
        self.description = f"video {path}" + (f" ({count} frames)" if count > 0 else "")


class CameraSource(_CaptureSource):
    """Frames from a camera device (OpenCV index, e.g. 0 for /dev/video0); ends when reading fails."""

    def __init__(self, index: int) -> None:
        cap = cv2.VideoCapture(index)
        if not cap.isOpened():
            cap.release()
            raise FrameSourceError(f"cannot open camera {index}: no such device or it is busy")
        super().__init__(cap)
        self.num_frames = None
        self.description = f"camera {index}"


def open_source(spec: str | int | os.PathLike) -> FrameSource:
    """Open a frame source from a path or a camera index.

    Args:
        spec: an integer (or a string of digits that is not an existing path) = camera index;
            a directory = image folder; a file = video file.

    Raises:
        FileNotFoundError: the path does not exist.
        FrameSourceError: it exists but yields no frames (no images, undecodable video, no camera).
    """
    if isinstance(spec, int):
        return CameraSource(spec)
    text = os.fspath(spec)
    path = Path(text)
    if not path.exists() and text.isdigit():
        return CameraSource(int(text))
    if path.is_dir():
        return ImageFolderSource(path)
    if path.is_file():
        return VideoFileSource(path)
    raise FileNotFoundError(f"input not found: {text} (pass a video file, an image folder or a camera index)")
