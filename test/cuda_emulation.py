"""CPU emulation of what CUDA autocast does differently from CPU autocast.

CUDA autocast runs a fixed list of ops in float32 whatever their input dtype (PyTorch's "CUDA Ops
that can autocast to float32": softmax, log_softmax, layer_norm, group_norm, exp, log, pow, sum,
...): their half inputs are upcast and their *output is float32*. CPU autocast has a different
list (softmax and layer_norm stay in the input dtype there), so a half-precision step that passes
on the CPU can still meet a float32 tensor where it expects a half one on CUDA (``scatter_`` of a
float32 softmax into a half buffer raises ``Expected self.dtype to be equal to src.dtype``).

:class:`CudaAutocastPolicy` reproduces that at the ATen level: inside it, every op of the CUDA
float32 list that receives a float16/bfloat16 tensor runs on float32 copies of its floating
inputs and returns float32, as it would on CUDA. Combined with CPU autocast (which casts matmuls
and convolutions to half as CUDA autocast does), the CPU then runs the dtype flow of a CUDA
autocast step.
"""
from __future__ import annotations

import torch
from torch.utils._pytree import tree_map
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten
HALF = (torch.float16, torch.bfloat16)

# The ATen ops behind CUDA autocast's float32 list that a tracker step can reach, as composite ops
# (what a dispatch mode sees under inference_mode) and as their decompositions (with autograd on).
FP32_OPS = {
    aten.softmax.int, aten.log_softmax.int, aten.layer_norm.default, aten.group_norm.default,
    aten._softmax.default, aten._log_softmax.default, aten.native_layer_norm.default,
    aten.native_group_norm.default, aten.exp.default, aten.expm1.default, aten.log.default,
    aten.log1p.default, aten.log2.default, aten.log10.default, aten.pow.Tensor_Scalar,
    aten.pow.Tensor_Tensor, aten.pow.Scalar, aten.rsqrt.default, aten.reciprocal.default,
    aten.sum.default, aten.sum.dim_IntList, aten.prod.default, aten.prod.dim_int, aten.cumsum.default,
    aten.cumprod.default, aten.softplus.default, aten.linalg_vector_norm.default, aten.norm.Scalar,
    aten.norm.ScalarOpt_dim, aten.acos.default, aten.asin.default, aten.cosh.default, aten.sinh.default,
    aten.tan.default, aten.erfinv.default,
}


class CudaAutocastPolicy(TorchDispatchMode):
    """Run CUDA autocast's float32 ops in float32 (half inputs upcast, float32 output).

    Use together with ``torch.autocast("cpu", dtype=...)``; ``upcasts`` counts the ops it changed,
    so a test can check that the policy was exercised.
    """

    def __init__(self) -> None:
        super().__init__()
        self.upcasts = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in FP32_OPS:
            tensors = [a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)]
            if any(t.dtype in HALF for t in tensors):
                self.upcasts += 1
                up = lambda a: a.float() if isinstance(a, torch.Tensor) and a.dtype in HALF else a  # noqa: E731
                args, kwargs = tree_map(up, args), tree_map(up, kwargs)
        return func(*args, **kwargs)
