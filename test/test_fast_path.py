"""Fast inference path (sparsett_core/tracker/fast.py) and MultiTracker against the reference path.

CPU: the device crop is compared with the cv2 crop (bit-exact), the CUDA-only options must fall
back to exactly the reference results, bf16 stays within a measured tolerance of fp32, and N-target
tracking equals N single-target Trackers. CUDA tests run only where a GPU is present.
"""
from __future__ import annotations

import os

import cv2
import numpy as np
import pytest
import torch

from sparsett_core import InferenceOptions, MultiTracker, SparseTT, Tracker, hardware
from sparsett_core.hardware import CpuInfo
from sparsett_core.tracker.crop import get_crop, normalisation_table, normalise
from sparsett_core.tracker.device_crop import crop_batch, crop_plan, normalise_batch

N_FRAMES = 3
# bf16 autocast vs fp32 on otb_crossing (seed-0 fixture weights, 5 updates): measured max 0.14 px /
# score 2.5e-3 (2026-11-24, docs/gpu.md); the bound leaves room for other CPUs' bf16 kernels.
BF16_BOX_PX, BF16_SCORE = 1.0, 0.02
# batch N vs batch 1 (fp32, CPU): measured max 9e-5 px / score 6e-7.
MULTI_BOX_PX, MULTI_SCORE = 1e-2, 1e-4
# fp32 on CUDA (graphs + device crop, TF32 off) vs fp32 eager on the same crops: other kernels and
# summation orders only. The CPU run of the same comparison is exact (test_cuda_options_on_cpu...).
CUDA_FP32_BOX_PX, CUDA_FP32_SCORE = 1e-2, 1e-4
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available (torch.cuda.is_available() is False)")


@pytest.fixture(scope="module")
def model(official_checkpoint):
    return SparseTT.from_checkpoint(official_checkpoint)


def test_device_crop_is_bit_exact_with_cv2_crop():
    """Random targets, inside / across / outside the frame, both crop sizes: 0 difference allowed."""
    rng = np.random.default_rng(0)
    frame = cv2.GaussianBlur(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8), (0, 0), 2)
    table = normalisation_table()
    for _ in range(60):
        target = tuple(np.float32(v) for v in (rng.uniform(-30, 350), rng.uniform(-30, 270),
                                                rng.uniform(5, 200), rng.uniform(5, 200)))
        avg = frame.mean(axis=(0, 1)) + rng.uniform(0, 50, 3)
        for out in (127, 289):
            want, scale = get_crop(frame, *target, 127, out, avg)
            taps, scales = crop_plan([target], 127, out)
            got = crop_batch(torch.from_numpy(frame), *torch.from_numpy(taps),
                             torch.tensor([int(v) for v in avg], dtype=torch.int32))
            np.testing.assert_array_equal(got[0].numpy(), want)
            assert scales[0] == scale
            norm = normalise_batch(got, torch.from_numpy(table))[0].permute(1, 2, 0).numpy()
            np.testing.assert_array_equal(norm, normalise(want, table))


def test_cuda_options_on_cpu_equal_the_reference(model, crossing_start):
    """gpu_crop + cuda_graphs + pinned uploads on the CPU: the same boxes and scores, bit for bit."""
    frames, box = crossing_start
    fast = Tracker(model, preset="got10k", options=InferenceOptions(gpu_crop=True, cuda_graphs=True, pinned_memory=True))
    ref = Tracker(model, preset="got10k")
    assert not fast.engine.graphs
    fast.init(frames[0], box)
    ref.init(frames[0], box)
    for frame in frames[1:3]:
        assert fast.update(frame) == ref.update(frame)


def test_options_are_validated(model):
    with pytest.raises(ValueError, match="precision must be one of"):
        InferenceOptions(precision="int8")
    with pytest.raises(ValueError, match="backend must be one of"):
        InferenceOptions(backend="tensorflow")
    with pytest.raises(ValueError, match="contradicts"):
        Tracker(model, precision="bf16", options=InferenceOptions(precision="fp32"))
    assert InferenceOptions.fast("cuda", "lite").precision == "fp16"
    assert InferenceOptions.fast("cuda") == InferenceOptions("fp16", cuda_graphs=True, gpu_crop=True, pinned_memory=True)


def _cpu(native_bf16: bool) -> CpuInfo:
    return CpuInfo(model="test CPU", capability="AVX512" if native_bf16 else "AVX2", avx2=True,
                   avx512=native_bf16, avx512_bf16=native_bf16, amx=False, cores=2)


