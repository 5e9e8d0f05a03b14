"""Readers of the training datasets in their published layouts, with a cached index.

Every reader returns a list of :class:`Sequence`. A video sequence has one row per annotated
frame; a still-image "sequence" (COCO, ILSVRC DET) is one image whose rows are its objects.
Boxes are ``x, y, w, h`` (top-left corner, size) exactly as the annotation gives them; the "+1"
conversion to corners happens in the sampler, as in the official code.

Layouts (``root`` = the folder named in the config):

* got10k       ``root/{train,val}/list.txt`` and ``root/<subset>/<seq>/{00000001.jpg.., groundtruth.txt,
                 absence.label}``
* lasot        ``root/<class>/<class>-<n>/{img/00000001.jpg.., groundtruth.txt, full_occlusion.txt,
                 out_of_view.txt}``; the split comes from ``root/training_set.txt`` or
                 ``root/testing_set.txt`` (one sequence name per line; subset "all" uses every one)
* trackingnet  ``root/TRAIN_<k>/{anno/<video>.txt, frames/<video>/<i>.jpg}`` (k = 0..11; subset
                 "train" = all chunks present, or one chunk such as "TRAIN_3")
* vid          ``root/{Data,Annotations}/VID/{train/<chunk>/<video>, val/<video>}/<frame>.{JPEG,xml}``;
                 one sequence per (video, trackid); subsets "train", "val", "train_val"
* det          ``root/{Data,Annotations}/DET/<subset>/**/<image>.{JPEG,xml}``
* coco         ``root/annotations/instances_<subset>.json`` and ``root/<subset>/<file_name>``
                 (subset e.g. "train2017"; crowd boxes are skipped)
* sequences    own sequences: ``root[/<subset>]/<seq>/{img/ or the folder itself}/<frames>`` (sorted file
                 order = frame order) and ``groundtruth.txt`` or ``groundtruth_rect.txt`` with one
                 ``x,y,w,h`` line per frame (comma, tab or space separated; NaN or zero-size rows
                 mark frames without a target)
"""
from __future__ import annotations

import hashlib
import json
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

INDEX_VERSION = 1
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


@dataclass(frozen=True, eq=False)
class Sequence:
    """One training sequence (or one still image with its objects).

    Attributes:
        name: unique name inside its dataset.
        frame_dir: folder of the frames.
        frame_ids: (N,) int64, inserted into ``pattern`` to form file names.
        boxes: (N, 4) float64 ``x, y, w, h`` per row.
        valid: (N,) bool, rows whose target is visible with a positive size.
        pattern: file-name format of a frame id (e.g. ``"{:08d}.jpg"``); "" = use ``names``.
        names: explicit file names per row (own sequences, still images).
        static: True for a still image: rows are different objects of the same image.
    """

    name: str
    frame_dir: str
    frame_ids: np.ndarray
    boxes: np.ndarray
    valid: np.ndarray
    pattern: str = ""
    names: tuple[str, ...] = ()
    static: bool = False

    def __len__(self) -> int:
        return len(self.boxes)

    def frame_path(self, row: int) -> str:
        """Path of the image of ``row``."""
        fname = self.pattern.format(int(self.frame_ids[row])) if self.pattern else self.names[row]
        return os.path.join(self.frame_dir, fname)


# ----------------------------------------------------------------------------------- helpers
def read_boxes(path: Path) -> np.ndarray:
    """Read an ``x,y,w,h`` per line file (comma, tab or whitespace separated).

    Returns:
        (N, 4) float64; unparsable values (``NaN``, ``none``) become NaN.
    """
    rows = []
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if not line:
            continue
        parts = line.replace(",", " ").replace("\t", " ").replace(";", " ").split()
        if len(parts) < 4:
            raise ValueError(f"{path}: line {line!r} does not hold 4 values x,y,w,h")
        vals = []
        for p in parts[:4]:
            try:
                vals.append(float(p))
            except ValueError:
                vals.append(float("nan"))
        rows.append(vals)
    return np.asarray(rows, dtype=np.float64).reshape(-1, 4)


def box_valid(boxes: np.ndarray) -> np.ndarray:
    """(N,) bool: finite rows with w > 0 and h > 0."""
    return np.isfinite(boxes).all(axis=1) & (boxes[:, 2] > 0) & (boxes[:, 3] > 0)


