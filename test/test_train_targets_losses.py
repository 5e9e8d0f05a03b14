"""Targets, losses, sampler, crops and config of the trainer against hand-computed cases."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sparsett_core.train.losses import LossWeights, box_iou_plus1, iou_loss_sum, sigmoid_focal_loss_sum, sparsett_loss
from sparsett_core.train.targets import dense_target, grid_points

LN2 = math.log(2.0)
# box (100, 120) - (170, 150): strictly inside are x = 112, 128, 144, 160 (j = 7..10) and y = 128, 144 (i = 8, 9)
BOX = np.array([100.0, 120.0, 170.0, 150.0])
INSIDE = sorted(i * 19 + j for i in (8, 9) for j in (7, 8, 9, 10))


def test_grid_is_the_heads_grid():
    pts = grid_points()
    assert pts.shape == (361, 2)
    assert pts[0].tolist() == [0, 0] and pts[1].tolist() == [16, 0] and pts[19].tolist() == [0, 16]
    assert pts[9 * 19 + 9].tolist() == [144, 144] and pts[-1].tolist() == [288, 288]


def test_positive_target_marks_grid_points_strictly_inside():
    cls, box = dense_target(BOX, negative=False)
    assert cls.shape == (361, 1) and box.shape == (361, 4)
    assert np.flatnonzero(cls[:, 0] == 1).tolist() == INSIDE
    assert set(np.unique(cls).tolist()) == {0.0, 1.0}
    assert np.all(box[INSIDE] == BOX.astype(np.float32)) and np.all(box[np.setdiff1d(range(361), INSIDE)] == 0)
    # a point exactly on the border is not inside: (112, 112)-(160, 160) holds only x, y in {128, 144}
    cls2, _ = dense_target(np.array([112.0, 112.0, 160.0, 160.0]), negative=False)
    assert np.flatnonzero(cls2[:, 0] == 1).tolist() == [8 * 19 + 8, 8 * 19 + 9, 9 * 19 + 8, 9 * 19 + 9]


def test_negative_target_trains_only_the_distractor_as_background():
    cls, _ = dense_target(BOX, negative=True)
    assert np.flatnonzero(cls[:, 0] == 0).tolist() == INSIDE
    assert np.all(np.delete(cls[:, 0], INSIDE) == -1) and not np.any(cls == 1)


def test_focal_loss_hand_computed():
    cls, _ = dense_target(BOX, negative=False)
    labels = torch.from_numpy(cls)[None]
    zero = torch.zeros(1, 361, 1)
    # logit 0: p = 0.5, BCE = ln 2, (1 - p_t)^2 = 1/4; alpha 0.75 on positives, 0.25 on negatives
    expected = 8 * 0.75 * 0.25 * LN2 + 353 * 0.25 * 0.25 * LN2
    assert float(sigmoid_focal_loss_sum(zero, labels)) == pytest.approx(expected, rel=1e-6)
    # one positive with logit 2 and one negative with logit 2, everything else ignored
    lab = -torch.ones(1, 361, 1)
    lab[0, 0, 0], lab[0, 1, 0] = 1, 0
    logits = torch.zeros(1, 361, 1)
    logits[0, :2, 0] = 2.0
    p = 1 / (1 + math.exp(-2.0))
    expected = 0.75 * (1 - p) ** 2 * -math.log(p) + 0.25 * p**2 * -math.log(1 - p)
    assert float(sigmoid_focal_loss_sum(logits, lab)) == pytest.approx(expected, rel=1e-6)


def test_quality_focal_target_on_positives_only():
    """loss.iou_aware: a positive learns a soft target q (the IoU of its box); negatives unchanged."""
    lab = -torch.ones(1, 361, 1)
    lab[0, 0, 0], lab[0, 1, 0] = 1, 0
    logits = torch.zeros(1, 361, 1)
    logits[0, :2, 0] = 2.0
    q = torch.full((1, 361, 1), 0.6)
    p = 1 / (1 + math.exp(-2.0))
    pos = 0.75 * abs(0.6 - p) ** 2 * -(0.6 * math.log(p) + 0.4 * math.log(1 - p))
    neg = 0.25 * p**2 * -math.log(1 - p)
    assert float(sigmoid_focal_loss_sum(logits, lab, quality=q)) == pytest.approx(pos + neg, rel=1e-6)
    # the minimum of a positive's term is at p = q: a score that says how well the box fits
    grid = torch.linspace(-3, 3, 601)[None, :, None]
    one = torch.ones(1, 601, 1)
    per_point = [float(sigmoid_focal_loss_sum(grid[:, i:i + 1], one[:, :1], quality=q[:, :1])) for i in range(601)]
    assert 1 / (1 + math.exp(-float(grid[0, int(np.argmin(per_point)), 0]))) == pytest.approx(0.6, abs=0.01)
    # in sparsett_loss, cls_conv's positives get the IoU of bbox_conv's box; cls_fc keeps target 1
    pred = torch.tensor([110.0, 120.0, 170.0, 150.0]).expand(1, 361, 4).clone()
    cls, box = dense_target(BOX, negative=False)
    cls_t, box_t = torch.from_numpy(cls)[None], torch.from_numpy(box)[None]
    _, plain = sparsett_loss(_outputs(pred), cls_t, box_t, 8.0, LossWeights())
    _, aware = sparsett_loss(_outputs(pred), cls_t, box_t, 8.0, LossWeights(iou_aware=True))
    assert float(aware["cls_fc"]) == pytest.approx(float(plain["cls_fc"]), rel=1e-6)
    iou = 1891 / 2201  # every positive's box (see the hand-computed IoU test)
    focal = (8 * 0.75 * abs(iou - 0.5) ** 2 * LN2 + 353 * 0.0625 * LN2) / 8  # logit 0: BCE(q) = ln 2
    assert float(aware["cls_conv"]) == pytest.approx(0.5 * focal, rel=1e-5)


def test_iou_loss_plus1_areas_hand_computed():
    gt = torch.tensor([[[100.0, 120.0, 170.0, 150.0]]])
    pred = torch.tensor([[[110.0, 120.0, 170.0, 150.0]]])
    # areas with "+1": gt 71 x 31 = 2201, pred 61 x 31 = 1891, intersection 1891
    assert float(box_iou_plus1(pred, gt)) == pytest.approx(1891 / 2201, rel=1e-6)
    loss, iou = iou_loss_sum(pred, gt, torch.ones(1, 1, 1))
    assert float(loss) == pytest.approx(-math.log(1891 / 2201), rel=1e-6)
    # disjoint boxes: IoU 0 -> -log(float32 tiny) = 87.34; ignored / negative points do not count
    far = torch.tensor([[[0.0, 0.0, 10.0, 10.0]]])
    assert float(iou_loss_sum(far, gt, torch.ones(1, 1, 1))[0]) == pytest.approx(-math.log(np.finfo(np.float32).tiny), rel=1e-6)
    assert float(iou_loss_sum(far, gt, torch.zeros(1, 1, 1))[0]) == 0.0
    assert float(iou_loss_sum(far, gt, -torch.ones(1, 1, 1))[0]) == 0.0


def _outputs(box_pred: torch.Tensor) -> dict[str, torch.Tensor]:
    return {"cls_fc": torch.zeros(1, 361, 1), "cls_conv": torch.zeros(1, 361, 1),
            "bbox_fc": box_pred, "bbox_conv": box_pred}


def test_total_loss_weights_positive_and_negative_pair():
    w = LossWeights()
    assert (w.cls_fc, w.reg_fc, w.cls_conv, w.reg_conv, w.focal_alpha, w.focal_gamma) == (1.4, 0.6, 0.5, 2.0, 0.75, 2.0)
    pred = torch.tensor([110.0, 120.0, 170.0, 150.0]).expand(1, 361, 4).clone()
    cls, box = dense_target(BOX, negative=False)
    cls_t, box_t = torch.from_numpy(cls)[None], torch.from_numpy(box)[None]
    total, stats = sparsett_loss(_outputs(pred), cls_t, box_t, 8.0, w)
    focal = (8 * 0.1875 * LN2 + 353 * 0.0625 * LN2) / 8
    reg = -math.log(1891 / 2201)  # mean over the 8 positives, all with the same IoU
    assert float(stats["cls_fc"]) == pytest.approx(1.4 * focal, rel=1e-6)
    assert float(stats["cls_conv"]) == pytest.approx(0.5 * focal, rel=1e-6)
    assert float(stats["reg_fc"]) == pytest.approx(0.6 * reg, rel=1e-5)
    assert float(stats["reg_conv"]) == pytest.approx(2.0 * reg, rel=1e-5)
    assert float(total) == pytest.approx((1.4 + 0.5) * focal + (0.6 + 2.0) * reg, rel=1e-5)

    # negative pair: no positive (normaliser max(0, 1) = 1), only the 8 distractor points count
    cls, box = dense_target(BOX, negative=True)
    total, stats = sparsett_loss(_outputs(pred), torch.from_numpy(cls)[None], torch.from_numpy(box)[None], 1.0, w)
    assert float(stats["reg_fc"]) == 0.0 and float(stats["reg_conv"]) == 0.0
    assert float(total) == pytest.approx((1.4 + 0.5) * 8 * 0.0625 * LN2, rel=1e-6)


def test_loss_gradient_flows_to_logits_and_boxes():
    cls, box = dense_target(BOX, negative=False)
    out = {k: v.requires_grad_() for k, v in _outputs(torch.tensor([90.0, 110.0, 160.0, 140.0]).repeat(1, 361, 1)).items()}
    total, _ = sparsett_loss(out, torch.from_numpy(cls)[None], torch.from_numpy(box)[None], 8.0, LossWeights())
    total.backward()
    assert all(v.grad is not None and torch.isfinite(v.grad).all() and v.grad.abs().sum() > 0 for v in out.values())


# ----------------------------------------------------------------------------- sampler / crops
def test_frame_gap_bounded_both_ways_and_official_mode():
    from sparsett_core.train.sampler import gap_candidates

    rows = np.arange(1000)
    bounded = gap_candidates(rows, 500, 100, 1000, "bounded")
    assert bounded.min() == 400 and bounded.max() == 600
    official = gap_candidates(rows, 500, 100, 1000, "official")  # the official sampler: no upper bound
    assert official.min() == 400 and official.max() == 999


def test_box_filter_area_and_aspect():
    from sparsett_core.train.sampler import SamplerParams, box_passes

    p = SamplerParams()
    shape = (100, 100, 3)
    assert box_passes(np.array([10, 10, 21, 21]), shape, p)          # 21*21/1e4 = 0.044
    assert not box_passes(np.array([10, 10, 3, 3]), shape, p)        # 9/1e4 < 0.001
    assert not box_passes(np.array([0, 0, 90, 90]), shape, p)        # 0.81 > 0.6
    assert not box_passes(np.array([10, 10, 5, 60]), shape, p)       # aspect 12 >= 10


def test_crop_pair_geometry_without_augmentation():
    from sparsett_core.train.transforms import CropParams, crop_pair, xywh_to_xyxy

    rng = np.random.default_rng(0)
    im = rng.integers(0, 255, (240, 360, 3), dtype=np.uint8)
    box = xywh_to_xyxy(np.array([150.0, 100.0, 40.0, 20.0]))
    params = CropParams(max_scale=0.0, max_shift=0.0)
    crop_z, crop_x, bz, bx = crop_pair(im, box, im, box, params, rng)
    assert crop_z.shape == (127, 127, 3) and crop_x.shape == (289, 289, 3)
    s = math.sqrt((40 + 30) * (20 + 30))           # context square side of a 40x20 box
    scale = 127 / s
    for b, centre in ((bz, 63.0), (bx, 144.0)):
        assert (b[0] + b[2]) / 2 == pytest.approx(centre) and (b[1] + b[3]) / 2 == pytest.approx(centre)
        assert b[2] - b[0] + 1 == pytest.approx(40 * scale) and b[3] - b[1] + 1 == pytest.approx(20 * scale)
    # the search crop is the tracker's crop (same crop function, side x_size / scale)
    from sparsett_core.tracker.crop import crop_square

    assert np.array_equal(crop_x, crop_square(im, 169.5, 109.5, 289 / scale, 289, im.mean(axis=(0, 1))))


def test_crop_pair_augmentation_keeps_box_inside():
    from sparsett_core.train.transforms import CropParams, crop_pair, xywh_to_xyxy

    im = np.zeros((480, 640, 3), np.uint8)
    box = xywh_to_xyxy(np.array([300.0, 200.0, 50.0, 40.0]))
    centres, sides = [], []
    for seed in range(50):
        _, _, _, bx = crop_pair(im, box, im, box, CropParams(), np.random.default_rng(seed))
        assert np.all(bx >= 0) and np.all(bx <= 288)
        centres.append((bx[0] + bx[2]) / 2)
        sides.append(bx[2] - bx[0] + 1)
    assert np.std(centres) > 5 and max(sides) / min(sides) > 1.2  # shift and scale are applied


# ----------------------------------------------------------------------------- config
def test_recipes_match_the_reference():
    from pathlib import Path

    from sparsett_core.train.config import load_config

    cfg_dir = Path(__file__).resolve().parents[1] / "config" / "train"
    got = load_config(cfg_dir / "got10k.yaml")
    full = load_config(cfg_dir / "fulldata.yaml")
    for c in (got, full):
        assert (c.optim.lr, c.optim.backbone_lr_mult, c.optim.weight_decay) == (1e-4, 0.1, 1e-4)
        assert [c.optim.lr * c.optim.lr_factor(e) for e in (0, 9, 10, 14, 15, 19)] == pytest.approx(
            [1e-4, 1e-4, 1e-5, 1e-5, 1e-6, 1e-6])
        assert (c.epochs, c.batch_size, c.data.negative_ratio) == (20, 32, 0.33)
        assert (c.loss.cls_fc, c.loss.reg_fc, c.loss.cls_conv, c.loss.reg_conv) == (1.4, 0.6, 0.5, 2.0)
        assert c.pretrained_backbone.endswith("swin_tiny_patch4_window7_224.pth") and c.model["dropout"] == 0.1
    assert got.data.pairs_per_epoch == 300_000 and got.num_steps() == 9375
    assert full.data.pairs_per_epoch == 600_000 and full.num_steps() == 18750
    ratios = {d.kind: d.ratio for d in full.data.datasets}
    assert ratios == {"trackingnet": 0.65, "coco": 0.07, "got10k": 0.2, "det": 0.08, "vid": 0.2, "lasot": 0.3}


def test_config_is_strict(tmp_path):
    from sparsett_core.train.config import load_config

    bad = tmp_path / "bad.yaml"
    bad.write_text("optim:\n  lr: 1e-4\n  lr_steps: [10]\n")
    with pytest.raises(ValueError, match="unknown keys \\['lr_steps'\\]"):
        load_config(bad)
    bad.write_text("batch_size: many\n")
    with pytest.raises(ValueError, match="batch_size: expected int"):
        load_config(bad)
    ok = tmp_path / "ok.yaml"
    ok.write_text("optim:\n  lr: 1e-4\n")  # PyYAML reads 1e-4 as a string; it must become a float
    assert load_config(ok, {"epochs": 3}).optim.lr == 1e-4 and load_config(ok, {"epochs": 3}).epochs == 3
