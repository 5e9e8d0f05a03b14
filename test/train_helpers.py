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


def make_got10k(sequences_dir: Path, root: Path, subset: str = "train") -> Path:
    """Build ``root/<subset>/{list.txt, GOT-10k_Train_00000k/}`` with symlinked frames.

    Writes GOT-10k's ``groundtruth.txt`` (``x,y,w,h`` per line, 4 decimals) and ``absence.label``.
    """
    base = root / subset
    base.mkdir(parents=True)
    names = []
    for k, seq in enumerate(SEQUENCES, start=1):
        src = sequences_dir / seq
        frames = sorted((src / "img").iterdir())
        gt = np.loadtxt(src / "groundtruth_rect.txt", delimiter=",", ndmin=2)
        name = f"GOT-10k_{subset.capitalize()}_{k:06d}"
        d = base / name
        d.mkdir()
        for i, f in enumerate(frames, start=1):
            (d / f"{i:08d}.jpg").symlink_to(f.resolve())
        (d / "groundtruth.txt").write_text("".join(",".join(f"{v:.4f}" for v in row) + "\n" for row in gt))
        (d / "absence.label").write_text("0\n" * len(gt))
        names.append(name)
    (base / "list.txt").write_text("\n".join(names) + "\n")
    return root


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
