"""MobileNetV3-small cut at stride 16, in NanoTrack v2's layout: the backbone of SparseTT-Lite v2.

NanoTrack (github.com/HonglinChu/SiamTrackers, Apache-2.0) trained this backbone *for tracking*,
on GOT-10k, LaSOT, ImageNet VID/DET, YouTube-BB and COCO; its state dict
(``nanotrackv2_state_dict.pt``: ``backbone.features.0..8``) loads into :class:`MobileNetV3S16`
key for key (:func:`load_nanotrack_backbone`). Architecture, from the tensor shapes and the
authors' config (``mobilenetv3_small``, ``used_layers: [4]``):

* ``features.0``: 3x3 stride-2 convolution to 16 channels, BatchNorm, hard-swish;
* ``features.1..8``: inverted residual blocks (kernel, expansion width, out, SE, hard-swish,
  stride) = (3, 16, 16, SE, ReLU, 2), (3, 72, 24, -, ReLU, 2), (3, 88, 24, -, ReLU, 1),
  (5, 96, 40, SE, hs, 2), (5, 240, 40, SE, hs, 1) x2, (5, 120, 48, SE, hs, 1), (5, 144, 48, SE, hs, 1);
  a block whose expansion width equals its input has no expansion convolution; squeeze-excitation
  = global average, FC to ``make_divisible(C / 4, 8)``, ReLU, FC back, hard-sigmoid; a block has a
  residual when it keeps stride 1 and its width.

Output: 48 channels at stride 16 (convolutions padded by ``k // 2``): 127 -> 8x8, 255 -> 16x16.
NanoTrack feeds raw BGR pixels in [0, 255] (pysot convention): the backbone takes exactly that
(``ModelConfig.input_format == "bgr255"``), so the tracker skips its normalisation step.

Inference (eval mode, autograd off) runs :class:`FoldedMobileNetV3`: BatchNorm folded into the
convolutions, channels-last activations, in-place activations.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

# (kernel, expansion width, out channels, squeeze-excitation, hard-swish, stride) of features.1..8
_BLOCKS = (
    (3, 16, 16, True, False, 2),
    (3, 72, 24, False, False, 2),
    (3, 88, 24, False, False, 1),
    (5, 96, 40, True, True, 2),
    (5, 240, 40, True, True, 1),
    (5, 240, 40, True, True, 1),
    (5, 120, 48, True, True, 1),
    (5, 144, 48, True, True, 1),
)
STEM_CHANNELS = 16
OUT_CHANNELS = 48


def _make_divisible(v: float, divisor: int = 8) -> int:
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


class SqueezeExcite(nn.Module):
    """x * hsigmoid(fc2(relu(fc1(mean(x))))) with ``fc`` = Sequential(Linear, ReLU, Linear, Hardsigmoid)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        mid = _make_divisible(channels / 4)
        self.fc = nn.Sequential(nn.Linear(channels, mid), nn.ReLU(inplace=True), nn.Linear(mid, channels),
                                nn.Hardsigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        return x * self.fc(x.mean((2, 3)))[:, :, None, None]


class InvertedResidual(nn.Module):
    """MobileNetV3 block; ``conv`` is a Sequential numbered as in NanoTrack's state dict.

    With expansion: 0 conv1x1, 1 BN, 2 act, 3 depthwise, 4 BN, 5 SE|Identity, 6 act, 7 conv1x1, 8 BN.
    Without: 0 depthwise, 1 BN, 2 act, 3 SE|Identity, 4 conv1x1, 5 BN.
    """

    def __init__(self, cin: int, kernel: int, mid: int, cout: int, se: bool, hswish: bool, stride: int) -> None:
        super().__init__()
        act = nn.Hardswish if hswish else nn.ReLU
        dw = [nn.Conv2d(mid, mid, kernel, stride, kernel // 2, groups=mid, bias=False), nn.BatchNorm2d(mid)]
        se_layer = SqueezeExcite(mid) if se else nn.Identity()
        project = [nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        if mid == cin:
            layers = [*dw, act(), se_layer, *project]
        else:
            layers = [nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), act(), *dw, se_layer, act(), *project]
        self.conv = nn.Sequential(*layers)
        self.expand = mid != cin
        self.hswish = hswish
        self.stride = stride
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return x + y if self.residual else y


class MobileNetV3S16(nn.Module):
    """MobileNetV3-small features 0..8 (stride 16, 48 channels), NanoTrack v2's backbone.

    Input (B, 3, H, W) BGR pixels in [0, 255] -> (B, 48, ceil(H/16), ceil(W/16)).
    BatchNorm always uses its stored statistics (frozen BN, also in train mode): the CPU batches
    of this project are far too small to re-estimate them, and they come from NanoTrack's training.
    """

    out_channels = OUT_CHANNELS

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Sequential(nn.Conv2d(3, STEM_CHANNELS, 3, 2, 1, bias=False),
                                                 nn.BatchNorm2d(STEM_CHANNELS), nn.Hardswish())]
        cin = STEM_CHANNELS
        for kernel, mid, cout, se, hs, stride in _BLOCKS:
            layers.append(InvertedResidual(cin, kernel, mid, cout, se, hs, stride))
            cin = cout
        self.features = nn.Sequential(*layers)
        self.fold_inference = True  # eval mode without autograd runs folded() (False: always these modules)
        self._folded: tuple[tuple, FoldedMobileNetV3] | None = None

    def train(self, mode: bool = True) -> "MobileNetV3S16":
        super().train(mode)
        for m in self.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fold_inference and not self.training and not torch.is_grad_enabled():
            return self.folded()(x)
        return self.features(x)

    def folded(self) -> "FoldedMobileNetV3":
        """The inference copy (BatchNorm folded, channels-last), rebuilt when a tensor changed."""
        key = tuple((t.data_ptr(), t._version, t.dtype) for t in (*self.parameters(), *self.buffers()))
        if self._folded is None or self._folded[0] != key:
            self._folded = (key, FoldedMobileNetV3(self))
        return self._folded[1]

    def cast_inference_(self, dtype: torch.dtype) -> None:
        """Store the inference copy's weights in ``dtype`` (see ``fast.half_weights``)."""
        self.folded().cast_(dtype)


def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> list[torch.Tensor]:
    """[weight, bias] of ``bn(conv(x))`` as one convolution (BatchNorm on its running statistics)."""
    with torch.no_grad():
        scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
        weight = conv.weight * scale.view(-1, 1, 1, 1)
        bias = bn.bias - bn.running_mean * scale
    return [weight.contiguous(memory_format=torch.channels_last).detach(), bias.detach()]


class FoldedMobileNetV3(nn.Module):
    """Inference-only form of :class:`MobileNetV3S16`: same outputs up to float rounding.

    Holds plain tensors (no parameters): per block the folded expansion / depthwise / projection
    convolutions and the SE weights. Input and output as :class:`MobileNetV3S16`.
    """

    def __init__(self, net: MobileNetV3S16) -> None:
        super().__init__()
        stem = net.features[0]
        self.stem = _fold(stem[0], stem[1])
        self.blocks = []
        for b in net.features[1:]:
            c = b.conv
            if b.expand:
                expand, (dw, dw_bn), se, (pw, pw_bn) = _fold(c[0], c[1]), (c[3], c[4]), c[5], (c[7], c[8])
            else:
                expand, (dw, dw_bn), se, (pw, pw_bn) = None, (c[0], c[1]), c[3], (c[4], c[5])
            se_w = None if isinstance(se, nn.Identity) else [t.detach() for t in (se.fc[0].weight, se.fc[0].bias,
                                                                                   se.fc[2].weight, se.fc[2].bias)]
            self.blocks.append({"expand": expand, "dw": _fold(dw, dw_bn), "stride": b.stride,
                                "se": se_w, "project": _fold(pw, pw_bn), "hswish": b.hswish,
                                "residual": b.residual})

    def cast_(self, dtype: torch.dtype) -> None:
        """Convert every weight and bias to ``dtype`` in place."""
        self.stem = [t.to(dtype) for t in self.stem]
        for b in self.blocks:
            for k in ("expand", "dw", "se", "project"):
                if b[k] is not None:
                    b[k] = [t.to(dtype) for t in b[k]]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=torch.channels_last)
        x = F.hardswish(F.conv2d(x, *self.stem, 2, 1), inplace=True)
        for b in self.blocks:
            act = F.hardswish if b["hswish"] else F.relu
            y = act(F.conv2d(x, *b["expand"]), inplace=True) if b["expand"] is not None else x
            dw_w = b["dw"][0]
            y = F.conv2d(y, *b["dw"], b["stride"], dw_w.shape[-1] // 2, 1, dw_w.shape[0])
            if b["se"] is None:
                y = act(y, inplace=True)
            else:
                # NanoTrack's order: depthwise -> BN -> SE -> activation (expanded blocks), or
                # depthwise -> BN -> activation -> SE (the first block, no expansion)
                if b["expand"] is None:
                    y = _excite(act(y, inplace=True), *b["se"])
                else:
                    y = act(_excite(y, *b["se"]), inplace=True)
            y = F.conv2d(y, *b["project"])
            x = x + y if b["residual"] else y
        return x.contiguous()


def _excite(t: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor, b2: torch.Tensor) -> torch.Tensor:
    """Squeeze-and-excitation with plain tensors: (B, C, H, W) scaled per channel."""
    return t * F.hardsigmoid(F.linear(F.relu(F.linear(t.mean((2, 3)), w1, b1)), w2, b2))[:, :, None, None]


def load_nanotrack_backbone(backbone: MobileNetV3S16, path: str | Path) -> list[str]:
    """Load NanoTrack v2's backbone weights (``backbone.features.*`` of its state dict).

    Every tensor of ``backbone`` must come from the file with the same shape; the file's other
    keys (NanoTrack's neck and head) are returned, unused.

    Raises:
        ValueError: the file is not a NanoTrack v2 state dict (a key missing or mis-shaped).
    """
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or not any(k.startswith("backbone.features.") for k in state):
        raise ValueError(f"{path} is not a NanoTrack state dict (no backbone.features.* keys)")
    own = backbone.state_dict()
    prefix = "backbone."
    missing = [k for k in own if prefix + k not in state]
    stray = [k for k in state if k.startswith(prefix) and k[len(prefix):] not in own]
    if missing or stray:
        raise ValueError(f"{path} does not match NanoTrack v2's backbone: missing {missing[:5]}, "
                         f"unexpected {stray[:5]} (v3 has a features.9 and 96 channels; use the v2 file)")
    for k, v in own.items():
        if state[prefix + k].shape != v.shape:
            raise ValueError(f"{path}: {prefix + k} has shape {tuple(state[prefix + k].shape)}, expected {tuple(v.shape)}")
    backbone.load_state_dict({k: state[prefix + k] for k in own}, strict=True)
    return [k for k in state if not k.startswith(prefix)]


__all__ = ["FoldedMobileNetV3", "MobileNetV3S16", "OUT_CHANNELS", "load_nanotrack_backbone"]
