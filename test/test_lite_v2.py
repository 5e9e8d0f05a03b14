"""SparseTT-Lite v2: NanoTrack's backbone, the variant's shapes and training, and the distillation teacher."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from sparsett_core import CheckpointError, SparseTT, Tracker
from sparsett_core.model.lite import lite_v2_config
from sparsett_core.model.mobilenetv3 import MobileNetV3S16, load_nanotrack_backbone

REPO = Path(__file__).resolve().parents[1]
LITE_V2_YAML = REPO / "config" / "train" / "lite_v2.yaml"


@pytest.fixture(scope="session")
def nanotrack_dir(nanotrack_onnx) -> Path:
    return nanotrack_onnx[0].parents[1]


@pytest.fixture(scope="module")
def backbone(nanotrack_dir) -> MobileNetV3S16:
    net = MobileNetV3S16().eval()
    load_nanotrack_backbone(net, nanotrack_dir / "nanotrackv2_state_dict.pt")
    return net


def real_crop(sequences_dir: Path, size: int) -> np.ndarray:
    frame = cv2.imread(str(sorted((sequences_dir / "vot_bag" / "img").glob("*.jpg"))[0]))
    return cv2.resize(frame[100:300, 250:450], (size, size))


# ----------------------------------------------------------------------------------- NanoTrack's backbone
def test_nanotrack_state_dict_fills_every_backbone_tensor(nanotrack_dir):
    """Every tensor of the module comes from the file with its shape; the unused rest is NanoTrack's head."""
    net = MobileNetV3S16()
    state = torch.load(nanotrack_dir / "nanotrackv2_state_dict.pt", weights_only=True)
    unused = load_nanotrack_backbone(net, nanotrack_dir / "nanotrackv2_state_dict.pt")
    own = net.state_dict()
    assert len(own) == sum(k.startswith("backbone.") for k in state)
    assert all(torch.equal(v, state["backbone." + k]) for k, v in own.items())
    assert unused and all(k.startswith(("neck.", "ban_head.")) for k in unused)


def test_nanotrack_v3_or_a_foreign_file_is_refused(nanotrack_dir, tmp_path):
    with pytest.raises(ValueError, match="features.9"):
        load_nanotrack_backbone(MobileNetV3S16(), nanotrack_dir / "nanotrackv3_state_dict.pt")
    bad = tmp_path / "bad.pt"
    torch.save({"weight": torch.zeros(3)}, bad)
    with pytest.raises(ValueError, match="not a NanoTrack state dict"):
        load_nanotrack_backbone(MobileNetV3S16(), bad)
    with pytest.raises(CheckpointError, match="NanoTrack state dict"):
        SparseTT.from_checkpoint(nanotrack_dir / "nanotrackv2_state_dict.pt")


def test_backbone_equals_nanotracks_onnx_backbone(backbone, nanotrack_dir, sequences_dir):
    """The module computes what OpenCV's TrackerNano runs (its ONNX backbone), raw BGR [0, 255] in."""
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime not installed (optional dependency)")
    crop = real_crop(sequences_dir, 255).astype(np.float32).transpose(2, 0, 1)[None].copy()
    sess = ort.InferenceSession(str(nanotrack_dir / "onnx_v2" / "nanotrack_backbone_sim.onnx"),
                                providers=["CPUExecutionProvider"])
    want = sess.run(None, {sess.get_inputs()[0].name: crop})[0]
    with torch.no_grad():
        backbone.fold_inference = False
        plain = backbone(torch.from_numpy(crop)).numpy()
        backbone.fold_inference = True
        folded = backbone(torch.from_numpy(crop)).numpy()
    assert want.shape == plain.shape == (1, 48, 16, 16)
    scale = np.abs(want).max()
    assert np.abs(plain - want).max() <= 1e-5 * scale * 10 and np.abs(folded - want).max() <= 1e-5 * scale * 10


