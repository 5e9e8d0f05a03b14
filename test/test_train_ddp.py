"""DDP on CPU (gloo, 2 processes): the first step equals one process holding the global batch."""
from __future__ import annotations

import socket

import pytest
import torch
import torch.multiprocessing as mp

from train_helpers import ddp_worker, make_got10k, tiny_config

# dropout / drop path draw different masks per rank: off, so that the comparison is exact maths
DETERMINISTIC = {"model.dropout": 0.0, "model.drop_path_rate": 0.0}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _single_process(root, out, overrides):
    from sparsett_core.train.engine import Trainer, build_model

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = tiny_config(root, out, **overrides)
        torch.manual_seed(cfg.seed)
        trainer = Trainer(cfg, model=build_model(cfg).double(), progress=False, tensorboard=False)
        trainer.batch_sampler.set_epoch(0)
        micro = [b for _, b in zip(range(trainer.cfg.grad_accum), iter(trainer.loader))]
        stats = trainer.accumulate(micro)
        grads = {n: p.grad.detach().clone() for n, p in trainer.model.named_parameters() if p.grad is not None}
    finally:
        torch.set_num_threads(n)
    return stats, grads, torch.cat([b["z"] for b in micro])


@pytest.mark.parametrize("grad_accum", [1, 2])
def test_ddp_first_step_equals_single_process(sequences_dir, tmp_path, grad_accum):
    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available in this torch build")
    root = make_got10k(sequences_dir, tmp_path / "GOT-10k")
    overrides = {**DETERMINISTIC, "batch_size": 8, "grad_accum": grad_accum}
    results = tmp_path / "results"
    results.mkdir()
    mp.spawn(ddp_worker, args=(2, _free_port(), str(root), str(tmp_path / "ddp"), str(results), overrides),
             nprocs=2, join=True)
    r0, r1 = (torch.load(results / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    stats, grads, z = _single_process(root, tmp_path / "single", overrides)

    # the two ranks together read exactly the single process's global batch, without overlap
    assert sorted(map(bytes, torch.cat([r0["z"], r1["z"]]).flatten(1).numpy())) == sorted(map(bytes, z.flatten(1).numpy()))
    # the reported loss is the global batch's, the same on both ranks
    for key in ("loss", "cls_fc", "reg_fc", "cls_conv", "reg_conv"):
        assert r0["stats"][key] == pytest.approx(stats[key], rel=1e-9, abs=1e-12), key
        assert r1["stats"][key] == r0["stats"][key]
    # DDP-averaged gradients equal the single-process gradients of the global batch (float64;
    # atol covers parameters whose exact gradient is 0, e.g. conv biases followed by BatchNorm)
    assert set(grads) == set(r0["grads"]) and len(grads) > 10
    top = max(float(g.abs().max()) for g in grads.values())
    for name, g in grads.items():
        for r in (r0, r1):
            assert torch.allclose(r["grads"][name], g, rtol=1e-7, atol=1e-10 * top), name
