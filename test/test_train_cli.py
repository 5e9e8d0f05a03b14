"""sparsett-train as a user runs it (the installed command, torchrun), on CPU.

Data: a tiny GOT-10k-layout copy of real UAV123 sequences (../shared/data/train, frames linked).
The recipes are config/train/got10k.yaml and fulldata.yaml, scaled down on the command line only
(``--set``): fewer pairs, a small batch, and for the multi-run tests the small Swin-T sizes of
test/train_helpers.TINY_MODEL. Checked: the recipe trains and validates, ``--resume auto`` after an
interruption gives the weights of an uninterrupted run, ``torchrun --nproc_per_node 2`` (gloo)
equals one process with the same global batch, bf16 autocast lowers the loss and fp16 runs with a
GradScaler, and both recipes parse and build.
"""
from __future__ import annotations

import math
import socket
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from cli_helpers import assert_clean_error, interrupt_when, run_tool, tool, tool_env
from train_helpers import make_got10k, make_imagenet_swin, tiny_model_args

REPO = Path(__file__).resolve().parents[1]
GOT10K_RECIPE = REPO / "config" / "train" / "got10k.yaml"
FULLDATA_RECIPE = REPO / "config" / "train" / "fulldata.yaml"
TRAIN_SEQUENCES = ("uav123_10fps_boat1", "uav123_10fps_building4", "uav123_10fps_person12", "uav123_10fps_truck4")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def got10k(train_dir, sequences_dir, tmp_path_factory) -> Path:
    """GOT-10k layout: train = 4 real UAV123 sequences (first 120 frames), val = one 8-frame sequence."""
    root = tmp_path_factory.mktemp("data") / "GOT-10k"
    make_got10k(train_dir, root, "train", names=TRAIN_SEQUENCES, max_frames=120)
    make_got10k(sequences_dir, root, "val", names=("otb_crossing",), max_frames=8)
    return root


def scaled(got10k: Path, out: Path, *extra: str) -> list[str]:
    """Command-line overrides shrinking a recipe to CPU size and pointing it at the tiny dataset."""
    return ["--set", f"data.datasets=[{{kind: got10k, root: {got10k}, subset: train}}]", "--set", f"output_dir={out}",
            "--set", f"data.cache_dir={out / 'cache'}", "--set", "data.num_workers=0", "--set", "val.root=",
            "--set", "pretrained_backbone=", "--set", "log_every=1", "--no-progress", "--device", "cpu", *extra]


