"""TrainConfig: the training recipe as frozen dataclasses, loaded strictly from YAML.

Defaults are the official GOT-10k recipe (reference section 4); ``config/train/*.yaml`` override
them. Loading is strict: an unknown key anywhere is an error that lists the valid keys, and a
value of the wrong type is an error naming the field.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from .distill import DistillConfig
from .losses import LossWeights
from .photometric import PairAugment

DATASET_KINDS = ("got10k", "lasot", "trackingnet", "vid", "det", "coco", "sequences")


@dataclass(frozen=True)
class DatasetSpec:
    """One training source.

    Attributes:
        kind: reader, one of DATASET_KINDS ("sequences" = own sequences, one folder each).
        root: dataset root in its published layout (see docs/training.md).
        subset: split ("train", "val"; VID also "train_val"; COCO "train2017").
        ratio: sampling weight; weights are normalised by their sum over all sources.
        max_gap: largest |index difference| of a positive pair's two frames (videos only).
        exclude: sequence names left out (e.g. the videos of a held-out validation split).
    """

    kind: str
    root: str
    subset: str = "train"
    ratio: float = 1.0
    max_gap: int = 100
    exclude: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in DATASET_KINDS:
            raise ValueError(f"dataset kind {self.kind!r} is not one of {DATASET_KINDS}")
        if self.ratio <= 0:
            raise ValueError(f"dataset {self.kind}: ratio must be > 0, got {self.ratio}")
        if self.max_gap < 0:
            raise ValueError(f"dataset {self.kind}: max_gap must be >= 0, got {self.max_gap}")


@dataclass(frozen=True)
class DataConfig:
    """Pair sampling, filtering and augmentation.

    Attributes:
        datasets: the training sources.
        pairs_per_epoch: training pairs per epoch (official: 300,000 GOT-10k / 600,000 fulldata).
        negative_ratio: probability of a negative pair (frames of two unrelated sequences).
        gap_mode: "bounded" = |i2 - i1| <= max_gap (default); "official" = the official sampler's
            i2 >= i1 - max_gap with no upper bound (a bug kept for reproduction only).
        min_area_rate, max_area_rate, max_aspect: box filter (box area / image area in
            (min, max), max(w/h, h/w) < max_aspect), applied to both frames.
        context_amount: context margin of the crops (as the tracker).
        z_size, x_size: template / search crop sides.
        max_scale: search crop scale factor drawn from U(1/(1+s), 1+s).
        max_shift: search crop shift drawn from U(-m, m) * crop side / 2 (frame pixels).
        num_workers: DataLoader worker processes per rank (decode + crop with OpenCV).
        cache_dir: where dataset indexes are cached ("" = ~/.cache/sparsett/train_index).
        augment: extra augmentation for small datasets (photometric.PairAugment; off by default).
        unlabelled_prob: probability that a positive pair becomes an *unlabelled* pair (a random
            region of its frames, ``sampler.free_region``), trained by the distillation teacher's
            targets only (needs ``distill``; 0 = off).
    """

    datasets: tuple[DatasetSpec, ...] = (DatasetSpec(kind="got10k", root="datasets/GOT-10k"),)
    pairs_per_epoch: int = 300_000
    negative_ratio: float = 0.33
    gap_mode: str = "bounded"
    min_area_rate: float = 0.001
    max_area_rate: float = 0.6
    max_aspect: float = 10.0
    context_amount: float = 0.5
    z_size: int = 127
    x_size: int = 289
    max_scale: float = 0.3
    max_shift: float = 0.4
    num_workers: int = 8
    cache_dir: str = ""
    augment: PairAugment = field(default_factory=PairAugment)
    unlabelled_prob: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.unlabelled_prob <= 1.0:
            raise ValueError(f"data.unlabelled_prob must be in [0, 1], got {self.unlabelled_prob}")
        if not self.datasets:
            raise ValueError("data.datasets is empty: list at least one training source")
        if self.gap_mode not in ("bounded", "official"):
            raise ValueError(f"data.gap_mode must be 'bounded' or 'official', got {self.gap_mode!r}")
        if not 0.0 <= self.negative_ratio < 1.0:
            raise ValueError(f"data.negative_ratio must be in [0, 1), got {self.negative_ratio}")


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with a step schedule by epoch.

    Attributes:
        lr: base learning rate (heads, neck, adjusters).
        backbone_lr_mult: factor on ``lr`` for the backbone's parameters.
        lr_milestones: epochs at which the lr is multiplied by ``lr_gamma``.
        weight_decay, betas: AdamW hyper-parameters.
        grad_clip: max global gradient norm (0 = no clipping, as the official recipe).
    """

    lr: float = 1e-4
    backbone_lr_mult: float = 0.1
    lr_milestones: tuple[int, ...] = (10, 15)
    lr_gamma: float = 0.1
    weight_decay: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float = 0.0

    def lr_factor(self, epoch: int) -> float:
        """Schedule factor of ``epoch`` (0-based): gamma ** (number of milestones <= epoch)."""
        return self.lr_gamma ** sum(1 for m in self.lr_milestones if epoch >= m)


