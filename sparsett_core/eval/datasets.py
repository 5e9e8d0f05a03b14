"""Benchmark readers for the published dataset layouts (as the official README's ``datasets/``).

::

    OTB2015      <root>/<Seq>/img/0001.jpg ... + <root>/<Seq>/groundtruth_rect.txt
                 (two-target sequences: groundtruth_rect.1.txt / .2.txt -> Jogging.1, Jogging.2;
                 empty annotation files, such as Human4's groundtruth_rect.1.txt, are skipped)
    UAV123       <root>/data_seq/UAV123/<seq>/000001.jpg ... + <root>/anno/UAV123/<seq>.txt
                 (split sequences such as bird1_2 read a frame range of data_seq/UAV123/bird1);
                 UAV20L: <root>/anno/UAV20L/<seq>.txt, frames also from data_seq/UAV123/<seq>
    GOT-10k      <root>/{val,test}/list.txt + <root>/<split>/<seq>/00000001.jpg ..., groundtruth.txt
                 (test: first frame only), absence.label, cover.label, meta_info.ini
    LaSOT        <root>/<class>/<class>-<n>/img/00000001.jpg ..., groundtruth.txt,
                 full_occlusion.txt, out_of_view.txt; <root>/testing_set.txt selects the test split
    TrackingNet  <root>/TEST/frames/<seq>/0.jpg ... + <root>/TEST/anno/<seq>.txt (first frame only)

`load_dataset(name, root, split)` returns the sequences sorted by name; frames are listed
eagerly, images are read by the runner. Errors name the offending path.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from sparsett_core.eval.boxes import read_boxes

DATASETS: tuple[str, ...] = ("otb2015", "uav123", "got10k", "lasot", "trackingnet")
DEFAULT_SPLITS: dict[str, str] = {"otb2015": "", "uav123": "UAV123", "got10k": "test", "lasot": "test",
                                  "trackingnet": "TEST"}
PROTOCOL: dict[str, str] = {"otb2015": "otb", "uav123": "uav", "got10k": "got10k", "lasot": "lasot",
                            "trackingnet": "trackingnet"}
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp")

# OTB2015 sequences whose img/ folder holds more frames than the ground truth (1-based inclusive
# frame ranges, as the OTB benchmark's configuration and the got10k / pytracking loaders use).
OTB_FRAME_RANGES: dict[str, tuple[int, int]] = {
    "David": (300, 770), "Football1": (1, 74), "Freeman3": (1, 460), "Freeman4": (1, 283),
    "Diving": (1, 215), "BlurCar1": (247, 988), "BlurCar3": (3, 359), "BlurCar4": (18, 397),
}

# UAV123 sequences cut from one longer folder: folder -> 1-based inclusive frame range per part
# (the UAV123 toolkit's configSeqs; part k is the annotation file <folder>_<k>.txt).
UAV123_PARTS: dict[str, tuple[tuple[int, int], ...]] = {
    "bird1": ((1, 253), (775, 1477), (1573, 2437)),
    "car1": ((1, 751), (751, 1627), (1627, 2629)),
    "car16": ((1, 415), (415, 1993)),
    "car6": ((1, 487), (487, 1807), (1807, 2953), (2953, 3925), (3925, 4861)),
    "car8": ((1, 1357), (1357, 2575)),
    "group1": ((1, 1333), (1333, 2515), (2515, 3925), (3925, 4873)),
    "group2": ((1, 907), (907, 1771), (1771, 2683)),
    "group3": ((1, 1567), (1567, 2827), (2827, 4369), (4369, 5527)),
    "person12": ((1, 601), (601, 1621)),
    "person14": ((1, 847), (847, 1813), (1813, 2923)),
    "person17": ((1, 1501), (1501, 2347)),
    "person19": ((1, 1243), (1243, 2791), (2791, 4357)),
    "person2": ((1, 1189), (1189, 2623)),
    "person4": ((1, 1501), (1501, 2743)),
    "person5": ((1, 877), (877, 2101)),
    "person7": ((1, 1249), (1249, 2065)),
    "person8": ((1, 1075), (1075, 1525)),
    "truck4": ((1, 577), (577, 1261)),
    "uav1": ((1, 1555), (1555, 2377), (2473, 3469)),
}


class DatasetError(ValueError):
    """A dataset that does not have the expected layout; the message names the path."""


@dataclass(frozen=True, eq=False)
class Sequence:
    """One benchmark sequence.

    Attributes:
        name: the sequence name used for result files.
        frames: image paths in frame order.
        groundtruth: (M, 4) float64 x,y,w,h; M == len(frames), or 1 for test splits whose
            annotations are withheld (GOT-10k test, TrackingNet TEST).
        target_visible: (len(frames),) bool or None (LaSOT: not full_occlusion and not out_of_view).
        present: (len(frames),) bool or None (GOT-10k: cover.label > 0).
        resolution: image (width, height) when the dataset states it (GOT-10k meta_info.ini).
    """

    name: str
    frames: tuple[Path, ...]
    groundtruth: np.ndarray
    target_visible: np.ndarray | None = None
    present: np.ndarray | None = None
    resolution: tuple[int, int] | None = None

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def init_box(self) -> tuple[float, float, float, float]:
        """The first frame's box (x, y, w, h)."""
        return tuple(float(v) for v in self.groundtruth[0])  # type: ignore[return-value]

    @property
    def has_full_groundtruth(self) -> bool:
        return self.groundtruth.shape[0] == len(self.frames)


