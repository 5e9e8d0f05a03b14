"""Training engine end to end on a tiny GOT-10k-layout copy of the shared sequences (CPU).

The loss goes down, the checkpoint loads into the Tracker, and a resumed run reproduces the
losses of an uninterrupted one exactly.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from train_helpers import make_got10k, tiny_config


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def got10k_root(sequences_dir, tmp_path_factory):
    return make_got10k(sequences_dir, tmp_path_factory.mktemp("data") / "GOT-10k")


def _fixed_batch_loss(trainer, batch) -> float:
    """Loss of one fixed batch (train mode, no update): comparable before and after training."""
    npos = float((batch["cls_gt"] == 1).sum())
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        state = {k: v.clone() for k, v in trainer.model.state_dict().items()}
        loss, _ = trainer.actor(batch, torch.tensor(max(npos, 1.0)))
        trainer.model.load_state_dict(state)  # undo the BatchNorm running-stat update
    return float(loss)


def test_dataset_index_and_samples(got10k_root, tmp_path):
    from sparsett_core.train.datasets import load_index

    cache = tmp_path / "cache"
    seqs = load_index("got10k", got10k_root, "train", cache)
    assert [len(s) for s in seqs] == [120, 196, 106, 20]
    assert len(list(cache.glob("*.npz"))) == 1
    again = load_index("got10k", got10k_root, "train", cache)  # from the cache
    assert all(np.array_equal(a.boxes, b.boxes) and a.frame_path(3) == b.frame_path(3) for a, b in zip(seqs, again))
    assert seqs[0].frame_path(0).endswith("GOT-10k_Train_000001/00000001.jpg")


def test_train_loss_down_checkpoint_tracker_and_exact_resume(got10k_root, tmp_path):
    from sparsett_core import SparseTT, Tracker
    from sparsett_core.train.engine import Trainer, latest_checkpoint

    # uninterrupted run: 2 epochs x 15 steps, batch 4
    # dropout and drop path on: the resumed run must also restore the RNG state
    cfg = tiny_config(got10k_root, tmp_path / "a", **{"model.dropout": 0.1, "model.drop_path_rate": 0.1})
    full = Trainer(cfg, progress=False, tensorboard=True)
    probe = next(iter(full.loader))
    before = _fixed_batch_loss(full, probe)
    hist_full = full.fit()
    after = _fixed_batch_loss(full, probe)
    losses = [h["loss"] for h in hist_full]
    assert len(losses) == 30 and all(math.isfinite(v) for v in losses)
    assert after < 0.8 * before, (before, after)
    assert np.mean(losses[-10:]) < np.mean(losses[:10]), losses
    assert list((tmp_path / "a" / "tiny" / "tb").glob("events.out.tfevents.*"))

    # the checkpoint loads with the public API and tracks
    ckpt = latest_checkpoint(tmp_path / "a" / "tiny")
    assert ckpt is not None and ckpt.name == "epoch-1.pt"
    model = SparseTT.from_checkpoint(ckpt, device="cpu")
    for (k, v), (k2, v2) in zip(model.state_dict().items(), full.model.state_dict().items()):
        assert k == k2 and torch.equal(v, v2), k
    import cv2

    frames = sorted((got10k_root / "train" / "GOT-10k_Train_000001").glob("*.jpg"))[:3]
    gt = np.loadtxt(got10k_root / "train" / "GOT-10k_Train_000001" / "groundtruth.txt", delimiter=",")
    tracker = Tracker(model, preset="got10k")
    tracker.init(cv2.imread(str(frames[0])), tuple(gt[0]))
    box, score = tracker.update(cv2.imread(str(frames[1])))
    assert np.isfinite(box).all() and 0.0 <= score <= 1.0

    # interrupted run: epoch 0, then a new process-like Trainer resumes from epoch-0.pt
    cfg_b = tiny_config(got10k_root, tmp_path / "b", **{"model.dropout": 0.1, "model.drop_path_rate": 0.1})
    first = Trainer(cfg_b, progress=False, tensorboard=False)
    hist_b = first.fit(epochs=1)
    del first
    resumed = Trainer(cfg_b, progress=False, tensorboard=False)
    resumed.resume(tmp_path / "b" / "tiny" / "epoch-0.pt")
    assert (resumed.epoch, resumed.step) == (1, 15)
    hist_b += resumed.fit()
    assert [h["loss"] for h in hist_b] == losses
    a_state = full.model.state_dict()
    for k, v in resumed.model.state_dict().items():
        assert torch.equal(v, a_state[k]), k


def test_resume_rejects_model_only_checkpoint(got10k_root, tmp_path):
    from sparsett_core.model.checkpoint import CheckpointError, save_checkpoint
    from sparsett_core.train.engine import Trainer

    cfg = tiny_config(got10k_root, tmp_path)
    trainer = Trainer(cfg, progress=False, tensorboard=False)
    path = save_checkpoint(trainer.model, tmp_path / "model_only.pt")
    with pytest.raises(CheckpointError, match="no training state"):
        trainer.resume(path)


def test_fine_tune_on_own_sequences(sequences_dir, tmp_path):
    """The "sequences" layout (folder per sequence, img/ + groundtruth_rect.txt) trains directly."""
    from sparsett_core.train.engine import Trainer

    cfg = tiny_config(sequences_dir, tmp_path, epochs=1, steps_per_epoch=2)
    cfg = cfg.replace(data=cfg.data.__class__(**{**cfg.data.__dict__, "datasets": (
        cfg.data.datasets[0].__class__(kind="sequences", root=str(sequences_dir), subset=""),)}))
    hist = Trainer(cfg, progress=False, tensorboard=False).fit()
    assert len(hist) == 2 and all(math.isfinite(h["loss"]) for h in hist)
    assert (tmp_path / "tiny" / "epoch-0.pt").is_file()


def test_validation_on_got10k_val_layout(sequences_dir, tmp_path):
    """Validation runs the tracker through sparsett_core.eval on a GOT-10k val layout."""
    from sparsett_core.train.engine import Trainer

    root = make_got10k(sequences_dir, tmp_path / "GOT-10k", subset="val")
    make_got10k(sequences_dir, tmp_path / "GOT-10k", subset="train")
    cfg = tiny_config(root, tmp_path / "out", epochs=1, steps_per_epoch=1, **{"val.root": str(root),
                      "val.from_epoch": 0, "val.max_sequences": 1})
    trainer = Trainer(cfg, progress=False, tensorboard=False)
    result = trainer.validate(0)
    assert set(result) == {"ao", "sr50", "sr75"} and all(0.0 <= v <= 1.0 for v in result.values())
    assert trainer.model.training
    assert trainer.validate(-1) is None  # before val.from_epoch: skipped


def test_backbone_starts_from_the_imagenet_file(got10k_root, tmp_path):
    """pretrained_backbone loads a Swin ImageNet-layout file into the backbone (0.1x lr group)."""
    from sparsett_core.train.engine import build_model, build_optimizer

    cfg = tiny_config(got10k_root, tmp_path)
    donor = build_model(cfg)
    sd = {k: v.clone() for k, v in donor.backbone.state_dict().items() if not k.startswith("norm.")}
    torch.save({"model": sd}, tmp_path / "swin_tiny_patch4_window7_224.pth")
    model = build_model(cfg.replace(pretrained_backbone=str(tmp_path / "swin_tiny_patch4_window7_224.pth")))
    assert torch.equal(model.backbone.patch_embed.proj.weight, donor.backbone.patch_embed.proj.weight)
    assert torch.equal(model.backbone.layers[0].blocks[0].attn.qkv.weight, donor.backbone.layers[0].blocks[0].attn.qkv.weight)

    opt = build_optimizer(model, cfg.optim)
    lrs = {g["name"]: g["lr"] for g in opt.param_groups}
    assert lrs == {"backbone": pytest.approx(1e-4), "rest": pytest.approx(1e-3)}
    n_backbone = sum(p.numel() for p in opt.param_groups[0]["params"])
    assert n_backbone == sum(p.numel() for p in model.backbone.parameters())

    with pytest.raises(FileNotFoundError, match="pretrained_backbone: ''"):
        build_model(cfg.replace(pretrained_backbone=str(tmp_path / "missing.pth")))
