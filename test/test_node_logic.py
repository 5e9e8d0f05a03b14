"""The node's logic without a ROS graph: parameters, init sources, frame buffer, state machine,
overlay, tracker factory errors."""
from __future__ import annotations

import dataclasses
import math
import threading

import numpy as np
import pytest
import yaml

from sparsett_ros import params as P
from sparsett_ros.frame_buffer import Frame, FrameBuffer, FrameSlot
from sparsett_ros.init_sources import (InitRejected, TwoClickBox, box_from_detection, box_from_roi,
                                       clip_box_to_image, intrinsics_from_k, project_to_pixel, tf2_missing_reason,
                                       transform_point)
from sparsett_ros.overlay import draw_overlay
from sparsett_ros.tracking_state import LossThresholds, TrackingStateMachine, TrackState

from node_graph import PARAMS_FILE

# ---- parameters ------------------------------------------------------------------------------


def test_fixed_parameter_names_exist_with_descriptions():
    for name in ("checkpoint", "preset", "device", "precision", "class_id", "lost_score", "lost_frames",
                 "recover_score", "allow_random_weights"):
        assert name in P.SPECS and P.SPECS[name].description
    assert P.SPECS["device"].choices == ("auto", "cuda", "cpu")
    assert {"lost_score", "lost_frames", "recover_score", "class_id"} <= P.RUNTIME_PARAMETERS
    assert "checkpoint" not in P.RUNTIME_PARAMETERS


def test_config_yaml_sets_every_declared_parameter_with_valid_values():
    values = yaml.safe_load(PARAMS_FILE.read_text())["/**"]["ros__parameters"]
    assert set(values) <= set(P.SPECS), f"unknown names in tracker.yaml: {set(values) - set(P.SPECS)}"
    params = P.make_params(values)
    assert params == dataclasses.replace(P.DEFAULTS, **values)


def test_every_parameter_is_documented():
    doc = (PARAMS_FILE.parents[1] / "docs" / "node.md").read_text()
    assert [name for name in P.SPECS if f"`{name}`" not in doc] == []


def test_params_object_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        P.DEFAULTS.lost_score = 0.1


@pytest.mark.parametrize("changes,reason", [
    ({"lost_score": 1.5}, "lost_score must be <= 1.0"),
    ({"lost_score": math.nan}, "lost_score must be finite"),
    ({"lost_frames": 0}, "lost_frames must be >= 1"),
    ({"lost_frames": 2.5}, "lost_frames must be a int"),
    ({"recover_score": 0.1}, "recover_score (0.1) must be >= lost_score (0.25)"),
    ({"class_id": ""}, "class_id must not be empty"),
    ({"checkpoint": "/x.pkl"}, "checkpoint cannot change at run time"),
    ({"device": "tpu"}, "device cannot change at run time"),
])
def test_invalid_run_time_changes_are_rejected_with_a_reason(changes, reason):
    new, why = P.validate_changes(P.DEFAULTS, changes)
    assert new is None and reason in why


def test_valid_run_time_change_returns_a_new_object():
    new, why = P.validate_changes(P.DEFAULTS, {"lost_score": 0.5, "recover_score": 0.7, "lost_frames": 2})
    assert why == "" and (new.lost_score, new.recover_score, new.lost_frames) == (0.5, 0.7, 2)
    assert P.DEFAULTS.lost_score == 0.25  # untouched


def test_start_up_values_are_checked_too():
    with pytest.raises(ValueError, match="device must be one of 'auto', 'cuda', 'cpu'"):
        P.make_params({"device": "gpu"})
    with pytest.raises(ValueError, match="preset must be one of"):
        P.make_params({"preset": "vot"})


# ---- init sources ----------------------------------------------------------------------------


def test_detection_centre_size_to_top_left_box_and_stop_value():
    req = box_from_detection(50.0, 40.0, 20.0, 10.0, stamp_ns=7)
    assert req.box == (40.0, 35.0, 20.0, 10.0) and req.stamp_ns == 7 and not req.is_stop
    assert box_from_detection(5.0, 5.0, 0.0, 0.0).is_stop
    with pytest.raises(InitRejected, match="zero or negative area"):
        box_from_detection(5.0, 5.0, 10.0, 0.0)
    with pytest.raises(InitRejected, match="non-finite"):
        box_from_detection(math.nan, 5.0, 10.0, 10.0)


