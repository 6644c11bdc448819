"""Each strategy does what it claims: which parameters change, which BatchNorm statistics move, each group's lr."""

import copy
import math

import pytest
import torch
from torch import nn

from workers.pipeline import backbones, engine
from workers.pipeline.blocks import backbone_blocks
from workers.pipeline.strategies import Plan, StrategyConfig


def pretrained(arch: str = "resnet18", classes: int = 10, seed: int = 1) -> backbones.Grafted:
    """A backbone built from a state dict (so Graft treats it as pretrained), with a new head."""
    torch.manual_seed(seed)
    state = backbones.get_model(arch, weights=None).state_dict()
    return backbones.build(arch, classes, state_dict=state)


def snapshot(grafted):
    return {k: v.detach().clone() for k, v in grafted.model.state_dict().items()}


def changed(before, grafted, *, prefix: str = "", suffix: str = "") -> dict[str, bool]:
    after = grafted.model.state_dict()
    return {k: not torch.equal(before[k], after[k]) for k in before
            if k.startswith(prefix) and k.endswith(suffix) and before[k].dtype.is_floating_point}


def train(grafted, data, pre, *, epochs=1, n=128, **strategy):
    images, _ = data
    cfg = engine.TrainConfig(epochs=epochs, batch_size=32, strategy=StrategyConfig(lr=0.05, **strategy))
    subset = images.subset(torch.arange(n))
    return engine.Trainer(grafted, pre, cfg).fit(subset, images.subset(torch.arange(n, n + 64)))


def test_feature_extraction_changes_only_the_head(digits32):
    data, pre = digits32
    grafted = pretrained()
    before = snapshot(grafted)
    cfg = engine.TrainConfig(epochs=1, batch_size=32, feature_cache=False,
                             strategy=StrategyConfig("feature_extraction", lr=0.05))
    engine.Trainer(grafted, pre, cfg).fit(data.subset(torch.arange(128)), data.subset(torch.arange(128, 160)))
    moved = changed(before, grafted)
    assert moved["fc.weight"] and moved["fc.bias"]
    assert not any(v for k, v in moved.items() if not k.startswith("fc."))  # weights and BN statistics frozen


def test_finetune_pretrained_trains_everything_but_keeps_batchnorm_statistics(digits32):
    grafted = pretrained()
    before = snapshot(grafted)
    train(grafted, digits32, digits32[1], strategy="finetune")
    assert all(changed(before, grafted, suffix=".weight").values())
    stats = changed(before, grafted, suffix="running_mean") | changed(before, grafted, suffix="running_var")
    assert stats and not any(stats.values()), "batchnorm=auto must freeze statistics of a pretrained backbone"


def test_finetune_batchnorm_train_moves_statistics(digits32):
    grafted = pretrained()
    before = snapshot(grafted)
    train(grafted, digits32, digits32[1], strategy="finetune", batchnorm="train")
    assert all(changed(before, grafted, suffix="running_mean").values())


def test_from_scratch_trains_batchnorm_statistics_and_uses_one_lr(digits32):
    grafted = backbones.build("resnet18", 10)
    before = snapshot(grafted)
    result = train(grafted, digits32, digits32[1], strategy="finetune")
    assert all(changed(before, grafted, suffix="running_mean").values())
    assert result.history[0]["lrs"] == {"head": 0.05, "backbone": 0.05}


def test_differential_and_layer_decayed_learning_rates():
    grafted = pretrained()
    plan = Plan(grafted, StrategyConfig("finetune", lr=0.1, backbone_lr_mult=0.1, layer_decay=0.5))
    names = [g.name for g in plan.backbone]
    assert names == ["block:layer4", "block:layer3", "block:layer2", "block:layer1", "block:stem"]
    for depth, group in enumerate(plan.backbone):
        assert math.isclose(group.lr, 0.1 * 0.1 * 0.5**depth)
    assert plan.head.lr == 0.1


