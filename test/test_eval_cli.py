"""sparsett-eval end to end on the real shared sequences, laid out as benchmarks in tmp_path."""
from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from cli_helpers import tool_env
from sparsett_core.cli.eval import main as eval_main
from sparsett_core.eval.datasets import DatasetError, load_dataset
from sparsett_core.eval.runner import ResultLayout, Shard, run_dataset

METRIC_KEYS = {"success_auc", "precision", "norm_precision", "ao", "sr50", "sr75"}
CUT = 20  # frames per sequence in the short dataset (SparseTT on CPU is ~0.3 s/frame)


def run_cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sparsett_core.cli.eval", *args], capture_output=True, text=True,
                          timeout=timeout, env=tool_env())


def _frames(seq_dir: Path) -> list[Path]:
    return sorted((seq_dir / "img").iterdir())


def _gt_lines(seq_dir: Path) -> list[str]:
    return (seq_dir / "groundtruth_rect.txt").read_text().splitlines()


@pytest.fixture(scope="module")
def otb_root(sequences_dir, tmp_path_factory) -> Path:
    """The shared sequences as an OTB2015-style dataset (symlinks)."""
    root = tmp_path_factory.mktemp("otb_full")
    for seq in sorted(p for p in sequences_dir.iterdir() if p.is_dir()):
        (root / seq.name).symlink_to(seq, target_is_directory=True)
    return root


@pytest.fixture(scope="module")
def otb_cut_root(sequences_dir, tmp_path_factory) -> Path:
    """The first CUT frames of every shared sequence, OTB2015 layout."""
    root = tmp_path_factory.mktemp("otb_cut")
    for seq in sorted(p for p in sequences_dir.iterdir() if p.is_dir()):
        img = root / seq.name / "img"
        img.mkdir(parents=True)
        for f in _frames(seq)[:CUT]:
            (img / f.name).symlink_to(f)
        (root / seq.name / "groundtruth_rect.txt").write_text("\n".join(_gt_lines(seq)[:CUT]) + "\n")
    return root