def test_roi_box_and_stop_value():
    assert box_from_roi(3, 4, 10, 20).box == (3.0, 4.0, 10.0, 20.0)
    assert box_from_roi(0, 0, 0, 0).is_stop
    with pytest.raises(InitRejected, match="zero area"):
        box_from_roi(3, 4, 0, 20)


def test_boxes_are_clipped_or_rejected_against_the_image():
    assert clip_box_to_image((-10, -5, 30, 25), 100, 80) == (0.0, 0.0, 20.0, 20.0)
    with pytest.raises(InitRejected, match="outside the 100x80 image"):
        clip_box_to_image((200, 10, 30, 30), 100, 80)
    with pytest.raises(InitRejected, match="outside"):
        clip_box_to_image((99.5, 10, 30, 30), 100, 80)
    with pytest.raises(InitRejected, match="non-finite"):
        clip_box_to_image((math.inf, 10, 30, 30), 100, 80)


def test_two_clicks_make_a_box_in_any_corner_order_and_time_out():
    clicks = TwoClickBox(timeout_s=5.0)
    assert clicks.click(80, 60, now_s=0.0) is None and clicks.pending
    assert clicks.click(20, 10, now_s=1.0) == (20, 10, 60, 50) and not clicks.pending
    assert clicks.click(10, 10, now_s=2.0) is None
    assert clicks.click(50, 50, now_s=8.0) is None  # first click too old: this is a new first corner
    with pytest.raises(InitRejected, match="too close"):
        clicks.click(51, 50, now_s=9.0)
    assert clicks.click(70, 90, now_s=9.5) == (50, 50, 20, 40)


def test_projection_with_camera_k():
    k = intrinsics_from_k([300, 0, 160, 0, 250, 120, 0, 0, 1])
    assert project_to_pixel((0.5, -0.2, 2.0), k) == pytest.approx((160 + 300 * 0.25, 120 - 250 * 0.1))
    with pytest.raises(InitRejected, match="not in front of the camera"):
        project_to_pixel((0.0, 0.0, -1.0), k)
    with pytest.raises(InitRejected, match="no valid intrinsics"):
        intrinsics_from_k([0.0] * 9)


def test_transform_point_rotation_and_translation():
    s = math.sqrt(0.5)  # 90 degrees about z
    assert transform_point((1, 0, 0), (0, 0, 1), (0, 0, s, s)) == pytest.approx((0, 1, 1))
    assert transform_point((1, 2, 3), (0, 0, 0), (0, 0, 0, 1)) == pytest.approx((1, 2, 3))
    assert "tf2_ros is not installed" in tf2_missing_reason("map", "cam")


# ---- frames ----------------------------------------------------------------------------------


def frame(seq: int, stamp: int | None = None) -> Frame:
    return Frame(np.zeros((4, 6, 3), np.uint8), stamp if stamp is not None else seq * 10, None, 0.0, seq)


@pytest.mark.parametrize("requested, torch_default, cores, expected", [
    (0, 2, 2, 1),  # 2-core computer: one core stays free for the executor and DDS
    (0, 4, 8, 4),  # torch's default (physical cores / OMP_NUM_THREADS) is kept when cores are left over
    (0, 8, 8, 7),
    (0, 1, 1, 1),  # never 0
    (3, 2, 2, 3),  # an explicit value wins
])
def test_inference_threads_leave_a_core_for_ros(requested, torch_default, cores, expected):
    from sparsett_ros.tracker_backend import inference_threads

    assert inference_threads(requested, torch_default, cores) == expected


def test_frame_buffer_finds_frames_by_stamp_and_forgets_old_ones():
    buf = FrameBuffer(3)
    for i in range(5):
        buf.add(frame(i))
    assert buf.get(40).seq == 4 and buf.get(20).seq == 2 and buf.get(10) is None
    assert buf.stamp_range() == (20, 40) and buf.newest().seq == 4 and buf.newest().size == (6, 4)
    assert [f.seq for f in buf.after(buf.get(20), until_seq=3)] == [3]


def test_newest_frame_slot_counts_drops_and_never_blocks():
    slot = FrameSlot(1)
    for i in range(5):
        slot.put(frame(i))
    assert slot.dropped == 4 and slot.take(0).seq == 4 and slot.take(0) is None
    assert slot.behind == 0  # the frame taken was the newest put


def test_slot_reports_how_many_newer_frames_waited_behind_the_one_taken():
    fifo = FrameSlot(10)
    for i in range(4):
        fifo.put(frame(i))
    assert fifo.take(0).seq == 0 and fifo.behind == 3  # a FIFO's backlog
    fifo.put(frame(4))
    assert fifo.take(0).seq == 1 and fifo.behind == 3


