"""Shared test fixtures: the ../shared test data, the reference checkpoint, ROS guards.

Test data (fixtures and real sequences) lives in ../shared beside the checkout and is never
copied into the package. Where it is absent (a user's clone) tests that need it skip with a
reason naming the path; under CI (CI=true) its absence is an error.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SPARSETT_SHARED", REPO.parent / "shared")).resolve()
FIXTURE_DIR = SHARED / "fixtures" / "sparsett_reference"
SEQUENCES_DIR = SHARED / "data" / "sequences"
TRAIN_DIR = SHARED / "data" / "train"
NETNS_RUN = SHARED / "tools" / "netns-run"


def require_shared(path: Path) -> Path:
    """Return `path` if it exists; otherwise skip (user's clone) or fail (CI)."""
    if path.exists():
        return path
    msg = f"test data not found: {path} (expected ../shared beside the checkout)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(msg + "; under CI it must be present")
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