# ----------------------------------------------------------------------------------- the variant
def test_lite_v2_shapes_and_finiteness():
    torch.manual_seed(0)
    model = SparseTT(lite_v2_config(dropout=0.0)).eval()
    c = model.config
    assert (c.x_size, c.x_feat, c.input_format, c.grid_offset) == (255, 16, "bgr255", -1)
    g = torch.Generator().manual_seed(1)
    z = torch.rand(2, 3, 127, 127, generator=g) * 255
    x = torch.rand(2, 3, 255, 255, generator=g) * 255
    with torch.no_grad():
        assert model.backbone(z).shape == (2, 48, 8, 8) and model.backbone(x).shape == (2, 48, 16, 16)
        out = model(z, x)
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "cls_fc": (2, 256, 1), "bbox_fc": (2, 256, 4), "cls_conv": (2, 256, 1), "bbox_conv": (2, 256, 4)}
    score, boxes = model.track(x, model.template(z))
    assert score.shape == (2, 256) and boxes.shape == (2, 256, 4)
    assert all(torch.isfinite(v).all() for v in (*out.values(), score, boxes))
    assert torch.equal(model.head.fm_ctr[0, :2], torch.tensor([[-1.0, -1.0], [15.0, -1.0]]))  # NanoTrack's grid


def test_tracker_feeds_raw_bgr_to_a_bgr255_model(sequences_dir):
    """No normalisation step: the crops reach the network as BGR floats in [0, 255]."""
    torch.manual_seed(0)
    model = SparseTT(lite_v2_config()).eval()
    frame = cv2.imread(str(sorted((sequences_dir / "vot_bag" / "img").glob("*.jpg"))[0]))
    tracker = Tracker(model)
    tracker.init(frame, (200, 150, 60, 50))
    assert tracker.template_crop.shape == (127, 127, 3) and tracker.template_crop.max() > 1.5
    cx, cy, w, h = tracker.search_target()
    tracker.update(frame)
    assert tracker.search_crop.shape == (255, 255, 3) and tracker.score_map.shape == (256,)
    from sparsett_core.tracker.crop import get_crop

    want, _ = get_crop(frame, cx, cy, w, h, 127, 255, tracker.avg_chans)
    assert np.array_equal(tracker.search_crop, want.astype(np.float32))


def test_lite_v2_recipe_trains_with_the_teacher(train_dir, nanotrack_dir):
    """The recipe's data pipeline with the distillation teacher: the teacher's best point lies in the
    ground-truth box of positive pairs, and a few steps on real pairs lower the loss, with the
    NanoTrack backbone frozen."""
    from sparsett_core.train.config import load_config
    from sparsett_core.train.data import PairDataset, build_sources, crop_params, normalise, sampler_params
    from sparsett_core.train.distill import NanoTrackTeacher, distill_loss
    from sparsett_core.train.engine import build_model
    from sparsett_core.train.losses import sparsett_loss
    from sparsett_core.train.sampler import PairSampler

    pytest.importorskip("onnxruntime", reason="the teacher's head runs with onnxruntime")
    weights = nanotrack_dir
    cfg = load_config(LITE_V2_YAML, {
        "data.datasets": [{"kind": "sequences", "root": str(train_dir), "subset": "", "max_gap": 40}],
        "data.cache_dir": str(REPO / ".pytest_cache"),
        "pretrained_backbone": str(weights / "nanotrackv2_state_dict.pt"),
        "distill.backbone": str(weights / "nanotrackv2_state_dict.pt"),
        "distill.head": str(weights / "onnx_v2" / "nanotrack_head_sim.onnx"),
        "model.dropout": 0.0})
    assert dict(cfg.model) == {k: v for k, v in lite_v2_config(dropout=0.0).to_dict().items() if k in cfg.model}
    assert cfg.data.augment.paste_prob > 0  # the recipe's synthetic motion is part of what trains below
    mcfg = lite_v2_config(dropout=0.0)
    teacher = NanoTrackTeacher(cfg.distill)

    def dataset(augment):
        return PairDataset(PairSampler(build_sources(cfg.data), sampler_params(cfg.data)), crop_params(cfg.data),
                           cfg.seed, mcfg.score_size, mcfg.total_stride, augment, offset=mcfg.grid_offset,
                           teacher=teacher)

    # grid alignment, on real (unpasted) pairs: a pasted target on a strange background may fool the
    # teacher, an offset grid would put its best point off the labels on every pair
    plain = dataset(dataclasses.replace(cfg.data.augment, paste_prob=0.0))
    positives = [it for it in (plain[k] for k in range(8)) if not it["negative"] and (it["cls_gt"] == 1).any()]
    assert positives
    assert all(it["cls_gt"][int(np.argmax(it["t_score"][:, 0])), 0] == 1 for it in positives)
    data = dataset(cfg.data.augment)
    items = [data[k] for k in range(8)]
    batch = {k: torch.from_numpy(np.stack([it[k] for it in items])) for k in ("z", "x", "cls_gt", "box_gt", "t_score", "t_box")}
    torch.manual_seed(0)
    model = build_model(cfg).train()
    model.backbone.requires_grad_(False)
    nano = torch.load(weights / "nanotrackv2_state_dict.pt", weights_only=True)
    assert torch.equal(model.backbone.features[0][0].weight, nano["backbone.features.0.0.weight"])
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    z, x = normalise(batch["z"], "bgr255"), normalise(batch["x"], "bgr255")
    norm = (batch["cls_gt"] == 1).sum().clamp(min=1).float()
    losses = []
    for _ in range(10):
        out = model(z, x)
        loss, _ = sparsett_loss(out, batch["cls_gt"], batch["box_gt"], norm, cfg.loss)
        extra, stats = distill_loss(out, batch["t_score"], batch["t_box"], norm, cfg.distill)
        opt.zero_grad()
        (loss + extra).backward()
        opt.step()
        losses.append((loss + extra).item())
    # the teacher's term covers all 256 points: it starts high (~55) and falls steadily (~0.7x in 10 steps)
    assert all(np.isfinite(losses)) and losses[-1] < 0.8 * losses[0], losses
    assert all(p.grad is None for p in model.backbone.parameters())