def train(*args: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess:
    proc = run_tool("sparsett-train", *args, cwd=cwd, env=tool_env(**env))
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "Traceback" not in proc.stderr
    return proc


def scalars(tb: Path, tag: str) -> list[float]:
    """A TensorBoard scalar series in step order (all event files of the folder)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tb))
    acc.Reload()
    return [e.value for e in sorted(acc.Scalars(tag), key=lambda e: e.step)]


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_got10k_recipe_trains_and_validates(got10k, tmp_path):
    """The paper-size recipe, from an ImageNet-layout Swin-T file, 2 steps of 2 pairs, one validation."""
    from sparsett_core import SparseTT
    from sparsett_core.config import ModelConfig

    swin = make_imagenet_swin(tmp_path / "models" / "swin" / "swin_tiny_patch4_window7_224.pth")
    out = tmp_path / "work_dir"
    proc = train("--config", str(GOT10K_RECIPE), *scaled(got10k, out), "--set", f"pretrained_backbone={swin}",
                 "--set", "epochs=1", "--set", "data.pairs_per_epoch=4", "--set", "batch_size=2",
                 "--set", "data.num_workers=1", "--set", f"val.root={got10k}", "--set", "val.from_epoch=0",
                 "--set", "val.max_sequences=1")
    ckpt = out / "sparsett-swin-got10k-train" / "epoch-0.pt"
    assert f"final checkpoint: {ckpt}" in proc.stdout
    assert "1 epochs x 2 steps, global batch 2 (1 ranks x 2 x 1 accum), amp none" in proc.stderr
    state = load(ckpt)
    assert (state["epoch"], state["step"], state["world_size"]) == (0, 2, 1)
    assert state["train_config"]["optim"]["lr_milestones"] == [10, 15] and state["train_config"]["batch_size"] == 2
    model = SparseTT.from_checkpoint(ckpt)
    paper = ModelConfig()
    assert (model.config.variant, model.config.swin_embed_dim, model.config.x_size) == \
        (paper.variant, paper.swin_embed_dim, paper.x_size)
    tb = out / "sparsett-swin-got10k-train" / "tb"
    assert len(scalars(tb, "train/loss")) == 2 and all(math.isfinite(v) for v in scalars(tb, "train/loss"))
    assert 0.0 <= scalars(tb, "val/ao")[0] <= 1.0  # GOT-10k val through the tracker after epoch 0


def test_resume_auto_after_an_interruption_gives_the_uninterrupted_weights(got10k, tmp_path):
    """Ctrl-C during epoch 1, then ``--resume auto``: every weight and optimiser state equals one full run's
    (dropout and drop path on: the RNG state is restored too)."""
    args = ["--config", str(GOT10K_RECIPE), *tiny_model_args(), "--set", "epochs=3", "--set",
            "data.pairs_per_epoch=24", "--set", "batch_size=4", "--set", "optim.lr=1e-3"]
    full = tmp_path / "full"
    train(*args, *scaled(got10k, full))

    cut = tmp_path / "cut"
    cmd = [tool("sparsett-train"), *args, *scaled(got10k, cut)]
    exp = cut / "sparsett-swin-got10k-train"
    status, err = interrupt_when(cmd, lambda: (exp / "epoch-0.pt").is_file(), "the first epoch's checkpoint")
    assert status == 130, err[-3000:]
    assert "--resume auto" in err and "Traceback" not in err
    assert sorted(p.name for p in exp.glob("epoch-*.pt")) == ["epoch-0.pt"]

    resumed = train(*args, *scaled(got10k, cut), "--resume", "auto")
    assert f"resumed from {exp / 'epoch-0.pt'} at epoch 1, step 6" in resumed.stderr
    a, b = load(full / "sparsett-swin-got10k-train" / "epoch-2.pt"), load(exp / "epoch-2.pt")
    assert a["step"] == b["step"] == 18
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    # nothing left to do: a second resume finishes at once with the same final checkpoint
    again = train(*args, *scaled(got10k, cut), "--resume", "auto")
    assert f"final checkpoint: {exp / 'epoch-2.pt'}" in again.stdout


def _train_mode_outputs(ckpt: Path, seed: int = 0) -> dict[str, torch.Tensor]:
    """The network's outputs on fixed inputs in train mode (batch statistics, no dropout here)."""
    from sparsett_core import SparseTT

    model = SparseTT.from_checkpoint(ckpt).train()
    g = torch.Generator().manual_seed(seed)
    c = model.config
    z = torch.randn(2, 3, c.z_size, c.z_size, generator=g)
    x = torch.randn(2, 3, c.x_size, c.x_size, generator=g)
    with torch.no_grad():
        return model(z, x)


def test_torchrun_two_processes_equal_one_process(got10k, tmp_path):
    """Same global batch of 4: one process, or two ranks of 2 over gloo with synchronised BatchNorm."""
    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available in this torch build")
    args = ["--config", str(GOT10K_RECIPE), *tiny_model_args(dropout=0.0, drop_path_rate=0.0), "--set", "epochs=2",
            "--set", "data.pairs_per_epoch=12", "--set", "batch_size=4", "--set", "optim.lr=1e-3"]
    one, two = tmp_path / "one", tmp_path / "two"
    train(*args, *scaled(got10k, one))
    proc = run_tool("torchrun", "--nproc_per_node", "2", "--master_port", str(free_port()), "-m",
                    "sparsett_core.cli.train", *args, *scaled(got10k, two))
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "global batch 4 (2 ranks x 2 x 1 accum)" in proc.stderr

    exp = "sparsett-swin-got10k-train"
    a, b = load(one / exp / "epoch-1.pt"), load(two / exp / "epoch-1.pt")
    assert (a["world_size"], b["world_size"], a["step"], b["step"]) == (1, 2, 6, 6)
    # every step's loss (the later ones depend on all earlier updates) agrees to float32 rounding
    la, lb = scalars(one / exp / "tb", "train/loss"), scalars(two / exp / "tb", "train/loss")
    assert len(la) == len(lb) == 6
    assert lb == pytest.approx(la, rel=2e-5)
    # and so does the trained network. Weights themselves are not compared one by one: AdamW turns
    # the rounding noise of gradients that are exactly zero in theory (a bias before BatchNorm,
    # attention key biases) into lr-sized steps that leave every output unchanged.
    oa, ob = _train_mode_outputs(one / exp / "epoch-1.pt"), _train_mode_outputs(two / exp / "epoch-1.pt")
    for key in oa:
        scale = float(oa[key].abs().max())
        assert torch.allclose(oa[key], ob[key], rtol=1e-4, atol=1e-4 * scale), key


def _fixed_batch_loss(trainer, batch) -> float:
    """Loss of one fixed batch in train mode under the run's autocast, without changing the model."""
    npos = float((batch["cls_gt"] == 1).sum())
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        state = {k: v.clone() for k, v in trainer.model.state_dict().items()}
        loss, _ = trainer.actor(batch, torch.tensor(max(npos, 1.0)))
        trainer.model.load_state_dict(state)
    return float(loss)


def test_bf16_autocast_on_cpu_lowers_the_loss(got10k, tmp_path):
    from sparsett_core.train.config import config_from_dict
    from sparsett_core.train.engine import Trainer

    out = tmp_path / "bf16"
    proc = train("--config", str(GOT10K_RECIPE), *tiny_model_args(), *scaled(got10k, out), "--set", "amp=bf16",
                 "--set", "epochs=2", "--set", "data.pairs_per_epoch=60", "--set", "batch_size=4",
                 "--set", "optim.lr=1e-3")
    assert "amp bf16" in proc.stderr
    ckpt = load(out / "sparsett-swin-got10k-train" / "epoch-1.pt")
    losses = scalars(out / "sparsett-swin-got10k-train" / "tb", "train/loss")
    assert len(losses) == 30 and all(math.isfinite(v) for v in losses)
    # the same recipe rebuilt here starts from the same weights (same seed) as the command did
    cfg = config_from_dict(ckpt["train_config"])
    assert cfg.amp == "bf16"
    trainer = Trainer(cfg, progress=False, tensorboard=False)
    probe = next(iter(trainer.loader))
    before = _fixed_batch_loss(trainer, probe)
    trainer.model.load_state_dict(ckpt["state_dict"])
    after = _fixed_batch_loss(trainer, probe)
    assert after < 0.8 * before, (before, after)


def test_fp16_autocast_runs_with_a_grad_scaler(got10k, tmp_path):
    out = tmp_path / "fp16"
    proc = train("--config", str(GOT10K_RECIPE), *tiny_model_args(), *scaled(got10k, out), "--set", "amp=fp16",
                 "--set", "epochs=1", "--set", "data.pairs_per_epoch=8", "--set", "batch_size=4")
    assert "amp fp16" in proc.stderr
    ckpt = load(out / "sparsett-swin-got10k-train" / "epoch-0.pt")
    assert ckpt["scaler"]["scale"] > 0 and ckpt["step"] == 2
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())


