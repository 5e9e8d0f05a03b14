"""Metrics: hand-computed cases, absent-target rules, and an independent per-frame implementation."""
from __future__ import annotations

import math

import numpy as np
import pytest

from sparsett_core.eval.boxes import BoxFileError, read_boxes
from sparsett_core.eval.metrics import (CENTER_THRESHOLDS, NORM_CENTER_THRESHOLDS, OVERLAP_THRESHOLDS, aggregate,
                                        center_error, iou, iou_got10k, score_sequence)

GT3 = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]], dtype=float)


def test_thresholds_are_the_toolkit_values():
    torch = pytest.importorskip("torch")
    # pytracking's extract_results thresholds, bit for bit
    expected = torch.arange(0.0, 1.0 + 0.05, 0.05, dtype=torch.float64).numpy()
    assert OVERLAP_THRESHOLDS.shape == (21,)
    assert np.array_equal(OVERLAP_THRESHOLDS, expected)
    assert np.array_equal(CENTER_THRESHOLDS, torch.arange(0, 51, dtype=torch.float64).numpy())
    assert np.array_equal(NORM_CENTER_THRESHOLDS, (torch.arange(0, 51, dtype=torch.float64) / 100.0).numpy())


def test_perfect_results():
    s = score_sequence(GT3.copy(), GT3)
    # IoU 1 beats every threshold except 1.0 itself: 20 of 21
    assert s.success_auc == pytest.approx(20 / 21)
    assert s.precision == 1.0 and s.norm_precision == 1.0
    assert s.ao == pytest.approx(1.0) and s.sr50 == 1.0 and s.sr75 == 1.0


def test_shifted_boxes_by_hand():
    res = GT3.copy()
    res[1:, 0] += 5  # 5 px right: intersection 50, union 150 -> IoU 1/3; centre error 5 px
    s = score_sequence(res, GT3)
    # frame 1 is replaced by the ground truth (IoU 1); frames 2-3 pass thresholds 0..0.30 (7 of 21)
    assert s.success_auc == pytest.approx((20 / 21 + 2 * 7 / 21) / 3)
    assert s.success_curve[6] == pytest.approx(1.0) and s.success_curve[7] == pytest.approx(1 / 3)
    assert s.precision == 1.0
    assert s.precision_curve[4] == pytest.approx(1 / 3) and s.precision_curve[5] == 1.0
    # normalised: 5 / 10 = 0.5 > 0.2
    assert s.norm_precision == pytest.approx(1 / 3)
    # GOT-10k: first frame excluded
    assert s.ao == pytest.approx(1 / 3) and s.sr50 == 0.0 and s.got10k_ious.shape == (2,)


def test_empty_overlap():
    res = GT3.copy()
    res[1:, :2] = 100.0
    s = score_sequence(res, GT3)
    assert iou(res, GT3)[1:].tolist() == [0.0, 0.0]
    assert s.success_curve[0] == pytest.approx(1 / 3)  # IoU 0 does not pass threshold 0 ("> t")
    assert s.ao == 0.0 and s.sr50 == 0.0
    assert s.precision == pytest.approx(1 / 3)


def test_center_error_convention():
    # centres x + (w - 1) / 2
    a = np.array([[0, 0, 11, 11]], float)
    b = np.array([[3, 4, 11, 11]], float)
    assert center_error(a, b)[0] == pytest.approx(5.0)
    assert center_error(a, b, normalized=True)[0] == pytest.approx(5.0 / 11)


def _absent_case():
    gt = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [np.nan] * 4, [0, 0, 0, 0], [0, 0, 10, 10]], float)
    res = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [50, 50, 10, 10], [50, 50, 10, 10], [100, 100, 10, 10]], float)
    return res, gt


def test_absent_rows_otb_protocol_are_left_out():
    res, gt = _absent_case()
    s = score_sequence(res, gt, protocol="otb")
    # valid frames 1, 2, 5: IoU 1, 1, 0
    assert s.success_curve[0] == pytest.approx(2 / 3)
    assert s.precision == pytest.approx(2 / 3)
    assert s.norm_precision == pytest.approx(2 / 3)
    # GOT-10k: frames 2 and 5 (present, not first): IoU 1 and 0
    assert s.ao == pytest.approx(0.5)