@pytest.fixture(scope="module")
def csrt_full(otb_root, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("res") / "csrt"
    proc = run_cli("run", "--dataset", "otb2015", "--root", str(otb_root), "--tracker", "csrt",
                   "--results", str(out), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    return out


def _result_files(d: Path) -> dict[str, str]:
    return {p.relative_to(d).as_posix(): p.read_text() for p in sorted(d.rglob("*.txt")) if not p.name.endswith("_time.txt")}


def test_csrt_complete_result_set_scores_and_plots(otb_root, sequences_dir, csrt_full, tmp_path):
    for seq in sorted(p for p in sequences_dir.iterdir() if p.is_dir()):
        rows = (csrt_full / f"{seq.name}.txt").read_text().splitlines()
        assert len(rows) == len(_gt_lines(seq)) == len(_frames(seq))
        assert rows[0].split(",") == [f"{float(v):.4f}" for v in _gt_lines(seq)[0].split(",")]
        times = (csrt_full / f"{seq.name}_time.txt").read_text().split()
        assert len(times) == len(rows) and all(float(t) >= 0 for t in times)

    out_json = tmp_path / "report.json"
    proc = run_cli("score", "--dataset", "otb2015", "--root", str(otb_root), "--results", str(csrt_full), "--json",
                   "--out", str(out_json), "--plot", str(tmp_path / "plots"))
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report == json.loads(out_json.read_text())
    tracker = report["trackers"]["csrt"]
    assert METRIC_KEYS <= set(tracker["overall"])
    assert tracker["overall"]["num_sequences"] == 4
    assert set(tracker["sequences"]) == {p.name for p in sequences_dir.iterdir() if p.is_dir()}
    for values in [tracker["overall"], *tracker["sequences"].values()]:
        for key in METRIC_KEYS:
            assert 0.0 <= values[key] <= 1.0
        assert values["fps"] > 0
    # CSRT follows the face in the 20 Dudek frames closely: a real tracker, real numbers
    assert tracker["sequences"]["otb_dudek20"]["success_auc"] > 0.7
    for name in ("success_plot.png", "precision_plot.png", "norm_precision_plot.png"):
        data = (tmp_path / "plots" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000

    table = run_cli("score", "--dataset", "otb2015", "--root", str(otb_root), "--results", str(csrt_full),
                    "--per-sequence")
    assert table.returncode == 0, table.stderr
    assert "AUC" in table.stdout and "otb_crossing" in table.stdout


@pytest.mark.slow
def test_sparsett_and_csrt_side_by_side(otb_cut_root, official_checkpoint, tmp_path):
    sparsett = tmp_path / "sparsett_random"
    proc = run_cli("run", "--dataset", "otb2015", "--root", str(otb_cut_root), "--checkpoint",
                   str(official_checkpoint), "--results", str(sparsett), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert "preset otb2015" in proc.stderr  # the paper model takes the benchmark's preset
    csrt = tmp_path / "csrt"
    assert eval_main(["run", "--dataset", "otb2015", "--root", str(otb_cut_root), "--tracker", "csrt",
                      "--results", str(csrt), "--no-progress"]) == 0
    for d in (sparsett, csrt):
        for seq in load_dataset("otb2015", otb_cut_root):
            boxes = np.loadtxt(d / f"{seq.name}.txt", delimiter=",")
            assert boxes.shape == (CUT, 4) and np.isfinite(boxes).all()
    proc = run_cli("score", "--dataset", "otb2015", "--root", str(otb_cut_root), "--results", str(sparsett),
                   f"csrt={csrt}", "--json", "--plot", str(tmp_path / "plots"))
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert set(report["trackers"]) == {"sparsett_random", "csrt"}
    for t in report["trackers"].values():
        assert METRIC_KEYS <= set(t["overall"]) and len(t["sequences"]) == 4
    assert (tmp_path / "plots" / "success_plot.png").is_file()


class StaticTracker:
    """Trivial deterministic tracker: drifts right by one pixel per frame."""

    builds = 0

    def __init__(self) -> None:
        StaticTracker.builds += 1
        self.box = None

    def init(self, frame, box):
        assert frame.ndim == 3 and frame.dtype == np.uint8
        self.box = np.asarray(box, float)

    def update(self, frame):
        self.box = self.box + np.array([1.0, 0, 0, 0])
        return tuple(self.box), 1.0


def test_resume_and_shards_give_the_same_files_as_one_run(otb_cut_root, tmp_path):
    seqs = load_dataset("otb2015", otb_cut_root)
    one = ResultLayout("otb2015", tmp_path / "one")
    run_dataset(StaticTracker, seqs, one, progress=False)

    sharded = ResultLayout("otb2015", tmp_path / "sharded")
    first = run_dataset(StaticTracker, seqs, sharded, shard=Shard.parse("1/3"), progress=False)
    assert [r.name for r in first] == [seqs[0].name, seqs[3].name]
    for i in (2, 3):
        run_dataset(StaticTracker, seqs, sharded, shard=Shard(i, 3), progress=False)
    assert _result_files(sharded.dir) == _result_files(one.dir)
    assert len(_result_files(one.dir)) == 4

    # resume: a finished sequence is kept as it is, a missing one is redone, nothing else runs
    resumed = ResultLayout("otb2015", tmp_path / "resumed")
    run_dataset(StaticTracker, seqs, resumed, progress=False)
    sentinel = resumed.result_file(seqs[1].name)
    sentinel.write_text(sentinel.read_text() + "")  # unchanged content, new mtime
    mtime = sentinel.stat().st_mtime_ns
    resumed.result_file(seqs[2].name).unlink()
    (resumed.dir / f"{seqs[2].name}.txt.tmp").write_text("partial\n")  # an interrupted write
    runs = run_dataset(StaticTracker, seqs, resumed, progress=False)
    assert [r.skipped for r in runs] == [True, True, False, True]
    assert sentinel.stat().st_mtime_ns == mtime
    assert _result_files(resumed.dir) == _result_files(one.dir)

    # all done: the tracker is not even built
    StaticTracker.builds = 0
    runs = run_dataset(StaticTracker, seqs, resumed, progress=False)
    assert all(r.skipped for r in runs) and StaticTracker.builds == 0


def test_cli_shards_merge_into_one_result_set(otb_cut_root, tmp_path):
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    base = ["run", "--dataset", "otb2015", "--root", str(otb_cut_root), "--tracker", "csrt", "--no-progress"]
    assert eval_main(base + ["--results", str(whole)]) == 0
    assert eval_main(base + ["--results", str(parts), "--shard", "2/2"]) == 0
    assert len(_result_files(parts)) == 2
    assert eval_main(base + ["--results", str(parts), "--shard", "1/2"]) == 0
    assert _result_files(parts) == _result_files(whole)
    assert eval_main(base + ["--results", str(parts), "--shard", "3/2"]) == 1


def _got10k_layout(root: Path, sequences_dir: Path, split: str) -> list[str]:
    names = []
    for k, seq in enumerate(sorted(p for p in sequences_dir.iterdir() if p.is_dir())):
        name = f"GOT-10k_{split.capitalize()}_{k + 1:06d}"
        d = root / split / name
        d.mkdir(parents=True)
        for i, f in enumerate(_frames(seq)[:CUT]):
            (d / f"{i + 1:08d}.jpg").symlink_to(f)
        gt = _gt_lines(seq)[:CUT]
        (d / "groundtruth.txt").write_text("\n".join(gt if split == "val" else gt[:1]) + "\n")
        if split == "val":
            cover = ["8"] * CUT
            cover[5] = "0"  # target fully occluded in frame 6
            (d / "cover.label").write_text("\n".join(cover) + "\n")
            (d / "meta_info.ini").write_text("[METAINFO]\nresolution: (1280, 720)\n")
        names.append(name)
    (root / split / "list.txt").write_text("\n".join(names) + "\n")
    return names


def test_got10k_results_layout_zip_and_scoring(sequences_dir, tmp_path):
    root = tmp_path / "GOT-10k"
    names = _got10k_layout(root, sequences_dir, "test")
    _got10k_layout(root, sequences_dir, "val")
    out = tmp_path / "results" / "csrt"
    args = ["run", "--dataset", "got10k", "--root", str(root), "--tracker", "csrt", "--results", str(out),
            "--no-progress"]
    assert eval_main(args + ["--shard", "1/2"]) == 0
    assert not out.with_name("csrt.zip").exists()  # incomplete: no submission yet
    assert eval_main(args + ["--shard", "2/2"]) == 0
    for n in names:
        assert len((out / n / f"{n}_001.txt").read_text().splitlines()) == CUT
        assert len((out / n / f"{n}_time.txt").read_text().splitlines()) == CUT
    with zipfile.ZipFile(out.with_name("csrt.zip")) as zf:
        assert sorted(zf.namelist()) == sorted([f"{n}/{n}_001.txt" for n in names] + [f"{n}/{n}_time.txt" for n in names])
        assert zf.read(f"{names[0]}/{names[0]}_001.txt").decode() == (out / names[0] / f"{names[0]}_001.txt").read_text()
    # the test split has no public ground truth: scoring says where to send the zip
    err = run_cli("score", "--dataset", "got10k", "--root", str(root), "--results", str(out))
    assert err.returncode == 1 and "evaluation server" in err.stderr and "csrt.zip" in err.stderr

    val = tmp_path / "results_val" / "csrt"
    assert eval_main(["run", "--dataset", "got10k", "--split", "val", "--root", str(root), "--tracker", "csrt",
                      "--results", str(val), "--no-progress"]) == 0
    proc = run_cli("score", "--dataset", "got10k", "--split", "val", "--root", str(root), "--results", str(val), "--json")
    assert proc.returncode == 0, proc.stderr
    overall = json.loads(proc.stdout)["trackers"]["csrt"]["overall"]
    assert METRIC_KEYS <= set(overall) and 0 < overall["ao"] <= 1
    seqs = load_dataset("got10k", root, "val")
    assert seqs[0].present is not None and not seqs[0].present[5] and seqs[0].resolution == (1280, 720)


def test_trackingnet_zip(sequences_dir, tmp_path):
    root = tmp_path / "TrackingNet"
    names = []
    for seq in sorted(p for p in sequences_dir.iterdir() if p.is_dir())[:2]:
        frames = root / "TEST" / "frames" / seq.name
        frames.mkdir(parents=True)
        for i, f in enumerate(_frames(seq)[:12]):  # 0.jpg .. 11.jpg: natural order, not 0, 1, 10, 11, 2
            (frames / f"{i}.jpg").symlink_to(f)
        (root / "TEST" / "anno").mkdir(parents=True, exist_ok=True)
        (root / "TEST" / "anno" / f"{seq.name}.txt").write_text(_gt_lines(seq)[0] + "\n")
        names.append(seq.name)
    seqs = load_dataset("trackingnet", root)
    assert [f.name for f in seqs[0].frames][:3] == ["0.jpg", "1.jpg", "2.jpg"]
    out = tmp_path / "tn" / "csrt"
    args = ["run", "--dataset", "trackingnet", "--root", str(root), "--tracker", "csrt", "--results", str(out),
            "--no-progress"]
    assert eval_main(args + ["--sequences", names[1]]) == 0
    assert (out / f"{names[1]}.txt").is_file() and not out.with_name("csrt.zip").exists()  # subset: no zip
    assert eval_main(args) == 0
    with zipfile.ZipFile(out.with_name("csrt.zip")) as zf:
        assert sorted(zf.namelist()) == sorted(f"{n}.txt" for n in names)


def test_lasot_and_uav123_readers(sequences_dir, tmp_path):
    seq = sequences_dir / "otb_crossing"
    gt = _gt_lines(seq)
    d = tmp_path / "LaSOT" / "person" / "person-1"
    (d / "img").mkdir(parents=True)
    for i, f in enumerate(_frames(seq)):
        (d / "img" / f"{i + 1:08d}.jpg").symlink_to(f)
    (d / "groundtruth.txt").write_text("\n".join(gt) + "\n")
    flags = ["0"] * len(gt)
    flags[3] = "1"
    (d / "full_occlusion.txt").write_text(",".join(flags))
    (d / "out_of_view.txt").write_text(",".join(["0"] * len(gt)))
    (tmp_path / "LaSOT" / "testing_set.txt").write_text("person-1\n")
    (lasot,) = load_dataset("lasot", tmp_path / "LaSOT")
    assert lasot.name == "person-1" and len(lasot) == len(gt) and not lasot.target_visible[3]

    uav = tmp_path / "UAV123"
    (uav / "data_seq" / "UAV123" / "crossing").mkdir(parents=True)
    for i, f in enumerate(_frames(seq)):
        (uav / "data_seq" / "UAV123" / "crossing" / f"{i + 1:06d}.jpg").symlink_to(f)
    (uav / "anno" / "UAV123").mkdir(parents=True)
    uav_gt = list(gt)
    uav_gt[7] = "NaN,NaN,NaN,NaN"
    (uav / "anno" / "UAV123" / "crossing.txt").write_text("\n".join(uav_gt) + "\n")
    (useq,) = load_dataset("uav123", uav)
    assert np.isnan(useq.groundtruth[7]).all() and len(useq) == len(gt)
    (uav / "anno" / "UAV123" / "bird1_2.txt").write_text(gt[0] + "\n")
    with pytest.raises(DatasetError, match="bird1_2"):
        load_dataset("uav123", uav)


def test_score_errors_name_the_file_and_line(otb_cut_root, tmp_path, capsys):
    seqs = load_dataset("otb2015", otb_cut_root)
    layout = ResultLayout("otb2015", tmp_path / "bad")
    run_dataset(StaticTracker, seqs, layout, progress=False)
    args = ["score", "--dataset", "otb2015", "--root", str(otb_cut_root), "--results", str(layout.dir)]
    assert eval_main(args) == 0
    capsys.readouterr()
    short = layout.result_file(seqs[1].name)
    short.write_text("".join(short.read_text().splitlines(keepends=True)[:-1]))
    assert eval_main(args) == 1
    assert f"{short}: {CUT - 1} rows, expected {CUT}" in capsys.readouterr().err
    broken = layout.result_file(seqs[0].name)
    lines = broken.read_text().splitlines(keepends=True)
    lines[4] = "1.0,2.0,oops,4.0\n"
    broken.write_text("".join(lines))
    assert eval_main(args) == 1
    assert f"{broken}:5: not a number" in capsys.readouterr().err
    assert eval_main(["score", "--dataset", "otb2015", "--root", str(tmp_path / "nowhere"), "--results", "x"]) == 1
    assert "dataset root not found" in capsys.readouterr().err


def test_score_one_sequence_json(sequences_dir, tmp_path):
    gt = sequences_dir / "otb_dudek20" / "groundtruth_rect.txt"
    proc = run_cli("score", "--groundtruth", str(gt), "--results", str(gt), "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert METRIC_KEYS <= set(result)
    assert result["success_auc"] == pytest.approx(20 / 21) and result["ao"] == pytest.approx(1.0)
    shifted = tmp_path / "res.txt"
    boxes = np.loadtxt(gt, delimiter=",")
    boxes[1:, 0] += boxes[1:, 2]  # no overlap after frame 1
    np.savetxt(shifted, boxes, delimiter=",", fmt="%.2f")
    result = json.loads(run_cli("score", "--groundtruth", str(gt), "--results", str(shifted), "--json").stdout)
    assert result["ao"] == 0.0 and result["success_auc"] == pytest.approx((20 / 21) / 20)


def test_default_preset_follows_the_model(official_checkpoint):
    """No --preset: the paper model takes the benchmark's preset, the shipped Lite model its own."""
    from sparsett_core.eval.trackers import build_tracker

    assert build_tracker(checkpoint=official_checkpoint, benchmark="uav123").preset.name == "uav123"
    from sparsett_core import SparseTT

    shipped = SparseTT.from_checkpoint("default").default_preset  # "lite" for SparseTT-Lite v1
    assert shipped != "uav123" and build_tracker(checkpoint=None, benchmark="uav123").preset.name == shipped
    assert build_tracker(checkpoint="default", benchmark="uav123", preset="otb2015").preset.name == "otb2015"
