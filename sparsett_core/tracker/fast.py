"""Fast inference path: options, device-side crop + normalisation, frame upload, CUDA-graph steps.

Everything here is selected by one frozen :class:`InferenceOptions`; with the default options the
tracker runs exactly the reference path (cv2 crop on the host, fp32 eager model).

* ``precision``: "fp32" (reference), "fp16" (meant for CUDA) or "bf16" (autocast).
* ``gpu_crop``: the search/template crops and the normalisation run as torch ops on the model's
  device (:func:`crop_batch`), an exact emulation of the reference ``cv2.warpAffine`` crop
  (OpenCV's 1/32-px fixed-point bilinear sampling); on the CPU it runs the same torch code.
* ``cuda_graphs``: the fixed-shape ``template`` / ``track`` steps are captured once per batch size
  and replayed (:class:`InferenceEngine`); CUDA only, ignored on the CPU (eager, identical result).
* ``pinned_memory``: frames are uploaded through a reused page-locked buffer with a non-blocking
  copy (:class:`FrameUploader`); CUDA only.

No step reads device memory back to the host before the tracker reads the score/box maps of the
frame (one synchronisation per frame).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from sparsett_core.model.neck import TemplateFeatures
from sparsett_core.model.sparsett import SparseTT
from sparsett_core.tracker.crop import context_scale

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

# OpenCV warpAffine fixed point (imgwarp.cpp): AB_BITS = 10, INTER_BITS = 5, INTER_REMAP_COEF_BITS = 15.
_AB_SCALE = 1 << 10
_INTER_TAB = 1 << 5
_COEF_BITS = 15


@dataclass(frozen=True)
class InferenceOptions:
    """How the tracker runs the network (see the module docstring).

    Attributes:
        precision: "fp32", "fp16" or "bf16" (fp16 autocast also runs on the CPU, slowly; the node refuses it there).
        cuda_graphs: capture ``template``/``track`` as CUDA graphs (CUDA only; ignored on CPU).
        gpu_crop: crop + normalise with torch ops on the model's device instead of cv2 on the host.
        pinned_memory: upload frames through a page-locked buffer, non-blocking (CUDA only).
    """

    precision: str = "fp32"
    cuda_graphs: bool = False
    gpu_crop: bool = False
    pinned_memory: bool = True

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {self.precision!r}")

    @classmethod
    def fast(cls, device: str | torch.device, variant: str = "swin_t") -> "InferenceOptions":
        """The fast path for ``device`` and the model's backbone ``variant`` (``ModelConfig.variant``).

        CUDA: fp16 + graphs + device crop. CPU: bf16 autocast with the cv2 crop for Swin-T (1.7x
        faster than fp32 on AVX512-BF16 / AMX, docs/gpu.md); fp32 for SparseTT-Lite ("lite"),
        where bf16 measured no faster and moved boxes by up to 2 px. On a CPU without bf16
        support use ``InferenceOptions()`` (fp32) for Swin-T too.
        """
        if torch.device(device).type == "cuda":
            return cls(precision="fp16", cuda_graphs=True, gpu_crop=True, pinned_memory=True)
        return cls(precision="bf16" if variant == "swin_t" else "fp32", cuda_graphs=False, gpu_crop=False,
                   pinned_memory=False)


# ---------------------------------------------------------------------------------------------
# crop on the device

def _axis_taps(c: float, side: int, out_size: int, row: bool) -> tuple[np.ndarray, np.ndarray]:
    """Source index and 1/32 fraction of each output pixel along one axis, as cv2.warpAffine computes them.

    The crop matrix of :func:`sparsett_core.tracker.crop.crop_square` is diagonal, so the sampling
    is separable. OpenCV rounds differently per axis: columns
    ``X = (round(M0 * x * 1024) + round(M2 * 1024) + 16) >> 5``, rows
    ``Y = (round((M4 * y + M5) * 1024) + 16) >> 5``.
    Returns:
        index (out_size,) int64 (``X >> 5``), fraction (out_size,) int64 (``X & 31``).
    """
    c32 = np.float32(c)
    half = (np.float32(side) - np.float32(1)) / np.float32(2)
    lo, hi = c32 - half, c32 + half
    m0 = float(hi - lo) / (out_size - 1)
    m2 = float(lo)
    x = np.arange(out_size, dtype=np.float64)
    round_delta = _AB_SCALE // _INTER_TAB // 2
    if row:
        X = (np.rint((m0 * x + m2) * _AB_SCALE).astype(np.int64) + round_delta) >> 5
    else:
        X = (int(np.rint(m2 * _AB_SCALE)) + round_delta + np.rint(m0 * x * _AB_SCALE).astype(np.int64)) >> 5
    return X >> 5, X & (_INTER_TAB - 1)


def crop_plan(
    targets: Sequence[tuple[float, float, float, float]], z_size: int, out_size: int, context_amount: float = 0.5
) -> tuple[np.ndarray, list[float]]:
    """Host-side sampling plan of N crops (cheap, no device access).

    Args:
        targets: N ``(cx, cy, w, h)`` in frame pixels.
    Returns:
        taps: (4, N, out_size) int64: ix, fx, iy, fy, the source indices and 1/32 fractions along
            x and y (one array, so that it is one upload);
        scales: N crop scales (as :func:`sparsett_core.tracker.crop.get_crop`).
    """
    taps = np.empty((4, len(targets), out_size), dtype=np.int64)
    scales = []
    for n, (cx, cy, w, h) in enumerate(targets):
        scale = context_scale(w, h, z_size, context_amount)
        side = round(out_size / scale)
        taps[0, n], taps[1, n] = _axis_taps(cx, side, out_size, row=False)
        taps[2, n], taps[3, n] = _axis_taps(cy, side, out_size, row=True)
        scales.append(scale)
    return taps, scales


def crop_batch(
    frame: torch.Tensor,
    ix: torch.Tensor,
    fx: torch.Tensor,
    iy: torch.Tensor,
    fy: torch.Tensor,
    border: torch.Tensor,
) -> torch.Tensor:
    """N square crops of one frame, bit-exact with ``cv2.warpAffine`` (bilinear, constant border).

    Args:
        frame: (H, W, 3) uint8 BGR on any device.
        ix, fx, iy, fy: (N, S) int64, the rows of :func:`crop_plan`'s taps, on the frame's device.
        border: (3,) or (N, 3) int32 border colour(s) (int-truncated ``avg_chans``), on the frame's device.
    Returns:
        (N, S, S, 3) uint8 BGR crops.
    """
    H, W = frame.shape[:2]
    src = frame.to(torch.int32)
    border = border.view(-1, 1, 1, 3)
    acc = None
    for dy in (0, 1):
        wy = fy if dy else _INTER_TAB - fy  # (N, S)
        yy = iy + dy
        vy = (yy >= 0) & (yy < H)
        for dx in (0, 1):
            wx = fx if dx else _INTER_TAB - fx
            xx = ix + dx
            vx = (xx >= 0) & (xx < W)
            tap = src[yy.clamp(0, H - 1)[:, :, None], xx.clamp(0, W - 1)[:, None, :]]  # (N, S, S, 3)
            inside = (vy[:, :, None] & vx[:, None, :])[..., None]
            tap = torch.where(inside, tap, border)
            weight = (wy[:, :, None] * wx[:, None, :] * (1 << (_COEF_BITS - 10)))[..., None].to(torch.int32)
            term = tap * weight
            acc = term if acc is None else acc + term
    return ((acc + (1 << (_COEF_BITS - 1))) >> _COEF_BITS).clamp_(0, 255).to(torch.uint8)


def normalise_batch(crops_bgr: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """(N, S, S, 3) uint8 BGR -> (N, 3, S, S) float32 normalised RGB (the reference lookup table).

    Args:
        table: (256, 3) float32 :func:`sparsett_core.tracker.crop.normalisation_table` on the same device.
    """
    rgb = crops_bgr.flip(-1).long()
    out = torch.stack([table[rgb[..., c], c] for c in range(3)], dim=1)
    return out.contiguous()


class FrameUploader:
    """numpy (H, W, 3) uint8 frame -> tensor on the device (pinned, non-blocking on CUDA).

    The pinned staging buffer is reused per frame size; before it is overwritten the previous
    copy out of it is waited for (a CUDA event; normally long done, as the tracker has read the
    previous frame's result).
    """

    def __init__(self, device: torch.device, pinned: bool) -> None:
        self.device = device
        self.pinned = pinned and device.type == "cuda"
        self._staging: torch.Tensor | None = None
        self._copied: torch.cuda.Event | None = None  # the last copy out of the staging buffer

    def __call__(self, frame: np.ndarray) -> torch.Tensor:
        host = torch.from_numpy(np.ascontiguousarray(frame))
        if self.device.type == "cpu":
            return host
        if not self.pinned:
            return host.to(self.device)
        if self._copied is not None:
            self._copied.synchronize()  # the previous non-blocking copy may still read the buffer
        if self._staging is None or self._staging.shape != host.shape:
            self._staging = torch.empty(host.shape, dtype=torch.uint8, pin_memory=True)
        self._staging.copy_(host)
        out = self._staging.to(self.device, non_blocking=True)
        self._copied = torch.cuda.Event()
        self._copied.record()
        return out


def upload(a: np.ndarray, device: torch.device) -> torch.Tensor:
    """Small host array -> device tensor (non-blocking where the device is CUDA)."""
    t = torch.from_numpy(np.ascontiguousarray(a))
    return t if device.type == "cpu" else t.to(device, non_blocking=True)


# ---------------------------------------------------------------------------------------------
# model steps

class _Graphed:
    """One fixed-shape step captured as a CUDA graph; inputs are copied into static buffers.

    ``__call__`` copies the inputs into ``static_in``, replays, and returns ``static_out``: the same
    tensors on every call, overwritten by the next replay (read or clone them first).
    ``_capture`` / ``_replay`` are the only CUDA calls, so the buffer logic can be checked on the
    CPU with an emulating subclass (test/test_capture_safety.py).
    """

    def __init__(self, fn: Callable[..., object], example: Sequence[torch.Tensor], warmup: int = 3) -> None:
        self.fn = fn
        self.static_in = [t.clone() for t in example]
        self.static_out = self._capture(warmup)

    def _capture(self, warmup: int) -> object:
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):  # warm-up off the capture stream (cuBLAS / cuDNN workspaces, lazy init)
            for _ in range(warmup):
                self.fn(*self.static_in)
        torch.cuda.current_stream().wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            return self.fn(*self.static_in)

    def _replay(self) -> None:
        self.graph.replay()

    def __call__(self, *inputs: torch.Tensor) -> object:
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


class InferenceEngine:
    """``template`` / ``track`` of a SparseTT under the options' precision, graphed on CUDA if asked.

    Args:
        model: the network (eval mode, on ``device``).
        device: where it runs.
        options: the inference options.
    """

    graph_type = _Graphed  # the capture wrapper (a test substitutes a CPU emulation)

    def __init__(self, model: SparseTT, device: torch.device, options: InferenceOptions) -> None:
        self.model, self.device, self.options = model, device, options
        self.graphs = options.cuda_graphs and device.type == "cuda"
        self._template_graphs: dict[int, _Graphed] = {}
        self._track_graphs: dict[int, _Graphed] = {}

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.options.precision == "fp32":
            return contextlib.nullcontext()
        # autocast's weight-cast cache must be off while CUDA graphs are captured (PyTorch AMP + graphs notes)
        return torch.autocast(self.device.type, dtype=PRECISIONS[self.options.precision], cache_enabled=not self.graphs)

    def _template_eager(self, z: torch.Tensor) -> tuple[torch.Tensor, ...]:
        with torch.inference_mode(), self.autocast():
            return tuple(_flatten(self.model.template(z)))

    def _track_eager(self, x: torch.Tensor, *feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.inference_mode(), self.autocast():
            score, boxes = self.model.track(x, _unflatten(feats))
            return score.float(), boxes.float()

    def template(self, z: torch.Tensor) -> TemplateFeatures:
        """z (B, 3, 127, 127) -> TemplateFeatures (own tensors, safe to keep across calls)."""
        if not self.graphs:
            return _unflatten(self._template_eager(z))
        B = z.shape[0]
        if B not in self._template_graphs:
            with torch.inference_mode():
                self._template_graphs[B] = self.graph_type(self._template_eager, [z])
        with torch.inference_mode():
            out = self._template_graphs[B](z)
            return _unflatten([t.clone() for t in out])

    def track(self, x: torch.Tensor, feats: TemplateFeatures) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, 3, 289, 289) -> score (B, 361) float32, boxes (B, 361, 4) float32 (on the device)."""
        flat = _flatten(feats)
        if not self.graphs:
            return self._track_eager(x, *flat)
        B = x.shape[0]
        if B not in self._track_graphs:
            with torch.inference_mode():
                self._track_graphs[B] = self.graph_type(self._track_eager, [x, *flat])
        with torch.inference_mode():
            return self._track_graphs[B](x, *flat)
