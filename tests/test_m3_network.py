"""The M3 network: multi-scale fusion (Eq. 2-3) on the real EfficientNet-Lite2 stage shapes
and against a hand-built reference, the tag MLP, the losses (Eq. 4-5), Algorithm 2's
decoding of the predicted quantities, and Algorithm 1's phases on the training engine."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F
from torch.utils.data import Dataset

from phototag.errors import InvalidInputError
from phototag.evaluation.decoding import Quantity
from phototag.models.m3.network import (
    TRAINED,
    FusionBlock,
    LearningRates,
    M3Network,
    M3Task,
    MultiScale,
    TagMLP,
    classification_loss,
    quantity_loss,
    training_phases,
    training_tasks,
)
from phototag.training import Trainer

CHANNELS = (3, 4, 6)
SHAPES = ((8, 8), (4, 4), (2, 2))
LEVELS = tuple(zip(CHANNELS, SHAPES, strict=True))  # (C, (H, W)) of each stage


@pytest.fixture(scope="module")
def lite2_maps() -> dict[str, torch.Tensor]:
    """EfficientNet-Lite2's five multi-scale maps of two random 260 px inputs."""
    from phototag.features.encoders import create_encoder

    encoder = create_encoder("efficientnet_lite2")
    size = encoder.preprocess.input_size
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    return encoder.feature_maps(x, encoder.scales)


class Items(Dataset):
    """Synthetic M3 items: K maps, a tag vector and labels that both predict."""

    def __init__(self, n: int, n_labels: int = 4, n_tags: int = 10, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.maps = [torch.randn(n, c, *s, generator=g).half() for c, s in LEVELS]
        self.labels = torch.ones(n, n_labels)  # the last label: every item has one
        self.labels[:, :3] = (self.maps[0].float().mean(dim=(2, 3)) > 0).float()
        noise = torch.rand(n, n_tags - n_labels, generator=g) < 0.3
        self.tags = torch.cat([self.labels, noise.float()], dim=1)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        return {"maps": [m[i] for m in self.maps], "tags": self.tags[i], "labels": self.labels[i]}


def small_network(n_tags: int = 10, seed: int = 0) -> M3Network:
    torch.manual_seed(seed)
    return M3Network(CHANNELS, SHAPES, n_labels=4, n_tags=n_tags, tag_hidden=(16, 16),
                     quantity_hidden=(8, 8))  # fmt: skip


# ---------------------------------------------------------------------- fusion


def test_real_lite2_stage_shapes_fuse_without_padding(lite2_maps):
    maps = list(lite2_maps.values())
    shapes = [tuple(m.shape[-2:]) for m in maps]
    assert shapes == [(130, 130), (65, 65), (33, 33), (17, 17), (9, 9)]
    net = M3Network([m.shape[1] for m in maps], shapes, n_labels=7, n_tags=5).eval()
    fused = maps[0]
    with torch.no_grad():
        for block, stage in zip(net.fusion.blocks, maps[1:], strict=True):
            step = block(fused)
            assert step.shape == stage.shape  # the stride-2 output fits without pad or crop
            fused = stage + step
        out = net([m.half() for m in maps], torch.zeros(2, 5))
    assert net.fusion.out_features == 1280
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "visual_logits": (2, 7), "tag_logits": (2, 7), "logits": (2, 7), "quantity": (2,),
    }  # fmt: skip
    torch.testing.assert_close(net.fusion(maps), fused.mean(dim=(2, 3)))


def reference_block(block: FusionBlock, x: torch.Tensor) -> torch.Tensor:
    """F_l by hand (eval mode): 3x3 stride-2 conv, BN, ReLU, then 1x1 conv, BN, ReLU."""
    for phi, stride, padding in ((block.phi1, 2, 1), (block.phi2, 1, 0)):
        conv, bn = phi[0], phi[1]
        x = F.conv2d(x, conv.weight, stride=stride, padding=padding)
        x = F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, eps=bn.eps)
        x = F.relu(x)
    return x


