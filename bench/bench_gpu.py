#!/usr/bin/env python3
"""Fast-path benchmark: model steps (fp32 eager vs the fast path, N targets) and the node's end-to-end latency.

    python bench/bench_gpu.py                                  # device auto (cuda if present, else cpu)
    python bench/bench_gpu.py --threads 1 --runs 10 --skip-node
    python bench/bench_gpu.py --model lite                     # the shipped SparseTT-Lite weights
    /work/shared/tools/netns-run python bench/bench_gpu.py --node-rates 2,4,8,15,30   # with the node part

Part 1 (steps), per configuration, median and p99 wall latency in ms after warm-up:
``template`` (engine template step, batch N), ``track`` (engine track step, batch N, including the
device -> host read of the maps), ``update`` (the whole ``Tracker.update`` / ``MultiTracker.update``
on a 640x480 frame: crop, step, post-processing). Configurations: ``fp32 eager`` (reference),
``fp32 gpu_crop`` (torch crop on the device, plus CUDA graphs on CUDA: the exact fp32 path), ``fast`` (``InferenceOptions.fast(device, variant)``) and ``fast`` with N = 1, 2, 4, 8 targets (MultiTracker).

``--model swin`` (default) is SparseTT with the Swin-T backbone on random weights (the speed of any
trained Swin-T checkpoint); ``--model lite`` is the shipped SparseTT-Lite (the package default).

Part 2 (node, needs a ROS context: run inside netns-run): tracker_node (the same model) is started
as a subprocess, a 640x480 stream is published at each rate of
``--node-rates``; latency = image publish -> Detection2DArray receipt (same machine, monotonic
clock); dropped = published frames without a detection (the node keeps only the newest frame).
The first rate with drops is reported as the rate where the node stops keeping up.

Prints a markdown table and writes it to ``--out``.
"""
from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # CLI script: run from a checkout without installing

from sparsett_core import InferenceOptions, ModelConfig, MultiTracker, SparseTT, Tracker  # noqa: E402


def stats(fn: Callable[[], object], runs: int, warmup: int) -> tuple[float, float, float]:
    """Median and p99 wall latency of ``fn()`` and its median process CPU time, in ms.

    fn must end with a device -> host read or a sync. On a machine shared with other jobs the CPU
    time (all threads) is the stabler A/B measure; the wall time is what a robot sees.
    """
    for _ in range(warmup):
        fn()
    ts, cs = [], []
    for _ in range(runs):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        ts.append((time.perf_counter() - t0) * 1e3)
        cs.append((time.process_time() - c0) * 1e3)
    return statistics.median(ts), float(np.percentile(ts, 99)), statistics.median(cs)


def scene_frame(rng: np.random.Generator, size=(640, 480)) -> np.ndarray:
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    bg = 100 + 50 * np.sin(xx / 31.0) * np.cos(yy / 19.0) + rng.normal(0, 8, (h, w))
    return np.repeat(np.clip(bg, 0, 255)[:, :, None], 3, axis=2).astype(np.uint8)


