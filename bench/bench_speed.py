#!/usr/bin/env python3
"""CPU speed of the tracker per backend x precision x thread count, on real frames.

    python bench/bench_speed.py                                   # shipped model, 1 and 2 threads
    python bench/bench_speed.py --model swin --threads 1 --frames 20
    python bench/bench_speed.py --model PATH.pt --backends torch,onnxruntime --precisions fp32,bf16

Rows: ``template`` (the engine's template step on the sequence's first template crop), ``track``
(the engine's track step on a real search crop, including the read-back of the maps) and
``update`` (``Tracker.update`` over real frames of ``--sequence``, decoding excluded: crop,
network, post-processing), each as median / p90 ms, and the update rate in frames/s. The
configurations of one thread count run in one process, alternately frame by frame (the machine's
speed drifts 20-40 % over minutes: only same-run ratios hold); each thread count runs in its own
process (ONNX Runtime's thread pool is process-wide). bf16 rows run only where asked.

The header names the CPU (model, ISA: AVX2 / AVX-512 / AVX512-BF16 / AMX), torch and onnxruntime
versions. ``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2`` caps torch's kernels to AVX2 (the
header then says AVX2); ONNX Runtime has no such cap and keeps using every ISA of the CPU.
Prints a markdown table and appends it to ``--out``.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SHARED = Path(os.environ.get("SPARSETT_SHARED", REPO.parent / "shared"))


def load_model(spec: str):
    from sparsett_core import ModelConfig, SparseTT

    if spec == "swin":  # the paper's architecture (random weights: the speed of any Swin-T checkpoint)
        import torch

        torch.manual_seed(0)
        return SparseTT(ModelConfig()).eval()
    return SparseTT.from_checkpoint(spec)


def child(args: argparse.Namespace) -> list[dict]:
    """One thread count: every configuration, alternately. Returns the rows."""
    import cv2
    import torch

    from sparsett_core import InferenceOptions, Tracker
    from sparsett_core.tracker.fast import read_maps

    torch.set_num_threads(args.child)
    cv2.setNumThreads(1)
    model = load_model(args.model)
    seq = SHARED / "data" / "sequences" / args.sequence
    paths = sorted((seq / "img").glob("*.jpg"))[: args.frames + 1]
    if len(paths) < 5:
        raise SystemExit(f"bench_speed: need the frames of {seq} (../shared or SPARSETT_SHARED)")
    frames = [cv2.imread(str(p)) for p in paths]
    box = np.loadtxt(seq / "groundtruth_rect.txt", delimiter=",")[0]
    configs = []
    for backend in args.backends.split(","):
        for precision in args.precisions.split(","):
            if backend == "onnxruntime" and precision != "fp32":
                continue
            configs.append((backend, precision, InferenceOptions(precision=precision, backend=backend, pinned_memory=False)))
    trackers = [Tracker(model, options=o) for *_, o in configs]
    times = {i: {"template": [], "track": [], "update": []} for i in range(len(configs))}
    for t in trackers:
        t.init(frames[0], box)
        t.update(frames[1])  # warm-up, and real crops for the step rows
    as_input = lambda crop: torch.from_numpy(crop.transpose(2, 0, 1)[None].copy())  # noqa: E731
    z, x = as_input(trackers[0].template_crop), as_input(trackers[0].search_crop)
    feats = [t.engine.template(z) for t in trackers]
    for step in range(args.runs):  # the network steps, alternately
        for i, t in enumerate(trackers):
            t0 = time.perf_counter()
            t.engine.template(z)
            times[i]["template"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            read_maps(t.engine.track(x, feats[i]))
            times[i]["track"].append(time.perf_counter() - t0)
    for frame in frames[2:]:  # the whole update on the real sequence, alternately frame by frame
        for i, t in enumerate(trackers):
            t0 = time.perf_counter()
            t.update(frame)
            times[i]["update"].append(time.perf_counter() - t0)
    rows = []
    for i, (backend, precision, _) in enumerate(configs):
        row = {"threads": args.child, "backend": backend, "precision": precision}
        for k, v in times[i].items():
            ms = np.asarray(v[1:]) * 1e3  # the first of each is a warm-up
            row[k] = (float(np.median(ms)), float(np.percentile(ms, 90)))
        row["fps"] = 1e3 / row["update"][0]
        rows.append(row)
    return rows


def header(model_spec: str) -> str:
    import torch

    from sparsett_core.hardware import cpu_info

    try:
        import onnxruntime
        ort = f"onnxruntime {onnxruntime.__version__}"
    except ImportError:
        ort = "no onnxruntime"
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"{stamp}; {cpu_info().describe()}; torch {torch.__version__}, {ort}; model {model_spec}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="default", help="'default' (shipped), 'swin' (Swin-T, random weights) or a checkpoint")
    ap.add_argument("--threads", default="1,2", help="torch / ONNX Runtime thread counts, one process each")
    ap.add_argument("--backends", default="torch,onnxruntime")
    ap.add_argument("--precisions", default="fp32", help="fp32,bf16 (bf16: torch only)")
    ap.add_argument("--sequence", default="vot_bag", help="a sequence of ../shared/data/sequences")
    ap.add_argument("--frames", type=int, default=60, help="updates per configuration")
    ap.add_argument("--runs", type=int, default=30, help="template / track steps per configuration")
    ap.add_argument("--out", default="", help="append the table here (default bench/results_speed.md)")
    ap.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return
    rows = []
    for n in (int(v) for v in args.threads.split(",")):
        cmd = [sys.executable, __file__, "--child", str(n), "--model", args.model, "--backends", args.backends,
               "--precisions", args.precisions, "--sequence", args.sequence, "--frames", str(args.frames),
               "--runs", str(args.runs)]
        print(f"bench_speed: {n} thread(s) ...", file=sys.stderr, flush=True)
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode:
            raise SystemExit(f"bench_speed: the {n}-thread run failed:\n{out.stderr[-2000:]}")
        rows += json.loads(out.stdout.strip().splitlines()[-1])
    lines = [f"### {header(args.model)}", "",
             f"`python bench/bench_speed.py {' '.join(sys.argv[1:])}` ({args.sequence}, {args.frames} updates, "
             f"{args.runs} steps per row, alternated)", "",
             "| threads | backend | precision | template ms (median / p90) | track ms | update ms | update FPS |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['threads']} | {r['backend']} | {r['precision']} | " +
                     " | ".join(f"{r[k][0]:.1f} / {r[k][1]:.1f}" for k in ("template", "track", "update")) +
                     f" | **{r['fps']:.1f}** |")
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(args.out) if args.out else REPO / "bench" / "results_speed.md"
    with out.open("a") as f:
        f.write("\n" + text)
    print(f"appended to {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
