"""The default weights shipped inside the package: SparseTT-Lite (see MODEL_CARD.md here).

``SparseTT.from_checkpoint("default")`` (or ``""``) loads them; so do the tools' ``--checkpoint
default`` and the node's empty ``checkpoint`` parameter. The file is a regular ``sparsett_ros``
checkpoint (fp16 tensors, model config included) and needs no download.
"""
from __future__ import annotations

import os
from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parent
DEFAULT_CHECKPOINT_NAME = "default.pt"
DEFAULT_SPECS = ("", "default")


def default_checkpoint_path() -> Path:
    """Path of the shipped SparseTT-Lite checkpoint.

    Raises:
        FileNotFoundError: the package was installed without its weights file (the message says
            what to do).
    """
    path = WEIGHTS_DIR / DEFAULT_CHECKPOINT_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"the default weights {path} are missing from this installation: reinstall the package "
            "(its package data includes sparsett_core/weights/*.pt) or pass a checkpoint path")
    return path


def is_default(spec: str | os.PathLike | None) -> bool:
    """True for the names that mean "the shipped weights": None, "" and "default" (a str, not a Path)."""
    return spec is None or (isinstance(spec, str) and spec.strip() in DEFAULT_SPECS)


__all__ = ["DEFAULT_CHECKPOINT_NAME", "WEIGHTS_DIR", "default_checkpoint_path", "is_default"]
