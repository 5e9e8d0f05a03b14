"""SiamFC++-style tracking pipeline around SparseTT."""
from sparsett_core.tracker.presets import TrackerPreset, get_preset, preset_names
from sparsett_core.tracker.tracker import Tracker
from sparsett_core.tracker.fast import InferenceOptions
from sparsett_core.tracker.multi import MultiTracker

__all__ = ["InferenceOptions", "MultiTracker", "Tracker", "TrackerPreset", "get_preset", "preset_names"]