def test_synthetic_motion_moves_the_box_with_the_pasted_target():
    from sparsett_core.train.photometric import paste_target
    from sparsett_core.train.sampler import Pair

    # a 48x32 target of four coloured quadrants: a box that misses the pasted pixels by more than
    # a few pixels finds the wrong colour at some quadrant centre
    colours = np.array([[[0, 0, 255], [0, 255, 0]], [[255, 0, 0], [255, 255, 255]]], np.uint8)
    target = np.kron(colours, np.ones((16, 24, 1), np.uint8))
    frame = np.full((240, 320, 3), 40, np.uint8)
    frame[100:132, 150:198] = target
    box = np.array([150., 100., 197., 131.])
    background = np.full((300, 400, 3), 128, np.uint8)
    pair = Pair(frame, box, frame, box, False)
    for seed in range(8):
        out = paste_target(pair, background, np.random.default_rng(seed))
        x0, y0, x1, y1 = out.box_x
        assert out.image_x.shape == background.shape and out.image_z is pair.image_z
        assert 0 <= x0 < x1 < 400 and 0 <= y0 < y1 < 300
        assert (x1 - x0 + 1) / (y1 - y0 + 1) == pytest.approx(48 / 32, rel=0.05)  # aspect kept
        w, h = x1 - x0 + 1, y1 - y0 + 1
        for (i, j), colour in np.ndenumerate(colours[..., 0]):
            px = out.image_x[int(round(y0 + (i + 0.5) * h / 2)), int(round(x0 + (j + 0.5) * w / 2))]
            assert np.abs(px.astype(int) - colours[i, j]).max() <= 10, (seed, i, j, px)
        far = np.ones(background.shape[:2], bool)
        far[max(0, int(y0) - 12):int(y1) + 13, max(0, int(x0) - 12):int(x1) + 13] = False
        assert (out.image_x[far] == 128).all()  # the rest of the new frame untouched
    tiny = Pair(frame, np.array([0., 0., 0.5, 0.5]), frame, np.array([0., 0., 0.5, 0.5]), False)
    assert paste_target(tiny, background, np.random.default_rng(0)) is tiny  # too small to cut: unchanged


