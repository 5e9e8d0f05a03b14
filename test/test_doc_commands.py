"""Every command line the documentation shows for the offline tools, run as written.

The commands are read from the documents themselves: README.md's sections "Offline tracking and
benchmark evaluation" and "Training", docs/evaluation.md and docs/training.md (``bash`` blocks, and
``$ `` lines of example sessions with their shown output). They run, in document order, in a
sandbox laid out as the documents assume: ``datasets/`` holding tiny copies of every benchmark in
its published layout (test/benchmark_layouts.py; the training layouts of GOT-10k, LaSOT,
TrackingNet, ILSVRC2015 VID/DET and COCO too), ``models/swin/swin_tiny_patch4_window7_224.pth``
in the Microsoft layout, ``config/`` of this checkout, and ``../shared`` beside the working folder.

What differs from a user's machine, and why:
* checkpoint files named in the documents (``epoch-19.pkl``, ``sparsett_fulldata.pkl``, ...) are the
  shipped default weights (the official Swin-T files cannot be downloaded here);
  ``sparsett_seed0*.pkl`` are the test fixture's random paper-size weights, as the documents say;
* training commands that would run a recipe in full get ``--set`` overrides appended that scale it
  down (one or two epochs of one step; where several processes share the 2 CPU cores, the small
  Swin-T of test/train_helpers.TINY_MODEL from random weights); ``HOST`` is 127.0.0.1 and the
  multi-node command runs
  once per node rank; ``tensorboard`` gets ``--inspect`` (print what the logs hold and exit);
* ``../shared/data/sequences`` holds the first 10 frames of each development sequence;
* ``python ...`` lines are not run here: ``python -m pytest`` is this test suite itself, and
  ``python bench/...`` measures speed, which bench/ scripts do, never tests.
A documented command that matches none of the rules below fails the cheap
``test_every_documented_command_has_a_rule`` first: document a new command, give it a rule.
"""
from __future__ import annotations

import re
import shlex
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import pytest

import benchmark_layouts as bl
from cli_helpers import tool, tool_env
from train_helpers import make_got10k, make_imagenet_swin, tiny_model_args

REPO = Path(__file__).resolve().parents[1]
DOCS = {"README.md": ("## Offline tracking and benchmark evaluation", "## Training"),
        "docs/evaluation.md": None, "docs/training.md": None}
TOOLS = ("sparsett-eval", "sparsett-track", "sparsett-train", "torchrun", "tensorboard")
SHELL = ("mkdir", "head")
NOT_RUN = {"python": "python -m pytest is this suite; python bench/... measures speed (bench/, not tests)"}
CHECKPOINT_NAMES = ("epoch-19.pkl", "sparsett.pkl", "sparsett_fulldata.pkl", "sparsett_got10k.pkl")
SEQ_FRAMES = 10  # frames of each development sequence in the sandbox's ../shared


@dataclass
class DocCommand:
    """A command line as a document shows it, with the example output shown after it (if any)."""

    where: str
    text: str
    output: list[str] = field(default_factory=list)

    @property
    def tokens(self) -> list[str]:
        return shlex.split(self.text, comments=True)

    @property
    def program(self) -> str:
        return self.tokens[0]


def _sections(text: str, headings: tuple[str, ...] | None) -> list[tuple[int, str]]:
    """(offset, body) of the named ``## `` sections (the whole text when None)."""
    if headings is None:
        return [(0, text)]
    out = []
    for heading in headings:
        start = text.index("\n" + heading + "\n") + 1
        end = text.find("\n## ", start + len(heading))
        out.append((start, text[start:end if end >= 0 else len(text)]))
    return out


def _logical_lines(lines: list[str]) -> list[tuple[int, str]]:
    """Join backslash continuations: [(index of the first line, joined text)]."""
    out: list[tuple[int, str]] = []
    pending: tuple[int, str] | None = None
    for i, line in enumerate(lines):
        if pending is not None:
            text = pending[1] + " " + line.strip()
            start = pending[0]
        else:
            text, start = line, i
        if text.rstrip().endswith("\\"):
            pending = (start, text.rstrip()[:-1].rstrip())
        else:
            pending = None
            out.append((start, text))
    return out


