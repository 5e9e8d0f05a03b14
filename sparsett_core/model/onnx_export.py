"""ONNX export of SparseTT's two inference steps, checked against torch before anything is kept.

The template step maps the template crop to the decoder's cross-attention keys/values (the
encoder output itself is not needed by ``track``); the track step maps a search crop and those
keys/values to the packed score/box maps (``[score, x1, y1, x2, y2]`` per grid point, the
``InferenceEngine.track`` contract). Two forms of the track step:

* ``whole``: one graph; the sparse attention's top-k is ONNX ``TopK`` + ``ScatterElements``
  (for GPU execution providers, where the graph should stay on the device);
* ``split`` (CPU): the graph is cut at every decoder self-attention's logits. ``track_0`` runs the
  backbone and the first layer up to its logits, ``track_i`` finishes layer i-1 and stops at layer
  i's logits, the last piece finishes the decoder and runs the head; the caller does the top-k
  softmax between the pieces (:func:`sparsett_core.tracker.ort_engine.topk_softmax_np`: numpy's
  partition is about 9x faster than ONNX Runtime's TopK on one CPU thread).

Refused, never written silently broken: a model whose sparse attention uses the CPU-only
``numpy.partition`` top-k (tracing would bake one frame's top-k into the graph as a constant, so
every other frame gives garbage: call ``model.use_partition_topk(False)`` first), and any export
whose ONNX Runtime outputs differ from torch's on inputs other than the traced ones.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import nn

from sparsett_core.model.neck import MultiheadAttention
from sparsett_core.model.sparsett import SparseTT

OPSET = 17
FORMS = ("whole", "split")
MANIFEST = "sparsett_onnx.json"
# ORT vs torch on the check inputs: max |kv|, |score|, |box| (crop px). Other kernels and fusions
# round differently (~1e-5 on the attention logits), which can swap an entry at the boundary of a
# row's top-k where two logits are within ~1e-5 (seen: score 0.024 on a real crop; "split" checks
# share torch's selection, see check_export); a wrong graph (a baked-in constant, a mis-traced
# shape) is off by far more (boxes by tens of pixels, NaN).
CHECK_KV, CHECK_SCORE, CHECK_BOX_PX = 1e-3, 0.05, 1.0
CHECK_ATTN = 1e-4  # numpy vs torch top-k softmax on the same logits: float32 rounding only
# Untrained weights put boxes ~2e4 px outside the crop; float32 rounding is relative there, so the
# box tolerance grows to this fraction of the largest |box| (seen: 1.35 px at 2.9e4 px, Swin-T).
CHECK_BOX_REL = 1e-4
CHECK_WHOLE_QUANTILE = 0.95  # "whole" exports: the box difference at this quantile of grid points


class ExportError(RuntimeError):
    """The model cannot be exported correctly (the message says why and what to do)."""


@dataclass(frozen=True)
class ExportManifest:
    """What an export folder holds (written as ``sparsett_onnx.json`` beside the graphs).

    Attributes:
        form: "whole" or "split".
        template: file of the template step.
        track: files of the track step, in order (one for "whole", decoder layers + 1 for "split").
        num_layers: decoder layers (cross-attention key/value pairs).
        top_k: keys kept per query by the sparse self-attention (the caller's top-k in "split").
        z_size, x_size: template / search crop sides; input_format: the model's input format.
        weights_sha: hash of the exported weights (a cache key).
    """

    form: str
    template: str
    track: tuple[str, ...]
    num_layers: int
    top_k: int | None
    z_size: int
    x_size: int
    input_format: str
    weights_sha: str
    opset: int = OPSET

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "track": list(self.track)}, indent=1)

    @classmethod
    def read(cls, folder: str | Path) -> "ExportManifest":
        path = Path(folder) / MANIFEST
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: not a sparsett-export folder (run sparsett-export first)")
        values = json.loads(path.read_text())
        return cls(**{**values, "track": tuple(values["track"])})


def weights_sha(model: nn.Module) -> str:
    """Hash of the model's config and every tensor of its state dict (the export cache key)."""
    h = hashlib.sha256(json.dumps(model.config.to_dict(), sort_keys=True).encode())
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


# ----------------------------------------------------------------------------------- graph pieces
class _Template(nn.Module):
    """z (B, 3, Z, Z) -> k_0, v_0, ..., k_{D-1}, v_{D-1}, each (B, nH, Lz, hd)."""

    def __init__(self, model: SparseTT) -> None:
        super().__init__()
        self.model = model

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, ...]:
        m = self.model
        enc = m.neck.encode(m.adjust_z(m.backbone(z)))
        return tuple(t for kv in m.neck.cross_kv(enc) for t in kv)


