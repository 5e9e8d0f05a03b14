"""Training throughput: data-loader pairs/s (decode + crop + targets) and optimiser step time.

Prints two tables. Run on an idle machine; numbers on a shared CPU vary a lot.

    python bench/bench_train_data.py                                  # shared UAV123 sequences, CPU
    python bench/bench_train_data.py --kind got10k --root datasets/GOT-10k --subset train \\
        --workers 0 4 8 16 --device cuda --model paper --batch 32 --amp bf16
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

TINY = {"swin_embed_dim": 16, "swin_depths": [1, 1, 1, 1], "swin_num_heads": [1, 1, 2, 2],
        "backbone_channels": 64, "neck_channels": 32, "neck_heads": 2, "neck_ffn_channels": 64,
        "head_channels": 32, "head_num_convs": 1, "top_k": 8}


def _config(args, batch: int, workers: int):
    from sparsett_core.train.config import config_from_dict

    return config_from_dict({
        "name": "bench", "output_dir": "/tmp/sparsett_bench", "pretrained_backbone": "",
        "model": TINY if args.model == "tiny" else {"dropout": 0.1},
        "batch_size": batch, "amp": args.amp, "epochs": 1,
        "data": {"datasets": [{"kind": args.kind, "root": args.root, "subset": args.subset}],
                 "pairs_per_epoch": 10**6, "num_workers": workers},
    })


def bench_loader(args) -> None:
    from sparsett_core.train.data import (PairDataset, Shard, ShardedBatchSampler, build_loader, build_sources,
                                          crop_params, sampler_params)
    from sparsett_core.train.sampler import PairSampler

    print(f"\ndata loader: {args.pairs} pairs, batches of {args.batch}, {args.kind} at {args.root}")
    print("| workers | pairs/s | ms/pair |")
    print("|---|---|---|")
    for workers in args.workers:
        cfg = _config(args, args.batch, workers)
        ds = PairDataset(PairSampler(build_sources(cfg.data), sampler_params(cfg.data)), crop_params(cfg.data), cfg.seed)
        steps = args.pairs // args.batch
        bs = ShardedBatchSampler(cfg.data.pairs_per_epoch, args.batch, args.batch, steps + 1, Shard())
        it = iter(build_loader(ds, bs, workers))
        next(it)  # worker start-up and first batch excluded
        t0 = time.perf_counter()
        for _ in range(steps):
            next(it)
        dt = time.perf_counter() - t0
        print(f"| {workers} | {steps * args.batch / dt:.1f} | {1000 * dt / (steps * args.batch):.1f} |")


def bench_step(args) -> None:
    from sparsett_core.train.engine import DistInfo, Trainer

    device = torch.device(args.device)
    cfg = _config(args, args.batch, 0)
    trainer = Trainer(cfg, DistInfo(device=device), progress=False, tensorboard=False)
    batch = next(iter(trainer.loader))
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    trainer.train_step([batch])  # warm-up
    times = []
    for _ in range(args.steps):
        sync()
        t0 = time.perf_counter()
        trainer.train_step([batch])
        sync()
        times.append(time.perf_counter() - t0)
    times.sort()
    print(f"\noptimiser step (forward + backward + AdamW, data excluded), model {args.model}, {device}")
    print("| batch | amp | median s/step | pairs/s |")
    print("|---|---|---|---|")
    med = times[len(times) // 2]
    print(f"| {args.batch} | {args.amp} | {med:.3f} | {args.batch / med:.1f} |")


def main() -> None:
    shared = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "train"
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kind", default="sequences", help="dataset reader (got10k, lasot, ..., sequences)")
    p.add_argument("--root", default=str(shared), help="dataset root")
    p.add_argument("--subset", default="", help="dataset subset (train, ...)")
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    p.add_argument("--pairs", type=int, default=64, help="pairs timed per worker setting")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--model", choices=("tiny", "paper"), default="tiny")
    p.add_argument("--amp", choices=("none", "bf16", "fp16"), default="none")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    bench_loader(args)
    bench_step(args)


if __name__ == "__main__":
    main()
