"""Every tracker preset against the official SparseTT test configurations.

The values come from the official repository (github.com/fzh0917/SparseTT at 791245c):
``experiments/sparsett/test/<benchmark>/sparsett_swin_<benchmark>.yaml`` (test_lr,
window_influence, penalty_k, total_stride, score_size, z_size, x_size, normalisation), read here
from ../shared/docs/sparsett_reference.md section 3, which copies them; the values no yaml sets
(context_amount, min_w, min_h, the cosine window) are the defaults of the official
``SparseTTTracker.default_hyper_params`` (videoanalyst/pipeline/tracker_impl/sparsett_tracker.py),
which the same section quotes.
"""
from __future__ import annotations

import re

import numpy as np
import pytest

from sparsett_core.tracker.presets import get_preset, preset_names

BENCHMARKS = ("got10k", "lasot", "trackingnet", "uav123", "otb2015")


@pytest.fixture(scope="module")
def official(reference_doc) -> dict:
    """{benchmark: (test_lr, window_influence, penalty_k)} plus the common and default values."""
    text = " ".join(reference_doc.split())  # the doc wraps lines anywhere
    rows = dict((m.group(1), tuple(float(v) for v in m.groups()[1:])) for m in re.finditer(
        r"\| (\w+)/sparsett_swin_\1\.yaml \|[^|]*\| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|", text))
    common = re.search(r"Common to all five: `total_stride (\d+), score_size (\d+), z_size (\d+), x_size (\d+), "
                       r"normalize True, norm_mean \[([\d.,]+)\], norm_std \[([\d.,]+)\], to_rgb True`", text)
    defaults = re.search(r"`context_amount ([\d.]+), windowing 'cosine', min_w (\d+), min_h (\d+)` come from the "
                         r"defaults", text)
    assert set(rows) == set(BENCHMARKS) and common and defaults, "sparsett_reference.md section 3 changed its format"
    return {
        "rows": rows,
        "geometry": dict(zip(("total_stride", "score_size", "z_size", "x_size"), map(int, common.groups()[:4]))),
        "mean": tuple(float(v) for v in common.group(5).split(",")),
        "std": tuple(float(v) for v in common.group(6).split(",")),
        "context_amount": float(defaults.group(1)),
        "min_size": (float(defaults.group(2)), float(defaults.group(3))),
    }


@pytest.mark.parametrize("benchmark", BENCHMARKS)
def test_preset_equals_the_official_test_config(benchmark, official):
    p = get_preset(benchmark)
    assert p.name == benchmark
    assert (p.test_lr, p.window_influence, p.penalty_k) == official["rows"][benchmark]
    assert {k: getattr(p, k) for k in official["geometry"]} == official["geometry"]
    assert p.context_amount == official["context_amount"]
    assert (p.min_w, p.min_h) == official["min_size"]


def test_the_paper_model_tracks_with_the_official_geometry_and_normalisation(official):
    """A Tracker on the paper model uses the official crops, score map, cosine window and mean/std."""
    from sparsett_core import SparseTT, Tracker
    from sparsett_core.config import ModelConfig
    from sparsett_core.tracker.crop import IMAGENET_MEAN_RGB, IMAGENET_STD_RGB

    model = SparseTT(ModelConfig())
    g = official["geometry"]
    for benchmark in BENCHMARKS:
        tracker = Tracker(model, preset=benchmark)
        assert {k: getattr(tracker.preset, k) for k in g} == g
        s = g["score_size"]
        assert np.array_equal(tracker.window, np.outer(np.hanning(s), np.hanning(s)).reshape(-1))
        assert (tracker.preset.test_lr, tracker.preset.window_influence, tracker.preset.penalty_k) == \
            official["rows"][benchmark]
    assert IMAGENET_MEAN_RGB == official["mean"] and IMAGENET_STD_RGB == official["std"]


def test_sparsett_eval_picks_each_benchmarks_preset_for_the_paper_model(official_checkpoint):
    """As the official per-benchmark test configs do: no --preset means the benchmark's own."""
    from sparsett_core.eval.trackers import build_tracker

    for benchmark in BENCHMARKS:
        tracker = build_tracker(checkpoint=official_checkpoint, benchmark=benchmark)
        assert tracker.preset.name == benchmark
    assert set(BENCHMARKS) <= set(preset_names())
