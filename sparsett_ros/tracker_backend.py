"""Builds the object the node tracks with: the SparseTT model + Tracker, or a plug-in.

The node only needs `init(frame_bgr, (x, y, w, h))` and `update(frame_bgr) -> ((x, y, w, h), score)`
(sparsett_core's Tracker contract). `load_factory("module:function")` makes that object
replaceable (the `tracker_factory` parameter); tests use it to run the ROS graph logic with a
cheap deterministic tracker, users can plug in another tracker with the same contract.
"""
from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np

from sparsett_ros.params import TrackerParams

DEFAULT_FACTORY = "sparsett_ros.tracker_backend:build_sparsett_tracker"


class StartupError(RuntimeError):
    """The node cannot start (bad checkpoint, device, parameter); the message says what to do."""


class TrackerLike(Protocol):
    def init(self, frame_bgr: np.ndarray, box: tuple[float, float, float, float]) -> None: ...

    def update(self, frame_bgr: np.ndarray) -> tuple[tuple[float, float, float, float], float]: ...


@dataclass
class Backend:
    """What a factory returns.

    Attributes:
        tracker: object with the Tracker contract.
        make_multi: builds an N-target tracker (`init(frame, boxes)`, `update(frame) -> [(box, score)]`)
            for ~/init_multi; None: the node runs one `tracker`-like object per target
            (`SequentialMulti`, built by calling the factory again).
        random_weights: True when the model has no trained weights (flagged in ~/status).
        description: one line for the start-up log (model, device, precision).
        inference: returns what runs the network now, one line for ~/status (backend, precision,
            CUDA graphs or why they were given up); None: not reported.
    """

    tracker: Any
    random_weights: bool
    description: str
    make_multi: Callable[[], Any] | None = None
    inference: Callable[[], str] | None = None


TrackerFactory = Callable[[TrackerParams, Any], Backend]


def load_factory(spec: str) -> TrackerFactory:
    """Import a factory given as "package.module:function"."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise StartupError(f"tracker_factory {spec!r} must look like 'package.module:function'")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise StartupError(f"tracker_factory {spec!r} cannot be imported: {exc}") from exc


def resolve_device(device: str) -> str:
    """auto -> cuda when available, else cpu; cuda without CUDA is a StartupError."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise StartupError("device:=cuda but torch sees no CUDA GPU (torch "
                           f"{torch.__version__}): use device:=auto or cpu, or install a CUDA build of torch")
    return device


class InferenceTracker:
    """sparsett_core's Tracker run under torch.inference_mode; forwards its state for LOST handling."""

    def __init__(self, tracker: Any) -> None:
        self.tracker = tracker

    def init(self, frame_bgr: np.ndarray, box: tuple[float, float, float, float]) -> None:
        import torch

        with torch.inference_mode():
            self.tracker.init(frame_bgr, box)

    def update(self, frame_bgr: np.ndarray) -> tuple[tuple[float, float, float, float], float]:
        import torch

        with torch.inference_mode():
            box, score = self.tracker.update(frame_bgr)
        return tuple(float(v) for v in box), float(score)

    @property
    def state(self) -> tuple[float, float, float, float]:
        """(cx, cy, w, h) the next search is centred on."""
        return self.tracker.state

    def set_state(self, cx: float, cy: float, w: float, h: float) -> None:
        self.tracker.set_state(cx, cy, w, h)


class InferenceMultiTracker:
    """sparsett_core's MultiTracker (one batched step for N targets) under torch.inference_mode."""

    def __init__(self, multi: Any) -> None:
        self.multi = multi

    def init(self, frame_bgr: np.ndarray, boxes: list[tuple[float, float, float, float]]) -> None:
        import torch

        with torch.inference_mode():
            self.multi.init(frame_bgr, boxes)

    def update(self, frame_bgr: np.ndarray) -> list[tuple[tuple[float, float, float, float], float]]:
        import torch

        with torch.inference_mode():
            out = self.multi.update(frame_bgr)
        return [(tuple(float(v) for v in box), float(score)) for box, score in out]


class SequentialMulti:
    """N single-target trackers (from `make_one()`) run one after the other: the multi-target fallback."""

    def __init__(self, make_one: Callable[[], Any]) -> None:
        self.make_one = make_one
        self.trackers: list[Any] = []

    def init(self, frame_bgr: np.ndarray, boxes: list[tuple[float, float, float, float]]) -> None:
        trackers = []
        for box in boxes:
            tracker = self.make_one()
            tracker.init(frame_bgr, box)
            trackers.append(tracker)
        self.trackers = trackers

    def update(self, frame_bgr: np.ndarray) -> list[tuple[tuple[float, float, float, float], float]]:
        return [tracker.update(frame_bgr) for tracker in self.trackers]


def inference_threads(requested: int, torch_default: int, cores: int) -> int:
    """CPU threads for inference.

    Args:
        requested: the ``num_threads`` parameter; 0 = automatic.
        torch_default: ``torch.get_num_threads()`` before any change (follows OMP_NUM_THREADS).
        cores: CPU cores this process may run on.
    Returns:
        ``requested`` if set; otherwise torch's default, capped so that one core stays free for
        the executor, DDS and the camera driver (on a 2-core computer: 1 thread, measured in
        docs/lite.md to keep up with 30 Hz where 2 threads dropped frames).
    """
    if requested > 0:
        return requested
    return max(1, min(torch_default, cores - 1))


