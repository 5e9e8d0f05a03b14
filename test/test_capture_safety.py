"""CPU checks of the CUDA-graph path: what can be proved about capture without a GPU.

A CUDA graph replays the kernels of one captured call, so the captured steps must not read device
memory on the host (``.item()``, ``bool(t)``, ``nonzero``, boolean-mask indexing) or create
tensors from host data, and the graph wrapper must feed the static input buffers and hand out its
static outputs correctly. Both are checked here on the CPU:

* :class:`SyncAudit` records, at the ATen dispatch level, every op that would synchronise the host
  with a CUDA device; it runs the template and track steps on the code path CUDA takes (the
  CPU-only partition top-k switched off) for both shipped architectures and both precisions, and
  the whole ``Tracker.update`` with the device crop.
* :class:`EmulatedGraph` replaces only the two CUDA calls of ``fast._Graphed`` (capture, replay),
  so the engine's graph logic (per-batch capture of the track step, static buffers, the eager
  fallback after a failed capture) runs for real and must give the eager results bit for bit.
"""
from __future__ import annotations

import logging

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from sparsett_core import InferenceOptions, MultiTracker, SparseTT, Tracker
from sparsett_core.tracker.fast import _Graphed

aten = torch.ops.aten
# ops whose result the host must wait for on CUDA (data-dependent shape or a value read back)
SYNC_OPS = {aten._local_scalar_dense.default, aten.nonzero.default, aten.masked_select.default, aten.equal.default,
            aten.is_nonzero.default, aten._unique2.default, aten.unique_consecutive.default, aten.unique_dim.default,
            aten.repeat_interleave.Tensor, aten.allclose.default}
# tensors built from host data inside a step (a pageable host -> device copy on CUDA)
HOST_DATA_OPS = {aten.lift_fresh.default, aten.lift_fresh_copy.default}


class SyncAudit(TorchDispatchMode):
    """Records the ATen ops run under it.

    ``violations``: ops that would make the host wait for a CUDA device (a value read back, a
    data-dependent shape). ``host_data``: tensors made from host data (an upload on CUDA, and
    inside a captured step a pageable copy that capture refuses).
    """

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[str] = []
        self.violations: list[str] = []
        self.host_data: list[tuple[int, ...]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        self.ops.append(str(func))
        if func in SYNC_OPS:
            self.violations.append(f"{func}: reads a device value on the host")
        elif func in HOST_DATA_OPS:
            self.host_data.append(tuple(args[0].shape))
        elif func in (aten.index.Tensor, aten.index_put.default, aten.index_put_.default):
            if any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in args[1] if i is not None):
                self.violations.append(f"{func} with a boolean mask: nonzero inside")
        return func(*args, **kwargs)


def cuda_code_path(model: SparseTT) -> SparseTT:
    """Switch off the CPU-only branches so the CPU runs the ops CUDA runs (partition top-k)."""
    model.use_partition_topk(False)
    return model


class EmulatedGraph(_Graphed):
    """CPU stand-in for a CUDA graph: capture runs the step once, replay reruns it on the static
    inputs and writes the results into the captured output tensors, as a replay does."""

    captures: list[int] = []

    def _capture(self, warmup: int) -> object:
        EmulatedGraph.captures.append(self.static_in[0].shape[0])
        return self.fn(*self.static_in)

    def _replay(self) -> None:
        self.static_out.copy_(self.fn(*self.static_in))


class FailingGraph(EmulatedGraph):
    """A capture that fails as a CUDA capture can (an op the graph cannot record)."""

    def _capture(self, warmup: int) -> object:
        EmulatedGraph.captures.append(self.static_in[0].shape[0])
        raise RuntimeError("operation not permitted when stream is capturing")


def emulate_graphs(engine) -> None:
    engine.graphs, engine.graph_type = True, EmulatedGraph


@pytest.fixture(scope="module")
def lite():
    return cuda_code_path(SparseTT.from_checkpoint("default"))


@pytest.fixture(scope="module")
def swin(official_checkpoint):
    return cuda_code_path(SparseTT.from_checkpoint(official_checkpoint))


def test_audit_catches_host_reads():
    """The audit itself: each planted host read is reported, plain device ops are not."""
    x = torch.randn(4, 5)
    for planted in (lambda: float(x.sum()), lambda: bool((x > 0).any()), lambda: x[x > 0], lambda: x.nonzero()):
        with SyncAudit() as audit:
            planted()
        assert audit.violations, planted
    with SyncAudit() as audit:
        x + torch.tensor([1.0, 2, 3, 4, 5])
    assert audit.host_data == [(5,)]
    with SyncAudit() as audit:
        y = (x.softmax(-1) @ x.T).topk(2, dim=-1).values.clamp(0, 1)
        torch.where(x > 0, x, y.sum())
        x[1:3, :2].fill_(4)
    assert audit.ops and not audit.violations and not audit.host_data