@pytest.mark.filterwarnings("ignore:This DataLoader will create")  # the recipes' 8 workers, never started here
@pytest.mark.parametrize("recipe", [GOT10K_RECIPE, FULLDATA_RECIPE], ids=["got10k", "fulldata"])
def test_recipe_parses_and_builds_with_the_tiny_dataset(recipe, got10k, tmp_path):
    """The shipped recipe, unchanged but for its datasets (replaced by the tiny one), builds a trainer."""
    from sparsett_core.train.config import load_config
    from sparsett_core.train.engine import Trainer

    swin = make_imagenet_swin(tmp_path / "swin_tiny_patch4_window7_224.pth")
    original = load_config(recipe)
    cfg = load_config(recipe, {"data.datasets": [{"kind": "got10k", "root": str(got10k), "subset": "train"}],
                               "pretrained_backbone": str(swin), "output_dir": str(tmp_path / "out"),
                               "data.cache_dir": str(tmp_path / "cache")})
    trainer = Trainer(cfg, progress=False, tensorboard=False)
    steps = {"got10k": 9375, "fulldata": 18750}[recipe.stem]
    assert (trainer.steps, trainer.micro_batch, cfg.epochs, cfg.optim.lr_milestones) == (steps, 32, 20, (10, 15))
    assert {g["name"]: g["lr"] for g in trainer.optimizer.param_groups} == \
        {"backbone": pytest.approx(1e-5), "rest": pytest.approx(1e-4)}
    assert trainer.model.config.variant == "swin_t" and trainer.model.config.drop_path_rate == 0.2
    ratios = np.array([d.ratio for d in original.data.datasets])
    kinds = [d.kind for d in original.data.datasets]
    if recipe.stem == "fulldata":  # the official mix: TrackingNet 43 %, COCO 5, GOT-10k 13, DET 5, VID 13, LaSOT 20
        assert kinds == ["trackingnet", "coco", "got10k", "det", "vid", "lasot"]
        assert np.round(100 * ratios / ratios.sum()).tolist() == [43, 5, 13, 5, 13, 20]
    else:
        assert kinds == ["got10k"]


def test_recipes_without_their_datasets_fail_with_one_line(tmp_path):
    """Run as shipped where datasets/ is absent: an error naming the first missing root, not a traceback."""
    env = tool_env(XDG_CACHE_HOME=str(tmp_path / "cache"))
    proc = run_tool("sparsett-train", "--config", str(FULLDATA_RECIPE), "--no-progress", cwd=tmp_path, env=env)
    assert_clean_error(proc, "sparsett-train", "datasets/TrackingNet not found", "docs/training.md")
    proc = run_tool("sparsett-train", "--config", str(GOT10K_RECIPE), "--set", "optim.learning_rate=1", cwd=tmp_path,
                    env=env)
    assert_clean_error(proc, "sparsett-train", "unknown keys ['learning_rate']", status=2)
    proc = run_tool("sparsett-train", "--config", str(tmp_path / "nope.yaml"), cwd=tmp_path, env=env)
    assert_clean_error(proc, "sparsett-train", "nope.yaml not found", status=2)
