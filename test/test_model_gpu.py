"""CUDA equivalence with the official outputs (skipped where CUDA is absent).

The fixture's tolerances were set from CPU thread noise (one vs two threads: 2e-5 to 3.3e-5 on
some stages). CUDA fp32 kernels (cuBLAS / cuDNN, TF32 off) sum in other orders and differ from any
CPU run by more than that without a bug, so CUDA gets tolerances of its own: the fixture's, or
``CUDA_REL`` times the array's largest magnitude, whichever is larger. Each test also runs the same
code on the CPU and records both deviations (``record_property``: printed in the test summary),
which is what docs/gpu.md compares.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from sparsett_core import SparseTT

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available (torch.cuda.is_available() is False)")

# fp32 relative bound for CUDA vs the float32 reference: 1e-4 of the array's scale is 10x the
# rounding spread of a 2000-term fp32 dot product in another order (about 2000 * 6e-8 / sqrt(2000) ~ 3e-6
# relative, times a conservative factor for depth).
CUDA_REL = 1e-4
# half precision must stay a usable tracker: score 0.05, box 4 px (crop pixels) on the fixture's crops
HALF_SCORE, HALF_BOX_PX = 0.05, 4.0


def _deviation(ref: np.ndarray, got: torch.Tensor) -> np.ndarray:
    return np.abs(got.detach().float().cpu().numpy().astype(np.float64) - ref.astype(np.float64))


def _check(reference, name, got, mode, cpu_got, record):
    """CUDA array ``got`` within CUDA's tolerance of the reference; ``cpu_got``: the CPU run, for the record."""
    ref, tol = reference
    t = tol[name]["tol_" + mode]
    scale = max(float(np.abs(ref[name]).max()), 1.0)
    bound_max = max(t["max_abs"], CUDA_REL * scale)
    bound_p99 = max(t["p99_abs"], CUDA_REL * scale)
    d, d_cpu = _deviation(ref[name], got), _deviation(ref[name], cpu_got)
    record(f"{name} ({mode}) max |d| cuda / cpu", f"{d.max():.2e} / {d_cpu.max():.2e} (bound {bound_max:.2e})")
    assert d.max() <= bound_max and np.quantile(d, 0.99) <= bound_p99, (name, d.max(), bound_max)


def _stages(model: SparseTT, ref, device: str) -> dict[str, torch.Tensor]:
    """Every checked array of one device: stages fed with the fixture's own inputs ("forced") and
    the end-to-end template/track ("free")."""
    as_t = lambda name: torch.from_numpy(ref[name]).to(device)  # noqa: E731
    out = {}
    with torch.no_grad():
        out["f_x_backbone"] = model.backbone(as_t("x_input"))
        out["dec_output"] = model.neck.decode(as_t("f_x_adj"), as_t("enc_output").transpose(0, 1))
        out.update(model.head(as_t("neck_output")))
    feats = model.template(as_t("z_input"))
    score, boxes = model.track(as_t("x_input"), feats)
    out["enc_output"], out["score"], out["box"] = feats.enc.transpose(0, 1), score[..., None], boxes
    return out


def test_cuda_fp32_matches_reference(official_checkpoint, reference, no_tf32, record_property):
    ref, _ = reference
    cuda = _stages(SparseTT.from_checkpoint(official_checkpoint, device="cuda"), ref, "cuda")
    cpu = _stages(SparseTT.from_checkpoint(official_checkpoint, device="cpu"), ref, "cpu")
    for name in ("f_x_backbone", "dec_output", "cls_fc", "bbox_fc", "cls_conv", "bbox_conv"):
        _check(reference, name, cuda[name], "forced", cpu[name], record_property)
    for name in ("enc_output", "score", "box"):
        _check(reference, name, cuda[name], "free", cpu[name], record_property)


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_cuda_half_engine_close_to_fp32(official_checkpoint, reference, precision, record_property):
    """The engine's half path on CUDA (half weights converted once, autocast, CUDA graphs): finite,
    close to the reference, and the graph capture did not fall back to eager."""
    from sparsett_core import InferenceOptions
    from sparsett_core.tracker.fast import InferenceEngine, read_maps

    ref, _ = reference
    model = SparseTT.from_checkpoint(official_checkpoint, device="cuda")
    engine = InferenceEngine(model, torch.device("cuda"), InferenceOptions(precision=precision, cuda_graphs=True))
    z = torch.from_numpy(ref["z_input"]).cuda()
    x = torch.from_numpy(ref["x_input"]).cuda()
    feats = engine.template(z)
    for _ in range(3):  # capture, then replays
        score, boxes = read_maps(engine.track(x, feats))
    assert engine.graphs, engine.fallback_reason
    assert np.isfinite(score).all() and np.isfinite(boxes).all()
    d_score = np.abs(score[0] - ref["score"][0, :, 0]).max()
    d_box = np.abs(boxes - ref["box"]).max()
    record_property(f"{precision} engine max |d| score / box", f"{d_score:.2e} / {d_box:.3f} px")
    assert d_score < HALF_SCORE and d_box < HALF_BOX_PX