def test_free_region_is_a_filtered_rectangle_of_the_frame_in_both_boxes():
    from sparsett_core.train.sampler import Pair, SamplerParams, free_region

    frame = np.zeros((240, 320, 3), np.uint8)
    box = np.array([150., 100., 197., 131.])  # 48 x 32
    pair = Pair(frame, box, frame, box.copy(), False)
    params = SamplerParams(min_area_rate=0.001, max_area_rate=0.6, max_aspect=10.0)
    places = set()
    for seed in range(20):
        out = free_region(pair, np.random.default_rng(seed), params)
        x0, y0, x1, y1 = out.box_z
        assert np.array_equal(out.box_x, out.box_z) and out.image_z is frame and not out.negative
        assert 0 <= x0 < x1 <= 319 and 0 <= y0 < y1 <= 239
        w, h = x1 - x0 + 1, y1 - y0 + 1
        assert 0.6 / 1.5 - 1e-9 <= w / 48 <= 1.4 * 1.5 + 1e-9 and 0.6 / 1.5 - 1e-9 <= h / 32 <= 1.4 * 1.5 + 1e-9
        assert w * h <= 0.6 * 240 * 320 and max(w / h, h / w) < 10
        places.add((round(x0, -1), round(y0, -1)))
    assert len(places) > 10  # anywhere in the frame, not around the target
    assert free_region(pair, np.random.default_rng(0), SamplerParams(min_area_rate=0.59)) is None  # nothing passes


def test_unlabelled_pairs_are_trained_by_the_teacher_only(train_dir, nanotrack_dir):
    """``data.unlabelled_prob``: a positive pair becomes a random region of its frames whose ground
    truth is ignored everywhere; the teacher's targets (computed on the very crops) train it."""
    from sparsett_core.train.config import load_config
    from sparsett_core.train.data import PairDataset, build_sources, crop_params, sampler_params
    from sparsett_core.train.distill import NanoTrackTeacher, distill_loss
    from sparsett_core.train.losses import sparsett_loss
    from sparsett_core.train.sampler import PairSampler

    pytest.importorskip("onnxruntime", reason="the teacher's head runs with onnxruntime")
    teacher_files = {"distill.backbone": str(nanotrack_dir / "nanotrackv2_state_dict.pt"),
                     "distill.head": str(nanotrack_dir / "onnx_v2" / "nanotrack_head_sim.onnx")}
    data = {"data.datasets": [{"kind": "sequences", "root": str(train_dir), "subset": "", "max_gap": 40}],
            "data.cache_dir": str(REPO / ".pytest_cache"), "data.unlabelled_prob": 1.0}
    with pytest.raises(ValueError, match="needs distillation"):
        load_config(LITE_V2_YAML, {**data, "distill.backbone": "", "distill.head": ""})
    with pytest.raises(ValueError, match=r"unlabelled_prob must be in \[0, 1\]"):
        load_config(LITE_V2_YAML, {**data, **teacher_files, "data.unlabelled_prob": 1.5})
    cfg = load_config(LITE_V2_YAML, {**data, **teacher_files})
    mcfg = lite_v2_config()
    sampler = PairSampler(build_sources(cfg.data), sampler_params(cfg.data))
    with pytest.raises(ValueError, match="need a distillation teacher"):
        PairDataset(sampler, crop_params(cfg.data), cfg.seed, mcfg.score_size, mcfg.total_stride, unlabelled_prob=0.5)

    def dataset(prob):
        return PairDataset(sampler, crop_params(cfg.data), cfg.seed, mcfg.score_size, mcfg.total_stride,
                           cfg.data.augment, offset=mcfg.grid_offset, teacher=NanoTrackTeacher(cfg.distill),
                           unlabelled_prob=prob)

    items = [dataset(1.0)[k] for k in range(10)]
    labelled = [dataset(0.0)[k] for k in range(10)]
    positives = [k for k, it in enumerate(labelled) if not it["negative"]]
    assert positives and all(labelled[k]["negative"] == items[k]["negative"] for k in range(10))
    for k in positives:  # the same pair index: its frames were drawn first, then turned unlabelled
        assert (items[k]["cls_gt"] == -1).all() and not items[k]["box_gt"].any()
        assert (labelled[k]["cls_gt"] == 1).any()
        assert items[k]["t_score"].shape == (256, 1) and np.isfinite(items[k]["t_box"]).all()
    assert any((items[k]["cls_gt"] == 0).any() for k in range(10) if items[k]["negative"])  # negatives unchanged
    batch = {key: torch.from_numpy(np.stack([items[k][key] for k in positives])) for key in items[0]}
    torch.manual_seed(0)
    model = SparseTT(mcfg).train()
    x = batch["x"].float().requires_grad_(True)
    out = model(batch["z"].float(), x)
    gt, _ = sparsett_loss(out, batch["cls_gt"], batch["box_gt"], 1.0, cfg.loss)
    teacher, _ = distill_loss(out, batch["t_score"], batch["t_box"], 1.0, cfg.distill)
    assert gt.item() == 0.0 and teacher.item() > 0
    teacher.backward()
    assert x.grad.abs().sum() > 0  # the teacher's terms reach the network