def randomised(module: torch.nn.Module) -> torch.nn.Module:
    """`module` in eval mode with random batch-norm statistics and affine parameters."""
    g = torch.Generator().manual_seed(1)
    for bn in (m for m in module.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        bn.running_mean.copy_(torch.randn(bn.num_features, generator=g))
        bn.running_var.copy_(torch.rand(bn.num_features, generator=g) + 0.5)
        bn.weight.data.copy_(torch.randn(bn.num_features, generator=g))
        bn.bias.data.copy_(torch.randn(bn.num_features, generator=g))
    return module.eval()


def test_fusion_follows_equation_2_on_tiny_maps():
    torch.manual_seed(0)
    fusion = randomised(MultiScale(CHANNELS, SHAPES))
    m1, m2, m3 = (torch.randn(2, c, *s) for c, s in LEVELS)
    with torch.no_grad():
        fused2 = m2 + reference_block(fusion.blocks[0], m1)  # M'_2 = M_2 + F_2(M'_1), M'_1 = M_1
        fused3 = m3 + reference_block(fusion.blocks[1], fused2)
        torch.testing.assert_close(fusion.fuse([m1, m2, m3]), fused3)
        torch.testing.assert_close(fusion([m1, m2, m3]), fused3.mean(dim=(2, 3)))
    assert [b.phi2[0].out_channels for b in fusion.blocks] == [4, 6]


def test_fusion_crops_or_pads_a_stride_2_output_one_off():
    torch.manual_seed(0)
    # ceil(9 / 2) = 5 is cropped to 4; ceil(4 / 2) = 2 is zero-padded to 3
    fusion = randomised(MultiScale((2, 3, 2), ((9, 9), (4, 4), (3, 3))))
    m1, m2, m3 = torch.randn(1, 2, 9, 9), torch.randn(1, 3, 4, 4), torch.randn(1, 2, 3, 3)
    with torch.no_grad():
        fused2 = m2 + reference_block(fusion.blocks[0], m1)[:, :, :4, :4]
        fused3 = m3 + F.pad(reference_block(fusion.blocks[1], fused2), (0, 1, 0, 1))
        torch.testing.assert_close(fusion.fuse([m1, m2, m3]), fused3)


def test_fusion_checks_shapes():
    with pytest.raises(InvalidInputError, match="shapes"):
        MultiScale((3, 4), ((16, 16), (4, 4)))  # not half: 8 expected
    with pytest.raises(InvalidInputError, match="shapes"):
        MultiScale((3, 4), ((8, 8),))
    fusion = MultiScale(CHANNELS, SHAPES)
    with pytest.raises(InvalidInputError, match="maps"):
        fusion([torch.zeros(1, c, 4, 4) for c in CHANNELS])


def test_one_stage_is_the_pooled_last_map():
    fusion = MultiScale((5,), ((3, 3),))
    m = torch.randn(2, 5, 3, 3)
    assert len(fusion.blocks) == 0
    torch.testing.assert_close(fusion([m.half()]), m.half().float().mean(dim=(2, 3)))


# ---------------------------------------------------------------------- tags, heads, losses


def test_tag_mlp_gives_features_the_size_of_f_v():
    mlp = TagMLP(30, 12, hidden=(16, 16), dropout=0.5)
    tags = torch.rand(4, 30) < 0.2
    out = mlp(tags)
    assert out.shape == (4, 12) and bool((out >= 0).all())
    assert [m.out_features for m in mlp if isinstance(m, torch.nn.Linear)] == [16, 16, 12]
    assert [m.out_features for m in TagMLP(30, 12) if isinstance(m, torch.nn.Linear)] == [
        2048, 2048, 12,
    ]  # fmt: skip


def test_visual_only_network_has_no_tag_stage():
    net = M3Network(CHANNELS, SHAPES, n_labels=4)
    assert net.stages == ("multiscale", "heads") and net.classifier.in_features == 6
    maps = [torch.zeros(2, c, *s) for c, s in LEVELS]
    assert set(net(maps)) == {"visual_logits", "logits", "quantity"}
    with pytest.raises(InvalidInputError, match="tags"):
        net(maps, torch.zeros(2, 3))
    # with a tag branch, the heads wait for both inputs
    assert set(small_network()(maps)) == {"visual_logits"}


def test_losses_are_equations_4_and_5():
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.0, 3.0, -2.0]])
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    p = torch.sigmoid(logits)
    by_hand = -(labels * p.log() + (1 - labels) * (1 - p).log()).sum() / 2
    torch.testing.assert_close(classification_loss(logits, labels), by_hand)
    m_hat = torch.tensor([2.5, 0.0])  # true counts 2 and 1
    torch.testing.assert_close(quantity_loss(m_hat, labels), torch.tensor((0.25 + 1.0) / 2))


