"""Tracker pipeline vs the official one (fixture, both presets) and the tracker's bad-input rules."""
from __future__ import annotations

import zlib

import cv2
import numpy as np
import pytest
import torch

from sparsett_core import ModelConfig, SparseTT, Tracker, TrackerPreset
from sparsett_core.tracker.crop import get_crop

PRESETS = ("got10k", "otb2015")


@pytest.fixture(scope="module")
def model(official_checkpoint):
    return SparseTT.from_checkpoint(official_checkpoint)


@pytest.fixture(scope="module")
def frames(sequences_dir, reference):
    files = sorted((sequences_dir / "otb_crossing" / "img").glob("*.jpg"))[:15]
    imgs = [cv2.imread(str(f)) for f in files]
    assert [zlib.crc32(f.tobytes()) for f in imgs] == reference[0]["got10k.frame_crc32"].tolist()
    return imgs


def _close(tol, lab, name, got, want, mode):
    t = tol[f"{lab}.{name}"][f"tol_{mode}"]
    d = np.abs(np.asarray(got, np.float64) - np.asarray(want, np.float64))
    assert d.max() <= t["max_abs"], f"{lab}.{name} ({mode}): max |d| {d.max():.3g} > {t['max_abs']:.3g}"
    assert np.quantile(d, 0.99) <= t["p99_abs"], f"{lab}.{name} ({mode}): p99 |d| > {t['p99_abs']:.3g}"


def _check_init(trk, ref, tol, lab):
    p = trk.preset
    np.testing.assert_array_equal([p.test_lr, p.window_influence, p.penalty_k], ref[f"{lab}.hp"])
    _close(tol, lab, "z_crop", trk.template_crop, ref[f"{lab}.z_crop"], "forced")
    _close(tol, lab, "avg_chans", trk.avg_chans, ref[f"{lab}.avg_chans"], "forced")
    _close(tol, lab, "z_scale", trk.z_scale, ref[f"{lab}.z_scale"], "forced")
    _close(tol, lab, "enc_output", trk.template_features.enc.transpose(0, 1), ref[f"{lab}.enc_output"], "forced")


@pytest.mark.parametrize("lab", PRESETS)
def test_pipeline_teacher_forced(model, frames, reference, lab):
    ref, tol = reference
    trk = Tracker(model, preset=lab)
    trk.init(frames[0], tuple(ref[f"{lab}.init_rect"]))
    _check_init(trk, ref, tol, lab)
    tol_p = tol[f"{lab}.pscore_maps"]["tol_forced"]["max_abs"]
    for t in range(1, 15):
        i = t - 1
        if t >= 2:
            trk.state = ref[f"{lab}.state_cxcywh"][t - 2]
        rect, score = trk.update(frames[t])
        if t == 1:
            _close(tol, lab, "x_crop_f1", trk.search_crop, ref[f"{lab}.x_crop_f1"], "forced")
            _close(tol, lab, "score_map_f1", trk.score_map, ref[f"{lab}.score_map_f1"], "forced")
        _close(tol, lab, "scale_x", trk.scale_x, ref[f"{lab}.scale_x"][i], "forced")
        _close(tol, lab, "score_maps", trk.score_map, ref[f"{lab}.score_maps"][i], "forced")
        _close(tol, lab, "pscore_maps", trk.pscore_map, ref[f"{lab}.pscore_maps"][i], "forced")
        _close(tol, lab, "box_maps", trk.box_map, ref[f"{lab}.box_maps"][i], "forced")
        if trk.best_idx != ref[f"{lab}.best_idx"][i]:  # allowed only at a reference near-tie
            ps = ref[f"{lab}.pscore_maps"][i]
            assert ref[f"{lab}.best_margin"][i] < tol_p and ps[trk.best_idx] >= ps.max() - tol_p, t
            continue
        assert score == trk.best_score
        _close(tol, lab, "pred_rects", rect, ref[f"{lab}.pred_rects"][t], "forced")
        _close(tol, lab, "state_cxcywh", trk.state, ref[f"{lab}.state_cxcywh"][i], "forced")
        for name in ("best_score", "best_penalty", "best_pscore"):
            _close(tol, lab, name, getattr(trk, name), ref[f"{lab}.{name}"][i], "forced")
        margin = np.sort(trk.pscore_map)[-2:]
        _close(tol, lab, "best_margin", margin[1] - margin[0], ref[f"{lab}.best_margin"][i], "forced")