def test_train_script_stage_two_continues_stage_one():
    """scripts/train_lite.sh: stage 2 starts from stage 1's last epoch, and the export reads stage 2's last."""
    import re
    import shlex

    from sparsett_core.train.config import load_config, parse_override

    script = (REPO / "scripts" / "train_lite.sh").read_text()
    stage2 = script[script.index("stage 2 of 2"):script.index("ckpts=()")]
    args = shlex.split(stage2.split("\n", 1)[1].replace("\\\n", " "))  # one command, continuations joined
    overrides = dict(parse_override(v) for k, v in zip(args, args[1:]) if k == "--set" and "$SHARED" not in v)
    one, two = load_config(LITE_V2_YAML), load_config(LITE_V2_YAML, overrides)
    assert one.optim.backbone_lr_mult == 0.0 and two.optim.backbone_lr_mult == 0.1  # frozen, then fine-tuned
    assert two.init_checkpoint == f"{one.output_dir}/{one.name}/epoch-{one.epochs - 1}.pt"
    assert (two.epochs, two.optim.lr, list(two.optim.lr_milestones), two.seed) == (10, 1.5e-4, [6, 8], 20261201)
    assert two.name != one.name and two.data == one.data and two.distill == one.distill
    export = re.search(r'LITE_EPOCHS:-(\d+)\}; do ckpts\+=\("([^"]+)"', script)
    assert export.group(2) == f"{two.output_dir}/{two.name}/epoch-$e.pt" and int(export.group(1)) == two.epochs - 1


def test_train_script_gives_experiment_overrides_to_both_stages(tmp_path):
    """scripts/train_lite.sh SHARED OUT --set K=V: both training runs get the override after the
    shared paths (stage 2's own schedule still after it), the export writes OUT; a bad option is
    refused before anything runs. sparsett-train and python are stand-ins that record their calls."""
    import os
    import shlex
    import shutil
    import subprocess

    repo, shared, bin_dir, calls = tmp_path / "repo", tmp_path / "shared", tmp_path / "bin", tmp_path / "calls"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy(REPO / "scripts" / "train_lite.sh", repo / "scripts")  # a checkout without .venv
    for d in ("data/train", "data/train_extra"):
        (shared / d).mkdir(parents=True)
    for f in ("nanotrackv2_state_dict.pt", "onnx_v2/nanotrack_head_sim.onnx"):
        (shared / "weights" / "nanotrack" / f).parent.mkdir(parents=True, exist_ok=True)
        (shared / "weights" / "nanotrack" / f).touch()
    bin_dir.mkdir()
    for tool in ("sparsett-train", "python"):
        (bin_dir / tool).write_text(f'#!/usr/bin/env bash\n{{ printf "%q " {tool} "$@"; echo; }} >> "{calls}"\n')
        (bin_dir / tool).chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(repo / "scripts" / "train_lite.sh"), *args], env=env,
                              capture_output=True, text=True, timeout=60)

    bad = run(str(shared), "--set", "data.unlabelled_prob")
    assert bad.returncode == 2 and "--set needs KEY=VALUE" in bad.stderr and not calls.exists()
    assert run("--frobnicate").returncode == 2 and not calls.exists()

    out = tmp_path / "model.pt"
    proc = run(str(shared), str(out), "--set", "data.unlabelled_prob=0")  # E's recipe: not the yaml's 0.3
    assert proc.returncode == 0, proc.stderr
    runs = [shlex.split(line) for line in calls.read_text().splitlines()]
    assert [r[0] for r in runs] == ["sparsett-train", "sparsett-train", "python"]
    stage1, stage2 = ([v for k, v in zip(r, r[1:]) if k == "--set"] for r in runs[:2])
    for sets in (stage1, stage2):
        assert f"data.datasets.0.root={shared}/data/train" in sets
        assert sets.index("data.unlabelled_prob=0") > sets.index(f"data.datasets.1.root={shared}/data/train_extra")
    assert stage2.index("data.unlabelled_prob=0") < stage2.index("seed=20261201")
    assert runs[2][-3:] == [str(out), "--check-dir", f"{shared}/data/train"]


