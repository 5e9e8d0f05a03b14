"""CUDA equivalence with the official outputs (skipped where CUDA is absent)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from sparsett_core import SparseTT

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available (torch.cuda.is_available() is False)")


@pytest.fixture
def strict_fp32():
    """Disable TF32 so that CUDA fp32 matches the CPU reference within the fixture tolerances."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def _check(reference, name, got, mode):
    ref, tol = reference
    t = tol[name]["tol_" + mode]
    d = np.abs(got.detach().float().cpu().numpy().astype(np.float64) - ref[name].astype(np.float64))
    assert d.max() <= t["max_abs"] and np.quantile(d, 0.99) <= t["p99_abs"], (name, d.max(), t)


def test_cuda_fp32_matches_reference(official_checkpoint, reference, strict_fp32):
    ref, _ = reference
    model = SparseTT.from_checkpoint(official_checkpoint, device="cuda")
    z = torch.from_numpy(ref["z_input"]).cuda()
    x = torch.from_numpy(ref["x_input"]).cuda()
    with torch.no_grad():
        _check(reference, "f_x_backbone", model.backbone(x), "forced")
        _check(reference, "dec_output", model.neck.decode(torch.from_numpy(ref["f_x_adj"]).cuda(),
                                                          torch.from_numpy(ref["enc_output"]).cuda().transpose(0, 1)), "forced")
        out = model.head(torch.from_numpy(ref["neck_output"]).cuda())
    for name in ("cls_fc", "bbox_fc", "cls_conv", "bbox_conv"):
        _check(reference, name, out[name], "forced")
    feats = model.template(z)
    score, boxes = model.track(x, feats)
    _check(reference, "enc_output", feats.enc.transpose(0, 1), "free")
    _check(reference, "score", score[..., None], "free")
    _check(reference, "box", boxes, "free")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cuda_fast_precision_close_to_fp32(official_checkpoint, reference, dtype):
    """Half precision is not within the fp32 tolerances; it must stay close (score 0.05, box 4 px)."""
    ref, _ = reference
    model = SparseTT.from_checkpoint(official_checkpoint, device="cuda")
    z = torch.from_numpy(ref["z_input"]).cuda()
    x = torch.from_numpy(ref["x_input"]).cuda()
    with torch.autocast("cuda", dtype=dtype):
        score, boxes = model.track(x, model.template(z))
    assert torch.isfinite(score).all() and torch.isfinite(boxes).all()
    assert np.abs(score.float().cpu().numpy()[0] - ref["score"][0, :, 0]).max() < 0.05
    assert np.abs(boxes.float().cpu().numpy() - ref["box"]).max() < 4.0
