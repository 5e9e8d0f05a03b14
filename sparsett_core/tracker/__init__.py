"""SiamFC++-style tracking pipeline around SparseTT."""
from sparsett_core.tracker.presets import TrackerPreset, get_preset, preset_names
from sparsett_core.tracker.tracker import Tracker

__all__ = ["Tracker", "TrackerPreset", "get_preset", "preset_names"]
