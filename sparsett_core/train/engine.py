"""Actor (model + losses -> (loss, stats)) and Trainer (DDP, AMP, accumulation, checkpoints).

One process per device; ``torchrun`` sets ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` and
:func:`init_distributed` joins the group (NCCL on CUDA, gloo on CPU). Every optimiser step
consumes one global batch of ``batch_size`` pairs, split into ``grad_accum`` micro-batches on
each of ``world_size`` ranks. Losses are normalised by the positive count of the *global*
batch (all-reduced before the forward passes), and BatchNorm statistics are synchronised
(``sync_bn``), so the step equals one process holding the whole batch.

Checkpoints (``<output_dir>/<name>/epoch-<N>.pt``, N 0-based as the official ``epoch-19.pkl``) are
``sparsett_core.model.checkpoint.save_checkpoint`` files (loadable with
``SparseTT.from_checkpoint``) with the training state added: optimizer, GradScaler, epoch, step,
every rank's RNG states and the TrainConfig. They are written atomically by rank 0.
"""
from __future__ import annotations

import contextlib
import datetime
import logging
import math
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from .config import OptimConfig, TrainConfig
from .data import PairDataset, Shard, ShardedBatchSampler, build_loader, build_sources, crop_params, normalise, sampler_params
from .distill import DistillConfig, NanoTrackTeacher, distill_loss
from .losses import LossWeights, sparsett_loss
from .sampler import PairSampler
from .sync_bn import convert_sync_bn

log = logging.getLogger(__name__)

BACKBONE_PREFIX = "backbone."
CKPT_RE = re.compile(r"epoch-(\d+)\.pt$")


# ----------------------------------------------------------------------------------- distributed
@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the torchrun process group if ``WORLD_SIZE > 1`` and pick this rank's device.

    Args:
        device: "auto" (CUDA if available), "cuda" or "cpu".
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if use_cuda and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but CUDA is not available; use --device cpu")
    dev = torch.device(f"cuda:{local}") if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        # long timeout: index building (rank 0) and validation can outlast the 10-minute default
        dist.init_process_group("nccl" if use_cuda else "gloo", timeout=datetime.timedelta(hours=2))
    return DistInfo(rank, world, local, dev)


def _all_reduce_sum(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if info.distributed:
        dist.all_reduce(t)
    return t


def seed_everything(seed: int, rank: int) -> None:
    """Per-rank seeding of torch (dropout, drop path): ``seed + rank``."""
    torch.manual_seed(seed + rank)


def rng_state(info: DistInfo) -> dict[str, torch.Tensor]:
    """This process's torch RNG states (CPU and, on CUDA, the device's)."""
    state = {"torch": torch.get_rng_state()}
    if info.device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(info.device)
    return state


def set_rng_state(state: dict[str, torch.Tensor], info: DistInfo) -> None:
    torch.set_rng_state(state["torch"])
    if info.device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], info.device)


# ----------------------------------------------------------------------------------- model / optim
def build_model(cfg: TrainConfig) -> nn.Module:
    """SparseTT from ``cfg.model``; weights from ``init_checkpoint`` or the Swin ImageNet file.

    Raises:
        FileNotFoundError: ``pretrained_backbone`` is set but missing (set it to "" for random init).
    """
    from sparsett_core.config import ModelConfig
    from sparsett_core.model.checkpoint import load_weights
    from sparsett_core.model.sparsett import SparseTT

    model = SparseTT(ModelConfig.from_dict(dict(cfg.model)))
    if cfg.init_checkpoint:
        load_weights(model, cfg.init_checkpoint)
    elif cfg.pretrained_backbone:
        if not Path(cfg.pretrained_backbone).is_file():
            raise FileNotFoundError(
                f"pretrained_backbone {cfg.pretrained_backbone} not found: download the Microsoft Swin-T ImageNet "
                "file swin_tiny_patch4_window7_224.pth there (lite_v2: NanoTrack's nanotrackv2_state_dict.pt), "
                "or set pretrained_backbone: '' for random init")
        kind = load_weights(model, cfg.pretrained_backbone)
        if kind not in ("imagenet", "nanotrack"):
            raise ValueError(f"pretrained_backbone {cfg.pretrained_backbone} is a {kind} checkpoint, not a backbone "
                             "file (Swin ImageNet, NanoTrack); use init_checkpoint for full SparseTT checkpoints")
    return model


