"""Transformer neck of SparseTT: dense encoder on the template, sparse (top-k) decoder on the search.

Semantics (docs/sparsett_reference.md, section 1.3): learned 2-D position encoding added once to
the input map (channels [0, C/2) = column embedding, [C/2, C) = row embedding); post-norm layers
with LayerNorm eps 1e-6; the decoder self-attention keeps, per head and per query, the ``top_k``
largest logits and applies the softmax over those only; the cross-attention is dense, with the
encoder output as keys/values (no position encoding). Tokens are batch-first ``(B, L, C)`` here
(the official code is sequence-first; only the layout differs).

The cross-attention keys/values depend on the template only: :meth:`TransformerNeck.encode_template`
returns them with the encoder output so that a tracker computes them once per target.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class TemplateFeatures(NamedTuple):
    """Everything the track step needs from the template.

    Attributes:
        enc: (B, Lz, C) encoder output (Lz = 64 tokens, row-major y * 8 + x).
        cross_kv: per decoder layer, the cross-attention (keys, values), each (B, nH, Lz, C / nH).
    """

    enc: torch.Tensor
    cross_kv: tuple[tuple[torch.Tensor, torch.Tensor], ...]


def topk_mask(logits: np.ndarray, k: int) -> np.ndarray | None:
    """(..., L) bool mask of the ``k`` largest values of each row, found with ``numpy.partition``
    (4x faster than ``torch.topk`` for one CPU thread), or None if a row has a tie at the k-th value
    (masking below it would keep more than k entries; callers then pick exactly k another way)."""
    L = logits.shape[-1]
    kth = np.partition(logits, L - k, axis=-1)[..., L - k:L - k + 1]
    keep = logits >= kth
    return keep if (keep.sum(-1) == k).all() else None


def topk_softmax(logits: torch.Tensor, k: int, partition: bool = True) -> torch.Tensor:
    """Softmax over the ``k`` largest logits of each row, zero elsewhere.

    Args:
        logits: (..., L) attention logits, ``k < L`` (overwritten on the partition path).
        k: entries kept per row.
        partition: allow the CPU partition path below (False: always ``torch.topk``).
    Returns:
        (..., L) attention weights.

    CPU float32 inference masks with :func:`topk_mask`. A row with a tie at the k-th value (padding
    tokens of a crop can have equal features) would keep more than k entries, so then, as in
    training and on GPU, ``topk`` picks exactly k.
    """
    if partition and logits.device.type == "cpu" and logits.dtype == torch.float32 and not logits.requires_grad:
        keep = topk_mask(logits.numpy(), k)
        if keep is not None:
            return logits.masked_fill_(torch.from_numpy(~keep), float("-inf")).softmax(dim=-1)  # logits not needed again
    # Mask, then one softmax over the row: exp(-inf) = 0 leaves the softmax of the k kept logits.
    # Scattering the logits (not their softmax) keeps the dtypes equal under every autocast policy:
    # CUDA autocast runs softmax in float32 even for half inputs, CPU autocast does not.
    vals, idx = logits.topk(k, dim=-1, sorted=False)  # order irrelevant: ~15% faster
    return torch.full_like(logits, float("-inf")).scatter_(-1, idx, vals).softmax(dim=-1)


class PositionEncoding2D(nn.Module):
    """Learned 2-D position encoding, (1, C, S, S): column embedding first, then row embedding."""

    def __init__(self, size: int, channels: int) -> None:
        super().__init__()
        self.row_embed = nn.Embedding(size, channels // 2)
        self.col_embed = nn.Embedding(size, channels // 2)
        nn.init.uniform_(self.row_embed.weight)
        nn.init.uniform_(self.col_embed.weight)

    def forward(self) -> torch.Tensor:
        """Returns (1, S*S, C) with token index y * S + x."""
        S, half = self.col_embed.weight.shape
        col = self.col_embed.weight.unsqueeze(0).expand(S, S, half)  # y, x, C/2 (= col[x])
        row = self.row_embed.weight.unsqueeze(1).expand(S, S, half)  # y, x, C/2 (= row[y])
        return torch.cat([col, row], dim=-1).reshape(1, S * S, 2 * half)


class MultiheadAttention(nn.Module):
    """Multi-head attention with ``nn.MultiheadAttention``'s parameter layout (packed q|k|v).

    Args:
        dim: channels C.
        num_heads: heads (head dim C / num_heads).
        dropout: attention-weight dropout (train mode only).
        top_k: keep only the top_k logits per (head, query) before the softmax; None = dense.
    """

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0, top_k: int | None = None) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.dropout = dropout
        self.top_k = top_k
        self.partition_topk = True  # CPU inference: numpy partition instead of torch.topk (topk_softmax)
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        B, L, C = t.shape
        return t.view(B, L, self.num_heads, C // self.num_heads).transpose(1, 2)  # B, nH, L, hd

    def project_kv(self, kv_in: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """kv_in: (B, Lk, C) -> keys, values (B, nH, Lk, hd)."""
        C = kv_in.shape[-1]
        kv = F.linear(kv_in, self.in_proj_weight[C:], self.in_proj_bias[C:])
        k, v = kv.chunk(2, dim=-1)
        return self._heads(k), self._heads(v)

    def forward(
        self,
        query: torch.Tensor,
        kv_in: torch.Tensor | None = None,
        kv: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Args:
            query: (B, Lq, C).
            kv_in: (B, Lk, C) keys/values input; None = self-attention on ``query``.
            kv: precomputed ``project_kv(kv_in)`` (takes precedence over ``kv_in``).
        Returns:
            (B, Lq, C).
        """
        if kv is None and kv_in is None:
            logits, v = self.self_logits(query)
        else:
            C = query.shape[-1]
            q = self._heads(F.linear(query, self.in_proj_weight[:C], self.in_proj_bias[:C]))
            k, v = kv if kv is not None else self.project_kv(kv_in)
            logits = (q / math.sqrt(q.shape[-1])) @ k.transpose(-2, -1)  # B, nH, Lq, Lk
        return self.attend(self.weights(logits), v)

    def self_logits(self, query: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Self-attention logits and values: query (B, L, C) -> (B, nH, L, L), (B, nH, L, hd).

        With :meth:`weights` and :meth:`attend` this is :meth:`forward`; the ONNX export cuts the
        graph here so that the sparse top-k can run outside it (``sparsett_core.model.onnx_export``).
        """
        q, k, v = F.linear(query, self.in_proj_weight, self.in_proj_bias).chunk(3, dim=-1)
        q, k, v = self._heads(q), self._heads(k), self._heads(v)
        return (q / math.sqrt(q.shape[-1])) @ k.transpose(-2, -1), v

    def weights(self, logits: torch.Tensor) -> torch.Tensor:
        """Attention weights (B, nH, Lq, Lk): top-k softmax (sparse) or softmax, dropout in training."""
        if self.top_k is not None and self.top_k < logits.shape[-1]:
            attn = topk_softmax(logits, self.top_k, self.partition_topk)
        else:
            attn = logits.softmax(dim=-1)
        if self.training and self.dropout > 0:
            attn = F.dropout(attn, self.dropout)
        return attn

    def attend(self, attn: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """attn (B, nH, Lq, Lk), values (B, nH, Lk, hd) -> output projection (B, Lq, C)."""
        B, _, L, _ = attn.shape
        out = (attn.to(v.dtype) @ v).transpose(1, 2).reshape(B, L, -1)  # B, Lq, C
        return self.out_proj(out)


class FeedForward(nn.Module):
    """Post-norm FFN owning its LayerNorm: ``LN(x + Dropout(W2 relu(W1 x))))``."""

    def __init__(self, dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.drop = nn.Dropout(dropout)
        for fc in (self.fc1, self.fc2):  # official init: U(-1/sqrt(in), 1/sqrt(in)), bias 0
            bound = fc.in_features**-0.5
            nn.init.uniform_(fc.weight, -bound, bound)
            nn.init.zeros_(fc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, L, C) -> (B, L, C)."""
        return self.norm(x + self.drop(self.fc2(F.relu(self.fc1(x)))))