def _read_flags(path: Path, n: int) -> np.ndarray:
    """0/1 flags, one per frame (comma or newline separated); all zero if the file is absent."""
    if not path.is_file():
        return np.zeros(n, dtype=bool)
    vals = [v for v in path.read_text().replace(",", " ").split()]
    flags = np.asarray([int(float(v)) for v in vals], dtype=np.int64)
    if len(flags) != n:
        raise ValueError(f"{path}: {len(flags)} flags for {n} ground-truth rows")
    return flags.astype(bool)


def _video(name: str, frame_dir: Path, boxes: np.ndarray, pattern: str, first_id: int,
           hidden: np.ndarray | None = None) -> Sequence:
    valid = box_valid(boxes)
    if hidden is not None:
        valid &= ~hidden
    ids = np.arange(first_id, first_id + len(boxes), dtype=np.int64)
    return Sequence(name, str(frame_dir), ids, boxes, valid, pattern=pattern)


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"{what}: {path} not found; check the dataset root (see docs/training.md)")
    return path


# ----------------------------------------------------------------------------------- readers
def read_got10k(root: Path, subset: str) -> list[Sequence]:
    """GOT-10k train/val: frames ``00000001.jpg``, ``absence.label`` marks absent frames."""
    base = _require(root / subset, f"GOT-10k subset {subset!r}")
    list_file = base / "list.txt"
    names = (list_file.read_text().split() if list_file.is_file()
             else sorted(p.name for p in base.iterdir() if p.is_dir()))
    seqs = []
    for name in names:
        d = base / name
        boxes = read_boxes(_require(d / "groundtruth.txt", "GOT-10k ground truth"))
        seqs.append(_video(name, d, boxes, "{:08d}.jpg", 1, _read_flags(d / "absence.label", len(boxes))))
    return seqs


def read_lasot(root: Path, subset: str) -> list[Sequence]:
    """LaSOT: ``<class>/<class>-<n>/img``; occluded or out-of-view frames are not sampled."""
    _require(root, "LaSOT root")
    all_names = sorted(p.name for c in root.iterdir() if c.is_dir() for p in c.iterdir()
                       if p.is_dir() and (p / "groundtruth.txt").is_file())
    if subset == "all":
        names = all_names
    elif (root / "training_set.txt").is_file() and subset == "train":
        names = (root / "training_set.txt").read_text().split()
    elif (root / "testing_set.txt").is_file():
        test = set((root / "testing_set.txt").read_text().split())
        names = [n for n in all_names if n not in test] if subset == "train" else sorted(test)
    else:
        raise FileNotFoundError(
            f"LaSOT split list not found in {root}: put training_set.txt or testing_set.txt "
            "(one sequence name per line, from the LaSOT toolkit) there, or use subset 'all'")
    seqs = []
    for name in names:
        d = root / name.rsplit("-", 1)[0] / name
        boxes = read_boxes(_require(d / "groundtruth.txt", "LaSOT ground truth"))
        hidden = _read_flags(d / "full_occlusion.txt", len(boxes)) | _read_flags(d / "out_of_view.txt", len(boxes))
        seqs.append(_video(name, d / "img", boxes, "{:08d}.jpg", 1, hidden))
    return seqs


def read_trackingnet(root: Path, subset: str) -> list[Sequence]:
    """TrackingNet: ``TRAIN_<k>/anno/<video>.txt`` and ``TRAIN_<k>/frames/<video>/<i>.jpg``."""
    _require(root, "TrackingNet root")
    if subset == "train":
        chunks = sorted((p for p in root.iterdir() if p.is_dir() and p.name.startswith("TRAIN_")),
                        key=lambda p: int(p.name.split("_")[1]))
    else:
        chunks = [_require(root / subset, "TrackingNet chunk")]
    if not chunks:
        raise FileNotFoundError(f"no TRAIN_<k> chunk in {root}")
    seqs = []
    for chunk in chunks:
        for anno in sorted((chunk / "anno").glob("*.txt")):
            boxes = read_boxes(anno)
            seqs.append(_video(f"{chunk.name}/{anno.stem}", chunk / "frames" / anno.stem, boxes, "{}.jpg", 0))
    return seqs


