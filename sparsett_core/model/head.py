"""Double head of SparseTT (fc branch + conv branch), docs/sparsett_reference.md section 1.4.

Both branches predict a classification logit and l/t/r/b box offsets ``exp(s * x + b) * stride`` at
every grid point ``(stride * j, stride * i)`` of the search crop. At test time the score is
``p_fc + p_conv * (1 - p_fc)`` and the box comes from the conv branch.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConvBN(nn.Module):
    """Conv2d -> BatchNorm2d -> optional ReLU (mmcv ``ConvModule`` names ``conv`` / ``bn``).

    Args:
        cin, cout: channels.
        kernel: square kernel size (padding kernel // 2).
        relu: apply ReLU at the end.
        conv_bias: give the conv a bias (the feature adjusters have one; head ConvModules do not).
        bn_eps: BatchNorm eps.
    """

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel: int = 1,
        relu: bool = False,
        conv_bias: bool = False,
        bn_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=conv_bias)
        self.bn = nn.BatchNorm2d(cout, eps=bn_eps)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, cin, H, W) -> (B, cout, H, W)."""
        x = self.bn(self.conv(x))
        return F.relu(x) if self.relu else x


class BasicResBlock(nn.Module):
    """``relu(conv2(conv1(x)) + conv_identity(x))``: 3x3 cin->cin, 1x1 cin->cout, 1x1 identity."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1 = ConvBN(cin, cin, 3, relu=True)
        self.conv2 = ConvBN(cin, cout, 1)
        self.conv_identity = ConvBN(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, cin, H, W) -> (B, cout, H, W)."""
        return F.relu(self.conv2(self.conv1(x)) + self.conv_identity(x))


class Bottleneck(nn.Module):
    """ResNet bottleneck (1x1 -> 3x3 -> 1x1, expansion 4, stride 1, identity shortcut)."""

    def __init__(self, inplanes: int, planes: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, inplanes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(inplanes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, H, W) -> (B, C, H, W)."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        return F.relu(self.bn3(self.conv3(out)) + x)


def grid_centres(score_size: int, stride: int, x_size: int, offset: int | None = None) -> torch.Tensor:
    """Grid points of the score map in crop pixels.

    Returns:
        (1, score_size**2, 2) float32, entry ``i * S + j`` = ``(off + stride * j, off + stride * i)``
        with ``off = offset``, or by default ``(x_size - 1 - (S - 1) * stride) // 2`` (0 for 289 / 19 / 16).
    """
    off = offset if offset is not None else (x_size - 1 - (score_size - 1) * stride) // 2
    r = torch.arange(score_size, dtype=torch.float32) * stride + off
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    return torch.stack([xx, yy], dim=-1).reshape(1, -1, 2)


class DoubleHead(nn.Module):
    """fc branch (two 1x1 convs) and conv branch (BasicResBlock + bottlenecks), cls and box each.

    Args:
        in_channels: input channels (512 = decoder output + adjusted search features).
        mid_channels: branch width (1024).
        num_convs: bottlenecks in the conv branch (7).
        score_size: score map side (19).
        stride: pixels per score cell (16).
        x_size: search crop side (289).
        offset: crop pixel of grid point 0 (None: centred, see :func:`grid_centres`).
    """

    def __init__(
        self,
        in_channels: int = 512,
        mid_channels: int = 1024,
        num_convs: int = 7,
        score_size: int = 19,
        stride: int = 16,
        x_size: int = 289,
        offset: int | None = None,
    ) -> None:
        super().__init__()
        self.stride = stride
        self.si_fc = nn.Parameter(torch.tensor(1.0))
        self.bi_fc = nn.Parameter(torch.tensor(0.0))
        self.si_conv = nn.Parameter(torch.tensor(1.0))
        self.bi_conv = nn.Parameter(torch.tensor(0.0))
        self.register_buffer("fm_ctr", grid_centres(score_size, stride, x_size, offset), persistent=False)
        self.fc_branch = nn.Sequential(
            nn.Conv2d(in_channels, mid_channels, 1),
            nn.ReLU(),
            nn.Conv2d(mid_channels, mid_channels, 1),
            nn.ReLU(),
        )
        self.fc_branch_cls = ConvBN(mid_channels, 1)
        self.fc_branch_reg = ConvBN(mid_channels, 4)
        self.conv_branch = nn.Sequential(
            BasicResBlock(in_channels, mid_channels),
            *(Bottleneck(mid_channels, mid_channels // 4) for _ in range(num_convs)),
        )
        self.conv_branch_cls = ConvBN(mid_channels, 1)
        self.conv_branch_reg = ConvBN(mid_channels, 4)
        self._init_weights()

    def _init_weights(self) -> None:
        """Official train-time init: conv branch N(0, 0.01), fc branch xavier, cls/reg kaiming."""
        for m in self.conv_branch.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
        for i in (0, 2):
            nn.init.xavier_uniform_(self.fc_branch[i].weight)
            nn.init.zeros_(self.fc_branch[i].bias)
        for m in (self.fc_branch_cls, self.fc_branch_reg, self.conv_branch_cls, self.conv_branch_reg):
            nn.init.kaiming_normal_(m.conv.weight, mode="fan_out", nonlinearity="relu")

    def _boxes(self, reg: torch.Tensor, s: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """reg: (B, 4, S, S) raw offsets -> (B, S*S, 4) xyxy in crop pixels."""
        if reg.dtype in (torch.float16, torch.bfloat16):
            reg = reg.float()  # exp overflows in half precision; float64 (tests) stays float64
        ltrb = torch.exp(s * reg + b) * self.stride
        ltrb = ltrb.flatten(2).transpose(1, 2)  # B, S*S, 4
        ctr = self.fm_ctr.to(ltrb.dtype)
        return torch.cat([ctr - ltrb[..., :2], ctr + ltrb[..., 2:]], dim=-1)

    def forward(self, x: torch.Tensor, with_bbox_fc: bool = True) -> dict[str, torch.Tensor]:
        """Args:
            x: (B, 512, 19, 19) neck output.
            with_bbox_fc: compute ``bbox_fc`` (unused at test time).
        Returns:
            dict ``cls_fc`` (B, 361, 1) logits, ``bbox_fc`` (B, 361, 4) (if requested),
            ``cls_conv`` (B, 361, 1) logits, ``bbox_conv`` (B, 361, 4); boxes xyxy crop pixels.
        """
        B = x.shape[0]
        f = self.fc_branch(x)
        c = self.conv_branch(x)
        out = {
            "cls_fc": self.fc_branch_cls(f).permute(0, 2, 3, 1).reshape(B, -1, 1),
            "cls_conv": self.conv_branch_cls(c).permute(0, 2, 3, 1).reshape(B, -1, 1),
            "bbox_conv": self._boxes(self.conv_branch_reg(c), self.si_conv, self.bi_conv),
        }
        if with_bbox_fc:
            out["bbox_fc"] = self._boxes(self.fc_branch_reg(f), self.si_fc, self.bi_fc)
        return out


def fuse_scores(cls_fc: torch.Tensor, cls_conv: torch.Tensor) -> torch.Tensor:
    """Test-time score ``p_fc + p_conv * (1 - p_fc)`` from the two logit maps (any equal shapes)."""
    p_fc = torch.sigmoid(cls_fc)
    return p_fc + torch.sigmoid(cls_conv) * (1 - p_fc)
