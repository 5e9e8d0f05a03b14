"""sparsett-track on an image folder, on a video encoded from the shared frames, and its error paths.

The shipped default weights track a whole real sequence (boxes file, overlay video, mean IoU above
a floor); the baselines (CSRT, NanoTrack v2) run through the same code path.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from cli_helpers import tool_env
from sparsett_core.cli.track import main as track_main
from sparsett_core.cli.track import parse_box
from sparsett_core.video import FrameSourceError, ImageFolderSource, open_source

NUM_VIDEO_FRAMES = 30

# Mean IoU (frames 2-120) of the shipped default weights on otb_crossing through sparsett-track:
# 0.632 measured 2026-11-30 (SparseTT-Lite v2 weights of run E, AMD EPYC Zen 4, 1 thread). Floor = measured
# minus 0.1 (other CPUs round differently and small differences compound along a sequence).
# Re-measure when the default weights change (the test prints the value).
DEFAULT_WEIGHTS_CROSSING_IOU_FLOOR = 0.53
# NanoTrack v2 (shared ONNX pair) on otb_crossing, same measure: 0.769 measured 2026-11-30 (OpenCV 4.11.0).
NANOTRACK_CROSSING_IOU_FLOOR = 0.67


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sparsett_core.cli.track", *args], capture_output=True, text=True,
                          timeout=600, env=env or tool_env())


def _init(seq: Path) -> str:
    return (seq / "groundtruth_rect.txt").read_text().splitlines()[0]


def _count_frames(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


@pytest.fixture(scope="module")
def crossing_video(sequences_dir, tmp_path_factory) -> Path:
    """The first NUM_VIDEO_FRAMES frames of otb_crossing encoded as an MP4 by the test."""
    frames = sorted((sequences_dir / "otb_crossing" / "img").iterdir())[:NUM_VIDEO_FRAMES]
    first = cv2.imread(str(frames[0]))
    path = tmp_path_factory.mktemp("video") / "crossing.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (first.shape[1], first.shape[0]))
    assert writer.isOpened()
    for f in frames:
        writer.write(cv2.imread(str(f)))
    writer.release()
    assert _count_frames(path) == NUM_VIDEO_FRAMES
    return path


def test_image_folder_csrt(sequences_dir, tmp_path):
    seq = sequences_dir / "otb_crossing"
    out = tmp_path / "boxes.txt"
    proc = run_cli(str(seq / "img"), "--tracker", "csrt", "--init", _init(seq), "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "FPS" in proc.stderr
    boxes = np.loadtxt(out, delimiter=",")
    gt = np.loadtxt(seq / "groundtruth_rect.txt", delimiter=",")
    assert boxes.shape == gt.shape
    assert np.allclose(boxes[0], gt[0])
    # a real tracker on a real sequence: the pedestrian is followed (centre within 20 px in most frames)
    centre_err = np.hypot(*(boxes[:, :2] + boxes[:, 2:] / 2 - gt[:, :2] - gt[:, 2:] / 2).T)
    assert np.mean(centre_err < 20) > 0.8


def test_video_csrt_with_overlay(crossing_video, sequences_dir, tmp_path):
    overlay = tmp_path / "out" / "overlay.mp4"
    out = tmp_path / "boxes.txt"
    proc = run_cli(str(crossing_video), "--tracker", "csrt", "--init", _init(sequences_dir / "otb_crossing"),
                   "-o", str(out), "--overlay", str(overlay), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert len(out.read_text().splitlines()) == NUM_VIDEO_FRAMES
    assert _count_frames(overlay) == NUM_VIDEO_FRAMES
    cap = cv2.VideoCapture(str(overlay))
    ok, frame = cap.read()
    cap.release()
    assert ok and frame.shape == (240, 360, 3)


def test_video_to_stdout(crossing_video, sequences_dir):
    proc = run_cli(str(crossing_video), "--tracker", "csrt", "--init", _init(sequences_dir / "otb_crossing"),
                   "--max-frames", "7", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 7 and all(len(line.split(",")) == 4 for line in lines)


def test_sparsett_image_folder(sequences_dir, official_checkpoint, tmp_path):
    seq = sequences_dir / "otb_dudek20"
    out = tmp_path / "boxes.txt"
    proc = run_cli(str(seq / "img"), "--checkpoint", str(official_checkpoint), "--preset", "otb2015",
                   "--init", _init(seq), "-o", str(out), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    boxes = np.loadtxt(out, delimiter=",")
    assert boxes.shape == (20, 4) and np.isfinite(boxes).all()
    assert (boxes[:, 2:] >= 10).all()  # the tracker clips sizes to >= 10 px


def test_sparsett_video(crossing_video, sequences_dir, official_checkpoint, tmp_path):
    out = tmp_path / "boxes.txt"
    proc = run_cli(str(crossing_video), "--checkpoint", str(official_checkpoint), "--init",
                   _init(sequences_dir / "otb_crossing"), "-o", str(out), "--max-frames", "8", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert np.loadtxt(out, delimiter=",").shape == (8, 4)


def _mean_iou(boxes: np.ndarray, gt: np.ndarray) -> float:
    """Mean IoU of frames 2..N (frame 1 is the given box)."""
    tl = np.maximum(boxes[1:, :2], gt[1:, :2])
    br = np.minimum(boxes[1:, :2] + boxes[1:, 2:], gt[1:, :2] + gt[1:, 2:])
    inter = np.clip(br - tl, 0, None).prod(axis=1)
    return float(np.mean(inter / (boxes[1:, 2:].prod(axis=1) + gt[1:, 2:].prod(axis=1) - inter)))


def _green_on_box(frame: np.ndarray, box: np.ndarray) -> float:
    """How much greener than red/blue the pixels on the box's top edge are (the overlay draws it green)."""
    x, y, w, h = (int(round(v)) for v in box)
    edge = frame[max(y, 0), max(x, 0):x + w].astype(float)
    return float(np.mean(edge[:, 1] - np.maximum(edge[:, 0], edge[:, 2])))


