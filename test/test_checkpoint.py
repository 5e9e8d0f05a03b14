"""Checkpoint loader: the three formats, and a clear CheckpointError for every bad file kind."""
from __future__ import annotations

import pickle
import re

import pytest
import torch
import torch.nn.functional as F

from sparsett_core import CheckpointError, ModelConfig, SparseTT
from sparsett_core.model.checkpoint import read_checkpoint, save_checkpoint
from sparsett_core.model.swin import PatchMerging


@pytest.fixture(scope="module")
def official_sd(official_checkpoint):
    return torch.load(official_checkpoint, map_location="cpu", weights_only=True)["model_state_dict"]


@pytest.fixture(scope="module")
def official_model(official_checkpoint):
    return SparseTT.from_checkpoint(official_checkpoint)


def test_official_checkpoint_loads_every_used_key(official_model, official_sd):
    sd = official_model.state_dict()
    assert torch.equal(sd["backbone.patch_embed.proj.weight"], official_sd["basemodel.net.patch_embed.projection.weight"])
    assert torch.equal(sd["neck.decoder.1.cross_attn.in_proj_weight"],
                       official_sd["neck.decoder.decoder_layers.1.enc_attn.in_proj_weight"])
    assert torch.equal(sd["adjust_x.bn.running_var"], official_sd["feat_adjuster_x.bn.running_var"])
    assert torch.equal(sd["backbone.norm.weight"], official_sd["basemodel.net.norm2.weight"])
    # stage 3 and the stage-2 merging are not built
    assert not any(k.startswith(("backbone.layers.3.", "backbone.layers.2.downsample")) for k in sd)
    assert not official_model.training


def _write_official(tmp_path, sd):
    path = tmp_path / "bad.pkl"
    torch.save({"epoch": 19, "model_state_dict": sd}, path)
    return path


def test_missing_key_is_named(tmp_path, official_sd):
    sd = dict(official_sd)
    del sd["head.conv_branch.3.bn2.running_mean"]
    with pytest.raises(CheckpointError, match=r"missing keys: \['head\.conv_branch\.3\.bn2\.running_mean'\]"):
        SparseTT.from_checkpoint(_write_official(tmp_path, sd))


def test_unexpected_key_is_named(tmp_path, official_sd):
    sd = dict(official_sd)
    sd["neck.decoder.extra_layer.weight"] = torch.zeros(3)
    with pytest.raises(CheckpointError, match=r"unexpected keys.*neck\.decoder\.extra_layer\.weight"):
        SparseTT.from_checkpoint(_write_official(tmp_path, sd))


def test_unexpected_block_is_named(tmp_path, official_sd):
    sd = dict(official_sd)
    sd["basemodel.net.stages.1.blocks.2.norm1.weight"] = torch.zeros(192)  # stage 1 has 2 blocks
    with pytest.raises(CheckpointError, match=r"unexpected keys: \['backbone\.layers\.1\.blocks\.2\.norm1\.weight'\]"):
        SparseTT.from_checkpoint(_write_official(tmp_path, sd))


def test_wrong_shape_key_is_named(tmp_path, official_sd):
    sd = dict(official_sd)
    sd["head.fc_branch.0.weight"] = torch.zeros(1024, 256, 1, 1)
    with pytest.raises(CheckpointError, match=r"wrong-shaped keys: \['head\.fc_branch\.0\.weight \(1024, 256, 1, 1\)"):
        SparseTT.from_checkpoint(_write_official(tmp_path, sd))


def test_changed_constant_buffer_is_an_error(tmp_path, official_sd):
    sd = dict(official_sd)
    sd["head.fm_ctr"] = sd["head.fm_ctr"] + 8
    with pytest.raises(CheckpointError, match="head.fm_ctr"):
        SparseTT.from_checkpoint(_write_official(tmp_path, sd))


def test_missing_path(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        SparseTT.from_checkpoint(tmp_path / "nope.pkl")


def test_directory_and_empty_file(tmp_path):
    with pytest.raises(CheckpointError, match="not a file"):
        SparseTT.from_checkpoint(tmp_path)
    (tmp_path / "empty.pkl").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        SparseTT.from_checkpoint(tmp_path / "empty.pkl")


def test_truncated_file(tmp_path, official_checkpoint):
    data = official_checkpoint.read_bytes()
    path = tmp_path / "trunc.pkl"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        SparseTT.from_checkpoint(path)


def test_random_bytes(tmp_path):
    path = tmp_path / "random.pkl"
    path.write_bytes(torch.randint(0, 256, (4096,), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)).numpy().tobytes())
    with pytest.raises(CheckpointError, match="cannot read"):
        SparseTT.from_checkpoint(path)


def test_pickle_of_unrelated_dict(tmp_path):
    plain = tmp_path / "foreign.pkl"
    with open(plain, "wb") as f:  # a plain pickle, not written by torch.save
        pickle.dump({"learning_rate": 0.1, "names": ["a", "b"]}, f)
    with pytest.raises(CheckpointError, match="cannot read .* as a torch checkpoint"):
        SparseTT.from_checkpoint(plain)
    saved = tmp_path / "foreign.pt"  # a torch.save of an unrelated dict
    torch.save({"learning_rate": 0.1, "names": ["a", "b"], "weights": torch.zeros(3)}, saved)
    with pytest.raises(CheckpointError, match=r"unrecognised checkpoint content \(top-level keys \['learning_rate', 'names', 'weights'\]"):
        SparseTT.from_checkpoint(saved)
    torch.save([1, 2], saved)
    with pytest.raises(CheckpointError, match="holds a list, expected a dict"):
        SparseTT.from_checkpoint(saved)