def test_config_overrides_reach_list_items():
    """scripts/train_lite.sh points the recipe's two datasets at another shared folder by index."""
    from sparsett_core.train.config import load_config

    cfg = load_config(LITE_V2_YAML, {"data.datasets.1.root": "/data/extra", "data.datasets.0.max_gap": 7})
    assert cfg.data.datasets[1].root == "/data/extra" and cfg.data.datasets[0].max_gap == 7
    assert "uavdt_S1606" in cfg.data.datasets[1].exclude  # the rest of the item is kept
    with pytest.raises(ValueError, match="not an index of a 2-item list"):
        load_config(LITE_V2_YAML, {"data.datasets.2.root": "/x"})


# ----------------------------------------------------------------------------------- the shipped weights
# The shipped default (SparseTT-Lite v2 of run H, sparsett_core/weights/default.pt), measured
# 2026-12-01 on the 2-core AMD EPYC (Zen 5), torch 2.13.0+cpu, one thread: success AUC
# CROSSING_MEASURED on otb_crossing with its own preset (run E, shipped before it: 0.629). The floor
# leaves a margin for other CPUs / BLAS builds (the run is deterministic on one machine); a model
# that loses the pedestrian scores about 0.2.
CROSSING_MEASURED = 0.698
CROSSING_AUC_FLOOR = 0.62
MAX_DEFAULT_MB = 5.0


@pytest.fixture(scope="module")
def shipped() -> SparseTT:
    return SparseTT.from_checkpoint("default")


def test_default_weights_are_lite_v2(shipped):
    from sparsett_core.model.checkpoint import read_checkpoint
    from sparsett_core.weights import default_checkpoint_path

    path = default_checkpoint_path()
    assert path.stat().st_size < MAX_DEFAULT_MB * 2**20
    obj = read_checkpoint(path)
    assert "optimizer" not in obj and all(t.dtype == torch.float16 for t in obj["state_dict"].values()
                                          if t.is_floating_point())
    assert shipped.config == lite_v2_config(dropout=0.0)
    assert not shipped.training and next(shipped.parameters()).dtype == torch.float32
    assert Tracker(shipped).preset.name == "lite_v2"
    assert SparseTT.from_checkpoint("").config == shipped.config  # "" is the default too


def test_default_weights_track_otb_crossing(shipped, sequences_dir, record_property):
    from sparsett_core.eval.metrics import score_sequence

    seq = sequences_dir / "otb_crossing"
    gt = np.loadtxt(seq / "groundtruth_rect.txt", delimiter=",")
    paths = sorted((seq / "img").glob("*.jpg"))
    tracker = Tracker(shipped)
    tracker.init(cv2.imread(str(paths[0])), tuple(gt[0]))
    boxes = [gt[0]] + [tracker.update(cv2.imread(str(p)))[0] for p in paths[1:]]
    auc = score_sequence(np.asarray(boxes, dtype=np.float64), gt).success_auc
    record_property("default_weights_crossing_auc", round(auc, 3))
    assert auc > CROSSING_AUC_FLOOR, f"otb_crossing AUC {auc:.3f} (measured {CROSSING_MEASURED} when shipped)"