def natural_key(path: Path) -> tuple:
    """Sort key that orders ``2.jpg`` before ``10.jpg`` (TrackingNet names frames 0.jpg, 1.jpg, ...)."""
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name))


def list_images(folder: Path) -> list[Path]:
    """Image files of `folder` in frame order (natural sort); DatasetError if there are none."""
    if not folder.is_dir():
        raise DatasetError(f"{folder}: frame folder not found")
    files = sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS and p.is_file()), key=natural_key)
    if not files:
        raise DatasetError(f"{folder}: no images ({', '.join(IMAGE_EXTS)})")
    return files


def _read_flags(path: Path, n: int) -> np.ndarray:
    """A LaSOT/GOT-10k label file: n integers, comma- or newline-separated."""
    text = path.read_text().replace(",", " ").split()
    try:
        values = np.array([int(float(t)) for t in text], dtype=np.int64)
    except ValueError:
        raise DatasetError(f"{path}: expected integers (one per frame)") from None
    if values.shape[0] != n:
        raise DatasetError(f"{path}: {values.shape[0]} values for {n} frames")
    return values


def _check_count(name: str, frames: list[Path], gt: np.ndarray, gt_path: Path) -> None:
    if gt.shape[0] != len(frames):
        raise DatasetError(f"sequence {name}: {len(frames)} frames but {gt.shape[0]} ground-truth rows in {gt_path}")


def _require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DatasetError(f"{path}: {what} not found; see the dataset layouts in docs/evaluation.md")
    return path


def load_otb2015(root: Path, split: str = "") -> list[Sequence]:
    """OTB2015: every folder of `root` with ``img/`` and ``groundtruth_rect*.txt``."""
    _require_dir(root, "OTB2015 root")
    seqs: list[Sequence] = []
    for seq_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        # an empty file is no target (OTB2015's Human4 ships an empty groundtruth_rect.1.txt), as in got10k
        annos = [a for a in sorted(seq_dir.glob("groundtruth_rect*.txt")) if a.read_text(errors="replace").strip()]
        if not annos or not (seq_dir / "img").is_dir():
            continue
        frames_all = list_images(seq_dir / "img")
        for k, anno in enumerate(annos):
            name = seq_dir.name if len(annos) == 1 else f"{seq_dir.name}.{k + 1}"
            gt = read_boxes(anno)
            frames = frames_all
            if len(frames) != gt.shape[0] and seq_dir.name in OTB_FRAME_RANGES:
                start, end = OTB_FRAME_RANGES[seq_dir.name]
                if end - start + 1 == gt.shape[0] and len(frames_all) >= end:
                    frames = frames_all[start - 1:end]
            _check_count(name, frames, gt, anno)
            seqs.append(Sequence(name=name, frames=tuple(frames), groundtruth=gt))
    if not seqs:
        raise DatasetError(f"{root}: no OTB sequences (<seq>/img/*.jpg + <seq>/groundtruth_rect.txt)")
    return seqs


