"""sparsett-eval run and score end to end, as a user runs them, on every benchmark layout.

Tiny copies of OTB2015, UAV123 (with a split part and UAV20L), GOT-10k val/test, LaSOT and
TrackingNet are built from real frames (test/benchmark_layouts.py); the installed ``sparsett-eval``
tracks them with the shipped default weights in subprocesses. Checked: the results in each
benchmark's own format (and submission zips), the report's numbers against an independent
per-frame computation on the same boxes, resuming an interrupted run, ``--shard i/n`` equal to one
full run, the NanoTrack v2 baseline, and every kind of bad input giving a one-line error.
"""
from __future__ import annotations

import json
import re
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest

import benchmark_layouts as bl
from cli_helpers import assert_clean_error, interrupt_when, run_tool, tool, tool_env

PROG = "sparsett-eval"
METRICS = ("success_auc", "precision", "norm_precision", "ao", "sr50", "sr75")
ROW = re.compile(r"^-?\d+\.\d{%d},-?\d+\.\d{%d},\d+\.\d{%d},\d+\.\d{%d}$")

# Success AUC of the shipped default weights on Jogging.2 (a static bollard in otb_crossing frames
# 31-60, tiny OTB2015 layout) through sparsett-eval: 0.829 measured 2026-12-01 (SparseTT-Lite v2
# weights of run H, AMD EPYC Zen 5, 1 thread; run E: 0.848). Floor = measured - 0.1; re-measure when
# the weights change (the test records the value).
DEFAULT_WEIGHTS_STATIC_TARGET_AUC_FLOOR = 0.729

# NanoTrack v2 on the four development sequences (all 442 frames), success AUC measured through
# sparsett-eval on 2026-11-30 (AMD EPYC Zen 4, OpenCV 4.11.0): 0.752. Floor = measured - 0.05.
NANOTRACK_DEV_AUC_FLOOR = 0.70


