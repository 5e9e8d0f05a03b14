#!/usr/bin/env python3
"""Where SparseTT-Lite v2's time goes: the track step of architecture variants, alternately.

    python bench/bench_lite_arch.py                       # the variants below, torch and ONNX Runtime, 1 thread
    python bench/bench_lite_arch.py --runs 40 --threads 1

Each variant is ``lite_v2_config`` with some sizes changed (random weights: the speed of any
trained model of that shape). All variants run the track step on the same random crop, one after
the other, round after round (the machine's speed drifts: only same-run ratios hold); the table
gives the median ms per backend and the ratio to the shipped architecture. The header names the CPU.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sparsett_core import InferenceOptions, SparseTT  # noqa: E402
from sparsett_core.hardware import cpu_info  # noqa: E402
from sparsett_core.model.lite import lite_v2_config  # noqa: E402
from sparsett_core.tracker import ort_engine  # noqa: E402
from sparsett_core.tracker.fast import make_engine, read_maps  # noqa: E402

VARIANTS = {
    "shipped (neck 96, head 128 x1, 1 enc / 2 dec)": {},
    "neck 64": {"neck_channels": 64, "neck_ffn_channels": 256},
    "neck 128": {"neck_channels": 128, "neck_ffn_channels": 512},
    "head 96": {"head_channels": 96},
    "head 192": {"head_channels": 192},
    "head 128 x2 bottlenecks": {"head_num_convs": 2},
    "1 decoder layer": {"num_decoder_layers": 1},
    "2 encoder layers": {"num_encoder_layers": 2},
    "search 223 (14x14)": {"x_size": 223, "x_feat": 14},
    "dense decoder (no top-k)": {"top_k": None},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--backends", default="torch,onnxruntime")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cache = Path(tempfile.mkdtemp(prefix="lite_arch_onnx_"))
    ort_engine.default_cache_dir = lambda: cache  # keep these throwaway exports out of the user's cache
    rows = []
    for name, changes in VARIANTS.items():
        torch.manual_seed(0)
        model = SparseTT(lite_v2_config(dropout=0.0, **changes)).eval()
        c = model.config
        gen = torch.Generator().manual_seed(0)
        z = torch.rand(1, 3, c.z_size, c.z_size, generator=gen) * 255
        x = torch.rand(1, 3, c.x_size, c.x_size, generator=gen) * 255
        for backend in args.backends.split(","):
            engine = make_engine(model, torch.device("cpu"), InferenceOptions(backend=backend, pinned_memory=False))
            rows.append({"variant": name, "backend": backend, "engine": engine, "feats": engine.template(z), "x": x,
                         "params": sum(p.numel() for p in model.parameters()) / 1e6,
                         "times": []})
    for _ in range(args.runs + 3):
        for r in rows:
            t0 = time.perf_counter()
            read_maps(r["engine"].track(r["x"], r["feats"]))
            r["times"].append((time.perf_counter() - t0) * 1e3)
    print(f"### {time.strftime('%Y-%m-%d')}; {cpu_info().describe()}; {args.threads} thread(s); torch {torch.__version__}")
    print(f"\ntrack step (network only, incl. reading the maps), median of {args.runs} alternated runs\n")
    print("| variant | params (M) | " + " | ".join(f"{b} ms (x shipped)" for b in args.backends.split(",")) + " |")
    print("|---|---|" + "---|" * len(args.backends.split(",")))
    base = {r["backend"]: statistics.median(r["times"][3:]) for r in rows if r["variant"] == next(iter(VARIANTS))}
    for name in VARIANTS:
        cells = []
        for r in (r for r in rows if r["variant"] == name):
            med = statistics.median(r["times"][3:])
            cells.append(f"{med:.1f} ({med / base[r['backend']]:.2f})")
        params = next(r["params"] for r in rows if r["variant"] == name)
        print(f"| {name} | {params:.2f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
