"""ONNX Runtime backend: the exported template / track steps behind the ``InferenceEngine`` contract.

``InferenceOptions(backend="onnxruntime")`` makes :class:`~sparsett_core.tracker.tracker.Tracker`
and :class:`~sparsett_core.tracker.multi.MultiTracker` run the network with ONNX Runtime instead of
torch; crops, post-processing and results are the same code. The graphs come from
:func:`sparsett_core.model.onnx_export.export_onnx`: exported once per model into a cache folder
(``$XDG_CACHE_HOME/sparsett/onnx/<variant>-<weights hash>-<form>``, checked against torch before
it is kept) or read from a folder written by ``sparsett-export``.

On the CPU execution provider the track step is the "split" export: the sparse attention's top-k
softmax runs in numpy between the graph pieces (:func:`topk_softmax_np`). The sessions' threads
never busy-wait (ONNX Runtime's default spinning took the cores from torch and the ROS executor).
On a GPU the CUDA or TensorRT execution provider runs the "whole" graph (``ort_provider``).

onnxruntime is optional: :func:`ort_unavailable_reason` says why the backend cannot run.
"""
from __future__ import annotations

import contextlib
import copy
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from sparsett_core.model.neck import TemplateFeatures, topk_mask

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}


def ort_unavailable_reason() -> str | None:
    """None when ONNX Runtime can be used, else why not (one line, with what to do)."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return ("onnxruntime is not installed: pip install onnxruntime (optional dependency; the torch backend "
                "needs nothing more)")
    return None


def topk_softmax_np(logits: np.ndarray, k: int) -> np.ndarray:
    """Softmax over the ``k`` largest logits of each row, zero elsewhere (numpy, any leading shape).

    Equal to :func:`sparsett_core.model.neck.topk_softmax`: the rows masked with
    :func:`~sparsett_core.model.neck.topk_mask` (1.4x faster than gathering and scattering the k
    entries); where a row has a tie at the k-th value, exactly k are kept with ``argpartition``,
    as ``torch.topk`` keeps them. ``k >= L``: the plain softmax.
    """
    L = logits.shape[-1]
    e = np.exp(logits - logits.max(-1, keepdims=True))
    if k < L:
        keep = topk_mask(logits, k)
        if keep is None:
            keep = np.zeros(logits.shape, dtype=bool)
            np.put_along_axis(keep, np.argpartition(logits, L - k, axis=-1)[..., L - k:], True, axis=-1)
        e *= keep
    return e / e.sum(-1, keepdims=True)


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/sparsett/onnx`` (``~/.cache/sparsett/onnx`` by default)."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "sparsett" / "onnx"


class OrtSteps:
    """The sessions of one export folder.

    Args:
        folder: a ``sparsett-export`` folder (``sparsett_onnx.json`` + graphs).
        threads: intra-op threads of each session (0: torch's thread count).
        provider: "cpu", "cuda" or "tensorrt".
    Raises:
        RuntimeError: onnxruntime missing, or the provider not available in this onnxruntime.
        FileNotFoundError: not an export folder.
    """

    def __init__(self, folder: str | Path, threads: int = 0, provider: str = "cpu") -> None:
        reason = ort_unavailable_reason()
        if reason:
            raise RuntimeError(reason)
        import onnxruntime as ort

        from sparsett_core.model.onnx_export import ExportManifest

        self.folder = Path(folder)
        self.manifest = ExportManifest.read(self.folder)
        name = PROVIDERS.get(provider)
        if name is None or name not in ort.get_available_providers():
            raise RuntimeError(f"ONNX Runtime execution provider {provider!r} is not available here "
                               f"(available: {ort.get_available_providers()}); install onnxruntime-gpu for "
                               "cuda/tensorrt, or use provider 'cpu'")
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        so.intra_op_num_threads = threads or torch.get_num_threads()
        so.inter_op_num_threads = 1
        # No busy-waiting: ONNX Runtime's pool threads spin after each run by default and take the
        # cores from everything else in the process (torch, the ROS executor): measured on 2 cores,
        # 2 threads, one track step: 112 ms spinning vs 45 ms not, and a torch step run in between
        # 3.4 s vs 0.2 s.
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        so.add_session_config_entry("session.inter_op.allow_spinning", "0")
        providers = [name] + (["CPUExecutionProvider"] if name != "CPUExecutionProvider" else [])

        def session(file: str):
            return ort.InferenceSession(str(self.folder / file), so, providers=providers)

        self.provider = provider
        self._template = session(self.manifest.template)
        self._track = [session(f) for f in self.manifest.track]

    def template(self, z: np.ndarray) -> list[np.ndarray]:
        """z (B, 3, Z, Z) float32 -> [k_0, v_0, ...] cross-attention keys/values (B, nH, Lz, hd)."""
        return self._template.run(None, {"z": np.ascontiguousarray(z, dtype=np.float32)})

    def track(self, x: np.ndarray, kv: Sequence[np.ndarray],
              attention: Callable[[int, np.ndarray], np.ndarray] | None = None) -> np.ndarray:
        """x (B, 3, X, X) float32 + keys/values -> packed maps (B, L, 5) float32.

        ``attention(i, logits)`` -> weights replaces decoder layer i's top-k softmax ("split" only;
        ``check_export`` uses it to give every layer torch's selection of keys).
        """
        x = np.ascontiguousarray(x, dtype=np.float32)
        if self.manifest.form == "whole":
            feed = {"x": x, **{f"{t}{i}": kv[2 * i + j] for i in range(self.manifest.num_layers)
                               for j, t in enumerate(("k", "v"))}}
            return self._track[0].run(None, feed)[0]
        if attention is None:
            k = self.manifest.top_k

            def attention(i: int, logits: np.ndarray) -> np.ndarray:  # no top_k: the plain softmax
                return topk_softmax_np(logits, k if k is not None else logits.shape[-1])

        f_x, y, logits, v = self._track[0].run(None, {"x": x})
        for i, sess in enumerate(self._track[1:-1], start=1):
            y, logits, v = sess.run(None, {"y": y, "attn": attention(i - 1, logits), "v": v,
                                           "k": kv[2 * i - 2], "vv": kv[2 * i - 1]})
        attn = attention(len(self._track) - 2, logits)
        return self._track[-1].run(None, {"y": y, "attn": attn, "v": v, "k": kv[-2], "vv": kv[-1], "f_x": f_x})[0]


def cached_export(model, form: str, cache_dir: str | Path | None = None) -> Path:
    """The export folder of ``model`` in the cache, exported (and checked) first if missing."""
    from sparsett_core.model.onnx_export import MANIFEST, ExportManifest, export_onnx, weights_sha

    sha = weights_sha(model)
    folder = Path(cache_dir or default_cache_dir()) / f"{model.config.variant}-{sha}-{form}"
    if (folder / MANIFEST).is_file():
        m = ExportManifest.read(folder)
        if m.weights_sha == sha and all((folder / f).is_file() for f in (m.template, *m.track)):
            return folder
    src = model if next(model.parameters()).device.type == "cpu" else copy.deepcopy(model).cpu()
    with src.torch_topk():  # the numpy top-k cannot be traced (export_onnx refuses it)
        export_onnx(src, folder, form)
    return folder


class OrtEngine:
    """``template`` / ``track`` with ONNX Runtime (the ``InferenceEngine`` contract, numpy inside).

    Args:
        model: the SparseTT to run (exported into the cache on first use).
        device: the tracker's device (crops are made on the host; "cuda" picks the CUDA provider
            unless ``options.ort_provider`` says otherwise).
        options: InferenceOptions with backend "onnxruntime" (fp32).
        folder: an existing export folder to use instead of the cache.
    """

    backend = "onnxruntime"
    graphs = False
    fallback_reason = None

    def __init__(self, model, device: torch.device, options, folder: str | Path | None = None) -> None:
        self.model, self.device, self.options = model, device, options
        provider = options.ort_provider if options.ort_provider != "auto" else (
            "cuda" if device.type == "cuda" else "cpu")
        form = "split" if provider == "cpu" else "whole"
        self.folder = Path(folder) if folder is not None else cached_export(model, form)
        self.steps = OrtSteps(self.folder, threads=torch.get_num_threads(), provider=provider)

    def describe(self) -> str:
        """One line for logs and the node's status."""
        return f"onnxruntime fp32 ({self.steps.provider} provider, {self.steps.manifest.form} graph)"

    def autocast(self) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()

    def template(self, z: torch.Tensor) -> TemplateFeatures:
        """z (B, 3, Z, Z) -> TemplateFeatures (keys/values as CPU tensors; ``enc`` is empty: track does not use it)."""
        kv = [torch.from_numpy(t) for t in self.steps.template(z.detach().cpu().numpy())]
        B = z.shape[0]
        return TemplateFeatures(torch.zeros(B, 0), tuple((kv[i], kv[i + 1]) for i in range(0, len(kv), 2)))

    def track(self, x: torch.Tensor, feats: TemplateFeatures) -> np.ndarray:
        """x (B, 3, X, X) -> packed maps (B, L, 5) float32 numpy (``fast.read_maps``)."""
        kv = [t.numpy() for pair in feats.cross_kv for t in pair]
        return self.steps.track(x.detach().cpu().numpy(), kv)


__all__ = ["OrtEngine", "OrtSteps", "cached_export", "default_cache_dir", "ort_unavailable_reason", "topk_softmax_np"]