@dataclass(frozen=True)
class ValConfig:
    """Validation on GOT-10k val with the tracker (sparsett_core.eval).

    Attributes:
        root: GOT-10k root holding ``val/`` ("" = no validation).
        from_epoch: first epoch (0-based) validated (official: 15).
        max_sequences: validate on the first N sequences only (0 = all 180).
        preset: tracker preset used for validation.
    """

    root: str = ""
    from_epoch: int = 15
    max_sequences: int = 0
    preset: str = "got10k"


@dataclass(frozen=True)
class TrainConfig:
    """The whole training recipe.

    Attributes:
        name: experiment name (sub-folder of ``output_dir``).
        output_dir: where checkpoints and TensorBoard logs go.
        seed: base seed; rank r seeds torch with ``seed + r`` and every pair i of epoch e is
            drawn from its own generator seeded by (seed, e, i), independent of workers/ranks.
        model: ModelConfig overrides (``sparsett_core.config.ModelConfig`` field names).
        pretrained_backbone: the Microsoft Swin-T ImageNet file; "" = random init (tests).
        init_checkpoint: a full SparseTT checkpoint to start from (fine-tuning); "" = none.
        epochs: number of epochs.
        batch_size: global batch (all ranks x accumulation steps).
        grad_accum: micro-batches accumulated per optimiser step.
        amp: "none", "bf16" or "fp16" autocast (fp16 uses a GradScaler).
        sync_bn: synchronise BatchNorm statistics across ranks (the official use_sync_bn).
        log_every: optimiser steps between TensorBoard scalar writes.
        steps_per_epoch: 0 = pairs_per_epoch // batch_size; > 0 caps it (smoke tests).
        distill: distillation from NanoTrack v2 (off by default; ``train/distill.py``).
    """

    name: str = "sparsett-got10k"
    output_dir: str = "work_dir/train"
    seed: int = 1_000_000_007
    model: Mapping[str, Any] = field(default_factory=lambda: {"dropout": 0.1})
    pretrained_backbone: str = "models/swin/swin_tiny_patch4_window7_224.pth"
    init_checkpoint: str = ""
    epochs: int = 20
    batch_size: int = 32
    grad_accum: int = 1
    amp: str = "none"
    sync_bn: bool = True
    log_every: int = 20
    steps_per_epoch: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossWeights = field(default_factory=LossWeights)
    val: ValConfig = field(default_factory=ValConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)

    def __post_init__(self) -> None:
        if self.amp not in ("none", "bf16", "fp16"):
            raise ValueError(f"amp must be 'none', 'bf16' or 'fp16', got {self.amp!r}")
        if self.grad_accum < 1 or self.batch_size < 1 or self.epochs < 1:
            raise ValueError("batch_size, grad_accum and epochs must be >= 1")
        if self.data.unlabelled_prob > 0 and not self.distill.enabled:
            raise ValueError("data.unlabelled_prob > 0 needs distillation (distill.backbone and distill.head): "
                             "unlabelled pairs are trained by the teacher's targets only")

    def micro_batch(self, world_size: int) -> int:
        """Per-rank micro-batch size; the global batch must split evenly.

        Raises:
            ValueError: batch_size is not a multiple of world_size * grad_accum.
        """
        div = world_size * self.grad_accum
        if self.batch_size % div:
            raise ValueError(
                f"batch_size={self.batch_size} is not divisible by world_size*grad_accum={div}; "
                "choose a batch size that is a multiple of it"
            )
        return self.batch_size // div

    def num_steps(self) -> int:
        """Optimiser steps per epoch."""
        n = self.data.pairs_per_epoch // self.batch_size
        if n < 1:
            raise ValueError("data.pairs_per_epoch is smaller than batch_size: no step per epoch")
        return min(n, self.steps_per_epoch) if self.steps_per_epoch > 0 else n

    def to_dict(self) -> dict[str, Any]:
        """Plain types only (tuples -> lists), for YAML and checkpoints."""
        return _plain(dataclasses.asdict(self))

    def replace(self, **changes: Any) -> "TrainConfig":
        """A copy with top-level fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _build(cls: type, values: Any, where: str) -> Any:
    """Build dataclass ``cls`` from a mapping, strictly (unknown keys and wrong types fail)."""
    if not isinstance(values, Mapping):
        raise ValueError(f"{where or 'config'}: expected a mapping, got {type(values).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(f"{where or 'config'}: unknown keys {unknown}; valid keys: {sorted(fields)}")
    kwargs = {name: _convert(hints[name], values[name], f"{where}.{name}".lstrip(".")) for name in values}
    return cls(**kwargs)


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(tp)
        item_types = [args[0]] * len(value) if len(args) == 2 and args[1] is Ellipsis else list(args)
        if len(item_types) != len(value):
            raise ValueError(f"{where}: expected {len(item_types)} values, got {len(value)}")
        return tuple(_convert(t, v, f"{where}[{i}]") for i, (t, v) in enumerate(zip(item_types, value)))
    if origin in (typing.Union, types.UnionType):
        return value
    if origin is not None and issubclass(origin, Mapping) or tp is Mapping:
        if not isinstance(value, Mapping):
            raise ValueError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):  # PyYAML reads "1e-4" (no dot) as a string
        try:
            return float(value)
        except ValueError:
            raise ValueError(f"{where}: expected a number, got {value!r}") from None
    if tp in (int, float, str, bool) and not (isinstance(value, tp) and not (tp is int and isinstance(value, bool))):
        raise ValueError(f"{where}: expected {tp.__name__}, got {value!r}")
    return value


def config_from_dict(values: Mapping[str, Any]) -> TrainConfig:
    """TrainConfig from a nested mapping; unknown keys or wrong types are errors."""
    return _build(TrainConfig, values, "")


def load_config(path: str | Path, overrides: Mapping[str, Any] | None = None) -> TrainConfig:
    """Load a YAML recipe, then apply dotted overrides (``{"optim.lr": 1e-5}``; a number indexes a list:
    ``{"data.datasets.0.root": "/data/train"}``).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: an unknown key or a wrong type (the message names it).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"training config {path} not found (see config/train/*.yaml)")
    values = yaml.safe_load(path.read_text()) or {}
    for dotted, value in (overrides or {}).items():
        node = values
        *parents, leaf = dotted.split(".")
        for p in parents:  # a number selects a list item: data.datasets.1.root
            if isinstance(node, list):
                if not p.isdigit() or int(p) >= len(node):
                    raise ValueError(f"override {dotted}: {p} is not an index of a {len(node)}-item list")
                node = node[int(p)]
            else:
                node = node.setdefault(p, {})
            if not isinstance(node, (dict, list)):
                raise ValueError(f"override {dotted}: {p} is not a section")
        if isinstance(node, list):
            if not leaf.isdigit() or int(leaf) >= len(node):
                raise ValueError(f"override {dotted}: {leaf} is not an index of a {len(node)}-item list")
            node[int(leaf)] = value
        else:
            node[leaf] = value
    return config_from_dict(values)


def parse_override(text: str) -> tuple[str, Any]:
    """``"optim.lr=1e-5"`` -> ("optim.lr", 1e-05); the value is parsed as YAML ("key=" gives "")."""
    if "=" not in text:
        raise ValueError(f"override {text!r} must look like key.sub=value")
    key, raw = text.split("=", 1)
    return key.strip(), "" if not raw.strip() else yaml.safe_load(raw)