def test_pickled_code_is_refused(tmp_path):
    path = tmp_path / "code.pkl"
    torch.save({"model_state_dict": {}, "obj": ModelConfig()}, path)  # a pickled class instance
    with pytest.raises(CheckpointError, match="cannot read"):
        read_checkpoint(path)


def test_own_checkpoint_round_trip(tmp_path, official_model):
    path = save_checkpoint(official_model, tmp_path / "sub" / "ours.pt", epoch=3, note="x")
    assert path.exists() and not (tmp_path / "sub" / "ours.pt.tmp").exists()
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "sparsett_ros" and raw["version"] == 1 and raw["epoch"] == 3
    loaded = SparseTT.from_checkpoint(path)
    assert loaded.config == official_model.config
    a, b = official_model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_own_checkpoint_keeps_config(tmp_path):
    cfg = ModelConfig(top_k=16, num_decoder_layers=1, head_num_convs=2, default_preset="otb2015")
    path = save_checkpoint(SparseTT(cfg), tmp_path / "small.pt")
    loaded = SparseTT.from_checkpoint(path)
    assert loaded.config == cfg and loaded.default_preset == "otb2015"
    assert len(loaded.neck.decoder) == 1


def test_own_checkpoint_with_unknown_config_key(tmp_path):
    path = save_checkpoint(SparseTT(ModelConfig(head_num_convs=1)), tmp_path / "c.pt")
    raw = torch.load(path, weights_only=True)
    raw["config"]["no_such_field"] = 1
    torch.save(raw, path)
    with pytest.raises(CheckpointError, match="no_such_field"):
        SparseTT.from_checkpoint(path)


def test_save_refuses_reserved_extra(tmp_path):
    with pytest.raises(ValueError, match="state_dict"):
        save_checkpoint(SparseTT(ModelConfig(head_num_convs=1)), tmp_path / "x.pt", state_dict={})


# ---------------------------------------------------------------- Microsoft ImageNet Swin-T file
def _to_microsoft_order(name: str, value: torch.Tensor) -> torch.Tensor:
    """Unfold order -> original Swin concat order [x0, x1, x2, x3] (the permutation is an involution)."""
    if name.endswith("reduction.weight"):
        o, i = value.shape
        return value.reshape(o, i // 4, 4)[:, :, [0, 2, 1, 3]].transpose(1, 2).reshape(o, i)
    (i,) = value.shape
    return value.reshape(i // 4, 4)[:, [0, 2, 1, 3]].transpose(0, 1).reshape(i)


def _official_to_microsoft(sd):
    out = {}
    for k, v in sd.items():
        if not k.startswith("basemodel.net.") or k.startswith("basemodel.net.norm2"):
            continue
        n = k[len("basemodel.net."):].replace("stages.", "layers.").replace("attn.w_msa.", "attn.")
        n = n.replace("ffn.layers.0.0.", "mlp.fc1.").replace("ffn.layers.1.", "mlp.fc2.")
        n = n.replace("patch_embed.projection.", "patch_embed.proj.")
        if re.search(r"downsample\.(reduction\.weight|norm\.(weight|bias))$", n):
            v = _to_microsoft_order(n, v)
        out[n] = v
    out["norm.weight"], out["norm.bias"] = torch.ones(768), torch.zeros(768)
    out["head.weight"], out["head.bias"] = torch.zeros(1000, 768), torch.zeros(1000)
    out["layers.0.blocks.1.attn_mask"] = torch.zeros(64, 49, 49)
    return out


def test_imagenet_swin_file_loads_backbone_only(tmp_path, official_sd, official_model):
    path = tmp_path / "swin_tiny_patch4_window7_224.pth"
    torch.save({"model": _official_to_microsoft(official_sd)}, path)
    model = SparseTT.from_checkpoint(path)
    got, want = model.backbone.state_dict(), official_model.backbone.state_dict()
    for k in want:
        if k.startswith("norm."):
            continue
        assert torch.equal(got[k], want[k]), k
    assert torch.equal(got["norm.weight"], torch.ones(384)) and torch.equal(got["norm.bias"], torch.zeros(384))


def test_imagenet_missing_key_is_named(tmp_path, official_sd):
    sd = _official_to_microsoft(official_sd)
    del sd["layers.1.blocks.0.mlp.fc2.bias"]
    torch.save({"model": sd}, tmp_path / "swin.pth")
    with pytest.raises(CheckpointError, match=r"missing keys: \['layers\.1\.blocks\.0\.mlp\.fc2\.bias'\]"):
        SparseTT.from_checkpoint(tmp_path / "swin.pth")


def test_patch_merging_reorder_matches_original_swin_semantics():
    """Original Swin merging (concat x0,x1,x2,x3) with Microsoft weights == ours with converted weights."""
    from sparsett_core.model.checkpoint import _reorder_merging

    torch.manual_seed(0)
    C = 8
    w, g, b = torch.randn(2 * C, 4 * C), torch.randn(4 * C), torch.randn(4 * C)
    x = torch.randn(1, 6, 6, C)
    x0, x1, x2, x3 = x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]
    want = F.linear(F.layer_norm(torch.cat([x0, x1, x2, x3], -1), (4 * C,), g, b), w)
    merge = PatchMerging(C)
    merge.reduction.weight.data = _reorder_merging("reduction.weight", w)
    merge.norm.weight.data = _reorder_merging("norm.weight", g)
    merge.norm.bias.data = _reorder_merging("norm.bias", b)
    torch.testing.assert_close(merge(x), want, rtol=1e-5, atol=1e-5)
