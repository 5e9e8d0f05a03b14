#!/usr/bin/env python3
"""Fast-path benchmark: model steps (fp32 eager vs the fast path, N targets) and the node's end-to-end latency.

    python bench/bench_gpu.py                                  # device auto (cuda if present, else cpu)
    python bench/bench_gpu.py --threads 1 --runs 10 --skip-node
    python bench/bench_gpu.py --model lite                     # the shipped SparseTT-Lite weights
    /work/shared/tools/netns-run python bench/bench_gpu.py --node-rates 2,4,8,15,30   # with the node part

Part 1 (steps), per configuration, median and p99 wall latency in ms after warm-up:
``template`` (engine template step, batch N), ``track`` (engine track step, batch N, including the
device -> host read of the packed maps), ``update`` (the whole ``Tracker.update`` /
``MultiTracker.update`` on a 640x480 frame: crop, step, post-processing). Configurations
(``step_configs``): on CUDA a true fp32 row (TF32 off) and a row labelled TF32, fp32 with CUDA
graphs and the device crop, the fast path (fp16, graphs, device crop) for N = 1, 2, 4, 8 targets,
and ONNX Runtime's CUDA provider where installed; on the CPU fp32, fp32 with the torch crop, the
fast path chosen at start-up (``backend="auto"``: rule + measurement) and ONNX Runtime. The
"runs as" column says what ran (backend, precision, graphs); a capture that fell back to eager
says why. On the CPU the process CPU time is given in brackets; on CUDA it is not (the host spins
in the synchronisation). Every row is written to ``--out`` as soon as it is measured.

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
from sparsett_core.tracker.fast import read_maps  # noqa: E402


def stats(fn: Callable[[], object], runs: int, warmup: int, cpu_time: bool) -> tuple[float, float, float | None]:
    """Median and p99 wall latency of ``fn()`` in ms, and (CPU only) its median process CPU time.

    fn must end with a device -> host read or a sync. On CUDA the process CPU time is no measure
    (the host spins in the synchronisation), so it is not reported there.
    """
    for _ in range(warmup):
        fn()
    ts, cs = [], []
    for _ in range(runs):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        ts.append((time.perf_counter() - t0) * 1e3)
        cs.append((time.process_time() - c0) * 1e3)
    return statistics.median(ts), float(np.percentile(ts, 99)), statistics.median(cs) if cpu_time else None


def scene_frame(rng: np.random.Generator, size=(640, 480)) -> np.ndarray:
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    bg = 100 + 50 * np.sin(xx / 31.0) * np.cos(yy / 19.0) + rng.normal(0, 8, (h, w))
    return np.repeat(np.clip(bg, 0, 255)[:, :, None], 3, axis=2).astype(np.uint8)


def target_boxes(n: int) -> list[tuple[float, float, float, float]]:
    return [(60.0 + 70 * (i % 8), 80.0 + 40 * (i // 8) + 20 * (i % 2), 50.0, 40.0) for i in range(n)]


def step_configs(model: SparseTT, device: str, counts: list[int]) -> list[tuple[str, InferenceOptions, bool, list[int]]]:
    """(label, options, TF32, N values) of the step rows. CUDA: a true fp32 row (TF32 off) and a TF32
    row, fp32 with graphs + device crop, the fast path (fp16), ONNX Runtime (CUDA provider) where
    installed. CPU: fp32, fp32 with the torch crop, the fast path resolved by rule + measurement
    (``backend="auto"``) for N = 1, 2, 4, 8, and ONNX Runtime."""
    from sparsett_core.tracker.ort_engine import ort_unavailable_reason

    ort_ok = ort_unavailable_reason() is None
    if device == "cuda":
        configs = [("fp32 eager", InferenceOptions(), False, [1]),
                   ("fp32 eager, TF32", InferenceOptions(), True, [1]),
                   ("fp32 graphs + gpu_crop", InferenceOptions(gpu_crop=True, cuda_graphs=True), False, [1]),
                   ("fast (fp16, graphs, gpu_crop)", InferenceOptions.fast("cuda", model.config.variant), False, counts)]
        if ort_ok:
            configs.append(("onnxruntime (CUDA provider), TF32 off", InferenceOptions(backend="onnxruntime"), False, [1]))
        return configs
    configs = [("fp32 eager", InferenceOptions(), False, [1]),
               ("fp32 gpu_crop", InferenceOptions(gpu_crop=True), False, [1]),
               ("fast (auto)", InferenceOptions(backend="auto"), False, counts)]
    if ort_ok:
        configs.append(("onnxruntime", InferenceOptions(backend="onnxruntime"), False, [1]))
    return configs


def set_tf32(on: bool) -> None:
    torch.backends.cuda.matmul.allow_tf32 = on
    torch.backends.cudnn.allow_tf32 = on


def bench_steps(model: SparseTT, device: str, runs: int, warmup: int, counts: list[int],
                write_row: Callable[[dict], None]) -> list[dict]:
    frame = scene_frame(np.random.default_rng(0))
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    c = model.config
    rows = []
    for name, options, tf32, ns in step_configs(model, device, counts):
        if device == "cuda":
            set_tf32(tf32)
        for n in ns:
            try:
                multi = MultiTracker(model, device=device, options=options)
            except RuntimeError as e:  # e.g. ONNX Runtime without the CUDA provider: say so, keep going
                print(f"  {name}: skipped ({e})", flush=True)
                write_row({"config": name, "skipped": str(e)})
                continue
            multi.init(frame, target_boxes(n))
            proto = multi._proto
            targets = [t.search_target() for t in multi.trackers]
            z, _, _ = proto.crop_inputs(frame, targets, c.z_size, [t.avg_chans for t in multi.trackers])
            x, _, _ = proto.crop_inputs(frame, targets, c.x_size, [t.avg_chans for t in multi.trackers])
            feats = multi._feats

            def template() -> None:
                proto.engine.template(z)
                sync()

            def track() -> None:
                read_maps(proto.engine.track(x, feats))

            tracker = None
            if n == 1:  # the single-target Tracker is what the node runs for one target
                tracker = Tracker(model, device=device, options=proto.options)
                tracker.init(frame, target_boxes(1)[0])
            update = (lambda: tracker.update(frame)) if tracker is not None else (lambda: multi.update(frame))
            o = proto.options
            label = f"{o.backend} {o.precision}" + (", graphs" if proto.engine.graphs else "")
            row = {"config": name, "resolved": label, "N": n}
            for step, fn in (("template", template), ("track", track), ("update", update)):
                row[step] = stats(fn, runs, warmup, cpu_time=device != "cuda")
            if proto.engine.fallback_reason:
                row["note"] = proto.engine.fallback_reason
            rows.append(row)
            write_row(row)
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

    from sparsett_core.hardware import cpu_info

    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    if args.threads:
        torch.set_num_threads(args.threads)
    runs = args.runs or (50 if device == "cuda" else 7)
    what = f"{torch.cuda.get_device_name()} (host: {cpu_info().describe()})" if device == "cuda" else cpu_info().describe()
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    header = (f"{stamp}, {what}, model {args.model}, torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
              f"{runs} runs after {args.warmup} warm-up")
    print(header, flush=True)
    suffix = "_lite" if args.model == "lite" else ""
    out = Path(args.out) if args.out else REPO / "bench" / f"results_gpu_{device}{suffix}.md"
    cpu_col = device != "cuda"
    unit = "ms wall (median process CPU time in brackets)" if cpu_col else "ms wall (CUDA: synchronised)"
    out.write_text("\n".join([f"# bench_gpu: {header}", "",
                               "| config | runs as | N | template median / p99 | track median / p99 | update median / p99 |",
                               "|---|---|---|---|---|---|"]) + "\n")

    def write_row(r: dict) -> None:  # each row as soon as it is measured: a crash keeps the rows before it
        def cell(v):
            return f"{v[0]:.1f} / {v[1]:.1f}" + (f" ({v[2]:.0f})" if v[2] is not None else "")
        with out.open("a") as f:
            if "skipped" in r:
                f.write(f"| {r['config']} | skipped: {r['skipped']} | | | | |\n")
            else:
                f.write(f"| {r['config']} | {r['resolved']} | {r['N']} | " +
                        " | ".join(cell(r[k]) for k in ("template", "track", "update")) + " |" +
                        (f" {r['note']}" if r.get("note") else "") + "\n")

    torch.manual_seed(0)
    model = (SparseTT(ModelConfig()) if args.model == "swin" else SparseTT.from_checkpoint("default")).to(device).eval()
    bench_steps(model, device, runs, args.warmup, [int(v) for v in args.targets.split(",")], write_row)
    with out.open("a") as f:
        f.write(f"\n{unit}; track = batched network step for N targets incl. reading the maps; update = whole "
                "tracker step on a 640x480 frame (Tracker for N = 1, MultiTracker otherwise).\n")

    if not args.skip_node:
        rates = [float(v) for v in (args.node_rates or ("30,60,120,240" if device == "cuda" else "2,4,8,15,30")).split(",")]
        log_dir = Path(tempfile.mkdtemp(prefix="bench_gpu_node_"))  # the node subprocesses' logs
        print(f"node logs in {log_dir}", flush=True)
        node_rows = []
        for fast in (False, True):
            node_rows += bench_node(device, args.model, rates, args.node_frames, fast, log_dir)
        lines = ["", "| node | publish rate (Hz) | answered / published | dropped | latency median (ms) | p99 (ms) |",
                 "|---|---|---|---|---|---|"]
        for r in node_rows:
            lines.append(f"| {r['node']} | {r['rate']:g} | {r['answered']} / {r['published']} | {r['dropped']} | "
                         f"{r['median']:.1f} | {r['p99']:.1f} |")
        for name in ("fp32", "fast"):
            drops = [r["rate"] for r in node_rows if r["node"] == name and r["dropped"] > 0]
            lines.append(f"\nnode {name}: first rate with dropped frames: {f'{drops[0]:g} Hz' if drops else 'none up to the highest rate'}")
        lines.append("\nlatency = image publish -> Detection2DArray receipt (640x480 bgr8, node keeps the newest frame).")
        with out.open("a") as f:
            f.write("\n".join(lines) + "\n")
    print(out.read_text())
    print(f"written to {out}")


if __name__ == "__main__":
    main()