def test_absent_rows_uav_protocol():
    res, gt = _absent_case()
    s = score_sequence(res, gt, protocol="uav")
    # pytracking 'uav': denominator = all 5 frames; absent frames fail success, count as precision hits
    assert s.success_curve[0] == pytest.approx(2 / 5)
    assert s.precision == pytest.approx(4 / 5)
    assert s.norm_precision == pytest.approx(4 / 5)


def test_absent_rows_lasot_protocol():
    res, gt = _absent_case()
    visible = np.array([1, 1, 0, 0, 1], bool)
    s = score_sequence(res, gt, protocol="lasot", target_visible=visible)
    # denominator = all frames; absent frames fail everything
    assert s.success_curve[0] == pytest.approx(2 / 5)
    assert s.precision == pytest.approx(2 / 5)
    assert s.norm_precision == pytest.approx(2 / 5)


def test_zero_size_result_repeats_previous_box():
    gt = np.array([[0, 0, 10, 10]] * 3, float)
    res = np.array([[0, 0, 10, 10], [1, 0, 10, 10], [0, 0, 0, 0]], float)
    s = score_sequence(res, gt)
    assert s.success_curve[-2] == pytest.approx(1 / 3)  # only the first frame has IoU > 0.95
    assert s.success_curve[15] == pytest.approx(1.0)  # frame 3 takes frame 2's box: IoU 90/110 > 0.75


