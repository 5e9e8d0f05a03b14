"""sparsett-eval: run a tracker on a benchmark, and score result sets.

    sparsett-eval run --dataset otb2015 --root data/OTB2015 --checkpoint model.pkl [--preset otb2015]
    sparsett-eval run --dataset got10k --root data/GOT-10k --split test --tracker csrt --shard 1/4
    sparsett-eval run --dataset otb2015 --root data/OTB2015 --tracker nanotrack \\
        --nanotrack-backbone nanotrack_backbone_sim.onnx --nanotrack-head nanotrack_head_sim.onnx
    sparsett-eval score --dataset otb2015 --root data/OTB2015 --results results/otb2015/sparsett csrt=results/otb2015/csrt --plot plots/
    sparsett-eval score --groundtruth GT.txt --results RES.txt --json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from sparsett_core.cli import one_line
from sparsett_core.eval.boxes import BoxFileError, read_boxes
from sparsett_core.eval.datasets import DATASETS, PROTOCOL, DatasetError, Sequence, load_dataset
from sparsett_core.eval.metrics import PROTOCOLS, score_sequence
from sparsett_core.eval.trackers import BACKENDS, TRACKERS

PROG = "sparsett-eval"
_TITLES = {"otb2015": "OTB2015", "uav123": "UAV123", "got10k": "GOT-10k", "lasot": "LaSOT",
           "trackingnet": "TrackingNet"}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Benchmark evaluation of SparseTT and baselines.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="track every sequence of a benchmark and write results in its format")
    run.add_argument("--dataset", required=True, choices=DATASETS)
    run.add_argument("--root", required=True, type=Path, help="dataset root in its published layout")
    run.add_argument("--split", default=None,
                     help="got10k: val|test (default test); lasot: test|all; trackingnet: TEST|TRAIN_<k>; "
                          "uav123: UAV123|UAV20L")
    run.add_argument("--tracker", default="sparsett", choices=TRACKERS)
    run.add_argument("--checkpoint", default=None,
                     help="SparseTT weights: official .pkl, Swin-T .pth, our checkpoint, or 'default'")
    run.add_argument("--nanotrack-backbone", default=None, metavar="PATH",
                     help="--tracker nanotrack: NanoTrack v2 backbone ONNX (nanotrack_backbone_sim.onnx)")
    run.add_argument("--nanotrack-head", default=None, metavar="PATH",
                     help="--tracker nanotrack: NanoTrack v2 neck/head ONNX (nanotrack_head_sim.onnx)")
    run.add_argument("--preset", default=None,
                     help="SparseTT hyper-parameter preset (default: the dataset's own, e.g. otb2015, for the "
                     "paper model; the model's own for others, e.g. lite for the shipped weights)")
    run.add_argument("--device", default="cpu", help="torch device for SparseTT (cpu, cuda, cuda:1)")
    run.add_argument("--backend", default="torch", choices=BACKENDS,
                     help="SparseTT inference: torch, onnxruntime (optional package), or auto (the fastest here, "
                          "measured once at start; the choice is printed)")
    run.add_argument("--results", type=Path, default=None,
                     help="output directory for this tracker's results (default results/<dataset>/<name>)")
    run.add_argument("--name", default=None, help="result-set name (default: the tracker name)")
    run.add_argument("--shard", default="1/1", help="run part i of n (i/n, 1-based); shards merge in one directory")
    run.add_argument("--sequences", nargs="+", default=None, metavar="SEQ", help="only these sequences")
    run.add_argument("--no-resume", action="store_true", help="re-run sequences that already have results")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")

    score = sub.add_parser("score", help="score result sets (success AUC, precision, normalised precision, AO, SR)")
    score.add_argument("--dataset", choices=DATASETS, help="benchmark to score against (with --root)")
    score.add_argument("--root", type=Path, help="dataset root")
    score.add_argument("--split", default=None, help="dataset split (as for run)")
    score.add_argument("--results", nargs="+", required=True, metavar="[NAME=]PATH",
                       help="result directories (name defaults to the directory name); with --groundtruth: one file")
    score.add_argument("--groundtruth", type=Path, help="score one sequence: its ground-truth file")
    score.add_argument("--protocol", default=None, choices=PROTOCOLS,
                       help="absent-target handling (default: the dataset's; otb for --groundtruth)")
    score.add_argument("--sequences", nargs="+", default=None, metavar="SEQ", help="only these sequences")
    score.add_argument("--json", action="store_true", help="print JSON instead of tables")
    score.add_argument("--out", type=Path, default=None, help="also write the JSON report to this file")
    score.add_argument("--per-sequence", action="store_true", help="print per-sequence tables too")
    score.add_argument("--plot", type=Path, default=None, metavar="DIR",
                       help="write success/precision plots (PNG) comparing the result sets")
    score.add_argument("--title", default=None, help="dataset name in the plot titles (default: the benchmark's)")
    return parser


def _select(seqs: list[Sequence], names: list[str] | None) -> list[Sequence]:
    if not names:
        return seqs
    known = {s.name for s in seqs}
    missing = [n for n in names if n not in known]
    if missing:
        raise DatasetError(f"unknown sequence(s) {', '.join(missing)}; the dataset has e.g. "
                           f"{', '.join(sorted(known)[:5])}")
    return [s for s in seqs if s.name in set(names)]


def _cmd_run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from sparsett_core.eval.runner import ResultLayout, Shard, run_dataset
    from sparsett_core.eval.trackers import build_tracker, check_inputs

    shard = Shard.parse(args.shard)
    nanotrack = check_inputs(args.tracker, args.checkpoint, args.nanotrack_backbone,
                             args.nanotrack_head)  # fail before reading the dataset
    all_seqs = load_dataset(args.dataset, args.root, args.split)
    seqs = _select(all_seqs, args.sequences)
    name = args.name or args.tracker
    results_dir = args.results or Path("results") / args.dataset / name
    layout = ResultLayout(args.dataset, results_dir)
    announced = []

    def make_tracker():
        tracker = build_tracker(args.tracker, checkpoint=args.checkpoint, preset=args.preset, benchmark=args.dataset,
                                device=args.device, nanotrack=nanotrack, backend=args.backend,
                                options=announced[0] if announced else None)
        if args.tracker == "sparsett" and not announced:  # the preset and backend actually used, once
            announced.append(tracker.options)  # later sequences reuse the choice (no new measurement)
            choice = f": {tracker.selection.reason}" if tracker.selection else ""
            tqdm.write(f"{PROG}: sparsett preset {tracker.preset.name}", file=sys.stderr)
            tqdm.write(f"{PROG}: backend {tracker.options.backend} {tracker.options.precision}{choice}", file=sys.stderr)
        return tracker

    mine = shard.select(seqs)
    what = args.tracker
    print(f"{PROG}: {what} on {args.dataset}: {len(mine)} of {len(seqs)} sequences (shard {shard.index}/{shard.count})"
          f" -> {results_dir}", file=sys.stderr)
    runs = run_dataset(make_tracker, seqs, layout, shard=shard, resume=not args.no_resume,
                       progress=not args.no_progress, log=lambda m: tqdm.write(m, file=sys.stderr))
    ran = [r for r in runs if not r.skipped]
    frames = sum(r.num_frames for r in ran)
    seconds = sum(r.seconds for r in ran)
    fps = f", {frames / seconds:.1f} FPS overall" if seconds > 0 else ""
    print(f"{PROG}: tracked {len(ran)} sequences ({frames} frames{fps}), skipped {len(runs) - len(ran)} finished",
          file=sys.stderr)
    done = sum(layout.is_done(s.name) for s in all_seqs)
    archive = layout.package(all_seqs)  # only a complete dataset is packed, whatever --sequences selected
    if archive is not None:
        print(f"{PROG}: submission archive {archive}", file=sys.stderr)
    elif layout.zip_path is not None:
        print(f"{PROG}: {done}/{len(all_seqs)} sequences done; the submission zip is written when all are",
              file=sys.stderr)
    return 0


def _parse_results(specs: list[str]) -> list[tuple[str, Path]]:
    from sparsett_core.eval.report import default_name

    out = []
    for spec in specs:
        name, sep, path = spec.partition("=")
        if sep and name and not Path(spec).exists():
            out.append((name, Path(path)))
        else:
            out.append((default_name(spec), Path(spec)))
    names = [n for n, _ in out]
    if len(set(names)) != len(names):
        raise ValueError(f"result sets need distinct names, got {names}: use NAME=DIR")
    return out


def _dump(report: dict, args: argparse.Namespace) -> None:
    text = json.dumps(report, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    if args.json:
        print(text)


def _cmd_score_one(args: argparse.Namespace) -> int:
    from sparsett_core.eval.report import sequence_json

    if len(args.results) != 1:
        raise ValueError("with --groundtruth give exactly one --results file")
    gt = read_boxes(args.groundtruth, allow_nan=True)
    res = read_boxes(args.results[0], allow_nan=False, expected_rows=gt.shape[0])
    score = score_sequence(res, gt, protocol=args.protocol or "otb")
    report = sequence_json(score)
    report.pop("fps")
    _dump(report, args)
    if not args.json:
        for key, value in report.items():
            print(f"{key:15s} {value if value is not None else '-'}")
    return 0


def _cmd_score(args: argparse.Namespace) -> int:
    if args.groundtruth is not None:
        return _cmd_score_one(args)
    if args.dataset is None or args.root is None:
        raise ValueError("give --dataset and --root (score a benchmark) or --groundtruth (score one sequence)")
    from sparsett_core.eval.report import format_ranking, format_sequences, score_result_set, to_json
    from sparsett_core.eval.runner import ResultLayout

    seqs = _select(load_dataset(args.dataset, args.root, args.split), args.sequences)
    protocol = args.protocol or PROTOCOL[args.dataset]
    sets = [score_result_set(name, seqs, ResultLayout(args.dataset, path), protocol)
            for name, path in _parse_results(args.results)]
    _dump(to_json(args.dataset, sets), args)
    if not args.json:
        print(format_ranking(sets, rank_by="ao" if args.dataset == "got10k" else "success_auc"))
        if args.per_sequence:
            for rs in sets:
                print()
                print(format_sequences(rs))
    if args.plot:
        from sparsett_core.eval.plots import write_plots

        paths = write_plots(sets, args.plot, args.title or _TITLES[args.dataset])
        print(f"{PROG}: plots {', '.join(str(p) for p in paths)}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (0 ok, 1 input/runtime error, 2 usage error)."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "run":
            return _cmd_run(args)
        return _cmd_score(args)
    except (DatasetError, BoxFileError, OSError, ValueError, RuntimeError) as exc:  # CheckpointError is a ValueError
        print(f"{PROG}: error: {one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; finished sequences are kept, rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
