"""BatchNorm with statistics over all ranks, on any device and process-group backend.

``torch.nn.SyncBatchNorm`` only runs on GPUs; this module does the same on CPU with gloo (tests,
CPU clusters). On CUDA the engine uses ``torch.nn.SyncBatchNorm`` instead.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks whose gradient is again the sum over ranks (every rank's loss uses the result)."""

    @staticmethod
    def forward(ctx, t: torch.Tensor) -> torch.Tensor:
        out = t.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        out = grad.clone()
        dist.all_reduce(out)
        return out


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Autograd-aware all-reduce (sum) over the default process group."""
    return _AllReduceSum.apply(t)


class AllReduceBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training-mode mean/var are taken over the whole distributed batch.

    The mean (sum of ``x`` and element count), then the biased variance (sum of squared
    deviations: two passes, as precise as BatchNorm2d) are summed over ranks with an
    autograd-aware all-reduce, so gradients flow through the global statistics exactly as with
    one process holding the whole batch. Eval mode and a single process behave as BatchNorm2d.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, C, H, W)
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        c = x.shape[1]
        xf = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        count = torch.full((1,), float(x.numel() // c), device=x.device)
        stats = all_reduce_sum(torch.cat([xf.sum((0, 2, 3)), count]))
        total = stats[-1]
        mean = stats[:c] / total
        centred = xf - mean.view(1, c, 1, 1)
        var = all_reduce_sum((centred * centred).sum((0, 2, 3))) / total
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * total / (total - 1).clamp(min=1), alpha=m)
        y = centred * torch.rsqrt(var + self.eps).view(1, c, 1, 1)
        if self.affine:
            y = y * self.weight.view(1, c, 1, 1) + self.bias.view(1, c, 1, 1)
        return y.to(x.dtype)


def convert_sync_bn(module: nn.Module, device: torch.device) -> nn.Module:
    """Replace every BatchNorm2d by its synchronised version (native on CUDA, all-reduce otherwise)."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return _convert(module)


def _convert(module: nn.Module) -> nn.Module:
    out = module
    if isinstance(module, nn.BatchNorm2d) and not isinstance(module, AllReduceBatchNorm2d):
        ref = next(iter(module.parameters()), None)
        ref = ref if ref is not None else module.running_mean
        out = AllReduceBatchNorm2d(module.num_features, module.eps, module.momentum, module.affine,
                                   module.track_running_stats,
                                   device=ref.device if ref is not None else None,
                                   dtype=ref.dtype if ref is not None else None)
        out.load_state_dict(module.state_dict())
        out.train(module.training)
    for name, child in module.named_children():
        out.add_module(name, _convert(child))
    return out
