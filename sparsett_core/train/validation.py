"""Validation during training: the tracker on GOT-10k val, scored with sparsett_core.eval.

The evaluation code and the tracker are optional at import time (another part of the package);
when they are missing, validation is skipped with a warning instead of failing the training run.
"""
from __future__ import annotations

import logging

import torch.distributed as dist
from torch import nn

log = logging.getLogger(__name__)


def validate_got10k(model: nn.Module, root: str, preset: str = "got10k", max_sequences: int = 0,
                    rank: int = 0, world_size: int = 1) -> dict[str, float] | None:
    """AO / SR0.5 / SR0.75 of the model on GOT-10k val (one-pass, GOT-10k protocol).

    With several ranks every rank tracks every ``world_size``-th sequence and the scores are
    gathered, so all GPUs work and none waits idle in a collective.

    Args:
        model: SparseTT (put in eval mode here; the caller restores train mode).
        root: GOT-10k root holding ``val/list.txt``.
        preset: tracker preset.
        max_sequences: validate on the first N sequences (0 = all).
        rank, world_size: this process's share of the sequences.

    Returns:
        {"ao", "sr50", "sr75"} in [0, 1] (the same on every rank), or None when the
        eval/tracker modules are unavailable.
    """
    try:
        from sparsett_core import Tracker
        from sparsett_core.eval.datasets import load_dataset
        from sparsett_core.eval.metrics import aggregate, score_sequence
        from sparsett_core.eval.runner import track_sequence
    except ImportError as e:  # the eval helper's or tracker's code is not installed
        log.warning("validation skipped: %s", e)
        return None
    model.eval()
    seqs = load_dataset("got10k", root, "val")
    if max_sequences > 0:
        seqs = seqs[:max_sequences]
    scores = []
    for seq in seqs[rank::world_size]:
        tracker = Tracker(model, preset=preset)
        boxes, _ = track_sequence(tracker, seq)
        scores.append(score_sequence(boxes, seq.groundtruth, protocol="otb", present=seq.present,
                                     bound=seq.resolution))
    if world_size > 1:
        gathered: list[list] = [[] for _ in range(world_size)]
        dist.all_gather_object(gathered, scores)
        scores = [s for part in gathered for s in part]
    metrics = aggregate(scores).metrics()
    return {k: metrics[k] for k in ("ao", "sr50", "sr75")}
