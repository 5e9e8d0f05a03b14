"""Dataset readers on miniature copies of each published layout, the index cache, and the sampler."""
from __future__ import annotations

import json

import numpy as np
import pytest

from sparsett_core.train.datasets import load_index, read_boxes


def _xml(path, objects):
    objs = "".join(
        f"<object><trackid>{t}</trackid><name>n0</name><bndbox><xmax>{b[2]}</xmax><xmin>{b[0]}</xmin>"
        f"<ymax>{b[3]}</ymax><ymin>{b[1]}</ymin></bndbox></object>" for t, b in objects)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"<annotation><size><width>640</width><height>480</height></size>{objs}</annotation>")


def test_read_boxes_separators_and_nan(tmp_path):
    f = tmp_path / "gt.txt"
    f.write_text("1,2,3,4\n5\t6\t7\t8\nNaN,NaN,NaN,NaN\n\n9 10 11 12\n")
    b = read_boxes(f)
    assert b.shape == (4, 4) and b[0].tolist() == [1, 2, 3, 4] and b[1].tolist() == [5, 6, 7, 8]
    assert np.isnan(b[2]).all() and b[3].tolist() == [9, 10, 11, 12]


def test_lasot_split_and_hidden_frames(tmp_path):
    for name in ("cat-1", "cat-2", "dog-1"):
        d = tmp_path / name.split("-")[0] / name
        (d / "img").mkdir(parents=True)
        (d / "groundtruth.txt").write_text("10,10,20,20\n12,10,20,20\n14,10,20,20\n")
        (d / "full_occlusion.txt").write_text("0,1,0")
        (d / "out_of_view.txt").write_text("0,0,1")
    with pytest.raises(FileNotFoundError, match="testing_set.txt"):
        load_index("lasot", tmp_path, "train", tmp_path / "c1")
    (tmp_path / "testing_set.txt").write_text("cat-2\n")
    seqs = load_index("lasot", tmp_path, "train", tmp_path / "c2")
    assert [s.name for s in seqs] == ["cat-1", "dog-1"]
    assert seqs[0].valid.tolist() == [True, False, False]
    assert seqs[0].frame_path(2).endswith("cat/cat-1/img/00000003.jpg")


def test_trackingnet_chunks(tmp_path):
    for chunk in ("TRAIN_0", "TRAIN_1"):
        (tmp_path / chunk / "anno").mkdir(parents=True)
        (tmp_path / chunk / "anno" / "vidA.txt").write_text("1,1,5,5\n2,2,5,5\n")
    seqs = load_index("trackingnet", tmp_path, "train", tmp_path / "c")
    assert [s.name for s in seqs] == ["TRAIN_0/vidA", "TRAIN_1/vidA"]
    assert seqs[1].frame_path(1).endswith("TRAIN_1/frames/vidA/1.jpg")


def test_vid_one_sequence_per_track(tmp_path):
    base = tmp_path / "Annotations" / "VID" / "train" / "chunk0" / "vid0"
    _xml(base / "000000.xml", [(0, (10, 20, 59, 99)), (1, (5, 5, 14, 14))])
    _xml(base / "000001.xml", [(0, (11, 20, 60, 99))])
    _xml(base / "000002.xml", [(1, (6, 5, 15, 14))])
    seqs = load_index("vid", tmp_path, "train", tmp_path / "c")
    assert [s.name for s in seqs] == ["train/chunk0/vid0/0", "train/chunk0/vid0/1"]
    assert seqs[0].boxes[0].tolist() == [10, 20, 50, 80]  # w = xmax - xmin + 1
    assert seqs[1].frame_ids.tolist() == [0, 2]
    assert seqs[1].frame_path(1).endswith("Data/VID/train/chunk0/vid0/000002.JPEG")


def test_det_and_coco_still_images(tmp_path):
    _xml(tmp_path / "Annotations" / "DET" / "train" / "a" / "img1.xml", [(0, (0, 0, 9, 19)), (0, (5, 5, 24, 24))])
    _xml(tmp_path / "Annotations" / "DET" / "train" / "a" / "img2.xml", [])
    det = load_index("det", tmp_path, "train", tmp_path / "c")
    assert len(det) == 1 and det[0].static and det[0].boxes.tolist() == [[0, 0, 10, 20], [5, 5, 20, 20]]
    assert det[0].frame_path(1).endswith("Data/DET/train/a/img1.JPEG")

    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "instances_train2017.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "1.jpg"}, {"id": 2, "file_name": "2.jpg"}],
        "annotations": [{"image_id": 1, "bbox": [1, 2, 30, 40], "iscrowd": 0},
                        {"image_id": 2, "bbox": [0, 0, 100, 100], "iscrowd": 1}]}))
    coco = load_index("coco", tmp_path, "train2017", tmp_path / "c")
    assert len(coco) == 1 and coco[0].boxes.tolist() == [[1, 2, 30, 40]]
    assert coco[0].frame_path(0).endswith("train2017/1.jpg")