@pytest.mark.parametrize("native_bf16", [False, True])
def test_fast_path_picks_bf16_only_on_native_bf16(monkeypatch, native_bf16):
    """The rule: a CPU without native bf16 (AVX2 only, e.g. AMD Zen 3, where bf16 Swin-T is 11x
    slower than fp32) never gets bf16; SparseTT-Lite never does (no faster, boxes 2 px off)."""
    monkeypatch.setattr(hardware, "cpu_info", lambda: _cpu(native_bf16))
    assert InferenceOptions.fast("cpu", "swin_t").precision == ("bf16" if native_bf16 else "fp32")
    assert InferenceOptions.fast("cpu", "lite").precision == "fp32"
    assert not InferenceOptions.fast("cpu").cuda_graphs and not InferenceOptions.fast("cpu").gpu_crop


def test_cpu_info_honours_the_isa_caps(monkeypatch):
    """ONEDNN_MAX_CPU_ISA below AVX512_CORE_BF16 (the kernels actually used) means no native bf16."""
    import subprocess
    import sys

    code = "from sparsett_core.hardware import cpu_info; c = cpu_info(); print(c.native_bf16, c.avx512, c.isa)"
    for env, want in ({"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}, "False False AVX2"), \
                     ({"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"}, "False"):
        out = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True,
                             text=True, check=True).stdout
        assert out.startswith(want), (env, out)


def test_cpu_bf16_stays_close_to_fp32(model, crossing_start):
    frames, box = crossing_start
    fast = Tracker(model, preset="got10k", options=InferenceOptions(precision="bf16"))
    ref = Tracker(model, preset="got10k")
    fast.init(frames[0], box)
    ref.init(frames[0], box)
    for frame in frames[1:]:
        (b1, s1), (b0, s0) = fast.update(frame), ref.update(frame)
        assert np.abs(np.subtract(b1, b0)).max() <= BF16_BOX_PX
        assert abs(s1 - s0) <= BF16_SCORE


@pytest.mark.parametrize("gpu_crop", [False, True])
def test_multitracker_equals_single_trackers(model, crossing_start, gpu_crop):
    frames, box = crossing_start
    boxes = [box, (40.0, 60.0, 50.0, 70.0), (250.0, 100.0, 40.0, 30.0)]
    options = InferenceOptions(gpu_crop=gpu_crop)
    multi = MultiTracker(model, preset="got10k", options=options)
    multi.init(frames[0], boxes)
    singles = [Tracker(model, preset="got10k") for _ in boxes]
    for tracker, b in zip(singles, boxes):
        tracker.init(frames[0], b)
    assert multi.num_targets == 3
    for frame in frames[1:N_FRAMES if not gpu_crop else 2]:
        results = multi.update(frame)
        assert len(results) == 3
        for tracker, (b, s) in zip(singles, results):
            b1, s1 = tracker.update(frame)
            assert np.abs(np.subtract(b, b1)).max() <= MULTI_BOX_PX
            assert abs(s - s1) <= MULTI_SCORE


def test_multitracker_rejects_bad_input(model, crossing_start):
    frames, box = crossing_start
    multi = MultiTracker(model, preset="got10k")
    with pytest.raises(RuntimeError, match="before init"):
        multi.update(frames[0])
    with pytest.raises(ValueError, match="at least one box"):
        multi.init(frames[0], [])
    with pytest.raises(ValueError, match="box 1: .*positive width"):
        multi.init(frames[0], [box, (10, 10, 0, 5)])


@cuda
def test_cuda_fast_path_close_to_fp32(official_checkpoint, sequences_dir, no_tf32):
    """CUDA, fixture weights, real frames: fp16 + graphs + device crop, and fp32 + graphs + device
    crop, against fp32 eager with the cv2 crop. Before every frame all three trackers are put on the
    reference's state (set_state), so each compares one step on the same crops; free-running
    trackers would compare argmax flips instead."""
    model = SparseTT.from_checkpoint(official_checkpoint, device="cuda")
    seq = sequences_dir / "otb_crossing"
    frames = [cv2.imread(str(f)) for f in sorted((seq / "img").glob("*.jpg"))[:12]]
    box = tuple(np.loadtxt(seq / "groundtruth_rect.txt", delimiter=",")[0])
    ref = Tracker(model, preset="got10k")
    fast = Tracker(model, preset="got10k", options=InferenceOptions.fast("cuda"))
    exact = Tracker(model, preset="got10k", options=InferenceOptions(gpu_crop=True, cuda_graphs=True))
    for t in (ref, fast, exact):
        t.init(frames[0], box)
    for frame in frames[1:]:
        for t in (fast, exact):
            t.set_state(*ref.state)
        (b0, s0), (b1, s1), (b2, s2) = ref.update(frame), fast.update(frame), exact.update(frame)
        assert np.abs(np.subtract(b2, b0)).max() <= CUDA_FP32_BOX_PX and abs(s2 - s0) <= CUDA_FP32_SCORE
        assert np.abs(np.subtract(b1, b0)).max() <= BF16_BOX_PX and abs(s1 - s0) <= BF16_SCORE
    for t in (fast, exact):  # the graphs were captured and replayed, not given up
        assert t.engine.graphs, t.engine.fallback_reason
