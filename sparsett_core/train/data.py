"""Torch data pipeline: pair dataset, rank-sharded batch sampler, loader and normalisation.

Pair ``k`` (a global counter: ``epoch * pairs_per_epoch + i``) is drawn from its own generator
``numpy.random.default_rng([seed, k])``, so the data are the same for any number of workers,
ranks or accumulation steps, and a resumed run sees exactly the pairs an uninterrupted one does.
Workers return uint8 BGR crops; :func:`normalise` turns them into the model's input on device.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from sparsett_core.tracker.crop import IMAGENET_MEAN_RGB as MEAN_RGB
from sparsett_core.tracker.crop import IMAGENET_STD_RGB as STD_RGB

from .config import DataConfig
from .datasets import load_index
from .sampler import PairSampler, SamplerParams, Source, free_region
from .photometric import PairAugment, after_crop, before_crop, paste_target
from .targets import dense_target
from .transforms import CropParams, crop_pair


def build_sources(cfg: DataConfig) -> list[Source]:
    """Load (or build and cache) the index of every configured dataset, without its ``exclude`` names.

    Raises:
        ValueError: an excluded name is not a sequence of its dataset (a typo would silently train
            on a validation video).
    """
    sources = []
    for d in cfg.datasets:
        seqs = load_index(d.kind, d.root, d.subset, cfg.cache_dir)
        unknown = sorted(set(d.exclude) - {s.name for s in seqs})
        if unknown:
            raise ValueError(f"dataset {d.kind} at {d.root}: exclude names {unknown} are not among its sequences")
        kept = tuple(s for s in seqs if s.name not in set(d.exclude))
        sources.append(Source(f"{d.kind}:{d.subset}", kept, d.ratio, d.max_gap))
    return sources


def sampler_params(cfg: DataConfig) -> SamplerParams:
    return SamplerParams(cfg.negative_ratio, cfg.gap_mode, cfg.min_area_rate, cfg.max_area_rate, cfg.max_aspect)


def crop_params(cfg: DataConfig) -> CropParams:
    return CropParams(cfg.context_amount, cfg.z_size, cfg.x_size, cfg.max_scale, cfg.max_shift)


class PairDataset(Dataset):
    """Map-style dataset: global pair index -> training sample.

    Item ``k`` is a dict: ``z`` (3, Z, Z) uint8 BGR, ``x`` (3, X, X) uint8 BGR,
    ``cls_gt`` (L, 1) float32, ``box_gt`` (L, 4) float32 (crop pixels), ``negative`` bool, and with a
    distillation teacher ``t_score`` (L, 1), ``t_box`` (L, 4). An unlabelled pair (``unlabelled_prob``,
    teacher needed) has ``cls_gt`` -1 (ignored) everywhere: only the teacher's targets train it.
    """

    def __init__(self, sampler: PairSampler, crop: CropParams, seed: int, score_size: int = 19,
                 stride: int = 16, augment: PairAugment = PairAugment(), offset: int | None = None,
                 teacher: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None,
                 unlabelled_prob: float = 0.0) -> None:
        if unlabelled_prob > 0 and teacher is None:
            raise ValueError("unlabelled pairs need a distillation teacher (nothing else can train them)")
        self.unlabelled_prob = unlabelled_prob
        self.augment = augment  # extra augmentation (photometric.py), off by default
        self.offset = offset  # crop pixel of grid point 0 (ModelConfig.grid_offset)
        self.teacher = teacher  # distillation: (crop_z, crop_x) -> teacher score (L, 1), boxes (L, 4)
        self.sampler = sampler
        self.crop = crop
        self.seed = seed
        self.score_size = score_size
        self.stride = stride

    def __len__(self) -> int:  # indices are unbounded global counters; the batch sampler picks them
        return 2**62

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([self.seed, int(index)])
        pair = self.sampler.sample(rng)
        unlabelled = False
        if self.unlabelled_prob > 0 and not pair.negative and rng.random() < self.unlabelled_prob:
            free = free_region(pair, rng, self.sampler.params)
            if free is not None:
                pair, unlabelled = free, True
        if not unlabelled and self.augment.paste_prob > 0 and rng.random() < self.augment.paste_prob and not pair.negative:
            pair = paste_target(pair, self.sampler.sample(rng).image_x, rng)  # another sequence's frame
        pair = before_crop(pair, rng, self.augment)
        crop_z, crop_x, _, box_x = crop_pair(pair.image_z, pair.box_z, pair.image_x, pair.box_x, self.crop, rng)
        crop_z, crop_x, box_x = after_crop(crop_z, crop_x, box_x, rng, self.augment)
        cls_gt, box_gt = dense_target(box_x, pair.negative, self.score_size, self.stride, self.crop.x_size,
                                      self.offset)
        if unlabelled:
            cls_gt = np.full_like(cls_gt, -1.0)
            box_gt = np.zeros_like(box_gt)
        item = {"z": np.ascontiguousarray(crop_z.transpose(2, 0, 1)),
                "x": np.ascontiguousarray(crop_x.transpose(2, 0, 1)),
                "cls_gt": cls_gt, "box_gt": box_gt, "negative": np.bool_(pair.negative)}
        if self.teacher is not None:
            item["t_score"], item["t_box"] = self.teacher(crop_z, crop_x)
        return item


@dataclass(frozen=True)
class Shard:
    """Which part of every global batch this process reads."""

    rank: int = 0
    world_size: int = 1


class ShardedBatchSampler(Sampler[list[int]]):
    """Micro-batches of global pair indices for one rank (DistributedSampler-style sharding).

    Optimiser step ``s`` of epoch ``e`` uses the global batch ``base + [0, B)`` with
    ``base = e * pairs_per_epoch + s * B``; micro-batch ``m`` of rank ``r`` is
    ``base + (m * world + r) * mb + [0, mb)``. One process with batch B therefore sees exactly
    the pairs that ``world`` processes see together.
    """

    def __init__(self, pairs_per_epoch: int, batch_size: int, micro_batch: int, steps: int,
                 shard: Shard, grad_accum: int = 1) -> None:
        if micro_batch * shard.world_size * grad_accum != batch_size:
            raise ValueError("micro_batch * world_size * grad_accum must equal batch_size")
        self.pairs_per_epoch, self.batch_size, self.micro_batch = pairs_per_epoch, batch_size, micro_batch
        self.steps, self.shard, self.grad_accum = steps, shard, grad_accum
        self.epoch, self.start_step = 0, 0

    def set_epoch(self, epoch: int, start_step: int = 0) -> None:
        """Select the epoch (and the first step, to skip finished ones)."""
        self.epoch, self.start_step = epoch, start_step

    def __len__(self) -> int:
        return (self.steps - self.start_step) * self.grad_accum

    def __iter__(self) -> Iterator[list[int]]:
        w, r, mb = self.shard.world_size, self.shard.rank, self.micro_batch
        for s in range(self.start_step, self.steps):
            base = self.epoch * self.pairs_per_epoch + s * self.batch_size
            for m in range(self.grad_accum):
                first = base + (m * w + r) * mb
                yield list(range(first, first + mb))


def _worker_init(_: int) -> None:
    cv2.setNumThreads(1)
    torch.set_num_threads(1)


def build_loader(dataset: PairDataset, batch_sampler: ShardedBatchSampler, num_workers: int,
                 pin_memory: bool = False) -> DataLoader:
    """DataLoader over the sharded batches; workers decode and crop with OpenCV (1 thread each).

    The loader gets its own torch generator so that creating an iterator does not draw from the
    global RNG (which drives dropout and drop path and is part of the resumable state).
    """
    return DataLoader(dataset, batch_sampler=batch_sampler, num_workers=num_workers, pin_memory=pin_memory,
                      generator=torch.Generator().manual_seed(0),
                      worker_init_fn=_worker_init if num_workers > 0 else None,
                      prefetch_factor=4 if num_workers > 0 else None, persistent_workers=False)


def normalise(images: torch.Tensor, input_format: str = "imagenet_rgb") -> torch.Tensor:
    """uint8 BGR (B, 3, H, W) -> float32 network input (B, 3, H, W) in ``ModelConfig.input_format``:
    RGB normalised with ImageNet mean/std, or BGR [0, 255] ("bgr255")."""
    if input_format == "bgr255":
        return images.float()
    rgb = images.flip(1).float()
    mean = torch.tensor(MEAN_RGB, device=images.device, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(STD_RGB, device=images.device, dtype=torch.float32).view(1, 3, 1, 1)
    return (rgb - mean) / std