def param_groups(model: nn.Module, optim: OptimConfig) -> list[dict[str, Any]]:
    """Two AdamW groups: backbone (``lr * backbone_lr_mult``) and the rest (``lr``)."""
    backbone = [p for n, p in model.named_parameters() if n.startswith(BACKBONE_PREFIX) and p.requires_grad]
    rest = [p for n, p in model.named_parameters() if not n.startswith(BACKBONE_PREFIX) and p.requires_grad]
    return [{"params": backbone, "lr_mult": optim.backbone_lr_mult, "name": "backbone"},
            {"params": rest, "lr_mult": 1.0, "name": "rest"}]


def build_optimizer(model: nn.Module, optim: OptimConfig) -> torch.optim.Optimizer:
    groups = param_groups(model, optim)
    for g in groups:
        g["lr"] = optim.lr * g["lr_mult"]
    return torch.optim.AdamW(groups, lr=optim.lr, betas=tuple(optim.betas), weight_decay=optim.weight_decay)


def set_epoch_lr(optimizer: torch.optim.Optimizer, optim: OptimConfig, epoch: int) -> float:
    """Apply the step schedule for ``epoch``; returns the base lr."""
    lr = optim.lr * optim.lr_factor(epoch)
    for g in optimizer.param_groups:
        g["lr"] = lr * g["lr_mult"]
    return lr


