"""The adaptation trainer on the real MNIST → UCI digits pair: target labels never reach training, metrics per epoch."""

import math

import pytest
import torch

from workers.pipeline import backbones, datasets, engine
from workers.pipeline.adaptation.data import load_mnist_raw, load_uci_digits_mnist_framed
from workers.pipeline.adaptation.trainer import AdaptationConfig, AdaptTrainer
from workers.pipeline.errors import PipelineError
from workers.pipeline.images import Preprocessing
from workers.pipeline.strategies import StrategyConfig

PRE = Preprocessing(image_size=32)


@pytest.fixture(scope="module")
def pair():
    """600 MNIST digits (source, split train/val) and 300 framed UCI digits (target), decoded at 32 px."""
    source = datasets.decode_set(load_mnist_raw(limit=600), PRE)
    target = datasets.decode_set(load_uci_digits_mnist_framed(), PRE)
    target = target.subset(torch.arange(300))
    train_idx, val_idx = datasets.stratified_split(source.labels, 0.2, 0)
    return source.subset(train_idx), source.subset(val_idx), target


def adapt(pair, method: str, target: datasets.ImageSet | None = None, epochs: int = 2, **kwargs):
    train, val, default_target = pair
    target = default_target if target is None else target
    torch.manual_seed(0)
    grafted = backbones.build("resnet18", 10, bottleneck=kwargs.pop("bottleneck", None))
    cfg = engine.TrainConfig(epochs=epochs, batch_size=32, device="cpu", seed=0, grad_clip_norm=1.0,
                             strategy=StrategyConfig("finetune", lr=0.02))  # clipped: no collapse to one class
    trainer = AdaptTrainer(grafted, PRE, cfg, AdaptationConfig(method=method, **kwargs), target, target_eval=target)
    return grafted, trainer.fit(train, val)


@pytest.mark.parametrize("method", ["mmd", "dann", "coral"])
def test_permuting_target_labels_leaves_the_trained_weights_bit_identical(pair, method):
    _, _, target = pair
    shuffled = datasets.ImageSet(target.images, target.labels[torch.randperm(len(target),
                                 generator=torch.Generator().manual_seed(7))], target.classes)
    assert not torch.equal(shuffled.labels, target.labels)
    a, fit_a = adapt(pair, method, target, epochs=1)
    b, fit_b = adapt(pair, method, shuffled, epochs=1)
    state_a, state_b = a.model.state_dict(), b.model.state_dict()
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        assert torch.equal(state_a[key], state_b[key]), key
    # ...while the labels did reach the evaluation: the reported target accuracy differs.
    assert fit_a.history[0]["target_accuracy"] != fit_b.history[0]["target_accuracy"]


def test_every_epoch_reports_source_loss_adaptation_loss_lambda_discrepancy_and_target_accuracy(pair):
    grafted, fit = adapt(pair, "mmd", epochs=3, bottleneck=64)
    assert [row["epoch"] for row in fit.history] == [1, 2, 3]
    for row in fit.history:
        assert row["source_loss"] > 0 and math.isfinite(row["adaptation_loss"])
        assert row["domain_discrepancy"] >= 0 and 0 <= row["target_accuracy"] <= 1
    lambdas = [row["lambda"] for row in fit.history]
    assert 0 < lambdas[0] < lambdas[1] < lambdas[2] <= 1.0  # the ramp rises towards the weight
    assert fit.history[-1]["source_loss"] < fit.history[0]["source_loss"]
    assert fit.history[-1]["val_accuracy"] > 0.6  # features did not collapse: the source is still learned
    assert 0 <= fit.metrics["target_accuracy"] <= 1 and "confusion_matrix" in fit.metrics["target"]
    assert isinstance(grafted.head, torch.nn.Sequential) and isinstance(grafted.head[1], torch.nn.BatchNorm1d)


def test_source_only_reports_no_adaptation_loss(pair):
    _, fit = adapt(pair, "none", epochs=1)
    row = fit.history[0]
    assert row["adaptation_loss"] == 0 and row["domain_discrepancy"] >= 0 and "target_accuracy" in row


def test_dann_trains_its_discriminator_in_the_same_optimizer(pair):
    _, fit = adapt(pair, "dann", epochs=1)
    assert "domain_discriminator" in fit.history[0]["lrs"]


def test_unknown_method_is_refused():
    with pytest.raises(PipelineError, match="unknown adaptation method"):
        AdaptationConfig(method="mmmd")