def target_boxes(n: int) -> list[tuple[float, float, float, float]]:
    return [(60.0 + 70 * (i % 8), 80.0 + 40 * (i // 8) + 20 * (i % 2), 50.0, 40.0) for i in range(n)]


def bench_steps(model: SparseTT, device: str, runs: int, warmup: int, counts: list[int]) -> list[dict]:
    frame = scene_frame(np.random.default_rng(0))
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    configs = [("fp32 eager", InferenceOptions(), [1]),
               ("fp32 gpu_crop", InferenceOptions(gpu_crop=True, cuda_graphs=device == "cuda"), [1]),
               ("fast", InferenceOptions.fast(device, model.config.variant), counts)]
    rows = []
    for name, options, ns in configs:
        for n in ns:
            multi = MultiTracker(model, device=device, options=options)
            multi.init(frame, target_boxes(n))
            proto = multi._proto
            targets = [t.search_target() for t in multi.trackers]
            z, _, _ = proto.crop_inputs(frame, targets, 127, [t.avg_chans for t in multi.trackers])
            x, _, _ = proto.crop_inputs(frame, targets, 289, [t.avg_chans for t in multi.trackers])
            feats = multi._feats

            def template() -> None:
                proto.engine.template(z)
                sync()

            def track() -> None:
                score, _ = proto.engine.track(x, feats)
                score.cpu()

            tracker = None
            if n == 1:  # the single-target Tracker is what the node runs for one target
                tracker = Tracker(model, device=device, options=options)
                tracker.init(frame, target_boxes(1)[0])
            update = (lambda: tracker.update(frame)) if tracker is not None else (lambda: multi.update(frame))
            row = {"config": name, "precision": options.precision, "N": n}
            for step, fn in (("template", template), ("track", track), ("update", update)):
                row[step] = stats(fn, runs, warmup)
            rows.append(row)
            print(f"  {name:10s} N={n}: " + ", ".join(f"{k} {row[k][0]:.1f}/{row[k][1]:.1f} ms"
                                                     for k in ("template", "track", "update")), flush=True)
    return rows


# ---------------------------------------------------------------------------------------------- node

def bench_node(device: str, arch: str, rates: list[float], frames: int, fast: bool, log_dir: Path) -> list[dict]:
    """End-to-end node latency per publish rate (see the module docstring)."""
    import rclpy

    sys.path.insert(0, str(REPO / "test"))
    from node_graph import GraphClient, NodeProcess, node_command, stamp_ns

    checkpoint = "random" if arch == "swin" else "default"  # default: the shipped SparseTT-Lite
    params = {"checkpoint": checkpoint, "allow_random_weights": arch == "swin", "device": device, "warmup_iterations": 3, "fast_path": fast,
              "publish_debug_image": False, "lost_score": 0.0, "recover_score": 0.0}
    node = NodeProcess(node_command(params), log_dir / f"node_{'fast' if fast else 'fp32'}.log")
    context = rclpy.Context()
    rclpy.init(context=context)
    client = GraphClient(context)
    rows = []
    try:
        client.wait_connected(node, timeout=600)
        rng = np.random.default_rng(1)
        image = scene_frame(rng)
        ns = 1_000_000
        client.handshake(image, ns)
        mark = client.mark()
        client.publish_init(target_boxes(1)[0])
        client.wait_status(lambda s: s.state_name == "TRACKING", "TRACKING", start=mark)
        for rate in rates:
            published: dict[int, float] = {}
            start = len(client.detections)
            period = 1.0 / rate
            t_next = time.monotonic()
            for _ in range(frames):
                ns += 1_000_000
                delay = t_next - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                published[ns] = client.publish_image(image, ns)
                t_next += period
            last = ns
            try:
                client.wait_for(lambda: any(stamp_ns(m.header.stamp) == last for m, _ in client.detections[start:]),
                                "the last frame's detections", timeout=5.0)
            except AssertionError:
                pass  # the last frame may itself be dropped
            time.sleep(0.5)
            with client.cond:
                got = {stamp_ns(m.header.stamp): t for m, t in client.detections[start:]}
            lat = [(got[s] - published[s]) * 1e3 for s in published if s in got]
            rows.append({"node": "fast" if fast else "fp32", "rate": rate, "published": frames,
                         "answered": len(lat), "dropped": frames - len(lat),
                         "median": statistics.median(lat) if lat else float("nan"),
                         "p99": float(np.percentile(lat, 99)) if lat else float("nan")})
            r = rows[-1]
            print(f"  node {r['node']} {rate:g} Hz: {r['answered']}/{frames} answered, median {r['median']:.1f} ms, "
                  f"p99 {r['p99']:.1f} ms", flush=True)
    finally:
        client.close()
        node.stop()
        rclpy.try_shutdown(context=context)
    return rows


# ---------------------------------------------------------------------------------------------- main

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    ap.add_argument("--model", default="swin", choices=("swin", "lite"),
                    help="swin: SparseTT (Swin-T), random weights; lite: the shipped SparseTT-Lite weights")
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: torch's default)")
    ap.add_argument("--runs", type=int, default=0, help="timed runs per row (0: 50 on CUDA, 7 on CPU)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--targets", default="1,2,4,8", help="N values for the multi-target rows")
    ap.add_argument("--skip-node", action="store_true", help="only the model steps (no ROS context needed)")
    ap.add_argument("--node-rates", default="", help="publish rates in Hz (default: CPU 2,4,8,15,30; CUDA 30,60,120,240)")
    ap.add_argument("--node-frames", type=int, default=20, help="frames published per rate")
    ap.add_argument("--out", default="", help="markdown output (default bench/results_gpu_<device>[_lite].md)")
    args = ap.parse_args()

    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    if args.threads:
        torch.set_num_threads(args.threads)
    runs = args.runs or (50 if device == "cuda" else 7)
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    what = torch.cuda.get_device_name() if device == "cuda" else f"{platform.processor() or platform.machine()} CPU"
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    header = (f"{stamp}, {what}, model {args.model}, torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
              f"{runs} runs after {args.warmup} warm-up")
    print(header, flush=True)

    torch.manual_seed(0)
    model = (SparseTT(ModelConfig()) if args.model == "swin" else SparseTT.from_checkpoint("default")).to(device).eval()
    rows = bench_steps(model, device, runs, args.warmup, [int(v) for v in args.targets.split(",")])
    lines = [f"# bench_gpu: {header}", "",
             "| config | precision | N | template median / p99 (CPU) | track median / p99 (CPU) | update median / p99 (CPU) |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['config']} | {r['precision']} | {r['N']} | " +
                     " | ".join(f"{r[k][0]:.1f} / {r[k][1]:.1f} ({r[k][2]:.0f})" for k in ("template", "track", "update")) + " |")
    lines.append("")
    lines.append("ms wall (median process CPU time in brackets); track = batched network step for N targets incl. reading the maps; update = whole tracker "
                 "step on a 640x480 frame (Tracker for N = 1, MultiTracker otherwise).")

    if not args.skip_node:
        rates = [float(v) for v in (args.node_rates or ("30,60,120,240" if device == "cuda" else "2,4,8,15,30")).split(",")]
        log_dir = Path(tempfile.mkdtemp(prefix="bench_gpu_node_"))  # the node subprocesses' logs
        print(f"node logs in {log_dir}", flush=True)
        node_rows = []
        for fast in (False, True):
            node_rows += bench_node(device, args.model, rates, args.node_frames, fast, log_dir)
        lines += ["", "| node | publish rate (Hz) | answered / published | dropped | latency median (ms) | p99 (ms) |",
                  "|---|---|---|---|---|---|"]
        for r in node_rows:
            lines.append(f"| {r['node']} | {r['rate']:g} | {r['answered']} / {r['published']} | {r['dropped']} | "
                         f"{r['median']:.1f} | {r['p99']:.1f} |")
        for name in ("fp32", "fast"):
            drops = [r["rate"] for r in node_rows if r["node"] == name and r["dropped"] > 0]
            lines.append(f"\nnode {name}: first rate with dropped frames: {f'{drops[0]:g} Hz' if drops else 'none up to the highest rate'}")
        lines.append("\nlatency = image publish -> Detection2DArray receipt (640x480 bgr8, node keeps the newest frame).")

    text = "\n".join(lines) + "\n"
    suffix = "_lite" if args.model == "lite" else ""
    out = Path(args.out) if args.out else REPO / "bench" / f"results_gpu_{device}{suffix}.md"
    out.write_text(text)
    print(text)
    print(f"written to {out}")


if __name__ == "__main__":
    main()
