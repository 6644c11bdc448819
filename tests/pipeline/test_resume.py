"""A run stopped after any epoch and resumed from its training-state checkpoint ends bit-identical to one that never
stopped: model, optimizer (groups that joined later included), schedule position and random generators."""

import pytest
import torch

from workers.pipeline import backbones, checkpoints, datasets, engine
from workers.pipeline.adaptation.data import load_mnist_raw
from workers.pipeline.adaptation.trainer import AdaptationConfig, AdaptTrainer
from workers.pipeline.strategies import StrategyConfig


class Recorder(engine.NullCallbacks):
    def __init__(self, path_for):
        self.path_for, self.saved = path_for, {}

    def on_checkpoint(self, *, epoch, state):
        self.saved[epoch] = checkpoints.save_training_state(state, self.path_for(epoch))


def small(digits32):
    data, pre = digits32
    train_idx, val_idx = datasets.stratified_split(data.labels, 0.8, 0)
    return data.subset(train_idx[:128]), data.subset(val_idx[:100]), pre


def make(pre, strategy: str, callbacks=None, *, pretrained_from=None, adapt=None, target=None):
    torch.manual_seed(0)
    grafted = backbones.build("resnet18", 10, state_dict=pretrained_from)
    cfg = engine.TrainConfig(epochs=3, batch_size=32, device="cpu", seed=3, schedule={"name": "cosine"},
                             augmentation="light", checkpoint_every=1, strategy=StrategyConfig(strategy, lr=0.02, unfreeze_every=1))
    if adapt:
        return grafted, AdaptTrainer(grafted, pre, cfg, AdaptationConfig(method=adapt), target, callbacks=callbacks)
    return grafted, engine.Trainer(grafted, pre, cfg, callbacks)


@pytest.mark.parametrize(("strategy", "adapt"), [("gradual_unfreeze", None), ("finetune", "dann")])
def test_resumed_run_is_bit_identical_to_an_uninterrupted_one(digits32, tmp_path, strategy, adapt):
    train, val, pre = small(digits32)
    source = backbones.build("resnet18", 10).model.state_dict()  # "pretrained": lr groups and BN freezing apply
    target = datasets.decode_set(load_mnist_raw(limit=64), pre) if adapt else None
    recorder = Recorder(lambda e: tmp_path / f"state-{e}.pt")
    full, trainer = make(pre, strategy, recorder, pretrained_from=source, adapt=adapt, target=target)
    full_fit = trainer.fit(train, val)
    assert sorted(recorder.saved) == [1, 2]  # none after the last epoch

    state = checkpoints.load_training_state(recorder.saved[1])
    resumed, trainer = make(pre, strategy, pretrained_from=source, adapt=adapt, target=target)
    resumed_fit = trainer.fit(train, val, resume=state)

    assert [h["epoch"] for h in resumed_fit.history] == [1, 2, 3]  # no epoch twice
    for key, value in full.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    assert resumed_fit.history[-1]["val_loss"] == full_fit.history[-1]["val_loss"]
    assert resumed_fit.history[-1]["lrs"] == full_fit.history[-1]["lrs"]
    assert resumed_fit.best_epoch == full_fit.best_epoch


def test_training_state_loads_without_pickle(tmp_path):
    evil = tmp_path / "evil.pt"
    torch.save({"x": torch.zeros(1), "obj": Recorder(None)}, evil)  # an arbitrary object: refused
    with pytest.raises(Exception, match="(?i)weights_only|unsupported"):
        checkpoints.load_training_state(evil)