def _decode_input(model: SparseTT, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Search crop -> (adjusted map f_x (B, C, S, S), decoder tokens (B, S*S, C))."""
    f_x = model.adjust_x(model.backbone(x))
    return f_x, f_x.flatten(2).transpose(1, 2) + model.neck.dec_pos()


def _head(model: SparseTT, y: torch.Tensor, f_x: torch.Tensor) -> torch.Tensor:
    """Decoder output tokens (B, L, C) + f_x -> packed maps (B, L, 5)."""
    from sparsett_core.model.head import fuse_scores

    B, C, H, W = f_x.shape
    out = model.head(torch.cat([y.transpose(1, 2).reshape(B, C, H, W), f_x], dim=1), with_bbox_fc=False)
    score = fuse_scores(out["cls_fc"].float(), out["cls_conv"].float())
    return torch.cat([score, out["bbox_conv"].float()], dim=-1)


class _TrackWhole(nn.Module):
    """x, k_0, v_0, ... -> packed maps (B, L, 5)."""

    def __init__(self, model: SparseTT) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, *kv: torch.Tensor) -> torch.Tensor:
        f_x, y = _decode_input(self.model, x)
        for i, layer in enumerate(self.model.neck.decoder):
            y = layer(y, (kv[2 * i], kv[2 * i + 1]))
        return _head(self.model, y, f_x)


class _TrackFirst(nn.Module):
    """x -> f_x, y, logits_0, v_0 (decoder layer 0 up to its self-attention logits)."""

    def __init__(self, model: SparseTT) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        f_x, y = _decode_input(self.model, x)
        logits, v = self.model.neck.decoder[0].self_attn.self_logits(y)
        return f_x, y, logits, v


class _TrackMiddle(nn.Module):
    """Finish layer i - 1 (y, attn, v, its k, v) -> y, logits_i, v_i."""

    def __init__(self, model: SparseTT, i: int) -> None:
        super().__init__()
        self.model, self.i = model, i

    def forward(self, y, attn, v, k_prev, v_prev) -> tuple[torch.Tensor, ...]:
        dec = self.model.neck.decoder
        y = dec[self.i - 1].finish(y, attn, v, (k_prev, v_prev))
        logits, v = dec[self.i].self_attn.self_logits(y)
        return y, logits, v


class _TrackLast(nn.Module):
    """Finish the last layer (y, attn, v, its k, v) and run the head with f_x -> packed maps."""

    def __init__(self, model: SparseTT) -> None:
        super().__init__()
        self.model = model

    def forward(self, y, attn, v, k_last, v_last, f_x) -> torch.Tensor:
        y = self.model.neck.decoder[-1].finish(y, attn, v, (k_last, v_last))
        return _head(self.model, y, f_x)


def kv_names(num_layers: int) -> list[str]:
    return [f"{t}{i}" for i in range(num_layers) for t in ("k", "v")]


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode for the duration, the caller's mode restored afterwards."""
    was = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was)


def _check_exportable(model: SparseTT) -> None:
    partition = [n for n, m in model.named_modules()
                 if isinstance(m, MultiheadAttention) and m.top_k is not None and m.partition_topk]
    if partition:
        raise ExportError(
            f"{len(partition)} sparse attention module(s) use the CPU-only numpy.partition top-k ({partition[0]}, "
            "...): tracing would bake one input's top-k into the graph as a constant and every other frame would "
            "give wrong maps. Call model.use_partition_topk(False) before exporting (sparsett-export does)")


def _export(module: nn.Module, args: tuple[torch.Tensor, ...], path: Path, inputs: list[str], outputs: list[str]) -> None:
    # torch.onnx.export restores the wrapper's own mode afterwards: a wrapper left in train mode
    # would put the model in train mode, and the next forward would update its BatchNorm statistics
    module.eval()
    dynamic = {name: {0: "batch"} for name in inputs + outputs}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's shape-as-constant warnings: checked numerically instead
        torch.onnx.export(module, args, str(path), opset_version=OPSET, dynamo=False, input_names=inputs,
                          output_names=outputs, dynamic_axes=dynamic, do_constant_folding=True)