def test_default_weights_track_a_real_sequence(sequences_dir, tmp_path, record_property):
    """No --checkpoint: the shipped weights follow the pedestrian of otb_crossing (all 120 frames)."""
    from cli_helpers import run_tool

    seq = sequences_dir / "otb_crossing"
    out, overlay = tmp_path / "boxes.txt", tmp_path / "overlay.mp4"
    proc = run_tool("sparsett-track", seq / "img", "--init", _init(seq), "-o", out, "--overlay", overlay,
                    "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert "120 frames in" in proc.stderr and f"boxes in {out}; overlay in {overlay}" in proc.stderr
    lines = out.read_text().splitlines()
    gt = np.loadtxt(seq / "groundtruth_rect.txt", delimiter=",")
    assert len(lines) == 120 and lines[0] == ",".join(f"{v:.2f}" for v in gt[0])
    boxes = np.array([[float(v) for v in line.split(",")] for line in lines])
    iou = _mean_iou(boxes, gt)
    record_property("default_weights_crossing_mean_iou", round(iou, 3))
    assert iou > DEFAULT_WEIGHTS_CROSSING_IOU_FLOOR, iou

    # the overlay: every frame, at the source size, with the tracked box drawn on it
    assert _count_frames(overlay) == 120
    cap = cv2.VideoCapture(str(overlay))
    frames = [cap.read()[1] for _ in range(120)]
    cap.release()
    assert frames[0].shape == (240, 360, 3)
    originals = sorted((seq / "img").iterdir())
    for k in (0, 60, 119):
        source = cv2.imread(str(originals[k]))
        assert _green_on_box(frames[k], boxes[k]) > _green_on_box(source, boxes[k]) + 60, k


def test_nanotrack_baseline(sequences_dir, nanotrack_onnx, tmp_path):
    from cli_helpers import assert_clean_error, run_tool

    seq = sequences_dir / "otb_crossing"
    backbone, head = nanotrack_onnx
    out = tmp_path / "boxes.txt"
    proc = run_tool("sparsett-track", seq / "img", "--tracker", "nanotrack", "--nanotrack-backbone", backbone,
                    "--nanotrack-head", head, "--init", _init(seq), "-o", out, "--no-progress")
    assert proc.returncode == 0, proc.stderr
    boxes = np.loadtxt(out, delimiter=",")
    gt = np.loadtxt(seq / "groundtruth_rect.txt", delimiter=",")
    assert boxes.shape == gt.shape and np.allclose(boxes[0], gt[0])
    assert _mean_iou(boxes, gt) > NANOTRACK_CROSSING_IOU_FLOOR
    missing = run_tool("sparsett-track", seq / "img", "--tracker", "nanotrack", "--init", _init(seq))
    assert_clean_error(missing, "sparsett-track", "--tracker nanotrack needs --nanotrack-backbone and --nanotrack-head")


def test_no_display_asks_for_init(sequences_dir):
    env = {k: v for k, v in tool_env().items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    proc = run_cli(str(sequences_dir / "otb_dudek20" / "img"), "--tracker", "csrt", env=env)
    assert proc.returncode == 2
    assert "no display" in proc.stderr and "--init" in proc.stderr


def test_input_errors(tmp_path, capsys, sequences_dir):
    assert track_main([str(tmp_path / "missing.mp4"), "--tracker", "csrt", "--init", "1,2,3,4"]) == 1
    assert "input not found" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert track_main([str(empty), "--tracker", "csrt", "--init", "1,2,3,4"]) == 1
    assert "no image files" in capsys.readouterr().err
    fake = tmp_path / "fake.mp4"
    fake.write_text("not a video\n")
    assert track_main([str(fake), "--tracker", "csrt", "--init", "1,2,3,4"]) == 1
    assert "fake.mp4" in capsys.readouterr().err
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "0001.jpg").write_bytes(b"\xff\xd8 truncated")
    assert track_main([str(broken), "--tracker", "csrt", "--init", "1,2,3,4"]) == 1
    assert "cannot decode image" in capsys.readouterr().err
    img = str(sequences_dir / "otb_dudek20" / "img")
    assert track_main([img, "--tracker", "csrt", "--init", "1,2,3"]) == 2
    assert "expected four numbers" in capsys.readouterr().err
    assert track_main([img, "--init", "1,2,3,4", "--checkpoint", str(tmp_path / "nope.pkl")]) == 1
    assert "checkpoint not found" in capsys.readouterr().err


def test_parse_box_and_sources(sequences_dir):
    assert parse_box("1,2.5,3,4") == (1.0, 2.5, 3.0, 4.0)
    assert parse_box("1 2 3 4") == (1.0, 2.0, 3.0, 4.0)
    with pytest.raises(ValueError, match="positive"):
        parse_box("1,2,0,4")
    with open_source(sequences_dir / "otb_dudek20" / "img") as src:
        assert isinstance(src, ImageFolderSource) and src.num_frames == 20
        frame = next(iter(src))
        assert frame.shape == (480, 720, 3) and frame.dtype == np.uint8  # grayscale JPEG -> 3 channels
    with pytest.raises(FrameSourceError, match="camera 97"):
        open_source("97")
