"""Several targets in one frame, one batched network step (N independent templates).

``MultiTracker`` keeps one :class:`~sparsett_core.tracker.tracker.Tracker` per target for the
state and the (unchanged, per-target) post-processing, and runs the crops and the network as one
batch of N: ``template`` once with N templates at init, ``track`` once per frame with N search
crops. Target i follows exactly the single-target pipeline (checked against N ``Tracker`` objects
in test/test_fast_path.py); only the batched matrix products can round differently.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from sparsett_core.model.sparsett import SparseTT
from sparsett_core.tracker.fast import InferenceOptions, read_maps
from sparsett_core.tracker.presets import TrackerPreset
from sparsett_core.tracker.tracker import Tracker

Box = tuple[float, float, float, float]


class MultiTracker:
    """N-target SparseTT tracker (same conventions as :class:`Tracker`: BGR uint8 frames, (x, y, w, h) boxes).

    Args:
        model, preset, device, precision, options: as for :class:`Tracker` (shared by all targets).
    """

    def __init__(
        self,
        model: SparseTT,
        preset: str | TrackerPreset | None = None,
        device: str | None = None,
        precision: str = "fp32",
        options: InferenceOptions | None = None,
    ) -> None:
        self._proto = Tracker(model, preset, device, precision, options)  # shared crop / engine, preset, device
        # backend "auto" is resolved once, by the first tracker; the others share its engine
        self._args = dict(model=model, preset=preset, device=device, engine=self._proto.engine)
        self.selection = self._proto.selection
        self.trackers: list[Tracker] = []
        self._feats = None

    @property
    def num_targets(self) -> int:
        """Number of targets being tracked (0 before :meth:`init`)."""
        return len(self.trackers)

    @property
    def initialized(self) -> bool:
        return self._feats is not None

    def init(self, frame: np.ndarray, boxes: Sequence[Sequence[float]]) -> None:
        """Start tracking every box ``(x, y, w, h)`` of ``boxes`` (>= 1) in ``frame`` (replaces the old targets).

        Raises:
            ValueError: no box, or an unusable frame or box (the message names the box index).
        """
        if len(boxes) == 0:
            raise ValueError("MultiTracker.init needs at least one box (x, y, w, h)")
        trackers, starts = [], []
        for i, box in enumerate(boxes):
            t = Tracker(**self._args) if i else self._proto
            try:
                im, pos, sz = t.prepare_init(frame, box)
            except ValueError as exc:
                raise ValueError(f"box {i}: {exc}") from None
            t.avg_chans = np.mean(im, axis=(0, 1))
            trackers.append(t)
            starts.append((pos, sz))
        # the uploads of the first tracker serve every target (the engine is shared from the start)
        for t in trackers[1:]:
            t._upload = self._proto._upload
        targets = [(p[0], p[1], s[0], s[1]) for p, s in starts]
        z, scales, norms = self._proto.crop_inputs(im, targets, self._proto.preset.z_size, [t.avg_chans for t in trackers])
        feats = self._proto.engine.template(z)
        for n, (t, (pos, sz)) in enumerate(zip(trackers, starts)):
            t.template_crop, t.z_scale = norms[n], scales[n]
            one = type(feats)(feats.enc[n:n + 1], tuple((k[n:n + 1], v[n:n + 1]) for k, v in feats.cross_kv))
            t.set_template(one, im.shape[:2], pos, sz)
        self.trackers, self._feats = trackers, feats

    def update(self, frame: np.ndarray) -> list[tuple[Box, float]]:
        """Track every target into ``frame``; returns N ``((x, y, w, h), score)`` in init order.

        Raises:
            RuntimeError: before :meth:`init`. ValueError: unusable frame or a changed frame size.
        """
        if self._feats is None:
            raise RuntimeError("MultiTracker.update() called before init(); call init(frame, boxes) first")
        im = self._proto.check_frame(frame)
        targets = [t.search_target() for t in self.trackers]
        x, scales, norms = self._proto.crop_inputs(im, targets, self._proto.preset.x_size,
                                                   [t.avg_chans for t in self.trackers])
        score, box = read_maps(self._proto.engine.track(x, self._feats))  # the one device -> host read
        out = []
        for n, t in enumerate(self.trackers):
            t.search_crop = norms[n]
            out.append(t.finish_update(score[n], box[n], scales[n]))
        return out

    @property
    def states(self) -> list[tuple[float, float, float, float]]:
        """Per target ``(cx, cy, w, h)`` the next search is centred on."""
        return [t.state for t in self.trackers]

    def set_state(self, index: int, cx: float, cy: float, w: float, h: float) -> None:
        """Overwrite target ``index``'s state (its template is kept)."""
        self.trackers[index].set_state(cx, cy, w, h)