@pytest.mark.parametrize("lab", PRESETS)
def test_pipeline_free_running(model, frames, reference, lab):
    """Free run from the init box, compared with the free tolerances while the network sees the
    same pixels as the official run, i.e. until our search crop first differs from the crop taken
    at the reference prior state. (A state difference of ~1e-3 px, from a top-k flip, eventually
    moves cv2's 1/32-px sampling grid; from then on the inputs differ and the README calls the run
    "not comparable", as after a near-tie argmax change.)"""
    ref, tol = reference
    trk = Tracker(model, preset=lab)
    trk.init(frames[0], tuple(ref[f"{lab}.init_rect"]))
    tol_p = tol[f"{lab}.pscore_maps"]["tol_free"]["max_abs"]
    compared = 0
    for t in range(1, 15):
        i = t - 1
        if t >= 2:
            prior = ref[f"{lab}.state_cxcywh"][t - 2]
            _close(tol, lab, "state_cxcywh", trk.state, prior, "free")
            if not np.array_equal(get_crop(frames[t], *trk.state, 127, 289, trk.avg_chans)[0],
                                  get_crop(frames[t], *prior, 127, 289, trk.avg_chans)[0]):
                break
        rect, _ = trk.update(frames[t])
        if trk.best_idx != ref[f"{lab}.best_idx"][i]:  # a near-tie: the rest is not comparable
            ps = ref[f"{lab}.pscore_maps"][i]
            assert ref[f"{lab}.best_margin"][i] < tol_p and ps[trk.best_idx] >= ps.max() - tol_p, t
            break
        compared += 1
        _close(tol, lab, "pred_rects", rect, ref[f"{lab}.pred_rects"][t], "free")
        _close(tol, lab, "scale_x", trk.scale_x, ref[f"{lab}.scale_x"][i], "free")
        for name, got in (("score_maps", trk.score_map), ("pscore_maps", trk.pscore_map), ("box_maps", trk.box_map)):
            _close(tol, lab, name, got, ref[f"{lab}.{name}"][i], "free")
    assert compared >= 5, f"only {compared} frames comparable"


# ---------------------------------------------------------------- bad input
@pytest.fixture(scope="module")
def small_model():
    torch.manual_seed(0)
    return SparseTT(ModelConfig(head_num_convs=1, num_encoder_layers=1, num_decoder_layers=1)).eval()


@pytest.fixture
def frame():
    return np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)


def test_update_before_init(small_model, frame):
    with pytest.raises(RuntimeError, match="before init"):
        Tracker(small_model).update(frame)


@pytest.mark.parametrize("box,msg", [
    ((10, 10, float("nan"), 20), "NaN or inf"),
    ((10, float("inf"), 20, 20), "NaN or inf"),
    ((10, 10, 0, 20), "positive width and height"),
    ((10, 10, 20, -5), "positive width and height"),
    ((200, 10, 20, 20), "entirely outside"),
    ((-50, 10, 40, 20), "entirely outside"),
    ((10, 130, 20, 20), "entirely outside"),
    ((1, 2, 3), "4 numbers"),
    ("abcd", "4 numbers"),
])
def test_bad_init_box(small_model, frame, box, msg):
    with pytest.raises(ValueError, match=msg):
        Tracker(small_model).init(frame, box)