def test_invalid_results_are_errors():
    res = GT3.copy()
    res[1, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        score_sequence(res, GT3)
    res = GT3.copy()
    res[2, 2] = -1
    with pytest.raises(ValueError, match="negative width/height in row 3"):
        score_sequence(res, GT3)
    with pytest.raises(ValueError, match="2 rows but the ground truth has 3"):
        score_sequence(GT3[:2], GT3)


def test_got10k_iou_bound_and_overall_is_frame_weighted():
    a = np.array([[90, 0, 20, 10]], float)
    b = np.array([[90, 0, 10, 10]], float)
    # got10k clips w to bound - x: (90, 0, 10, 10) inside a 100 x 100 image
    assert iou_got10k(a, b, bound=(100, 100))[0] == pytest.approx(1.0)
    assert iou_got10k(a, b)[0] == pytest.approx(0.5)
    assert a[0, 2] == 20  # inputs untouched
    long = score_sequence(np.tile(GT3[:1], (5, 1)), np.tile(GT3[:1], (5, 1)))  # 4 frames IoU 1
    short_res = GT3[:2].copy()
    short_res[1, :2] = 100
    short = score_sequence(short_res, GT3[:2])  # 1 frame IoU 0
    overall = aggregate([long, short]).metrics()
    assert overall["ao"] == pytest.approx(4 / 5)  # concatenated frames, not (1 + 0) / 2
    assert overall["success_auc"] == pytest.approx((long.success_auc + short.success_auc) / 2)


def test_present_mask_for_got10k():
    res = GT3.copy()
    res[2, :2] = 100
    s = score_sequence(res, GT3, protocol="got10k", present=np.array([1, 1, 0], bool))
    assert s.ao == pytest.approx(1.0)  # frame 3 (absent by cover.label) not counted


# ---- independent straightforward implementation ------------------------------------------------

def _ref_iou(p, g):
    ix = max(0.0, min(p[0] + p[2], g[0] + g[2]) - max(p[0], g[0]))
    iy = max(0.0, min(p[1] + p[3], g[1] + g[3]) - max(p[1], g[1]))
    inter = ix * iy
    return inter / (p[2] * p[3] + g[2] * g[3] - inter)


def _ref_center(b):
    return (b[0] + (b[2] - 1) / 2, b[1] + (b[3] - 1) / 2)


def _ref_score(res, gt, protocol, visible=None):
    """Per-frame loops written from the toolkit descriptions."""
    n = len(gt)
    res = [list(r) for r in res]
    for i in range(1, n):
        if (res[i][2] == 0 or res[i][3] == 0) and not any(math.isnan(v) for v in gt[i]):
            res[i] = list(res[i - 1])
    res[0] = list(gt[0])
    thr_o = [0.05 * k for k in range(21)]
    succ, prec, normp = [0] * 21, 0, 0
    counted = 0
    ious = []
    for i in range(n):
        g = gt[i]
        present = not any(math.isnan(v) for v in g) and g[2] > 0 and g[3] > 0
        if visible is not None:
            present = present and visible[i]
        if not present:
            if protocol in ("uav", "lasot"):
                counted += 1
                if protocol == "uav":
                    prec += 1
                    normp += 1
                elif visible is None or visible[i]:
                    normp += 1  # LaSOT: zero-size ground truth on a frame not flagged absent (pytracking)
            continue
        counted += 1
        o = _ref_iou(res[i], g)
        for k, t in enumerate(thr_o):
            succ[k] += o > t
        (cx, cy), (gx, gy) = _ref_center(res[i]), _ref_center(g)
        prec += math.hypot(cx - gx, cy - gy) <= 20
        normp += math.hypot(cx / g[2] - gx / g[2], cy / g[3] - gy / g[3]) <= 0.2
        if i > 0:
            ious.append(_ref_iou(res[i], g))
    return sum(s / counted for s in succ) / 21, prec / counted, normp / counted, (sum(ious) / len(ious))


@pytest.mark.parametrize("protocol", ["otb", "uav", "lasot"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_against_independent_implementation(protocol, seed):
    rng = np.random.default_rng(seed)
    n = 300
    gt = np.column_stack([rng.uniform(0, 200, n), rng.uniform(0, 200, n), rng.uniform(5, 80, n), rng.uniform(5, 80, n)])
    res = gt + rng.normal(0, 12, gt.shape)
    res[:, 2:] = np.abs(res[:, 2:]) + 1
    res[rng.choice(n, 10, replace=False), 2] = 0.0       # zero-size results -> previous box
    absent = rng.choice(np.arange(1, n), 20, replace=False)
    gt[absent[:10]] = np.nan if protocol == "uav" else 0.0
    gt[absent[10:], 2:] = 0.0
    visible = None
    if protocol == "lasot":
        visible = np.ones(n, bool)
        visible[rng.choice(np.arange(1, n), 15, replace=False)] = False
    s = score_sequence(res, gt, protocol=protocol, target_visible=visible)
    auc, prec, normp, ao = _ref_score(res.tolist(), gt.tolist(), protocol, visible)
    assert s.success_auc == pytest.approx(auc, abs=1e-12)
    assert s.precision == pytest.approx(prec, abs=1e-12)
    assert s.norm_precision == pytest.approx(normp, abs=1e-12)
    # GOT-10k AO uses the raw results (no zero-size repair) and present frames only
    keep = [i for i in range(1, n) if np.isfinite(gt[i]).all() and gt[i, 2] > 0 and gt[i, 3] > 0
            and (visible is None or visible[i])]
    ref_ao = sum(_ref_iou(res[i], gt[i]) for i in keep) / len(keep)
    assert s.ao == pytest.approx(ref_ao, abs=1e-9)


# ---- box files ------------------------------------------------------------------------------------

def test_read_boxes_delimiters_and_nan(tmp_path):
    p = tmp_path / "gt.txt"
    p.write_text("1,2,3,4\n5\t6\t7\t8\n9 10 11 12\nNaN,NaN,NaN,NaN\n")
    boxes = read_boxes(p)
    assert boxes.shape == (4, 4) and np.isnan(boxes[3]).all()
    with pytest.raises(BoxFileError, match=r"gt.txt:4: NaN"):
        read_boxes(p, allow_nan=False)


def test_read_boxes_errors_name_file_and_line(tmp_path):
    p = tmp_path / "res.txt"
    p.write_text("1,2,3,4\n1,2,three,4\n")
    with pytest.raises(BoxFileError, match=r"res.txt:2: not a number"):
        read_boxes(p)
    p.write_text("1,2,3,4\n1,2,3\n")
    with pytest.raises(BoxFileError, match=r"res.txt:2: expected 4 numbers"):
        read_boxes(p)
    p.write_text("1,2,3,4\n1,2,3,4\n")
    with pytest.raises(BoxFileError, match=r"res.txt: 2 rows, expected 3"):
        read_boxes(p, expected_rows=3)
    with pytest.raises(BoxFileError, match="file not found"):
        read_boxes(tmp_path / "missing.txt")