def test_no_weight_decay_on_norms_and_biases():
    grafted = pretrained()
    plan = Plan(grafted, StrategyConfig("finetune", weight_decay=0.05))
    groups = plan.optimizer_groups(plan.backbone[0])
    decayed = {id(p) for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    for module in grafted.model.modules():
        if isinstance(module, nn.BatchNorm2d):
            assert id(module.weight) not in decayed and id(module.bias) not in decayed
        if isinstance(module, nn.Conv2d):
            assert id(module.weight) in decayed
    assert all(p.ndim > 1 for g in groups if g["weight_decay"] > 0 for p in g["params"])


def test_head_warmup_freezes_the_backbone_first(digits32):
    grafted = pretrained()
    before = snapshot(grafted)
    data, pre = digits32
    cfg = engine.TrainConfig(epochs=1, batch_size=32, strategy=StrategyConfig("finetune", lr=0.05,
                                                                              head_warmup_epochs=1))
    engine.Trainer(grafted, pre, cfg).fit(data.subset(torch.arange(64)), data.subset(torch.arange(64, 96)))
    assert not any(v for k, v in changed(before, grafted).items() if not k.startswith("fc."))
    cfg.epochs = 2
    grafted = pretrained()
    before = snapshot(grafted)
    result = engine.Trainer(grafted, pre, cfg).fit(data.subset(torch.arange(64)), data.subset(torch.arange(64, 96)))
    assert changed(before, grafted)["conv1.weight"]
    assert [sorted(h["lrs"]) for h in result.history] == [["head"], ["backbone", "head"]]


def test_gradual_unfreeze_unfreezes_top_down_on_schedule(digits32):
    grafted = pretrained()
    before = snapshot(grafted)
    result = train(grafted, digits32, digits32[1], epochs=3, n=64, strategy="gradual_unfreeze", unfreeze_every=1,
                   backbone_lr_mult=0.5, layer_decay=0.5)
    assert [list(h["lrs"]) for h in result.history] == [
        ["head"], ["head", "block:layer4"], ["head", "block:layer4", "block:layer3"]]
    assert math.isclose(result.history[2]["lrs"]["block:layer3"], 0.05 * 0.5 * 0.5)
    moved = changed(before, grafted, suffix="weight")
    assert moved["layer4.1.conv2.weight"] and moved["layer3.0.conv1.weight"]
    assert not moved["layer2.0.conv1.weight"] and not moved["conv1.weight"]


@pytest.mark.parametrize(
    ("arch", "top", "bottom", "count"),
    [
        ("resnet18", "layer4", "stem", 5),
        ("mobilenet_v3_small", "classifier", "features.0", 14),
        ("efficientnet_b0", "features.8", "features.0", 9),
        ("vit_b_16", "encoder.ln", "stem", 14),
    ],
)
def test_unfreeze_order_per_family(arch, top, bottom, count):
    with torch.device("meta"):
        grafted = backbones.build(arch, 10)
    plan = Plan(grafted, StrategyConfig("gradual_unfreeze"))
    names = [g.name.removeprefix("block:") for g in plan.backbone]
    assert (names[0], names[-1], len(names)) == (top, bottom, count)
    if arch == "vit_b_16":
        assert names[1:3] == ["encoder.layers.encoder_layer_11", "encoder.layers.encoder_layer_10"]
    covered = [id(p) for b in backbone_blocks(grafted) for p in b.params]
    assert sorted(covered) == sorted(id(p) for p in grafted.backbone_parameters())  # every parameter, once
    assert [len(plan.trainable(e)) for e in (1, 2, 3)] == [0, 1, 2]


def test_frozen_blocks_stay_in_eval_mode(digits32):
    grafted = pretrained("mobilenet_v3_small")
    plan = Plan(grafted, StrategyConfig("gradual_unfreeze"))
    plan.apply(2)
    plan.set_train_mode(2)
    top = plan.backbone[0]
    assert all(m.training for m in top.modules if not isinstance(m, nn.BatchNorm2d))
    assert not any(m.training for g in plan.backbone[1:] for m in g.modules)


def test_batchnorm_freeze_keeps_stats_even_from_scratch(digits32):
    grafted = backbones.build("resnet18", 10)
    before = snapshot(grafted)
    train(grafted, digits32, digits32[1], strategy="finetune", batchnorm="freeze")
    assert not any(changed(before, grafted, suffix="running_mean").values())
    assert copy.deepcopy(grafted.model.bn1.weight).requires_grad
