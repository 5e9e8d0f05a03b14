"""Score result sets against a dataset and present them: ranked tables and JSON.

JSON layout (``to_json``), fractions in [0, 1], ``null`` where undefined::

    {"dataset": "otb2015",
     "trackers": {"<name>": {"results": "<dir>",
                             "overall": {"success_auc", "precision", "norm_precision", "ao", "sr50",
                                         "sr75", "fps", "num_sequences", "num_frames"},
                             "sequences": {"<seq>": {"success_auc", ..., "sr75", "fps", "num_frames"}}}}}
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence as Seq

import numpy as np

from sparsett_core.eval.datasets import Sequence
from sparsett_core.eval.metrics import METRIC_KEYS, OverallScore, SequenceScore, aggregate, score_sequence
from sparsett_core.eval.runner import ResultLayout


@dataclass(frozen=True, eq=False)
class ResultSet:
    """One tracker's scores on one dataset."""

    name: str
    path: str
    overall: OverallScore
    sequences: dict[str, SequenceScore]
    fps: float | None
    sequence_fps: dict[str, float | None]


def _fps(times: np.ndarray | None) -> float | None:
    if times is None or times.size == 0 or times.sum() <= 0:
        return None
    return float(times.size / times.sum())


def score_result_set(name: str, sequences: Seq[Sequence], layout: ResultLayout, protocol: str) -> ResultSet:
    """Score every sequence's result file.

    Raises:
        BoxFileError: a missing result file, wrong row count or unparsable row (names file and line).
        ValueError: a test split without ground truth (results must go to the evaluation server).
    """
    scores: dict[str, SequenceScore] = {}
    seq_fps: dict[str, float | None] = {}
    total_frames, total_seconds = 0, 0.0
    for seq in sequences:
        if not seq.has_full_groundtruth:
            where = layout.zip_path or layout.dir
            raise ValueError(f"{seq.name}: the ground truth has only {seq.groundtruth.shape[0]} row(s) for {len(seq)} "
                             f"frames (a test split without public annotations); submit {where} to the benchmark's "
                             "evaluation server instead")
        results = layout.read(seq)
        bound = seq.resolution if protocol == "got10k" else None
        scores[seq.name] = score_sequence(results, seq.groundtruth, protocol=protocol,  # type: ignore[arg-type]
                                          target_visible=seq.target_visible, present=seq.present, bound=bound)
        times = layout.read_times(seq.name)
        seq_fps[seq.name] = _fps(times)
        if times is not None and times.sum() > 0:
            total_frames += times.size
            total_seconds += float(times.sum())
    overall = aggregate(scores.values())
    fps = total_frames / total_seconds if total_seconds > 0 else None
    return ResultSet(name=name, path=str(layout.dir), overall=overall, sequences=scores, fps=fps,
                     sequence_fps=seq_fps)


def _clean(value: float | None) -> float | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(value)


def sequence_json(score: SequenceScore, fps: float | None = None) -> dict:
    """The fixed metric keys of one sequence, plus fps and num_frames."""
    out = {k: _clean(v) for k, v in score.metrics().items()}
    out["fps"] = _clean(fps)
    out["num_frames"] = score.num_frames
    return out


def to_json(dataset: str, result_sets: Seq[ResultSet]) -> dict:
    """JSON-ready report of several result sets (layout in the module docstring)."""
    trackers = {}
    for rs in result_sets:
        overall = {k: _clean(v) for k, v in rs.overall.metrics().items()}
        overall.update(fps=_clean(rs.fps), num_sequences=rs.overall.num_sequences, num_frames=rs.overall.num_frames)
        trackers[rs.name] = {
            "results": rs.path,
            "overall": overall,
            "sequences": {n: sequence_json(s, rs.sequence_fps.get(n)) for n, s in rs.sequences.items()},
        }
    return {"dataset": dataset, "trackers": trackers}


_HEADERS = {"success_auc": "AUC", "precision": "P@20", "norm_precision": "Pnorm", "ao": "AO", "sr50": "SR0.5",
            "sr75": "SR0.75"}


def _pct(v: float | None) -> str:
    v = _clean(v)
    return "-" if v is None else f"{100 * v:.1f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    fmt = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
    lines = [fmt(header), "  ".join("-" * w for w in widths)] + [fmt(r) for r in rows]
    return "\n".join(lines)


def format_ranking(result_sets: Seq[ResultSet], rank_by: str = "success_auc") -> str:
    """Ranked overall table (percent), best first."""
    ordered = sorted(result_sets, key=lambda r: -(_clean(r.overall.metrics()[rank_by]) or -1.0))
    header = ["tracker"] + [_HEADERS[k] for k in METRIC_KEYS] + ["FPS", "seqs", "frames"]
    rows = []
    for rs in ordered:
        m = rs.overall.metrics()
        rows.append([rs.name] + [_pct(m[k]) for k in METRIC_KEYS]
                    + ["-" if rs.fps is None else f"{rs.fps:.1f}", str(rs.overall.num_sequences),
                       str(rs.overall.num_frames)])
    return _table(header, rows)


def format_sequences(rs: ResultSet) -> str:
    """Per-sequence table (percent) of one result set."""
    header = ["sequence"] + [_HEADERS[k] for k in METRIC_KEYS] + ["FPS", "frames"]
    rows = []
    for name, s in rs.sequences.items():
        m = s.metrics()
        fps = rs.sequence_fps.get(name)
        rows.append([name] + [_pct(m[k]) for k in METRIC_KEYS] + ["-" if fps is None else f"{fps:.1f}",
                                                                  str(s.num_frames)])
    return f"{rs.name}:\n" + _table(header, rows)


def default_name(results_dir: str | Path) -> str:
    """A result set's display name: its directory name."""
    return Path(results_dir).resolve().name
