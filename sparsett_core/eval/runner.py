"""Run a tracker over a benchmark and write results in the benchmark's own format.

Result layouts (``results_dir`` holds one tracker's results on one dataset):

    otb2015, uav123, lasot   <results_dir>/<seq>.txt                 x,y,w,h per frame
                             <results_dir>/<seq>_time.txt            seconds per frame
    got10k                   <results_dir>/<seq>/<seq>_001.txt        (got10k toolkit layout)
                             <results_dir>/<seq>/<seq>_time.txt
                             <results_dir>.zip                        server submission
    trackingnet              <results_dir>/<seq>.txt (+ _time.txt)    <results_dir>.zip holds the <seq>.txt

The first row is the initial (ground-truth) box. A sequence is finished when its result file
exists (written last, atomically), so a rerun skips it (resume). ``Shard(i, n)`` runs every n-th
sequence of the sorted list, starting at the i-th; shards writing into the same directory (or
directories copied together) form one result set, and the submission zip is written by whichever
run finds the set complete.
"""
from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter
from typing import Callable, Iterable, Sequence as Seq

import numpy as np
from tqdm import tqdm

from sparsett_core.eval.boxes import format_boxes, read_boxes, write_text_atomic
from sparsett_core.eval.datasets import DatasetError, Sequence
from sparsett_core.eval.trackers import TrackerLike
from sparsett_core.video import read_image

_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed timestamps: the same results give a byte-identical zip


@dataclass(frozen=True)
class Shard:
    """Part `index` (1-based) of `count` equal interleaved parts of the sequence list."""

    index: int = 1
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1 or not 1 <= self.index <= self.count:
            raise ValueError(f"invalid shard {self.index}/{self.count}: use i/n with 1 <= i <= n")

    @classmethod
    def parse(cls, text: str) -> "Shard":
        """Parse ``"i/n"`` (e.g. ``"2/4"``)."""
        try:
            i, n = (int(t) for t in text.split("/"))
        except ValueError:
            raise ValueError(f"invalid shard {text!r}: use i/n, e.g. 1/4") from None
        return cls(i, n)

    def select(self, items: Seq) -> list:
        """The items of this shard (every `count`-th, starting at `index` - 1)."""
        return list(items[self.index - 1::self.count])


class ResultLayout:
    """Where one tracker's results on one dataset live, in that benchmark's format."""

    def __init__(self, dataset: str, results_dir: str | Path) -> None:
        self.dataset = dataset
        self.dir = Path(results_dir)

    def result_file(self, seq_name: str) -> Path:
        if self.dataset == "got10k":
            return self.dir / seq_name / f"{seq_name}_001.txt"
        return self.dir / f"{seq_name}.txt"

    def time_file(self, seq_name: str) -> Path:
        if self.dataset == "got10k":
            return self.dir / seq_name / f"{seq_name}_time.txt"
        return self.dir / f"{seq_name}_time.txt"

    def is_done(self, seq_name: str) -> bool:
        return self.result_file(seq_name).is_file()

    def write(self, seq_name: str, boxes: np.ndarray, times: np.ndarray) -> None:
        """Write a finished sequence (times first, the result file last and atomically)."""
        write_text_atomic(self.time_file(seq_name), "".join("%.8f\n" % t for t in times))
        decimals = 3 if self.dataset == "got10k" else 4
        write_text_atomic(self.result_file(seq_name), format_boxes(boxes, decimals=decimals))

    def read(self, seq: Sequence) -> np.ndarray:
        """(N, 4) results of `seq`; BoxFileError naming the file if missing, short or unparsable."""
        return read_boxes(self.result_file(seq.name), allow_nan=False, expected_rows=len(seq))

    def read_times(self, seq_name: str) -> np.ndarray | None:
        """Per-frame seconds, or None when no time file exists."""
        path = self.time_file(seq_name)
        if not path.is_file():
            return None
        values = [float(t) for t in path.read_text().split()]
        return np.asarray(values, dtype=np.float64)

    @property
    def zip_path(self) -> Path | None:
        """The submission archive for GOT-10k and TrackingNet, None for the other benchmarks."""
        if self.dataset in ("got10k", "trackingnet"):
            return self.dir.with_name(self.dir.name + ".zip")
        return None

    def package(self, sequences: Iterable[Sequence]) -> Path | None:
        """Write the evaluation-server zip if this benchmark has one and every sequence is done.

        Returns:
            The zip path, or None (no zip for this benchmark, or results incomplete).
        """
        target = self.zip_path
        names = [s.name for s in sequences]
        if target is None or not all(self.is_done(n) for n in names):
            return None
        members: list[tuple[str, Path]] = []
        for n in sorted(names):
            if self.dataset == "got10k":
                members.append((f"{n}/{n}_001.txt", self.result_file(n)))
                if self.time_file(n).is_file():
                    members.append((f"{n}/{n}_time.txt", self.time_file(n)))
            else:
                members.append((f"{n}.txt", self.result_file(n)))
        tmp = target.with_name(target.name + ".tmp")
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for arcname, path in members:
                info = zipfile.ZipInfo(arcname, date_time=_ZIP_DATE)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                zf.writestr(info, path.read_bytes())
        tmp.replace(target)
        return target


