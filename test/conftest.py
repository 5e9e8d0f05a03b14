"""Shared test fixtures: the ../shared test data, the reference checkpoint, ROS guards.

Test data (fixtures and real sequences) lives in ../shared beside the checkout and is never
copied into the package. It is looked for in this order: ``$SPARSETT_SHARED``; ``shared/`` inside
the checkout (git-ignored: a copy made for a machine where ../shared is not beside the checkout,
e.g. a GPU machine, see docs/gpu.md); ``../shared``. Where it is absent (a user's clone) tests that
need it skip with a reason naming the paths; under CI (CI=true) or with SPARSETT_STRICT_DATA=1 its
absence is an error.
"""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Tests press Ctrl-C (SIGINT) on the tools and nodes they start. A test run started in the background
# (`scripts/test.sh &` in a script) inherits SIGINT *ignored*, and children keep an ignored signal
# across exec: Python and launch would never see the Ctrl-C. A handled signal is reset to the default
# on exec, so handling it here gives every child a terminal's default.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def _roots() -> list[Path]:
    """Where test data is looked for, in order: $SPARSETT_SHARED, shared/ in the checkout, ../shared."""
    roots = [Path(os.environ["SPARSETT_SHARED"])] if os.environ.get("SPARSETT_SHARED") else []
    return [p.resolve() for p in (*roots, REPO / "shared", REPO.parent / "shared")]


def shared_path(relative: str) -> Path:
    """The first root holding ``relative`` (a copy may hold only part of ../shared); else under the
    first root (to name it in the skip or failure message)."""
    candidates = [root / relative for root in _roots()]
    return next((p for p in candidates if p.exists()), candidates[0])


SHARED = next((r for r in _roots() if r.exists()), _roots()[-1])
STRICT_DATA = os.environ.get("CI", "").lower() == "true" or os.environ.get("SPARSETT_STRICT_DATA") == "1"
FIXTURE_DIR = shared_path("fixtures/sparsett_reference")
SEQUENCES_DIR = shared_path("data/sequences")
TRAIN_DIR = shared_path("data/train")
NETNS_RUN = shared_path("tools/netns-run")


def require_shared(path: Path) -> Path:
    """Return `path` if it exists; otherwise skip (user's clone) or fail (CI, SPARSETT_STRICT_DATA=1)."""
    if path.exists():
        return path
    msg = f"test data not found: {path} (looked in {', '.join(str(r) for r in _roots())})"
    if STRICT_DATA:
        pytest.fail(msg + "; under CI or SPARSETT_STRICT_DATA=1 it must be present")
    pytest.skip(msg)


@pytest.fixture(scope="session")
def fixture_dir() -> Path:
    return require_shared(FIXTURE_DIR)


@pytest.fixture(scope="session")
def sequences_dir() -> Path:
    return require_shared(SEQUENCES_DIR)


@pytest.fixture(scope="session")
def train_dir() -> Path:
    return require_shared(TRAIN_DIR)


@pytest.fixture(scope="session")
def crossing_start(sequences_dir):
    """The first 4 frames of otb_crossing ((H, W, 3) BGR uint8) and its first ground-truth box (x, y, w, h)."""
    import cv2
    import numpy as np

    seq = sequences_dir / "otb_crossing"
    frames = [cv2.imread(str(f)) for f in sorted((seq / "img").glob("*.jpg"))[:4]]
    gt = np.loadtxt(seq / "groundtruth_rect.txt", delimiter=",")[0]
    return frames, tuple(float(v) for v in gt)


@pytest.fixture(scope="session")
def reference(fixture_dir):
    """The official implementation's outputs (reference_seed0.npz) and tolerances."""
    import json

    import numpy as np

    ref = np.load(fixture_dir / "reference_seed0.npz", allow_pickle=False)
    tol = json.loads((fixture_dir / "tolerances.json").read_text())["arrays"]
    return ref, tol


@pytest.fixture(scope="session")
def reference_weights(fixture_dir):
    """The fixture's numpy recipe module (reference_weights.py), imported from ../shared."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("reference_weights", fixture_dir / "reference_weights.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def official_checkpoint(reference_weights, tmp_path_factory) -> Path:
    """An official-format SparseTT checkpoint with the fixture's seed-0 weights."""
    path = tmp_path_factory.mktemp("ckpt") / "sparsett_seed0_official.pkl"
    reference_weights.to_official_checkpoint(0, str(path))
    return path