def _xml_objects(path: Path) -> list[tuple[int, list[float]]]:
    """(trackid, [x, y, w, h]) per object of an ImageNet xml (w = xmax - xmin + 1)."""
    objs = []
    for obj in ET.parse(path).getroot().findall("object"):
        bb = [float(obj.find(f"bndbox/{k}").text) for k in ("xmin", "ymin", "xmax", "ymax")]
        tid = obj.find("trackid")
        objs.append((int(tid.text) if tid is not None else 0,
                     [bb[0], bb[1], bb[2] - bb[0] + 1, bb[3] - bb[1] + 1]))
    return objs


def read_vid(root: Path, subset: str) -> list[Sequence]:
    """ILSVRC2015 VID: one sequence per (video, trackid), rows = frames where it is annotated."""
    parts = {"train": ["train"], "val": ["val"], "train_val": ["train", "val"]}.get(subset)
    if parts is None:
        raise ValueError(f"VID subset must be train, val or train_val, got {subset!r}")
    seqs = []
    for part in parts:
        anno_base = _require(root / "Annotations" / "VID" / part, "VID annotations")
        videos = sorted({p.parent for p in anno_base.rglob("*.xml")})
        for vdir in videos:
            rel = vdir.relative_to(anno_base)
            tracks: dict[int, tuple[list[int], list[list[float]]]] = {}
            for xml in sorted(vdir.glob("*.xml")):
                fid = int(xml.stem)
                for tid, box in _xml_objects(xml):
                    ids, boxes = tracks.setdefault(tid, ([], []))
                    ids.append(fid)
                    boxes.append(box)
            for tid, (ids, boxes) in sorted(tracks.items()):
                b = np.asarray(boxes, dtype=np.float64)
                seqs.append(Sequence(f"{part}/{rel}/{tid}", str(root / "Data" / "VID" / part / rel),
                                     np.asarray(ids, dtype=np.int64), b, box_valid(b), pattern="{:06d}.JPEG"))
    return seqs


def _still(name: str, image: Path, boxes: list[list[float]]) -> Sequence:
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return Sequence(name, str(image.parent), np.zeros(len(b), dtype=np.int64), b, box_valid(b),
                    names=(image.name,) * len(b), static=True)


def read_det(root: Path, subset: str) -> list[Sequence]:
    """ILSVRC DET: one still image per annotation xml with at least one object."""
    anno_base = _require(root / "Annotations" / "DET" / subset, "DET annotations")
    seqs = []
    for xml in sorted(anno_base.rglob("*.xml")):
        boxes = [b for _, b in _xml_objects(xml)]
        if boxes:
            rel = xml.relative_to(anno_base).with_suffix(".JPEG")
            seqs.append(_still(str(rel), root / "Data" / "DET" / subset / rel, boxes))
    return seqs


def read_coco(root: Path, subset: str) -> list[Sequence]:
    """COCO instances json: one still image per image with non-crowd objects."""
    anno = json.loads(_require(root / "annotations" / f"instances_{subset}.json", "COCO annotations").read_text())
    per_image: dict[int, list[list[float]]] = {}
    for a in anno["annotations"]:
        if not a.get("iscrowd", 0):
            per_image.setdefault(a["image_id"], []).append([float(v) for v in a["bbox"]])
    seqs = []
    for im in anno["images"]:
        if im["id"] in per_image:
            seqs.append(_still(im["file_name"], root / subset / im["file_name"], per_image[im["id"]]))
    return seqs


