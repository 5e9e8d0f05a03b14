"""sparsett_core: a faithful, fast SparseTT tracker (model, checkpoints, tracking pipeline).

Public API::

    from sparsett_core import SparseTT, Tracker
    model = SparseTT.from_checkpoint(path, device="cpu")
    tracker = Tracker(model, preset="got10k")
"""
from sparsett_core.config import ModelConfig
from sparsett_core.model import CheckpointError, SparseTT
from sparsett_core.tracker import InferenceOptions, MultiTracker, Tracker, TrackerPreset

__all__ = ["CheckpointError", "InferenceOptions", "ModelConfig", "MultiTracker", "SparseTT", "Tracker", "TrackerPreset"]