def export_onnx(model: SparseTT, folder: str | Path, form: str = "split", check: bool = True) -> ExportManifest:
    """Write the template and track steps of ``model`` to ONNX (opset 17) in ``folder``.

    Args:
        model: a SparseTT (any variant), on the CPU. Its sparse attention must not use the
            partition top-k (``use_partition_topk(False)``); see the module docstring.
        form: "split" (CPU: top-k outside the graph) or "whole" (one graph, ONNX TopK).
        check: run the graphs with ONNX Runtime on two random inputs that were not traced and
            refuse the export (delete it, raise) unless they match torch.
    Returns:
        the manifest (also written to ``folder/sparsett_onnx.json``).
    Raises:
        ExportError: partition top-k on, an unknown form, or ONNX Runtime disagreeing with torch.
    """
    if form not in FORMS:
        raise ExportError(f"form must be one of {FORMS}, got {form!r}")
    _check_exportable(model)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    c = model.config
    D = len(model.neck.decoder)
    names = kv_names(D)
    gen = torch.Generator().manual_seed(0)
    z = torch.rand(1, 3, c.z_size, c.z_size, generator=gen) * 255
    x = torch.rand(1, 3, c.x_size, c.x_size, generator=gen) * 255
    if c.input_format != "bgr255":
        z, x = (z - 120) / 60, (x - 120) / 60
    with eval_mode(model), torch.no_grad():
        kv = _Template(model)(z)
        _export(_Template(model), (z,), folder / "template.onnx", ["z"], names)
        if form == "whole":
            track = ("track.onnx",)
            _export(_TrackWhole(model), (x, *kv), folder / track[0], ["x", *names], ["maps"])
        else:
            track = tuple(f"track_{i}.onnx" for i in range(D + 1))
            f_x, y, logits, v = _TrackFirst(model)(x)
            _export(_TrackFirst(model), (x,), folder / track[0], ["x"], ["f_x", "y", "logits", "v"])
            attn = model.neck.decoder[0].self_attn.weights(logits)
            for i in range(1, D):
                args = (y, attn, v, kv[2 * i - 2], kv[2 * i - 1])
                _export(_TrackMiddle(model, i), args, folder / track[i], ["y", "attn", "v", "k", "vv"],
                        ["y_out", "logits", "v_out"])
                y, logits, v = _TrackMiddle(model, i)(*args)
                attn = model.neck.decoder[i].self_attn.weights(logits)
            _export(_TrackLast(model), (y, attn, v, kv[-2], kv[-1], f_x), folder / track[-1],
                    ["y", "attn", "v", "k", "vv", "f_x"], ["maps"])
    manifest = ExportManifest(form, "template.onnx", track, D, c.top_k, c.z_size, c.x_size, c.input_format,
                              weights_sha(model))
    (folder / MANIFEST).write_text(manifest.to_json())
    if check:
        try:
            check_export(model, folder)
        except ExportError:
            for f in (manifest.template, *manifest.track, MANIFEST):
                (folder / f).unlink(missing_ok=True)
            raise
    return manifest


