"""Every schedule gives each parameter group the lr its formula says, step by step and per epoch."""

import math

import pytest
import torch

from workers.pipeline import backbones, engine
from workers.pipeline.schedules import Schedule
from workers.pipeline.strategies import StrategyConfig

STEPS, PER_EPOCH = 60, 6


def torch_reference(name: str):
    """lr factors from PyTorch's own schedulers, an independent implementation."""
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    sched = {
        "constant": lambda: torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0),
        "step": lambda: torch.optim.lr_scheduler.StepLR(opt, step_size=3 * PER_EPOCH, gamma=0.5),
        "multistep": lambda: torch.optim.lr_scheduler.MultiStepLR(opt, [4 * PER_EPOCH, 7 * PER_EPOCH], 0.1),
        "cosine": lambda: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=STEPS),
        "onecycle": lambda: torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1.0, total_steps=STEPS),
    }[name]()
    out = []
    for _ in range(STEPS):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


@pytest.mark.parametrize("name", ["constant", "step", "multistep", "cosine", "onecycle"])
def test_schedule_matches_pytorch(name):
    schedule = Schedule(name, total_steps=STEPS, steps_per_epoch=PER_EPOCH, step_size=3, gamma=0.5 if name == "step"
                        else 0.1, milestones=(4, 7))
    ours = [schedule.factor(s) for s in range(STEPS)]
    assert ours == pytest.approx(torch_reference(name), abs=1e-12)


def test_linear_warmup_then_cosine():
    s = Schedule("cosine", total_steps=100, steps_per_epoch=10, warmup_epochs=2)
    assert [s.factor(i) for i in range(3)] == pytest.approx([1 / 20, 2 / 20, 3 / 20])
    assert s.factor(19) == pytest.approx(1.0)
    assert s.factor(20) == pytest.approx(1.0)
    assert s.factor(60) == pytest.approx(0.5 * (1 + math.cos(math.pi * 40 / 80)))


def test_every_group_lr_per_epoch_follows_the_formula(digits32):
    """A real run: the lr recorded for each group at each epoch = base lr × factor(first step of the epoch)."""
    data, pre = digits32
    torch.manual_seed(0)
    grafted = backbones.build("resnet18", 10, state_dict=backbones.get_model("resnet18").state_dict())
    cfg = engine.TrainConfig(epochs=4, batch_size=32, schedule={"name": "cosine", "warmup_epochs": 1},
                             strategy=StrategyConfig("finetune", lr=0.02, backbone_lr_mult=0.25))
    result = engine.Trainer(grafted, pre, cfg).fit(data.subset(torch.arange(64)), data.subset(torch.arange(64, 80)))
    per_epoch, total = 2, 8
    for epoch, row in enumerate(result.history):
        step = epoch * per_epoch
        factor = (step + 1) / per_epoch if step < per_epoch else \
            0.5 * (1 + math.cos(math.pi * (step - per_epoch) / (total - per_epoch)))
        assert row["lrs"]["head"] == pytest.approx(0.02 * factor)
        assert row["lrs"]["backbone"] == pytest.approx(0.02 * 0.25 * factor)
