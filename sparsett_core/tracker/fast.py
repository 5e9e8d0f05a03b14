"""Fast inference path: options and the torch engine that runs ``template`` / ``track``.

Everything here is selected by one frozen :class:`InferenceOptions`; with the default options the
tracker runs exactly the reference path (cv2 crop on the host, fp32 eager model).

* ``precision``: "fp32" (reference), "fp16" (meant for CUDA) or "bf16" (autocast). The engine
  keeps a copy of the network whose matmul/conv weights are stored in that precision
  (:func:`half_weights`): the values autocast would cast them to on every call, computed once.
* ``gpu_crop``: the search/template crops and the normalisation run as torch ops on the model's
  device (:mod:`sparsett_core.tracker.device_crop`, bit-exact with the cv2 crop).
* ``cuda_graphs``: the fixed-shape ``track`` step is captured once per batch size and replayed
  (:class:`InferenceEngine`); CUDA only, ignored on the CPU. ``template`` runs once per target
  and stays eager. A capture that fails falls back to eager once, with the reason logged and kept
  in :attr:`InferenceEngine.fallback_reason`.
* ``pinned_memory``: frames are uploaded through a reused page-locked buffer with a non-blocking
  copy (:class:`~sparsett_core.tracker.device_crop.FrameUploader`); CUDA only.
* ``backend``: "torch" (this module), "onnxruntime" (:mod:`sparsett_core.tracker.ort_engine`) or
  "auto" (resolved by :func:`sparsett_core.tracker.select.select_inference`).

No step reads device memory back to the host before the tracker reads the frame's packed
score/box maps (:meth:`InferenceEngine.track`: one (B, L, 5) tensor, one copy per frame).
"""
from __future__ import annotations

import contextlib
import copy
import logging
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from sparsett_core.model.neck import MultiheadAttention, TemplateFeatures
from sparsett_core.model.sparsett import SparseTT

log = logging.getLogger(__name__)

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
BACKENDS = ("torch", "onnxruntime", "auto")


@dataclass(frozen=True)
class InferenceOptions:
    """How the tracker runs the network (see the module docstring).

    Attributes:
        precision: "fp32", "fp16" or "bf16" (fp16 autocast also runs on the CPU, slowly; the node refuses it there).
        cuda_graphs: capture ``track`` as a CUDA graph per batch size (CUDA only; ignored on CPU).
        gpu_crop: crop + normalise with torch ops on the model's device instead of cv2 on the host.
        pinned_memory: upload frames through a page-locked buffer, non-blocking (CUDA only).
        backend: "torch", "onnxruntime" (fp32; CPU, or CUDA/TensorRT where ONNX Runtime has them)
            or "auto" (to be resolved before use: ``select_inference``).
        ort_provider: ONNX Runtime execution provider: "auto" (the tracker device's: CPU, or CUDA
            for a CUDA device), "cpu", "cuda" or "tensorrt".
    """

    precision: str = "fp32"
    cuda_graphs: bool = False
    gpu_crop: bool = False
    pinned_memory: bool = True
    backend: str = "torch"
    ort_provider: str = "auto"

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {self.precision!r}")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {list(BACKENDS)}, got {self.backend!r}")
        if self.backend == "onnxruntime" and (self.precision != "fp32" or self.gpu_crop or self.cuda_graphs):
            raise ValueError("the onnxruntime backend runs fp32 graphs on host crops: precision fp16/bf16, gpu_crop "
                             "and cuda_graphs need backend='torch'")
        if self.ort_provider not in ("auto", "cpu", "cuda", "tensorrt"):
            raise ValueError(f"ort_provider must be auto, cpu, cuda or tensorrt, got {self.ort_provider!r}")

    @classmethod
    def fast(cls, device: str | torch.device, variant: str = "swin_t") -> "InferenceOptions":
        """The fast path for ``device`` and the model's ``variant`` (``ModelConfig.variant``) by rule alone.

        CUDA: fp16 + graphs + device crop. CPU: bf16 autocast for Swin-T only where the CPU has
        native bf16 arithmetic (AVX512-BF16 or AMX: :func:`sparsett_core.hardware.cpu_info`),
        fp32 otherwise; SparseTT-Lite stays fp32 (bf16 measured no faster and moved boxes by up to
        2 px). :func:`sparsett_core.tracker.select.select_inference` adds a start-up measurement
        on top of this rule so that the choice is never slower than fp32 on the machine at hand.
        """
        from sparsett_core.hardware import cpu_info

        if torch.device(device).type == "cuda":
            return cls(precision="fp16", cuda_graphs=True, gpu_crop=True, pinned_memory=True)
        bf16 = variant == "swin_t" and cpu_info().native_bf16
        return cls(precision="bf16" if bf16 else "fp32", cuda_graphs=False, gpu_crop=False, pinned_memory=False)


