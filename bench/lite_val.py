#!/usr/bin/env python3
"""SparseTT-Lite model selection: success AUC on the held-out validation split and the dev sequences.

    python bench/lite_val.py --model v2=work_dir/train/sparsett-lite-v2/epoch-19.pt --baselines
    python bench/lite_val.py --model default --split dev --preset lite

The validation split is made of whole videos that the Lite v2 recipe leaves out of training
(``config/train/lite_v2.yaml``, ``exclude``): the whole UAVDT benchmark (never trained on), and
whole videos of OTB, DTB70 and UAV123@10fps. ``dev`` = the four development sequences of
../shared/data/sequences. Scoring is ``sparsett-eval``'s (success AUC, all frames, init on
frame 1). ``--baselines`` adds NanoTrack v2 (cv2.TrackerNano on ../shared/weights/nanotrack/onnx_v2)
and OpenCV CSRT; their results are cached in ``work_dir/lite_val/`` (they are deterministic).
Prints per-sequence AUC, the mean per benchmark family and the overall means.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sparsett_core import SparseTT, Tracker  # noqa: E402
from sparsett_core.eval.datasets import load_otb2015  # noqa: E402
from sparsett_core.eval.metrics import score_sequence  # noqa: E402
from sparsett_core.eval.runner import track_sequence  # noqa: E402

SHARED = REPO.parent / "shared"
VAL = ("uavdt_S0601", "uavdt_S1001", "uavdt_S1606", "dtb70_Gull1", "otb_Skating2", "otb_KiteSurf",
       "uav123_10fps_bike1", "uav123_10fps_wakeboard3")
CACHE = REPO / "work_dir" / "lite_val"


def family(name: str) -> str:
    return "dev" if "/" in name else name.split("_")[0].replace("uav123", "uav123")


def sequences(split: str):
    out = []
    if split in ("val", "both"):
        out += [s for s in load_otb2015(SHARED / "data" / "train_extra") if s.name in VAL]
    if split in ("dev", "both"):
        for s in load_otb2015(SHARED / "data" / "sequences"):
            out.append(type(s)(name=f"dev/{s.name}", frames=s.frames, groundtruth=s.groundtruth))
    return out


def auc(tracker, seq) -> float:
    boxes, _ = track_sequence(tracker, seq)
    return float(score_sequence(boxes, seq.groundtruth).success_curve.mean())


def restarts(seq, starts: int) -> list:
    """The sequence, and (starts > 1) its tails from frames N/s, 2N/s, ... (temporal robustness:
    one early failure no longer decides a whole sequence's score)."""
    n = len(seq.frames)
    out = []
    for i in range(starts):
        a = i * n // starts
        while a < n and not (np.isfinite(seq.groundtruth[a]).all() and (seq.groundtruth[a, 2:] > 0).all()):
            a += 1
        if n - a >= 10:
            out.append(type(seq)(name=seq.name, frames=seq.frames[a:], groundtruth=seq.groundtruth[a:]))
    return out


def start_aucs(make, seq, starts: int) -> list[float]:
    """AUC of each run; the first one starts on frame 1 (the benchmark protocol)."""
    return [auc(make(), part) for part in restarts(seq, starts)]


def baseline(kind: str, seqs, starts: int = 1) -> dict[str, float]:
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"{kind}{'' if starts == 1 else f'_s{starts}'}.json"
    cached = json.loads(path.read_text()) if path.is_file() else {}
    from sparsett_core.baselines import CSRTTracker, NanoTrackFiles, NanoTrackTracker

    for seq in seqs:
        if seq.name not in cached:
            d = SHARED / "weights" / "nanotrack" / "onnx_v2"
            files = NanoTrackFiles(d / "nanotrack_backbone_sim.onnx", d / "nanotrack_head_sim.onnx")
            make = (lambda: NanoTrackTracker(files)) if kind == "nanotrack" else CSRTTracker
            cached[seq.name] = start_aucs(make, seq, starts)
    path.write_text(json.dumps(cached, indent=1))
    return {s.name: np.atleast_1d(cached[s.name]).tolist() for s in seqs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", action="append", default=[], help="NAME=CHECKPOINT (repeatable; 'default' = shipped)")
    ap.add_argument("--preset", default=None, help="tracker preset (default: the model's own)")
    ap.add_argument("--set", action="append", default=[], help="preset override KEY=VALUE (repeatable)")
    ap.add_argument("--split", default="both", choices=("val", "dev", "both"))
    ap.add_argument("--baselines", action="store_true", help="add NanoTrack v2 and CSRT (cached)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default="", help="also write the table as JSON here")
    ap.add_argument("--starts", type=int, default=1,
                    help="runs per sequence from frames 0, N/s, 2N/s, ... (mean AUC; 1 = the benchmark protocol)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    seqs = sequences(args.split)
    columns: dict[str, dict[str, float]] = {}
    if args.baselines:
        columns["NanoTrack v2"] = baseline("nanotrack", seqs, args.starts)
        columns["CSRT"] = baseline("csrt", seqs, args.starts)
    overrides = {k: float(v) for k, v in (s.split("=", 1) for s in args.set)}
    for spec in args.model:
        name, _, path = spec.partition("=") if "=" in spec else (spec, "", spec)
        model = SparseTT.from_checkpoint(path or name)
        t0 = time.perf_counter()
        col = {}
        def make():
            tracker = Tracker(model, preset=args.preset)
            if overrides:
                tracker.preset = tracker.preset.replace(**overrides)
            return tracker

        for seq in seqs:
            col[seq.name] = start_aucs(make, seq, args.starts)
        columns[name] = col
        print(f"{name}: {len(seqs)} sequences in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(columns, indent=1))
    firsts = {n: {k: v[0] for k, v in col.items()} for n, col in columns.items()}
    columns = {n: {k: float(np.mean(v)) for k, v in col.items()} for n, col in columns.items()}
    names = list(columns)
    print("| sequence | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for seq in seqs:
        print(f"| {seq.name} | " + " | ".join(f"{columns[n][seq.name]:.3f}" for n in names) + " |")
    fams = sorted({family(s.name) for s in seqs})
    for fam in fams:
        members = [s.name for s in seqs if family(s.name) == fam]
        print(f"| **{fam}** ({len(members)}) | " + " | ".join(f"{statistics.mean(columns[n][m] for m in members):.3f}"
                                                           for n in names) + " |")
    for split in ("val", "dev"):
        members = [s.name for s in seqs if (family(s.name) == "dev") == (split == "dev")]
        if members:
            print(f"| **mean {split}** ({len(members)}) | " + " | ".join(
                f"**{statistics.mean(columns[n][m] for m in members):.3f}**" for n in names) + " |")
            if args.starts > 1:
                print(f"| mean {split}, init on frame 1 only | " + " | ".join(
                    f"{statistics.mean(firsts[n][m] for m in members):.3f}" for n in names) + " |")


if __name__ == "__main__":
    main()
