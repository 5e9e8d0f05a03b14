"""Success and precision plots comparing several result sets, as in tracking papers (matplotlib).

Uses matplotlib's object API with the Agg canvas (no pyplot state, no display needed).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence as Seq

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from sparsett_core.eval.metrics import (CENTER_THRESHOLDS, NORM_CENTER_THRESHOLDS, OVERLAP_THRESHOLDS,
                                        PRECISION_INDEX)
from sparsett_core.eval.report import ResultSet

_STYLES = ["-", "--", "-.", ":"]


def _plot(path: Path, x: np.ndarray, curves: list[tuple[str, np.ndarray, float]], *, title: str, xlabel: str,
          ylabel: str, xlim: tuple[float, float], marker_x: float | None = None) -> Path:
    fig = Figure(figsize=(5.2, 4.2), dpi=150)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for i, (label, curve, value) in enumerate(sorted(curves, key=lambda c: -c[2])):
        ax.plot(x, curve, _STYLES[(i // 10) % len(_STYLES)], linewidth=2, label=f"{label} [{value:.3f}]")
    if marker_x is not None:
        ax.axvline(marker_x, color="0.6", linewidth=0.8, linestyle=":")
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel, xlim=xlim, ylim=(0, 1.02))
    ax.grid(True, alpha=0.4)
    ax.legend(loc="lower left" if "Success" in title else "lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def write_plots(result_sets: Seq[ResultSet], out_dir: str | Path, dataset_title: str) -> list[Path]:
    """Write success_plot.png, precision_plot.png and norm_precision_plot.png to `out_dir`.

    Legends give each result set's name and score (AUC, precision at 20 px, normalised
    precision at 0.2), sorted best first.
    """
    out = Path(out_dir)
    success = [(r.name, r.overall.success_curve, float(r.overall.success_curve.mean())) for r in result_sets]
    precision = [(r.name, r.overall.precision_curve, float(r.overall.precision_curve[PRECISION_INDEX]))
                 for r in result_sets]
    norm = [(r.name, r.overall.norm_precision_curve, float(r.overall.norm_precision_curve[PRECISION_INDEX]))
            for r in result_sets]
    return [
        _plot(out / "success_plot.png", OVERLAP_THRESHOLDS, success, title=f"Success plots of OPE on {dataset_title}",
              xlabel="Overlap threshold", ylabel="Success rate", xlim=(0, 1)),
        _plot(out / "precision_plot.png", CENTER_THRESHOLDS, precision,
              title=f"Precision plots of OPE on {dataset_title}", xlabel="Location error threshold (px)",
              ylabel="Precision", xlim=(0, 50), marker_x=20),
        _plot(out / "norm_precision_plot.png", NORM_CENTER_THRESHOLDS, norm,
              title=f"Normalized precision plots of OPE on {dataset_title}",
              xlabel="Normalized location error threshold", ylabel="Normalized precision", xlim=(0, 0.5),
              marker_x=0.2),
    ]
