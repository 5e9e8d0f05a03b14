"""The fast path for the machine at hand: a rule on what the CPU can do, then a short measurement.

``InferenceOptions(backend="auto")`` (the node's ``fast_path: true``, ``--backend auto`` of the
CLIs) is resolved here into concrete options:

* CUDA: fp16 + CUDA graphs + device crop on torch (:meth:`InferenceOptions.fast`).
* CPU: the candidates are torch fp32 (the reference, always), torch bf16 for Swin-T only where the
  CPU computes bf16 natively (AVX512-BF16 or AMX; emulated bf16 is up to 11x slower than fp32),
  and ONNX Runtime fp32 where onnxruntime is installed. With more than one candidate, each runs
  the track step on the same crop, alternately (the machine's speed drifts over seconds), and the
  fastest median wins; another candidate must beat torch fp32 by ``MARGIN`` to replace it. So the
  choice is never slower than fp32 eager on this machine, within the measurement's noise.

The reason (rule and measured times) is returned for the log.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import numpy as np
import torch

from sparsett_core import hardware
from sparsett_core.model.sparsett import SparseTT
from sparsett_core.tracker.fast import InferenceOptions, make_engine

MARGIN = 0.05  # a candidate replaces torch fp32 only if at least 5 % faster


@dataclass(frozen=True)
class Selection:
    """The resolved options and why (one line for the log; the measured medians in ms)."""

    options: InferenceOptions
    reason: str
    timings_ms: dict[str, float]


def cpu_candidates(model: SparseTT) -> tuple[list[InferenceOptions], list[str]]:
    """The CPU candidates by rule, and the notes on what was left out and why."""
    from sparsett_core.tracker.ort_engine import ort_unavailable_reason

    candidates, notes = [InferenceOptions(pinned_memory=False)], []
    rule = InferenceOptions.fast("cpu", model.config.variant)  # bf16 only for Swin-T on a native-bf16 CPU
    if rule.precision == "bf16":
        candidates.append(rule)
    elif model.config.variant != "swin_t":
        notes.append("bf16 not tried for this model (no faster for the small models, boxes up to 2 px off)")
    else:
        notes.append(f"no bf16: this CPU has no native bf16 ({hardware.cpu_info().isa})")
    reason = ort_unavailable_reason()
    if reason:
        notes.append(f"no onnxruntime: {reason}")
    else:
        candidates.append(InferenceOptions(backend="onnxruntime", pinned_memory=False))
    return candidates, notes


def label(options: InferenceOptions) -> str:
    return f"{options.backend} {options.precision}"


def measure(model: SparseTT, candidates: list[InferenceOptions], runs: int = 5, warmup: int = 2) -> dict[str, float]:
    """Median track-step time (ms) of each candidate on the same random crop, run alternately."""
    c = model.config
    gen = torch.Generator().manual_seed(0)
    scale = 255.0 if c.input_format == "bgr255" else 2.0
    z = torch.rand(1, 3, c.z_size, c.z_size, generator=gen) * scale
    x = torch.rand(1, 3, c.x_size, c.x_size, generator=gen) * scale
    device = torch.device("cpu")
    engines = [make_engine(model, device, o) for o in candidates]
    feats = [e.template(z) for e in engines]
    times: dict[str, list[float]] = {label(o): [] for o in candidates}
    for i in range(warmup + runs):
        for o, e, f in zip(candidates, engines, feats):
            t0 = time.perf_counter()
            out = e.track(x, f)
            np.asarray(out[..., 0] if isinstance(out, np.ndarray) else out[..., 0].cpu())
            if i >= warmup:
                times[label(o)].append((time.perf_counter() - t0) * 1e3)
    return {k: statistics.median(v) for k, v in times.items()}


def select_inference(model: SparseTT, device: str | torch.device = "cpu", runs: int = 5) -> Selection:
    """Resolve the fast path (``backend="auto"``) for ``model`` on ``device``; see the module docstring."""
    device = torch.device(device)
    if device.type == "cuda":
        options = InferenceOptions.fast(device, model.config.variant)
        return Selection(options, "CUDA: fp16 autocast, CUDA graphs, crop on the GPU (torch)", {})
    candidates, notes = cpu_candidates(model)
    cpu = hardware.cpu_info()
    if len(candidates) == 1:
        return Selection(candidates[0], f"torch fp32 on {cpu.describe()}: " + "; ".join(notes), {})
    timings = measure(model, candidates, runs=runs)
    reference = timings[label(candidates[0])]
    best = min(candidates, key=lambda o: timings[label(o)])
    if timings[label(best)] > reference * (1 - MARGIN):
        best = candidates[0]
    measured = ", ".join(f"{k} {v:.1f} ms" for k, v in timings.items())
    reason = f"{label(best)} on {cpu.describe()}: track step {measured} (median of {runs}, alternated)"
    if notes:
        reason += "; " + "; ".join(notes)
    return Selection(best, reason, timings)


def resolve(model: SparseTT, device: str | torch.device, options: InferenceOptions) -> tuple[InferenceOptions, Selection | None]:
    """``options`` unchanged, or, for backend "auto", the selected options and the selection."""
    if options.backend != "auto":
        return options, None
    selection = select_inference(model, device)
    return selection.options, selection


__all__ = ["MARGIN", "Selection", "cpu_candidates", "measure", "resolve", "select_inference"]