# ---------------------------------------------------------------------------------------------
# half-precision weights

# Modules whose weights autocast casts to the half type on every call (matmuls and convolutions);
# everything else (LayerNorm, BatchNorm, embeddings, biases added outside a matmul) stays float32,
# exactly as under autocast.
_MATMUL_MODULES = (nn.Linear, nn.Conv1d, nn.Conv2d)


def half_weights(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """An eval-mode copy of ``model`` whose matmul/conv weights are stored in ``dtype``.

    Run under autocast with the same ``dtype``, the copy computes exactly what ``model`` computes
    under autocast (the same values reach every kernel), without casting ~25 M weights on every
    call: autocast's cast cache is off while CUDA graphs are captured, so a replay of the original
    would re-cast them each frame. LayerNorm and BatchNorm keep float32 weights and statistics.
    A module with a separate inference form converts that form itself (``cast_inference_``, e.g.
    the Lite backbone's folded copy).
    """
    net = copy.deepcopy(model).eval()
    done: set[int] = set()
    for m in net.modules():
        if id(m) in done:
            continue
        if hasattr(m, "cast_inference_"):
            m.cast_inference_(dtype)
            done.update(id(s) for s in m.modules())
        elif isinstance(m, _MATMUL_MODULES):
            for p in m.parameters(recurse=False):
                p.data = p.data.to(dtype)
        elif isinstance(m, MultiheadAttention):  # packed q|k|v projection applied with F.linear
            m.in_proj_weight.data = m.in_proj_weight.data.to(dtype)
            m.in_proj_bias.data = m.in_proj_bias.data.to(dtype)
    return net


# ---------------------------------------------------------------------------------------------
# model steps

class _Graphed:
    """One fixed-shape step captured as a CUDA graph; inputs are copied into static buffers.

    ``__call__`` copies the inputs into ``static_in``, replays, and returns ``static_out``: the same
    tensor on every call, overwritten by the next replay (read or clone it first).
    ``_capture`` / ``_replay`` are the only CUDA calls, so the buffer logic can be checked on the
    CPU with an emulating subclass (test/test_capture_safety.py).
    """

    def __init__(self, fn: Callable[..., torch.Tensor], example: Sequence[torch.Tensor], warmup: int = 3) -> None:
        self.fn = fn
        self.static_in = [t.clone() for t in example]
        self.static_out = self._capture(warmup)

    def _capture(self, warmup: int) -> torch.Tensor:
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):  # warm-up off the capture stream (cuBLAS / cuDNN workspaces, lazy init)
            for _ in range(warmup):
                self.fn(*self.static_in)
        torch.cuda.current_stream().wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        # thread_local: a CUDA call of another thread (the node's image callback, a second
        # tracker) during the capture does not invalidate it
        with torch.cuda.graph(self.graph, capture_error_mode="thread_local"):
            return self.fn(*self.static_in)

    def _replay(self) -> None:
        self.graph.replay()

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        for buf, t in zip(self.static_in, inputs):
            if buf.data_ptr() != t.data_ptr():
                buf.copy_(t, non_blocking=True)
        self._replay()
        return self.static_out


def _flatten(feats: TemplateFeatures) -> list[torch.Tensor]:
    return [feats.enc] + [t for kv in feats.cross_kv for t in kv]


def _unflatten(ts: Sequence[torch.Tensor]) -> TemplateFeatures:
    kv = tuple((ts[i], ts[i + 1]) for i in range(1, len(ts), 2))
    return TemplateFeatures(ts[0], kv)


def concat_features(feats: Sequence[TemplateFeatures]) -> TemplateFeatures:
    """N TemplateFeatures (batch B_i each) -> one with batch sum(B_i) (N independent templates)."""
    parts = [_flatten(f) for f in feats]
    return _unflatten([torch.cat(col, dim=0) for col in zip(*parts)])


