"""Swin-T backbone cut after stage 2, with the official SparseTT (mmdet 2.x) semantics.

Semantics reproduced exactly (see docs/sparsett_reference.md, section 1.1):
  * bottom/right zero padding of the image to a multiple of 4, of odd maps before patch merging
    and of every map to a multiple of the window (7); padded tokens are never masked;
  * the shifted-window mask uses -100.0 (not -inf);
  * patch merging concatenates the 2x2 neighbourhood in ``nn.Unfold`` channel order
    ``c * 4 + (dy * 2 + dx)``;
  * LayerNorm eps 1e-5, exact GELU, LayerNorm (``norm``) after stage 2.
Stage 3 and the stage-2 patch merging of the official model are never built: their outputs are
discarded by the official forward.

Tokens are kept channels-last, ``(B, H, W, C)``, between blocks.
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


def relative_position_index(window: int) -> torch.Tensor:
    """Index into the relative-position bias table.

    Returns:
        (window**2, window**2) int64, ``(dy + w - 1) * (2w - 1) + (dx + w - 1)``.
    """
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij"))
    coords = coords.flatten(1)  # 2, N
    rel = coords[:, :, None] - coords[:, None, :]  # 2, N, N
    return (rel[0] + window - 1) * (2 * window - 1) + (rel[1] + window - 1)


def shift_window_mask(height: int, width: int, window: int, shift: int, device: torch.device) -> torch.Tensor:
    """Attention mask of the shifted windows of a padded ``height x width`` map.

    Returns:
        (nW, window**2, window**2) float32: 0 inside a region, -100.0 across regions.
    """
    img = torch.zeros(height, width, device=device)
    cnt = 0
    slices = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    for hs in slices:
        for ws in slices:
            img[hs, ws].fill_(cnt)  # fill_, not item assignment: no host tensor is made
            cnt += 1
    win = img.view(height // window, window, width // window, window).transpose(1, 2).reshape(-1, window * window)
    diff = win[:, None, :] - win[:, :, None]  # nW, N, N
    # full_like / zeros_like, not torch.tensor(..., device): no host -> device copy (CUDA-graph capturable)
    return torch.where(diff != 0, torch.full_like(diff, -100.0), torch.zeros_like(diff))


class WindowPlan(NamedTuple):
    """Token bookkeeping of one (shifted) window partition of an H x W map.

    Attributes:
        gather: (nW * N,) int64, for each windowed token the source token ``y * W + x`` of the map,
            or ``H * W`` (a zero row) for padding; includes the cyclic shift.
        scatter: (H * W,) int64, for each map token its position in the windowed tokens.
        mask: (nW, N, N) shift mask, or None for unshifted windows.
        num_windows: nW.
    """

    gather: torch.Tensor
    scatter: torch.Tensor
    mask: torch.Tensor | None
    num_windows: int


def window_plan(height: int, width: int, window: int, shift: int, device: torch.device) -> WindowPlan:
    """Gather/scatter indices replacing pad -> roll -> partition and reverse -> roll back -> crop.

    Padding is bottom/right with zero tokens (not masked); the roll is ``torch.roll(x, -shift)``.
    Cached per (size, window, shift, device): the plan depends on nothing else, and a forward pass
    then only reads constant tensors (no per-forward index arithmetic; an ONNX trace records them as
    constants instead of the mask's in-place slice fills, which it does not export correctly).
    """
    return _cached_plan(height, width, window, shift, str(device))


@functools.lru_cache(maxsize=64)
def _cached_plan(height: int, width: int, window: int, shift: int, device: str) -> WindowPlan:
    # built outside inference mode so that training may use the same index tensors
    with torch.inference_mode(False), torch.no_grad():
        return _build_plan(height, width, window, shift, torch.device(device))


def _build_plan(height: int, width: int, window: int, shift: int, device: torch.device) -> WindowPlan:
    hp, wp = -(-height // window) * window, -(-width // window) * window
    r = torch.arange(hp, device=device).view(-1, 1).expand(hp, wp)  # rolled-map row
    c = torch.arange(wp, device=device).view(1, -1).expand(hp, wp)
    sr, sc = (r + shift) % hp, (c + shift) % wp  # source position in the padded map
    src = torch.where((sr < height) & (sc < width), sr * width + sc, torch.full_like(sr, height * width))
    nwr, nwc = hp // window, wp // window
    gather = src.view(nwr, window, nwc, window).transpose(1, 2).reshape(-1)  # window-major order
    pos = torch.arange(hp * wp, device=device).view(nwr, nwc, window, window).transpose(1, 2).reshape(hp, wp)
    yy = (torch.arange(height, device=device).view(-1, 1) - shift) % hp
    xx = (torch.arange(width, device=device).view(1, -1) - shift) % wp
    scatter = pos[yy, xx].reshape(-1)
    mask = shift_window_mask(hp, wp, window, shift, device) if shift else None
    return WindowPlan(gather, scatter, mask, nwr * nwc)


class DropPath(nn.Module):
    """Stochastic depth per sample (identity in eval mode or with p=0)."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep


class WindowAttention(nn.Module):
    """Window multi-head self-attention with a learned relative-position bias.

    Args:
        dim: token channels C.
        num_heads: heads (head dim C / num_heads).
        window: window side (N = window**2 tokens per window).
    """

    def __init__(self, dim: int, num_heads: int, window: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, num_heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.register_buffer("relative_position_index", relative_position_index(window), persistent=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Args:
            x: (B_, N, C) tokens of B_ = B * nW windows.
            mask: (nW, N, N) additive mask or None.
        Returns:
            (B_, N, C).
        """
        B_, N, C = x.shape
        nh = self.num_heads
        qkv = self.qkv(x).reshape(B_, N, 3, nh, C // nh).permute(2, 0, 3, 1, 4)  # 3, B_, nH, N, hd
        q, k, v = qkv.unbind(0)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        bias = bias.view(N, N, nh).permute(2, 0, 1).unsqueeze(0)  # 1, nH, N, N
        if mask is not None:
            nw = mask.shape[0]
            bias = (bias + mask.unsqueeze(1)).repeat(B_ // nw, 1, 1, 1)  # B_, nH, N, N
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), scale=self.scale)
        x = x.transpose(1, 2).reshape(B_, N, C)  # B_, N, C
        return self.proj(x)


class Mlp(nn.Module):
    """Linear(C, hidden) -> exact GELU -> Linear(hidden, C)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class SwinBlock(nn.Module):
    """Pre-norm Swin block: ``x + (S)W-MSA(LN(x))``, then ``x + MLP(LN(x))``.

    Args:
        dim: channels C.
        num_heads: attention heads.
        window: window side.
        shift: cyclic shift (0 or window // 2).
        mlp_ratio: MLP hidden width / C.
        drop_path: stochastic depth probability.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window: int,
        shift: int,
        mlp_ratio: float = 4.0,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.window = window
        self.shift = shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, num_heads, window)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor, plan: WindowPlan) -> torch.Tensor:
        """x: (B, H, W, C) -> (B, H, W, C); ``plan`` = window_plan(H, W, window, shift)."""
        B, H, W, C = x.shape
        y = self.norm1(x).view(B, H * W, C)
        y = torch.cat([y, y.new_zeros(B, 1, C)], dim=1)  # row H*W = zero padding token
        y = y[:, plan.gather].view(B * plan.num_windows, -1, C)  # B*nW, N, C
        y = self.attn(y, plan.mask).view(B, -1, C)[:, plan.scatter].view(B, H, W, C)
        x = x + self.drop_path(y)
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchMerging(nn.Module):
    """2x2 patch merging in ``nn.Unfold`` channel order, LayerNorm(4C), Linear(4C, 2C, no bias)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, H, W, C) -> (B, ceil(H/2), ceil(W/2), 2C); odd sides zero-padded bottom/right."""
        B, H, W, C = x.shape
        if H % 2 or W % 2:
            x = F.pad(x, (0, 0, 0, W % 2, 0, H % 2))
        H2, W2 = (H + 1) // 2, (W + 1) // 2
        x = x.view(B, H2, 2, W2, 2, C).permute(0, 1, 3, 5, 2, 4).reshape(B, H2, W2, 4 * C)  # c*4 + dy*2 + dx
        return self.reduction(self.norm(x))


class PatchEmbed(nn.Module):
    """Zero-pad to a multiple of the patch, Conv2d(patch, stride patch), LayerNorm."""

    def __init__(self, in_chans: int, dim: int, patch: int = 4) -> None:
        super().__init__()
        self.patch = patch
        self.proj = nn.Conv2d(in_chans, dim, patch, patch)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 3, H, W) -> (B, ceil(H/4), ceil(W/4), C)."""
        H, W = x.shape[-2:]
        p = self.patch
        pad_b, pad_r = (p - H % p) % p, (p - W % p) % p
        if pad_b or pad_r:
            x = F.pad(x, (0, pad_r, 0, pad_b))
        return self.norm(self.proj(x).permute(0, 2, 3, 1))  # B, H', W', C


class SwinStage(nn.Module):
    """``depth`` Swin blocks (odd ones shifted), then an optional PatchMerging."""

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        window: int,
        drop_path: list[float],
        downsample: bool,
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            SwinBlock(dim, num_heads, window, shift=(window // 2) * (i % 2), drop_path=drop_path[i])
            for i in range(depth)
        )
        self.downsample = PatchMerging(dim) if downsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, H, W, C) -> (B, H, W, C), or (B, H/2, W/2, 2C) with downsampling."""
        H, W = int(x.shape[1]), int(x.shape[2])  # Python ints (an ONNX trace would give size tensors)
        plans = {}
        for blk in self.blocks:
            if blk.shift not in plans:  # shared by the blocks of the stage (same size and shift)
                plans[blk.shift] = window_plan(H, W, blk.window, blk.shift, x.device)
            x = blk(x, plans[blk.shift])
        return self.downsample(x) if self.downsample is not None else x


class SwinBackbone(nn.Module):
    """Swin-T stages 0-2 plus the final LayerNorm: image -> stride-16 feature map.

    Args:
        embed_dim: channels of stage 0 (96).
        depths: blocks per stage, all official stages (only the first ``num_stages`` are built).
        num_heads: heads per stage.
        window: window side (7).
        drop_path_rate: stochastic depth, linear over all blocks of ``depths`` (official schedule).
        num_stages: stages built (3: output stride 16, channels embed_dim * 4).
    """

    def __init__(
        self,
        embed_dim: int = 96,
        depths: tuple[int, ...] = (2, 2, 6, 2),
        num_heads: tuple[int, ...] = (3, 6, 12, 24),
        window: int = 7,
        drop_path_rate: float = 0.2,
        num_stages: int = 3,
    ) -> None:
        super().__init__()
        self.patch_embed = PatchEmbed(3, embed_dim)
        dpr = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        self.layers = nn.ModuleList()
        for s in range(num_stages):
            start = sum(depths[:s])
            self.layers.append(
                SwinStage(
                    embed_dim * 2**s,
                    depths[s],
                    num_heads[s],
                    window,
                    dpr[start : start + depths[s]],
                    downsample=s < num_stages - 1,
                )
            )
        self.out_channels = embed_dim * 2 ** (num_stages - 1)
        self.norm = nn.LayerNorm(self.out_channels)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        """img: (B, 3, H, W) normalised RGB -> (B, C_out, ceil(H/16), ceil(W/16)) (384x8x8 / 384x19x19)."""
        x = self.patch_embed(img)
        for layer in self.layers:
            x = layer(x)
        return self.norm(x).permute(0, 3, 1, 2)  # B, C, H, W