def load_uav123(root: Path, split: str = "UAV123") -> list[Sequence]:
    """UAV123 (or UAV20L with split="UAV20L"): ``anno/<split>/<seq>.txt`` + ``data_seq/UAV123/``.

    The published archive has one frame folder, ``data_seq/UAV123``, for both: UAV20L's long
    sequences (bird1, car1, ...) are the whole folders that UAV123 splits into parts (as the UAV123
    toolkit and got10k read them). A ``data_seq/<split>`` folder, where present, is used instead.
    """
    anno_dir = _require_dir(root / "anno" / split, "UAV123 annotation folder")
    own = root / "data_seq" / split
    data_dir = _require_dir(own if own.is_dir() else root / "data_seq" / "UAV123", "UAV123 frame folder")
    seqs: list[Sequence] = []
    for anno in sorted(anno_dir.glob("*.txt")):
        name = anno.stem
        gt = read_boxes(anno, allow_nan=True)
        if (data_dir / name).is_dir():
            frames = list_images(data_dir / name)[:gt.shape[0]]
        else:
            m = re.fullmatch(r"(.+)_(\d+)", name)
            if not m or m.group(1) not in UAV123_PARTS or not (data_dir / m.group(1)).is_dir():
                raise DatasetError(f"{anno}: no frame folder {data_dir / name}")
            parts = UAV123_PARTS[m.group(1)]
            part = int(m.group(2))
            if not 1 <= part <= len(parts):
                raise DatasetError(f"{anno}: {m.group(1)} has {len(parts)} parts, not {part}")
            start, end = parts[part - 1]
            all_frames = list_images(data_dir / m.group(1))
            frames = all_frames[start - 1:end]
        _check_count(name, frames, gt, anno)
        seqs.append(Sequence(name=name, frames=tuple(frames), groundtruth=gt))
    if not seqs:
        raise DatasetError(f"{anno_dir}: no annotation files")
    return seqs


def _read_resolution(meta: Path) -> tuple[int, int] | None:
    if not meta.is_file():
        return None
    m = re.search(r"resolution\s*:\s*\(\s*(\d+)\s*,\s*(\d+)\s*\)", meta.read_text(errors="replace"))
    return (int(m.group(1)), int(m.group(2))) if m else None


def load_got10k(root: Path, split: str = "test") -> list[Sequence]:
    """GOT-10k ``val`` or ``test`` (`root` may be the dataset root or the split folder itself)."""
    split_dir = root / split if (root / split / "list.txt").is_file() else root
    list_file = split_dir / "list.txt"
    if not list_file.is_file():
        raise DatasetError(f"{root / split / 'list.txt'}: GOT-10k list.txt not found")
    seqs: list[Sequence] = []
    for name in sorted(line.strip() for line in list_file.read_text().splitlines() if line.strip()):
        seq_dir = split_dir / name
        frames = list_images(_require_dir(seq_dir, f"GOT-10k sequence listed in {list_file}"))
        gt_path = seq_dir / "groundtruth.txt"
        gt = read_boxes(gt_path)
        if gt.shape[0] != 1:
            _check_count(name, frames, gt, gt_path)
        present = None
        if (seq_dir / "cover.label").is_file() and gt.shape[0] == len(frames):
            present = _read_flags(seq_dir / "cover.label", len(frames)) > 0
        elif (seq_dir / "absence.label").is_file() and gt.shape[0] == len(frames):
            present = _read_flags(seq_dir / "absence.label", len(frames)) == 0
        seqs.append(Sequence(name=name, frames=tuple(frames), groundtruth=gt, present=present,
                             resolution=_read_resolution(seq_dir / "meta_info.ini")))
    return seqs


