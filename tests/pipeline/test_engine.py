"""The engine: deterministic, the feature cache is exact, early stopping and best checkpoints, evaluation."""

import pytest
import torch

from workers.pipeline import backbones, engine
from workers.pipeline.errors import TrainingDiverged
from workers.pipeline.strategies import StrategyConfig


def run(digits32, *, seed=0, n=256, **overrides):
    data, pre = digits32
    torch.manual_seed(seed)
    grafted = backbones.build("resnet18", 10, state_dict=backbones.get_model("resnet18").state_dict())
    cfg = engine.TrainConfig(batch_size=32, seed=seed, **({"epochs": 2} | overrides))
    train, val = data.subset(torch.arange(n)), data.subset(torch.arange(n, n + 128))
    return engine.Trainer(grafted, pre, cfg).fit(train, val, test=data.subset(torch.arange(1600, 1797))), grafted


def test_same_spec_and_seed_give_the_same_metrics(digits32):
    a, _ = run(digits32, seed=3, augmentation="light")
    b, _ = run(digits32, seed=3, augmentation="light")
    assert a.history == [dict(h, epoch_seconds=a.history[i]["epoch_seconds"]) for i, h in enumerate(b.history)]
    assert a.metrics["val"] == b.metrics["val"]
    c, _ = run(digits32, seed=4, augmentation="light")
    assert c.metrics["val"]["loss"] != a.metrics["val"]["loss"]


def test_feature_cache_matches_the_naive_loop(digits32):
    fe = StrategyConfig("feature_extraction", lr=0.1)
    cached, _ = run(digits32, epochs=3, strategy=fe, feature_cache=True)
    naive, _ = run(digits32, epochs=3, strategy=fe, feature_cache=False)
    for a, b in zip(cached.history, naive.history, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
        assert a["val_accuracy"] == pytest.approx(b["val_accuracy"], abs=1e-9)


def test_evaluation_report(digits32):
    result, _ = run(digits32, epochs=1)
    val, test = result.metrics["val"], result.metrics["test"]
    assert {"loss", "accuracy", "top5_accuracy", "macro_f1", "per_class", "confusion_matrix"} <= set(val)
    assert sum(map(sum, test["confusion_matrix"])) == test["count"] == 197
    assert sum(row[i] for i, row in enumerate(test["confusion_matrix"])) / 197 == pytest.approx(test["accuracy"])
    assert test["top5_accuracy"] >= test["accuracy"]
    assert set(val["per_class"]) == {str(i) for i in range(10)}
    assert result.metrics["test_accuracy"] == test["accuracy"]


def test_early_stopping_and_best_checkpoint(digits32):
    """lr so small that nothing improves after the first epoch: stops after `patience`, best = epoch 1."""
    result, grafted = run(digits32, epochs=10, early_stopping_patience=2, early_stopping_min_delta=0.5,
                          strategy=StrategyConfig("finetune", lr=1e-4))
    assert result.metrics["epochs_run"] == 3 and result.best_epoch == 1
    assert not torch.equal(result.best_state["fc.weight"], grafted.model.state_dict()["fc.weight"])


def test_nan_loss_fails_with_what_to_change(digits32):
    with pytest.raises(TrainingDiverged, match="lower optimizer.lr"):
        run(digits32, epochs=1, strategy=StrategyConfig("finetune", lr=1e4), momentum=0.9)


def test_label_smoothing_and_clipping_change_training(digits32):
    plain, _ = run(digits32, epochs=1)
    smooth, _ = run(digits32, epochs=1, label_smoothing=0.2)
    clipped, _ = run(digits32, epochs=1, grad_clip_norm=0.01)
    assert smooth.history[0]["train_loss"] > plain.history[0]["train_loss"]
    assert clipped.history[0]["train_loss"] != plain.history[0]["train_loss"]


@pytest.mark.parametrize(("pretrained", "strategy", "batchnorm", "expected"), [
    (True, "finetune", "auto", 1.0), (True, "gradual_unfreeze", "auto", 1.0), (True, "finetune", "freeze", 1.0),
    (True, "finetune", "train", None), (True, "feature_extraction", "auto", None), (False, "finetune", "auto", None),
])
def test_auto_clipping_applies_only_through_frozen_batchnorm(digits32, pretrained, strategy, batchnorm, expected):
    _, pre = digits32
    state = backbones.build("resnet18", 10).model.state_dict() if pretrained else None
    grafted = backbones.build("resnet18", 10, state_dict=state)
    cfg = engine.TrainConfig(device="cpu", strategy=StrategyConfig(strategy, batchnorm=batchnorm))
    assert engine.Trainer(grafted, pre, cfg).clip_norm == expected
    cfg.grad_clip_norm = 0.5  # an explicit value always wins
    assert engine.Trainer(grafted, pre, cfg).clip_norm == 0.5
