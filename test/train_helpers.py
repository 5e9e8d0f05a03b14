"""Helpers shared by the training tests: a tiny GOT-10k-layout dataset and a tiny model config."""
from __future__ import annotations

from pathlib import Path

import numpy as np

# the four development sequences, linked into GOT-10k's layout (frames renamed 00000001.jpg, ...)
SEQUENCES = ("otb_crossing", "vot_bag", "dtb70_surfing06", "otb_dudek20")

# a small SparseTT (same crop sizes and 19x19 grid as the paper model) that trains fast on CPU
TINY_MODEL = {
    "swin_embed_dim": 16, "swin_depths": [1, 1, 1, 1], "swin_num_heads": [1, 1, 2, 2],
    "backbone_channels": 64, "neck_channels": 32, "neck_heads": 2, "neck_ffn_channels": 64,
    "head_channels": 32, "head_num_convs": 1, "top_k": 8, "drop_path_rate": 0.0, "dropout": 0.0,
}


def make_got10k(sequences_dir: Path, root: Path, subset: str = "train", names: tuple[str, ...] = SEQUENCES,
                max_frames: int | None = None) -> Path:
    """Build ``root/<subset>/{list.txt, GOT-10k_Train_00000k/}`` with symlinked frames.

    Args:
        sequences_dir: folder of source sequences (``<name>/img/``, ``<name>/groundtruth_rect.txt``).
        root: the GOT-10k root to create.
        subset: "train" or "val".
        names: the source sequences, in order (GOT-10k_<Subset>_000001, ...).
        max_frames: keep only the first frames of each sequence.

    Writes GOT-10k's ``groundtruth.txt`` (``x,y,w,h`` per line, 4 decimals) and ``absence.label``.
    """
    base = root / subset
    base.mkdir(parents=True)
    seq_names = []
    for k, seq in enumerate(names, start=1):
        src = sequences_dir / seq
        frames = sorted((src / "img").iterdir())[:max_frames]
        gt = np.loadtxt(src / "groundtruth_rect.txt", delimiter=",", ndmin=2)[:max_frames]
        name = f"GOT-10k_{subset.capitalize()}_{k:06d}"
        d = base / name
        d.mkdir()
        for i, f in enumerate(frames, start=1):
            (d / f"{i:08d}.jpg").symlink_to(f.resolve())
        (d / "groundtruth.txt").write_text("".join(",".join(f"{v:.4f}" for v in row) + "\n" for row in gt))
        (d / "absence.label").write_text("0\n" * len(gt))
        seq_names.append(name)
    (base / "list.txt").write_text("\n".join(seq_names) + "\n")
    return root


def tiny_model_args(**changes) -> list[str]:
    """``--set model.<key>=<value>`` for every TINY_MODEL size (a recipe scaled down on the command line).

    Dropout and drop path keep the recipe's values unless given in `changes`.
    """
    values = {k: v for k, v in TINY_MODEL.items() if k not in ("dropout", "drop_path_rate")}
    values.update(changes)
    args = []
    for key, value in values.items():
        text = "[" + ",".join(map(str, value)) + "]" if isinstance(value, list) else str(value)
        args += ["--set", f"model.{key}={text}"]
    return args


def make_imagenet_swin(path: Path, model: dict | None = None) -> Path:
    """A Swin-T backbone file in the Microsoft ImageNet layout (``{"model": {layers.*, patch_embed.*}}``).

    Random weights, in the layout of ``swin_tiny_patch4_window7_224.pth`` (which cannot be downloaded
    here): what ``pretrained_backbone`` loads at the start of training.
    """
    import torch

    from sparsett_core.config import ModelConfig
    from sparsett_core.model.sparsett import SparseTT

    torch.manual_seed(0)
    donor = SparseTT(ModelConfig.from_dict(model or {}))
    sd = {k: v.clone() for k, v in donor.backbone.state_dict().items() if not k.startswith("norm.")}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": sd}, path)
    return path


def tiny_config(root: Path, out: Path, **overrides):
    """A TrainConfig for the tiny model on the tiny GOT-10k copy (batch 4, no workers)."""
    from sparsett_core.train.config import config_from_dict

    values = {
        "name": "tiny", "output_dir": str(out), "seed": 1234, "model": dict(TINY_MODEL),
        "pretrained_backbone": "", "epochs": 2, "batch_size": 4, "steps_per_epoch": 15, "log_every": 5,
        "sync_bn": True,
        "data": {"datasets": [{"kind": "got10k", "root": str(root), "subset": "train", "ratio": 1.0,
                               "max_gap": 100}],
                 "pairs_per_epoch": 1000, "num_workers": 0, "cache_dir": str(out / "cache")},
        "optim": {"lr": 1e-3},
        "val": {},
    }
    for key, value in overrides.items():
        node = values
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return config_from_dict(values)


def ddp_worker(rank: int, world_size: int, port: int, root: str, out: str, result_dir: str,
               overrides: dict) -> None:
    """One rank of the DDP test: join gloo, run one accumulate() and save loss + gradients.

    The model runs in float64: in float32 the random-init model's loss already moves by ~1e-4
    (relative) when the batch is merely permuted, which would hide real differences.
    """
    import os

    import torch

    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
                       "WORLD_SIZE": str(world_size), "LOCAL_RANK": str(rank)})
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")  # loopback only (CI runs in a private netns)
    torch.set_num_threads(1)
    from sparsett_core.train.engine import Trainer, build_model, init_distributed

    info = init_distributed("cpu")
    try:
        cfg = tiny_config(Path(root), Path(out), **overrides)
        torch.manual_seed(cfg.seed)  # rank 0's init (DDP broadcasts it) = the single process's
        trainer = Trainer(cfg, info, model=build_model(cfg).double(), progress=False, tensorboard=False)
        trainer.batch_sampler.set_epoch(0)
        micro = [b for _, b in zip(range(trainer.cfg.grad_accum), iter(trainer.loader))]
        stats = trainer.accumulate(micro)
        grads = {n: p.grad.detach().clone() for n, p in trainer.model.named_parameters() if p.grad is not None}
        torch.save({"stats": stats, "grads": grads, "z": torch.cat([b["z"] for b in micro])},
                   Path(result_dir) / f"rank{rank}.pt")
    finally:
        torch.distributed.destroy_process_group()
