"""Half precision under CUDA's autocast policy, checked on the CPU.

CUDA autocast runs softmax, layer_norm, exp, sum ... in float32 and returns float32 from them;
CPU autocast does not. A half-precision step can therefore pass every CPU test and still crash on
its first CUDA frame (``scatter_`` of a float32 softmax into a half buffer did exactly that).
``cuda_emulation.CudaAutocastPolicy`` reproduces CUDA's dtype flow on the CPU; these tests run the
template and track steps of both architectures under it, through the engine the tracker uses
(half weights converted once), and compare with fp32 on real crops.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from cuda_emulation import CudaAutocastPolicy
from sparsett_core import InferenceOptions, SparseTT, Tracker
from sparsett_core.model.neck import topk_softmax
from sparsett_core.tracker.fast import InferenceEngine, half_weights, read_maps

# fp16/bf16 vs fp32 on the same crops (one step each, otb_crossing frames 0/1). Measured
# 2026-11-30 on the CPU (AMD EPYC Zen 4), max |score| / box at the chosen location (crop px):
# Lite fp16 2.9e-3 / 0.065, bf16 2.4e-2 / 0.33; Swin-T (fixture weights) fp16 2.1e-3 / 0.048,
# bf16 1.1e-2 / 0.14. The bounds ask for a usable tracker, not the fixture's fp32 tolerances.
HALF_SCORE = {"fp16": 0.015, "bf16": 0.08}
HALF_BOX_PX = {"fp16": 0.5, "bf16": 2.0}


def real_crops(model: SparseTT, crossing_start) -> tuple[torch.Tensor, torch.Tensor]:
    """The template crop of frame 0 and the search crop of frame 1 of otb_crossing, as the tracker makes them."""
    frames, box = crossing_start
    tracker = Tracker(model)
    tracker.init(frames[0], box)
    tracker.update(frames[1])
    as_input = lambda crop: torch.from_numpy(crop).permute(2, 0, 1)[None].contiguous()  # noqa: E731
    return as_input(tracker.template_crop), as_input(tracker.search_crop)


def test_topk_softmax_keeps_the_dtype_of_a_float32_softmax():
    """The op that crashed: under CUDA's policy the softmax output is float32 while the logits are half."""
    logits = torch.randn(2, 4, 50, 50).half()
    with CudaAutocastPolicy() as policy:
        out = topk_softmax(logits, 8, partition=False)
    assert policy.upcasts >= 1 and out.dtype == torch.float32
    ref = topk_softmax(logits.float(), 8, partition=False)
    assert torch.allclose(out, ref, atol=1e-6) and torch.equal((out > 0).sum(-1), torch.full((2, 4, 50), 8))


@pytest.mark.parametrize("arch", ["lite", "swin"])
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_half_steps_run_under_the_cuda_autocast_policy(arch, precision, request, crossing_start):
    model = request.getfixturevalue(arch)
    model.use_partition_topk(False)  # the code path CUDA takes
    try:
        z, x = real_crops(model, crossing_start)
        fp32 = InferenceEngine(model, torch.device("cpu"), InferenceOptions())
        half = InferenceEngine(model, torch.device("cpu"), InferenceOptions(precision=precision))
        with CudaAutocastPolicy() as policy:
            maps = half.track(x, half.template(z))
        ref = fp32.track(x, fp32.template(z))
    finally:
        model.use_partition_topk(True)
    assert policy.upcasts > 0, "the CUDA float32 policy was not exercised"
    assert maps.dtype == torch.float32 and torch.isfinite(maps).all()
    (score, box), (score0, box0) = read_maps(maps), read_maps(ref)
    assert np.abs(score - score0).max() <= HALF_SCORE[precision]
    best = int(np.argmax(score0[0]))  # the reference's chosen location: its box must stay close
    assert np.abs(box[0, best] - box0[0, best]).max() <= HALF_BOX_PX[precision]


def _tensors(obj):
    """Every tensor in nested lists / tuples / dicts."""
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _tensors(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _tensors(v)


@pytest.mark.parametrize("arch", ["lite", "swin"])
def test_half_weights_equal_autocast_bit_for_bit(arch, request, crossing_start):
    """The converted copy (weights cast once) computes exactly what autocast computes with float32
    weights; LayerNorm and BatchNorm keep float32 parameters."""
    model = request.getfixturevalue(arch)
    z, x = real_crops(model, crossing_start)
    copy16 = half_weights(model, torch.bfloat16)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, cache_enabled=False):
        want = model.track(x, model.template(z))
        got = copy16.track(x, copy16.template(z))
    assert all(torch.equal(a, b) for a, b in zip(want, got))
    norms = [m for m in copy16.modules() if isinstance(m, (torch.nn.LayerNorm, torch.nn.modules.batchnorm._BatchNorm))]
    assert norms and all(p.dtype == torch.float32 for m in norms for p in m.parameters())
    # a backbone with an inference form (the Lite backbones' folded copies) casts that form, which
    # is what runs; its plain modules stay as they were
    owners = [m for m in copy16.modules() if hasattr(m, "cast_inference_")]
    inside = {id(s) for o in owners for s in o.modules()}
    linears = [m for m in copy16.modules() if isinstance(m, torch.nn.Linear) and id(m) not in inside]
    assert linears and all(m.weight.dtype == torch.bfloat16 for m in linears)
    for owner in owners:
        folded = owner.folded()
        weights = list(_tensors([folded.stem, folded.blocks]))
        assert weights and all(t.dtype == torch.bfloat16 for t in weights)
    assert all(p.dtype == torch.float32 for p in model.parameters()), "the original must stay float32"