def read_sequences(root: Path, subset: str = "") -> list[Sequence]:
    """Own sequences: one folder each with frames (or ``img/``) and ``groundtruth(_rect).txt``.

    ``subset`` names a sub-folder of ``root`` holding the sequences if it exists (e.g. ``train``);
    otherwise the sequences are directly in ``root``.
    """
    base = _require(root / subset if subset and (root / subset).is_dir() else root, "sequences root")
    seqs = []
    for d in sorted(p for p in base.iterdir() if p.is_dir()):
        gt = next((d / n for n in ("groundtruth.txt", "groundtruth_rect.txt") if (d / n).is_file()), None)
        if gt is None:
            continue
        frame_dir = d / "img" if (d / "img").is_dir() else d
        frames = sorted(p.name for p in frame_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        boxes = read_boxes(gt)
        if len(frames) != len(boxes):
            raise ValueError(f"{d}: {len(frames)} frames but {len(boxes)} ground-truth rows; "
                             "they must match one to one")
        seqs.append(Sequence(d.name, str(frame_dir), np.arange(len(boxes), dtype=np.int64), boxes,
                             box_valid(boxes), names=tuple(frames)))
    if not seqs:
        raise FileNotFoundError(f"no sequence folder with groundtruth.txt in {base}")
    return seqs


READERS: dict[str, Callable[[Path, str], list[Sequence]]] = {
    "got10k": read_got10k,
    "lasot": read_lasot,
    "trackingnet": read_trackingnet,
    "vid": read_vid,
    "det": read_det,
    "coco": read_coco,
    "sequences": read_sequences,
}


# ----------------------------------------------------------------------------------- cache
def _pack(seqs: list[Sequence]) -> dict[str, np.ndarray]:
    lengths = np.asarray([len(s) for s in seqs], dtype=np.int64)
    has_names = any(s.names for s in seqs)
    out = {
        "version": np.asarray(INDEX_VERSION),
        "name": np.asarray([s.name for s in seqs], dtype=str),
        "frame_dir": np.asarray([s.frame_dir for s in seqs], dtype=str),
        "pattern": np.asarray([s.pattern for s in seqs], dtype=str),
        "static": np.asarray([s.static for s in seqs], dtype=bool),
        "offsets": np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        "frame_ids": np.concatenate([s.frame_ids for s in seqs]) if seqs else np.zeros(0, np.int64),
        "boxes": np.concatenate([s.boxes for s in seqs]) if seqs else np.zeros((0, 4)),
        "valid": np.concatenate([s.valid for s in seqs]) if seqs else np.zeros(0, bool),
    }
    if has_names:
        out["names"] = np.asarray([n for s in seqs for n in (s.names or ("",) * len(s))], dtype=str)
    return out


def _unpack(z: dict[str, np.ndarray]) -> list[Sequence]:
    off = z["offsets"]
    names = z.get("names")
    seqs = []
    for i in range(len(z["name"])):
        a, b = int(off[i]), int(off[i + 1])
        seqs.append(Sequence(
            str(z["name"][i]), str(z["frame_dir"][i]), z["frame_ids"][a:b], z["boxes"][a:b], z["valid"][a:b],
            pattern=str(z["pattern"][i]),
            names=tuple(str(n) for n in names[a:b]) if names is not None and not str(z["pattern"][i]) else (),
            static=bool(z["static"][i])))
    return seqs


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/sparsett/train_index`` (``~/.cache/...`` by default)."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "sparsett" / "train_index"


def index_path(kind: str, root: str | Path, subset: str, cache_dir: str | Path) -> Path:
    """Cache file of one (kind, absolute root, subset)."""
    key = f"{INDEX_VERSION}|{kind}|{Path(root).resolve()}|{subset}"
    digest = hashlib.sha1(key.encode()).hexdigest()[:16]
    return Path(cache_dir) / f"{kind}_{subset.replace('/', '_')}_{digest}.npz"


def load_index(kind: str, root: str | Path, subset: str, cache_dir: str | Path = "",
               rebuild: bool = False) -> list[Sequence]:
    """The sequences of a dataset, read from the cache or built once and cached.

    The cache is keyed by kind, absolute root and subset; delete it (or pass ``rebuild``) after
    changing the dataset on disk. It is written atomically, so concurrent builders are safe.

    Raises:
        ValueError: unknown kind; FileNotFoundError: the layout is not found under ``root``.
    """
    if kind not in READERS:
        raise ValueError(f"unknown dataset kind {kind!r}; choose one of {sorted(READERS)}")
    cache = index_path(kind, root, subset, cache_dir or default_cache_dir())
    if cache.is_file() and not rebuild:
        with np.load(cache, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
        if int(data["version"]) == INDEX_VERSION:
            return _unpack(data)
    seqs = READERS[kind](Path(root), subset)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(f"{cache.stem}.{os.getpid()}.tmp.npz")
    np.savez(tmp, **_pack(seqs))
    os.replace(tmp, cache)
    return seqs