@pytest.fixture(scope="module")
def lite():
    """The shipped default model (SparseTT-Lite v2), loaded once per test module."""
    from sparsett_core import SparseTT

    return SparseTT.from_checkpoint("default")


@pytest.fixture(scope="module")
def swin(official_checkpoint):
    """The paper-size model with the fixture's seed-0 weights, from an official-format file, once per module."""
    from sparsett_core import SparseTT

    return SparseTT.from_checkpoint(official_checkpoint)


@pytest.fixture
def one_thread():
    """One intra-op thread for the test (restored after): on a shared 2-core machine two OpenMP
    threads are many times slower, and a fixed count keeps results bit-identical."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def no_tf32():
    """CUDA fp32 without TF32 for the duration of a test (restored afterwards, also on failure)."""
    import torch

    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def ros_guard() -> None:
    """Refuse to create a ROS context outside the private network namespace.

    On these machines DDS discovery must not leave loopback: scripts/test.sh runs pytest
    through ../shared/tools/netns-run, which sets SPARSETT_NETNS=1.
    """
    if NETNS_RUN.exists() and os.environ.get("SPARSETT_NETNS") != "1":
        pytest.fail(f"ROS tests must run inside {NETNS_RUN}: use scripts/test.sh")


@pytest.fixture
def ros_context():
    """A fresh rclpy context, shut down after the test."""
    ros_guard()
    import rclpy
    from rclpy.context import Context

    ctx = Context()
    rclpy.init(context=ctx)
    try:
        yield ctx
    finally:
        rclpy.shutdown(context=ctx)


def pytest_report_header(config):
    return f"shared test data: {SHARED} ({'present' if SHARED.exists() else 'absent'}); python {sys.version.split()[0]}"


def pytest_terminal_summary(terminalreporter):
    """Print what tests measured (record_property), e.g. the node's end-to-end latency."""
    rows = [(rep.nodeid, name, value)
            for reps in terminalreporter.stats.values() for rep in reps
            if getattr(rep, "when", None) == "call" for name, value in getattr(rep, "user_properties", ())]
    if rows:
        terminalreporter.section("measured by the tests")
        for nodeid, name, value in rows:
            terminalreporter.write_line(f"{nodeid.split('::')[-1]}: {name} = {value}")


@pytest.fixture(scope="session")
def colcon_install() -> Path:
    """`colcon build` of this repository, once per session (test/launch_tools.py); the install/ folder."""
    from launch_tools import colcon_install as build

    return build()


@pytest.fixture(scope="session")
def train_extra_dir() -> Path:
    """../shared/data/train_extra: more real sequences in the layout of data/train (some with NaN rows)."""
    return require_shared(shared_path("data/train_extra"))


@pytest.fixture(scope="session")
def nanotrack_onnx() -> tuple[Path, Path]:
    """NanoTrack v2's ONNX pair for cv2.TrackerNano: (backbone, neck/head)."""
    folder = require_shared(shared_path("weights/nanotrack/onnx_v2"))
    return require_shared(folder / "nanotrack_backbone_sim.onnx"), require_shared(folder / "nanotrack_head_sim.onnx")


@pytest.fixture(scope="session")
def reference_doc() -> str:
    """../shared/docs/sparsett_reference.md: what the official SparseTT computes (its test configs, §3)."""
    return require_shared(shared_path("docs/sparsett_reference.md")).read_text()


@pytest.fixture
def shell(colcon_install, tmp_path):
    """A shell that sourced install/setup.bash: (env, cwd). Its ros2 daemon is stopped afterwards, and
    no process started with this env (they all carry a unique marker) may outlive the test."""
    import uuid

    from launch_tools import install_env, marked_env, require_launch, run_ros2, wait_no_processes

    ros_guard()
    require_launch()
    tag = uuid.uuid4().hex
    env = marked_env(install_env(colcon_install), tag)
    yield env, tmp_path
    run_ros2(["daemon", "stop"], env, check=False)
    left = wait_no_processes(tag, timeout=15)
    assert not left, f"processes outlived the test: {left}"
