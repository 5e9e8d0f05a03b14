"""Fast inference path (sparsett_core/tracker/fast.py) and MultiTracker against the reference path.

CPU: the device crop is compared with the cv2 crop (bit-exact), the CUDA-only options must fall
back to exactly the reference results, bf16 stays within a measured tolerance of fp32, and N-target
tracking equals N single-target Trackers. CUDA tests run only where a GPU is present.
"""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from sparsett_core import InferenceOptions, MultiTracker, SparseTT, Tracker
from sparsett_core.tracker.crop import get_crop, normalisation_table, normalise
from sparsett_core.tracker.fast import crop_batch, crop_plan, normalise_batch

N_FRAMES = 3
# bf16 autocast vs fp32 on otb_crossing (seed-0 fixture weights, 5 updates): measured max 0.14 px /
# score 2.5e-3 (2026-11-24, docs/gpu.md); the bound leaves room for other CPUs' bf16 kernels.
BF16_BOX_PX, BF16_SCORE = 1.0, 0.02
# batch N vs batch 1 (fp32, CPU): measured max 9e-5 px / score 6e-7.
MULTI_BOX_PX, MULTI_SCORE = 1e-2, 1e-4
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
    with pytest.raises(ValueError, match="contradicts"):
        Tracker(model, precision="bf16", options=InferenceOptions(precision="fp32"))
    assert InferenceOptions.fast("cpu").precision == "bf16"
    assert InferenceOptions.fast("cpu", "lite").precision == "fp32"  # bf16: no faster, 2 px off (docs/gpu.md)
    assert InferenceOptions.fast("cuda", "lite").precision == "fp16"
    assert InferenceOptions.fast("cuda") == InferenceOptions("fp16", cuda_graphs=True, gpu_crop=True, pinned_memory=True)


def test_cpu_fast_path_stays_close_to_fp32(model, crossing_start):
    frames, box = crossing_start
    fast = Tracker(model, preset="got10k", options=InferenceOptions.fast("cpu"))
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
def test_cuda_fast_path_close_to_fp32():
    """CUDA: fp16 + graphs + device crop vs fp32 eager (TF32 off) on the same frames."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    from sparsett_core.config import ModelConfig

    torch.manual_seed(0)
    model = SparseTT(ModelConfig()).cuda().eval()
    rng = np.random.default_rng(0)
    frames = [cv2.GaussianBlur(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8), (0, 0), 3) for _ in range(4)]
    fast = Tracker(model, preset="got10k", options=InferenceOptions.fast("cuda"))
    ref = Tracker(model, preset="got10k")
    exact = Tracker(model, preset="got10k", options=InferenceOptions(gpu_crop=True, cuda_graphs=True))
    for t in (fast, ref, exact):
        t.init(frames[0], (300, 200, 60, 50))
    for frame in frames[1:]:
        (b1, s1), (b0, s0), (b2, s2) = fast.update(frame), ref.update(frame), exact.update(frame)
        assert np.abs(np.subtract(b2, b0)).max() <= 1e-3  # fp32 graphs + device crop: same network input
        assert np.abs(np.subtract(b1, b0)).max() <= BF16_BOX_PX
        assert abs(s1 - s0) <= BF16_SCORE