@pytest.mark.parametrize("bad,msg", [
    (np.zeros((120, 160, 3), np.float32), "must be uint8"),
    (np.zeros((120, 160, 3), np.uint16), "must be uint8"),
    (np.zeros((120, 160, 2), np.uint8), "shape"),
    (np.zeros((2, 120, 160, 3), np.uint8), "shape"),
    (np.zeros((0, 160, 3), np.uint8), "empty"),
    ([[1, 2], [3, 4]], "numpy array"),
])
def test_unusable_frame(small_model, frame, bad, msg):
    trk = Tracker(small_model)
    with pytest.raises(ValueError, match=msg):
        trk.init(bad, (10, 10, 20, 20))
    trk.init(frame, (10, 10, 20, 20))
    with pytest.raises(ValueError, match=msg):
        trk.update(bad)


def test_grayscale_and_bgra_are_converted(small_model, frame):
    gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    as_bgr = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
    want = Tracker(small_model)
    want.init(as_bgr, (40, 30, 30, 40))
    want_rect = want.update(as_bgr)
    for g in (gray, gray[..., None]):
        trk = Tracker(small_model)
        trk.init(g, (40, 30, 30, 40))
        np.testing.assert_array_equal(trk.template_crop, want.template_crop)
        assert trk.update(g) == want_rect
    bgra = cv2.cvtColor(frame, cv2.COLOR_BGR2BGRA)
    bgra[..., 3] = 17
    ref, trk = Tracker(small_model), Tracker(small_model)
    ref.init(frame, (40, 30, 30, 40))
    trk.init(bgra, (40, 30, 30, 40))
    np.testing.assert_array_equal(trk.template_crop, ref.template_crop)
    assert trk.update(bgra) == ref.update(frame)


def test_partly_outside_box_is_used_and_state_clipped(small_model, frame):
    trk = Tracker(small_model)
    trk.init(frame, (-10, -8, 30, 20))  # official: used unchanged, crop padded with the mean colour
    assert trk.state == pytest.approx((-10 + 29 / 2, -8 + 19 / 2, 30, 20))
    (x, y, w, h), score = trk.update(frame)
    cx, cy, sw, sh = trk.state
    assert 0 <= cx <= 160 and 0 <= cy <= 120 and 10 <= sw <= 160 and 10 <= sh <= 120
    assert np.isfinite([x, y, w, h, score]).all()


def test_frame_size_change_is_an_error(small_model, frame):
    trk = Tracker(small_model)
    trk.init(frame, (10, 10, 20, 20))
    with pytest.raises(ValueError, match="frame size changed from 160x120 at init to 100x120"):
        trk.update(frame[:, :100])
    trk.init(frame[:, :100], (10, 10, 20, 20))  # re-init on the new stream works
    trk.update(frame[:, :100])


def test_set_state_validates(small_model):
    trk = Tracker(small_model)
    with pytest.raises(ValueError, match="finite"):
        trk.set_state(1.0, 2.0, float("nan"), 3.0)
    trk.state = (1.0, 2.0, 3.0, 4.0)
    assert trk.state == (1.0, 2.0, 3.0, 4.0)


def test_presets(small_model):
    assert Tracker(small_model).preset.name == "got10k"  # the model's default preset
    trk = Tracker(small_model, preset="uav123")
    assert (trk.preset.test_lr, trk.preset.window_influence, trk.preset.penalty_k) == (0.7364, 0.2398, 0.0734)
    custom = TrackerPreset(test_lr=0.5)
    assert Tracker(small_model, preset=custom).preset is custom
    with pytest.raises(ValueError, match="unknown tracker preset 'vot'"):
        Tracker(small_model, preset="vot")
    with pytest.raises(TypeError):
        TrackerPreset(test_lrr=0.5)
    with pytest.raises(ValueError, match="precision"):
        Tracker(small_model, precision="int8")


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_fast_precision_runs_and_stays_close(small_model, frame, precision):
    ref, trk = Tracker(small_model), Tracker(small_model, precision=precision)
    for t in (ref, trk):
        t.init(frame, (40, 30, 30, 40))
    want, _ = ref.update(frame)
    got, score = trk.update(frame)
    assert np.isfinite(trk.box_map).all() and trk.box_map.dtype == np.float32 and 0 <= score <= 1
    assert np.abs(np.subtract(got, want)).max() < 3.0  # pixels