def test_index_cache_is_reused_and_rebuilt(tmp_path):
    d = tmp_path / "seqs" / "s1"
    d.mkdir(parents=True)
    for i in range(3):
        (d / f"{i:04d}.png").write_bytes(b"")
    (d / "groundtruth.txt").write_text("1,1,5,5\n0,0,0,0\n2,2,5,5\n")
    seqs = load_index("sequences", tmp_path / "seqs", "", tmp_path / "c")
    assert seqs[0].valid.tolist() == [True, False, True] and seqs[0].names == ("0000.png", "0001.png", "0002.png")
    (d / "groundtruth.txt").write_text("1,1,5,5\n1,1,5,5\n2,2,5,5\n")
    assert load_index("sequences", tmp_path / "seqs", "", tmp_path / "c")[0].valid.tolist() == [True, False, True]
    assert load_index("sequences", tmp_path / "seqs", "", tmp_path / "c", rebuild=True)[0].valid.all()
    (d / "groundtruth.txt").write_text("1,1,5,5\n")
    with pytest.raises(ValueError, match="3 frames but 1 ground-truth rows"):
        load_index("sequences", tmp_path / "seqs", "", tmp_path / "c", rebuild=True)


def test_sampler_ratios_negatives_gap_and_still_images():
    from sparsett_core.train.datasets import Sequence
    from sparsett_core.train.sampler import PairSampler, SamplerParams, Source

    n = 1000
    video = Sequence("v", "/v", np.arange(n), np.tile([100.0, 100.0, 40.0, 40.0], (n, 1)), np.ones(n, bool),
                     pattern="{:06d}.jpg")
    still = Sequence("s", "/s", np.zeros(2, np.int64), np.array([[10.0, 10, 30, 30], [50, 50, 30, 30]]),
                     np.ones(2, bool), names=("a.jpg", "a.jpg"), static=True)
    sampler = PairSampler([Source("video", (video,), 3.0, 100), Source("still", (still,), 1.0, 100)],
                          SamplerParams(), loader=lambda path: np.zeros((480, 640, 3), np.uint8))
    rng = np.random.default_rng(0)
    pairs = [sampler.sample(rng) for _ in range(3000)]
    neg = np.mean([p.negative for p in pairs])
    assert abs(neg - 0.33) < 0.03
    pos = [p for p in pairs if not p.negative]
    from_still = np.mean([p.box_z[0] in (10.0, 50.0) for p in pos])
    assert abs(from_still - 0.25) < 0.03                            # ratios 3 : 1
    assert all(np.array_equal(p.box_z, p.box_x) for p in pos if p.box_z[0] in (10.0, 50.0))


def test_sampler_gap_is_bounded_in_both_directions():
    from sparsett_core.train.datasets import Sequence
    from sparsett_core.train.sampler import PairSampler, SamplerParams, Source

    n = 600
    boxes = np.stack([np.arange(n, dtype=float), np.full(n, 100.0), np.full(n, 40.0), np.full(n, 40.0)], 1)
    video = Sequence("v", "/v", np.arange(n), boxes, np.ones(n, bool), pattern="{:06d}.jpg")
    for mode, lo, hi in (("bounded", -100, 100), ("official", -100, n)):
        sampler = PairSampler([Source("v", (video,), 1.0, 100)], SamplerParams(negative_ratio=0.0, gap_mode=mode),
                              loader=lambda path: np.zeros((480, 640, 3), np.uint8))
        rng = np.random.default_rng(1)
        gaps = np.array([p.box_x[0] - p.box_z[0] for p in (sampler.sample(rng) for _ in range(2000))])
        assert gaps.min() >= lo and gaps.max() <= hi
        assert (gaps.max() > 300) == (mode == "official")  # only the official sampler jumps far ahead
