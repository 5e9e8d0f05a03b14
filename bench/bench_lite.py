#!/usr/bin/env python3
"""CPU latency of SparseTT-Lite (the shipped default weights), part by part, before and after the
inference optimisations; prints a Markdown table and writes it to a file.

    python bench/bench_lite.py                                  # 1 thread, vot_bag frames from ../shared
    python bench/bench_lite.py --threads 2 --out /tmp/lite_2t.md

Columns: ``baseline`` = the plain modules (BatchNorm as separate layers, NCHW, ``torch.topk``);
``optimised`` = what inference runs by default: the backbone's folded channels-last copy
(``EfficientNetLite0S16.folded``) and the partition top-k (``neck.topk_softmax``). Rows:
``backbone`` (289x289 crop), ``neck``, ``head``, ``track`` (``model.track``), and ``update``:
``Tracker.update`` tracking the real sequence frame by frame (crop + normalise + track +
post-processing; decoding not included), with its frames per second.
"""
from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # CLI script: run from a checkout without installing

from sparsett_core import SparseTT, Tracker  # noqa: E402
from sparsett_core.eval.boxes import read_boxes  # noqa: E402
from sparsett_core.hardware import cpu_info  # noqa: E402
from sparsett_core.video import list_image_files  # noqa: E402

from bench_core import timed as _timed  # noqa: E402  (bench/ is the script's directory)


def timed(fn, runs: int, warmup: int) -> tuple[float, float]:
    """Median and p90 wall latency of ``fn()`` in ms (bench_core.timed, CPU: nothing to synchronise)."""
    return _timed(fn, runs, warmup, lambda: None)[:2]


def set_optimised(model: SparseTT, on: bool) -> None:
    """Switch the inference optimisations of a Lite model on or off."""
    model.backbone.fold_inference = on
    model.use_partition_topk(on)


def parts(model: SparseTT, runs: int, warmup: int) -> dict[str, tuple[float, float]]:
    gen = torch.Generator().manual_seed(0)
    z, x = torch.randn(1, 3, 127, 127, generator=gen), torch.randn(1, 3, 289, 289, generator=gen)
    with torch.inference_mode():
        feats = model.template(z)
        f_x = model.adjust_x(model.backbone(x))
        n_x = model.neck(f_x, feats)
        return {"backbone": timed(lambda: model.backbone(x), runs, warmup),
                "neck": timed(lambda: model.neck(f_x, feats), runs, warmup),
                "head": timed(lambda: model.head(n_x, with_bbox_fc=False), runs, warmup),
                "track": timed(lambda: model.track(x, feats), runs, warmup)}


def sequence_updates(model: SparseTT, seq_dir: Path | None, frames: int) -> tuple[float, float, int]:
    """Median / p90 ``Tracker.update`` latency (ms) over a real sequence (or a synthetic clip)."""
    if seq_dir is not None:
        files = list_image_files(seq_dir / "img")[:frames + 1]
        images = [cv2.imread(str(f)) for f in files]
        box = read_boxes(seq_dir / "groundtruth_rect.txt")[0]
    else:  # no shared data: a textured square moving over noise
        rng = np.random.default_rng(0)
        base = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
        images = []
        for i in range(frames + 1):
            im = base.copy()
            im[200 + i % 40:260 + i % 40, 300:360] = 255
            images.append(im)
        box = np.array([300.0, 200.0, 60.0, 60.0])
    tracker = Tracker(model)
    tracker.init(images[0], box)
    ts = []
    for im in images[1:]:
        t0 = time.perf_counter()
        tracker.update(im)
        ts.append((time.perf_counter() - t0) * 1e3)
    ts = ts[3:]  # warm-up
    return statistics.median(ts), float(np.percentile(ts, 90)), len(ts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default="default", help="Lite checkpoint (default: the shipped weights)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--sequence", type=Path, default=REPO.parent / "shared" / "data" / "sequences" / "vot_bag",
                    help="OTB-layout sequence for the update rows (img/ + groundtruth_rect.txt)")
    ap.add_argument("--frames", type=int, default=120)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results_lite_speed.md")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(1)
    model = SparseTT.from_checkpoint(args.checkpoint).eval()
    if model.config.variant != "lite":
        raise SystemExit(f"{args.checkpoint} is a {model.config.variant!r} model; this benchmark is for the lite variant")
    seq = args.sequence if (args.sequence / "img").is_dir() else None

    results = {}
    for name, on in (("baseline", False), ("optimised", True)):
        set_optimised(model, on)
        results[name] = parts(model, args.runs, args.warmup)
        results[name]["update"] = sequence_updates(model, seq, args.frames)[:2]
    set_optimised(model, True)

    cpu = cpu_info().describe()  # model and ISA
    lines = [f"# {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, torch {torch.__version__}, "
             f"{cpu}, {args.threads} torch thread(s), {platform.node()}",
             f"# model: {args.checkpoint}; update rows: {seq.name if seq else 'synthetic 640x480 clip'}, "
             f"{args.frames} frames; other rows: {args.runs} runs after {args.warmup} warm-up",
             "",
             "| step | baseline median (ms) | baseline p90 | optimised median (ms) | optimised p90 | speed-up |",
             "|---|---|---|---|---|---|"]
    for step in ("backbone", "neck", "head", "track", "update"):
        b, o = results["baseline"][step], results["optimised"][step]
        lines.append(f"| {step} | {b[0]:.1f} | {b[1]:.1f} | {o[0]:.1f} | {o[1]:.1f} | {b[0] / o[0]:.2f}x |")
    b, o = results["baseline"]["update"][0], results["optimised"]["update"][0]
    lines.append(f"| update, frames per second | {1e3 / b:.1f} | | {1e3 / o:.1f} | | |")
    text = "\n".join(lines) + "\n"
    print(text, end="")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