def pack_maps(score: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """score (B, L), boxes (B, L, 4) -> (B, L, 5) float32 ``[score, x1, y1, x2, y2]`` (one read-back)."""
    return torch.cat([score.float()[..., None], boxes.float()], dim=-1)


def read_maps(maps: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Packed (B, L, 5) maps -> score (B, L), boxes (B, L, 4) float32 numpy: the one host read of a frame."""
    m = maps.cpu().numpy() if isinstance(maps, torch.Tensor) else maps
    return m[..., 0], m[..., 1:]


class InferenceEngine:
    """``template`` / ``track`` of a SparseTT on torch, under the options' precision, graphed on CUDA if asked.

    Args:
        model: the network (eval mode, on ``device``). For fp16/bf16 the engine keeps a snapshot
            with half weights (:func:`half_weights`): weights changed in the model afterwards need
            a new engine (a new ``Tracker``).
        device: where it runs.
        options: the inference options (backend "torch").

    Attributes:
        graphs: True while the track step runs as CUDA graphs.
        fallback_reason: why CUDA graphs were given up (None while they work or were not asked for).
    """

    graph_type = _Graphed  # the capture wrapper (a test substitutes a CPU emulation)
    backend = "torch"

    def __init__(self, model: SparseTT, device: torch.device, options: InferenceOptions) -> None:
        self.model, self.device, self.options = model, device, options
        self.net = model if options.precision == "fp32" else half_weights(model, PRECISIONS[options.precision])
        self.graphs = options.cuda_graphs and device.type == "cuda"
        self.fallback_reason: str | None = None
        self._track_graphs: dict[int, _Graphed] = {}

    def describe(self) -> str:
        """What runs the network now, in one line (the node's status): backend, precision, graphs,
        and why CUDA graphs were given up if they were."""
        o = self.options
        text = f"torch {o.precision}" + (", CUDA graphs" if self.graphs else "") + (", crop on device" if o.gpu_crop else "")
        return text + (f"; {self.fallback_reason}" if self.fallback_reason else "")

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.options.precision == "fp32":
            return contextlib.nullcontext()
        # the weights are already half (nothing to cache); the cache must be off during capture anyway
        return torch.autocast(self.device.type, dtype=PRECISIONS[self.options.precision], cache_enabled=False)

    def template(self, z: torch.Tensor) -> TemplateFeatures:
        """z (B, 3, Z, Z) -> TemplateFeatures (own tensors, safe to keep). Eager: it runs once per target."""
        with torch.inference_mode(), self.autocast():
            return self.net.template(z)

    def _track_eager(self, x: torch.Tensor, *feats: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), self.autocast():
            return pack_maps(*self.net.track(x, _unflatten(feats)))

    def track(self, x: torch.Tensor, feats: TemplateFeatures) -> torch.Tensor:
        """x (B, 3, X, X) -> packed maps (B, L, 5) float32 on the device (:func:`read_maps`).

        With CUDA graphs the result is the graph's output buffer, overwritten by the next call.
        """
        flat = _flatten(feats)
        graph = self._graph(x, flat) if self.graphs else None
        if graph is None:
            return self._track_eager(x, *flat)
        with torch.inference_mode():
            return graph(x, *flat)

    def _graph(self, x: torch.Tensor, flat: list[torch.Tensor]) -> _Graphed | None:
        """The graph for this batch size, captured on first use; None (eager from now on) if capture fails."""
        B = x.shape[0]
        if B not in self._track_graphs:
            try:
                with torch.inference_mode():
                    self._track_graphs[B] = self.graph_type(self._track_eager, [x, *flat])
            except Exception as exc:  # noqa: BLE001 - any capture failure: the eager step still works
                self.graphs = False
                self._track_graphs.clear()
                self.fallback_reason = f"CUDA-graph capture failed ({type(exc).__name__}: {exc}); running eager"
                log.warning("%s", self.fallback_reason)
                return None
        return self._track_graphs[B]


def make_engine(model: SparseTT, device: torch.device, options: InferenceOptions):
    """The engine of ``options.backend``: :class:`InferenceEngine` (torch) or
    :class:`~sparsett_core.tracker.ort_engine.OrtEngine` (ONNX Runtime).

    Raises:
        ValueError: backend "auto" (resolve it first with ``select_inference``).
        RuntimeError: ONNX Runtime asked for but not usable (the message says why).
    """
    if options.backend == "torch":
        return InferenceEngine(model, device, options)
    if options.backend == "onnxruntime":
        from sparsett_core.tracker.ort_engine import OrtEngine

        return OrtEngine(model, device, options)
    raise ValueError("backend 'auto' must be resolved before building a tracker: "
                     "sparsett_core.tracker.select.select_inference(model, device)")