def evaluate(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return run_tool(PROG, *args, timeout=timeout)


def run_ok(*args: str) -> subprocess.CompletedProcess:
    proc = evaluate(*args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    return proc


@pytest.fixture(scope="module")
def layouts(sequences_dir, train_dir, train_extra_dir, tmp_path_factory) -> bl.Layouts:
    return bl.make_all(tmp_path_factory.mktemp("datasets"), sequences_dir, train_dir, train_extra_dir)


# ------------------------------------------------------------------------------ independent scoring
def _valid(box: np.ndarray) -> bool:
    return bool(np.isfinite(box).all() and box[2] > 0 and box[3] > 0)


def _iou(a: np.ndarray, b: np.ndarray, eps: float = 0.0) -> float:
    iw = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / (a[2] * a[3] + b[2] * b[3] - inter + eps)


def _clip(box: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    x, y = min(max(box[0], 0), size[0]), min(max(box[1], 0), size[1])
    return np.array([x, y, min(max(box[2], 0), size[0] - x), min(max(box[3], 0), size[1] - y)])


def _centre(b: np.ndarray, scale: np.ndarray | None = None) -> np.ndarray:
    c = np.array([b[0] + (b[2] - 1) / 2, b[1] + (b[3] - 1) / 2])
    return c if scale is None else c / scale


def reference_sequence(results: np.ndarray, truth: bl.Truth, protocol: str) -> tuple[dict, list[float]]:
    """One sequence scored frame by frame, as the toolkits define it (written apart from metrics.py).

    Frame 1 is given (result = ground truth). Success: IoU > t for t = 0, 0.05, ..., 1 (mean = AUC);
    precision: centre error <= 20 px; normalised precision: centre error in ground-truth units <= 0.2.
    Absent frames (NaN or empty ground truth, LaSOT flags): OTB-style protocols leave them out;
    UAV123 counts them as success failures and precision hits; LaSOT as failures except that
    unflagged empty boxes are normalised-precision hits. GOT-10k AO/SR: frames 2..N with a present
    target, IoU with boxes clipped to the image when its size is known.
    """
    gt = truth.groundtruth
    n = len(gt)
    res = results.copy()
    res[0] = gt[0]
    thresholds = [k / 20 for k in range(21)]
    hits = np.zeros(21)
    prec = norm = 0.0
    counted = 0
    ious: list[float] = []
    for i in range(n):
        visible = truth.visible is None or bool(truth.visible[i])
        present = _valid(gt[i]) and visible
        if present:
            counted += 1
            overlap = _iou(res[i], gt[i])
            hits += np.array([overlap > t for t in thresholds])
            prec += np.linalg.norm(_centre(res[i]) - _centre(gt[i])) <= 20
            norm += np.linalg.norm(_centre(res[i], gt[i][2:]) - _centre(gt[i], gt[i][2:])) <= 0.2
        elif protocol == "uav":
            counted += 1
            prec += 1
            norm += 1
        elif protocol == "lasot":
            counted += 1
            norm += visible  # an empty box on a frame not flagged invisible counts as a hit (pytracking)
        keep = present if truth.present is None else present and bool(truth.present[i])
        if i > 0 and keep:
            a, b = results[i], gt[i]
            if protocol == "got10k" and truth.resolution is not None:
                a, b = _clip(a, truth.resolution), _clip(b, truth.resolution)
            ious.append(min(max(_iou(a, b, eps=np.finfo(float).eps), 0.0), 1.0))
    metrics = {"success_auc": float(np.mean(hits / counted)), "precision": prec / counted,
               "norm_precision": norm / counted}
    metrics.update(_ao(ious))
    return metrics, ious


def _ao(ious: list[float]) -> dict:
    if not ious:
        return {"ao": None, "sr50": None, "sr75": None}
    return {"ao": float(np.mean(ious)), "sr50": float(np.mean([v > 0.5 for v in ious])),
            "sr75": float(np.mean([v > 0.75 for v in ious]))}


def check_report(report: dict, name: str, results: dict[str, np.ndarray], truths: dict[str, bl.Truth],
                 protocol: str) -> dict:
    """The report's per-sequence and overall numbers equal the independent computation."""
    tracker = report["trackers"][name]
    assert set(tracker["sequences"]) == set(truths)
    per_seq, all_ious = {}, []
    for seq, truth in truths.items():
        expected, ious = reference_sequence(results[seq], truth, protocol)
        per_seq[seq] = expected
        all_ious += ious
        got = tracker["sequences"][seq]
        assert got["num_frames"] == len(truth)
        for key in METRICS:
            if expected[key] is None:
                assert got[key] is None, (seq, key)
            else:
                assert got[key] == pytest.approx(expected[key], abs=1e-9), (seq, key)
    overall = {k: float(np.mean([s[k] for s in per_seq.values()])) for k in ("success_auc", "precision",
                                                                             "norm_precision")}
    overall.update(_ao(all_ious))  # GOT-10k's AO/SR: all frames of all sequences together
    for key in METRICS:
        assert tracker["overall"][key] == pytest.approx(overall[key], abs=1e-9), key
    assert tracker["overall"]["num_sequences"] == len(truths)
    assert tracker["overall"]["num_frames"] == sum(len(t) for t in truths.values())
    return overall


# ------------------------------------------------------------------------------ result formats
def read_results(folder: Path, truths: dict[str, bl.Truth], got10k: bool = False) -> dict[str, np.ndarray]:
    """Every sequence's result file in the benchmark's format; (N, 4) arrays."""
    decimals = 3 if got10k else 4
    row = re.compile(ROW.pattern % ((decimals,) * 4))
    out = {}
    for seq, truth in truths.items():
        base = folder / seq if got10k else folder
        res = base / (f"{seq}_001.txt" if got10k else f"{seq}.txt")
        times = base / f"{seq}_time.txt"
        lines = res.read_text().splitlines()
        assert len(lines) == len(truth), res
        assert all(row.match(line) for line in lines), res
        assert lines[0] == ",".join(f"{v:.{decimals}f}" for v in truth.groundtruth[0]), res  # frame 1 = given box
        assert [float(t) >= 0 for t in times.read_text().split()] == [True] * len(truth), times
        out[seq] = np.array([[float(v) for v in line.split(",")] for line in lines])
    return out


def result_texts(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): p.read_text() for p in sorted(folder.rglob("*.txt"))
            if not p.name.endswith("_time.txt")}


def score_json(dataset: str, root: Path, *extra: str) -> dict:
    proc = run_ok("score", "--dataset", dataset, "--root", str(root), "--json", *extra)
    return json.loads(proc.stdout)


# ------------------------------------------------------------------------------ OTB2015
@pytest.fixture(scope="module")
def otb_full(layouts, tmp_path_factory) -> Path:
    """One uninterrupted run of the shipped weights over the OTB2015 layout."""
    out = tmp_path_factory.mktemp("otb") / "sparsett"
    proc = run_ok("run", "--dataset", "otb2015", "--root", str(layouts.root / "OTB2015"), "--results", str(out),
                  "--no-progress")
    from sparsett_core import SparseTT

    # the shipped (non-paper) model runs with its own preset, announced once
    assert proc.stderr.count(f"sparsett preset {SparseTT.from_checkpoint('default').default_preset}\n") == 1
    return out


def test_otb2015_results_and_report(layouts, otb_full, tmp_path, record_property):
    """Two-target Jogging, Human4's empty first file and Football1's frame range 1-74, scored as OTB."""
    results = read_results(otb_full, layouts.otb)
    assert sorted(results) == ["Crossing", "Football1", "Human4", "Jogging.1", "Jogging.2"]
    assert len(results["Football1"]) == 74
    root = layouts.root / "OTB2015"
    report = score_json("otb2015", root, "--results", str(otb_full), "--out", str(tmp_path / "r.json"))
    assert report == json.loads((tmp_path / "r.json").read_text())
    overall = check_report(report, "sparsett", results, layouts.otb, "otb")
    # the shipped weights really track: the static bollard (Jogging.2) is held closely
    static = report["trackers"]["sparsett"]["sequences"]["Jogging.2"]["success_auc"]
    record_property("default_weights_static_bollard_auc", round(static, 3))
    assert static > DEFAULT_WEIGHTS_STATIC_TARGET_AUC_FLOOR, static
    table = run_ok("score", "--dataset", "otb2015", "--root", str(root), "--results", str(otb_full), "--per-sequence")
    first = next(line for line in table.stdout.splitlines() if line.startswith("sparsett "))
    assert first.split()[1] == f"{100 * overall['success_auc']:.1f}"
    assert "Jogging.2" in table.stdout


def test_otb2015_reader_frame_range_with_offset(sequences_dir, tmp_path):
    """OTB's ranges that start later (BlurCar3: frames 3-359 of 359 files) pair the right frames."""
    from sparsett_core.eval.datasets import load_dataset

    truth = bl.make_otb_offset_range(tmp_path, sequences_dir)
    (seq,) = load_dataset("otb2015", tmp_path)
    assert seq.name == "BlurCar3" and len(seq) == 357
    assert seq.frames[0].name == "0003.jpg" and seq.frames[-1].name == "0359.jpg"
    assert [p.resolve() for p in seq.frames] == truth.frames
    np.testing.assert_array_equal(seq.groundtruth, truth.groundtruth)


def test_otb2015_interrupted_run_resumes_to_the_same_results(layouts, otb_full, tmp_path):
    """Ctrl-C after the first sequence, then the same command again: the files of one full run."""
    out = tmp_path / "sparsett"
    cmd = [tool(PROG), "run", "--dataset", "otb2015", "--root", str(layouts.root / "OTB2015"), "--results", str(out),
           "--no-progress"]
    status, err = interrupt_when(cmd, lambda: (out / "Crossing.txt").is_file(), "the first finished sequence")
    assert status == 130, err
    assert "rerun the same command to resume" in err and "Traceback" not in err
    done = sorted(p.name for p in out.glob("*.txt") if not p.name.endswith("_time.txt"))
    assert "Crossing.txt" in done and len(done) < len(layouts.otb), done

    again = subprocess.run(cmd, env=tool_env(), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert f"skipped {len(done)} finished" in again.stderr
    assert result_texts(out) == result_texts(otb_full)


def test_otb2015_shards_equal_one_full_run(layouts, otb_full, tmp_path):
    out = tmp_path / "sharded"
    base = ["run", "--dataset", "otb2015", "--root", str(layouts.root / "OTB2015"), "--results", str(out),
            "--no-progress"]
    second = run_ok(*base, "--shard", "2/2")
    assert "2 of 5 sequences (shard 2/2)" in second.stderr
    assert sorted(result_texts(out)) == ["Football1.txt", "Jogging.1.txt"]
    run_ok(*base, "--shard", "1/2")
    assert result_texts(out) == result_texts(otb_full)


# ------------------------------------------------------------------------------ UAV123 / UAV20L
def test_uav123_split_part_nan_rows_and_uav20l(layouts, tmp_path):
    root = layouts.root / "UAV123"
    out = tmp_path / "UAV123" / "sparsett"
    run_ok("run", "--dataset", "uav123", "--root", str(root), "--results", str(out), "--no-progress")
    results = read_results(out, layouts.uav["UAV123"])
    assert len(results["person8_2"]) == 451
    report = score_json("uav123", root, "--results", str(out))
    check_report(report, "sparsett", results, layouts.uav["UAV123"], "uav")

    out20 = tmp_path / "UAV20L" / "sparsett"
    run_ok("run", "--dataset", "uav123", "--split", "UAV20L", "--root", str(root), "--results", str(out20),
           "--no-progress")
    results20 = read_results(out20, layouts.uav["UAV20L"])
    report20 = score_json("uav123", root, "--split", "UAV20L", "--results", str(out20))
    check_report(report20, "sparsett", results20, layouts.uav["UAV20L"], "uav")
    # the same folder and annotation in both splits: the same boxes
    assert (out20 / "car9.txt").read_text() == (out / "car9.txt").read_text()


# ------------------------------------------------------------------------------ GOT-10k
def test_got10k_val_scored_and_test_packed_for_the_server(layouts, tmp_path):
    root = layouts.root / "GOT-10k"
    val = tmp_path / "val" / "sparsett"
    run_ok("run", "--dataset", "got10k", "--split", "val", "--root", str(root), "--results", str(val), "--no-progress")
    results = read_results(val, layouts.got10k["val"], got10k=True)
    report = score_json("got10k", root, "--split", "val", "--results", str(val))
    overall = check_report(report, "sparsett", results, layouts.got10k["val"], "got10k")
    assert len(reference_sequence(results["GOT-10k_Val_000001"], layouts.got10k["val"]["GOT-10k_Val_000001"],
                                  "got10k")[1]) == 28  # frames 2..30 without the absent frame 8
    table = run_ok("score", "--dataset", "got10k", "--split", "val", "--root", str(root), "--results", str(val))
    assert next(line for line in table.stdout.splitlines() if line.startswith("sparsett ")).split()[4] == \
        f"{100 * overall['ao']:.1f}"  # ranked by AO

    test = tmp_path / "test" / "sparsett"
    proc = run_ok("run", "--dataset", "got10k", "--root", str(root), "--results", str(test), "--no-progress")
    archive = test.with_name("sparsett.zip")
    assert f"submission archive {archive}" in proc.stderr
    read_results(test, layouts.got10k["test"], got10k=True)
    names = sorted(layouts.got10k["test"])
    with zipfile.ZipFile(archive) as zf:
        members = [f"{n}/{n}_001.txt" for n in names] + [f"{n}/{n}_time.txt" for n in names]
        assert sorted(zf.namelist()) == sorted(members)
        for n in names:
            assert zf.read(f"{n}/{n}_001.txt").decode() == (test / n / f"{n}_001.txt").read_text()
    err = evaluate("score", "--dataset", "got10k", "--root", str(root), "--results", str(test))
    assert_clean_error(err, PROG, "evaluation server", str(archive))


# ------------------------------------------------------------------------------ LaSOT
def test_lasot_run_and_score_with_visibility_flags(layouts, tmp_path):
    root = layouts.root / "LaSOT"
    out = tmp_path / "sparsett"
    run_ok("run", "--dataset", "lasot", "--root", str(root), "--results", str(out), "--no-progress")
    results = read_results(out, layouts.lasot["test"])
    assert not (out / "person-2.txt").exists()  # not in testing_set.txt
    report = score_json("lasot", root, "--results", str(out))
    check_report(report, "sparsett", results, layouts.lasot["test"], "lasot")


# ------------------------------------------------------------------------------ TrackingNet
def test_trackingnet_test_zip_and_train_chunk_scored(layouts, tmp_path):
    root = layouts.root / "TrackingNet"
    test = tmp_path / "TEST" / "sparsett"
    run_ok("run", "--dataset", "trackingnet", "--root", str(root), "--results", str(test), "--no-progress")
    read_results(test, layouts.trackingnet["TEST"])
    with zipfile.ZipFile(test.with_name("sparsett.zip")) as zf:
        assert sorted(zf.namelist()) == sorted(f"{n}.txt" for n in layouts.trackingnet["TEST"])
    err = evaluate("score", "--dataset", "trackingnet", "--root", str(root), "--results", str(test))
    assert_clean_error(err, PROG, "evaluation server")

    train = tmp_path / "TRAIN_0" / "sparsett"
    run_ok("run", "--dataset", "trackingnet", "--split", "TRAIN_0", "--root", str(root), "--results", str(train),
           "--no-progress")
    results = read_results(train, layouts.trackingnet["TRAIN_0"])
    report = score_json("trackingnet", root, "--split", "TRAIN_0", "--results", str(train))
    check_report(report, "sparsett", results, layouts.trackingnet["TRAIN_0"], "otb")


# ------------------------------------------------------------------------------ NanoTrack v2 baseline
def test_nanotrack_baseline_on_the_development_sequences(sequences_dir, nanotrack_onnx, tmp_path, record_property):
    """NanoTrack v2 (cv2.TrackerNano on the user's ONNX files) beside SparseTT, on whole real sequences."""
    root = tmp_path / "dev"
    root.mkdir()
    for seq in sorted(p for p in sequences_dir.iterdir() if p.is_dir()):
        (root / seq.name).symlink_to(seq, target_is_directory=True)
    backbone, head = nanotrack_onnx
    out = tmp_path / "results" / "otb2015" / "nanotrack"
    proc = run_ok("run", "--dataset", "otb2015", "--root", str(root), "--tracker", "nanotrack",
                  "--nanotrack-backbone", str(backbone), "--nanotrack-head", str(head), "--results", str(out),
                  "--no-progress")
    assert "nanotrack on otb2015: 4 of 4 sequences" in proc.stderr
    truths = {s.name: bl.Truth(sorted(f.resolve() for f in (s / "img").iterdir()),
                               bl.parse_rows((s / "groundtruth_rect.txt").read_text().splitlines()))
              for s in root.iterdir()}
    results = read_results(out, truths)
    report = score_json("otb2015", root, "--results", str(out))
    overall = check_report(report, "nanotrack", results, truths, "otb")
    record_property("nanotrack_v2_dev_auc", round(overall["success_auc"], 3))
    assert overall["success_auc"] > NANOTRACK_DEV_AUC_FLOOR, overall


def test_nanotrack_needs_its_onnx_files(layouts, nanotrack_onnx, tmp_path):
    root = str(layouts.root / "OTB2015")
    backbone, head = nanotrack_onnx
    base = ["run", "--dataset", "otb2015", "--root", root, "--tracker", "nanotrack", "--results", str(tmp_path / "r")]
    assert_clean_error(evaluate(*base), PROG, "--nanotrack-backbone", "--nanotrack-head")
    assert_clean_error(evaluate(*base, "--nanotrack-backbone", str(backbone)), PROG, "needs --nanotrack-head PATH")
    assert_clean_error(evaluate(*base, "--nanotrack-backbone", str(tmp_path / "b.onnx"), "--nanotrack-head", str(head)),
                       PROG, "--nanotrack-backbone", "b.onnx: file not found")
    swapped = evaluate(*base, "--nanotrack-backbone", str(head), "--nanotrack-head", str(backbone),
                       "--sequences", "Crossing")
    assert_clean_error(swapped, PROG, "NanoTrack cannot run the ONNX files", "nanotrack_backbone_sim.onnx")
    assert not (tmp_path / "r" / "Crossing.txt").exists()


# ------------------------------------------------------------------------------ bad input
def test_bad_datasets_give_one_line_errors(layouts, tmp_path):
    missing = tmp_path / "datasets" / "OTB2015"
    assert_clean_error(evaluate("run", "--dataset", "otb2015", "--root", str(missing), "--tracker", "csrt"), PROG,
                       str(missing), "dataset root not found")
    assert_clean_error(evaluate("score", "--dataset", "lasot", "--root", str(missing), "--results", "x"), PROG,
                       "dataset root not found")
    # a benchmark sparsett-eval does not know: a usage error listing the ones it does
    unknown = evaluate("run", "--dataset", "vot2018", "--root", str(layouts.root), "--tracker", "csrt")
    assert_clean_error(unknown, f"{PROG} run", "invalid choice: 'vot2018'", "otb2015", "trackingnet", status=2)
    # a dataset in another layout than the one named
    wrong = evaluate("run", "--dataset", "uav123", "--root", str(layouts.root / "LaSOT"), "--tracker", "csrt")
    assert_clean_error(wrong, PROG, "anno/UAV123", "UAV123 annotation folder not found", "docs/evaluation.md")
    wrong = evaluate("run", "--dataset", "got10k", "--root", str(layouts.root / "OTB2015"), "--tracker", "csrt")
    assert_clean_error(wrong, PROG, "list.txt", "GOT-10k list.txt not found")
    unknown_split = evaluate("run", "--dataset", "lasot", "--split", "train", "--root", str(layouts.root / "LaSOT"),
                             "--tracker", "csrt")
    assert_clean_error(unknown_split, PROG, "unknown LaSOT split 'train'")


def test_bad_results_and_ground_truth_give_one_line_errors(layouts, otb_full, tmp_path):
    root = str(layouts.root / "OTB2015")
    res = tmp_path / "res"
    res.mkdir()
    for p in otb_full.iterdir():
        (res / p.name).write_bytes(p.read_bytes())
    # a results file cut off in the middle of a row (an interrupted copy)
    crossing = res / "Crossing.txt"
    text = crossing.read_text()
    crossing.write_text(text[:len(text) // 2].rsplit(",", 1)[0])
    nrows = len(crossing.read_text().splitlines())
    err = evaluate("score", "--dataset", "otb2015", "--root", root, "--results", str(res))
    assert_clean_error(err, PROG, f"{crossing}:{nrows}: expected 4 numbers")
    crossing.write_text("".join(text.splitlines(keepends=True)[:10]))
    err = evaluate("score", "--dataset", "otb2015", "--root", root, "--results", str(res))
    assert_clean_error(err, PROG, f"{crossing}: 10 rows, expected 30")
    (res / "Human4.txt").unlink()
    crossing.write_text(text)
    err = evaluate("score", "--dataset", "otb2015", "--root", root, "--results", str(res))
    assert_clean_error(err, PROG, f"{res / 'Human4.txt'}: file not found")

    # ground truth with NaN rows: the first one cannot start a run; all-NaN has nothing to score
    gt = tmp_path / "nan_gt" / "Walker"
    (gt / "img").mkdir(parents=True)
    for i, f in enumerate(layouts.otb["Crossing"].frames[:5]):
        (gt / "img" / f"{i + 1:04d}.jpg").symlink_to(f)
    (gt / "groundtruth_rect.txt").write_text("NaN,NaN,NaN,NaN\n" + "10,10,20,20\n" * 4)
    err = evaluate("run", "--dataset", "otb2015", "--root", str(gt.parent), "--tracker", "csrt",
                   "--results", str(tmp_path / "nan_res"))
    assert_clean_error(err, PROG, "sequence Walker", "not a valid initial box")
    all_nan = tmp_path / "all_nan.txt"
    all_nan.write_text("NaN,NaN,NaN,NaN\n" * 5)
    boxes = tmp_path / "boxes.txt"
    boxes.write_text("10,10,20,20\n" * 5)
    err = evaluate("score", "--groundtruth", str(all_nan), "--results", str(boxes))
    assert_clean_error(err, PROG, "no frame with a present target")
    boxes.write_text("10,10,20,20\n" * 4 + "NaN,10,20,20\n")
    err = evaluate("score", "--groundtruth", str(all_nan), "--results", str(boxes))
    assert_clean_error(err, PROG, f"{boxes}:5: NaN in a result box")


def test_checkpoint_errors_through_sparsett_eval(layouts, tmp_path):
    root = str(layouts.root / "OTB2015")
    base = ["run", "--dataset", "otb2015", "--root", root, "--sequences", "Crossing", "--no-progress"]
    missing = tmp_path / "epoch-19.pkl"
    assert_clean_error(evaluate(*base, "--checkpoint", str(missing), "--results", str(tmp_path / "a")), PROG,
                       f"checkpoint not found: {missing}")
    from sparsett_core.weights import default_checkpoint_path

    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(default_checkpoint_path().read_bytes()[:100_000])
    err = evaluate(*base, "--checkpoint", str(truncated), "--results", str(tmp_path / "b"))
    assert_clean_error(err, PROG, str(truncated))
    foreign = tmp_path / "notes.pkl"
    foreign.write_text("these are not weights\n")
    err = evaluate(*base, "--checkpoint", str(foreign), "--results", str(tmp_path / "c"))
    assert_clean_error(err, PROG, str(foreign))
    assert not list(tmp_path.glob("[abc]/*.txt"))  # nothing was written