def check_export(model: SparseTT, folder: str | Path, seeds: tuple[int, ...] = (1, 2)) -> dict[str, float]:
    """Compare the exported steps with torch on random crops that were not traced.

    "split" exports run every piece with torch's choice of keys at each sparse attention (the
    top-k of torch's logits applied to ONNX Runtime's), and the numpy top-k softmax of the
    tracker is compared with torch's on the same logits. Logits that differ by rounding (~1e-6)
    can swap keys at the boundary of a row's top-k, and later layers amplify a swap: on random
    Swin-T weights on a Sapphire Rapids Xeon, up to 15 px on a box, an export that is right.
    Sharing the selection separates such swaps from a wrong graph. "whole" exports keep the
    top-k inside the graph, where torch's choice cannot be given; they are compared end to end,
    their boxes at the CHECK_WHOLE_QUANTILE of grid points: a swap moves a few points (random
    Swin-T, Xeon: up to 1.4 %, 45 px), a wrong graph most of them (head weights x1.01: 47-74 %).

    Returns:
        the largest differences: "kv", "attn" (numpy top-k softmax, "split"), "score", "box" (crop
        px; "whole": at the CHECK_WHOLE_QUANTILE of grid points).
    Raises:
        ExportError: a difference above CHECK_KV / CHECK_ATTN / CHECK_SCORE / CHECK_BOX_PX (or
            CHECK_BOX_REL of the largest box; the graph does not compute what the model computes),
            or ONNX Runtime missing.
    """
    from sparsett_core.tracker.ort_engine import OrtSteps, ort_unavailable_reason

    reason = ort_unavailable_reason()
    if reason:
        raise ExportError(f"cannot check the export: {reason}")
    steps = OrtSteps(folder, threads=1)
    split = steps.manifest.form == "split"
    c = model.config
    worst = {"kv": 0.0, "attn": 0.0, "score": 0.0, "box": 0.0}
    box_tol = CHECK_BOX_PX
    with model.torch_topk():  # compare with the same (torch.topk) sparse attention
        for seed in seeds:
            gen = torch.Generator().manual_seed(1000 + seed)
            scale, shift = (255.0, 0.0) if c.input_format == "bgr255" else (4.0, -2.0)
            z = torch.rand(2, 3, c.z_size, c.z_size, generator=gen) * scale + shift
            x = torch.rand(2, 3, c.x_size, c.x_size, generator=gen) * scale + shift
            with eval_mode(model), torch.inference_mode():
                feats = model.template(z)
                score, boxes = model.track(x, feats)
                keeps, attn_np = _torch_selection(model, x, feats) if split else ([], 0.0)
            worst["attn"] = max(worst["attn"], attn_np)
            kv = steps.template(z.numpy())
            ref_kv = [t.numpy() for pair in feats.cross_kv for t in pair]
            torch_choice = (lambda i, logits: _masked_softmax(logits, keeps[i])) if split else None
            maps = steps.track(x.numpy(), kv, torch_choice)
            worst["kv"] = max(worst["kv"], max(float(np.abs(a - b).max()) for a, b in zip(kv, ref_kv)))
            worst["score"] = max(worst["score"], float(np.abs(maps[..., 0] - score.numpy()).max()))
            box_off = np.abs(maps[..., 1:] - boxes.numpy()).max(-1)  # (B, L) per grid point
            box_off = box_off.max() if split else np.quantile(box_off, CHECK_WHOLE_QUANTILE)
            worst["box"] = max(worst["box"], float(box_off))
            box_tol = max(box_tol, CHECK_BOX_REL * float(boxes.abs().max()))
    if (worst["kv"] > CHECK_KV or worst["attn"] > CHECK_ATTN or worst["score"] > CHECK_SCORE
            or worst["box"] > box_tol):
        where = "" if split else f" at {CHECK_WHOLE_QUANTILE:.0%} of grid points"
        raise ExportError(f"the ONNX graphs in {folder} do not compute what the model computes on new inputs "
                          f"(max |kv| {worst['kv']:.2e}, |attn| {worst['attn']:.2e}, |score| {worst['score']:.2e}, "
                          f"|box| {worst['box']:.3f} px{where}); the export was refused")
    return worst


def _torch_selection(model: SparseTT, x: torch.Tensor, feats) -> tuple[list[np.ndarray], float]:
    """Torch's kept keys per decoder layer (bool (B, nH, L, L) each) on search crops x (B, 3, X, X),
    and the largest difference between the tracker's numpy top-k softmax and torch's on the same
    logits."""
    from sparsett_core.tracker.ort_engine import topk_softmax_np

    dec = model.neck.decoder
    f_x, y, logits, v = _TrackFirst(model)(x)
    keeps, diff = [], 0.0
    for i, layer in enumerate(dec):
        attn = layer.self_attn.weights(logits)
        k = layer.self_attn.top_k
        L = logits.shape[-1]
        k = L if k is None or k >= L else k
        keep = torch.zeros(logits.shape, dtype=torch.bool).scatter_(-1, logits.topk(k, dim=-1).indices, True)
        keeps.append(keep.numpy())
        # sorted per row: where logits tie at the k-th value, numpy and torch may keep different
        # (equally valid) keys, with the same weights
        ours = np.sort(topk_softmax_np(logits.numpy(), k), axis=-1)
        diff = max(diff, float(np.abs(ours - np.sort(attn.numpy(), axis=-1)).max()))
        if i + 1 < len(dec):
            y, logits, v = _TrackMiddle(model, i + 1)(y, attn, v, *feats.cross_kv[i])
    return keeps, diff


def _masked_softmax(logits: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Softmax of each row over the entries where ``keep`` is True, zero elsewhere."""
    e = np.exp(logits - np.where(keep, logits, -np.inf).max(-1, keepdims=True)) * keep
    return e / e.sum(-1, keepdims=True)


__all__ = ["ExportError", "ExportManifest", "FORMS", "check_export", "export_onnx", "weights_sha"]
