#!/usr/bin/env python3
"""Latency of SparseTT's template and track steps (median / p90 after warm-up), per device and precision.

    python bench/bench_core.py                       # CPU (and CUDA when present), fp32 + fast precision
    python bench/bench_core.py --runs 30 --threads 2
    python bench/bench_core.py --checkpoint ckpt.pkl --fixture ../shared/fixtures/sparsett_reference

Rows: ``template`` = ``model.template(z)``; ``track`` = ``model.track(x, feats)`` (the network part
of a tracker step); ``update`` = ``Tracker.update(frame)`` (crop + normalise + track + post-processing,
on a 640x480 frame). With ``--fixture`` (and the official-format seed-0 checkpoint built from it, or
``--checkpoint``) the fast precisions' deviation from fp32 on the fixture's network inputs is printed.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # CLI script: run from a checkout without installing

from sparsett_core import ModelConfig, SparseTT, Tracker  # noqa: E402
from sparsett_core.hardware import cpu_info  # noqa: E402

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def timed(fn, runs: int, warmup: int, sync) -> tuple[float, float, float]:
    """Median and p90 wall latency of ``fn()`` and median process CPU time, in ms.

    The CPU time (all threads) is what a step costs; on a machine shared with other jobs the wall
    time can be far above CPU time / threads.
    """
    for _ in range(warmup):
        fn()
    sync()
    ts, cs = [], []
    for _ in range(runs):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        sync()
        ts.append((time.perf_counter() - t0) * 1e3)
        cs.append((time.process_time() - c0) * 1e3)
    return statistics.median(ts), float(np.percentile(ts, 90)), statistics.median(cs)


def autocast(device: str, precision: str):
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device, dtype=DTYPES[precision])


def bench_device(model: SparseTT, device: str, precisions: list[str], runs: int, warmup: int) -> list[tuple]:
    model = model.to(device).eval()
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(1, 3, 127, 127, generator=gen).to(device)
    x = torch.randn(1, 3, 289, 289, generator=gen).to(device)
    frame = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    rows = []
    for prec in precisions:
        with autocast(device, prec):
            feats = model.template(z)
            rows.append((device, prec, "template", *timed(lambda: model.template(z), runs, warmup, sync)))
            rows.append((device, prec, "track", *timed(lambda: model.track(x, feats), runs, warmup, sync)))
        trk = Tracker(model, preset="got10k", device=device, precision=prec)
        trk.init(frame, (300, 220, 40, 40))

        def step():
            trk.set_state(319.5, 239.5, 40.0, 40.0)  # same crop every run
            trk.update(frame)

        rows.append((device, prec, "update", *timed(step, runs, warmup, sync)))
    return rows


def deviation(model: SparseTT, fixture: Path, device: str, precisions: list[str]) -> list[tuple]:
    """max |d| of score / box vs fp32 and vs the official reference, per precision."""
    ref = np.load(fixture / "reference_seed0.npz", allow_pickle=False)
    z = torch.from_numpy(ref["z_input"]).to(device)
    x = torch.from_numpy(ref["x_input"]).to(device)
    model = model.to(device)
    s32, b32 = model.track(x, model.template(z))
    rows = []
    for prec in precisions:
        with autocast(device, prec):
            s, b = model.track(x, model.template(z))
        s, b = s.float().cpu().numpy()[0], b.float().cpu().numpy()[0]
        rows.append((device, prec,
                     np.abs(s - s32.cpu().numpy()[0]).max(), np.abs(b - b32.cpu().numpy()[0]).max(),
                     np.abs(s - ref["score"][0, :, 0]).max(), np.abs(b - ref["box"][0]).max(),
                     int(s.argmax() == ref["score"][0, :, 0].argmax())))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", help="checkpoint to load (default: random weights; speed does not depend on them)")
    ap.add_argument("--fixture", type=Path, help="reference fixture dir: also print fast-precision deviation")
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    ap.add_argument("--devices", default="cpu,cuda")
    ap.add_argument("--cpu-precisions", default="fp32,bf16")
    ap.add_argument("--cuda-precisions", default="fp32,fp16,bf16")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.checkpoint:
        model = SparseTT.from_checkpoint(args.checkpoint)
    elif args.fixture:
        sys.path.insert(0, str(args.fixture))
        import reference_weights as rw

        path = Path(tempfile.mkdtemp()) / "seed0.pkl"
        rw.to_official_checkpoint(0, str(path))
        model = SparseTT.from_checkpoint(path)
    else:
        torch.manual_seed(0)
        model = SparseTT(ModelConfig()).eval()
    devices = [d for d in args.devices.split(",") if d == "cpu" or (d == "cuda" and torch.cuda.is_available())]
    cpu_name = cpu_info().describe()  # model and ISA
    print(f"# {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, torch {torch.__version__}, "
          f"{cpu_name}, {torch.get_num_threads()} threads"
          + (f", {torch.cuda.get_device_name()}" if "cuda" in devices else ", no CUDA"))
    print(f"# {args.runs} runs after {args.warmup} warm-up runs; latency in ms")
    print("| device | precision | step | median | p90 | CPU time (median) |\n|---|---|---|---|---|---|")
    for dev in devices:
        precs = (args.cpu_precisions if dev == "cpu" else args.cuda_precisions).split(",")
        for row in bench_device(model, dev, precs, args.runs, args.warmup):
            print("| {} | {} | {} | {:.1f} | {:.1f} | {:.1f} |".format(*row))
    if args.fixture:
        print("\n| device | precision | score max|d| vs fp32 | box max|d| vs fp32 (px) | score vs official | box vs official | same argmax |")
        print("|---|---|---|---|---|---|---|")
        for dev in devices:
            precs = (args.cpu_precisions if dev == "cpu" else args.cuda_precisions).split(",")
            for row in deviation(model, args.fixture, dev, precs):
                print("| {} | {} | {:.2e} | {:.2e} | {:.2e} | {:.2e} | {} |".format(*row))


if __name__ == "__main__":
    main()