class EncoderLayer(nn.Module):
    """Dense self-attention + FFN, post-norm."""

    def __init__(self, dim: int, heads: int, ffn: int, dropout: float) -> None:
        super().__init__()
        self.self_attn = MultiheadAttention(dim, heads, dropout)
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.ffn = FeedForward(dim, ffn, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, L, C) -> (B, L, C)."""
        return self.ffn(self.norm1(x + self.self_attn(x)))


class DecoderLayer(nn.Module):
    """Top-k sparse self-attention, dense cross-attention to the template, FFN; post-norm."""

    def __init__(self, dim: int, heads: int, ffn: int, dropout: float, top_k: int | None) -> None:
        super().__init__()
        self.self_attn = MultiheadAttention(dim, heads, dropout, top_k=top_k)
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.cross_attn = MultiheadAttention(dim, heads, dropout)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.ffn = FeedForward(dim, ffn, dropout)

    def forward(self, y: torch.Tensor, kv: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """y: (B, Lx, C); kv: cross-attention keys/values (B, nH, Lz, hd) -> (B, Lx, C)."""
        logits, v = self.self_attn.self_logits(y)
        return self.finish(y, self.self_attn.weights(logits), v, kv)

    def finish(self, y: torch.Tensor, attn: torch.Tensor, v: torch.Tensor,
               kv: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """The layer after its self-attention weights: y (B, Lx, C), attn (B, nH, Lx, Lx), v (B, nH, Lx, hd)."""
        y = self.norm1(y + self.self_attn.attend(attn, v))
        y = self.norm2(y + self.cross_attn(y, kv=kv))
        return self.ffn(y)


class TransformerNeck(nn.Module):
    """Encoder on the template map, decoder on the search map, output ``cat([dec, f_x])``.

    Args:
        dim: channels C (256).
        heads: attention heads (8).
        ffn: FFN hidden width (2048).
        num_encoder_layers / num_decoder_layers: depths (2 / 2).
        z_feat / x_feat: template / search map sides (8 / 19).
        top_k: decoder self-attention sparsity (32).
        dropout: dropout probability (train mode only).
    """

    def __init__(
        self,
        dim: int = 256,
        heads: int = 8,
        ffn: int = 2048,
        num_encoder_layers: int = 2,
        num_decoder_layers: int = 2,
        z_feat: int = 8,
        x_feat: int = 19,
        top_k: int | None = 32,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.enc_pos = PositionEncoding2D(z_feat, dim)
        self.encoder = nn.ModuleList(EncoderLayer(dim, heads, ffn, dropout) for _ in range(num_encoder_layers))
        self.dec_pos = PositionEncoding2D(x_feat, dim)
        self.decoder = nn.ModuleList(
            DecoderLayer(dim, heads, ffn, dropout, top_k) for _ in range(num_decoder_layers)
        )

    def encode(self, f_z: torch.Tensor) -> torch.Tensor:
        """f_z: (B, C, 8, 8) adjusted template map -> enc (B, 64, C)."""
        x = f_z.flatten(2).transpose(1, 2) + self.enc_pos()  # B, Lz, C
        for layer in self.encoder:
            x = layer(x)
        return x

    def encode_template(self, f_z: torch.Tensor) -> TemplateFeatures:
        """f_z: (B, C, 8, 8) -> encoder output plus every decoder layer's cross-attention K/V."""
        enc = self.encode(f_z)
        return TemplateFeatures(enc, self.cross_kv(enc))

    def cross_kv(self, enc: torch.Tensor) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
        """enc: (B, Lz, C) -> per decoder layer (keys, values), each (B, nH, Lz, hd)."""
        return tuple(layer.cross_attn.project_kv(enc) for layer in self.decoder)

    def decode(self, f_x: torch.Tensor, template: TemplateFeatures | torch.Tensor) -> torch.Tensor:
        """Decoder output only.

        Args:
            f_x: (B, C, 19, 19) adjusted search map.
            template: TemplateFeatures, or the encoder output (B, 64, C).
        Returns:
            (B, C, 19, 19).
        """
        if not isinstance(template, TemplateFeatures):
            template = TemplateFeatures(template, self.cross_kv(template))
        B, C, H, W = f_x.shape
        if template.enc.shape[0] != B:
            raise ValueError(f"template batch {template.enc.shape[0]} != search batch {B}")
        y = f_x.flatten(2).transpose(1, 2) + self.dec_pos()  # B, Lx, C
        for layer, kv in zip(self.decoder, template.cross_kv):
            y = layer(y, kv)
        return y.transpose(1, 2).reshape(B, C, H, W)

    def forward(self, f_x: torch.Tensor, template: TemplateFeatures | torch.Tensor) -> torch.Tensor:
        """(B, C, 19, 19) search map + template -> head input ``cat([dec, f_x])`` (B, 2C, 19, 19)."""
        return torch.cat([self.decode(f_x, template), f_x], dim=1)