def load_lasot(root: Path, split: str = "test") -> list[Sequence]:
    """LaSOT class folders; split "test" uses ``testing_set.txt`` when present, "all" every sequence."""
    _require_dir(root, "LaSOT root")
    listed = root / "testing_set.txt"
    if split == "test" and listed.is_file():
        names = sorted(line.strip() for line in listed.read_text().splitlines() if line.strip())
    elif split in ("test", "all"):
        names = sorted(p.parent.name for p in root.glob("*/*/groundtruth.txt"))
    else:
        raise DatasetError(f"unknown LaSOT split {split!r}: use test or all")
    seqs: list[Sequence] = []
    for name in names:
        seq_dir = root / name.rsplit("-", 1)[0] / name
        frames = list_images(_require_dir(seq_dir, "LaSOT sequence") / "img")
        gt_path = seq_dir / "groundtruth.txt"
        gt = read_boxes(gt_path)
        _check_count(name, frames, gt, gt_path)
        visible = None
        occ, oov = seq_dir / "full_occlusion.txt", seq_dir / "out_of_view.txt"
        if occ.is_file() and oov.is_file():
            visible = (_read_flags(occ, len(frames)) == 0) & (_read_flags(oov, len(frames)) == 0)
        seqs.append(Sequence(name=name, frames=tuple(frames), groundtruth=gt, target_visible=visible))
    if not seqs:
        raise DatasetError(f"{root}: no LaSOT sequences (<class>/<class>-<n>/groundtruth.txt)")
    return seqs


def load_trackingnet(root: Path, split: str = "TEST") -> list[Sequence]:
    """TrackingNet ``<split>/frames/<seq>/<i>.jpg`` + ``<split>/anno/<seq>.txt``."""
    anno_dir = _require_dir(root / split / "anno", "TrackingNet annotation folder")
    frames_dir = _require_dir(root / split / "frames", "TrackingNet frame folder")
    seqs: list[Sequence] = []
    for anno in sorted(anno_dir.glob("*.txt")):
        frames = list_images(frames_dir / anno.stem)
        gt = read_boxes(anno)
        if gt.shape[0] != 1:
            _check_count(anno.stem, frames, gt, anno)
        seqs.append(Sequence(name=anno.stem, frames=tuple(frames), groundtruth=gt))
    if not seqs:
        raise DatasetError(f"{anno_dir}: no annotation files")
    return seqs


_LOADERS: dict[str, Callable[[Path, str], list[Sequence]]] = {
    "otb2015": load_otb2015, "uav123": load_uav123, "got10k": load_got10k, "lasot": load_lasot,
    "trackingnet": load_trackingnet,
}


def load_dataset(name: str, root: str | Path, split: str | None = None) -> list[Sequence]:
    """Read a benchmark.

    Args:
        name: one of `DATASETS`.
        root: the dataset root in its published layout.
        split: GOT-10k val/test, LaSOT test/all, TrackingNet TEST/TRAIN_<k>, UAV123 UAV123/UAV20L;
            None: the benchmark's test split.

    Returns:
        Sequences sorted by name.
    """
    if name not in _LOADERS:
        raise DatasetError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    root = Path(root)
    if not root.exists():
        raise DatasetError(f"{root}: dataset root not found")
    seqs = _LOADERS[name](root, DEFAULT_SPLITS[name] if split is None else split)
    return sorted(seqs, key=lambda s: s.name)