def test_algorithm_2_takes_the_top_rounded_quantity():
    scores = np.array([[0.9, 0.1, 0.5, 0.7], [0.2, 0.8, 0.3, 0.1], [0.1, 0.2, 0.3, 0.4]])
    mask = Quantity().decode(scores, np.array([2.4, 0.2, 9.7]))  # -> 2, at least 1, at most L
    assert mask.tolist() == [
        [True, False, False, True], [False, True, False, False], [True, True, True, True],
    ]  # fmt: skip


# ---------------------------------------------------------------------- Algorithm 1


def test_phases_train_the_paper_parts_at_the_paper_rates():
    net = small_network()
    phases = training_phases(net, epochs=2)
    children = {name for name, _ in net.named_children()}
    assert [p.name for p in phases] == ["multiscale", "tags", "heads"]
    for phase in phases:
        assert set(phase.frozen) == children - set(TRAINED[phase.name]) and phase.epochs == 2
        assert phase.optimizer.name == "sgd" and phase.optimizer.momentum == 0.9
    assert [p.optimizer.lr for p in phases] == [0.001, 0.1, 0.001]
    assert [(g.parts, g.lr) for g in phases[2].optimizer.groups] == [(("quantity",), 0.1)]


@pytest.mark.parametrize("stage", ["multiscale", "tags", "heads"])
def test_each_phase_moves_only_its_parts(stage):
    net = small_network()
    phase = next(p for p in training_phases(net, epochs=1) if p.name == stage)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    trainer = Trainer(phases=(phase,), batch_size=8, accelerator="cpu", progress=False)
    result = trainer.fit(net, M3Task(stage), Items(16))
    trained = tuple(f"{part}." for part in TRAINED[stage])
    moved_parts = set()
    for key, value in net.state_dict().items():
        if key.endswith("num_batches_tracked"):
            continue
        moved = not torch.equal(value, before[key])
        if not key.startswith(trained):
            assert not moved, key  # frozen: bit for bit
        elif moved:  # a trained part moves (some of its tensors by less than 1 ulp)
            moved_parts.add(key.split(".")[0])
    assert moved_parts == set(TRAINED[stage]) & {n for n, _ in net.named_children()}
    if stage == "heads":
        assert result.history_[0]["lr_quantity"] == 0.1 and result.history_[0]["lr_rest"] == 0.001


def test_algorithm_1_on_the_engine_lowers_each_stage_loss():
    net = small_network()
    rates = LearningRates(visual=0.01, textual=0.1)  # the paper's 0.001 moves slowly here
    trainer = Trainer(phases=training_phases(net, rates, epochs=12), batch_size=16,
                      accelerator="cpu", progress=False)  # fmt: skip
    data, valid = Items(96), Items(32, seed=1)
    result = trainer.fit(net, training_tasks(net), data, valid)
    for stage in net.stages:
        history = [h for h in result.history_ if h["phase"] == stage]
        assert history[-1]["train_loss"] < 0.75 * history[0]["train_loss"], (stage, history)
        assert history[-1]["valid"] < 0.9 * history[0]["valid"], (stage, history)
    task = M3Task("heads")
    batches = [Items(32, seed=1)[i] for i in range(32)]
    with torch.no_grad():
        value = task.validation_value(net, [task.collate(batches[:20]), task.collate(batches[20:])])
        assert value == pytest.approx(float(task.loss(net, task.collate(batches))), rel=1e-5)


def test_an_untrained_multi_scale_network_is_nearly_the_plain_cnn():
    """Near-zero fusion outputs at the start: f_v is about the pooled last map."""
    from phototag.models.m3.network import MultiScale

    torch.manual_seed(0)
    fusion = MultiScale([3, 5, 7], [(8, 8), (4, 4), (2, 2)]).eval()
    maps = [torch.rand(2, c, s, s) for c, s in ((3, 8), (5, 4), (7, 2))]
    plain = maps[-1].mean(dim=(2, 3))
    fused = fusion(maps)
    assert not torch.equal(fused, plain)
    torch.testing.assert_close(fused, plain, atol=0.05, rtol=0.0)
