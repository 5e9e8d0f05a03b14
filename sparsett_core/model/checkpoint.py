"""Checkpoint reading, conversion and writing for SparseTT.

Three formats are read (always with ``torch.load(weights_only=True)``):

1. **official** SparseTT checkpoints: ``{'model_state_dict': {official name: tensor}, ...}`` (or
   the bare state dict). Every official key is either mapped to ours (:func:`official_key_map`),
   a constant buffer that must equal ours (``relative_position_index``, ``head.fm_ctr``), or known
   to be unused (Swin stage 3 and the stage-2 patch merging, computed and discarded by the official
   model, hence not built here). Missing, unexpected and wrong-shaped keys are errors naming them.
2. the Microsoft **Swin-T ImageNet** file ``swin_tiny_patch4_window7_224.pth`` (original key
   names; patch-merging weights re-ordered to the ``nn.Unfold`` channel order), loaded into the
   backbone only, for training.
3. **ours**: ``{"format": "sparsett_ros", "version": 1, "config": ModelConfig.to_dict(),
   "state_dict": {...}, **extra}`` written atomically by :func:`save_checkpoint`.

Every failure raises :class:`CheckpointError` (a ``ValueError``) with a message saying what to do.
"""
from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from sparsett_core.config import ModelConfig

FORMAT_NAME = "sparsett_ros"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, of an unknown kind, or does not fit the model."""


# official name regex -> our name (first full match wins)
_OFFICIAL_RULES: tuple[tuple[str, str], ...] = (
    (r"basemodel\.net\.patch_embed\.projection\.(.+)", r"backbone.patch_embed.proj.\1"),
    (r"basemodel\.net\.patch_embed\.norm\.(.+)", r"backbone.patch_embed.norm.\1"),
    (r"basemodel\.net\.stages\.(\d+)\.blocks\.(\d+)\.attn\.w_msa\.(.+)", r"backbone.layers.\1.blocks.\2.attn.\3"),
    (r"basemodel\.net\.stages\.(\d+)\.blocks\.(\d+)\.(norm[12])\.(.+)", r"backbone.layers.\1.blocks.\2.\3.\4"),
    (r"basemodel\.net\.stages\.(\d+)\.blocks\.(\d+)\.ffn\.layers\.0\.0\.(.+)", r"backbone.layers.\1.blocks.\2.mlp.fc1.\3"),
    (r"basemodel\.net\.stages\.(\d+)\.blocks\.(\d+)\.ffn\.layers\.1\.(.+)", r"backbone.layers.\1.blocks.\2.mlp.fc2.\3"),
    (r"basemodel\.net\.stages\.(\d+)\.downsample\.(.+)", r"backbone.layers.\1.downsample.\2"),
    (r"basemodel\.net\.norm2\.(.+)", r"backbone.norm.\1"),
    (r"neck\.encoder\.spatial_position_encoding\.(.+)", r"neck.enc_pos.\1"),
    (r"neck\.decoder\.spatial_position_encoding\.(.+)", r"neck.dec_pos.\1"),
    (r"neck\.encoder\.encoder_layers\.(\d+)\.slf_attn\.(.+)", r"neck.encoder.\1.self_attn.\2"),
    (r"neck\.encoder\.encoder_layers\.(\d+)\.norm\.(.+)", r"neck.encoder.\1.norm1.\2"),
    (r"neck\.decoder\.decoder_layers\.(\d+)\.slf_attn\.(.+)", r"neck.decoder.\1.self_attn.\2"),
    (r"neck\.decoder\.decoder_layers\.(\d+)\.enc_attn\.(.+)", r"neck.decoder.\1.cross_attn.\2"),
    (r"neck\.decoder\.decoder_layers\.(\d+)\.(norm[12])\.(.+)", r"neck.decoder.\1.\2.\3"),
    (r"neck\.(en|de)coder\.(?:en|de)coder_layers\.(\d+)\.pos_ffn\.w_1\.(.+)", r"neck.\1coder.\2.ffn.fc1.\3"),
    (r"neck\.(en|de)coder\.(?:en|de)coder_layers\.(\d+)\.pos_ffn\.w_2\.(.+)", r"neck.\1coder.\2.ffn.fc2.\3"),
    (r"neck\.(en|de)coder\.(?:en|de)coder_layers\.(\d+)\.pos_ffn\.layer_norm\.(.+)", r"neck.\1coder.\2.ffn.norm.\3"),
    (r"feat_adjuster_([zx])\.(.+)", r"adjust_\1.\2"),
    (r"head\.(.+)", r"head.\1"),
)
# official keys computed-and-discarded by the official model (not built here)
_OFFICIAL_UNUSED = (r"basemodel\.net\.stages\.3\..+", r"basemodel\.net\.stages\.2\.downsample\..+")
# Microsoft Swin-T keys without a counterpart: stage 3, stage-2 merging, 768-ch norm, classifier, masks
_IMAGENET_UNUSED = (r"layers\.3\..+", r"layers\.2\.downsample\..+", r"norm\..+", r"head\..+", r".+\.attn_mask")


def official_key_map(name: str) -> str | None:
    """Our state-dict name for an official one (None if no rule matches)."""
    for pattern, repl in _OFFICIAL_RULES:
        m = re.fullmatch(pattern, name)
        if m:
            return m.expand(repl)
    return None


def _constant_buffers(model: nn.Module) -> dict[str, torch.Tensor]:
    """Our non-persistent constant buffers (relative_position_index, fm_ctr) by name."""
    return {n: b for n, b in model.named_buffers() if n.endswith(("relative_position_index", "fm_ctr"))}


def _check_and_load(model: nn.Module, sd: Mapping[str, torch.Tensor], source: str, skip: tuple[str, ...] = ()) -> None:
    """strict load with errors naming the missing / unexpected / wrong-shaped keys."""
    own = {k: v for k, v in model.state_dict().items() if not k.startswith(skip)}
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    wrong = sorted(f"{k} {tuple(sd[k].shape)} (expected {tuple(own[k].shape)})"
                   for k in set(sd) & set(own) if tuple(sd[k].shape) != tuple(own[k].shape))
    problems = []
    if missing:
        problems.append(f"missing keys: {missing}")
    if unexpected:
        problems.append(f"unexpected keys: {unexpected}")
    if wrong:
        problems.append(f"wrong-shaped keys: {wrong}")
    if problems:
        raise CheckpointError(f"{source} does not fit the model ({model.__class__.__name__}): " + "; ".join(problems))
    model.load_state_dict(dict(sd), strict=not skip)


def convert_official(sd: Mapping[str, Any], model: nn.Module) -> dict[str, torch.Tensor]:
    """Official state dict -> ours (pure function; see the module docstring).

    Raises:
        CheckpointError: unknown key, constant buffer that differs from ours, or non-tensor value.
    """
    consts = _constant_buffers(model)
    out: dict[str, torch.Tensor] = {}
    unknown = []
    for name, value in sd.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"official checkpoint key {name!r} holds a {type(value).__name__}, not a tensor")
        if any(re.fullmatch(p, name) for p in _OFFICIAL_UNUSED):
            continue
        ours = official_key_map(name)
        if ours is None:
            unknown.append(name)
        elif ours in consts:
            if tuple(value.shape) != tuple(consts[ours].shape) or not torch.equal(value.to(consts[ours].dtype), consts[ours].cpu()):
                raise CheckpointError(f"official checkpoint key {name!r} differs from the fixed buffer it must equal")
        else:
            out[ours] = value
    if unknown:
        raise CheckpointError(f"unexpected keys in the official checkpoint (no known meaning): {sorted(unknown)}")
    return out


def _reorder_merging(name: str, value: torch.Tensor) -> torch.Tensor:
    """Microsoft patch-merging weights (concat order x0,x1,x2,x3) -> nn.Unfold order (c*4 + dy*2 + dx)."""
    if name.endswith("reduction.weight"):
        out_c, in_c = value.shape
        return value.reshape(out_c, 4, in_c // 4)[:, [0, 2, 1, 3]].transpose(1, 2).reshape(out_c, in_c)
    (in_c,) = value.shape
    return value.reshape(4, in_c // 4)[[0, 2, 1, 3]].transpose(0, 1).reshape(in_c)


def convert_imagenet_swin(sd: Mapping[str, Any], backbone: nn.Module) -> dict[str, torch.Tensor]:
    """Microsoft Swin-T ImageNet state dict -> our Swin backbone's names (all but its ``norm``).

    Raises:
        CheckpointError: unknown key or constant buffer that differs from ours.
    """
    consts = _constant_buffers(backbone)
    out, unknown = {}, []
    for name, value in sd.items():
        name = re.sub(r"^(module\.|backbone\.)+", "", name)
        if any(re.fullmatch(p, name) for p in _IMAGENET_UNUSED):
            continue
        if not isinstance(value, torch.Tensor):
            unknown.append(name)
        elif name in consts:
            if not torch.equal(value.to(consts[name].dtype), consts[name].cpu()):
                raise CheckpointError(f"ImageNet checkpoint key {name!r} differs from the fixed buffer it must equal")
        elif re.fullmatch(r"layers\.\d+\.downsample\.(reduction\.weight|norm\.weight|norm\.bias)", name):
            out[name] = _reorder_merging(name, value)
        elif re.fullmatch(r"(patch_embed|layers)\..+", name):
            out[name] = value
        else:
            unknown.append(name)
    if unknown:
        raise CheckpointError(f"unexpected keys in the Swin ImageNet checkpoint: {sorted(unknown)}")
    return out


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` with clear errors.

    Raises:
        CheckpointError: the file is missing, a directory, empty, truncated, not a torch file, holds
            pickled code, or its top level is not a dict.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path} (check the path)")
    if not path.is_file():
        raise CheckpointError(f"checkpoint path is not a file: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint file is empty: {path} (an interrupted download or copy?)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # pickle-protocol notes of the safe unpickler
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many types for corrupt files
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        raise CheckpointError(
            f"cannot read {path} as a torch checkpoint ({type(e).__name__}: {first}); the file is truncated, "
            "not a torch checkpoint, or holds pickled objects other than tensors and plain types"
        ) from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, expected a dict (state dict or checkpoint)")
    return obj


def detect_format(obj: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]]:
    """Kind of a loaded checkpoint and its state dict: ("sparsett_ros" | "official" | "imagenet" | "nanotrack", sd).

    Raises:
        CheckpointError: unrecognised content (the message lists the top-level keys).
    """
    if obj.get("format") == FORMAT_NAME:
        if obj.get("version") != FORMAT_VERSION:
            raise CheckpointError(f"sparsett_ros checkpoint version {obj.get('version')!r} is not supported "
                                  f"(this code reads version {FORMAT_VERSION})")
        return FORMAT_NAME, obj.get("state_dict", {})
    if isinstance(obj.get("model_state_dict"), dict):
        return "official", obj["model_state_dict"]
    if any(str(k).startswith("basemodel.") for k in obj):
        return "official", obj
    for wrapper in ("model", "state_dict"):
        inner = obj.get(wrapper)
        if isinstance(inner, dict) and any(str(k).endswith("patch_embed.proj.weight") for k in inner):
            return "imagenet", inner
    if any(str(k).endswith("patch_embed.proj.weight") for k in obj):
        return "imagenet", obj
    if any(str(k).startswith("backbone.features.") for k in obj) and any(str(k).startswith("ban_head.") for k in obj):
        return "nanotrack", obj
    keys = sorted(map(str, obj))[:10]
    raise CheckpointError(
        f"unrecognised checkpoint content (top-level keys {keys}); expected an official SparseTT checkpoint "
        f"('model_state_dict'), a Swin-T ImageNet file ('model'), or a {FORMAT_NAME} checkpoint"
    )


def load_weights(model: nn.Module, path: str | Path) -> str:
    """Load a checkpoint file into an existing SparseTT (any format). Returns the detected format.

    Raises:
        CheckpointError: see :func:`read_checkpoint`, :func:`detect_format`; keys that do not fit.
    """
    return _apply(model, read_checkpoint(path), path)


def _apply(model: nn.Module, obj: Mapping[str, Any], path: str | Path) -> str:
    """Load an already-read checkpoint object into ``model``; returns its format."""
    kind, sd = detect_format(obj)
    if kind == "official":
        _check_and_load(model, convert_official(sd, model), f"official checkpoint {path}")
    elif kind == "imagenet":
        backbone = model.backbone
        _check_and_load(backbone, convert_imagenet_swin(sd, backbone), f"ImageNet checkpoint {path}", skip=("norm.",))
    elif kind == "nanotrack":  # NanoTrack v2's tracking-trained backbone (SparseTT-Lite v2); its head is not used
        from sparsett_core.model.mobilenetv3 import MobileNetV3S16, load_nanotrack_backbone

        if not isinstance(model.backbone, MobileNetV3S16):
            raise CheckpointError(f"{path} is a NanoTrack state dict: it initialises the lite_v2 backbone, "
                                  f"not a {model.config.variant!r} model")
        try:
            load_nanotrack_backbone(model.backbone, path)
        except ValueError as e:
            raise CheckpointError(str(e)) from None
    else:
        _check_and_load(model, sd, f"checkpoint {path}")
    return kind


def load_model(path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """Build the model a checkpoint describes and load it, in eval mode on ``device``.

    Official and ImageNet files give the paper model (``ModelConfig()``); ours give their stored config.
    ``"default"`` or ``""`` loads the shipped SparseTT-Lite weights (``sparsett_core.weights``).
    """
    from sparsett_core.model.sparsett import SparseTT
    from sparsett_core.weights import default_checkpoint_path, is_default

    if is_default(path):
        try:
            path = default_checkpoint_path()
        except FileNotFoundError as e:
            raise CheckpointError(str(e)) from None
    obj = read_checkpoint(path)
    kind, _ = detect_format(obj)
    if kind == "nanotrack":
        raise CheckpointError(f"{path} is a NanoTrack state dict (a backbone to start training SparseTT-Lite v2 "
                              "from: pretrained_backbone in the training config), not a tracker checkpoint")
    config = ModelConfig()
    if kind == FORMAT_NAME:
        try:
            config = ModelConfig.from_dict(obj.get("config", {}))
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"checkpoint {path} has an invalid model config: {e}") from None
    model = SparseTT(config)
    _apply(model, obj, path)  # the file is read once
    return model.to(device).eval()


def save_checkpoint(model: nn.Module, path: str | Path, **extra: Any) -> Path:
    """Write ``{"format", "version", "config", "state_dict", **extra}`` atomically (tmp + rename).

    Args:
        model: a SparseTT.
        path: destination file.
        **extra: more entries (tensors, numbers, strings, lists, dicts of those), e.g. epoch,
            optimizer state; names must not collide with the fixed ones.
    Returns:
        the written path.
    """
    reserved = {"format", "version", "config", "state_dict"} & set(extra)
    if reserved:
        raise ValueError(f"extra checkpoint entries may not be named {sorted(reserved)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    obj = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "config": model.config.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        **extra,
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)
    return path