def documented_commands() -> list[DocCommand]:
    """Every command line of the documents' bash blocks and example sessions, in document order."""
    commands: list[DocCommand] = []
    for doc, headings in DOCS.items():
        text = (REPO / doc).read_text()
        for offset, body in _sections(text, headings):
            for block in re.finditer(r"^```(\w*)\n(.*?)^```", body, re.M | re.S):
                lang, lines = block.group(1), block.group(2).splitlines()
                first_line = text[:offset + block.start(2)].count("\n") + 1
                if lang == "python":
                    continue  # API examples, not command lines
                current: DocCommand | None = None
                for i, line in _logical_lines(lines):
                    where = f"{doc}:{first_line + i}"
                    if lang == "bash":
                        if line.strip() and not line.strip().startswith("#"):
                            commands.append(DocCommand(where, line.strip()))
                    elif line.startswith("$ "):
                        current = DocCommand(where, line[2:].strip())
                        commands.append(current)
                    elif current is not None and line.strip():
                        current.output.append(line.rstrip())
    return commands


def is_training(cmd: DocCommand) -> bool:
    return cmd.program == "sparsett-train" or (cmd.program == "torchrun" and "sparsett_core.cli.train" in cmd.tokens)


def rule(cmd: DocCommand) -> str:
    """Which rule runs a command: "tool", "camera", "shell", or "not run: <reason>"."""
    if cmd.program in NOT_RUN:
        return f"not run: {NOT_RUN[cmd.program]}"
    if cmd.program == "sparsett-track" and len(cmd.tokens) > 1 and cmd.tokens[1].isdigit():
        return "camera"
    if cmd.program in TOOLS and (cmd.program != "torchrun" or is_training(cmd)):
        return "tool"
    if cmd.program in SHELL or cmd.text.startswith("for "):
        return "shell"
    raise AssertionError(f"{cmd.where}: no rule runs the documented command {cmd.text!r}: add one in "
                         f"{Path(__file__).name}")


def test_every_documented_command_has_a_rule():
    commands = documented_commands()
    programs = {c.program for c in commands}
    assert {"sparsett-eval", "sparsett-track", "sparsett-train", "torchrun"} <= programs, programs
    assert sum(c.program == "sparsett-eval" for c in commands) >= 10
    for cmd in commands:
        rule(cmd)
        if rule(cmd) == "tool" and cmd.program != "tensorboard":
            assert "--" in cmd.text, cmd  # a real invocation, not prose