@dataclass(frozen=True)
class SequenceRun:
    """Outcome of one sequence: `skipped` when resumed from an existing result."""

    name: str
    num_frames: int
    seconds: float
    skipped: bool

    @property
    def fps(self) -> float:
        return self.num_frames / self.seconds if self.seconds > 0 else float("nan")


def check_initial_box(seq: Sequence) -> None:
    """Raise DatasetError unless the first ground-truth row is a usable box (finite, w > 0, h > 0)."""
    init = np.asarray(seq.groundtruth[0], dtype=np.float64)
    if not (np.isfinite(init).all() and init[2] > 0 and init[3] > 0):
        raise DatasetError(f"sequence {seq.name}: the first ground-truth box {init.tolist()} is not a valid initial "
                           "box (NaN or a size <= 0); every sequence must start with the target visible")


def track_sequence(tracker: TrackerLike, seq: Sequence, *, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Run `tracker` over `seq` (one-pass evaluation: init on frame 1 with the ground truth).

    Returns:
        boxes (N, 4) x,y,w,h (row 0 = the initial box) and times (N,) seconds spent in
        init/update per frame (image decoding excluded).

    Raises:
        DatasetError: the first ground-truth box is not a usable initial box (NaN, size <= 0).
    """
    check_initial_box(seq)
    n = len(seq)
    boxes = np.zeros((n, 4), dtype=np.float64)
    times = np.zeros(n, dtype=np.float64)
    bar = tqdm(total=n, desc=seq.name, unit="fr", leave=False, disable=not progress, dynamic_ncols=True)
    try:
        for i, path in enumerate(seq.frames):
            frame = read_image(path)
            start = perf_counter()
            if i == 0:
                tracker.init(frame, seq.init_box)
                box = seq.init_box
            else:
                box, _score = tracker.update(frame)
            times[i] = perf_counter() - start
            boxes[i] = np.asarray(box, dtype=np.float64).reshape(4)
            if not np.isfinite(boxes[i]).all():
                raise RuntimeError(f"{seq.name}: tracker returned a non-finite box {boxes[i].tolist()} at frame {i + 1}")
            bar.update(1)
    finally:
        bar.close()
    return boxes, times


def run_dataset(make_tracker: Callable[[], TrackerLike], sequences: Seq[Sequence], layout: ResultLayout, *,
                shard: Shard = Shard(), resume: bool = True, progress: bool = True,
                log: Callable[[str], None] | None = None) -> list[SequenceRun]:
    """Run a tracker over this shard's sequences, skipping finished ones when `resume`.

    Args:
        make_tracker: builds the tracker; called once, and only if a sequence needs running.
        sequences: the dataset (all shards see the same sorted list).
        layout: where and how results are written.
        shard: which part of the list this process runs.
        resume: skip sequences whose result file exists.
        progress: show tqdm progress bars (stderr).
        log: receives one line per sequence (name, frames, FPS); None: silent.

    Returns:
        One `SequenceRun` per sequence of the shard.

    Raises:
        DatasetError: a sequence to run has no usable initial box (checked before any tracking).
    """
    mine = shard.select(list(sequences))
    for seq in mine:  # a bad sequence stops the run before any tracking, not hours into it
        if not (resume and layout.is_done(seq.name)):
            check_initial_box(seq)
    tracker: TrackerLike | None = None
    runs: list[SequenceRun] = []
    outer = tqdm(total=len(mine), desc="sequences", unit="seq", disable=not progress, dynamic_ncols=True)
    try:
        for k, seq in enumerate(mine, start=1):
            if resume and layout.is_done(seq.name):
                times = layout.read_times(seq.name)
                seconds = float(times.sum()) if times is not None else 0.0
                runs.append(SequenceRun(seq.name, len(seq), seconds, skipped=True))
                if log:
                    log(f"[{k}/{len(mine)}] {seq.name}: already done, skipped")
                outer.update(1)
                continue
            if tracker is None:
                tracker = make_tracker()
            boxes, times = track_sequence(tracker, seq, progress=progress)
            layout.write(seq.name, boxes, times)
            run = SequenceRun(seq.name, len(seq), float(times.sum()), skipped=False)
            runs.append(run)
            if log:
                log(f"[{k}/{len(mine)}] {seq.name}: {run.num_frames} frames, {run.fps:.1f} FPS")
            outer.update(1)
    finally:
        outer.close()
    return runs
