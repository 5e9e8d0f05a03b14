"""Single-target SparseTT tracker (the official ``SparseTTTracker`` pipeline).

Steps of :meth:`Tracker.update`: crop -> forward -> penalty + cosine window -> decode -> map back
-> clip (docs/sparsett_reference.md section 3).
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np
import torch

from sparsett_core.model.neck import TemplateFeatures
from sparsett_core.model.sparsett import SparseTT
from sparsett_core.tracker.crop import get_crop, input_table, to_input
from sparsett_core.tracker.device_crop import FrameUploader, crop_batch, crop_plan, normalise_batch, upload
from sparsett_core.tracker.fast import PRECISIONS as _PRECISIONS, InferenceOptions, make_engine, read_maps
from sparsett_core.tracker.presets import TrackerPreset, get_preset
from sparsett_core.tracker.select import resolve


def _as_bgr(frame: np.ndarray) -> np.ndarray:
    """Validate a frame and convert grayscale / BGRA to (H, W, 3) uint8 BGR.

    Raises:
        ValueError: not a numpy uint8 array of shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4),
            or an empty frame.
    """
    if not isinstance(frame, np.ndarray):
        raise ValueError(f"frame must be a numpy array (H x W x 3 BGR uint8), got {type(frame).__name__}")
    if frame.dtype != np.uint8:
        raise ValueError(
            f"frame must be uint8 (0..255 BGR), got {frame.dtype}; convert it first, e.g. "
            "np.clip(frame * 255, 0, 255).astype(np.uint8) for a [0, 1] float image"
        )
    if frame.ndim not in (2, 3) or (frame.ndim == 3 and frame.shape[2] not in (1, 3, 4)):
        raise ValueError(f"frame must be H x W (gray), H x W x 1, H x W x 3 (BGR) or H x W x 4 (BGRA), got shape {frame.shape}")
    if frame.shape[0] < 1 or frame.shape[1] < 1:
        raise ValueError(f"frame is empty (shape {frame.shape})")
    if frame.ndim == 2 or frame.shape[2] == 1:
        return cv2.cvtColor(np.ascontiguousarray(frame.reshape(frame.shape[:2])), cv2.COLOR_GRAY2BGR)
    if frame.shape[2] == 4:
        return cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_BGRA2BGR)
    return frame


class Tracker:
    """SparseTT single-object tracker (got10k ``Tracker`` contract).

    Conventions: frames are numpy ``uint8`` BGR images, H x W x 3 (as ``cv2.imread`` returns);
    grayscale (H x W, H x W x 1) and BGRA (H x W x 4) frames are converted to BGR. Boxes are
    ``(x, y, w, h)`` floats in frame pixels, ``(x, y)`` the top-left corner; internally the state is
    ``(cx, cy, w, h)`` with ``cx = x + (w - 1) / 2`` (the official "+1" convention).

    Rules for unusual input:
      * the init box must be finite with ``w > 0`` and ``h > 0`` and overlap the frame, else
        ``ValueError``; a box partly outside the frame is used unchanged, as the official tracker
        does (the template crop is padded with the frame's mean colour) and the state is clipped
        to the frame (``cx`` in [0, W], ``cy`` in [0, H], w in [10, W], h in [10, H]) from the first
        update on;
      * ``update`` before ``init`` raises ``RuntimeError``;
      * the frame size is fixed at ``init``: an ``update`` frame of another size raises
        ``ValueError`` (re-``init`` on the new stream instead); nothing is rescaled silently.

    Debug attributes (updated on every call, references only): ``template_crop`` (Z,Z,3) and
    ``search_crop`` (X,X,3) float32 network inputs (normalised RGB, or BGR [0, 255] for a model
    with ``input_format="bgr255"``), ``score_map`` (L,) float32,
    ``pscore_map`` (361,) float64, ``box_map`` (361,4) float32 xyxy crop px, ``best_idx``,
    ``best_score``, ``best_penalty``, ``best_pscore``, ``scale_x``, ``z_scale``, ``avg_chans``.

    Args:
        model: a SparseTT; it is put in eval mode.
        preset: a preset name (got10k, lasot, trackingnet, uav123, otb2015), a TrackerPreset, or
            None for ``model.default_preset``.
        device: device to run on (default: the model's).
        precision: "fp32" (reference), "bf16" or "fp16" (autocast; faster, less exact).
        options: the inference options (sparsett_core/tracker/fast.py: precision, CUDA graphs,
            device crop, pinned uploads, backend); given, it replaces ``precision``. With
            ``gpu_crop=True`` the debug crops ``template_crop`` / ``search_crop`` are not kept (None).
            ``backend="auto"`` is resolved here (``sparsett_core.tracker.select``): ``options``
            then holds the choice and ``selection`` the reason.
        engine: share the network engine of another tracker (what :class:`MultiTracker` does for
            its targets); its options replace ``options``.
    """

    def __init__(
        self,
        model: SparseTT,
        preset: str | TrackerPreset | None = None,
        device: str | torch.device | None = None,
        precision: str = "fp32",
        options: InferenceOptions | None = None,
        *,
        engine=None,
    ) -> None:
        if precision not in _PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(_PRECISIONS)}, got {precision!r}")
        if options is not None and precision not in ("fp32", options.precision):
            raise ValueError(f"precision={precision!r} contradicts options.precision={options.precision!r}: "
                             "give the precision in the options only")
        c = model.config  # the crop geometry is the model's; a preset only tunes the post-processing
        self.preset = get_preset(preset if preset is not None else model.default_preset)
        geometry = {"z_size": c.z_size, "x_size": c.x_size, "score_size": c.x_feat, "total_stride": c.total_stride}
        if any(getattr(self.preset, k) != v for k, v in geometry.items()):
            self.preset = self.preset.replace(**geometry)
        self.input_format = c.input_format
        self.device = torch.device(device) if device is not None else model.device
        self.model = model.to(self.device).eval()
        options = options if options is not None else InferenceOptions(precision=precision)
        if engine is not None:  # another tracker's engine (MultiTracker: one network step for all targets)
            self.options, self.selection, self.engine = engine.options, None, engine
        else:
            self.options, self.selection = resolve(self.model, self.device, options)
            self.engine = make_engine(self.model, self.device, self.options)
        self.precision = self.options.precision
        self._upload = FrameUploader(self.device, self.options.pinned_memory)
        self._table = input_table(self.input_format)
        self._table_t = torch.from_numpy(self._table).to(self.device)
        s = self.preset.score_size
        self.window = np.outer(np.hanning(s), np.hanning(s)).reshape(-1)  # (361,) float64
        self._feats: TemplateFeatures | None = None
        self._pos = np.zeros(2)
        self._sz = np.zeros(2)
        self._frame_hw: tuple[int, int] | None = None
        self.avg_chans = np.zeros(3)
        self.template_crop = self.search_crop = None
        self.score_map = self.pscore_map = self.box_map = None
        self.best_idx, self.best_score, self.best_penalty, self.best_pscore = -1, 0.0, 0.0, 0.0
        self.scale_x = self.z_scale = 0.0

    # ------------------------------------------------------------------ state
    @property
    def initialized(self) -> bool:
        """True after :meth:`init`."""
        return self._feats is not None

    @property
    def template_features(self) -> TemplateFeatures | None:
        """The cached template encoding (None before :meth:`init`)."""
        return self._feats

    @property
    def state(self) -> tuple[float, float, float, float]:
        """Current target ``(cx, cy, w, h)`` in frame pixels ("+1" convention)."""
        return (float(self._pos[0]), float(self._pos[1]), float(self._sz[0]), float(self._sz[1]))

    @state.setter
    def state(self, cxcywh: Sequence[float]) -> None:
        self.set_state(*cxcywh)

    def set_state(self, cx: float, cy: float, w: float, h: float) -> None:
        """Overwrite the target state (teacher forcing, re-detection); the template is kept.

        Raises:
            ValueError: non-finite values or non-positive size.
        """
        v = np.array([cx, cy, w, h], dtype=np.float64)
        if not np.all(np.isfinite(v)) or v[2] <= 0 or v[3] <= 0:
            raise ValueError(f"state must be finite with w > 0 and h > 0, got {tuple(v)}")
        self._pos, self._sz = v[:2].copy(), v[2:].copy()

    # ------------------------------------------------------------------ helpers
    def crop_inputs(
        self, im: np.ndarray, targets: Sequence[tuple[float, float, float, float]], out_size: int,
        avg_chans: Sequence[np.ndarray], frame_t: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, list[float], list[np.ndarray | None]]:
        """N crops of one frame as a network input batch.

        Args:
            im: (H, W, 3) uint8 BGR frame.
            targets: N ``(cx, cy, w, h)``; out_size: 127 (template) or 289 (search).
            avg_chans: N (3,) border colours; frame_t: ``im`` already on the device (gpu_crop).
        Returns:
            (N, 3, S, S) float32 network input on the device, N scales, N debug crops
            ((S, S, 3) network input as numpy; None with gpu_crop).
        """
        p = self.preset
        if not self.options.gpu_crop:
            norms, scales = [], []
            for (cx, cy, w, h), avg in zip(targets, avg_chans):
                crop, scale = get_crop(im, cx, cy, w, h, p.z_size, out_size, avg, p.context_amount)
                norms.append(to_input(crop, self.input_format, self._table))
                scales.append(scale)
            t = torch.from_numpy(np.stack(norms)).permute(0, 3, 1, 2).contiguous()
            return t.to(self.device, non_blocking=True), scales, norms
        if frame_t is None:
            frame_t = self._upload(im)
        taps, scales = crop_plan(targets, p.z_size, out_size, p.context_amount)
        # three uploads per step whatever N: the frame, the sampling plan, the border colours
        taps = upload(taps, self.device)  # (4, N, S) ix, fx, iy, fy
        borders = upload(np.array([[int(v) for v in avg] for avg in avg_chans], dtype=np.int32), self.device)
        crops = crop_batch(frame_t, *taps, borders)
        return normalise_batch(crops, self._table_t, self.input_format == "imagenet_rgb"), scales, [None] * len(scales)

    @staticmethod
    def _check_box(box: Sequence[float], frame_hw: tuple[int, int]) -> np.ndarray:
        try:
            b = np.asarray(box, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise ValueError(f"init box must be 4 numbers (x, y, w, h), got {box!r}") from None
        if b.size != 4:
            raise ValueError(f"init box must be 4 numbers (x, y, w, h), got {b.size} values")
        if not np.all(np.isfinite(b)):
            raise ValueError(f"init box contains NaN or inf: {tuple(b)}")
        x, y, w, h = b
        if w <= 0 or h <= 0:
            raise ValueError(f"init box must have positive width and height, got w={w}, h={h}")
        H, W = frame_hw
        if x >= W or y >= H or x + w <= 0 or y + h <= 0:
            raise ValueError(f"init box {tuple(b)} lies entirely outside the {W}x{H} frame")
        return b

    # ------------------------------------------------------------------ API
    def init(self, frame: np.ndarray, box: Sequence[float]) -> None:
        """Start tracking the target ``box = (x, y, w, h)`` (top-left, pixels) in ``frame``.

        Raises:
            ValueError: unusable frame or box (see the class docstring).
        """
        im, pos, sz = self.prepare_init(frame, box)
        self.avg_chans = np.mean(im, axis=(0, 1))  # float64 BGR, reused for every crop
        z, scales, norms = self.crop_inputs(im, [(pos[0], pos[1], sz[0], sz[1])], self.preset.z_size, [self.avg_chans])
        self.template_crop, self.z_scale = norms[0], scales[0]
        self.set_template(self.engine.template(z), im.shape[:2], pos, sz)

    def prepare_init(self, frame: np.ndarray, box: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Validate ``frame``/``box`` for :meth:`init`; returns (BGR frame, pos (2,) float32, sz (2,) float32)."""
        im = _as_bgr(frame)
        r = self._check_box(box, im.shape[:2]).astype(np.float32)
        return im, np.array([r[0] + (r[2] - 1) / 2, r[1] + (r[3] - 1) / 2], dtype=np.float32), r[2:].copy()

    def set_template(self, feats, frame_hw: tuple[int, int], pos: np.ndarray, sz: np.ndarray) -> None:
        """Install a template encoding (batch 1) and the initial state (used by :meth:`init` and MultiTracker)."""
        self._feats = feats
        self._frame_hw = frame_hw
        self._pos, self._sz = pos.astype(np.float64), sz.astype(np.float64)

    def update(self, frame: np.ndarray) -> tuple[tuple[float, float, float, float], float]:
        """Track the target into ``frame``.

        Returns:
            box ``(x, y, w, h)`` floats (top-left, pixels), and the fused score of the chosen location.
        Raises:
            RuntimeError: called before :meth:`init`.
            ValueError: unusable frame, or a frame size different from the one at init.
        """
        im = self.check_frame(frame)
        # 1. crop around the previous state
        x, scales, norms = self.crop_inputs(im, [self.search_target()], self.preset.x_size, [self.avg_chans])
        self.search_crop = norms[0]
        # 2. forward (the only device -> host read of the step)
        score, box = read_maps(self.engine.track(x, self._feats))
        return self.finish_update(score[0], box[0], scales[0])

    def check_frame(self, frame: np.ndarray) -> np.ndarray:
        """Validate an update frame (initialised tracker, same size as at init); returns it as BGR."""
        if self._feats is None:
            raise RuntimeError("Tracker.update() called before init(); call init(frame, box) first")
        im = _as_bgr(frame)
        if im.shape[:2] != self._frame_hw:
            h0, w0 = self._frame_hw
            raise ValueError(
                f"frame size changed from {w0}x{h0} at init to {im.shape[1]}x{im.shape[0]}; "
                "call init() again for the new stream"
            )
        return im

    def search_target(self) -> tuple[float, float, float, float]:
        """(cx, cy, w, h) the next search crop is centred on."""
        return (self._pos[0], self._pos[1], self._sz[0], self._sz[1])

    def finish_update(self, score: np.ndarray, box: np.ndarray, scale_x: float) -> tuple[tuple[float, float, float, float], float]:
        """Post-process one target's maps (score (361,), box (361, 4) xyxy crop px) into the new state and box."""
        p = self.preset
        # 3. penalty and window
        box_wh = np.stack(
            [(box[:, 0] + box[:, 2]) / 2, (box[:, 1] + box[:, 3]) / 2, box[:, 2] - box[:, 0] + 1, box[:, 3] - box[:, 1] + 1],
            axis=1,
        )  # float32 cx, cy, w, h
        best, pscore, penalty = self._postprocess_score(score, box_wh, scale_x)
        # 4. decode and map back to the frame
        pos, sz = self._postprocess_box(best, score, box_wh, penalty, scale_x)
        # 5. clip to the frame
        H, W = self._frame_hw
        pos = np.clip(pos, 0.0, [W, H])
        sz = np.array([max(p.min_w, min(W, sz[0])), max(p.min_h, min(H, sz[1]))])
        self._pos, self._sz = pos, sz
        self.score_map, self.pscore_map, self.box_map = score, pscore, box
        self.best_idx, self.scale_x = best, scale_x
        self.best_score, self.best_penalty, self.best_pscore = float(score[best]), float(penalty[best]), float(pscore[best])
        st = np.concatenate([pos, sz]).astype(np.float32)
        rect = (st[0] - (st[2] - 1) / 2, st[1] - (st[3] - 1) / 2, st[2], st[3])
        return tuple(float(v) for v in rect), float(score[best])

    # ------------------------------------------------------------------ post-processing
    def _postprocess_score(self, score: np.ndarray, box_wh: np.ndarray, scale_x: float) -> tuple[int, np.ndarray, np.ndarray]:
        """Scale/ratio penalty and cosine window.

        Args:
            score: (361,) fused score; box_wh: (361, 4) cx, cy, w, h in crop pixels; scale_x: crop scale.
        Returns:
            best index, pscore (361,) float64, penalty (361,) float64.
        """
        k, wi = self.preset.penalty_k, self.preset.window_influence
        tw, th = self._sz * scale_x  # target size in crop pixels
        w, h = box_wh[:, 2].astype(np.float64), box_wh[:, 3].astype(np.float64)

        def size(a: np.ndarray | float, b: np.ndarray | float) -> np.ndarray | float:
            pad = (a + b) * 0.5
            return np.sqrt((a + pad) * (b + pad))

        def change(r: np.ndarray) -> np.ndarray:
            return np.maximum(r, 1.0 / r)

        s_c = change(size(w, h) / size(tw, th))
        r_c = change((tw / th) / (w / h))
        penalty = np.exp(-(r_c * s_c - 1) * k)
        pscore = penalty * score * (1 - wi) + self.window * wi
        return int(np.argmax(pscore)), pscore, penalty

    def _postprocess_box(
        self, best: int, score: np.ndarray, box_wh: np.ndarray, penalty: np.ndarray, scale_x: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Chosen box -> new (cx, cy) (not smoothed) and (w, h) (smoothed by lr = penalty * score * test_lr)."""
        pred = (box_wh[best] / np.float32(scale_x)).astype(np.float64)
        lr = float(penalty[best]) * float(score[best]) * self.preset.test_lr
        off = (self.preset.x_size // 2) / scale_x
        pos = np.array([pred[0] + self._pos[0] - off, pred[1] + self._pos[1] - off])
        sz = self._sz * (1 - lr) + pred[2:] * lr
        return pos, sz