# ------------------------------------------------------------------------------------------ sandbox
@pytest.fixture(scope="module")
def world(sequences_dir, train_dir, train_extra_dir, nanotrack_onnx, official_checkpoint, tmp_path_factory) -> Path:
    """Datasets, models and a cut ../shared, built once; each test works in its own folder beside them."""
    top = tmp_path_factory.mktemp("docs")
    shared = top / "shared" / "data"
    for seq in sorted(p for p in sequences_dir.iterdir() if p.is_dir()):
        clip = bl.Clip(seq, 0, SEQ_FRAMES)
        (shared / "sequences" / seq.name / "img").mkdir(parents=True)
        for f in clip.frames():
            (shared / "sequences" / seq.name / "img" / f.name).symlink_to(f)
        (shared / "sequences" / seq.name / "groundtruth_rect.txt").write_text("\n".join(clip.lines()) + "\n")
    (shared / "train").symlink_to(train_dir, target_is_directory=True)

    ds = top / "datasets"
    bl.make_otb2015(ds / "OTB2015", sequences_dir, 10, full=False)
    (ds / "OTB").mkdir()
    (ds / "OTB" / "OTB2015").symlink_to(ds / "OTB2015", target_is_directory=True)
    bl.make_uav123(ds / "UAV123", sequences_dir, train_dir, train_extra_dir, 10, full=False)
    for split in ("val", "test"):
        bl.make_got10k(ds / "GOT-10k", sequences_dir, split, 10)
    make_got10k(train_dir, ds / "GOT-10k", "train", names=("uav123_10fps_boat1", "uav123_10fps_person12"),
                max_frames=60)
    bl.make_lasot(ds / "LaSOT", sequences_dir, 10)
    for split in ("TEST", "TRAIN_0"):
        bl.make_trackingnet(ds / "TrackingNet", sequences_dir, split, 10)
    bl.make_ilsvrc2015(ds / "ILSVRC2015", sequences_dir)
    bl.make_coco(ds / "COCO", sequences_dir)

    models = top / "models"
    make_imagenet_swin(models / "swin" / "swin_tiny_patch4_window7_224.pth")
    for onnx in nanotrack_onnx:
        (models / "nanotrack").mkdir(parents=True, exist_ok=True)
        (models / "nanotrack" / onnx.name).symlink_to(onnx)
    from sparsett_core.weights import default_checkpoint_path

    for name in CHECKPOINT_NAMES:
        (top / name).symlink_to(default_checkpoint_path())
    for name in ("sparsett_seed0.pkl", "sparsett_seed0_official.pkl"):
        (top / name).symlink_to(official_checkpoint)

    # clip.mp4: the Dudek frames (the documents' --init 123,87,132,176 is Dudek's first box)
    dudek = sorted((sequences_dir / "otb_dudek20" / "img").iterdir())
    first = cv2.imread(str(dudek[0]))
    writer = cv2.VideoWriter(str(top / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, first.shape[1::-1])
    for f in dudek:
        writer.write(cv2.imread(str(f)))
    writer.release()
    crossing = bl.Clip(sequences_dir / "otb_crossing", 0, SEQ_FRAMES)
    (top / "data" / "Crossing" / "img").mkdir(parents=True)
    for f in crossing.frames():
        (top / "data" / "Crossing" / "img" / f.name).symlink_to(f)
    # GT.txt / RES.txt: one sequence's ground truth and a real tracker's boxes on it (CSRT)
    from sparsett_core.baselines import CSRTTracker

    gt = bl.Clip(sequences_dir / "otb_dudek20", 0, 20)
    (top / "GT.txt").write_text("\n".join(gt.lines()) + "\n")
    csrt, rows = CSRTTracker(), []
    for i, f in enumerate(gt.frames()):
        if i == 0:
            box = tuple(bl.parse_rows(gt.lines()[:1])[0])
            csrt.init(cv2.imread(str(f)), box)
        else:
            box, _ = csrt.update(cv2.imread(str(f)))
        rows.append(",".join(f"{v:.2f}" for v in box))
    (top / "RES.txt").write_text("\n".join(rows) + "\n")
    return top


def workdir(world: Path, name: str) -> Path:
    """A fresh working folder seeing the sandbox's files (and ../shared) as the documents assume."""
    work = world / name
    work.mkdir()
    for entry in ("datasets", "models", "data", "clip.mp4", "GT.txt", "RES.txt", *CHECKPOINT_NAMES,
                  "sparsett_seed0.pkl", "sparsett_seed0_official.pkl"):
        (work / entry).symlink_to(world / entry)
    (work / "config").symlink_to(REPO / "config", target_is_directory=True)
    return work


# ------------------------------------------------------------------------------------------ running
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _option(tokens: list[str], name: str, default: str | None = None) -> str | None:
    return tokens[tokens.index(name) + 1] if name in tokens else default


def _overrides(tokens: list[str]) -> dict[str, str]:
    return dict(tokens[i + 1].split("=", 1) for i, t in enumerate(tokens) if t == "--set" and "=" in tokens[i + 1])


def scaled_training(tokens: list[str]) -> list[str]:
    """A training command scaled down to a few seconds on 2 CPU cores (appended ``--set`` only)."""
    if "--print-config" in tokens or "--index-only" in tokens:
        return tokens
    sets = _overrides(tokens)
    if "epochs" in sets:  # already sized by the document (the fine-tuning example)
        return tokens + ["--no-progress"]
    world = int(_option(tokens, "--nnodes", "1")) * int(_option(tokens, "--nproc_per_node", "1"))
    batch = world * int(sets.get("grad_accum", 1))
    batch = batch if batch > 1 else 2  # BatchNorm in train mode wants two samples
    extra = ["--set", f"epochs={2 if '--resume' in tokens else 1}", "--set", f"data.pairs_per_epoch={batch}",
             "--set", f"batch_size={batch}", "--set", "data.num_workers=0", "--no-progress"]
    if world > 1:  # several processes on 2 cores: the small Swin-T (which the ImageNet Swin-T file does not fit)
        extra += tiny_model_args() + ["--set", "pretrained_backbone="]
    return tokens + extra


def run_documented(cmd: DocCommand, work: Path, cache: Path) -> str:
    """Run one documented command in `work`; returns its stdout + stderr."""
    kind = rule(cmd)
    env = tool_env(XDG_CACHE_HOME=str(cache), PET_MASTER_PORT=str(_free_port()))
    if kind == "shell":
        proc = subprocess.run(["bash", "-c", cmd.text], cwd=work, env=env, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, (cmd.where, proc.stderr)
        return proc.stdout + proc.stderr
    tokens = cmd.tokens
    if kind == "camera":  # no camera on the test machines: the command must say so cleanly
        if Path("/dev/video" + tokens[1]).exists():
            pytest.skip("a camera is attached: the camera command would block waiting for a selection")
        proc = subprocess.run([tool(tokens[0]), *tokens[1:]], cwd=work, env=env, capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode in (1, 2) and "Traceback" not in proc.stderr, (cmd.where, proc.stderr)
        assert f"camera {tokens[1]}" in proc.stderr or "--init" in proc.stderr, (cmd.where, proc.stderr)
        return proc.stderr
    if is_training(cmd):
        tokens = scaled_training(tokens)
    if cmd.program == "tensorboard":
        tokens = tokens + ["--inspect"]
    if cmd.program == "torchrun":
        port = str(_free_port())
        tokens = [t.replace("HOST:29500", f"127.0.0.1:{port}") for t in tokens]
    runs = [tokens]
    if _option(tokens, "--node_rank") == "0" and int(_option(tokens, "--nnodes", "1")) == 2:
        twin = list(tokens)
        twin[twin.index("--node_rank") + 1] = "1"
        runs.append(twin)  # the same command as it runs on the second machine
    procs = [subprocess.Popen([tool(r[0]), *r[1:]], cwd=work, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for r in runs]
    outputs = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=600)
            assert proc.returncode == 0, (cmd.where, cmd.text, err[-4000:])
            assert "Traceback" not in err, (cmd.where, err[-4000:])
            outputs.append(out + err)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    return "\n".join(outputs)


def check_outputs(cmd: DocCommand, output: str, work: Path) -> None:
    """What the command promises: its files, and the example output the document shows."""
    tokens = cmd.tokens
    for flag in ("-o", "--output", "--out"):
        if flag in tokens:
            assert (work / tokens[tokens.index(flag) + 1]).stat().st_size > 0, (cmd.where, flag)
    if "--overlay" in tokens:
        cap = cv2.VideoCapture(str(work / _option(tokens, "--overlay")))
        assert cap.read()[0], (cmd.where, "overlay video")
        cap.release()
    if "--plot" in tokens:
        assert (work / _option(tokens, "--plot") / "success_plot.png").is_file(), cmd.where
    if cmd.program == "sparsett-eval" and tokens[1] == "run":
        name = _option(tokens, "--name") or _option(tokens, "--tracker", "sparsett")
        results = work / "results" / _option(tokens, "--dataset") / name
        assert list(results.rglob("*.txt")), (cmd.where, results)
    if is_training(cmd) and "--print-config" not in tokens and "--index-only" not in tokens:
        match = re.search(r"final checkpoint: (\S+)", output)
        assert match and (work / match.group(1)).is_file(), (cmd.where, output[-2000:])
        if "--resume" in tokens:
            assert "resumed from" in output, (cmd.where, output[-2000:])
    if "--print-config" in tokens:  # the merged recipe, with the command's overrides in it
        import yaml

        printed = yaml.safe_load(output)
        for key, value in _overrides(tokens).items():
            node = printed
            for part in key.split("."):
                node = node[part]
            assert node == yaml.safe_load(value) or float(node) == float(value), (cmd.where, key, node)
    if cmd.program == "tensorboard":
        for tag in ("train/loss", "train/cls_fc", "train/reg_fc", "train/cls_conv", "train/reg_conv",
                    "train/iou_conv", "train/lr", "train/pairs_per_s"):
            assert tag in output, (cmd.where, tag)
    exact = cmd.program == "head" or "--index-only" in tokens  # deterministic outputs: as shown, to the digit
    lines = [line for chunk in output.splitlines() for line in chunk.split("\r")]
    for shown in cmd.output:
        if "|" in shown and "%" in shown:
            continue  # a progress bar
        text = shown[4:] if shown.startswith("... ") else shown
        if exact:
            assert text in lines, (cmd.where, text, output[-2000:])
            continue
        pattern = r"\d+(?:\.\d+)?".join(re.escape(part) for part in re.split(r"\d+(?:\.\d+)?", text))
        assert any(re.search(pattern, line) for line in lines), (cmd.where, text, output[-2000:])


def run_all(commands: list[DocCommand], work: Path, cache: Path) -> int:
    done = set()
    for cmd in commands:
        key = " ".join(cmd.tokens)  # the same command shown twice (README and docs) runs once
        if key in done or rule(cmd).startswith("not run"):
            continue
        done.add(key)
        output = run_documented(cmd, work, cache)
        check_outputs(cmd, output, work)
    return len(done)


def _is_evaluation(cmd: DocCommand) -> bool:
    return not is_training(cmd) and cmd.program != "tensorboard" and not cmd.where.startswith("docs/training.md")


def test_documented_evaluation_commands(world):
    """README's evaluation section, then docs/evaluation.md, each in its own working folder."""
    commands = [c for c in documented_commands() if _is_evaluation(c)]
    for doc in ("README.md", "docs/evaluation.md"):
        mine = [c for c in commands if c.where.startswith(doc + ":")]
        assert run_all(mine, workdir(world, doc.replace("/", "_")), world / "cache") >= 3


@pytest.mark.slow
def test_documented_training_commands(world):
    """README's training section and docs/training.md (the same working folder: --resume continues the
    earlier run, tensorboard reads its logs)."""
    commands = [c for c in documented_commands() if not _is_evaluation(c)]
    assert run_all(commands, workdir(world, "training"), world / "cache") >= 8