# ----------------------------------------------------------------------------------- actor
class SparseTTActor:
    """Model + losses: a batch in, ``(loss, stats)`` out (pytracking's actor).

    Args:
        model: SparseTT (possibly DDP-wrapped) returning the training dict.
        weights: loss weights.
        device: where the batch goes.
        autocast: a context-manager factory for mixed precision (``contextlib.nullcontext`` = fp32).
        distill: the distillation terms' weights (used when the batch holds teacher targets).
    """

    def __init__(self, model: nn.Module, weights: LossWeights, device: torch.device,
                 autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
                 distill: DistillConfig = DistillConfig()) -> None:
        self.model, self.weights, self.device, self.autocast = model, weights, device, autocast
        self.distill = distill

    def __call__(self, batch: dict[str, torch.Tensor], normaliser: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Loss of one micro-batch, normalised by the global ``max(#positives, 1)``.

        Args:
            batch: ``z`` (B,3,127,127) uint8 BGR, ``x`` (B,3,289,289) uint8 BGR, ``cls_gt`` (B,361,1),
                ``box_gt`` (B,361,4).
            normaliser: scalar tensor.
        """
        nb = self.device.type == "cuda"
        dtype = next(self.model.parameters()).dtype  # float32 (float64 in exactness tests)
        fmt = _unwrap(self.model).config.input_format
        z = normalise(batch["z"].to(self.device, non_blocking=nb), fmt).to(dtype)
        x = normalise(batch["x"].to(self.device, non_blocking=nb), fmt).to(dtype)
        cls_gt = batch["cls_gt"].to(self.device, non_blocking=nb)
        box_gt = batch["box_gt"].to(self.device, non_blocking=nb)
        with self.autocast():
            out = self.model(z, x)
        loss, stats = sparsett_loss(out, cls_gt, box_gt, normaliser, self.weights)
        if "t_score" in batch:  # distillation from NanoTrack (train/distill.py)
            extra, more = distill_loss(out, batch["t_score"].to(self.device, non_blocking=nb),
                                       batch["t_box"].to(self.device, non_blocking=nb), normaliser, self.distill)
            loss = loss + extra
            stats = {**stats, **more, "loss": loss.detach()}
        return loss, stats


# ----------------------------------------------------------------------------------- trainer
def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, DDP) else model


def latest_checkpoint(folder: str | Path) -> Path | None:
    """The ``epoch-<N>.pt`` with the largest N in ``folder`` (None if there is none)."""
    found = [(int(m.group(1)), p) for p in Path(folder).glob("epoch-*.pt") if (m := CKPT_RE.search(p.name))]
    return max(found)[1] if found else None


class Trainer:
    """Runs the epochs: data, actor, optimiser, schedule, logging, checkpoints, validation.

    Args:
        cfg: the recipe.
        info: this process's rank/device (:func:`init_distributed`).
        model: the model to train (built with :func:`build_model` if None).
        sources: datasets (built from ``cfg.data`` if None).
        progress: show a tqdm bar on rank 0.
        tensorboard: write TensorBoard scalars on rank 0.
    """

    def __init__(self, cfg: TrainConfig, info: DistInfo = DistInfo(), model: nn.Module | None = None,
                 sources=None, progress: bool = True, tensorboard: bool = True) -> None:
        self.cfg, self.info = cfg, info
        self.out_dir = Path(cfg.output_dir) / cfg.name
        seed_everything(cfg.seed, info.rank)
        if sources is None:
            sources = self._build_sources()
        model = build_model(cfg) if model is None else model
        if cfg.optim.backbone_lr_mult == 0:  # frozen backbone (lite recipe): no gradients computed for it
            model.backbone.requires_grad_(False)
        if cfg.sync_bn and info.distributed:
            model = convert_sync_bn(model, info.device)
        self.model = model.to(info.device)
        self.ddp = DDP(self.model, device_ids=[info.device.index] if info.device.type == "cuda" else None) \
            if info.distributed else None
        self.optimizer = build_optimizer(self.model, cfg.optim)
        self.scaler = torch.amp.GradScaler(info.device.type, enabled=cfg.amp == "fp16")
        self.actor = SparseTTActor(self.ddp or self.model, cfg.loss, info.device, self._autocast, cfg.distill)
        self.micro_batch = cfg.micro_batch(info.world_size)
        self.steps = cfg.num_steps()
        mcfg = self.model.config
        sampler = PairSampler(sources, sampler_params(cfg.data))
        teacher = NanoTrackTeacher(cfg.distill, mcfg.x_size, mcfg.total_stride) if cfg.distill.enabled else None
        self.dataset = PairDataset(sampler, crop_params(cfg.data), cfg.seed, mcfg.score_size, mcfg.total_stride,
                                   cfg.data.augment, offset=mcfg.grid_offset, teacher=teacher,
                                   unlabelled_prob=cfg.data.unlabelled_prob)
        self.batch_sampler = ShardedBatchSampler(cfg.data.pairs_per_epoch, cfg.batch_size, self.micro_batch,
                                                 self.steps, Shard(info.rank, info.world_size), cfg.grad_accum)
        self.loader = build_loader(self.dataset, self.batch_sampler, cfg.data.num_workers,
                                   pin_memory=info.device.type == "cuda")
        self.epoch, self.step = 0, 0
        self.progress = progress and info.is_main
        self.writer = None
        if tensorboard and info.is_main:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.out_dir / "tb"))

    def _build_sources(self):
        # rank 0 builds (and caches) the indexes first; the others then read the cache
        if self.info.is_main:
            sources = build_sources(self.cfg.data)
        if self.info.distributed:
            dist.barrier()
        if not self.info.is_main:
            sources = build_sources(self.cfg.data)
        return sources

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.cfg.amp == "none":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.cfg.amp == "bf16" else torch.float16
        return torch.autocast(self.info.device.type, dtype=dtype)

    # ------------------------------------------------------------------ one step
    def accumulate(self, micro_batches: list[dict[str, torch.Tensor]]) -> dict[str, float]:
        """Forward and backward of this rank's micro-batches of one global batch (no update).

        The loss is normalised by ``max(#positives, 1)`` of the global batch (all ranks, all
        micro-batches); gradients are synchronised by DDP on the last micro-batch only.

        Returns:
            the global batch's loss terms (each rank's terms are partial sums over the global
            normaliser, summed over ranks).
        """
        info = self.info
        positives = sum(int((mb["cls_gt"] == 1).sum()) for mb in micro_batches)
        npos = _all_reduce_sum(torch.tensor([float(positives)], device=info.device), info)
        normaliser = npos.clamp(min=1.0)[0]
        totals: dict[str, torch.Tensor] = {}
        for k, mb in enumerate(micro_batches):
            last = k == len(micro_batches) - 1
            sync = contextlib.nullcontext() if (self.ddp is None or last) else self.ddp.no_sync()
            with sync:
                loss, stats = self.actor(mb, normaliser)
                # DDP averages gradients over ranks; the loss is normalised globally, so scale back
                self.scaler.scale(loss * info.world_size).backward()
            for name, v in stats.items():
                totals[name] = totals.get(name, 0.0) + v
        names = sorted(totals)
        packed = _all_reduce_sum(torch.stack([totals[n].double() for n in names]), info)
        return {n: float(v) for n, v in zip(names, packed.cpu())}

    def optimizer_step(self) -> None:
        """Unscale, (clip), step, update the scaler, zero the gradients."""
        self.scaler.unscale_(self.optimizer)
        if self.cfg.optim.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.optim.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1

    def train_step(self, micro_batches: list[dict[str, torch.Tensor]]) -> dict[str, float]:
        """One optimiser step over this rank's micro-batches of a global batch; returns the loss terms."""
        stats = self.accumulate(micro_batches)
        self.optimizer_step()
        return stats

    # ------------------------------------------------------------------ epochs
    def train_epoch(self, epoch: int) -> list[dict[str, float]]:
        """Train one epoch; returns the per-step loss terms."""
        self.epoch = epoch
        lr = set_epoch_lr(self.optimizer, self.cfg.optim, epoch)
        self.batch_sampler.set_epoch(epoch)
        self.model.train()
        history = []
        it = iter(self.loader)
        bar = None
        if self.progress:
            from tqdm import tqdm

            bar = tqdm(total=self.steps, desc=f"epoch {epoch}", dynamic_ncols=True)
        t0 = time.perf_counter()
        for s in range(self.steps):
            micro = [next(it) for _ in range(self.cfg.grad_accum)]
            stats = self.train_step(micro)
            history.append(stats)
            if not math.isfinite(stats["loss"]):
                raise FloatingPointError(f"loss is {stats['loss']} at epoch {epoch} step {s}; lower the lr "
                                         "or use amp: none/bf16")
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{stats['loss']:.3f}", iou=f"{stats['iou_conv']:.3f}")
            if self.writer is not None and (self.step % self.cfg.log_every == 0 or s == self.steps - 1):
                for name, v in stats.items():
                    self.writer.add_scalar(f"train/{name}", v, self.step)
                self.writer.add_scalar("train/lr", lr, self.step)
                dt = time.perf_counter() - t0
                self.writer.add_scalar("train/pairs_per_s", (s + 1) * self.cfg.batch_size / max(dt, 1e-9), self.step)
        if bar is not None:
            bar.close()
        return history

    def fit(self, epochs: int | None = None) -> list[dict[str, float]]:
        """Train from ``self.epoch`` to ``cfg.epochs`` (or ``epochs`` more), checkpointing each epoch."""
        end = self.cfg.epochs if epochs is None else min(self.cfg.epochs, self.epoch + epochs)
        history = []
        for epoch in range(self.epoch, end):
            history += self.train_epoch(epoch)
            self.save(epoch)
            self.epoch = epoch + 1
            self.validate(epoch)
        if self.writer is not None:
            self.writer.flush()
        return history

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_path(self, epoch: int) -> Path:
        return self.out_dir / f"epoch-{epoch}.pt"

    def save(self, epoch: int) -> Path | None:
        """Write ``epoch-<epoch>.pt`` (rank 0, atomic) with the state needed to resume exactly."""
        from sparsett_core.model.checkpoint import save_checkpoint

        states = [rng_state(self.info)]
        if self.info.distributed:
            states = [None] * self.info.world_size
            dist.all_gather_object(states, {k: v.cpu() for k, v in rng_state(self.info).items()})
        path = None
        if self.info.is_main:
            path = save_checkpoint(
                _unwrap(self.model), self.checkpoint_path(epoch), epoch=epoch, step=self.step,
                optimizer=self.optimizer.state_dict(), scaler=self.scaler.state_dict(), rng=states,
                world_size=self.info.world_size, train_config=self.cfg.to_dict())
        if self.info.distributed:
            dist.barrier()
        return path

    def resume(self, path: str | Path) -> None:
        """Continue after the epoch stored in ``path`` (model, optimiser, scaler, RNG, epoch, step).

        Raises:
            CheckpointError: unreadable file or one without training state.
        """
        from sparsett_core.model.checkpoint import CheckpointError, read_checkpoint

        ckpt = read_checkpoint(path)
        missing = [k for k in ("state_dict", "optimizer", "epoch", "step", "rng") if k not in ckpt]
        if missing:
            raise CheckpointError(f"{path} has no training state ({missing} missing); use init_checkpoint to "
                                  "fine-tune from a model-only checkpoint")
        _unwrap(self.model).load_state_dict(ckpt["state_dict"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if "scaler" in ckpt:
            self.scaler.load_state_dict(ckpt["scaler"])
        self.epoch, self.step = int(ckpt["epoch"]) + 1, int(ckpt["step"])
        states = ckpt["rng"]
        if len(states) == self.info.world_size:
            set_rng_state(states[self.info.rank], self.info)
        else:
            log.warning("checkpoint was written by %d ranks, this run has %d: RNG states reseeded, the run "
                        "will not repeat the original exactly", len(states), self.info.world_size)
            seed_everything(self.cfg.seed + 7919 * self.epoch, self.info.rank)

    # ------------------------------------------------------------------ validation
    def validate(self, epoch: int) -> dict[str, float] | None:
        """GOT-10k val AO/SR with the tracker from ``val.from_epoch`` on (sequences shared over ranks).

        Returns None when skipped (no ``val.root``, an earlier epoch, or the eval code missing).
        """
        v = self.cfg.val
        if not v.root or epoch < v.from_epoch:
            return None
        from .validation import validate_got10k

        result = validate_got10k(_unwrap(self.model), v.root, v.preset, v.max_sequences,
                                 self.info.rank, self.info.world_size)
        if result is not None and self.writer is not None:
            for name, value in result.items():
                self.writer.add_scalar(f"val/{name}", value, self.step)
        self.model.train()
        return result
