"""Tiny benchmark datasets in their published layouts, built at test time from real frames.

Each builder links real frames of ../shared (symlinks, renamed as the benchmark names them) into
the benchmark's folder layout and writes its annotation files in its own format, so that
``sparsett-eval`` reads them exactly as it reads the published datasets. Every builder returns a
manifest, ``{sequence name: Truth}``, made from the source data, not from sparsett_core's readers:
the tests check the readers, the result files and the scores against it.

Frames come from ../shared/data/sequences (the development sequences); the UAV123 layout also
uses real UAV123@10fps frames from ../shared/data/train (a split part needs 451 consecutive
frames) and ../shared/data/train_extra (real absent-target ``NaN`` rows). Flags that no source
annotates (GOT-10k ``cover.label``/``absence.label``, LaSOT ``full_occlusion.txt``/``out_of_view.txt``)
are set on chosen frames to exercise each protocol; they are written where the benchmark puts them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

FRAMES = 30  # frames per short clip

# a static bollard in otb_crossing's static-camera scene (x, y, w, h, checked by eye on frames 31 and 60):
# the second target of the two-target OTB sequence, whose true box is the same in every frame
CROSSING_BOLLARD = "240,201,16,33"


@dataclass(frozen=True)
class Clip:
    """Consecutive frames of a source sequence (a folder with ``img/`` and ``groundtruth_rect.txt``)."""

    source: Path
    start: int = 0
    count: int = FRAMES

    def frames(self) -> list[Path]:
        files = sorted((self.source / "img").iterdir())[self.start:self.start + self.count]
        assert len(files) == self.count, f"{self.source} has fewer than {self.start + self.count} frames"
        return [f.resolve() for f in files]

    def lines(self) -> list[str]:
        """The ground-truth rows as the source writes them (``x,y,w,h``)."""
        rows = (self.source / "groundtruth_rect.txt").read_text().splitlines()[self.start:self.start + self.count]
        assert len(rows) == self.count
        return rows


@dataclass
class Truth:
    """What a sequence is, from the source data.

    Attributes:
        frames: the source frames in order (resolved paths).
        groundtruth: (N, 4) boxes as written (NaN rows kept); for test splits, the full hidden truth.
        visible: (N,) LaSOT target visibility (not full_occlusion and not out_of_view), or None.
        present: (N,) GOT-10k ``cover.label > 0``, or None.
        resolution: (width, height) when ``meta_info.ini`` states it.
        public_rows: ground-truth rows published in the layout (1 for GOT-10k test / TrackingNet TEST).
    """

    frames: list[Path]
    groundtruth: np.ndarray
    visible: np.ndarray | None = None
    present: np.ndarray | None = None
    resolution: tuple[int, int] | None = None
    public_rows: int = -1

    def __post_init__(self) -> None:
        if self.public_rows < 0:
            self.public_rows = len(self.frames)

    def __len__(self) -> int:
        return len(self.frames)


def parse_rows(lines: list[str]) -> np.ndarray:
    """(N, 4) float64 from ``x,y,w,h`` text rows (comma or tab separated; NaN kept)."""
    return np.array([[float(v) for v in line.replace("\t", ",").split(",")] for line in lines], dtype=np.float64)


def _link(frames: list[Path], folder: Path, name_of) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames):
        (folder / name_of(i)).symlink_to(f)


def _write(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))


def _flags(n: int, on: tuple[int, ...], value: str = "1", off: str = "0") -> list[str]:
    return [value if i in on else off for i in range(n)]


# ------------------------------------------------------------------------------------------ OTB2015
def make_otb2015(root: Path, sequences: Path, n: int = FRAMES, full: bool = True) -> dict[str, Truth]:
    """OTB2015: ``<Seq>/img/0001.jpg`` + ``groundtruth_rect.txt``, as the benchmark ships it.

    * ``Crossing``: tab-separated ground truth (as OTB's own Crossing file).
    * ``Jogging``: two targets, ``groundtruth_rect.1.txt`` (the pedestrian) and ``.2.txt`` (a static
      bollard in the static-camera scene) -> sequences ``Jogging.1`` and ``Jogging.2``.
    * ``Human4``: an empty ``groundtruth_rect.1.txt`` beside ``.2.txt``, as in OTB2015 -> ``Human4``.
    * ``Football1`` (`full` only): 80 frames in ``img/`` but 74 ground-truth rows: OTB's frame range 1-74.

    `n` frames per clip (at most 30).
    """
    out: dict[str, Truth] = {}
    crossing = Clip(sequences / "otb_crossing", 0, n)
    _link(crossing.frames(), root / "Crossing" / "img", lambda i: f"{i + 1:04d}.jpg")
    _write(root / "Crossing" / "groundtruth_rect.txt", [r.replace(",", "\t") for r in crossing.lines()])
    out["Crossing"] = Truth(crossing.frames(), parse_rows(crossing.lines()))

    jog = Clip(sequences / "otb_crossing", 30, n)
    _link(jog.frames(), root / "Jogging" / "img", lambda i: f"{i + 1:04d}.jpg")
    _write(root / "Jogging" / "groundtruth_rect.1.txt", jog.lines())
    _write(root / "Jogging" / "groundtruth_rect.2.txt", [CROSSING_BOLLARD] * jog.count)
    out["Jogging.1"] = Truth(jog.frames(), parse_rows(jog.lines()))
    out["Jogging.2"] = Truth(jog.frames(), parse_rows([CROSSING_BOLLARD] * jog.count))

    human = Clip(sequences / "vot_bag", 0, n)
    _link(human.frames(), root / "Human4" / "img", lambda i: f"{i + 1:04d}.jpg")
    (root / "Human4" / "groundtruth_rect.1.txt").write_text("")
    _write(root / "Human4" / "groundtruth_rect.2.txt", human.lines())
    out["Human4"] = Truth(human.frames(), parse_rows(human.lines()))

    if not full:
        return out
    football = Clip(sequences / "vot_bag", 30, 80)
    _link(football.frames(), root / "Football1" / "img", lambda i: f"{i + 1:04d}.jpg")
    _write(root / "Football1" / "groundtruth_rect.txt", football.lines()[:74])
    out["Football1"] = Truth(football.frames()[:74], parse_rows(football.lines()[:74]))
    return out


def make_otb_offset_range(root: Path, sequences: Path) -> Truth:
    """``BlurCar3``: 359 files in ``img/``, 357 ground-truth rows for frames 3-359 (OTB's range).

    The frames are otb_crossing's 120, cycled (the reader's frame choice is what is checked, not
    tracking: 357 frames are too many to track in a unit test).
    """
    src = Clip(sequences / "otb_crossing", 0, 120)
    frames = [src.frames()[i % 120] for i in range(359)]
    _link(frames, root / "BlurCar3" / "img", lambda i: f"{i + 1:04d}.jpg")
    rows = [src.lines()[i % 120] for i in range(359)][2:]
    _write(root / "BlurCar3" / "groundtruth_rect.txt", rows)
    return Truth(frames[2:], parse_rows(rows))


# ------------------------------------------------------------------------------------------ UAV123
def make_uav123(root: Path, sequences: Path, train: Path, train_extra: Path, n: int = FRAMES,
                full: bool = True) -> dict[str, dict[str, Truth]]:
    """UAV123 and UAV20L as in the published archive (``data_seq/UAV123`` holds the frames of both).

    * ``car9``: a whole sequence, annotated in ``anno/UAV123`` and ``anno/UAV20L`` (same folder).
    * ``car14``: real absent-target ``NaN`` rows (UAV123@10fps car14, around its frames 138-149).
    * ``person8_2`` (`full` only): the second part of ``person8`` (frames 1075-1525 of its folder,
      the UAV123 toolkit's range), made of 451 real frames of UAV123@10fps wakeboard5.

    Returns:
        ``{"UAV123": {...}, "UAV20L": {...}}``.
    """
    data = root / "data_seq" / "UAV123"
    car9 = Clip(sequences / "dtb70_surfing06", 0, n)
    _link(car9.frames(), data / "car9", lambda i: f"{i + 1:06d}.jpg")
    _write(root / "anno" / "UAV123" / "car9.txt", car9.lines())
    _write(root / "anno" / "UAV20L" / "car9.txt", car9.lines())

    car14 = Clip(train_extra / "uav123_10fps_car14", 137 - n // 2, n)
    assert np.isnan(parse_rows(car14.lines())).any(), "car14 should hold absent-target rows from its frame 138 on"
    _link(car14.frames(), data / "car14", lambda i: f"{i + 1:06d}.jpg")
    _write(root / "anno" / "UAV123" / "car14.txt", car14.lines())

    uav123 = {"car9": Truth(car9.frames(), parse_rows(car9.lines())),
              "car14": Truth(car14.frames(), parse_rows(car14.lines()))}
    if not full:
        return {"UAV123": uav123, "UAV20L": {"car9": uav123["car9"]}}
    part = Clip(train / "uav123_10fps_wakeboard5", 0, 451)
    filler = part.frames()[0]  # frames 1-1074 of person8 belong to its first part, never read here
    _link([filler] * 1074 + part.frames(), data / "person8", lambda i: f"{i + 1:06d}.jpg")
    _write(root / "anno" / "UAV123" / "person8_2.txt", part.lines())

    uav123["person8_2"] = Truth(part.frames(), parse_rows(part.lines()))
    return {"UAV123": uav123, "UAV20L": {"car9": uav123["car9"]}}


# ------------------------------------------------------------------------------------------ GOT-10k
def _got10k_meta(resolution: tuple[int, int]) -> str:
    return ("[METAINFO]\nurl: https://youtu.be/unknown\nbegin: 00:00:00\nend: 00:00:03\nanno_fps: 10Hz\n"
            "object_class: person\nmotion_class: walking\nmajor_class: human\nroot_class: animal\n"
            f"motion_adverb: slowly\nresolution: ({resolution[0]}, {resolution[1]})\n")


def make_got10k(root: Path, sequences: Path, split: str, n: int = FRAMES) -> dict[str, Truth]:
    """GOT-10k ``val`` (full ground truth, ``absence.label``, ``cover.label``, ``cut_by_image.label``,
    ``meta_info.ini``) or ``test`` (first row only, ``meta_info.ini``), with ``list.txt``.

    In val, frame 8 of the first sequence is marked absent (cover 0), which AO/SR must skip.
    """
    clips = ([Clip(sequences / "dtb70_surfing06", 30, n), Clip(sequences / "otb_crossing", 60, n)] if split == "val"
             else [Clip(sequences / "vot_bag", 110, n), Clip(sequences / "otb_dudek20", 0, min(n, 20))])
    sizes = {"dtb70_surfing06": (1280, 720), "otb_crossing": (360, 240), "vot_bag": (480, 360),
             "otb_dudek20": (720, 480)}
    out: dict[str, Truth] = {}
    for k, clip in enumerate(clips, start=1):
        name = f"GOT-10k_{split.capitalize()}_{k:06d}"
        d = root / split / name
        _link(clip.frames(), d, lambda i: f"{i + 1:08d}.jpg")
        gt = parse_rows(clip.lines())
        (d / "meta_info.ini").write_text(_got10k_meta(sizes[clip.source.name]))
        if split == "val":
            absent = (7,) if k == 1 else ()
            _write(d / "groundtruth.txt", clip.lines())
            _write(d / "absence.label", _flags(clip.count, absent))
            _write(d / "cover.label", _flags(clip.count, absent, "0", "8"))
            _write(d / "cut_by_image.label", _flags(clip.count, ()))
            present = np.array([i not in absent for i in range(clip.count)])
            out[name] = Truth(clip.frames(), gt, present=present, resolution=sizes[clip.source.name])
        else:
            _write(d / "groundtruth.txt", clip.lines()[:1])
            out[name] = Truth(clip.frames(), gt, resolution=sizes[clip.source.name], public_rows=1)
    _write(root / split / "list.txt", sorted(out))
    return out


# ------------------------------------------------------------------------------------------ LaSOT
def make_lasot(root: Path, sequences: Path, n: int = FRAMES) -> dict[str, dict[str, Truth]]:
    """LaSOT ``<class>/<class>-<n>/`` with ``img/``, ``groundtruth.txt``, ``full_occlusion.txt``,
    ``out_of_view.txt``, ``nlp.txt``; ``testing_set.txt`` lists bag-1 and person-1 (person-2 is a
    training sequence).

    Returns:
        ``{"test": {...}, "all": {...}}``.
    """
    specs = {
        "person-1": (Clip(sequences / "otb_crossing", 90, n), (n // 3,), (2 * n // 3,)),  # occluded, out of view
        "person-2": (Clip(sequences / "otb_dudek20", 0, min(n, 20)), (), ()),
        "bag-1": (Clip(sequences / "vot_bag", 140, n), (), (4, 5)),
    }
    out: dict[str, Truth] = {}
    for name, (clip, occluded, out_of_view) in specs.items():
        d = root / name.rsplit("-", 1)[0] / name
        _link(clip.frames(), d / "img", lambda i: f"{i + 1:08d}.jpg")
        _write(d / "groundtruth.txt", clip.lines())
        (d / "full_occlusion.txt").write_text(",".join(_flags(clip.count, occluded)) + "\n")
        (d / "out_of_view.txt").write_text(",".join(_flags(clip.count, out_of_view)) + "\n")
        (d / "nlp.txt").write_text(f"the {name.split('-')[0]} to follow\n")
        hidden = set(occluded) | set(out_of_view)
        out[name] = Truth(clip.frames(), parse_rows(clip.lines()),
                          visible=np.array([i not in hidden for i in range(clip.count)]))
    _write(root / "testing_set.txt", ["bag-1", "person-1"])
    return {"test": {n: out[n] for n in ("bag-1", "person-1")}, "all": out}


# ------------------------------------------------------------------------------------------ TrackingNet
def make_trackingnet(root: Path, sequences: Path, split: str, n: int = FRAMES) -> dict[str, Truth]:
    """TrackingNet ``<split>/frames/<video>/0.jpg ...`` + ``<split>/anno/<video>.txt``.

    ``TEST`` publishes only the first row; ``TRAIN_<k>`` every row. Video names are YouTube ids
    (one starts with "-", as many real ones do).
    """
    clips = ({"-5xRExdRBJw_0": Clip(sequences / "dtb70_surfing06", 60, n),
              "Ak6zl1RtX5E_1": Clip(sequences / "vot_bag", 170, min(n, 26))} if split == "TEST"
             else {"a1qoB1eERn0_0": Clip(sequences / "otb_crossing", 0, n),
                   "ZCuEFZ5Wl_0_2": Clip(sequences / "dtb70_surfing06", 90, min(n, 16))})
    out: dict[str, Truth] = {}
    for name, clip in clips.items():
        _link(clip.frames(), root / split / "frames" / name, lambda i: f"{i}.jpg")
        rows = clip.lines()
        _write(root / split / "anno" / f"{name}.txt", rows[:1] if split == "TEST" else rows)
        out[name] = Truth(clip.frames(), parse_rows(rows), public_rows=1 if split == "TEST" else clip.count)
    return out


# ------------------------------------------------------------------------------------------ training-only layouts
def _xml(path: Path, size: tuple[int, int], objects: list[tuple[int | None, np.ndarray]]) -> None:
    """An ImageNet (VID/DET) annotation: corners xmin..xmax inclusive (w = xmax - xmin + 1)."""
    objs = ""
    for track, (x, y, w, h) in objects:
        tid = "" if track is None else f"<trackid>{track}</trackid>"
        objs += (f"<object>{tid}<name>n02958343</name><bndbox><xmax>{int(round(x + w - 1))}</xmax>"
                 f"<xmin>{int(round(x))}</xmin><ymax>{int(round(y + h - 1))}</ymax><ymin>{int(round(y))}</ymin>"
                 "</bndbox><occluded>0</occluded><generated>0</generated></object>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"<annotation><folder>{path.parent.name}</folder><filename>{path.stem}</filename>"
                    f"<size><width>{size[0]}</width><height>{size[1]}</height></size>{objs}</annotation>\n")


def make_ilsvrc2015(root: Path, sequences: Path, n: int = 10) -> None:
    """ILSVRC2015 VID (train chunk + val, one track per video) and DET (train) in their published layout."""
    import cv2

    videos = {("train", "ILSVRC2015_VID_train_0000", "ILSVRC2015_train_00000000"): Clip(sequences / "vot_bag", 0, n),
              ("val", "", "ILSVRC2015_val_00000000"): Clip(sequences / "otb_crossing", 0, n)}
    for (part, chunk, video), clip in videos.items():
        rel = Path(part) / chunk / video
        size = cv2.imread(str(clip.frames()[0])).shape[1::-1]
        for i, (frame, box) in enumerate(zip(clip.frames(), parse_rows(clip.lines()))):
            dst = root / "Data" / "VID" / rel / f"{i:06d}.JPEG"
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.symlink_to(frame)
            _xml(root / "Annotations" / "VID" / rel / f"{i:06d}.xml", size, [(0, box)])
    det = Clip(sequences / "dtb70_surfing06", 0, n)
    for i, (frame, box) in enumerate(zip(det.frames(), parse_rows(det.lines()))):
        rel = Path("ILSVRC2013_train") / "n02958343" / f"n02958343_{i + 1}"
        dst = root / "Data" / "DET" / "train" / rel.with_suffix(".JPEG")
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.symlink_to(frame)
        _xml(root / "Annotations" / "DET" / "train" / rel.with_suffix(".xml"), (1280, 720), [(None, box)])


def make_coco(root: Path, sequences: Path, n: int = 10) -> None:
    """COCO ``annotations/instances_train2017.json`` + ``train2017/<id>.jpg`` (one object per image)."""
    import json

    clip = Clip(sequences / "vot_bag", 100, n)
    images, annotations = [], []
    for i, (frame, box) in enumerate(zip(clip.frames(), parse_rows(clip.lines())), start=1):
        name = f"{i:012d}.jpg"
        (root / "train2017").mkdir(parents=True, exist_ok=True)
        (root / "train2017" / name).symlink_to(frame)
        images.append({"id": i, "file_name": name, "width": 480, "height": 360})
        annotations.append({"id": 100 + i, "image_id": i, "category_id": 1, "iscrowd": 0,
                            "bbox": [float(v) for v in box], "area": float(box[2] * box[3])})
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "annotations" / "instances_train2017.json").write_text(json.dumps(
        {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "bag"}]}))


@dataclass
class Layouts:
    """Every tiny benchmark under one folder, as the official README's ``datasets/``."""

    root: Path
    otb: dict[str, Truth] = field(default_factory=dict)
    uav: dict[str, dict[str, Truth]] = field(default_factory=dict)
    got10k: dict[str, dict[str, Truth]] = field(default_factory=dict)
    lasot: dict[str, dict[str, Truth]] = field(default_factory=dict)
    trackingnet: dict[str, dict[str, Truth]] = field(default_factory=dict)


def make_all(root: Path, sequences: Path, train: Path, train_extra: Path) -> Layouts:
    """``root/{OTB2015, UAV123, GOT-10k, LaSOT, TrackingNet}``."""
    lay = Layouts(root)
    lay.otb = make_otb2015(root / "OTB2015", sequences)
    lay.uav = make_uav123(root / "UAV123", sequences, train, train_extra)
    lay.got10k = {s: make_got10k(root / "GOT-10k", sequences, s) for s in ("val", "test")}
    lay.lasot = make_lasot(root / "LaSOT", sequences)
    lay.trackingnet = {s: make_trackingnet(root / "TrackingNet", sequences, s) for s in ("TEST", "TRAIN_0")}
    return lay
