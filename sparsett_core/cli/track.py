"""sparsett-track: track one target through a video file, an image folder or a camera.

    sparsett-track clip.mp4 --checkpoint model.pkl --init 120,80,40,60 --output boxes.txt --overlay out.mp4
    sparsett-track frames/ --tracker csrt --init 120,80,40,60
    sparsett-track frames/ --tracker nanotrack --nanotrack-backbone B.onnx --nanotrack-head H.onnx --init 120,80,40,60
    sparsett-track 0 --checkpoint model.pkl            # camera 0, drag a box in the window

Writes one ``x,y,w,h`` line per frame (top-left corner, pixels; the first line is the initial
box) to --output or stdout; progress and FPS go to stderr.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from time import perf_counter

import cv2
import numpy as np

from sparsett_core.cli import one_line
from sparsett_core.eval.trackers import BACKENDS, TRACKERS, build_tracker, check_inputs
from sparsett_core.video import FrameSourceError, open_source

PROG = "sparsett-track"
Box = tuple[float, float, float, float]


class UsageError(ValueError):
    """Input the user must change (message says how)."""


def parse_box(text: str) -> Box:
    """Parse ``x,y,w,h`` (commas or spaces) into floats with positive w, h."""
    parts = [p for p in text.replace(",", " ").split() if p]
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        raise UsageError(f"--init {text!r}: expected four numbers x,y,w,h") from None
    if len(values) != 4:
        raise UsageError(f"--init {text!r}: expected four numbers x,y,w,h, got {len(values)}")
    if not (values[2] > 0 and values[3] > 0):
        raise UsageError(f"--init {text!r}: width and height must be positive")
    return values  # type: ignore[return-value]


def has_display() -> bool:
    """True when a GUI window can be opened (X11 / Wayland on Linux; assumed elsewhere)."""
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def select_roi(frame: np.ndarray) -> Box:
    """Let the user drag a box on `frame` (OpenCV ROI selector); UsageError if impossible."""
    if not has_display():
        raise UsageError("no display available to select the target: pass --init x,y,w,h")
    window = f"{PROG}: drag a box around the target, then press ENTER or SPACE (c cancels)"
    try:
        x, y, w, h = cv2.selectROI(window, frame, showCrosshair=True, fromCenter=False)
        cv2.destroyWindow(window)
    except cv2.error as exc:
        raise UsageError(f"cannot open a selection window ({exc.msg.strip() or exc}); this OpenCV build may "
                         "have no GUI support: pass --init x,y,w,h") from None
    if w <= 0 or h <= 0:
        raise UsageError("no box selected: drag a box, or pass --init x,y,w,h")
    return float(x), float(y), float(w), float(h)


def draw_overlay(frame: np.ndarray, box: Box, index: int, score: float | None) -> np.ndarray:
    """Copy of `frame` with the box (green) and the frame index / score written on it."""
    out = frame.copy()
    x, y, w, h = box
    cv2.rectangle(out, (int(round(x)), int(round(y))), (int(round(x + w)), int(round(y + h))), (0, 255, 0), 2)
    label = f"#{index}" + ("" if score is None else f"  score {score:.2f}")
    cv2.putText(out, label, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 255, 255), 2, cv2.LINE_AA)
    return out


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Track one target in a video, image folder or camera.")
    p.add_argument("source", help="video file, image folder, or camera index (0, 1, ...)")
    p.add_argument("--init", default=None, metavar="X,Y,W,H",
                   help="initial box (top-left x,y and size, pixels); without it a selection window opens")
    p.add_argument("--tracker", default="sparsett", choices=TRACKERS)
    p.add_argument("--checkpoint", default=None,
                   help="SparseTT weights: official .pkl, Swin-T .pth, our checkpoint, or 'default'")
    p.add_argument("--nanotrack-backbone", default=None, metavar="PATH",
                   help="--tracker nanotrack: NanoTrack v2 backbone ONNX (nanotrack_backbone_sim.onnx)")
    p.add_argument("--nanotrack-head", default=None, metavar="PATH",
                   help="--tracker nanotrack: NanoTrack v2 neck/head ONNX (nanotrack_head_sim.onnx)")
    p.add_argument("--preset", default=None, help="hyper-parameter preset (got10k, lasot, trackingnet, uav123, "
                                                  "otb2015); default: the model's")
    p.add_argument("--device", default="cpu", help="torch device for SparseTT")
    p.add_argument("--backend", default="torch", choices=BACKENDS,
                   help="SparseTT inference: torch, onnxruntime (optional package), or auto (the fastest here, "
                        "measured at start; the choice is printed)")
    p.add_argument("--output", "-o", type=Path, default=None, help="box file (default: stdout)")
    p.add_argument("--overlay", type=Path, default=None, metavar="OUT.mp4", help="write an overlay video (MP4)")
    p.add_argument("--max-frames", type=int, default=None, help="stop after this many frames")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    init_box = parse_box(args.init) if args.init is not None else None
    nanotrack = check_inputs(args.tracker, args.checkpoint, args.nanotrack_backbone,
                             args.nanotrack_head)  # fail before opening a camera
    if args.max_frames is not None and args.max_frames < 1:
        raise UsageError("--max-frames must be at least 1")
    source = open_source(args.source)
    out_file = None
    writer = None
    try:
        frames = iter(source)
        first = next(frames, None)
        if first is None:
            raise FrameSourceError(f"no frames could be read from {source.description or args.source}")
        if init_box is None:
            init_box = select_roi(first)
        tracker = build_tracker(args.tracker, checkpoint=args.checkpoint, preset=args.preset, device=args.device,
                                nanotrack=nanotrack, backend=args.backend)
        if getattr(tracker, "selection", None) is not None:
            print(f"{PROG}: backend {tracker.options.backend} {tracker.options.precision}: "
                  f"{tracker.selection.reason}", file=sys.stderr)
        out_file = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout
        if args.overlay is not None:
            args.overlay.parent.mkdir(parents=True, exist_ok=True)
            height, width = first.shape[:2]
            writer = cv2.VideoWriter(str(args.overlay), cv2.VideoWriter_fourcc(*"mp4v"), source.fps or 30.0,
                                     (width, height))
            if not writer.isOpened():
                raise FrameSourceError(f"cannot write the overlay video {args.overlay} (use an .mp4 path)")

        total = source.num_frames
        if args.max_frames is not None:
            total = min(total, args.max_frames) if total else args.max_frames
        bar = tqdm(total=total, unit="fr", desc=PROG, disable=args.no_progress, file=sys.stderr, dynamic_ncols=True)
        track_seconds = 0.0
        wall_start = perf_counter()
        count = 0
        frame: np.ndarray | None = first
        while frame is not None:
            start = perf_counter()
            if count == 0:
                tracker.init(frame, init_box)
                box, score = init_box, None
            else:
                box, score = tracker.update(frame)
            track_seconds += perf_counter() - start
            out_file.write(",".join(f"{v:.2f}" for v in box) + "\n")
            if writer is not None:
                writer.write(draw_overlay(frame, box, count + 1, score))
            count += 1
            bar.update(1)
            if args.max_frames is not None and count >= args.max_frames:
                break
            frame = next(frames, None)
        bar.close()
        wall = perf_counter() - wall_start
        tracked = max(count - 1, 0)
        update_fps = f", {tracked / (track_seconds or 1e-9):.1f} FPS tracker only" if count > 1 else ""
        print(f"{PROG}: {count} frames in {wall:.1f} s: {count / wall:.1f} FPS end to end{update_fps}"
              + (f"; boxes in {args.output}" if args.output else "")
              + (f"; overlay in {args.overlay}" if args.overlay else ""), file=sys.stderr)
    finally:
        source.close()
        if writer is not None:
            writer.release()
        if out_file is not None and out_file is not sys.stdout:
            out_file.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (0 ok, 1 input error, 2 usage error, 130 interrupted)."""
    args = _parser().parse_args(argv)
    try:
        return run(args)
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except (OSError, FrameSourceError, ValueError, RuntimeError) as exc:  # CheckpointError is a ValueError
        print(f"{PROG}: error: {one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