def inference_options(params: TrackerParams) -> Any:
    """sparsett_core InferenceOptions from the node parameters (fast_path = backend auto, overriding the others)."""
    from sparsett_core import InferenceOptions

    if params.fast_path:  # chosen when the tracker is built: rule + a short measurement (select.py)
        return InferenceOptions(backend="auto")
    return InferenceOptions(precision=params.precision, cuda_graphs=params.cuda_graphs, gpu_crop=params.gpu_crop,
                            backend=params.backend)


def _load_model(params: TrackerParams, device: str, logger: Any) -> tuple[Any, str]:
    """(model, description) for `params.checkpoint`; model None means "use random weights".

    "" or "default": the SparseTT-Lite weights shipped with the package; "random": random weights;
    anything else: a checkpoint file. Random weights (asked for, or instead of a checkpoint that
    cannot be loaded) need allow_random_weights: true.
    """
    from sparsett_core import SparseTT
    from sparsett_core.weights import is_default

    spec = params.checkpoint.strip()
    hint = ("set checkpoint:=/path/to/model (the GOT-10k or full-data SparseTT model, see README), leave it empty "
            "for the shipped SparseTT-Lite weights, or allow_random_weights:=true for a demo on random weights")
    if spec == "random":
        if not params.allow_random_weights:
            raise StartupError(f"checkpoint:=random needs allow_random_weights:=true; or {hint}")
        return None, "RANDOM WEIGHTS"
    if is_default(spec):
        from sparsett_core.weights import DEFAULT_CHECKPOINT_NAME, WEIGHTS_DIR

        name = f"the default SparseTT-Lite weights ({WEIGHTS_DIR / DEFAULT_CHECKPOINT_NAME})"
    else:
        name = repr(str(Path(spec).expanduser()))
    try:
        model = SparseTT.from_checkpoint("default" if is_default(spec) else str(Path(spec).expanduser()), device=device)
    except Exception as exc:  # noqa: BLE001 (any loader error becomes one clear start-up error)
        if not params.allow_random_weights:
            raise StartupError(f"checkpoint {name} could not be loaded: {exc}; {hint}") from exc
        if logger is not None:
            logger.warning(f"checkpoint {name} could not be loaded ({exc}): RANDOM WEIGHTS (allow_random_weights)")
        return None, "RANDOM WEIGHTS"
    return model, name


def build_sparsett_tracker(params: TrackerParams, logger: Any = None) -> Backend:
    """SparseTT model from `params.checkpoint` (or random weights) wrapped in sparsett_core's Tracker.

    Raises:
        StartupError: missing or unreadable checkpoint and allow_random_weights false, unavailable
            device or precision.
    """
    device = resolve_device(params.device)
    if params.precision == "fp16" and device != "cuda":
        raise StartupError("precision:=fp16 needs CUDA: use precision:=fp32 (or bf16) on the CPU")
    try:
        from sparsett_core import SparseTT, Tracker
    except ImportError as exc:
        raise StartupError(f"sparsett_core is not importable ({exc}): install the package (scripts/setup.sh)") from exc

    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    torch.set_num_threads(inference_threads(params.num_threads, torch.get_num_threads(), cores))
    if logger is not None:
        logger.info(f"inference on {device}, {torch.get_num_threads()} CPU thread(s) of {cores} cores (num_threads); "
                    f"torch {torch.__version__} from {Path(torch.__file__).parent}, Python {sys.executable}")
    model, source = _load_model(params, device, logger)
    random_weights = model is None
    if random_weights:
        from sparsett_core.config import ModelConfig

        model = SparseTT(ModelConfig()).to(device).eval()
    try:
        tracker = Tracker(model, preset=params.preset or None, device=device, options=inference_options(params))
    except (ValueError, KeyError, RuntimeError) as exc:  # RuntimeError: e.g. onnxruntime not installed
        raise StartupError(f"cannot build the tracker: {exc}") from exc
    if tracker.selection is not None and logger is not None:
        logger.info(f"fast path: {tracker.selection.reason}")
    engines = [tracker.engine]

    def make_multi() -> InferenceMultiTracker:
        from sparsett_core import MultiTracker

        multi = MultiTracker(model, preset=params.preset or None, device=device, options=tracker.options)
        engines.append(multi._proto.engine)
        return InferenceMultiTracker(multi)

    def inference() -> str:  # the single-target engine, and the multi-target one's if it differs
        texts = list(dict.fromkeys(e.describe() for e in (engines[0], engines[-1])))
        return "; multi-target: ".join(texts)

    return Backend(InferenceTracker(tracker), random_weights,
                   f"SparseTT from {source} on {device}, {tracker.engine.describe()}, preset {tracker.preset.name}",
                   make_multi, inference)


def warm_up(tracker: Any, iterations: int, size: tuple[int, int] = (640, 480)) -> None:
    """Run init + `iterations` updates on a synthetic frame so the first real frame is not slow."""
    if iterations <= 0:
        return
    width, height = size
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    tracker.init(frame, (width * 0.4, height * 0.4, width * 0.2, height * 0.2))
    for _ in range(iterations):
        tracker.update(frame)