def test_queue_slot_keeps_order_and_drops_oldest_when_full():
    slot = FrameSlot(3)
    for i in range(5):
        slot.put(frame(i))
    assert slot.dropped == 2 and [slot.take(0).seq for _ in range(3)] == [2, 3, 4]


def test_slot_take_waits_for_a_frame_from_another_thread():
    slot = FrameSlot(1)
    producer = threading.Timer(0.05, lambda: slot.put(frame(9)))
    producer.start()
    assert slot.take(timeout=30).seq == 9
    producer.join()
    slot.close()
    assert slot.take(timeout=30) is None  # closed: returns at once


# ---- target loss -----------------------------------------------------------------------------


def test_lost_after_lost_frames_weak_scores_and_recovery_above_recover_score():
    sm = TrackingStateMachine(LossThresholds(lost_score=0.3, lost_frames=3, recover_score=0.6))
    assert sm.update(0.9) == TrackState.IDLE  # not started
    sm.start()
    seq = [sm.update(s) for s in (0.2, 0.2, 0.9, 0.2, 0.2, 0.2, 0.5, 0.59, 0.61, 0.1)]
    T, L = TrackState.TRACKING, TrackState.LOST
    assert seq == [T, T, T, T, T, L, L, L, T, T]
    assert sm.update(math.nan) == T and sm.weak_frames == 2  # NaN counts as weak
    sm.thresholds = LossThresholds(0.95, 1, 0.99)  # thresholds replaced at run time
    assert sm.update(0.9) == L
    assert sm.stop() == TrackState.IDLE


def test_thresholds_validate():
    with pytest.raises(ValueError, match="recover_score"):
        LossThresholds(0.5, 2, 0.4)
    with pytest.raises(ValueError, match="lost_frames"):
        LossThresholds(0.5, 0, 0.6)


# ---- overlay and factory ---------------------------------------------------------------------


def test_overlay_draws_box_without_touching_the_input():
    image = np.zeros((120, 160, 3), np.uint8)
    out = draw_overlay(image, (40, 30, 50, 40), 0.87, "TRACKING", 12.5, note="RANDOM WEIGHTS")
    assert image.sum() == 0 and out.shape == image.shape
    assert (out[30, 40:91] == (0, 220, 0)).all(axis=1).sum() > 30  # top edge in the TRACKING colour
    assert draw_overlay(image, (40, 30, 50, 40), 0.1, "IDLE", 0.0)[30, 60].sum() == 0  # no box while IDLE


def test_tracker_factory_errors_say_what_to_do():
    from sparsett_ros.tracker_backend import StartupError, build_sparsett_tracker, load_factory

    with pytest.raises(StartupError, match="package.module:function"):
        load_factory("nonsense")
    with pytest.raises(StartupError, match="cannot be imported"):
        load_factory("sparsett_ros.nope:build")
    assert load_factory("sparsett_ros.testing:build_template_tracker")
    with pytest.raises(StartupError, match="random needs allow_random_weights"):
        build_sparsett_tracker(dataclasses.replace(P.DEFAULTS, checkpoint="random"))
    with pytest.raises(StartupError, match="could not be loaded.*not found.*allow_random_weights"):
        build_sparsett_tracker(dataclasses.replace(P.DEFAULTS, checkpoint="/nonexistent/model.pkl"))
    # empty checkpoint: the shipped SparseTT-Lite weights, not random ones
    backend = build_sparsett_tracker(dataclasses.replace(P.DEFAULTS, device="cpu"))
    assert not backend.random_weights and "SparseTT-Lite" in backend.description
    with pytest.raises(StartupError, match="fp16 needs CUDA"):
        build_sparsett_tracker(dataclasses.replace(P.DEFAULTS, device="cpu", precision="fp16"))


def test_invalid_checkpoint_file_is_a_clear_error(tmp_path):
    from sparsett_ros.tracker_backend import StartupError, build_sparsett_tracker

    bad = tmp_path / "garbage.pkl"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(StartupError, match="could not be loaded"):
        build_sparsett_tracker(dataclasses.replace(P.DEFAULTS, checkpoint=str(bad), device="cpu"))


def test_preset_choices_are_the_cores_presets():
    """The node accepts exactly the presets sparsett_core has (a new preset cannot be forgotten here)."""
    from sparsett_core.tracker.presets import preset_names

    assert sorted(p for p in P.PRESETS if p) == preset_names() and "" in P.PRESETS