@pytest.mark.parametrize("arch", ["lite", "swin"])
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_graph_steps_never_read_the_device(arch, precision, request):
    """template and track (the captured steps) are free of host reads on the CUDA code path."""
    model = request.getfixturevalue(arch)
    tracker = Tracker(model, options=InferenceOptions(precision=precision, gpu_crop=True))
    z = torch.randn(2, 3, model.config.z_size, model.config.z_size)
    x = torch.randn(2, 3, model.config.x_size, model.config.x_size)
    with SyncAudit() as audit:
        feats = tracker.engine.template(z)
        tracker.engine.track(x, feats)
    assert len(audit.ops) > 100, "the audit saw no model ops"
    assert not audit.violations, audit.violations
    assert not audit.host_data, f"tensors made from host data inside a captured step: {audit.host_data}"


@pytest.mark.parametrize("num_targets", [1, 3])
def test_device_crop_update_reads_the_device_once(lite, crossing_start, num_targets):
    """The whole update with the device crop: three uploads (frame, sampling plan, border colours)
    whatever the number of targets, and no host read before the score/box maps (which the CPU
    reads without an op)."""
    images, box = crossing_start
    boxes = [box, (40.0, 60.0, 50.0, 70.0), (250.0, 100.0, 40.0, 30.0)][:num_targets]
    tracker = MultiTracker(lite, options=InferenceOptions(gpu_crop=True))
    tracker.init(images[0], boxes)
    with SyncAudit() as audit:
        tracker.update(images[1])
    assert not audit.violations, audit.violations
    H, W = images[1].shape[:2]
    x_size = lite.config.x_size
    assert sorted(audit.host_data) == sorted([(H, W, 3), (4, num_targets, x_size), (num_targets, 3)])


def test_emulated_graphs_equal_eager(lite, crossing_start):
    """Graph path (static buffers, per-batch capture) vs eager: bit-identical boxes and scores,
    through an init, updates, and re-inits that change and restore the number of targets."""
    images, box = crossing_start
    options = InferenceOptions(gpu_crop=True, cuda_graphs=True)
    EmulatedGraph.captures.clear()
    graphed = MultiTracker(lite, options=options)
    emulate_graphs(graphed._proto.engine)
    eager = MultiTracker(lite, options=options)
    other = [(40.0, 60.0, 50.0, 70.0), (250.0, 100.0, 40.0, 30.0)]
    for boxes in ([box, other[0]], [box, *other], [other[1], box]):
        graphed.init(images[0], boxes)
        eager.init(images[0], boxes)
        for image in images[1:3]:
            assert graphed.update(image) == eager.update(image)
    # only the track step is captured (template runs once per target, eagerly): once per batch
    # size (2 and 3), reused when 2 comes back
    assert sorted(EmulatedGraph.captures) == [2, 3]
    assert graphed._proto.engine.graphs and graphed._proto.engine.fallback_reason is None


def test_emulated_graphs_single_target_equal_eager(lite, crossing_start):
    """A graphed Tracker: template features it keeps are its own, and every update equals eager."""
    images, box = crossing_start
    tracker = Tracker(lite, options=InferenceOptions(cuda_graphs=True))
    emulate_graphs(tracker.engine)
    reference = Tracker(lite)
    tracker.init(images[0], box)
    reference.init(images[0], box)
    kept = tracker.template_features
    kept_enc = kept.enc.clone()
    z = lite.config.z_size
    tracker.engine.template(torch.zeros(1, 3, z, z))  # another template through the same engine
    assert torch.equal(kept.enc, kept_enc)
    for image in images[1:]:
        assert tracker.update(image) == reference.update(image)


class _Records(logging.Handler):
    """Collects the records of one logger (caplog cannot be used: once launch_testing's pytest
    plugin has imported launch, new loggers do not propagate to the root logger)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_failed_capture_falls_back_to_eager_once(lite, crossing_start):
    """A capture that raises: the engine logs the reason, runs eager from then on (no capture retried
    on later frames or batch sizes) and gives the eager results."""
    images, box = crossing_start
    EmulatedGraph.captures.clear()
    tracker = MultiTracker(lite, options=InferenceOptions(cuda_graphs=True))
    engine = tracker._proto.engine
    engine.graphs, engine.graph_type = True, FailingGraph
    reference = MultiTracker(lite)
    records, logger = _Records(), logging.getLogger("sparsett_core.tracker.fast")
    logger.addHandler(records)
    try:
        for boxes in ([box], [box, (40.0, 60.0, 50.0, 70.0)]):
            tracker.init(images[0], boxes)
            reference.init(images[0], boxes)
            for image in images[1:]:
                assert tracker.update(image) == reference.update(image)
    finally:
        logger.removeHandler(records)
    assert EmulatedGraph.captures == [1], "capture must be tried once, not on every frame"
    assert not engine.graphs
    assert "capture failed" in engine.fallback_reason and "not permitted" in engine.fallback_reason
    assert records.messages.count(engine.fallback_reason) == 1
