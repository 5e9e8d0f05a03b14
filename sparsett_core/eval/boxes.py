"""Reading and writing box text files (ground truth and tracker results).

Box convention everywhere: one row per frame, ``x,y,w,h`` with ``x,y`` the top-left corner and
``w,h`` the size in pixels (OTB/LaSOT/UAV123/GOT-10k/TrackingNet all use it). Values may be
separated by commas, tabs or spaces (OTB mixes them).
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

_SPLIT = re.compile(r"[,\t ]+")


class BoxFileError(ValueError):
    """A box file that cannot be used; the message names the file and, where known, the line."""


def read_boxes(path: str | os.PathLike, *, allow_nan: bool = True, expected_rows: int | None = None) -> np.ndarray:
    """Read an ``x,y,w,h`` text file.

    Args:
        path: the file.
        allow_nan: accept ``NaN`` values (UAV123 ground truth marks absent targets with them).
            Tracker results must not contain NaN: pass False for them.
        expected_rows: if given, the number of rows the file must have (one per frame).

    Returns:
        (N, 4) float64 array.

    Raises:
        BoxFileError: missing file, a row that is not 4 numbers (names file and line), NaN where
            not allowed, or a wrong number of rows.
    """
    path = Path(path)
    if not path.is_file():
        raise BoxFileError(f"{path}: file not found")
    rows: list[list[float]] = []
    with path.open("r", encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, start=1):
            text = line.strip()
            if not text:
                continue
            parts = [p for p in _SPLIT.split(text) if p]
            if len(parts) != 4:
                raise BoxFileError(
                    f"{path}:{lineno}: expected 4 numbers x,y,w,h, got {len(parts)} values: {text[:80]!r}")
            try:
                values = [float(p) for p in parts]
            except ValueError:
                raise BoxFileError(f"{path}:{lineno}: not a number in {text[:80]!r}") from None
            if not allow_nan and any(np.isnan(v) for v in values):
                raise BoxFileError(f"{path}:{lineno}: NaN in a result box {text[:80]!r}; trackers must output a box")
            if any(np.isinf(v) for v in values):
                raise BoxFileError(f"{path}:{lineno}: infinite value in {text[:80]!r}")
            rows.append(values)
    if not rows:
        raise BoxFileError(f"{path}: no boxes in the file")
    boxes = np.asarray(rows, dtype=np.float64)
    if expected_rows is not None and boxes.shape[0] != expected_rows:
        raise BoxFileError(
            f"{path}: {boxes.shape[0]} rows, expected {expected_rows} (one x,y,w,h row per frame of the sequence)")
    return boxes


def format_boxes(boxes: np.ndarray, *, decimals: int = 4, delimiter: str = ",") -> str:
    """Format (N, 4) boxes as text lines (trailing newline included)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    fmt = f"%.{decimals}f"
    return "".join(delimiter.join(fmt % v for v in row) + "\n" for row in boxes)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write `text` to `path` via a temporary file and a rename (no partial file on interrupt)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
